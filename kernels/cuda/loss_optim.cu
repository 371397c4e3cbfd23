// CUDA losses, reductions, projection-head ops, the EDM loss and the optimizer: mse, sum of
// squares, row L2 normalisation, the DINO teacher-student cross-entropy, column sums, the
// EDM denoiser output and weighted loss, AdamW (and AdamW fused with an EMA), EMA and axpy.
//
// Semantics: exactly those of kernels/cpu/loss.c, head.c, edm.c and optim.c (see ops.h).
//
// Determinism: every reduction is a fixed tree. A thread sums its elements in index order,
// a warp combines lanes with an xor butterfly (every lane ends with the same bits, since
// a + b == b + a in IEEE arithmetic), a block combines its warps' sums in warp order, and a
// full reduction writes one double per block to scratch and sums those in a second, single-
// block launch. Grid sizes depend only on the problem size (never on the device), and no
// float atomics are used, so two runs give bitwise equal results.
//
// Rounding: the elementwise float arithmetic uses the _rn intrinsics so that nvcc does not
// contract it into FMAs; since the CPU build (-std=c11) does not contract either, mse_bwd,
// adamw, ema, axpy, and the D and dF of the EDM loss should be bitwise equal to the CPU ops
// (sd_cuda_loss_optim_selftest reports the largest difference).
// Losses accumulate in double as the CPU does; only the summation order differs.
// Element-wise paths (vec8.cuh): mse_bwd, edm_loss_fwd and edm_loss_bwd move 8 elements per
// thread with 16-byte accesses when every pointer is 16-byte aligned (and, for the EDM loss,
// a sample's n is a multiple of 8), else one per thread; 32-bit indices (mse_bwd: 64-bit for
// n >= 2^31; the EDM loss refuses n >= 2^31 per sample). Bytes per element: mse_bwd read 8,
// write 4; edm_loss_fwd read F, x, x0 (+ mask) 12 (16), write D 4; edm_loss_bwd read D, x0
// (+ mask) 8 (12), write dF 4 (+ the mask once more, 4, for its counts when masked). The
// teacher softmax uses expf where the CPU uses its polynomial sd_expf (both within ~2 ulp).
#include "cuda_internal.h"

extern "C" {
#include "cpu_ops.h"
#include "error.h"
}

#include <cuda_bf16.h>
#include <math.h>

#include "vec8.cuh"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

namespace {

constexpr int kThreads = 256;        // block size of the kernels below (a multiple of 32)
constexpr int kFinalThreads = 512;   // block size of the single-block final sums
constexpr int kMaxPartials = 1024;   // blocks of the first level of a full reduction
constexpr int kEdmBlocks = 2048;     // target blocks (all samples together) of the EDM loss
constexpr float kL2Eps = 1e-12f;     // as L2_EPS in kernels/cpu/head.c

// ---- reduction building blocks (fixed trees) --------------------------------------------

__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    float w = __shfl_xor_sync(0xffffffffu, v, o);
    v = w > v ? w : v;
  }
  return v;
}

// Sum over the block (blockDim.x a multiple of 32); every thread gets the total. sh: 32
// doubles of shared memory, reusable right after the call returns.
__device__ double block_sum(double v, double *sh) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // sh is free (a previous call's readers are done)
  if (lane == 0) sh[w] = v;
  __syncthreads();
  v = lane < nw ? sh[lane] : 0.0;
  return warp_sum(v);
}

__device__ float block_max(float v, float *sh) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) sh[w] = v;
  __syncthreads();
  v = lane < nw ? sh[lane] : -INFINITY;
  return warp_max(v);
}

// First level of a full reduction: block b writes the double sum of term(i) over its
// elements (i = b*blockDim + tid + k*stride, in increasing k) to part[b].
template <class Term>
__global__ void __launch_bounds__(kThreads)
partial_sums_kernel(double *part, size_t n, Term term) {
  __shared__ double sh[32];
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  double s = 0.0;
  for (; i + 3 * stride < n; i += 4 * stride) {  // four loads in flight, summed in order
    const double t0 = term(i), t1 = term(i + stride), t2 = term(i + 2 * stride),
                 t3 = term(i + 3 * stride);
    s += t0;
    s += t1;
    s += t2;
    s += t3;
  }
  for (; i < n; i += stride) s += term(i);
  s = block_sum(s, sh);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

// Second level: out[0] = (float)(sum of part[0..np) / div), one block.
__global__ void __launch_bounds__(kFinalThreads)
final_sum_kernel(float *out, const double *part, int np, double div) {
  __shared__ double sh[32];
  double s = 0.0;
  for (int i = threadIdx.x; i < np; i += blockDim.x) s += part[i];
  s = block_sum(s, sh);
  if (threadIdx.x == 0) out[0] = (float)(s / div);
}

struct MseTerm {
  const float *a, *b;
  __device__ double operator()(size_t i) const {
    const double d = (double)a[i] - (double)b[i];
    return d * d;
  }
};

struct SquareTerm {
  const float *x;
  __device__ double operator()(size_t i) const {
    const double v = x[i];
    return v * v;
  }
};

int reduction_blocks(size_t n) {
  size_t b = (n + (size_t)kThreads * 4 - 1) / ((size_t)kThreads * 4);
  if (b < 1) b = 1;
  if (b > (size_t)kMaxPartials) b = kMaxPartials;
  return (int)b;
}

// out[0] (device) = (float)(sum_i term(i) / div), double accumulation, two launches.
template <class Term>
void reduce_to_scalar(sd_backend *be, float *out, size_t n, Term term, double div,
                      const char *name) {
  cudaStream_t s = sd_cuda_st(be)->stream;
  const int nb = reduction_blocks(n);
  double *part = (double *)sd_cuda_scratch(be, sizeof(double) * (size_t)nb);
  partial_sums_kernel<Term><<<nb, kThreads, 0, s>>>(part, n, term);
  SD_CUDA_LAUNCHED(name);
  final_sum_kernel<<<1, kFinalThreads, 0, s>>>(out, part, nb, div);
  SD_CUDA_LAUNCHED(name);
}

// ---- elementwise ops: flat ops of vec8.cuh (launch_flat) ----------------------------------

// da = k (a - b): a flat op of vec8.cuh (8 elements per thread, 32-bit indices).
struct MseBwdOp {
  float *da;
  const float *a, *b;
  float k;
  __device__ float f(float x, float y) const { return __fmul_rn(k, __fsub_rn(x, y)); }
  template <typename I> __device__ void one(I i) const { da[i] = f(a[i], b[i]); }
  __device__ void eight(unsigned i) const {
    V8 x = ld8(a + i);
    const V8 y = ld8(b + i);
#pragma unroll
    for (int j = 0; j < 8; j++) x.v[j] = f(x.v[j], y.v[j]);
    st8(da + i, x);
  }
};

// The AdamW constants, computed on the host exactly as kernels/cpu/optim.c does.
struct AdamConst {
  float lr, beta1, omb1, beta2, omb2, eps, wd, bc1, bc2, grad_scale;
  const float *gate;  // device memory or NULL (sd_adamw_ema_fn)
};

AdamConst adam_const(float lr, float beta1, float beta2, float eps, float wd, long t,
                     float grad_scale) {
  AdamConst c;
  c.lr = lr;
  c.beta1 = beta1;
  c.omb1 = 1.0f - beta1;
  c.beta2 = beta2;
  c.omb2 = 1.0f - beta2;
  c.eps = eps;
  c.wd = wd;
  c.bc1 = 1.0f - powf(beta1, (float)t);
  c.bc2 = 1.0f - powf(beta2, (float)t);
  c.grad_scale = grad_scale;
  c.gate = NULL;
  return c;
}

// One AdamW element, operation for operation as sd_cpu_adamw.
__device__ __forceinline__ void adam_elem(const AdamConst &c, float &p, float g, float &m,
                                          float &v) {
  const float gi = __fmul_rn(g, c.grad_scale);
  m = __fadd_rn(__fmul_rn(c.beta1, m), __fmul_rn(c.omb1, gi));
  v = __fadd_rn(__fmul_rn(c.beta2, v), __fmul_rn(__fmul_rn(c.omb2, gi), gi));
  const float mhat = __fdiv_rn(m, c.bc1), vhat = __fdiv_rn(v, c.bc2);
  const float upd = __fadd_rn(__fdiv_rn(mhat, __fadd_rn(__fsqrt_rn(vhat), c.eps)),
                              __fmul_rn(c.wd, p));
  p = __fsub_rn(p, __fmul_rn(c.lr, upd));
}

// dst = decay * dst + (1 - decay) * src, as sd_cpu_ema (omd = 1 - decay in float).
__device__ __forceinline__ float ema_elem(float dst, float src, float decay, float omd) {
  return __fadd_rn(__fmul_rn(decay, dst), __fmul_rn(omd, src));
}

// AdamW, then NE (0, 1 or 2) moving averages e[k] = d[k] e[k] + (1 - d[k]) p of the updated
// p, and the bf16 copies (weights_bf16.cu) of p and of each e[k] that has one, in the same
// pass. A flat op of vec8.cuh: eight elements per thread with 16-byte loads and stores (a
// copy's eight bf16 in one 16-byte store), 32-bit indices. (Arrays get one unused slot when
// NE = 0.)
template <int NE>
struct AdamEmaOp {
  float *p;
  const float *g;
  float *m, *v;
  float *e[NE > 0 ? NE : 1];
  AdamConst c;
  float d[NE > 0 ? NE : 1], omd[NE > 0 ? NE : 1];
  // bf16 copies written beside p and the EMAs (weights_bf16.cu), or NULL
  __nv_bfloat16 *pc = nullptr;
  __nv_bfloat16 *ec[NE > 0 ? NE : 1] = {};
  // The constants with the gate applied; false on a skipped step (nothing is written).
  __device__ bool gated(AdamConst &k) const {
    k = c;
    if (!c.gate) return true;
    const float gv = *c.gate;
    if (!(gv > 0.0f)) return false;
    k.grad_scale = __fmul_rn(c.grad_scale, gv);
    return true;
  }
  template <typename I> __device__ void one(I i) const {
    AdamConst c;
    if (!gated(c)) return;
    float pi = p[i], mi = m[i], vi = v[i];
    adam_elem(c, pi, g[i], mi, vi);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
    if (pc) pc[i] = __float2bfloat16_rn(pi);
#pragma unroll
    for (int k = 0; k < NE; k++) {
      const float ek = ema_elem(e[k][i], pi, d[k], omd[k]);
      e[k][i] = ek;
      if (ec[k]) ec[k][i] = __float2bfloat16_rn(ek);
    }
  }
  __device__ void eight(unsigned i) const {
    AdamConst c;
    if (!gated(c)) return;
    V8 pv = ld8(p + i), mv = ld8(m + i), vv = ld8(v + i);
    const V8 gv = ld8(g + i);
#pragma unroll
    for (int j = 0; j < 8; j++) adam_elem(c, pv.v[j], gv.v[j], mv.v[j], vv.v[j]);
    st8(p + i, pv);
    st8(m + i, mv);
    st8(v + i, vv);
    if (pc) st8(pc + i, pv);
#pragma unroll
    for (int k = 0; k < NE; k++) {
      V8 ev = ld8(e[k] + i);
#pragma unroll
      for (int j = 0; j < 8; j++) ev.v[j] = ema_elem(ev.v[j], pv.v[j], d[k], omd[k]);
      st8(e[k] + i, ev);
      if (ec[k]) st8(ec[k] + i, ev);
    }
  }
  // every pointer 16-byte aligned (NULL ones count as aligned): the eight-element path
  bool vec() const {
    bool ok = is_aligned16(p) && is_aligned16(g) && is_aligned16(m) && is_aligned16(v) &&
              is_aligned16(pc);
    for (int k = 0; k < NE; k++) ok = ok && is_aligned16(e[k]) && is_aligned16(ec[k]);
    return ok;
  }
};

// dst = decay * dst + (1 - decay) * src: a flat op (eight per thread, 32-bit indices).
struct EmaOp {
  float *dst;
  const float *src;
  float decay, omd;
  template <typename I> __device__ void one(I i) const {
    dst[i] = ema_elem(dst[i], src[i], decay, omd);
  }
  __device__ void eight(unsigned i) const {
    V8 d = ld8(dst + i);
    const V8 s = ld8(src + i);
#pragma unroll
    for (int j = 0; j < 8; j++) d.v[j] = ema_elem(d.v[j], s.v[j], decay, omd);
    st8(dst + i, d);
  }
};

// y += a x: a flat op (eight per thread, 32-bit indices).
struct AxpyOp {
  float *y;
  const float *x;
  float a;
  __device__ float f(float yi, float xi) const { return __fadd_rn(yi, __fmul_rn(a, xi)); }
  template <typename I> __device__ void one(I i) const { y[i] = f(y[i], x[i]); }
  __device__ void eight(unsigned i) const {
    V8 yv = ld8(y + i);
    const V8 xv = ld8(x + i);
#pragma unroll
    for (int j = 0; j < 8; j++) yv.v[j] = f(yv.v[j], xv.v[j]);
    st8(y + i, yv);
  }
};

// ---- row L2 normalisation: one warp per row ---------------------------------------------

constexpr int kRowsPerBlock = kThreads / 32;

__global__ void __launch_bounds__(kThreads)
l2norm_fwd_kernel(float *out, float *norms, const float *x, int N, int d) {
  const int lane = threadIdx.x & 31;
  const long r = (long)blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5);
  if (r >= N) return;  // the whole warp leaves together
  const float *xr = x + (size_t)r * d;
  float *o = out + (size_t)r * d;
  double s = 0.0;
  for (int k = lane; k < d; k += 32) {
    const double v = xr[k];
    s += v * v;
  }
  s = warp_sum(s);
  const float nrm = (float)sqrt(s);
  const float inv = __fdiv_rn(1.0f, nrm > kL2Eps ? nrm : kL2Eps);
  for (int k = lane; k < d; k += 32) o[k] = __fmul_rn(xr[k], inv);  // same k: out may alias x
  if (lane == 0) norms[r] = nrm;
}

// dx may alias dout: every dout read of the row happens before the butterfly, and each lane
// then rewrites only the elements it reads.
__global__ void __launch_bounds__(kThreads)
l2norm_bwd_kernel(float *dx, const float *dout, const float *out, const float *norms, int N,
                  int d) {
  const int lane = threadIdx.x & 31;
  const long r = (long)blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5);
  if (r >= N) return;
  const float *g = dout + (size_t)r * d, *o = out + (size_t)r * d;
  float *dxr = dx + (size_t)r * d;
  double dot = 0.0;
  for (int k = lane; k < d; k += 32) dot += (double)g[k] * (double)o[k];
  dot = warp_sum(dot);
  const float nr = norms[r];
  const float inv = __fdiv_rn(1.0f, nr > kL2Eps ? nr : kL2Eps);
  const float dotf = nr <= kL2Eps ? 0.0f : (float)dot;  // clamped: out = x / eps is linear
  for (int k = lane; k < d; k += 32)
    dxr[k] = __fmul_rn(__fsub_rn(g[k], __fmul_rn(o[k], dotf)), inv);
}

// ---- DINO loss: one block per row ---------------------------------------------------------

// rows[r] = -sum_k pt log_softmax(z_s / tau_s) of row r; pt = softmax(scale_t (z_t - center)).
// pt may alias z_t: passes 1 and 2 only read, the block reductions between the passes are
// barriers, and in pass 3 each thread writes only the elements it has just read.
__global__ void __launch_bounds__(kThreads)
dino_fwd_kernel(double *rows, float *pt, const float *z_s, const float *z_t,
                const float *center, float scale_t, float tau_s, int P) {
  __shared__ double shd[32];
  __shared__ float shf[32];
  const size_t off = (size_t)blockIdx.x * P;
  const float *zt = z_t + off, *zs = z_s + off;
  float *p = pt + off;
  float mt = -INFINITY, ms = -INFINITY;
  for (int k = threadIdx.x; k < P; k += blockDim.x) {
    const float vt = __fmul_rn(scale_t, __fsub_rn(zt[k], center[k]));
    const float vs = __fdiv_rn(zs[k], tau_s);
    mt = vt > mt ? vt : mt;
    ms = vs > ms ? vs : ms;
  }
  mt = block_max(mt, shf);
  ms = block_max(ms, shf);
  double st = 0.0, ss = 0.0;
  for (int k = threadIdx.x; k < P; k += blockDim.x) {
    const float vt = __fmul_rn(scale_t, __fsub_rn(zt[k], center[k]));
    st += (double)expf(__fsub_rn(vt, mt));
    ss += exp((double)__fsub_rn(__fdiv_rn(zs[k], tau_s), ms));
  }
  st = block_sum(st, shd);
  ss = block_sum(ss, shd);
  const float inv_t = __fdiv_rn(1.0f, (float)st);
  const double lse = (double)ms + log(ss);
  double ce = 0.0;
  for (int k = threadIdx.x; k < P; k += blockDim.x) {
    const float vt = __fmul_rn(scale_t, __fsub_rn(zt[k], center[k]));
    const float q = __fmul_rn(expf(__fsub_rn(vt, mt)), inv_t);
    p[k] = q;
    ce -= (double)q * ((double)zs[k] / (double)tau_s - lse);
  }
  ce = block_sum(ce, shd);
  if (threadIdx.x == 0) rows[blockIdx.x] = ce;
}

// dz_s = k0 (softmax(scale_s z_s) - pt), k0 = scale / (tau_s N). dz_s may alias z_s or pt
// (same argument as above).
__global__ void __launch_bounds__(kThreads)
dino_bwd_kernel(float *dz_s, const float *z_s, const float *pt, float scale_s, float k0,
                int P) {
  __shared__ double shd[32];
  __shared__ float shf[32];
  const size_t off = (size_t)blockIdx.x * P;
  const float *z = z_s + off, *p = pt + off;
  float *dz = dz_s + off;
  float mx = -INFINITY;
  for (int k = threadIdx.x; k < P; k += blockDim.x) {
    const float v = __fmul_rn(scale_s, z[k]);
    mx = v > mx ? v : mx;
  }
  mx = block_max(mx, shf);
  double s = 0.0;
  for (int k = threadIdx.x; k < P; k += blockDim.x)
    s += (double)expf(__fsub_rn(__fmul_rn(scale_s, z[k]), mx));
  s = block_sum(s, shd);
  const float inv = __fdiv_rn(1.0f, (float)s);
  for (int k = threadIdx.x; k < P; k += blockDim.x) {
    const float q = __fmul_rn(expf(__fsub_rn(__fmul_rn(scale_s, z[k]), mx)), inv);
    dz[k] = __fmul_rn(k0, __fsub_rn(q, p[k]));
  }
}

// ---- column sums ----------------------------------------------------------------------------

// part[c * P + k] = double sum of x[r][k] over rows r in [r0, r1) of chunk c, in row order
// (one chunk covering all rows and a float output: the whole op, bitwise as the CPU).
template <typename T>
__global__ void __launch_bounds__(kThreads)
col_sums_kernel(T *out, const float *x, int N, int P, int rows_per_chunk) {
  const long k = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (k >= P) return;
  const int c = blockIdx.y;
  const int r0 = c * rows_per_chunk;
  const int r1 = r0 + rows_per_chunk < N ? r0 + rows_per_chunk : N;
  const float *col = x + k;
  double s = 0.0;
#pragma unroll 8
  for (int r = r0; r < r1; r++) s += col[(size_t)r * P];
  out[(size_t)c * P + k] = (T)s;
}

__global__ void __launch_bounds__(kThreads)
col_chunks_final_kernel(float *out, const double *part, int nchunks, int P) {
  const long k = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (k >= P) return;
  double s = 0.0;
  for (int c = 0; c < nchunks; c++) s += part[(size_t)c * P + k];
  out[k] = (float)s;
}

// ---- EDM loss: blocks (b, j), j < bps, cover sample b with a stride of bps blocks ---------

int edm_blocks_per_sample(size_t n, int B) {
  size_t want = (n + (size_t)kThreads * 4 - 1) / ((size_t)kThreads * 4);
  size_t cap = (size_t)kEdmBlocks / (size_t)(B > 0 ? B : 1);
  if (cap < 1) cap = 1;
  if (want > cap) want = cap;
  if (want < 1) want = 1;
  return (int)want;
}

// D = c_skip x + c_out F; part[2 blk] = sum mask (D - x0)^2, part[2 blk + 1] = sum mask.
// Sample b's rows start at b n (the base pointers, once per block); inside a sample 32-bit
// indices (n < 2^31). VEC (n % 8 == 0, every pointer 16-byte aligned): 8 elements per thread
// per step with 16-byte accesses, summed in element order.
template <bool VEC>
__global__ void __launch_bounds__(kThreads)
edm_fwd_partial_kernel(double *part, float *D, const float *F, const float *x,
                       const float *x0, const float *c_skip, const float *c_out,
                       const float *mask, unsigned n, int bps) {
  __shared__ double sh[32];
  const int b = blockIdx.x / bps, j = blockIdx.x % bps;
  const float cs = c_skip[b], co = c_out[b];
  const size_t base = (size_t)b * n;
  D += base, F += base, x += base, x0 += base;
  if (mask) mask += base;
  const unsigned stride = (unsigned)bps * blockDim.x;
  double s = 0.0, cnt = 0.0;
  if (VEC) {
    for (unsigned g = (unsigned)j * blockDim.x + threadIdx.x; g < n / 8; g += stride) {
      const unsigned q = 8 * g;
      const V8 xv = ld8(x + q), fv = ld8(F + q), x0v = ld8(x0 + q);
      V8 mv = {};
      if (mask) mv = ld8(mask + q);
      V8 dv;
#pragma unroll
      for (int k = 0; k < 8; k++) {
        dv.v[k] = __fadd_rn(__fmul_rn(cs, xv.v[k]), __fmul_rn(co, fv.v[k]));
        const double m = mask ? (double)mv.v[k] : 1.0;
        const double e = (double)dv.v[k] - (double)x0v.v[k];
        s += m * e * e;
        cnt += m;
      }
      st8(D + q, dv);
    }
  } else {
    for (unsigned q = (unsigned)j * blockDim.x + threadIdx.x; q < n; q += stride) {
      const float d = __fadd_rn(__fmul_rn(cs, x[q]), __fmul_rn(co, F[q]));
      D[q] = d;
      const double m = mask ? (double)mask[q] : 1.0;
      const double e = (double)d - (double)x0[q];
      s += m * e * e;
      cnt += m;
    }
  }
  s = block_sum(s, sh);
  cnt = block_sum(cnt, sh);
  if (threadIdx.x == 0) {
    part[2 * (size_t)blockIdx.x] = s;
    part[2 * (size_t)blockIdx.x + 1] = cnt;
  }
}

// loss[0] = mean over b of (cnt_b > 0 ? weight[b] s_b / cnt_b : 0); one block; terms: B
// doubles of scratch. Warp w handles the samples b = w, w + nw, ...
__global__ void __launch_bounds__(kFinalThreads)
edm_fwd_final_kernel(float *loss, double *terms, const double *part, const float *weight,
                     int B, int bps) {
  __shared__ double sh[32];
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  for (int b = w; b < B; b += nw) {
    double s = 0.0, c = 0.0;
    for (int j = lane; j < bps; j += 32) {
      s += part[2 * ((size_t)b * bps + j)];
      c += part[2 * ((size_t)b * bps + j) + 1];
    }
    s = warp_sum(s);
    c = warp_sum(c);
    if (lane == 0) terms[b] = c > 0 ? (double)weight[b] * s / c : 0.0;
  }
  __syncthreads();  // terms (global memory) written by this block are visible to it
  double t = 0.0;
  for (int b = threadIdx.x; b < B; b += blockDim.x) t += terms[b];
  t = block_sum(t, sh);
  if (threadIdx.x == 0) loss[0] = (float)(t / B);
}

// part[blk] = sum of the mask over block blk's elements (same layout as the forward).
__global__ void __launch_bounds__(kThreads)
edm_mask_count_kernel(double *part, const float *mask, size_t n, int bps) {
  __shared__ double sh[32];
  const int b = blockIdx.x / bps, j = blockIdx.x % bps;
  const size_t base = (size_t)b * n, stride = (size_t)bps * blockDim.x;
  double c = 0.0;
  for (size_t i = (size_t)j * blockDim.x + threadIdx.x; i < n; i += stride)
    c += (double)mask[base + i];
  c = block_sum(c, sh);
  if (threadIdx.x == 0) part[blockIdx.x] = c;
}

// dF = k_b mask (D - x0), k_b = 2 scale c_out[b] weight[b] / (B cnt_b) in double as the CPU
// (cnt_b = n without a mask). Every block of sample b sums the same partials in the same
// order, so all agree on k_b. VEC and indices as edm_fwd_partial_kernel.
template <bool VEC>
__global__ void __launch_bounds__(kThreads)
edm_bwd_kernel(float *dF, const float *D, const float *x0, const float *c_out,
               const float *weight, const float *mask, const double *part, int B, unsigned n,
               int bps, float scale) {
  __shared__ float ksh;
  const int b = blockIdx.x / bps, j = blockIdx.x % bps;
  if (threadIdx.x < 32) {
    double cnt;
    if (mask) {
      cnt = 0.0;
      for (int jj = threadIdx.x; jj < bps; jj += 32) cnt += part[(size_t)b * bps + jj];
      cnt = warp_sum(cnt);
    } else {
      cnt = (double)n;
    }
    if (threadIdx.x == 0)
      ksh = cnt > 0 ? (float)(2.0 * (double)scale * (double)c_out[b] * (double)weight[b] /
                              ((double)B * cnt))
                    : 0.0f;
  }
  __syncthreads();
  const float k = ksh;
  const size_t base = (size_t)b * n;
  dF += base, D += base, x0 += base;
  if (mask) mask += base;
  const unsigned stride = (unsigned)bps * blockDim.x;
  if (VEC) {
    for (unsigned g = (unsigned)j * blockDim.x + threadIdx.x; g < n / 8; g += stride) {
      const unsigned q = 8 * g;
      V8 d = ld8(D + q);
      const V8 z = ld8(x0 + q);
      V8 m = {};
      if (mask) m = ld8(mask + q);
#pragma unroll
      for (int e = 0; e < 8; e++)
        d.v[e] = __fmul_rn(__fmul_rn(k, mask ? m.v[e] : 1.0f), __fsub_rn(d.v[e], z.v[e]));
      st8(dF + q, d);
    }
  } else {
    for (unsigned q = (unsigned)j * blockDim.x + threadIdx.x; q < n; q += stride)
      dF[q] = __fmul_rn(__fmul_rn(k, mask ? mask[q] : 1.0f), __fsub_rn(D[q], x0[q]));
  }
}

}  // namespace

// ---- the ops ------------------------------------------------------------------------------

void sd_cuda_mse_fwd(sd_backend *be, float *loss, const float *a, const float *b, size_t n) {
  reduce_to_scalar(be, loss, n, MseTerm{a, b}, (double)n, "mse_fwd");
}

void sd_cuda_mse_bwd(sd_backend *be, float *da, const float *a, const float *b, size_t n,
                     float scale) {
  const float k = 2.0f * scale / (float)n;
  launch_flat(sd_cuda_st(be)->stream, MseBwdOp{da, a, b, k}, n,
              is_aligned16(da) && is_aligned16(a) && is_aligned16(b), "mse_bwd");
}

void sd_cuda_sum_squares(sd_backend *be, float *out, const float *x, size_t n) {
  reduce_to_scalar(be, out, n, SquareTerm{x}, 1.0, "sum_squares");
}

void sd_cuda_l2norm_rows_fwd(sd_backend *be, float *out, float *norms, const float *x, int N,
                             int d) {
  if (N <= 0) return;
  const unsigned blocks = (unsigned)((N + kRowsPerBlock - 1) / kRowsPerBlock);
  l2norm_fwd_kernel<<<blocks, kThreads, 0, sd_cuda_st(be)->stream>>>(out, norms, x, N, d);
  SD_CUDA_LAUNCHED("l2norm_rows_fwd");
}

void sd_cuda_l2norm_rows_bwd(sd_backend *be, float *dx, const float *dout, const float *out,
                             const float *norms, int N, int d) {
  if (N <= 0) return;
  const unsigned blocks = (unsigned)((N + kRowsPerBlock - 1) / kRowsPerBlock);
  l2norm_bwd_kernel<<<blocks, kThreads, 0, sd_cuda_st(be)->stream>>>(dx, dout, out, norms, N,
                                                                      d);
  SD_CUDA_LAUNCHED("l2norm_rows_bwd");
}

void sd_cuda_dino_loss_fwd(sd_backend *be, float *loss, float *pt, const float *z_s,
                           const float *z_t, const float *center, float tau_s, float tau_t,
                           int N, int P) {
  cudaStream_t s = sd_cuda_st(be)->stream;
  const int rows = N > 0 ? N : 0;
  double *row_ce = (double *)sd_cuda_scratch(be, sizeof(double) * (size_t)(rows ? rows : 1));
  if (rows > 0) {
    dino_fwd_kernel<<<rows, kThreads, 0, s>>>(row_ce, pt, z_s, z_t, center, 1.0f / tau_t,
                                              tau_s, P);
    SD_CUDA_LAUNCHED("dino_loss_fwd");
  }
  final_sum_kernel<<<1, kFinalThreads, 0, s>>>(loss, row_ce, rows, (double)N);
  SD_CUDA_LAUNCHED("dino_loss_fwd");
}

void sd_cuda_dino_loss_bwd(sd_backend *be, float *dz_s, const float *z_s, const float *pt,
                           float tau_s, int N, int P, float scale) {
  if (N <= 0) return;
  const float k0 = scale / (tau_s * (float)N);
  dino_bwd_kernel<<<N, kThreads, 0, sd_cuda_st(be)->stream>>>(dz_s, z_s, pt, 1.0f / tau_s, k0,
                                                              P);
  SD_CUDA_LAUNCHED("dino_loss_bwd");
}

void sd_cuda_sum_rows(sd_backend *be, float *out, const float *x, int N, int P) {
  if (P <= 0) return;
  cudaStream_t s = sd_cuda_st(be)->stream;
  const unsigned col_blocks = (unsigned)((P + kThreads - 1) / kThreads);
  // Enough columns, or few rows: one thread per column over all rows in order (bitwise the
  // CPU result). Otherwise the rows are split into chunks of >= 32 rows so that about 64K
  // threads run; the chunks' double sums are then added in chunk order.
  int nchunks = 1;
  if (P < 16384 && N >= 128) {
    const int by_rows = (N + 31) / 32, by_threads = (65536 + P - 1) / P;
    nchunks = by_rows < by_threads ? by_rows : by_threads;
    if (nchunks > 65535) nchunks = 65535;
  }
  if (nchunks <= 1) {
    col_sums_kernel<float><<<dim3(col_blocks, 1), kThreads, 0, s>>>(out, x, N, P, N > 0 ? N : 0);
    SD_CUDA_LAUNCHED("sum_rows");
    return;
  }
  const int rpc = (N + nchunks - 1) / nchunks;
  nchunks = (N + rpc - 1) / rpc;  // no empty chunk
  double *part = (double *)sd_cuda_scratch(be, sizeof(double) * (size_t)nchunks * P);
  col_sums_kernel<double><<<dim3(col_blocks, (unsigned)nchunks), kThreads, 0, s>>>(part, x, N,
                                                                                  P, rpc);
  SD_CUDA_LAUNCHED("sum_rows");
  col_chunks_final_kernel<<<col_blocks, kThreads, 0, s>>>(out, part, nchunks, P);
  SD_CUDA_LAUNCHED("sum_rows");
}

void sd_cuda_edm_loss_fwd(sd_backend *be, float *loss, float *D, const float *F, const float *x,
                          const float *x0, const float *c_skip, const float *c_out,
                          const float *weight, const float *mask, int B, size_t n) {
  cudaStream_t s = sd_cuda_st(be)->stream;
  const int nb = B > 0 ? B : 0;
  const int bps = edm_blocks_per_sample(n, nb);
  const size_t nblk = (size_t)nb * bps;
  double *part = (double *)sd_cuda_scratch(be, sizeof(double) * (2 * nblk + (size_t)nb + 1));
  double *terms = part + 2 * nblk;
  if (nblk > 0) {
    if (!fits32(n)) SD_FATAL("edm_loss_fwd: samples of %zu elements (2^31 or more)", n);
    if (n % 8 == 0 && is_aligned16(D) && is_aligned16(F) && is_aligned16(x) &&
        is_aligned16(x0) && is_aligned16(mask))
      edm_fwd_partial_kernel<true><<<(unsigned)nblk, kThreads, 0, s>>>(
          part, D, F, x, x0, c_skip, c_out, mask, (unsigned)n, bps);
    else
      edm_fwd_partial_kernel<false><<<(unsigned)nblk, kThreads, 0, s>>>(
          part, D, F, x, x0, c_skip, c_out, mask, (unsigned)n, bps);
    SD_CUDA_LAUNCHED("edm_loss_fwd");
  }
  edm_fwd_final_kernel<<<1, kFinalThreads, 0, s>>>(loss, terms, part, weight, nb, bps);
  SD_CUDA_LAUNCHED("edm_loss_fwd");
}

void sd_cuda_edm_loss_bwd(sd_backend *be, float *dF, const float *D, const float *x0,
                          const float *c_out, const float *weight, const float *mask, int B,
                          size_t n, float scale) {
  if (B <= 0 || n == 0) return;
  cudaStream_t s = sd_cuda_st(be)->stream;
  const int bps = edm_blocks_per_sample(n, B);
  const size_t nblk = (size_t)B * bps;
  double *part = NULL;
  if (mask) {
    part = (double *)sd_cuda_scratch(be, sizeof(double) * nblk);
    edm_mask_count_kernel<<<(unsigned)nblk, kThreads, 0, s>>>(part, mask, n, bps);
    SD_CUDA_LAUNCHED("edm_loss_bwd");
  }
  if (!fits32(n)) SD_FATAL("edm_loss_bwd: samples of %zu elements (2^31 or more)", n);
  if (n % 8 == 0 && is_aligned16(dF) && is_aligned16(D) && is_aligned16(x0) &&
      is_aligned16(mask))
    edm_bwd_kernel<true><<<(unsigned)nblk, kThreads, 0, s>>>(dF, D, x0, c_out, weight, mask,
                                                             part, B, (unsigned)n, bps, scale);
  else
    edm_bwd_kernel<false><<<(unsigned)nblk, kThreads, 0, s>>>(dF, D, x0, c_out, weight, mask,
                                                              part, B, (unsigned)n, bps, scale);
  SD_CUDA_LAUNCHED("edm_loss_bwd");
}

// The AdamW ops: the bf16 copy beside p (n) when p lies in a fresh registered region
// (weights_bf16.cu), written in the same pass; plain adamw has no EMAs.
void sd_cuda_adamw(sd_backend *be, float *p, const float *g, float *m, float *v, size_t n,
                   float lr, float beta1, float beta2, float eps, float wd, long t,
                   float grad_scale) {
  AdamEmaOp<0> op{p,        g,      m,     v, {nullptr},
                  adam_const(lr, beta1, beta2, eps, wd, t, grad_scale), {0.0f}, {0.0f}};
  op.pc = (__nv_bfloat16 *)sd_cuda_weights_for_update(be, p, n);
  launch_flat(sd_cuda_st(be)->stream, op, n, op.vec(), "adamw");
}

void sd_cuda_adamw_ema(sd_backend *be, float *p, const float *g, float *m, float *v, float *ema,
                       size_t n, float lr, float beta1, float beta2, float eps, float wd,
                       long t, float grad_scale, float decay, const float *gate) {
  AdamConst k = adam_const(lr, beta1, beta2, eps, wd, t, grad_scale);
  k.gate = gate;
  AdamEmaOp<1> op{p, g, m, v, {ema}, k, {decay}, {1.0f - decay}};
  op.pc = (__nv_bfloat16 *)sd_cuda_weights_for_update(be, p, n);
  op.ec[0] = (__nv_bfloat16 *)sd_cuda_weights_for_update(be, ema, n);
  launch_flat(sd_cuda_st(be)->stream, op, n, op.vec(), "adamw_ema");
}

// The ops-table entry: AdamW with zero, one or two EMAs, one pass.
void sd_cuda_adamw_ema2(sd_backend *be, float *p, const float *g, float *m, float *v, size_t n,
                        float lr, float beta1, float beta2, float eps, float wd, long t,
                        float grad_scale, float *ema1, float decay1, float *ema2,
                        float decay2, const float *gate) {
  AdamConst k = adam_const(lr, beta1, beta2, eps, wd, t, grad_scale);
  k.gate = gate;
  if (!ema1 && !ema2) {
    AdamEmaOp<0> op{p, g, m, v, {nullptr}, k, {0.0f}, {0.0f}};
    op.pc = (__nv_bfloat16 *)sd_cuda_weights_for_update(be, p, n);
    launch_flat(sd_cuda_st(be)->stream, op, n, op.vec(), "adamw");
  } else if (!ema1 || !ema2) {
    sd_cuda_adamw_ema(be, p, g, m, v, ema1 ? ema1 : ema2, n, lr, beta1, beta2, eps, wd, t,
                      grad_scale, ema1 ? decay1 : decay2, gate);
  } else {
    AdamEmaOp<2> op{p,      g, m, v, {ema1, ema2}, k,
                    {decay1, decay2}, {1.0f - decay1, 1.0f - decay2}};
    op.pc = (__nv_bfloat16 *)sd_cuda_weights_for_update(be, p, n);
    op.ec[0] = (__nv_bfloat16 *)sd_cuda_weights_for_update(be, ema1, n);
    op.ec[1] = (__nv_bfloat16 *)sd_cuda_weights_for_update(be, ema2, n);
    launch_flat(sd_cuda_st(be)->stream, op, n, op.vec(), "adamw_ema2");
  }
}

void sd_cuda_ema(sd_backend *be, float *dst, const float *src, size_t n, float decay) {
  sd_cuda_weights_written(be, dst, n * sizeof(float));
  launch_flat(sd_cuda_st(be)->stream, EmaOp{dst, src, decay, 1.0f - decay}, n,
              is_aligned16(dst) && is_aligned16(src), "ema");
}

void sd_cuda_axpy(sd_backend *be, float *y, const float *x, size_t n, float a) {
  sd_cuda_weights_written(be, y, n * sizeof(float));
  launch_flat(sd_cuda_st(be)->stream, AxpyOp{y, x, a}, n, is_aligned16(y) && is_aligned16(x),
              "axpy");
}

// ---- self-check against the CPU ops -------------------------------------------------------

namespace {

struct Rng {
  uint64_t s;
  float uni() {  // [-1, 1)
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return (float)((double)(s >> 11) * (2.0 / 9007199254740992.0) - 1.0);
  }
  float normal() { return 0.8660254f * (uni() + uni() + uni() + uni()); }  // ~ unit variance
};

// Records the comparison whose error is largest relative to its tolerance, and whether any
// failed. Error of an element: |gpu - cpu| / (|cpu| + floor), floor = 1e-3 max|cpu| over the
// array (0 for scalars), so elements near zero after cancellation are judged against the
// array's scale.
struct Checker {
  double worst = -1.0;
  char worst_msg[320] = "";
  int checks = 0;
  bool failed = false;

  void note(double ratio, const char *msg) {
    checks++;
    if (ratio > worst) {
      worst = ratio;
      snprintf(worst_msg, sizeof worst_msg, "%s", msg);
    }
    if (ratio > 1.0) failed = true;
  }

  void cmp(const char *op, const float *gpu, const float *cpu, size_t n, double tol,
           bool scalar) {
    if (n == 0) return;
    double maxabs = 0.0;
    for (size_t i = 0; i < n; i++)
      if (fabs((double)cpu[i]) > maxabs && isfinite(cpu[i])) maxabs = fabs((double)cpu[i]);
    const double floor_ = scalar ? 0.0 : 1e-3 * maxabs;
    double wr = -1.0, wrel = 0.0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
      const double g = gpu[i], c = cpu[i];
      double rel;
      if (isnan(g) || isnan(c) || isinf(g) || isinf(c))
        rel = (isnan(g) && isnan(c)) || g == c ? 0.0 : INFINITY;
      else {
        const double err = fabs(g - c), den = fabs(c) + floor_;
        rel = err == 0.0 ? 0.0 : (den > 0.0 ? err / den : INFINITY);
      }
      if (rel / tol > wr) {
        wr = rel / tol;
        wrel = rel;
        wi = i;
      }
    }
    char msg[320];
    snprintf(msg, sizeof msg, "%s[%zu]: gpu %.9g cpu %.9g rel %.3g (tol %.0e)", op, wi,
             n ? (double)gpu[wi] : 0.0, n ? (double)cpu[wi] : 0.0, wrel, tol);
    note(wr, msg);
  }

  void same(const char *op, const void *a, const void *b, size_t bytes) {
    char msg[320];
    const bool eq = memcmp(a, b, bytes) == 0;
    snprintf(msg, sizeof msg, "%s: %s", op, eq ? "bitwise equal" : "NOT bitwise equal");
    note(eq ? 0.0 : INFINITY, msg);
  }
};

// Device buffers of the self-check, freed together; copies run on the backend stream.
struct DevBufs {
  cudaStream_t s;
  void *ptr[96];
  int count = 0;
  cudaError_t err = cudaSuccess;

  explicit DevBufs(cudaStream_t stream) : s(stream) {}
  ~DevBufs() {
    if (count) cudaStreamSynchronize(s);
    for (int i = 0; i < count; i++) cudaFree(ptr[i]);
  }
  float *alloc(size_t n) {
    void *p = NULL;
    if (err != cudaSuccess) return NULL;
    if (count >= 96) {
      err = cudaErrorMemoryAllocation;
      return NULL;
    }
    cudaError_t e = cudaMalloc(&p, sizeof(float) * (n ? n : 1));
    if (e != cudaSuccess) {
      err = e;
      return NULL;
    }
    ptr[count++] = p;
    return (float *)p;
  }
  float *up(const float *h, size_t n) {
    float *d = alloc(n);
    if (d) put(d, h, n);
    return d;
  }
  void put(float *d, const float *h, size_t n) {
    if (err == cudaSuccess)
      err = cudaMemcpyAsync(d, h, sizeof(float) * n, cudaMemcpyHostToDevice, s);
  }
  // Waits for the stream (the ops before) and copies back.
  void get(float *h, const float *d, size_t n) {
    if (err == cudaSuccess)
      err = cudaMemcpyAsync(h, d, sizeof(float) * n, cudaMemcpyDeviceToHost, s);
    if (err == cudaSuccess) err = cudaStreamSynchronize(s);
  }
};

struct HostBuf {
  float *p;
  explicit HostBuf(size_t n) : p((float *)sd_xcalloc(n ? n : 1, sizeof(float), "selftest")) {}
  ~HostBuf() { free(p); }
  HostBuf(const HostBuf &) = delete;
  HostBuf &operator=(const HostBuf &) = delete;
  float &operator[](size_t i) { return p[i]; }
};

void fill_normal(Rng &r, float *x, size_t n, float sd) {
  for (size_t i = 0; i < n; i++) x[i] = sd * r.normal();
}

int selftest_body(sd_backend *be, sd_backend *cpu, Checker &ck, char *err, size_t len) {
  DevBufs db(sd_cuda_st(be)->stream);
  Rng rng{0x9E3779B97F4A7C15ull};
#define ST_DEV_OK(what)                                                                  \
  do {                                                                                   \
    if (db.err != cudaSuccess)                                                           \
      return sd_errorf(err, len, "loss_optim selftest: CUDA error at %s: %s", what,      \
                       cudaGetErrorString(db.err));                                      \
  } while (0)

  // ---- mse, sum of squares (scalars in double, then the gradient) ----
  {
    const size_t nbig = 3000017, nsmall = 1000;
    HostBuf a(nbig), b(nbig), da_g(nbig), da_c(nbig);
    fill_normal(rng, a.p, nbig, 1.0f);
    fill_normal(rng, b.p, nbig, 1.0f);
    float *ad = db.up(a.p, nbig), *bd = db.up(b.p, nbig), *dd = db.alloc(nbig),
          *sc = db.alloc(8);
    ST_DEV_OK("upload (mse)");
    const size_t sizes[2] = {nsmall, nbig};
    for (int k = 0; k < 2; k++) {
      const size_t n = sizes[k];
      float g[4], c[2];
      sd_cuda_mse_fwd(be, sc, ad, bd, n);
      sd_cuda_mse_fwd(be, sc + 1, ad, bd, n);
      sd_cuda_sum_squares(be, sc + 2, ad, n);
      sd_cuda_sum_squares(be, sc + 3, ad, n);
      db.get(g, sc, 4);
      ST_DEV_OK("mse_fwd / sum_squares");
      sd_cpu_mse_fwd(cpu, &c[0], a.p, b.p, n);
      sd_cpu_sum_squares(cpu, &c[1], a.p, n);
      ck.cmp(k ? "mse_fwd(n=3000017)" : "mse_fwd(n=1000)", &g[0], &c[0], 1, 1e-6, true);
      ck.same("mse_fwd twice", &g[0], &g[1], sizeof(float));
      ck.cmp(k ? "sum_squares(n=3000017)" : "sum_squares(n=1000)", &g[2], &c[1], 1, 1e-6, true);
      ck.same("sum_squares twice", &g[2], &g[3], sizeof(float));
    }
    // mse_bwd: aligned (float4 path) and offset by one element (scalar path)
    sd_cuda_mse_bwd(be, dd, ad, bd, nbig, 0.7f);
    db.get(da_g.p, dd, nbig);
    ST_DEV_OK("mse_bwd");
    sd_cpu_mse_bwd(cpu, da_c.p, a.p, b.p, nbig, 0.7f);
    ck.cmp("mse_bwd", da_g.p, da_c.p, nbig, 1e-5, false);
    sd_cuda_mse_bwd(be, dd + 1, ad + 1, bd + 1, nsmall + 2, 0.7f);
    db.get(da_g.p, dd + 1, nsmall + 2);
    ST_DEV_OK("mse_bwd (unaligned)");
    sd_cpu_mse_bwd(cpu, da_c.p, a.p + 1, b.p + 1, nsmall + 2, 0.7f);
    ck.cmp("mse_bwd(unaligned)", da_g.p, da_c.p, nsmall + 2, 1e-5, false);
  }

  // ---- row L2 normalisation (one row zero: the clamp) ----
  {
    const int shapes[2][2] = {{37, 259}, {3, 20}};
    for (int sh = 0; sh < 2; sh++) {
      const int N = shapes[sh][0], d = shapes[sh][1];
      const size_t nd = (size_t)N * d;
      HostBuf x(nd), go(nd), out_g(nd), out_c(nd), nr_g(N), nr_c(N), dx_g(nd), dx_c(nd),
          dx_i(nd);
      fill_normal(rng, x.p, nd, 2.0f);
      fill_normal(rng, go.p, nd, 1.0f);
      for (int k = 0; k < d; k++) x[(size_t)(N / 2) * d + k] = 0.0f;
      float *xd = db.up(x.p, nd), *gd = db.up(go.p, nd), *od = db.alloc(nd),
            *nd_ = db.alloc(N), *dxd = db.alloc(nd), *gi = db.up(go.p, nd);
      ST_DEV_OK("upload (l2norm)");
      sd_cuda_l2norm_rows_fwd(be, od, nd_, xd, N, d);
      sd_cuda_l2norm_rows_bwd(be, dxd, gd, od, nd_, N, d);
      sd_cuda_l2norm_rows_bwd(be, gi, gi, od, nd_, N, d);  // in place, as the head calls it
      db.get(out_g.p, od, nd);
      db.get(nr_g.p, nd_, N);
      db.get(dx_g.p, dxd, nd);
      db.get(dx_i.p, gi, nd);
      ST_DEV_OK("l2norm_rows");
      sd_cpu_l2norm_rows_fwd(cpu, out_c.p, nr_c.p, x.p, N, d);
      // the backward from the GPU's forward output, so that only the backward is compared
      sd_cpu_l2norm_rows_bwd(cpu, dx_c.p, go.p, out_g.p, nr_g.p, N, d);
      ck.cmp("l2norm_rows_fwd.out", out_g.p, out_c.p, nd, 1e-5, false);
      ck.cmp("l2norm_rows_fwd.norms", nr_g.p, nr_c.p, (size_t)N, 1e-5, false);
      ck.cmp("l2norm_rows_bwd", dx_g.p, dx_c.p, nd, 1e-5, false);
      ck.same("l2norm_rows_bwd in place", dx_g.p, dx_i.p, sizeof(float) * nd);
    }
  }

  // ---- DINO loss (pt separate and aliasing z_t), backward ----
  {
    const int shapes[2][2] = {{29, 1000}, {5, 37}};
    for (int sh = 0; sh < 2; sh++) {
      const int N = shapes[sh][0], P = shapes[sh][1];
      const size_t np = (size_t)N * P;
      const float tau_s = 0.1f, tau_t = 0.04f;
      HostBuf zs(np), zt(np), cen(P), pt_g(np), pt_c(np), pt_a(np), dz_g(np), dz_c(np);
      fill_normal(rng, zs.p, np, 1.0f);
      fill_normal(rng, zt.p, np, 1.0f);
      fill_normal(rng, cen.p, P, 0.1f);
      float *zsd = db.up(zs.p, np), *ztd = db.up(zt.p, np), *cd = db.up(cen.p, P),
            *ptd = db.alloc(np), *pad = db.up(zt.p, np), *sc = db.alloc(4), *dzd = db.alloc(np),
            *ptc = db.alloc(np);
      ST_DEV_OK("upload (dino)");
      float g[3], c;
      sd_cuda_dino_loss_fwd(be, sc, ptd, zsd, ztd, cd, tau_s, tau_t, N, P);
      sd_cuda_dino_loss_fwd(be, sc + 1, pad, zsd, pad, cd, tau_s, tau_t, N, P);  // aliased
      sd_cuda_dino_loss_fwd(be, sc + 2, ptd, zsd, ztd, cd, tau_s, tau_t, N, P);
      db.get(g, sc, 3);
      db.get(pt_g.p, ptd, np);
      db.get(pt_a.p, pad, np);
      ST_DEV_OK("dino_loss_fwd");
      sd_cpu_dino_loss_fwd(cpu, &c, pt_c.p, zs.p, zt.p, cen.p, tau_s, tau_t, N, P);
      ck.cmp("dino_loss_fwd.loss", &g[0], &c, 1, 1e-6, true);
      ck.cmp("dino_loss_fwd.pt", pt_g.p, pt_c.p, np, 1e-5, false);
      ck.same("dino_loss_fwd pt aliasing z_t (pt)", pt_g.p, pt_a.p, sizeof(float) * np);
      ck.same("dino_loss_fwd pt aliasing z_t (loss)", &g[0], &g[1], sizeof(float));
      ck.same("dino_loss_fwd twice", &g[0], &g[2], sizeof(float));
      // backward from the CPU's pt on both sides
      db.put(ptc, pt_c.p, np);
      sd_cuda_dino_loss_bwd(be, dzd, zsd, ptc, tau_s, N, P, 0.5f);
      db.get(dz_g.p, dzd, np);
      ST_DEV_OK("dino_loss_bwd");
      sd_cpu_dino_loss_bwd(cpu, dz_c.p, zs.p, pt_c.p, tau_s, N, P, 0.5f);
      ck.cmp("dino_loss_bwd", dz_g.p, dz_c.p, np, 1e-5, false);
    }
  }

  // ---- column sums: one pass (bitwise the CPU) and chunked ----
  {
    const int shapes[3][2] = {{515, 77}, {13, 5000}, {4000, 300}};
    for (int sh = 0; sh < 3; sh++) {
      const int N = shapes[sh][0], P = shapes[sh][1];
      const size_t np = (size_t)N * P;
      HostBuf x(np), o_g(P), o_c(P), o_2(P);
      fill_normal(rng, x.p, np, 1.0f);
      float *xd = db.up(x.p, np), *od = db.alloc(P), *o2 = db.alloc(P);
      ST_DEV_OK("upload (sum_rows)");
      sd_cuda_sum_rows(be, od, xd, N, P);
      sd_cuda_sum_rows(be, o2, xd, N, P);
      db.get(o_g.p, od, P);
      db.get(o_2.p, o2, P);
      ST_DEV_OK("sum_rows");
      sd_cpu_sum_rows(cpu, o_c.p, x.p, N, P);
      char name[64];
      snprintf(name, sizeof name, "sum_rows(N=%d,P=%d)", N, P);
      ck.cmp(name, o_g.p, o_c.p, (size_t)P, 1e-5, false);
      ck.same("sum_rows twice", o_g.p, o_2.p, sizeof(float) * P);
    }
  }

  // ---- EDM loss, with and without a mask (one sample fully masked out) ----
  {
    const int Bs[2] = {5, 3};
    const size_t ns[2] = {12345, 1048579};
    for (int sh = 0; sh < 2; sh++) {
      const int B = Bs[sh];
      const size_t n = ns[sh], bn = (size_t)B * n;
      HostBuf F(bn), x(bn), x0(bn), mask(bn), cs(B), co(B), w(B), D_g(bn), D_c(bn), dF_g(bn),
          dF_c(bn);
      fill_normal(rng, F.p, bn, 1.0f);
      fill_normal(rng, x.p, bn, 1.5f);
      fill_normal(rng, x0.p, bn, 1.0f);
      for (size_t i = 0; i < bn; i++) mask[i] = rng.uni() > 0.0f ? 1.0f : 0.0f;
      for (size_t i = 0; i < n; i++) mask[1 * n + i] = 0.0f;  // sample 1: count 0
      for (int b = 0; b < B; b++) {
        cs[b] = 0.5f + 0.25f * rng.uni();
        co[b] = 0.8f + 0.3f * rng.uni();
        w[b] = 1.5f + rng.uni();
      }
      float *Fd = db.up(F.p, bn), *xd = db.up(x.p, bn), *x0d = db.up(x0.p, bn),
            *md = db.up(mask.p, bn), *csd = db.up(cs.p, B), *cod = db.up(co.p, B),
            *wd = db.up(w.p, B), *Dd = db.alloc(bn), *dFd = db.alloc(bn), *sc = db.alloc(4);
      ST_DEV_OK("upload (edm)");
      for (int use_mask = 0; use_mask < 2; use_mask++) {
        const float *mh = use_mask ? mask.p : NULL, *mdv = use_mask ? md : NULL;
        float g[2], c;
        sd_cuda_edm_loss_fwd(be, sc, Dd, Fd, xd, x0d, csd, cod, wd, mdv, B, n);
        sd_cuda_edm_loss_fwd(be, sc + 1, Dd, Fd, xd, x0d, csd, cod, wd, mdv, B, n);
        sd_cuda_edm_loss_bwd(be, dFd, Dd, x0d, cod, wd, mdv, B, n, 1.3f);
        db.get(g, sc, 2);
        db.get(D_g.p, Dd, bn);
        db.get(dF_g.p, dFd, bn);
        ST_DEV_OK("edm_loss");
        sd_cpu_edm_loss_fwd(cpu, &c, D_c.p, F.p, x.p, x0.p, cs.p, co.p, w.p, mh, B, n);
        sd_cpu_edm_loss_bwd(cpu, dF_c.p, D_c.p, x0.p, co.p, w.p, mh, B, n, 1.3f);
        ck.cmp(use_mask ? "edm_loss_fwd.loss(mask)" : "edm_loss_fwd.loss", g, &c, 1, 1e-6, true);
        ck.same("edm_loss_fwd twice", &g[0], &g[1], sizeof(float));
        ck.cmp(use_mask ? "edm_loss_fwd.D(mask)" : "edm_loss_fwd.D", D_g.p, D_c.p, bn, 1e-5,
               false);
        ck.cmp(use_mask ? "edm_loss_bwd(mask)" : "edm_loss_bwd", dF_g.p, dF_c.p, bn, 1e-5,
               false);
      }
    }
  }

  // ---- AdamW, AdamW + EMA, EMA, axpy: aligned (8 per thread) and offset by one (scalar) ----
  {
    const size_t n = 100001;
    HostBuf p(n), g(n), m(n), v(n), e(n), r1(n), r2(n), r3(n), r4(n);
    fill_normal(rng, p.p, n, 0.5f);
    fill_normal(rng, g.p, n, 0.1f);
    fill_normal(rng, m.p, n, 0.01f);
    for (size_t i = 0; i < n; i++) v[i] = 1e-4f * fabsf(rng.normal());
    fill_normal(rng, e.p, n, 0.5f);
    const float lr = 1e-3f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wdk = 0.05f, gs = 0.8f;
    const float decay = 0.999f;
    const long t = 7;
    float *pd = db.alloc(n), *gd = db.up(g.p, n), *mdv = db.alloc(n), *vd = db.alloc(n),
          *ed = db.alloc(n);
    float *p2 = db.alloc(n), *m2 = db.alloc(n), *v2 = db.alloc(n), *e2 = db.alloc(n);
    float *e3 = db.alloc(n);
    ST_DEV_OK("alloc (adamw)");
    for (int off = 0; off < 2; off++) {
      const size_t nn = n - off;
      // CPU reference: adamw, then ema of the updated parameters
      HostBuf pc(n), mc(n), vc(n), ec(n);
      memcpy(pc.p, p.p, sizeof(float) * n);
      memcpy(mc.p, m.p, sizeof(float) * n);
      memcpy(vc.p, v.p, sizeof(float) * n);
      memcpy(ec.p, e.p, sizeof(float) * n);
      sd_cpu_adamw(cpu, pc.p + off, g.p + off, mc.p + off, vc.p + off, nn, lr, b1, b2, eps, wdk,
                   t, gs);
      sd_cpu_ema(cpu, ec.p + off, pc.p + off, nn, decay);
      // GPU: adamw then ema, and the fused op on a second copy
      db.put(pd, p.p, n);
      db.put(mdv, m.p, n);
      db.put(vd, v.p, n);
      db.put(ed, e.p, n);
      db.put(p2, p.p, n);
      db.put(m2, m.p, n);
      db.put(v2, v.p, n);
      db.put(e2, e.p, n);
      sd_cuda_adamw(be, pd + off, gd + off, mdv + off, vd + off, nn, lr, b1, b2, eps, wdk, t, gs);
      sd_cuda_ema(be, ed + off, pd + off, nn, decay);
      sd_cuda_adamw_ema(be, p2 + off, gd + off, m2 + off, v2 + off, e2 + off, nn, lr, b1, b2,
                        eps, wdk, t, gs, decay, NULL);
      const char *sfx = off ? "(unaligned)" : "";
      char name[64];
      db.get(r1.p, pd, n);
      db.get(r2.p, mdv, n);
      db.get(r3.p, vd, n);
      db.get(r4.p, ed, n);
      ST_DEV_OK("adamw / ema");
      snprintf(name, sizeof name, "adamw.p%s", sfx);
      ck.cmp(name, r1.p, pc.p, n, 1e-5, false);
      snprintf(name, sizeof name, "adamw.m%s", sfx);
      ck.cmp(name, r2.p, mc.p, n, 1e-5, false);
      snprintf(name, sizeof name, "adamw.v%s", sfx);
      ck.cmp(name, r3.p, vc.p, n, 1e-5, false);
      snprintf(name, sizeof name, "ema%s", sfx);
      ck.cmp(name, r4.p, ec.p, n, 1e-5, false);
      HostBuf f1(n), f2(n), f3(n), f4(n);
      db.get(f1.p, p2, n);
      db.get(f2.p, m2, n);
      db.get(f3.p, v2, n);
      db.get(f4.p, e2, n);
      ST_DEV_OK("adamw_ema");
      snprintf(name, sizeof name, "adamw_ema.ema%s", sfx);
      ck.cmp(name, f4.p, ec.p, n, 1e-5, false);
      ck.same("adamw_ema == adamw + ema (p)", f1.p, r1.p, sizeof(float) * n);
      ck.same("adamw_ema == adamw + ema (m)", f2.p, r2.p, sizeof(float) * n);
      ck.same("adamw_ema == adamw + ema (v)", f3.p, r3.p, sizeof(float) * n);
      ck.same("adamw_ema == adamw + ema (ema)", f4.p, r4.p, sizeof(float) * n);
      // two EMAs in one pass (the trainer's teacher and generation EMAs on the encoder)
      db.put(p2, p.p, n);
      db.put(m2, m.p, n);
      db.put(v2, v.p, n);
      db.put(e2, e.p, n);
      db.put(e3, e.p, n);
      sd_cuda_adamw_ema2(be, p2 + off, gd + off, m2 + off, v2 + off, nn, lr, b1, b2, eps, wdk, t,
                         gs, e2 + off, decay, e3 + off, 0.9f, NULL);
      db.put(ed, e.p, n);
      sd_cuda_ema(be, ed + off, pd + off, nn, 0.9f);  // pd: the separate adamw's result
      HostBuf h1(n), h2(n), h3(n), h4(n);
      db.get(h1.p, p2, n);
      db.get(h2.p, e2, n);
      db.get(h3.p, e3, n);
      db.get(h4.p, ed, n);
      ST_DEV_OK("adamw_ema2");
      ck.same("adamw_ema2 == adamw + 2 ema (p)", h1.p, r1.p, sizeof(float) * n);
      ck.same("adamw_ema2 == adamw + 2 ema (ema1)", h2.p, r4.p, sizeof(float) * n);
      ck.same("adamw_ema2 == adamw + 2 ema (ema2)", h3.p, h4.p, sizeof(float) * n);
      // axpy: y = e, x = g
      memcpy(ec.p, e.p, sizeof(float) * n);
      sd_cpu_axpy(cpu, ec.p + off, g.p + off, nn, -0.3f);
      db.put(ed, e.p, n);
      sd_cuda_axpy(be, ed + off, gd + off, nn, -0.3f);
      db.get(r4.p, ed, n);
      ST_DEV_OK("axpy");
      snprintf(name, sizeof name, "axpy%s", sfx);
      ck.cmp(name, r4.p, ec.p, n, 1e-5, false);
    }
  }
#undef ST_DEV_OK
  return 0;
}

}  // namespace

extern "C" int sd_cuda_loss_optim_selftest(sd_backend *be, char *err, size_t len) {
  sd_backend cpu;
  if (sd_backend_cpu_init(&cpu, 0) != 0)
    return sd_errorf(err, len, "loss_optim selftest: cannot start the CPU backend");
  Checker ck;
  int rc = selftest_body(be, &cpu, ck, err, len);
  sd_backend_cpu_destroy(&cpu);
  if (rc != 0) return rc;
  if (ck.failed)
    return sd_errorf(err, len, "loss_optim selftest failed (%d checks); worst: %s", ck.checks,
                     ck.worst_msg);
  snprintf(err, len, "loss_optim selftest passed (%d checks); worst: %s", ck.checks,
           ck.worst_msg);
  return 0;
}
