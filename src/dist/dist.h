// The distributed layer: MPI processes (ranks), their node-local numbering and typed
// collectives that take element counts (never bytes) and split counts above INT_MAX into
// chunks. A process started without a launcher (no mpirun/srun environment) runs as a world of
// one without touching MPI, so single-rank runs and tests need no MPI runtime.
//
// Every collective here is host memory over MPI. Collectives are announced to the watchdog
// (watchdog.h) so that one that does not complete within dist.timeout ends the job with a
// message instead of hanging.
#ifndef SD_DIST_H
#define SD_DIST_H

#include <stddef.h>
#include <stdint.h>

typedef struct sd_dist {
  int rank, world;            // in MPI_COMM_WORLD
  int local_rank, local_size; // on this node (MPI_COMM_TYPE_SHARED)
  int active;                 // 1 when MPI is initialised (world may still be 1)
  int thread_multiple;        // MPI granted MPI_THREAD_MULTIPLE
  char host[64];
  size_t chunk;               // elements per MPI call (INT_MAX; smaller in tests)
  void *comm;                 // MPI_Comm (opaque here so callers need no mpi.h)
  void *diag_comm;            // a duplicate for the watchdog's heartbeats
  void *bg_comm;              // a duplicate for the communication thread (grad_sync.h)
} sd_dist;

// Starts MPI when a launcher is detected (Open MPI, PMIx, PMI) or when SD_FORCE_MPI=1;
// installs the fatal-error hook (MPI_Abort) and the rank in messages. Stops, before anything
// is written, a process that is alone in its world although its launcher started several
// (srun's SLURM_NTASKS > 1 without a working --mpi plugin; OMPI_COMM_WORLD_SIZE or PMI_SIZE
// > 1 with an MPI that does not match the launcher): those would train as separate jobs.
void sd_dist_init(sd_dist *d, int *argc, char ***argv);
// MPI_Finalize when active. Call once, on every rank, at a clean exit.
void sd_dist_finalize(sd_dist *d);

// In-place sum over ranks of count floats / doubles / int64s.
void sd_dist_allreduce_sum_f32(sd_dist *d, float *buf, size_t count, const char *what);
void sd_dist_allreduce_sum_f64(sd_dist *d, double *buf, size_t count, const char *what);
void sd_dist_allreduce_max_i64(sd_dist *d, int64_t *buf, size_t count, const char *what);
// In-place sum over ranks of count bfloat16 values (bf16.h): every partial sum is rounded to
// bf16, as NCCL's bf16 all-reduce does.
void sd_dist_allreduce_sum_bf16(sd_dist *d, uint16_t *buf, size_t count, const char *what);
// Broadcast of count floats / bytes from root.
void sd_dist_bcast_f32(sd_dist *d, float *buf, size_t count, int root, const char *what);
void sd_dist_bcast_bytes(sd_dist *d, void *buf, size_t bytes, int root, const char *what);
void sd_dist_barrier(sd_dist *d, const char *what);

// A view of d whose collectives use the background duplicate communicator, so that a
// communication thread's collectives never interleave with the main thread's (which needs
// MPI_THREAD_MULTIPLE, d->thread_multiple).
sd_dist sd_dist_background(const sd_dist *d);

#endif
