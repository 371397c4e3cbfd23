// Loss plot (see loss_plot.h): a 900 x 360 white image, two panels (L_gen, L_dis) with a frame,
// four horizontal grid lines labelled with their values, the first and last step under the
// x axis and the curve as connected line segments.
#include "train/loss_plot.h"
#include "error.h"
#include "util/font5x7.h"
#include "util/png_write.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sd_loss_history_add(sd_loss_history *h, long step, float gen, float dis) {
  if (h->count && step <= h->step[h->count - 1]) return;  // keep the steps increasing
  if (h->count == h->cap) {
    h->cap = h->cap ? 2 * h->cap : 256;
    h->step = realloc(h->step, sizeof(long) * h->cap);
    h->gen = realloc(h->gen, sizeof(float) * h->cap);
    h->dis = realloc(h->dis, sizeof(float) * h->cap);
    if (!h->step || !h->gen || !h->dis) SD_FATAL("out of memory for the loss history");
  }
  h->step[h->count] = step;
  h->gen[h->count] = gen;
  h->dis[h->count] = dis;
  h->count++;
}

// The number after "\"key\": " in a JSON line, or NAN.
static double json_number(const char *line, const char *key) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\": ", key);
  const char *p = strstr(line, pat);
  if (!p) return NAN;
  char *end;
  double v = strtod(p + strlen(pat), &end);
  return end == p + strlen(pat) ? NAN : v;
}

size_t sd_loss_history_load(sd_loss_history *h, const char *metrics_path, long up_to) {
  FILE *f = fopen(metrics_path, "r");
  if (!f) return 0;
  char line[2048];
  size_t added = 0;
  while (fgets(line, sizeof line, f)) {
    const double step = json_number(line, "step"), g = json_number(line, "L_gen"),
                 d = json_number(line, "L_dis");
    if (!isfinite(step) || step < 1 || step > (double)up_to) continue;
    const size_t before = h->count;
    sd_loss_history_add(h, (long)step, (float)g, (float)d);
    added += h->count - before;
  }
  fclose(f);
  return added;
}

void sd_loss_history_free(sd_loss_history *h) {
  free(h->step);
  free(h->gen);
  free(h->dis);
  memset(h, 0, sizeof *h);
}

static void line(sd_image *im, int x0, int y0, int x1, int y1, const uint8_t c[3]) {
  int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  int e = dx + dy;
  for (;;) {  // Bresenham
    sd_image_put(im, x0, y0, c[0], c[1], c[2]);
    if (x0 == x1 && y0 == y1) break;
    const int e2 = 2 * e;
    if (e2 >= dy) { e += dy; x0 += sx; }
    if (e2 <= dx) { e += dx; y0 += sy; }
  }
}

// One panel at (px, py) of size (pw, ph) for the finite values v (count) against h->step.
static void panel(sd_image *im, const sd_loss_history *h, const float *v, const char *title,
                  int px, int py, int pw, int ph, const uint8_t colour[3]) {
  static const uint8_t black[3] = {0, 0, 0}, grid[3] = {220, 220, 220};
  const int left = px + 60, right = px + pw - 10, top = py + 24, bottom = py + ph - 30;
  double lo = INFINITY, hi = -INFINITY;
  for (size_t i = 0; i < h->count; i++)
    if (isfinite(v[i])) {
      lo = fmin(lo, v[i]);
      hi = fmax(hi, v[i]);
    }
  sd_font_draw(im, left, py + 6, title, 2, black[0], black[1], black[2]);
  char text[48];
  if (!(lo <= hi)) {  // no finite value yet
    sd_font_draw(im, left, (top + bottom) / 2, "no values", 2, 128, 128, 128);
    return;
  }
  if (hi - lo < 1e-6 * fmax(1.0, fabs(hi))) {  // flat: a band around the value
    lo -= 0.5 * fmax(1e-3, fabs(lo));
    hi += 0.5 * fmax(1e-3, fabs(hi));
  }
  for (int k = 0; k <= 4; k++) {  // grid lines and their values
    const int y = bottom - (bottom - top) * k / 4;
    line(im, left, y, right, y, grid);
    snprintf(text, sizeof text, "%.3g", lo + (hi - lo) * k / 4);
    sd_font_draw(im, px + 4, y - 3, text, 1, black[0], black[1], black[2]);
  }
  line(im, left, top, left, bottom, black);
  line(im, left, bottom, right, bottom, black);
  const double s0 = (double)h->step[0], s1 = (double)h->step[h->count - 1];
  snprintf(text, sizeof text, "%ld", h->step[0]);
  sd_font_draw(im, left, bottom + 6, text, 1, black[0], black[1], black[2]);
  snprintf(text, sizeof text, "step %ld", h->step[h->count - 1]);
  sd_font_draw(im, right - 6 * (int)strlen(text), bottom + 6, text, 1, black[0], black[1],
               black[2]);
  int have = 0, lx = 0, ly = 0;
  for (size_t i = 0; i < h->count; i++) {
    if (!isfinite(v[i])) {
      have = 0;  // a gap at a non-finite value
      continue;
    }
    const double fx = s1 > s0 ? (h->step[i] - s0) / (s1 - s0) : 0.5;
    const int x = left + (int)lround(fx * (right - left));
    const int y = bottom - (int)lround((v[i] - lo) / (hi - lo) * (bottom - top));
    if (have) line(im, lx, ly, x, y, colour);
    else sd_image_put(im, x, y, colour[0], colour[1], colour[2]);
    lx = x;
    ly = y;
    have = 1;
  }
}

int sd_loss_plot_write(const sd_loss_history *h, const char *path, char *err, size_t errlen) {
  static const uint8_t blue[3] = {31, 119, 180}, orange[3] = {214, 39, 40};
  sd_image im;
  sd_image_create(&im, 900, 360, 255);
  if (h->count) {
    panel(&im, h, h->gen, "L_gen", 0, 0, 450, 360, blue);
    panel(&im, h, h->dis, "L_dis", 450, 0, 450, 360, orange);
  } else {
    sd_font_draw(&im, 20, 20, "no progress lines yet", 2, 0, 0, 0);
  }
  const int rc = sd_png_write(&im, path, err, errlen);
  sd_image_free(&im);
  return rc;
}
