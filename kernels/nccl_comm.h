// GPU device binding and an NCCL communicator, behind a plain C API (no CUDA or NCCL types
// here, so host C includes it in every build).
//
// Where the code lives:
//   cuda/cuda_device.cu   the sd_cuda_* functions (builds with CUDA, with or without NCCL)
//   cuda/nccl_comm.cu     the sd_nccl_* functions (builds with CUDA and NCCL)
//   cuda/nccl_comm_stub.c whatever of the above this build lacks: every function fails with
//                         "built without CUDA" / "built without NCCL"
//
// Every function that can fail returns -1 (or NULL) and writes a message, carrying the
// cudaGetErrorString / ncclGetErrorString text, into err (errlen bytes; err may be NULL).
// Device pointers are plain void * / float *.
#ifndef SD_NCCL_COMM_H
#define SD_NCCL_COMM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SD_NCCL_ID_BYTES 128  // NCCL_UNIQUE_ID_BYTES (checked where nccl.h is included)

// ---- device binding and small helpers (CUDA only) ----

// Number of visible CUDA devices (CUDA_VISIBLE_DEVICES already applied by CUDA), or -1 with
// a message when CUDA cannot be used (no driver, no device, built without CUDA).
int sd_cuda_device_count(char *err, size_t errlen);
// Binds the calling thread to device local_rank % (visible devices) with cudaSetDevice and
// creates its context. *device gets the chosen index (within the visible devices). -1 with a
// message when there is no device.
int sd_cuda_bind_device(int local_rank, int *device, char *err, size_t errlen);
// Setup and test helpers on the current device. All are fully synchronous: they wait for all
// work on the device (every stream, the communicator's included) before and after, so they
// are for setup and checks, not for the training loop.
int sd_cuda_alloc(void **dev, size_t bytes, char *err, size_t errlen);
void sd_cuda_free(void *dev);
int sd_cuda_to_device(void *dev, const void *host, size_t bytes, char *err, size_t errlen);
int sd_cuda_to_host(void *host, const void *dev, size_t bytes, char *err, size_t errlen);

// ---- the NCCL communicator (CUDA and NCCL) ----

typedef struct sd_nccl sd_nccl;

// 1 when this build has NCCL, else 0.
int sd_nccl_available(void);
// ncclGetUniqueId: made on one rank (rank 0) and sent to all the others before create.
int sd_nccl_unique_id(unsigned char id[SD_NCCL_ID_BYTES], char *err, size_t errlen);
// ncclCommInitRank on the current device (bind it first), plus the communicator's own
// non-blocking CUDA stream. Collective: every rank of the world must call it with the same id.
// The elements per NCCL call are 1 << 30, or SD_NCCL_CHUNK from the environment (tests).
sd_nccl *sd_nccl_create(const unsigned char id[SD_NCCL_ID_BYTES], int rank, int world,
                        char *err, size_t errlen);
// Collectives on device buffers, in place, enqueued on the communicator's stream and
// returning before they complete (sd_nccl_sync waits). Counts are elements; counts above the
// chunk are split into several calls. The caller orders the stream after the producers of the
// buffer (see sd_nccl_stream). Each call makes the communicator's device current.
int sd_nccl_allreduce_sum_f32(sd_nccl *c, float *dev, size_t count, char *err, size_t errlen);
// Mean over ranks: ncclAvg where the NCCL library has it (>= 2.10), else sum then scale.
int sd_nccl_allreduce_mean_f32(sd_nccl *c, float *dev, size_t count, char *err, size_t errlen);
int sd_nccl_bcast_f32(sd_nccl *c, float *dev, size_t count, int root, char *err,
                      size_t errlen);
// Mean over ranks sent as bfloat16 (dist.grad_dtype = bf16): on the communicator's stream the
// floats are rounded to bf16 into a scratch buffer the communicator owns (grown as needed),
// summed with ncclAllReduce(ncclBfloat16) and written back as fp32 times 1/world.
int sd_nccl_allreduce_mean_bf16(sd_nccl *c, float *dev, size_t count, char *err,
                                size_t errlen);
// Waits for everything enqueued on the communicator's stream; reports asynchronous NCCL
// errors too.
int sd_nccl_sync(sd_nccl *c, char *err, size_t errlen);
// The communicator's cudaStream_t (as void *), for cudaStreamWaitEvent / cudaEventRecord.
void *sd_nccl_stream(sd_nccl *c);
// Stream ordering without blocking the host: the communication stream waits for all work
// queued so far on `stream` (a cudaStream_t; call before a collective on data that `stream`
// produces) / `stream` waits for all work queued so far on the communication stream (call
// before `stream` reads the collective's result).
int sd_nccl_wait_for(sd_nccl *c, void *stream, char *err, size_t errlen);
int sd_nccl_join_into(sd_nccl *c, void *stream, char *err, size_t errlen);
int sd_nccl_rank(const sd_nccl *c);
int sd_nccl_world(const sd_nccl *c);
int sd_nccl_device(const sd_nccl *c);
// Elements per NCCL call.
size_t sd_nccl_chunk(const sd_nccl *c);
// Waits for the stream, then ncclCommDestroy and the stream's destruction. NULL is fine.
void sd_nccl_destroy(sd_nccl *c);
// ncclCommAbort instead: for error paths, where peers may be gone or stuck. NULL is fine.
void sd_nccl_abort(sd_nccl *c);

#ifdef __cplusplus
}
#endif

#endif
