// CUDA multi-head attention (non-causal), forward and backward: fused, flash-style kernels
// that never store the T x T score matrix. Semantics are exactly those of
// kernels/cpu/attention.c (see ops.h):
//   qkv (B, T, 3*D), D = NH*HD, feature index which*D + h*HD + d (which 0 = q, 1 = k, 2 = v);
//   S = scale * q k^T with scale = 1/sqrt(HD);  P = softmax_rows(S);  out (B, T, D) = P v;
//   lse (B, NH, T) = log(sum_j exp(S_ij)) (natural log, in the scaled-score space);
//   backward: dqkv (B, T, 3*D) is overwritten (all three parts).
// Storage: qkv and out may be stored in bf16 (the sd_dtype t of the op, see ops.h); the kernels
// are templated on that element type E (float or __nv_bfloat16). Everything else is fp32: lse,
// dout, dqkv, the softmax statistics, the accumulators and the shared-memory tiles (tiles are
// widened to fp32 as they are loaded, so the arithmetic is the same for both types); the
// forward rounds each out element once (__float2bfloat16_rn) when E is bf16. The products here
// are plain fp32 FMAs (tile_dot and tile_pv below); with bf16 storage the same algorithm runs
// by default with its products on bf16 tensor cores (attention_tc.cu; the choice and its
// safety check are at sd_cuda_attention_fwd below). Every kernel runs on the backend stream.
// Nothing uses atomics, so two runs on the same inputs are bitwise equal.
//
// Tiling (all kernels): a block of 256 threads viewed as 16 x 16, tx = tid & 15,
// ty = tid >> 4 (so a warp is two rows ty = 2w, 2w+1 of 16 lanes each). A block owns a
// "row tile" of kRows = 64 tokens and streams "column tiles" of kCols = 32 tokens through
// shared memory. For a (64 x 32) score-like tile each thread computes a 4 x 2 micro-tile:
//   rows  r = ty*4 + i  (i < 4),        columns c = tx + 16*j  (j < 2).
// The 16 threads that share a row are one half-warp, so row reductions (softmax max/sum) are
// xor-shuffles over offsets 8, 4, 2, 1. For a (64 x HD) accumulator (out, dK, dV, dQ) each
// thread owns the same 4 rows and the head-dim columns d = tx + 16*jd (jd < NDC), where
// HDP = 16*NDC >= HD is the padded head dimension, a template parameter:
//   HD <= 16: 16, <= 32: 32, <= 64: 64, <= 80: 80 (DiT-XL's 72), <= 96: 96, <= 128: 128.
// HD > 128 is refused with a fatal error.
//
// Shared-memory tiles are fp32 (whatever E is) with a row stride LDH = HDP + 4 floats (16-byte
// aligned rows; (LDH/4) odd, so the 8 threads of a 128-bit load phase that read 8 different
// rows hit 8 different bank groups) and score tiles with a row stride kLdc = kCols + 4 = 36.
// Global loads of head-dim rows take 4 elements at a time when HD % 4 == 0 and the base
// pointer is aligned to 4 elements (16-byte float4 loads for fp32, 8-byte loads of 4 bf16 for
// bf16), else one element at a time.
// Bytes per block (LDH = HDP + 4; see the Cfg struct), KiB at HD 72 (HDP 80) / HD 128:
//   forward  Q[64] + K[32] + V[32] rows of LDH, P[64][36]                  51.0 / 75.0
//   dK/dV    K[64] + V[64] + Q[32] + dO[32] rows, Pt, dSt [64][36], 2x32    81.2 / 117.2
//   dQ       Q[64] + dO[64] + K[32] + V[32] rows, dS[64][36]               72.0 / 108.0
// All of it is dynamic shared memory; above 48 KB the launcher raises the kernel's limit with
// cudaFuncSetAttribute (and stops with a clear message when the device cannot give as much).
// Registers: __launch_bounds__(256, 2) (<= 128 per thread) for HDP <= 80, (256, 1) above;
// ptxas (CUDA 13.0, sm_90) reports no spills and no stack frame for any instantiation
// (HD 72, fp32 and bf16 storage alike: fwd 116, dK/dV 128, dQ 128 registers, so 2 blocks =
// 16 warps per SM).
// Every tile load writes every element of the tile: rows past T and columns past HD are zero,
// so the dot products may run over the zero-padded head dimension, and masked scores only need
// the explicit -inf / 0 in the softmax.
#include "attention_tiles.cuh"
#include "cuda_internal.h"

extern "C" {
#include "bf16.h"
#include "error.h"
}

#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <vector>

namespace {

template <int NDC>
struct Cfg {
  static constexpr int HDP = 16 * NDC;  // padded head dim
  static constexpr int LDH = HDP + 4;   // row stride of head-dim tiles (floats)
  static_assert((LDH / 4) % 2 == 1, "LDH/4 must be odd (bank groups)");
  static constexpr size_t fwd_bytes =
      sizeof(float) * ((size_t)(kRows + 2 * kCols) * LDH + (size_t)kRows * kLdc);
  static constexpr size_t dkdv_bytes =
      sizeof(float) * ((size_t)(2 * kRows + 2 * kCols) * LDH + 2 * (size_t)kRows * kLdc +
                       2 * (size_t)kCols);
  static constexpr size_t dq_bytes =
      sizeof(float) * ((size_t)(2 * kRows + 2 * kCols) * LDH + (size_t)kRows * kLdc);
};

// ---- device helpers -----------------------------------------------------------------------

// Copies the ROWS token rows t0 .. t0+ROWS-1 of one head slice into dst[ROWS][HDP+4] (fp32).
// Token t of the slice starts at src + t*ld; src holds elements of type E (float or
// __nv_bfloat16), widened to fp32. Writes every element d < HDP of every row: the value for
// t < T and d < HD, zero otherwise. vec: HD % 4 == 0 and src aligned to 4 elements (16 bytes
// for float, 8 for bf16); ld and the head offsets are then multiples of 4 elements, so every
// row is aligned too and ldg4 is legal. Called by all threads of the block; the caller places
// the __syncthreads around it.
template <int ROWS, int HDP, typename E>
__device__ __forceinline__ void load_tile(float *__restrict__ dst, const E *__restrict__ src,
                                          size_t ld, int t0, int T, int HD, bool vec) {
  constexpr int LDH = HDP + 4;
  if (vec) {
    constexpr int NV = HDP / 4;  // 4-element groups per row
    for (int e = threadIdx.x; e < ROWS * NV; e += kThreads) {
      const int r = e / NV, d = (e - r * NV) * 4, t = t0 + r;
      float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
      if (t < T && d < HD) x = ldg4(src + (size_t)t * ld + d);
      *reinterpret_cast<float4 *>(dst + r * LDH + d) = x;
    }
  } else {
    for (int e = threadIdx.x; e < ROWS * HDP; e += kThreads) {
      const int r = e / HDP, d = e - r * HDP, t = t0 + r;
      dst[r * LDH + d] = (t < T && d < HD) ? ldg1(src + (size_t)t * ld + d) : 0.f;
    }
  }
}

// acc[i][j] += sum_{d < hd4} X[r_i][d] * Y[c_j][d],  r_i = ty*4 + i, c_j = tx + 16*j, both
// tiles with row stride LDH. hd4 = HD rounded up to 4 (the padding columns are zero).
template <int LDH>
__device__ __forceinline__ void tile_dot(float (&acc)[kRM][kCN], const float *__restrict__ X,
                                         const float *__restrict__ Y, int ty, int tx, int hd4) {
#pragma unroll 2
  for (int d = 0; d < hd4; d += 4) {
    float4 a[kRM], b[kCN];
#pragma unroll
    for (int i = 0; i < kRM; i++)
      a[i] = *reinterpret_cast<const float4 *>(X + (ty * kRM + i) * LDH + d);
#pragma unroll
    for (int j = 0; j < kCN; j++)
      b[j] = *reinterpret_cast<const float4 *>(Y + (tx + 16 * j) * LDH + d);
#pragma unroll
    for (int i = 0; i < kRM; i++)
#pragma unroll
      for (int j = 0; j < kCN; j++) {
        float s = acc[i][j];
        s = fmaf(a[i].x, b[j].x, s);
        s = fmaf(a[i].y, b[j].y, s);
        s = fmaf(a[i].z, b[j].z, s);
        s = fmaf(a[i].w, b[j].w, s);
        acc[i][j] = s;
      }
  }
}

// acc[i][jd] += sum_{c < kCols} A[r_i][c] * Bm[c][d_jd],  r_i = ty*4 + i, d_jd = tx + 16*jd;
// A is a score tile (row stride kLdc), Bm a head-dim tile (row stride LDH).
template <int NDC, int LDH>
__device__ __forceinline__ void tile_pv(float (&acc)[kRM][NDC], const float *__restrict__ A,
                                        const float *__restrict__ Bm, int ty, int tx) {
#pragma unroll
  for (int c = 0; c < kCols; c += 4) {
    float a[kRM][4];
#pragma unroll
    for (int i = 0; i < kRM; i++) {
      const float4 t = *reinterpret_cast<const float4 *>(A + (ty * kRM + i) * kLdc + c);
      a[i][0] = t.x;
      a[i][1] = t.y;
      a[i][2] = t.z;
      a[i][3] = t.w;
    }
#pragma unroll
    for (int cc = 0; cc < 4; cc++) {
      float bv[NDC];
#pragma unroll
      for (int jd = 0; jd < NDC; jd++) bv[jd] = Bm[(c + cc) * LDH + tx + 16 * jd];
#pragma unroll
      for (int i = 0; i < kRM; i++)
#pragma unroll
        for (int jd = 0; jd < NDC; jd++) acc[i][jd] = fmaf(a[i][cc], bv[jd], acc[i][jd]);
    }
  }
}

// ---- forward -----------------------------------------------------------------------------
// Grid (ceil(T/64), NH, B): block (x, h, b) owns queries q0 = 64x .. q0+63 of head h, batch b.
// Q stays in shared memory; key/value tiles of 32 tokens stream through. Per key tile:
//   S (64 x 32) = Q K^T, in log2 units (times scale*log2(e)); keys >= T get -inf;
//   online softmax per row: m' = max(m, rowmax S), alpha = 2^(m - m'), P = 2^(S - m'),
//   l = alpha*l + rowsum P, o = alpha*o + P V.
// At the end out = o / l and lse = (m + log2 l) * ln 2 (natural log of the scaled scores).
// Barriers per key tile: (a) before overwriting K/V/P (the previous tile's P V must be done),
// (b) after the K/V loads, (c) after P is written, before P V reads it.
// qkv and out are stored as E (float or __nv_bfloat16); vec: see load_tile.
template <int NDC, typename E>
__global__ void __launch_bounds__(kThreads, (NDC <= 5 ? 2 : 1))
    attn_fwd_kernel(E *__restrict__ out, float *__restrict__ lse, const E *__restrict__ qkv,
                    int T, int NH, int HD, float scale_log2, int vec) {
  using C = Cfg<NDC>;
  constexpr int LDH = C::LDH;
  extern __shared__ float4 smem4[];
  float *Qs = reinterpret_cast<float *>(smem4);  // [kRows][LDH]
  float *Ks = Qs + kRows * LDH;                   // [kCols][LDH]
  float *Vs = Ks + kCols * LDH;                   // [kCols][LDH]
  float *Ps = Vs + kCols * LDH;                   // [kRows][kLdc]

  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const int q0 = blockIdx.x * kRows;
  const HeadSlice<E> hs = head_slice(qkv, (const float *)nullptr, lse, (const float *)nullptr,
                                     T, NH, HD);
  const int D = hs.D, hd4 = (HD + 3) & ~3;
  const size_t ld = hs.ld;
  const E *qg = hs.q, *kg = hs.k, *vg = hs.v;

  load_tile<kRows, C::HDP>(Qs, qg, ld, q0, T, HD, vec != 0);

  float m[kRM], l[kRM], o[kRM][NDC];
#pragma unroll
  for (int i = 0; i < kRM; i++) {
    m[i] = -INFINITY;
    l[i] = 0.f;
#pragma unroll
    for (int jd = 0; jd < NDC; jd++) o[i][jd] = 0.f;
  }

  for (int k0 = 0; k0 < T; k0 += kCols) {
    __syncthreads();  // (a)
    load_tile<kCols, C::HDP>(Ks, kg, ld, k0, T, HD, vec != 0);
    load_tile<kCols, C::HDP>(Vs, vg, ld, k0, T, HD, vec != 0);
    __syncthreads();  // (b) (the first time also publishes Q)

    float s[kRM][kCN];
#pragma unroll
    for (int i = 0; i < kRM; i++)
#pragma unroll
      for (int j = 0; j < kCN; j++) s[i][j] = 0.f;
    tile_dot<LDH>(s, Qs, Ks, ty, tx, hd4);

#pragma unroll
    for (int i = 0; i < kRM; i++) {
      float mx = -INFINITY;
#pragma unroll
      for (int j = 0; j < kCN; j++) {
        s[i][j] = (k0 + tx + 16 * j < T) ? s[i][j] * scale_log2 : -INFINITY;
        mx = fmaxf(mx, s[i][j]);
      }
      // Column k0 < T is valid in every tile, so the row max (and m_new) is finite.
      const float m_new = fmaxf(m[i], half_warp_max(mx));
      const float alpha = exp2f(m[i] - m_new);  // first tile: 2^-inf = 0
      float rs = 0.f;
#pragma unroll
      for (int j = 0; j < kCN; j++) {
        s[i][j] = exp2f(s[i][j] - m_new);  // masked: 2^-inf = 0
        rs += s[i][j];
      }
      l[i] = l[i] * alpha + half_warp_sum(rs);
      m[i] = m_new;
#pragma unroll
      for (int jd = 0; jd < NDC; jd++) o[i][jd] *= alpha;
#pragma unroll
      for (int j = 0; j < kCN; j++) Ps[(ty * kRM + i) * kLdc + tx + 16 * j] = s[i][j];
    }
    __syncthreads();  // (c)
    tile_pv<NDC, LDH>(o, Ps, Vs, ty, tx);
  }

  E *og = out + (size_t)blockIdx.z * T * D + (size_t)blockIdx.y * HD;  // (b, h) of out
  float *lg = lse + ((size_t)blockIdx.z * NH + blockIdx.y) * T;
#pragma unroll
  for (int i = 0; i < kRM; i++) {
    const int t = q0 + ty * kRM + i;
    if (t >= T) continue;
    const float inv_l = 1.0f / l[i];  // l >= 1: the max element contributes 2^0
#pragma unroll
    for (int jd = 0; jd < NDC; jd++) {
      const int d = tx + 16 * jd;
      if (d < HD) store_f(og + (size_t)t * D + d, o[i][jd] * inv_l);
    }
    if (tx == 0) lg[t] = (m[i] + log2f(l[i])) * kLn2;
  }
}

// ---- backward ----------------------------------------------------------------------------
// Dvec (B, NH, T) = rowsum(dout * out) per (b, h, t). One warp per (b, t, h) row, grid-stride;
// row index (b*T + t)*NH + h, whose HD features start at row*HD in out and dout (D = NH*HD).
// Lane-strided partial sums, then a fixed xor-butterfly: deterministic. out is stored as E.
template <typename E>
__global__ void __launch_bounds__(256)
    attn_bwd_dvec_kernel(float *__restrict__ dvec, const float *__restrict__ dout,
                         const E *__restrict__ out, int T, int NH, int HD, size_t nrows) {
  const int lane = threadIdx.x & 31;
  const size_t warps = ((size_t)gridDim.x * blockDim.x) >> 5;
  for (size_t row = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; row < nrows;
       row += warps) {
    const float *a = dout + row * HD;
    const E *o = out + row * HD;
    float s = 0.f;
    for (int d = lane; d < HD; d += 32) s = fmaf(__ldg(a + d), ldg1(o + d), s);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0) {
      const size_t h = row % NH, bt = row / NH, t = bt % T, b = bt / T;
      dvec[(b * NH + h) * T + t] = s;
    }
  }
}

// dK, dV. Grid (ceil(T/64), NH, B): block (x, h, b) owns keys k0 = 64x .. k0+63; K and V of
// those keys stay in shared memory and the dK, dV accumulators in registers (thread: keys
// ty*4+i, head-dim columns tx+16*jd). Query tiles of 32 stream through:
//   St (64 keys x 32 queries) = K Q^T;  Pt = 2^(St*scale*log2e - lse*log2e)  (0 when the key
//   or the query is past T);  dPt = V dO^T;  dSt = Pt * (dPt - Dvec[query]);
//   dV += Pt dO;  dK += dSt Q;  at the end dK *= scale.
// Barriers per query tile: (a) before overwriting Q/dO/Pt/dSt/lse/Dvec (the previous tile's
// products must be done), (b) after the loads, (c) after Pt/dSt are written.
// qkv is stored as E; vec_qkv, vec_dout: see load_tile (for qkv as E, dout as float).
template <int NDC, typename E>
__global__ void __launch_bounds__(kThreads, (NDC <= 5 ? 2 : 1))
    attn_bwd_dkdv_kernel(float *__restrict__ dqkv, const float *__restrict__ dout,
                         const E *__restrict__ qkv, const float *__restrict__ lse,
                         const float *__restrict__ dvec, int T, int NH, int HD, float scale,
                         float scale_log2, int vec_qkv, int vec_dout) {
  using C = Cfg<NDC>;
  constexpr int LDH = C::LDH;
  extern __shared__ float4 smem4[];
  float *Ks = reinterpret_cast<float *>(smem4);  // [kRows][LDH]
  float *Vs = Ks + kRows * LDH;                   // [kRows][LDH]
  float *Qs = Vs + kRows * LDH;                   // [kCols][LDH]
  float *dOs = Qs + kCols * LDH;                  // [kCols][LDH]
  float *Pts = dOs + kCols * LDH;                 // [kRows][kLdc]
  float *dSts = Pts + kRows * kLdc;               // [kRows][kLdc]
  float *lse_s = dSts + kRows * kLdc;             // [kCols], lse * log2(e)
  float *dv_s = lse_s + kCols;                    // [kCols], Dvec

  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const int k0 = blockIdx.x * kRows;
  const HeadSlice<E> hs = head_slice(qkv, dout, lse, dvec, T, NH, HD);
  const int D = hs.D, hd4 = (HD + 3) & ~3;
  const size_t ld = hs.ld;
  const E *qg = hs.q, *kg = hs.k, *vg = hs.v;
  const float *dog = hs.dout, *lse_bh = hs.lse, *dvec_bh = hs.dvec;

  load_tile<kRows, C::HDP>(Ks, kg, ld, k0, T, HD, vec_qkv != 0);
  load_tile<kRows, C::HDP>(Vs, vg, ld, k0, T, HD, vec_qkv != 0);

  float dk[kRM][NDC], dv[kRM][NDC];
  zero_acc<NDC>(dk);
  zero_acc<NDC>(dv);

  for (int q0 = 0; q0 < T; q0 += kCols) {
    __syncthreads();  // (a)
    load_tile<kCols, C::HDP>(Qs, qg, ld, q0, T, HD, vec_qkv != 0);
    load_tile<kCols, C::HDP>(dOs, dog, (size_t)D, q0, T, HD, vec_dout != 0);
    stage_query_stats(lse_s, dv_s, lse_bh, dvec_bh, q0, T);
    __syncthreads();  // (b) (the first time also publishes K and V)

    float st[kRM][kCN], dpt[kRM][kCN];
#pragma unroll
    for (int i = 0; i < kRM; i++)
#pragma unroll
      for (int j = 0; j < kCN; j++) st[i][j] = dpt[i][j] = 0.f;
    tile_dot<LDH>(st, Ks, Qs, ty, tx, hd4);
    tile_dot<LDH>(dpt, Vs, dOs, ty, tx, hd4);

#pragma unroll
    for (int i = 0; i < kRM; i++) {
      const bool key_ok = k0 + ty * kRM + i < T;
#pragma unroll
      for (int j = 0; j < kCN; j++) {
        const int c = tx + 16 * j;
        const float p =
            (key_ok && q0 + c < T) ? exp2f(st[i][j] * scale_log2 - lse_s[c]) : 0.f;
        Pts[(ty * kRM + i) * kLdc + c] = p;
        dSts[(ty * kRM + i) * kLdc + c] = p * (dpt[i][j] - dv_s[c]);
      }
    }
    __syncthreads();  // (c)
    tile_pv<NDC, LDH>(dv, Pts, dOs, ty, tx);
    tile_pv<NDC, LDH>(dk, dSts, Qs, ty, tx);
  }

  float *dkg = dqkv + (hs.k - qkv);  // this (b, h)'s dK; dV is D further
  store_hd_rows<NDC>(dkg, ld, dk, scale, k0, T, HD, ty, tx);
  store_hd_rows<NDC>(dkg + D, ld, dv, 1.0f, k0, T, HD, ty, tx);
}

// dQ. Grid (ceil(T/64), NH, B): block (x, h, b) owns queries q0 = 64x .. q0+63; Q and dO of
// those queries stay in shared memory, their lse and Dvec in registers, the dQ accumulator in
// registers (thread: queries ty*4+i, head-dim columns tx+16*jd). Key tiles of 32 stream
// through:
//   S (64 x 32) = Q K^T;  P = 2^(S*scale*log2e - lse*log2e) (0 past T);  dP = dO V^T;
//   dS = P * (dP - Dvec);  dQ += dS K;  at the end dQ *= scale.
// Barriers per key tile: (a) before overwriting K/V/dS, (b) after the loads, (c) after dS.
// qkv is stored as E; vec_qkv, vec_dout as in attn_bwd_dkdv_kernel.
template <int NDC, typename E>
__global__ void __launch_bounds__(kThreads, (NDC <= 5 ? 2 : 1))
    attn_bwd_dq_kernel(float *__restrict__ dqkv, const float *__restrict__ dout,
                       const E *__restrict__ qkv, const float *__restrict__ lse,
                       const float *__restrict__ dvec, int T, int NH, int HD, float scale,
                       float scale_log2, int vec_qkv, int vec_dout) {
  using C = Cfg<NDC>;
  constexpr int LDH = C::LDH;
  extern __shared__ float4 smem4[];
  float *Qs = reinterpret_cast<float *>(smem4);  // [kRows][LDH]
  float *dOs = Qs + kRows * LDH;                  // [kRows][LDH]
  float *Ks = dOs + kRows * LDH;                  // [kCols][LDH]
  float *Vs = Ks + kCols * LDH;                   // [kCols][LDH]
  float *dSs = Vs + kCols * LDH;                  // [kRows][kLdc]

  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const int q0 = blockIdx.x * kRows;
  const HeadSlice<E> hs = head_slice(qkv, dout, lse, dvec, T, NH, HD);
  const int D = hs.D, hd4 = (HD + 3) & ~3;
  const size_t ld = hs.ld;
  const E *qg = hs.q, *kg = hs.k, *vg = hs.v;
  const float *dog = hs.dout, *lse_bh = hs.lse, *dvec_bh = hs.dvec;

  load_tile<kRows, C::HDP>(Qs, qg, ld, q0, T, HD, vec_qkv != 0);
  load_tile<kRows, C::HDP>(dOs, dog, (size_t)D, q0, T, HD, vec_dout != 0);

  float lse2[kRM], dvr[kRM], dq[kRM][NDC];
  load_row_stats(lse2, dvr, lse_bh, dvec_bh, q0 + ty * kRM, T);
  zero_acc<NDC>(dq);

  for (int k0 = 0; k0 < T; k0 += kCols) {
    __syncthreads();  // (a)
    load_tile<kCols, C::HDP>(Ks, kg, ld, k0, T, HD, vec_qkv != 0);
    load_tile<kCols, C::HDP>(Vs, vg, ld, k0, T, HD, vec_qkv != 0);
    __syncthreads();  // (b) (the first time also publishes Q and dO)

    float s[kRM][kCN], dp[kRM][kCN];
#pragma unroll
    for (int i = 0; i < kRM; i++)
#pragma unroll
      for (int j = 0; j < kCN; j++) s[i][j] = dp[i][j] = 0.f;
    tile_dot<LDH>(s, Qs, Ks, ty, tx, hd4);
    tile_dot<LDH>(dp, dOs, Vs, ty, tx, hd4);

#pragma unroll
    for (int i = 0; i < kRM; i++) {
      const bool query_ok = q0 + ty * kRM + i < T;
#pragma unroll
      for (int j = 0; j < kCN; j++) {
        const int c = tx + 16 * j;
        const float p = (query_ok && k0 + c < T) ? exp2f(s[i][j] * scale_log2 - lse2[i]) : 0.f;
        dSs[(ty * kRM + i) * kLdc + c] = p * (dp[i][j] - dvr[i]);
      }
    }
    __syncthreads();  // (c)
    tile_pv<NDC, LDH>(dq, dSs, Ks, ty, tx);
  }

  store_hd_rows<NDC>(dqkv + (hs.q - qkv), ld, dq, scale, q0, T, HD, ty, tx);
}

// ---- host side ---------------------------------------------------------------------------

static void check_shape(const char *op, int B, int T, int NH, int HD) {
  if (B < 0 || T < 0 || NH < 0 || HD < 0)
    SD_FATAL("%s: negative size (B %d, T %d, NH %d, HD %d)", op, B, T, NH, HD);
  if (HD > kMaxHD)
    SD_FATAL_HINT("use more attention heads: the head dimension D / NH must be <= 128",
                  "%s: head dimension %d is larger than the CUDA kernels support (%d)", op, HD,
                  kMaxHD);
  if (NH > 65535 || B > 65535)
    SD_FATAL("%s: NH %d or B %d exceeds the grid limit 65535", op, NH, B);
  if ((long long)NH * HD > (1LL << 30)) SD_FATAL("%s: NH*HD too large", op);
}

// Whether p is aligned to `bytes` (a power of two).
static bool aligned(const void *p, size_t bytes) { return ((uintptr_t)p & (bytes - 1)) == 0; }

// Whether load_tile may take 4 elements of type E at a time from the rows of base: HD % 4 == 0
// and base aligned to 4 elements (16 bytes for float, 8 for bf16).
template <typename E>
static int vec_ok(const E *base, int HD) {
  return (HD % 4 == 0) && aligned(base, 4 * sizeof(E));
}

// NDC = ceil(HD/16), rounded up to one of the instantiated values.
static int ndc_for(int HD) {
  if (HD <= 16) return 1;
  if (HD <= 32) return 2;
  if (HD <= 64) return 4;
  if (HD <= 80) return 5;
  if (HD <= 96) return 6;
  return 8;
}

// A storage type the kernels are instantiated for, or a fatal error naming the op.
static void check_dtype(const char *op, sd_dtype t) {
  if (t != SD_F32 && t != SD_BF16) SD_FATAL("%s: unknown storage type %d", op, (int)t);
}

template <int NDC, typename E>
static void launch_fwd(sd_cuda_state *st, E *out, float *lse, const E *qkv, int B, int T,
                       int NH, int HD, float scale_log2, int vec) {
  static unsigned char done[kMaxDevices];  // one per instantiation, as the attribute
  const size_t bytes = Cfg<NDC>::fwd_bytes;
  allow_smem((const void *)attn_fwd_kernel<NDC, E>, bytes, st->device, done, "attention_fwd");
  dim3 grid((unsigned)((T + kRows - 1) / kRows), (unsigned)NH, (unsigned)B);
  attn_fwd_kernel<NDC, E><<<grid, kThreads, bytes, st->stream>>>(out, lse, qkv, T, NH, HD,
                                                                 scale_log2, vec);
  SD_CUDA_LAUNCHED("attn_fwd_kernel");
}

template <int NDC, typename E>
static void launch_bwd(sd_cuda_state *st, float *dqkv, const float *dout, const E *qkv,
                       const float *lse, const float *dvec, int B, int T, int NH, int HD,
                       float scale, float scale_log2, int vec_qkv, int vec_dout) {
  static unsigned char done_kv[kMaxDevices], done_q[kMaxDevices];
  dim3 grid((unsigned)((T + kRows - 1) / kRows), (unsigned)NH, (unsigned)B);
  const size_t bytes_kv = Cfg<NDC>::dkdv_bytes, bytes_q = Cfg<NDC>::dq_bytes;
  allow_smem((const void *)attn_bwd_dkdv_kernel<NDC, E>, bytes_kv, st->device, done_kv,
             "attention_bwd (dK/dV)");
  allow_smem((const void *)attn_bwd_dq_kernel<NDC, E>, bytes_q, st->device, done_q,
             "attention_bwd (dQ)");
  attn_bwd_dkdv_kernel<NDC, E><<<grid, kThreads, bytes_kv, st->stream>>>(
      dqkv, dout, qkv, lse, dvec, T, NH, HD, scale, scale_log2, vec_qkv, vec_dout);
  SD_CUDA_LAUNCHED("attn_bwd_dkdv_kernel");
  attn_bwd_dq_kernel<NDC, E><<<grid, kThreads, bytes_q, st->stream>>>(
      dqkv, dout, qkv, lse, dvec, T, NH, HD, scale, scale_log2, vec_qkv, vec_dout);
  SD_CUDA_LAUNCHED("attn_bwd_dq_kernel");
}

// The forward for element type E: picks the padded head dimension.
template <typename E>
static void attention_fwd_t(sd_cuda_state *st, E *out, float *lse, const E *qkv, int B, int T,
                            int NH, int HD) {
  const float scale = 1.0f / sqrtf((float)HD);  // as the CPU op
  const float scale_log2 = scale * kLog2e;
  const int vec = vec_ok(qkv, HD);
  switch (ndc_for(HD)) {
    case 1: launch_fwd<1>(st, out, lse, qkv, B, T, NH, HD, scale_log2, vec); break;
    case 2: launch_fwd<2>(st, out, lse, qkv, B, T, NH, HD, scale_log2, vec); break;
    case 4: launch_fwd<4>(st, out, lse, qkv, B, T, NH, HD, scale_log2, vec); break;
    case 5: launch_fwd<5>(st, out, lse, qkv, B, T, NH, HD, scale_log2, vec); break;
    case 6: launch_fwd<6>(st, out, lse, qkv, B, T, NH, HD, scale_log2, vec); break;
    default: launch_fwd<8>(st, out, lse, qkv, B, T, NH, HD, scale_log2, vec); break;
  }
}

// The backward for element type E (qkv and out): Dvec, then dK/dV and dQ.
// The tensor-core backward exists for bf16 qkv only.
static void bwd_on_tc(sd_cuda_state *st, float *dqkv, const float *dout,
                      const __nv_bfloat16 *qkv, const float *lse, const float *dvec, int B,
                      int T, int NH, int HD) {
  sd_cuda_attention_bwd_tc(st, dqkv, dout, qkv, lse, dvec, B, T, NH, HD);
}
static void bwd_on_tc(sd_cuda_state *, float *, const float *, const float *, const float *,
                      const float *, int, int, int, int) {
  SD_FATAL("attention_bwd: the tensor-core kernels need bf16 qkv");
}

// tc: the dK/dV and dQ kernels of attention_tc.cu (E = bf16) instead of this file's.
template <typename E>
static void attention_bwd_t(sd_backend *be, float *dqkv, const float *dout, const E *qkv,
                            const E *out, const float *lse, int B, int T, int NH, int HD,
                            bool tc) {
  sd_cuda_state *st = sd_cuda_st(be);
  const float scale = 1.0f / sqrtf((float)HD);
  const float scale_log2 = scale * kLog2e;
  const int vec_qkv = vec_ok(qkv, HD), vec_dout = vec_ok(dout, HD);

  // Dvec (B, NH, T) in the backend scratch (only this op uses it until it returns; the
  // kernels below run in stream order before any later op can reuse the scratch).
  const size_t nrows = (size_t)B * T * NH;
  float *dvec = (float *)sd_cuda_scratch(be, nrows * sizeof(float));
  {
    const unsigned threads = 256;
    size_t blocks = (nrows + 7) / 8;  // 8 warps (rows) per block
    const size_t cap = (size_t)st->num_sms > 0 ? (size_t)st->num_sms * 16 : 2048;
    if (blocks > cap) blocks = cap;
    attn_bwd_dvec_kernel<E><<<(unsigned)blocks, threads, 0, st->stream>>>(dvec, dout, out, T,
                                                                           NH, HD, nrows);
    SD_CUDA_LAUNCHED("attn_bwd_dvec_kernel");
  }
  if (tc) {  // (only with E = bf16; see bwd_on_tc)
    bwd_on_tc(st, dqkv, dout, qkv, lse, dvec, B, T, NH, HD);
    return;
  }
  switch (ndc_for(HD)) {
    case 1: launch_bwd<1>(st, dqkv, dout, qkv, lse, dvec, B, T, NH, HD, scale, scale_log2, vec_qkv, vec_dout); break;
    case 2: launch_bwd<2>(st, dqkv, dout, qkv, lse, dvec, B, T, NH, HD, scale, scale_log2, vec_qkv, vec_dout); break;
    case 4: launch_bwd<4>(st, dqkv, dout, qkv, lse, dvec, B, T, NH, HD, scale, scale_log2, vec_qkv, vec_dout); break;
    case 5: launch_bwd<5>(st, dqkv, dout, qkv, lse, dvec, B, T, NH, HD, scale, scale_log2, vec_qkv, vec_dout); break;
    case 6: launch_bwd<6>(st, dqkv, dout, qkv, lse, dvec, B, T, NH, HD, scale, scale_log2, vec_qkv, vec_dout); break;
    default: launch_bwd<8>(st, dqkv, dout, qkv, lse, dvec, B, T, NH, HD, scale, scale_log2, vec_qkv, vec_dout); break;
  }
}

}  // namespace

// ---- which kernels bf16 attention runs on ---------------------------------------------------
// bf16 storage runs on the tensor-core kernels of attention_tc.cu unless the environment sets
// SD_CUDA_ATTENTION_TC=0 (then on this file's fp32-tile kernels, as fp32 storage always does).
// Before their first use on a device at a head dimension, the tensor-core kernels are
// cross-checked against this file's on a small random problem (forward out and lse, backward
// dqkv); if they disagree by more than bf16 products explain (norm-relative 1e-2), this file's
// kernels are used from then on, with one warning, so a faulty kernel cannot train silently.
// The self-test (sd_cuda_attention_selftest) checks both families against a float64 reference
// and fails on either.

namespace {

enum { TC_UNKNOWN = 0, TC_ON = 1, TC_OFF = 2 };
unsigned char g_tc_state[kMaxDevices][kMaxHD + 1];  // [device][HD]
int g_tc_forced = -1;                      // self-test: -1 choose, 0 fp32 tiles, 1 tensor cores
constexpr double kTcCrossCheckRel = 1e-2;

bool tc_env_on() {
  static int on = -1;
  if (on < 0) {
    const char *e = getenv("SD_CUDA_ATTENTION_TC");
    on = !(e && strcmp(e, "0") == 0);
  }
  return on != 0;
}

// Norm-relative error of got against a reference, with the worst element (non-finite
// elements of got are counted apart): the cross-check below and the self-test.
struct Cmp {
  double num = 0.0, den = 0.0, worst = -1.0, want = 0.0;
  float got = 0.f;
  size_t worst_i = 0;
  size_t nonfinite = 0, nonfinite_i = 0;
  double rel() const { return den > 0.0 ? sqrt(num / den) : sqrt(num); }
  void add(size_t i, float g, double r) {
    if (!isfinite(g)) {
      if (nonfinite++ == 0) nonfinite_i = i;
      if (worst < INFINITY) { worst = INFINITY; worst_i = i; got = g; want = r; }
      return;
    }
    const double e = (double)g - r;
    num += e * e;
    den += r * r;
    if (fabs(e) > worst) { worst = fabs(e); worst_i = i; got = g; want = r; }
  }
};

// Runs both kernel families on one random problem at head dim HD; the largest norm-relative
// difference of out, lse and dqkv (infinite on a non-finite element).
double tc_cross_check(sd_backend *be, int HD) {
  sd_cuda_state *st = sd_cuda_st(be);
  const int B = 2, T = 100, NH = 2, D = NH * HD;  // T: a partial row tile and column tile
  const size_t n_qkv = (size_t)B * T * 3 * D, n_out = (size_t)B * T * D,
               n_lse = (size_t)B * NH * T;
  std::vector<uint16_t> qkv_h(n_qkv);
  std::vector<float> dout_h(n_out);
  uint64_t s = 0x7C0FFEEull + (uint64_t)HD;
  for (auto &x : qkv_h) {  // uniform in [-1.5, 1.5), as bf16
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = sd_bf16_from_float((float)((s >> 40) * (3.0 / 16777216.0) - 1.5));
  }
  for (auto &x : dout_h) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = (float)((s >> 40) * (2.0 / 16777216.0) - 1.0);
  }
  void *qkv = be->ops->alloc(be, 2 * n_qkv), *out = be->ops->alloc(be, 2 * n_out);
  float *dout = (float *)be->ops->alloc(be, 4 * n_out), *lse = (float *)be->ops->alloc(be, 4 * n_lse);
  float *dqkv = (float *)be->ops->alloc(be, 4 * n_qkv);
  be->ops->to_device(be, qkv, qkv_h.data(), 2 * n_qkv);
  be->ops->to_device(be, dout, dout_h.data(), 4 * n_out);
  std::vector<float> res[2][3];  // [tc][out, lse, dqkv]
  for (int tc = 0; tc < 2; tc++) {
    const __nv_bfloat16 *q = (const __nv_bfloat16 *)qkv;
    __nv_bfloat16 *o = (__nv_bfloat16 *)out;
    if (tc) sd_cuda_attention_fwd_tc(st, o, lse, q, B, T, NH, HD);
    else attention_fwd_t(st, o, lse, q, B, T, NH, HD);
    attention_bwd_t(be, dqkv, dout, q, (const __nv_bfloat16 *)o, lse, B, T, NH, HD, tc != 0);
    std::vector<uint16_t> oh(n_out);
    be->ops->to_host(be, oh.data(), out, 2 * n_out);
    res[tc][0].resize(n_out);
    for (size_t i = 0; i < n_out; i++) res[tc][0][i] = sd_bf16_to_float(oh[i]);
    res[tc][1].resize(n_lse);
    be->ops->to_host(be, res[tc][1].data(), lse, 4 * n_lse);
    res[tc][2].resize(n_qkv);
    be->ops->to_host(be, res[tc][2].data(), dqkv, 4 * n_qkv);
  }
  be->ops->free(be, qkv);
  be->ops->free(be, out);
  be->ops->free(be, dout);
  be->ops->free(be, lse);
  be->ops->free(be, dqkv);
  double worst = 0;
  for (int k = 0; k < 3; k++) {
    Cmp c;
    for (size_t i = 0; i < res[1][k].size(); i++) c.add(i, res[1][k][i], res[0][k][i]);
    const double rel = c.nonfinite ? INFINITY : c.rel();
    if (!(rel <= worst)) worst = rel;  // (a NaN stays: it fails the limit)
  }
  return worst;
}

// Whether bf16 attention at head dim HD runs on the tensor cores (see above).
bool use_tc(sd_backend *be, int HD) {
  if (g_tc_forced >= 0) return g_tc_forced == 1;
  if (!tc_env_on()) return false;
  const int dev = sd_cuda_st(be)->device;
  if (dev < 0 || dev >= kMaxDevices || HD > kMaxHD) return false;
  unsigned char &state = g_tc_state[dev][HD];
  if (state == TC_UNKNOWN) {
    const double rel = tc_cross_check(be, HD);
    state = rel <= kTcCrossCheckRel ? TC_ON : TC_OFF;
    if (state == TC_OFF)
      fprintf(stderr,
              "warning: CUDA attention: the tensor-core kernels differ from the fp32-tile "
              "kernels by %.3g (norm-relative, limit %.0e) at head dim %d on device %d; using "
              "the fp32-tile kernels (please report this)\n",
              rel, kTcCrossCheckRel, HD, dev);
  }
  return state == TC_ON;
}

}  // namespace

extern "C" int sd_cuda_attention_describe(sd_backend *be, char *buf, size_t len) {
  const int dev = sd_cuda_st(be)->device;
  size_t at = 0;
  int n = snprintf(buf, len, "attention: fp32 storage on the fp32-tile flash kernels; bf16 "
                             "storage on cuDNN where it builds a plan, else on %s",
                   tc_env_on() ? "the tensor-core (wmma) kernels after a cross-check per head dim"
                               : "the fp32-tile kernels (SD_CUDA_ATTENTION_TC=0)");
  if (n < 0) return -1;
  at = (size_t)n < len ? (size_t)n : len;
  n = snprintf(buf + at, len - at, "\nattention (bf16): ");
  if (n < 0) return -1;
  at += (size_t)n < len - at ? (size_t)n : len - at;
  if (at < len) {
    sd_cuda_attention_cudnn_describe(be, buf + at, len - at);
    at += strlen(buf + at);
  }
  if (dev < 0 || dev >= kMaxDevices) return 0;
  for (int hd = 1; hd <= kMaxHD && at < len; hd++) {
    const unsigned char stt = g_tc_state[dev][hd];
    if (stt == TC_UNKNOWN) continue;
    n = snprintf(buf + at, len - at, "; head dim %d: %s", hd,
                 stt == TC_ON ? "tensor cores (cross-check agreed)"
                              : "fp32 tiles (the tensor-core kernels disagreed: set aside)");
    if (n < 0) return -1;
    at += (size_t)n < len - at ? (size_t)n : len - at;
  }
  return 0;
}

// bf16 storage tries cuDNN's fused attention first (attention_cudnn.cu).
void sd_cuda_attention_fwd(sd_backend *be, void *out, float *lse, const void *qkv, sd_dtype t,
                           int B, int T, int NH, int HD) {
  check_shape("attention_fwd", B, T, NH, HD);
  check_dtype("attention_fwd", t);
  if (B == 0 || T == 0 || NH == 0 || HD == 0) return;
  if (t == SD_BF16 && sd_cuda_attention_cudnn_fwd(be, out, lse, qkv, B, T, NH, HD)) return;
  sd_cuda_attention_handwritten_fwd(be, out, lse, qkv, t, B, T, NH, HD);
}

void sd_cuda_attention_handwritten_fwd(sd_backend *be, void *out, float *lse, const void *qkv,
                                       sd_dtype t, int B, int T, int NH, int HD) {
  sd_cuda_state *st = sd_cuda_st(be);
  if (t == SD_BF16 && use_tc(be, HD))
    sd_cuda_attention_fwd_tc(st, (__nv_bfloat16 *)out, lse, (const __nv_bfloat16 *)qkv, B, T,
                             NH, HD);
  else if (t == SD_BF16)
    attention_fwd_t(st, (__nv_bfloat16 *)out, lse, (const __nv_bfloat16 *)qkv, B, T, NH, HD);
  else
    attention_fwd_t(st, (float *)out, lse, (const float *)qkv, B, T, NH, HD);
}

void sd_cuda_attention_bwd(sd_backend *be, float *dqkv, const float *dout, const void *qkv,
                           const void *out, sd_dtype t, const float *lse, int B, int T, int NH,
                           int HD) {
  check_shape("attention_bwd", B, T, NH, HD);
  check_dtype("attention_bwd", t);
  if (B == 0 || T == 0 || NH == 0 || HD == 0) return;
  if (t == SD_BF16 && sd_cuda_attention_cudnn_bwd(be, dqkv, dout, qkv, out, lse, B, T, NH, HD))
    return;
  sd_cuda_attention_handwritten_bwd(be, dqkv, dout, qkv, out, t, lse, B, T, NH, HD);
}

void sd_cuda_attention_handwritten_bwd(sd_backend *be, float *dqkv, const float *dout,
                                       const void *qkv, const void *out, sd_dtype t,
                                       const float *lse, int B, int T, int NH, int HD) {
  if (t == SD_BF16)
    attention_bwd_t(be, dqkv, dout, (const __nv_bfloat16 *)qkv, (const __nv_bfloat16 *)out, lse,
                    B, T, NH, HD, use_tc(be, HD));
  else
    attention_bwd_t(be, dqkv, dout, (const float *)qkv, (const float *)out, lse, B, T, NH, HD,
                    false);
}

// ---- self-check ----------------------------------------------------------------------------
namespace {

// Naive double-precision attention (forward and backward) on the host, for the self-check.
// out (B,T,D), lse (B,NH,T), dqkv (B,T,3D) from float qkv and dout. out_bf16: out is stored in
// bf16, so each out element is rounded to bf16 and the backward reads the rounded values.
static void ref_attention(const float *qkv, const float *dout, int B, int T, int NH, int HD,
                          bool out_bf16, std::vector<double> &out, std::vector<double> &lse,
                          std::vector<double> &dqkv) {
  const int D = NH * HD;
  const size_t ld = 3 * (size_t)D;
  const double scale = 1.0 / sqrt((double)HD);
  out.assign((size_t)B * T * D, 0.0);
  lse.assign((size_t)B * NH * T, 0.0);
  dqkv.assign((size_t)B * T * ld, 0.0);
  std::vector<double> P((size_t)T * T), dS((size_t)T * T), delta(T);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++) {
      const float *q = qkv + (size_t)b * T * ld + (size_t)h * HD;
      const float *k = q + D, *v = q + 2 * D;
      const float *dO = dout + (size_t)b * T * D + (size_t)h * HD;
      double *o = out.data() + (size_t)b * T * D + (size_t)h * HD;
      double *dq = dqkv.data() + (size_t)b * T * ld + (size_t)h * HD;
      double *dk = dq + D, *dv = dq + 2 * D;
      for (int i = 0; i < T; i++) {
        double *row = P.data() + (size_t)i * T, mx = -INFINITY;
        for (int j = 0; j < T; j++) {
          double s = 0.0;
          for (int d = 0; d < HD; d++) s += (double)q[(size_t)i * ld + d] * k[(size_t)j * ld + d];
          row[j] = s * scale;
          if (row[j] > mx) mx = row[j];
        }
        double sum = 0.0;
        for (int j = 0; j < T; j++) sum += exp(row[j] - mx);
        const double L = mx + log(sum);
        lse[((size_t)b * NH + h) * T + i] = L;
        for (int j = 0; j < T; j++) row[j] = exp(row[j] - L);
        for (int d = 0; d < HD; d++) {
          double a = 0.0;
          for (int j = 0; j < T; j++) a += row[j] * v[(size_t)j * ld + d];
          o[(size_t)i * D + d] = out_bf16 ? (double)sd_bf16_to_float(sd_bf16_from_float((float)a)) : a;
        }
        double dl = 0.0;
        for (int d = 0; d < HD; d++) dl += (double)dO[(size_t)i * D + d] * o[(size_t)i * D + d];
        delta[i] = dl;
      }
      for (int i = 0; i < T; i++)
        for (int j = 0; j < T; j++) {
          double dp = 0.0;
          for (int d = 0; d < HD; d++) dp += (double)dO[(size_t)i * D + d] * v[(size_t)j * ld + d];
          dS[(size_t)i * T + j] = P[(size_t)i * T + j] * (dp - delta[i]);
        }
      for (int i = 0; i < T; i++)
        for (int d = 0; d < HD; d++) {
          double a = 0.0;
          for (int j = 0; j < T; j++) a += dS[(size_t)i * T + j] * k[(size_t)j * ld + d];
          dq[(size_t)i * ld + d] = a * scale;
        }
      for (int j = 0; j < T; j++)
        for (int d = 0; d < HD; d++) {
          double ak = 0.0, av = 0.0;
          for (int i = 0; i < T; i++) {
            ak += dS[(size_t)i * T + j] * q[(size_t)i * ld + d];
            av += P[(size_t)i * T + j] * dO[(size_t)i * D + d];
          }
          dk[(size_t)j * ld + d] = ak * scale;
          dv[(size_t)j * ld + d] = av;
        }
    }
}


struct DevBuf {
  void *p = nullptr;
  float *f() const { return (float *)p; }
  ~DevBuf() {
    if (p) cudaFree(p);
  }
};

static uint64_t rng_next(uint64_t *s) {  // splitmix64
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static float rng_uniform(uint64_t *s, float lo, float hi) {
  return lo + (hi - lo) * (float)((rng_next(s) >> 40) * (1.0 / 16777216.0));
}

#define ST_CUDA(call)                                                                      \
  do {                                                                                     \
    cudaError_t e_ = (call);                                                               \
    if (e_ != cudaSuccess) {                                                               \
      snprintf(err, len, "attention selftest: %s failed: %s", #call, cudaGetErrorString(e_)); \
      return -1;                                                                           \
    }                                                                                      \
  } while (0)

// One shape: 0, or -1 with a message. *worst_rel gets the largest relative norm error.
// qkv and out are stored as t, starting `offset` elements into their buffers (offset 1 with
// bf16 leaves them 2-byte aligned only: the scalar load path even when HD % 4 == 0).
// tc: the tensor-core kernels (bf16 only), else this file's.
static int selftest_shape(sd_backend *be, int B, int T, int NH, int HD, sd_dtype t, int offset,
                          bool tc, uint64_t seed, double *worst_rel, char *err, size_t len) {
  const int D = NH * HD;
  const size_t n_qkv = (size_t)B * T * 3 * D, n_out = (size_t)B * T * D,
               n_lse = (size_t)B * NH * T;
  const bool bf16 = t == SD_BF16;
  const size_t esz = sd_dtype_size(t);
  cudaStream_t stream = sd_cuda_st(be)->stream;
  std::vector<float> qkv(n_qkv), dout(n_out);
  uint64_t s = seed;
  for (auto &x : qkv) x = rng_uniform(&s, -1.5f, 1.5f);
  for (auto &x : dout) x = rng_uniform(&s, -1.0f, 1.0f);
  // qkv as stored (bytes, n_qkv elements of type t); the reference gets the stored values
  std::vector<unsigned char> qkv_st(n_qkv * esz);
  for (size_t i = 0; i < n_qkv; i++) {
    if (bf16) {
      const uint16_t h = sd_bf16_from_float(qkv[i]);
      qkv[i] = sd_bf16_to_float(h);
      memcpy(qkv_st.data() + 2 * i, &h, 2);
    } else {
      memcpy(qkv_st.data() + 4 * i, &qkv[i], 4);
    }
  }

  DevBuf d_qkv, d_dout, d_out, d_lse, d_dqkv;
  ST_CUDA(cudaMalloc(&d_qkv.p, (n_qkv + offset) * esz));
  ST_CUDA(cudaMalloc(&d_dout.p, n_out * sizeof(float)));
  ST_CUDA(cudaMalloc(&d_out.p, (n_out + offset) * esz));
  ST_CUDA(cudaMalloc(&d_lse.p, n_lse * sizeof(float)));
  ST_CUDA(cudaMalloc(&d_dqkv.p, n_qkv * sizeof(float)));
  char *qkv_p = (char *)d_qkv.p + offset * esz, *out_p = (char *)d_out.p + offset * esz;
  ST_CUDA(cudaMemcpyAsync(qkv_p, qkv_st.data(), n_qkv * esz, cudaMemcpyHostToDevice, stream));
  ST_CUDA(cudaMemcpyAsync(d_dout.p, dout.data(), n_out * sizeof(float), cudaMemcpyHostToDevice,
                          stream));

  std::vector<unsigned char> out_st[2];  // out as stored (n_out elements of type t)
  std::vector<float> lse[2], dqkv[2];
  for (int run = 0; run < 2; run++) {
    out_st[run].resize(n_out * esz);
    lse[run].resize(n_lse);
    dqkv[run].resize(n_qkv);
    // Poison (all-ones bytes: NaN in fp32 and bf16) so that an unwritten element fails.
    ST_CUDA(cudaMemsetAsync(out_p, 0xFF, n_out * esz, stream));
    ST_CUDA(cudaMemsetAsync(d_lse.p, 0xFF, n_lse * sizeof(float), stream));
    ST_CUDA(cudaMemsetAsync(d_dqkv.p, 0xFF, n_qkv * sizeof(float), stream));
    g_tc_forced = tc ? 1 : 0;
    sd_cuda_attention_fwd(be, out_p, d_lse.f(), qkv_p, t, B, T, NH, HD);
    sd_cuda_attention_bwd(be, d_dqkv.f(), d_dout.f(), qkv_p, out_p, t, d_lse.f(), B, T, NH, HD);
    g_tc_forced = -1;
    ST_CUDA(cudaMemcpyAsync(out_st[run].data(), out_p, n_out * esz, cudaMemcpyDeviceToHost,
                            stream));
    ST_CUDA(cudaMemcpyAsync(lse[run].data(), d_lse.p, n_lse * sizeof(float),
                            cudaMemcpyDeviceToHost, stream));
    ST_CUDA(cudaMemcpyAsync(dqkv[run].data(), d_dqkv.p, n_qkv * sizeof(float),
                            cudaMemcpyDeviceToHost, stream));
    ST_CUDA(cudaStreamSynchronize(stream));
  }
  std::vector<float> out(n_out);  // the first run's out as fp32
  for (size_t i = 0; i < n_out; i++) {
    if (bf16) {
      uint16_t h;
      memcpy(&h, out_st[0].data() + 2 * i, 2);
      out[i] = sd_bf16_to_float(h);
    } else {
      memcpy(&out[i], out_st[0].data() + 4 * i, 4);
    }
  }

  std::vector<double> r_out, r_lse, r_dqkv;
  ref_attention(qkv.data(), dout.data(), B, T, NH, HD, bf16, r_out, r_lse, r_dqkv);

  Cmp c_out, c_lse, c_d[3];
  for (size_t i = 0; i < n_out; i++) c_out.add(i, out[i], r_out[i]);
  for (size_t i = 0; i < n_lse; i++) c_lse.add(i, lse[0][i], r_lse[i]);
  for (size_t i = 0; i < n_qkv; i++) c_d[(i % (3 * (size_t)D)) / D].add(i, dqkv[0][i], r_dqkv[i]);

  // A bf16 out is compared with the reference rounded to bf16: the fp32 results differ by
  // rounding, so a few elements (a few in 10^4) round one bf16 unit apart, which weighs up to
  // ~1e-4 in the norm; a wrong rounding mode would put about half of them one unit off (~3e-3).
  // The tensor-core kernels round P, dS and dO to bf16 for their products (8 significant
  // bits, 2^-9 relative each): about 2e-3 expected on every output -> 1e-2, which a wrong
  // layout or a missing tile (errors of order 1) is far above.
  const double tol = tc ? 1e-2 : 1e-4, tol_out = tc ? 1e-2 : bf16 ? 1e-3 : tol;
  const Cmp *cs[5] = {&c_out, &c_lse, &c_d[0], &c_d[1], &c_d[2]};
  const char *names[5] = {"out", "lse", "dq", "dk", "dv"};
  for (int w = 0; w < 5; w++) {
    const Cmp &c = *cs[w];
    const double rel = c.rel(), lim = w == 0 ? tol_out : tol;
    if (rel > *worst_rel) *worst_rel = rel;
    if (c.nonfinite == 0 && rel < lim) continue;
    // Locate the worst element: out (B,T,NH,HD), lse (B,NH,T), dqkv (B,T,3,NH,HD).
    const size_t i = c.worst_i;
    char where[96];
    if (w == 0)
      snprintf(where, sizeof where, "b %zu t %zu h %zu d %zu", i / ((size_t)T * D),
               i / D % T, i % D / HD, i % HD);
    else if (w == 1)
      snprintf(where, sizeof where, "b %zu h %zu t %zu", i / ((size_t)NH * T), i / T % NH,
               i % T);
    else
      snprintf(where, sizeof where, "b %zu t %zu h %zu d %zu", i / ((size_t)T * 3 * D),
               i / (3 * (size_t)D) % T, i % D / HD, i % HD);
    snprintf(err, len,
             "attention selftest B %d T %d NH %d HD %d %s%s%s (seed %llu): %s relative error "
             "%.3g (limit %.0e), %zu non-finite; worst element [%s] got %.9g want %.9g",
             B, T, NH, HD, sd_dtype_name(t), tc ? " tensor cores" : "",
             offset ? " misaligned" : "",
             (unsigned long long)seed, names[w], rel, lim, c.nonfinite, where, (double)c.got,
             c.want);
    return -1;
  }
  const char *what = nullptr;
  if (memcmp(out_st[0].data(), out_st[1].data(), n_out * esz)) what = "out";
  else if (memcmp(lse[0].data(), lse[1].data(), n_lse * sizeof(float))) what = "lse";
  else if (memcmp(dqkv[0].data(), dqkv[1].data(), n_qkv * sizeof(float))) what = "dqkv";
  if (what) {
    snprintf(err, len,
             "attention selftest B %d T %d NH %d HD %d %s (seed %llu): %s differs between two "
             "runs on the same inputs (not deterministic)",
             B, T, NH, HD, sd_dtype_name(t), (unsigned long long)seed, what);
    return -1;
  }
  return 0;
}

#undef ST_CUDA

}  // namespace

extern "C" int sd_cuda_attention_selftest(sd_backend *be, char *err, size_t len) {
  struct Shape {
    int B, T, NH, HD;
    sd_dtype t;  // storage of qkv and out
    int offset;  // elements into the qkv / out buffers (1: misaligned)
  };
  // fp32: the asked-for shapes (T 16, 37, 256; HD 16, 64, 72) plus edges: one token, a head
  // dim that is not a multiple of 4 (scalar loads), each padded-HD instantiation, T one past a
  // row tile. bf16 storage: the DiT-XL head dim, a small and the largest instantiation, the
  // scalar path (HD 5, and a misaligned qkv with HD 72).
  static const Shape shapes[] = {
      {2, 16, 2, 16, SD_F32, 0},   {2, 37, 3, 64, SD_F32, 0},   {2, 256, 4, 72, SD_F32, 0},
      {2, 37, 4, 72, SD_F32, 0},   {2, 256, 2, 16, SD_F32, 0},  {1, 1, 2, 8, SD_F32, 0},
      {2, 65, 2, 5, SD_F32, 0},    {2, 100, 3, 40, SD_F32, 0},  {2, 33, 2, 96, SD_F32, 0},
      {2, 70, 2, 128, SD_F32, 0},  {2, 129, 1, 24, SD_F32, 0},
      {2, 256, 4, 72, SD_BF16, 0}, {2, 37, 2, 16, SD_BF16, 0},  {2, 70, 2, 128, SD_BF16, 0},
      {2, 65, 2, 5, SD_BF16, 0},   {2, 37, 4, 72, SD_BF16, 1},
  };
  static uint64_t calls = 0;  // fresh inputs on every call; the seed is in the message
  const uint64_t base = 0x5EED0A77E17ull + 7919ull * calls++;
  double worst = 0.0, worst_tc = 0.0;
  int runs = 0;
  for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
    const Shape &s = shapes[k];
    for (int tc = 0; tc < (s.t == SD_BF16 ? 2 : 1); tc++, runs++)  // bf16: both families
      if (selftest_shape(be, s.B, s.T, s.NH, s.HD, s.t, s.offset, tc != 0, base + k,
                         tc ? &worst_tc : &worst, err, len))
        return -1;
  }
  snprintf(err, len,
           "attention selftest: %d runs on %zu shapes passed, worst relative error %.3g "
           "(fp32-tile kernels), %.3g (tensor cores)",
           runs, sizeof shapes / sizeof shapes[0], worst, worst_tc);
  return 0;
}
