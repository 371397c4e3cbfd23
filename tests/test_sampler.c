// The EDM sampler and the checkpoint denoiser (src/sample/sampler.c, src/sample/denoiser.c), on the CPU:
//  1. the sigma schedule equals the EDM formula computed independently (long double), with
//     sigma_0 = smax, sigma_{N-1} = smin and sigma_N = 0 exactly;
//  2. with the closed-form ideal denoiser of x0 ~ N(mu, s^2) per element, Heun (40 steps) and
//     Euler (1000 steps) reproduce the exact probability-flow ODE map sample by sample and give
//     mean and std within SAMPLER_MOMENT_SES standard errors;
//     halving the steps divides the error by 4 (Heun) and 2 (Euler);
//  3. guidance: s = 1 equals an independent transcription of EDM's Algorithm 1 bitwise (and
//     never evaluates the null class), s = 0 equals the unconditional sampler bitwise, the CFG
//     formula holds on one step, a guided Heun run has the guided mean, and the number of
//     denoiser rows is sd_edm_evaluations;
//  4. the denoiser equals the training objective's D (sd_sddit_forward_backward with
//     mask_ratio 0) bitwise, and D = c_skip x + c_out F(c_in x) written out with sd_dit_forward;
//  5. checkpoints: the configuration text parses back to the same configuration; the weights
//     read from a checkpoint (ema, raw) are the saved ones; damaged files are refused.
// With arguments it is a helper of tests/test_sample_cli.sh:
//   test_sampler denoise-ref CONFIG.ini CKPT IN.h5 OUT.h5 ema|raw
// loads CKPT with the training code (sd_ckpt_load into an sd_sddit built from CONFIG.ini with
// mask_ratio 0) and writes the training step's D for IN's /x, /sigma, /labels as OUT's /D.
#include "check.h"
#include "ckpt/ckpt.h"
#include "config/config.h"
#include "sample/denoiser.h"
#include "error.h"
#include "util/h5io.h"
#include "sample/sampler.h"
#include "objective/sddit.h"
#include "objective/sddit_config.h"
#include "tolerances.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// ---- 1. sigma schedule ------------------------------------------------------------------------

static void test_sigmas(void) {
  const int Ns[] = {1, 2, 3, 18, 40, 256};
  const float smin = 0.002f, smax = 80.0f, rho = 7.0f;
  for (size_t k = 0; k < sizeof Ns / sizeof Ns[0]; k++) {
    const int N = Ns[k];
    float *sig = malloc(sizeof(float) * (N + 1)), *ref = malloc(sizeof(float) * (N + 1));
    for (int i = 0; i <= N; i++) sig[i] = NAN;
    sd_edm_sigmas(N, smin, smax, rho, sig);
    long double a = powl((long double)smax, 1.0L / rho), b = powl((long double)smin, 1.0L / rho);
    for (int i = 0; i < N; i++) {
      long double t = N > 1 ? (long double)i / (N - 1) : 0.0L;
      ref[i] = (float)powl(a + t * (b - a), (long double)rho);
    }
    ref[N] = 0.0f;
    double worst = 0;
    int mono = 1;
    for (int i = 0; i < N; i++) {
      double e = fabs((double)sig[i] - ref[i]) / ref[i];
      if (e > worst || !isfinite(e)) worst = isfinite(e) ? e : INFINITY;
      if (i > 0 && !(sig[i] < sig[i - 1])) mono = 0;
    }
    check_true(worst <= SAMPLER_SIGMA_RTOL,
               "N = %3d: sigmas vs the EDM formula in long double: max rel err %.2e (tol %.0e)",
               N, worst, SAMPLER_SIGMA_RTOL);
    check_true(sig[0] == smax && sig[N] == 0.0f && (N == 1 || sig[N - 1] == smin) && mono,
               "N = %3d: sigma_0 = %.9g (= smax), sigma_N-1 = %.9g (= smin), sigma_N = %g, "
               "strictly decreasing", N, sig[0], sig[N > 1 ? N - 1 : 0], sig[N]);
    free(sig);
    free(ref);
  }
}

// ---- 2. Gaussian data, ideal denoiser -----------------------------------------------------------

typedef struct gauss {
  int n;                 // elements per sample
  const double *mu;      // (K + 1, n): class means, row K = the null class
  const double *s;       // (n) data std per element
  long rows, null_rows;  // evaluations
  int K;
} gauss;

// D(x; sigma, y) = mu_y + (x - mu_y) s^2 / (s^2 + sigma^2): the exact posterior mean.
static void gauss_fn(void *ctx, const float *x, const float *sigma, const int32_t *y, int B,
                     float *D) {
  gauss *g = ctx;
  for (int b = 0; b < B; b++) {
    const double *mu = g->mu + (size_t)y[b] * g->n, sg = sigma[b];
    for (int e = 0; e < g->n; e++) {
      double s2 = g->s[e] * g->s[e];
      size_t j = (size_t)b * g->n + e;
      D[j] = (float)(mu[e] + ((double)x[j] - mu[e]) * s2 / (s2 + sg * sg));
    }
    g->null_rows += y[b] == g->K;
  }
  g->rows += B;
}

// The exact probability-flow ODE map of the ideal denoiser from sigma_0 to 0:
// x(0) = m + (x_T - m) s / sqrt(s^2 + sigma_0^2).
static double ode_exact(double xT, double m, double s, double s0) {
  return m + (xT - m) * s / sqrt(s * s + s0 * s0);
}

// Mean and std of element e of the samples (B, n), and the worst deviation from the exact map.
static void moments_check(const char *name, const float *x, const float *noise, int B, int n,
                          const double *m, const double *s, double s0, double ode_tol) {
  double worst_ode = 0;
  for (int e = 0; e < n; e++) {
    double sum = 0, sq = 0;
    for (int b = 0; b < B; b++) sum += x[(size_t)b * n + e];
    double mean = sum / B;
    for (int b = 0; b < B; b++) sq += (x[(size_t)b * n + e] - mean) * (x[(size_t)b * n + e] - mean);
    double sd = sqrt(sq / (B - 1));
    // x_T = noise * sigma_0 starts from N(0, sigma_0^2), not the true N(m, s^2 + sigma_0^2):
    // the exact ODE result then has mean m (1 - k) and std s0 k, k = s / sqrt(s^2 + s0^2)
    double k = s[e] / sqrt(s[e] * s[e] + s0 * s0);
    double want_mean = m[e] * (1 - k), want_sd = s0 * k;
    double se_mean = want_sd / sqrt(B), se_sd = want_sd / sqrt(2.0 * (B - 1));
    double zm = (mean - want_mean) / se_mean, zs = (sd - want_sd) / se_sd;
    check_true(fabs(zm) <= SAMPLER_MOMENT_SES && fabs(zs) <= SAMPLER_MOMENT_SES,
               "%s elem %d: mean %.5f (mu %.3f, ODE target %.5f, %+.2f SE), std %.5f (s %.3f, "
               "target %.5f, %+.2f SE)", name, e, mean, m[e], want_mean, zm, sd, s[e], want_sd,
               zs);
    for (int b = 0; b < B; b++) {
      double ex = ode_exact((double)noise[(size_t)b * n + e] * s0, m[e], s[e], s0);
      double d = fabs(x[(size_t)b * n + e] - ex) / s[e];
      if (d > worst_ode) worst_ode = d;
    }
  }
  check_true(worst_ode <= ode_tol,
             "%s: max |x - exact ODE map| / s over all samples = %.2e (tol %.0e)", name,
             worst_ode, ode_tol);
}

static void test_gaussian(void) {
  enum { B = 20000, n = 4, K = 3 };
  const double mu_c[(K + 1) * n] = {0.3, -1.0, 2.0, 0.0,    // class 0
                                    -0.5, 0.7, 1.0, 0.4,    // class 1
                                    1.2, 0.1, -2.0, -0.3,   // class 2
                                    0.0, 0.0, 0.0, 0.0};    // null class
  const double s[n] = {0.5, 1.0, 0.1, 2.0};
  float *noise = malloc(sizeof(float) * B * n), *x = malloc(sizeof(float) * B * n);
  int32_t *y = malloc(sizeof(int32_t) * B);
  fill_normal(noise, (size_t)B * n, 501, 1.0f);
  for (int b = 0; b < B; b++) y[b] = 0;
  gauss g = {.n = n, .mu = mu_c, .s = s, .K = K};
  sd_sampler_opts o;
  sd_sampler_opts_default(&o, K, n);
  o.guidance = 1.0f;
  sd_edm_sample(&o, gauss_fn, &g, B, y, noise, x);
  check_true(g.rows == (long)B * sd_edm_evaluations(&o) && g.rows == (long)B * 79,
             "Heun 40 steps: %ld denoiser rows = B x 79", g.rows);
  moments_check("Heun 40", x, noise, B, n, mu_c, s, o.smax, SAMPLER_HEUN40_ODE_TOL);
  o.heun = 0;
  o.steps = 1000;
  g.rows = 0;
  sd_edm_sample(&o, gauss_fn, &g, B, y, noise, x);
  check_true(g.rows == (long)B * 1000, "Euler 1000 steps: %ld denoiser rows = B x 1000", g.rows);
  moments_check("Euler 1000", x, noise, B, n, mu_c, s, o.smax, SAMPLER_EULER1000_ODE_TOL);

  // guided Heun: both branches share s, so D = m_g + (x - m_g) k with
  // m_g = mu_u + w (mu_c - mu_u): the samples have the guided mean
  const double w = 1.5;
  double mg[n];
  for (int e = 0; e < n; e++) mg[e] = mu_c[K * n + e] + w * (mu_c[e] - mu_c[K * n + e]);
  o.heun = 1;
  o.steps = 40;
  o.guidance = (float)w;
  g.rows = g.null_rows = 0;
  sd_edm_sample(&o, gauss_fn, &g, B, y, noise, x);
  check_true(g.rows == (long)B * sd_edm_evaluations(&o) && g.null_rows == (long)B * 79,
             "guided Heun 40: %ld rows (= B x %ld), %ld of them null-class", g.rows,
             sd_edm_evaluations(&o), g.null_rows);
  moments_check("guided Heun 40 (w 1.5)", x, noise, B, n, mg, s, o.smax,
                SAMPLER_HEUN40_ODE_TOL);
  free(noise);
  free(x);
  free(y);
}

// Order of convergence on one sample (s = 1, x_T = 2 sigma_0): halving the step size divides
// Heun's error by about 4 (second order) and Euler's by about 2 (first order).
static void test_order(void) {
  const double mu[2] = {0.3, 0.0}, s[1] = {1.0};
  gauss g = {.n = 1, .mu = mu, .s = s, .K = 1};
  const float z = 2.0f;
  const int32_t y = 0;
  for (int heun = 1; heun >= 0; heun--) {
    double err[3];
    for (int k = 0; k < 3; k++) {
      sd_sampler_opts o;
      sd_sampler_opts_default(&o, 1, 1);
      o.guidance = 1.0f;
      o.heun = heun;
      o.steps = 20 << k;
      float x;
      sd_edm_sample(&o, gauss_fn, &g, 1, &y, &z, &x);
      err[k] = fabs(x - ode_exact(z * 80.0, mu[0], s[0], 80.0));
    }
    double r1 = err[0] / err[1], r2 = err[1] / err[2], want = heun ? 4.0 : 2.0;
    check_true(fabs(r1 / want - 1) < 0.2 && fabs(r2 / want - 1) < 0.2,
               "%s: errors at 20, 40, 80 steps %.3e %.3e %.3e: ratios %.2f %.2f (order %d)",
               heun ? "Heun" : "Euler", err[0], err[1], err[2], r1, r2, heun ? 2 : 1);
  }
}

// ---- 3. guidance -------------------------------------------------------------------------------

// EDM Algorithm 1 (deterministic: S_churn = 0), transcribed independently of sampler.c.
static void reference_heun(int N, int heun, gauss *g, int B, const int32_t *y,
                           const float *noise, float *out) {
  const int n = g->n;
  float *t = malloc(sizeof(float) * (N + 1));
  sd_edm_sigmas(N, 0.002f, 80.0f, 7.0f, t);
  double *x = malloc(sizeof(double) * B * n), *xn = malloc(sizeof(double) * B * n);
  float *xf = malloc(sizeof(float) * B * n), *D = malloc(sizeof(float) * B * n);
  float *sg = malloc(sizeof(float) * B);
  for (int j = 0; j < B * n; j++) x[j] = (double)noise[j] * t[0];
  for (int i = 0; i < N; i++) {
    for (int j = 0; j < B * n; j++) xf[j] = (float)x[j];
    for (int b = 0; b < B; b++) sg[b] = t[i];
    gauss_fn(g, xf, sg, y, B, D);
    double *dcur = malloc(sizeof(double) * B * n);
    for (int j = 0; j < B * n; j++) {
      dcur[j] = (x[j] - (double)D[j]) / t[i];
      xn[j] = x[j] + ((double)t[i + 1] - t[i]) * dcur[j];
    }
    if (heun && i < N - 1) {
      for (int j = 0; j < B * n; j++) xf[j] = (float)xn[j];
      for (int b = 0; b < B; b++) sg[b] = t[i + 1];
      gauss_fn(g, xf, sg, y, B, D);
      for (int j = 0; j < B * n; j++) {
        double dp = (xn[j] - (double)D[j]) / t[i + 1];
        xn[j] = x[j] + ((double)t[i + 1] - t[i]) * (0.5 * dcur[j] + 0.5 * dp);
      }
    }
    free(dcur);
    memcpy(x, xn, sizeof(double) * B * n);
  }
  for (int j = 0; j < B * n; j++) out[j] = (float)x[j];
  free(t); free(x); free(xn); free(xf); free(D); free(sg);
}

static void test_guidance(void) {
  enum { B = 64, n = 4, K = 3 };
  const double mu_c[(K + 1) * n] = {0.3, -1.0, 2.0, 0.0, -0.5, 0.7, 1.0, 0.4,
                                    1.2, 0.1, -2.0, -0.3, 0.05, -0.1, 0.2, 0.0};
  const double s[n] = {0.5, 1.0, 0.1, 2.0};
  gauss g = {.n = n, .mu = mu_c, .s = s, .K = K};
  float *noise = malloc(sizeof(float) * B * n), *a = malloc(sizeof(float) * B * n);
  float *b2 = malloc(sizeof(float) * B * n);
  int32_t y[B], ynull[B];
  fill_normal(noise, (size_t)B * n, 502, 1.0f);
  for (int b = 0; b < B; b++) {
    y[b] = b % K;
    ynull[b] = K;
  }
  sd_sampler_opts o;
  sd_sampler_opts_default(&o, K, n);
  for (int heun = 1; heun >= 0; heun--) {
    o.heun = heun;
    o.guidance = 1.0f;
    g.rows = g.null_rows = 0;
    sd_edm_sample(&o, gauss_fn, &g, B, y, noise, a);
    check_true(g.null_rows == 0 && g.rows == (long)B * sd_edm_evaluations(&o),
               "%s, guidance 1: conditional rows only (%ld rows, %ld null)",
               heun ? "Heun" : "Euler", g.rows, g.null_rows);
    reference_heun(o.steps, heun, &g, B, y, noise, b2);
    check_bitwise(heun ? "Heun guidance 1 == EDM Algorithm 1 (cond.)"
                       : "Euler guidance 1 == reference Euler (cond.)",
                  a, b2, sizeof(float) * B * n);
    o.guidance = 0.0f;
    sd_edm_sample(&o, gauss_fn, &g, B, y, noise, a);
    o.guidance = 1.0f;
    sd_edm_sample(&o, gauss_fn, &g, B, ynull, noise, b2);
    check_bitwise(heun ? "Heun guidance 0 == unconditional sampler"
                       : "Euler guidance 0 == unconditional sampler",
                  a, b2, sizeof(float) * B * n);
  }
  // one step from sigma_0 to 0 is x_T + (0 - s0) (x_T - D) / s0 = D, the guided denoiser
  o.steps = 1;
  o.guidance = 2.5f;
  for (int heun = 1; heun >= 0; heun--) {
    o.heun = heun;
    sd_edm_sample(&o, gauss_fn, &g, B, y, noise, heun ? a : b2);
  }
  check_bitwise("one step: Heun == Euler (no correction at the end)", a, b2,
                sizeof(float) * B * n);
  float *ref = malloc(sizeof(float) * B * n), *xf = malloc(sizeof(float) * B * n);
  float *Dc = malloc(sizeof(float) * B * n), *Du = malloc(sizeof(float) * B * n);
  float sg[B];
  for (int j = 0; j < B * n; j++) xf[j] = (float)((double)noise[j] * 80.0);
  for (int b = 0; b < B; b++) sg[b] = 80.0f;
  gauss_fn(&g, xf, sg, y, B, Dc);
  gauss_fn(&g, xf, sg, ynull, B, Du);
  for (int j = 0; j < B * n; j++) ref[j] = (float)(Du[j] + 2.5 * ((double)Dc[j] - Du[j]));
  check_close("one step, guidance 2.5 == D_u + 2.5 (D_c - D_u)", a, ref, (size_t)B * n,
              SAMPLER_CFG_STEP_RTOL, NULL);
  free(noise); free(a); free(b2); free(ref); free(xf); free(Dc); free(Du);
}

// ---- 4. the denoiser against the training code --------------------------------------------------

static void sddit_from_config(sd_sddit *s, const sd_config *c, sd_backend *be, int B) {
  sd_sddit_opts o;
  sd_sddit_opts_from_config(c, &o);
  sd_head_config hc;
  sd_head_config_from_config(c, &hc);
  sd_sddit_create(s, &c->model, &hc, &o, be, B);
}

// The training step's D (s->D after sd_sddit_forward_backward) for x, sigma, y: x0 = x and
// eps = 0 make x_s = x exactly; every token is visible (the config must have mask_ratio 0).
static void training_D(sd_sddit *s, const float *x, const float *sigma, const int32_t *y,
                       int B, float *D) {
  const int T = sd_dit_tokens(&s->dcfg);
  const size_t n = (size_t)s->dcfg.in_channels * s->dcfg.input_size * s->dcfg.input_size;
  if (s->opt.visible_tokens != T) SD_FATAL("training_D needs mask_ratio 0");
  float *eps = calloc((size_t)B * n, sizeof(float)), *st = malloc(sizeof(float) * B);
  int32_t *vis = malloc(sizeof(int32_t) * (size_t)B * T);
  for (int b = 0; b < B; b++) {
    st[b] = 0.002f;
    for (int t = 0; t < T; t++) vis[b * T + t] = t;
  }
  sd_step_inputs in = {x, eps, sigma, st, y, vis, sigma, st};
  sd_step_stats stats;
  sd_sddit_forward_backward(s, &in, B, 0, &stats);
  memcpy(D, s->D, sizeof(float) * (size_t)B * n);
  free(eps); free(st); free(vis);
}

static void tiny_config(sd_config *c) {
  char err[256];
  sd_config_defaults(c, "tiny");
  if (sd_config_set(c, "sddit", "mask_ratio", "0", err, sizeof err) != 0) SD_FATAL("%s", err);
}

static void test_denoiser_vs_training(sd_backend *be) {
  enum { B = 6 };
  sd_config cfg;
  tiny_config(&cfg);
  const sd_dit_config *mc = &cfg.model;
  const size_t n = (size_t)mc->in_channels * mc->input_size * mc->input_size;
  sd_sddit s;
  sddit_from_config(&s, &cfg, be, B);
  sd_sddit_init(&s, 11);
  // adaLN-Zero starts with F = 0: perturb every DiT weight so every path carries signal
  float *pert = malloc(sizeof(float) * s.dit_total);
  fill_normal(pert, s.dit_total, 601, 0.05f);
  for (size_t i = 0; i < s.dit_total; i++) s.params[i] += pert[i];
  free(pert);
  float *x = malloc(sizeof(float) * B * n), *Dt = malloc(sizeof(float) * B * n);
  float *Dd = malloc(sizeof(float) * B * n);
  fill_normal(x, (size_t)B * n, 602, 1.0f);
  const float sigma[B] = {0.002f, 0.05f, 0.5f, 1.3f, 10.0f, 80.0f};
  const float scale[B] = {1.0f, 1.0f, 1.0f, 1.5f, 10.0f, 80.0f};  // x at about its noise level
  for (int b = 0; b < B; b++)
    for (size_t i = 0; i < n; i++) x[b * n + i] *= scale[b];
  const int32_t y[B] = {0, 3, mc->num_classes, 9, 5, mc->num_classes};
  training_D(&s, x, sigma, y, B, Dt);
  sd_denoiser dn;
  sd_denoiser_create(&dn, mc, cfg.sigma_data, s.params, B, be);
  sd_denoiser_eval(&dn, x, sigma, y, B, Dd);
  check_bitwise("denoiser == training step's D (mask 0), bitwise", Dd, Dt, sizeof(float) * B * n);
  check_true(dn.rows == B, "denoiser counted %ld rows", dn.rows);
  sd_denoiser_destroy(&dn);
  sd_denoiser_create(&dn, mc, cfg.sigma_data, s.params, 4, be);  // chunks of 4 + 2
  sd_denoiser_eval(&dn, x, sigma, y, B, Dd);
  check_close("denoiser in chunks of 4 == training D", Dd, Dt, (size_t)B * n,
              DENOISER_CHUNK_RTOL, NULL);
  sd_denoiser_destroy(&dn);

  // written out: D = c_skip x + c_out F(c_in x; ln(sigma)/4, y), F = sd_dit_forward
  sd_dit m;
  sd_dit_create(&m, mc, be);
  memcpy(m.params, s.params, sizeof(float) * s.dit_total);
  sd_dit_acts a;
  sd_dit_acts_create(&a, &m, B, sd_dit_tokens(mc));
  float *xin = malloc(sizeof(float) * B * n), cn[B], *Dw = malloc(sizeof(float) * B * n);
  const double sd = cfg.sigma_data;
  for (int b = 0; b < B; b++) {
    double sg = sigma[b];
    cn[b] = (float)(log(sg) / 4);
    for (size_t i = 0; i < n; i++) xin[b * n + i] = (float)(x[b * n + i] / sqrt(sg * sg + sd * sd));
  }
  sd_dit_forward(&m, &a, B, xin, cn, y, NULL, sd_dit_tokens(mc));
  for (int b = 0; b < B; b++) {
    double sg = sigma[b];
    for (size_t i = 0; i < n; i++)
      Dw[b * n + i] = (float)(sd * sd / (sg * sg + sd * sd) * x[b * n + i] +
                              sg * sd / sqrt(sg * sg + sd * sd) * a.out[b * n + i]);
  }
  check_close("denoiser == c_skip x + c_out F(c_in x) by hand", Dt, Dw, (size_t)B * n,
              DENOISER_FORMULA_RTOL, NULL);
  double fmax = 0;
  for (size_t i = 0; i < B * n; i++) fmax = fmax > fabs(a.out[i]) ? fmax : fabs(a.out[i]);
  check_true(fmax > 1e-2, "the network output is not trivial (max |F| = %.3g)", fmax);
  sd_dit_acts_destroy(&a, &m);
  sd_dit_destroy(&m);
  free(xin); free(Dw); free(x); free(Dt); free(Dd);
  sd_sddit_destroy(&s);
}

// ---- 5. configuration text and checkpoint weights ------------------------------------------------

static char *config_text(const sd_config *c) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  sd_config_print(c, f);
  fclose(f);
  return buf;
}

static void test_checkpoint_weights(sd_backend *be) {
  sd_config cfg;
  char err[2048];
  tiny_config(&cfg);
  sd_config_set(&cfg, "model", "depth", "3", err, sizeof err);  // a non-preset shape
  sd_config_set(&cfg, "model", "encoder_depth", "2", err, sizeof err);
  sd_config_set(&cfg, "diffusion", "sigma_data", "0.75", err, sizeof err);
  char *text = config_text(&cfg);
  sd_config back;
  int rc = sd_config_from_text(&back, text, err, sizeof err);
  char *text2 = rc == 0 ? config_text(&back) : NULL;
  check_true(rc == 0 && strcmp(text, text2) == 0 && back.model.depth == 3 &&
             back.sigma_data == 0.75f,
             "configuration text -> sd_config -> text is the same (%s)", rc ? err : "ok");
  free(text2);
  rc = sd_config_from_text(&back, "[model]\nhiden = 3\n", err, sizeof err);
  check_true(rc != 0 && strstr(err, "line 2") && strstr(err, "hiden"),
             "a bad configuration text is refused: %s", err);

  sd_sddit s;
  sddit_from_config(&s, &cfg, be, 2);
  sd_sddit_init(&s, 5);
  for (size_t i = 0; i < s.total; i++) s.params[i] += 0.001f * (float)(i % 7);  // raw != ema
  const char *tmpdir = getenv("TMPDIR");
  char dir[512], path[1100];
  snprintf(dir, sizeof dir, "%s/sd_test_sampler.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
  if (!mkdtemp(dir)) SD_FATAL("mkdtemp failed");
  sd_ckpt_info info = {.step = 7, .seed = 1, .data_cursor = 0, .world_size = 1};
  snprintf(info.git_rev, sizeof info.git_rev, "test");
  info.config_text = text;
  if (sd_ckpt_save(dir, &s, &info, 0, path, sizeof path, err, sizeof err) != 0)
    SD_FATAL("%s", err);
  for (int raw = 0; raw <= 1; raw++) {
    sd_dn_weights w;
    rc = sd_dn_weights_read(&w, path, raw, err, sizeof err);
    check_true(rc == 0 && w.count == s.dit_total && w.step == 7 && w.cfg.model.depth == 3 &&
               w.cfg.sigma_data == 0.75f, "read %s weights: %zu floats, step %ld (%s)",
               raw ? "raw" : "ema", w.count, w.step, rc ? err : "ok");
    if (rc == 0)
      check_bitwise(raw ? "raw weights == student params (DiT part)" : "ema weights == /ema",
                    w.params, raw ? s.params : s.ema, sizeof(float) * s.dit_total);
    sd_dn_weights_free(&w);
  }
  // a damaged (truncated) file is refused with the verifier's message
  char bad[1200];
  snprintf(bad, sizeof bad, "%s/bad.h5", dir);
  FILE *src = fopen(path, "rb"), *dst = fopen(bad, "wb");
  if (!src || !dst) SD_FATAL("cannot copy %s", path);
  fseek(src, 0, SEEK_END);
  long size = ftell(src);
  fseek(src, 0, SEEK_SET);
  char *bytes = malloc((size_t)size);
  if (fread(bytes, 1, (size_t)size, src) != (size_t)size) SD_FATAL("read failed");
  fwrite(bytes, 1, (size_t)size / 2, dst);
  fclose(src);
  fclose(dst);
  sd_dn_weights w;
  rc = sd_dn_weights_read(&w, bad, 0, err, sizeof err);
  check_true(rc != 0 && strstr(err, bad) != NULL, "a corrupted checkpoint is refused: %s", err);
  unlink(bad);
  unlink(path);
  rmdir(dir);
  free(bytes);
  free(text);
  sd_sddit_destroy(&s);
}

// ---- helper mode for tests/test_sample_cli.sh ----------------------------------------------------

static int denoise_ref(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: test_sampler denoise-ref CONFIG.ini CKPT IN.h5 OUT.h5 ema|raw\n");
    return 2;
  }
  sd_config cfg;
  char err[1024];
  sd_config_defaults(&cfg, NULL);
  if (sd_config_load_ini(&cfg, argv[2], err, sizeof err) != 0) SD_FATAL("%s", err);
  if (sd_config_set(&cfg, "sddit", "mask_ratio", "0", err, sizeof err) != 0) SD_FATAL("%s", err);
  hid_t f = sd_h5_open_read(argv[4]);
  sd_h5_shape sx;
  float *x = sd_h5_read_f32(f, "/x", &sx);
  float *sigma = sd_h5_read_f32(f, "/sigma", NULL);
  int32_t *y = sd_h5_read_i32(f, "/labels", NULL);
  H5Fclose(f);
  const int B = (int)sx.dims[0];
  sd_backend be;
  sd_backend_cpu_init(&be, 0);
  sd_sddit s;
  sddit_from_config(&s, &cfg, &be, B);
  if (sd_ckpt_load(argv[3], &s, NULL, err, sizeof err) != 0) SD_FATAL("%s", err);
  if (!strcmp(argv[6], "ema")) memcpy(s.params, s.ema, sizeof(float) * s.dit_total);
  else if (strcmp(argv[6], "raw")) SD_FATAL("want ema or raw, not %s", argv[6]);
  float *D = malloc(sizeof(float) * sx.numel);
  training_D(&s, x, sigma, y, B, D);
  hid_t o = H5Fcreate(argv[5], H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (o < 0) SD_FATAL("cannot create %s", argv[5]);
  sd_h5_write_f32(o, "/D", D, sx.ndim, sx.dims);
  H5Fclose(o);
  free(x); free(sigma); free(y); free(D);
  sd_sddit_destroy(&s);
  sd_backend_cpu_destroy(&be);
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "denoise-ref")) return denoise_ref(argc, argv);
  sd_backend be;
  sd_backend_cpu_init(&be, 0);
  test_sigmas();
  test_gaussian();
  test_order();
  test_guidance();
  test_denoiser_vs_training(&be);
  test_checkpoint_weights(&be);
  sd_backend_cpu_destroy(&be);
  return check_exit("test_sampler");
}
