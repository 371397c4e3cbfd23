// A 5x7 pixel bitmap font for the labels of the training plots (digits, a few letters and
// signs); characters it lacks are drawn as blanks.
#ifndef SD_FONT5X7_H
#define SD_FONT5X7_H

#include "util/png_write.h"

// Draws text with its top-left corner at (x, y), each font pixel a scale x scale square, in
// colour (r, g, b); characters advance 6 * scale pixels. Returns the width drawn.
int sd_font_draw(sd_image *im, int x, int y, const char *text, int scale, uint8_t r, uint8_t g,
                 uint8_t b);

#endif
