// Loads the PyTorch DiT fixture (tests/fixtures/dit_tiny.h5, written by
// tests/reference/make_dit_fixture.py) into a config, parameters and cases.
#ifndef SD_FIXTURE_H
#define SD_FIXTURE_H

#include "model/dit.h"

#include <hdf5.h>

typedef struct fixture_case {
  const char *name;   // "full" or "masked"
  int B, Tk;
  float *x, *c_noise, *target, *out;  // host
  int32_t *y, *keep_idx;
  double loss;
  float *grads;       // flat, our layout (table order)
  float *t_features, *c;  // full case only (else NULL)
} fixture_case;

typedef struct fixture {
  hid_t file;
  sd_dit_config cfg;
  float *params;      // flat, our layout
  float *pos;         // (T, D)
  fixture_case cases[2];
} fixture;

// Path of a fixture file: $SD_FIXTURES/name, else tests/fixtures/name.
const char *fixture_path(const char *name, char *buf, size_t len);
void fixture_load(fixture *fx, const char *path);
// Reads the DiT shape from the integer attributes of /config.
void fixture_read_dit_config(hid_t f, sd_dit_config *c);
// Reads a tensor by name into dst in our layout, checking its element count.
void fixture_read_tensor(hid_t f, const char *path, float *dst, size_t numel);

#endif
