// `sddit inspect` (see inspect.h).
#include "inspect.h"
#include "ckpt.h"
#include "dataset.h"
#include "h5io.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

// The root attribute "format" of an HDF5 file, or "" when unreadable.
static void file_format(const char *path, char *buf, size_t len) {
  buf[0] = '\0';
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  if (H5Fis_hdf5(path) <= 0) return;
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return;
  sd_h5_attr_string(f, "format", buf, len);
  H5Fclose(f);
}

int sd_cmd_inspect(int argc, char **argv) {
  if (argc < 3 || !strcmp(argv[2], "--help") || !strcmp(argv[2], "-h")) {
    fprintf(argc < 3 ? stderr : stdout,
            "usage: sddit inspect FILE...\n"
            "  a dataset (format sddit-latents): layout, attributes, per-channel mean and std,\n"
            "  label histogram, and the first problem (exit 1) or ok (exit 0)\n"
            "  a checkpoint (format sddit-checkpoint): step, configuration, tensors and\n"
            "  whether every checksum verifies\n");
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
    char fmt[128];
    file_format(path, fmt, sizeof fmt);
    if (strcmp(fmt, "sddit-checkpoint") == 0) bad |= sd_ckpt_print_summary(path, stdout) != 0;
    else bad |= sd_dataset_print_summary(path, stdout) != 0;
    if (i + 1 < argc) printf("\n");
  }
  return bad;
}
