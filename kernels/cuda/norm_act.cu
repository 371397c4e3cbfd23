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
#include "cuda_internal.h"

extern "C" {
#include "cpu_ops.h"
#include "error.h"
}

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
// inside the sqrt, as layernorm.c); a third pass writes the modulated output.
__global__ void __launch_bounds__(kLnWarps * 32)
lnmod_fwd_kernel(float *out, float *mean, float *rstd, const float *x, const float *shift,
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
  float *o = out + r * D;
  for (int d = lane; d < D; d += 32) o[d] = (xr[d] - m) * rs * (1.0f + sc[d]) + sh[d];
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

__global__ void gelu_fwd_kernel(float *out, const float *x, size_t n) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    float v = x[i];
    float cube = __fmul_rn(__fmul_rn(__fmul_rn(GELU_C, v), v), v);
    float th = dev_tanhf(__fmul_rn(GELU_K, __fadd_rn(v, cube)));
    out[i] = __fmul_rn(__fmul_rn(0.5f, v), __fadd_rn(1.0f, th));
  }
}

__global__ void gelu_bwd_kernel(float *dx, const float *dout, const float *x, size_t n) {
  const float c3 = 3.0f * GELU_C;  // folded in float, as the CPU's 3.0f * 0.044715f
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    float v = x[i];
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

// ---- gated residual --------------------------------------------------------------------------

// out = x + gate[b] * y, grid-stride over B*T*D (out may alias x: each element is read and
// written by the same thread).
__global__ void gated_residual_fwd_kernel(float *out, const float *x, const float *y,
                                          const float *gate, int gate_stride, size_t TD, int D,
                                          size_t n) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    size_t b = i / TD, d = i % D;
    out[i] = x[i] + gate[b * gate_stride + d] * y[i];
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

// dgate partials: thread (b, chunk c, column d), as lnmod_bwd_cols_kernel.
__global__ void __launch_bounds__(kColThreads)
gate_cols_kernel(float *dgate, float *part, const float *dout, const float *y, int gate_stride,
                 int B, int T, int D, int direct) {
  int d = blockIdx.x * kColThreads + threadIdx.x;
  if (d >= D) return;
  int c = blockIdx.y, nchunks = gridDim.y;
  int t0 = c * COL_TCHUNK, t1 = min(T, t0 + COL_TCHUNK);
  for (int b = blockIdx.z; b < B; b += gridDim.z) {
    float acc = 0.0f;
    for (int t = t0; t < t1; t++) {
      size_t j = ((size_t)b * T + t) * D + d;
      acc += dout[j] * y[j];
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

}  // namespace

// ---- the ops ---------------------------------------------------------------------------------

void sd_cuda_lnmod_fwd(sd_backend *be, float *out, float *mean, float *rstd, const float *x,
                       const float *shift, const float *scale, int mod_stride, int B, int T,
                       int D, float eps) {
  size_t rows = (size_t)B * T;
  if (rows == 0 || D <= 0) return;
  unsigned blocks = (unsigned)((rows + kLnWarps - 1) / kLnWarps);
  lnmod_fwd_kernel<<<blocks, kLnWarps * 32, 0, sd_cuda_st(be)->stream>>>(
      out, mean, rstd, x, shift, scale, mod_stride, T, rows, D, eps);
  SD_CUDA_LAUNCHED("lnmod_fwd_kernel");
}

void sd_cuda_lnmod_bwd(sd_backend *be, float *dx, float *dshift, float *dscale,
                       const float *dout, const float *x, const float *mean, const float *rstd,
                       const float *scale, int mod_stride, int B, int T, int D) {
  size_t rows = (size_t)B * T;
  if (rows == 0 || D <= 0) return;
  cudaStream_t st = sd_cuda_st(be)->stream;
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
  gelu_fwd_kernel<<<sd_cuda_blocks(n, kThreads), kThreads, 0, sd_cuda_st(be)->stream>>>(out, x,
                                                                                        n);
  SD_CUDA_LAUNCHED("gelu_fwd_kernel");
}

void sd_cuda_gelu_bwd(sd_backend *be, float *dx, const float *dout, const float *x, size_t n) {
  if (n == 0) return;
  gelu_bwd_kernel<<<sd_cuda_blocks(n, kThreads), kThreads, 0, sd_cuda_st(be)->stream>>>(
      dx, dout, x, n);
  SD_CUDA_LAUNCHED("gelu_bwd_kernel");
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

void sd_cuda_gated_residual_fwd(sd_backend *be, float *out, const float *x, const float *y,
                                const float *gate, int gate_stride, int B, int T, int D) {
  size_t TD = (size_t)T * D, n = (size_t)B * TD;
  if (n == 0) return;
  gated_residual_fwd_kernel<<<sd_cuda_blocks(n, kThreads), kThreads, 0,
                              sd_cuda_st(be)->stream>>>(out, x, y, gate, gate_stride, TD, D, n);
  SD_CUDA_LAUNCHED("gated_residual_fwd_kernel");
}

void sd_cuda_gated_residual_bwd(sd_backend *be, float *dy, float *dgate, const float *dout,
                                const float *y, const float *gate, int gate_stride, int B,
                                int T, int D) {
  size_t TD = (size_t)T * D, n = (size_t)B * TD;
  if (n == 0) return;
  cudaStream_t st = sd_cuda_st(be)->stream;
  // dgate first: dy may alias dout, and dgate reads dout
  if (dgate) {
    dim3 grid = col_grid(B, T, D);
    int nchunks = (int)grid.y;
    if (nchunks == 1) {
      gate_cols_kernel<<<grid, kColThreads, 0, st>>>(dgate, NULL, dout, y, gate_stride, B, T, D,
                                                     1);
      SD_CUDA_LAUNCHED("gate_cols_kernel");
    } else {
      float *part = (float *)sd_cuda_scratch(be, (size_t)B * nchunks * D * sizeof(float));
      gate_cols_kernel<<<grid, kColThreads, 0, st>>>(NULL, part, dout, y, gate_stride, B, T, D,
                                                     0);
      SD_CUDA_LAUNCHED("gate_cols_kernel");
      col_finish_kernel<<<sd_cuda_blocks((size_t)B * D, kThreads), kThreads, 0, st>>>(
          dgate, part, gate_stride, B, nchunks, D);
      SD_CUDA_LAUNCHED("col_finish_kernel");
    }
  }
  if (dy) {
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

extern "C" int sd_cuda_norm_act_selftest(sd_backend *be, char *err, size_t len) {
  sd_backend cpu;
  if (sd_backend_cpu_init(&cpu, 0) != 0) {
    snprintf(err, len, "CPU backend did not start");
    return -1;
  }
  cudaStream_t st = sd_cuda_st(be)->stream;
  Worst w;
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
      sd_cpu_lnmod_fwd(&cpu, out.data(), mean.data(), rstd.data(), x.data(), mod.data() + D,
                       mod.data() + 3 * D, ms, B, T, D, 1e-6f);
      sd_cpu_lnmod_bwd(&cpu, dx.data(), dmod.data() + D, dmod.data() + 3 * D, dout.data(),
                       x.data(), mean.data(), rstd.data(), mod.data() + 3 * D, ms, B, T, D);
      float *gx = pool.up(x), *gmod = pool.up(mod), *gout = pool.up(out), *gmean = pool.up(mean),
            *grstd = pool.up(rstd), *gdout = pool.up(dout), *gdx = pool.up(dx0),
            *gdmod = pool.up(dmod0);
      sd_cuda_lnmod_fwd(be, gout, gmean, grstd, gx, gmod + D, gmod + 3 * D, ms, B, T, D, 1e-6f);
      sd_cuda_lnmod_bwd(be, gdx, gdmod + D, gdmod + 3 * D, gdout, gx, gmean, grstd,
                        gmod + 3 * D, ms, B, T, D);
      w.compare("lnmod_fwd.out", pool.down(gout, n), out);
      w.compare("lnmod_fwd.mean", pool.down(gmean, mean.size()), mean);
      w.compare("lnmod_fwd.rstd", pool.down(grstd, rstd.size()), rstd);
      w.compare("lnmod_bwd.dx", pool.down(gdx, n), dx);
      w.compare("lnmod_bwd.dshift_dscale", pool.down(gdmod, dmod.size()), dmod);
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
      sd_cpu_gated_residual_fwd(&cpu, out.data(), x.data(), y.data(), mod.data() + 2 * D, gs, B,
                                T, D);
      sd_cpu_gated_residual_bwd(&cpu, dy.data(), dmod.data() + 2 * D, dout.data(), y.data(),
                                mod.data() + 2 * D, gs, B, T, D);
      float *gx = pool.up(x), *gy = pool.up(y), *gmod = pool.up(mod), *gout = pool.up(dy),
            *gdout = pool.up(dout), *gdy = pool.up(dy), *gdmod = pool.up(dmod0);
      sd_cuda_gated_residual_fwd(be, gout, gx, gy, gmod + 2 * D, gs, B, T, D);
      w.compare("gated_residual_fwd", pool.down(gout, n), out);
      sd_cuda_gated_residual_fwd(be, gx, gx, gy, gmod + 2 * D, gs, B, T, D);
      w.compare("gated_residual_fwd(in place)", pool.down(gx, n), out);
      sd_cuda_gated_residual_bwd(be, gdy, gdmod + 2 * D, gdout, gy, gmod + 2 * D, gs, B, T, D);
      w.compare("gated_residual_bwd.dy", pool.down(gdy, n), dy);
      w.compare("gated_residual_bwd.dgate", pool.down(gdmod, dmod.size()), dmod);
      // a single token chunk (direct path)
      int T2 = 9;
      std::vector<float> dmod2 = dmod0;
      sd_cpu_gated_residual_bwd(&cpu, NULL, dmod2.data(), dout.data(), y.data(), mod.data(), gs,
                                B, T2, D);
      float *gdmod2 = pool.up(dmod0);
      sd_cuda_gated_residual_bwd(be, NULL, gdmod2, gdout, gy, gmod, gs, B, T2, D);
      w.compare("gated_residual_bwd.dgate(T<=32)", pool.down(gdmod2, dmod2.size()), dmod2);
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
  snprintf(err, len, "%s: worst %s", w.err <= tol ? "ok" : "FAILED", w.what);
  return w.err <= tol ? 0 : -1;
}
