// PLACEHOLDER: every op here stops with "not implemented" until the kernels land.
#include "cuda_internal.h"

extern "C" {
#include "error.h"
}

void sd_cuda_attention_fwd(sd_backend *be, float *out, float *lse, const float *qkv, int B, int T, int NH, int HD) {
  (void)be;
  SD_FATAL("CUDA op attention_fwd is not implemented yet");
}

void sd_cuda_attention_bwd(sd_backend *be, float *dqkv, const float *dout, const float *qkv, const float *out, const float *lse, int B, int T, int NH, int HD) {
  (void)be;
  SD_FATAL("CUDA op attention_bwd is not implemented yet");
}
