// Finite-difference gradient checks of every backward op against its forward, on the CPU
// backend. For a random projection r of the output, L(x) = sum(r * op(x)) in double; the
// analytic gradient (backward with dout = r) must match central differences. Gradients
// declared "+=" are checked on a pre-filled buffer (the fill must survive), those declared
// "=" on a buffer filled with garbage (it must be overwritten).
#include "check.h"
#include "ops.h"
#include "tolerances.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sd_backend g_be;

typedef struct gc_tensor {
  const char *name;
  float *x;        // values
  float *g;        // gradient buffer the backward writes
  size_t n;
  int accumulates; // 1: backward does +=, 0: backward does =
} gc_tensor;

typedef struct gc_case gc_case;
struct gc_case {
  const char *name;
  gc_tensor in[4];
  int nin;
  float *out;
  size_t nout;
  void (*fwd)(gc_case *c);
  void (*bwd)(gc_case *c, const float *dout);
  int ints[8];        // sizes for the closures
  float *aux[6];      // extra buffers (saved stats, fixed inputs)
  int32_t *idx;
};

static float *fbuf(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

static double project(const float *r, const float *out, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += (double)r[i] * (double)out[i];
  return s;
}

static void run_case(gc_case *c) {
  c->fwd(c);
  float *r = fbuf(c->nout);
  fill_normal(r, c->nout, 7, 1.0f);
  float **prefill = calloc((size_t)c->nin, sizeof *prefill);
  for (int k = 0; k < c->nin; k++) {
    gc_tensor *t = &c->in[k];
    prefill[k] = fbuf(t->n);
    if (t->accumulates) fill_uniform(prefill[k], t->n, 100 + (uint32_t)k, -1.0f, 1.0f);
    else for (size_t i = 0; i < t->n; i++) prefill[k][i] = 777.0f;
    memcpy(t->g, prefill[k], sizeof(float) * t->n);
  }
  c->bwd(c, r);
  for (int k = 0; k < c->nin; k++) {
    gc_tensor *t = &c->in[k];
    float *ana = fbuf(t->n);
    double maxana = 0.0;
    for (size_t i = 0; i < t->n; i++) {
      ana[i] = t->accumulates ? t->g[i] - prefill[k][i] : t->g[i];
      if (fabs(ana[i]) > maxana) maxana = fabs(ana[i]);
    }
    // numeric derivative at up to 64 evenly spread elements
    size_t stride = t->n > 64 ? t->n / 64 : 1;
    double worst = -1.0;
    size_t worst_i = 0;
    double worst_num = 0, worst_ana = 0;
    int ok = 1;
    for (size_t i = 0; i < t->n; i += stride) {
      float keep = t->x[i];
      t->x[i] = keep + (float)GRADCHECK_STEP;
      c->fwd(c);
      double lp = project(r, c->out, c->nout);
      t->x[i] = keep - (float)GRADCHECK_STEP;
      c->fwd(c);
      double lm = project(r, c->out, c->nout);
      t->x[i] = keep;
      double h = ((double)(keep + (float)GRADCHECK_STEP) - (double)(keep - (float)GRADCHECK_STEP));
      double num = (lp - lm) / h;
      double diff = fabs(num - ana[i]);
      double allowed = GRADCHECK_RTOL * fabs(ana[i]) + GRADCHECK_ATOL * maxana;
      if (!isfinite(ana[i])) diff = INFINITY;
      if (diff > allowed) ok = 0;
      double score = allowed > 0 ? diff / allowed : diff;
      if (score > worst) {
        worst = score;
        worst_i = i;
        worst_num = num;
        worst_ana = ana[i];
      }
    }
    c->fwd(c);
    check_true(ok && maxana > 0.0,
               "%-34s d%-7s worst [%zu] analytic %.6g numeric %.6g (err/allowed %.2f, %s)",
               c->name, t->name, worst_i, worst_ana, worst_num, worst,
               t->accumulates ? "+=" : "=");
    free(ana);
    free(prefill[k]);
  }
  free(prefill);
  free(r);
}

// ---- matmul -----------------------------------------------------------------------------
static void mm_fwd(gc_case *c) {
  g_be.ops->matmul_fwd(&g_be, c->out, SD_F32, c->in[0].x, SD_F32, c->in[1].x, c->in[2].x,
                       c->ints[0], c->ints[1], c->ints[2]);
}
static void mm_bwd(gc_case *c, const float *dout) {
  g_be.ops->matmul_bwd(&g_be, c->in[0].g, c->in[1].g, c->in[2].g, dout, SD_F32, c->in[0].x, SD_F32,
                       c->in[1].x, c->ints[0], c->ints[1], c->ints[2], c->ints[3]);
}
static void case_matmul(int accumulate_dinp) {
  int M = 6, K = 7, N = 5;
  gc_case c = {.name = accumulate_dinp ? "matmul (dinp +=)" : "matmul", .nin = 3,
               .fwd = mm_fwd, .bwd = mm_bwd, .ints = {M, K, N, accumulate_dinp}};
  c.in[0] = (gc_tensor){"inp", fbuf(M * K), fbuf(M * K), (size_t)M * K, accumulate_dinp};
  c.in[1] = (gc_tensor){"w", fbuf(N * K), fbuf(N * K), (size_t)N * K, 1};
  c.in[2] = (gc_tensor){"bias", fbuf(N), fbuf(N), (size_t)N, 1};
  fill_normal(c.in[0].x, c.in[0].n, 1, 1.0f);
  fill_normal(c.in[1].x, c.in[1].n, 2, 0.5f);
  fill_normal(c.in[2].x, c.in[2].n, 3, 0.5f);
  c.out = fbuf(M * N);
  c.nout = (size_t)M * N;
  run_case(&c);
}

// ---- layer norm + modulate (shift, scale read at stride 3D from one buffer) -------------
static void ln_fwd(gc_case *c) {
  int B = c->ints[0], T = c->ints[1], D = c->ints[2];
  const float *mod = c->in[1].x;
  g_be.ops->lnmod_fwd(&g_be, c->out, SD_F32, c->aux[0], c->aux[1], c->in[0].x, mod + D,
                      mod + 2 * D, 3 * D, B, T, D, 1e-6f);
}
static void ln_bwd(gc_case *c, const float *dout) {
  int B = c->ints[0], T = c->ints[1], D = c->ints[2];
  g_be.ops->lnmod_bwd(&g_be, c->in[0].g, c->in[1].g + D, c->in[1].g + 2 * D, dout, c->in[0].x,
                      c->aux[0], c->aux[1], c->in[1].x + 2 * D, 3 * D, B, T, D);
}
static void case_lnmod(void) {
  int B = 2, T = 3, D = 8;
  gc_case c = {.name = "layernorm+modulate", .nin = 2, .fwd = ln_fwd, .bwd = ln_bwd,
               .ints = {B, T, D}};
  c.in[0] = (gc_tensor){"x", fbuf(B * T * D), fbuf(B * T * D), (size_t)B * T * D, 1};
  c.in[1] = (gc_tensor){"mod", fbuf(B * 3 * D), fbuf(B * 3 * D), (size_t)B * 3 * D, 1};
  fill_normal(c.in[0].x, c.in[0].n, 4, 1.0f);
  for (size_t i = 0; i < c.in[0].n; i++) c.in[0].x[i] += 0.3f;  // non-zero mean
  fill_normal(c.in[1].x, c.in[1].n, 5, 0.5f);
  c.aux[0] = fbuf(B * T);
  c.aux[1] = fbuf(B * T);
  c.out = fbuf(B * T * D);
  c.nout = (size_t)B * T * D;
  run_case(&c);
}

// ---- attention --------------------------------------------------------------------------
static void at_fwd(gc_case *c) {
  g_be.ops->attention_fwd(&g_be, c->out, c->aux[0], c->in[0].x, SD_F32, c->ints[0],
                          c->ints[1], c->ints[2], c->ints[3]);
}
static void at_bwd(gc_case *c, const float *dout) {
  g_be.ops->attention_bwd(&g_be, c->in[0].g, dout, c->in[0].x, c->out, SD_F32, c->aux[0],
                          c->ints[0], c->ints[1], c->ints[2], c->ints[3]);
}
static void case_attention(void) {
  int B = 2, T = 5, NH = 2, HD = 4, D = NH * HD;
  gc_case c = {.name = "attention", .nin = 1, .fwd = at_fwd, .bwd = at_bwd,
               .ints = {B, T, NH, HD}};
  c.in[0] = (gc_tensor){"qkv", fbuf(B * T * 3 * D), fbuf(B * T * 3 * D), (size_t)B * T * 3 * D, 0};
  fill_normal(c.in[0].x, c.in[0].n, 6, 1.0f);
  c.aux[0] = fbuf(B * NH * T);
  c.out = fbuf(B * T * D);
  c.nout = (size_t)B * T * D;
  run_case(&c);
}

// ---- pointwise activations ----------------------------------------------------------------
static void gelu_f(gc_case *c) { g_be.ops->gelu_fwd(&g_be, c->out, c->in[0].x, c->in[0].n); }
static void gelu_b(gc_case *c, const float *d) {
  g_be.ops->gelu_bwd(&g_be, c->in[0].g, d, c->in[0].x, c->in[0].n);
}
static void silu_f(gc_case *c) { g_be.ops->silu_fwd(&g_be, c->out, c->in[0].x, c->in[0].n); }
static void silu_b(gc_case *c, const float *d) {
  g_be.ops->silu_bwd(&g_be, c->in[0].g, d, c->in[0].x, c->in[0].n);
}
static void case_act(const char *name, void (*f)(gc_case *), void (*b)(gc_case *, const float *)) {
  size_t n = 40;
  gc_case c = {.name = name, .nin = 1, .fwd = f, .bwd = b};
  c.in[0] = (gc_tensor){"x", fbuf(n), fbuf(n), n, 0};
  fill_uniform(c.in[0].x, n, 8, -4.0f, 4.0f);
  c.out = fbuf(n);
  c.nout = n;
  run_case(&c);
}

// ---- gated residual (gate read at stride 2D, offset D) ----------------------------------
static void gr_fwd(gc_case *c) {
  int B = c->ints[0], T = c->ints[1], D = c->ints[2];
  g_be.ops->gated_residual_fwd(&g_be, c->out, c->aux[0], c->in[0].x, SD_F32, c->in[1].x + D,
                               2 * D, B, T, D);
}
static void gr_bwd(gc_case *c, const float *dout) {
  int B = c->ints[0], T = c->ints[1], D = c->ints[2];
  g_be.ops->gated_residual_bwd(&g_be, c->in[0].g, c->in[1].g + D, dout, c->in[0].x, SD_F32,
                               c->in[1].x + D, 2 * D, B, T, D);
}
static void case_gated_residual(void) {
  int B = 2, T = 3, D = 4;
  gc_case c = {.name = "gated residual", .nin = 2, .fwd = gr_fwd, .bwd = gr_bwd,
               .ints = {B, T, D}};
  c.in[0] = (gc_tensor){"y", fbuf(B * T * D), fbuf(B * T * D), (size_t)B * T * D, 0};
  c.in[1] = (gc_tensor){"gate", fbuf(B * 2 * D), fbuf(B * 2 * D), (size_t)B * 2 * D, 1};
  fill_normal(c.in[0].x, c.in[0].n, 9, 1.0f);
  fill_normal(c.in[1].x, c.in[1].n, 10, 1.0f);
  c.aux[0] = fbuf(B * T * D);
  fill_normal(c.aux[0], (size_t)B * T * D, 11, 1.0f);
  c.out = fbuf(B * T * D);
  c.nout = (size_t)B * T * D;
  run_case(&c);
}

// ---- unpatchify (with and without a token index) -----------------------------------------
static void up_fwd(gc_case *c) {
  g_be.ops->unpatchify_fwd(&g_be, c->out, c->in[0].x, c->idx, c->ints[0], c->ints[1],
                           c->ints[2], c->ints[3], c->ints[3], c->ints[4]);
}
static void up_bwd(gc_case *c, const float *dout) {
  g_be.ops->unpatchify_bwd(&g_be, c->in[0].g, dout, c->idx, c->ints[0], c->ints[1],
                           c->ints[2], c->ints[3], c->ints[3], c->ints[4]);
}
static void case_unpatchify(int masked) {
  int B = 2, C = 3, H = 4, p = 2, T = 4, Tk = masked ? 3 : T, F = p * p * C;
  static int32_t idx[] = {0, 2, 3, 1, 2, 3};
  gc_case c = {.name = masked ? "unpatchify (token index)" : "unpatchify", .nin = 1,
               .fwd = up_fwd, .bwd = up_bwd, .ints = {Tk, B, C, H, p}, .idx = masked ? idx : NULL};
  c.in[0] = (gc_tensor){"tok", fbuf(B * Tk * F), fbuf(B * Tk * F), (size_t)B * Tk * F, 0};
  fill_normal(c.in[0].x, c.in[0].n, 12, 1.0f);
  c.out = fbuf(B * C * H * H);
  c.nout = (size_t)B * C * H * H;
  run_case(&c);
}

// ---- label-table rows (repeated labels) ---------------------------------------------------
static void er_fwd(gc_case *c) {
  memset(c->out, 0, sizeof(float) * c->nout);
  g_be.ops->embed_rows_fwd(&g_be, c->out, c->in[0].x, c->idx, c->ints[0], c->ints[1], c->ints[2]);
}
static void er_bwd(gc_case *c, const float *dout) {
  g_be.ops->embed_rows_bwd(&g_be, c->in[0].g, dout, c->idx, c->ints[0], c->ints[1]);
}
static void case_embed_rows(void) {
  int B = 3, D = 4, rows = 5;
  static int32_t y[] = {1, 4, 1};
  gc_case c = {.name = "label rows", .nin = 1, .fwd = er_fwd, .bwd = er_bwd,
               .ints = {B, D, rows}, .idx = y};
  c.in[0] = (gc_tensor){"table", fbuf(rows * D), fbuf(rows * D), (size_t)rows * D, 1};
  fill_normal(c.in[0].x, c.in[0].n, 13, 1.0f);
  c.out = fbuf(B * D);
  c.nout = (size_t)B * D;
  run_case(&c);
}

// ---- token gather (backward: scatter-add) ---------------------------------------------------
static void ga_fwd(gc_case *c) {
  g_be.ops->gather_tokens(&g_be, c->out, c->in[0].x, c->idx, c->ints[0], c->ints[1], c->ints[2],
                          c->ints[3]);
}
static void ga_bwd(gc_case *c, const float *dout) {
  g_be.ops->scatter_add_tokens(&g_be, c->in[0].g, dout, c->idx, c->ints[0], c->ints[1],
                               c->ints[2], c->ints[3]);
}
static void case_gather(void) {
  int B = 2, T = 5, Tk = 3, D = 4;
  static int32_t idx[] = {4, 0, 2, 1, 3, 4};
  gc_case c = {.name = "token gather/scatter", .nin = 1, .fwd = ga_fwd, .bwd = ga_bwd,
               .ints = {B, T, Tk, D}, .idx = idx};
  c.in[0] = (gc_tensor){"x", fbuf(B * T * D), fbuf(B * T * D), (size_t)B * T * D, 1};
  fill_normal(c.in[0].x, c.in[0].n, 14, 1.0f);
  c.out = fbuf(B * Tk * D);
  c.nout = (size_t)B * Tk * D;
  run_case(&c);
}

// ---- mean squared error ----------------------------------------------------------------------
static void mse_f(gc_case *c) {
  g_be.ops->mse_fwd(&g_be, c->out, c->in[0].x, c->aux[0], c->in[0].n);
}
static void mse_b(gc_case *c, const float *dout) {
  g_be.ops->mse_bwd(&g_be, c->in[0].g, c->in[0].x, c->aux[0], c->in[0].n, dout[0]);
}
static void case_mse(void) {
  size_t n = 30;
  gc_case c = {.name = "mse", .nin = 1, .fwd = mse_f, .bwd = mse_b};
  c.in[0] = (gc_tensor){"a", fbuf(n), fbuf(n), n, 0};
  fill_normal(c.in[0].x, n, 15, 1.0f);
  c.aux[0] = fbuf(n);
  fill_normal(c.aux[0], n, 16, 1.0f);
  c.out = fbuf(1);
  c.nout = 1;
  run_case(&c);
}

// ---- L2 normalisation of rows --------------------------------------------------------------
static void l2_f(gc_case *c) {
  g_be.ops->l2norm_rows_fwd(&g_be, c->out, c->aux[0], c->in[0].x, c->ints[0], c->ints[1]);
}
static void l2_b(gc_case *c, const float *dout) {
  g_be.ops->l2norm_rows_bwd(&g_be, c->in[0].g, dout, c->out, c->aux[0], c->ints[0], c->ints[1]);
}
static void case_l2norm(void) {
  int N = 4, d = 6;
  gc_case c = {.name = "l2norm rows", .nin = 1, .fwd = l2_f, .bwd = l2_b, .ints = {N, d}};
  c.in[0] = (gc_tensor){"x", fbuf(N * d), fbuf(N * d), (size_t)N * d, 0};
  fill_normal(c.in[0].x, c.in[0].n, 17, 1.0f);
  c.aux[0] = fbuf(N);
  c.out = fbuf(N * d);
  c.nout = (size_t)N * d;
  run_case(&c);
}

// ---- teacher-student cross-entropy (gradient w.r.t. the student logits) ------------------
static void dino_f(gc_case *c) {
  int N = c->ints[0], P = c->ints[1];
  g_be.ops->dino_loss_fwd(&g_be, c->out, c->aux[1], c->in[0].x, c->aux[0], c->aux[2], 0.1f,
                          0.05f, N, P);
}
static void dino_b(gc_case *c, const float *dout) {
  g_be.ops->dino_loss_bwd(&g_be, c->in[0].g, c->in[0].x, c->aux[1], 0.1f, c->ints[0],
                          c->ints[1], dout[0]);
}
static void case_dino(void) {
  int N = 3, P = 7;
  gc_case c = {.name = "dino cross-entropy", .nin = 1, .fwd = dino_f, .bwd = dino_b,
               .ints = {N, P}};
  c.in[0] = (gc_tensor){"z_s", fbuf(N * P), fbuf(N * P), (size_t)N * P, 0};
  fill_normal(c.in[0].x, c.in[0].n, 18, 0.3f);
  c.aux[0] = fbuf(N * P);  // z_t
  fill_normal(c.aux[0], (size_t)N * P, 19, 0.3f);
  c.aux[1] = fbuf(N * P);  // pt
  c.aux[2] = fbuf(P);      // center
  fill_normal(c.aux[2], (size_t)P, 20, 0.1f);
  c.out = fbuf(1);
  c.nout = 1;
  run_case(&c);
}

// ---- decoder-input merge ---------------------------------------------------------------------
static void mg_f(gc_case *c) {
  g_be.ops->merge_tokens_fwd(&g_be, c->out, c->in[0].x, c->in[1].x, c->idx, c->ints[0],
                             c->ints[1], c->ints[2], c->ints[3]);
}
static void mg_b(gc_case *c, const float *dout) {
  g_be.ops->merge_tokens_bwd(&g_be, c->in[0].g, c->in[1].g, dout, c->idx, c->ints[0],
                             c->ints[1], c->ints[2], c->ints[3]);
}
static void case_merge(void) {
  int B = 2, T = 5, Tk = 3, D = 2;
  static int32_t idx[] = {0, 2, 4, 1, 2, 3};
  gc_case c = {.name = "merge tokens", .nin = 2, .fwd = mg_f, .bwd = mg_b,
               .ints = {B, T, Tk, D}, .idx = idx};
  c.in[0] = (gc_tensor){"base", fbuf(B * T * D), fbuf(B * T * D), (size_t)B * T * D, 1};
  c.in[1] = (gc_tensor){"sub", fbuf(B * Tk * D), fbuf(B * Tk * D), (size_t)B * Tk * D, 0};
  fill_normal(c.in[0].x, c.in[0].n, 21, 1.0f);
  fill_normal(c.in[1].x, c.in[1].n, 22, 1.0f);
  c.out = fbuf(B * T * D);
  c.nout = (size_t)B * T * D;
  run_case(&c);
}

// ---- EDM denoiser output and weighted loss (with a mask) ---------------------------------------
static void edm_f(gc_case *c) {
  int B = c->ints[0];
  size_t n = (size_t)c->ints[1];
  g_be.ops->edm_loss_fwd(&g_be, c->out, c->aux[0], c->in[0].x, c->aux[1], c->aux[2], c->aux[3],
                         c->aux[3] + B, c->aux[3] + 2 * B, c->ints[2] ? c->aux[4] : NULL, B, n);
}
static void edm_b(gc_case *c, const float *dout) {
  int B = c->ints[0];
  g_be.ops->edm_loss_bwd(&g_be, c->in[0].g, c->aux[0], c->aux[2], c->aux[3] + B,
                         c->aux[3] + 2 * B, c->ints[2] ? c->aux[4] : NULL, B,
                         (size_t)c->ints[1], dout[0]);
}
static void case_edm(int masked) {
  int B = 3, n = 8;
  gc_case c = {.name = masked ? "edm loss (masked)" : "edm loss", .nin = 1, .fwd = edm_f,
               .bwd = edm_b, .ints = {B, n, masked}};
  c.in[0] = (gc_tensor){"F", fbuf(B * n), fbuf(B * n), (size_t)B * n, 0};
  fill_normal(c.in[0].x, c.in[0].n, 23, 1.0f);
  c.aux[0] = fbuf(B * n);  // D
  c.aux[1] = fbuf(B * n);  // x
  fill_normal(c.aux[1], (size_t)B * n, 24, 1.0f);
  c.aux[2] = fbuf(B * n);  // x0
  fill_normal(c.aux[2], (size_t)B * n, 25, 1.0f);
  c.aux[3] = fbuf(3 * B);  // c_skip, c_out, weight
  fill_uniform(c.aux[3], 3 * (size_t)B, 26, 0.2f, 2.0f);
  c.aux[4] = fbuf(B * n);  // mask
  for (int i = 0; i < B * n; i++) c.aux[4][i] = (i % 3) != 0;
  c.out = fbuf(1);
  c.nout = 1;
  run_case(&c);
}

// Not a gradient: the fused optimizer op must give exactly what AdamW followed by each EMA
// gives, for every choice of averages (the trainer relies on it for replicas and resumes).
static void case_adamw_ema(void) {
  const size_t n = 1001;  // odd: no vector-width assumption
  const float lr = 1e-3f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.05f, gs = 0.7f;
  float *g = fbuf(n), *init[4], *ref[4], *got[4];  // p, m, v, e; e2 starts as -e
  for (int k = 0; k < 4; k++) {
    init[k] = fbuf(n);
    ref[k] = fbuf(n);
    got[k] = fbuf(n);
    fill_normal(init[k], n, 70 + k, k == 2 ? 0.01f : 0.5f);
  }
  for (size_t i = 0; i < n; i++) init[2][i] = fabsf(init[2][i]);  // v >= 0
  fill_normal(g, n, 75, 1.0f);
  float *e2r = fbuf(n), *e2g = fbuf(n);
  for (int mode = 0; mode < 4; mode++) {  // bit 0: ema1, bit 1: ema2
    for (int k = 0; k < 4; k++) {
      memcpy(ref[k], init[k], sizeof(float) * n);
      memcpy(got[k], init[k], sizeof(float) * n);
    }
    for (size_t i = 0; i < n; i++) e2r[i] = e2g[i] = -init[3][i];
    g_be.ops->adamw(&g_be, ref[0], g, ref[1], ref[2], n, lr, b1, b2, eps, wd, 9, gs);
    if (mode & 1) g_be.ops->ema(&g_be, ref[3], ref[0], n, 0.996f);
    if (mode & 2) g_be.ops->ema(&g_be, e2r, ref[0], n, 0.9999f);
    g_be.ops->adamw_ema(&g_be, got[0], g, got[1], got[2], n, lr, b1, b2, eps, wd, 9, gs,
                        mode & 1 ? got[3] : NULL, 0.996f, mode & 2 ? e2g : NULL, 0.9999f, NULL);
    const char *names[4] = {"p", "m", "v", "ema1"};
    char what[96];
    for (int k = 0; k < 4; k++) {
      snprintf(what, sizeof what, "adamw_ema (ema1 %s, ema2 %s) %s == adamw + ema",
               mode & 1 ? "on" : "off", mode & 2 ? "on" : "off", names[k]);
      check_bitwise(what, got[k], ref[k], sizeof(float) * n);
    }
    snprintf(what, sizeof what, "adamw_ema (ema1 %s, ema2 %s) ema2 == adamw + ema",
             mode & 1 ? "on" : "off", mode & 2 ? "on" : "off");
    check_bitwise(what, e2g, e2r, sizeof(float) * n);
  }
  for (int k = 0; k < 4; k++) {
    free(init[k]);
    free(ref[k]);
    free(got[k]);
  }
  free(g);
  free(e2r);
  free(e2g);
}

int main(void) {
  sd_backend_cpu_init(&g_be, 0);
  case_adamw_ema();
  case_matmul(0);
  case_matmul(1);
  case_lnmod();
  case_attention();
  case_act("gelu (tanh)", gelu_f, gelu_b);
  case_act("silu", silu_f, silu_b);
  case_gated_residual();
  case_unpatchify(0);
  case_unpatchify(1);
  case_embed_rows();
  case_gather();
  case_mse();
  case_l2norm();
  case_dino();
  case_merge();
  case_edm(0);
  case_edm(1);
  return check_exit("test_ops_gradcheck");
}
