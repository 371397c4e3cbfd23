// Stale marking for the bf16 weight copies (weights_bf16.cu) on every op that writes backend
// memory: the CUDA op table's compute ops are wrapped so that, after the op is queued, each of
// its outputs (pointer and extent in bytes, from the op's shape arguments as ops.h gives them)
// goes to sd_cuda_weights_written, which marks any registered region it overlaps stale. A
// write into registered weights by any op is then seen by the next matmul, which refreshes
// the copy first: a stale copy is never read.
//
// Marked after the op is queued, not before: an op that reads a copy (a matmul whose weight
// lies in a region) may refresh it itself, and the write that follows in stream order must
// leave the region stale. The memory ops (memset, to_device, copy), ema and axpy mark their
// destination themselves (backend_cuda.cu, loss_optim.cu); adamw and adamw_ema write the
// copies of p and the EMAs in the same pass (or mark them stale), so only m and v are marked
// here. An output whose extent the op cannot know (embed_rows_bwd's table: rows indexed by
// labels) is marked from its first element: a region is a whole buffer from ops->alloc, and
// no op writes outside the buffer its output pointer lies in.
//
// Cost: one look-up over the (few) registered regions per output, on the host.
#include "cuda_internal.h"

namespace {

sd_ops real;  // the entries being wrapped (zero-initialised, so no initialisation order)

void mark(sd_backend *be, const void *p, size_t bytes) {
  if (p && bytes) sd_cuda_weights_written(be, p, bytes);
}

size_t f32s(size_t n) { return n * sizeof(float); }
size_t elems(size_t a, size_t b, size_t c = 1, size_t d = 1) { return a * b * c * d; }
// rows at a stride: B rows of D floats, row b at b * stride
size_t strided(int B, int stride, int D) {
  return B > 0 && D > 0 ? f32s((size_t)(B - 1) * (size_t)stride + (size_t)D) : 0;
}

void matmul_fwd(sd_backend *be, void *out, sd_dtype out_t, const void *inp, sd_dtype inp_t,
                const float *w, const float *bias, int M, int K, int N) {
  real.matmul_fwd(be, out, out_t, inp, inp_t, w, bias, M, K, N);
  mark(be, out, elems(M, N) * sd_dtype_size(out_t));
}
void matmul_fwd_fp32(sd_backend *be, void *out, sd_dtype out_t, const void *inp,
                     sd_dtype inp_t, const float *w, const float *bias, int M, int K, int N) {
  real.matmul_fwd_fp32(be, out, out_t, inp, inp_t, w, bias, M, K, N);
  mark(be, out, elems(M, N) * sd_dtype_size(out_t));
}
void matmul_bwd(sd_backend *be, float *dinp, float *dw, float *dbias, const void *dout,
                sd_dtype dout_t, const void *inp, sd_dtype inp_t, const float *w, int M, int K,
                int N, int accumulate_dinp) {
  real.matmul_bwd(be, dinp, dw, dbias, dout, dout_t, inp, inp_t, w, M, K, N, accumulate_dinp);
  mark(be, dinp, f32s(elems(M, K)));
  mark(be, dw, f32s(elems(N, K)));
  mark(be, dbias, f32s(N));
}
void matmul_bwd_fp32(sd_backend *be, float *dinp, float *dw, float *dbias, const void *dout,
                     sd_dtype dout_t, const void *inp, sd_dtype inp_t, const float *w, int M,
                     int K, int N, int accumulate_dinp) {
  real.matmul_bwd_fp32(be, dinp, dw, dbias, dout, dout_t, inp, inp_t, w, M, K, N,
                       accumulate_dinp);
  mark(be, dinp, f32s(elems(M, K)));
  mark(be, dw, f32s(elems(N, K)));
  mark(be, dbias, f32s(N));
}
void matmul_gelu_fwd(sd_backend *be, void *out, void *pre, const void *inp, sd_dtype t,
                     const float *w, const float *bias, int M, int K, int N) {
  real.matmul_gelu_fwd(be, out, pre, inp, t, w, bias, M, K, N);
  mark(be, out, elems(M, N) * sd_dtype_size(t));
  mark(be, pre, elems(M, N) * sd_dtype_size(t));
}
void matmul_bwd_dgelu(sd_backend *be, void *dinp, float *dw, float *dbias, const float *dout,
                      const void *inp, const float *w, const void *pre, sd_dtype t, int M,
                      int K, int N) {
  real.matmul_bwd_dgelu(be, dinp, dw, dbias, dout, inp, w, pre, t, M, K, N);
  mark(be, dinp, elems(M, K) * sd_dtype_size(t));
  mark(be, dw, f32s(elems(N, K)));
  mark(be, dbias, f32s(N));
}

void lnmod_fwd(sd_backend *be, void *out, sd_dtype out_t, float *mean, float *rstd,
               const float *x, const float *shift, const float *scale, int mod_stride, int B,
               int T, int D, float eps) {
  real.lnmod_fwd(be, out, out_t, mean, rstd, x, shift, scale, mod_stride, B, T, D, eps);
  mark(be, out, elems(B, T, D) * sd_dtype_size(out_t));
  mark(be, mean, f32s(elems(B, T)));
  mark(be, rstd, f32s(elems(B, T)));
}
void lnmod_bwd(sd_backend *be, float *dx, float *dshift, float *dscale, const float *dout,
               const float *x, const float *mean, const float *rstd, const float *scale,
               int mod_stride, int B, int T, int D) {
  real.lnmod_bwd(be, dx, dshift, dscale, dout, x, mean, rstd, scale, mod_stride, B, T, D);
  mark(be, dx, f32s(elems(B, T, D)));
  mark(be, dshift, strided(B, mod_stride, D));
  mark(be, dscale, strided(B, mod_stride, D));
}

void attention_fwd(sd_backend *be, void *out, float *lse, const void *qkv, sd_dtype t, int B,
                   int T, int NH, int HD) {
  real.attention_fwd(be, out, lse, qkv, t, B, T, NH, HD);
  mark(be, out, elems(B, T, NH, HD) * sd_dtype_size(t));
  mark(be, lse, f32s(elems(B, NH, T)));
}
void attention_bwd(sd_backend *be, float *dqkv, const float *dout, const void *qkv,
                   const void *out, sd_dtype t, const float *lse, int B, int T, int NH,
                   int HD) {
  real.attention_bwd(be, dqkv, dout, qkv, out, t, lse, B, T, NH, HD);
  mark(be, dqkv, f32s(3 * elems(B, T, NH, HD)));
}

void gelu_fwd(sd_backend *be, float *out, const float *x, size_t n) {
  real.gelu_fwd(be, out, x, n);
  mark(be, out, f32s(n));
}
void gelu_bwd(sd_backend *be, float *dx, const float *dout, const float *x, size_t n) {
  real.gelu_bwd(be, dx, dout, x, n);
  mark(be, dx, f32s(n));
}
void silu_fwd(sd_backend *be, float *out, const float *x, size_t n) {
  real.silu_fwd(be, out, x, n);
  mark(be, out, f32s(n));
}
void silu_bwd(sd_backend *be, float *dx, const float *dout, const float *x, size_t n) {
  real.silu_bwd(be, dx, dout, x, n);
  mark(be, dx, f32s(n));
}

void gated_residual_fwd(sd_backend *be, float *out, const float *x, const void *y,
                        sd_dtype y_t, const float *gate, int gate_stride, int B, int T, int D) {
  real.gated_residual_fwd(be, out, x, y, y_t, gate, gate_stride, B, T, D);
  mark(be, out, f32s(elems(B, T, D)));
}
void gated_residual_bwd(sd_backend *be, float *dy, float *dgate, const float *dout,
                        const void *y, sd_dtype y_t, const float *gate, int gate_stride, int B,
                        int T, int D) {
  real.gated_residual_bwd(be, dy, dgate, dout, y, y_t, gate, gate_stride, B, T, D);
  mark(be, dy, f32s(elems(B, T, D)));
  mark(be, dgate, strided(B, gate_stride, D));
}

void patchify(sd_backend *be, float *patches, const float *x, int B, int C, int H, int W,
              int p) {
  real.patchify(be, patches, x, B, C, H, W, p);
  mark(be, patches, f32s(elems(B, C, H, W)));  // T * C*p*p = C*H*W per sample
}
void unpatchify_fwd(sd_backend *be, float *img, const float *tok, const int32_t *idx, int Tk,
                    int B, int C, int H, int W, int p) {
  real.unpatchify_fwd(be, img, tok, idx, Tk, B, C, H, W, p);
  mark(be, img, f32s(elems(B, C, H, W)));
}
void unpatchify_bwd(sd_backend *be, float *dtok, const float *dimg, const int32_t *idx, int Tk,
                    int B, int C, int H, int W, int p) {
  real.unpatchify_bwd(be, dtok, dimg, idx, Tk, B, C, H, W, p);
  mark(be, dtok, f32s(elems(B, Tk, elems(p, p, C))));
}

void add_rows(sd_backend *be, float *x, const float *row, int B, int N) {
  real.add_rows(be, x, row, B, N);
  mark(be, x, f32s(elems(B, N)));
}
void timestep_features(sd_backend *be, float *feat, const float *t, int B, int F,
                       float max_period) {
  real.timestep_features(be, feat, t, B, F, max_period);
  mark(be, feat, f32s(elems(B, F)));
}
void embed_rows_fwd(sd_backend *be, float *out, const float *table, const int32_t *y, int B,
                    int D, int rows) {
  real.embed_rows_fwd(be, out, table, y, B, D, rows);
  mark(be, out, f32s(elems(B, D)));
}
void embed_rows_bwd(sd_backend *be, float *dtable, const float *dout, const int32_t *y, int B,
                    int D) {
  real.embed_rows_bwd(be, dtable, dout, y, B, D);
  mark(be, dtable, f32s(D));  // the rows written are unknown here: see the top of the file
}
void gather_tokens(sd_backend *be, float *out, const float *x, const int32_t *idx, int B, int T,
                   int Tk, int D) {
  real.gather_tokens(be, out, x, idx, B, T, Tk, D);
  mark(be, out, f32s(elems(B, Tk, D)));
}
void scatter_add_tokens(sd_backend *be, float *x, const float *sub, const int32_t *idx, int B,
                        int T, int Tk, int D) {
  real.scatter_add_tokens(be, x, sub, idx, B, T, Tk, D);
  mark(be, x, f32s(elems(B, T, D)));
}

void mse_fwd(sd_backend *be, float *loss, const float *a, const float *b, size_t n) {
  real.mse_fwd(be, loss, a, b, n);
  mark(be, loss, f32s(1));
}
void mse_bwd(sd_backend *be, float *da, const float *a, const float *b, size_t n, float scale) {
  real.mse_bwd(be, da, a, b, n, scale);
  mark(be, da, f32s(n));
}
void sum_squares(sd_backend *be, float *out, const float *x, size_t n) {
  real.sum_squares(be, out, x, n);
  mark(be, out, f32s(1));
}
void l2norm_rows_fwd(sd_backend *be, float *out, float *norms, const float *x, int N, int d) {
  real.l2norm_rows_fwd(be, out, norms, x, N, d);
  mark(be, out, f32s(elems(N, d)));
  mark(be, norms, f32s(N));
}
void l2norm_rows_bwd(sd_backend *be, float *dx, const float *dout, const float *out,
                     const float *norms, int N, int d) {
  real.l2norm_rows_bwd(be, dx, dout, out, norms, N, d);
  mark(be, dx, f32s(elems(N, d)));
}
void dino_loss_fwd(sd_backend *be, float *loss, float *pt, const float *z_s, const float *z_t,
                   const float *center, float tau_s, float tau_t, int N, int P) {
  real.dino_loss_fwd(be, loss, pt, z_s, z_t, center, tau_s, tau_t, N, P);
  mark(be, loss, f32s(1));
  mark(be, pt, f32s(elems(N, P)));
}
void dino_loss_bwd(sd_backend *be, float *dz_s, const float *z_s, const float *pt, float tau_s,
                   int N, int P, float scale) {
  real.dino_loss_bwd(be, dz_s, z_s, pt, tau_s, N, P, scale);
  mark(be, dz_s, f32s(elems(N, P)));
}
void sum_rows(sd_backend *be, float *out, const float *x, int N, int P) {
  real.sum_rows(be, out, x, N, P);
  mark(be, out, f32s(P));
}
void merge_tokens_fwd(sd_backend *be, float *out, const float *base, const float *sub,
                      const int32_t *idx, int B, int T, int Tk, int D) {
  real.merge_tokens_fwd(be, out, base, sub, idx, B, T, Tk, D);
  mark(be, out, f32s(elems(B, T, D)));
}
void merge_tokens_bwd(sd_backend *be, float *dbase, float *dsub, const float *dout,
                      const int32_t *idx, int B, int T, int Tk, int D) {
  real.merge_tokens_bwd(be, dbase, dsub, dout, idx, B, T, Tk, D);
  mark(be, dbase, f32s(elems(B, T, D)));
  mark(be, dsub, f32s(elems(B, Tk, D)));
}

void add_scaled_rows(sd_backend *be, float *out, const float *x0, const float *eps,
                     const float *sigma, int B, size_t n) {
  real.add_scaled_rows(be, out, x0, eps, sigma, B, n);
  mark(be, out, f32s(elems(B, n)));
}
void scale_rows(sd_backend *be, float *out, const float *x, const float *s, int B, size_t n) {
  real.scale_rows(be, out, x, s, B, n);
  mark(be, out, f32s(elems(B, n)));
}
void edm_loss_fwd(sd_backend *be, float *loss, float *D, const float *F, const float *x,
                  const float *x0, const float *c_skip, const float *c_out, const float *weight,
                  const float *mask, int B, size_t n) {
  real.edm_loss_fwd(be, loss, D, F, x, x0, c_skip, c_out, weight, mask, B, n);
  mark(be, loss, f32s(1));
  mark(be, D, f32s(elems(B, n)));
}
void edm_loss_bwd(sd_backend *be, float *dF, const float *D, const float *x0,
                  const float *c_out, const float *weight, const float *mask, int B, size_t n,
                  float scale) {
  real.edm_loss_bwd(be, dF, D, x0, c_out, weight, mask, B, n, scale);
  mark(be, dF, f32s(elems(B, n)));
}

void adamw(sd_backend *be, float *p, const float *g, float *m, float *v, size_t n, float lr,
           float beta1, float beta2, float eps, float wd, long t, float grad_scale) {
  real.adamw(be, p, g, m, v, n, lr, beta1, beta2, eps, wd, t, grad_scale);
  mark(be, m, f32s(n));  // (p: its copy is written in the same pass, or marked stale)
  mark(be, v, f32s(n));
}
void adamw_ema(sd_backend *be, float *p, const float *g, float *m, float *v, size_t n,
               float lr, float beta1, float beta2, float eps, float wd, long t,
               float grad_scale, float *ema1, float decay1, float *ema2, float decay2,
               const float *gate) {
  real.adamw_ema(be, p, g, m, v, n, lr, beta1, beta2, eps, wd, t, grad_scale, ema1, decay1,
                 ema2, decay2, gate);
  mark(be, m, f32s(n));  // (p, ema1, ema2: as adamw's p)
  mark(be, v, f32s(n));
}

void step_gate(sd_backend *be, float *gate, float *count, const float *sumsq, float clip,
               long step) {
  real.step_gate(be, gate, count, sumsq, clip, step);
  mark(be, gate, f32s(2));
  mark(be, count, f32s(3));
}
void poison_nonfinite(sd_backend *be, float *x, const float *v, int n) {
  real.poison_nonfinite(be, x, v, n);
  mark(be, x, f32s(1));
}
void center_update(sd_backend *be, float *center, const float *sum, float inv_count,
                   float momentum, const float *gate, int P) {
  real.center_update(be, center, sum, inv_count, momentum, gate, P);
  mark(be, center, f32s(P));
}

}  // namespace

// (a new entry in sd_ops must be wrapped above when it writes backend memory)
static_assert(sizeof(sd_ops) == 55 * sizeof(void *), "sd_ops changed: update weights_guard.cu");

sd_ops sd_cuda_weights_guarded(sd_ops o) {
  real = o;
  o.matmul_fwd = matmul_fwd;
  o.matmul_bwd = matmul_bwd;
  o.matmul_fwd_fp32 = matmul_fwd_fp32;
  o.matmul_bwd_fp32 = matmul_bwd_fp32;
  o.matmul_gelu_fwd = matmul_gelu_fwd;
  o.matmul_bwd_dgelu = matmul_bwd_dgelu;
  o.lnmod_fwd = lnmod_fwd;
  o.lnmod_bwd = lnmod_bwd;
  o.attention_fwd = attention_fwd;
  o.attention_bwd = attention_bwd;
  o.gelu_fwd = gelu_fwd;
  o.gelu_bwd = gelu_bwd;
  o.silu_fwd = silu_fwd;
  o.silu_bwd = silu_bwd;
  o.gated_residual_fwd = gated_residual_fwd;
  o.gated_residual_bwd = gated_residual_bwd;
  o.patchify = patchify;
  o.unpatchify_fwd = unpatchify_fwd;
  o.unpatchify_bwd = unpatchify_bwd;
  o.add_rows = add_rows;
  o.timestep_features = timestep_features;
  o.embed_rows_fwd = embed_rows_fwd;
  o.embed_rows_bwd = embed_rows_bwd;
  o.gather_tokens = gather_tokens;
  o.scatter_add_tokens = scatter_add_tokens;
  o.mse_fwd = mse_fwd;
  o.mse_bwd = mse_bwd;
  o.sum_squares = sum_squares;
  o.l2norm_rows_fwd = l2norm_rows_fwd;
  o.l2norm_rows_bwd = l2norm_rows_bwd;
  o.dino_loss_fwd = dino_loss_fwd;
  o.dino_loss_bwd = dino_loss_bwd;
  o.sum_rows = sum_rows;
  o.merge_tokens_fwd = merge_tokens_fwd;
  o.merge_tokens_bwd = merge_tokens_bwd;
  o.add_scaled_rows = add_scaled_rows;
  o.scale_rows = scale_rows;
  o.edm_loss_fwd = edm_loss_fwd;
  o.edm_loss_bwd = edm_loss_bwd;
  o.adamw = adamw;
  o.adamw_ema = adamw_ema;
  o.step_gate = step_gate;
  o.poison_nonfinite = poison_nonfinite;
  o.center_update = center_update;
  return o;
}
