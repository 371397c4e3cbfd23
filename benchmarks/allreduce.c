// Benchmark: all-reduce bandwidth of our communication layer (sd_dist_allreduce_sum_f32: MPI on
// host buffers, in place), swept over message sizes like the usual collective benchmarks.
//
//   mpirun -n N benchmarks/allreduce [-b MIN_BYTES] [-e MAX_BYTES] [-f FACTOR] [-n ITERS]
//                                    [-w WARMUP] [--check | --no-check] [--json] [--nccl]
// --nccl: the same sweep through NCCL on device memory (one GPU per rank, sd_dist_nccl_init);
// prints "# skip: ..." and exits 0 where the build or the machine has no NCCL/GPU.
//
// Sizes take an optional K, M or G suffix (powers of 1024) and are rounded down to whole
// floats; defaults: 8 B to 64M, factor 2, 20 timed iterations after 5 warm-up ones.
// Per size: a barrier before every iteration, each rank times its own call, the per-iteration
// times are reduced to their maximum over ranks, and time = the mean of those maxima.
//   algbw = size / time            busbw = algbw * 2 (n-1) / n
// (busbw: the bytes each rank must move through its link in a ring all-reduce, per second, so
// that figures for different rank counts compare with the link's bandwidth.)
// --check (default): after the timed iterations the buffer is refilled with dyadic values
// (rank+1) * k, k = 1..64, reduced once more and compared element by element with the exact
// sum n(n+1)/2 * k; "wrong" counts the elements that differ (the exit status is 1 if any do).
// Output on rank 0: a header (ranks, host, date) and one row per size, or with --json one
// object per size.
#include "dist/dist.h"
#include "dist/dist_nccl.h"
#include "nccl_comm.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct opts {
  size_t min_bytes, max_bytes;
  double factor;
  int iters, warmup, check, json;
} opts;

static void usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s [-b MIN_BYTES] [-e MAX_BYTES] [-f FACTOR] [-n ITERS] [-w WARMUP]\n"
          "          [--check | --no-check] [--json] [--nccl]\n"
          "  sizes accept K, M, G suffixes (1024-based); defaults -b 8 -e 64M -f 2 -n 20 -w 5\n",
          argv0);
}

// "64M" -> 67108864; 0 on a malformed value.
static size_t parse_size(const char *s) {
  char *end = NULL;
  double v = strtod(s, &end);
  if (end == s || v < 0) return 0;
  double mul = 1;
  switch (*end) {
  case 'k': case 'K': mul = 1024.0; end++; break;
  case 'm': case 'M': mul = 1024.0 * 1024; end++; break;
  case 'g': case 'G': mul = 1024.0 * 1024 * 1024; end++; break;
  default: break;
  }
  if (*end == 'B' || *end == 'b') end++;
  if (*end) return 0;
  return (size_t)(v * mul);
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// Where the reduction happens: MPI on host memory, or NCCL on device memory (--nccl).
typedef struct path {
  sd_dist *d;
  sd_nccl *nccl;  // NULL: MPI on host memory
  float *dev;     // device buffer (NCCL)
} path;

// In-place sum of count floats: host buf (MPI), or the device copy (NCCL, stream synced).
static void reduce(const path *p, float *buf, size_t count, const char *what) {
  if (!p->nccl) {
    sd_dist_allreduce_sum_f32(p->d, buf, count, what);
    return;
  }
  char err[512];
  if (sd_nccl_allreduce_sum_f32(p->nccl, p->dev, count, err, sizeof err) != 0 ||
      sd_nccl_sync(p->nccl, err, sizeof err) != 0) {
    fprintf(stderr, "error: %s: %s\n", what, err);
    exit(1);
  }
}

// Host buf <-> the device copy (NCCL only; no-ops for MPI).
static void upload(const path *p, const float *buf, size_t count) {
  char err[512];
  if (p->nccl && sd_cuda_to_device(p->dev, buf, count * sizeof(float), err, sizeof err) != 0) {
    fprintf(stderr, "error: %s\n", err);
    exit(1);
  }
}

static void download(const path *p, float *buf, size_t count) {
  char err[512];
  if (p->nccl && sd_cuda_to_host(buf, p->dev, count * sizeof(float), err, sizeof err) != 0) {
    fprintf(stderr, "error: %s\n", err);
    exit(1);
  }
}

static float pattern(int rank, size_t i) { return (float)(rank + 1) * (float)(i % 64 + 1); }

static void fill(float *buf, size_t count, int rank) {
  for (size_t i = 0; i < count; i++) buf[i] = pattern(rank, i);
}

int main(int argc, char **argv) {
  sd_dist d;
  sd_dist_init(&d, &argc, &argv);
  opts o = {8, (size_t)64 << 20, 2.0, 20, 5, 1, 0};
  int bad = 0, use_nccl = 0;
  for (int i = 1; i < argc && !bad; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--json")) o.json = 1;
    else if (!strcmp(a, "--nccl")) use_nccl = 1;
    else if (!strcmp(a, "--check")) o.check = 1;
    else if (!strcmp(a, "--no-check")) o.check = 0;
    else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      if (d.rank == 0) usage(argv[0]);
      sd_dist_finalize(&d);
      return 0;
    } else if (!v) bad = 1;
    else if (!strcmp(a, "-b")) { o.min_bytes = parse_size(v); bad = o.min_bytes == 0; i++; }
    else if (!strcmp(a, "-e")) { o.max_bytes = parse_size(v); bad = o.max_bytes == 0; i++; }
    else if (!strcmp(a, "-f")) { o.factor = atof(v); bad = !(o.factor > 1.0); i++; }
    else if (!strcmp(a, "-n")) { o.iters = atoi(v); bad = o.iters < 1; i++; }
    else if (!strcmp(a, "-w")) { o.warmup = atoi(v); bad = o.warmup < 0; i++; }
    else bad = 1;
    if (bad && d.rank == 0) fprintf(stderr, "error: bad argument near '%s'\n", a);
  }
  if (!bad && (o.min_bytes < sizeof(float) || o.max_bytes < o.min_bytes)) {
    if (d.rank == 0) fprintf(stderr, "error: need 4 <= MIN_BYTES <= MAX_BYTES\n");
    bad = 1;
  }
  if (bad) {
    if (d.rank == 0) usage(argv[0]);
    sd_dist_finalize(&d);
    return 2;
  }

  size_t max_count = o.max_bytes / sizeof(float);
  float *buf = malloc(max_count * sizeof(float));
  int64_t *times = malloc((size_t)o.iters * sizeof(int64_t));
  if (!buf || !times) {
    fprintf(stderr, "error: cannot allocate %zu bytes\n", o.max_bytes);
    return 1;
  }
  fill(buf, max_count, d.rank);  // touch every page before timing
  path pth = {&d, NULL, NULL};
  if (use_nccl) {
    char err[512];
    if (sd_dist_nccl_init(&d, &pth.nccl, err, sizeof err) != 0) {
      if (d.rank == 0) printf("# skip: --nccl: %s\n", err);
      free(buf);
      free(times);
      sd_dist_finalize(&d);
      return 0;
    }
    void *dev = NULL;
    if (sd_cuda_alloc(&dev, max_count * sizeof(float), err, sizeof err) != 0) {
      fprintf(stderr, "error: %s\n", err);
      return 1;
    }
    pth.dev = dev;
    upload(&pth, buf, max_count);
  }

  const int n = d.world;
  const double bus_factor = n > 1 ? 2.0 * (n - 1) / n : 0.0;
  const float sum_ranks = (float)n * (float)(n + 1) / 2.0f;  // exact for any sane n
  if (d.rank == 0) {
    char date[64];
    time_t t = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    if (o.json) {
      printf("{\"bench\": \"allreduce\", \"ranks\": %d, \"host\": \"%s\", \"date\": \"%s\", "
             "\"mpi\": %s, \"op\": \"sum\", \"type\": \"float\", \"iters\": %d, "
             "\"warmup\": %d, \"check\": %s}\n",
             n, d.host, date, d.active ? "true" : "false", o.iters, o.warmup,
             o.check ? "true" : "false");
    } else {
      printf("# sddit all-reduce: %s\n", pth.nccl ? "sd_nccl_allreduce_sum_f32 (NCCL, device "
             "memory, in place, stream synced per call)" : "sd_dist_allreduce_sum_f32 (MPI, host "
             "memory, in place)");
      printf("# ranks %d  host %s  date %s  mpi %s\n", n, d.host, date,
             d.active ? "yes" : "no (world of one)");
      printf("# op sum  iters %d  warmup %d  check %s  time = mean over iters of max over "
             "ranks\n", o.iters, o.warmup, o.check ? "on" : "off");
      printf("#\n# %12s %12s %6s %12s %11s %11s %7s\n", "size", "count", "type", "time_us",
             "algbw_GBs", "busbw_GBs", "wrong");
    }
    fflush(stdout);
  }

  long total_wrong = 0;
  double last = 0;
  for (double s = (double)o.min_bytes; s <= (double)o.max_bytes * (1 + 1e-9); s *= o.factor) {
    size_t count = (size_t)s / sizeof(float);
    size_t bytes = count * sizeof(float);
    if ((double)bytes == last) continue;  // factors < 2 can round to the same count
    last = (double)bytes;

    for (int it = 0; it < o.warmup; it++)
      reduce(&pth, buf, count, "allreduce bench warm-up");
    for (int it = 0; it < o.iters; it++) {
      sd_dist_barrier(&d, "allreduce bench barrier");
      int64_t t0 = now_ns();
      reduce(&pth, buf, count, "allreduce bench");
      times[it] = now_ns() - t0;
    }
    sd_dist_allreduce_max_i64(&d, times, (size_t)o.iters, "allreduce bench times");
    double mean_ns = 0;
    for (int it = 0; it < o.iters; it++) mean_ns += (double)times[it];
    mean_ns /= o.iters;

    long wrong = -1;
    if (o.check) {
      fill(buf, count, d.rank);
      upload(&pth, buf, count);
      reduce(&pth, buf, count, "allreduce bench check");
      download(&pth, buf, count);
      int64_t w = 0;
      for (size_t i = 0; i < count; i++)
        if (buf[i] != sum_ranks * (float)(i % 64 + 1)) w++;
      sd_dist_allreduce_max_i64(&d, &w, 1, "allreduce bench wrong");  // worst rank
      wrong = (long)w;
      total_wrong += wrong;
    }
    fill(buf, count, d.rank);  // keep values small for the next size's timed iterations
    upload(&pth, buf, count);

    double time_us = mean_ns / 1e3;
    double algbw = mean_ns > 0 ? (double)bytes / mean_ns : 0.0;  // bytes/ns = GB/s
    double busbw = algbw * bus_factor;
    if (d.rank == 0) {
      if (o.json) {
        printf("{\"size\": %zu, \"count\": %zu, \"type\": \"float\", \"time_us\": %.2f, "
               "\"algbw_GBs\": %.3f, \"busbw_GBs\": %.3f, \"wrong\": ",
               bytes, count, time_us, algbw, busbw);
        if (wrong < 0) printf("null}\n");
        else printf("%ld}\n", wrong);
      } else {
        char wbuf[32];
        if (wrong < 0) snprintf(wbuf, sizeof wbuf, "n/a");
        else snprintf(wbuf, sizeof wbuf, "%ld", wrong);
        printf("  %12zu %12zu %6s %12.2f %11.3f %11.3f %7s\n", bytes, count, "float", time_us,
               algbw, busbw, wbuf);
      }
      fflush(stdout);
    }
  }
  if (d.rank == 0 && !o.json)
    printf("# wrong elements in total: %ld%s\n", o.check ? total_wrong : 0L,
           o.check ? "" : " (not checked)");

  free(buf);
  free(times);
  if (pth.nccl) {
    sd_cuda_free(pth.dev);
    sd_nccl_destroy(pth.nccl);
  }
  sd_dist_finalize(&d);
  return total_wrong ? 1 : 0;
}
