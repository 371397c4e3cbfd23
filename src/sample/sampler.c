// The EDM sampler (see sampler.h).
#include "sample/sampler.h"
#include "error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sd_sampler_opts_default(sd_sampler_opts *o, int num_classes, size_t n) {
  memset(o, 0, sizeof *o);
  o->steps = 40;
  o->smin = 0.002f;
  o->smax = 80.0f;
  o->rho = 7.0f;
  o->heun = 1;
  o->guidance = 1.5f;
  o->null_class = num_classes;
  o->elements = n;
}

int sd_sampler_opts_check(const sd_sampler_opts *o, char *err, size_t errlen) {
  if (o->steps < 1) return sd_errorf(err, errlen, "steps %d must be at least 1", o->steps);
  if (!(o->smin > 0.0f) || !isfinite(o->smin))
    return sd_errorf(err, errlen, "sigma_min %g must be positive", o->smin);
  if (!(o->smax >= o->smin) || !isfinite(o->smax))
    return sd_errorf(err, errlen, "sigma_max %g must be finite and at least sigma_min %g",
                     o->smax, o->smin);
  if (!(o->rho > 0.0f) || !isfinite(o->rho))
    return sd_errorf(err, errlen, "rho %g must be positive", o->rho);
  if (!isfinite(o->guidance))
    return sd_errorf(err, errlen, "guidance %g must be finite", o->guidance);
  if (o->elements == 0) return sd_errorf(err, errlen, "elements per sample must be positive");
  return 0;
}

void sd_edm_sigmas(int N, float smin, float smax, float rho, float *sig) {
  const double r = rho, a = pow((double)smax, 1.0 / r), b = pow((double)smin, 1.0 / r);
  for (int i = 0; i < N; i++) {
    double f = N > 1 ? (double)i / (double)(N - 1) : 0.0;
    sig[i] = (float)pow(a + f * (b - a), r);
  }
  sig[N] = 0.0f;
}

sd_edm_coef sd_edm_precondition(double x, double sd) {
  sd_edm_coef c;
  c.c_skip = (float)(sd * sd / (x * x + sd * sd));
  c.c_out = (float)(x * sd / sqrt(x * x + sd * sd));
  c.c_in = (float)(1.0 / sqrt(x * x + sd * sd));
  c.c_noise = (float)(log(x) / 4.0);
  c.weight = (float)((x * x + sd * sd) / ((x * sd) * (x * sd)));
  return c;
}

long sd_edm_evaluations(const sd_sampler_opts *o) {
  long per = o->heun ? 2L * o->steps - 1 : (long)o->steps;
  return o->guidance == 1.0f ? per : 2 * per;
}

typedef struct work {
  const sd_sampler_opts *o;
  sd_denoise_fn fn;
  void *ctx;
  int B;
  size_t n;
  const int32_t *y;
  float *xf;       // (2B, n) the state as float for the denoiser
  float *Df;       // (2B, n) denoiser output
  float *sig;      // (2B)
  int32_t *yy;     // (2B) labels, then the null class
} work;

// Dd (B, n) = the guided denoiser at state x (B, n) and noise level t.
static void guided(work *w, const double *x, float t, double *Dd) {
  const size_t n = w->n, Bn = (size_t)w->B * n;
  const int B = w->B;
  const double s = w->o->guidance;
  const int cfg = w->o->guidance != 1.0f;
  for (size_t j = 0; j < Bn; j++) w->xf[j] = (float)x[j];
  for (int b = 0; b < B; b++) w->sig[b] = t;
  if (!cfg) {
    w->fn(w->ctx, w->xf, w->sig, w->y, B, w->Df);
    for (size_t j = 0; j < Bn; j++) Dd[j] = w->Df[j];
    return;
  }
  memcpy(w->xf + Bn, w->xf, sizeof(float) * Bn);
  for (int b = 0; b < B; b++) {
    w->sig[B + b] = t;
    w->yy[b] = w->y[b];
    w->yy[B + b] = w->o->null_class;
  }
  w->fn(w->ctx, w->xf, w->sig, w->yy, 2 * B, w->Df);
  const float *Dc = w->Df, *Du = w->Df + Bn;
  for (size_t j = 0; j < Bn; j++) Dd[j] = (double)Du[j] + s * ((double)Dc[j] - (double)Du[j]);
}

void sd_edm_sample(const sd_sampler_opts *o, sd_denoise_fn fn, void *ctx, int B,
                   const int32_t *y, const float *noise, float *x_out) {
  char err[256];
  if (sd_sampler_opts_check(o, err, sizeof err) != 0) SD_FATAL("sampler: %s", err);
  if (B <= 0) return;
  const int N = o->steps;
  const size_t n = o->elements, Bn = (size_t)B * n;
  float *sig = sd_xmalloc(sizeof(float) * (size_t)(N + 1), "sigma schedule");
  sd_edm_sigmas(N, o->smin, o->smax, o->rho, sig);
  work w = {.o = o, .fn = fn, .ctx = ctx, .B = B, .n = n, .y = y};
  w.xf = sd_xmalloc(sizeof(float) * 2 * Bn, "sampler state (float)");
  w.Df = sd_xmalloc(sizeof(float) * 2 * Bn, "denoiser output");
  w.sig = sd_xmalloc(sizeof(float) * 2 * (size_t)B, "sampler sigmas");
  w.yy = sd_xmalloc(sizeof(int32_t) * 2 * (size_t)B, "sampler labels");
  double *x = sd_xmalloc(sizeof(double) * Bn, "sampler state");
  double *xn = sd_xmalloc(sizeof(double) * Bn, "sampler next state");
  double *d = sd_xmalloc(sizeof(double) * Bn, "sampler slope");
  double *Dd = sd_xmalloc(sizeof(double) * Bn, "guided denoiser output");
  for (size_t j = 0; j < Bn; j++) x[j] = (double)noise[j] * (double)sig[0];
  for (int i = 0; i < N; i++) {
    const double tc = sig[i], tn = sig[i + 1];
    guided(&w, x, sig[i], Dd);
    for (size_t j = 0; j < Bn; j++) {
      d[j] = (x[j] - Dd[j]) / tc;
      xn[j] = x[j] + (tn - tc) * d[j];
    }
    if (o->heun && i < N - 1) {  // second-order correction (never towards sigma_N = 0)
      guided(&w, xn, sig[i + 1], Dd);
      for (size_t j = 0; j < Bn; j++) {
        double d2 = (xn[j] - Dd[j]) / tn;
        xn[j] = x[j] + (tn - tc) * (0.5 * d[j] + 0.5 * d2);
      }
    }
    double *t = x;
    x = xn;
    xn = t;
  }
  for (size_t j = 0; j < Bn; j++) x_out[j] = (float)x[j];
  free(sig);
  free(w.xf);
  free(w.Df);
  free(w.sig);
  free(w.yy);
  free(x);
  free(xn);
  free(d);
  free(Dd);
}
