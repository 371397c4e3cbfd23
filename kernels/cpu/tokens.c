// CPU token gather (keep the visible tokens of each sample) and its backward, scatter-add.
#include "cpu_ops.h"

#include <string.h>

void sd_cpu_gather_tokens(sd_backend *be, float *out, const float *x, const int32_t *idx,
                          int B, int T, int Tk, int D) {
  (void)be;
#pragma omp parallel for schedule(static)
  for (long bk = 0; bk < (long)B * Tk; bk++) {
    long b = bk / Tk;
    memcpy(out + bk * D, x + (b * T + idx[bk]) * D, sizeof(float) * (size_t)D);
  }
}

void sd_cpu_scatter_add_tokens(sd_backend *be, float *x, const float *sub, const int32_t *idx,
                               int B, int T, int Tk, int D) {
  (void)be;
  // parallel over samples; inside a sample, in index order (repeated indices add in order)
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; b++)
    for (int k = 0; k < Tk; k++) {
      float *dst = x + ((size_t)b * T + idx[(size_t)b * Tk + k]) * D;
      const float *src = sub + ((size_t)b * Tk + k) * D;
      for (int d = 0; d < D; d++) dst[d] += src[d];
    }
}
