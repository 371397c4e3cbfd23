// The whole SD-DiT training step on the CUDA backend against the PyTorch fixture
// (tests/fixtures/sddit_tiny.h5, as tests/test_sddit_parity.c reads it on the CPU), in fp32 and
// in bf16 matmul precision: both losses every step, every student gradient at step 0, and after
// 5 steps the student, teacher, generation EMA, center and Adam moments. fp32 must meet the CPU
// parity requirement (tests/tolerances.h, norm-relative); bf16 the GPU limits of
// kernels/tolerances_gpu.h (losses relative, tensors nmse). Each precision runs twice and the
// two runs must agree bit for bit (determinism). Then 50 training steps on synthetic data
// (train.c's synthetic source and sd_step_random, the tiny preset) run on the CPU and on the
// device, whose losses must track: max over steps of |L_dev - L_cpu| / L_cpu below the bound.
//
// Every buffer the step reads lives in backend memory: step inputs and initial parameters are
// uploaded with be->ops->to_device, results come back with to_host.
//
// Output lines:
//   sddit prec P NAME rel|nmse X limit Y ok|FAIL [worst_index i got g want w]
//   determinism sddit prec P FAMILY ok|FAIL [first_index i]
//   track50 prec P max_rel L_gen X L_dis Y limit Z ok|FAIL
// Usage: test_sddit_cuda [--simulate matmul|matmul+attention] [--steps50 N] [FIXTURE.h5]
// Exits 77 (skip) when the build has no CUDA backend or no device is visible.
#include "util/clock.h"
#include "data/batch_source.h"
#include "check.h"
#include "config/config.h"
#include "sample/denoiser.h"
#include "error.h"
#include "fixture.h"
#include "device/gpu_check.h"
#include "util/h5io.h"
#include "util/rng.h"
#include "objective/sddit.h"
#include "objective/sddit_config.h"
#include "objective/step_random.h"
#include "tolerances.h"
#include "tolerances_gpu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STEPS 64

static const char *g_prec_names[2] = {"fp32", "bf16"};

// ---- the fixture, read once into host memory ----------------------------------------------

typedef struct fixture_inputs {
  sd_dit_config dc;
  sd_head_config hc;
  sd_sddit_opts o;
  int B, steps, Tv;
  size_t n;                       // C*H*W
  float *x0[MAX_STEPS], *eps[MAX_STEPS], *ss[MAX_STEPS], *st[MAX_STEPS];
  int32_t *y[MAX_STEPS], *vis[MAX_STEPS];
  float *init;                    // (total) initial student, table order
} fixture_inputs;

static int ai(hid_t f, const char *k) { return (int)sd_h5_attr_int(f, "/config", k); }
static float af(hid_t f, const char *k) { return (float)sd_h5_attr_double(f, "/config", k); }

static void read_fixture(hid_t f, fixture_inputs *fx) {
  memset(fx, 0, sizeof *fx);
  fixture_read_dit_config(f, &fx->dc);
  fx->hc = (sd_head_config){.in_dim = fx->dc.hidden, .hidden = ai(f, "head_hidden"),
                            .bottleneck = ai(f, "head_bottleneck"),
                            .prototypes = ai(f, "head_prototypes")};
  fx->o = (sd_sddit_opts){
      .encoder_depth = ai(f, "encoder_depth"), .visible_tokens = ai(f, "visible_tokens"),
      .sigma_data = af(f, "sigma_data"), .lambda_dis = af(f, "lambda_dis"),
      .tau_s = af(f, "tau_s"), .tau_t_start = af(f, "tau_t_start"),
      .tau_t_end = af(f, "tau_t_end"), .teacher_temp_warmup = ai(f, "teacher_temp_warmup"),
      .center_momentum = af(f, "center_momentum"),
      .teacher_momentum = af(f, "teacher_momentum"), .total_steps = ai(f, "total_steps"),
      .lr = af(f, "lr"), .beta1 = af(f, "beta1"), .beta2 = af(f, "beta2"),
      .adam_eps = af(f, "adam_eps"), .weight_decay = af(f, "weight_decay"), .grad_clip = 0.0f,
      .ema_decay = af(f, "ema_decay")};
  fx->B = ai(f, "batch");
  fx->steps = ai(f, "steps");
  fx->Tv = fx->o.visible_tokens;
  if (fx->steps > MAX_STEPS) SD_FATAL("fixture has %d steps, at most %d", fx->steps, MAX_STEPS);
  fx->n = (size_t)fx->dc.in_channels * fx->dc.input_size * fx->dc.input_size;
  char p[256];
  for (int k = 0; k < fx->steps; k++) {
    sd_h5_shape sh;
    snprintf(p, sizeof p, "/steps/%d/x0", k);
    fx->x0[k] = sd_h5_read_f32(f, p, &sh);
    if (sh.numel != (size_t)fx->B * fx->n) SD_FATAL("%s has %zu elements", p, sh.numel);
    snprintf(p, sizeof p, "/steps/%d/eps", k);
    fx->eps[k] = sd_h5_read_f32(f, p, NULL);
    snprintf(p, sizeof p, "/steps/%d/sigma_s", k);
    fx->ss[k] = sd_h5_read_f32(f, p, NULL);
    snprintf(p, sizeof p, "/steps/%d/sigma_t", k);
    fx->st[k] = sd_h5_read_f32(f, p, NULL);
    snprintf(p, sizeof p, "/steps/%d/y", k);
    fx->y[k] = sd_h5_read_i32(f, p, NULL);
    snprintf(p, sizeof p, "/steps/%d/vis", k);
    fx->vis[k] = sd_h5_read_i32(f, p, &sh);
    if (sh.numel != (size_t)fx->B * fx->Tv) SD_FATAL("%s has %zu elements", p, sh.numel);
  }
}

// ---- one run of the fixture's steps on a backend ------------------------------------------

typedef struct run_result {
  int steps;
  float L_gen[MAX_STEPS], L_dis[MAX_STEPS], L[MAX_STEPS], tau_t[MAX_STEPS], mom[MAX_STEPS];
  size_t total, dit_total;
  int P;
  float *grads0, *params, *teacher, *ema, *adam_m, *adam_v, *center;  // host copies
} run_result;

static void free_result(run_result *r) {
  free(r->grads0);
  free(r->params);
  free(r->teacher);
  free(r->ema);
  free(r->adam_m);
  free(r->adam_v);
  free(r->center);
  memset(r, 0, sizeof *r);
}

// Device copies of one step's inputs.
typedef struct dev_inputs {
  float *x0, *eps, *ss, *st;
  int32_t *y, *vis;
} dev_inputs;

static void dev_inputs_alloc(sd_backend *be, dev_inputs *d, int B, size_t n, int Tv) {
  d->x0 = be->ops->alloc(be, sizeof(float) * (size_t)B * n);
  d->eps = be->ops->alloc(be, sizeof(float) * (size_t)B * n);
  d->ss = be->ops->alloc(be, sizeof(float) * (size_t)B);
  d->st = be->ops->alloc(be, sizeof(float) * (size_t)B);
  d->y = be->ops->alloc(be, sizeof(int32_t) * (size_t)B);
  d->vis = be->ops->alloc(be, sizeof(int32_t) * (size_t)B * Tv);
}

static void dev_inputs_free(sd_backend *be, dev_inputs *d) {
  void *p[] = {d->x0, d->eps, d->ss, d->st, d->y, d->vis};
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) be->ops->free(be, p[i]);
}

static sd_step_inputs upload(sd_backend *be, const dev_inputs *d, const float *x0,
                             const float *eps, const float *ss, const float *st,
                             const int32_t *y, const int32_t *vis, int B, size_t n, int Tv) {
  be->ops->to_device(be, d->x0, x0, sizeof(float) * (size_t)B * n);
  be->ops->to_device(be, d->eps, eps, sizeof(float) * (size_t)B * n);
  be->ops->to_device(be, d->ss, ss, sizeof(float) * (size_t)B);
  be->ops->to_device(be, d->st, st, sizeof(float) * (size_t)B);
  be->ops->to_device(be, d->y, y, sizeof(int32_t) * (size_t)B);
  be->ops->to_device(be, d->vis, vis, sizeof(int32_t) * (size_t)B * Tv);
  return (sd_step_inputs){d->x0, d->eps, d->ss, d->st, d->y, d->vis, ss, st};
}

static float *download(sd_backend *be, const float *dev, size_t count) {
  float *h = sd_xmalloc(sizeof(float) * (count ? count : 1), "result");
  be->ops->to_host(be, h, dev, sizeof(float) * count);
  return h;
}

static void run_fixture(hid_t f, const fixture_inputs *fx, sd_backend *be, run_result *r) {
  memset(r, 0, sizeof *r);
  sd_sddit s;
  sd_sddit_create(&s, &fx->dc, &fx->hc, &fx->o, be, fx->B);
  float *init = sd_xmalloc(sizeof(float) * s.total, "initial parameters");
  char p[256];
  for (int i = 0; i < s.table.count; i++) {
    snprintf(p, sizeof p, "/init/params/%s", s.table.items[i].name);
    fixture_read_tensor(f, p, init + s.table.items[i].offset, s.table.items[i].numel);
  }
  be->ops->to_device(be, s.params, init, sizeof(float) * s.total);
  free(init);
  sd_sddit_reset_copies(&s);
  dev_inputs d;
  dev_inputs_alloc(be, &d, fx->B, fx->n, fx->Tv);
  for (int k = 0; k < fx->steps; k++) {
    sd_step_inputs in = upload(be, &d, fx->x0[k], fx->eps[k], fx->ss[k], fx->st[k], fx->y[k],
                               fx->vis[k], fx->B, fx->n, fx->Tv);
    sd_step_stats st;
    sd_sddit_forward_backward(&s, &in, fx->B, k, &st);
    r->L_gen[k] = st.L_gen;
    r->L_dis[k] = st.L_dis;
    r->L[k] = st.L;
    r->tau_t[k] = st.tau_t;
    r->mom[k] = st.teacher_m;
    if (k == 0) r->grads0 = download(be, s.grads, s.total);
    sd_sddit_update(&s, fx->B, k, &st);
  }
  be->ops->sync(be);
  r->steps = fx->steps;
  r->total = s.total;
  r->dit_total = s.dit_total;
  r->P = fx->hc.prototypes;
  r->params = download(be, s.params, s.total);
  r->teacher = download(be, s.teacher, s.total);
  r->ema = download(be, s.ema, s.dit_total);
  r->adam_m = download(be, s.adam_m, s.total);
  r->adam_v = download(be, s.adam_v, s.total);
  r->center = download(be, s.center, (size_t)r->P);
  dev_inputs_free(be, &d);
  sd_sddit_destroy(&s);
}

// ---- comparisons against the fixture ----------------------------------------------------

static double norm_rel(const float *a, const float *ref, size_t n, size_t *worst) {
  double mr = 0, md = -1;
  size_t w = 0;
  int bad = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(a[i])) {
      if (!bad) w = i;
      bad = 1;
      continue;
    }
    double d = fabs((double)a[i] - ref[i]);
    mr = fmax(mr, fabs((double)ref[i]));
    if (!bad && d > md) md = d, w = i;
  }
  *worst = w;
  if (bad) return INFINITY;
  return mr > 0 ? md / mr : md;
}

static void line(int prec, const char *name, const char *measure, double e, double lim,
                 size_t w, double got, double want) {
  int ok = e <= lim;
  printf("sddit prec %s %s %s %.3e limit %.1e %s worst_index %zu got %.9g want %.9g\n",
         g_prec_names[prec], name, measure, e, lim, ok ? "ok" : "FAIL", w, got, want);
  check_record(ok);
}

// The sampler's denoiser D(x; sigma, y) (`sddit sample --backend cuda`) with the fixture's
// initial DiT weights, on the device under test and on the CPU: noise levels across the EDM
// range 0.002 .. 80, labels including the null class, a batch larger than the denoiser's
// chunk so that chunking is exercised too.
static void check_denoiser(sd_backend *dev, const fixture_inputs *fx, int prec) {
  sd_backend cpu;
  sd_backend_cpu_init(&cpu, 0);
  const int B = 10, cap = 4, K = fx->dc.num_classes;
  const size_t n = fx->n;
  float *x = sd_xmalloc(sizeof(float) * B * n, "denoiser x");
  float *dc = sd_xmalloc(sizeof(float) * B * n, "denoiser D cpu");
  float *dd = sd_xmalloc(sizeof(float) * B * n, "denoiser D dev");
  float sigma[10];
  int32_t y[10];
  for (int b = 0; b < B; b++) {
    sigma[b] = (float)(0.002 * pow(80.0 / 0.002, (double)b / (B - 1)));
    y[b] = b % (K + 1);  // K = the null class
    sd_rng_normal(7, SD_RNG_TEST, 3, (uint32_t)b, 0, n, x + (size_t)b * n);
    for (size_t i = 0; i < n; i++) x[(size_t)b * n + i] *= sqrtf(sigma[b] * sigma[b] + 0.25f);
  }
  sd_denoiser a, d;
  sd_denoiser_create(&a, &fx->dc, fx->o.sigma_data, fx->init, cap, &cpu);
  sd_denoiser_create(&d, &fx->dc, fx->o.sigma_data, fx->init, cap, dev);
  sd_denoiser_eval(&a, x, sigma, y, B, dc);
  sd_denoiser_eval(&d, x, sigma, y, B, dd);
  size_t w;
  double e = norm_rel(dd, dc, (size_t)B * n, &w);
  line(prec, "denoiser_D", "rel", e, prec ? GPU_DENOISER_BF16_RTOL : GPU_DENOISER_FP32_RTOL, w,
       dd[w], dc[w]);
  sd_denoiser_destroy(&a);
  sd_denoiser_destroy(&d);
  sd_backend_cpu_destroy(&cpu);
  free(x);
  free(dc);
  free(dd);
}

// Tensors [0, count) of the table in buf against `group`/NAME; base: compare changes.
static double compare_group(hid_t f, const sd_param_table *t, int count, const float *buf,
                            const char *group, const float *base, int prec, int nmse,
                            double lim) {
  double worst = 0;
  char p[256], name[256];
  for (int i = 0; i < count; i++) {
    const sd_param_info *pi = &t->items[i];
    float *want = sd_xmalloc(sizeof(float) * pi->numel, "want");
    float *got = sd_xmalloc(sizeof(float) * pi->numel, "got");
    snprintf(p, sizeof p, "%s/%s", group, pi->name);
    fixture_read_tensor(f, p, want, pi->numel);
    memcpy(got, buf + pi->offset, sizeof(float) * pi->numel);
    if (base)
      for (size_t k = 0; k < pi->numel; k++) {
        got[k] -= base[pi->offset + k];
        want[k] -= base[pi->offset + k];
      }
    size_t w = 0;
    double e = nmse ? sd_gpu_nmse(got, want, pi->numel, &w) : norm_rel(got, want, pi->numel, &w);
    snprintf(name, sizeof name, "%s%s/%s", base ? "change:" : "", group, pi->name);
    line(prec, name, nmse ? "nmse" : "rel", e, lim, w, got[w], want[w]);
    worst = fmax(worst, e);
    free(want);
    free(got);
  }
  return worst;
}

static void compare_fixture(hid_t f, const fixture_inputs *fx, const run_result *r, int prec,
                            const sd_param_table *t) {
  const char *names[] = {"L_gen", "L_dis", "L", "tau_t", "teacher_momentum"};
  double worst_loss = 0;
  for (int k = 0; k < r->steps; k++) {
    const float got[] = {r->L_gen[k], r->L_dis[k], r->L[k], r->tau_t[k], r->mom[k]};
    for (int q = 0; q < 5; q++) {
      char p[128], name[96];
      snprintf(p, sizeof p, "/steps/%d/%s", k, names[q]);
      snprintf(name, sizeof name, "step%d/%s", k, names[q]);
      double want = sd_h5_read_f64_scalar(f, p);
      double e = fabs(got[q] - want) / fmax(fabs(want), 1e-30);
      if (!isfinite(got[q])) e = INFINITY;
      // schedules (tau_t, momentum) are host arithmetic in both precisions
      double lim = prec && q < 3 ? GPU_SDDIT_BF16_LOSS_RTOL : PARITY_LOSS_RTOL;
      line(prec, name, "rel", e, lim, 0, got[q], want);
      if (q < 3) worst_loss = fmax(worst_loss, e);
    }
  }
  const int nm = prec == 1;
  const int dit_count = t->count - 7;  // the head's 7 tensors come last
  double g = compare_group(f, t, t->count, r->grads0, "/steps/0/grads", NULL, prec, nm,
                           nm ? GPU_SDDIT_BF16_GRAD_NMSE : PARITY_GRAD_RTOL);
  double s1 = compare_group(f, t, t->count, r->params, "/final/student", NULL, prec, nm,
                            nm ? GPU_SDDIT_BF16_PARAM_NMSE : PARITY_PARAM_RTOL);
  double s2 = 0;
  if (!nm)  // fp32: the changes too, as the CPU parity test does
    s2 = compare_group(f, t, t->count, r->params, "/final/student", fx->init, prec, 0,
                       PARITY_DELTA_RTOL);
  double s3 = compare_group(f, t, t->count, r->teacher, "/final/teacher", NULL, prec, nm,
                            nm ? GPU_SDDIT_BF16_EMA_NMSE : PARITY_PARAM_RTOL);
  double s4 = compare_group(f, t, dit_count, r->ema, "/final/ema", NULL, prec, nm,
                            nm ? GPU_SDDIT_BF16_EMA_NMSE : PARITY_PARAM_RTOL);
  double s5 = 0, s6 = 0;
  if (!nm) {  // bf16 gradients change Adam's moments by more than the parameters; fp32 only
    s5 = compare_group(f, t, t->count, r->adam_m, "/final/adam_m", NULL, prec, 0,
                       PARITY_MOMENT_RTOL);
    s6 = compare_group(f, t, t->count, r->adam_v, "/final/adam_v", NULL, prec, 0,
                       PARITY_MOMENT_RTOL);
  }
  float *center = sd_xmalloc(sizeof(float) * (size_t)r->P, "center");
  fixture_read_tensor(f, "/final/center", center, (size_t)r->P);
  size_t w = 0;
  double s7 = nm ? sd_gpu_nmse(r->center, center, (size_t)r->P, &w)
                 : norm_rel(r->center, center, (size_t)r->P, &w);
  line(prec, "/final/center", nm ? "nmse" : "rel", s7,
       nm ? GPU_SDDIT_BF16_EMA_NMSE : PARITY_PARAM_RTOL, w, r->center[w], center[w]);
  free(center);
  printf("# sddit prec %s summary (%s): losses %.3e, step-0 gradients %.3e, after %d steps "
         "student %.3e (change %.3e), teacher %.3e, ema %.3e, adam m %.3e v %.3e, center "
         "%.3e\n", g_prec_names[prec], nm ? "nmse per tensor, losses relative" : "norm-relative",
         worst_loss, g, r->steps, s1, s2, s3, s4, s5, s6, s7);
}

static void bitwise(int prec, const char *what, const float *a, const float *b, size_t n) {
  size_t k = 0;
  while (k < n && memcmp(&a[k], &b[k], sizeof(float)) == 0) k++;
  if (k < n)
    printf("determinism sddit prec %s %s FAIL first_index %zu got %.9g then %.9g\n",
           g_prec_names[prec], what, k, a[k], b[k]);
  else
    printf("determinism sddit prec %s %s ok (%zu floats)\n", g_prec_names[prec], what, n);
  check_record(k == n);
}

static void compare_runs(int prec, const run_result *a, const run_result *b) {
  bitwise(prec, "L_gen", a->L_gen, b->L_gen, (size_t)a->steps);
  bitwise(prec, "L_dis", a->L_dis, b->L_dis, (size_t)a->steps);
  bitwise(prec, "grads0", a->grads0, b->grads0, a->total);
  bitwise(prec, "student", a->params, b->params, a->total);
  bitwise(prec, "teacher", a->teacher, b->teacher, a->total);
  bitwise(prec, "ema", a->ema, b->ema, a->dit_total);
  bitwise(prec, "adam_m", a->adam_m, b->adam_m, a->total);
  bitwise(prec, "adam_v", a->adam_v, b->adam_v, a->total);
  bitwise(prec, "center", a->center, b->center, (size_t)a->P);
}

// ---- 50 steps on synthetic data, as `sddit train` runs them ----------------------------------

static void run_synthetic(sd_backend *be, int steps, float *L_gen, float *L_dis) {
  sd_config cfg;
  sd_config_defaults(&cfg, "tiny");
  cfg.steps = steps;
  sd_head_config hc;
  sd_head_config_from_config(&cfg, &hc);
  sd_sddit_opts o;
  sd_sddit_opts_from_config(&cfg, &o);
  const int B = cfg.global_batch, Tv = o.visible_tokens;
  const size_t n = (size_t)cfg.model.in_channels * cfg.model.input_size * cfg.model.input_size;
  sd_sddit s;
  sd_sddit_create(&s, &cfg.model, &hc, &o, be, B);
  sd_sddit_init(&s, cfg.seed);
  sd_batch_source src;
  char err[512];
  if (sd_batch_source_open(&src, &cfg, 0, 1, err, sizeof err) != 0) SD_FATAL("%s", err);
  float *x0 = sd_xmalloc(sizeof(float) * (size_t)B * n, "x0");
  float *eps = sd_xmalloc(sizeof(float) * (size_t)B * n, "eps");
  float *ss = sd_xmalloc(sizeof(float) * (size_t)B, "sigma_s");
  float *st = sd_xmalloc(sizeof(float) * (size_t)B, "sigma_t");
  int32_t *y = sd_xmalloc(sizeof(int32_t) * (size_t)B, "y");
  int32_t *vis = sd_xmalloc(sizeof(int32_t) * (size_t)B * Tv, "vis");
  sd_random_opts ro;
  sd_random_opts_from_config(&cfg, &ro);
  dev_inputs d;
  dev_inputs_alloc(be, &d, B, n, Tv);
  for (long step = 0; step < steps; step++) {
    if (sd_batch_source_get(&src, step, x0, y, err, sizeof err) != 0) SD_FATAL("%s", err);
    sd_step_random(&ro, step, step * (long)B, B, eps, ss, st, vis, y);
    sd_step_inputs in = upload(be, &d, x0, eps, ss, st, y, vis, B, n, Tv);
    sd_step_stats stats;
    sd_sddit_forward_backward(&s, &in, B, step, &stats);
    sd_sddit_update(&s, B, step, &stats);
    L_gen[step] = stats.L_gen;
    L_dis[step] = stats.L_dis;
  }
  dev_inputs_free(be, &d);
  sd_batch_source_close(&src);
  free(x0); free(eps); free(ss); free(st); free(y); free(vis);
  sd_sddit_destroy(&s);
}

static double max_rel(const float *dev, const float *cpu, int n, int *at) {
  double m = 0;
  *at = 0;
  for (int k = 0; k < n; k++) {
    double e = fabs((double)dev[k] - cpu[k]) / fmax(fabs((double)cpu[k]), 1e-30);
    if (!isfinite(dev[k])) e = INFINITY;
    if (e > m || (isinf(e) && !isinf(m))) m = e, *at = k;
  }
  return m;
}

int main(int argc, char **argv) {
  const char *sim = NULL, *path_arg = NULL;
  int steps50 = 50;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--simulate") && i + 1 < argc) sim = argv[++i];
    else if (!strcmp(argv[i], "--steps50") && i + 1 < argc) steps50 = atoi(argv[++i]);
    else if (argv[i][0] != '-' && !path_arg) path_arg = argv[i];
    else {
      fprintf(stderr, "usage: test_sddit_cuda [--simulate matmul|matmul+attention] "
                      "[--steps50 N] [FIXTURE.h5]\n");
      return 2;
    }
  }
  if (steps50 < 1 || steps50 > 100000) steps50 = 50;
  setvbuf(stdout, NULL, _IOLBF, 0);
  sd_backend dev;
  sd_gpu_open_or_skip(&dev, sim, "test_sddit_cuda");
  char path[512];
  if (path_arg) snprintf(path, sizeof path, "%s", path_arg);
  else fixture_path("sddit_tiny.h5", path, sizeof path);
  hid_t f = sd_h5_open_read(path);
  fixture_inputs fx;
  read_fixture(f, &fx);
  sd_param_table table;  // the student's table (DiT, then head), for names and offsets
  {
    sd_dit_param_table(&fx.dc, &table);
    sd_head_append_table(&fx.hc, &table);
    fx.init = sd_xmalloc(sizeof(float) * table.total, "initial parameters");
    char p[256];
    for (int i = 0; i < table.count; i++) {
      snprintf(p, sizeof p, "/init/params/%s", table.items[i].name);
      fixture_read_tensor(f, p, fx.init + table.items[i].offset, table.items[i].numel);
    }
  }
  printf("fixture %s: batch %d, %d steps, %zu parameters\n", path, fx.B, fx.steps, table.total);

  for (int prec = 0; prec < 2; prec++) {
    char err[512];
    if (sd_gpu_set_precision(&dev, g_prec_names[prec], err, sizeof err) != 0) {
      check_true(0, "precision %s: %s", g_prec_names[prec], err);
      continue;
    }
    run_result r1, r2;
    double t0 = sd_now_s();
    run_fixture(f, &fx, &dev, &r1);
    double t1 = sd_now_s();
    compare_fixture(f, &fx, &r1, prec, &table);
    run_fixture(f, &fx, &dev, &r2);
    compare_runs(prec, &r1, &r2);
    check_denoiser(&dev, &fx, prec);
    printf("# prec %s: %d fixture steps in %.2f s\n", g_prec_names[prec], fx.steps, t1 - t0);
    free_result(&r1);
    free_result(&r2);
  }

  // 50 steps: the CPU reference, then the device in each precision
  sd_backend cpu;
  sd_backend_cpu_init(&cpu, 0);
  float *cg = sd_xmalloc(sizeof(float) * (size_t)steps50, "L_gen cpu");
  float *cd = sd_xmalloc(sizeof(float) * (size_t)steps50, "L_dis cpu");
  float *dg = sd_xmalloc(sizeof(float) * (size_t)steps50, "L_gen dev");
  float *dd = sd_xmalloc(sizeof(float) * (size_t)steps50, "L_dis dev");
  double t0 = sd_now_s();
  run_synthetic(&cpu, steps50, cg, cd);
  printf("# %d synthetic steps on the CPU in %.2f s\n", steps50, sd_now_s() - t0);
  for (int prec = 0; prec < 2; prec++) {
    char err[512];
    if (sd_gpu_set_precision(&dev, g_prec_names[prec], err, sizeof err) != 0) continue;
    t0 = sd_now_s();
    run_synthetic(&dev, steps50, dg, dd);
    double secs = sd_now_s() - t0;
    for (int k = 0; k < steps50; k += steps50 > 10 ? steps50 / 10 : 1)
      printf("track50 prec %s step %d L_gen cpu %.6f dev %.6f L_dis cpu %.6f dev %.6f\n",
             g_prec_names[prec], k + 1, cg[k], dg[k], cd[k], dd[k]);
    int ag, ad;
    double eg = max_rel(dg, cg, steps50, &ag), ed = max_rel(dd, cd, steps50, &ad);
    double lim = prec ? GPU_TRACK50_BF16_LOSS_RTOL : GPU_TRACK50_FP32_LOSS_RTOL;
    int ok = eg <= lim && ed <= lim;
    printf("track50 prec %s max_rel L_gen %.3e (step %d) L_dis %.3e (step %d) limit %.1e %s "
           "(%d steps, %.2f s)\n", g_prec_names[prec], eg, ag + 1, ed, ad + 1, lim,
           ok ? "ok" : "FAIL", steps50, secs);
    check_record(ok);
  }
  free(cg); free(cd); free(dg); free(dd);
  sd_backend_cpu_destroy(&cpu);
  for (int k = 0; k < fx.steps; k++) {
    free(fx.x0[k]); free(fx.eps[k]); free(fx.ss[k]); free(fx.st[k]);
    free(fx.y[k]); free(fx.vis[k]);
  }
  free(fx.init);
  sd_param_table_free(&table);
  H5Fclose(f);
  sd_gpu_close(&dev);
  return check_exit("test_sddit_cuda");
}
