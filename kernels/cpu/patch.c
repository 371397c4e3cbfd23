// CPU patchify (image -> patch rows) and unpatchify (token outputs -> image, with an optional
// token index for masked sequences), forward and backward.
#include "cpu_ops.h"

void sd_cpu_patchify(sd_backend *be, float *patches, const float *x, int B, int C, int H,
                     int W, int p) {
  (void)be;
  const int gw = W / p, T = (H / p) * gw, F = C * p * p;
#pragma omp parallel for schedule(static)
  for (long bt = 0; bt < (long)B * T; bt++) {
    int b = (int)(bt / T), t = (int)(bt % T), gy = t / gw, gx = t % gw;
    float *row = patches + bt * F;  // (C*p*p)
    for (int c = 0; c < C; c++)
      for (int py = 0; py < p; py++)
        for (int px = 0; px < p; px++)
          row[(c * p + py) * p + px] =
              x[(((size_t)b * C + c) * H + gy * p + py) * W + gx * p + px];
  }
}

// Maps between one token row (feature (py*p + px)*C + c) and its image pixels.
static void unpatch_token(float *img, const float *row, int b, int t, int C, int H, int W,
                          int p, int to_image) {
  const int gw = W / p, gy = t / gw, gx = t % gw;
  for (int py = 0; py < p; py++)
    for (int px = 0; px < p; px++)
      for (int c = 0; c < C; c++) {
        size_t pix = (((size_t)b * C + c) * H + gy * p + py) * W + gx * p + px;
        float *r = (float *)&row[(py * p + px) * C + c];
        if (to_image) img[pix] = *r;
        else *r = img[pix];
      }
}

void sd_cpu_unpatchify_fwd(sd_backend *be, float *img, const float *tok, const int32_t *idx,
                           int Tk, int B, int C, int H, int W, int p) {
  (void)be;
  const int T = (H / p) * (W / p), F = C * p * p;
  if (idx) {
#pragma omp parallel for schedule(static)
    for (long i = 0; i < (long)B * C * H * W; i++) img[i] = 0.0f;
  }
#pragma omp parallel for schedule(static)
  for (long bk = 0; bk < (long)B * Tk; bk++) {
    int b = (int)(bk / Tk), k = (int)(bk % Tk);
    int t = idx ? idx[bk] : k;
    if (t < 0 || t >= T) continue;  // validated by the caller
    unpatch_token(img, tok + bk * F, b, t, C, H, W, p, 1);
  }
}

void sd_cpu_unpatchify_bwd(sd_backend *be, float *dtok, const float *dimg, const int32_t *idx,
                           int Tk, int B, int C, int H, int W, int p) {
  (void)be;
  const int T = (H / p) * (W / p), F = C * p * p;
#pragma omp parallel for schedule(static)
  for (long bk = 0; bk < (long)B * Tk; bk++) {
    int b = (int)(bk / Tk), k = (int)(bk % Tk);
    int t = idx ? idx[bk] : k;
    if (t < 0 || t >= T) continue;
    unpatch_token((float *)dimg, dtok + bk * F, b, t, C, H, W, p, 0);
  }
}
