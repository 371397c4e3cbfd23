// CPU losses and reductions: mean squared error and sum of squares (double accumulation).
#include "cpu_ops.h"

void sd_cpu_mse_fwd(sd_backend *be, float *loss, const float *a, const float *b, size_t n) {
  (void)be;
  double s = 0.0;
  for (size_t i = 0; i < n; i++) {  // serial: bitwise independent of the thread count
    double d = (double)a[i] - (double)b[i];
    s += d * d;
  }
  loss[0] = (float)(s / (double)n);
}

void sd_cpu_mse_bwd(sd_backend *be, float *da, const float *a, const float *b, size_t n,
                    float scale) {
  (void)be;
  const float k = 2.0f * scale / (float)n;
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) da[i] = k * (a[i] - b[i]);
}

void sd_cpu_sum_squares(sd_backend *be, float *out, const float *x, size_t n) {
  (void)be;
  // fixed 64 partial sums combined in order: deterministic for any thread count
  enum { P = 64 };
  double part[P] = {0};
  size_t chunk = (n + P - 1) / P;
#pragma omp parallel for schedule(static)
  for (int p = 0; p < P; p++) {
    size_t i0 = (size_t)p * chunk, i1 = i0 + chunk < n ? i0 + chunk : n;
    double s = 0.0;
    for (size_t i = i0; i < i1; i++) s += (double)x[i] * x[i];
    part[p] = s;
  }
  double s = 0.0;
  for (int p = 0; p < P; p++) s += part[p];
  out[0] = (float)s;
}
