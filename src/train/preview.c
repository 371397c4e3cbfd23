// Progress previews (see preview.h): the generation EMA through the EDM sampler on the
// training backend, drawn as a grid; and the loss plot.
#include "train/preview.h"
#include "util/clock.h"
#include "sample/denoiser.h"
#include "error.h"
#include "util/rng.h"
#include "sample/sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREVIEW_ACT_BUDGET_BYTES (1ull << 30)  // activations of one network pass

static uint8_t to_u8(float v) {
  double x = ((double)v + 1.0) * 127.5;
  if (!(x >= 0.0)) x = 0.0;  // NaN too
  if (x > 255.0) x = 255.0;
  return (uint8_t)nearbyint(x);
}

void sd_preview_grid(sd_image *im, const float *x, int rows, int cols, int C, int H, int W,
                     int scale) {
  const int cw = W * scale, ch = H * scale;
  sd_image_create(im, cols * (cw + 1) + 1, rows * (ch + 1) + 1, 128);
  const size_t plane = (size_t)H * W, n = (size_t)C * plane;
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < cols; c++) {
      const float *s = x + ((size_t)r * cols + c) * n;  // (C, H, W)
      const int ox = 1 + c * (cw + 1), oy = 1 + r * (ch + 1);
      for (int i = 0; i < H; i++)
        for (int j = 0; j < W; j++) {
          const size_t k = (size_t)i * W + j;
          uint8_t rgb[3];
          if (C < 3) {
            rgb[0] = rgb[1] = rgb[2] = to_u8(s[k]);
          } else {
            for (int q = 0; q < 3; q++) rgb[q] = to_u8(s[q * plane + k]);
          }
          for (int dy = 0; dy < scale; dy++)
            for (int dx = 0; dx < scale; dx++)
              sd_image_put(im, ox + j * scale + dx, oy + i * scale + dy, rgb[0], rgb[1], rgb[2]);
        }
    }
}

int sd_preview_classes(const sd_config *cfg, int32_t *labels) {
  const int K = cfg->model.num_classes;
  const int rows = cfg->preview_classes < K ? cfg->preview_classes : K;
  if (labels)
    for (int r = 0; r < rows; r++) labels[r] = (int32_t)((long)r * K / rows);
  return rows;
}

int sd_preview_write(const sd_config *cfg, sd_sddit *s, const sd_loss_history *h,
                     const char *dir, long step, char *err, size_t errlen) {
  const double t0 = sd_now_s();
  const sd_dit_config *m = &cfg->model;
  const int rows = sd_preview_classes(cfg, NULL), cols = cfg->preview_per_class;
  const int N = rows * cols;
  const size_t n = (size_t)m->in_channels * m->input_size * m->input_size;
  int32_t *row_class = sd_xmalloc(sizeof(int32_t) * (size_t)rows, "preview classes");
  sd_preview_classes(cfg, row_class);
  int32_t *labels = sd_xmalloc(sizeof(int32_t) * (size_t)N, "preview labels");
  for (int i = 0; i < N; i++) labels[i] = row_class[i / cols];
  free(row_class);

  sd_sampler_opts so;
  sd_sampler_opts_default(&so, m->num_classes, n);
  so.steps = cfg->preview_steps;
  so.guidance = cfg->preview_guidance;
  if (sd_sampler_opts_check(&so, err, errlen) != 0) {
    free(labels);
    return -1;
  }
  float *params = sd_xmalloc(sizeof(float) * s->dit_total, "preview weights");
  s->be->ops->to_host(s->be, params, s->ema, sizeof(float) * s->dit_total);
  const long rows_per_pass = so.guidance != 1.0f ? 2L * N : N;
  const size_t per = sd_denoiser_floats_per_sample(m) * sizeof(float);
  long cap = (long)(PREVIEW_ACT_BUDGET_BYTES / (per ? per : 1));
  if (cap < 1) cap = 1;
  if (cap > rows_per_pass) cap = rows_per_pass;
  sd_denoiser dn;
  sd_denoiser_create(&dn, m, cfg->sigma_data, params, (int)cap, s->be);
  free(params);
  float *noise = sd_xmalloc(sizeof(float) * (size_t)N * n, "preview noise");
  float *x = sd_xmalloc(sizeof(float) * (size_t)N * n, "preview samples");
  for (int i = 0; i < N; i++)  // `sddit sample --seed 0`'s noise of sample i
    sd_rng_normal(0, SD_RNG_SAMPLE, 0, (uint32_t)i, 0, n, noise + (size_t)i * n);
  sd_edm_sample(&so, sd_denoiser_fn, &dn, N, labels, noise, x);
  sd_denoiser_destroy(&dn);
  free(noise);
  free(labels);

  const int scale = m->input_size >= 32 ? 1 : (32 + m->input_size - 1) / m->input_size;
  sd_image im;
  sd_preview_grid(&im, x, rows, cols, m->in_channels, m->input_size, m->input_size, scale);
  free(x);
  char path[1200];
  snprintf(path, sizeof path, "%s/samples-%08ld.png", dir, step);
  int rc = sd_png_write(&im, path, err, errlen);
  sd_image_free(&im);
  if (rc == 0) {
    snprintf(path, sizeof path, "%s/loss.png", dir);
    rc = sd_loss_plot_write(h, path, err, errlen);
  }
  if (rc == 0)
    printf("# preview: %s/samples-%08ld.png (%d x %d samples, %d Heun steps, guidance %g) and "
           "loss.png in %.1f s\n", dir, step, rows, cols, so.steps, (double)so.guidance,
           sd_now_s() - t0);
  fflush(stdout);
  return rc;
}
