// One SD-DiT step on a device against the CPU (see selftest_step.h).
#include "util/clock.h"
#include "device/selftest_step.h"
#include "error.h"
#include "device/gpu_check.h"
#include "util/rng.h"
#include "objective/sddit.h"
#include "objective/sddit_config.h"
#include "objective/step_random.h"
#include "tolerances_gpu.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const k_prec[2] = {"fp32", "bf16"};

typedef struct step_result {
  float L_gen, L_dis, grad_norm;
  float *grads;  // (total) host copy
} step_result;

// The step's inputs on the host: latents, noise, noise levels, labels, visible tokens.
typedef struct step_host {
  int B, Tv;
  size_t n;  // floats per sample
  float *x0, *eps, *ss, *st;
  int32_t *y, *vis;
} step_host;

static void host_inputs(step_host *h, const sd_config *cfg, int B, uint64_t seed) {
  h->B = B;
  h->Tv = sd_config_visible_tokens(cfg);
  h->n = (size_t)cfg->model.in_channels * cfg->model.input_size * cfg->model.input_size;
  h->x0 = sd_xmalloc(sizeof(float) * (size_t)B * h->n, "selftest x0");
  h->eps = sd_xmalloc(sizeof(float) * (size_t)B * h->n, "selftest eps");
  h->ss = sd_xmalloc(sizeof(float) * (size_t)B, "selftest sigma_s");
  h->st = sd_xmalloc(sizeof(float) * (size_t)B, "selftest sigma_t");
  h->y = sd_xmalloc(sizeof(int32_t) * (size_t)B, "selftest y");
  h->vis = sd_xmalloc(sizeof(int32_t) * (size_t)B * (size_t)(h->Tv ? h->Tv : 1), "selftest vis");
  sd_rng_normal(seed, SD_RNG_SELFTEST, 0, 1, 0, (size_t)B * h->n, h->x0);
  for (int b = 0; b < B; b++)
    h->y[b] = (int32_t)sd_rng_below(seed, SD_RNG_SELFTEST, 0, 2, (uint32_t)b,
                                    (uint32_t)cfg->model.num_classes);
  sd_random_opts ro;
  sd_random_opts_from_config(cfg, &ro);
  ro.seed = seed;
  sd_step_random(&ro, 0, 0, B, h->eps, h->ss, h->st, h->vis, h->y);
}

static void host_free(step_host *h) {
  free(h->x0);
  free(h->eps);
  free(h->ss);
  free(h->st);
  free(h->y);
  free(h->vis);
}

// Backend copies of the inputs (released by the caller with be->ops->free on each).
static void *upload(sd_backend *be, const void *src, size_t bytes) {
  void *d = be->ops->alloc(be, bytes ? bytes : 4);
  if (bytes) be->ops->to_device(be, d, src, bytes);
  return d;
}

// One forward and backward on be from the parameters `params` (host, total floats).
static void run_step(sd_backend *be, const sd_config *cfg, const float *params,
                     const step_host *h, step_result *r) {
  sd_sddit_opts o;
  sd_sddit_opts_from_config(cfg, &o);
  sd_head_config hc;
  sd_head_config_from_config(cfg, &hc);
  sd_sddit s;
  sd_sddit_create(&s, &cfg->model, &hc, &o, be, h->B);
  be->ops->to_device(be, s.params, params, sizeof(float) * s.total);
  sd_sddit_reset_copies(&s);
  const size_t img = sizeof(float) * (size_t)h->B * h->n;
  void *x0 = upload(be, h->x0, img), *eps = upload(be, h->eps, img);
  void *ss = upload(be, h->ss, sizeof(float) * (size_t)h->B);
  void *st = upload(be, h->st, sizeof(float) * (size_t)h->B);
  void *y = upload(be, h->y, sizeof(int32_t) * (size_t)h->B);
  void *vis = upload(be, h->vis, sizeof(int32_t) * (size_t)h->B * (size_t)h->Tv);
  sd_step_inputs in = {.x0 = x0, .eps = eps, .sigma_s = ss, .sigma_t = st, .y = y, .vis = vis,
                       .sigma_s_host = h->ss, .sigma_t_host = h->st};
  sd_step_stats stats;
  sd_sddit_forward_backward(&s, &in, h->B, 0, &stats);
  r->L_gen = stats.L_gen;
  r->L_dis = stats.L_dis;
  r->grad_norm = stats.grad_norm;
  r->grads = sd_xmalloc(sizeof(float) * s.total, "selftest gradients");
  be->ops->to_host(be, r->grads, s.grads, sizeof(float) * s.total);
  void *bufs[] = {x0, eps, ss, st, y, vis};
  for (size_t k = 0; k < sizeof bufs / sizeof bufs[0]; k++) be->ops->free(be, bufs[k]);
  sd_sddit_destroy(&s);
}

static int line(int ok, int verbose, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int line(int ok, int verbose, const char *fmt, ...) {
  if (ok && !verbose) return ok;
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  return ok;
}

int sd_selftest_step(sd_backend *dev, sd_backend *cpu, const sd_config *cfg_in, int prec, int B,
                     uint64_t seed, int verbose, int *passed) {
  const double loss_lim[2] = {GPU_STEP_LOSS_RTOL}, grad_lim[2] = {GPU_STEP_GRAD_NMSE};
  sd_config cfg = *cfg_in;
  const double t0 = sd_now_s();
  // The parameters: DiT/head initialisation plus noise, made on the CPU backend.
  sd_sddit_opts o;
  sd_sddit_opts_from_config(&cfg, &o);
  sd_head_config hc;
  sd_head_config_from_config(&cfg, &hc);
  sd_sddit init;
  sd_sddit_create(&init, &cfg.model, &hc, &o, cpu, 1);
  sd_sddit_init(&init, seed);
  const size_t total = init.total;
  float *params = sd_xmalloc(sizeof(float) * total, "selftest parameters");
  sd_rng_normal(seed, SD_RNG_SELFTEST, 0, 3, 0, total, params);
  for (size_t i = 0; i < total; i++) params[i] = init.params[i] + 0.02f * params[i];
  sd_param_table table = init.table;  // names and offsets (freed with init)
  step_host h;
  host_inputs(&h, &cfg, B, seed);
  step_result rd, rc;
  run_step(dev, &cfg, params, &h, &rd);
  run_step(cpu, &cfg, params, &h, &rc);

  int failed = 0, ok_count = 0;
  const char *pn = k_prec[prec];
  const float got[2] = {rd.L_gen, rd.L_dis}, want[2] = {rc.L_gen, rc.L_dis};
  const char *lname[2] = {"L_gen", "L_dis"};
  for (int k = 0; k < 2; k++) {
    const double rel = fabs((double)got[k] - want[k]) / fmax(fabs((double)want[k]), 1e-30);
    const int ok = rel <= loss_lim[prec];  // NaN fails
    line(ok, verbose, "step prec %s %s rel %.3e limit %.1e %s got %.9g want %.9g\n", pn,
         lname[k], rel, loss_lim[prec], ok ? "ok" : "FAIL", got[k], want[k]);
    ok ? ok_count++ : failed++;
  }
  // every tensor of the DiT and the head, then the whole flat gradient
  double worst = 0;
  const char *worst_name = "-";
  for (int t = 0; t < table.count; t++) {
    const sd_param_info *pi = &table.items[t];
    size_t w = 0;
    const double e = sd_gpu_nmse(rd.grads + pi->offset, rc.grads + pi->offset, pi->numel, &w);
    const int ok = e <= grad_lim[prec];
    if (!(e <= worst)) worst = e, worst_name = pi->name;
    line(ok, verbose, "step prec %s grad %s nmse %.3e limit %.1e %s worst_index %zu got %.9g "
         "want %.9g\n", pn, pi->name, e, grad_lim[prec], ok ? "ok" : "FAIL", w,
         rd.grads[pi->offset + w], rc.grads[pi->offset + w]);
    ok ? ok_count++ : failed++;
  }
  size_t w = 0;
  const double e = sd_gpu_nmse(rd.grads, rc.grads, total, &w);
  const int ok = e <= grad_lim[prec];
  ok ? ok_count++ : failed++;
  printf("step prec %s %s: %d samples, %zu parameters in %d tensors: L_gen rel %.2e, L_dis rel "
         "%.2e, gradient nmse %.2e (worst tensor %s %.2e, limit %.0e), grad norm %.6g vs %.6g, "
         "%.1f s: %s\n",
         pn, cfg.model.preset, B, total, table.count,
         fabs((double)rd.L_gen - rc.L_gen) / fmax(fabs((double)rc.L_gen), 1e-30),
         fabs((double)rd.L_dis - rc.L_dis) / fmax(fabs((double)rc.L_dis), 1e-30), e, worst_name,
         worst, grad_lim[prec], rd.grad_norm, rc.grad_norm, sd_now_s() - t0,
         failed ? "FAIL" : "ok");
  free(rd.grads);
  free(rc.grads);
  free(params);
  host_free(&h);
  sd_sddit_destroy(&init);
  *passed += ok_count;
  return failed;
}
