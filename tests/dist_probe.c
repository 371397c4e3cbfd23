// Run under mpirun by test_dist.sh: the distributed layer's collectives on dyadic values, whose
// sums are exact in any order, so every element must equal its closed form bit for bit. Counts
// span several chunks (SD_DIST_CHUNK makes chunks small). Prints one line per check and exits
// non-zero on any mismatch, naming the first bad index.
#include "bf16.h"
#include "dist/dist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_fail = 0;

static void report(sd_dist *d, const char *what, long bad, double got, double want) {
  if (bad >= 0) {
    printf("FAIL rank %d: %s: index %ld is %.17g, want %.17g\n", d->rank, what, bad, got, want);
    g_fail = 1;
  } else if (d->rank == 0) {
    printf("ok   %s (world %d, chunk %zu)\n", what, d->world, d->chunk);
  }
}

// Element i on rank r: (i % 61 - 30) * 2^-(i % 7) * (r + 1); the sum over ranks multiplies by
// W (W + 1) / 2, exact in float for these magnitudes.
static double value(size_t i, int r) {
  return ldexp((double)((long)(i % 61) - 30), -(int)(i % 7)) * (r + 1);
}

// For the bf16 sum: (i % 9 - 4) * 2^-(i % 7) * (r + 1); every partial sum needs at most
// 6 significant bits for up to 4 ranks, so the bf16 rounding of each partial sum is exact.
static double small(size_t i, int r) {
  return ldexp((double)((long)(i % 9) - 4), -(int)(i % 7)) * (r + 1);
}

int main(int argc, char **argv) {
  sd_dist d;
  sd_dist_init(&d, &argc, &argv);
  const size_t counts[] = {1, 7, 2500, 100003};
  const double tri = (double)d.world * (d.world + 1) / 2.0;
  for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
    size_t n = counts[c];
    float *f = malloc(sizeof(float) * n);
    double *g = malloc(sizeof(double) * n);
    for (size_t i = 0; i < n; i++) {
      f[i] = (float)value(i, d.rank);
      g[i] = value(i, d.rank);
    }
    sd_dist_allreduce_sum_f32(&d, f, n, "test f32 sum");
    sd_dist_allreduce_sum_f64(&d, g, n, "test f64 sum");
    long badf = -1, badg = -1;
    for (size_t i = 0; i < n; i++) {
      double want = value(i, 0) * tri;
      if (badf < 0 && (double)f[i] != want) badf = (long)i;
      if (badg < 0 && g[i] != want) badg = (long)i;
    }
    char what[64];
    snprintf(what, sizeof what, "allreduce f32 sum of %zu", n);
    report(&d, what, badf, badf >= 0 ? f[badf] : 0, badf >= 0 ? value(badf, 0) * tri : 0);
    snprintf(what, sizeof what, "allreduce f64 sum of %zu", n);
    report(&d, what, badg, badg >= 0 ? g[badg] : 0, badg >= 0 ? value(badg, 0) * tri : 0);
    // bf16 sum (dist.grad_dtype = bf16)
    uint16_t *h = malloc(sizeof(uint16_t) * n);
    for (size_t i = 0; i < n; i++) h[i] = sd_bf16_from_float((float)small(i, d.rank));
    sd_dist_allreduce_sum_bf16(&d, h, n, "test bf16 sum");
    long badh = -1;
    for (size_t i = 0; i < n && badh < 0; i++)
      if ((double)sd_bf16_to_float(h[i]) != small(i, 0) * tri) badh = (long)i;
    snprintf(what, sizeof what, "allreduce bf16 sum of %zu", n);
    report(&d, what, badh, badh >= 0 ? sd_bf16_to_float(h[badh]) : 0,
           badh >= 0 ? small(badh, 0) * tri : 0);
    free(h);
    // broadcast from the last rank
    for (size_t i = 0; i < n; i++) f[i] = d.rank == d.world - 1 ? (float)value(i, 3) : -1.0f;
    sd_dist_bcast_f32(&d, f, n, d.world - 1, "test bcast");
    long bad = -1;
    for (size_t i = 0; i < n && bad < 0; i++)
      if ((double)f[i] != value(i, 3)) bad = (long)i;
    snprintf(what, sizeof what, "bcast f32 of %zu from rank %d", n, d.world - 1);
    report(&d, what, bad, bad >= 0 ? f[bad] : 0, bad >= 0 ? value(bad, 3) : 0);
    free(f);
    free(g);
  }
  int64_t m[3] = {d.rank, -d.rank, 1000 + d.rank};
  sd_dist_allreduce_max_i64(&d, m, 3, "test max");
  report(&d, "allreduce max i64", (m[0] == d.world - 1 && m[1] == 0 && m[2] == 999 + d.world)
                                      ? -1 : 0, (double)m[0], d.world - 1);
  sd_dist_barrier(&d, "test barrier");
  if (d.rank == 0) printf("%s: world %d local %d/%d on %s\n", g_fail ? "FAILED" : "passed",
                          d.world, d.local_rank, d.local_size, d.host);
  int64_t f64 = g_fail;
  sd_dist_allreduce_max_i64(&d, &f64, 1, "test status");
  sd_dist_finalize(&d);
  return f64 ? 1 : 0;
}
