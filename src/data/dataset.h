// HDF5 dataset format version 1 (sddit-latents): opening a file, checking every rule of the
// format and the run configuration against it, and per-channel/label statistics for
// `sddit inspect`. Every problem is returned as a message that names the file, the object and,
// for values, the first bad index; nothing here exits.
//
// Layout: /latents (N, C, H, W) float16 or float32, already scaled; or /moments (N, 2C, H, W)
// mean then log-variance (the loader samples mean + exp(logvar / 2) * eps and multiplies by
// scale_factor); /labels (N) integer in [0, num_classes); root attributes format
// ("sddit-latents"), format_version (1), num_classes, image_size, latent_channels,
// scale_factor, and optionally encoder, source, flipped.
#ifndef SD_DATASET_H
#define SD_DATASET_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct sd_dataset_info {
  char path[512];
  char var[16];          // "/latents" or "/moments"
  long n;                // samples
  int c, h, w;           // one sample as the model sees it: (C, H, W)
  int stored_channels;   // C, or 2C for /moments
  int moments;           // 1: /moments, sampled at every read
  int half;              // 1: stored as float16, 0: float32
  int little_endian;     // stored byte order (float16 must be little-endian)
  int num_classes, image_size, latent_channels;
  double scale_factor;
} sd_dataset_info;

// Checks the file against format version 1: readable HDF5, attributes, datasets, shapes,
// types, every label in range, and (when scan_values) every stored value finite, with a
// progress line on stderr for files that take more than a few seconds. Returns 0 and fills
// info, or -1 with a message beginning with the path.
int sd_dataset_check(const char *path, int scan_values, sd_dataset_info *info, char *err,
                     size_t errlen);

// The model must fit the data: in_channels = C, input_size = H = W, num_classes equal.
// Returns 0, or -1 with a message naming the config key and what to set it to.
int sd_dataset_check_model(const sd_dataset_info *info, int in_channels, int input_size,
                           int num_classes, char *err, size_t errlen);

// A root string attribute of the file at path (the optional "encoder", "source"), whole at
// any length, fixed- or variable-length: malloc'ed (free()), "unknown" when it is missing or
// not a string.
char *sd_dataset_text_attr(const char *path, const char *name);

// Reads `count` samples starting at `first` as float32 (stored values, no moment sampling or
// scaling) into out (count, stored_channels, H, W). Returns 0 or -1 with a message.
int sd_dataset_read_rows(const sd_dataset_info *info, long first, long count, float *out,
                         char *err, size_t errlen);

// Prints the layout, attributes, per-channel mean and std, the label histogram and then
// either "ok" or the first problem. Returns 0 if the file is valid, else 1.
int sd_dataset_print_summary(const char *path, FILE *out);

// IEEE 754 binary16 to binary32, exact for every input (subnormals, infinities, NaNs).
float sd_half_to_float(uint16_t h);
uint16_t sd_float_to_half(float f);  // round to nearest even

#endif
