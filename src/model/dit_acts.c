// Allocation of the DiT's activation and backward-scratch buffers, carved from one arena:
// every block's own buffers for training, or (inference) two residual streams used in turn
// and one set of block buffers shared by all blocks, without backward scratch. The saved
// block activations (the void * fields of sd_block_acts, and hf) are stored as the arena's
// activation type; everything else is fp32.
#include "model/dit.h"
#include "error.h"

#include <stdlib.h>
#include <string.h>

typedef struct carver {
  char *base;    // NULL while measuring
  size_t used;   // bytes
  sd_dtype act;  // storage type of the saved activations
} carver;

// The next `bytes` of the arena, 256-byte aligned (cuBLASLt's preferred alignment).
static void *take_bytes(carver *cv, size_t bytes) {
  size_t start = cv->used;
  cv->used += (bytes + 255) / 256 * 256;
  return cv->base ? cv->base + start : NULL;
}
// n fp32 values.
static float *take(carver *cv, size_t n) { return take_bytes(cv, n * sizeof(float)); }
// n values of the activation storage type.
static void *take_act(carver *cv, size_t n) { return take_bytes(cv, n * sd_dtype_size(cv->act)); }

static void carve(sd_dit_acts *a, const sd_dit_config *c, carver *cv, int inference) {
  const size_t B = (size_t)a->B, Tc = (size_t)a->Tcap, T = (size_t)sd_dit_tokens(c);
  const size_t D = (size_t)c->hidden, M = (size_t)c->mlp_ratio * D;
  const size_t P = (size_t)c->patch * c->patch, NH = (size_t)c->heads;
  a->patches = take(cv, B * T * P * c->in_channels);
  a->tok = take(cv, B * T * D);
  a->tfeat = take(cv, B * c->freq_dim);
  a->th = take(cv, B * D);
  a->th_act = take(cv, B * D);
  a->c = take(cv, B * D);
  a->silu_c = take(cv, B * D);
  if (inference) {  // ping-pong: block l reads x[l] and writes x[l + 1], never the same buffer
    float *even = take(cv, B * Tc * D), *odd = take(cv, B * Tc * D);
    for (int l = 0; l <= c->depth; l++) a->x[l] = l % 2 ? odd : even;
  } else {
    for (int l = 0; l <= c->depth; l++) a->x[l] = take(cv, B * Tc * D);
  }
  for (int l = 0; l < (inference ? 1 : c->depth); l++) {
    sd_block_acts *k = &a->blk[l];
    k->mod = take(cv, B * 6 * D);
    k->h1 = take_act(cv, B * Tc * D);
    k->mean1 = take(cv, B * Tc);
    k->rstd1 = take(cv, B * Tc);
    k->qkv = take_act(cv, B * Tc * 3 * D);
    k->att = take_act(cv, B * Tc * D);
    k->lse = take(cv, B * NH * Tc);
    k->ao = take_act(cv, B * Tc * D);
    k->x2 = take(cv, B * Tc * D);
    k->h2 = take_act(cv, B * Tc * D);
    k->mean2 = take(cv, B * Tc);
    k->rstd2 = take(cv, B * Tc);
    k->f1 = take_act(cv, B * Tc * M);
    k->gl = take_act(cv, B * Tc * M);
    k->f2 = take_act(cv, B * Tc * D);
  }
  if (inference)
    for (int l = 1; l < c->depth; l++) a->blk[l] = a->blk[0];
  a->fmod = take(cv, B * 2 * D);
  a->hf = take_act(cv, B * Tc * D);
  a->meanf = take(cv, B * Tc);
  a->rstdf = take(cv, B * Tc);
  a->out_tok = take(cv, B * Tc * P * c->out_channels);
  a->out = take(cv, B * T * P * c->out_channels);
  a->idx = (int32_t *)take(cv, B * Tc);  // int32 and float have the same size
  if (inference) return;
  a->dres = take(cv, B * Tc * D);
  a->dbuf_d = take(cv, B * Tc * D);
  a->dbuf_3d = take(cv, B * Tc * 3 * D);
  a->dbuf_m = take(cv, B * Tc * M);
  a->dmod = take(cv, B * 6 * D);
  a->dsilu_c = take(cv, B * D);
  a->dc = take(cv, B * D);
  a->dth = take(cv, B * D);
  a->dtok = take(cv, B * T * D);
  a->dout_tok = take(cv, B * Tc * P * c->out_channels);
}

static void create(sd_dit_acts *a, const sd_dit *m, int B, int Tcap, int inference) {
  const sd_dit_config *c = &m->cfg;
  if (B <= 0 || Tcap <= 0 || Tcap > sd_dit_tokens(c))
    SD_FATAL("activation capacity B=%d Tk=%d is invalid (T=%d)", B, Tcap, sd_dit_tokens(c));
  memset(a, 0, sizeof *a);
  a->B = B;
  a->Tcap = Tcap;
  a->inference = inference;
  a->act = m->be->act_dtype;
  a->x = sd_xcalloc((size_t)c->depth + 1, sizeof *a->x, "residual stream views");
  a->blk = sd_xcalloc((size_t)c->depth, sizeof *a->blk, "block activation views");
  carver cv = {.base = NULL, .used = 0, .act = a->act};
  carve(a, c, &cv, inference);
  a->arena = m->be->ops->alloc(m->be, cv.used);
  m->be->ops->memset(m->be, a->arena, 0, cv.used);
  cv.base = a->arena;
  cv.used = 0;
  carve(a, c, &cv, inference);
}

void sd_dit_acts_create(sd_dit_acts *a, const sd_dit *m, int B, int Tcap) {
  create(a, m, B, Tcap, 0);
}

void sd_dit_acts_create_inference(sd_dit_acts *a, const sd_dit *m, int B, int Tcap) {
  create(a, m, B, Tcap, 1);
}

size_t sd_dit_acts_bytes(const sd_dit_config *c, int B, int Tcap, int inference,
                         sd_dtype act) {
  sd_dit_acts a;
  memset(&a, 0, sizeof a);
  a.B = B;
  a.Tcap = Tcap;
  a.x = sd_xcalloc((size_t)c->depth + 1, sizeof *a.x, "residual stream views");
  a.blk = sd_xcalloc((size_t)c->depth, sizeof *a.blk, "block activation views");
  carver cv = {.base = NULL, .used = 0, .act = act};
  carve(&a, c, &cv, inference);
  free(a.x);
  free(a.blk);
  return cv.used;
}

void sd_dit_acts_destroy(sd_dit_acts *a, const sd_dit *m) {
  if (a->arena) m->be->ops->free(m->be, a->arena);
  free(a->x);
  free(a->blk);
  memset(a, 0, sizeof *a);
}
