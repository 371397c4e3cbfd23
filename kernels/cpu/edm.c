// CPU EDM ops: noisy pair members, per-sample scaling (preconditioning), and the denoiser
// output with the lambda(sigma)-weighted MSE loss.
#include "cpu_ops.h"

void sd_cpu_add_scaled_rows(sd_backend *be, float *out, const float *x0, const float *eps,
                            const float *sigma, int B, size_t n) {
  (void)be;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; b++)
    for (size_t i = 0; i < n; i++) out[b * n + i] = x0[b * n + i] + sigma[b] * eps[b * n + i];
}

void sd_cpu_scale_rows(sd_backend *be, float *out, const float *x, const float *s, int B,
                       size_t n) {
  (void)be;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; b++)
    for (size_t i = 0; i < n; i++) out[b * n + i] = s[b] * x[b * n + i];
}

void sd_cpu_edm_loss_fwd(sd_backend *be, float *loss, float *D, const float *F, const float *x,
                         const float *x0, const float *c_skip, const float *c_out,
                         const float *weight, const float *mask, int B, size_t n) {
  (void)be;
  double total = 0.0;
  for (int b = 0; b < B; b++) {  // serial over samples: thread-count independent
    double s = 0.0, cnt = 0.0;
    for (size_t i = 0; i < n; i++) {
      size_t j = b * n + i;
      D[j] = c_skip[b] * x[j] + c_out[b] * F[j];
      double m = mask ? mask[j] : 1.0;
      double e = (double)D[j] - (double)x0[j];
      s += m * e * e;
      cnt += m;
    }
    total += cnt > 0 ? weight[b] * s / cnt : 0.0;
  }
  loss[0] = (float)(total / B);
}

void sd_cpu_edm_loss_bwd(sd_backend *be, float *dF, const float *D, const float *x0,
                         const float *c_out, const float *weight, const float *mask, int B,
                         size_t n, float scale) {
  (void)be;
  for (int b = 0; b < B; b++) {
    double cnt = 0.0;
    if (mask)
      for (size_t i = 0; i < n; i++) cnt += mask[b * n + i];
    else
      cnt = (double)n;
    float k = cnt > 0 ? (float)(2.0 * scale * c_out[b] * weight[b] / (B * cnt)) : 0.0f;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
      size_t j = b * n + i;
      dF[j] = k * (mask ? mask[j] : 1.0f) * (D[j] - x0[j]);
    }
  }
}
