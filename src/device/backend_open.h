// Opening the compute backend a command asks for by name: the CPU (with a thread count) or
// the CUDA device of this rank (local rank modulo the visible devices) with a matmul precision.
// Shared by `sddit train` (train.backend, train.precision) and `sddit sample` (--backend).
#ifndef SD_BACKEND_OPEN_H
#define SD_BACKEND_OPEN_H

#include "ops.h"

#include <stddef.h>

// name: "cpu" or "cuda"; precision: "bf16" or "fp32" (cuda only). With SD_CUDA_SIMULATE=matmul
// (or matmul+attention) in the environment, "cuda" opens the CPU stand-in of the CUDA backend
// (src/device/gpu_check.h) instead of a device: the cuda code paths of the callers, tested on a CPU. Returns 0, or -1 with a
// message in err (no device, a build without CUDA, an unknown name or precision).
int sd_backend_open(sd_backend *be, const char *name, const char *precision, int threads,
                    int local_rank, char *err, size_t errlen);
void sd_backend_close(sd_backend *be);

#endif
