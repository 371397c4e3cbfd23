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
// Vector paths (vec8.cuh): every element-wise and row kernel moves 8 elements per thread with
// 16-byte accesses (two float4 for fp32, one 16-byte word of 8 bf16) when every pointer is
// 16-byte aligned and the size allows (flat ops: any n, the n % 8 last elements one by one;
// row ops: a row length that is a multiple of 8), else the same kernel runs one element per
// thread; indices are 32-bit (64-bit for flat sizes of 2^31 or more; row ops refuse sizes of
// 2^31 or more with a fatal error naming the op). Row ops take the row from the grid (y, z)
// and never divide an index per element. The arithmetic per element is the same on every path.
// The layer norm's one-pass forward and fused backward are in lnmod_fast.cu; the kernels here
// take the widths and alignments it does not.
//
// Bytes per element moved through device memory (fp32 4, bf16 2; E = the storage of the
// bf16-capable argument; "row" = a vector broadcast over rows, read from cache after the first
// row; per-row scalars left out):
//   gelu_fwd, gelu_fwd_t        read x E, write out E                        (4+4 or 2+2)
//   gelu_bwd, gelu_bwd_pre_t    read dout 4 + pre E, write dx 4              (12 or 10)
//   silu_fwd / silu_bwd         read 4 / 8, write 4                          (8 / 12)
//   gated_residual_fwd          read x 4 + y E (+ gate row), write out 4     (12 or 10)
//   gated_residual_bwd          dy: read dout 4 (+ gate row), write dy 4;
//                               dgate: read dout 4 + y E (gate_cols_kernel), then the
//                               (B, T/32, D) partials once more (1/32 of a row per element)
//   add_rows                    read x 4 (+ row), write x 4                  (8)
//   scale_rows                  read x 4, write out 4                        (8)
//   add_scaled_rows             read x0 4 + eps 4, write out 4               (12)
//   lnmod_fwd (general kernel)  read x 4 once (D <= 1536; three times above), write out E,
//                               + shift/scale rows                           (8 or 6)
//   lnmod_bwd (general kernels) read dout 4 + x 4 twice (column sums, dx), read + write dx 8
//   timestep_features           write feat 4 (compute-bound: double cos/sin)
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

#include "vec8.cuh"

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

// One warp per row r = (b, t) of D, for the widths and alignments lnmod_fast.cu does not
// take: lanes stride over the columns (coalesced scalar accesses). With NS > 0 (D <= 32 NS)
// lane l keeps the columns l + 32 j of the row in registers: one read of x; the mean and then
// the population variance of the centred values are warp sums (two passes over the registers,
// fp32, eps inside the sqrt, as layernorm.c), then the modulated output, stored as OutT (float
// or __nv_bfloat16). NS = 0 (D > 1536): the same, reading the row three times. x, shift,
// scale, mean, rstd are fp32.
template <typename OutT, int NS>
__global__ void __launch_bounds__(kLnWarps * 32)
lnmod_fwd_kernel(OutT *out, float *mean, float *rstd, const float *x, const float *shift,
                 const float *scale, int mod_stride, int T, size_t rows, int D, float eps) {
  size_t r = (size_t)blockIdx.x * kLnWarps + threadIdx.x / 32;
  if (r >= rows) return;
  int lane = threadIdx.x & 31;
  const float *xr = x + r * D;
  const size_t b = r / (size_t)T;  // once per row
  const float *sh = shift + b * mod_stride;
  const float *sc = scale + b * mod_stride;
  OutT *o = out + r * D;
  float m, rs;
  if (NS > 0) {
    float v[NS > 0 ? NS : 1];
    float s = 0.0f;
#pragma unroll
    for (int j = 0; j < NS; j++) {
      const int d = lane + 32 * j;
      v[j] = d < D ? xr[d] : 0.0f;
      s += v[j];
    }
    m = warp_sum(s) / (float)D;
    float q = 0.0f;
#pragma unroll
    for (int j = 0; j < NS; j++) {
      const float c = v[j] - m;
      if (lane + 32 * j < D) q += c * c;
    }
    rs = 1.0f / sqrtf(warp_sum(q) / (float)D + eps);
#pragma unroll
    for (int j = 0; j < NS; j++) {
      const int d = lane + 32 * j;
      if (d < D) store_f(o + d, (v[j] - m) * rs * (1.0f + sc[d]) + sh[d]);
    }
  } else {
    float s = 0.0f;
    for (int d = lane; d < D; d += 32) s += xr[d];
    m = warp_sum(s) / (float)D;
    float q = 0.0f;
    for (int d = lane; d < D; d += 32) {
      float c = xr[d] - m;
      q += c * c;
    }
    rs = 1.0f / sqrtf(warp_sum(q) / (float)D + eps);
    for (int d = lane; d < D; d += 32) store_f(o + d, (xr[d] - m) * rs * (1.0f + sc[d]) + sh[d]);
  }
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
// thread per (b, d): x over d, b from the grid's y (grid-stride), no index division.
__global__ void col_finish_kernel(float *out, const float *part, int out_stride, int B,
                                  int nchunks, int D) {
  const unsigned d = blockIdx.x * blockDim.x + threadIdx.x;
  if (d >= (unsigned)D) return;
  for (unsigned b = blockIdx.y; b < (unsigned)B; b += gridDim.y) {
    const float *p = part + (size_t)b * nchunks * D + d;
    float s = 0.0f;
    for (int c = 0; c < nchunks; c++) s += p[(size_t)c * D];
    out[(size_t)b * out_stride + d] += s;
  }
}

void launch_col_finish(cudaStream_t st, float *out, const float *part, int out_stride, int B,
                       int nchunks, int D) {
  const dim3 grid((unsigned)((D + kThreads - 1) / kThreads), (unsigned)(B < 65535 ? B : 65535));
  col_finish_kernel<<<grid, kThreads, 0, st>>>(out, part, out_stride, B, nchunks, D);
  SD_CUDA_LAUNCHED("col_finish_kernel");
}

// ---- activations: flat ops (vec8.cuh's flat_kernel), 8 elements per thread per step --------

__device__ __forceinline__ float gelu_f(float v) {
  float cube = __fmul_rn(__fmul_rn(__fmul_rn(GELU_C, v), v), v);
  float th = dev_tanhf(__fmul_rn(GELU_K, __fadd_rn(v, cube)));
  return __fmul_rn(__fmul_rn(0.5f, v), __fadd_rn(1.0f, th));
}
__device__ __forceinline__ float dgelu_f(float v) {
  const float c3 = 3.0f * GELU_C;  // folded in float, as the CPU's 3.0f * 0.044715f
  float u = __fmul_rn(GELU_K, __fadd_rn(v, __fmul_rn(__fmul_rn(__fmul_rn(GELU_C, v), v), v)));
  float th = dev_tanhf(u);
  float du = __fmul_rn(GELU_K, __fadd_rn(1.0f, __fmul_rn(__fmul_rn(c3, v), v)));
  return __fadd_rn(__fmul_rn(0.5f, __fadd_rn(1.0f, th)),
                   __fmul_rn(__fmul_rn(__fmul_rn(0.5f, v), __fsub_rn(1.0f, __fmul_rn(th, th))), du));
}
__device__ __forceinline__ float silu_f(float v) {
  return __fdiv_rn(v, __fadd_rn(1.0f, dev_expf(-v)));
}
__device__ __forceinline__ float dsilu_f(float g, float v) {  // dout * silu'(v)
  float s = __fdiv_rn(1.0f, __fadd_rn(1.0f, dev_expf(-v)));
  return __fmul_rn(__fmul_rn(g, s), __fadd_rn(1.0f, __fmul_rn(v, __fsub_rn(1.0f, s))));
}

// out (n) = f(x (n)), both stored as E (float or __nv_bfloat16); may run in place (each
// element is read and written by one thread). SILU: silu, else gelu.
template <typename E, bool SILU>
struct ActFwdOp {
  E *out;
  const E *x;
  __device__ float f(float v) const { return SILU ? silu_f(v) : gelu_f(v); }
  template <typename I> __device__ void one(I i) const { st1(out + i, f(ld1(x + i))); }
  __device__ void eight(unsigned i) const {
    V8 v = ld8(x + i);
#pragma unroll
    for (int k = 0; k < 8; k++) v.v[k] = f(v.v[k]);
    st8(out + i, v);
  }
};

// dx (n) = dout * f'(x), dx and dout fp32 (dx may alias dout), x stored as E.
template <typename E, bool SILU>
struct ActBwdOp {
  float *dx;
  const float *dout;
  const E *x;
  __device__ float f(float g, float v) const {
    return SILU ? dsilu_f(g, v) : __fmul_rn(g, dgelu_f(v));
  }
  template <typename I> __device__ void one(I i) const { dx[i] = f(dout[i], ld1(x + i)); }
  __device__ void eight(unsigned i) const {
    const V8 v = ld8(x + i);
    V8 g = ld8(dout + i);
#pragma unroll
    for (int k = 0; k < 8; k++) g.v[k] = f(g.v[k], v.v[k]);
    st8(dx + i, g);
  }
};

// ---- gated residual and the broadcast row ops: vec8.cuh's row ops ----------------------------

// Rows (b, t) of D: out = x + gate[b] * y (gated_residual_fwd), or with x NULL out = y *
// gate[b] (the dy of its backward, y = dout). out may alias x, or y when x is NULL. out, x,
// gate fp32; y stored as YT (float or __nv_bfloat16).
template <typename YT>
struct GatedRowsOp {
  float *out;
  const float *x;
  const YT *y;
  const float *gate;
  int gate_stride;
  unsigned T, D;
  __device__ void elem(unsigned b, unsigned t, unsigned c) const {
    const size_t o = ((size_t)b * T + t) * D + c;
    const float g = gate[(size_t)b * gate_stride + c];
    out[o] = x ? x[o] + g * ld1(y + o) : ld1(y + o) * g;
  }
  __device__ void group(unsigned b, unsigned t, unsigned c) const {
    const size_t o = ((size_t)b * T + t) * D + c;
    const V8 g = ld8(gate + (size_t)b * gate_stride + c);
    V8 v = ld8(y + o);
    if (x) {
      const V8 a = ld8(x + o);
#pragma unroll
      for (int k = 0; k < 8; k++) v.v[k] = a.v[k] + g.v[k] * v.v[k];
    } else {
#pragma unroll
      for (int k = 0; k < 8; k++) v.v[k] = v.v[k] * g.v[k];
    }
    st8(out + o, v);
  }
};

// x (B, N) += row (N): rows (0, b).
struct AddRowsOp {
  float *x;
  const float *row;
  unsigned N;
  __device__ void elem(unsigned, unsigned b, unsigned c) const { x[(size_t)b * N + c] += row[c]; }
  __device__ void group(unsigned, unsigned b, unsigned c) const {
    float *p = x + (size_t)b * N + c;
    V8 v = ld8(p);
    const V8 r = ld8(row + c);
#pragma unroll
    for (int k = 0; k < 8; k++) v.v[k] += r.v[k];
    st8(p, v);
  }
};

// out (B, n) = s[b] * x, or with eps out = x + s[b] * eps (add_scaled_rows: x = x0,
// s = sigma, without FMA as the CPU). out may alias x.
struct ScaleRowsOp {
  float *out;
  const float *x, *eps, *s;
  unsigned n;
  __device__ float f(float sb, float xi, float ei) const {
    return eps ? __fadd_rn(xi, __fmul_rn(sb, ei)) : sb * xi;
  }
  __device__ void elem(unsigned, unsigned b, unsigned c) const {
    const size_t o = (size_t)b * n + c;
    out[o] = f(s[b], x[o], eps ? eps[o] : 0.0f);
  }
  __device__ void group(unsigned, unsigned b, unsigned c) const {
    const size_t o = (size_t)b * n + c;
    const float sb = s[b];
    V8 v = ld8(x + o);
    if (eps) {
      const V8 e = ld8(eps + o);
#pragma unroll
      for (int k = 0; k < 8; k++) v.v[k] = f(sb, v.v[k], e.v[k]);
    } else {
#pragma unroll
      for (int k = 0; k < 8; k++) v.v[k] = f(sb, v.v[k], 0.0f);
    }
    st8(out + o, v);
  }
};

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

// Timestep features: thread (b, k), k < F/2 over x, b over the grid's y (grid-stride); the
// frequency and the argument in double with the CPU's formula and operation order.
__global__ void timestep_features_kernel(float *feat, const float *t, int B, int F,
                                         double neg_log_max_period) {
  const int half = F / 2;
  const int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k >= half) return;
  const double f = exp(neg_log_max_period * (double)k / (double)half);
  for (unsigned b = blockIdx.y; b < (unsigned)B; b += gridDim.y) {
    const double a = (double)t[b] * f;
    feat[(size_t)b * F + k] = (float)cos(a);
    feat[(size_t)b * F + half + k] = (float)sin(a);
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

template <typename OutT, int NS>
void launch_lnmod_ns(cudaStream_t st, OutT *out, float *mean, float *rstd, const float *x,
                     const float *shift, const float *scale, int mod_stride, int T,
                     size_t rows, int D, float eps) {
  unsigned blocks = (unsigned)((rows + kLnWarps - 1) / kLnWarps);
  lnmod_fwd_kernel<OutT, NS><<<blocks, kLnWarps * 32, 0, st>>>(out, mean, rstd, x, shift, scale,
                                                               mod_stride, T, rows, D, eps);
  SD_CUDA_LAUNCHED("lnmod_fwd_kernel");
}

// The row in registers (NS columns per lane) up to D = 1536, else re-read.
template <typename OutT>
void launch_lnmod_fwd(cudaStream_t st, OutT *out, float *mean, float *rstd, const float *x,
                      const float *shift, const float *scale, int mod_stride, int T,
                      size_t rows, int D, float eps) {
  const int ns = (D + 31) / 32;
  if (ns <= 2)
    launch_lnmod_ns<OutT, 2>(st, out, mean, rstd, x, shift, scale, mod_stride, T, rows, D, eps);
  else if (ns <= 4)
    launch_lnmod_ns<OutT, 4>(st, out, mean, rstd, x, shift, scale, mod_stride, T, rows, D, eps);
  else if (ns <= 8)
    launch_lnmod_ns<OutT, 8>(st, out, mean, rstd, x, shift, scale, mod_stride, T, rows, D, eps);
  else if (ns <= 12)
    launch_lnmod_ns<OutT, 12>(st, out, mean, rstd, x, shift, scale, mod_stride, T, rows, D, eps);
  else if (ns <= 24)
    launch_lnmod_ns<OutT, 24>(st, out, mean, rstd, x, shift, scale, mod_stride, T, rows, D, eps);
  else if (ns <= 36)
    launch_lnmod_ns<OutT, 36>(st, out, mean, rstd, x, shift, scale, mod_stride, T, rows, D, eps);
  else if (ns <= 48)
    launch_lnmod_ns<OutT, 48>(st, out, mean, rstd, x, shift, scale, mod_stride, T, rows, D, eps);
  else
    launch_lnmod_ns<OutT, 0>(st, out, mean, rstd, x, shift, scale, mod_stride, T, rows, D, eps);
}

template <typename E>
void launch_gelu_fwd(cudaStream_t st, E *out, const E *x, size_t n) {
  launch_flat(st, ActFwdOp<E, false>{out, x}, n, is_aligned16(out) && is_aligned16(x), "gelu_fwd");
}

template <typename E>
void launch_gelu_bwd(cudaStream_t st, float *dx, const float *dout, const E *x, size_t n) {
  launch_flat(st, ActBwdOp<E, false>{dx, dout, x}, n,
              is_aligned16(dx) && is_aligned16(dout) && is_aligned16(x), "gelu_bwd");
}

// out = x + gate[b] * y, or (x NULL) out = y * gate[b]: 16-byte groups when D % 8 == 0, the
// gate's rows are 16-byte aligned (gate_stride % 4 == 0) and every pointer is.
template <typename YT>
void launch_gated_rows(cudaStream_t st, float *out, const float *x, const YT *y,
                       const float *gate, int gate_stride, int B, int T, int D,
                       const char *name) {
  const bool vec = gate_stride % 4 == 0 && is_aligned16(out) && is_aligned16(x) && is_aligned16(y) &&
                   is_aligned16(gate);
  const GatedRowsOp<YT> op{out, x, y, gate, gate_stride, (unsigned)T, (unsigned)D};
  launch_rows(st, op, (size_t)B, (size_t)T, (size_t)D, vec, name);
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
    launch_col_finish(st, dgate, part, gate_stride, B, nchunks, D);
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
    if (pshift) launch_col_finish(st, dshift, pshift, mod_stride, B, nchunks, D);
    if (pscale) launch_col_finish(st, dscale, pscale, mod_stride, B, nchunks, D);
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
      if (dshift) launch_col_finish(st, dshift, pshift, mod_stride, B, nchunks, D);
      if (dscale) launch_col_finish(st, dscale, pscale, mod_stride, B, nchunks, D);
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
  launch_flat(sd_cuda_st(be)->stream, ActFwdOp<float, true>{out, x}, n,
              is_aligned16(out) && is_aligned16(x), "silu_fwd");
}

void sd_cuda_silu_bwd(sd_backend *be, float *dx, const float *dout, const float *x, size_t n) {
  launch_flat(sd_cuda_st(be)->stream, ActBwdOp<float, true>{dx, dout, x}, n,
              is_aligned16(dx) && is_aligned16(dout) && is_aligned16(x), "silu_bwd");
}

void sd_cuda_gated_residual_fwd(sd_backend *be, float *out, const float *x, const void *y,
                                sd_dtype y_t, const float *gate, int gate_stride, int B, int T,
                                int D) {
  check_dtype("gated_residual_fwd", y_t);
  if (B <= 0 || T <= 0 || D <= 0) return;
  cudaStream_t st = sd_cuda_st(be)->stream;
  if (y_t == SD_BF16)
    launch_gated_rows(st, out, x, (const __nv_bfloat16 *)y, gate, gate_stride, B, T, D,
                      "gated_residual_fwd");
  else
    launch_gated_rows(st, out, x, (const float *)y, gate, gate_stride, B, T, D,
                      "gated_residual_fwd");
}

void sd_cuda_gated_residual_bwd(sd_backend *be, float *dy, float *dgate, const float *dout,
                                const void *y, sd_dtype y_t, const float *gate,
                                int gate_stride, int B, int T, int D) {
  check_dtype("gated_residual_bwd", y_t);
  if (B <= 0 || T <= 0 || D <= 0) return;
  cudaStream_t st = sd_cuda_st(be)->stream;
  // dgate first: dy may alias dout, and dgate reads dout
  if (dgate) {
    if (y_t == SD_BF16)
      launch_gate_cols(be, dgate, dout, (const __nv_bfloat16 *)y, gate_stride, B, T, D);
    else
      launch_gate_cols(be, dgate, dout, (const float *)y, gate_stride, B, T, D);
  }
  if (dy)  // dy = dout * gate[b]
    launch_gated_rows(st, dy, (const float *)NULL, dout, gate, gate_stride, B, T, D,
                      "gated_residual_bwd(dy)");
}

void sd_cuda_add_rows(sd_backend *be, float *x, const float *row, int B, int N) {
  if (B <= 0 || N <= 0) return;
  launch_rows(sd_cuda_st(be)->stream, AddRowsOp{x, row, (unsigned)N}, 1, (size_t)B, (size_t)N,
              is_aligned16(x) && is_aligned16(row), "add_rows");
}

void sd_cuda_scale_rows(sd_backend *be, float *out, const float *x, const float *s, int B,
                        size_t n) {
  if (B <= 0 || n == 0) return;
  if (!fits32(n)) SD_FATAL("scale_rows: rows of %zu elements (2^31 or more)", n);
  launch_rows(sd_cuda_st(be)->stream, ScaleRowsOp{out, x, NULL, s, (unsigned)n}, 1, (size_t)B,
              n, is_aligned16(out) && is_aligned16(x), "scale_rows");
}

void sd_cuda_add_scaled_rows(sd_backend *be, float *out, const float *x0, const float *eps,
                             const float *sigma, int B, size_t n) {
  if (B <= 0 || n == 0) return;
  if (!fits32(n)) SD_FATAL("add_scaled_rows: rows of %zu elements (2^31 or more)", n);
  launch_rows(sd_cuda_st(be)->stream, ScaleRowsOp{out, x0, eps, sigma, (unsigned)n}, 1,
              (size_t)B, n, is_aligned16(out) && is_aligned16(x0) && is_aligned16(eps),
              "add_scaled_rows");
}

void sd_cuda_timestep_features(sd_backend *be, float *feat, const float *t, int B, int F,
                               float max_period) {
  const int half = F / 2;
  if (B <= 0 || half <= 0) return;
  const dim3 grid((unsigned)((half + kThreads - 1) / kThreads), (unsigned)(B < 65535 ? B : 65535));
  timestep_features_kernel<<<grid, kThreads, 0, sd_cuda_st(be)->stream>>>(
      feat, t, B, F, -log((double)max_period));
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
