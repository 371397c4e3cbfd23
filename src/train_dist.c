// The trainer's data-parallel glue (see train_dist.h).
#include "train_dist.h"
#include "error.h"

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// ---- the SD-DiT comm hooks ----

static void hook_grad_ready(void *ctx, float *g, size_t n) {
  sd_grad_sync_ready(((sd_train_comm *)ctx)->sync, g, n);
}

static void hook_grad_wait(void *ctx) { sd_grad_sync_wait(((sd_train_comm *)ctx)->sync); }

static void hook_sum(void *ctx, float *buf, size_t n) {
  sd_dist_allreduce_sum_f32(((sd_train_comm *)ctx)->d, buf, n, "loss and center sums");
}

static void hook_bcast0(void *ctx, float *buf, size_t n) {
  sd_dist_bcast_f32(((sd_train_comm *)ctx)->d, buf, n, 0, "teacher broadcast");
}

void sd_train_comm_bind(sd_train_comm *tc, sd_dist *d, const sd_config *cfg, sd_sddit *s) {
  tc->d = d;
  tc->sync = sd_grad_sync_create(d, cfg->overlap);
  sd_sddit_comm *c = &s->comm;
  memset(c, 0, sizeof *c);
  c->ctx = tc;
  c->rank = d->rank;
  c->world = d->world;
  c->teacher_sync_every = cfg->teacher_sync_every;
  c->check_teacher = cfg->check_replicas;
  if (d->world > 1) {
    c->grad_ready = hook_grad_ready;
    c->grad_wait = hook_grad_wait;
    c->sum = hook_sum;
    c->bcast0 = hook_bcast0;
  }
}

void sd_train_comm_release(sd_train_comm *tc) {
  sd_grad_sync_destroy(tc->sync);
  tc->sync = NULL;
}

void sd_train_bcast_state(sd_dist *d, sd_sddit *s, long *step) {
  if (d->world <= 1) return;
  int64_t st = *step;
  sd_dist_bcast_bytes(d, &st, sizeof st, 0, "resume: step");
  *step = (long)st;
  float *bufs[] = {s->params, s->adam_m, s->adam_v, s->teacher};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    sd_dist_bcast_f32(d, bufs[i], s->total, 0, "resume: training state");
  sd_dist_bcast_f32(d, s->center, (size_t)s->hcfg.prototypes, 0, "resume: center");
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
  for (int i = 0; i < 5; i++) {
    uint64_t v = fnv1a(1469598103934665603ull, bufs[i], sizeof(float) * counts[i]) >> 1;
    h[i] = (int64_t)v;
    h[5 + i] = -(int64_t)v;
  }
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
