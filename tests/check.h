// Test helpers: comparisons that report the evidence (worst index, values, tolerance), a
// pass/fail tally, and deterministic random fills for test inputs.
#ifndef SD_CHECK_H
#define SD_CHECK_H

#include <stddef.h>
#include <stdint.h>

// Global tally; check_exit() prints "N checks passed, N failed" and returns the exit code.
void check_record(int ok);
int check_exit(const char *test_name);

// Norm-relative error max|a - ref| / max|ref| (ref all zero: max|a|). Reports the worst
// element. Returns 1 if err <= tol. Prints one line either way when verbose or on failure.
int check_close(const char *what, const float *a, const float *ref, size_t n, double tol,
                double *err_out);
// Bitwise equality; reports the first differing index.
int check_bitwise(const char *what, const void *a, const void *b, size_t bytes);
// A boolean condition with a message.
int check_true(int cond, const char *fmt, ...);

// Deterministic test inputs: N(0, std) or U(lo, hi) keyed by `stream`.
void fill_normal(float *x, size_t n, uint32_t stream, float std);
void fill_uniform(float *x, size_t n, uint32_t stream, float lo, float hi);

#endif
