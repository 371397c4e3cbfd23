// CPU optimizer and moving averages: AdamW (bias-corrected, decoupled weight decay), alone or
// with up to two EMAs of the updated weights in the same pass, and EMA.
#include "cpu_ops.h"

#include <math.h>

void sd_cpu_adamw_ema(sd_backend *be, float *p, const float *g, float *m, float *v, size_t n,
                      float lr, float beta1, float beta2, float eps, float wd, long t,
                      float grad_scale, float *ema1, float decay1, float *ema2, float decay2,
                      const float *gate) {
  (void)be;
  if (gate) {
    if (!(gate[0] > 0.0f)) return;  // a skipped step
    grad_scale *= gate[0];
  }
  const float bc1 = 1.0f - powf(beta1, (float)t), bc2 = 1.0f - powf(beta2, (float)t);
  const int k = (ema1 != NULL) + 2 * (ema2 != NULL);
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; i++) {
    float gi = g[i] * grad_scale;
    m[i] = beta1 * m[i] + (1.0f - beta1) * gi;
    v[i] = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    float mhat = m[i] / bc1, vhat = v[i] / bc2;
    p[i] -= lr * (mhat / (sqrtf(vhat) + eps) + wd * p[i]);
    if (k & 1) ema1[i] = decay1 * ema1[i] + (1.0f - decay1) * p[i];
    if (k & 2) ema2[i] = decay2 * ema2[i] + (1.0f - decay2) * p[i];
  }
}

void sd_cpu_adamw(sd_backend *be, float *p, const float *g, float *m, float *v, size_t n,
                  float lr, float beta1, float beta2, float eps, float wd, long t,
                  float grad_scale) {
  sd_cpu_adamw_ema(be, p, g, m, v, n, lr, beta1, beta2, eps, wd, t, grad_scale, NULL, 0.0f,
                   NULL, 0.0f, NULL);
}

void sd_cpu_ema(sd_backend *be, float *dst, const float *src, size_t n, float decay) {
  (void)be;
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; i++) dst[i] = decay * dst[i] + (1.0f - decay) * src[i];
}

void sd_cpu_axpy(sd_backend *be, float *y, const float *x, size_t n, float a) {
  (void)be;
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; i++) y[i] += a * x[i];
}
