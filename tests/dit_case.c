// The DiT case shared by the determinism and bf16-activation tests (see dit_case.h).
#include "dit_case.h"
#include "check.h"
#include "error.h"

#include <stdlib.h>
#include <string.h>

void dit_case_create(dit_case *c, const sd_dit_config *cfg, sd_backend *be, int masked) {
  memset(c, 0, sizeof *c);
  c->B = 3;
  c->T = sd_dit_tokens(cfg);
  c->Tk = masked ? c->T - c->T / 4 : c->T;
  c->nimg = (size_t)c->B * cfg->in_channels * cfg->input_size * cfg->input_size;
  sd_dit_create(&c->m, cfg, be);
  sd_dit_init_weights(&c->m, 7);
  float *noise = sd_xmalloc(sizeof(float) * c->m.table.total, "noise");
  fill_normal(noise, c->m.table.total, 21, 0.02f);
  for (size_t i = 0; i < c->m.table.total; i++) c->m.params[i] += noise[i];
  free(noise);
  c->x = sd_xmalloc(sizeof(float) * c->nimg, "x");
  c->tgt = sd_xmalloc(sizeof(float) * c->nimg, "target");
  fill_normal(c->x, c->nimg, 22, 1.0f);
  fill_normal(c->tgt, c->nimg, 23, 1.0f);
  const float cn[3] = {-1.1f, 0.0f, 0.8f};
  const int32_t y[3] = {1, cfg->num_classes, 3};
  memcpy(c->cn, cn, sizeof cn);
  memcpy(c->y, y, sizeof y);
  if (!masked) return;
  const int B = c->B, T = c->T, Tk = c->Tk;
  c->idx = sd_xmalloc(sizeof(int32_t) * (size_t)B * Tk, "idx");
  for (int b = 0; b < B; b++)  // a distinct, sorted subset per sample: drop every 4th after b
    for (int k = 0, t = 0; k < Tk; t++)
      if ((t + b) % 4 != 0 || t >= T - (T - Tk)) c->idx[b * Tk + k++] = t;
}

void dit_case_destroy(dit_case *c) {
  sd_dit_destroy(&c->m);
  free(c->x);
  free(c->tgt);
  free(c->idx);
  memset(c, 0, sizeof *c);
}
