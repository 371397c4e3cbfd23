// Vectorisable float exp and tanh for the CPU kernels (the libm versions are scalar calls
// and dominated the step time). exp: range reduction by ln 2 and a degree-6 polynomial,
// relative error below 2e-7 on [-87, 88]; tanh from exp. Plain C that the compiler turns
// into SIMD code inside `omp simd` loops.
#ifndef SD_FAST_MATH_H
#define SD_FAST_MATH_H

#include <stdint.h>
#include <string.h>

static inline float sd_expf(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  // n = round(x / ln 2): adding and removing 1.5 * 2^23 rounds to nearest (vectorises,
  // unlike roundf)
  float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693145751953125f;                  // ln 2, high part
  r = r - n * 1.428606765330187045e-06f;                 // ln 2, low part
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t bits = ((int32_t)n + 127) << 23;  // 2^n
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

static inline float sd_tanhf(float x) { return 1.0f - 2.0f / (sd_expf(2.0f * x) + 1.0f); }

#endif
