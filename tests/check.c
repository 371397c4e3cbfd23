// Test helpers (see check.h).
#include "check.h"
#include "util/rng.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int g_pass = 0, g_fail = 0;

void check_record(int ok) {
  if (ok) g_pass++;
  else g_fail++;
}

int check_exit(const char *test_name) {
  printf("%s: %d checks passed, %d failed\n", test_name, g_pass, g_fail);
  return g_fail ? 1 : (g_pass ? 0 : 1);  // a test that checked nothing fails
}

int check_close(const char *what, const float *a, const float *ref, size_t n, double tol,
                double *err_out) {
  double maxref = 0.0, maxdiff = 0.0;
  size_t worst = 0;
  int nonfinite = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(a[i])) nonfinite = 1;
    double r = fabs((double)ref[i]);
    if (r > maxref) maxref = r;
    double d = fabs((double)a[i] - (double)ref[i]);
    if (d > maxdiff || !isfinite(d)) {
      maxdiff = d;
      worst = i;
    }
  }
  double err = maxref > 0 ? maxdiff / maxref : maxdiff;
  if (nonfinite) err = INFINITY;
  int ok = err <= tol;
  if (err_out) *err_out = err;
  printf("%s %-46s rel_err %.3e (tol %.1e) worst [%zu] got %.8g want %.8g\n",
         ok ? "ok  " : "FAIL", what, err, tol, worst, n ? a[worst] : 0.0f,
         n ? ref[worst] : 0.0f);
  check_record(ok);
  return ok;
}

int check_bitwise(const char *what, const void *a, const void *b, size_t bytes) {
  const unsigned char *x = a, *y = b;
  for (size_t i = 0; i < bytes; i++)
    if (x[i] != y[i]) {
      printf("FAIL %-46s differs first at byte %zu (float index %zu)\n", what, i, i / 4);
      check_record(0);
      return 0;
    }
  printf("ok   %-46s bitwise equal (%zu bytes)\n", what, bytes);
  check_record(1);
  return 1;
}

int check_true(int cond, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  printf("%s %s\n", cond ? "ok  " : "FAIL", msg);
  check_record(cond);
  return cond;
}

void fill_normal(float *x, size_t n, uint32_t stream, float std) {
  sd_rng_normal(12345, SD_RNG_TEST, 0, stream, 0, n, x);
  for (size_t i = 0; i < n; i++) x[i] *= std;
}

void fill_uniform(float *x, size_t n, uint32_t stream, float lo, float hi) {
  sd_rng_uniform(12345, SD_RNG_TEST, 0, stream, 0, n, x);
  for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * x[i];
}
