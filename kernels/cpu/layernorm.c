// CPU layer norm without affine, fused with adaLN modulate, forward and backward.
#include "cpu_ops.h"
#include "storage.h"

#include <math.h>

void sd_cpu_lnmod_fwd(sd_backend *be, void *out_any, sd_dtype out_t, float *mean, float *rstd,
                      const float *x, const float *shift, const float *scale, int mod_stride,
                      int B, int T, int D, float eps) {
  (void)be;
  float *out = sd_cpu_out(out_any, out_t, (size_t)B * T * D);  // (B, T, D)
#pragma omp parallel for schedule(static)
  for (long r = 0; r < (long)B * T; r++) {
    int b = (int)(r / T);
    const float *xr = x + r * D;
    const float *sh = shift + (size_t)b * mod_stride;
    const float *sc = scale + (size_t)b * mod_stride;
    float m = 0.0f;
    for (int d = 0; d < D; d++) m += xr[d];
    m /= (float)D;
    float v = 0.0f;
    for (int d = 0; d < D; d++) {
      float c = xr[d] - m;
      v += c * c;
    }
    v /= (float)D;
    float s = 1.0f / sqrtf(v + eps);
    float *o = out + r * D;
    for (int d = 0; d < D; d++) o[d] = (xr[d] - m) * s * (1.0f + sc[d]) + sh[d];
    mean[r] = m;
    rstd[r] = s;
  }
  sd_cpu_store(out_any, out_t, out, (size_t)B * T * D);
}

void sd_cpu_lnmod_bwd(sd_backend *be, float *dx, float *dshift, float *dscale,
                      const float *dout, const float *x, const float *mean, const float *rstd,
                      const float *scale, int mod_stride, int B, int T, int D) {
  (void)be;
  // dshift[b], dscale[b] (D each) += sums over t; split over (b, block of d) so every
  // element is summed over t in order (thread-count independent).
  enum { DB = 32 };
  int dblocks = (D + DB - 1) / DB;
#pragma omp parallel for schedule(static)
  for (int job = 0; job < B * dblocks; job++) {
    int b = job / dblocks, d0 = (job % dblocks) * DB, d1 = d0 + DB < D ? d0 + DB : D;
    float ash[DB] = {0}, asc[DB] = {0};
    for (int t = 0; t < T; t++) {
      size_t r = (size_t)b * T + t;
      const float *g = dout + r * D, *xr = x + r * D;
      float m = mean[r], s = rstd[r];
      for (int d = d0; d < d1; d++) {
        ash[d - d0] += g[d];
        asc[d - d0] += g[d] * (xr[d] - m) * s;
      }
    }
    for (int d = d0; d < d1; d++) {
      if (dshift) dshift[(size_t)b * mod_stride + d] += ash[d - d0];
      if (dscale) dscale[(size_t)b * mod_stride + d] += asc[d - d0];
    }
  }
  // dx (B, T, D) += rstd * (g' - mean(g') - xhat * mean(g' * xhat)), g' = dout * (1 + scale)
#pragma omp parallel for schedule(static)
  for (long r = 0; r < (long)B * T; r++) {
    int b = (int)(r / T);
    const float *g = dout + r * D, *xr = x + r * D;
    const float *sc = scale + (size_t)b * mod_stride;
    float m = mean[r], s = rstd[r];
    float sum_g = 0.0f, sum_gx = 0.0f;
    for (int d = 0; d < D; d++) {
      float gp = g[d] * (1.0f + sc[d]);
      sum_g += gp;
      sum_gx += gp * (xr[d] - m) * s;
    }
    sum_g /= (float)D;
    sum_gx /= (float)D;
    float *o = dx + r * D;
    for (int d = 0; d < D; d++) {
      float gp = g[d] * (1.0f + sc[d]);
      float xh = (xr[d] - m) * s;
      o[d] += s * (gp - sum_g - xh * sum_gx);
    }
  }
}
