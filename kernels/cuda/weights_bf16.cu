// Persistent bf16 copies of the weights (ops.h weights_register): the bf16 matmuls read them
// instead of rounding the fp32 weights again at every call. A registered region is an fp32
// buffer from ops->alloc (the student's and the teacher's flat parameters) with a bf16 copy
// and a stale flag:
//   - adamw_ema writes the copy of p, and of its EMA outputs, in the same pass as the fp32
//     values (loss_optim.cu), so a fresh region stays fresh through training;
//   - any other write through the backend's ops (to_device, copy, memset, ema, axpy, plain
//     adamw) and weights_changed (writes from outside: NCCL broadcasts) mark the overlapped
//     region stale; ops->free of the buffer removes the region;
//   - a matmul that finds its weight in a stale region first converts the whole region once
//     (one vectorised pass) and clears the flag; a weight outside every region is rounded
//     per call as before.
// The copies are round-to-nearest-even of the fp32 values, exactly what the per-call
// conversion gives, so results are bitwise the same with and without them.
#include "cuda_internal.h"

extern "C" {
#include "error.h"
}

#include <cuda_bf16.h>
#include <stdlib.h>
#include <string.h>

namespace {

enum { kMaxRegions = 8 };

struct region {
  const float *base;
  size_t n;
  __nv_bfloat16 *copy;  // (n) device
  int stale;
};

struct regions {
  region r[kMaxRegions];
  int count;
  long refreshes;       // whole-region conversions
  long hits, misses;    // matmul weight lookups inside / outside a region
};

regions *get(sd_backend *be) {
  sd_cuda_state *st = sd_cuda_st(be);
  if (!st->weights) st->weights = sd_xcalloc(1, sizeof(regions), "bf16 weight copies");
  return (regions *)st->weights;
}

// copy (n) = bf16(w), four per thread.
__global__ void refresh_kernel(__nv_bfloat16 *copy, const float *w, size_t n) {
  const size_t i = 4 * ((size_t)blockIdx.x * blockDim.x + threadIdx.x);
  if (i + 4 <= n) {
    const float4 v = *reinterpret_cast<const float4 *>(w + i);
    __nv_bfloat162 *c = reinterpret_cast<__nv_bfloat162 *>(copy + i);
    c[0] = __floats2bfloat162_rn(v.x, v.y);
    c[1] = __floats2bfloat162_rn(v.z, v.w);
  } else {
    for (size_t k = i; k < n; k++) copy[k] = __float2bfloat16_rn(w[k]);
  }
}

bool overlaps(const region &r, const void *p, size_t bytes) {
  const char *a = (const char *)r.base, *b = (const char *)p;
  return b < a + r.n * sizeof(float) && a < b + bytes;
}

}  // namespace

void sd_cuda_weights_register(sd_backend *be, const float *w, size_t n) {
  regions *rs = get(be);
  for (int i = 0; i < rs->count; i++)
    if (rs->r[i].base == w && rs->r[i].n == n) return;
  if (rs->count == kMaxRegions || n == 0) return;  // then matmuls round per call, as before
  if (((uintptr_t)w & 15u) != 0) return;          // the vector kernels need 16-byte rows
  region &r = rs->r[rs->count];
  void *c = NULL;
  if (cudaMalloc(&c, n * sizeof(__nv_bfloat16)) != cudaSuccess) {
    (void)cudaGetLastError();  // no room for a copy: keep rounding per call
    return;
  }
  r.base = w;
  r.n = n;
  r.copy = (__nv_bfloat16 *)c;
  r.stale = 1;
  rs->count++;
}

void sd_cuda_weights_changed(sd_backend *be, const float *w, size_t n) {
  sd_cuda_weights_written(be, w, n * sizeof(float));
}

extern "C" void sd_cuda_weights_written(sd_backend *be, const void *p, size_t bytes) {
  regions *rs = (regions *)sd_cuda_st(be)->weights;
  if (!rs || !bytes) return;
  for (int i = 0; i < rs->count; i++)
    if (overlaps(rs->r[i], p, bytes)) rs->r[i].stale = 1;
}

extern "C" void sd_cuda_weights_freed(sd_backend *be, const void *p) {
  regions *rs = (regions *)sd_cuda_st(be)->weights;
  if (!rs) return;
  for (int i = 0; i < rs->count; i++)
    if ((const void *)rs->r[i].base == p) {
      SD_CUDA_CHECK(cudaFree(rs->r[i].copy));  // (cudaFree waits for work that uses it)
      rs->r[i] = rs->r[--rs->count];
      i--;
    }
}

extern "C" const void *sd_cuda_weights_bf16(sd_backend *be, const float *w, size_t n) {
  regions *rs = (regions *)sd_cuda_st(be)->weights;
  if (!rs) return NULL;
  for (int i = 0; i < rs->count; i++) {
    region &r = rs->r[i];
    if (w < r.base || w + n > r.base + r.n) continue;
    if (r.stale) {
      const unsigned blocks = (unsigned)((r.n + 4 * 256 - 1) / (4 * 256));
      refresh_kernel<<<blocks, 256, 0, sd_cuda_st(be)->stream>>>(r.copy, r.base, r.n);
      SD_CUDA_LAUNCHED("weights refresh_kernel");
      r.stale = 0;
      rs->refreshes++;
    }
    rs->hits++;
    return r.copy + (w - r.base);
  }
  rs->misses++;
  return NULL;
}

extern "C" void *sd_cuda_weights_for_update(sd_backend *be, const float *p, size_t n) {
  regions *rs = (regions *)sd_cuda_st(be)->weights;
  if (!rs || !p || !n) return NULL;
  for (int i = 0; i < rs->count; i++) {
    region &r = rs->r[i];
    if (!overlaps(r, p, n * sizeof(float))) continue;
    if (p < r.base || p + n > r.base + r.n || r.stale) {  // partial or stale: refresh later
      r.stale = 1;
      return NULL;
    }
    return r.copy + (p - r.base);
  }
  return NULL;
}

extern "C" void sd_cuda_weights_release(sd_cuda_state *st) {
  regions *rs = (regions *)st->weights;
  if (!rs) return;
  for (int i = 0; i < rs->count; i++) (void)cudaFree(rs->r[i].copy);
  free(rs);
  st->weights = NULL;
}

extern "C" int sd_cuda_weights_describe(sd_backend *be, char *buf, size_t len) {
  const regions *rs = (const regions *)sd_cuda_st(be)->weights;
  size_t n = 0;
  for (int i = 0; rs && i < rs->count; i++) n += rs->r[i].n;
  return snprintf(buf, len, "weights: %d regions of bf16 copies (%.1f MiB), written by AdamW; "
                  "%ld whole-region refreshes, %ld matmul lookups served, %ld rounded per call",
                  rs ? rs->count : 0, n * 2 / 1048576.0, rs ? rs->refreshes : 0L,
                  rs ? rs->hits : 0L, rs ? rs->misses : 0L);
}

// ---- self-test (test_ops_cuda's unit tests) ---------------------------------------------------

namespace {

uint32_t lcg(uint64_t &s) {
  s = s * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(s >> 33);
}

void fill(float *h, size_t n, uint64_t &s, float scale) {
  for (size_t i = 0; i < n; i++) h[i] = scale * ((float)(lcg(s) % 20001u) / 10000.0f - 1.0f);
}

// bf16 bits of x, nearest even (as __float2bfloat16_rn for finite x)
uint16_t rne(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

}  // namespace

extern "C" int sd_cuda_weights_selftest(sd_backend *be, char *err, size_t len) {
  sd_cuda_state *st = sd_cuda_st(be);
  const int saved = st->precision;
  st->precision = SD_PREC_BF16;
  const int M = 40, K = 96, N = 72;
  const size_t nw = (size_t)N * K, ni = (size_t)M * K, no = (size_t)M * N;
  uint64_t seed = 0x5EEDB16ull;
  float *hw = (float *)malloc(4 * nw), *hi = (float *)malloc(4 * ni), *hg = (float *)malloc(4 * nw);
  float *o1 = (float *)malloc(4 * no), *o2 = (float *)malloc(4 * no);
  uint16_t *hc = (uint16_t *)malloc(2 * nw);
  fill(hw, nw, seed, 0.5f);
  fill(hi, ni, seed, 1.0f);
  fill(hg, nw, seed, 0.01f);
  const sd_ops *op = be->ops;
  float *w = (float *)op->alloc(be, 4 * nw), *w2 = (float *)op->alloc(be, 4 * nw);
  float *inp = (float *)op->alloc(be, 4 * ni), *out = (float *)op->alloc(be, 4 * no);
  float *g = (float *)op->alloc(be, 4 * nw), *m = (float *)op->alloc(be, 4 * nw);
  float *v = (float *)op->alloc(be, 4 * nw);
  op->to_device(be, w, hw, 4 * nw);
  op->to_device(be, w2, hw, 4 * nw);
  op->to_device(be, inp, hi, 4 * ni);
  op->to_device(be, g, hg, 4 * nw);
  op->memset(be, m, 0, 4 * nw);
  op->memset(be, v, 0, 4 * nw);
  int rc = 0;
  // 1. a registered weight gives bitwise the product of an unregistered one
  op->matmul_fwd(be, out, SD_F32, inp, SD_F32, w2, NULL, M, K, N);
  op->to_host(be, o1, out, 4 * no);
  op->weights_register(be, w, nw);
  op->matmul_fwd(be, out, SD_F32, inp, SD_F32, w, NULL, M, K, N);
  op->to_host(be, o2, out, 4 * no);
  if (memcmp(o1, o2, 4 * no) != 0) {
    snprintf(err, len, "matmul with the bf16 copy differs from per-call rounding");
    rc = -1;
  }
  // 2. AdamW writes the copy as bf16 of the updated weights
  if (!rc) {
    op->adamw_ema(be, w, g, m, v, nw, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.0f, 1, 1.0f, NULL, 0.0f,
                  NULL, 0.0f, NULL);
    const void *c = sd_cuda_weights_bf16(be, w, nw);
    op->to_host(be, hw, w, 4 * nw);
    if (!c) {
      snprintf(err, len, "the registered weights have no bf16 copy");
      rc = -1;
    } else {
      SD_CUDA_CHECK(cudaMemcpy(hc, c, 2 * nw, cudaMemcpyDeviceToHost));
      for (size_t i = 0; i < nw && !rc; i++)
        if (hc[i] != rne(hw[i])) {
          snprintf(err, len, "after adamw_ema the copy at %zu is 0x%04x, bf16 of %.9g is 0x%04x",
                   i, hc[i], hw[i], rne(hw[i]));
          rc = -1;
        }
    }
  }
  // 3. a write through to_device makes the next matmul use the new weights
  if (!rc) {
    fill(hw, nw, seed, 0.5f);
    op->to_device(be, w, hw, 4 * nw);
    op->to_device(be, w2, hw, 4 * nw);
    op->matmul_fwd(be, out, SD_F32, inp, SD_F32, w, NULL, M, K, N);
    op->to_host(be, o2, out, 4 * no);
    op->matmul_fwd(be, out, SD_F32, inp, SD_F32, w2, NULL, M, K, N);
    op->to_host(be, o1, out, 4 * no);
    if (memcmp(o1, o2, 4 * no) != 0) {
      snprintf(err, len, "after to_device into registered weights a matmul used stale copies");
      rc = -1;
    }
  }
  float *bufs[] = {w, w2, inp, out, g, m, v};
  for (float *b : bufs) op->free(be, b);
  free(hw), free(hi), free(hg), free(o1), free(o2), free(hc);
  st->precision = saved;
  if (!rc && err && len) err[0] = 0;
  return rc;
}
