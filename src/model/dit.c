// DiT model creation, DiT's initialisation and the fixed position table (see dit.h).
#include "model/dit.h"
#include "error.h"
#include "util/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void sd_dit_pos_table(const sd_dit_config *cfg, float *pos) {
  const int g = cfg->input_size / cfg->patch, D = cfg->hidden, E = D / 2, Q = E / 2;
  for (int row = 0; row < g; row++)
    for (int col = 0; col < g; col++) {
      float *dst = pos + ((size_t)row * g + col) * D;
      for (int k = 0; k < Q; k++) {
        double omega = 1.0 / pow(10000.0, (double)k / (double)Q);
        dst[k] = (float)sin(col * omega);          // first half: column position
        dst[Q + k] = (float)cos(col * omega);
        dst[E + k] = (float)sin(row * omega);      // second half: row position
        dst[E + Q + k] = (float)cos(row * omega);
      }
    }
}

void sd_dit_create_in(sd_dit *m, const sd_dit_config *cfg, sd_backend *be, float *params,
                      float *grads) {
  char err[256];
  if (sd_dit_config_validate(cfg, err, sizeof err) != 0) SD_FATAL("%s", err);
  memset(m, 0, sizeof *m);
  m->cfg = *cfg;
  m->be = be;
  sd_dit_param_table(cfg, &m->table);
  m->params = params;
  m->grads = grads;
  sd_dit_weights_bind(cfg, m->params, &m->w);
  if (grads) sd_dit_weights_bind(cfg, m->grads, &m->g);
  const int T = sd_dit_tokens(cfg);
  float *pos = sd_xmalloc(sizeof(float) * (size_t)T * cfg->hidden, "position table");
  sd_dit_pos_table(cfg, pos);
  m->pos = be->ops->alloc(be, sizeof(float) * (size_t)T * cfg->hidden);
  be->ops->to_device(be, m->pos, pos, sizeof(float) * (size_t)T * cfg->hidden);
  free(pos);
}

void sd_dit_create(sd_dit *m, const sd_dit_config *cfg, sd_backend *be) {
  sd_param_table t;
  sd_dit_param_table(cfg, &t);
  size_t bytes = sizeof(float) * t.total;
  sd_param_table_free(&t);
  float *params = be->ops->alloc(be, bytes), *grads = be->ops->alloc(be, bytes);
  be->ops->memset(be, params, 0, bytes);
  be->ops->memset(be, grads, 0, bytes);
  sd_dit_create_in(m, cfg, be, params, grads);
  m->owns_buffers = 1;
}

void sd_dit_destroy(sd_dit *m) {
  if (!m->be) return;
  if (m->owns_buffers) {
    m->be->ops->free(m->be, m->params);
    m->be->ops->free(m->be, m->grads);
  }
  m->be->ops->free(m->be, m->pos);
  sd_dit_weights_free(&m->w);
  sd_dit_weights_free(&m->g);
  sd_param_table_free(&m->table);
  memset(m, 0, sizeof *m);
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

void sd_dit_init_weights(sd_dit *m, uint64_t seed) {
  const sd_param_table *t = &m->table;
  float *host = sd_xcalloc(t->total, sizeof(float), "initial parameters");
  for (int i = 0; i < t->count; i++) {
    const sd_param_info *p = &t->items[i];
    float *dst = host + p->offset;
    // zero: biases, every adaLN output layer, the final linear (adaLN-Zero)
    if (ends_with(p->name, ".bias") || strstr(p->name, "adaLN_modulation") ||
        strncmp(p->name, "final_layer.linear", 18) == 0)
      continue;
    if (strcmp(p->name, "y_embedder.embedding_table.weight") == 0 ||
        strncmp(p->name, "t_embedder.mlp.", 15) == 0) {
      sd_rng_normal(seed, SD_RNG_INIT, 0, (uint32_t)i, 0, p->numel, dst);
      for (size_t k = 0; k < p->numel; k++) dst[k] *= 0.02f;
      continue;
    }
    // xavier-uniform on (fan_out, fan_in) = (shape[0], numel / shape[0])
    double fan_out = p->shape[0], fan_in = (double)p->numel / p->shape[0];
    float bound = (float)sqrt(6.0 / (fan_in + fan_out));
    sd_rng_uniform(seed, SD_RNG_INIT, 0, (uint32_t)i, 0, p->numel, dst);
    for (size_t k = 0; k < p->numel; k++) dst[k] = (2.0f * dst[k] - 1.0f) * bound;
  }
  m->be->ops->to_device(m->be, m->params, host, sizeof(float) * t->total);
  free(host);
}
