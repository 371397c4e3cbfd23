// Activation storage on the CPU (see the top of ops.h): an op's bf16-stored arguments are
// widened into fp32 copies, the op computes in fp32, and each stored output is rounded once.
// fp32-stored arguments are used in place, so an all-fp32 call costs nothing extra.
#ifndef SD_CPU_STORAGE_H
#define SD_CPU_STORAGE_H

#include "ops.h"

#include <stddef.h>

// x (n) as fp32: x itself when t is SD_F32, else a widened copy (heap).
const float *sd_cpu_load(const void *x, sd_dtype t, size_t n);
// Frees what sd_cpu_load returned for x (nothing when it was x itself).
void sd_cpu_unload(const void *x, const float *f32);
// Where an op writes an output stored as t: out itself when t is SD_F32, else fp32 scratch
// (heap) that sd_cpu_store rounds into out.
float *sd_cpu_out(void *out, sd_dtype t, size_t n);
// Rounds f32 (n) into out when t is SD_BF16 and frees it; nothing when f32 is out itself.
void sd_cpu_store(void *out, sd_dtype t, float *f32, size_t n);

#endif
