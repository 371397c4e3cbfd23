// bfloat16 on the host: the top 16 bits of an IEEE float, rounded to nearest even (NaN kept
// a quiet NaN). Used for the bf16 gradient all-reduce (dist.grad_dtype = bf16) over MPI and for
// the CPU ops' bf16 activation storage (kernels/cpu/storage.c); the CUDA side uses
// __float2bfloat16_rn, which rounds the same way.
#ifndef SD_BF16_H
#define SD_BF16_H

#include <stdint.h>
#include <string.h>

static inline uint16_t sd_bf16_from_float(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
  return (uint16_t)(u >> 16);
}

static inline float sd_bf16_to_float(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

#endif
