// The distributed layer (see dist.h): launcher detection, MPI start and end, the refusal of a
// task that is alone in its MPI world although its launcher started several, node-local ranks,
// chunked typed collectives, and MPI_Abort as the fatal-error path.
#include "dist/dist.h"
#include "bf16.h"
#include "error.h"
#include "dist/watchdog.h"

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

// How many processes the launcher says it started (0 when it says nothing), and the variable
// that says so. mpirun's own count comes first: Open MPI's mpirun inside a Slurm allocation
// starts its daemons with srun, so its ranks carry srun's variables for the daemons. Slurm's
// count is believed only in a process that srun started (SLURM_STEP_ID, SLURM_STEP_NUM_TASKS):
// the batch shell has SLURM_NTASKS for the whole allocation but is one process.
static long launcher_world(const char **var) {
  const char *mpi_vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
  const char *slurm_vars[] = {"SLURM_NTASKS", "SLURM_NPROCS", "SLURM_STEP_NUM_TASKS"};
  const int by_srun = getenv("SLURM_STEP_ID") || getenv("SLURM_STEP_NUM_TASKS");
  for (int pass = 0; pass < 2; pass++) {
    const char **vars = pass ? slurm_vars : mpi_vars;
    const size_t nv = pass ? sizeof slurm_vars / sizeof *slurm_vars
                           : sizeof mpi_vars / sizeof *mpi_vars;
    if (pass && !by_srun) break;
    for (size_t i = 0; i < nv; i++) {
      const char *v = getenv(vars[i]);
      char *end;
      long n = v ? strtol(v, &end, 10) : 0;
      if (v && *v && *end == '\0' && n > 0) {
        *var = vars[i];
        return n;
      }
    }
  }
  *var = NULL;
  return 0;
}

// Stops a process that is one of several tasks a launcher started but is alone in its MPI
// world (srun without a working --mpi plugin, an MPI that does not match the launcher): the
// tasks would each train as a world of one and write the same run directory. Called before
// anything is written. mpi_world = 0: MPI was not started at all.
static void refuse_lone_task(int mpi_world) {
  const char *var;
  const long n = launcher_world(&var);
  if (n <= 1 || mpi_world > 1) return;
  const char *procid = getenv("SLURM_PROCID");
  if (mpi_world == 0 && procid) sd_error_set_rank(atoi(procid));
  const int slurm = strncmp(var, "SLURM_", 6) == 0;
  char world[160];
  if (mpi_world == 0)
    snprintf(world, sizeof world, "MPI was not started (no PMI or PMIx variables in the "
             "environment), so this process is a world of 1");
  else
    snprintf(world, sizeof world, "MPI reports a world of %d process", mpi_world);
  if (slurm)
    SD_FATAL_HINT("start the tasks through MPI: srun --mpi=pmix (`srun --mpi=list` shows the "
                  "plugins this Slurm has; use the one the MPI was built for, e.g. pmix_v4 or "
                  "pmi2; slurm/*.sbatch take it from SRUN_MPI); check the MPI with `ompi_info "
                  "| grep -i pmix`; one rank on purpose: srun --ntasks=1",
                  "%s = %ld: srun started %ld tasks, but %s: each task would run as its own "
                  "one-rank job and all would write the same files; nothing was written",
                  var, n, n, world);
  SD_FATAL_HINT("start sddit with the mpirun of the MPI it was built with (`ldd sddit | grep "
                "mpi` names it), or with launch/sddit-mpirun",
                "%s = %ld: the launcher started %ld processes, but %s: this sddit's MPI does "
                "not match the launcher, so each process would run as its own one-rank job and "
                "all would write the same files; nothing was written", var, n, n, world);
}

void sd_dist_init(sd_dist *d, int *argc, char ***argv) {
  memset(d, 0, sizeof *d);
  d->world = d->local_size = 1;
  d->chunk = INT_MAX;
  if (gethostname(d->host, sizeof d->host) != 0) snprintf(d->host, sizeof d->host, "?");
  d->host[sizeof d->host - 1] = '\0';
  const char *chunk = getenv("SD_DIST_CHUNK");  // tests: force small chunks
  if (chunk && atol(chunk) > 0) d->chunk = (size_t)atol(chunk);
  if (!launched_by_mpi()) {
    refuse_lone_task(0);
    const char *n = getenv("SLURM_NTASKS");
    if (n && atol(n) > 1)
      fprintf(stderr, "warning: SLURM_NTASKS = %s but this process was not started by srun: it "
              "runs as a single rank (start the ranks with srun --mpi=pmix, as slurm/*.sbatch "
              "do)\n", n);
    return;
  }
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
  if (d->world == 1) {
    const char *var;
    if (launcher_world(&var) > 1) {  // alone in the world: end MPI cleanly, then refuse
      MPI_Comm_free(comm);
      MPI_Comm_free(diag);
      MPI_Comm_free(bg);
      MPI_Op_free(&g_bf16_sum);
      g_comm = MPI_COMM_NULL;
      MPI_Finalize();
      refuse_lone_task(1);
    }
  }
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
