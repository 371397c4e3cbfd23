// Keyed counter-based randomness on Philox4x32-10 (see rng.h).
#include "util/rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void sd_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int round = 0; round < 10; round++) {
    uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
    uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += PHILOX_W0;
    k1 += PHILOX_W1;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

void sd_rng_block(uint64_t seed, uint32_t purpose, uint32_t step, uint32_t index,
                  uint32_t block, uint32_t out[4]) {
  const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  const uint32_t ctr[4] = {block, index, step, purpose};
  sd_philox4x32_10(ctr, key, out);
}

// 24 high bits -> (0, 1), never 0 or 1 exactly.
static float to_unit(uint32_t u) { return ((float)(u >> 8) + 0.5f) * (1.0f / 16777216.0f); }

void sd_rng_uniform(uint64_t seed, uint32_t purpose, uint32_t step, uint32_t index,
                    uint32_t offset, size_t n, float *out) {
  uint32_t w[4];
  uint32_t cur = UINT32_MAX;
  for (size_t i = 0; i < n; i++) {
    uint32_t e = offset + (uint32_t)i;
    if (e / 4 != cur || i == 0) {
      cur = e / 4;
      sd_rng_block(seed, purpose, step, index, cur, w);
    }
    out[i] = to_unit(w[e % 4]);
  }
}

void sd_rng_normal(uint64_t seed, uint32_t purpose, uint32_t step, uint32_t index,
                   uint32_t offset, size_t n, float *out) {
  uint32_t w[4];
  double z[4];
  uint32_t cur = UINT32_MAX;
  for (size_t i = 0; i < n; i++) {
    uint32_t e = offset + (uint32_t)i;
    if (e / 4 != cur || i == 0) {
      cur = e / 4;
      sd_rng_block(seed, purpose, step, index, cur, w);
      for (int pair = 0; pair < 2; pair++) {
        double u1 = to_unit(w[2 * pair]), u2 = to_unit(w[2 * pair + 1]);
        double r = sqrt(-2.0 * log(u1)), a = 2.0 * M_PI * u2;
        z[2 * pair] = r * cos(a);
        z[2 * pair + 1] = r * sin(a);
      }
    }
    out[i] = (float)z[e % 4];
  }
}

uint32_t sd_rng_below(uint64_t seed, uint32_t purpose, uint32_t step, uint32_t index,
                      uint32_t e, uint32_t bound) {
  uint32_t w[4];
  sd_rng_block(seed, purpose, step, index, e / 4, w);
  // 64-bit multiply-shift: bias below 2^-32 * bound, irrelevant at our sizes
  return (uint32_t)(((uint64_t)w[e % 4] * bound) >> 32);
}
