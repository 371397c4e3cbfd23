// The op interface: every numerical op the model and trainer use, as forward/backward pairs
// taking raw device pointers, sizes and a backend. One typedef per op signature is shared by
// the CPU and CUDA implementations (kernels/cpu/, kernels/cuda/), so a mismatch is a compile
// error. Shapes are given outermost first. Backward ops state per gradient whether they
// overwrite (=) or accumulate (+=).
//
// Storage types. Parameters, gradients, optimizer state, statistics (mean, rstd, lse, norms),
// losses and the residual stream are always fp32 (float *). The DiT's saved block activations
// (the layer-norm outputs, qkv, the attention output, the MLP's pre-activation and GELU output,
// and the two branch outputs) may be stored in bf16 to halve their memory and bandwidth, and so
// may the gradient inside the MLP (between its two backward matmuls): an argument typed
// `void *` comes with an sd_dtype that says how it is stored. An op reads such
// inputs as the fp32 values they hold, computes in fp32, and rounds each stored output once
// (to nearest even); the CPU ops do exactly this, which makes them the reference for the CUDA
// ops at either storage type.
#ifndef SD_OPS_H
#define SD_OPS_H

#include <stddef.h>
#include <stdint.h>

typedef struct sd_backend sd_backend;

typedef enum sd_dtype { SD_F32 = 0, SD_BF16 = 1 } sd_dtype;
// Bytes per element of a storage type.
static inline size_t sd_dtype_size(sd_dtype t) { return t == SD_BF16 ? 2 : 4; }
static inline const char *sd_dtype_name(sd_dtype t) { return t == SD_BF16 ? "bf16" : "fp32"; }

// ---- matmul (linear layer) -------------------------------------------------------------
// out (M, N) = inp (M, K) @ w (N, K)^T + bias (N). bias may be NULL. out is stored as out_t,
// inp as inp_t.
typedef void sd_matmul_fwd_fn(sd_backend *be, void *out, sd_dtype out_t, const void *inp,
                              sd_dtype inp_t, const float *w, const float *bias, int M, int K,
                              int N);
// dinp (M, K) = dout @ w   (+= when accumulate_dinp);  dw (N, K) += dout^T @ inp;
// dbias (N) += column sums of dout.  Any of dinp, dw, dbias may be NULL (not wanted).
// dout is stored as dout_t, inp as inp_t; dinp, dw, dbias are fp32.
typedef void sd_matmul_bwd_fn(sd_backend *be, float *dinp, float *dw, float *dbias,
                              const void *dout, sd_dtype dout_t, const void *inp,
                              sd_dtype inp_t, const float *w, int M, int K, int N,
                              int accumulate_dinp);

// ---- matmul with the MLP's GELU (tanh approximation) fused in ------------------------------
// pre (M, N) = inp (M, K) @ w (N, K)^T + bias (N);  out (M, N) = gelu(pre).
// Equal (to rounding) to matmul_fwd into pre followed by gelu_fwd. out, pre and inp are
// stored as t; out is the GELU of the unrounded pre-activation.
typedef void sd_matmul_gelu_fwd_fn(sd_backend *be, void *out, void *pre, const void *inp,
                                   sd_dtype t, const float *w, const float *bias, int M, int K,
                                   int N);
// The backward of the layer after the GELU, producing the gradient of the pre-activation:
// dinp (M, K) = (dout @ w) * gelu'(pre (M, K))  (=);  dw (N, K) += dout^T @ inp;
// dbias (N) += column sums of dout. dw and dbias may be NULL. Equal (to rounding) to
// matmul_bwd (no accumulation) followed by gelu_bwd in place. inp, pre and dinp are stored
// as t (dinp rounded once, after the GELU factor); dout is fp32.
typedef void sd_matmul_bwd_dgelu_fn(sd_backend *be, void *dinp, float *dw, float *dbias,
                                    const float *dout, const void *inp, const float *w,
                                    const void *pre, sd_dtype t, int M, int K, int N);

// ---- layer norm (no affine) fused with adaLN modulate ----------------------------------
// out (B, T, D) = LN(x)*(1 + scale[b]) + shift[b]; shift/scale rows are read at
// shift + b*mod_stride (so they can point into a (B, 6D) modulation buffer).
// mean, rstd (B, T) are saved for the backward. out is stored as out_t.
typedef void sd_lnmod_fwd_fn(sd_backend *be, void *out, sd_dtype out_t, float *mean, float *rstd,
                             const float *x, const float *shift, const float *scale,
                             int mod_stride, int B, int T, int D, float eps);
// dx (B, T, D) +=;  dshift, dscale (rows at mod_stride) +=.
typedef void sd_lnmod_bwd_fn(sd_backend *be, float *dx, float *dshift, float *dscale,
                             const float *dout, const float *x, const float *mean,
                             const float *rstd, const float *scale, int mod_stride,
                             int B, int T, int D);

// ---- multi-head attention (non-causal) -------------------------------------------------
// qkv (B, T, 3*NH*HD) with feature index which*D + h*HD + d  ->  out (B, T, NH*HD);
// lse (B, NH, T) = log-sum-exp of each scaled score row, saved for the backward.
// qkv and out are stored as t.
typedef void sd_attention_fwd_fn(sd_backend *be, void *out, float *lse, const void *qkv,
                                 sd_dtype t, int B, int T, int NH, int HD);
// dqkv (B, T, 3*NH*HD) =. qkv and out (the forward's) are stored as t; dout, dqkv are fp32.
typedef void sd_attention_bwd_fn(sd_backend *be, float *dqkv, const float *dout,
                                 const void *qkv, const void *out, sd_dtype t,
                                 const float *lse, int B, int T, int NH, int HD);

// ---- pointwise activations -------------------------------------------------------------
// out (n) = act(x); may run in place.
typedef void sd_act_fwd_fn(sd_backend *be, float *out, const float *x, size_t n);
// dx (n) = dout * act'(x); dx may alias dout.
typedef void sd_act_bwd_fn(sd_backend *be, float *dx, const float *dout, const float *x,
                           size_t n);

// ---- gated residual: out = x + gate[b] * y ---------------------------------------------
// out, x, y (B, T, D); gate rows at gate + b*gate_stride. out may alias x. y is stored as
// y_t (out and x are the fp32 residual stream).
typedef void sd_gated_residual_fwd_fn(sd_backend *be, float *out, const float *x,
                                      const void *y, sd_dtype y_t, const float *gate,
                                      int gate_stride, int B, int T, int D);
// dy (B, T, D) = dout * gate[b];  dgate (rows at gate_stride) += sum_t dout * y.
// (dx = dout, the identity, is left to the caller.) y is stored as y_t; dy is fp32.
typedef void sd_gated_residual_bwd_fn(sd_backend *be, float *dy, float *dgate,
                                      const float *dout, const void *y, sd_dtype y_t,
                                      const float *gate, int gate_stride, int B, int T, int D);

// ---- patches ---------------------------------------------------------------------------
// x (B, C, H, W) -> patches (B, T, C*p*p), T = (H/p)*(W/p), token m = row*(W/p) + col,
// patch feature (c, py, px) -> c*p*p + py*p + px (the layout of a (D, C, p, p) conv weight).
typedef void sd_patchify_fn(sd_backend *be, float *patches, const float *x,
                            int B, int C, int H, int W, int p);
// tok (B, Tk, p*p*C) with feature (py*p + px)*C + c (DiT's unpatchify order) is written to
// img (B, C, H, W) at token positions idx (B, Tk) (NULL: Tk == T, identity);
// positions not listed are set to 0 (=).
typedef void sd_unpatchify_fwd_fn(sd_backend *be, float *img, const float *tok,
                                  const int32_t *idx, int Tk, int B, int C, int H, int W,
                                  int p);
// dtok (B, Tk, p*p*C) = the entries of dimg at the listed positions.
typedef void sd_unpatchify_bwd_fn(sd_backend *be, float *dtok, const float *dimg,
                                  const int32_t *idx, int Tk, int B, int C, int H, int W,
                                  int p);

// ---- broadcast add of a (N) row to each of B rows: x (B, N) += row (N) -----------------
typedef void sd_add_rows_fn(sd_backend *be, float *x, const float *row, int B, int N);

// ---- conditioning ----------------------------------------------------------------------
// feat (B, F) = [cos(t*f_k), sin(t*f_k)], f_k = exp(-ln(max_period)*k/(F/2)), k < F/2.
typedef void sd_timestep_features_fn(sd_backend *be, float *feat, const float *t, int B,
                                     int F, float max_period);
// out (B, D) += table[y[b]] (table (rows, D)); labels outside [0, rows) are a fatal error.
typedef void sd_embed_rows_fwd_fn(sd_backend *be, float *out, const float *table,
                                  const int32_t *y, int B, int D, int rows);
// dtable[y[b]] += dout[b] (deterministic order).
typedef void sd_embed_rows_bwd_fn(sd_backend *be, float *dtable, const float *dout,
                                  const int32_t *y, int B, int D);

// ---- token gather / scatter (masking) --------------------------------------------------
// out (B, Tk, D) = x (B, T, D) at rows idx (B, Tk).
typedef void sd_gather_tokens_fn(sd_backend *be, float *out, const float *x,
                                 const int32_t *idx, int B, int T, int Tk, int D);
// x (B, T, D) at rows idx (B, Tk) += sub (B, Tk, D)  (the backward of gather).
typedef void sd_scatter_add_tokens_fn(sd_backend *be, float *x, const float *sub,
                                      const int32_t *idx, int B, int T, int Tk, int D);

// ---- losses and reductions -------------------------------------------------------------
// loss[0] = mean over n of (a - b)^2, summed in double.
typedef void sd_mse_fwd_fn(sd_backend *be, float *loss, const float *a, const float *b,
                           size_t n);
// da (n) = scale * 2 (a - b) / n.
typedef void sd_mse_bwd_fn(sd_backend *be, float *da, const float *a, const float *b,
                           size_t n, float scale);
// out[0] = sum of x^2 over n (double accumulation, fp32 result).
typedef void sd_sum_squares_fn(sd_backend *be, float *out, const float *x, size_t n);


// ---- SD-DiT projection head and discriminative loss ------------------------------------
// out (N, d) = x / max(||x||, 1e-12) row-wise; norms (N) saved (unclamped).
typedef void sd_l2norm_rows_fwd_fn(sd_backend *be, float *out, float *norms, const float *x,
                                   int N, int d);
// dx (N, d) = (dout - out * <dout, out>) / max(norm, 1e-12).
typedef void sd_l2norm_rows_bwd_fn(sd_backend *be, float *dx, const float *dout,
                                   const float *out, const float *norms, int N, int d);
// Teacher-student cross-entropy over N rows of P logits:
// pt (N, P) = softmax((z_t - center) / tau_t) (saved); loss[0] = mean over rows of
// -sum_k pt log_softmax(z_s / tau_s) (double accumulation). pt may alias z_t.
typedef void sd_dino_loss_fwd_fn(sd_backend *be, float *loss, float *pt, const float *z_s,
                                 const float *z_t, const float *center, float tau_s,
                                 float tau_t, int N, int P);
// dz_s (N, P) = scale * (softmax(z_s / tau_s) - pt) / (tau_s * N).
typedef void sd_dino_loss_bwd_fn(sd_backend *be, float *dz_s, const float *z_s,
                                 const float *pt, float tau_s, int N, int P, float scale);
// out (P) = sum over the N rows of x (N, P), each column in row order.
typedef void sd_sum_rows_fn(sd_backend *be, float *out, const float *x, int N, int P);

// ---- decoder input merge: out = base with the rows idx replaced by sub -----------------
// out, base (B, T, D); sub (B, Tk, D); idx (B, Tk).
typedef void sd_merge_tokens_fwd_fn(sd_backend *be, float *out, const float *base,
                                    const float *sub, const int32_t *idx, int B, int T,
                                    int Tk, int D);
// dsub (B, Tk, D) = dout at idx;  dbase (B, T, D) += dout with the rows idx left out.
typedef void sd_merge_tokens_bwd_fn(sd_backend *be, float *dbase, float *dsub,
                                    const float *dout, const int32_t *idx, int B, int T,
                                    int Tk, int D);

// ---- EDM ----------------------------------------------------------------------------------
// out (B, n) = x0 + sigma[b] * eps   (the noisy latent of a pair member).
typedef void sd_add_scaled_rows_fn(sd_backend *be, float *out, const float *x0,
                                   const float *eps, const float *sigma, int B, size_t n);
// out (B, n) = s[b] * x; may run in place.
typedef void sd_scale_rows_fn(sd_backend *be, float *out, const float *x, const float *s,
                              int B, size_t n);
// D (B, n) = c_skip[b] x[b] + c_out[b] F[b];  loss[0] = mean over b of
// weight[b] * (sum_i mask (D - x0)^2 / sum_i mask), mask (B, n) or NULL (all ones).
typedef void sd_edm_loss_fwd_fn(sd_backend *be, float *loss, float *D, const float *F,
                                const float *x, const float *x0, const float *c_skip,
                                const float *c_out, const float *weight, const float *mask,
                                int B, size_t n);
// dF (B, n) = scale * c_out[b] * weight[b] * 2 mask (D - x0) / (B * sum_i mask).
typedef void sd_edm_loss_bwd_fn(sd_backend *be, float *dF, const float *D, const float *x0,
                                const float *c_out, const float *weight, const float *mask,
                                int B, size_t n, float scale);

// ---- optimizer and moving averages ---------------------------------------------------------
// AdamW, bias-corrected, t = 1-based step; g is scaled by grad_scale first (clipping).
// p -= lr (mhat / (sqrt(vhat) + eps) + wd p); m, v updated in place.
typedef void sd_adamw_fn(sd_backend *be, float *p, const float *g, float *m, float *v,
                         size_t n, float lr, float beta1, float beta2, float eps, float wd,
                         long t, float grad_scale);
// AdamW as sd_adamw_fn, then in the same pass up to two moving averages of the updated p:
// ema1 (n) = decay1 * ema1 + (1 - decay1) * p when ema1 is not NULL, the same for ema2.
// Bitwise equal to sd_adamw_fn followed by sd_ema_fn on each; one read of p instead of three.
// gate (backend memory, step_gate's; NULL: always update): nothing is written unless
// gate[0] > 0, and then g is scaled by grad_scale * gate[0] (the trainer's skip and clipping,
// decided on the device).
typedef void sd_adamw_ema_fn(sd_backend *be, float *p, const float *g, float *m, float *v,
                             size_t n, float lr, float beta1, float beta2, float eps, float wd,
                             long t, float grad_scale, float *ema1, float decay1, float *ema2,
                             float decay2, const float *gate);
// y (n) += a * x.
typedef void sd_axpy_fn(sd_backend *be, float *y, const float *x, size_t n, float a);
// dst (n) = decay * dst + (1 - decay) * src.
typedef void sd_ema_fn(sd_backend *be, float *dst, const float *src, size_t n, float decay);

// ---- a step's decisions, kept on the backend (no read back to the host inside a step) ------
// The update gate from the squared global gradient norm sumsq[0]: gate[0] = 0 when the norm is
// not finite (the step is skipped: the gated AdamW writes nothing), else clip / norm when
// clip > 0 and norm > clip (clipping), else 1; gate[1] = the norm, sqrtf(sumsq[0]).
// count (3), running counters read back on log steps: a skipped step adds 1 to count[0] (all
// skipped steps) and count[1] (skipped in a row) and sets count[2] = step (1-based; exact to
// 2^24); any other step sets count[1] = 0.
typedef void sd_step_gate_fn(sd_backend *be, float *gate, float *count, const float *sumsq,
                             float clip, long step);
// x[0] = NaN when any of v (n) is not finite: a non-finite local loss reaches every rank
// through the gradient all-reduce, so that every rank skips the step.
typedef void sd_poison_nonfinite_fn(sd_backend *be, float *x, const float *v, int n);
// The DINO center, when gate[0] > 0 (else nothing is written):
// center (P) = momentum * center + (1 - momentum) * (sum (P) * inv_count).
typedef void sd_center_update_fn(sd_backend *be, float *center, const float *sum,
                                 float inv_count, float momentum, const float *gate, int P);

// ---- persistent bf16 copies of the weights ---------------------------------------------
// w (n): a whole buffer from ops->alloc holding fp32 weights that matmuls read. A backend that
// multiplies in bf16 may keep a bf16 copy of it (the CUDA backend does; the CPU backend does
// nothing). Results are bitwise those without the copy. The contract:
//   - the owner of the buffer registers it once, after alloc (the trainer: the student's and
//     the teacher's flat parameters, src/objective/sddit.c); ops->free of w drops the copy;
//   - adamw and adamw_ema write the copies of p and of the EMA outputs that lie in a region
//     in the same pass as the fp32 values (a sub-range of a region is fine);
//   - every other write through the ops (to_device, copy, memset, ema, axpy, and any compute
//     op whose output overlaps a region) marks the region stale by itself: nothing to call;
//   - a write the backend cannot see (an NCCL collective on the buffer, a kernel or copy
//     outside these ops) must be followed by weights_changed on what it wrote, before the
//     next op that reads w (the trainer: after the teacher broadcast, sd_sddit_teacher_wait);
//   - a matmul that finds its weight in a stale region converts the region once, then reads
//     the copy; a weight outside every region is rounded per call.
typedef void sd_weights_register_fn(sd_backend *be, const float *w, size_t n);
// Something outside the ops (an NCCL broadcast, say) wrote w (n): a copy covering it is stale.
typedef void sd_weights_changed_fn(sd_backend *be, const float *w, size_t n);

// ---- memory ----------------------------------------------------------------------------
typedef void *sd_alloc_fn(sd_backend *be, size_t bytes);
typedef void sd_free_fn(sd_backend *be, void *p);
typedef void sd_memset_fn(sd_backend *be, void *p, int value, size_t bytes);
typedef void sd_copy_fn(sd_backend *be, void *dst, const void *src, size_t bytes);
typedef void sd_sync_fn(sd_backend *be);

// The table of ops a backend provides.
typedef struct sd_ops {
  sd_matmul_fwd_fn *matmul_fwd;
  sd_matmul_bwd_fn *matmul_bwd;
  // The same products with fp32 inputs whatever the backend's matmul precision, for the few
  // whose rounding error is amplified downstream: the projection head's prototype logits feed
  // a softmax at temperature tau_t = 0.04, which would multiply bf16's input error by 25.
  // Their inputs (inp, dout) must be stored in fp32 (the CUDA backend refuses bf16 ones).
  sd_matmul_fwd_fn *matmul_fwd_fp32;
  sd_matmul_bwd_fn *matmul_bwd_fp32;
  sd_matmul_gelu_fwd_fn *matmul_gelu_fwd;
  sd_matmul_bwd_dgelu_fn *matmul_bwd_dgelu;
  sd_lnmod_fwd_fn *lnmod_fwd;
  sd_lnmod_bwd_fn *lnmod_bwd;
  sd_attention_fwd_fn *attention_fwd;
  sd_attention_bwd_fn *attention_bwd;
  sd_act_fwd_fn *gelu_fwd;
  sd_act_bwd_fn *gelu_bwd;
  sd_act_fwd_fn *silu_fwd;
  sd_act_bwd_fn *silu_bwd;
  sd_gated_residual_fwd_fn *gated_residual_fwd;
  sd_gated_residual_bwd_fn *gated_residual_bwd;
  sd_patchify_fn *patchify;
  sd_unpatchify_fwd_fn *unpatchify_fwd;
  sd_unpatchify_bwd_fn *unpatchify_bwd;
  sd_add_rows_fn *add_rows;
  sd_timestep_features_fn *timestep_features;
  sd_embed_rows_fwd_fn *embed_rows_fwd;
  sd_embed_rows_bwd_fn *embed_rows_bwd;
  sd_gather_tokens_fn *gather_tokens;
  sd_scatter_add_tokens_fn *scatter_add_tokens;
  sd_mse_fwd_fn *mse_fwd;
  sd_mse_bwd_fn *mse_bwd;
  sd_sum_squares_fn *sum_squares;
  sd_l2norm_rows_fwd_fn *l2norm_rows_fwd;
  sd_l2norm_rows_bwd_fn *l2norm_rows_bwd;
  sd_dino_loss_fwd_fn *dino_loss_fwd;
  sd_dino_loss_bwd_fn *dino_loss_bwd;
  sd_sum_rows_fn *sum_rows;
  sd_merge_tokens_fwd_fn *merge_tokens_fwd;
  sd_merge_tokens_bwd_fn *merge_tokens_bwd;
  sd_add_scaled_rows_fn *add_scaled_rows;
  sd_scale_rows_fn *scale_rows;
  sd_edm_loss_fwd_fn *edm_loss_fwd;
  sd_edm_loss_bwd_fn *edm_loss_bwd;
  sd_adamw_fn *adamw;
  sd_ema_fn *ema;
  sd_adamw_ema_fn *adamw_ema;
  sd_axpy_fn *axpy;
  sd_step_gate_fn *step_gate;
  sd_poison_nonfinite_fn *poison_nonfinite;
  sd_center_update_fn *center_update;
  sd_weights_register_fn *weights_register;
  sd_weights_changed_fn *weights_changed;
  sd_alloc_fn *alloc;
  sd_free_fn *free;
  sd_memset_fn *memset;
  sd_copy_fn *to_device;    // host -> backend memory
  sd_copy_fn *to_host;      // backend -> host memory
  sd_copy_fn *copy;         // backend -> backend memory
  sd_sync_fn *sync;
} sd_ops;

// A backend: its op table plus private state (threads, streams, handles, workspace).
struct sd_backend {
  const char *name;   // "cpu" or "cuda"
  const sd_ops *ops;
  int num_threads;    // CPU threads used by the backend (cpu), 0 = default
  // How models created on this backend store their saved activations (see the top of this
  // file): SD_F32 on the CPU; a CUDA backend follows its precision (bf16 in "bf16").
  sd_dtype act_dtype;
  void *impl;         // backend-private state
};

// Backend constructors. Each returns 0 on success or a negative value with a message in
// errbuf (e.g. "no CUDA device").
int sd_backend_cpu_init(sd_backend *be, int num_threads);
void sd_backend_cpu_destroy(sd_backend *be);
int sd_backend_cuda_init(sd_backend *be, int device, char *errbuf, size_t errlen);
void sd_backend_cuda_destroy(sd_backend *be);
// The cudaStream_t every op of a CUDA backend runs on (NULL for other backends).
void *sd_backend_cuda_stream(sd_backend *be);
// Chooses how a CUDA backend's matmuls multiply: "fp32" (fp32 inputs, fp32 accumulation, no
// TF32) or "bf16" (inputs in bf16, fp32 accumulation; the saved activations stored in bf16,
// be->act_dtype = SD_BF16; the default, unless the environment sets SD_CUDA_PRECISION=fp32). Returns 0, or -1 with a message in errbuf
// (unknown name, not a CUDA backend, or a build without CUDA).
int sd_backend_cuda_set_precision(sd_backend *be, const char *name /* "fp32" or "bf16" */,
                                  char *errbuf, size_t errlen);
// What a CUDA backend runs on and what it has chosen so far, a few lines into buf: the device,
// runtime and driver, the precision and activation storage; the matmul library, its epilogues
// and the fallbacks taken; the attention kernels per head dimension (tensor cores or fp32
// tiles, and whether a cross-check set the tensor-core kernels aside). 0, or -1 when be is not
// a CUDA backend (buf says so).
int sd_backend_cuda_describe(sd_backend *be, char *buf, size_t len);

#endif
