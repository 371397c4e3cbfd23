// DiT backward, segment by segment in reverse (see dit.h). Parameter gradients accumulate
// (+=) into m->grads; the caller zeroes them once per step.
#include "model/dit.h"
#include "error.h"

void sd_dit_final_backward(sd_dit *m, sd_dit_acts *a, int B, int l, const float *dout) {
  if (a->inference) SD_FATAL("a backward through forward-only (inference) activations");
  const sd_ops *op = m->be->ops;
  sd_backend *be = m->be;
  const sd_dit_config *c = &m->cfg;
  const int D = c->hidden, Tk = a->Tk, N = B * Tk, PC = c->patch * c->patch * c->out_channels;
  op->unpatchify_bwd(be, a->dout_tok, dout, a->has_idx ? a->idx : NULL, Tk, B,
                     c->out_channels, c->input_size, c->input_size, c->patch);
  op->matmul_bwd(be, a->dbuf_d, m->g.final_w, m->g.final_b, a->dout_tok, SD_F32, a->hf, a->act,
                 m->w.final_w, N, D, PC, 0);  // dbuf_d = d hf (B, Tk, D)
  op->memset(be, a->dres, 0, sizeof(float) * (size_t)N * D);
  op->memset(be, a->dmod, 0, sizeof(float) * (size_t)B * 2 * D);  // (B, 2D)
  op->lnmod_bwd(be, a->dres, a->dmod, a->dmod + D, a->dbuf_d, a->x[l], a->meanf, a->rstdf,
                a->fmod + D, 2 * D, B, Tk, D);
  op->matmul_bwd(be, a->dsilu_c, m->g.final_ada_w, m->g.final_ada_b, a->dmod, SD_F32, a->silu_c,
                 SD_F32, m->w.final_ada_w, B, D, 2 * D, 0);  // dsilu_c = (overwrite)
}

void sd_dit_blocks_backward(sd_dit *m, sd_dit_acts *a, int B, int l0, int l1) {
  if (a->inference) SD_FATAL("a backward through forward-only (inference) activations");
  const sd_ops *op = m->be->ops;
  sd_backend *be = m->be;
  const sd_dit_config *c = &m->cfg;
  const int D = c->hidden, M = c->mlp_ratio * D, NH = c->heads, Tk = a->Tk, N = B * Tk;
  const sd_dtype at = a->act;  // storage of the saved activations
  for (int l = l1 - 1; l >= l0; l--) {
    const sd_block_weights *w = &m->w.blocks[l];
    sd_block_weights *g = &m->g.blocks[l];
    sd_block_acts *k = &a->blk[l];
    const float *mod = k->mod;
    float *dmod = a->dmod;  // (B, 6D)
    op->memset(be, dmod, 0, sizeof(float) * (size_t)B * 6 * D);
    // MLP branch: x3 = x2 + gate_m * f2; dres = d x3 (and, being the identity path, d x2)
    op->gated_residual_bwd(be, a->dbuf_d, dmod + 5 * D, a->dres, k->f2, at, mod + 5 * D, 6 * D,
                           B, Tk, D);                                          // d f2
    // d f1 (B, Tk, M), stored like the activations: fc1's backward multiplies it in bf16 anyway
    op->matmul_bwd_dgelu(be, a->dbuf_m, g->fc2_w, g->fc2_b, a->dbuf_d, k->gl, w->fc2_w, k->f1,
                         at, N, M, D);
    op->matmul_bwd(be, a->dbuf_d, g->fc1_w, g->fc1_b, a->dbuf_m, at, k->h2, at, w->fc1_w, N, D,
                   M, 0);
    op->lnmod_bwd(be, a->dres, dmod + 3 * D, dmod + 4 * D, a->dbuf_d, k->x2, k->mean2,
                  k->rstd2, mod + 4 * D, 6 * D, B, Tk, D);                    // dres = d x2
    // attention branch: x2 = x + gate_a * ao
    op->gated_residual_bwd(be, a->dbuf_d, dmod + 2 * D, a->dres, k->ao, at, mod + 2 * D, 6 * D,
                           B, Tk, D);                                          // d ao
    op->matmul_bwd(be, a->dbuf_m, g->proj_w, g->proj_b, a->dbuf_d, SD_F32, k->att, at, w->proj_w, N,
                   D, D, 0);  // d att
    op->attention_bwd(be, a->dbuf_3d, a->dbuf_m, k->qkv, k->att, at, k->lse, B, Tk, NH,
                      D / NH);
    op->matmul_bwd(be, a->dbuf_d, g->qkv_w, g->qkv_b, a->dbuf_3d, SD_F32, k->h1, at, w->qkv_w, N, D,
                   3 * D, 0);                                                  // d h1
    op->lnmod_bwd(be, a->dres, dmod, dmod + D, a->dbuf_d, a->x[l], k->mean1, k->rstd1, mod + D,
                  6 * D, B, Tk, D);                                            // dres = d x
    op->matmul_bwd(be, a->dsilu_c, g->ada_w, g->ada_b, dmod, SD_F32, a->silu_c, SD_F32, w->ada_w, B,
                   D, 6 * D, 1);  // dsilu_c +=
  }
}

void sd_dit_embed_backward(sd_dit *m, sd_dit_acts *a, int B, const float *dtok) {
  if (a->inference) SD_FATAL("a backward through forward-only (inference) activations");
  const sd_ops *op = m->be->ops;
  sd_backend *be = m->be;
  const sd_dit_config *c = &m->cfg;
  const int T = sd_dit_tokens(c), P = c->in_channels * c->patch * c->patch, D = c->hidden;
  op->matmul_bwd(be, NULL, m->g.patch_w, m->g.patch_b, dtok, SD_F32, a->patches, SD_F32,
                 m->w.patch_w, B * T, P, D, 0);
}

void sd_dit_cond_backward(sd_dit *m, sd_dit_acts *a, int B, const int32_t *y) {
  if (a->inference) SD_FATAL("a backward through forward-only (inference) activations");
  const sd_ops *op = m->be->ops;
  sd_backend *be = m->be;
  const int D = m->cfg.hidden, F = m->cfg.freq_dim;
  op->silu_bwd(be, a->dc, a->dsilu_c, a->c, (size_t)B * D);  // d c
  op->embed_rows_bwd(be, m->g.y_table, a->dc, y, B, D);
  op->matmul_bwd(be, a->dth, m->g.t_w2, m->g.t_b2, a->dc, SD_F32, a->th_act, SD_F32, m->w.t_w2, B,
                 D, D, 0);
  op->silu_bwd(be, a->dth, a->dth, a->th, (size_t)B * D);
  op->matmul_bwd(be, NULL, m->g.t_w1, m->g.t_b1, a->dth, SD_F32, a->tfeat, SD_F32, m->w.t_w1, B, F,
                 D, 0);
}

void sd_dit_backward(sd_dit *m, sd_dit_acts *a, int B, const int32_t *y, const float *dout) {
  sd_dit_final_backward(m, a, B, m->cfg.depth, dout);
  sd_dit_blocks_backward(m, a, B, 0, m->cfg.depth);
  const float *dtok = a->dres;  // (B, T, D) when every token was in the pass
  if (a->has_idx) {
    const int D = m->cfg.hidden, T = sd_dit_tokens(&m->cfg);
    m->be->ops->memset(m->be, a->dtok, 0, sizeof(float) * (size_t)B * T * D);
    m->be->ops->scatter_add_tokens(m->be, a->dtok, a->dres, a->idx, B, T, a->Tk, D);
    dtok = a->dtok;
  }
  sd_dit_embed_backward(m, a, B, dtok);
  sd_dit_cond_backward(m, a, B, y);
}
