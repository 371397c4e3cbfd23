// The device self-test: every op of kernels/ops.h on a device backend (CUDA, or the CPU
// stand-in) against the CPU reference at small shapes and at a model's own shapes, optionally
// one whole SD-DiT step of that model, with the tolerance table of kernels/tolerances_gpu.h; then
// what the backend chose (matmul library and epilogues, attention kernels, fallbacks). Run by
// `sddit selftest` (src/cli/cmd_selftest.c) and, in its quick form, by `sddit train` on the cuda
// backend before the first step.
#ifndef SD_SELFTEST_H
#define SD_SELFTEST_H

#include "config/config.h"
#include "ops.h"

#include <stdint.h>

enum { SD_SELFTEST_SMALL = 1, SD_SELFTEST_PRODUCTION = 2 };

typedef struct sd_selftest_opts {
  int shapes;         // SD_SELFTEST_SMALL | SD_SELFTEST_PRODUCTION (0: no op checks)
  int precisions;     // bit 0 fp32, bit 1 bf16
  int determinism;    // every check again on the device: the same bits
  int transfers;      // odd-sized copies (and a 3 GiB memset on a device)
  int unit;           // the CUDA files' own self-tests
  int step;           // one SD-DiT step of the model against the CPU
  int step_batch;     // samples in that step (2)
  int batch;          // samples in the production-shape op checks (2)
  int verbose;        // a line per comparison, not only failures
  int quiet;          // failures only: no progress, paths or summary unless something failed
  uint64_t seed;
  const char *filter; // only op checks whose name contains this
} sd_selftest_opts;

// Runs everything o asks for on dev against a CPU backend with cfg->threads threads. Prints
// "selftest path: ..." lines and a last line "selftest: N checks passed, M failed in S s".
// Leaves dev at cfg->precision. Returns the number of failures (0: pass).
int sd_selftest_run(sd_backend *dev, const sd_config *cfg, const sd_selftest_opts *o);

// The quick form `sddit train` runs: the model's own shapes at cfg->precision, no
// determinism pass, no whole step.
// quiet: print only failures (and the summary when there are any), as ranks other than 0 do.
int sd_selftest_quick(sd_backend *dev, const sd_config *cfg, int quiet);

#endif
