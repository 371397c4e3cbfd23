// CPU gated residual (x + gate * y, the adaLN-Zero update), forward and backward.
#include "cpu_ops.h"
#include "storage.h"

void sd_cpu_gated_residual_fwd(sd_backend *be, float *out, const float *x, const void *y_any,
                               sd_dtype y_t, const float *gate, int gate_stride, int B, int T,
                               int D) {
  (void)be;
  const float *y = sd_cpu_load(y_any, y_t, (size_t)B * T * D);  // (B, T, D)
#pragma omp parallel for schedule(static)
  for (long r = 0; r < (long)B * T; r++) {
    const float *g = gate + (size_t)(r / T) * gate_stride;
    for (int d = 0; d < D; d++) out[r * D + d] = x[r * D + d] + g[d] * y[r * D + d];
  }
  sd_cpu_unload(y_any, y);
}

void sd_cpu_gated_residual_bwd(sd_backend *be, float *dy, float *dgate, const float *dout,
                               const void *y_any, sd_dtype y_t, const float *gate,
                               int gate_stride, int B, int T, int D) {
  (void)be;
  const float *y = dgate ? sd_cpu_load(y_any, y_t, (size_t)B * T * D) : NULL;  // (B, T, D)
  if (dy) {
#pragma omp parallel for schedule(static)
    for (long r = 0; r < (long)B * T; r++) {
      const float *g = gate + (size_t)(r / T) * gate_stride;
      for (int d = 0; d < D; d++) dy[r * D + d] = dout[r * D + d] * g[d];
    }
  }
  if (dgate) {
    enum { DB = 32 };
    int dblocks = (D + DB - 1) / DB;
#pragma omp parallel for schedule(static)
    for (int job = 0; job < B * dblocks; job++) {
      int b = job / dblocks, d0 = (job % dblocks) * DB, d1 = d0 + DB < D ? d0 + DB : D;
      float acc[DB] = {0};
      for (int t = 0; t < T; t++) {
        size_t r = (size_t)b * T + t;
        for (int d = d0; d < d1; d++) acc[d - d0] += dout[r * D + d] * y[r * D + d];
      }
      for (int d = d0; d < d1; d++) dgate[(size_t)b * gate_stride + d] += acc[d - d0];
    }
  }
  sd_cpu_unload(y_any, y);
}
