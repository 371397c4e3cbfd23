// CUDA layer norm fused with adaLN modulate, pointwise activations (GELU tanh, SiLU), the
// gated residual, broadcast row ops (add_rows, scale_rows, add_scaled_rows) and the
// sinusoidal timestep features. Each op has the semantics of the CPU op of the same name
// (kernels/cpu/layernorm.c, activations.c, residual.c, embed.c, edm.c).
//
// Determinism: no float atomics anywhere. Sums over tokens (dshift, dscale, dgate) are taken
// per (sample, chunk of COL_TCHUNK tokens, column) in token order, and the chunk partials are
// then added in chunk order; the chunk length is a constant, so the result does not depend on
// the GPU model or the launch configuration.
//
// Rounding: the activations reproduce the CPU's arithmetic step by step (its polynomial exp
// and tanh, with the same operation order, written with round-to-nearest intrinsics so that
// nvcc cannot contract them into FMAs); they match the CPU bit for bit when the CPU build does
// not contract either (GCC's default in -std=c11). The layer-norm statistics are fp32 like the
// CPU's, but summed by warp trees instead of one sequential loop, so they differ by rounding.
//
// Vector paths: the GELU (forward and backward) and the gated residual (forward and dy) load
// and store 16 bytes per thread (8 for bf16 storage) with 32-bit indices when sizes and
// alignment allow, else the grid-stride scalar kernels run; the arithmetic per element is the
// same. The layer norm's one-pass forward and fused backward are in lnmod_fast.cu.
//
// Storage (ops.h): the layer-norm output, the gated residual's branch y, and the GELU's input
// and output in the sd_cuda_gelu_*_t helpers may be stored in bf16. The kernels are templated
// on that storage type (float or __nv_bfloat16): they widen what they read to fp32, compute in
// fp32 exactly as the fp32 instantiation does, and round each stored output once
// (__float2bfloat16_rn, nearest even, as the CPU's sd_bf16_from_float).
#include "cuda_internal.h"

extern "C" {
#include "bf16.h"
#include "cpu_ops.h"
#include "error.h"
}

#include <cuda_bf16.h>

#include <cmath>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

namespace {

constexpr int kThreads = 256;          // threads per block of the grid-stride kernels
constexpr int kLnWarps = 8;            // rows (warps) per block of the per-row kernels
constexpr int kColThreads = 128;       // columns per block of the column-sum kernels
constexpr int COL_TCHUNK = 32;         // tokens summed per partial in the column sums

// ---- storage types: an element read as fp32, an fp32 value stored (rounded once) --------------
__device__ __forceinline__ float load_f(const float *p) { return *p; }
__device__ __forceinline__ float load_f(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ void store_f(float *p, float v) { *p = v; }
__device__ __forceinline__ void store_f(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }

__device__ __forceinline__ float warp_sum(float v) {
  // butterfly: every lane ends with the same (bitwise) sum, since a + b == b + a exactly
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// ---- the CPU's exp and tanh (kernels/cpu/fast_math.h), operation for operation ----------
__device__ __forceinline__ float dev_expf(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  float n = __fsub_rn(__fadd_rn(__fmul_rn(x, 1.44269504088896341f), 12582912.0f), 12582912.0f);
  float r = __fsub_rn(x, __fmul_rn(n, 0.693145751953125f));
  r = __fsub_rn(r, __fmul_rn(n, 1.428606765330187045e-06f));
  float p = 1.0f / 720.0f;
  p = __fadd_rn(__fmul_rn(p, r), 1.0f / 120.0f);
  p = __fadd_rn(__fmul_rn(p, r), 1.0f / 24.0f);
  p = __fadd_rn(__fmul_rn(p, r), 1.0f / 6.0f);
  p = __fadd_rn(__fmul_rn(p, r), 0.5f);
  p = __fadd_rn(__fmul_rn(p, r), 1.0f);
  p = __fadd_rn(__fmul_rn(p, r), 1.0f);
  int bits = ((int)n + 127) << 23;  // 2^n
  return __fmul_rn(p, __int_as_float(bits));
}

__device__ __forceinline__ float dev_tanhf(float x) {
  return __fsub_rn(1.0f, __fdiv_rn(2.0f, __fadd_rn(dev_expf(__fmul_rn(2.0f, x)), 1.0f)));
}

#define GELU_K 0.7978845608028654f  // sqrt(2/pi), as activations.c
#define GELU_C 0.044715f

// ---- layer norm + modulate -----------------------------------------------------------------

// One warp per row r = (b, t) of D: lanes stride over the columns (coalesced), the mean and
// then the population variance of the centred values are warp sums (two passes, fp32, eps
// inside the sqrt, as layernorm.c); a third pass writes the modulated output, stored as OutT
// (float or __nv_bfloat16). x, shift, scale, mean, rstd are fp32.
template <typename OutT>
__global__ void __launch_bounds__(kLnWarps * 32)
lnmod_fwd_kernel(OutT *out, float *mean, float *rstd, const float *x, const float *shift,
                 const float *scale, int mod_stride, int T, size_t rows, int D, float eps) {
  size_t r = (size_t)blockIdx.x * kLnWarps + threadIdx.x / 32;
  if (r >= rows) return;
  int lane = threadIdx.x & 31;
  const float *xr = x + r * D;
  float s = 0.0f;
  for (int d = lane; d < D; d += 32) s += xr[d];
  float m = warp_sum(s) / (float)D;
  float v = 0.0f;
  for (int d = lane; d < D; d += 32) {
    float c = xr[d] - m;
    v += c * c;
  }
  v = warp_sum(v) / (float)D;
  float rs = 1.0f / sqrtf(v + eps);
  size_t b = r / (size_t)T;
  const float *sh = shift + b * mod_stride;
  const float *sc = scale + b * mod_stride;
  OutT *o = out + r * D;
  for (int d = lane; d < D; d += 32) store_f(o + d, (xr[d] - m) * rs * (1.0f + sc[d]) + sh[d]);
  if (lane == 0) {
    if (mean) mean[r] = m;
    if (rstd) rstd[r] = rs;
  }
}

// dx: one warp per row, as the forward. Pass 1: the row means of g' = dout * (1 + scale) and
// g' * xhat; pass 2: dx += rstd * (g' - mean(g') - xhat * mean(g' xhat)).
__global__ void __launch_bounds__(kLnWarps * 32)
lnmod_bwd_dx_kernel(float *dx, const float *dout, const float *x, const float *mean,
                    const float *rstd, const float *scale, int mod_stride, int T, size_t rows,
                    int D) {
  size_t r = (size_t)blockIdx.x * kLnWarps + threadIdx.x / 32;
  if (r >= rows) return;
  int lane = threadIdx.x & 31;
  const float *g = dout + r * D, *xr = x + r * D;
  const float *sc = scale + (r / (size_t)T) * mod_stride;
  float m = mean[r], s = rstd[r];
  float sum_g = 0.0f, sum_gx = 0.0f;
  for (int d = lane; d < D; d += 32) {
    float gp = g[d] * (1.0f + sc[d]);
    sum_g += gp;
    sum_gx += gp * (xr[d] - m) * s;
  }
  sum_g = warp_sum(sum_g) / (float)D;
  sum_gx = warp_sum(sum_gx) / (float)D;
  float *o = dx + r * D;
  for (int d = lane; d < D; d += 32) {
    float gp = g[d] * (1.0f + sc[d]);
    float xh = (xr[d] - m) * s;
    o[d] += s * (gp - sum_g - xh * sum_gx);
  }
}

// dshift/dscale partials: thread (b, chunk c, column d); grid (ceil(D/kColThreads), nchunks,
// min(B, 65535)) with a loop over b; each thread sums its chunk of tokens in token order.
// With one chunk (direct) it adds straight into the outputs, else it writes the partials
// (B, nchunks, D) for col_finish_kernel.
__global__ void __launch_bounds__(kColThreads)
lnmod_bwd_cols_kernel(float *dshift, float *dscale, float *pshift, float *pscale,
                      const float *dout, const float *x, const float *mean, const float *rstd,
                      int mod_stride, int B, int T, int D, int direct) {
  int d = blockIdx.x * kColThreads + threadIdx.x;
  if (d >= D) return;
  int c = blockIdx.y, nchunks = gridDim.y;
  int t0 = c * COL_TCHUNK, t1 = min(T, t0 + COL_TCHUNK);
  for (int b = blockIdx.z; b < B; b += gridDim.z) {
    float ash = 0.0f, asc = 0.0f;
    for (int t = t0; t < t1; t++) {
      size_t r = (size_t)b * T + t;
      float g = dout[r * D + d];
      ash += g;
      asc += g * (x[r * D + d] - mean[r]) * rstd[r];
    }
    if (direct) {
      if (dshift) dshift[(size_t)b * mod_stride + d] += ash;
      if (dscale) dscale[(size_t)b * mod_stride + d] += asc;
    } else {
      size_t o = ((size_t)b * nchunks + c) * D + d;
      if (pshift) pshift[o] = ash;
      if (pscale) pscale[o] = asc;
    }
  }
}

// out rows (at out_stride) += the chunk partials (B, nchunks, D) summed in chunk order; one
// thread per (b, d), grid-stride.
__global__ void col_finish_kernel(float *out, const float *part, int out_stride, int B,
                                  int nchunks, int D) {
  size_t n = (size_t)B * D;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    size_t b = i / D, d = i % D;
    const float *p = part + b * nchunks * D + d;
    float s = 0.0f;
    for (int c = 0; c < nchunks; c++) s += p[(size_t)c * D];
    out[b * out_stride + d] += s;
  }
}

// ---- activations: grid-stride over n, one element per thread per step ----------------------

// out (n) = gelu(x (n)), both stored as E (float or __nv_bfloat16); may run in place.
template <typename E>
__global__ void gelu_fwd_kernel(E *out, const E *x, size_t n) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    float v = load_f(x + i);
    float cube = __fmul_rn(__fmul_rn(__fmul_rn(GELU_C, v), v), v);
    float th = dev_tanhf(__fmul_rn(GELU_K, __fadd_rn(v, cube)));
    store_f(out + i, __fmul_rn(__fmul_rn(0.5f, v), __fadd_rn(1.0f, th)));
  }
}

// dx (n) = dout * gelu'(x), dx and dout fp32 (dx may alias dout), x stored as E.
template <typename E>
__global__ void gelu_bwd_kernel(float *dx, const float *dout, const E *x, size_t n) {
  const float c3 = 3.0f * GELU_C;  // folded in float, as the CPU's 3.0f * 0.044715f
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    float v = load_f(x + i);
    float u = __fmul_rn(GELU_K, __fadd_rn(v, __fmul_rn(__fmul_rn(__fmul_rn(GELU_C, v), v), v)));
    float th = dev_tanhf(u);
    float du = __fmul_rn(GELU_K, __fadd_rn(1.0f, __fmul_rn(__fmul_rn(c3, v), v)));
    float g = __fadd_rn(__fmul_rn(0.5f, __fadd_rn(1.0f, th)),
                        __fmul_rn(__fmul_rn(__fmul_rn(0.5f, v),
                                            __fsub_rn(1.0f, __fmul_rn(th, th))), du));
    dx[i] = __fmul_rn(dout[i], g);
  }
}

__global__ void silu_fwd_kernel(float *out, const float *x, size_t n) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    float v = x[i];
    out[i] = __fdiv_rn(v, __fadd_rn(1.0f, dev_expf(-v)));
  }
}

__global__ void silu_bwd_kernel(float *dx, const float *dout, const float *x, size_t n) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    float v = x[i];
    float s = __fdiv_rn(1.0f, __fadd_rn(1.0f, dev_expf(-v)));
    dx[i] = __fmul_rn(__fmul_rn(dout[i], s), __fadd_rn(1.0f, __fmul_rn(v, __fsub_rn(1.0f, s))));
  }
}

// ---- 16-byte vector paths: 4 elements per thread, 32-bit indices ---------------------------
// Used when the element count is a multiple of 4 (a row width D for the row ops), under 2^31,
// and every pointer is 16-byte aligned (8-byte for bf16): the per-element arithmetic is the
// scalar kernels', so the results are bitwise theirs.

__device__ __forceinline__ float4 ld4f(const float *p) { return *reinterpret_cast<const float4 *>(p); }
__device__ __forceinline__ float4 ld4f(const __nv_bfloat16 *p) {
  const uint2 u = *reinterpret_cast<const uint2 *>(p);
  const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&u.x));
  const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&u.y));
  return make_float4(a.x, a.y, b.x, b.y);
}
__device__ __forceinline__ void st4f(float *p, float4 v) { *reinterpret_cast<float4 *>(p) = v; }
__device__ __forceinline__ void st4f(__nv_bfloat16 *p, float4 v) {
  __nv_bfloat162 q[2] = {__floats2bfloat162_rn(v.x, v.y), __floats2bfloat162_rn(v.z, v.w)};
  *reinterpret_cast<uint2 *>(p) = *reinterpret_cast<uint2 *>(q);
}

__device__ __forceinline__ float gelu_f(float v) {
  float cube = __fmul_rn(__fmul_rn(__fmul_rn(GELU_C, v), v), v);
  float th = dev_tanhf(__fmul_rn(GELU_K, __fadd_rn(v, cube)));
  return __fmul_rn(__fmul_rn(0.5f, v), __fadd_rn(1.0f, th));
}
__device__ __forceinline__ float dgelu_f(float v) {
  const float c3 = 3.0f * GELU_C;
  float u = __fmul_rn(GELU_K, __fadd_rn(v, __fmul_rn(__fmul_rn(__fmul_rn(GELU_C, v), v), v)));
  float th = dev_tanhf(u);
  float du = __fmul_rn(GELU_K, __fadd_rn(1.0f, __fmul_rn(__fmul_rn(c3, v), v)));
  return __fadd_rn(__fmul_rn(0.5f, __fadd_rn(1.0f, th)),
                   __fmul_rn(__fmul_rn(__fmul_rn(0.5f, v), __fsub_rn(1.0f, __fmul_rn(th, th))), du));
}

// out (n4 groups of 4) = gelu(x), stored as E.
template <typename E>
__global__ void gelu_fwd_vec_kernel(E *out, const E *x, unsigned n4) {
  for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += gridDim.x * blockDim.x) {
    const float4 v = ld4f(x + 4 * i);
    st4f(out + 4 * i, make_float4(gelu_f(v.x), gelu_f(v.y), gelu_f(v.z), gelu_f(v.w)));
  }
}

// dx = dout * gelu'(x), 4 at a time.
template <typename E>
__global__ void gelu_bwd_vec_kernel(float *dx, const float *dout, const E *x, unsigned n4) {
  for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += gridDim.x * blockDim.x) {
    const float4 v = ld4f(x + 4 * i), g = ld4f(dout + 4 * i);
    st4f(dx + 4 * i, make_float4(__fmul_rn(g.x, dgelu_f(v.x)), __fmul_rn(g.y, dgelu_f(v.y)),
                                 __fmul_rn(g.z, dgelu_f(v.z)), __fmul_rn(g.w, dgelu_f(v.w))));
  }
}

// One block per row r = (b, t) of D = 4 D4 columns: out = x + gate[b] * y (gated_residual_fwd)
// or, with x NULL, out = y * gate[b] (the dy of its backward, y = dout).
template <typename YT>
__global__ void gated_rows_vec_kernel(float *out, const float *x, const YT *y, const float *gate,
                                      int gate_stride, unsigned T, unsigned D4) {
  const unsigned r = blockIdx.x, b = r / T;
  const size_t o = (size_t)r * D4 * 4;
  const float *g = gate + (size_t)b * gate_stride;
  for (unsigned c = threadIdx.x; c < D4; c += blockDim.x) {
    const float4 y4 = ld4f(y + o + 4 * c), g4 = ld4f(g + 4 * c);
    if (x) {
      const float4 x4 = ld4f(x + o + 4 * c);
      st4f(out + o + 4 * c, make_float4(x4.x + g4.x * y4.x, x4.y + g4.y * y4.y,
                                        x4.z + g4.z * y4.z, x4.w + g4.w * y4.w));
    } else {
      st4f(out + o + 4 * c, make_float4(y4.x * g4.x, y4.y * g4.y, y4.z * g4.z, y4.w * g4.w));
    }
  }
}

bool al16(const void *p) { return ((uintptr_t)p & 15u) == 0; }
bool al8(const void *p) { return ((uintptr_t)p & 7u) == 0; }

// ---- gated residual --------------------------------------------------------------------------

// out = x + gate[b] * y, grid-stride over B*T*D (out may alias x: each element is read and
// written by the same thread). out, x fp32; y stored as YT (float or __nv_bfloat16).
template <typename YT>
__global__ void gated_residual_fwd_kernel(float *out, const float *x, const YT *y,
                                          const float *gate, int gate_stride, size_t TD, int D,
                                          size_t n) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    size_t b = i / TD, d = i % D;
    out[i] = x[i] + gate[b * gate_stride + d] * load_f(y + i);
  }
}

// dy = dout * gate[b], grid-stride over B*T*D (dy may alias dout).
__global__ void gated_residual_dy_kernel(float *dy, const float *dout, const float *gate,
                                         int gate_stride, size_t TD, int D, size_t n) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    size_t b = i / TD, d = i % D;
    dy[i] = dout[i] * gate[b * gate_stride + d];
  }
}

// dgate partials: thread (b, chunk c, column d), as lnmod_bwd_cols_kernel. y (B, T, D) is
// stored as YT (float or __nv_bfloat16).
template <typename YT>
__global__ void __launch_bounds__(kColThreads)
gate_cols_kernel(float *dgate, float *part, const float *dout, const YT *y, int gate_stride,
                 int B, int T, int D, int direct) {
  int d = blockIdx.x * kColThreads + threadIdx.x;
  if (d >= D) return;
  int c = blockIdx.y, nchunks = gridDim.y;
  int t0 = c * COL_TCHUNK, t1 = min(T, t0 + COL_TCHUNK);
  for (int b = blockIdx.z; b < B; b += gridDim.z) {
    float acc = 0.0f;
    for (int t = t0; t < t1; t++) {
      size_t j = ((size_t)b * T + t) * D + d;
      acc += dout[j] * load_f(y + j);
    }
    if (direct) dgate[(size_t)b * gate_stride + d] += acc;
    else part[((size_t)b * nchunks + c) * D + d] = acc;
  }
}

// ---- broadcast row ops: grid-stride over all B*N elements --------------------------------------

__global__ void add_rows_kernel(float *x, const float *row, int N, size_t n) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    x[i] += row[i % N];
}

__global__ void scale_rows_kernel(float *out, const float *x, const float *s, size_t rowlen,
                                  size_t n) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    out[i] = s[i / rowlen] * x[i];
}

__global__ void add_scaled_rows_kernel(float *out, const float *x0, const float *eps,
                                       const float *sigma, size_t rowlen, size_t n) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    out[i] = __fadd_rn(x0[i], __fmul_rn(sigma[i / rowlen], eps[i]));  // no FMA, as the CPU
}

// Timestep features: one thread per (b, k), k < F/2 (grid-stride); the frequency and the
// argument in double with the CPU's formula and operation order.
__global__ void timestep_features_kernel(float *feat, const float *t, int B, int F,
                                         double neg_log_max_period) {
  int half = F / 2;
  size_t n = (size_t)B * half;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    size_t b = i / half;
    int k = (int)(i % half);
    double f = exp(neg_log_max_period * (double)k / (double)half);
    double a = (double)t[b] * f;
    feat[b * F + k] = (float)cos(a);
    feat[b * F + half + k] = (float)sin(a);
  }
}

// Launches the column sums: direct adds when one chunk covers T, else partials in scratch
// followed by col_finish_kernel.
inline dim3 col_grid(int B, int T, int D) {
  int nchunks = (T + COL_TCHUNK - 1) / COL_TCHUNK;
  return dim3((unsigned)((D + kColThreads - 1) / kColThreads), (unsigned)nchunks,
              (unsigned)(B < 65535 ? B : 65535));
}

// A storage type the kernels are instantiated for, or a fatal error naming the op.
inline void check_dtype(const char *op, sd_dtype t) {
  if (t != SD_F32 && t != SD_BF16) SD_FATAL("%s: unknown storage type %d", op, (int)t);
}

// ---- launchers, one per storage type ----------------------------------------------------------

template <typename OutT>
void launch_lnmod_fwd(cudaStream_t st, OutT *out, float *mean, float *rstd, const float *x,
                      const float *shift, const float *scale, int mod_stride, int T,
                      size_t rows, int D, float eps) {
  unsigned blocks = (unsigned)((rows + kLnWarps - 1) / kLnWarps);
  lnmod_fwd_kernel<OutT><<<blocks, kLnWarps * 32, 0, st>>>(out, mean, rstd, x, shift, scale,
                                                           mod_stride, T, rows, D, eps);
  SD_CUDA_LAUNCHED("lnmod_fwd_kernel");
}

template <typename E>
void launch_gelu_fwd(cudaStream_t st, E *out, const E *x, size_t n) {
  const bool aligned = sizeof(E) == 2 ? al8(out) && al8(x) : al16(out) && al16(x);
  if (n % 4 == 0 && n < (1ull << 31) && aligned) {
    gelu_fwd_vec_kernel<E><<<sd_cuda_blocks(n / 4, kThreads), kThreads, 0, st>>>(
        out, x, (unsigned)(n / 4));
    SD_CUDA_LAUNCHED("gelu_fwd_vec_kernel");
    return;
  }
  gelu_fwd_kernel<E><<<sd_cuda_blocks(n, kThreads), kThreads, 0, st>>>(out, x, n);
  SD_CUDA_LAUNCHED("gelu_fwd_kernel");
}

template <typename E>
void launch_gelu_bwd(cudaStream_t st, float *dx, const float *dout, const E *x, size_t n) {
  if (n % 4 == 0 && n < (1ull << 31) && al16(dx) && al16(dout) &&
      (sizeof(E) == 2 ? al8(x) : al16(x))) {
    gelu_bwd_vec_kernel<E><<<sd_cuda_blocks(n / 4, kThreads), kThreads, 0, st>>>(
        dx, dout, x, (unsigned)(n / 4));
    SD_CUDA_LAUNCHED("gelu_bwd_vec_kernel");
    return;
  }
  gelu_bwd_kernel<E><<<sd_cuda_blocks(n, kThreads), kThreads, 0, st>>>(dx, dout, x, n);
  SD_CUDA_LAUNCHED("gelu_bwd_kernel");
}

template <typename YT>
void launch_gated_residual_fwd(cudaStream_t st, float *out, const float *x, const YT *y,
                               const float *gate, int gate_stride, size_t TD, int D, size_t n) {
  const size_t rows = n / D;
  if (D % 4 == 0 && gate_stride % 4 == 0 && rows < (1ull << 31) && al16(out) && al16(x) &&
      al16(gate) && (sizeof(YT) == 2 ? al8(y) : al16(y))) {
    gated_rows_vec_kernel<YT><<<(unsigned)rows, 128, 0, st>>>(out, x, y, gate, gate_stride,
                                                               (unsigned)(TD / D),
                                                               (unsigned)(D / 4));
    SD_CUDA_LAUNCHED("gated_rows_vec_kernel");
    return;
  }
  gated_residual_fwd_kernel<YT><<<sd_cuda_blocks(n, kThreads), kThreads, 0, st>>>(
      out, x, y, gate, gate_stride, TD, D, n);
  SD_CUDA_LAUNCHED("gated_residual_fwd_kernel");
}

// dgate (rows at gate_stride) += sum over t of dout * y: direct adds when one chunk covers T,
// else partials (B, nchunks, D) in scratch followed by col_finish_kernel.
template <typename YT>
void launch_gate_cols(sd_backend *be, float *dgate, const float *dout, const YT *y,
                      int gate_stride, int B, int T, int D) {
  cudaStream_t st = sd_cuda_st(be)->stream;
  dim3 grid = col_grid(B, T, D);
  int nchunks = (int)grid.y;
  if (nchunks == 1) {
    gate_cols_kernel<YT><<<grid, kColThreads, 0, st>>>(dgate, NULL, dout, y, gate_stride, B, T,
                                                       D, 1);
    SD_CUDA_LAUNCHED("gate_cols_kernel");
  } else {
    float *part = (float *)sd_cuda_scratch(be, (size_t)B * nchunks * D * sizeof(float));
    gate_cols_kernel<YT><<<grid, kColThreads, 0, st>>>(NULL, part, dout, y, gate_stride, B, T,
                                                       D, 0);
    SD_CUDA_LAUNCHED("gate_cols_kernel");
    col_finish_kernel<<<sd_cuda_blocks((size_t)B * D, kThreads), kThreads, 0, st>>>(
        dgate, part, gate_stride, B, nchunks, D);
    SD_CUDA_LAUNCHED("col_finish_kernel");
  }
}

}  // namespace

// ---- the ops ---------------------------------------------------------------------------------

void sd_cuda_lnmod_fwd(sd_backend *be, void *out, sd_dtype out_t, float *mean, float *rstd,
                       const float *x, const float *shift, const float *scale, int mod_stride,
                       int B, int T, int D, float eps) {
  check_dtype("lnmod_fwd", out_t);
  size_t rows = (size_t)B * T;
  if (rows == 0 || D <= 0) return;
  cudaStream_t st = sd_cuda_st(be)->stream;
  if (rows < (1u << 31) && sd_cuda_lnmod_fast_fits(D, mod_stride, out, x, shift, scale, NULL)) {
    sd_cuda_lnmod_fwd_fast(be, out, out_t == SD_BF16, mean, rstd, x, shift, scale, mod_stride,
                           T, (unsigned)rows, D, eps);  // one pass (lnmod_fast.cu)
    return;
  }
  if (out_t == SD_BF16)
    launch_lnmod_fwd(st, (__nv_bfloat16 *)out, mean, rstd, x, shift, scale, mod_stride, T, rows,
                     D, eps);
  else
    launch_lnmod_fwd(st, (float *)out, mean, rstd, x, shift, scale, mod_stride, T, rows, D, eps);
}

void sd_cuda_lnmod_bwd(sd_backend *be, float *dx, float *dshift, float *dscale,
                       const float *dout, const float *x, const float *mean, const float *rstd,
                       const float *scale, int mod_stride, int B, int T, int D) {
  size_t rows = (size_t)B * T;
  if (rows == 0 || D <= 0) return;
  cudaStream_t st = sd_cuda_st(be)->stream;
  if (B <= 65535 && sd_cuda_lnmod_fast_fits(D, mod_stride, dx, dout, x, scale,
                                            dshift ? dshift : dscale)) {
    // one fused kernel (lnmod_fast.cu), then the chunk partials in chunk order
    const int nchunks = (T + COL_TCHUNK - 1) / COL_TCHUNK;
    float *pshift = NULL, *pscale = NULL;
    if (nchunks > 1 && (dshift || dscale)) {
      const size_t part = (size_t)B * nchunks * D;
      float *ps = (float *)sd_cuda_scratch(be, 2 * part * sizeof(float));
      pshift = dshift ? ps : NULL;
      pscale = dscale ? ps + part : NULL;
    }
    sd_cuda_lnmod_bwd_fast(be, dx, nchunks == 1 ? dshift : NULL, nchunks == 1 ? dscale : NULL,
                           pshift, pscale, nchunks, dout, x, mean, rstd, scale, mod_stride, B,
                           T, D);
    const unsigned fb = sd_cuda_blocks((size_t)B * D, kThreads);
    if (pshift) {
      col_finish_kernel<<<fb, kThreads, 0, st>>>(dshift, pshift, mod_stride, B, nchunks, D);
      SD_CUDA_LAUNCHED("col_finish_kernel");
    }
    if (pscale) {
      col_finish_kernel<<<fb, kThreads, 0, st>>>(dscale, pscale, mod_stride, B, nchunks, D);
      SD_CUDA_LAUNCHED("col_finish_kernel");
    }
    return;
  }
  if (dshift || dscale) {
    dim3 grid = col_grid(B, T, D);
    int nchunks = (int)grid.y;
    if (nchunks == 1) {
      lnmod_bwd_cols_kernel<<<grid, kColThreads, 0, st>>>(dshift, dscale, NULL, NULL, dout, x,
                                                          mean, rstd, mod_stride, B, T, D, 1);
      SD_CUDA_LAUNCHED("lnmod_bwd_cols_kernel");
    } else {
      size_t part = (size_t)B * nchunks * D;
      float *ps = (float *)sd_cuda_scratch(be, 2 * part * sizeof(float));
      float *pshift = dshift ? ps : NULL, *pscale = dscale ? ps + part : NULL;
      lnmod_bwd_cols_kernel<<<grid, kColThreads, 0, st>>>(NULL, NULL, pshift, pscale, dout, x,
                                                          mean, rstd, mod_stride, B, T, D, 0);
      SD_CUDA_LAUNCHED("lnmod_bwd_cols_kernel");
      unsigned fb = sd_cuda_blocks((size_t)B * D, kThreads);
      if (dshift) {
        col_finish_kernel<<<fb, kThreads, 0, st>>>(dshift, pshift, mod_stride, B, nchunks, D);
        SD_CUDA_LAUNCHED("col_finish_kernel");
      }
      if (dscale) {
        col_finish_kernel<<<fb, kThreads, 0, st>>>(dscale, pscale, mod_stride, B, nchunks, D);
        SD_CUDA_LAUNCHED("col_finish_kernel");
      }
    }
  }
  if (dx) {
    unsigned blocks = (unsigned)((rows + kLnWarps - 1) / kLnWarps);
    lnmod_bwd_dx_kernel<<<blocks, kLnWarps * 32, 0, st>>>(dx, dout, x, mean, rstd, scale,
                                                          mod_stride, T, rows, D);
    SD_CUDA_LAUNCHED("lnmod_bwd_dx_kernel");
  }
}

void sd_cuda_gelu_fwd(sd_backend *be, float *out, const float *x, size_t n) {
  if (n == 0) return;
  launch_gelu_fwd(sd_cuda_st(be)->stream, out, x, n);
}

void sd_cuda_gelu_bwd(sd_backend *be, float *dx, const float *dout, const float *x, size_t n) {
  if (n == 0) return;
  launch_gelu_bwd(sd_cuda_st(be)->stream, dx, dout, x, n);
}

// For the matmul fallbacks (not in the op table): out (n) = gelu(x (n)), both stored as t
// (in place allowed); the same arithmetic as sd_cuda_gelu_fwd, the result rounded once.
void sd_cuda_gelu_fwd_t(sd_backend *be, void *out, const void *x, sd_dtype t, size_t n) {
  check_dtype("gelu_fwd_t", t);
  if (n == 0) return;
  cudaStream_t st = sd_cuda_st(be)->stream;
  if (t == SD_BF16)
    launch_gelu_fwd(st, (__nv_bfloat16 *)out, (const __nv_bfloat16 *)x, n);
  else
    launch_gelu_fwd(st, (float *)out, (const float *)x, n);
}

// For the matmul fallbacks: dx (n) = dout * gelu'(pre), dx and dout fp32 (dx may alias dout),
// pre (n) stored as pre_t.
void sd_cuda_gelu_bwd_pre_t(sd_backend *be, float *dx, const float *dout, const void *pre,
                            sd_dtype pre_t, size_t n) {
  check_dtype("gelu_bwd_pre_t", pre_t);
  if (n == 0) return;
  cudaStream_t st = sd_cuda_st(be)->stream;
  if (pre_t == SD_BF16)
    launch_gelu_bwd(st, dx, dout, (const __nv_bfloat16 *)pre, n);
  else
    launch_gelu_bwd(st, dx, dout, (const float *)pre, n);
}

void sd_cuda_silu_fwd(sd_backend *be, float *out, const float *x, size_t n) {
  if (n == 0) return;
  silu_fwd_kernel<<<sd_cuda_blocks(n, kThreads), kThreads, 0, sd_cuda_st(be)->stream>>>(out, x,
                                                                                        n);
  SD_CUDA_LAUNCHED("silu_fwd_kernel");
}

void sd_cuda_silu_bwd(sd_backend *be, float *dx, const float *dout, const float *x, size_t n) {
  if (n == 0) return;
  silu_bwd_kernel<<<sd_cuda_blocks(n, kThreads), kThreads, 0, sd_cuda_st(be)->stream>>>(
      dx, dout, x, n);
  SD_CUDA_LAUNCHED("silu_bwd_kernel");
}

void sd_cuda_gated_residual_fwd(sd_backend *be, float *out, const float *x, const void *y,
                                sd_dtype y_t, const float *gate, int gate_stride, int B, int T,
                                int D) {
  check_dtype("gated_residual_fwd", y_t);
  size_t TD = (size_t)T * D, n = (size_t)B * TD;
  if (n == 0) return;
  cudaStream_t st = sd_cuda_st(be)->stream;
  if (y_t == SD_BF16)
    launch_gated_residual_fwd(st, out, x, (const __nv_bfloat16 *)y, gate, gate_stride, TD, D, n);
  else
    launch_gated_residual_fwd(st, out, x, (const float *)y, gate, gate_stride, TD, D, n);
}

void sd_cuda_gated_residual_bwd(sd_backend *be, float *dy, float *dgate, const float *dout,
                                const void *y, sd_dtype y_t, const float *gate,
                                int gate_stride, int B, int T, int D) {
  check_dtype("gated_residual_bwd", y_t);
  size_t TD = (size_t)T * D, n = (size_t)B * TD;
  if (n == 0) return;
  cudaStream_t st = sd_cuda_st(be)->stream;
  // dgate first: dy may alias dout, and dgate reads dout
  if (dgate) {
    if (y_t == SD_BF16)
      launch_gate_cols(be, dgate, dout, (const __nv_bfloat16 *)y, gate_stride, B, T, D);
    else
      launch_gate_cols(be, dgate, dout, (const float *)y, gate_stride, B, T, D);
  }
  const size_t rows = n / D;
  if (dy && D % 4 == 0 && gate_stride % 4 == 0 && rows < (1ull << 31) && al16(dy) &&
      al16(dout) && al16(gate)) {
    gated_rows_vec_kernel<float><<<(unsigned)rows, 128, 0, st>>>(dy, NULL, dout, gate,
                                                                  gate_stride, (unsigned)T,
                                                                  (unsigned)(D / 4));
    SD_CUDA_LAUNCHED("gated_rows_vec_kernel");
  } else if (dy) {
    gated_residual_dy_kernel<<<sd_cuda_blocks(n, kThreads), kThreads, 0, st>>>(
        dy, dout, gate, gate_stride, TD, D, n);
    SD_CUDA_LAUNCHED("gated_residual_dy_kernel");
  }
}

void sd_cuda_add_rows(sd_backend *be, float *x, const float *row, int B, int N) {
  size_t n = (size_t)B * N;
  if (n == 0) return;
  add_rows_kernel<<<sd_cuda_blocks(n, kThreads), kThreads, 0, sd_cuda_st(be)->stream>>>(x, row,
                                                                                        N, n);
  SD_CUDA_LAUNCHED("add_rows_kernel");
}

void sd_cuda_scale_rows(sd_backend *be, float *out, const float *x, const float *s, int B,
                        size_t n) {
  size_t total = (size_t)B * n;
  if (total == 0) return;
  scale_rows_kernel<<<sd_cuda_blocks(total, kThreads), kThreads, 0, sd_cuda_st(be)->stream>>>(
      out, x, s, n, total);
  SD_CUDA_LAUNCHED("scale_rows_kernel");
}

void sd_cuda_add_scaled_rows(sd_backend *be, float *out, const float *x0, const float *eps,
                             const float *sigma, int B, size_t n) {
  size_t total = (size_t)B * n;
  if (total == 0) return;
  add_scaled_rows_kernel<<<sd_cuda_blocks(total, kThreads), kThreads, 0,
                           sd_cuda_st(be)->stream>>>(out, x0, eps, sigma, n, total);
  SD_CUDA_LAUNCHED("add_scaled_rows_kernel");
}

void sd_cuda_timestep_features(sd_backend *be, float *feat, const float *t, int B, int F,
                               float max_period) {
  size_t n = (size_t)B * (F / 2);
  if (n == 0) return;
  timestep_features_kernel<<<sd_cuda_blocks(n, kThreads), kThreads, 0,
                             sd_cuda_st(be)->stream>>>(feat, t, B, F,
                                                       -log((double)max_period));
  SD_CUDA_LAUNCHED("timestep_features_kernel");
}

// ---- self-test: every op above against the CPU op on random inputs ----------------------------

#include "selftest_util.h"

namespace {

// bf16 storage in the self-test: host values rounded to bf16 (as the CPU ops round) and back.
std::vector<uint16_t> to_bf16(const std::vector<float> &v) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); i++) h[i] = sd_bf16_from_float(v[i]);
  return h;
}
std::vector<float> from_bf16(const std::vector<uint16_t> &h) {
  std::vector<float> v(h.size());
  for (size_t i = 0; i < h.size(); i++) v[i] = sd_bf16_to_float(h[i]);
  return v;
}
// n bf16 values from the device.
std::vector<uint16_t> down_bf16(cudaStream_t st, const uint16_t *d, size_t n) {
  std::vector<uint16_t> h(n);
  SD_CUDA_CHECK(cudaMemcpyAsync(h.data(), d, n * sizeof(uint16_t), cudaMemcpyDeviceToHost, st));
  SD_CUDA_CHECK(cudaStreamSynchronize(st));
  return h;
}

// The worst distance, in bf16 units in the last place, between bf16 outputs of the GPU and the
// CPU. The fp32 values before rounding differ by rounding (warp-tree sums, FMA contraction),
// so an element near a rounding boundary may land one unit apart; more is a failure.
struct UlpWorst {
  long ulps = 0;
  char what[160] = "none";
  static long key(uint16_t h) {  // monotone in the value; +0 and -0 map to 0
    return (h & 0x8000u) ? -(long)(h & 0x7fffu) : (long)h;
  }
  static bool is_nan(uint16_t h) { return (h & 0x7f80u) == 0x7f80u && (h & 0x007fu) != 0; }
  void compare(const char *op, const std::vector<uint16_t> &gpu,
               const std::vector<uint16_t> &cpu) {
    for (size_t i = 0; i < cpu.size(); i++) {
      long u = (is_nan(gpu[i]) || is_nan(cpu[i])) ? 1L << 20 : labs(key(gpu[i]) - key(cpu[i]));
      if (u > ulps) {
        ulps = u;
        snprintf(what, sizeof what, "%s[%zu]: gpu %.9g cpu %.9g (%ld bf16 ulps)", op, i,
                 (double)sd_bf16_to_float(gpu[i]), (double)sd_bf16_to_float(cpu[i]), u);
      }
    }
  }
};

}  // namespace

extern "C" int sd_cuda_norm_act_selftest(sd_backend *be, char *err, size_t len) {
  sd_backend cpu;
  if (sd_backend_cpu_init(&cpu, 0) != 0) {
    snprintf(err, len, "CPU backend did not start");
    return -1;
  }
  cudaStream_t st = sd_cuda_st(be)->stream;
  Worst w;
  UlpWorst wu;  // the bf16-stored outputs
  Rng rng(12345);
  {
    DevPool pool(st);
    // lnmod: one shape with several token chunks (partials path) and one with a single chunk
    const int shapes[2][3] = {{3, 70, 200}, {2, 17, 64}};
    for (const auto &sh : shapes) {
      int B = sh[0], T = sh[1], D = sh[2], ms = 6 * D;
      size_t n = (size_t)B * T * D;
      auto x = rng.vec(n, -2.0f, 4.0f), mod = rng.vec((size_t)B * ms, -1.0f, 1.0f);
      auto dout = rng.vec(n, -1.0f, 1.0f), dx0 = rng.vec(n, -1.0f, 1.0f);
      auto dmod0 = rng.vec((size_t)B * ms, -1.0f, 1.0f);
      std::vector<float> out(n), mean((size_t)B * T), rstd((size_t)B * T), dx = dx0,
          dmod = dmod0;
      sd_cpu_lnmod_fwd(&cpu, out.data(), SD_F32, mean.data(), rstd.data(), x.data(),
                       mod.data() + D, mod.data() + 3 * D, ms, B, T, D, 1e-6f);
      sd_cpu_lnmod_bwd(&cpu, dx.data(), dmod.data() + D, dmod.data() + 3 * D, dout.data(),
                       x.data(), mean.data(), rstd.data(), mod.data() + 3 * D, ms, B, T, D);
      float *gx = pool.up(x), *gmod = pool.up(mod), *gout = pool.up(out), *gmean = pool.up(mean),
            *grstd = pool.up(rstd), *gdout = pool.up(dout), *gdx = pool.up(dx0),
            *gdmod = pool.up(dmod0);
      sd_cuda_lnmod_fwd(be, gout, SD_F32, gmean, grstd, gx, gmod + D, gmod + 3 * D, ms, B, T, D,
                        1e-6f);
      sd_cuda_lnmod_bwd(be, gdx, gdmod + D, gdmod + 3 * D, gdout, gx, gmean, grstd,
                        gmod + 3 * D, ms, B, T, D);
      w.compare("lnmod_fwd.out", pool.down(gout, n), out);
      w.compare("lnmod_fwd.mean", pool.down(gmean, mean.size()), mean);
      w.compare("lnmod_fwd.rstd", pool.down(grstd, rstd.size()), rstd);
      w.compare("lnmod_bwd.dx", pool.down(gdx, n), dx);
      w.compare("lnmod_bwd.dshift_dscale", pool.down(gdmod, dmod.size()), dmod);
      // the output stored in bf16 (the statistics stay fp32)
      std::vector<uint16_t> out16(n);
      sd_cpu_lnmod_fwd(&cpu, out16.data(), SD_BF16, mean.data(), rstd.data(), x.data(),
                       mod.data() + D, mod.data() + 3 * D, ms, B, T, D, 1e-6f);
      uint16_t *gout16 = pool.up(out16);
      SD_CUDA_CHECK(cudaMemsetAsync(gout16, 0xFF, n * sizeof(uint16_t), st));  // NaN if unwritten
      sd_cuda_lnmod_fwd(be, gout16, SD_BF16, gmean, grstd, gx, gmod + D, gmod + 3 * D, ms, B, T,
                        D, 1e-6f);
      wu.compare("lnmod_fwd.out(bf16)", down_bf16(st, gout16, n), out16);
      w.compare("lnmod_fwd.mean(bf16 out)", pool.down(gmean, mean.size()), mean);
      w.compare("lnmod_fwd.rstd(bf16 out)", pool.down(grstd, rstd.size()), rstd);
    }
    // activations, including the clamped range of the exp and an in-place backward
    {
      size_t n = 10007;
      auto x = rng.vec(n, -12.0f, 12.0f);
      x[0] = -100.0f;
      x[1] = 100.0f;
      x[2] = 0.0f;
      auto dout = rng.vec(n, -1.0f, 1.0f);
      std::vector<float> c(n);
      float *gx = pool.up(x), *gdout = pool.up(dout), *gy = pool.up(c);
      sd_cpu_gelu_fwd(&cpu, c.data(), x.data(), n);
      sd_cuda_gelu_fwd(be, gy, gx, n);
      w.compare("gelu_fwd", pool.down(gy, n), c);
      sd_cpu_gelu_bwd(&cpu, c.data(), dout.data(), x.data(), n);
      sd_cuda_gelu_bwd(be, gy, gdout, gx, n);
      w.compare("gelu_bwd", pool.down(gy, n), c);
      // the storage-typed GELU helpers of the matmul fallbacks: fp32, then bf16 (in place)
      sd_cpu_gelu_fwd(&cpu, c.data(), x.data(), n);
      sd_cuda_gelu_fwd_t(be, gy, gx, SD_F32, n);
      w.compare("gelu_fwd_t(fp32)", pool.down(gy, n), c);
      sd_cpu_gelu_bwd(&cpu, c.data(), dout.data(), x.data(), n);
      sd_cuda_gelu_bwd_pre_t(be, gy, gdout, gx, SD_F32, n);
      w.compare("gelu_bwd_pre_t(fp32)", pool.down(gy, n), c);
      auto x16 = to_bf16(x);
      auto xw = from_bf16(x16);  // the values bf16 storage holds
      uint16_t *gx16 = pool.up(x16), *gpre16 = pool.up(x16);
      sd_cpu_gelu_fwd(&cpu, c.data(), xw.data(), n);
      sd_cuda_gelu_fwd_t(be, gx16, gx16, SD_BF16, n);
      wu.compare("gelu_fwd_t(bf16, in place)", down_bf16(st, gx16, n), to_bf16(c));
      sd_cpu_gelu_bwd(&cpu, c.data(), dout.data(), xw.data(), n);
      sd_cuda_gelu_bwd_pre_t(be, gy, gdout, gpre16, SD_BF16, n);
      w.compare("gelu_bwd_pre_t(bf16 pre)", pool.down(gy, n), c);
      sd_cpu_silu_fwd(&cpu, c.data(), x.data(), n);
      sd_cuda_silu_fwd(be, gy, gx, n);
      w.compare("silu_fwd", pool.down(gy, n), c);
      sd_cpu_silu_bwd(&cpu, c.data(), dout.data(), x.data(), n);
      sd_cuda_silu_bwd(be, gdout, gdout, gx, n);  // dx aliasing dout
      w.compare("silu_bwd(in place)", pool.down(gdout, n), c);
    }
    // gated residual (gate rows inside a modulation buffer), out != x and out == x
    {
      int B = 3, T = 70, D = 200, gs = 6 * D;
      size_t n = (size_t)B * T * D;
      auto x = rng.vec(n, -1.0f, 1.0f), y = rng.vec(n, -1.0f, 1.0f);
      auto mod = rng.vec((size_t)B * gs, -1.0f, 1.0f), dout = rng.vec(n, -1.0f, 1.0f);
      auto dmod0 = rng.vec((size_t)B * gs, -1.0f, 1.0f);
      std::vector<float> out(n), dy(n), dmod = dmod0;
      sd_cpu_gated_residual_fwd(&cpu, out.data(), x.data(), y.data(), SD_F32, mod.data() + 2 * D,
                                gs, B, T, D);
      sd_cpu_gated_residual_bwd(&cpu, dy.data(), dmod.data() + 2 * D, dout.data(), y.data(),
                                SD_F32, mod.data() + 2 * D, gs, B, T, D);
      const std::vector<float> nan_n(n, NAN);  // outputs start as NaN: unwritten ones fail
      float *gx = pool.up(x), *gy = pool.up(y), *gmod = pool.up(mod), *gout = pool.up(nan_n),
            *gdout = pool.up(dout), *gdy = pool.up(nan_n), *gdmod = pool.up(dmod0);
      sd_cuda_gated_residual_fwd(be, gout, gx, gy, SD_F32, gmod + 2 * D, gs, B, T, D);
      w.compare("gated_residual_fwd", pool.down(gout, n), out);
      sd_cuda_gated_residual_fwd(be, gx, gx, gy, SD_F32, gmod + 2 * D, gs, B, T, D);
      w.compare("gated_residual_fwd(in place)", pool.down(gx, n), out);
      sd_cuda_gated_residual_bwd(be, gdy, gdmod + 2 * D, gdout, gy, SD_F32, gmod + 2 * D, gs, B,
                                 T, D);
      w.compare("gated_residual_bwd.dy", pool.down(gdy, n), dy);
      w.compare("gated_residual_bwd.dgate", pool.down(gdmod, dmod.size()), dmod);
      // a single token chunk (direct path)
      int T2 = 9;
      std::vector<float> dmod2 = dmod0;
      sd_cpu_gated_residual_bwd(&cpu, NULL, dmod2.data(), dout.data(), y.data(), SD_F32,
                                mod.data(), gs, B, T2, D);
      float *gdmod2 = pool.up(dmod0);
      sd_cuda_gated_residual_bwd(be, NULL, gdmod2, gdout, gy, SD_F32, gmod, gs, B, T2, D);
      w.compare("gated_residual_bwd.dgate(T<=32)", pool.down(gdmod2, dmod2.size()), dmod2);
      // y stored in bf16 (out, x, dy, dgate stay fp32): forward, and both backward paths
      auto y16 = to_bf16(y);
      std::vector<float> out_b(n), dy_b(n), dmod_b = dmod0, dmod2_b = dmod0;
      sd_cpu_gated_residual_fwd(&cpu, out_b.data(), x.data(), y16.data(), SD_BF16,
                                mod.data() + 2 * D, gs, B, T, D);
      sd_cpu_gated_residual_bwd(&cpu, dy_b.data(), dmod_b.data() + 2 * D, dout.data(),
                                y16.data(), SD_BF16, mod.data() + 2 * D, gs, B, T, D);
      sd_cpu_gated_residual_bwd(&cpu, NULL, dmod2_b.data(), dout.data(), y16.data(), SD_BF16,
                                mod.data(), gs, B, T2, D);
      float *gx_b = pool.up(x), *gout_b = pool.up(nan_n), *gdy_b = pool.up(nan_n),
            *gdmod_b = pool.up(dmod0), *gdmod2_b = pool.up(dmod0);
      uint16_t *gy16 = pool.up(y16);
      sd_cuda_gated_residual_fwd(be, gout_b, gx_b, gy16, SD_BF16, gmod + 2 * D, gs, B, T, D);
      w.compare("gated_residual_fwd(bf16 y)", pool.down(gout_b, n), out_b);
      sd_cuda_gated_residual_bwd(be, gdy_b, gdmod_b + 2 * D, gdout, gy16, SD_BF16, gmod + 2 * D,
                                 gs, B, T, D);
      w.compare("gated_residual_bwd.dy(bf16 y)", pool.down(gdy_b, n), dy_b);
      w.compare("gated_residual_bwd.dgate(bf16 y)", pool.down(gdmod_b, dmod_b.size()), dmod_b);
      sd_cuda_gated_residual_bwd(be, NULL, gdmod2_b, gdout, gy16, SD_BF16, gmod, gs, B, T2, D);
      w.compare("gated_residual_bwd.dgate(bf16 y, T<=32)", pool.down(gdmod2_b, dmod2_b.size()),
                dmod2_b);
    }
    // broadcast row ops and EDM scaling
    {
      int B = 5, N = 1000;
      size_t n = 3001;
      auto x = rng.vec((size_t)B * N, -1.0f, 1.0f), row = rng.vec(N, -1.0f, 1.0f);
      float *gx = pool.up(x), *grow = pool.up(row);
      sd_cpu_add_rows(&cpu, x.data(), row.data(), B, N);
      sd_cuda_add_rows(be, gx, grow, B, N);
      w.compare("add_rows", pool.down(gx, x.size()), x);
      auto a = rng.vec((size_t)B * n, -2.0f, 2.0f), e = rng.vec((size_t)B * n, -2.0f, 2.0f);
      auto s = rng.vec(B, 0.1f, 10.0f);
      std::vector<float> o((size_t)B * n);
      float *ga = pool.up(a), *ge = pool.up(e), *gs = pool.up(s), *go = pool.up(o);
      sd_cpu_scale_rows(&cpu, o.data(), a.data(), s.data(), B, n);
      sd_cuda_scale_rows(be, go, ga, gs, B, n);
      w.compare("scale_rows", pool.down(go, o.size()), o);
      sd_cpu_add_scaled_rows(&cpu, o.data(), a.data(), e.data(), s.data(), B, n);
      sd_cuda_add_scaled_rows(be, go, ga, ge, gs, B, n);
      w.compare("add_scaled_rows", pool.down(go, o.size()), o);
      sd_cpu_scale_rows(&cpu, a.data(), a.data(), s.data(), B, n);
      sd_cuda_scale_rows(be, ga, ga, gs, B, n);
      w.compare("scale_rows(in place)", pool.down(ga, a.size()), a);
    }
    // timestep features (noise levels and plain timesteps, even and odd F)
    {
      int B = 7;
      auto t = rng.vec(B, -5.0f, 1000.0f);
      t[0] = 0.0f;
      float *gt = pool.up(t);
      for (int F : {256, 33}) {
        std::vector<float> c((size_t)B * F, 7.0f);
        float *gf = pool.up(c);
        sd_cpu_timestep_features(&cpu, c.data(), t.data(), B, F, 10000.0f);
        sd_cuda_timestep_features(be, gf, gt, B, F, 10000.0f);
        w.compare(F == 256 ? "timestep_features(F=256)" : "timestep_features(F=33)",
                  pool.down(gf, c.size()), c);
      }
    }
    SD_CUDA_CHECK(cudaStreamSynchronize(st));
  }
  sd_backend_cpu_destroy(&cpu);
  const double tol = 1e-5;
  const bool ok = w.err <= tol && wu.ulps <= 1;
  snprintf(err, len, "%s: worst %s; bf16 outputs: worst %s", ok ? "ok" : "FAILED", w.what,
           wu.what);
  return ok ? 0 : -1;
}
