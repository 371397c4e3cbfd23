// The checkpoint file layout (see ckpt_layout.h) and its checksum: FNV-1a 64 (offset basis
// 0xcbf29ce484222325, prime 0x100000001b3) over the raw little-endian bytes of a dataset.
#include "ckpt/ckpt.h"
#include "ckpt/ckpt_layout.h"

#include <string.h>

#define FNV_PRIME 0x100000001b3ULL

// ---- checksum ----------------------------------------------------------------------------

unsigned long long sd_ckpt_fnv1a64(unsigned long long h, const void *data, size_t n) {
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= FNV_PRIME;
  }
  return h;
}

static int host_is_little_endian(void) {
  const uint16_t one = 1;
  unsigned char b;
  memcpy(&b, &one, 1);
  return b == 1;
}

uint64_t sd_ckpt_hash_le(uint64_t h, const void *data, size_t n, size_t elsize, int swap) {
  if (!swap || elsize == 1 || host_is_little_endian())
    return sd_ckpt_fnv1a64(h, data, n * elsize);
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++)
    for (size_t b = elsize; b-- > 0;) {
      h ^= p[i * elsize + b];
      h *= FNV_PRIME;
    }
  return h;
}

// ---- the file layout -----------------------------------------------------------------------

size_t sd_ckpt_kind_size(sd_ckpt_kind k) {
  return k == SD_CKPT_F32 || k == SD_CKPT_I32 ? 4 : k == SD_CKPT_U64 ? 8 : SD_CKPT_NAME_LEN;
}

hid_t sd_ckpt_name_type(void) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, SD_CKPT_NAME_LEN);
  H5Tset_strpad(t, H5T_STR_NULLPAD);
  return t;
}

void sd_ckpt_layout(sd_ckpt_ds_spec sp[SD_CKPT_NUM_DATASETS], unsigned long long total,
                    unsigned long long dit_total, unsigned long long prototypes,
                    unsigned long long count) {
  const sd_ckpt_ds_spec all[SD_CKPT_NUM_DATASETS] = {
      {"/student/params", SD_CKPT_F32, 1, {total, 0}, "total"},
      {"/student/adam_m", SD_CKPT_F32, 1, {total, 0}, "total"},
      {"/student/adam_v", SD_CKPT_F32, 1, {total, 0}, "total"},
      {"/teacher", SD_CKPT_F32, 1, {total, 0}, "total"},
      {"/ema", SD_CKPT_F32, 1, {dit_total, 0}, "dit_total"},
      {"/center", SD_CKPT_F32, 1, {prototypes, 0}, "prototypes"},
      {"/tensors/names", SD_CKPT_NAME, 1, {count, 0}, "the table length"},
      {"/tensors/offsets", SD_CKPT_U64, 1, {count, 0}, "the table length"},
      {"/tensors/numel", SD_CKPT_U64, 1, {count, 0}, "the table length"},
      {"/tensors/shapes", SD_CKPT_I32, 2, {count, 4}, "the table length"},
  };
  memcpy(sp, all, sizeof all);
}

void sd_ckpt_family_ptrs(const sd_sddit *s, float *p[SD_CKPT_NUM_FAMILIES]) {
  p[0] = s->params;
  p[1] = s->adam_m;
  p[2] = s->adam_v;
  p[3] = s->teacher;
  p[4] = s->ema;
  p[5] = s->center;
}
