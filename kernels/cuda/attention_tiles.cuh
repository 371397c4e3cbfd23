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
