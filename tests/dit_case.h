// The DiT case shared by the determinism and bf16-activation tests: a model with DiT's
// initialisation plus N(0, 0.02) noise on every parameter (so the adaLN-Zero layers carry
// signal), fixed inputs for 3 samples (images, regression targets, noise levels, labels with
// the null class) and, when masked, a distinct sorted subset of 3/4 of the tokens per sample.
#ifndef SD_TEST_DIT_CASE_H
#define SD_TEST_DIT_CASE_H

#include "model/dit.h"

#include <stddef.h>
#include <stdint.h>

typedef struct dit_case {
  sd_dit m;
  int B, T, Tk;     // 3 samples; tokens; tokens in the pass
  size_t nimg;      // floats of x (B, C, H, W)
  float *x, *tgt;   // (B, C, H, W) input and regression target
  float cn[3];      // c_noise per sample
  int32_t y[3];     // labels (the second is the null class)
  int32_t *idx;     // (B, Tk) token subset, or NULL (all tokens)
} dit_case;

void dit_case_create(dit_case *c, const sd_dit_config *cfg, sd_backend *be, int masked);
void dit_case_destroy(dit_case *c);

#endif
