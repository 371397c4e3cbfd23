// Stand-in for nccl_comm.h in builds without NCCL: every NCCL function fails, saying so.
// Without CUDA as well, the device functions fail too (with CUDA they are cuda_device.cu).
#include "nccl_comm.h"
#include "sd_build_config.h"

#include <stdio.h>

static int unavailable(char *err, size_t errlen, const char *what) {
  if (err && errlen)
    snprintf(err, errlen, "%s: this build is without %s (configure with -Dcuda=enabled%s)",
             what, SD_HAVE_CUDA ? "NCCL" : "CUDA/NCCL",
             SD_HAVE_CUDA ? " -Dnccl=enabled, with NCCL installed" : "");
  return -1;
}

#if !SD_HAVE_CUDA
int sd_cuda_device_count(char *err, size_t errlen) {
  return unavailable(err, errlen, "CUDA device count");
}

int sd_cuda_bind_device(int local_rank, int *device, char *err, size_t errlen) {
  (void)local_rank;
  if (device) *device = -1;
  return unavailable(err, errlen, "CUDA device binding");
}

int sd_cuda_alloc(void **dev, size_t bytes, char *err, size_t errlen) {
  (void)bytes;
  *dev = NULL;
  return unavailable(err, errlen, "CUDA allocation");
}

void sd_cuda_free(void *dev) { (void)dev; }

int sd_cuda_to_device(void *dev, const void *host, size_t bytes, char *err, size_t errlen) {
  (void)dev, (void)host, (void)bytes;
  return unavailable(err, errlen, "CUDA copy");
}

int sd_cuda_to_host(void *host, const void *dev, size_t bytes, char *err, size_t errlen) {
  (void)dev, (void)host, (void)bytes;
  return unavailable(err, errlen, "CUDA copy");
}
#endif

int sd_nccl_available(void) { return 0; }

int sd_nccl_unique_id(unsigned char id[SD_NCCL_ID_BYTES], char *err, size_t errlen) {
  (void)id;
  return unavailable(err, errlen, "NCCL unique id");
}

sd_nccl *sd_nccl_create(const unsigned char id[SD_NCCL_ID_BYTES], int rank, int world,
                        char *err, size_t errlen) {
  (void)id, (void)rank, (void)world;
  unavailable(err, errlen, "NCCL communicator");
  return NULL;
}

int sd_nccl_allreduce_sum_f32(sd_nccl *c, float *dev, size_t count, char *err, size_t errlen) {
  (void)c, (void)dev, (void)count;
  return unavailable(err, errlen, "NCCL allreduce");
}

int sd_nccl_allreduce_mean_f32(sd_nccl *c, float *dev, size_t count, char *err,
                               size_t errlen) {
  (void)c, (void)dev, (void)count;
  return unavailable(err, errlen, "NCCL allreduce");
}

int sd_nccl_allreduce_mean_bf16(sd_nccl *c, float *dev, size_t count, char *err,
                                size_t errlen) {
  (void)c, (void)dev, (void)count;
  return unavailable(err, errlen, "NCCL allreduce");
}

int sd_nccl_bcast_f32(sd_nccl *c, float *dev, size_t count, int root, char *err,
                      size_t errlen) {
  (void)c, (void)dev, (void)count, (void)root;
  return unavailable(err, errlen, "NCCL broadcast");
}

int sd_nccl_sync(sd_nccl *c, char *err, size_t errlen) {
  (void)c;
  return unavailable(err, errlen, "NCCL sync");
}

void *sd_nccl_stream(sd_nccl *c) { (void)c; return NULL; }
int sd_nccl_rank(const sd_nccl *c) { (void)c; return -1; }
int sd_nccl_world(const sd_nccl *c) { (void)c; return 0; }
int sd_nccl_device(const sd_nccl *c) { (void)c; return -1; }
size_t sd_nccl_chunk(const sd_nccl *c) { (void)c; return 0; }
void sd_nccl_destroy(sd_nccl *c) { (void)c; }
void sd_nccl_abort(sd_nccl *c) { (void)c; }

int sd_nccl_wait_for(sd_nccl *c, void *stream, char *err, size_t errlen) {
  (void)c;
  (void)stream;
  return unavailable(err, errlen, "NCCL stream ordering");
}

int sd_nccl_join_into(sd_nccl *c, void *stream, char *err, size_t errlen) {
  (void)c;
  (void)stream;
  return unavailable(err, errlen, "NCCL stream ordering");
}
