// Persistent bf16 copies of the weights (ops.h weights_register): the bf16 matmuls read them
// instead of rounding the fp32 weights again at every call. A registered region is an fp32
// buffer from ops->alloc (the student's and the teacher's flat parameters) with a bf16 copy
// and a stale flag:
//   - adamw and adamw_ema write the copy of p, and of the EMA outputs, in the same pass as
//     the fp32 values (loss_optim.cu), so a fresh region stays fresh through training;
//   - any other write through the backend's ops (to_device, copy, memset, ema, axpy, and
//     every compute op's outputs through weights_guard.cu) and weights_changed (writes from
//     outside: NCCL broadcasts) mark the overlapped region stale; ops->free of the buffer
//     removes the region;
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

extern "C" const void *sd_cuda_weights_peek(sd_backend *be, const float *w, size_t n,
                                            int *stale) {
  const regions *rs = (const regions *)sd_cuda_st(be)->weights;
  for (int i = 0; rs && i < rs->count; i++) {
    const region &r = rs->r[i];
    if (w < r.base || w + n > r.base + r.n) continue;
    if (stale) *stale = r.stale;
    return r.copy + (w - r.base);
  }
  return NULL;
}

extern "C" void sd_cuda_weights_test_write(sd_backend *be, void *dst, const void *src,
                                           size_t bytes) {
  cudaStream_t s = sd_cuda_st(be)->stream;
  SD_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
  SD_CUDA_CHECK(cudaStreamSynchronize(s));
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

// The checks, each on M x K x N products at precision bf16, every registered buffer beside an
// unregistered twin holding the same values (per-call rounding, the reference):
//   1. matmul_fwd, matmul_bwd (dinp) and matmul_gelu_fwd read a registered weight bitwise like
//      its twin (the three look-up sites);
//   2. adamw_ema with p and both EMAs registered, then with one EMA, plain adamw, a shut gate
//      and a sub-range at an odd offset (the scalar path; the trainer updates sub-ranges):
//      each copy is fresh and equal to bf16 (nearest even) of the fp32 values read back;
//   3. to_device into a registered weight marks it stale, and the next matmul sees it;
//   4. a compute op writing into a registered weight (scale_rows, through the guard) too;
//   5. a write that bypasses the ops is not seen (the copy really is what the matmul reads)
//      until weights_changed, after which it is.
namespace {

struct wtest {
  sd_backend *be;
  const sd_ops *op;
  int M, K, N;
  size_t nw, ni, no;
  float *inp, *out;           // (M, K), (M, N) fp32
  float *h1, *h2, *hw;        // host (M, N), (M, N), (nw)
  uint16_t *hc;               // host (nw)
  char *err;
  size_t len;
};

// matmul_fwd of w and of its twin w2: 0 when bitwise equal (want_same) or different (!want_same)
int products(wtest &t, const float *w, const float *w2, int want_same, const char *what) {
  t.op->matmul_fwd(t.be, t.out, SD_F32, t.inp, SD_F32, w, NULL, t.M, t.K, t.N);
  t.op->to_host(t.be, t.h1, t.out, 4 * t.no);
  t.op->matmul_fwd(t.be, t.out, SD_F32, t.inp, SD_F32, w2, NULL, t.M, t.K, t.N);
  t.op->to_host(t.be, t.h2, t.out, 4 * t.no);
  size_t k = 0;
  while (k < t.no && !memcmp(&t.h1[k], &t.h2[k], 4)) k++;
  if ((k == t.no) == (want_same != 0)) return 0;
  if (want_same)
    snprintf(t.err, t.len, "%s: matmul with the registered weight gives %.9g at %zu, "
             "per-call rounding %.9g", what, t.h1[k], k, t.h2[k]);
  else
    snprintf(t.err, t.len, "%s: a write that bypassed the ops was already seen (no copy used?)",
             what);
  return -1;
}

// w (n) registered: its copy fresh and equal to bf16 of w; 0 when so
int copy_exact(wtest &t, const float *w, size_t n, const char *what) {
  int stale = -1;
  const void *c = sd_cuda_weights_peek(t.be, w, n, &stale);
  if (!c || stale) {
    snprintf(t.err, t.len, "%s: %s", what, c ? "the copy is stale" : "no bf16 copy");
    return -1;
  }
  t.op->to_host(t.be, t.hw, w, 4 * n);
  SD_CUDA_CHECK(cudaMemcpy(t.hc, c, 2 * n, cudaMemcpyDeviceToHost));
  for (size_t i = 0; i < n; i++)
    if (t.hc[i] != rne(t.hw[i])) {
      snprintf(t.err, t.len, "%s: the copy at %zu is 0x%04x, bf16 of %.9g is 0x%04x", what, i,
               t.hc[i], t.hw[i], rne(t.hw[i]));
      return -1;
    }
  return 0;
}

int expect_stale(wtest &t, const float *w, size_t n, const char *what) {
  int stale = 0;
  if (sd_cuda_weights_peek(t.be, w, n, &stale) && stale) return 0;
  snprintf(t.err, t.len, "%s: the copy is not marked stale", what);
  return -1;
}

}  // namespace

extern "C" int sd_cuda_weights_selftest(sd_backend *be, char *err, size_t len) {
  sd_cuda_state *st = sd_cuda_st(be);
  const int saved = st->precision;
  st->precision = SD_PREC_BF16;
  wtest t;
  t.be = be;
  t.op = be->ops;
  t.M = 40, t.K = 96, t.N = 72;
  t.nw = (size_t)t.N * t.K, t.ni = (size_t)t.M * t.K, t.no = (size_t)t.M * t.N;
  t.err = err, t.len = len;
  const sd_ops *op = t.op;
  const size_t nw = t.nw, ni = t.ni, no = t.no;
  uint64_t seed = 0x5EEDB16ull;
  float *hi = (float *)malloc(4 * ni), *hg = (float *)malloc(4 * nw);
  float *hv = (float *)malloc(4 * nw), *hs = (float *)malloc(4 * nw);
  t.h1 = (float *)malloc(4 * no), t.h2 = (float *)malloc(4 * no);
  t.hw = (float *)malloc(4 * nw);
  t.hc = (uint16_t *)malloc(2 * nw);
  fill(hi, ni, seed, 1.0f);
  fill(hg, nw, seed, 0.01f);
  fill(hs, nw, seed, 0.5f);
  for (size_t i = 0; i < nw; i++) hv[i] = 1e-6f * (1.0f + (float)(i % 7));
  // registered: w (student), e1 (teacher), e2 (a second EMA); their unregistered twins
  float *w = (float *)op->alloc(be, 4 * nw), *e1 = (float *)op->alloc(be, 4 * nw);
  float *e2 = (float *)op->alloc(be, 4 * nw);
  float *w_t = (float *)op->alloc(be, 4 * nw), *e1_t = (float *)op->alloc(be, 4 * nw);
  float *e2_t = (float *)op->alloc(be, 4 * nw);
  float *g = (float *)op->alloc(be, 4 * nw), *gate = (float *)op->alloc(be, 8);
  float *m = (float *)op->alloc(be, 4 * nw), *v = (float *)op->alloc(be, 4 * nw);
  float *m_t = (float *)op->alloc(be, 4 * nw), *v_t = (float *)op->alloc(be, 4 * nw);
  t.inp = (float *)op->alloc(be, 4 * ni), t.out = (float *)op->alloc(be, 4 * no);
  float *big = (float *)op->alloc(be, 4 * ni);  // (M, K) dinp / (M, N) GELU outputs
  float *big2 = (float *)op->alloc(be, 4 * ni), *pre = (float *)op->alloc(be, 4 * no);
  float *pairs[3][2] = {{w, w_t}, {e1, e1_t}, {e2, e2_t}};
  for (int k = 0; k < 3; k++) {
    fill(t.hw, nw, seed, 0.5f);
    op->to_device(be, pairs[k][0], t.hw, 4 * nw);
    op->to_device(be, pairs[k][1], t.hw, 4 * nw);
  }
  op->to_device(be, t.inp, hi, 4 * ni);
  op->to_device(be, g, hg, 4 * nw);
  const float shut[2] = {0.0f, 1.0f};
  op->to_device(be, gate, shut, 8);
  op->memset(be, m, 0, 4 * nw), op->memset(be, m_t, 0, 4 * nw);
  op->to_device(be, v, hv, 4 * nw), op->to_device(be, v_t, hv, 4 * nw);
  op->weights_register(be, w, nw);
  op->weights_register(be, e1, nw);
  op->weights_register(be, e2, nw);
  int rc = 0;
  // 1. the three look-up sites (matmul_fwd for every region: each is refreshed once here)
  for (int k = 0; k < 3 && !rc; k++) rc = products(t, pairs[k][0], pairs[k][1], 1, "matmul_fwd");
  if (!rc) {
    float *res[2] = {big, big2};
    float *pw[2] = {w, w_t};
    for (int k = 0; k < 2; k++)
      op->matmul_bwd(be, res[k], NULL, NULL, t.out, SD_F32, t.inp, SD_F32, pw[k], t.M, t.K,
                     t.N, 0);
    op->to_host(be, hi, big, 4 * ni);
    op->to_host(be, hg, big2, 4 * ni);
    if (memcmp(hi, hg, 4 * ni)) {
      snprintf(err, len, "matmul_bwd: dinp with the registered weight differs");
      rc = -1;
    }
  }
  if (!rc) {
    float *res[2] = {big, big2};
    float *pw[2] = {w, w_t};
    for (int k = 0; k < 2; k++) {
      op->matmul_gelu_fwd(be, res[k], pre, t.inp, SD_F32, pw[k], NULL, t.M, t.K, t.N);
      op->to_host(be, k ? t.h2 : t.h1, res[k], 4 * no);
    }
    if (memcmp(t.h1, t.h2, 4 * no)) {
      snprintf(err, len, "matmul_gelu_fwd: the registered weight gives another result");
      rc = -1;
    }
  }
  // 2. AdamW writes the copies in the same pass; the twins get the same updates
  const float lr = 1e-2f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.01f;
  struct {
    const char *what;
    size_t off, n;
    int emas;            // 0: plain adamw, 1: ema1 only, 2: both
    const float *gate;
  } upd[] = {{"adamw_ema with two EMAs", 0, nw, 2, NULL},
             {"adamw_ema with one EMA", 0, nw, 1, NULL},
             {"adamw", 0, nw, 0, NULL},
             {"adamw_ema with a shut gate", 0, nw, 2, gate},
             {"adamw_ema on a sub-range at offset 3 (scalar path)", 3, nw - 8, 2, NULL}};
  for (size_t u = 0; u < sizeof upd / sizeof upd[0] && !rc; u++) {
    for (int k = 0; k < 2; k++) {  // registered, then the twins
      float *pw = pairs[0][k] + upd[u].off, *pe1 = pairs[1][k] + upd[u].off;
      float *pe2 = pairs[2][k] + upd[u].off;
      float *pm = (k ? m_t : m) + upd[u].off, *pv = (k ? v_t : v) + upd[u].off;
      if (upd[u].emas == 0)
        op->adamw(be, pw, g + upd[u].off, pm, pv, upd[u].n, lr, b1, b2, eps, wd, 5, 1.0f);
      else
        op->adamw_ema(be, pw, g + upd[u].off, pm, pv, upd[u].n, lr, b1, b2, eps, wd, 5, 1.0f,
                      pe1, 0.99f, upd[u].emas == 2 ? pe2 : NULL, 0.999f, upd[u].gate);
    }
    for (int k = 0; k < 3 && !rc; k++) rc = copy_exact(t, pairs[k][0], nw, upd[u].what);
    for (int k = 0; k < 3 && !rc; k++) rc = products(t, pairs[k][0], pairs[k][1], 1, upd[u].what);
  }
  // 3. to_device marks stale; the next matmul refreshes
  if (!rc) {
    fill(t.hw, nw, seed, 0.5f);
    op->to_device(be, w, t.hw, 4 * nw);
    op->to_device(be, w_t, t.hw, 4 * nw);
    rc = expect_stale(t, w, nw, "to_device");
    if (!rc) rc = products(t, w, w_t, 1, "after to_device");
    if (!rc) rc = copy_exact(t, w, nw, "the refresh after to_device");
  }
  // 4. a compute op writing into the weights (rows scaled by s): marked by the guard
  if (!rc) {
    float *sv = g;  // (N) scales
    op->to_device(be, sv, hs, 4 * (size_t)t.N);
    op->scale_rows(be, w, w, sv, t.N, (size_t)t.K);
    op->scale_rows(be, w_t, w_t, sv, t.N, (size_t)t.K);
    rc = expect_stale(t, w, nw, "scale_rows into registered weights");
    if (!rc) rc = products(t, w, w_t, 1, "after scale_rows");
  }
  // 5. a write bypassing the ops: unseen until weights_changed
  if (!rc) {
    fill(t.hw, nw, seed, 0.5f);
    sd_cuda_weights_test_write(be, w, t.hw, 4 * nw);
    sd_cuda_weights_test_write(be, w_t, t.hw, 4 * nw);
    rc = products(t, w, w_t, 0, "before weights_changed");
    if (!rc) {
      op->weights_changed(be, w, nw);
      rc = expect_stale(t, w, nw, "weights_changed");
    }
    if (!rc) rc = products(t, w, w_t, 1, "after weights_changed");
  }
  float *bufs[] = {w, e1, e2, w_t, e1_t, e2_t, g, gate, m, v, m_t, v_t, t.inp, t.out, big,
                   big2, pre};
  for (float *b : bufs) op->free(be, b);
  if (!rc && sd_cuda_weights_peek(be, w, nw, NULL)) {
    snprintf(err, len, "ops->free left the region of a freed buffer registered");
    rc = -1;
  }
  free(hi), free(hg), free(hv), free(hs), free(t.h1), free(t.h2), free(t.hw), free(t.hc);
  st->precision = saved;
  if (!rc && err && len) err[0] = 0;
  return rc;
}
