// Determinism: two identical forward+backward passes of a DiT (all tokens, and a token
// subset) give bitwise equal outputs and gradients; the forward-only (inference) activations
// give bitwise the training forward's output in a far smaller arena.
#include "check.h"
#include "dit_case.h"
#include "model/dit.h"
#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void run_once(sd_backend *be, const sd_dit_config *cfg, int masked, float *out_copy,
                     float *grad_copy) {
  dit_case c;
  dit_case_create(&c, cfg, be, masked);
  sd_dit *m = &c.m;
  const int B = c.B, T = c.T;
  sd_dit_acts a;
  sd_dit_acts_create(&a, m, B, T);
  sd_dit_forward(m, &a, B, c.x, c.cn, c.y, c.idx, c.Tk);
  sd_dit_acts ai;
  sd_dit_acts_create_inference(&ai, m, B, T);
  sd_dit_forward(m, &ai, B, c.x, c.cn, c.y, c.idx, c.Tk);
  check_bitwise(masked ? "token-subset output: inference activations == training ones"
                       : "full output: inference activations == training ones",
                ai.out, a.out, sizeof(float) * c.nimg);
  sd_dit_acts_destroy(&ai, m);
  float *dout = sd_xmalloc(sizeof(float) * c.nimg, "dout");
  be->ops->mse_bwd(be, dout, a.out, c.tgt, c.nimg, 1.0f);
  sd_dit_backward(m, &a, B, c.y, dout);
  memcpy(out_copy, a.out, sizeof(float) * c.nimg);
  memcpy(grad_copy, m->grads, sizeof(float) * m->table.total);
  sd_dit_acts_destroy(&a, m);
  dit_case_destroy(&c);
  free(dout);
}

int main(void) {
  sd_backend be;
  sd_backend_cpu_init(&be, 0);
  sd_dit_config cfg;
  sd_dit_config_preset(&cfg, "tiny");
  sd_param_table t;
  sd_dit_param_table(&cfg, &t);
  const size_t nimg = (size_t)3 * cfg.in_channels * cfg.input_size * cfg.input_size;
  for (int masked = 0; masked <= 1; masked++) {
    float *o1 = malloc(sizeof(float) * nimg), *o2 = malloc(sizeof(float) * nimg);
    float *g1 = malloc(sizeof(float) * t.total), *g2 = malloc(sizeof(float) * t.total);
    run_once(&be, &cfg, masked, o1, g1);
    run_once(&be, &cfg, masked, o2, g2);
    char what[64];
    snprintf(what, sizeof what, "%s output, two runs", masked ? "token-subset" : "full");
    check_bitwise(what, o1, o2, sizeof(float) * nimg);
    snprintf(what, sizeof what, "%s gradients, two runs", masked ? "token-subset" : "full");
    check_bitwise(what, g1, g2, sizeof(float) * t.total);
    double s = 0;
    for (size_t i = 0; i < t.total; i++) s += (double)g1[i] * g1[i];
    check_true(s > 0, "%s gradients are non-zero (sum of squares %.3g)",
               masked ? "token-subset" : "full", s);
    free(o1); free(o2); free(g1); free(g2);
  }
  sd_param_table_free(&t);
  // the inference arena does not grow with depth: DiT-XL/2 (28 blocks), 256 tokens
  sd_dit_config xl;
  sd_dit_config_preset(&xl, "XL/2");
  const size_t tr = sd_dit_acts_bytes(&xl, 4, sd_dit_tokens(&xl), 0, SD_F32);
  const size_t in = sd_dit_acts_bytes(&xl, 4, sd_dit_tokens(&xl), 1, SD_F32);
  check_true(in * 10 <= tr, "XL/2 activations for 4 samples: inference %.1f MB, training %.1f "
             "MB (at most a tenth)", 1e-6 * in, 1e-6 * tr);
  return check_exit("test_determinism");
}
