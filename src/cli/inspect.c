// `sddit inspect` (see inspect.h).
#include "cli/inspect.h"
#include "ckpt/ckpt.h"
#include "data/dataset.h"
#include "util/h5io.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <hdf5.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

// The root attribute "format" of an HDF5 file (malloc'ed), or NULL when unreadable.
static char *file_format(const char *path) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  if (H5Fis_hdf5(path) <= 0) return NULL;
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return NULL;
  char *v = sd_h5_attr_string_dup(f, "format");
  H5Fclose(f);
  return v;
}

// A sample file from `sddit sample`: its settings, shape and classes. 0 if readable, else 1.
static int print_samples_summary(const char *path, FILE *out) {
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  fprintf(out, "samples %s\n", path);
  if (f < 0) {
    fprintf(out, "problem: %s: cannot open (truncated?)\n", path);
    return 1;
  }
  const char *strings[] = {"sampler", "weights", "checkpoint", "encoder"};
  for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
    char *v = sd_h5_attr_string_dup(f, strings[i]);
    if (v) fprintf(out, "  %-16s %s\n", strings[i], v);
    free(v);
  }
  const char *nums[] = {"steps", "guidance", "seed", "train_step", "num_classes", "image_size",
                        "scale_factor"};
  for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
    double v;
    if (sd_h5_attr_num(f, nums[i], H5T_NATIVE_DOUBLE, &v) == 0)
      fprintf(out, "  %-16s %g\n", nums[i], v);
  }
  int rc = 1;
  sd_h5_shape sh, lh;
  if (sd_h5_exists(f, "/samples") && sd_h5_exists(f, "/labels")) {
    float *x = sd_h5_read_f32(f, "/samples", &sh);
    int32_t *y = sd_h5_read_i32(f, "/labels", &lh);
    long finite = 0, classes[1025] = {0};
    for (size_t i = 0; i < sh.numel; i++) finite += isfinite(x[i]) != 0;
    for (size_t i = 0; i < lh.numel; i++)
      if (y[i] >= 0 && y[i] < 1025) classes[y[i]]++;
    int distinct = 0;
    for (int k = 0; k < 1025; k++) distinct += classes[k] > 0;
    fprintf(out, "  samples          (%zu, %zu, %zu, %zu), %zu labels over %d classes\n",
            sh.dims[0], sh.ndim > 1 ? sh.dims[1] : 0, sh.ndim > 2 ? sh.dims[2] : 0,
            sh.ndim > 3 ? sh.dims[3] : 0, lh.numel, distinct);
    rc = sh.ndim == 4 && lh.numel == sh.dims[0] && (size_t)finite == sh.numel ? 0 : 1;
    fprintf(out, rc ? "problem: %zu non-finite values or labels that do not match\n"
                    : "ok: %zu values, all finite\n", rc ? sh.numel - (size_t)finite : sh.numel);
    free(x);
    free(y);
  } else {
    fprintf(out, "problem: /samples or /labels is missing\n");
  }
  H5Fclose(f);
  return rc;
}

int sd_cmd_inspect(int argc, char **argv) {
  if (argc < 3 || !strcmp(argv[2], "--help") || !strcmp(argv[2], "-h")) {
    fprintf(argc < 3 ? stderr : stdout,
            "usage: sddit inspect FILE...\n"
            "  a dataset (format sddit-latents): layout, attributes, per-channel mean and std,\n"
            "  label histogram, and the first problem (exit 1) or ok (exit 0)\n"
            "  a checkpoint (format sddit-checkpoint): step, configuration, tensors and\n"
            "  whether every checksum verifies\n"
            "  samples (format sddit-samples): sampler settings, shape, classes\n");
    return argc < 3 ? 2 : 0;
  }
  int bad = 0;
  for (int i = 2; i < argc; i++) {
    const char *path = argv[i];
    struct stat st;
    if (stat(path, &st) != 0) {
      printf("%s\nproblem: %s: %s\n", path, path, strerror(errno));
      bad = 1;
      continue;
    }
    char *fmt = file_format(path);
    if (fmt && strcmp(fmt, "sddit-checkpoint") == 0) bad |= sd_ckpt_print_summary(path, stdout) != 0;
    else if (fmt && strcmp(fmt, "sddit-samples") == 0) bad |= print_samples_summary(path, stdout);
    else bad |= sd_dataset_print_summary(path, stdout) != 0;
    free(fmt);
    if (i + 1 < argc) printf("\n");
  }
  return bad;
}
