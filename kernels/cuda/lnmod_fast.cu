// The layer norm + adaLN modulate of norm_act.cu in one pass over its input, for rows whose
// width D is a multiple of 4 up to 1536 (DiT-S to XL: 384 to 1152) with 16-byte aligned
// buffers; norm_act.cu keeps the general kernels for the rest and calls these when they fit.
//   forward: one warp per row, the row held in registers (lane l holds groups of G columns,
//     G = 8 when D % 8 == 0, else 4): the mean and the variance of the centred values from
//     registers (two warp sums, as layernorm.c), then the modulated output stored with 16-byte
//     stores (G = 8: two float4 for fp32, one 16-byte word of 8 bf16; G = 4: float4 or 8-byte
//     bf16 stores). Bytes per element: read x 4, write out 4 (fp32) or 2 (bf16), + the shift
//     and scale rows (2 x 4 per element of a (B, D) row, read once per token from cache) and
//     mean, rstd (8 per row): one pass, against three reads of x in the general kernel.
//   backward: ONE kernel per (sample, chunk of 32 tokens), 8 warps of 4 rows: per row dx +=
//     rstd (g' - mean g' - xhat mean(g' xhat)), g' = dout (1 + scale) (the row's second read
//     hits L1/L2: one pass over device memory), and in the same pass the column sums of dout
//     and dout * xhat for dshift and dscale, kept in registers per warp and added across the
//     warps in warp order through shared memory: deterministic, no atomics. With one chunk
//     they are added to dshift and dscale directly; with more, the (B, chunks, D) partials are
//     added in chunk order by norm_act.cu's col_finish_kernel, a separate tiny launch kept for
//     determinism (it reads 2 x 4 bytes per 32 tokens of a column: 1/32 of dout's size, and
//     writes dshift, dscale). Bytes per element: read dout 4 and x 4, read + write dx 8 (16
//     without dx: 8), + the scale row (cache), mean and rstd (8 per row), partials 8/32.
#include "cuda_internal.h"

#include <cuda_bf16.h>

#include "vec8.cuh"

namespace {

constexpr int kWarps = 8;        // rows in flight per block (forward), warps per chunk (backward)
constexpr int kChunk = 32;       // tokens per backward block (norm_act.cu's COL_TCHUNK)

__device__ __forceinline__ float wsum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ void store4(float *p, float4 v) { *reinterpret_cast<float4 *>(p) = v; }
__device__ __forceinline__ void store4(__nv_bfloat16 *p, float4 v) {
  __nv_bfloat162 *q = reinterpret_cast<__nv_bfloat162 *>(p);
  q[0] = __floats2bfloat162_rn(v.x, v.y);
  q[1] = __floats2bfloat162_rn(v.z, v.w);
}
__device__ __forceinline__ float4 load4(const float *p) {
  return *reinterpret_cast<const float4 *>(p);
}

// out (rows, D) = LN(x) (1 + scale[b]) + shift[b]; lane l holds the G columns G (l + 32 j)
// onwards, j < NV (G = 8 when D % 8 == 0: a bf16 row is then stored with 16-byte stores,
// else G = 4).
template <typename OutT, int G, int NV>
__global__ void __launch_bounds__(kWarps * 32)
lnmod_fwd_row_kernel(OutT *out, float *mean, float *rstd, const float *x, const float *shift,
                     const float *scale, int mod_stride, int T, unsigned rows, int D, float eps) {
  const unsigned r = blockIdx.x * kWarps + threadIdx.x / 32;
  if (r >= rows) return;
  const int lane = threadIdx.x & 31, DG = D / G;
  const float *xr = x + (size_t)r * D;
  float v[NV][G];
  float s = 0.0f;
#pragma unroll
  for (int j = 0; j < NV; j++) {
    const int c = lane + 32 * j;
#pragma unroll
    for (int q = 0; q < G / 4; q++) {
      const float4 a = c < DG ? load4(xr + G * c + 4 * q) : make_float4(0.f, 0.f, 0.f, 0.f);
      v[j][4 * q] = a.x, v[j][4 * q + 1] = a.y, v[j][4 * q + 2] = a.z, v[j][4 * q + 3] = a.w;
      s += (a.x + a.y) + (a.z + a.w);
    }
  }
  const float m = wsum(s) / (float)D;
  float sq = 0.0f;
#pragma unroll
  for (int j = 0; j < NV; j++) {
    if (lane + 32 * j >= DG) continue;
#pragma unroll
    for (int q = 0; q < G / 4; q++) {
      const float a = v[j][4 * q] - m, b = v[j][4 * q + 1] - m, c = v[j][4 * q + 2] - m,
                  d = v[j][4 * q + 3] - m;
      sq += (a * a + b * b) + (c * c + d * d);
    }
  }
  const float rs = 1.0f / sqrtf(wsum(sq) / (float)D + eps);
  const unsigned bi = r / (unsigned)T;  // once per row
  const float *sh = shift + (size_t)bi * mod_stride, *sc = scale + (size_t)bi * mod_stride;
  OutT *o = out + (size_t)r * D;
#pragma unroll
  for (int j = 0; j < NV; j++) {
    const int c = lane + 32 * j;
    if (c >= DG) continue;
    V8 y;  // (G of its 8 used)
#pragma unroll
    for (int q = 0; q < G / 4; q++) {
      const float4 h = load4(sh + G * c + 4 * q), k = load4(sc + G * c + 4 * q);
      y.v[4 * q] = (v[j][4 * q] - m) * rs * (1.0f + k.x) + h.x;
      y.v[4 * q + 1] = (v[j][4 * q + 1] - m) * rs * (1.0f + k.y) + h.y;
      y.v[4 * q + 2] = (v[j][4 * q + 2] - m) * rs * (1.0f + k.z) + h.z;
      y.v[4 * q + 3] = (v[j][4 * q + 3] - m) * rs * (1.0f + k.w) + h.w;
    }
    if (G == 8) st8(o + G * c, y);
    else store4(o + G * c, make_float4(y.v[0], y.v[1], y.v[2], y.v[3]));
  }
  if (lane == 0) {
    if (mean) mean[r] = m;
    if (rstd) rstd[r] = rs;
  }
}

// One block per (chunk, b): dx of the chunk's rows, and the chunk's column sums.
template <int NV>
__global__ void __launch_bounds__(kWarps * 32)
lnmod_bwd_fused_kernel(float *dx, float *dshift, float *dscale, float *pshift, float *pscale,
                       const float *dout, const float *x, const float *mean, const float *rstd,
                       const float *scale, int mod_stride, int T, int D, int direct) {
  extern __shared__ float red[];  // (2, D): the warps' column sums, added in warp order
  const int w = threadIdx.x / 32, lane = threadIdx.x & 31, D4 = D / 4;
  const int chunk = blockIdx.x, b = blockIdx.y, nchunks = gridDim.x;
  const float *sc = scale + (size_t)b * mod_stride;
  float4 ash[NV], asc[NV];
#pragma unroll
  for (int j = 0; j < NV; j++) ash[j] = asc[j] = make_float4(0.f, 0.f, 0.f, 0.f);
  for (int t = chunk * kChunk + w; t < min(T, (chunk + 1) * kChunk); t += kWarps) {
    const size_t r = (size_t)b * T + t;
    const float *g = dout + r * D, *xr = x + r * D;
    const float m = mean[r], s = rstd[r];
    float sg = 0.0f, sgx = 0.0f;
#pragma unroll
    for (int j = 0; j < NV; j++) {
      const int c = lane + 32 * j;
      if (c >= D4) continue;
      const float4 g4 = load4(g + 4 * c), x4 = load4(xr + 4 * c), k4 = load4(sc + 4 * c);
      const float4 xh = make_float4((x4.x - m) * s, (x4.y - m) * s, (x4.z - m) * s,
                                    (x4.w - m) * s);
      const float4 gp = make_float4(g4.x * (1.0f + k4.x), g4.y * (1.0f + k4.y),
                                    g4.z * (1.0f + k4.z), g4.w * (1.0f + k4.w));
      sg += (gp.x + gp.y) + (gp.z + gp.w);
      sgx += (gp.x * xh.x + gp.y * xh.y) + (gp.z * xh.z + gp.w * xh.w);
      ash[j].x += g4.x, ash[j].y += g4.y, ash[j].z += g4.z, ash[j].w += g4.w;
      asc[j].x += g4.x * xh.x, asc[j].y += g4.y * xh.y, asc[j].z += g4.z * xh.z,
          asc[j].w += g4.w * xh.w;
    }
    sg = wsum(sg) / (float)D;
    sgx = wsum(sgx) / (float)D;
    if (!dx) continue;
    float *o = dx + r * D;
#pragma unroll
    for (int j = 0; j < NV; j++) {  // the row again, from the cache
      const int c = lane + 32 * j;
      if (c >= D4) continue;
      const float4 g4 = load4(g + 4 * c), x4 = load4(xr + 4 * c), k4 = load4(sc + 4 * c);
      float4 d4 = load4(o + 4 * c);
      d4.x += s * (g4.x * (1.0f + k4.x) - sg - (x4.x - m) * s * sgx);
      d4.y += s * (g4.y * (1.0f + k4.y) - sg - (x4.y - m) * s * sgx);
      d4.z += s * (g4.z * (1.0f + k4.z) - sg - (x4.z - m) * s * sgx);
      d4.w += s * (g4.w * (1.0f + k4.w) - sg - (x4.w - m) * s * sgx);
      store4(o + 4 * c, d4);
    }
  }
  if (!dshift && !dscale && !pshift && !pscale) return;  // (uniform across the block)
  for (int k = 0; k < kWarps; k++) {  // warp k adds its sums, in warp order
    if (w == k) {
#pragma unroll
      for (int j = 0; j < NV; j++) {
        const int c = lane + 32 * j;
        if (c >= D4) continue;
        float *a = red + 4 * c, *e = red + D + 4 * c;
        if (k == 0) {
          store4(a, ash[j]);
          store4(e, asc[j]);
        } else {
          const float4 pa = load4(a), pe = load4(e);
          store4(a, make_float4(pa.x + ash[j].x, pa.y + ash[j].y, pa.z + ash[j].z, pa.w + ash[j].w));
          store4(e, make_float4(pe.x + asc[j].x, pe.y + asc[j].y, pe.z + asc[j].z, pe.w + asc[j].w));
        }
      }
    }
    __syncthreads();
  }
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    if (direct) {
      if (dshift) dshift[(size_t)b * mod_stride + d] += red[d];
      if (dscale) dscale[(size_t)b * mod_stride + d] += red[D + d];
    } else {
      const size_t o = ((size_t)b * nchunks + chunk) * D + d;
      if (pshift) pshift[o] = red[d];
      if (pscale) pscale[o] = red[D + d];
    }
  }
}

bool a16(const void *p) { return p == nullptr || ((uintptr_t)p & 15u) == 0; }

// The smallest instantiated NV with 128 NV >= D.
int pick_nv(int D) {
  const int nvs[] = {1, 2, 3, 4, 6, 8, 9, 12};
  for (int nv : nvs)
    if (128 * nv >= D) return nv;
  return 0;
}

template <typename OutT, int G, int NV>
void fwd_nv(cudaStream_t st, OutT *out, float *mean, float *rstd, const float *x,
            const float *shift, const float *scale, int mod_stride, int T, unsigned rows, int D,
            float eps) {
  lnmod_fwd_row_kernel<OutT, G, NV><<<(rows + kWarps - 1) / kWarps, kWarps * 32, 0, st>>>(
      out, mean, rstd, x, shift, scale, mod_stride, T, rows, D, eps);
}

template <int NV>
void bwd_nv(cudaStream_t st, dim3 grid, float *dx, float *dshift, float *dscale, float *pshift,
            float *pscale, const float *dout, const float *x, const float *mean,
            const float *rstd, const float *scale, int mod_stride, int T, int D, int direct) {
  lnmod_bwd_fused_kernel<NV><<<grid, kWarps * 32, 2 * D * sizeof(float), st>>>(
      dx, dshift, dscale, pshift, pscale, dout, x, mean, rstd, scale, mod_stride, T, D, direct);
}

}  // namespace

extern "C" int sd_cuda_lnmod_fast_fits(int D, int mod_stride, const void *a, const void *b,
                                       const void *c, const void *d, const void *e) {
  return D % 4 == 0 && pick_nv(D) > 0 && mod_stride % 4 == 0 && a16(a) && a16(b) && a16(c) &&
         a16(d) && a16(e);
}

// Groups of 8 columns per lane when D % 8 == 0 (NV = ceil(D / 256) <= 6), else of 4 (pick_nv).
template <typename OutT>
static void fwd_any(cudaStream_t st, OutT *out, float *mean, float *rstd, const float *x,
                    const float *shift, const float *scale, int mod_stride, int T,
                    unsigned rows, int D, float eps) {
  if (D % 8 == 0) {
    switch ((D + 255) / 256) {
      case 1: fwd_nv<OutT, 8, 1>(st, out, mean, rstd, x, shift, scale, mod_stride, T, rows, D, eps); break;
      case 2: fwd_nv<OutT, 8, 2>(st, out, mean, rstd, x, shift, scale, mod_stride, T, rows, D, eps); break;
      case 3: fwd_nv<OutT, 8, 3>(st, out, mean, rstd, x, shift, scale, mod_stride, T, rows, D, eps); break;
      case 4: fwd_nv<OutT, 8, 4>(st, out, mean, rstd, x, shift, scale, mod_stride, T, rows, D, eps); break;
      case 5: fwd_nv<OutT, 8, 5>(st, out, mean, rstd, x, shift, scale, mod_stride, T, rows, D, eps); break;
      default: fwd_nv<OutT, 8, 6>(st, out, mean, rstd, x, shift, scale, mod_stride, T, rows, D, eps); break;
    }
    SD_CUDA_LAUNCHED("lnmod_fwd_row_kernel");
    return;
  }
  switch (pick_nv(D)) {
    case 1: fwd_nv<OutT, 4, 1>(st, out, mean, rstd, x, shift, scale, mod_stride, T, rows, D, eps); break;
    case 2: fwd_nv<OutT, 4, 2>(st, out, mean, rstd, x, shift, scale, mod_stride, T, rows, D, eps); break;
    case 3: fwd_nv<OutT, 4, 3>(st, out, mean, rstd, x, shift, scale, mod_stride, T, rows, D, eps); break;
    case 4: fwd_nv<OutT, 4, 4>(st, out, mean, rstd, x, shift, scale, mod_stride, T, rows, D, eps); break;
    case 6: fwd_nv<OutT, 4, 6>(st, out, mean, rstd, x, shift, scale, mod_stride, T, rows, D, eps); break;
    case 8: fwd_nv<OutT, 4, 8>(st, out, mean, rstd, x, shift, scale, mod_stride, T, rows, D, eps); break;
    case 9: fwd_nv<OutT, 4, 9>(st, out, mean, rstd, x, shift, scale, mod_stride, T, rows, D, eps); break;
    default: fwd_nv<OutT, 4, 12>(st, out, mean, rstd, x, shift, scale, mod_stride, T, rows, D, eps); break;
  }
  SD_CUDA_LAUNCHED("lnmod_fwd_row_kernel");
}

extern "C" void sd_cuda_lnmod_fwd_fast(sd_backend *be, void *out, int out_bf16, float *mean,
                                       float *rstd, const float *x, const float *shift,
                                       const float *scale, int mod_stride, int T, unsigned rows,
                                       int D, float eps) {
  cudaStream_t st = sd_cuda_st(be)->stream;
  if (out_bf16)
    fwd_any(st, (__nv_bfloat16 *)out, mean, rstd, x, shift, scale, mod_stride, T, rows, D, eps);
  else
    fwd_any(st, (float *)out, mean, rstd, x, shift, scale, mod_stride, T, rows, D, eps);
}

extern "C" void sd_cuda_lnmod_bwd_fast(sd_backend *be, float *dx, float *dshift, float *dscale,
                                       float *pshift, float *pscale, int nchunks,
                                       const float *dout, const float *x, const float *mean,
                                       const float *rstd, const float *scale, int mod_stride,
                                       int B, int T, int D) {
  cudaStream_t st = sd_cuda_st(be)->stream;
  const int direct = nchunks == 1;
  const dim3 grid((unsigned)nchunks, (unsigned)B);
  void (*f)(cudaStream_t, dim3, float *, float *, float *, float *, float *, const float *,
            const float *, const float *, const float *, const float *, int, int, int, int);
  switch (pick_nv(D)) {
    case 1: f = bwd_nv<1>; break;
    case 2: f = bwd_nv<2>; break;
    case 3: f = bwd_nv<3>; break;
    case 4: f = bwd_nv<4>; break;
    case 6: f = bwd_nv<6>; break;
    case 8: f = bwd_nv<8>; break;
    case 9: f = bwd_nv<9>; break;
    default: f = bwd_nv<12>; break;
  }
  f(st, grid, dx, dshift, dscale, pshift, pscale, dout, x, mean, rstd, scale, mod_stride, T, D,
    direct);
  SD_CUDA_LAUNCHED("lnmod_bwd_fused_kernel");
}
