// Gradient all-reduce overlapped with the backward pass. The backward reports each range of
// the flat gradient buffer as soon as it is final (sd_grad_sync_ready); a communication thread
// reduces the ranges in that order (sum over ranks, then scaled by 1/world: the mean) while
// the backward goes on with the next layers. sd_grad_sync_wait blocks until every reported
// range is done and accounts the time it waited: the communication the overlap did not hide.
// The same queue carries broadcasts from rank 0 (sd_grad_sync_bcast0: the teacher, sent while
// the next step's student forward runs). The thread's collectives use the background
// communicator (sd_dist_background), so the main thread may run its own meanwhile.
#ifndef SD_GRAD_SYNC_H
#define SD_GRAD_SYNC_H

#include "dist/dist.h"

#include <stddef.h>

typedef struct sd_grad_sync sd_grad_sync;

// overlap = 0 reduces each range at once in the calling thread (for comparison and debugging).
// bf16 = 1 sends the gradients as bfloat16 (dist.grad_dtype = bf16): half the bytes; each
// rank's values and every partial sum are rounded to bf16, the mean is formed in fp32.
sd_grad_sync *sd_grad_sync_create(sd_dist *d, int overlap, int bf16);
void sd_grad_sync_destroy(sd_grad_sync *g);
void sd_grad_sync_ready(sd_grad_sync *g, float *grads, size_t count);
// Queue a broadcast of count floats from rank 0 (at once in the caller without overlap).
void sd_grad_sync_bcast0(sd_grad_sync *g, float *buf, size_t count);
// Blocks until every queued job (reductions and broadcasts) is done.
void sd_grad_sync_wait(sd_grad_sync *g);
// 1 when jobs run on the communication thread.
int sd_grad_sync_overlaps(const sd_grad_sync *g);
// Seconds spent inside the reductions and seconds the caller waited for them, since the last
// call (then reset).
void sd_grad_sync_take_times(sd_grad_sync *g, double *comm_s, double *exposed_s);

#endif
