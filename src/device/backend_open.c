// Opening the compute backend by name (see backend_open.h).
#include "device/backend_open.h"
#include "error.h"
#include "device/gpu_check.h"
#include "nccl_comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sd_backend_open(sd_backend *be, const char *name, const char *precision, int threads,
                    int local_rank, char *err, size_t errlen) {
  if (strcmp(name, "cpu") == 0) {
    sd_backend_cpu_init(be, threads);
    return 0;
  }
  if (strcmp(name, "cuda") != 0)
    return sd_errorf(err, errlen, "unknown backend '%s' (cpu or cuda)", name);
  char msg[512];
  const char *sim = getenv("SD_CUDA_SIMULATE");
  if (sim && *sim) {  // the CPU stand-in of gpu_check.h, for testing the cuda paths on a CPU
    if (sd_gpu_open(be, sim, 0, msg, sizeof msg) != 0)
      return sd_errorf(err, errlen, "SD_CUDA_SIMULATE=%s: %s", sim, msg);
    if (sd_gpu_set_precision(be, precision, msg, sizeof msg) != 0) {
      sd_gpu_close(be);
      return sd_errorf(err, errlen, "precision %s: %s", precision, msg);
    }
    printf("# backend cuda: the CPU stand-in (SD_CUDA_SIMULATE=%s), for testing without a "
           "GPU\n", sim);
    return 0;
  }
  int count = sd_cuda_device_count(msg, sizeof msg);
  if (count <= 0) return sd_errorf(err, errlen, "%s", msg);
  if (sd_backend_cuda_init(be, local_rank % count, msg, sizeof msg) != 0)
    return sd_errorf(err, errlen, "%s", msg);
  if (sd_backend_cuda_set_precision(be, precision, msg, sizeof msg) != 0) {
    sd_backend_cuda_destroy(be);
    return sd_errorf(err, errlen, "precision %s: %s", precision, msg);
  }
  return 0;
}

void sd_backend_close(sd_backend *be) {
  if (sd_gpu_is_sim(be)) sd_gpu_close(be);
  else if (strcmp(be->name, "cpu") == 0) sd_backend_cpu_destroy(be);
  else sd_backend_cuda_destroy(be);
}
