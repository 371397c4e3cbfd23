// The DiT parameter table: every tensor's DiT-compatible name, shape and offset in one flat
// buffer, and the typed views (pointers into a flat buffer) the model code uses. The same
// layout serves parameters, gradients, Adam moments and EMA copies.
#ifndef SD_DIT_PARAMS_H
#define SD_DIT_PARAMS_H

#include "model/dit_config.h"

#include <stddef.h>

typedef struct sd_param_info {
  char name[64];   // e.g. "blocks.3.attn.qkv.weight"
  size_t offset;   // in floats, from the start of the flat buffer
  size_t numel;
  int ndim;
  int shape[4];    // PyTorch shape (x_embedder.proj.weight is (D, C, p, p))
} sd_param_info;

typedef struct sd_param_table {
  sd_param_info *items;
  int count;
  size_t total;    // floats in the flat buffer
} sd_param_table;

typedef struct sd_block_weights {
  float *qkv_w, *qkv_b;    // (3D, D), (3D)
  float *proj_w, *proj_b;  // (D, D), (D)
  float *fc1_w, *fc1_b;    // (M, D), (M)    M = mlp_ratio * D
  float *fc2_w, *fc2_b;    // (D, M), (D)
  float *ada_w, *ada_b;    // (6D, D), (6D)
} sd_block_weights;

typedef struct sd_dit_weights {
  float *patch_w, *patch_b;          // (D, C*p*p), (D)
  float *t_w1, *t_b1, *t_w2, *t_b2;  // (D, F), (D), (D, D), (D)
  float *y_table;                    // (K+1, D)
  sd_block_weights *blocks;          // depth entries (owned by this struct)
  float *final_ada_w, *final_ada_b;  // (2D, D), (2D)
  float *final_w, *final_b;          // (p*p*Cout, D), (p*p*Cout)
} sd_dit_weights;

// Builds the table for cfg (free with sd_param_table_free).
void sd_dit_param_table(const sd_dit_config *cfg, sd_param_table *table);
void sd_param_table_free(sd_param_table *table);
// Points every field of w into the flat buffer base (allocates w->blocks).
void sd_dit_weights_bind(const sd_dit_config *cfg, float *base, sd_dit_weights *w);
void sd_dit_weights_free(sd_dit_weights *w);
// Index of a named tensor, or -1.
int sd_param_table_find(const sd_param_table *table, const char *name);

#endif
