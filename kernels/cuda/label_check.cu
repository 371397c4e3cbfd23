// The label lookup's range check without a read back: a tiny kernel copies the labels (B)
// clamped into [0, rows) for the lookup to use (so a bad label can never index outside the
// table) and records the first bad one, with its sample, in mapped pinned host memory. The host
// looks at that record after each stream synchronisation it makes anyway (to_host, sync) and
// stops with the same message the CPU op gives. The trainer also checks its labels on the host
// before uploading them (src/train/train.c), so there this is the second line.
#include "cuda_internal.h"

extern "C" {
#include "error.h"
}

#include <stdlib.h>

typedef struct label_check {
  int32_t *clamped;   // (cap) device
  int cap;
  int *flag;          // mapped pinned host: [0] bad seen, [1] sample, [2] label, [3] rows
  int *flag_dev;      // its device address
} label_check;

// One thread per sample: the clamped label, and the first bad one recorded.
__global__ void label_check_kernel(int32_t *clamped, const int32_t *y, int B, int rows,
                                   int *flag) {
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= B) return;
  const int32_t v = y[b];
  const bool bad = v < 0 || v >= rows;
  clamped[b] = bad ? 0 : v;
  if (bad && atomicCAS(&flag[0], 0, 1) == 0) {
    flag[1] = b;
    flag[2] = v;
    flag[3] = rows;
    __threadfence_system();
  }
}

static label_check *state(sd_cuda_state *st) {
  if (st->labels) return (label_check *)st->labels;
  label_check *lc = (label_check *)sd_xcalloc(1, sizeof *lc, "label check");
  SD_CUDA_CHECK(cudaHostAlloc((void **)&lc->flag, 4 * sizeof(int), cudaHostAllocMapped));
  lc->flag[0] = lc->flag[1] = lc->flag[2] = lc->flag[3] = 0;
  SD_CUDA_CHECK(cudaHostGetDevicePointer((void **)&lc->flag_dev, lc->flag, 0));
  st->labels = lc;
  return lc;
}

extern "C" const int32_t *sd_cuda_checked_labels(sd_backend *be, const int32_t *y, int B,
                                                 int rows) {
  sd_cuda_state *st = sd_cuda_st(be);
  label_check *lc = state(st);
  if (B > lc->cap) {
    if (lc->clamped) {
      SD_CUDA_CHECK(cudaStreamSynchronize(st->stream));  // queued lookups may still read it
      SD_CUDA_CHECK(cudaFree(lc->clamped));
    }
    lc->cap = B < 256 ? 256 : B;
    SD_CUDA_CHECK(cudaMalloc((void **)&lc->clamped, sizeof(int32_t) * (size_t)lc->cap));
  }
  label_check_kernel<<<(unsigned)((B + 255) / 256), 256, 0, st->stream>>>(lc->clamped, y, B,
                                                                          rows, lc->flag_dev);
  SD_CUDA_LAUNCHED("label_check_kernel");
  return lc->clamped;
}

extern "C" void sd_cuda_labels_verify(sd_cuda_state *st) {
  const label_check *lc = (const label_check *)st->labels;
  if (!lc || !((volatile int *)lc->flag)[0]) return;
  SD_FATAL("label %d of sample %d is outside [0, %d)", lc->flag[2], lc->flag[1], lc->flag[3]);
}

extern "C" void sd_cuda_labels_release(sd_cuda_state *st) {
  label_check *lc = (label_check *)st->labels;
  if (!lc) return;
  if (lc->clamped) (void)cudaFree(lc->clamped);
  if (lc->flag) (void)cudaFreeHost(lc->flag);
  free(lc);
  st->labels = NULL;
}
