// Activation storage on the CPU: widening bf16 inputs and rounding bf16 outputs (storage.h).
#include "storage.h"
#include "bf16.h"
#include "error.h"

#include <stdint.h>
#include <stdlib.h>

static float *heap_floats(size_t n, const char *what) {
  float *p = malloc(sizeof(float) * (n ? n : 1));
  if (!p) SD_FATAL("out of host memory for %zu floats (%s)", n, what);
  return p;
}

const float *sd_cpu_load(const void *x, sd_dtype t, size_t n) {
  if (t == SD_F32 || !x) return x;
  float *f = heap_floats(n, "bf16 activation widened to fp32");
  const uint16_t *h = x;
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) f[i] = sd_bf16_to_float(h[i]);
  return f;
}

void sd_cpu_unload(const void *x, const float *f32) {
  if (f32 && (const void *)f32 != x) free((void *)f32);
}

float *sd_cpu_out(void *out, sd_dtype t, size_t n) {
  if (t == SD_F32 || !out) return out;
  return heap_floats(n, "fp32 result before rounding to bf16");
}

void sd_cpu_store(void *out, sd_dtype t, float *f32, size_t n) {
  if (!f32 || (void *)f32 == out) return;
  if (t == SD_BF16) {
    uint16_t *h = out;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) h[i] = sd_bf16_from_float(f32[i]);
  }
  free(f32);
}
