// The SD-DiT projection head (see head.h).
#include "model/head.h"
#include "error.h"
#include "util/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct head_tensor {
  const char *name;
  int rows, cols;  // cols 0: a vector
} head_tensor;

static void tensors(const sd_head_config *c, head_tensor out[7]) {
  out[0] = (head_tensor){"head.mlp.0.weight", c->hidden, c->in_dim};
  out[1] = (head_tensor){"head.mlp.0.bias", c->hidden, 0};
  out[2] = (head_tensor){"head.mlp.2.weight", c->hidden, c->hidden};
  out[3] = (head_tensor){"head.mlp.2.bias", c->hidden, 0};
  out[4] = (head_tensor){"head.mlp.4.weight", c->bottleneck, c->hidden};
  out[5] = (head_tensor){"head.mlp.4.bias", c->bottleneck, 0};
  out[6] = (head_tensor){"head.last_layer.weight_v", c->prototypes, c->bottleneck};
}

static size_t numel(const head_tensor *t) { return (size_t)t->rows * (t->cols ? t->cols : 1); }

size_t sd_head_numel(const sd_head_config *c) {
  head_tensor t[7];
  tensors(c, t);
  size_t n = 0;
  for (int i = 0; i < 7; i++) n += numel(&t[i]);
  return n;
}

void sd_head_append_table(const sd_head_config *c, sd_param_table *tab) {
  head_tensor t[7];
  tensors(c, t);
  tab->items = realloc(tab->items, sizeof *tab->items * (size_t)(tab->count + 7));
  if (!tab->items) SD_FATAL("out of memory for the parameter table");
  for (int i = 0; i < 7; i++) {
    sd_param_info *p = &tab->items[tab->count++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", t[i].name);
    p->offset = tab->total;
    p->numel = numel(&t[i]);
    p->ndim = t[i].cols ? 2 : 1;
    p->shape[0] = t[i].rows;
    p->shape[1] = t[i].cols;
    tab->total += p->numel;
  }
}

void sd_head_bind(const sd_head_config *c, float *base, sd_head_weights *w) {
  head_tensor t[7];
  tensors(c, t);
  float **slots[7] = {&w->w0, &w->b0, &w->w2, &w->b2, &w->w4, &w->b4, &w->v};
  size_t off = 0;
  for (int i = 0; i < 7; i++) {
    *slots[i] = base + off;
    off += numel(&t[i]);
  }
}

void sd_head_init_host(const sd_head_config *c, float *host_base, uint64_t seed) {
  head_tensor t[7];
  tensors(c, t);
  size_t off = 0;
  for (int i = 0; i < 7; i++) {
    size_t n = numel(&t[i]);
    float *dst = host_base + off;
    if (!t[i].cols) {
      memset(dst, 0, sizeof(float) * n);
    } else if (i == 6) {
      float bound = 1.0f / sqrtf((float)c->bottleneck);
      sd_rng_uniform(seed, SD_RNG_INIT, 1, (uint32_t)i, 0, n, dst);
      for (size_t k = 0; k < n; k++) dst[k] = (2.0f * dst[k] - 1.0f) * bound;
    } else {
      sd_rng_normal(seed, SD_RNG_INIT, 1, (uint32_t)i, 0, n, dst);
      for (size_t k = 0; k < n; k++) {
        float z = dst[k] > 2.0f ? 2.0f : (dst[k] < -2.0f ? -2.0f : dst[k]);
        dst[k] = 0.02f * z;
      }
    }
    off += n;
  }
}

void sd_head_acts_create(sd_head_acts *a, sd_backend *be, const sd_head_config *c, int Ncap) {
  memset(a, 0, sizeof *a);
  a->Ncap = Ncap;
  const size_t N = (size_t)Ncap, H = (size_t)c->hidden, bn = (size_t)c->bottleneck,
               P = (size_t)c->prototypes;
  size_t sizes[] = {N * H, N * H, N * H, N * H, N * bn, N * bn, N, P * bn, P, N * P,
                    P * bn, N * bn, N * bn, N * H, N * H};
  float **slots[] = {&a->a1, &a->g1, &a->a2, &a->g2, &a->v, &a->u, &a->unorm, &a->weff,
                     &a->vnorm, &a->z, &a->dweff, &a->du, &a->dv, &a->dg, &a->dg2};
  size_t total = 0;
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) total += (sizes[i] + 15) / 16 * 16;
  a->arena = be->ops->alloc(be, sizeof(float) * total);
  be->ops->memset(be, a->arena, 0, sizeof(float) * total);
  size_t off = 0;
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    *slots[i] = a->arena + off;
    off += (sizes[i] + 15) / 16 * 16;
  }
}

void sd_head_acts_destroy(sd_head_acts *a, sd_backend *be) {
  if (a->arena) be->ops->free(be, a->arena);
  memset(a, 0, sizeof *a);
}

void sd_head_forward(sd_backend *be, const sd_head_config *c, const sd_head_weights *w,
                     sd_head_acts *a, const float *h, int N) {
  const sd_ops *op = be->ops;
  const int D = c->in_dim, H = c->hidden, bn = c->bottleneck, P = c->prototypes;
  if (N > a->Ncap) SD_FATAL("head: %d rows exceed the capacity %d", N, a->Ncap);
  a->N = N;
  op->matmul_gelu_fwd(be, a->g1, a->a1, h, SD_F32, w->w0, w->b0, N, D, H);     // (N, H)
  op->matmul_gelu_fwd(be, a->g2, a->a2, a->g1, SD_F32, w->w2, w->b2, N, H, H);  // (N, H)
  op->matmul_fwd(be, a->v, SD_F32, a->g2, SD_F32, w->w4, w->b4, N, H, bn);  // (N, bn)
  op->l2norm_rows_fwd(be, a->u, a->unorm, a->v, N, bn);
  op->l2norm_rows_fwd(be, a->weff, a->vnorm, w->v, P, bn);  // weight norm, gain 1
  // the prototype logits in fp32 inputs even in bf16 training: they feed tau_t = 0.04 softmaxes
  op->matmul_fwd_fp32(be, a->z, SD_F32, a->u, SD_F32, a->weff, NULL, N, bn, P);  // (N, P)
}

void sd_head_backward(sd_backend *be, const sd_head_config *c, const sd_head_weights *w,
                      const sd_head_weights *g, sd_head_acts *a, const float *h,
                      const float *dz, float *dh, int N) {
  const sd_ops *op = be->ops;
  const int D = c->in_dim, H = c->hidden, bn = c->bottleneck, P = c->prototypes;
  op->memset(be, a->dweff, 0, sizeof(float) * (size_t)P * bn);
  op->matmul_bwd_fp32(be, a->du, a->dweff, NULL, dz, SD_F32, a->u, SD_F32, a->weff, N, bn, P, 0);
  // d v_proto += l2norm backward of dweff (the prototypes' gradient accumulates)
  op->l2norm_rows_bwd(be, a->dweff, a->dweff, a->weff, a->vnorm, P, bn);
  op->axpy(be, g->v, a->dweff, (size_t)P * bn, 1.0f);
  op->l2norm_rows_bwd(be, a->dv, a->du, a->u, a->unorm, N, bn);
  op->matmul_bwd_dgelu(be, a->dg, g->w4, g->b4, a->dv, a->g2, w->w4, a->a2, SD_F32, N, H,
                       bn);  // d a2
  op->matmul_bwd_dgelu(be, a->dg2, g->w2, g->b2, a->dg, a->g1, w->w2, a->a1, SD_F32, N, H,
                       H);  // d a1
  op->matmul_bwd(be, dh, g->w0, g->b0, a->dg2, SD_F32, h, SD_F32, w->w0, N, D, H, 1);
}
