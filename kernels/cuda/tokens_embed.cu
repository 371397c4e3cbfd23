// PLACEHOLDER: every op here stops with "not implemented" until the kernels land.
#include "cuda_internal.h"

extern "C" {
#include "error.h"
}

void sd_cuda_patchify(sd_backend *be, float *patches, const float *x, int B, int C, int H, int W, int p) {
  (void)be;
  SD_FATAL("CUDA op patchify is not implemented yet");
}

void sd_cuda_unpatchify_fwd(sd_backend *be, float *img, const float *tok, const int32_t *idx, int Tk, int B, int C, int H, int W, int p) {
  (void)be;
  SD_FATAL("CUDA op unpatchify_fwd is not implemented yet");
}

void sd_cuda_unpatchify_bwd(sd_backend *be, float *dtok, const float *dimg, const int32_t *idx, int Tk, int B, int C, int H, int W, int p) {
  (void)be;
  SD_FATAL("CUDA op unpatchify_bwd is not implemented yet");
}

void sd_cuda_embed_rows_fwd(sd_backend *be, float *out, const float *table, const int32_t *y, int B, int D, int rows) {
  (void)be;
  SD_FATAL("CUDA op embed_rows_fwd is not implemented yet");
}

void sd_cuda_embed_rows_bwd(sd_backend *be, float *dtable, const float *dout, const int32_t *y, int B, int D) {
  (void)be;
  SD_FATAL("CUDA op embed_rows_bwd is not implemented yet");
}

void sd_cuda_gather_tokens(sd_backend *be, float *out, const float *x, const int32_t *idx, int B, int T, int Tk, int D) {
  (void)be;
  SD_FATAL("CUDA op gather_tokens is not implemented yet");
}

void sd_cuda_scatter_add_tokens(sd_backend *be, float *x, const float *sub, const int32_t *idx, int B, int T, int Tk, int D) {
  (void)be;
  SD_FATAL("CUDA op scatter_add_tokens is not implemented yet");
}

void sd_cuda_merge_tokens_fwd(sd_backend *be, float *out, const float *base, const float *sub, const int32_t *idx, int B, int T, int Tk, int D) {
  (void)be;
  SD_FATAL("CUDA op merge_tokens_fwd is not implemented yet");
}

void sd_cuda_merge_tokens_bwd(sd_backend *be, float *dbase, float *dsub, const float *dout, const int32_t *idx, int B, int T, int Tk, int D) {
  (void)be;
  SD_FATAL("CUDA op merge_tokens_bwd is not implemented yet");
}
