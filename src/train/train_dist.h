// The trainer's data-parallel glue: the SD-DiT comm hooks on top of the distributed layer
// (gradient buckets, loss and center sums, the teacher broadcast), the shared state sent from
// rank 0 after a resume, the stop request agreed at step boundaries (SIGTERM, SIGUSR1), and the
// replica check (every rank holds bitwise the same weights).
#ifndef SD_TRAIN_DIST_H
#define SD_TRAIN_DIST_H

#include "config/config.h"
#include "dist/dist.h"
#include "dist/grad_sync.h"
#include "objective/sddit.h"

typedef struct sd_train_comm {
  sd_dist *d;
  sd_grad_sync *sync;
  sd_sddit *s;
  int host_memory;  // the backend's buffers are host memory (CPU); else they are staged
  float *stage;     // (s->total) host staging buffer for device backends without NCCL
  struct sd_nccl *nccl;  // device backends with NCCL: collectives on device memory
  void *stream;          // the backend's compute stream (cudaStream_t)
  int grad_bf16;         // dist.grad_dtype = bf16
  double blocked_s;      // seconds the calling thread spent in the hooks' blocking collectives
} sd_train_comm;

// Fills s->comm from the configuration (dist.overlap, teacher_sync_every, check_replicas).
// On the CPU backend gradients are reduced range by range on the communication thread. On a
// CUDA backend built with NCCL each range is all-reduced on NCCL's stream as soon as the
// compute stream has produced it (stream events, no host wait), and the compute stream waits
// for the reductions before the optimizer; without NCCL every reduction is staged through host
// memory after the backward.
void sd_train_comm_bind(sd_train_comm *tc, sd_dist *d, const sd_config *cfg, sd_sddit *s);
void sd_train_comm_release(sd_train_comm *tc);

// Communication times since the last call (then reset), seconds: total_s inside collectives
// (on the communication thread or not), exposed_s the part the calling (main) thread waited
// for: gradient ranges and teacher broadcasts the overlap did not hide (sd_grad_sync_wait) and
// the blocking loss and center sums and staged transfers. exposed_s is made of intervals of
// the calling thread only, so between two calls it never exceeds their wall-clock distance.
void sd_train_comm_take_times(sd_train_comm *tc, double *total_s, double *exposed_s);

// Rank 0's step and training state (parameters, Adam moments, teacher, center) to every rank.
void sd_train_bcast_state(sd_dist *d, sd_sddit *s, long *step);

// SIGTERM, SIGUSR1 and a first SIGINT (Ctrl-C) set a flag; the step loop asks at every step boundary whether any rank
// got one (one small all-reduce). Returns the signal number, or 0.
void sd_train_signals_install(void);
int sd_train_stop_agreed(sd_dist *d);

// Fatal (naming the step and the buffer) unless every rank holds bitwise the same student,
// Adam moments, teacher and center, and every teacher broadcast matched the local EMA.
void sd_train_check_replicas(sd_dist *d, const sd_sddit *s, long step);

#endif
