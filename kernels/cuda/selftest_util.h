// Host-side helpers shared by the CUDA kernel files' self-checks (random inputs, the worst
// element of a comparison, device buffers freed at the end of a check). Self-checks only.
#ifndef SD_CUDA_SELFTEST_UTIL_H
#define SD_CUDA_SELFTEST_UTIL_H

#include "cuda_internal.h"

#include <cmath>
#include <cstdint>
#include <vector>

namespace {

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint32_t next() {  // xorshift64*
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return (uint32_t)((s * 0x2545F4914F6CDD1Dull) >> 32);
  }
  float uni(float lo, float hi) {
    return lo + (hi - lo) * (float)(next() >> 8) * (1.0f / 16777216.0f);
  }
  std::vector<float> vec(size_t n, float lo, float hi) {
    std::vector<float> v(n);
    for (auto &e : v) e = uni(lo, hi);
    return v;
  }
  // idx (B, Tk): Tk distinct tokens of [0, T) per sample, in random order
  std::vector<int32_t> subset(int B, int T, int Tk) {
    std::vector<int32_t> idx;
    for (int b = 0; b < B; b++) {
      std::vector<int32_t> perm(T);
      for (int t = 0; t < T; t++) perm[t] = t;
      for (int t = T - 1; t > 0; t--) {
        int j = (int)(next() % (uint32_t)(t + 1));
        int32_t tmp = perm[t];
        perm[t] = perm[j];
        perm[j] = tmp;
      }
      idx.insert(idx.end(), perm.begin(), perm.begin() + Tk);
    }
    return idx;
  }
};

// The worst element seen so far: error |gpu - cpu| / max(|cpu|, rms of the cpu array).
struct Worst {
  double err = 0.0;
  char what[160] = "none";
  void compare(const char *op, const std::vector<float> &gpu, const std::vector<float> &cpu) {
    double ss = 0.0;
    for (float c : cpu) ss += (double)c * c;
    double ref = cpu.empty() ? 1.0 : std::sqrt(ss / (double)cpu.size());
    if (!(ref > 0.0)) ref = 1e-30;
    for (size_t i = 0; i < cpu.size(); i++) {
      double g = gpu[i], c = cpu[i], e;
      if (g == c) continue;
      if (!std::isfinite(g) || !std::isfinite(c)) e = INFINITY;
      else e = std::fabs(g - c) / std::fmax(std::fabs(c), ref);
      if (!(e <= err)) {
        err = e;
        snprintf(what, sizeof what, "%s[%zu]: gpu %.9g cpu %.9g (rel %.3g)", op, i, g, c, e);
      }
    }
  }
};

struct DevPool {
  std::vector<void *> ptrs;
  cudaStream_t st;
  explicit DevPool(cudaStream_t s) : st(s) {}
  ~DevPool() {
    for (void *p : ptrs) cudaFree(p);
  }
  template <class E> E *up(const std::vector<E> &h) {
    void *p = NULL;
    SD_CUDA_CHECK(cudaMalloc(&p, (h.empty() ? 1 : h.size()) * sizeof(E)));
    ptrs.push_back(p);
    SD_CUDA_CHECK(cudaMemcpyAsync(p, h.data(), h.size() * sizeof(E), cudaMemcpyHostToDevice, st));
    return (E *)p;
  }
  std::vector<float> down(const float *d, size_t n) {
    std::vector<float> h(n);
    SD_CUDA_CHECK(cudaMemcpyAsync(h.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost, st));
    SD_CUDA_CHECK(cudaStreamSynchronize(st));
    return h;
  }
};

}  // namespace

#endif
