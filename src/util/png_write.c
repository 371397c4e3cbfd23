// PNG writer (see png_write.h): signature, IHDR, one IDAT of zlib-compressed scanlines (filter
// type 0 on every row), IEND; each chunk with its CRC-32 over type and data.
#include "util/png_write.h"
#include "error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

void sd_image_create(sd_image *im, int width, int height, uint8_t grey) {
  if (width < 1 || height < 1) SD_FATAL("image size %d x %d is not positive", width, height);
  im->width = width;
  im->height = height;
  im->rgb = sd_xmalloc((size_t)width * height * 3, "image");
  memset(im->rgb, grey, (size_t)width * height * 3);
}

void sd_image_free(sd_image *im) {
  free(im->rgb);
  memset(im, 0, sizeof *im);
}

void sd_image_put(sd_image *im, int x, int y, uint8_t r, uint8_t g, uint8_t b) {
  if (x < 0 || y < 0 || x >= im->width || y >= im->height) return;
  uint8_t *p = im->rgb + ((size_t)y * im->width + x) * 3;
  p[0] = r;
  p[1] = g;
  p[2] = b;
}

static void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

// One chunk: length, type, data, CRC-32 of type + data. Returns 0 or -1 (write error).
static int write_chunk(FILE *f, const char type[4], const uint8_t *data, size_t len) {
  uint8_t head[8], tail[4];
  put_be32(head, (uint32_t)len);
  memcpy(head + 4, type, 4);
  uLong crc = crc32(0L, (const Bytef *)type, 4);
  if (len) crc = crc32(crc, data, (uInt)len);
  put_be32(tail, (uint32_t)crc);
  if (fwrite(head, 1, 8, f) != 8) return -1;
  if (len && fwrite(data, 1, len, f) != len) return -1;
  return fwrite(tail, 1, 4, f) == 4 ? 0 : -1;
}

int sd_png_write(const sd_image *im, const char *path, char *err, size_t errlen) {
  const size_t row = (size_t)im->width * 3 + 1;  // filter byte + pixels
  const size_t raw_len = row * im->height;
  if (raw_len > 0x7fffffffu) {
    snprintf(err, errlen, "%s: image %d x %d is too large", path, im->width, im->height);
    return -1;
  }
  uint8_t *raw = sd_xmalloc(raw_len, "PNG scanlines");
  for (int y = 0; y < im->height; y++) {
    raw[row * y] = 0;  // filter type 0 (none)
    memcpy(raw + row * y + 1, im->rgb + (size_t)y * im->width * 3, row - 1);
  }
  uLongf z_len = compressBound((uLong)raw_len);
  uint8_t *z = sd_xmalloc(z_len, "PNG data");
  const int zrc = compress2(z, &z_len, raw, (uLong)raw_len, 6);
  free(raw);
  if (zrc != Z_OK) {
    free(z);
    snprintf(err, errlen, "%s: zlib compress2 failed (%d)", path, zrc);
    return -1;
  }
  char tmp[1200];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    free(z);
    snprintf(err, errlen, "cannot write '%s': %s", tmp, strerror(errno));
    return -1;
  }
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  uint8_t ihdr[13];
  put_be32(ihdr, (uint32_t)im->width);
  put_be32(ihdr + 4, (uint32_t)im->height);
  ihdr[8] = 8;   // bit depth
  ihdr[9] = 2;   // colour type: RGB
  ihdr[10] = 0;  // deflate
  ihdr[11] = 0;  // adaptive filtering (filter type per row)
  ihdr[12] = 0;  // no interlace
  int bad = fwrite(sig, 1, 8, f) != 8 || write_chunk(f, "IHDR", ihdr, 13) != 0 ||
            write_chunk(f, "IDAT", z, z_len) != 0 || write_chunk(f, "IEND", NULL, 0) != 0;
  free(z);
  int saved_errno = errno;
  if (fclose(f) != 0 && !bad) {
    bad = 1;
    saved_errno = errno;
  }
  if (bad) {
    snprintf(err, errlen, "cannot write '%s': %s", tmp, strerror(saved_errno));
    remove(tmp);
    return -1;
  }
  if (rename(tmp, path) != 0) {
    snprintf(err, errlen, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
    remove(tmp);
    return -1;
  }
  return 0;
}
