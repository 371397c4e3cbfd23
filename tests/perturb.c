// A CPU backend with one perturbed op (see perturb.h). Each wrapper calls the real CPU op and
// scales what it wrote.
#include "perturb.h"
#include "bf16.h"
#include "cpu_ops.h"

#include <string.h>

static sd_ops g_ops;

static void scale(float *x, size_t n) {
  if (!x) return;
  for (size_t i = 0; i < n; i++) x[i] *= 1.0f + PERTURB_EPS;
}
// The same for an output stored as t (a bf16 value is scaled and rounded again).
static void scale_t(void *x, sd_dtype t, size_t n) {
  if (!x) return;
  if (t == SD_F32) {
    scale(x, n);
    return;
  }
  uint16_t *h = x;
  for (size_t i = 0; i < n; i++)
    h[i] = sd_bf16_from_float(sd_bf16_to_float(h[i]) * (1.0f + PERTURB_EPS));
}

static void p_matmul_fwd(sd_backend *be, void *out, sd_dtype out_t, const void *inp,
                         sd_dtype inp_t, const float *w, const float *bias, int M, int K,
                         int N) {
  sd_cpu_matmul_fwd(be, out, out_t, inp, inp_t, w, bias, M, K, N);
  scale_t(out, out_t, (size_t)M * N);
}
static void p_matmul_bwd(sd_backend *be, float *dinp, float *dw, float *dbias, const void *dout,
                         sd_dtype dout_t, const void *inp, sd_dtype inp_t, const float *w, int M,
                         int K, int N, int acc) {
  sd_cpu_matmul_bwd(be, dinp, dw, dbias, dout, dout_t, inp, inp_t, w, M, K, N, acc);
  scale(dw, (size_t)N * K);
}
static void p_lnmod_fwd(sd_backend *be, void *out, sd_dtype out_t, float *mean, float *rstd,
                        const float *x, const float *shift, const float *sc, int ms, int B,
                        int T, int D, float eps) {
  sd_cpu_lnmod_fwd(be, out, out_t, mean, rstd, x, shift, sc, ms, B, T, D, eps);
  scale_t(out, out_t, (size_t)B * T * D);
}
static void p_lnmod_bwd(sd_backend *be, float *dx, float *dshift, float *dscale,
                        const float *dout, const float *x, const float *mean, const float *rstd,
                        const float *sc, int ms, int B, int T, int D) {
  sd_cpu_lnmod_bwd(be, dx, dshift, dscale, dout, x, mean, rstd, sc, ms, B, T, D);
  scale(dx, (size_t)B * T * D);
}
static void p_attention_fwd(sd_backend *be, void *out, float *lse, const void *qkv, sd_dtype t,
                            int B, int T, int NH, int HD) {
  sd_cpu_attention_fwd(be, out, lse, qkv, t, B, T, NH, HD);
  scale_t(out, t, (size_t)B * T * NH * HD);
}
static void p_attention_bwd(sd_backend *be, float *dqkv, const float *dout, const void *qkv,
                            const void *out, sd_dtype t, const float *lse, int B, int T, int NH,
                            int HD) {
  sd_cpu_attention_bwd(be, dqkv, dout, qkv, out, t, lse, B, T, NH, HD);
  scale(dqkv, (size_t)B * T * 3 * NH * HD);
}
static void p_gelu_fwd(sd_backend *be, float *out, const float *x, size_t n) {
  sd_cpu_gelu_fwd(be, out, x, n);
  scale(out, n);
}
static void p_gelu_bwd(sd_backend *be, float *dx, const float *dout, const float *x, size_t n) {
  sd_cpu_gelu_bwd(be, dx, dout, x, n);
  scale(dx, n);
}
static void p_silu_fwd(sd_backend *be, float *out, const float *x, size_t n) {
  sd_cpu_silu_fwd(be, out, x, n);
  scale(out, n);
}
static void p_silu_bwd(sd_backend *be, float *dx, const float *dout, const float *x, size_t n) {
  sd_cpu_silu_bwd(be, dx, dout, x, n);
  scale(dx, n);
}
static void p_gres_fwd(sd_backend *be, float *out, const float *x, const void *y, sd_dtype y_t,
                       const float *gate, int gs, int B, int T, int D) {
  sd_cpu_gated_residual_fwd(be, out, x, y, y_t, gate, gs, B, T, D);
  scale(out, (size_t)B * T * D);
}
static void p_gres_bwd(sd_backend *be, float *dy, float *dgate, const float *dout,
                       const void *y, sd_dtype y_t, const float *gate, int gs, int B, int T,
                       int D) {
  sd_cpu_gated_residual_bwd(be, dy, dgate, dout, y, y_t, gate, gs, B, T, D);
  scale(dy, (size_t)B * T * D);
}
static void p_patchify(sd_backend *be, float *patches, const float *x, int B, int C, int H,
                       int W, int p) {
  sd_cpu_patchify(be, patches, x, B, C, H, W, p);
  scale(patches, (size_t)B * C * H * W);
}
static void p_unpatchify_fwd(sd_backend *be, float *img, const float *tok, const int32_t *idx,
                             int Tk, int B, int C, int H, int W, int p) {
  sd_cpu_unpatchify_fwd(be, img, tok, idx, Tk, B, C, H, W, p);
  scale(img, (size_t)B * C * H * W);
}
static void p_unpatchify_bwd(sd_backend *be, float *dtok, const float *dimg, const int32_t *idx,
                             int Tk, int B, int C, int H, int W, int p) {
  sd_cpu_unpatchify_bwd(be, dtok, dimg, idx, Tk, B, C, H, W, p);
  scale(dtok, (size_t)B * Tk * p * p * C);
}
static void p_add_rows(sd_backend *be, float *x, const float *row, int B, int N) {
  sd_cpu_add_rows(be, x, row, B, N);
  scale(x, (size_t)B * N);
}
static void p_tfeat(sd_backend *be, float *feat, const float *t, int B, int F, float mp) {
  sd_cpu_timestep_features(be, feat, t, B, F, mp);
  scale(feat, (size_t)B * F);
}
static void p_embed_fwd(sd_backend *be, float *out, const float *table, const int32_t *y, int B,
                        int D, int rows) {
  sd_cpu_embed_rows_fwd(be, out, table, y, B, D, rows);
  scale(out, (size_t)B * D);
}
static void p_embed_bwd(sd_backend *be, float *dtable, const float *dout, const int32_t *y,
                        int B, int D) {
  sd_cpu_embed_rows_bwd(be, dtable, dout, y, B, D);
  for (int b = 0; b < B; b++) scale(dtable + (size_t)y[b] * D, (size_t)D);
}
static void p_gather(sd_backend *be, float *out, const float *x, const int32_t *idx, int B,
                     int T, int Tk, int D) {
  sd_cpu_gather_tokens(be, out, x, idx, B, T, Tk, D);
  scale(out, (size_t)B * Tk * D);
}
static void p_scatter(sd_backend *be, float *x, const float *sub, const int32_t *idx, int B,
                      int T, int Tk, int D) {
  sd_cpu_scatter_add_tokens(be, x, sub, idx, B, T, Tk, D);
  scale(x, (size_t)B * T * D);
}

static const char *const k_names[] = {
    "matmul_fwd",
    "matmul_bwd",
    "lnmod_fwd",
    "lnmod_bwd",
    "attention_fwd",
    "attention_bwd",
    "gelu_fwd",
    "gelu_bwd",
    "silu_fwd",
    "silu_bwd",
    "gated_residual_fwd",
    "gated_residual_bwd",
    "patchify",
    "unpatchify_fwd",
    "unpatchify_bwd",
    "add_rows",
    "timestep_features",
    "embed_rows_fwd",
    "embed_rows_bwd",
    "gather_tokens",
    "scatter_add_tokens"};

// Replaces op k of ops by its perturbed wrapper.
static void install(sd_ops *ops, int k) {
  switch (k) {
    case 0: ops->matmul_fwd = p_matmul_fwd; break;
    case 1: ops->matmul_bwd = p_matmul_bwd; break;
    case 2: ops->lnmod_fwd = p_lnmod_fwd; break;
    case 3: ops->lnmod_bwd = p_lnmod_bwd; break;
    case 4: ops->attention_fwd = p_attention_fwd; break;
    case 5: ops->attention_bwd = p_attention_bwd; break;
    case 6: ops->gelu_fwd = p_gelu_fwd; break;
    case 7: ops->gelu_bwd = p_gelu_bwd; break;
    case 8: ops->silu_fwd = p_silu_fwd; break;
    case 9: ops->silu_bwd = p_silu_bwd; break;
    case 10: ops->gated_residual_fwd = p_gres_fwd; break;
    case 11: ops->gated_residual_bwd = p_gres_bwd; break;
    case 12: ops->patchify = p_patchify; break;
    case 13: ops->unpatchify_fwd = p_unpatchify_fwd; break;
    case 14: ops->unpatchify_bwd = p_unpatchify_bwd; break;
    case 15: ops->add_rows = p_add_rows; break;
    case 16: ops->timestep_features = p_tfeat; break;
    case 17: ops->embed_rows_fwd = p_embed_fwd; break;
    case 18: ops->embed_rows_bwd = p_embed_bwd; break;
    case 19: ops->gather_tokens = p_gather; break;
    case 20: ops->scatter_add_tokens = p_scatter; break;
    default: break;
  }
}

int perturb_count(void) { return (int)(sizeof k_names / sizeof k_names[0]); }
const char *perturb_name(int k) { return k_names[k]; }

void perturb_backend(sd_backend *be, int k) {
  sd_backend_cpu_init(be, 0);
  g_ops = *be->ops;
  install(&g_ops, k);
  be->ops = &g_ops;
}
