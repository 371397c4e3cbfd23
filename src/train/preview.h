// Progress previews written during training (rank 0, log.preview_every): a grid of samples
// from the generation EMA and the loss plot, as PNG files in <out_dir>/progress/.
//   samples-<step>.png  row r = class r * num_classes / classes (classes = min(
//                       log.preview_classes, num_classes)), log.preview_per_class columns;
//                       EDM Heun with log.preview_steps steps and guidance
//                       log.preview_guidance from the noise of `sddit sample --seed 0`, so
//                       `sddit sample --classes <rows> --per-class <cols> --steps <steps>
//                       --guidance <g>` on the checkpoint of that step draws the same digits.
//                       Values in [-1, 1] map to 0..255 (round((x + 1) * 127.5), clipped);
//                       1 channel: grey, 3: RGB, other counts (latents): channels 0-2 as RGB
//                       (not decoded by a VAE; channel 0 as grey for 2 channels).
//   loss.png            L_gen and L_dis at every progress line so far (loss_plot.h)
#ifndef SD_PREVIEW_H
#define SD_PREVIEW_H

#include "config/config.h"
#include "train/loss_plot.h"
#include "util/png_write.h"
#include "objective/sddit.h"

// The grid image of N = rows * cols samples x (N, C, H, W), row-major over (row, column):
// cells upscaled scale times (nearest neighbour), 1-pixel grey (128) separators.
void sd_preview_grid(sd_image *im, const float *x, int rows, int cols, int C, int H, int W,
                     int scale);

// The labels of the preview's rows: classes r * num_classes / rows (rows, in order).
int sd_preview_classes(const sd_config *cfg, int32_t *labels_or_null);

// Samples the generation EMA of s (backend memory, read back here) as described above and
// writes <dir>/samples-<step>.png, then writes <dir>/loss.png from h. Returns 0, or -1 with a
// message (the training goes on: a preview is not worth a run).
int sd_preview_write(const sd_config *cfg, sd_sddit *s, const sd_loss_history *h,
                     const char *dir, long step, char *err, size_t errlen);

#endif
