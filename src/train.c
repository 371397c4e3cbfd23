// `sddit train` (see train.h): configuration, the synthetic data source, keyed randomness,
// the step loop, the progress line and the JSON-lines metrics file.
#include "train.h"
#include "config.h"
#include "error.h"
#include "rng.h"
#include "sddit.h"
#include "step_random.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// mkdir -p
static void make_dirs(const char *path) {
  char buf[512];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; ; p++) {
    if (*p == '/' || *p == '\0') {
      char save = *p;
      *p = '\0';
      if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        SD_FATAL("cannot create directory '%s': %s", buf, strerror(errno));
      *p = save;
      if (!save) break;
    }
  }
}

static void opts_from_config(const sd_config *c, sd_sddit_opts *o) {
  memset(o, 0, sizeof *o);
  o->encoder_depth = c->encoder_depth;
  o->visible_tokens = sd_config_visible_tokens(c);
  o->gen_visible_only = strcmp(c->gen_loss_tokens, "visible") == 0;
  o->sigma_data = c->sigma_data;
  o->lambda_dis = c->lambda_dis;
  o->tau_s = c->tau_s;
  o->tau_t_start = c->tau_t_start;
  o->tau_t_end = c->tau_t_end;
  o->teacher_temp_warmup = c->teacher_temp_warmup;
  o->center_momentum = c->center_momentum;
  o->teacher_momentum = c->teacher_momentum;
  o->total_steps = c->steps;
  o->lr = c->lr;
  o->beta1 = c->beta1;
  o->beta2 = c->beta2;
  o->adam_eps = c->eps;
  o->weight_decay = c->weight_decay;
  o->grad_clip = c->grad_clip;
  o->ema_decay = c->ema_decay;
}

// Synthetic sample i: a class-dependent pattern plus keyed noise, label keyed too.
static void synthetic_sample(const sd_config *c, long i, float *x, int32_t *y) {
  const int n = c->model.in_channels * c->model.input_size * c->model.input_size;
  uint32_t idx = (uint32_t)(i % c->synthetic_size);
  *y = (int32_t)sd_rng_below(c->seed, SD_RNG_SYNTHETIC, 1, idx, 0, (uint32_t)c->model.num_classes);
  sd_rng_normal(c->seed, SD_RNG_SYNTHETIC, 0, idx, 0, (size_t)n, x);
  for (int k = 0; k < n; k++)
    x[k] = 0.3f * x[k] + 0.5f * sinf(0.37f * (float)k * (float)(*y + 1));
}

static void format_eta(double s, char *buf, size_t len) {
  if (!isfinite(s) || s < 0) s = 0;
  long t = (long)s;
  if (t >= 3600) snprintf(buf, len, "%ldh%02ldm", t / 3600, t / 60 % 60);
  else snprintf(buf, len, "%ldm%02lds", t / 60, t % 60);
}

static const char *k_usage =
    "usage: sddit train [--config FILE.ini] [--SECTION.KEY=VALUE ...]\n"
    "  defaults: the tiny preset; presets in launch/configs/; every key is listed by\n"
    "  the effective configuration printed at start (and saved as OUT_DIR/config.ini)\n";

int sd_cmd_train(int argc, char **argv) {
  sd_config cfg;
  char err[512];
  sd_config_defaults(&cfg, "tiny");
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      fputs(k_usage, stdout);
      return 0;
    }
    if (!strcmp(argv[i], "--config") || !strncmp(argv[i], "--config=", 9)) {
      const char *path = argv[i][8] == '=' ? argv[i] + 9 : (i + 1 < argc ? argv[++i] : NULL);
      if (!path) SD_FATAL_HINT(k_usage, "--config needs a file name");
      if (sd_config_load_ini(&cfg, path, err, sizeof err) != 0) SD_FATAL("%s", err);
      continue;
    }
    if (sd_config_apply_override(&cfg, argv[i], err, sizeof err) != 0)
      SD_FATAL_HINT("options are --config FILE and --section.key=value", "%s", err);
  }
  if (sd_config_validate(&cfg, err, sizeof err) != 0) SD_FATAL("%s", err);
  if (strcmp(cfg.source, "synthetic") != 0)
    SD_FATAL_HINT("use data.source=synthetic", "data.source=%s is not available yet", cfg.source);

  make_dirs(cfg.out_dir);
  char path[1100];
  snprintf(path, sizeof path, "%s/config.ini", cfg.out_dir);
  FILE *fc = fopen(path, "w");
  if (!fc) SD_FATAL("cannot write '%s': %s", path, strerror(errno));
  sd_config_print(&cfg, fc);
  fclose(fc);
  printf("# effective configuration (also in %s)\n", path);
  sd_config_print(&cfg, stdout);
  const char *mpath = cfg.metrics[0] ? cfg.metrics : NULL;
  char mbuf[1100];
  if (!mpath) {
    snprintf(mbuf, sizeof mbuf, "%s/metrics.jsonl", cfg.out_dir);
    mpath = mbuf;
  }
  FILE *mf = fopen(mpath, "w");
  if (!mf) SD_FATAL("cannot write the metrics file '%s': %s", mpath, strerror(errno));

  sd_backend be;
  sd_backend_cpu_init(&be, cfg.threads);
  sd_sddit_opts o;
  opts_from_config(&cfg, &o);
  sd_head_config hc = {.in_dim = cfg.model.hidden, .hidden = cfg.head_hidden,
                       .bottleneck = cfg.head_bottleneck, .prototypes = cfg.head_prototypes};
  const int B = cfg.global_batch, T = sd_dit_tokens(&cfg.model), Tv = o.visible_tokens;
  sd_sddit s;
  sd_sddit_create(&s, &cfg.model, &hc, &o, &be, B);
  sd_sddit_init(&s, cfg.seed);
  printf("# model %s: %zu DiT + %zu head parameters, %d tokens (%d visible), batch %d, "
         "%d threads\n", cfg.model.preset, s.dit_total, s.head_total, T, Tv, B, be.num_threads);
  fflush(stdout);

  const int n = cfg.model.in_channels * cfg.model.input_size * cfg.model.input_size;
  float *x0 = sd_xmalloc(sizeof(float) * (size_t)B * n, "x0");
  float *eps = sd_xmalloc(sizeof(float) * (size_t)B * n, "eps");
  float *ss = sd_xmalloc(sizeof(float) * (size_t)B, "sigma_s");
  float *st = sd_xmalloc(sizeof(float) * (size_t)B, "sigma_t");
  int32_t *y = sd_xmalloc(sizeof(int32_t) * (size_t)B, "y");
  int32_t *vis = sd_xmalloc(sizeof(int32_t) * (size_t)B * Tv, "vis");
  sd_random_opts ro = {.seed = cfg.seed, .p_mean = cfg.p_mean, .p_std = cfg.p_std,
                       .teacher_log_uniform = strcmp(cfg.teacher_sigma_mode, "log_uniform") == 0,
                       .teacher_sigma = cfg.teacher_sigma, .sigma_min = cfg.sigma_min,
                       .label_dropout = cfg.label_dropout, .num_classes = cfg.model.num_classes,
                       .tokens = T, .visible_tokens = Tv, .elements = n};
  double t_start = now_s(), t_log = t_start;
  long bad_in_row = 0, skipped_total = 0, last_log_step = 0;
  for (long step = 0; step < cfg.steps; step++) {
    long first = step * (long)B;
    for (int b = 0; b < B; b++) synthetic_sample(&cfg, first + b, x0 + (size_t)b * n, &y[b]);
    sd_step_random(&ro, step, first, B, eps, ss, st, vis, y);
    sd_step_inputs in = {x0, eps, ss, st, y, vis};
    sd_step_stats stats;
    sd_sddit_forward_backward(&s, &in, B, step, &stats);
    sd_sddit_update(&s, B, step, &stats);
    if (stats.skipped) {
      skipped_total++;
      if (++bad_in_row > cfg.max_bad_steps)
        SD_FATAL_HINT("lower optim.lr or set optim.grad_clip",
                      "%ld non-finite steps in a row (limit train.max_bad_steps = %d) at step %ld",
                      bad_in_row, cfg.max_bad_steps, step);
      fprintf(stderr, "warning: step %ld skipped: non-finite loss or gradients\n", step);
    } else {
      bad_in_row = 0;
    }
    if ((step + 1) % cfg.log_every == 0 || step + 1 == cfg.steps) {
      double now = now_s();
      double ips = (double)B * (step + 1 - last_log_step) / (now - t_log);
      double eta = (now - t_start) / (step + 1) * (cfg.steps - step - 1);
      char etab[32];
      format_eta(eta, etab, sizeof etab);
      printf("step %6ld/%ld | L_gen %.4f L_dis %.4f | grad %.3g | lr %.1e | %.1f img/s | "
             "ETA %s%s\n", step + 1, cfg.steps, stats.L_gen, stats.L_dis, stats.grad_norm,
             cfg.lr, ips, etab, skipped_total ? " | skipped steps" : "");
      fflush(stdout);
      fprintf(mf, "{\"step\": %ld, \"L_gen\": %.6g, \"L_dis\": %.6g, \"L\": %.6g, "
                  "\"grad_norm\": %.6g, \"lr\": %.6g, \"tau_t\": %.6g, \"teacher_m\": %.8g, "
                  "\"img_per_s\": %.4g, \"skipped_total\": %ld, \"elapsed_s\": %.3f}\n",
              step + 1, stats.L_gen, stats.L_dis, stats.L, stats.grad_norm, cfg.lr, stats.tau_t,
              stats.teacher_m, ips, skipped_total, now - t_start);
      fflush(mf);
      t_log = now;
      last_log_step = step + 1;
    }
  }
  fclose(mf);
  printf("# done: %ld steps in %.1f s; metrics in %s\n", cfg.steps, now_s() - t_start, mpath);
  free(x0); free(eps); free(ss); free(st); free(y); free(vis);
  sd_sddit_destroy(&s);
  sd_backend_cpu_destroy(&be);
  return 0;
}
