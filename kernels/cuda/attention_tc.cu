// Tensor-core attention for qkv and out stored in bf16: the kernels of attention.cu with their
// tile products (S = Q K^T, dP = dO V^T, P V, dS K, dS^T Q, P^T dO) on bf16 tensor cores
// (nvcuda::wmma 16x16x16, fp32 accumulation) instead of fp32 FMAs. The rest is the same
// algorithm, tiling and thread mapping (see attention.cu): a block of 256 threads owns a row
// tile of kRows = 64 tokens and streams column tiles of kCols = 32 tokens; the online softmax,
// lse, Dvec and the accumulators are fp32 and live with the threads in the 4 x 2 (scores) and
// 4 x NDC (head-dim) micro-tiles of attention.cu.
//
// How a product runs: the 8 warps compute it with wmma from bf16 tiles in shared memory and
// store it, fp32, to a shared scratch tile; after a barrier each thread reads its micro-tile
// from there. A (64 x 32) score product is one 16 x 16 block per warp; a (64 x HDP) head-dim
// product is 4*NDC blocks over the 8 warps. HDP = 16*NDC is the padded head dimension (zeros
// past HD), so every inner dimension is a multiple of 16.
//
// Shared memory (bytes; HD 72 -> HDP 80 / HD 128 -> HDP 128):
//   bf16 head-dim tiles, row stride LDB = HDP + 8 elements (rows 16-byte aligned, and shifted
//   by 4 banks from row to row); bf16 score tiles (P, dS) with stride LDP = kCols + 8 = 40;
//   an fp32 scratch X of max(score tiles, 64 x LDH) floats, LDH = HDP + 4.
//   forward  Q[64] K[32] V[32], P[64], X (S, then P V)                        48.0 / 72.0 KiB
//   dK/dV    K[64] V[64] Q[32] dO[32], Pt dSt [64], lse, Dvec, X (St dPt, then
//            Pt dO, then dSt Q)                                               64.3 / 94.3 KiB
//   dQ       Q[64] dO[64] K[32] V[32], dS[64], X (S dP, then dS K)            59.0 / 89.0 KiB
// Every region starts at a multiple of 32 bytes (wmma's pointer alignment) and every leading
// dimension is a multiple of 8 bf16 or 4 floats. Barriers: each product is written to X only
// after every thread has read the previous contents, and read only after a barrier.
// ptxas (CUDA 13.0, sm_90): no spills and no stack frame for any NDC; HD 72 takes 122 (forward),
// 128 (dK/dV) and 122 (dQ) registers, so 2 blocks of 256 threads fit an SM as in attention.cu.
// Nothing has been timed on a device yet.
#include "attention_tiles.cuh"

#include <mma.h>

namespace {

namespace wm = nvcuda::wmma;
typedef __nv_bfloat16 bf16;

// The 8 warps of a block cover a (64 x 32) score tile in 16 x 16 blocks, one each.
static_assert((kRows / 16) * (kCols / 16) == kThreads / 32, "one score block per warp");

template <int NDC>
struct CfgTC {
  static constexpr int HDP = 16 * NDC;     // padded head dim
  static constexpr int LDB = HDP + 8;      // bf16 head-dim tile row stride (elements)
  static constexpr int LDH = HDP + 4;      // fp32 head-dim product row stride (floats)
  static constexpr int LDP = kCols + 8;    // bf16 score tile row stride (elements)
  static constexpr size_t score_f = (size_t)kRows * kLdc;  // floats of one fp32 score tile
  static constexpr size_t hd_f = (size_t)kRows * LDH;      // floats of a head-dim product
  static constexpr size_t x1_f = score_f > hd_f ? score_f : hd_f;            // X: 1 score
  static constexpr size_t x2_f = 2 * score_f > hd_f ? 2 * score_f : hd_f;    // X: 2 scores
  static constexpr size_t fwd_bytes =
      4 * x1_f + 2 * ((size_t)(kRows + 2 * kCols) * LDB + (size_t)kRows * LDP);
  static constexpr size_t dkdv_bytes = 4 * x2_f + 4 * 2 * (size_t)kCols +
      2 * ((size_t)(2 * kRows + 2 * kCols) * LDB + 2 * (size_t)kRows * LDP);
  static constexpr size_t dq_bytes =
      4 * x2_f + 2 * ((size_t)(2 * kRows + 2 * kCols) * LDB + (size_t)kRows * LDP);
  static_assert(LDB % 8 == 0 && LDP % 8 == 0 && LDH % 4 == 0 && kLdc % 4 == 0, "wmma ldm");
  static_assert((kRows * LDB * 2) % 32 == 0 &&
                    (kCols * LDB * 2) % 32 == 0 && (kRows * LDP * 2) % 32 == 0 &&
                    (x1_f * 4) % 32 == 0 && (x2_f * 4) % 32 == 0,
                "every shared region must start 32-byte aligned");
};

// Copies the ROWS token rows t0 .. t0+ROWS-1 of one head slice into the bf16 tile
// dst[ROWS][HDP+8], from elements of type E (bf16: as they are; float: rounded to bf16). Writes
// every element d < HDP of every row: the value for t < T and d < HD, zero otherwise. vec: as
// load_tile in attention.cu (4 elements at a time). All threads; the caller places barriers.
template <int ROWS, int HDP, typename E>
__device__ __forceinline__ void load_tile_bf16(bf16 *__restrict__ dst,
                                               const E *__restrict__ src, size_t ld, int t0,
                                               int T, int HD, bool vec) {
  constexpr int LDB = HDP + 8;
  if (vec) {
    constexpr int NV = HDP / 4;
    for (int e = threadIdx.x; e < ROWS * NV; e += kThreads) {
      const int r = e / NV, d = (e - r * NV) * 4, t = t0 + r;
      float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
      if (t < T && d < HD) x = ldg4(src + (size_t)t * ld + d);
      __nv_bfloat162 *o = reinterpret_cast<__nv_bfloat162 *>(dst + r * LDB + d);  // 8 bytes
      o[0] = __floats2bfloat162_rn(x.x, x.y);
      o[1] = __floats2bfloat162_rn(x.z, x.w);
    }
  } else {
    for (int e = threadIdx.x; e < ROWS * HDP; e += kThreads) {
      const int r = e / HDP, d = e - r * HDP, t = t0 + r;
      dst[r * LDB + d] = __float2bfloat16_rn((t < T && d < HD) ? ldg1(src + (size_t)t * ld + d)
                                                                : 0.f);
    }
  }
}

// X (64 x 32, fp32, row stride kLdc) = A (64 x HDP) @ Bt^T, with A and Bt (32 x HDP) bf16 row
// tiles of stride LDB: warp w computes rows 16*(w/2).., columns 16*(w%2)...
template <int HDP>
__device__ __forceinline__ void tc_scores(float *__restrict__ X, const bf16 *__restrict__ A,
                                          const bf16 *__restrict__ Bt) {
  constexpr int LDB = HDP + 8;
  const int warp = threadIdx.x >> 5, r0 = (warp >> 1) * 16, c0 = (warp & 1) * 16;
  wm::fragment<wm::accumulator, 16, 16, 16, float> acc;
  wm::fill_fragment(acc, 0.0f);
#pragma unroll
  for (int k = 0; k < HDP; k += 16) {
    wm::fragment<wm::matrix_a, 16, 16, 16, bf16, wm::row_major> a;
    wm::fragment<wm::matrix_b, 16, 16, 16, bf16, wm::col_major> b;  // Bt^T: Bt's rows
    wm::load_matrix_sync(a, A + r0 * LDB + k, LDB);
    wm::load_matrix_sync(b, Bt + c0 * LDB + k, LDB);
    wm::mma_sync(acc, a, b, acc);
  }
  wm::store_matrix_sync(X + r0 * kLdc + c0, acc, kLdc, wm::mem_row_major);
}

// X (64 x HDP, fp32, row stride LDH) = S (64 x 32, bf16, stride LDP) @ V (32 x HDP, bf16 rows,
// stride LDB): the 4*NDC 16 x 16 blocks go round the 8 warps.
template <int NDC>
__device__ __forceinline__ void tc_pv(float *__restrict__ X, const bf16 *__restrict__ S,
                                      const bf16 *__restrict__ V) {
  using C = CfgTC<NDC>;
  const int warp = threadIdx.x >> 5;
  for (int f = warp; f < 4 * NDC; f += kThreads / 32) {
    const int r0 = (f / NDC) * 16, c0 = (f % NDC) * 16;
    wm::fragment<wm::accumulator, 16, 16, 16, float> acc;
    wm::fill_fragment(acc, 0.0f);
#pragma unroll
    for (int k = 0; k < kCols; k += 16) {
      wm::fragment<wm::matrix_a, 16, 16, 16, bf16, wm::row_major> a;
      wm::fragment<wm::matrix_b, 16, 16, 16, bf16, wm::row_major> b;
      wm::load_matrix_sync(a, S + r0 * C::LDP + k, C::LDP);
      wm::load_matrix_sync(b, V + k * C::LDB + c0, C::LDB);
      wm::mma_sync(acc, a, b, acc);
    }
    wm::store_matrix_sync(X + r0 * C::LDH + c0, acc, C::LDH, wm::mem_row_major);
  }
}

// acc[i][jd] += X[ty*4 + i][tx + 16*jd] (X a head-dim product, row stride LDH).
template <int NDC>
__device__ __forceinline__ void add_hd(float (&acc)[kRM][NDC], const float *__restrict__ X,
                                       int ty, int tx) {
#pragma unroll
  for (int i = 0; i < kRM; i++)
#pragma unroll
    for (int jd = 0; jd < NDC; jd++)
      acc[i][jd] += X[(ty * kRM + i) * CfgTC<NDC>::LDH + tx + 16 * jd];
}

// ---- forward -----------------------------------------------------------------------------
// attn_fwd_kernel of attention.cu; per key tile: S = Q K^T (tensor cores) -> X; the online
// softmax on the thread's micro-tile, P -> bf16 tile; P V (tensor cores) -> X; o += X.
// Barriers per key tile: (a) before overwriting K/V (the previous P V and its reads done),
// (b) after the loads, (c) after S, (d) after P, (e) after P V.
template <int NDC>
__global__ void __launch_bounds__(kThreads, (NDC <= 5 ? 2 : 1))
    attn_fwd_tc_kernel(bf16 *__restrict__ out, float *__restrict__ lse,
                       const bf16 *__restrict__ qkv, int T, int NH, int HD, float scale_log2,
                       int vec) {
  using C = CfgTC<NDC>;
  extern __shared__ __align__(128) unsigned char tc_smem[];
  float *X = reinterpret_cast<float *>(tc_smem);  // [x1_f]: S [64][kLdc], then PV [64][LDH]
  bf16 *Qs = reinterpret_cast<bf16 *>(X + C::x1_f);  // [kRows][LDB]
  bf16 *Ks = Qs + kRows * C::LDB;                    // [kCols][LDB]
  bf16 *Vs = Ks + kCols * C::LDB;                    // [kCols][LDB]
  bf16 *Ps = Vs + kCols * C::LDB;                    // [kRows][LDP]

  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const int q0 = blockIdx.x * kRows;
  const HeadSlice<bf16> hs = head_slice(qkv, (const float *)nullptr, lse, (const float *)nullptr,
                                     T, NH, HD);
  const int D = hs.D;
  const size_t ld = hs.ld;
  const bf16 *qg = hs.q, *kg = hs.k, *vg = hs.v;

  load_tile_bf16<kRows, C::HDP>(Qs, qg, ld, q0, T, HD, vec != 0);

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
    load_tile_bf16<kCols, C::HDP>(Ks, kg, ld, k0, T, HD, vec != 0);
    load_tile_bf16<kCols, C::HDP>(Vs, vg, ld, k0, T, HD, vec != 0);
    __syncthreads();  // (b)
    tc_scores<C::HDP>(X, Qs, Ks);
    __syncthreads();  // (c)
#pragma unroll
    for (int i = 0; i < kRM; i++) {
      const int r = ty * kRM + i;
      float s[kCN], mx = -INFINITY;
#pragma unroll
      for (int j = 0; j < kCN; j++) {
        const int c = tx + 16 * j;
        s[j] = (k0 + c < T) ? X[r * kLdc + c] * scale_log2 : -INFINITY;
        mx = fmaxf(mx, s[j]);
      }
      // Column k0 < T is valid in every tile, so the row max (and m_new) is finite.
      const float m_new = fmaxf(m[i], half_warp_max(mx));
      const float alpha = exp2f(m[i] - m_new);  // first tile: 2^-inf = 0
      float rs = 0.f;
#pragma unroll
      for (int j = 0; j < kCN; j++) {
        const bf16 p = __float2bfloat16_rn(exp2f(s[j] - m_new));  // masked: 0
        rs += __bfloat162float(p);  // the sum of the P that P V multiplies
        Ps[r * C::LDP + tx + 16 * j] = p;
      }
      l[i] = l[i] * alpha + half_warp_sum(rs);
      m[i] = m_new;
#pragma unroll
      for (int jd = 0; jd < NDC; jd++) o[i][jd] *= alpha;
    }
    __syncthreads();  // (d): P written, S read
    tc_pv<NDC>(X, Ps, Vs);
    __syncthreads();  // (e)
    add_hd<NDC>(o, X, ty, tx);
  }

  bf16 *og = out + (size_t)blockIdx.z * T * D + (size_t)blockIdx.y * HD;  // (b, h) of out
  float *lg = lse + ((size_t)blockIdx.z * NH + blockIdx.y) * T;
#pragma unroll
  for (int i = 0; i < kRM; i++) {
    const int t = q0 + ty * kRM + i;
    if (t >= T) continue;
    const float inv_l = 1.0f / l[i];  // l >= 1: the max element contributes 2^0
#pragma unroll
    for (int jd = 0; jd < NDC; jd++) {
      const int d = tx + 16 * jd;
      if (d < HD) og[(size_t)t * D + d] = __float2bfloat16_rn(o[i][jd] * inv_l);
    }
    if (tx == 0) lg[t] = (m[i] + log2f(l[i])) * kLn2;
  }
}

// ---- backward: dK, dV ----------------------------------------------------------------------
// attn_bwd_dkdv_kernel of attention.cu; per query tile: St = K Q^T and dPt = V dO^T (tensor
// cores) -> X; Pt, dSt on the thread's micro-tile -> bf16 tiles; dV += Pt dO and dK += dSt Q
// (tensor cores, one after the other through X).
// Barriers per query tile: (a) before the loads, (b) after them, (c) after St/dPt, (d) after
// Pt/dSt, (e) after Pt dO, (f) before dSt Q overwrites X, (g) after dSt Q.
template <int NDC>
__global__ void __launch_bounds__(kThreads, (NDC <= 5 ? 2 : 1))
    attn_bwd_dkdv_tc_kernel(float *__restrict__ dqkv, const float *__restrict__ dout,
                            const bf16 *__restrict__ qkv, const float *__restrict__ lse,
                            const float *__restrict__ dvec, int T, int NH, int HD, float scale,
                            float scale_log2, int vec_qkv, int vec_dout) {
  using C = CfgTC<NDC>;
  extern __shared__ __align__(128) unsigned char tc_smem[];
  float *X = reinterpret_cast<float *>(tc_smem);  // [x2_f]: St, dPt [64][kLdc]; products
  float *lse_s = X + C::x2_f;                      // [kCols], lse * log2(e)
  float *dv_s = lse_s + kCols;                     // [kCols], Dvec
  bf16 *Ks = reinterpret_cast<bf16 *>(dv_s + kCols);  // [kRows][LDB]
  bf16 *Vs = Ks + kRows * C::LDB;                     // [kRows][LDB]
  bf16 *Qs = Vs + kRows * C::LDB;                     // [kCols][LDB]
  bf16 *dOs = Qs + kCols * C::LDB;                    // [kCols][LDB]
  bf16 *Pts = dOs + kCols * C::LDB;                   // [kRows][LDP]
  bf16 *dSts = Pts + kRows * C::LDP;                  // [kRows][LDP]
  float *St = X, *dPt = X + C::score_f;

  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const int k0 = blockIdx.x * kRows;
  const HeadSlice<bf16> hs = head_slice(qkv, dout, lse, dvec, T, NH, HD);
  const int D = hs.D;
  const size_t ld = hs.ld;
  const bf16 *qg = hs.q, *kg = hs.k, *vg = hs.v;
  const float *dog = hs.dout, *lse_bh = hs.lse, *dvec_bh = hs.dvec;

  load_tile_bf16<kRows, C::HDP>(Ks, kg, ld, k0, T, HD, vec_qkv != 0);
  load_tile_bf16<kRows, C::HDP>(Vs, vg, ld, k0, T, HD, vec_qkv != 0);

  float dk[kRM][NDC], dv[kRM][NDC];
  zero_acc<NDC>(dk);
  zero_acc<NDC>(dv);

  for (int q0 = 0; q0 < T; q0 += kCols) {
    __syncthreads();  // (a)
    load_tile_bf16<kCols, C::HDP>(Qs, qg, ld, q0, T, HD, vec_qkv != 0);
    load_tile_bf16<kCols, C::HDP>(dOs, dog, (size_t)D, q0, T, HD, vec_dout != 0);
    stage_query_stats(lse_s, dv_s, lse_bh, dvec_bh, q0, T);
    __syncthreads();  // (b)
    tc_scores<C::HDP>(St, Ks, Qs);
    tc_scores<C::HDP>(dPt, Vs, dOs);
    __syncthreads();  // (c)
#pragma unroll
    for (int i = 0; i < kRM; i++) {
      const int r = ty * kRM + i;
      const bool key_ok = k0 + r < T;
#pragma unroll
      for (int j = 0; j < kCN; j++) {
        const int c = tx + 16 * j;
        const float p =
            (key_ok && q0 + c < T) ? exp2f(St[r * kLdc + c] * scale_log2 - lse_s[c]) : 0.f;
        Pts[r * C::LDP + c] = __float2bfloat16_rn(p);
        dSts[r * C::LDP + c] = __float2bfloat16_rn(p * (dPt[r * kLdc + c] - dv_s[c]));
      }
    }
    __syncthreads();  // (d)
    tc_pv<NDC>(X, Pts, dOs);
    __syncthreads();  // (e)
    add_hd<NDC>(dv, X, ty, tx);
    __syncthreads();  // (f)
    tc_pv<NDC>(X, dSts, Qs);
    __syncthreads();  // (g)
    add_hd<NDC>(dk, X, ty, tx);
  }

  float *dkg = dqkv + (hs.k - qkv);  // this (b, h)'s dK; dV is D further
  store_hd_rows<NDC>(dkg, ld, dk, scale, k0, T, HD, ty, tx);
  store_hd_rows<NDC>(dkg + D, ld, dv, 1.0f, k0, T, HD, ty, tx);
}

// ---- backward: dQ --------------------------------------------------------------------------
// attn_bwd_dq_kernel of attention.cu; per key tile: S = Q K^T and dP = dO V^T (tensor cores)
// -> X; dS on the thread's micro-tile -> bf16 tile; dQ += dS K (tensor cores) through X.
// Barriers per key tile: (a) before the loads, (b) after them, (c) after S/dP, (d) after dS,
// (e) after dS K.
template <int NDC>
__global__ void __launch_bounds__(kThreads, (NDC <= 5 ? 2 : 1))
    attn_bwd_dq_tc_kernel(float *__restrict__ dqkv, const float *__restrict__ dout,
                          const bf16 *__restrict__ qkv, const float *__restrict__ lse,
                          const float *__restrict__ dvec, int T, int NH, int HD, float scale,
                          float scale_log2, int vec_qkv, int vec_dout) {
  using C = CfgTC<NDC>;
  extern __shared__ __align__(128) unsigned char tc_smem[];
  float *X = reinterpret_cast<float *>(tc_smem);     // [x2_f]: S, dP [64][kLdc]; dS K
  bf16 *Qs = reinterpret_cast<bf16 *>(X + C::x2_f);  // [kRows][LDB]
  bf16 *dOs = Qs + kRows * C::LDB;                   // [kRows][LDB]
  bf16 *Ks = dOs + kRows * C::LDB;                   // [kCols][LDB]
  bf16 *Vs = Ks + kCols * C::LDB;                    // [kCols][LDB]
  bf16 *dSs = Vs + kCols * C::LDB;                   // [kRows][LDP]
  float *S = X, *dP = X + C::score_f;

  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const int q0 = blockIdx.x * kRows;
  const HeadSlice<bf16> hs = head_slice(qkv, dout, lse, dvec, T, NH, HD);
  const int D = hs.D;
  const size_t ld = hs.ld;
  const bf16 *qg = hs.q, *kg = hs.k, *vg = hs.v;
  const float *dog = hs.dout, *lse_bh = hs.lse, *dvec_bh = hs.dvec;

  load_tile_bf16<kRows, C::HDP>(Qs, qg, ld, q0, T, HD, vec_qkv != 0);
  load_tile_bf16<kRows, C::HDP>(dOs, dog, (size_t)D, q0, T, HD, vec_dout != 0);

  float lse2[kRM], dvr[kRM], dq[kRM][NDC];
  load_row_stats(lse2, dvr, lse_bh, dvec_bh, q0 + ty * kRM, T);
  zero_acc<NDC>(dq);

  for (int k0 = 0; k0 < T; k0 += kCols) {
    __syncthreads();  // (a)
    load_tile_bf16<kCols, C::HDP>(Ks, kg, ld, k0, T, HD, vec_qkv != 0);
    load_tile_bf16<kCols, C::HDP>(Vs, vg, ld, k0, T, HD, vec_qkv != 0);
    __syncthreads();  // (b)
    tc_scores<C::HDP>(S, Qs, Ks);
    tc_scores<C::HDP>(dP, dOs, Vs);
    __syncthreads();  // (c)
#pragma unroll
    for (int i = 0; i < kRM; i++) {
      const int r = ty * kRM + i;
      const bool query_ok = q0 + r < T;
#pragma unroll
      for (int j = 0; j < kCN; j++) {
        const int c = tx + 16 * j;
        const float p =
            (query_ok && k0 + c < T) ? exp2f(S[r * kLdc + c] * scale_log2 - lse2[i]) : 0.f;
        dSs[r * C::LDP + c] = __float2bfloat16_rn(p * (dP[r * kLdc + c] - dvr[i]));
      }
    }
    __syncthreads();  // (d)
    tc_pv<NDC>(X, dSs, Ks);
    __syncthreads();  // (e)
    add_hd<NDC>(dq, X, ty, tx);
  }

  store_hd_rows<NDC>(dqkv + (hs.q - qkv), ld, dq, scale, q0, T, HD, ty, tx);
}

// ---- launchers -------------------------------------------------------------------------------

static bool aligned_to(const void *p, size_t bytes) { return ((uintptr_t)p & (bytes - 1)) == 0; }

template <int NDC>
static void launch_fwd_tc(sd_cuda_state *st, bf16 *out, float *lse, const bf16 *qkv, int B,
                          int T, int NH, int HD) {
  static unsigned char done[kMaxDevices];
  const size_t bytes = CfgTC<NDC>::fwd_bytes;
  allow_smem((const void *)attn_fwd_tc_kernel<NDC>, bytes, st->device, done,
             "attention_fwd (tensor cores)");
  const float scale_log2 = 1.0f / sqrtf((float)HD) * kLog2e;  // as attention.cu
  const int vec = HD % 4 == 0 && aligned_to(qkv, 8);
  dim3 grid((unsigned)((T + kRows - 1) / kRows), (unsigned)NH, (unsigned)B);
  attn_fwd_tc_kernel<NDC><<<grid, kThreads, bytes, st->stream>>>(out, lse, qkv, T, NH, HD,
                                                                 scale_log2, vec);
  SD_CUDA_LAUNCHED("attn_fwd_tc_kernel");
}

template <int NDC>
static void launch_bwd_tc(sd_cuda_state *st, float *dqkv, const float *dout, const bf16 *qkv,
                          const float *lse, const float *dvec, int B, int T, int NH, int HD) {
  static unsigned char done_kv[kMaxDevices], done_q[kMaxDevices];
  const size_t bytes_kv = CfgTC<NDC>::dkdv_bytes, bytes_q = CfgTC<NDC>::dq_bytes;
  allow_smem((const void *)attn_bwd_dkdv_tc_kernel<NDC>, bytes_kv, st->device, done_kv,
             "attention_bwd (dK/dV, tensor cores)");
  allow_smem((const void *)attn_bwd_dq_tc_kernel<NDC>, bytes_q, st->device, done_q,
             "attention_bwd (dQ, tensor cores)");
  const float scale = 1.0f / sqrtf((float)HD), scale_log2 = scale * kLog2e;
  const int vec_qkv = HD % 4 == 0 && aligned_to(qkv, 8);
  const int vec_dout = HD % 4 == 0 && aligned_to(dout, 16);
  dim3 grid((unsigned)((T + kRows - 1) / kRows), (unsigned)NH, (unsigned)B);
  attn_bwd_dkdv_tc_kernel<NDC><<<grid, kThreads, bytes_kv, st->stream>>>(
      dqkv, dout, qkv, lse, dvec, T, NH, HD, scale, scale_log2, vec_qkv, vec_dout);
  SD_CUDA_LAUNCHED("attn_bwd_dkdv_tc_kernel");
  attn_bwd_dq_tc_kernel<NDC><<<grid, kThreads, bytes_q, st->stream>>>(
      dqkv, dout, qkv, lse, dvec, T, NH, HD, scale, scale_log2, vec_qkv, vec_dout);
  SD_CUDA_LAUNCHED("attn_bwd_dq_tc_kernel");
}

}  // namespace

void sd_cuda_attention_fwd_tc(sd_cuda_state *st, bf16 *out, float *lse, const bf16 *qkv, int B,
                              int T, int NH, int HD) {
  if (HD <= 16) launch_fwd_tc<1>(st, out, lse, qkv, B, T, NH, HD);
  else if (HD <= 32) launch_fwd_tc<2>(st, out, lse, qkv, B, T, NH, HD);
  else if (HD <= 64) launch_fwd_tc<4>(st, out, lse, qkv, B, T, NH, HD);
  else if (HD <= 80) launch_fwd_tc<5>(st, out, lse, qkv, B, T, NH, HD);
  else if (HD <= 96) launch_fwd_tc<6>(st, out, lse, qkv, B, T, NH, HD);
  else launch_fwd_tc<8>(st, out, lse, qkv, B, T, NH, HD);
}

void sd_cuda_attention_bwd_tc(sd_cuda_state *st, float *dqkv, const float *dout, const bf16 *qkv,
                              const float *lse, const float *dvec, int B, int T, int NH,
                              int HD) {
  if (HD <= 16) launch_bwd_tc<1>(st, dqkv, dout, qkv, lse, dvec, B, T, NH, HD);
  else if (HD <= 32) launch_bwd_tc<2>(st, dqkv, dout, qkv, lse, dvec, B, T, NH, HD);
  else if (HD <= 64) launch_bwd_tc<4>(st, dqkv, dout, qkv, lse, dvec, B, T, NH, HD);
  else if (HD <= 80) launch_bwd_tc<5>(st, dqkv, dout, qkv, lse, dvec, B, T, NH, HD);
  else if (HD <= 96) launch_bwd_tc<6>(st, dqkv, dout, qkv, lse, dvec, B, T, NH, HD);
  else launch_bwd_tc<8>(st, dqkv, dout, qkv, lse, dvec, B, T, NH, HD);
}
