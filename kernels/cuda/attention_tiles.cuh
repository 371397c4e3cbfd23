// Shared by the attention kernels of attention.cu (fp32 tiles, FMA products) and
// attention_tc.cu (bf16 tiles, tensor-core products): the tiling constants, the global loads of
// qkv / out / dout, the half-warp reductions, the shared-memory opt-in, and the entry points of
// the tensor-core kernels. Everything here has internal linkage (an unnamed namespace) except
// those entry points.
#ifndef SD_ATTENTION_TILES_CUH
#define SD_ATTENTION_TILES_CUH

#include "cuda_internal.h"

extern "C" {
#include "error.h"
}

#include <cuda_bf16.h>
#include <stdint.h>

namespace {

constexpr int kThreads = 256;     // 16 x 16
constexpr int kRows = 64;         // row tile (tokens) of a block
constexpr int kCols = 32;         // column tile (tokens) streamed through shared memory
constexpr int kRM = 4;            // rows per thread:    r = ty*4 + i
constexpr int kCN = 2;            // columns per thread: c = tx + 16*j
constexpr int kLdc = kCols + 4;   // row stride (floats) of P / dS tiles
constexpr int kMaxHD = 128;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

static_assert(kRows == 16 * kRM && kCols == 16 * kCN, "micro-tile mapping");
static_assert(kCols % 4 == 0 && kThreads >= kCols, "tile sizes");

// Global reads of qkv / out / dout as fp32, through the read-only cache. ldg1: one element.
// ldg4: the 4 consecutive elements at p, which must be 4-element aligned (one 16-byte float4
// load for float; one 8-byte load for bf16, whose element 2k is the low half of 32-bit word k
// (little-endian) and widens exactly to the float with those 16 bits on top).
__device__ __forceinline__ float ldg1(const float *p) { return __ldg(p); }
__device__ __forceinline__ float ldg1(const __nv_bfloat16 *p) { return __bfloat162float(__ldg(p)); }
__device__ __forceinline__ float4 ldg4(const float *p) {
  return __ldg(reinterpret_cast<const float4 *>(p));
}
__device__ __forceinline__ float4 ldg4(const __nv_bfloat16 *p) {
  const uint2 u = __ldg(reinterpret_cast<const uint2 *>(p));
  return make_float4(__uint_as_float(u.x << 16), __uint_as_float(u.x & 0xffff0000u),
                     __uint_as_float(u.y << 16), __uint_as_float(u.y & 0xffff0000u));
}
// An fp32 result stored as the element type (bf16: rounded to nearest even, once).
__device__ __forceinline__ void store_f(float *p, float v) { *p = v; }
__device__ __forceinline__ void store_f(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }

// Reductions over the 16 lanes of a half-warp (the threads sharing ty). Butterfly: every lane
// ends with the same, bitwise identical value (a + b == b + a).
__device__ __forceinline__ float half_warp_max(float v) {
#pragma unroll
  for (int off = 8; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}
__device__ __forceinline__ float half_warp_sum(float v) {
#pragma unroll
  for (int off = 8; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// ---- per-block bookkeeping shared by the kernels -------------------------------------------

// The (b, h) = (blockIdx.z, blockIdx.y) slice a block works on: head h of sample b in qkv
// (token t's q at q + t*ld, k and v D and 2D further) and in dout (token t at + t*D), and the
// T-long rows of lse and Dvec. dout and dvec may be NULL (the forward).
template <typename E>
struct HeadSlice {
  const E *q, *k, *v;
  const float *dout, *lse, *dvec;
  int D;      // NH * HD
  size_t ld;  // 3 * D, the qkv row stride
};
template <typename E>
__device__ __forceinline__ HeadSlice<E> head_slice(const E *qkv, const float *dout,
                                                   const float *lse, const float *dvec, int T,
                                                   int NH, int HD) {
  const int b = blockIdx.z, h = blockIdx.y;
  HeadSlice<E> s;
  s.D = NH * HD;
  s.ld = 3 * (size_t)s.D;
  s.q = qkv + (size_t)b * T * s.ld + (size_t)h * HD;
  s.k = s.q + s.D;
  s.v = s.q + 2 * s.D;
  s.dout = dout ? dout + (size_t)b * T * s.D + (size_t)h * HD : nullptr;
  s.lse = lse + ((size_t)b * NH + h) * T;
  s.dvec = dvec ? dvec + ((size_t)b * NH + h) * T : nullptr;
  return s;
}

// The thread's query rows t = t0 + ty*4 + i: lse2 = lse in log2 units, dvr = Dvec (0 past T).
__device__ __forceinline__ void load_row_stats(float (&lse2)[kRM], float (&dvr)[kRM],
                                               const float *__restrict__ lse_bh,
                                               const float *__restrict__ dvec_bh, int t0,
                                               int T) {
#pragma unroll
  for (int i = 0; i < kRM; i++) {
    const int t = t0 + i;
    lse2[i] = t < T ? __ldg(lse_bh + t) * kLog2e : 0.f;
    dvr[i] = t < T ? __ldg(dvec_bh + t) : 0.f;
  }
}

// The accumulators of a thread's head-dim micro-tile: rows ty*4 + i, columns tx + 16*jd.
template <int NDC>
__device__ __forceinline__ void zero_acc(float (&acc)[kRM][NDC]) {
#pragma unroll
  for (int i = 0; i < kRM; i++)
#pragma unroll
    for (int jd = 0; jd < NDC; jd++) acc[i][jd] = 0.f;
}

// dst[t*ld + d] = acc[i][jd] * mult for the thread's rows t = t0 + ty*4 + i < T and columns
// d = tx + 16*jd < HD (the padding past HD is not stored).
template <int NDC>
__device__ __forceinline__ void store_hd_rows(float *__restrict__ dst, size_t ld,
                                              const float (&acc)[kRM][NDC], float mult, int t0,
                                              int T, int HD, int ty, int tx) {
#pragma unroll
  for (int i = 0; i < kRM; i++) {
    const int t = t0 + ty * kRM + i;
    if (t >= T) continue;
#pragma unroll
    for (int jd = 0; jd < NDC; jd++) {
      const int d = tx + 16 * jd;
      if (d < HD) dst[(size_t)t * ld + d] = acc[i][jd] * mult;
    }
  }
}

// The softmax statistics of the query tile q0 .. q0+kCols-1 in shared memory: lse_s = lse in
// log2 units, dv_s = Dvec (0 past T). Threads 0 .. kCols-1; the caller places the barriers.
__device__ __forceinline__ void stage_query_stats(float *lse_s, float *dv_s,
                                                  const float *__restrict__ lse_bh,
                                                  const float *__restrict__ dvec_bh, int q0,
                                                  int T) {
  if (threadIdx.x < kCols) {
    const int t = q0 + threadIdx.x;
    lse_s[threadIdx.x] = t < T ? lse_bh[t] * kLog2e : 0.f;
    dv_s[threadIdx.x] = t < T ? dvec_bh[t] : 0.f;
  }
}

// ---- host side ----------------------------------------------------------------------------

constexpr int kMaxDevices = 64;

// Lets `fn` use `bytes` of dynamic shared memory (once per kernel and device).
static void allow_smem(const void *fn, size_t bytes, int device, unsigned char *done,
                       const char *name) {
  if (bytes <= 48 * 1024) return;
  if (device >= 0 && device < kMaxDevices && done[device]) return;
  int optin = 0;
  SD_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  if ((size_t)optin < bytes)
    SD_FATAL("%s needs %zu bytes of shared memory per block but device %d allows %d", name, bytes,
             device, optin);
  SD_CUDA_CHECK(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     (int)bytes));
  if (device >= 0 && device < kMaxDevices) done[device] = 1;
}

}  // namespace

// ---- the tensor-core kernels (attention_tc.cu), for qkv and out stored in bf16 -------------
// Semantics of the ops (ops.h) with bf16 products: S = Q K^T and dP = dO V^T from bf16 q, k, v
// and dO (dout rounded to bf16), P and dS rounded to bf16 before P V, dS K, dS^T Q and P^T dO;
// fp32 accumulation, softmax statistics, lse, Dvec and dqkv. HD <= 128.
// out (B, T, D) bf16, lse (B, NH, T) from qkv (B, T, 3D) bf16.
void sd_cuda_attention_fwd_tc(sd_cuda_state *st, __nv_bfloat16 *out, float *lse,
                              const __nv_bfloat16 *qkv, int B, int T, int NH, int HD);
// dqkv (B, T, 3D) = from dout (B, T, D) fp32, qkv, lse and dvec (B, NH, T) = rowsum(dout * out).
void sd_cuda_attention_bwd_tc(sd_cuda_state *st, float *dqkv, const float *dout,
                              const __nv_bfloat16 *qkv, const float *lse, const float *dvec,
                              int B, int T, int NH, int HD);

#endif
