// CPU ops of the SD-DiT projection head and discriminative loss: row L2 normalisation,
// centred/sharpened teacher softmax cross-entropy, column sums (for the center), and the
// decoder-input merge of encoder outputs into the student's token sequence.
#include "cpu_ops.h"
#include "fast_math.h"

#include <math.h>
#include <string.h>

#define L2_EPS 1e-12f

void sd_cpu_l2norm_rows_fwd(sd_backend *be, float *out, float *norms, const float *x, int N,
                            int d) {
  (void)be;
#pragma omp parallel for schedule(static)
  for (int r = 0; r < N; r++) {
    const float *xr = x + (size_t)r * d;
    double s = 0.0;
    for (int k = 0; k < d; k++) s += (double)xr[k] * xr[k];
    float nrm = (float)sqrt(s);
    float inv = 1.0f / (nrm > L2_EPS ? nrm : L2_EPS);
    for (int k = 0; k < d; k++) out[(size_t)r * d + k] = xr[k] * inv;
    norms[r] = nrm;
  }
}

void sd_cpu_l2norm_rows_bwd(sd_backend *be, float *dx, const float *dout, const float *out,
                            const float *norms, int N, int d) {
  (void)be;
#pragma omp parallel for schedule(static)
  for (int r = 0; r < N; r++) {
    const float *g = dout + (size_t)r * d, *o = out + (size_t)r * d;
    float dot = 0.0f;
    for (int k = 0; k < d; k++) dot += g[k] * o[k];
    float inv = 1.0f / (norms[r] > L2_EPS ? norms[r] : L2_EPS);
    if (norms[r] <= L2_EPS) dot = 0.0f;  // clamped: out = x / eps is linear in x
    for (int k = 0; k < d; k++) dx[(size_t)r * d + k] = (g[k] - o[k] * dot) * inv;
  }
}

// Writes softmax(scale * (z - shift)) of one row into p; returns log of its normaliser
// relative to the row max (so log_softmax = scale*(z-shift) - max - returned value).
static float row_softmax(float *p, const float *z, const float *shift, float scale, int P,
                         float *mx_out) {
  float mx = -INFINITY;
  for (int k = 0; k < P; k++) {
    float v = scale * (z[k] - (shift ? shift[k] : 0.0f));
    mx = v > mx ? v : mx;
  }
  float sum = 0.0f;
  for (int k = 0; k < P; k++) {
    p[k] = sd_expf(scale * (z[k] - (shift ? shift[k] : 0.0f)) - mx);
    sum += p[k];
  }
  float inv = 1.0f / sum;
  for (int k = 0; k < P; k++) p[k] *= inv;
  *mx_out = mx;
  return logf(sum);
}

void sd_cpu_dino_loss_fwd(sd_backend *be, float *loss, float *pt, const float *z_s,
                          const float *z_t, const float *center, float tau_s, float tau_t,
                          int N, int P) {
  double *rows = sd_cpu_workspace(be, sizeof(double) * (size_t)N);
#pragma omp parallel for schedule(static)
  for (int r = 0; r < N; r++) {
    float *p = pt + (size_t)r * P;
    float mx_t, mx_s;
    row_softmax(p, z_t + (size_t)r * P, center, 1.0f / tau_t, P, &mx_t);
    // log_softmax(z_s / tau_s)[k] = z_s[k]/tau_s - mx_s - lse_s
    const float *zs = z_s + (size_t)r * P;
    mx_s = -INFINITY;
    for (int k = 0; k < P; k++) mx_s = zs[k] / tau_s > mx_s ? zs[k] / tau_s : mx_s;
    double sum = 0.0;
    for (int k = 0; k < P; k++) sum += exp((double)(zs[k] / tau_s - mx_s));
    double lse = mx_s + log(sum);
    double ce = 0.0;
    for (int k = 0; k < P; k++) ce -= (double)p[k] * ((double)zs[k] / tau_s - lse);
    rows[r] = ce;
  }
  double s = 0.0;
  for (int r = 0; r < N; r++) s += rows[r];
  loss[0] = (float)(s / N);
}

void sd_cpu_dino_loss_bwd(sd_backend *be, float *dz_s, const float *z_s, const float *pt,
                          float tau_s, int N, int P, float scale) {
  (void)be;
  const float k0 = scale / (tau_s * (float)N);
#pragma omp parallel for schedule(static)
  for (int r = 0; r < N; r++) {
    float mx;
    float *d = dz_s + (size_t)r * P;
    row_softmax(d, z_s + (size_t)r * P, NULL, 1.0f / tau_s, P, &mx);
    const float *p = pt + (size_t)r * P;
    for (int k = 0; k < P; k++) d[k] = k0 * (d[k] - p[k]);
  }
}

void sd_cpu_sum_rows(sd_backend *be, float *out, const float *x, int N, int P) {
  (void)be;
#pragma omp parallel for schedule(static)
  for (int k = 0; k < P; k++) {
    double s = 0.0;
    for (int r = 0; r < N; r++) s += x[(size_t)r * P + k];
    out[k] = (float)s;
  }
}

void sd_cpu_merge_tokens_fwd(sd_backend *be, float *out, const float *base, const float *sub,
                             const int32_t *idx, int B, int T, int Tk, int D) {
  (void)be;
  if (out != base) memcpy(out, base, sizeof(float) * (size_t)B * T * D);
#pragma omp parallel for schedule(static)
  for (long bk = 0; bk < (long)B * Tk; bk++) {
    long b = bk / Tk;
    memcpy(out + (b * T + idx[bk]) * D, sub + bk * D, sizeof(float) * (size_t)D);
  }
}

void sd_cpu_merge_tokens_bwd(sd_backend *be, float *dbase, float *dsub, const float *dout,
                             const int32_t *idx, int B, int T, int Tk, int D) {
  (void)be;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; b++) {
    // rows of sample b: the listed ones go to dsub, the others add into dbase
    for (int t = 0; t < T; t++) {
      int listed = -1;
      for (int k = 0; k < Tk; k++)
        if (idx[(size_t)b * Tk + k] == t) listed = k;
      const float *g = dout + ((size_t)b * T + t) * D;
      if (listed >= 0) {
        if (dsub) memcpy(dsub + ((size_t)b * Tk + listed) * D, g, sizeof(float) * (size_t)D);
      } else if (dbase) {
        float *o = dbase + ((size_t)b * T + t) * D;
        for (int d = 0; d < D; d++) o[d] += g[d];
      }
    }
  }
}
