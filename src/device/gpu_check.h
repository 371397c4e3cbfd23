// Shared by `sddit selftest`, the GPU tests and the GPU benchmark (tests/gpu/): opening the device under test
// (the CUDA backend, or a CPU stand-in that imitates its bf16 rounding), choosing its matmul
// precision, the nmse measure of kernels/tolerances_gpu.h, and the canary and guard
// patterns.
#ifndef SD_GPU_CHECK_H
#define SD_GPU_CHECK_H

#include "ops.h"

#include <stddef.h>
#include <stdint.h>

// Bit patterns (quiet NaNs): outputs are pre-filled with the canary, so an element a kernel
// never wrote cannot pass a comparison; guard regions around device buffers hold the guard.
#define GPU_CANARY_BITS 0x7fc00badu
#define GPU_GUARD_BITS 0x7fc0feedu
#define GPU_GUARD_FLOATS 256

// Opens the device under test on be. sim_mode NULL: the CUDA backend on device 0; when the
// build has no CUDA backend or no device is visible this prints "skip: <why>" and exits 77;
// when a device is visible but the backend refuses (or the CUDA ops are missing) it prints
// "FAIL ..." and exits 1. sim_mode "matmul" or "matmul+attention": a CPU stand-in (see
// gpu_sim_*), for exercising the tests and calibrating the tolerances without a GPU.
void sd_gpu_open_or_skip(sd_backend *be, const char *sim_mode, const char *test_name);
// The same without exiting: 0 opened (a "device under test: ..." line printed), 77 no device
// or no CUDA backend in this build, 1 the backend failed to start, 2 an unknown sim_mode;
// err says why for non-zero. device: the CUDA device number.
int sd_gpu_open(sd_backend *be, const char *sim_mode, int device, char *err, size_t errlen);
void sd_gpu_close(sd_backend *be);
// A few lines on what the device is and what its ops chose (sd_backend_cuda_describe), or on
// the stand-in.
void sd_gpu_describe(sd_backend *be, char *buf, size_t len);
// 1 when be is the CPU stand-in.
int sd_gpu_is_sim(const sd_backend *be);

// Selects how matmuls multiply: "fp32" or "bf16" (inputs rounded to bf16, fp32 accumulation).
// On the CUDA backend this is sd_backend_cuda_set_precision; returns 0, or -1 with a message
// (also when this build's CUDA backend does not have that function yet).
int sd_gpu_set_precision(sd_backend *be, const char *precision, char *err, size_t errlen);

// The CPU stand-in: the CPU ops, except that with precision "bf16" the matmul inputs (and
// with mode "matmul+attention" the attention inputs too) are rounded to bf16 first and the
// saved activations are stored in bf16 (be->act_dtype, as on the CUDA backend), and with
// precision "fp32" matmul outputs are moved by up to one ulp (a stand-in for another
// summation order). Memory is host memory. SD_GPU_SIM_BUG=unwritten|guard|noacc|nondet|input|
// guard16|gradscale plants one fault of that kind (in gelu_fwd, copy, axpy, scatter_add_tokens,
// scale_rows, and a bf16 write past the end of lnmod_fwd's out), to see that test_ops_cuda
// catches it.

// Normalised mean squared error sum (a - ref)^2 / sum ref^2 over n elements, in double.
// Elements equal bit for bit count as exact (so a canary both sides left alone passes); any
// other non-finite element makes it infinite. *worst (may be NULL) gets the first non-finite
// element, else the element of largest |a - ref|. All-zero ref: 0 if a is all zero too, else
// infinity.
double sd_gpu_nmse(const float *a, const float *ref, size_t n, size_t *worst);
// The same for the changes a - base and ref - base (accumulating outputs: the += part alone).
double sd_gpu_nmse_delta(const float *a, const float *ref, const float *base, size_t n,
                      size_t *worst);

// Rounds to the nearest bf16 (ties to even; kernels/base/bf16.h), kept in a float.
float sd_gpu_bf16_round(float x);


#endif
