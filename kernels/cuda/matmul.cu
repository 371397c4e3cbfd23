// PLACEHOLDER: every op here stops with "not implemented" until the kernels land.
#include "cuda_internal.h"

extern "C" {
#include "error.h"
}

void sd_cuda_matmul_fwd(sd_backend *be, float *out, const float *inp, const float *w, const float *bias, int M, int K, int N) {
  (void)be;
  SD_FATAL("CUDA op matmul_fwd is not implemented yet");
}

void sd_cuda_matmul_bwd(sd_backend *be, float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w, int M, int K, int N, int accumulate_dinp) {
  (void)be;
  SD_FATAL("CUDA op matmul_bwd is not implemented yet");
}
