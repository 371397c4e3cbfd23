// PLACEHOLDER: every op here stops with "not implemented" until the kernels land.
#include "cuda_internal.h"

extern "C" {
#include "error.h"
}

void sd_cuda_lnmod_fwd(sd_backend *be, float *out, float *mean, float *rstd, const float *x, const float *shift, const float *scale, int mod_stride, int B, int T, int D, float eps) {
  (void)be;
  SD_FATAL("CUDA op lnmod_fwd is not implemented yet");
}

void sd_cuda_lnmod_bwd(sd_backend *be, float *dx, float *dshift, float *dscale, const float *dout, const float *x, const float *mean, const float *rstd, const float *scale, int mod_stride, int B, int T, int D) {
  (void)be;
  SD_FATAL("CUDA op lnmod_bwd is not implemented yet");
}

void sd_cuda_gelu_fwd(sd_backend *be, float *out, const float *x, size_t n) {
  (void)be;
  SD_FATAL("CUDA op gelu_fwd is not implemented yet");
}

void sd_cuda_gelu_bwd(sd_backend *be, float *dx, const float *dout, const float *x, size_t n) {
  (void)be;
  SD_FATAL("CUDA op gelu_bwd is not implemented yet");
}

void sd_cuda_silu_fwd(sd_backend *be, float *out, const float *x, size_t n) {
  (void)be;
  SD_FATAL("CUDA op silu_fwd is not implemented yet");
}

void sd_cuda_silu_bwd(sd_backend *be, float *dx, const float *dout, const float *x, size_t n) {
  (void)be;
  SD_FATAL("CUDA op silu_bwd is not implemented yet");
}

void sd_cuda_gated_residual_fwd(sd_backend *be, float *out, const float *x, const float *y, const float *gate, int gate_stride, int B, int T, int D) {
  (void)be;
  SD_FATAL("CUDA op gated_residual_fwd is not implemented yet");
}

void sd_cuda_gated_residual_bwd(sd_backend *be, float *dy, float *dgate, const float *dout, const float *y, const float *gate, int gate_stride, int B, int T, int D) {
  (void)be;
  SD_FATAL("CUDA op gated_residual_bwd is not implemented yet");
}

void sd_cuda_add_rows(sd_backend *be, float *x, const float *row, int B, int N) {
  (void)be;
  SD_FATAL("CUDA op add_rows is not implemented yet");
}

void sd_cuda_scale_rows(sd_backend *be, float *out, const float *x, const float *s, int B, size_t n) {
  (void)be;
  SD_FATAL("CUDA op scale_rows is not implemented yet");
}

void sd_cuda_add_scaled_rows(sd_backend *be, float *out, const float *x0, const float *eps, const float *sigma, int B, size_t n) {
  (void)be;
  SD_FATAL("CUDA op add_scaled_rows is not implemented yet");
}

void sd_cuda_timestep_features(sd_backend *be, float *feat, const float *t, int B, int F, float max_period) {
  (void)be;
  SD_FATAL("CUDA op timestep_features is not implemented yet");
}
