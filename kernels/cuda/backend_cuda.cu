// The CUDA backend (skeleton): finds a device and reports clearly when there is none. The
// CUDA ops arrive with the CUDA-backend work; until then sd_backend_cuda_init refuses.
extern "C" {
#include "ops.h"
}

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>

extern "C" int sd_backend_cuda_init(sd_backend *be, int device, char *errbuf, size_t errlen) {
  memset(be, 0, sizeof *be);
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    snprintf(errbuf, errlen, "no CUDA device (%s)",
             err != cudaSuccess ? cudaGetErrorString(err) : "device count is 0");
    return -1;
  }
  if (device < 0 || device >= count) {
    snprintf(errbuf, errlen, "CUDA device %d requested but only %d visible", device, count);
    return -2;
  }
  size_t lt_version = cublasLtGetVersion();
  snprintf(errbuf, errlen,
           "the CUDA ops are not implemented in this version (found %d device(s), cuBLASLt %zu)",
           count, lt_version);
  return -3;
}

extern "C" void sd_backend_cuda_destroy(sd_backend *be) { memset(be, 0, sizeof *be); }
