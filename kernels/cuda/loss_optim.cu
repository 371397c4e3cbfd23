// PLACEHOLDER: every op here stops with "not implemented" until the kernels land.
#include "cuda_internal.h"

extern "C" {
#include "error.h"
}

void sd_cuda_mse_fwd(sd_backend *be, float *loss, const float *a, const float *b, size_t n) {
  (void)be;
  SD_FATAL("CUDA op mse_fwd is not implemented yet");
}

void sd_cuda_mse_bwd(sd_backend *be, float *da, const float *a, const float *b, size_t n, float scale) {
  (void)be;
  SD_FATAL("CUDA op mse_bwd is not implemented yet");
}

void sd_cuda_sum_squares(sd_backend *be, float *out, const float *x, size_t n) {
  (void)be;
  SD_FATAL("CUDA op sum_squares is not implemented yet");
}

void sd_cuda_l2norm_rows_fwd(sd_backend *be, float *out, float *norms, const float *x, int N, int d) {
  (void)be;
  SD_FATAL("CUDA op l2norm_rows_fwd is not implemented yet");
}

void sd_cuda_l2norm_rows_bwd(sd_backend *be, float *dx, const float *dout, const float *out, const float *norms, int N, int d) {
  (void)be;
  SD_FATAL("CUDA op l2norm_rows_bwd is not implemented yet");
}

void sd_cuda_dino_loss_fwd(sd_backend *be, float *loss, float *pt, const float *z_s, const float *z_t, const float *center, float tau_s, float tau_t, int N, int P) {
  (void)be;
  SD_FATAL("CUDA op dino_loss_fwd is not implemented yet");
}

void sd_cuda_dino_loss_bwd(sd_backend *be, float *dz_s, const float *z_s, const float *pt, float tau_s, int N, int P, float scale) {
  (void)be;
  SD_FATAL("CUDA op dino_loss_bwd is not implemented yet");
}

void sd_cuda_sum_rows(sd_backend *be, float *out, const float *x, int N, int P) {
  (void)be;
  SD_FATAL("CUDA op sum_rows is not implemented yet");
}

void sd_cuda_edm_loss_fwd(sd_backend *be, float *loss, float *D, const float *F, const float *x, const float *x0, const float *c_skip, const float *c_out, const float *weight, const float *mask, int B, size_t n) {
  (void)be;
  SD_FATAL("CUDA op edm_loss_fwd is not implemented yet");
}

void sd_cuda_edm_loss_bwd(sd_backend *be, float *dF, const float *D, const float *x0, const float *c_out, const float *weight, const float *mask, int B, size_t n, float scale) {
  (void)be;
  SD_FATAL("CUDA op edm_loss_bwd is not implemented yet");
}

void sd_cuda_adamw(sd_backend *be, float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2, float eps, float wd, long t, float grad_scale) {
  (void)be;
  SD_FATAL("CUDA op adamw is not implemented yet");
}

void sd_cuda_ema(sd_backend *be, float *dst, const float *src, size_t n, float decay) {
  (void)be;
  SD_FATAL("CUDA op ema is not implemented yet");
}

void sd_cuda_axpy(sd_backend *be, float *y, const float *x, size_t n, float a) {
  (void)be;
  SD_FATAL("CUDA op axpy is not implemented yet");
}
