// The CUDA backend: one device, one non-blocking stream on which every op runs in order, a
// cuBLASLt handle with its workspace, a growing scratch buffer, the matmul precision, and the
// table of CUDA ops (each defined in matmul.cu, attention.cu, norm_act.cu, tokens_embed.cu or
// loss_optim.cu with the semantics of the CPU op of the same name).
#include "cuda_internal.h"

extern "C" {
#include "error.h"
}

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { SD_CUDA_LT_WORKSPACE_BYTES = 32 << 20 };  // 32 MiB, what cuBLAS suggests for Hopper

// ---- error checks --------------------------------------------------------------------------

static const char *cuda_hint(cudaError_t e) {
  switch (e) {
  case cudaErrorNoKernelImageForDevice:
  case cudaErrorInvalidDeviceFunction:
  case cudaErrorUnsupportedPtxVersion:
    return "this build has no kernels for this GPU: reconfigure with -Dgpu_arch=<sm> (80 for "
           "A100, 90 for H100/H200) or update the driver";
  case cudaErrorMemoryAllocation:
    return "the GPU is out of memory: lower the batch size";
  case cudaErrorIllegalAddress:
  case cudaErrorMisalignedAddress:
  case cudaErrorLaunchFailure:
    return "a kernel failed (errors are reported at the next check, so the call named here may "
           "not be the culprit): rerun with CUDA_LAUNCH_BLOCKING=1 or under compute-sanitizer";
  default:
    return NULL;
  }
}

void sd_cuda_check_at(cudaError_t e, const char *what, const char *file, int line) {
  if (e == cudaSuccess) return;
  sd_fatal_at(file, line, "cuda", cuda_hint(e), "%s failed: %s (%s)", what,
              cudaGetErrorString(e), cudaGetErrorName(e));
}

void sd_cublas_check_at(cublasStatus_t s, const char *what, const char *file, int line) {
  if (s == CUBLAS_STATUS_SUCCESS) return;
  sd_fatal_at(file, line, "cublasLt",
              s == CUBLAS_STATUS_NOT_SUPPORTED
                  ? "cuBLASLt has no kernel for this combination of types, shapes, alignment "
                    "and epilogue; try SD_CUDA_PRECISION=fp32 to narrow it down"
                  : NULL,
              "%s failed: %s (%s)", what, cublasLtGetStatusString(s), cublasLtGetStatusName(s));
}

// ---- memory --------------------------------------------------------------------------------

// cudaMalloc that ends the job on failure, naming the size and what the device has left.
static void *device_malloc(sd_cuda_state *st, size_t bytes, const char *what, const char *file,
                           int line) {
  void *p = NULL;
  cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // an allocation failure is not sticky; clear it
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    sd_fatal_at(file, line, "cuda", cuda_hint(e),
                "cudaMalloc of %zu bytes (%.1f MiB) for %s on device %d failed: %s; %.1f MiB "
                "free of %.1f MiB",
                bytes, bytes / 1048576.0, what, st->device, cudaGetErrorString(e),
                free_b / 1048576.0, total_b / 1048576.0);
  }
  return p;
}

static void *cuda_alloc(sd_backend *be, size_t bytes) {
  return device_malloc(sd_cuda_st(be), bytes, "a backend buffer", __FILE__, __LINE__);
}

static void cuda_free(sd_backend *be, void *p) {
  if (p) sd_cuda_weights_freed(be, p);
  if (p) SD_CUDA_CHECK(cudaFree(p));  // cudaFree waits for work that may still use p
}

static void cuda_memset(sd_backend *be, void *p, int value, size_t bytes) {
  sd_cuda_weights_written(be, p, bytes);
  if (bytes) SD_CUDA_CHECK(cudaMemsetAsync(p, value, bytes, sd_cuda_st(be)->stream));
}

// Host -> device; the caller may reuse or free src at once. Up to 8 MiB go through the pinned
// staging ring (upload_ring.cu) with no synchronisation; larger copies synchronise the stream
// before returning (an async copy from pageable memory may return before its DMA has read
// the buffer).
static void cuda_to_device(sd_backend *be, void *dst, const void *src, size_t bytes) {
  if (!bytes) return;
  sd_cuda_weights_written(be, dst, bytes);
  if (sd_cuda_upload_staged(be, dst, src, bytes)) return;
  cudaStream_t s = sd_cuda_st(be)->stream;
  SD_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
  SD_CUDA_CHECK(cudaStreamSynchronize(s));
}

// Device -> host, after every op queued before it; the host can read dst on return.
static void cuda_to_host(sd_backend *be, void *dst, const void *src, size_t bytes) {
  if (!bytes) return;
  cudaStream_t s = sd_cuda_st(be)->stream;
  SD_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
  SD_CUDA_CHECK(cudaStreamSynchronize(s));
  sd_cuda_labels_verify(sd_cuda_st(be));
}

// Device -> device, queued on the stream.
static void cuda_copy(sd_backend *be, void *dst, const void *src, size_t bytes) {
  if (!bytes || dst == src) return;
  sd_cuda_weights_written(be, dst, bytes);
  SD_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice,
                                sd_cuda_st(be)->stream));
}

// Waits for every queued op; reports the first error any of them raised.
static void cuda_sync(sd_backend *be) {
  SD_CUDA_CHECK(cudaStreamSynchronize(sd_cuda_st(be)->stream));
  SD_CUDA_CHECK(cudaGetLastError());
  sd_cuda_labels_verify(sd_cuda_st(be));
}

void *sd_cuda_scratch(sd_backend *be, size_t bytes) {
  sd_cuda_state *st = sd_cuda_st(be);
  if (!st) SD_FATAL("CUDA backend used before sd_backend_cuda_init");
  if (bytes <= st->scratch_bytes && st->scratch) return st->scratch;
  size_t want = (bytes + ((size_t)2 << 20) - 1) / ((size_t)2 << 20) * ((size_t)2 << 20);
  if (st->scratch) {
    // Queued kernels may still read the old buffer: let them finish before it goes.
    SD_CUDA_CHECK(cudaStreamSynchronize(st->stream));
    SD_CUDA_CHECK(cudaFree(st->scratch));
    st->scratch = NULL;
    st->scratch_bytes = 0;
  }
  st->scratch = device_malloc(st, want, "CUDA scratch", __FILE__, __LINE__);
  st->scratch_bytes = want;
  return st->scratch;
}

// ---- the op table --------------------------------------------------------------------------

static sd_ops make_cuda_ops(void) {
  sd_ops o;
  memset(&o, 0, sizeof o);
  o.matmul_fwd = sd_cuda_matmul_fwd;
  o.matmul_bwd = sd_cuda_matmul_bwd;
  o.matmul_fwd_fp32 = sd_cuda_matmul_fwd_fp32;
  o.matmul_bwd_fp32 = sd_cuda_matmul_bwd_fp32;
  o.matmul_gelu_fwd = sd_cuda_matmul_gelu_fwd;
  o.matmul_bwd_dgelu = sd_cuda_matmul_bwd_dgelu;
  o.lnmod_fwd = sd_cuda_lnmod_fwd;
  o.lnmod_bwd = sd_cuda_lnmod_bwd;
  o.attention_fwd = sd_cuda_attention_fwd;
  o.attention_bwd = sd_cuda_attention_bwd;
  o.gelu_fwd = sd_cuda_gelu_fwd;
  o.gelu_bwd = sd_cuda_gelu_bwd;
  o.silu_fwd = sd_cuda_silu_fwd;
  o.silu_bwd = sd_cuda_silu_bwd;
  o.gated_residual_fwd = sd_cuda_gated_residual_fwd;
  o.gated_residual_bwd = sd_cuda_gated_residual_bwd;
  o.patchify = sd_cuda_patchify;
  o.unpatchify_fwd = sd_cuda_unpatchify_fwd;
  o.unpatchify_bwd = sd_cuda_unpatchify_bwd;
  o.add_rows = sd_cuda_add_rows;
  o.timestep_features = sd_cuda_timestep_features;
  o.embed_rows_fwd = sd_cuda_embed_rows_fwd;
  o.embed_rows_bwd = sd_cuda_embed_rows_bwd;
  o.gather_tokens = sd_cuda_gather_tokens;
  o.scatter_add_tokens = sd_cuda_scatter_add_tokens;
  o.mse_fwd = sd_cuda_mse_fwd;
  o.mse_bwd = sd_cuda_mse_bwd;
  o.sum_squares = sd_cuda_sum_squares;
  o.l2norm_rows_fwd = sd_cuda_l2norm_rows_fwd;
  o.l2norm_rows_bwd = sd_cuda_l2norm_rows_bwd;
  o.dino_loss_fwd = sd_cuda_dino_loss_fwd;
  o.dino_loss_bwd = sd_cuda_dino_loss_bwd;
  o.sum_rows = sd_cuda_sum_rows;
  o.merge_tokens_fwd = sd_cuda_merge_tokens_fwd;
  o.merge_tokens_bwd = sd_cuda_merge_tokens_bwd;
  o.add_scaled_rows = sd_cuda_add_scaled_rows;
  o.scale_rows = sd_cuda_scale_rows;
  o.edm_loss_fwd = sd_cuda_edm_loss_fwd;
  o.edm_loss_bwd = sd_cuda_edm_loss_bwd;
  o.adamw = sd_cuda_adamw;
  o.ema = sd_cuda_ema;
  o.adamw_ema = sd_cuda_adamw_ema2;
  o.axpy = sd_cuda_axpy;
  o.step_gate = sd_cuda_step_gate;
  o.poison_nonfinite = sd_cuda_poison_nonfinite;
  o.center_update = sd_cuda_center_update;
  o.weights_register = sd_cuda_weights_register;
  o.weights_changed = sd_cuda_weights_changed;
  o.alloc = cuda_alloc;
  o.free = cuda_free;
  o.memset = cuda_memset;
  o.to_device = cuda_to_device;
  o.to_host = cuda_to_host;
  o.copy = cuda_copy;
  o.sync = cuda_sync;
  return sd_cuda_weights_guarded(o);  // writes into registered weights mark their copy stale
}

static const sd_ops cuda_ops = make_cuda_ops();

// ---- precision -----------------------------------------------------------------------------

// "fp32" / "bf16" (any case) -> SD_PREC_*, or -1.
static int parse_precision(const char *name) {
  if (!name) return -1;
  if (strcasecmp(name, "fp32") == 0) return SD_PREC_FP32;
  if (strcasecmp(name, "bf16") == 0) return SD_PREC_BF16;
  return -1;
}

// The matmul precision, and the activation storage that follows it (bf16 at bf16).
static void apply_precision(sd_backend *be, sd_cuda_state *st, int precision) {
  st->precision = precision;
  be->act_dtype = precision == SD_PREC_BF16 ? SD_BF16 : SD_F32;
}

extern "C" int sd_backend_cuda_set_precision(sd_backend *be, const char *name, char *errbuf,
                                             size_t errlen) {
  if (!be || !be->name || strcmp(be->name, "cuda") != 0 || !be->impl)
    return sd_errorf(errbuf, errlen, "matmul precision can only be set on a CUDA backend");
  int p = parse_precision(name);
  if (p < 0)
    return sd_errorf(errbuf, errlen, "unknown CUDA matmul precision '%s' (expected fp32 or bf16)",
                     name ? name : "(null)");
  apply_precision(be, sd_cuda_st(be), p);
  return 0;
}

// ---- init / destroy ------------------------------------------------------------------------

static void release_state(sd_cuda_state *st) {
  if (!st) return;
  (void)cudaSetDevice(st->device);
  if (st->stream) (void)cudaStreamSynchronize(st->stream);
  sd_cuda_upload_release(st);
  sd_cuda_labels_release(st);
  sd_cuda_attention_cudnn_release(st);
  sd_cuda_weights_release(st);
  if (st->scratch) (void)cudaFree(st->scratch);
  if (st->lt_workspace) (void)cudaFree(st->lt_workspace);
  if (st->lt) (void)cublasLtDestroy(st->lt);
  if (st->stream) (void)cudaStreamDestroy(st->stream);
  free(st);
}

extern "C" int sd_backend_cuda_init(sd_backend *be, int device, char *errbuf, size_t errlen) {
  memset(be, 0, sizeof *be);
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    snprintf(errbuf, errlen, "no CUDA device (%s)",
             err != cudaSuccess ? cudaGetErrorString(err) : "device count is 0");
    return -1;
  }
  if (device < 0 || device >= count) {
    snprintf(errbuf, errlen, "CUDA device %d requested but only %d visible", device, count);
    return -2;
  }
  int precision = SD_PREC_BF16;
  const char *env = getenv("SD_CUDA_PRECISION");
  if (env && *env) {
    precision = parse_precision(env);
    if (precision < 0) {
      snprintf(errbuf, errlen, "SD_CUDA_PRECISION=%s: expected fp32 or bf16", env);
      return -3;
    }
  }

  sd_cuda_state *st = (sd_cuda_state *)calloc(1, sizeof *st);
  if (!st) {
    snprintf(errbuf, errlen, "out of host memory for the CUDA backend state");
    return -4;
  }
  st->device = device;
  apply_precision(be, st, precision);
  const char *step = "cudaSetDevice";
  err = cudaSetDevice(device);
  if (err == cudaSuccess) {
    step = "creating the CUDA context";
    err = cudaFree(0);
  }
  if (err == cudaSuccess) {
    step = "cudaDeviceGetAttribute(multiProcessorCount)";
    err = cudaDeviceGetAttribute(&st->num_sms, cudaDevAttrMultiProcessorCount, device);
  }
  if (err == cudaSuccess) {
    step = "cudaStreamCreateWithFlags";
    err = cudaStreamCreateWithFlags(&st->stream, cudaStreamNonBlocking);
  }
  if (err == cudaSuccess) {
    step = "cudaMalloc of the 32 MiB cuBLASLt workspace";
    err = cudaMalloc(&st->lt_workspace, SD_CUDA_LT_WORKSPACE_BYTES);
    if (err == cudaSuccess) st->lt_workspace_bytes = SD_CUDA_LT_WORKSPACE_BYTES;
  }
  if (err != cudaSuccess) {
    snprintf(errbuf, errlen, "CUDA device %d: %s failed: %s", device, step,
             cudaGetErrorString(err));
    release_state(st);
    return -5;
  }
  cublasStatus_t bs = cublasLtCreate(&st->lt);
  if (bs != CUBLAS_STATUS_SUCCESS) {
    st->lt = NULL;
    snprintf(errbuf, errlen, "CUDA device %d: cublasLtCreate failed: %s", device,
             cublasLtGetStatusString(bs));
    release_state(st);
    return -6;
  }
  be->name = "cuda";
  be->ops = &cuda_ops;
  be->num_threads = 1;
  be->impl = st;
  return 0;
}

extern "C" void sd_backend_cuda_destroy(sd_backend *be) {
  sd_cuda_state *st = sd_cuda_st(be);
  if (st) {
    sd_cuda_matmul_release(be);
    release_state(st);
  }
  memset(be, 0, sizeof *be);
}

extern "C" void *sd_backend_cuda_stream(sd_backend *be) {
  if (!be || !be->name || strcmp(be->name, "cuda") != 0 || !be->impl) return NULL;
  return (void *)sd_cuda_st(be)->stream;
}

extern "C" int sd_backend_cuda_describe(sd_backend *be, char *buf, size_t len) {
  if (!be || !be->name || strcmp(be->name, "cuda") != 0 || !be->impl) {
    snprintf(buf, len, "not a CUDA backend");
    return -1;
  }
  sd_cuda_state *st = sd_cuda_st(be);
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, st->device) != cudaSuccess) {
    cudaGetLastError();
    snprintf(prop.name, sizeof prop.name, "?");
    prop.major = prop.minor = 0;
  }
  int rt = 0, drv = 0;
  cudaRuntimeGetVersion(&rt);
  cudaDriverGetVersion(&drv);
  char mm[512] = "", at[512] = "";
  sd_cuda_matmul_describe(be, mm, sizeof mm);
  sd_cuda_attention_describe(be, at, sizeof at);
  long staged = 0, waits = 0;
  sd_cuda_upload_counts(be, &staged, &waits);
  char wt[256];
  sd_cuda_weights_describe(be, wt, sizeof wt);
  snprintf(buf, len,
           "device %d: %s (sm_%d%d, %d SMs), CUDA runtime %d.%d, driver %d.%d, precision %s, "
           "activations stored as %s\n%s\n%s\nuploads: %ld through the pinned staging ring "
           "without a synchronisation, %ld waited for a slice in flight\n%s",
           st->device, prop.name, prop.major, prop.minor, st->num_sms, rt / 1000,
           (rt % 1000) / 10, drv / 1000, (drv % 1000) / 10,
           st->precision == SD_PREC_BF16 ? "bf16" : "fp32", sd_dtype_name(be->act_dtype), mm, at,
           staged, waits, wt);
  return 0;
}
