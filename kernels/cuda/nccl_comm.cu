// The NCCL communicator (see nccl_comm.h): one ncclComm per process on its bound device, with
// its own non-blocking stream on which every collective is enqueued, in chunks.
#include "nccl_comm.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static_assert(NCCL_UNIQUE_ID_BYTES == SD_NCCL_ID_BYTES, "ncclUniqueId is not 128 bytes");
static_assert(sizeof(ncclUniqueId) == SD_NCCL_ID_BYTES, "ncclUniqueId is not 128 bytes");

#if defined(NCCL_VERSION_CODE) && NCCL_VERSION_CODE >= NCCL_VERSION(2, 10, 0)
#define SD_NCCL_HEADER_HAS_AVG 1
#else
#define SD_NCCL_HEADER_HAS_AVG 0
#endif

struct sd_nccl {
  ncclComm_t comm;
  cudaStream_t stream;
  int rank, world, device;
  size_t chunk;  // elements per NCCL call
  int has_avg;   // header and linked library both have ncclAvg
  __nv_bfloat16 *half;  // (half_cap) bf16 scratch of sd_nccl_allreduce_mean_bf16
  size_t half_cap;
};

static int fail(char *err, size_t errlen, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return -1;
}

static int nccl_fail(char *err, size_t errlen, const char *what, ncclResult_t r) {
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 13, 0)
  const char *last = ncclGetLastError(NULL);  // the detail behind the code, when there is one
  if (last && *last)
    return fail(err, errlen, "%s: %s (%s)", what, ncclGetErrorString(r), last);
#endif
  return fail(err, errlen, "%s: %s", what, ncclGetErrorString(r));
}

static int cuda_fail(char *err, size_t errlen, const char *what, cudaError_t e) {
  return fail(err, errlen, "%s: %s", what, cudaGetErrorString(e));
}

extern "C" int sd_nccl_available(void) { return 1; }

extern "C" int sd_nccl_unique_id(unsigned char id[SD_NCCL_ID_BYTES], char *err,
                                 size_t errlen) {
  ncclUniqueId uid;
  ncclResult_t r = ncclGetUniqueId(&uid);
  if (r != ncclSuccess) return nccl_fail(err, errlen, "ncclGetUniqueId", r);
  memcpy(id, &uid, SD_NCCL_ID_BYTES);
  return 0;
}

extern "C" sd_nccl *sd_nccl_create(const unsigned char id[SD_NCCL_ID_BYTES], int rank,
                                   int world, char *err, size_t errlen) {
  if (world < 1 || rank < 0 || rank >= world) {
    fail(err, errlen, "bad NCCL rank %d of world %d", rank, world);
    return NULL;
  }
  sd_nccl *c = (sd_nccl *)calloc(1, sizeof *c);
  if (!c) {
    fail(err, errlen, "out of memory");
    return NULL;
  }
  c->rank = rank;
  c->world = world;
  c->chunk = (size_t)1 << 30;
  const char *chunk = getenv("SD_NCCL_CHUNK");  // tests: force small chunks
  if (chunk && atol(chunk) > 0) c->chunk = (size_t)atol(chunk);
  int version = 0;
  ncclResult_t r = ncclGetVersion(&version);
  if (r != ncclSuccess) {
    nccl_fail(err, errlen, "ncclGetVersion", r);
    free(c);
    return NULL;
  }
  c->has_avg = SD_NCCL_HEADER_HAS_AVG && version >= NCCL_VERSION(2, 10, 0);
  cudaError_t e = cudaGetDevice(&c->device);
  if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
  if (e != cudaSuccess) {
    cuda_fail(err, errlen, "creating the NCCL stream", e);
    free(c);
    return NULL;
  }
  ncclUniqueId uid;
  memcpy(&uid, id, SD_NCCL_ID_BYTES);
  r = ncclCommInitRank(&c->comm, world, uid, rank);
  if (r != ncclSuccess) {
    char what[96];
    snprintf(what, sizeof what, "ncclCommInitRank (rank %d of %d, device %d)", rank, world,
             c->device);
    nccl_fail(err, errlen, what, r);
    cudaStreamDestroy(c->stream);
    free(c);
    return NULL;
  }
  return c;
}

static int use_device(sd_nccl *c, char *err, size_t errlen) {
  cudaError_t e = cudaSetDevice(c->device);
  if (e != cudaSuccess) return cuda_fail(err, errlen, "cudaSetDevice for NCCL", e);
  return 0;
}

static int allreduce(sd_nccl *c, float *dev, size_t count, ncclRedOp_t op, const char *what,
                     char *err, size_t errlen) {
  if (!c) return fail(err, errlen, "%s: no communicator", what);
  if (count == 0) return 0;
  if (use_device(c, err, errlen) != 0) return -1;
  for (size_t done = 0; done < count; done += c->chunk) {
    size_t n = count - done < c->chunk ? count - done : c->chunk;
    ncclResult_t r = ncclAllReduce(dev + done, dev + done, n, ncclFloat32, op, c->comm,
                                   c->stream);
    if (r != ncclSuccess) return nccl_fail(err, errlen, what, r);
  }
  return 0;
}

extern "C" int sd_nccl_allreduce_sum_f32(sd_nccl *c, float *dev, size_t count, char *err,
                                         size_t errlen) {
  return allreduce(c, dev, count, ncclSum, "ncclAllReduce (sum)", err, errlen);
}

// x *= s over count elements (the mean where the NCCL library has no ncclAvg).
__global__ static void scale_f32(float *x, size_t count, float s) {
  size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride)
    x[i] *= s;
}

extern "C" int sd_nccl_allreduce_mean_f32(sd_nccl *c, float *dev, size_t count, char *err,
                                          size_t errlen) {
#if SD_NCCL_HEADER_HAS_AVG
  if (c && c->has_avg) return allreduce(c, dev, count, ncclAvg, "ncclAllReduce (avg)", err,
                                        errlen);
#endif
  if (allreduce(c, dev, count, ncclSum, "ncclAllReduce (sum for mean)", err, errlen) != 0)
    return -1;
  if (count == 0 || c->world == 1) return 0;
  const unsigned threads = 256;
  size_t blocks = (count + threads - 1) / threads;
  if (blocks > 4096) blocks = 4096;
  scale_f32<<<(unsigned)blocks, threads, 0, c->stream>>>(dev, count, 1.0f / (float)c->world);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return cuda_fail(err, errlen, "launching the mean's scale", e);
  return 0;
}

__global__ static void to_bf16(__nv_bfloat16 *h, const float *x, size_t count) {
  size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride)
    h[i] = __float2bfloat16_rn(x[i]);
}

__global__ static void from_bf16_scaled(float *x, const __nv_bfloat16 *h, size_t count,
                                        float s) {
  size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride)
    x[i] = __fmul_rn(__bfloat162float(h[i]), s);
}

extern "C" int sd_nccl_allreduce_mean_bf16(sd_nccl *c, float *dev, size_t count, char *err,
                                           size_t errlen) {
  if (!c) return fail(err, errlen, "ncclAllReduce (bf16): no communicator");
  if (count == 0 || c->world == 1) return 0;
  if (use_device(c, err, errlen) != 0) return -1;
  if (count > c->half_cap) {  // stream-ordered: earlier users of the old scratch come first
    if (c->half) cudaFreeAsync(c->half, c->stream);
    c->half = NULL;
    c->half_cap = 0;
    cudaError_t e = cudaMallocAsync((void **)&c->half, sizeof(__nv_bfloat16) * count, c->stream);
    if (e != cudaSuccess) return cuda_fail(err, errlen, "allocating the bf16 gradient scratch", e);
    c->half_cap = count;
  }
  const unsigned threads = 256;
  size_t blocks = (count + threads - 1) / threads;
  if (blocks > 4096) blocks = 4096;
  to_bf16<<<(unsigned)blocks, threads, 0, c->stream>>>(c->half, dev, count);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return cuda_fail(err, errlen, "launching the bf16 conversion", e);
  for (size_t done = 0; done < count; done += c->chunk) {
    size_t n = count - done < c->chunk ? count - done : c->chunk;
    ncclResult_t r = ncclAllReduce(c->half + done, c->half + done, n, ncclBfloat16, ncclSum,
                                   c->comm, c->stream);
    if (r != ncclSuccess) return nccl_fail(err, errlen, "ncclAllReduce (bf16 sum)", r);
  }
  from_bf16_scaled<<<(unsigned)blocks, threads, 0, c->stream>>>(dev, c->half, count,
                                                                  1.0f / (float)c->world);
  e = cudaGetLastError();
  if (e != cudaSuccess) return cuda_fail(err, errlen, "launching the bf16 mean", e);
  return 0;
}

extern "C" int sd_nccl_bcast_f32(sd_nccl *c, float *dev, size_t count, int root, char *err,
                                 size_t errlen) {
  if (!c) return fail(err, errlen, "ncclBroadcast: no communicator");
  if (root < 0 || root >= c->world)
    return fail(err, errlen, "ncclBroadcast: bad root %d of world %d", root, c->world);
  if (count == 0) return 0;
  if (use_device(c, err, errlen) != 0) return -1;
  for (size_t done = 0; done < count; done += c->chunk) {
    size_t n = count - done < c->chunk ? count - done : c->chunk;
    ncclResult_t r = ncclBroadcast(dev + done, dev + done, n, ncclFloat32, root, c->comm,
                                   c->stream);
    if (r != ncclSuccess) return nccl_fail(err, errlen, "ncclBroadcast", r);
  }
  return 0;
}

extern "C" int sd_nccl_sync(sd_nccl *c, char *err, size_t errlen) {
  if (!c) return fail(err, errlen, "NCCL sync: no communicator");
  cudaError_t e = cudaStreamSynchronize(c->stream);
  ncclResult_t async = ncclSuccess;
  ncclResult_t r = ncclCommGetAsyncError(c->comm, &async);
  if (r != ncclSuccess) return nccl_fail(err, errlen, "ncclCommGetAsyncError", r);
  if (async != ncclSuccess) return nccl_fail(err, errlen, "NCCL asynchronous error", async);
  if (e != cudaSuccess) return cuda_fail(err, errlen, "waiting for the NCCL stream", e);
  return 0;
}

extern "C" void *sd_nccl_stream(sd_nccl *c) { return c ? (void *)c->stream : NULL; }
extern "C" int sd_nccl_rank(const sd_nccl *c) { return c ? c->rank : -1; }
extern "C" int sd_nccl_world(const sd_nccl *c) { return c ? c->world : 0; }
extern "C" int sd_nccl_device(const sd_nccl *c) { return c ? c->device : -1; }
extern "C" size_t sd_nccl_chunk(const sd_nccl *c) { return c ? c->chunk : 0; }

extern "C" void sd_nccl_destroy(sd_nccl *c) {
  if (!c) return;
  cudaSetDevice(c->device);
  cudaStreamSynchronize(c->stream);
  if (c->half) cudaFree(c->half);
  ncclCommDestroy(c->comm);
  cudaStreamDestroy(c->stream);
  free(c);
}

extern "C" void sd_nccl_abort(sd_nccl *c) {
  if (!c) return;
  cudaSetDevice(c->device);
  ncclCommAbort(c->comm);
  cudaStreamDestroy(c->stream);
  free(c);
}

// One event recorded on `from`, waited for by `to` (device-side ordering only).
static int order_streams(cudaStream_t from, cudaStream_t to, char *err, size_t errlen) {
  cudaEvent_t ev;
  cudaError_t e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
  if (e == cudaSuccess) e = cudaEventRecord(ev, from);
  if (e == cudaSuccess) e = cudaStreamWaitEvent(to, ev, 0);
  cudaEventDestroy(ev);  // safe: destruction is deferred until the event completes
  return e == cudaSuccess ? 0 : cuda_fail(err, errlen, "ordering the compute and NCCL streams", e);
}

extern "C" int sd_nccl_wait_for(sd_nccl *c, void *stream, char *err, size_t errlen) {
  if (!c) return fail(err, errlen, "sd_nccl_wait_for: no communicator");
  return order_streams((cudaStream_t)stream, c->stream, err, errlen);
}

extern "C" int sd_nccl_join_into(sd_nccl *c, void *stream, char *err, size_t errlen) {
  if (!c) return fail(err, errlen, "sd_nccl_join_into: no communicator");
  return order_streams(c->stream, (cudaStream_t)stream, err, errlen);
}
