// Keyed per-step randomness (see step_random.h).
#include "objective/step_random.h"
#include "error.h"
#include "util/rng.h"

#include <math.h>
#include <stdlib.h>

typedef struct keyed_token {
  float key;
  int32_t t;
} keyed_token;

static int by_key(const void *a, const void *b) {
  const keyed_token *x = a, *y = b;
  if (x->key != y->key) return x->key < y->key ? -1 : 1;
  return x->t - y->t;
}

static int by_index(const void *a, const void *b) {
  return *(const int32_t *)a - *(const int32_t *)b;
}

void sd_step_random(const sd_random_opts *o, long step, long first_index, int B, float *eps,
                    float *sigma_s, float *sigma_t, int32_t *vis, int32_t *y) {
  const uint32_t s32 = (uint32_t)step;
  keyed_token *tok = sd_xmalloc(sizeof *tok * (size_t)o->tokens, "token keys");
  float *keys = sd_xmalloc(sizeof(float) * (size_t)o->tokens, "token keys");
  for (int b = 0; b < B; b++) {
    uint32_t g = (uint32_t)(first_index + b);
    sd_rng_normal(o->seed, SD_RNG_NOISE, s32, g, 0, (size_t)o->elements, eps + (size_t)b * o->elements);
    float z, u;
    sd_rng_normal(o->seed, SD_RNG_SIGMA_S, s32, g, 0, 1, &z);
    sigma_s[b] = expf(o->p_mean + o->p_std * z);
    if (o->teacher_log_uniform) {
      sd_rng_uniform(o->seed, SD_RNG_SIGMA_T, s32, g, 0, 1, &u);
      float lo = logf(o->sigma_min), hi = logf(sigma_s[b] > o->sigma_min ? sigma_s[b] : o->sigma_min);
      sigma_t[b] = expf(lo + u * (hi - lo));
    } else {
      sigma_t[b] = o->teacher_sigma;
    }
    sd_rng_uniform(o->seed, SD_RNG_LABEL_DROP, s32, g, 0, 1, &u);
    if (u < o->label_dropout) y[b] = o->num_classes;
    // visible set: the Tv tokens with the smallest keys, in token order
    sd_rng_uniform(o->seed, SD_RNG_MASK, s32, g, 0, (size_t)o->tokens, keys);
    for (int t = 0; t < o->tokens; t++) tok[t] = (keyed_token){keys[t], t};
    qsort(tok, (size_t)o->tokens, sizeof *tok, by_key);
    int32_t *v = vis + (size_t)b * o->visible_tokens;
    for (int k = 0; k < o->visible_tokens; k++) v[k] = tok[k].t;
    qsort(v, (size_t)o->visible_tokens, sizeof *v, by_index);
  }
  free(tok);
  free(keys);
}
