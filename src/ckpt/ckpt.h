// Training checkpoints: one HDF5 file per save holding the student, its Adam moments, the
// teacher, the generation EMA, the center, the per-tensor table and the run's attributes,
// each dataset with a 64-bit checksum (FNV-1a 64). Writes are atomic (temporary name, fsync,
// rename) and the last K are kept. Every function returns its errors as messages; none exits.
#ifndef SD_CKPT_H
#define SD_CKPT_H

#include "objective/sddit.h"

#include <stddef.h>
#include <stdio.h>

#define SD_CKPT_FORMAT "sddit-checkpoint"
#define SD_CKPT_FORMAT_VERSION 1

typedef struct sd_ckpt_info {
  long step;                 // optimizer steps completed
  unsigned long long seed;   // train.seed
  long data_cursor;          // samples consumed from the data stream (= step * global_batch)
  int world_size;
  char git_rev[64];          // (load: its first 63 characters; inspect prints it whole)
  char *config_text;         // the effective config as INI text (malloc'ed by load; caller frees)
} sd_ckpt_info;

// Writes <dir>/ckpt-<step 8 digits>.h5 (mkdir -p dir): first to <name>.tmp, H5Fflush+close,
// fsync the file, rename, fsync the directory; then deletes all but the newest `keep` files
// named ckpt-<digits>.h5 in dir (keep <= 0: keep all; the file just written is never deleted).
// Stores /student/params, /student/adam_m, /student/adam_v, /teacher (s->total floats each),
// /ema (s->dit_total), /center (prototypes) and the table /tensors/{names, offsets, numel,
// shapes}; root attributes format, format_version, step, seed, data_cursor, world_size,
// git_rev, config, total, dit_total, head_total, prototypes. Every dataset carries a uint64
// attribute "checksum": FNV-1a 64 of its raw little-endian bytes. On failure the .tmp file is
// removed, existing checkpoints are untouched, and -1 comes back with a message naming the
// path and the errno text. path_out (if non-NULL) gets the final path. The file is built in
// host memory (HDF5 core driver) and then written with write/fsync, so a save needs host
// memory for the whole checkpoint plus one family buffer.
int sd_ckpt_save(const char *dir, const sd_sddit *s, const sd_ckpt_info *info, int keep,
                 char *path_out, size_t path_len, char *err, size_t errlen);

// Opens and fully checks a checkpoint: readable HDF5, format and version, every dataset present
// with the size implied by the total/dit_total/prototypes attributes, every checksum matching.
// Returns 0, or -1 with a message that starts with the path.
int sd_ckpt_verify(const char *path, char *err, size_t errlen);

// Verifies, checks that the checkpoint fits s (sizes and the tensor table: names, offsets,
// element counts, shapes), then copies every family buffer into s with to_device. info (if
// non-NULL) receives the attributes and a malloc'ed config_text (NULL on failure). On a
// verification or fit failure s is unchanged.
int sd_ckpt_load(const char *path, sd_sddit *s, sd_ckpt_info *info, char *err, size_t errlen);

// The newest (highest step) ckpt-<digits>.h5 in dir that verifies; each file that fails is
// reported on stderr as "warning: skipping <path>: <reason>". Returns 1 with path filled, 0 if
// dir is missing or holds none that verifies, -1 on other errors (message in err).
int sd_ckpt_find_latest(const char *dir, char *path, size_t path_len, char *err, size_t errlen);

// Prints the attributes, the config, each dataset with its shape and checksum status, and the
// first and last entries of the tensor table to out. Returns 0 if the file verifies, else -1
// after printing what it could and the first problem.
int sd_ckpt_print_summary(const char *path, FILE *out);

// FNV-1a 64 over n bytes, continuing from h (start with SD_FNV1A64_INIT).
#define SD_FNV1A64_INIT 0xcbf29ce484222325ULL
unsigned long long sd_ckpt_fnv1a64(unsigned long long h, const void *data, size_t n);

#endif
