// The host bfloat16 conversion (kernels/base/bf16.h) used by the bf16 gradient all-reduce: round to
// nearest with ties to even, NaN kept NaN, overflow to infinity, exact round trips. Expected
// bit patterns are worked out by hand from the IEEE layouts, not produced by the code.
#include "bf16.h"
#include "check.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static float from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static void expect(const char *what, uint32_t in, uint16_t want) {
  uint16_t got = sd_bf16_from_float(from_bits(in));
  check_true(got == want, "%s: 0x%08x -> 0x%04x (want 0x%04x)", what, in, got, want);
}

int main(void) {
  expect("1.0 exact", 0x3f800000u, 0x3f80);
  expect("-2.0 exact", 0xc0000000u, 0xc000);
  expect("1 + 2^-8: tie, to even (down)", 0x3f808000u, 0x3f80);
  expect("1 + 3*2^-8: tie, to even (up)", 0x3f818000u, 0x3f82);
  expect("just above a tie rounds up", 0x3f808001u, 0x3f81);
  expect("just below a tie rounds down", 0x3f807fffu, 0x3f80);
  expect("largest float overflows to inf", 0x7f7fffffu, 0x7f80);
  expect("+inf stays inf", 0x7f800000u, 0x7f80);
  expect("-inf stays -inf", 0xff800000u, 0xff80);
  expect("smallest subnormal rounds to +0", 0x00000001u, 0x0000);
  expect("-0 stays -0", 0x80000000u, 0x8000);
  // a NaN whose payload sits only in the low 16 bits must not become infinity
  uint16_t n = sd_bf16_from_float(from_bits(0x7f800001u));
  check_true(isnan(sd_bf16_to_float(n)), "NaN 0x7f800001 -> 0x%04x stays NaN", n);
  // every bf16 value survives the round trip through float
  long bad = -1;
  for (uint32_t h = 0; h < 65536 && bad < 0; h++) {
    float f = sd_bf16_to_float((uint16_t)h);
    if (isnan(f)) continue;
    if (sd_bf16_from_float(f) != h) bad = (long)h;
  }
  check_true(bad < 0, "every non-NaN bf16 round-trips through float (first failure 0x%04lx)",
             bad < 0 ? 0 : bad);
  return check_exit("test_bf16");
}
