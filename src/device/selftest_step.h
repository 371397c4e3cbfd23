// One SD-DiT training step of a model on a device backend against the same step on the CPU
// backend (sddit selftest --step): the same parameters (DiT initialisation plus N(0, 0.02)
// noise, so every layer carries signal) and the same inputs; both losses and every gradient
// tensor compared with the limits of kernels/tolerances_gpu.h (GPU_STEP_*).
#ifndef SD_SELFTEST_STEP_H
#define SD_SELFTEST_STEP_H

#include "config/config.h"
#include "ops.h"

#include <stdint.h>

// prec: 0 fp32, 1 bf16 (the device's precision, already set). B samples. Prints
// "step prec P NAME rel|nmse X limit Y ok|FAIL ..." lines (failures and a summary, or every
// line when verbose); returns the number of failed comparisons and adds to *passed.
int sd_selftest_step(sd_backend *dev, sd_backend *cpu, const sd_config *cfg, int prec, int B,
                     uint64_t seed, int verbose, int *passed);

#endif
