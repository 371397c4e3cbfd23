// One NCCL communicator over the MPI world (see dist_nccl.h).
#include "dist/dist_nccl.h"
#include "error.h"
#include "dist/watchdog.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

// Every rank learns whether any rank failed (max of failing rank + 1). Returns 0 when none
// did; otherwise -1 with this rank's message, or one naming the first rank that failed.
static int agree(sd_dist *d, int failed, const char *mine, const char *stage, char *err,
                 size_t errlen) {
  int64_t who = failed ? (int64_t)d->rank + 1 : 0;
  sd_dist_allreduce_max_i64(d, &who, 1, stage);
  if (who == 0) return 0;
  if (failed) return sd_errorf(err, errlen, "%s", mine);
  return sd_errorf(err, errlen, "%s failed on rank %lld (see its message)", stage,
                   (long long)(who - 1));
}

int sd_dist_nccl_init(sd_dist *d, sd_nccl **out, char *err, size_t errlen) {
  *out = NULL;
  char msg[512] = "";
  int failed = 0, device = -1;
  unsigned char id[SD_NCCL_ID_BYTES];
  memset(id, 0, sizeof id);
  if (!sd_nccl_available()) {
    (void)sd_nccl_unique_id(id, msg, sizeof msg);  // fails with the stub's "built without"
    failed = 1;
  } else if (sd_cuda_bind_device(d->local_rank, &device, msg, sizeof msg) != 0) {
    failed = 1;
  } else if (d->rank == 0 && sd_nccl_unique_id(id, msg, sizeof msg) != 0) {
    failed = 1;
  }
  if (agree(d, failed, msg, "NCCL setup (device binding)", err, errlen) != 0) return -1;
  sd_dist_bcast_bytes(d, id, sizeof id, 0, "NCCL setup (unique id)");
  // ncclCommInitRank waits for every rank: a rank that never arrives ends the job by the
  // watchdog's deadline instead of hanging here.
  int slot = sd_watchdog_enter("NCCL communicator setup");
  sd_nccl *c = sd_nccl_create(id, d->rank, d->world, msg, sizeof msg);
  sd_watchdog_leave(slot);
  if (agree(d, c == NULL, msg, "NCCL setup (communicator)", err, errlen) != 0) {
    sd_nccl_abort(c);
    return -1;
  }
  *out = c;
  return 0;
}
