// bf16 activation storage on the CPU reference (ops.h: the DiT's saved activations stored in
// bf16, everything else fp32). Checks:
// - each op that takes a bf16-stored argument equals, bit for bit, the fp32 op on the widened
//   inputs with its stored outputs rounded once (the semantics ops.h gives; the CUDA ops are
//   tested against these in tests/gpu);
// - a DiT forward and backward with bf16 storage stays within bf16 limits of the fp32 one (all
//   tokens and a token subset), and really differs from it (the bf16 path ran);
// - the forward-only arena gives bitwise the training forward's output in bf16 too;
// - the arena shrinks: DiT-XL/2's training activations for 32 samples.
#include "bf16.h"
#include "check.h"
#include "dit_case.h"
#include "model/dit.h"
#include "error.h"
#include "tolerances.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sd_backend g_be;

// x rounded to bf16 and widened again: the values a bf16 buffer holds.
static float *rounded(const float *x, size_t n) {
  float *r = sd_xmalloc(sizeof(float) * n, "rounded copy");
  for (size_t i = 0; i < n; i++) r[i] = sd_bf16_to_float(sd_bf16_from_float(x[i]));
  return r;
}
static uint16_t *to_bf16(const float *x, size_t n) {
  uint16_t *h = sd_xmalloc(2 * n, "bf16 copy");
  for (size_t i = 0; i < n; i++) h[i] = sd_bf16_from_float(x[i]);
  return h;
}
// A bf16 buffer's values as floats.
static float *widened(const uint16_t *h, size_t n) {
  float *f = sd_xmalloc(sizeof(float) * n, "widened copy");
  for (size_t i = 0; i < n; i++) f[i] = sd_bf16_to_float(h[i]);
  return f;
}
static float *normal(size_t n, uint32_t stream, float std) {
  float *x = sd_xmalloc(sizeof(float) * n, "input");
  fill_normal(x, n, stream, std);
  return x;
}
// The bf16 output h (n) equals bf16(ref) for every element.
static void check_stored(const char *what, const uint16_t *h, const float *ref, size_t n) {
  uint16_t *want = to_bf16(ref, n);
  check_bitwise(what, h, want, 2 * n);
  free(want);
}

static void check_ops(void) {
  const sd_ops *op = g_be.ops;
  const int M = 24, K = 20, N = 16;
  float *inp = normal((size_t)M * K, 1, 1.0f), *w = normal((size_t)N * K, 2, 0.2f);
  float *bias = normal(N, 3, 0.1f), *inp_r = rounded(inp, (size_t)M * K);
  uint16_t *inp_h = to_bf16(inp, (size_t)M * K);
  // matmul_fwd: bf16 in, bf16 out / bf16 in, fp32 out
  float *ref = sd_xmalloc(sizeof(float) * M * N, "ref"),
        *got = sd_xmalloc(sizeof(float) * M * N, "got");
  uint16_t *out_h = sd_xmalloc(2 * (size_t)M * N, "out");
  op->matmul_fwd(&g_be, ref, SD_F32, inp_r, SD_F32, w, bias, M, K, N);
  op->matmul_fwd(&g_be, out_h, SD_BF16, inp_h, SD_BF16, w, bias, M, K, N);
  check_stored("matmul_fwd bf16 -> bf16 == bf16(fp32 op on the widened input)", out_h, ref,
               (size_t)M * N);
  op->matmul_fwd(&g_be, got, SD_F32, inp_h, SD_BF16, w, bias, M, K, N);
  check_bitwise("matmul_fwd bf16 -> fp32 == fp32 op on the widened input", got, ref,
                sizeof(float) * M * N);
  // matmul_bwd: dw from a bf16 inp
  float *dout = normal((size_t)M * N, 4, 1.0f);
  float *dw_ref = sd_xcalloc((size_t)N * K, sizeof(float), "dw"),
        *dw = sd_xcalloc((size_t)N * K, sizeof(float), "dw");
  float *di_ref = sd_xmalloc(sizeof(float) * M * K, "dinp"),
        *di = sd_xmalloc(sizeof(float) * M * K, "dinp");
  op->matmul_bwd(&g_be, di_ref, dw_ref, NULL, dout, SD_F32, inp_r, SD_F32, w, M, K, N, 0);
  op->matmul_bwd(&g_be, di, dw, NULL, dout, SD_F32, inp_h, SD_BF16, w, M, K, N, 0);
  check_bitwise("matmul_bwd dw from a bf16 inp == from the widened inp", dw, dw_ref,
                sizeof(float) * N * K);
  check_bitwise("matmul_bwd dinp with a bf16 inp (unused) == fp32", di, di_ref,
                sizeof(float) * M * K);
  // matmul_bwd from a bf16 dout: every output as from the widened dout
  uint16_t *dout_h = to_bf16(dout, (size_t)M * N);
  float *dout_r = rounded(dout, (size_t)M * N);
  float *db_ref = sd_xcalloc(N, sizeof(float), "dbias"),
        *db = sd_xcalloc(N, sizeof(float), "dbias");
  memset(dw_ref, 0, sizeof(float) * N * K);
  memset(dw, 0, sizeof(float) * N * K);
  op->matmul_bwd(&g_be, di_ref, dw_ref, db_ref, dout_r, SD_F32, inp_r, SD_F32, w, M, K, N, 0);
  op->matmul_bwd(&g_be, di, dw, db, dout_h, SD_BF16, inp_h, SD_BF16, w, M, K, N, 0);
  check_bitwise("matmul_bwd dinp from a bf16 dout == from the widened dout", di, di_ref,
                sizeof(float) * M * K);
  check_bitwise("matmul_bwd dw from a bf16 dout == from the widened dout", dw, dw_ref,
                sizeof(float) * N * K);
  check_bitwise("matmul_bwd dbias from a bf16 dout == from the widened dout", db, db_ref,
                sizeof(float) * N);
  // matmul_gelu_fwd: both outputs from the fp32 pre-activation; matmul_bwd_dgelu
  float *pre_ref = sd_xmalloc(sizeof(float) * M * N, "pre"),
        *g_ref = sd_xmalloc(sizeof(float) * M * N, "gelu");
  uint16_t *pre_h = sd_xmalloc(2 * (size_t)M * N, "pre"),
           *g_h = sd_xmalloc(2 * (size_t)M * N, "gelu");
  op->matmul_gelu_fwd(&g_be, g_ref, pre_ref, inp_r, SD_F32, w, bias, M, K, N);
  op->matmul_gelu_fwd(&g_be, g_h, pre_h, inp_h, SD_BF16, w, bias, M, K, N);
  check_stored("matmul_gelu_fwd pre == bf16(fp32 pre)", pre_h, pre_ref, (size_t)M * N);
  check_stored("matmul_gelu_fwd out == bf16(gelu(fp32 pre))", g_h, g_ref, (size_t)M * N);
  float *g_w = widened(g_h, (size_t)M * N), *pre_w = widened(pre_h, (size_t)M * N);
  float *w2 = normal((size_t)K * N, 5, 0.2f), *dout2 = normal((size_t)M * K, 6, 1.0f);
  float *d1 = sd_xmalloc(sizeof(float) * M * N, "d1");
  uint16_t *d2 = sd_xmalloc(2 * (size_t)M * N, "d2");
  float *dw1 = sd_xcalloc((size_t)K * N, sizeof(float), "dw1"),
        *dw2 = sd_xcalloc((size_t)K * N, sizeof(float), "dw2");
  op->matmul_bwd_dgelu(&g_be, d1, dw1, NULL, dout2, g_w, w2, pre_w, SD_F32, M, N, K);
  op->matmul_bwd_dgelu(&g_be, d2, dw2, NULL, dout2, g_h, w2, pre_h, SD_BF16, M, N, K);
  check_stored("matmul_bwd_dgelu bf16 dinp == bf16(dinp from the widened inp, pre)", d2, d1,
               (size_t)M * N);
  check_bitwise("matmul_bwd_dgelu dw with bf16 inp, pre == with the widened ones", dw2, dw1,
                sizeof(float) * K * N);
  // lnmod_fwd, attention, gated residual
  const int B = 2, T = 12, D = 16, NH = 2;
  const size_t BTD = (size_t)B * T * D;
  float *x = normal(BTD, 7, 1.5f), *mod = normal((size_t)B * 2 * D, 8, 0.5f);
  float *mean = sd_xmalloc(sizeof(float) * B * T, "mean"),
        *rstd = sd_xmalloc(sizeof(float) * B * T, "rstd");
  float *ln_ref = sd_xmalloc(sizeof(float) * BTD, "ln");
  uint16_t *ln_h = sd_xmalloc(2 * BTD, "ln");
  op->lnmod_fwd(&g_be, ln_ref, SD_F32, mean, rstd, x, mod, mod + D, 2 * D, B, T, D, 1e-6f);
  op->lnmod_fwd(&g_be, ln_h, SD_BF16, mean, rstd, x, mod, mod + D, 2 * D, B, T, D, 1e-6f);
  check_stored("lnmod_fwd bf16 out == bf16(fp32 out)", ln_h, ln_ref, BTD);
  float *qkv = normal(3 * BTD, 9, 1.0f), *qkv_r = rounded(qkv, 3 * BTD);
  uint16_t *qkv_h = to_bf16(qkv, 3 * BTD), *att_h = sd_xmalloc(2 * BTD, "att");
  float *att_ref = sd_xmalloc(sizeof(float) * BTD, "att"),
        *lse1 = sd_xmalloc(sizeof(float) * B * NH * T, "lse");
  float *lse2 = sd_xmalloc(sizeof(float) * B * NH * T, "lse");
  op->attention_fwd(&g_be, att_ref, lse1, qkv_r, SD_F32, B, T, NH, D / NH);
  op->attention_fwd(&g_be, att_h, lse2, qkv_h, SD_BF16, B, T, NH, D / NH);
  check_stored("attention_fwd bf16 out == bf16(fp32 op on widened qkv)", att_h, att_ref, BTD);
  check_bitwise("attention_fwd lse from bf16 qkv == from widened qkv", lse2, lse1,
                sizeof(float) * B * NH * T);
  float *att_w = widened(att_h, BTD), *dO = normal(BTD, 10, 1.0f);
  float *dq1 = sd_xmalloc(sizeof(float) * 3 * BTD, "dqkv"),
        *dq2 = sd_xmalloc(sizeof(float) * 3 * BTD, "dqkv");
  op->attention_bwd(&g_be, dq1, dO, qkv_r, att_w, SD_F32, lse1, B, T, NH, D / NH);
  op->attention_bwd(&g_be, dq2, dO, qkv_h, att_h, SD_BF16, lse1, B, T, NH, D / NH);
  check_bitwise("attention_bwd from bf16 qkv, out == from the widened ones", dq2, dq1,
                sizeof(float) * 3 * BTD);
  float *y_r = rounded(x, BTD), *o1 = sd_xmalloc(sizeof(float) * BTD, "o"),
        *o2 = sd_xmalloc(sizeof(float) * BTD, "o");
  uint16_t *y_h = to_bf16(x, BTD);
  float *res = normal(BTD, 11, 1.0f);
  op->gated_residual_fwd(&g_be, o1, res, y_r, SD_F32, mod, 2 * D, B, T, D);
  op->gated_residual_fwd(&g_be, o2, res, y_h, SD_BF16, mod, 2 * D, B, T, D);
  check_bitwise("gated_residual_fwd with bf16 y == with widened y", o2, o1, sizeof(float) * BTD);
  float *dg1 = sd_xcalloc((size_t)B * 2 * D, sizeof(float), "dgate"),
        *dg2 = sd_xcalloc((size_t)B * 2 * D, sizeof(float), "dgate");
  op->gated_residual_bwd(&g_be, o1, dg1, dO, y_r, SD_F32, mod, 2 * D, B, T, D);
  op->gated_residual_bwd(&g_be, o2, dg2, dO, y_h, SD_BF16, mod, 2 * D, B, T, D);
  check_bitwise("gated_residual_bwd dgate with bf16 y == with widened y", dg2, dg1,
                sizeof(float) * B * 2 * D);
  void *more[] = {dout_h, dout_r, db_ref, db};
  for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) free(more[i]);
  void *all[] = {inp,   w,      bias,  inp_r,   inp_h, ref,     got,  out_h, dout,  dw_ref,
                 dw,    di_ref, di,    pre_ref, g_ref, pre_h,   g_h,  g_w,   pre_w, w2,
                 dout2, d1,     d2,    dw1,     dw2,   x,       mod,  mean,  rstd,  ln_ref,
                 ln_h,  qkv,    qkv_r, qkv_h,   att_h, att_ref, lse1, lse2,  att_w, dO,
                 dq1,   dq2,    y_r,   o1,      o2,    y_h,     res,  dg1,   dg2};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

// Forward (+ backward unless inference) of the tiny DiT case with storage act: output and
// gradients.
static void run_dit(const sd_dit_config *cfg, sd_dtype act, int masked, int inference, float *out,
                    float *grads) {
  g_be.act_dtype = act;
  dit_case c;
  dit_case_create(&c, cfg, &g_be, masked);
  sd_dit_acts a;
  if (inference)
    sd_dit_acts_create_inference(&a, &c.m, c.B, c.T);
  else
    sd_dit_acts_create(&a, &c.m, c.B, c.T);
  sd_dit_forward(&c.m, &a, c.B, c.x, c.cn, c.y, c.idx, c.Tk);
  memcpy(out, a.out, sizeof(float) * c.nimg);
  if (!inference) {
    float *dout = sd_xmalloc(sizeof(float) * c.nimg, "dout");
    g_be.ops->mse_bwd(&g_be, dout, a.out, c.tgt, c.nimg, 1.0f);
    sd_dit_backward(&c.m, &a, c.B, c.y, dout);
    memcpy(grads, c.m.grads, sizeof(float) * c.m.table.total);
    free(dout);
  }
  sd_dit_acts_destroy(&a, &c.m);
  dit_case_destroy(&c);
  g_be.act_dtype = SD_F32;
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
  return m;
}

static void check_dit(void) {
  sd_dit_config cfg;
  sd_dit_config_preset(&cfg, "tiny");
  sd_param_table t;
  sd_dit_param_table(&cfg, &t);
  const size_t nimg = (size_t)3 * cfg.in_channels * cfg.input_size * cfg.input_size;
  for (int masked = 0; masked <= 1; masked++) {
    float *o32 = sd_xmalloc(sizeof(float) * nimg, "out"),
          *o16 = sd_xmalloc(sizeof(float) * nimg, "out");
    float *oi = sd_xmalloc(sizeof(float) * nimg, "out");
    float *g32 = sd_xmalloc(sizeof(float) * t.total, "grads"),
          *g16 = sd_xmalloc(sizeof(float) * t.total, "grads");
    run_dit(&cfg, SD_F32, masked, 0, o32, g32);
    run_dit(&cfg, SD_BF16, masked, 0, o16, g16);
    run_dit(&cfg, SD_BF16, masked, 1, oi, NULL);
    const char *w = masked ? "token subset" : "all tokens";
    char what[128];
    snprintf(what, sizeof what, "DiT output, bf16 activations vs fp32 (%s)", w);
    check_close(what, o16, o32, nimg, ACT_BF16_OUT_RTOL, NULL);
    check_true(max_abs_diff(o16, o32, nimg) > 0,
               "DiT output, bf16 activations differ from "
               "fp32 (%s): max |diff| %.3g (the bf16 path ran)",
               w, max_abs_diff(o16, o32, nimg));
    snprintf(what, sizeof what, "DiT gradients, bf16 activations vs fp32 (%s)", w);
    check_close(what, g16, g32, t.total, ACT_BF16_GRAD_RTOL, NULL);
    snprintf(what, sizeof what, "DiT output, bf16 forward-only arena == training arena (%s)", w);
    check_bitwise(what, oi, o16, sizeof(float) * nimg);
    free(o32);
    free(o16);
    free(oi);
    free(g32);
    free(g16);
  }
  sd_param_table_free(&t);
  sd_dit_config xl;
  sd_dit_config_preset(&xl, "XL/2");
  const size_t f32 = sd_dit_acts_bytes(&xl, 32, sd_dit_tokens(&xl), 0, SD_F32);
  const size_t b16 = sd_dit_acts_bytes(&xl, 32, sd_dit_tokens(&xl), 0, SD_BF16);
  check_true((double)b16 <= ACT_BF16_ARENA_RATIO * (double)f32,
             "XL/2 training activations for 32 samples: bf16 storage %.1f MB, fp32 %.1f MB "
             "(ratio %.3f, at most %.2f)",
             1e-6 * b16, 1e-6 * f32, (double)b16 / f32, ACT_BF16_ARENA_RATIO);
}

int main(void) {
  sd_backend_cpu_init(&g_be, 0);
  check_ops();
  check_dit();
  sd_backend_cpu_destroy(&g_be);
  return check_exit("test_bf16_activations");
}
