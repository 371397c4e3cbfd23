// The SD-DiT projection head g: Linear(D->H) GELU Linear(H->H) GELU Linear(H->bn),
// L2-normalise, then a weight-normalised Linear(bn->P) without bias whose rows have unit
// norm (the gain is fixed to 1). Parameters live in a flat buffer after the DiT's.
#ifndef SD_HEAD_H
#define SD_HEAD_H

#include "model/dit_params.h"
#include "ops.h"

#include <stdint.h>

typedef struct sd_head_config {
  int in_dim;      // D
  int hidden;      // H
  int bottleneck;  // bn
  int prototypes;  // P
} sd_head_config;

typedef struct sd_head_weights {
  float *w0, *b0;  // (H, D), (H)      head.mlp.0
  float *w2, *b2;  // (H, H), (H)      head.mlp.2
  float *w4, *b4;  // (bn, H), (bn)    head.mlp.4
  float *v;        // (P, bn)          head.last_layer.weight_v
} sd_head_weights;

// Saved activations for up to N rows.
typedef struct sd_head_acts {
  int Ncap, N;
  float *a1, *g1, *a2, *g2;  // (N, H) pre/post GELU
  float *v, *u, *unorm;      // (N, bn), (N, bn), (N)
  float *weff, *vnorm;       // (P, bn), (P)   row-normalised prototypes
  float *z;                  // (N, P) logits
  // backward scratch
  float *dweff;              // (P, bn)
  float *du, *dv;            // (N, bn)
  float *dg, *dg2;           // (N, H)
  float *arena;
} sd_head_acts;

// Appends the head's tensors ("head.mlp.0.weight", ...) to a table, offsets after t->total.
void sd_head_append_table(const sd_head_config *c, sd_param_table *t);
size_t sd_head_numel(const sd_head_config *c);
void sd_head_bind(const sd_head_config *c, float *base, sd_head_weights *w);
// DINO-style init keyed by seed: linears N(0, 0.02) clipped at 2 std, biases 0,
// prototypes U(-1/sqrt(bn), 1/sqrt(bn)). Writes host memory.
void sd_head_init_host(const sd_head_config *c, float *host_base, uint64_t seed);

void sd_head_acts_create(sd_head_acts *a, sd_backend *be, const sd_head_config *c, int Ncap);
void sd_head_acts_destroy(sd_head_acts *a, sd_backend *be);
// z (N, P) = head(h (N, D)).
void sd_head_forward(sd_backend *be, const sd_head_config *c, const sd_head_weights *w,
                     sd_head_acts *a, const float *h, int N);
// From dz (N, P): parameter gradients +=, dh (N, D) += (accumulates onto the caller's).
void sd_head_backward(sd_backend *be, const sd_head_config *c, const sd_head_weights *w,
                      const sd_head_weights *g, sd_head_acts *a, const float *h,
                      const float *dz, float *dh, int N);

#endif
