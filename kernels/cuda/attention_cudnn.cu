// bf16 attention through cuDNN's fused SDPA (cudnn_sdpa.c), with the hand-written kernels of
// attention.cu / attention_tc.cu as the cross-check and the fallback:
//   - SD_CUDA_ATTENTION=auto (default): cuDNN when libcudnn.so.9 loads and builds a plan for
//     the shape, else the hand-written kernels; =handwritten: never cuDNN; =cudnn: cuDNN or a
//     fatal error naming why not (for the GPU checks: a silent fallback would hide a refusal).
//   - The first time a shape runs on cuDNN (forward and backward apart), the hand-written
//     kernels run on the same inputs and the outputs are compared (norm-relative, limit
//     GPU_CROSS_CHECK_CUDNN_ATTENTION of kernels/tolerances_gpu.h); a disagreement
//     sets cuDNN aside for that shape with one warning, so a wrong plan cannot train silently.
//   - Any refusal (load, graph, plan, execute; SD_CUDNN_REFUSE=<stage> simulates one) sends
//     that shape to the hand-written kernels, and the reason appears in describe.
//   - The op checks force each path in-process (sd_cuda_attention_force_path) and ask which
//     one the call took (sd_cuda_attention_last_path).
// The backward's interface is fp32 (ops.h): dout is rounded to bf16 for cuDNN and the bf16
// dq, dk, dv are widened into the fp32 dqkv (16-byte vector kernels below).
#include "cuda_internal.h"
#include "sd_build_config.h"
#include "tolerances_gpu.h"  // GPU_CROSS_CHECK_CUDNN_ATTENTION

extern "C" {
#include "error.h"
#if SD_HAVE_CUDNN_H
#include "cudnn_sdpa.h"
#endif
}

#include <cuda_bf16.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

namespace {

constexpr double kCudnnCrossCheckRel = GPU_CROSS_CHECK_CUDNN_ATTENTION;
enum { MODE_AUTO = 0, MODE_HANDWRITTEN = 1, MODE_CUDNN = 2 };
// The op checks' forced path (sd_cuda_attention_force_path): PATH_ENV, or one of the others.
enum { PATH_ENV = -1, PATH_AUTO = 0, PATH_HANDWRITTEN = 1, PATH_CUDNN = 2, PATH_REFUSED = 3 };
int g_forced = PATH_ENV;
int g_last_path = -1;        // the last bf16 call: -1 none yet, 0 hand-written, 1 cuDNN
char g_last_why[512];        // ... and why it was not cuDNN

void last_path(int path, const char *why) {
  g_last_path = path;
  snprintf(g_last_why, sizeof g_last_why, "%s", why);
}

int env_mode() {
  static int mode = -1;
  if (mode < 0) {
    const char *e = getenv("SD_CUDA_ATTENTION");
    mode = !e || !*e || !strcmp(e, "auto") ? MODE_AUTO
         : !strcmp(e, "handwritten") ? MODE_HANDWRITTEN
         : !strcmp(e, "cudnn") ? MODE_CUDNN : -2;
    if (mode == -2)
      SD_FATAL("SD_CUDA_ATTENTION=%s: expected auto, handwritten or cudnn", e);
  }
  return mode;
}

int attention_mode() {
  switch (g_forced) {
    case PATH_HANDWRITTEN: return MODE_HANDWRITTEN;
    case PATH_CUDNN: return MODE_CUDNN;
    case PATH_AUTO: case PATH_REFUSED: return MODE_AUTO;
    default: return env_mode();
  }
}

// SD_CUDA_ATTENTION=cudnn from the environment (not an op check's forcing): a call that cannot
// run on cuDNN is a fatal error, not a silent fallback.
bool refusal_is_fatal() { return g_forced == PATH_ENV && env_mode() == MODE_CUDNN; }

// out (n) = bf16(x), 8 per thread when aligned.
__global__ void to_bf16_kernel(__nv_bfloat16 *out, const float *x, unsigned n, bool vec) {
  const unsigned i = (blockIdx.x * blockDim.x + threadIdx.x) * (vec ? 8u : 1u);
  if (vec && i + 8 <= n) {
    const float4 a = *reinterpret_cast<const float4 *>(x + i);
    const float4 b = *reinterpret_cast<const float4 *>(x + i + 4);
    __nv_bfloat162 r[4] = {__floats2bfloat162_rn(a.x, a.y), __floats2bfloat162_rn(a.z, a.w),
                           __floats2bfloat162_rn(b.x, b.y), __floats2bfloat162_rn(b.z, b.w)};
    *reinterpret_cast<uint4 *>(out + i) = *reinterpret_cast<uint4 *>(r);
  } else {
    for (unsigned k = i; k < n && k < i + (vec ? 8u : 1u); k++) out[k] = __float2bfloat16_rn(x[k]);
  }
}

// out (n) = float(x), 8 per thread when aligned.
__global__ void from_bf16_kernel(float *out, const __nv_bfloat16 *x, unsigned n, bool vec) {
  const unsigned i = (blockIdx.x * blockDim.x + threadIdx.x) * (vec ? 8u : 1u);
  if (vec && i + 8 <= n) {
    const uint4 v = *reinterpret_cast<const uint4 *>(x + i);
    const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&v);
    const float2 a = __bfloat1622float2(h[0]), b = __bfloat1622float2(h[1]),
                 c = __bfloat1622float2(h[2]), d = __bfloat1622float2(h[3]);
    *reinterpret_cast<float4 *>(out + i) = make_float4(a.x, a.y, b.x, b.y);
    *reinterpret_cast<float4 *>(out + i + 4) = make_float4(c.x, c.y, d.x, d.y);
  } else {
    for (unsigned k = i; k < n && k < i + (vec ? 8u : 1u); k++) out[k] = __bfloat162float(x[k]);
  }
}

void convert(cudaStream_t s, void *out, const void *x, size_t n, bool to_bf16) {
  if (n == 0) return;
  if (n > 0x7fffffffu) SD_FATAL("attention conversion of %zu elements: over 2^31", n);
  const bool vec = ((uintptr_t)out % 16 == 0) && ((uintptr_t)x % 16 == 0);
  const unsigned per = vec ? 8u : 1u, threads = 256;
  const unsigned blocks = (unsigned)((n + (size_t)per * threads - 1) / ((size_t)per * threads));
  if (to_bf16)
    to_bf16_kernel<<<blocks, threads, 0, s>>>((__nv_bfloat16 *)out, (const float *)x,
                                              (unsigned)n, vec);
  else
    from_bf16_kernel<<<blocks, threads, 0, s>>>((float *)out, (const __nv_bfloat16 *)x,
                                                (unsigned)n, vec);
  SD_CUDA_LAUNCHED(to_bf16 ? "to_bf16_kernel" : "from_bf16_kernel");
}

// Norm-relative difference of a against b (infinite on a non-finite element of a).
double rel_diff(const std::vector<float> &a, const std::vector<float> &b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); i++) {
    if (!isfinite(a[i])) return INFINITY;
    const double e = (double)a[i] - b[i];
    num += e * e;
    den += (double)b[i] * b[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

std::vector<float> download(cudaStream_t s, const void *p, size_t n, bool bf16) {
  std::vector<float> v(n);
  if (bf16) {
    std::vector<__nv_bfloat16> h(n);
    SD_CUDA_CHECK(cudaMemcpyAsync(h.data(), p, 2 * n, cudaMemcpyDeviceToHost, s));
    SD_CUDA_CHECK(cudaStreamSynchronize(s));
    for (size_t i = 0; i < n; i++) v[i] = __bfloat162float(h[i]);
  } else {
    SD_CUDA_CHECK(cudaMemcpyAsync(v.data(), p, 4 * n, cudaMemcpyDeviceToHost, s));
    SD_CUDA_CHECK(cudaStreamSynchronize(s));
  }
  return v;
}

}  // namespace

#if SD_HAVE_CUDNN_H

typedef struct cudnn_attn {
  int loaded;             // 1 loaded, -1 failed (why)
  char why[400];
  sd_cudnn_api api;
  cudnnHandle_t handle;
  sd_sdpa_cache cache;
  sd_sdpa_cache refused_cache;  // PATH_REFUSED: every plan refused at "plan" (simulated)
  int refused_cache_ready;
  char *buf;              // [workspace][dout bf16][dqkv bf16], grown as needed
  size_t buf_bytes;
  long fallbacks;         // calls that took the hand-written kernels after a refusal
  char first_refusal[512];
} cudnn_attn;

static cudnn_attn *state(sd_backend *be) {
  sd_cuda_state *st = sd_cuda_st(be);
  if (st->cudnn) return (cudnn_attn *)st->cudnn;
  cudnn_attn *c = (cudnn_attn *)sd_xcalloc(1, sizeof *c, "cuDNN attention");
  st->cudnn = c;
  if (sd_cudnn_api_load(&c->api, c->why, sizeof c->why) != 0) {
    c->loaded = -1;
  } else if (c->api.Create(&c->handle) != CUDNN_STATUS_SUCCESS ||
             c->api.SetStream(c->handle, st->stream) != CUDNN_STATUS_SUCCESS) {
    snprintf(c->why, sizeof c->why, "cudnnCreate or cudnnSetStream failed (cuDNN %zu)",
             c->api.GetVersion());
    c->loaded = -1;
  } else {
    sd_sdpa_cache_init(&c->cache, &c->api, c->handle);
    c->loaded = 1;
  }
  return c;
}

// Scratch of the three parts, 256-byte aligned each.
static char *scratch(sd_cuda_state *st, cudnn_attn *c, size_t ws, size_t a, size_t b,
                     char **pa, char **pb) {
  auto up = [](size_t x) { return (x + 255) / 256 * 256; };
  const size_t need = up(ws) + up(a) + up(b) + 256;
  if (need > c->buf_bytes) {
    if (c->buf) {
      SD_CUDA_CHECK(cudaStreamSynchronize(st->stream));
      SD_CUDA_CHECK(cudaFree(c->buf));
    }
    SD_CUDA_CHECK(cudaMalloc((void **)&c->buf, need));
    c->buf_bytes = need;
  }
  *pa = c->buf + up(ws);
  *pb = *pa + up(a);
  return c->buf;
}

static void refusal(cudnn_attn *c, const char *why) {
  last_path(0, why);
  if (g_forced == PATH_REFUSED) return;  // an op check's simulated refusal: not the run's
  c->fallbacks++;
  if (!c->first_refusal[0]) snprintf(c->first_refusal, sizeof c->first_refusal, "%s", why);
  if (refusal_is_fatal())
    SD_FATAL_HINT("SD_CUDA_ATTENTION=auto falls back to the hand-written kernels",
                  "SD_CUDA_ATTENTION=cudnn, but %s", why);
}

// The plan for a shape, or NULL (fall back).
static sd_sdpa_plan *plan_for(sd_backend *be, cudnn_attn **out, int B, int T, int NH, int HD,
                              int bwd) {
  // (a head dim that is not a multiple of 8 is not cuDNN's: not a refusal, even when forced)
  if (attention_mode() == MODE_HANDWRITTEN) {
    last_path(0, "hand-written kernels forced");
    return NULL;
  }
  if (HD % 8 != 0) {
    last_path(0, "head dim not a multiple of 8");
    return NULL;
  }
  cudnn_attn *c = state(be);
  *out = c;
  if (c->loaded != 1) {
    refusal(c, c->why);
    return NULL;
  }
  const sd_sdpa_key key = {B, T, NH, HD, bwd};
  sd_sdpa_cache *cache = &c->cache;
  if (g_forced == PATH_REFUSED) {  // an op check of the fallback: a plan stage that refuses
    if (!c->refused_cache_ready) {
      sd_sdpa_cache_init(&c->refused_cache, &c->api, c->handle);
      c->refused_cache.refuse = SD_SDPA_PLAN;
      c->refused_cache_ready = 1;
    }
    cache = &c->refused_cache;
  }
  sd_sdpa_plan *p = sd_sdpa_get(cache, &key);
  if (!p->ok || p->cross_checked < 0) {
    refusal(c, p->ok ? "the cross-check against the hand-written kernels failed" : p->why);
    return NULL;
  }
  return p;
}

// Records the cross-check of a plan (e: the norm-relative difference); false, with one
// warning, when cuDNN is set aside for its shape.
static bool cross_checked(sd_sdpa_plan *p, double e) {
  p->cross_checked = e <= kCudnnCrossCheckRel ? 1 : -1;
  if (p->cross_checked > 0) return true;
  const sd_sdpa_key *k = &p->key;
  fprintf(stderr, "warning: CUDA attention: cuDNN's %s differs from the hand-written kernels by "
          "%.3g (norm-relative, limit %.0e) at B %d T %d heads %d head dim %d; using the "
          "hand-written kernels for this shape (please report this)\n",
          k->bwd ? "backward" : "forward", e, kCudnnCrossCheckRel, k->B, k->T, k->NH, k->HD);
  return false;
}

extern "C" int sd_cuda_attention_cudnn_fwd(sd_backend *be, void *out, float *lse,
                                           const void *qkv, int B, int T, int NH, int HD) {
  cudnn_attn *c = NULL;
  sd_sdpa_plan *p = plan_for(be, &c, B, T, NH, HD, 0);
  if (!p) return 0;
  sd_cuda_state *st = sd_cuda_st(be);
  char *a, *b, err[400];
  char *ws = scratch(st, c, (size_t)p->workspace, 0, 0, &a, &b);
  if (sd_sdpa_forward(&c->cache, p, out, lse, qkv, ws, err, sizeof err) != 0) {
    refusal(c, err);
    return 0;
  }
  if (p->cross_checked == 0) {  // once per shape: the hand-written kernels on the same input
    const size_t n_out = (size_t)B * T * NH * HD, n_lse = (size_t)B * NH * T;
    void *o2 = NULL, *l2 = NULL;
    SD_CUDA_CHECK(cudaMalloc(&o2, 2 * n_out));
    SD_CUDA_CHECK(cudaMalloc(&l2, 4 * n_lse));
    sd_cuda_attention_handwritten_fwd(be, o2, (float *)l2, qkv, SD_BF16, B, T, NH, HD);
    const double e = fmax(rel_diff(download(st->stream, out, n_out, true),
                                   download(st->stream, o2, n_out, true)),
                          rel_diff(download(st->stream, lse, n_lse, false),
                                   download(st->stream, l2, n_lse, false)));
    if (!cross_checked(p, e)) {
      SD_CUDA_CHECK(cudaMemcpyAsync(out, o2, 2 * n_out, cudaMemcpyDeviceToDevice, st->stream));
      SD_CUDA_CHECK(cudaMemcpyAsync(lse, l2, 4 * n_lse, cudaMemcpyDeviceToDevice, st->stream));
    }
    SD_CUDA_CHECK(cudaStreamSynchronize(st->stream));
    SD_CUDA_CHECK(cudaFree(o2));
    SD_CUDA_CHECK(cudaFree(l2));
  }
  if (p->cross_checked < 0) last_path(0, "cuDNN set aside: its cross-check failed");
  else last_path(1, "");
  return 1;
}

extern "C" int sd_cuda_attention_cudnn_bwd(sd_backend *be, float *dqkv, const float *dout,
                                           const void *qkv, const void *out, const float *lse,
                                           int B, int T, int NH, int HD) {
  cudnn_attn *c = NULL;
  sd_sdpa_plan *p = plan_for(be, &c, B, T, NH, HD, 1);
  if (!p) return 0;
  sd_cuda_state *st = sd_cuda_st(be);
  const size_t n_out = (size_t)B * T * NH * HD, n_qkv = 3 * n_out;
  char *dout16, *dqkv16, err[400];
  char *ws = scratch(st, c, (size_t)p->workspace, 2 * n_out, 2 * n_qkv, &dout16, &dqkv16);
  convert(st->stream, dout16, dout, n_out, true);                // (B, T, D) bf16
  if (sd_sdpa_backward(&c->cache, p, dqkv16, dout16, qkv, out, lse, ws, err, sizeof err) != 0) {
    refusal(c, err);
    return 0;
  }
  convert(st->stream, dqkv, dqkv16, n_qkv, false);               // (B, T, 3D) fp32
  if (p->cross_checked == 0) {
    float *d2 = NULL;
    SD_CUDA_CHECK(cudaMalloc((void **)&d2, 4 * n_qkv));
    sd_cuda_attention_handwritten_bwd(be, d2, dout, qkv, out, SD_BF16, lse, B, T, NH, HD);
    const double e = rel_diff(download(st->stream, dqkv, n_qkv, false),
                              download(st->stream, d2, n_qkv, false));
    if (!cross_checked(p, e)) {
      SD_CUDA_CHECK(cudaMemcpyAsync(dqkv, d2, 4 * n_qkv, cudaMemcpyDeviceToDevice, st->stream));
    }
    SD_CUDA_CHECK(cudaStreamSynchronize(st->stream));
    SD_CUDA_CHECK(cudaFree(d2));
  }
  if (p->cross_checked < 0) last_path(0, "cuDNN set aside: its cross-check failed");
  else last_path(1, "");
  return 1;
}

extern "C" int sd_cuda_attention_cudnn_describe(sd_backend *be, char *buf, size_t len) {
  if (attention_mode() == MODE_HANDWRITTEN)
    return snprintf(buf, len, "cuDNN fused SDPA off (SD_CUDA_ATTENTION=handwritten)");
  const cudnn_attn *c = (const cudnn_attn *)sd_cuda_st(be)->cudnn;
  if (!c) return snprintf(buf, len, "cuDNN fused SDPA for bf16 (not used yet)");
  if (c->loaded != 1)
    return snprintf(buf, len, "cuDNN fused SDPA unavailable: %s; the hand-written kernels "
                    "run", c->why);
  size_t at = 0;
  char ver[32];
  int n = snprintf(buf, len, "cuDNN %s fused SDPA for bf16",
                   sd_cudnn_version_string(&c->api, ver, sizeof ver));
  for (int i = 0; i < c->cache.count && n >= 0; i++) {
    at += (size_t)n < len - at ? (size_t)n : len - at;
    const sd_sdpa_plan *p = c->cache.plans[i];
    const sd_sdpa_key *k = &p->key;
    if (p->ok)
      n = snprintf(buf + at, len - at, "; %s B %d T %d HD %d: engine config %d (heuristic "
                   "%s), workspace %.1f MiB, cross-check %s", k->bwd ? "bwd" : "fwd", k->B, k->T,
                   k->HD, p->config, p->fallback_mode ? "fallback" : "mode A",
                   p->workspace / 1048576.0,
                   p->cross_checked > 0 ? "agreed" : p->cross_checked < 0 ? "FAILED (set aside)"
                                                                            : "pending");
    else
      n = snprintf(buf + at, len - at, "; %s B %d T %d HD %d: hand-written (%s)",
                   k->bwd ? "bwd" : "fwd", k->B, k->T, k->HD, p->why);
  }
  if (n >= 0) at += (size_t)n < len - at ? (size_t)n : len - at;
  if (c->fallbacks && at < len)
    snprintf(buf + at, len - at, "; %ld calls fell back (first: %s)", c->fallbacks,
             c->first_refusal);
  return 0;
}

extern "C" void sd_cuda_attention_cudnn_release(sd_cuda_state *st) {
  cudnn_attn *c = (cudnn_attn *)st->cudnn;
  if (!c) return;
  if (c->loaded == 1) {
    sd_sdpa_cache_release(&c->cache);
    if (c->refused_cache_ready) sd_sdpa_cache_release(&c->refused_cache);
    c->api.Destroy(c->handle);
  }
  if (c->buf) (void)cudaFree(c->buf);
  if (c->api.lib) sd_cudnn_api_unload(&c->api);
  free(c);
  st->cudnn = NULL;
}

#else  // built without cuDNN's headers: the hand-written kernels only

extern "C" int sd_cuda_attention_cudnn_fwd(sd_backend *, void *, float *, const void *, int, int,
                                           int, int) {
  if (refusal_is_fatal())
    SD_FATAL("SD_CUDA_ATTENTION=cudnn, but this build has no cuDNN headers");
  last_path(0, "this build has no cuDNN headers");
  return 0;
}
extern "C" int sd_cuda_attention_cudnn_bwd(sd_backend *, float *, const float *, const void *,
                                           const void *, const float *, int, int, int, int) {
  if (refusal_is_fatal())
    SD_FATAL("SD_CUDA_ATTENTION=cudnn, but this build has no cuDNN headers");
  last_path(0, "this build has no cuDNN headers");
  return 0;
}
extern "C" int sd_cuda_attention_cudnn_describe(sd_backend *, char *buf, size_t len) {
  return snprintf(buf, len, "cuDNN fused SDPA not built (no cuDNN headers)");
}
extern "C" void sd_cuda_attention_cudnn_release(sd_cuda_state *) {}
static void unused_helpers() { (void)convert; (void)rel_diff; (void)download; }

#endif

// ---- the op checks' forcing (src/device/op_checks.c declares these weak) ----
// path: -1 as SD_CUDA_ATTENTION says, 0 auto, 1 hand-written, 2 cuDNN (a refusal falls back
// without the fatal error of SD_CUDA_ATTENTION=cudnn: the caller asks last_path), 3 cuDNN with
// a simulated refusal at plan finalize (the fallback). Returns the previous setting; resets
// the last path to "none yet".
extern "C" int sd_cuda_attention_force_path(int path) {
  const int prev = g_forced;
  g_forced = path >= PATH_AUTO && path <= PATH_REFUSED ? path : PATH_ENV;
  last_path(-1, "");
  return prev;
}

// Which path the last bf16 attention call of this process took: 1 cuDNN, 0 the hand-written
// kernels (why: the reason), -1 none since the last force_path.
extern "C" int sd_cuda_attention_last_path(char *why, size_t len) {
  if (why && len) snprintf(why, len, "%s", g_last_why);
  return g_last_path;
}
