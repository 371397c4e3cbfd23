// The distributed layer (see dist.h): launcher detection, MPI start and end, node-local ranks,
// chunked typed collectives, and MPI_Abort as the fatal-error path.
#include "dist.h"
#include "bf16.h"
#include "error.h"
#include "watchdog.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static MPI_Comm g_comm = MPI_COMM_NULL;
static MPI_Op g_bf16_sum = MPI_OP_NULL;

// The user reduction of bf16 values carried as MPI_UINT16_T: inout = round(in + inout).
static void bf16_sum(void *in, void *inout, int *len, MPI_Datatype *type) {
  (void)type;
  const uint16_t *a = in;
  uint16_t *b = inout;
  for (int i = 0; i < *len; i++)
    b[i] = sd_bf16_from_float(sd_bf16_to_float(a[i]) + sd_bf16_to_float(b[i]));
}

static void abort_hook(int code) {
  fflush(stdout);
  fflush(stderr);
  MPI_Abort(g_comm != MPI_COMM_NULL ? g_comm : MPI_COMM_WORLD, code);
  _exit(code);
}

// A launcher leaves its mark in the environment of every process it starts.
static int launched_by_mpi(void) {
  const char *force = getenv("SD_FORCE_MPI");
  if (force && *force) return strcmp(force, "0") != 0;
  const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE",
                        "MPI_LOCALNRANKS"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
    if (getenv(vars[i])) return 1;
  return 0;
}

void sd_dist_init(sd_dist *d, int *argc, char ***argv) {
  memset(d, 0, sizeof *d);
  d->world = d->local_size = 1;
  d->chunk = INT_MAX;
  if (gethostname(d->host, sizeof d->host) != 0) snprintf(d->host, sizeof d->host, "?");
  d->host[sizeof d->host - 1] = '\0';
  const char *chunk = getenv("SD_DIST_CHUNK");  // tests: force small chunks
  if (chunk && atol(chunk) > 0) d->chunk = (size_t)atol(chunk);
  if (!launched_by_mpi()) return;
  int provided = 0;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) {
    fprintf(stderr, "error: MPI_Init_thread failed on %s\n", d->host);
    exit(1);
  }
  d->active = 1;
  d->thread_multiple = provided >= MPI_THREAD_MULTIPLE;
  if (provided < MPI_THREAD_SERIALIZED) {
    fprintf(stderr, "error: this MPI gives thread level %d; sddit needs at least "
            "MPI_THREAD_SERIALIZED (%d)\n", provided, MPI_THREAD_SERIALIZED);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Comm *comm = malloc(sizeof(MPI_Comm)), *diag = malloc(sizeof(MPI_Comm));
  MPI_Comm *bg = malloc(sizeof(MPI_Comm));
  MPI_Comm_dup(MPI_COMM_WORLD, comm);
  MPI_Comm_dup(MPI_COMM_WORLD, diag);
  MPI_Comm_dup(MPI_COMM_WORLD, bg);
  MPI_Comm_set_errhandler(*comm, MPI_ERRORS_ARE_FATAL);
  MPI_Comm_set_errhandler(*bg, MPI_ERRORS_ARE_FATAL);
  d->bg_comm = bg;
  MPI_Op_create(bf16_sum, 1, &g_bf16_sum);
  g_comm = *comm;
  d->comm = comm;
  d->diag_comm = diag;
  MPI_Comm_rank(*comm, &d->rank);
  MPI_Comm_size(*comm, &d->world);
  MPI_Comm local;
  MPI_Comm_split_type(*comm, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &d->local_rank);
  MPI_Comm_size(local, &d->local_size);
  MPI_Comm_free(&local);
  sd_error_set_rank(d->rank);
  sd_error_set_abort_hook(abort_hook);
}

void sd_dist_finalize(sd_dist *d) {
  if (!d->active) return;
  MPI_Comm_free((MPI_Comm *)d->comm);
  MPI_Comm_free((MPI_Comm *)d->diag_comm);
  MPI_Comm_free((MPI_Comm *)d->bg_comm);
  if (g_bf16_sum != MPI_OP_NULL) MPI_Op_free(&g_bf16_sum);
  free(d->comm);
  free(d->diag_comm);
  free(d->bg_comm);
  g_comm = MPI_COMM_NULL;
  MPI_Finalize();
  d->active = 0;
}

static MPI_Comm comm_of(const sd_dist *d) { return *(const MPI_Comm *)d->comm; }

// One in-place reduction in chunks of at most d->chunk elements.
static void allreduce(sd_dist *d, void *buf, size_t count, size_t elsize, MPI_Datatype type,
                      MPI_Op op, const char *what) {
  if (!d->active || d->world == 1 || count == 0) return;
  int slot = sd_watchdog_enter(what);
  for (size_t done = 0; done < count; done += d->chunk) {
    size_t n = count - done < d->chunk ? count - done : d->chunk;
    MPI_Allreduce(MPI_IN_PLACE, (char *)buf + done * elsize, (int)n, type, op, comm_of(d));
  }
  sd_watchdog_leave(slot);
}

void sd_dist_allreduce_sum_f32(sd_dist *d, float *buf, size_t count, const char *what) {
  allreduce(d, buf, count, sizeof(float), MPI_FLOAT, MPI_SUM, what);
}

void sd_dist_allreduce_sum_f64(sd_dist *d, double *buf, size_t count, const char *what) {
  allreduce(d, buf, count, sizeof(double), MPI_DOUBLE, MPI_SUM, what);
}

void sd_dist_allreduce_max_i64(sd_dist *d, int64_t *buf, size_t count, const char *what) {
  allreduce(d, buf, count, sizeof(int64_t), MPI_INT64_T, MPI_MAX, what);
}

void sd_dist_allreduce_sum_bf16(sd_dist *d, uint16_t *buf, size_t count, const char *what) {
  allreduce(d, buf, count, sizeof(uint16_t), MPI_UINT16_T, g_bf16_sum, what);
}

static void bcast(sd_dist *d, void *buf, size_t count, size_t elsize, MPI_Datatype type,
                  int root, const char *what) {
  if (!d->active || d->world == 1 || count == 0) return;
  int slot = sd_watchdog_enter(what);
  for (size_t done = 0; done < count; done += d->chunk) {
    size_t n = count - done < d->chunk ? count - done : d->chunk;
    MPI_Bcast((char *)buf + done * elsize, (int)n, type, root, comm_of(d));
  }
  sd_watchdog_leave(slot);
}

void sd_dist_bcast_f32(sd_dist *d, float *buf, size_t count, int root, const char *what) {
  bcast(d, buf, count, sizeof(float), MPI_FLOAT, root, what);
}

void sd_dist_bcast_bytes(sd_dist *d, void *buf, size_t bytes, int root, const char *what) {
  bcast(d, buf, bytes, 1, MPI_BYTE, root, what);
}

sd_dist sd_dist_background(const sd_dist *d) {
  sd_dist b = *d;
  if (d->active) b.comm = d->bg_comm;
  return b;
}

void sd_dist_barrier(sd_dist *d, const char *what) {
  if (!d->active || d->world == 1) return;
  int slot = sd_watchdog_enter(what);
  MPI_Barrier(comm_of(d));
  sd_watchdog_leave(slot);
}
