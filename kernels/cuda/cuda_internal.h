// Shared by the CUDA backend's files: the backend state (stream, cuBLASLt handle, workspace,
// precision), error checking that names the call site, launch helpers, and the declaration of
// every CUDA op. Each op has exactly the semantics of the CPU op of the same name in
// kernels/cpu/ (see ops.h); only the rounding differs, within the limits of
// kernels/tolerances_gpu.h.
#ifndef SD_CUDA_INTERNAL_H
#define SD_CUDA_INTERNAL_H

extern "C" {
#include "ops.h"
}

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

// How matmuls multiply: fp32 inputs (SD_PREC_FP32), or inputs rounded to bf16 with fp32
// accumulation and fp32 outputs (SD_PREC_BF16, the default on GPUs). Chosen at run time.
enum sd_cuda_precision { SD_PREC_FP32 = 0, SD_PREC_BF16 = 1 };

typedef struct sd_cuda_state {
  int device;
  cudaStream_t stream;          // every op runs on this stream, in order
  cublasLtHandle_t lt;
  void *lt_workspace;           // cuBLASLt workspace
  size_t lt_workspace_bytes;
  void *scratch;                // general scratch (bf16 copies of matmul inputs, partial sums)
  size_t scratch_bytes;
  int precision;                // enum sd_cuda_precision
  int num_sms;
  void *matmul_plans;           // matmul.cu's cache of cuBLASLt descriptors and algorithms
  void *upload_ring;            // upload_ring.cu's pinned staging buffer and its events
  void *labels;                 // label_check.cu's clamped labels and its bad-label record
  void *cudnn;                  // attention_cudnn.cu's cuDNN handle, plan cache and buffers
  void *weights;                // weights_bf16.cu's registered regions and their bf16 copies
} sd_cuda_state;

// The state of a CUDA backend (be->impl).
static inline sd_cuda_state *sd_cuda_st(sd_backend *be) { return (sd_cuda_state *)be->impl; }

// Fatal (through sd_fatal_at: rank, file, line, the CUDA error string) when a call fails.
void sd_cuda_check_at(cudaError_t e, const char *what, const char *file, int line);
void sd_cublas_check_at(cublasStatus_t s, const char *what, const char *file, int line);
#define SD_CUDA_CHECK(call) sd_cuda_check_at((call), #call, __FILE__, __LINE__)
#define SD_CUBLAS_CHECK(call) sd_cublas_check_at((call), #call, __FILE__, __LINE__)
// After every kernel launch: the launch error (not a device sync).
#define SD_CUDA_LAUNCHED(name) sd_cuda_check_at(cudaGetLastError(), name, __FILE__, __LINE__)

// Scratch of at least `bytes` on the device (grows; valid until the next call).
void *sd_cuda_scratch(sd_backend *be, size_t bytes);

// upload_ring.cu: queues a host -> device copy of up to 8 MiB through pinned staging memory
// without synchronising (the caller may reuse src at once); 0 when it did not (too large, the
// stream is being captured, no pinned memory): then the caller copies synchronously.
extern "C" int sd_cuda_upload_staged(sd_backend *be, void *dst, const void *src, size_t bytes);
extern "C" void sd_cuda_upload_release(sd_cuda_state *st);  // after the stream is idle
extern "C" void sd_cuda_upload_counts(sd_backend *be, long *staged, long *waits);
// label_check.cu: y (B) clamped into [0, rows) on the device for a lookup, the first bad label
// recorded without a synchronisation; sd_cuda_labels_verify (after a stream synchronisation)
// stops with "label L of sample b is outside [0, rows)" when one was seen.
extern "C" const int32_t *sd_cuda_checked_labels(sd_backend *be, const int32_t *y, int B,
                                                 int rows);
extern "C" void sd_cuda_labels_verify(sd_cuda_state *st);
extern "C" void sd_cuda_labels_release(sd_cuda_state *st);

// attention_cudnn.cu: bf16 attention through cuDNN's fused SDPA; 1 when done, 0 when the
// caller must run the hand-written kernels (cuDNN off, missing, refused, or set aside by its
// cross-check); describe: one line; release: with the backend (after the stream is idle).
extern "C" int sd_cuda_attention_cudnn_fwd(sd_backend *be, void *out, float *lse,
                                           const void *qkv, int B, int T, int NH, int HD);
extern "C" int sd_cuda_attention_cudnn_bwd(sd_backend *be, float *dqkv, const float *dout,
                                           const void *qkv, const void *out, const float *lse,
                                           int B, int T, int NH, int HD);
extern "C" int sd_cuda_attention_cudnn_describe(sd_backend *be, char *buf, size_t len);
extern "C" void sd_cuda_attention_cudnn_release(sd_cuda_state *st);
// attention.cu: the hand-written kernels (tensor cores or fp32 tiles), the ops' semantics.
sd_attention_fwd_fn sd_cuda_attention_handwritten_fwd;
sd_attention_bwd_fn sd_cuda_attention_handwritten_bwd;

// weights_bf16.cu: the bf16 weight copies (ops.h weights_register). written: the backend's
// own writes into [p, p + bytes) (marks stale); freed: ops->free(p) (drops a region based at
// p); bf16: the copy of w (n) for a matmul (refreshed when stale), or NULL; for_update: the
// copy AdamW writes beside p (n), or NULL (none, or stale: left to the next refresh).
sd_weights_register_fn sd_cuda_weights_register;
sd_weights_changed_fn sd_cuda_weights_changed;
extern "C" void sd_cuda_weights_written(sd_backend *be, const void *p, size_t bytes);
extern "C" void sd_cuda_weights_freed(sd_backend *be, const void *p);
extern "C" const void *sd_cuda_weights_bf16(sd_backend *be, const float *w, size_t n);
extern "C" void *sd_cuda_weights_for_update(sd_backend *be, const float *p, size_t n);
extern "C" void sd_cuda_weights_release(sd_cuda_state *st);
// Test hook: the copy covering w (n) as it is (NULL when none), *stale its flag; no refresh.
extern "C" const void *sd_cuda_weights_peek(sd_backend *be, const float *w, size_t n,
                                            int *stale);
// Test hook: a host -> device copy that bypasses the ops (as NCCL would write), synchronous.
extern "C" void sd_cuda_weights_test_write(sd_backend *be, void *dst, const void *src,
                                           size_t bytes);
// weights_guard.cu: the op table o with every compute op wrapped so that its outputs mark
// the registered regions they overlap stale (after the op is queued).
sd_ops sd_cuda_weights_guarded(sd_ops o);
extern "C" int sd_cuda_weights_describe(sd_backend *be, char *buf, size_t len);
// 0 when adamw_ema's copies equal bf16 of the updated fp32, matmuls read the copies bitwise
// like per-call rounding, and a write through to_device makes the next matmul see it.
extern "C" int sd_cuda_weights_selftest(sd_backend *be, char *err, size_t len);

// lnmod_fast.cu: the one-pass layer norm (forward) and the fused backward, for D a multiple
// of 4 up to 1536 and 16-byte aligned buffers (fits says whether they apply); norm_act.cu
// calls them. The backward writes dshift/dscale directly with nchunks == 1, else the
// (B, nchunks, D) partials pshift/pscale for col_finish_kernel.
extern "C" int sd_cuda_lnmod_fast_fits(int D, int mod_stride, const void *a, const void *b,
                                       const void *c, const void *d, const void *e);
extern "C" void sd_cuda_lnmod_fwd_fast(sd_backend *be, void *out, int out_bf16, float *mean,
                                       float *rstd, const float *x, const float *shift,
                                       const float *scale, int mod_stride, int T, unsigned rows,
                                       int D, float eps);
extern "C" void sd_cuda_lnmod_bwd_fast(sd_backend *be, float *dx, float *dshift, float *dscale,
                                       float *pshift, float *pscale, int nchunks,
                                       const float *dout, const float *x, const float *mean,
                                       const float *rstd, const float *scale, int mod_stride,
                                       int B, int T, int D);

// matmul.cu: frees the cached cuBLASLt plans (called by sd_backend_cuda_destroy).
void sd_cuda_matmul_release(sd_backend *be);
// matmul.cu: runs matmul_fwd/bwd on small random matrices (aligned, odd-sized and misaligned
// pointers; a row count that takes the two-pass bias reduction) in fp32 and bf16 against a
// double-precision host loop, checks that every output is written and that a rerun is
// bitwise identical. Restores the backend's precision. 0 on success, or -1 with the worst
// element in err. C linkage, so a C test program can declare and call it.
extern "C" int sd_cuda_matmul_selftest(sd_backend *be, char *err, size_t len);

// One line each on what the matmuls and attention chose (library, epilogues, fallbacks taken,
// kernels per head dimension), for sd_backend_cuda_describe.
extern "C" int sd_cuda_matmul_describe(sd_backend *be, char *buf, size_t len);
extern "C" int sd_cuda_attention_describe(sd_backend *be, char *buf, size_t len);

// Blocks of `threads` covering n elements, capped for grid-stride loops.
static inline unsigned sd_cuda_blocks(size_t n, unsigned threads) {
  size_t b = (n + threads - 1) / threads;
  if (b > 65535u * 8u) b = 65535u * 8u;
  return (unsigned)(b ? b : 1);
}

// ---- the ops (one per ops.h entry), defined in matmul.cu, attention.cu, norm_act.cu,
// tokens_embed.cu and loss_optim.cu ----
sd_matmul_fwd_fn sd_cuda_matmul_fwd;
sd_matmul_bwd_fn sd_cuda_matmul_bwd;
sd_matmul_fwd_fn sd_cuda_matmul_fwd_fp32;
sd_matmul_bwd_fn sd_cuda_matmul_bwd_fp32;
sd_matmul_gelu_fwd_fn sd_cuda_matmul_gelu_fwd;
sd_matmul_bwd_dgelu_fn sd_cuda_matmul_bwd_dgelu;
sd_lnmod_fwd_fn sd_cuda_lnmod_fwd;
sd_lnmod_bwd_fn sd_cuda_lnmod_bwd;
sd_attention_fwd_fn sd_cuda_attention_fwd;
sd_attention_bwd_fn sd_cuda_attention_bwd;
sd_act_fwd_fn sd_cuda_gelu_fwd;
sd_act_bwd_fn sd_cuda_gelu_bwd;
sd_act_fwd_fn sd_cuda_silu_fwd;
sd_act_bwd_fn sd_cuda_silu_bwd;
sd_gated_residual_fwd_fn sd_cuda_gated_residual_fwd;
sd_gated_residual_bwd_fn sd_cuda_gated_residual_bwd;
sd_patchify_fn sd_cuda_patchify;
sd_unpatchify_fwd_fn sd_cuda_unpatchify_fwd;
sd_unpatchify_bwd_fn sd_cuda_unpatchify_bwd;
sd_add_rows_fn sd_cuda_add_rows;
sd_timestep_features_fn sd_cuda_timestep_features;
sd_embed_rows_fwd_fn sd_cuda_embed_rows_fwd;
sd_embed_rows_bwd_fn sd_cuda_embed_rows_bwd;
sd_gather_tokens_fn sd_cuda_gather_tokens;
sd_scatter_add_tokens_fn sd_cuda_scatter_add_tokens;
sd_mse_fwd_fn sd_cuda_mse_fwd;
sd_mse_bwd_fn sd_cuda_mse_bwd;
sd_sum_squares_fn sd_cuda_sum_squares;
sd_l2norm_rows_fwd_fn sd_cuda_l2norm_rows_fwd;
sd_l2norm_rows_bwd_fn sd_cuda_l2norm_rows_bwd;
sd_dino_loss_fwd_fn sd_cuda_dino_loss_fwd;
sd_dino_loss_bwd_fn sd_cuda_dino_loss_bwd;
sd_sum_rows_fn sd_cuda_sum_rows;
sd_merge_tokens_fwd_fn sd_cuda_merge_tokens_fwd;
sd_merge_tokens_bwd_fn sd_cuda_merge_tokens_bwd;
sd_add_scaled_rows_fn sd_cuda_add_scaled_rows;
sd_scale_rows_fn sd_cuda_scale_rows;
sd_edm_loss_fwd_fn sd_cuda_edm_loss_fwd;
sd_edm_loss_bwd_fn sd_cuda_edm_loss_bwd;
sd_adamw_fn sd_cuda_adamw;
sd_ema_fn sd_cuda_ema;
sd_axpy_fn sd_cuda_axpy;
sd_step_gate_fn sd_cuda_step_gate;  // step_gate.cu
sd_poison_nonfinite_fn sd_cuda_poison_nonfinite;
sd_center_update_fn sd_cuda_center_update;

// norm_act.cu: the GELU on activations stored as t (out may alias x), and its backward
// dx = dout * gelu'(pre) with fp32 gradients (dx may alias dout) and pre stored as pre_t: the
// matmul GELU epilogues' fallbacks.
void sd_cuda_gelu_fwd_t(sd_backend *be, void *out, const void *x, sd_dtype t, size_t n);
void sd_cuda_gelu_bwd_pre_t(sd_backend *be, float *dx, const float *dout, const void *pre,
                            sd_dtype pre_t, size_t n);

extern "C" int sd_cuda_norm_act_selftest(sd_backend *be, char *err, size_t len);  // vs CPU ops; 0 = pass
extern "C" int sd_cuda_tokens_selftest(sd_backend *be, char *err, size_t len);  // vs CPU ops; 0 = pass
extern "C" int sd_cuda_attention_selftest(sd_backend *be, char *err, size_t len);  // vs host double; 0 = pass

// loss_optim.cu: sd_cuda_adamw, then ema = decay*ema + (1-decay)*p of the updated p, in one pass (bitwise = adamw then ema).
void sd_cuda_adamw_ema(sd_backend *be, float *p, const float *g, float *m, float *v, float *ema, size_t n, float lr, float beta1, float beta2, float eps, float wd, long t, float grad_scale, float decay, const float *gate);
// loss_optim.cu: the ops-table entry (sd_adamw_ema_fn): AdamW with zero, one or two EMAs, gated.
sd_adamw_ema_fn sd_cuda_adamw_ema2;
extern "C" int sd_cuda_loss_optim_selftest(sd_backend *be, char *err, size_t len);  // vs CPU ops + determinism; 0 = pass

#endif
