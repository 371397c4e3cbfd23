// Gradient reduction on a communication thread (see grad_sync.h).
#include "util/clock.h"
#include "dist/grad_sync.h"
#include "bf16.h"
#include "error.h"

#include <pthread.h>
#include <stdlib.h>

#define MAX_RANGES 4096  // more than any model has layers

typedef struct range {
  float *p;
  size_t n;
  int bcast;  // 0: mean over ranks; 1: broadcast from rank 0
} range;

struct sd_grad_sync {
  sd_dist *d;
  sd_dist bg;  // d on the background communicator: the thread's collectives
  int overlap;
  int bf16;
  uint16_t *half;     // (half_cap) bf16 staging of the range being reduced
  size_t half_cap;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  range queue[MAX_RANGES];
  int head, tail;  // ranges [head, tail) are waiting; the thread works on queue[head]
  int busy, stop;
  double comm_s, exposed_s;
};


// Mean over ranks of one range, in place (or the broadcast of a range from rank 0), on the
// background communicator when called from the thread.
static void reduce(sd_grad_sync *g, sd_dist *d, range r) {
  if (r.bcast) {
    sd_dist_bcast_f32(d, r.p, r.n, 0, "teacher broadcast");
    return;
  }
  const float inv = 1.0f / (float)g->d->world;
  if (g->bf16) {  // one thread reduces at a time (the comm thread, or the caller without it)
    if (r.n > g->half_cap) {
      free(g->half);
      g->half = sd_xmalloc(sizeof(uint16_t) * r.n, "bf16 gradient staging");
      g->half_cap = r.n;
    }
    for (size_t i = 0; i < r.n; i++) g->half[i] = sd_bf16_from_float(r.p[i]);
    sd_dist_allreduce_sum_bf16(d, g->half, r.n, "gradient all-reduce (bf16)");
    for (size_t i = 0; i < r.n; i++) r.p[i] = sd_bf16_to_float(g->half[i]) * inv;
    return;
  }
  sd_dist_allreduce_sum_f32(d, r.p, r.n, "gradient all-reduce");
  for (size_t i = 0; i < r.n; i++) r.p[i] *= inv;
}

static void *comm_main(void *arg) {
  sd_grad_sync *g = arg;
  pthread_mutex_lock(&g->mu);
  for (;;) {
    while (g->head == g->tail && !g->stop) pthread_cond_wait(&g->cv, &g->mu);
    if (g->head == g->tail && g->stop) break;
    range r = g->queue[g->head];
    g->busy = 1;
    pthread_mutex_unlock(&g->mu);
    double t0 = sd_now_s();
    reduce(g, &g->bg, r);
    double dt = sd_now_s() - t0;
    pthread_mutex_lock(&g->mu);
    g->comm_s += dt;
    g->head++;
    g->busy = 0;
    pthread_cond_broadcast(&g->cv);
  }
  pthread_mutex_unlock(&g->mu);
  return NULL;
}

sd_grad_sync *sd_grad_sync_create(sd_dist *d, int overlap, int bf16) {
  sd_grad_sync *g = sd_xcalloc(1, sizeof *g, "gradient sync");
  g->d = d;
  g->bf16 = bf16;
  g->bg = sd_dist_background(d);
  // The thread's collectives run concurrently with the main thread's: MPI_THREAD_MULTIPLE.
  g->overlap = overlap && d->world > 1 && d->thread_multiple;
  pthread_mutex_init(&g->mu, NULL);
  pthread_cond_init(&g->cv, NULL);
  if (g->overlap && pthread_create(&g->thread, NULL, comm_main, g) != 0)
    SD_FATAL("cannot start the gradient communication thread");
  return g;
}

void sd_grad_sync_destroy(sd_grad_sync *g) {
  if (!g) return;
  if (g->overlap) {
    pthread_mutex_lock(&g->mu);
    g->stop = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->thread, NULL);
  }
  pthread_mutex_destroy(&g->mu);
  pthread_cond_destroy(&g->cv);
  free(g->half);
  free(g);
}

static void enqueue(sd_grad_sync *g, range r) {
  if (g->d->world <= 1) return;
  if (!g->overlap) {
    double t0 = sd_now_s();
    reduce(g, g->d, r);
    g->comm_s += sd_now_s() - t0;
    g->exposed_s += sd_now_s() - t0;
    return;
  }
  pthread_mutex_lock(&g->mu);
  if (g->tail == MAX_RANGES) SD_FATAL("more than %d gradient ranges in one step", MAX_RANGES);
  g->queue[g->tail++] = r;
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
}

void sd_grad_sync_ready(sd_grad_sync *g, float *grads, size_t count) {
  enqueue(g, (range){grads, count, 0});
}

void sd_grad_sync_bcast0(sd_grad_sync *g, float *buf, size_t count) {
  enqueue(g, (range){buf, count, 1});
}

int sd_grad_sync_overlaps(const sd_grad_sync *g) { return g->overlap; }

void sd_grad_sync_wait(sd_grad_sync *g) {
  if (!g->overlap) return;
  double t0 = sd_now_s();
  pthread_mutex_lock(&g->mu);
  while (g->head != g->tail || g->busy) pthread_cond_wait(&g->cv, &g->mu);
  g->head = g->tail = 0;
  pthread_mutex_unlock(&g->mu);
  g->exposed_s += sd_now_s() - t0;
}

void sd_grad_sync_take_times(sd_grad_sync *g, double *comm_s, double *exposed_s) {
  pthread_mutex_lock(&g->mu);
  *comm_s = g->comm_s;
  *exposed_s = g->exposed_s;
  g->comm_s = g->exposed_s = 0;
  pthread_mutex_unlock(&g->mu);
}
