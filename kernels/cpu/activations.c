// CPU pointwise activations: GELU (tanh approximation) and SiLU, forward and backward.
#include "cpu_ops.h"

#include "fast_math.h"

#define GELU_K 0.7978845608028654f  // sqrt(2/pi)

void sd_cpu_gelu_fwd(sd_backend *be, float *out, const float *x, size_t n) {
  (void)be;
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; i++) {
    float v = x[i];
    out[i] = 0.5f * v * (1.0f + sd_tanhf(GELU_K * (v + 0.044715f * v * v * v)));
  }
}

void sd_cpu_gelu_bwd(sd_backend *be, float *dx, const float *dout, const float *x, size_t n) {
  (void)be;
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; i++) {
    float v = x[i];
    float u = GELU_K * (v + 0.044715f * v * v * v);
    float th = sd_tanhf(u);
    float du = GELU_K * (1.0f + 3.0f * 0.044715f * v * v);
    float g = 0.5f * (1.0f + th) + 0.5f * v * (1.0f - th * th) * du;
    dx[i] = dout[i] * g;
  }
}

void sd_cpu_silu_fwd(sd_backend *be, float *out, const float *x, size_t n) {
  (void)be;
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; i++) out[i] = x[i] / (1.0f + sd_expf(-x[i]));
}

void sd_cpu_silu_bwd(sd_backend *be, float *dx, const float *dout, const float *x, size_t n) {
  (void)be;
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; i++) {
    float s = 1.0f / (1.0f + sd_expf(-x[i]));
    dx[i] = dout[i] * s * (1.0f + x[i] * (1.0f - s));
  }
}
