// Groups of 8 elements moved with 16-byte accesses, shared by the element-wise and row kernels
// of norm_act.cu, tokens_embed.cu and loss_optim.cu. A group is 8 consecutive elements whose
// first is 16-byte aligned: two float4 for fp32 storage, one 16-byte word (8 bf16) for bf16
// storage. Values travel as fp32 in a V8 (an array indexed by constants only, so it stays in
// registers); a bf16 store rounds each value once to nearest even (__float2bfloat16_rn), as
// the CPU's sd_bf16_from_float.
//
// When the vector paths apply: every pointer of the op 16-byte aligned (is_aligned16) and the
// element count (flat ops) or the row length (row ops) a multiple of 8 where it must be; the
// flat ops do the last n % 8 elements one by one. Indices are 32-bit (unsigned) when the
// element count is under 2^31 (fits32); otherwise the kernels run with 64-bit indices.
#ifndef SD_CUDA_VEC8_CUH
#define SD_CUDA_VEC8_CUH

#include "cuda_internal.h"

extern "C" {
#include "error.h"
}

#include <cuda_bf16.h>
#include <stddef.h>
#include <stdint.h>

namespace {

struct V8 {
  float v[8];
};

__device__ __forceinline__ V8 ld8(const float *p) {
  const float4 a = reinterpret_cast<const float4 *>(p)[0];
  const float4 b = reinterpret_cast<const float4 *>(p)[1];
  return V8{{a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w}};
}
__device__ __forceinline__ V8 ld8(const __nv_bfloat16 *p) {
  const uint4 u = *reinterpret_cast<const uint4 *>(p);
  const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&u.x));
  const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&u.y));
  const float2 c = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&u.z));
  const float2 d = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&u.w));
  return V8{{a.x, a.y, b.x, b.y, c.x, c.y, d.x, d.y}};
}
__device__ __forceinline__ void st8(float *p, const V8 &x) {
  reinterpret_cast<float4 *>(p)[0] = make_float4(x.v[0], x.v[1], x.v[2], x.v[3]);
  reinterpret_cast<float4 *>(p)[1] = make_float4(x.v[4], x.v[5], x.v[6], x.v[7]);
}
__device__ __forceinline__ uint32_t bf16x2_bits(float lo, float hi) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);  // .x = lo (lower address)
  return *reinterpret_cast<const uint32_t *>(&h);
}
__device__ __forceinline__ void st8(__nv_bfloat16 *p, const V8 &x) {
  *reinterpret_cast<uint4 *>(p) = make_uint4(bf16x2_bits(x.v[0], x.v[1]),
                                             bf16x2_bits(x.v[2], x.v[3]),
                                             bf16x2_bits(x.v[4], x.v[5]),
                                             bf16x2_bits(x.v[6], x.v[7]));
}

// One element of either storage type, as fp32 (scalar paths).
__device__ __forceinline__ float ld1(const float *p) { return *p; }
__device__ __forceinline__ float ld1(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ void st1(float *p, float v) { *p = v; }
__device__ __forceinline__ void st1(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }

inline bool is_aligned16(const void *p) { return p == nullptr || ((uintptr_t)p & 15u) == 0; }
inline bool fits32(size_t n) { return n < ((size_t)1 << 31); }

// ---- flat ops: n elements, 8 per thread per step -----------------------------------------
// Op: one(i) handles element i (i unsigned or size_t); eight(i) elements i..i+7 (i a multiple
// of 8, every pointer 16-byte aligned). VEC: the groups, then the n % 8 last elements one per
// thread; else one element per thread per step. I: the index type (unsigned when n < 2^31).
template <class Op, bool VEC, typename I>
__global__ void __launch_bounds__(256) flat_kernel(Op op, I n) {
  const I stride = (I)gridDim.x * blockDim.x, t = (I)blockIdx.x * blockDim.x + threadIdx.x;
  if (VEC) {
    const I n8 = n / 8;
    for (I g = t; g < n8; g += stride) op.eight(8 * g);
    const I i = 8 * n8 + t;
    if (i < n) op.one(i);
  } else {
    for (I i = t; i < n; i += stride) op.one(i);
  }
}

// vec: every pointer of op 16-byte aligned. 32-bit indices when n < 2^31, else the 64-bit
// scalar path.
template <class Op>
void launch_flat(cudaStream_t st, const Op &op, size_t n, bool vec, const char *name) {
  if (n == 0) return;
  if (fits32(n) && vec)
    flat_kernel<Op, true, unsigned><<<sd_cuda_blocks((n + 7) / 8, 256), 256, 0, st>>>(
        op, (unsigned)n);
  else if (fits32(n))
    flat_kernel<Op, false, unsigned><<<sd_cuda_blocks(n, 256), 256, 0, st>>>(op, (unsigned)n);
  else
    flat_kernel<Op, false, size_t><<<sd_cuda_blocks(n, 256), 256, 0, st>>>(op, n);
  SD_CUDA_LAUNCHED(name);
}

// ---- row ops: outer x inner rows of len elements -------------------------------------------
// Row (o, i) is row o * inner + i; o and i come from the grid (z and y, grid-stride), so no
// kernel divides an index. Op: group(o, i, c) handles columns c..c+7 (VEC: c a multiple of 8,
// len a multiple of 8, row starts 16-byte aligned), elem(o, i, c) column c. Threads: x over
// the column groups (a multiple of 32, at most 256), y over rows, 256 in all. Offsets inside
// a row are 32-bit; a row's base is computed once per row in 64 bits.
template <class Op, bool VEC>
__global__ void __launch_bounds__(256) rows_kernel(Op op, unsigned outer, unsigned inner,
                                                   unsigned groups) {
  const unsigned c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= groups) return;
  for (unsigned o = blockIdx.z; o < outer; o += gridDim.z)
    for (unsigned i = blockIdx.y * blockDim.y + threadIdx.y; i < inner;
         i += gridDim.y * blockDim.y) {
      if (VEC) op.group(o, i, 8 * c);
      else op.elem(o, i, c);
    }
}

// Sizes of 2^31 or more are a fatal error naming the op (no model comes near them).
template <class Op>
void launch_rows(cudaStream_t st, const Op &op, size_t outer, size_t inner, size_t len,
                 bool vec, const char *name) {
  if (outer == 0 || inner == 0 || len == 0) return;
  if (!fits32(outer) || !fits32(inner) || !fits32(len))
    SD_FATAL("%s: %zu x %zu rows of %zu elements: each must be under 2^31", name, outer, inner,
             len);
  vec = vec && len % 8 == 0;
  const unsigned groups = (unsigned)(vec ? len / 8 : len);
  unsigned tx = (groups + 31) / 32 * 32;
  if (tx > 256) tx = 256;
  const unsigned ty = 256 / tx;
  const size_t gy = (inner + ty - 1) / ty;
  const dim3 grid((groups + tx - 1) / tx, (unsigned)(gy < 65535 ? gy : 65535),
                  (unsigned)(outer < 65535 ? outer : 65535));
  if (vec) rows_kernel<Op, true><<<grid, dim3(tx, ty), 0, st>>>(op, (unsigned)outer,
                                                                (unsigned)inner, groups);
  else rows_kernel<Op, false><<<grid, dim3(tx, ty), 0, st>>>(op, (unsigned)outer,
                                                             (unsigned)inner, groups);
  SD_CUDA_LAUNCHED(name);
}

}  // namespace

#endif
