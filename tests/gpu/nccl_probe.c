// Run by test_nccl.sh, alone or under mpirun with one rank per GPU: the NCCL communicator's
// collectives on device buffers holding dyadic values, whose sums are exact in any order, so
// sums and broadcasts must match their closed forms bit for bit (and the mean too when the
// world is a power of two; otherwise within 1e-6 relative, since 1/world is inexact). Counts
// span several chunks when SD_NCCL_CHUNK is small. Prints one line per check, "passed" on
// rank 0 at the end, and exits 0; 1 on any failure; 77 (skip) when the build has no NCCL or
// no CUDA device is visible.
#include "dist/dist.h"
#include "dist/dist_nccl.h"
#include "nccl_comm.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_fail = 0;

static void report(const sd_dist *d, const sd_nccl *c, const char *what, size_t n, long bad,
                   double got, double want) {
  if (bad >= 0) {
    printf("FAIL rank %d: %s, count %zu: index %ld is %.17g, want %.17g\n", d->rank, what, n,
           bad, got, want);
    g_fail = 1;
  } else if (d->rank == 0) {
    printf("ok   %s, count %zu (world %d, chunk %zu)\n", what, n, d->world, sd_nccl_chunk(c));
  }
}

static void fail_msg(const sd_dist *d, const char *what, const char *err) {
  printf("FAIL rank %d: %s: %s\n", d->rank, what, err);
  g_fail = 1;
}

// Element i on rank r: (i % 61 - 30) * 2^-(i % 7) * (r + 1).
static double value(size_t i, int r) {
  return ldexp((double)((long)(i % 61) - 30), -(int)(i % 7)) * (r + 1);
}

static int is_pow2(int w) { return w > 0 && (w & (w - 1)) == 0; }

enum op { OP_SUM, OP_MEAN, OP_BCAST };

// Fills, runs one collective, copies back and compares; reports the first bad index.
static void check(sd_dist *d, sd_nccl *c, enum op op, size_t n) {
  const char *names[] = {"allreduce sum", "allreduce mean", "broadcast from the last rank"};
  const char *what = names[op];
  char err[512];
  float *h = malloc(sizeof(float) * n);
  void *dev = NULL;
  if (!h) {
    fail_msg(d, what, "out of host memory");
    return;
  }
  for (size_t i = 0; i < n; i++) h[i] = (float)value(i, d->rank);
  const int root = d->world - 1;
  int rc = sd_cuda_alloc(&dev, sizeof(float) * n, err, sizeof err);
  if (rc == 0) rc = sd_cuda_to_device(dev, h, sizeof(float) * n, err, sizeof err);
  if (rc == 0) {
    if (op == OP_SUM) rc = sd_nccl_allreduce_sum_f32(c, dev, n, err, sizeof err);
    else if (op == OP_MEAN) rc = sd_nccl_allreduce_mean_f32(c, dev, n, err, sizeof err);
    else rc = sd_nccl_bcast_f32(c, dev, n, root, err, sizeof err);
  }
  if (rc == 0) rc = sd_nccl_sync(c, err, sizeof err);
  if (rc == 0) {
    memset(h, 0xff, sizeof(float) * n);  // NaNs: an element not copied back cannot pass
    rc = sd_cuda_to_host(h, dev, sizeof(float) * n, err, sizeof err);
  }
  sd_cuda_free(dev);
  if (rc != 0) {
    fail_msg(d, what, err);
    free(h);
    return;
  }
  const double tri = (double)d->world * (d->world + 1) / 2.0;
  const int exact = op != OP_MEAN || is_pow2(d->world);
  long bad = -1;
  double got = 0, want = 0;
  for (size_t i = 0; i < n && bad < 0; i++) {
    double base = value(i, 0);
    want = op == OP_SUM ? base * tri : op == OP_MEAN ? base * tri / d->world : value(i, root);
    got = h[i];
    int ok = exact ? got == want : fabs(got - want) <= 1e-6 * fabs(want);
    if (!ok) bad = (long)i;
  }
  report(d, c, what, n, bad, got, want);
  free(h);
}

int main(int argc, char **argv) {
  sd_dist d;
  sd_dist_init(&d, &argc, &argv);
  char err[512];
  int ndev = -1;
  if (!sd_nccl_available()) {
    unsigned char id[SD_NCCL_ID_BYTES];
    (void)sd_nccl_unique_id(id, err, sizeof err);  // fails, saying what the build lacks
    if (d.rank == 0) printf("skip: %s\n", err);
    sd_dist_finalize(&d);
    return 77;
  }
  if ((ndev = sd_cuda_device_count(err, sizeof err)) < 0) {
    if (d.rank == 0) printf("skip: %s\n", err);
    sd_dist_finalize(&d);
    return 77;
  }
  if (d.rank == 0) printf("visible devices %d, world %d\n", ndev, d.world);
  sd_nccl *c = NULL;
  if (sd_dist_nccl_init(&d, &c, err, sizeof err) != 0) {
    printf("FAIL rank %d: NCCL setup: %s\n", d.rank, err);
    sd_dist_finalize(&d);
    return 1;
  }
  if (!sd_nccl_stream(c) && d.rank == 0) printf("note: the communicator's stream is NULL\n");
  if (sd_nccl_rank(c) != d.rank || sd_nccl_world(c) != d.world) {
    printf("FAIL rank %d: communicator says rank %d of %d\n", d.rank, sd_nccl_rank(c),
           sd_nccl_world(c));
    g_fail = 1;
  }
  printf("rank %d on device %d\n", d.rank, sd_nccl_device(c));
  const size_t counts[] = {1, 7, 2500, 100003};
  size_t ncounts = sizeof counts / sizeof counts[0];
  if (counts[ncounts - 1] <= sd_nccl_chunk(c) && d.rank == 0)
    printf("note: no count spans several chunks (chunk %zu; set SD_NCCL_CHUNK)\n",
           sd_nccl_chunk(c));
  for (size_t k = 0; k < ncounts; k++)
    for (int op = OP_SUM; op <= OP_BCAST; op++) check(&d, c, (enum op)op, counts[k]);
  sd_nccl_destroy(c);
  int64_t any = g_fail;
  sd_dist_allreduce_max_i64(&d, &any, 1, "nccl_probe result");
  if (d.rank == 0 && any == 0) printf("passed\n");
  sd_dist_finalize(&d);
  return any ? 1 : 0;
}
