// The trainer's data-parallel glue (see train_dist.h).
#include "util/clock.h"
#include "train/train_dist.h"
#include "dist/dist_nccl.h"
#include "error.h"
#include "nccl_comm.h"

#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>


// ---- the SD-DiT comm hooks ----

static void hook_grad_ready(void *ctx, float *g, size_t n) {
  sd_grad_sync_ready(((sd_train_comm *)ctx)->sync, g, n);
}

static void hook_grad_wait(void *ctx) { sd_grad_sync_wait(((sd_train_comm *)ctx)->sync); }

static void hook_sum_host(void *ctx, float *buf, size_t n) {
  sd_train_comm *tc = ctx;
  const double t0 = sd_now_s();
  sd_dist_allreduce_sum_f32(tc->d, buf, n, "loss sums");
  tc->blocked_s += sd_now_s() - t0;
}

// Backend memory through the host staging buffer (device backends); the caller waits.
static void staged(sd_train_comm *tc, float *dev, size_t n, int root, const char *what) {
  sd_backend *be = tc->s->be;
  const double t0 = sd_now_s();
  be->ops->to_host(be, tc->stage, dev, sizeof(float) * n);
  if (root < 0) sd_dist_allreduce_sum_f32(tc->d, tc->stage, n, what);
  else sd_dist_bcast_f32(tc->d, tc->stage, n, root, what);
  be->ops->to_device(be, dev, tc->stage, sizeof(float) * n);
  tc->blocked_s += sd_now_s() - t0;
}

static void hook_sum_dev(void *ctx, float *buf, size_t n) {
  sd_train_comm *tc = ctx;
  if (!tc->host_memory) {
    staged(tc, buf, n, -1, "center sums");
    return;
  }
  const double t0 = sd_now_s();
  sd_dist_allreduce_sum_f32(tc->d, buf, n, "center sums");
  tc->blocked_s += sd_now_s() - t0;
}

// Host memory: queued on the communication thread (or sent at once without overlap).
static void hook_bcast0_start(void *ctx, float *buf, size_t n) {
  sd_train_comm *tc = ctx;
  if (tc->host_memory) sd_grad_sync_bcast0(tc->sync, buf, n);
  else staged(tc, buf, n, 0, "teacher broadcast");
}

// Device backends: the whole gradient after the backward, staged, then the mean.
static void hook_grad_wait_staged(void *ctx) {
  sd_train_comm *tc = ctx;
  sd_sddit *s = tc->s;
  staged(tc, s->grads, s->total, -1, "gradient all-reduce");
  const float inv = 1.0f / (float)tc->d->world;
  float *one = s->scalars + 8;
  s->be->ops->to_device(s->be, one, &inv, sizeof inv);
  s->be->ops->scale_rows(s->be, s->grads, s->grads, one, 1, s->total);
}

// ---- device backends with NCCL: everything stream-ordered, nothing waits on the host ----

static void nccl_check(int rc, const char *what, const char *err) {
  if (rc != 0) SD_FATAL("%s: %s", what, err);
}

static void nccl_grad_ready(void *ctx, float *g, size_t n) {
  sd_train_comm *tc = ctx;
  char err[512];
  nccl_check(sd_nccl_wait_for(tc->nccl, tc->stream, err, sizeof err), "gradient bucket", err);
  nccl_check(tc->grad_bf16 ? sd_nccl_allreduce_mean_bf16(tc->nccl, g, n, err, sizeof err)
                          : sd_nccl_allreduce_mean_f32(tc->nccl, g, n, err, sizeof err),
             "gradient bucket", err);
}

static void nccl_grad_wait(void *ctx) {
  sd_train_comm *tc = ctx;
  char err[512];
  nccl_check(sd_nccl_join_into(tc->nccl, tc->stream, err, sizeof err), "gradient join", err);
}

static void nccl_sum_dev(void *ctx, float *buf, size_t n) {
  sd_train_comm *tc = ctx;
  char err[512];
  nccl_check(sd_nccl_wait_for(tc->nccl, tc->stream, err, sizeof err), "center sum", err);
  nccl_check(sd_nccl_allreduce_sum_f32(tc->nccl, buf, n, err, sizeof err), "center sum", err);
  nccl_check(sd_nccl_join_into(tc->nccl, tc->stream, err, sizeof err), "center sum", err);
}

// On NCCL's stream after the EMA that produced it; the compute stream joins it only when the
// teacher forward needs it (nccl_bcast0_wait), so the student forward runs meanwhile.
static void nccl_bcast0_start(void *ctx, float *buf, size_t n) {
  sd_train_comm *tc = ctx;
  char err[512];
  nccl_check(sd_nccl_wait_for(tc->nccl, tc->stream, err, sizeof err), "teacher broadcast", err);
  nccl_check(sd_nccl_bcast_f32(tc->nccl, buf, n, 0, err, sizeof err), "teacher broadcast", err);
}

static void nccl_bcast0_wait(void *ctx) {
  sd_train_comm *tc = ctx;
  char err[512];
  nccl_check(sd_nccl_join_into(tc->nccl, tc->stream, err, sizeof err), "teacher broadcast", err);
}

void sd_train_comm_bind(sd_train_comm *tc, sd_dist *d, const sd_config *cfg, sd_sddit *s) {
  memset(tc, 0, sizeof *tc);
  tc->d = d;
  tc->s = s;
  // the CPU stand-in of the CUDA backend ("sim", SD_CUDA_SIMULATE) keeps host memory too
  tc->host_memory = strcmp(s->be->name, "cpu") == 0 || strcmp(s->be->name, "sim") == 0;
  tc->grad_bf16 = strcmp(cfg->grad_dtype, "bf16") == 0;
  tc->sync = sd_grad_sync_create(d, cfg->overlap && tc->host_memory, tc->grad_bf16);
  if (!tc->host_memory && d->world > 1 && sd_nccl_available()) {
    char err[512];
    if (sd_dist_nccl_init(d, &tc->nccl, err, sizeof err) != 0)
      SD_FATAL_HINT("set NCCL_DEBUG=INFO for NCCL's own account", "NCCL: %s", err);
    tc->stream = sd_backend_cuda_stream(s->be);
  } else if (!tc->host_memory && d->world > 1) {
    tc->stage = sd_xmalloc(sizeof(float) * s->total, "communication staging");
    if (tc->grad_bf16 && d->rank == 0)
      fprintf(stderr, "warning: dist.grad_dtype = bf16 needs NCCL on a GPU backend; this build "
              "reduces gradients through host memory in fp32\n");
  }
  sd_sddit_comm *c = &s->comm;
  memset(c, 0, sizeof *c);
  c->ctx = tc;
  c->rank = d->rank;
  c->world = d->world;
  c->teacher_sync_every = cfg->teacher_sync_every;
  c->check_teacher = cfg->check_replicas;
  if (d->world > 1 && tc->nccl) {
    c->grad_ready = nccl_grad_ready;
    c->grad_wait = nccl_grad_wait;
    c->sum_host = hook_sum_host;
    c->sum_dev = nccl_sum_dev;
    c->bcast0_start = nccl_bcast0_start;
    c->bcast0_wait = nccl_bcast0_wait;
  } else if (d->world > 1) {
    c->grad_ready = tc->host_memory ? hook_grad_ready : NULL;
    c->grad_wait = tc->host_memory ? hook_grad_wait : hook_grad_wait_staged;
    c->sum_host = hook_sum_host;
    c->sum_dev = hook_sum_dev;
    c->bcast0_start = hook_bcast0_start;
    c->bcast0_wait = tc->host_memory ? hook_grad_wait : NULL;
  }
}

void sd_train_comm_take_times(sd_train_comm *tc, double *total_s, double *exposed_s) {
  double total = 0, exposed = 0;
  if (tc->sync) sd_grad_sync_take_times(tc->sync, &total, &exposed);
  *total_s = total + tc->blocked_s;
  *exposed_s = exposed + tc->blocked_s;
  tc->blocked_s = 0;
}

void sd_train_comm_release(sd_train_comm *tc) {
  if (tc->nccl) sd_nccl_destroy(tc->nccl);
  tc->nccl = NULL;
  sd_grad_sync_destroy(tc->sync);
  tc->sync = NULL;
  free(tc->stage);
  tc->stage = NULL;
}

void sd_train_bcast_state(sd_dist *d, sd_sddit *s, long *step) {
  if (d->world <= 1) return;
  int64_t st = *step;
  sd_dist_bcast_bytes(d, &st, sizeof st, 0, "resume: step");
  *step = (long)st;
  float *bufs[] = {s->params, s->adam_m, s->adam_v, s->teacher, s->center};
  size_t counts[] = {s->total, s->total, s->total, s->total, (size_t)s->hcfg.prototypes};
  float *host = sd_xmalloc(sizeof(float) * s->total, "resume broadcast");
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
    s->be->ops->to_host(s->be, host, bufs[i], sizeof(float) * counts[i]);
    sd_dist_bcast_f32(d, host, counts[i], 0, "resume: training state");
    s->be->ops->to_device(s->be, bufs[i], host, sizeof(float) * counts[i]);
  }
  free(host);
}

// ---- stop requests ----

static volatile sig_atomic_t g_signal = 0;

static void on_signal(int sig) { g_signal = sig; }

void sd_train_signals_install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGUSR1, &sa, NULL);
  sa.sa_flags |= SA_RESETHAND;  // Ctrl-C once: checkpoint and stop; twice: the default (end now)
  sigaction(SIGINT, &sa, NULL);
}

int sd_train_stop_agreed(sd_dist *d) {
  int64_t sig = g_signal;
  sd_dist_allreduce_max_i64(d, &sig, 1, "stop-request agreement");
  return (int)sig;
}

// ---- replica check ----

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

void sd_train_check_replicas(sd_dist *d, const sd_sddit *s, long step) {
  if (d->world <= 1) return;
  const char *names[] = {"student", "adam_m", "adam_v", "teacher", "center"};
  const float *bufs[] = {s->params, s->adam_m, s->adam_v, s->teacher, s->center};
  size_t counts[] = {s->total, s->total, s->total, s->total, (size_t)s->hcfg.prototypes};
  int64_t h[12];  // max of each hash, max of each complement: equal everywhere iff min == max
  float *host = sd_xmalloc(sizeof(float) * s->total, "replica check");
  for (int i = 0; i < 5; i++) {
    s->be->ops->to_host(s->be, host, bufs[i], sizeof(float) * counts[i]);
    uint64_t v = fnv1a(1469598103934665603ull, host, sizeof(float) * counts[i]) >> 1;
    h[i] = (int64_t)v;
    h[5 + i] = -(int64_t)v;
  }
  free(host);
  h[10] = s->teacher_mismatches;
  h[11] = -s->teacher_mismatches;
  int64_t mine[12];
  memcpy(mine, h, sizeof h);
  sd_dist_allreduce_max_i64(d, h, 12, "replica check");
  for (int i = 0; i < 5; i++)
    if (h[i] != -h[5 + i])
      SD_FATAL("after step %ld the ranks hold different %s buffers (hash here %lld, range "
               "%lld..%lld)", step + 1, names[i], (long long)mine[i], (long long)-h[5 + i],
               (long long)h[i]);
  if (h[10] != 0)
    SD_FATAL("after step %ld a teacher broadcast differed from a rank's own EMA (%lld times "
             "on the worst rank)", step + 1, (long long)h[10]);
}
