// The distributed layer's GPU side: one NCCL communicator over the MPI world (dist.h), for
// builds with CUDA and NCCL. Builds without them keep using MPI on host buffers (dist.h).
#ifndef SD_DIST_NCCL_H
#define SD_DIST_NCCL_H

#include "dist/dist.h"
#include "nccl_comm.h"

#include <stddef.h>

// Collective over the world: binds this process to device local_rank % (visible devices),
// rank 0 makes the NCCL unique id and broadcasts its 128 bytes over MPI, then every rank
// creates its communicator (rank d->rank of d->world) on its device. A world of one without
// MPI needs no broadcast. Ranks agree on failure: when any rank fails (no NCCL in the build,
// no device, NCCL init error), every rank returns -1, *out NULL, with its own message or one
// naming the rank that failed. Destroy the communicator with sd_nccl_destroy before
// sd_dist_finalize.
int sd_dist_nccl_init(sd_dist *d, sd_nccl **out, char *err, size_t errlen);

#endif
