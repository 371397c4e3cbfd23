// DiT forward, in segments: conditioning, patch embedding, token selection, blocks, final
// layer (see dit.h). Only op-interface calls, so it runs on every backend.
#include "model/dit.h"
#include "error.h"

void sd_dit_cond_forward(const sd_dit *m, sd_dit_acts *a, int B, const float *c_noise,
                         const int32_t *y) {
  const sd_ops *op = m->be->ops;
  sd_backend *be = m->be;
  const sd_dit_config *c = &m->cfg;
  const int D = c->hidden, F = c->freq_dim;
  op->timestep_features(be, a->tfeat, c_noise, B, F, c->max_period);  // (B, F)
  op->matmul_fwd(be, a->th, SD_F32, a->tfeat, SD_F32, m->w.t_w1, m->w.t_b1, B, F, D);  // (B, D)
  op->silu_fwd(be, a->th_act, a->th, (size_t)B * D);
  op->matmul_fwd(be, a->c, SD_F32, a->th_act, SD_F32, m->w.t_w2, m->w.t_b2, B, D, D);  // t_emb (B, D)
  op->embed_rows_fwd(be, a->c, m->w.y_table, y, B, D, c->num_classes + 1);  // c += y_emb
  op->silu_fwd(be, a->silu_c, a->c, (size_t)B * D);
}

void sd_dit_embed_forward(const sd_dit *m, sd_dit_acts *a, int B, const float *x) {
  const sd_ops *op = m->be->ops;
  sd_backend *be = m->be;
  const sd_dit_config *c = &m->cfg;
  const int D = c->hidden, T = sd_dit_tokens(c), P = c->in_channels * c->patch * c->patch;
  op->patchify(be, a->patches, x, B, c->in_channels, c->input_size, c->input_size, c->patch);
  op->matmul_fwd(be, a->tok, SD_F32, a->patches, SD_F32, m->w.patch_w, m->w.patch_b, B * T, P,
                 D);  // (B,T,D)
  op->add_rows(be, a->tok, m->pos, B, T * D);
}

void sd_dit_select_tokens(const sd_dit *m, sd_dit_acts *a, int B, const int32_t *idx, int Tk) {
  const sd_ops *op = m->be->ops;
  sd_backend *be = m->be;
  const int D = m->cfg.hidden, T = sd_dit_tokens(&m->cfg);
  if (B > a->B) SD_FATAL("batch %d exceeds the activation capacity %d", B, a->B);
  if (!idx) Tk = T;
  if (Tk <= 0 || Tk > a->Tcap)
    SD_FATAL("%d tokens requested but the activations hold %d (T=%d)", Tk, a->Tcap, T);
  a->Tk = Tk;
  if (idx) {
    op->copy(be, a->idx, idx, sizeof(int32_t) * (size_t)B * Tk);
    op->gather_tokens(be, a->x[0], a->tok, a->idx, B, T, Tk, D);  // (B, Tk, D)
    a->has_idx = 1;
  } else {
    op->copy(be, a->x[0], a->tok, sizeof(float) * (size_t)B * T * D);
    a->has_idx = 0;
  }
}

void sd_dit_blocks_forward(const sd_dit *m, sd_dit_acts *a, int B, int l0, int l1) {
  const sd_ops *op = m->be->ops;
  sd_backend *be = m->be;
  const sd_dit_config *c = &m->cfg;
  const int D = c->hidden, M = c->mlp_ratio * D, NH = c->heads, Tk = a->Tk, N = B * Tk;
  const sd_dtype at = a->act;  // storage of the saved activations
  for (int l = l0; l < l1; l++) {
    const sd_block_weights *w = &m->w.blocks[l];
    sd_block_acts *k = &a->blk[l];
    float *mod = k->mod;  // (B, 6D): shift_a, scale_a, gate_a, shift_m, scale_m, gate_m
    op->matmul_fwd(be, mod, SD_F32, a->silu_c, SD_F32, w->ada_w, w->ada_b, B, D, 6 * D);
    op->lnmod_fwd(be, k->h1, at, k->mean1, k->rstd1, a->x[l], mod, mod + D, 6 * D, B, Tk, D,
                  c->ln_eps);
    op->matmul_fwd(be, k->qkv, at, k->h1, at, w->qkv_w, w->qkv_b, N, D, 3 * D);  // (B, Tk, 3D)
    op->attention_fwd(be, k->att, k->lse, k->qkv, at, B, Tk, NH, D / NH);      // (B, Tk, D)
    op->matmul_fwd(be, k->ao, at, k->att, at, w->proj_w, w->proj_b, N, D, D);
    op->gated_residual_fwd(be, k->x2, a->x[l], k->ao, at, mod + 2 * D, 6 * D, B, Tk, D);
    op->lnmod_fwd(be, k->h2, at, k->mean2, k->rstd2, k->x2, mod + 3 * D, mod + 4 * D, 6 * D, B,
                  Tk, D, c->ln_eps);
    op->matmul_gelu_fwd(be, k->gl, k->f1, k->h2, at, w->fc1_w, w->fc1_b, N, D, M);  // (B,Tk,M)
    op->matmul_fwd(be, k->f2, at, k->gl, at, w->fc2_w, w->fc2_b, N, M, D);  // (B, Tk, D)
    op->gated_residual_fwd(be, a->x[l + 1], k->x2, k->f2, at, mod + 5 * D, 6 * D, B, Tk, D);
  }
}

void sd_dit_final_forward(const sd_dit *m, sd_dit_acts *a, int B, int l) {
  const sd_ops *op = m->be->ops;
  sd_backend *be = m->be;
  const sd_dit_config *c = &m->cfg;
  const int D = c->hidden, Tk = a->Tk, PC = c->patch * c->patch * c->out_channels;
  op->matmul_fwd(be, a->fmod, SD_F32, a->silu_c, SD_F32, m->w.final_ada_w, m->w.final_ada_b, B,
                 D, 2 * D);
  op->lnmod_fwd(be, a->hf, a->act, a->meanf, a->rstdf, a->x[l], a->fmod, a->fmod + D, 2 * D, B,
                Tk, D, c->ln_eps);
  op->matmul_fwd(be, a->out_tok, SD_F32, a->hf, a->act, m->w.final_w, m->w.final_b, B * Tk, D,
                 PC);
  op->unpatchify_fwd(be, a->out, a->out_tok, a->has_idx ? a->idx : NULL, Tk, B,
                     c->out_channels, c->input_size, c->input_size, c->patch);
}

void sd_dit_forward(const sd_dit *m, sd_dit_acts *a, int B, const float *x,
                    const float *c_noise, const int32_t *y, const int32_t *idx, int Tk) {
  sd_dit_cond_forward(m, a, B, c_noise, y);
  sd_dit_embed_forward(m, a, B, x);
  sd_dit_select_tokens(m, a, B, idx, Tk);
  sd_dit_blocks_forward(m, a, B, 0, m->cfg.depth);
  sd_dit_final_forward(m, a, B, m->cfg.depth);
}
