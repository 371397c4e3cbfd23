// `sddit train` (see train.h): configuration, the data source, resuming from a checkpoint,
// keyed randomness, the step loop, the progress line, the JSON-lines metrics file and the
// periodic checkpoints.
#include "util/clock.h"
#include "train/train.h"
#include "device/backend_open.h"
#include "device/selftest.h"
#include "data/batch_source.h"
#include "ckpt/ckpt.h"
#include "config/config.h"
#include "error.h"
#include "util/files.h"
#include "device/gpu_check.h"
#include "util/rng.h"
#include "objective/sddit.h"
#include "objective/sddit_config.h"
#include "objective/step_random.h"
#include "train/train_dist.h"
#include "nccl_comm.h"
#include "train/preview.h"
#include "dist/watchdog.h"
#include "sd_git_rev.h"

#include <errno.h>
#include <signal.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


static void format_eta(double s, char *buf, size_t len) {
  if (!isfinite(s) || s < 0) s = 0;
  long t = (long)s;
  if (t >= 3600) snprintf(buf, len, "%ldh%02ldm", t / 3600, t / 60 % 60);
  else snprintf(buf, len, "%ldm%02lds", t / 60, t % 60);
}

static const char *k_usage =
    "usage: sddit train [--config FILE.ini] [--resume auto|none|FILE] [--SECTION.KEY=VALUE ...]\n"
    "  defaults: the tiny preset; presets in launch/configs/; every key is listed by\n"
    "  the effective configuration printed at start (and saved as OUT_DIR/config.ini)\n"
    "  --resume auto: continue from the newest checkpoint in ckpt.dir that verifies\n"
    "  (start from step 0 when there is none); --resume FILE: from that checkpoint\n";

// Lines of `now` missing from `then` (config keys that changed since the checkpoint),
// ignoring ckpt.resume and train.stop_at, which differ between the parts of a run.
static void warn_config_changes(const char *then, const char *now) {
  const char *section = "";
  char sect[64] = "";
  for (const char *p = now; *p;) {
    const char *e = strchr(p, '\n');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (n && p[0] == '[') {
      snprintf(sect, sizeof sect, "%.*s", (int)n, p);
      section = sect;
    } else if (n && p[0] != '#' && strncmp(p, "resume", 6) != 0 &&
               strncmp(p, "stop_at", 7) != 0) {
      int found = 0;
      for (const char *q = then; *q && !found;) {
        const char *f = strchr(q, '\n');
        size_t m = f ? (size_t)(f - q) : strlen(q);
        found = m == n && strncmp(p, q, n) == 0;
        q = f ? f + 1 : q + m;
      }
      if (!found)
        fprintf(stderr, "warning: %s %.*s differs from the checkpoint's configuration\n",
                section, (int)n, p);
    }
    p = e ? e + 1 : p + n;
  }
}

// train.steps of a checkpoint's configuration text, or -1 when that text does not load.
static long config_text_steps(const char *text) {
  sd_config then;
  char err[256];
  sd_config_defaults(&then, "tiny");
  return sd_config_load_ini_text(&then, text, "checkpoint", err, sizeof err) == 0 ? then.steps
                                                                                  : -1;
}

// The teacher's momentum follows a cosine over train.steps: a resume with another train.steps
// changes it from the resumed step on. Says so, with both step counts and the momentum there.
static void warn_steps_change(const char *then, const sd_config *cfg, const sd_sddit *s,
                              long step) {
  const long old_steps = config_text_steps(then);
  if (old_steps < 0 || old_steps == cfg->steps) return;
  sd_sddit_opts before = s->opt;
  before.total_steps = old_steps;
  if (s->opt.lr_cosine)
    fprintf(stderr,
            "warning: train.steps changed from %ld (the checkpoint's) to %ld: the cosine "
            "learning-rate schedule changes from step %ld on (there %.6g instead of %.6g)\n",
            old_steps, cfg->steps, step, (double)sd_sddit_lr(&s->opt, step),
            (double)sd_sddit_lr(&before, step));
  if (cfg->lambda_dis == 0.0f) return;
  fprintf(stderr,
          "warning: train.steps changed from %ld (the checkpoint's) to %ld: the teacher "
          "momentum schedule (cosine from sddit.teacher_momentum = %g to 1 over train.steps) "
          "changes from step %ld on (there %.6f instead of %.6f)\n",
          old_steps, cfg->steps, (double)cfg->teacher_momentum, step,
          (double)sd_sddit_teacher_momentum(&s->opt, step),
          (double)sd_sddit_teacher_momentum(&before, step));
}

// Resolves ckpt.resume on rank 0 and loads the checkpoint there; returns the step to start
// from (0 when not resuming). The caller broadcasts the state to the other ranks.
static long resume_if_asked(const sd_config *cfg, const char *dir, sd_sddit *s,
                            const char *cfg_text, char *loaded, size_t loaded_len) {
  char path[1100], err[1024];
  if (strcmp(cfg->resume, "none") == 0) return 0;
  if (strcmp(cfg->resume, "auto") == 0) {
    int found = sd_ckpt_find_latest(dir, path, sizeof path, err, sizeof err);
    if (found < 0) SD_FATAL("%s", err);
    if (found == 0) {
      printf("# resume auto: no valid checkpoint in %s; starting at step 0\n", dir);
      return 0;
    }
  } else {
    snprintf(path, sizeof path, "%s", cfg->resume);
  }
  sd_ckpt_info info;
  memset(&info, 0, sizeof info);
  if (sd_ckpt_load(path, s, &info, err, sizeof err) != 0)
    SD_FATAL_HINT("`sddit inspect FILE` shows what a checkpoint holds; --resume auto skips "
                  "damaged ones", "cannot resume: %s", err);
  if (info.seed != cfg->seed)
    fprintf(stderr, "warning: train.seed is %llu but the checkpoint was trained with %llu\n",
            cfg->seed, info.seed);
  if (info.config_text) warn_config_changes(info.config_text, cfg_text);
  if (info.config_text) warn_steps_change(info.config_text, cfg, s, info.step);
  free(info.config_text);
  printf("# resumed from %s at step %ld (written by %d rank%s)\n", path, info.step,
         info.world_size, info.world_size == 1 ? "" : "s");
  snprintf(loaded, loaded_len, "%s", path);
  return info.step;
}

// Writes a checkpoint (rank 0); on failure says so and that the previous one is intact.
static int save_checkpoint(const sd_config *cfg, const char *dir, const sd_sddit *s, long step,
                           int world, const char *cfg_text, char *last, size_t last_len) {
  sd_ckpt_info info = {.step = step, .seed = cfg->seed,
                       .data_cursor = step * (long)cfg->global_batch, .world_size = world};
  snprintf(info.git_rev, sizeof info.git_rev, "%s", SD_GIT_REV);
  info.config_text = (char *)cfg_text;
  char path[1100], err[1024];
  if (sd_ckpt_save(dir, s, &info, cfg->ckpt_keep, path, sizeof path, err, sizeof err) != 0) {
    fprintf(stderr, "error: checkpoint at step %ld not written: %s\n", step, err);
    if (last[0]) fprintf(stderr, "       the previous checkpoint %s is intact\n", last);
    return -1;
  }
  snprintf(last, last_len, "%s", path);
  printf("# checkpoint %s\n", path);
  fflush(stdout);
  return 0;
}

// Fault injection for tests: SD_FAULT_NAN="R:S" puts a NaN into rank R's batch at step S,
// "R:S+" at every step from S on.
typedef struct nan_fault {
  int rank;
  long step;
  int from_on;
} nan_fault;

static nan_fault nan_fault_from_env(void) {
  nan_fault f = {-1, -1, 0};
  const char *v = getenv("SD_FAULT_NAN");
  char plus = 0;
  if (v && sscanf(v, "%d:%ld%c", &f.rank, &f.step, &plus) >= 2) f.from_on = plus == '+';
  else f.rank = -1;
  return f;
}

// The backend named by train.backend: the CPU, or the GPU of this rank's local rank, which
// first checks its ops at this model's shapes against the CPU (train.selftest).
static void open_backend(sd_backend *be, const sd_config *cfg, const sd_dist *d) {
  char err[600];
  if (sd_backend_open(be, cfg->backend, cfg->precision, cfg->threads, d->local_rank, err,
                      sizeof err) != 0)
    SD_FATAL_HINT("--train.backend=cpu runs on the CPUs; for the GPU run where one is visible "
                  "(nvidia-smi -L) with a CUDA build (sddit version says 'cuda yes')",
                  "train.backend = %s: %s", cfg->backend, err);
  if (strcmp(cfg->backend, "cuda") != 0 || !cfg->selftest) return;
  const int failed = sd_selftest_quick(be, cfg, d->rank != 0);
  if (failed)
    SD_FATAL_HINT("`sddit selftest --backend cuda --verbose` on this node shows every "
                  "comparison; leave the node out (srun --exclude=HOST) and report the output. "
                  "train.selftest = false skips this check, at the risk of training on wrong "
                  "numbers",
                  "the GPU of local rank %d failed its selftest: %d mismatch%s against the CPU "
                  "reference at this model's shapes (the FAIL lines above); nothing was "
                  "written", d->local_rank, failed, failed == 1 ? "" : "es");
}

// A step's inputs in backend memory (device backends).
typedef struct device_inputs {
  float *x0, *eps, *ss, *st;
  int32_t *y, *vis;
} device_inputs;

// The labels are checked here, on the host, so that the device's label lookup need not read
// them back (a synchronisation) to check them.
static sd_step_inputs upload_inputs(sd_backend *be, const device_inputs *dev,
                                    const sd_step_inputs *in, int B, int n, int Tv,
                                    int num_classes, long step) {
  const size_t fb = sizeof(float);
  for (int b = 0; b < B; b++)
    if (in->y[b] < 0 || in->y[b] > num_classes)
      SD_FATAL("step %ld: label %d of sample %d is outside [0, %d] (%d classes and the null "
               "label %d)", step + 1, in->y[b], b, num_classes, num_classes, num_classes);
  be->ops->to_device(be, dev->x0, in->x0, fb * (size_t)B * n);
  be->ops->to_device(be, dev->eps, in->eps, fb * (size_t)B * n);
  be->ops->to_device(be, dev->ss, in->sigma_s, fb * (size_t)B);
  be->ops->to_device(be, dev->st, in->sigma_t, fb * (size_t)B);
  be->ops->to_device(be, dev->y, in->y, sizeof(int32_t) * (size_t)B);
  be->ops->to_device(be, dev->vis, in->vis, sizeof(int32_t) * (size_t)B * Tv);
  sd_step_inputs d = {dev->x0, dev->eps, dev->ss, dev->st, dev->y, dev->vis,
                      in->sigma_s, in->sigma_t};  // the host copies: no read-back
  return d;
}

// Rank 0's time between two progress lines (seconds, printed as ms per step), split into
// disjoint intervals of its main thread, so that no part exceeds the whole and they add up:
//   data     waiting for the batch (the loader)
//   compute  noise draw, forward and backward, less the communication waits inside them
//   comm     blocked on communication: gradient ranges and teacher broadcasts the overlap did
//            not hide, loss and center sums, the stop-request agreement
//   optim    the optimizer update (AdamW, EMAs, center), less the communication inside it
//   other    the rest: the replica check, checkpoints, the progress line and metrics
// comm_total (metrics only) is the time inside collectives, hidden by the overlap or not.
typedef struct step_times {
  double data, compute, comm, comm_total, optim;
} step_times;

// Moves the communication time since the last call into tt; returns the exposed part.
static double take_comm(sd_train_comm *tc, step_times *tt) {
  double total = 0, exposed = 0;
  sd_train_comm_take_times(tc, &total, &exposed);
  tt->comm += exposed;
  tt->comm_total += total;
  return exposed;
}

// a - b, where b sums intervals that lie inside the span a: only the rounding of the clock's
// doubles can take it below 0, and that is dropped.
static double span_less(double a, double b) { return a > b ? a - b : 0.0; }

int sd_cmd_train(int argc, char **argv) {
  sd_dist dist;
  sd_dist_init(&dist, &argc, &argv);
  const int rank = dist.rank, world = dist.world, lead = rank == 0;
  sd_config cfg;
  char err[1024];
  sd_config_defaults(&cfg, "tiny");
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      if (lead) fputs(k_usage, stdout);
      sd_dist_finalize(&dist);
      return 0;
    }
    if (!strcmp(argv[i], "--config") || !strncmp(argv[i], "--config=", 9)) {
      const char *path = argv[i][8] == '=' ? argv[i] + 9 : (i + 1 < argc ? argv[++i] : NULL);
      if (!path) SD_FATAL_HINT(k_usage, "--config needs a file name");
      if (sd_config_load_ini(&cfg, path, err, sizeof err) != 0) SD_FATAL("%s", err);
      continue;
    }
    if (!strcmp(argv[i], "--resume") || !strncmp(argv[i], "--resume=", 9)) {
      const char *v = argv[i][8] == '=' ? argv[i] + 9 : (i + 1 < argc ? argv[++i] : NULL);
      if (!v) SD_FATAL_HINT(k_usage, "--resume needs auto, none or a checkpoint file");
      if (sd_config_set(&cfg, "ckpt", "resume", v, err, sizeof err) != 0) SD_FATAL("%s", err);
      continue;
    }
    if (sd_config_apply_override(&cfg, argv[i], err, sizeof err) != 0)
      SD_FATAL_HINT("options are --config FILE, --resume auto|none|FILE and --section.key=value",
                    "%s", err);
  }
  if (sd_config_validate(&cfg, err, sizeof err) != 0) SD_FATAL("%s", err);
  signal(SIGXFSZ, SIG_IGN);  // a file-size limit fails the write (EFBIG) instead of killing us
  sd_train_signals_install();
  sd_watchdog_start(&dist, cfg.dist_timeout);

  // Check the data before anything is written.
  sd_batch_source src;
  if (sd_batch_source_open(&src, &cfg, rank, world, err, sizeof err) != 0)
    SD_FATAL_HINT("`sddit inspect FILE` reports a dataset's layout and first problem; "
                  "data-prep/ writes valid files", "%s", err);

  char ckdir[1100];
  if (cfg.ckpt_dir[0]) snprintf(ckdir, sizeof ckdir, "%s", cfg.ckpt_dir);
  else snprintf(ckdir, sizeof ckdir, "%s/checkpoints", cfg.out_dir);
  char *cfg_text = sd_config_print_text(&cfg);

  sd_backend be;
  open_backend(&be, &cfg, &dist);
  sd_sddit_opts o;
  sd_sddit_opts_from_config(&cfg, &o);
  sd_head_config hc;
  sd_head_config_from_config(&cfg, &hc);
  // B: this rank's samples per step; Bm: per micro-batch (train.accum_steps of them), the
  // model's capacity
  const int G = cfg.global_batch, B = src.Bl, T = sd_dit_tokens(&cfg.model);
  const int Tv = o.visible_tokens, micros = cfg.accum_steps;
  if (B % micros != 0)
    SD_FATAL_HINT("choose train.global_batch as a multiple of ranks x train.accum_steps",
                  "train.global_batch %d over %d rank%s gives %d samples per rank, not a "
                  "multiple of train.accum_steps = %d", G, world, world == 1 ? "" : "s", B,
                  micros);
  const int Bm = B / micros;
  sd_sddit s;
  sd_sddit_create(&s, &cfg.model, &hc, &o, &be, Bm);
  sd_sddit_init(&s, cfg.seed);
  sd_train_comm tcomm;
  sd_train_comm_bind(&tcomm, &dist, &cfg, &s);
  // Resume before writing anything, so a refused checkpoint leaves the run directory as it was.
  char last_ckpt[1100] = "";  // the newest checkpoint known to be intact (rank 0)
  long start = lead ? resume_if_asked(&cfg, ckdir, &s, cfg_text, last_ckpt, sizeof last_ckpt)
                    : 0;
  sd_train_bcast_state(&dist, &s, &start);

  FILE *mf = NULL;
  const char *mpath = cfg.metrics[0] ? cfg.metrics : NULL;
  char mbuf[1100];
  if (!mpath) {
    snprintf(mbuf, sizeof mbuf, "%s/metrics.jsonl", cfg.out_dir);
    mpath = mbuf;
  }
  if (lead) {
    if (sd_make_dirs(cfg.out_dir, err, sizeof err) != 0 ||
        sd_make_dirs(ckdir, err, sizeof err) != 0)
      SD_FATAL("%s", err);
    if (access(ckdir, W_OK) != 0)
      SD_FATAL_HINT("set ckpt.dir to a writable directory", "checkpoints cannot be written to "
                    "'%s': %s", ckdir, strerror(errno));
    char path[1100];
    snprintf(path, sizeof path, "%s/config.ini", cfg.out_dir);
    FILE *fc = fopen(path, "w");
    if (!fc) SD_FATAL("cannot write '%s': %s", path, strerror(errno));
    fputs(cfg_text, fc);
    if (fclose(fc) != 0) SD_FATAL("cannot write '%s': %s", path, strerror(errno));
    printf("# effective configuration (also in %s)\n%s", path, cfg_text);
    char desc[1024];
    sd_batch_source_describe(&src, desc, sizeof desc);
    printf("# data: %s\n", desc);
    printf("# model %s: %zu DiT + %zu head parameters, %d tokens (%d visible), global batch %d "
           "= %d rank%s x %d", cfg.model.preset, s.dit_total, s.head_total, T, Tv, G, world,
           world == 1 ? "" : "s", B);
    if (micros > 1) printf(" (%d micro-batches of %d accumulated)", micros, Bm);
    printf(", %d threads per rank\n", be.num_threads);
    char sched[160];
    sd_lr_describe(&o, sched, sizeof sched);
    printf("# learning rate: %s\n", sched);
    if (strcmp(be.name, "cpu") != 0) {  // the device, and the kernels each op class chose
      char dev[4096];
      sd_gpu_describe(&be, dev, sizeof dev);
      for (char *line = strtok(dev, "\n"); line; line = strtok(NULL, "\n"))
        printf("# %s\n", line);
    }
    printf("# checkpoints every %ld steps and at the end into %s (newest %d kept)\n",
           cfg.ckpt_every, ckdir, cfg.ckpt_keep);
    fflush(stdout);
  }
  int rc = 0;
  if (start >= cfg.steps) {
    if (lead)
      printf("# the checkpoint is at step %ld and train.steps = %ld: nothing to do\n", start,
             cfg.steps);
    goto done;
  }
  sd_loss_history hist = {0};  // rank 0's progress lines, for the loss plot
  char preview_dir[1100] = "";
  if (lead && cfg.preview_every > 0) {
    snprintf(preview_dir, sizeof preview_dir, "%s/progress", cfg.out_dir);
    int no_dir = sd_make_dirs(preview_dir, err, sizeof err) != 0;
    if (!no_dir && access(preview_dir, W_OK) != 0) {
      snprintf(err, sizeof err, "'%s' is not writable: %s", preview_dir, strerror(errno));
      no_dir = 1;
    }
    if (no_dir) {  // previews are not worth a run
      fprintf(stderr, "warning: no previews (log.preview_every): %s\n", err);
      preview_dir[0] = '\0';
    } else {
      printf("# previews every %ld steps and at the end into %s/ (samples-<step>.png, "
             "loss.png)\n", cfg.preview_every, preview_dir);
      if (start > 0) sd_loss_history_load(&hist, mpath, start);  // the lines before the resume
    }
  }
  if (lead) {
    mf = fopen(mpath, start > 0 ? "a" : "w");  // a resumed run continues the file
    if (!mf) SD_FATAL("cannot write the metrics file '%s': %s", mpath, strerror(errno));
  }

  const int n = cfg.model.in_channels * cfg.model.input_size * cfg.model.input_size;
  device_inputs dev = {0};  // copies in backend memory when the backend is not the CPU
  if (strcmp(be.name, "cpu") != 0) {
    const size_t fb = sizeof(float);
    dev.x0 = be.ops->alloc(&be, fb * (size_t)Bm * n);  // one micro-batch
    dev.eps = be.ops->alloc(&be, fb * (size_t)Bm * n);
    dev.ss = be.ops->alloc(&be, fb * (size_t)Bm);
    dev.st = be.ops->alloc(&be, fb * (size_t)Bm);
    dev.y = be.ops->alloc(&be, sizeof(int32_t) * (size_t)Bm);
    dev.vis = be.ops->alloc(&be, sizeof(int32_t) * (size_t)Bm * Tv);
  }
  float *x0 = sd_xmalloc(sizeof(float) * (size_t)B * n, "x0");
  float *eps = sd_xmalloc(sizeof(float) * (size_t)B * n, "eps");
  float *ss = sd_xmalloc(sizeof(float) * (size_t)B, "sigma_s");
  float *st = sd_xmalloc(sizeof(float) * (size_t)B, "sigma_t");
  int32_t *y = sd_xmalloc(sizeof(int32_t) * (size_t)B, "y");
  int32_t *vis = sd_xmalloc(sizeof(int32_t) * (size_t)B * Tv, "vis");
  sd_random_opts ro;
  sd_random_opts_from_config(&cfg, &ro);
  const nan_fault fault = nan_fault_from_env();
  double t_start = sd_now_s(), t_log = t_start;
  step_times tt = {0};
  long skipped_total = 0, last_log_step = start;
  // Losses, gradient norm and skip counters stay on the backend during a step (no host
  // synchronisation); they are read back on log steps, on every rank (the loss mean over ranks
  // is a collective), so the non-finite-step checks run there too.
  s.defer_stats = 1;
  int last_save_failed = 0;
  long end = cfg.steps;
  for (long step = start; step < cfg.steps; step++) {
    sd_watchdog_set_step(step);
    if (sd_batch_source_get(&src, step, x0, y, err, sizeof err) != 0)
      SD_FATAL_HINT("`sddit inspect FILE` checks the whole dataset", "step %ld: %s", step, err);
    tt.data += sd_batch_source_take_wait(&src);
    const double t1 = sd_now_s();
    take_comm(&tcomm, &tt);  // waits since the last step (a checkpoint's teacher wait)
    if (fault.rank == rank && (step == fault.step || (fault.from_on && step >= fault.step)))
      x0[0] = NAN;  // SD_FAULT_NAN: a test of the non-finite path on one rank
    const long first = step * (long)G + (long)rank * B;  // this rank's stream positions
    sd_step_random(&ro, step, first, B, eps, ss, st, vis, y);
    sd_step_stats stats;
    for (int m = 0; m < micros; m++) {  // micro-batch m: this rank's samples [m Bm, (m+1) Bm)
      const size_t o1 = (size_t)m * Bm;
      sd_step_inputs in = {x0 + o1 * n, eps + o1 * n, ss + o1, st + o1, y + o1,
                           vis + o1 * Tv, ss + o1, st + o1};
      if (dev.x0) in = upload_inputs(&be, &dev, &in, Bm, n, Tv, cfg.model.num_classes, step);
      sd_sddit_forward_backward_micro(&s, &in, Bm, step, m, micros, &stats);
    }
    const double t2 = sd_now_s();
    tt.compute += span_less(t2 - t1, take_comm(&tcomm, &tt));
    sd_sddit_update(&s, B, step, &stats);
    const double t3 = sd_now_s();
    tt.optim += span_less(t3 - t2, take_comm(&tcomm, &tt));
    if (cfg.check_replicas) {
      sd_sddit_teacher_wait(&s);  // the broadcast is otherwise left in flight for the next step
      take_comm(&tcomm, &tt);
      sd_train_check_replicas(&dist, &s, step);
    }
    const int log_now = (step + 1) % cfg.log_every == 0 || step + 1 == cfg.steps;
    if (log_now) {
      sd_sddit_read_stats(&s, &stats);
      // the loss mean over ranks is a collective: its wait belongs to this interval's comm
      // (taken later, it would land in the next progress line's and could exceed its whole)
      take_comm(&tcomm, &tt);
      // the same counts on every rank: the gate follows the global gradient norm
      const long fresh = stats.skipped_total - skipped_total;
      skipped_total = stats.skipped_total;
      if (stats.skipped_in_a_row > cfg.max_bad_steps)
        SD_FATAL_HINT("lower optim.lr or set optim.grad_clip",
                      "%ld non-finite steps in a row (limit train.max_bad_steps = %d) at step %ld",
                      stats.skipped_in_a_row, cfg.max_bad_steps, stats.last_skipped);
      if (lead && fresh == 1)
        fprintf(stderr, "warning: step %ld skipped on every rank: non-finite loss or "
                "gradients\n", stats.last_skipped);
      else if (lead && fresh > 1)
        fprintf(stderr, "warning: %ld steps skipped on every rank since step %ld (the last: "
                "step %ld): non-finite loss or gradients\n", fresh, last_log_step + 1,
                stats.last_skipped);
    }
    if (lead && log_now) {
      const double lr_now = sd_sddit_lr(&s.opt, step);
      double now = sd_now_s();
      const double k = (double)(step + 1 - last_log_step);
      const double ms = 1e3 / k, t_all = now - t_log;
      const double other = span_less(t_all, tt.data + tt.compute + tt.comm + tt.optim);
      double ips = (double)G * k / (now - t_log);
      double eta = (now - t_start) / (step + 1 - start) * (cfg.steps - step - 1);
      char etab[32];
      format_eta(eta, etab, sizeof etab);
      printf("step %6ld/%ld | L_gen %.4f L_dis %.4f | grad %.3g | lr %.1e | %.1f img/s | "
             "ms/step %.1f = data %.2f + compute %.1f + comm %.1f + opt %.1f + other %.1f | "
             "ETA %s%s\n", step + 1, cfg.steps, stats.L_gen, stats.L_dis, stats.grad_norm,
             lr_now, ips, ms * t_all, ms * tt.data, ms * tt.compute, ms * tt.comm,
             ms * tt.optim, ms * other, etab, skipped_total ? " | skipped steps" : "");
      fflush(stdout);
      fprintf(mf, "{\"step\": %ld, \"L_gen\": %.9g, \"L_dis\": %.9g, \"L\": %.9g, "
                  "\"grad_norm\": %.6g, \"lr\": %.6g, \"tau_t\": %.6g, \"teacher_m\": %.8g, "
                  "\"img_per_s\": %.4g, \"ms_step\": %.6g, \"ms_data\": %.6g, "
                  "\"ms_compute\": %.6g, \"ms_comm_exposed\": %.6g, \"ms_comm_total\": %.6g, "
                  "\"ms_optim\": %.6g, \"ms_other\": %.6g, \"ranks\": %d, "
                  "\"skipped_total\": %ld, \"elapsed_s\": %.3f}\n",
              step + 1, stats.L_gen, stats.L_dis, stats.L, stats.grad_norm, lr_now, stats.tau_t,
              stats.teacher_m, ips, ms * t_all, ms * tt.data, ms * tt.compute, ms * tt.comm,
              ms * tt.comm_total, ms * tt.optim, ms * other, world, skipped_total,
              now - t_start);
      fflush(mf);
      sd_loss_history_add(&hist, step + 1, stats.L_gen, stats.L_dis);
      t_log = now;
      memset(&tt, 0, sizeof tt);
      last_log_step = step + 1;
    }
    if (lead && preview_dir[0] &&
        ((step + 1) % cfg.preview_every == 0 || step + 1 == cfg.steps)) {
      sd_sddit_teacher_wait(&s);  // nothing may be in flight while the preview samples
      if (sd_preview_write(&cfg, &s, &hist, preview_dir, step + 1, err, sizeof err) != 0)
        fprintf(stderr, "warning: preview at step %ld not written (training goes on): %s\n",
                step + 1, err);
    }
    const double t_agree = sd_now_s();
    const int sig = sd_train_stop_agreed(&dist);  // every rank, every step boundary
    const double agree = sd_now_s() - t_agree;
    tt.comm += agree;
    tt.comm_total += agree;
    const int stop_here = sig || (cfg.stop_at > 0 && step + 1 == cfg.stop_at);
    if (lead && (step + 1 == cfg.steps || stop_here ||
                 (cfg.ckpt_every > 0 && (step + 1) % cfg.ckpt_every == 0))) {
      sd_sddit_teacher_wait(&s);
      last_save_failed = save_checkpoint(&cfg, ckdir, &s, step + 1, world, cfg_text, last_ckpt,
                                         sizeof last_ckpt) != 0;
    }
    if (stop_here && step + 1 < cfg.steps) {
      if (lead && sig)
        printf("# %s received: stopped after step %ld with a checkpoint; continue with "
               "--resume auto\n", sig == SIGTERM ? "SIGTERM" : sig == SIGUSR1 ? "SIGUSR1"
               : "SIGINT", step + 1);
      else if (lead)
        printf("# stopped after step %ld (train.stop_at); continue with --resume auto\n",
               step + 1);
      end = step + 1;
      break;
    }
  }
  sd_sddit_teacher_wait(&s);  // every rank: no broadcast left in flight
  sd_loss_history_free(&hist);
  if (lead) {
    fclose(mf);
    printf("# done: steps %ld..%ld in %.1f s\n", start, end, sd_now_s() - t_start);
    printf("# outputs: configuration %s/config.ini, metrics %s, checkpoints %s/\n", cfg.out_dir,
           mpath, ckdir);
  }
  free(x0); free(eps); free(ss); free(st); free(y); free(vis);
  if (dev.x0) {
    void *bufs[] = {dev.x0, dev.eps, dev.ss, dev.st, dev.y, dev.vis};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be.ops->free(&be, bufs[i]);
  }
  if (last_save_failed) {
    fprintf(stderr, "error: the final checkpoint was not written%s%s\n",
            last_ckpt[0] ? "; the newest intact one is " : "", last_ckpt);
    rc = 1;
  }
done:
  free(cfg_text);
  sd_train_comm_release(&tcomm);
  sd_batch_source_close(&src);
  sd_sddit_destroy(&s);
  sd_backend_close(&be);
  // every rank agrees on the exit code, so no rank leaves while another is still in MPI
  int64_t code = rc;
  sd_dist_allreduce_max_i64(&dist, &code, 1, "exit status");
  sd_watchdog_stop();
  sd_dist_finalize(&dist);
  return (int)code;
}
