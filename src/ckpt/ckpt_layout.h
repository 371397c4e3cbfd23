// Internal to the checkpoint module (ckpt_*.c): what a checkpoint file holds (its datasets,
// their element kinds and lengths, the model buffers they come from) and the checksum every
// dataset carries: FNV-1a 64 of its raw little-endian bytes.
#ifndef SD_CKPT_LAYOUT_H
#define SD_CKPT_LAYOUT_H

#include "objective/sddit.h"

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#define SD_CKPT_NAME_LEN 64  // bytes per entry of /tensors/names (sd_param_info.name)

// Element kinds: float32, uint64, int32, and the 64-byte null-padded names.
typedef enum { SD_CKPT_F32, SD_CKPT_U64, SD_CKPT_I32, SD_CKPT_NAME } sd_ckpt_kind;

typedef struct sd_ckpt_ds_spec {
  const char *name;
  sd_ckpt_kind kind;
  int ndim;
  hsize_t dims[2];
  const char *size_from;  // the attribute that implies the length (for messages)
} sd_ckpt_ds_spec;

enum { SD_CKPT_NUM_DATASETS = 10, SD_CKPT_NUM_FAMILIES = 6 };

// Every dataset of a checkpoint with the given sizes; the first SD_CKPT_NUM_FAMILIES are the
// family buffers, in the order sd_ckpt_family_ptrs() returns them; the last four are the
// tensor table (names, offsets, numel, shapes).
void sd_ckpt_layout(sd_ckpt_ds_spec sp[SD_CKPT_NUM_DATASETS], unsigned long long total,
                    unsigned long long dit_total, unsigned long long prototypes,
                    unsigned long long count);

// The family buffers of s: params, adam_m, adam_v, teacher, ema, center.
void sd_ckpt_family_ptrs(const sd_sddit *s, float *p[SD_CKPT_NUM_FAMILIES]);

// Bytes per element of a kind.
size_t sd_ckpt_kind_size(sd_ckpt_kind k);

// The fixed-length, null-padded 64-byte string type of /tensors/names (close it).
hid_t sd_ckpt_name_type(void);

// Continues hash h over n elements of elsize bytes taken in little-endian byte order
// (swap = 0 for byte strings, which have no byte order).
uint64_t sd_ckpt_hash_le(uint64_t h, const void *data, size_t n, size_t elsize, int swap);

#endif
