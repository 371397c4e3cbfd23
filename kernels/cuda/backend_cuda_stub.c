// Stand-in for the CUDA backend in builds without CUDA: says so, clearly.
#include "ops.h"

#include <stdio.h>
#include <string.h>

int sd_backend_cuda_init(sd_backend *be, int device, char *errbuf, size_t errlen) {
  (void)device;
  memset(be, 0, sizeof *be);
  snprintf(errbuf, errlen, "this build has no CUDA backend (configure with -Dcuda=enabled)");
  return -1;
}

void sd_backend_cuda_destroy(sd_backend *be) { memset(be, 0, sizeof *be); }

int sd_backend_cuda_set_precision(sd_backend *be, const char *name, char *errbuf,
                                  size_t errlen) {
  (void)be;
  (void)name;
  if (errbuf && errlen)
    snprintf(errbuf, errlen, "no CUDA backend in this build (configure with -Dcuda=enabled)");
  return -1;
}

void *sd_backend_cuda_stream(sd_backend *be) {
  (void)be;
  return NULL;
}

int sd_backend_cuda_describe(sd_backend *be, char *buf, size_t len) {
  (void)be;
  if (buf && len) snprintf(buf, len, "no CUDA backend in this build");
  return -1;
}
