// Device binding and small synchronous copy helpers (see nccl_comm.h). Needs CUDA only, so a
// CUDA build without NCCL still binds devices.
#include "nccl_comm.h"

#include <cuda_runtime.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int fail(char *err, size_t errlen, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return -1;
}

extern "C" int sd_cuda_device_count(char *err, size_t errlen) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  const char *vis = getenv("CUDA_VISIBLE_DEVICES");
  if (e != cudaSuccess)
    return fail(err, errlen, "no CUDA device: %s (CUDA_VISIBLE_DEVICES=%s)",
                cudaGetErrorString(e), vis ? vis : "unset");
  if (count <= 0)
    return fail(err, errlen, "no CUDA device visible (CUDA_VISIBLE_DEVICES=%s)",
                vis ? vis : "unset");
  return count;
}

extern "C" int sd_cuda_bind_device(int local_rank, int *device, char *err, size_t errlen) {
  if (local_rank < 0) return fail(err, errlen, "bad local rank %d", local_rank);
  int count = sd_cuda_device_count(err, errlen);
  if (count < 0) return -1;
  int dev = local_rank % count;
  cudaError_t e = cudaSetDevice(dev);
  if (e == cudaSuccess) e = cudaFree(0);  // creates the context now, so failures show here
  if (e != cudaSuccess)
    return fail(err, errlen, "cannot use CUDA device %d (local rank %d, %d visible): %s", dev,
                local_rank, count, cudaGetErrorString(e));
  if (device) *device = dev;
  return 0;
}

extern "C" int sd_cuda_alloc(void **dev, size_t bytes, char *err, size_t errlen) {
  *dev = NULL;
  cudaError_t e = cudaMalloc(dev, bytes ? bytes : 1);
  if (e != cudaSuccess) {
    *dev = NULL;
    return fail(err, errlen, "cudaMalloc of %zu bytes: %s", bytes, cudaGetErrorString(e));
  }
  return 0;
}

extern "C" void sd_cuda_free(void *dev) {
  if (dev) cudaFree(dev);
}

// cudaMemcpy runs on the legacy default stream, which does not wait for non-blocking streams
// (the communicator's), and a copy from pageable memory may return before its DMA is done:
// waiting for the whole device on both sides makes these helpers plainly synchronous.
static int copy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, const char *what,
                char *err, size_t errlen) {
  cudaError_t e = cudaDeviceSynchronize();
  if (e == cudaSuccess && bytes) e = cudaMemcpy(dst, src, bytes, kind);
  if (e == cudaSuccess) e = cudaDeviceSynchronize();
  if (e != cudaSuccess)
    return fail(err, errlen, "copy of %zu bytes %s: %s", bytes, what, cudaGetErrorString(e));
  return 0;
}

extern "C" int sd_cuda_to_device(void *dev, const void *host, size_t bytes, char *err,
                                 size_t errlen) {
  return copy(dev, host, bytes, cudaMemcpyHostToDevice, "to the device", err, errlen);
}

extern "C" int sd_cuda_to_host(void *host, const void *dev, size_t bytes, char *err,
                               size_t errlen) {
  return copy(host, dev, bytes, cudaMemcpyDeviceToHost, "to the host", err, errlen);
}
