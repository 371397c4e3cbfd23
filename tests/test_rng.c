// Known-answer and distribution tests of the keyed Philox4x32-10 generator.
#include "check.h"
#include "util/rng.h"
#include "tolerances.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
  // Random123's published known answers for Philox4x32-10.
  struct { uint32_t ctr[4], key[2], want[4]; } kat[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
      {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu},
       {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
      {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u},
       {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}}};
  for (int k = 0; k < 3; k++) {
    uint32_t out[4];
    sd_philox4x32_10(kat[k].ctr, kat[k].key, out);
    check_true(out[0] == kat[k].want[0] && out[1] == kat[k].want[1] &&
                   out[2] == kat[k].want[2] && out[3] == kat[k].want[3],
               "philox known answer %d: got %08x %08x %08x %08x want %08x %08x %08x %08x", k,
               out[0], out[1], out[2], out[3], kat[k].want[0], kat[k].want[1], kat[k].want[2],
               kat[k].want[3]);
  }

  const size_t n = 1u << 20;
  float *u = malloc(sizeof(float) * n), *z = malloc(sizeof(float) * n);
  sd_rng_uniform(42, SD_RNG_TEST, 3, 5, 0, n, u);
  sd_rng_normal(42, SD_RNG_TEST, 3, 5, 0, n, z);
  double su = 0, su2 = 0, sz = 0, sz2 = 0;
  float umin = 1, umax = 0;
  for (size_t i = 0; i < n; i++) {
    su += u[i];
    su2 += (double)u[i] * u[i];
    sz += z[i];
    sz2 += (double)z[i] * z[i];
    umin = u[i] < umin ? u[i] : umin;
    umax = u[i] > umax ? u[i] : umax;
  }
  double mu = su / n, vu = su2 / n - mu * mu, mz = sz / n, vz = sz2 / n - mz * mz;
  check_true(umin > 0.0f && umax < 1.0f, "uniforms inside (0,1): min %.3g max %.9g", umin, umax);
  check_true(fabs(mu - 0.5) < RNG_SIGMAS * sqrt(1.0 / 12 / n), "uniform mean %.6f", mu);
  check_true(fabs(vu - 1.0 / 12) < RNG_SIGMAS * 0.0889 / sqrt((double)n), "uniform var %.6f", vu);
  check_true(fabs(mz) < RNG_SIGMAS / sqrt((double)n), "normal mean %.6f", mz);
  check_true(fabs(vz - 1.0) < RNG_SIGMAS * sqrt(2.0 / n), "normal var %.6f", vz);

  // Keyed access: a slice read at an offset equals the same elements of a full read.
  float part[10];
  sd_rng_normal(42, SD_RNG_TEST, 3, 5, 1001, 10, part);
  int same = 1;
  for (int i = 0; i < 10; i++) same &= part[i] == z[1001 + i];
  check_true(same, "normal stream read at offset 1001 equals the full stream");
  // Different keys give different streams.
  float other[4];
  sd_rng_normal(42, SD_RNG_TEST, 3, 6, 0, 4, other);
  check_true(other[0] != z[0] || other[1] != z[1], "index 5 and 6 streams differ");
  sd_rng_normal(43, SD_RNG_TEST, 3, 5, 0, 4, other);
  check_true(other[0] != z[0] || other[1] != z[1], "seed 42 and 43 streams differ");
  uint32_t b = sd_rng_below(42, SD_RNG_TEST, 0, 0, 0, 7);
  check_true(b < 7, "rng_below(7) = %u", b);
  free(u);
  free(z);
  return check_exit("test_rng");
}
