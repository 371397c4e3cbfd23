// The op checks: every op of sd_ops on a device backend (CUDA, or its CPU stand-in) against
// the CPU reference backend on random inputs, with canaries, guard regions, unchanged inputs,
// the nmse limits of kernels/tolerances_gpu.h and, optionally, bitwise determinism. Shared by
// `sddit selftest` (src/cli/cmd_selftest.c) and tests/gpu/test_ops_cuda. The check list is built
// per shape; running it prints one line per failure (or per comparison when verbose) and
// keeps a pass/fail tally.
#ifndef SD_OP_CHECKS_H
#define SD_OP_CHECKS_H

#include "ops.h"

#include <stdint.h>

// A model shape the checks are sized from.
typedef struct sd_opcheck_shape {
  const char *tag;          // names the shape in check names (op@tag-what)
  int B, T, D, NH, Tk;      // tokens: batch, tokens, width, heads, visible tokens
  int C, H, W, p;           // images: channels, height, width, patch
  int F, rows;              // timestep features, label-table rows (classes + 1)
  int N, P, bn, Hh;         // head: rows (B*Tk), prototypes, bottleneck, hidden
} sd_opcheck_shape;

// Adds the checks of every op family at shape s (matmuls and their GELU forms, norm,
// attention, activation storage, pointwise, residual and patch, conditioning and tokens,
// losses and head).
void sd_opcheck_add_shape(const sd_opcheck_shape *s);
// Adds AdamW, the EMAs, axpy, memset and copy on a million elements.
void sd_opcheck_add_optim_memory(void);
// Adds test_ops_cuda's shapes ("dits", "tail", "tiny", "odd", and "vec": the element-wise,
// row, layer-norm, token and loss ops at D 1152 and 37 and with misaligned pointers), or only
// the one named tag; returns how many were added.
int sd_opcheck_add_test_shapes(const char *tag);
// Checks in the list; ops of sd_ops in total; ops no check covers (each reported as FAIL).
int sd_opcheck_count(void);
int sd_opcheck_op_count(void);
int sd_opcheck_uncovered(void);

typedef struct sd_opcheck_opts {
  const char *filter;     // only checks whose name contains this (NULL: all)
  const char *only_prec;  // "fp32" or "bf16" (NULL: both)
  uint64_t seed;          // inputs are keyed by (seed, check, precision)
  int determinism;        // run the list again on the device: the same bits
  int transfers;          // to_device/to_host odd byte counts (and a 3 GiB memset on a device)
  int verbose;            // a line per comparison (else failures only)
  int progress;           // a progress line every 50 checks
  int quiet;              // failures only (no per-precision lines)
} sd_opcheck_opts;

// Runs the list on dev against cpu; returns the failures of this run.
int sd_opcheck_run(sd_backend *dev, sd_backend *cpu, const sd_opcheck_opts *o);
// The CUDA files' own self-tests (sd_cuda_*_selftest), where the build has them.
void sd_opcheck_run_unit_selftests(sd_backend *dev);
// The tally over everything run so far.
void sd_opcheck_totals(int *passed, int *failed);
// Frees the list.
void sd_opcheck_clear(void);

#endif
