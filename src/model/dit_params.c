// The DiT parameter layout (see dit_params.h). The order of tensors is defined once, in
// walk_layout(), and used both to build the table and to bind typed views.
#include "model/dit_params.h"
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct layout_walk {
  sd_param_table *table;  // when building the table
  float *base;            // when binding views
  size_t offset;
  int capacity;
} layout_walk;

static void add(layout_walk *lw, float **slot, int ndim, const int *shape, const char *fmt,
                ...) {
  size_t numel = 1;
  for (int i = 0; i < ndim; i++) numel *= (size_t)shape[i];
  if (lw->table) {
    sd_param_table *t = lw->table;
    if (t->count == lw->capacity) {
      lw->capacity = lw->capacity ? 2 * lw->capacity : 64;
      t->items = realloc(t->items, sizeof *t->items * (size_t)lw->capacity);
      if (!t->items) SD_FATAL("out of memory for the parameter table");
    }
    sd_param_info *p = &t->items[t->count++];
    memset(p, 0, sizeof *p);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    p->offset = lw->offset;
    p->numel = numel;
    p->ndim = ndim;
    for (int i = 0; i < ndim; i++) p->shape[i] = shape[i];
  }
  if (lw->base && slot) *slot = lw->base + lw->offset;
  lw->offset += numel;
}

static void walk_layout(const sd_dit_config *c, layout_walk *lw, sd_dit_weights *w) {
  const int D = c->hidden, C = c->in_channels, p = c->patch, M = c->mlp_ratio * D;
  const int out = p * p * c->out_channels;
  sd_dit_weights dummy;
  sd_block_weights dummy_block;
  if (!w) w = &dummy;
  add(lw, &w->patch_w, 4, (int[]){D, C, p, p}, "x_embedder.proj.weight");
  add(lw, &w->patch_b, 1, (int[]){D}, "x_embedder.proj.bias");
  add(lw, &w->t_w1, 2, (int[]){D, c->freq_dim}, "t_embedder.mlp.0.weight");
  add(lw, &w->t_b1, 1, (int[]){D}, "t_embedder.mlp.0.bias");
  add(lw, &w->t_w2, 2, (int[]){D, D}, "t_embedder.mlp.2.weight");
  add(lw, &w->t_b2, 1, (int[]){D}, "t_embedder.mlp.2.bias");
  add(lw, &w->y_table, 2, (int[]){c->num_classes + 1, D}, "y_embedder.embedding_table.weight");
  for (int l = 0; l < c->depth; l++) {
    sd_block_weights *b = (w == &dummy) ? &dummy_block : &w->blocks[l];
    add(lw, &b->qkv_w, 2, (int[]){3 * D, D}, "blocks.%d.attn.qkv.weight", l);
    add(lw, &b->qkv_b, 1, (int[]){3 * D}, "blocks.%d.attn.qkv.bias", l);
    add(lw, &b->proj_w, 2, (int[]){D, D}, "blocks.%d.attn.proj.weight", l);
    add(lw, &b->proj_b, 1, (int[]){D}, "blocks.%d.attn.proj.bias", l);
    add(lw, &b->fc1_w, 2, (int[]){M, D}, "blocks.%d.mlp.fc1.weight", l);
    add(lw, &b->fc1_b, 1, (int[]){M}, "blocks.%d.mlp.fc1.bias", l);
    add(lw, &b->fc2_w, 2, (int[]){D, M}, "blocks.%d.mlp.fc2.weight", l);
    add(lw, &b->fc2_b, 1, (int[]){D}, "blocks.%d.mlp.fc2.bias", l);
    add(lw, &b->ada_w, 2, (int[]){6 * D, D}, "blocks.%d.adaLN_modulation.1.weight", l);
    add(lw, &b->ada_b, 1, (int[]){6 * D}, "blocks.%d.adaLN_modulation.1.bias", l);
  }
  add(lw, &w->final_ada_w, 2, (int[]){2 * D, D}, "final_layer.adaLN_modulation.1.weight");
  add(lw, &w->final_ada_b, 1, (int[]){2 * D}, "final_layer.adaLN_modulation.1.bias");
  add(lw, &w->final_w, 2, (int[]){out, D}, "final_layer.linear.weight");
  add(lw, &w->final_b, 1, (int[]){out}, "final_layer.linear.bias");
}

void sd_dit_param_table(const sd_dit_config *cfg, sd_param_table *table) {
  memset(table, 0, sizeof *table);
  layout_walk lw = {.table = table};
  walk_layout(cfg, &lw, NULL);
  table->total = lw.offset;
}

void sd_param_table_free(sd_param_table *table) {
  free(table->items);
  memset(table, 0, sizeof *table);
}

void sd_dit_weights_bind(const sd_dit_config *cfg, float *base, sd_dit_weights *w) {
  memset(w, 0, sizeof *w);
  w->blocks = sd_xcalloc((size_t)cfg->depth, sizeof *w->blocks, "block views");
  layout_walk lw = {.base = base};
  walk_layout(cfg, &lw, w);
}

void sd_dit_weights_free(sd_dit_weights *w) {
  free(w->blocks);
  memset(w, 0, sizeof *w);
}

int sd_param_table_find(const sd_param_table *table, const char *name) {
  for (int i = 0; i < table->count; i++)
    if (strcmp(table->items[i].name, name) == 0) return i;
  return -1;
}
