// Writing 8-bit RGB images as PNG files (zlib's deflate and CRC), atomically: the image goes
// to PATH.tmp and is renamed over PATH, so a reader never sees half a file.
#ifndef SD_PNG_WRITE_H
#define SD_PNG_WRITE_H

#include <stddef.h>
#include <stdint.h>

// An RGB image in host memory, row-major, 3 bytes per pixel.
typedef struct sd_image {
  int width, height;
  uint8_t *rgb;  // (height, width, 3)
} sd_image;

// A width x height image filled with one grey level (malloc'ed; fatal when out of memory).
void sd_image_create(sd_image *im, int width, int height, uint8_t grey);
void sd_image_free(sd_image *im);
// Sets pixel (x, y) when it lies inside the image (others are ignored).
void sd_image_put(sd_image *im, int x, int y, uint8_t r, uint8_t g, uint8_t b);

// Writes im to path as a PNG (colour type 2, bit depth 8, no interlace). Returns 0, or -1 with
// a message naming the file; an existing file at path is left as it was on failure.
int sd_png_write(const sd_image *im, const char *path, char *err, size_t errlen);

#endif
