// CPU conditioning ops: sinusoidal timestep features, label-table rows (gather and
// scatter-add), and broadcast row addition (position table, biases).
#include "cpu_ops.h"
#include "error.h"

#include <math.h>

void sd_cpu_timestep_features(sd_backend *be, float *feat, const float *t, int B, int F,
                              float max_period) {
  (void)be;
  const int half = F / 2;
  for (int b = 0; b < B; b++)
    for (int k = 0; k < half; k++) {
      // frequencies and arguments in double, as the reference computes them
      double f = exp(-log((double)max_period) * (double)k / (double)half);
      double a = (double)t[b] * f;
      feat[(size_t)b * F + k] = (float)cos(a);
      feat[(size_t)b * F + half + k] = (float)sin(a);
    }
}

void sd_cpu_embed_rows_fwd(sd_backend *be, float *out, const float *table, const int32_t *y,
                           int B, int D, int rows) {
  (void)be;
  for (int b = 0; b < B; b++) {
    if (y[b] < 0 || y[b] >= rows)
      SD_FATAL("label %d of sample %d is outside [0, %d)", y[b], b, rows);
    const float *src = table + (size_t)y[b] * D;
    for (int d = 0; d < D; d++) out[(size_t)b * D + d] += src[d];
  }
}

void sd_cpu_embed_rows_bwd(sd_backend *be, float *dtable, const float *dout, const int32_t *y,
                           int B, int D) {
  (void)be;
  for (int b = 0; b < B; b++)  // in sample order: deterministic when labels repeat
    for (int d = 0; d < D; d++) dtable[(size_t)y[b] * D + d] += dout[(size_t)b * D + d];
}

void sd_cpu_add_rows(sd_backend *be, float *x, const float *row, int B, int N) {
  (void)be;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; b++)
    for (int n = 0; n < N; n++) x[(size_t)b * N + n] += row[n];
}
