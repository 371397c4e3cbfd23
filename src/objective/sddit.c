// The SD-DiT objective and optimizer step (see sddit.h).
#include "objective/sddit.h"
#include "error.h"
#include "sample/sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float *balloc(sd_backend *be, size_t n) {
  float *p = be->ops->alloc(be, sizeof(float) * (n ? n : 1));
  be->ops->memset(be, p, 0, sizeof(float) * (n ? n : 1));
  return p;
}

void sd_sddit_create(sd_sddit *s, const sd_dit_config *dcfg, const sd_head_config *hcfg,
                     const sd_sddit_opts *opt, sd_backend *be, int B) {
  memset(s, 0, sizeof *s);
  s->be = be;
  s->dcfg = *dcfg;
  s->hcfg = *hcfg;
  s->hcfg.in_dim = dcfg->hidden;
  s->opt = *opt;
  s->B = B;
  const int T = sd_dit_tokens(dcfg), Tv = opt->visible_tokens, D = dcfg->hidden;
  if (opt->encoder_depth < 1 || opt->encoder_depth >= dcfg->depth)
    SD_FATAL("encoder_depth %d must be in [1, depth-1 = %d]", opt->encoder_depth, dcfg->depth - 1);
  if (Tv < 1 || Tv > T) SD_FATAL("visible tokens %d must be in [1, %d]", Tv, T);
  if (dcfg->out_channels != dcfg->in_channels)  // the EDM loss reads F at x's indices
    SD_FATAL_HINT("set model.out_channels = model.in_channels",
                  "the SD-DiT objective needs model.out_channels (%d) == model.in_channels (%d): "
                  "D = c_skip * x + c_out * F", dcfg->out_channels, dcfg->in_channels);
  sd_dit_param_table(dcfg, &s->table);
  s->dit_total = s->table.total;
  sd_head_append_table(&s->hcfg, &s->table);
  s->total = s->table.total;
  s->head_total = s->total - s->dit_total;
  char name[64];
  // gradient ranges reported to the comm hooks: block l is [block_start[l], block_start[l+1]),
  // the final layer [block_start[depth], dit_total)
  s->block_start = sd_xmalloc(sizeof(size_t) * (size_t)(dcfg->depth + 1), "block offsets");
  for (int l = 0; l <= dcfg->depth; l++) {
    if (l < dcfg->depth) snprintf(name, sizeof name, "blocks.%d.attn.qkv.weight", l);
    else snprintf(name, sizeof name, "final_layer.adaLN_modulation.1.weight");
    int k = sd_param_table_find(&s->table, name);
    if (k < 0) SD_FATAL("parameter table has no '%s'", name);
    s->block_start[l] = s->table.items[k].offset;
  }
  s->params = balloc(be, s->total);
  s->grads = balloc(be, s->total);
  s->adam_m = balloc(be, s->total);
  s->adam_v = balloc(be, s->total);
  s->teacher = balloc(be, s->total);
  s->ema = balloc(be, s->dit_total);
  s->center = balloc(be, (size_t)s->hcfg.prototypes);
  // the weights the matmuls read: a bf16 backend keeps copies that AdamW refreshes
  be->ops->weights_register(be, s->params, s->total);
  be->ops->weights_register(be, s->teacher, s->total);
  sd_dit_create_in(&s->student, dcfg, be, s->params, s->grads);
  sd_dit_create_in(&s->tdit, dcfg, be, s->teacher, NULL);
  sd_head_bind(&s->hcfg, s->params + s->dit_total, &s->hw);
  sd_head_bind(&s->hcfg, s->grads + s->dit_total, &s->hg);
  sd_head_bind(&s->hcfg, s->teacher + s->dit_total, &s->tw);
  sd_dit_acts_create(&s->sa, &s->student, B, T);
  sd_dit_acts_create_inference(&s->ta, &s->tdit, B, T);  // the teacher has no backward
  sd_head_acts_create(&s->sh, be, &s->hcfg, B * Tv);
  sd_head_acts_create(&s->th, be, &s->hcfg, B * Tv);
  const size_t n = (size_t)dcfg->in_channels * dcfg->input_size * dcfg->input_size;
  s->x_s = balloc(be, B * n);
  s->x_t = balloc(be, B * n);
  s->x_in = balloc(be, B * n);
  s->D = balloc(be, B * n);
  s->dF = balloc(be, B * n);
  s->mask = balloc(be, B * n);
  s->h_s = balloc(be, (size_t)B * Tv * D);
  s->dh_s = balloc(be, (size_t)B * Tv * D);
  s->ht_vis = balloc(be, (size_t)B * Tv * D);
  s->zt_mean = balloc(be, (size_t)s->hcfg.prototypes);
  s->zt_part = balloc(be, (size_t)s->hcfg.prototypes);
  float **per_sample[] = {&s->c_skip, &s->c_out, &s->c_in, &s->c_noise, &s->weight, &s->c_in_t,
                          &s->c_noise_t};
  for (size_t i = 0; i < sizeof per_sample / sizeof per_sample[0]; i++)
    *per_sample[i] = balloc(be, (size_t)B);
  s->scalars = balloc(be, 16);
  be->ops->memset(be, s->scalars, 0, sizeof(float) * 16);  // the skip counters start at 0
  s->host_pre = sd_xmalloc(sizeof(float) * 6 * (size_t)B, "preconditioning");
  if (opt->gen_visible_only) {  // (B, Tv, p*p*C) ones, unpatchified into the loss mask
    const size_t cnt = (size_t)B * Tv * dcfg->patch * dcfg->patch * dcfg->in_channels;
    float *host_ones = sd_xmalloc(sizeof(float) * cnt, "mask");
    for (size_t i = 0; i < cnt; i++) host_ones[i] = 1.0f;
    s->ones = balloc(be, cnt);
    be->ops->to_device(be, s->ones, host_ones, sizeof(float) * cnt);
    free(host_ones);
  }
}

void sd_sddit_destroy(sd_sddit *s) {
  sd_backend *be = s->be;
  if (!be) return;
  sd_dit_acts_destroy(&s->sa, &s->student);
  sd_dit_acts_destroy(&s->ta, &s->tdit);
  sd_head_acts_destroy(&s->sh, be);
  sd_head_acts_destroy(&s->th, be);
  sd_dit_destroy(&s->student);
  sd_dit_destroy(&s->tdit);
  float *bufs[] = {s->params, s->grads, s->adam_m, s->adam_v, s->teacher, s->ema, s->center,
                   s->x_s, s->x_t, s->x_in, s->D, s->dF, s->mask, s->h_s, s->dh_s, s->ht_vis,
                   s->zt_mean, s->zt_part, s->c_skip, s->c_out, s->c_in, s->c_noise, s->weight, s->c_in_t,
                   s->c_noise_t, s->scalars, s->ones};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    if (bufs[i]) be->ops->free(be, bufs[i]);
  free(s->host_pre);
  sd_param_table_free(&s->table);
  free(s->block_start);
  memset(s, 0, sizeof *s);
}

void sd_sddit_reset_copies(sd_sddit *s) {
  sd_backend *be = s->be;
  be->ops->copy(be, s->teacher, s->params, sizeof(float) * s->total);
  be->ops->copy(be, s->ema, s->params, sizeof(float) * s->dit_total);
  be->ops->memset(be, s->center, 0, sizeof(float) * (size_t)s->hcfg.prototypes);
  be->ops->memset(be, s->adam_m, 0, sizeof(float) * s->total);
  be->ops->memset(be, s->adam_v, 0, sizeof(float) * s->total);
}

void sd_sddit_init(sd_sddit *s, uint64_t seed) {
  sd_dit_init_weights(&s->student, seed);
  float *host = sd_xmalloc(sizeof(float) * s->head_total, "head init");
  sd_head_init_host(&s->hcfg, host, seed);
  s->be->ops->to_device(s->be, s->params + s->dit_total, host, sizeof(float) * s->head_total);
  free(host);
  sd_sddit_reset_copies(s);
}

float sd_sddit_tau_t(const sd_sddit_opts *o, long step) {
  double f = o->teacher_temp_warmup > 0 ? (double)step / o->teacher_temp_warmup : 1.0;
  if (f > 1.0) f = 1.0;
  return (float)(o->tau_t_start + (o->tau_t_end - o->tau_t_start) * f);
}

// Linear warm-up to lr over warmup_steps (step k gets lr (k + 1) / warmup_steps), then
// constant, or a cosine from lr down to lr_min at total_steps (half a period over the steps
// after the warm-up). In double, rounded to float.
float sd_sddit_lr(const sd_sddit_opts *o, long step) {
  if (step < o->warmup_steps) return (float)((double)o->lr * (step + 1) / o->warmup_steps);
  if (!o->lr_cosine) return o->lr;
  const long span = o->total_steps - o->warmup_steps;
  double f = span > 0 ? (double)(step - o->warmup_steps) / span : 1.0;
  if (f > 1.0) f = 1.0;
  return (float)(o->lr_min + ((double)o->lr - o->lr_min) * (cos(M_PI * f) + 1.0) / 2.0);
}

void sd_lr_describe(const sd_sddit_opts *o, char *buf, size_t len) {
  int k = 0;
  if (o->warmup_steps > 0)
    k = snprintf(buf, len, "linear warm-up over %ld steps to %g, then ", o->warmup_steps,
                 (double)o->lr);
  if (k < 0 || (size_t)k >= len) k = 0;
  if (o->lr_cosine)
    snprintf(buf + k, len - (size_t)k, "cosine %sto %g at step %ld (optim.lr_schedule)",
             o->warmup_steps > 0 ? "" : "from the start ", (double)o->lr_min, o->total_steps);
  else
    snprintf(buf + k, len - (size_t)k, "constant %g (optim.lr_schedule)", (double)o->lr);
}

float sd_sddit_teacher_momentum(const sd_sddit_opts *o, long step) {
  double f = o->total_steps > 0 ? (double)step / o->total_steps : 1.0;
  if (f > 1.0) f = 1.0;
  return (float)(1.0 - (1.0 - o->teacher_momentum) * (cos(M_PI * f) + 1.0) / 2.0);
}

// EDM preconditioning scalars for B noise levels (backend memory in, or their host copy when
// sigma_host is not NULL; backend memory out), through the host scratch s->host_pre (6, B).
static void precondition(sd_sddit *s, const float *sigma_dev, const float *sigma_host, int B,
                         float *c_skip, float *c_out, float *c_in, float *c_noise,
                         float *weight) {
  sd_backend *be = s->be;
  float *cs = s->host_pre + B, *co = cs + B, *ci = co + B, *cn = ci + B, *w = cn + B;
  const float *sig = sigma_host;
  if (!sig) {
    be->ops->to_host(be, s->host_pre, sigma_dev, sizeof(float) * (size_t)B);
    sig = s->host_pre;
  }
  for (int b = 0; b < B; b++) {
    double x = sig[b];
    if (!(x > 0.0) || !isfinite(x)) SD_FATAL("noise level %g of sample %d is not positive", x, b);
    const sd_edm_coef k = sd_edm_precondition(x, s->opt.sigma_data);
    cs[b] = k.c_skip;
    co[b] = k.c_out;
    ci[b] = k.c_in;
    cn[b] = k.c_noise;
    w[b] = k.weight;
  }
  if (c_skip) be->ops->to_device(be, c_skip, cs, sizeof(float) * (size_t)B);
  if (c_out) be->ops->to_device(be, c_out, co, sizeof(float) * (size_t)B);
  be->ops->to_device(be, c_in, ci, sizeof(float) * (size_t)B);
  be->ops->to_device(be, c_noise, cn, sizeof(float) * (size_t)B);
  if (weight) be->ops->to_device(be, weight, w, sizeof(float) * (size_t)B);
}

// Gradients [begin, end) of the flat buffer are final for this step: hand them to the comm hook.
static void grads_final(sd_sddit *s, size_t begin, size_t end) {
  if (s->comm.grad_ready && end > begin)
    s->comm.grad_ready(s->comm.ctx, s->grads + begin, end - begin);
}

void sd_sddit_forward_backward(sd_sddit *s, const sd_step_inputs *in, int B, long step,
                               sd_step_stats *st) {
  sd_sddit_forward_backward_micro(s, in, B, step, 0, 1, st);
}

void sd_sddit_forward_backward_micro(sd_sddit *s, const sd_step_inputs *in, int B, long step,
                                     int micro, int micros, sd_step_stats *st) {
  sd_backend *be = s->be;
  const sd_ops *op = be->ops;
  const sd_dit_config *c = &s->dcfg;
  const int T = sd_dit_tokens(c), Tv = s->opt.visible_tokens, D = c->hidden;
  const int P = s->hcfg.prototypes, L = c->depth, E = s->opt.encoder_depth, N = B * Tv;
  const size_t n = (size_t)c->in_channels * c->input_size * c->input_size;
  if (B > s->B) SD_FATAL("batch %d exceeds the capacity %d", B, s->B);
  if (micros < 1 || micro < 0 || micro >= micros)
    SD_FATAL("micro-batch %d of %d: expected 0 <= micro < micros", micro, micros);
  const int first = micro == 0, last = micro == micros - 1;
  const float wm = 1.0f / (float)micros;  // each micro-batch's weight in the step's mean
  memset(st, 0, sizeof *st);
  st->tau_t = sd_sddit_tau_t(&s->opt, step);
  st->teacher_m = sd_sddit_teacher_momentum(&s->opt, step);

  // pair on one trajectory: x_s = x0 + sigma_s eps, x_t = x0 + sigma_t eps
  op->add_scaled_rows(be, s->x_s, in->x0, in->eps, in->sigma_s, B, n);
  op->add_scaled_rows(be, s->x_t, in->x0, in->eps, in->sigma_t, B, n);
  precondition(s, in->sigma_s, in->sigma_s_host, B, s->c_skip, s->c_out, s->c_in, s->c_noise,
               s->weight);
  precondition(s, in->sigma_t, in->sigma_t_host, B, NULL, NULL, s->c_in_t, s->c_noise_t, NULL);

  // lambda_dis = 0 is plain DiT training: no teacher, no head, no L_dis (reported as 0), so
  // that a baseline pays nothing for the parts it does not use.
  const int dis = s->opt.lambda_dis != 0.0f;

  // student encoder on the visible tokens, head
  sd_dit_acts *sa = &s->sa;
  op->scale_rows(be, s->x_in, s->x_s, s->c_in, B, n);
  sd_dit_cond_forward(&s->student, sa, B, s->c_noise, in->y);
  sd_dit_embed_forward(&s->student, sa, B, s->x_in);
  sd_dit_select_tokens(&s->student, sa, B, in->vis, Tv);
  sd_dit_blocks_forward(&s->student, sa, B, 0, E);
  op->copy(be, s->h_s, sa->x[E], sizeof(float) * (size_t)N * D);      // (B, Tv, D)
  if (dis) sd_head_forward(be, &s->hcfg, &s->hw, &s->sh, s->h_s, N);  // z_s (N, P)
  // decoder on the merged sequence: encoder outputs at visible rows, noisy tokens elsewhere
  op->merge_tokens_fwd(be, sa->x[E], sa->tok, s->h_s, in->vis, B, T, Tv, D);
  sa->Tk = T;
  sa->has_idx = 0;
  sd_dit_blocks_forward(&s->student, sa, B, E, L);
  sd_dit_final_forward(&s->student, sa, B, L);  // F (B, C, H, W)
  const float *mask = NULL;
  if (s->opt.gen_visible_only) {  // 1 on the pixels of visible tokens
    op->unpatchify_fwd(be, s->mask, s->ones, in->vis, Tv, B, c->in_channels, c->input_size,
                       c->input_size, c->patch);
    mask = s->mask;
  }
  op->edm_loss_fwd(be, s->scalars + 1, s->D, sa->out, s->x_s, in->x0, s->c_skip, s->c_out,
                   s->weight, mask, B, n);

  // teacher last, so that the previous step's teacher broadcast had the student's forward to
  // arrive in: all tokens through the encoder, no gradient; head on the visible positions
  if (dis) {
    sd_sddit_teacher_wait(s);
    sd_dit_acts *ta = &s->ta;
    op->scale_rows(be, s->x_in, s->x_t, s->c_in_t, B, n);
    sd_dit_cond_forward(&s->tdit, ta, B, s->c_noise_t, in->y);
    sd_dit_embed_forward(&s->tdit, ta, B, s->x_in);
    sd_dit_select_tokens(&s->tdit, ta, B, NULL, T);
    sd_dit_blocks_forward(&s->tdit, ta, B, 0, E);
    op->gather_tokens(be, s->ht_vis, ta->x[E], in->vis, B, T, Tv, D);  // (B, Tv, D)
    sd_head_forward(be, &s->hcfg, &s->tw, &s->th, s->ht_vis, N);      // z_t (N, P)
    // for the center update: the row sums over the step's micro-batches, (P)
    if (first) {
      op->sum_rows(be, s->zt_mean, s->th.z, N, P);
    } else {
      op->sum_rows(be, s->zt_part, s->th.z, N, P);
      op->axpy(be, s->zt_mean, s->zt_part, (size_t)P, 1.0f);
    }
    op->dino_loss_fwd(be, s->scalars, s->th.z, s->sh.z, s->th.z, s->center, s->opt.tau_s,
                      st->tau_t, N, P);  // the teacher probabilities overwrite its logits
  } else {
    op->memset(be, s->scalars, 0, sizeof(float));
  }
  // the step's losses, the mean over its micro-batches, stay on the backend (scalars 6, 7)
  // until sd_sddit_read_stats
  // (one micro-batch: slots 0 and 1 are the step's losses, nothing to add on the hot path)
  if (micros > 1) {
    if (first) op->memset(be, s->scalars + SD_SC_LOSSES, 0, 2 * sizeof(float));
    op->axpy(be, s->scalars + SD_SC_LOSSES, s->scalars, 2, wm);
  }
  s->loss_slot = micros > 1 ? SD_SC_LOSSES : 0;

  // backward: decoder, merge, head, encoder, embeddings, conditioning; the gradient ranges go
  // to the comm hooks (reduction over ranks) with the last micro-batch only
  if (first) op->memset(be, s->grads, 0, sizeof(float) * s->total);
  op->edm_loss_bwd(be, s->dF, s->D, in->x0, s->c_out, s->weight, mask, B, n, wm);
  sd_dit_final_backward(&s->student, sa, B, L, s->dF);
  if (last) grads_final(s, s->block_start[L], s->dit_total);
  for (int l = L - 1; l >= E; l--) {  // decoder blocks, one reduction range each
    sd_dit_blocks_backward(&s->student, sa, B, l, l + 1);  // dres = d merged (B, T, D)
    if (last) grads_final(s, s->block_start[l], s->block_start[l + 1]);
  }
  op->memset(be, sa->dtok, 0, sizeof(float) * (size_t)B * T * D);
  op->merge_tokens_bwd(be, sa->dtok, s->dh_s, sa->dres, in->vis, B, T, Tv, D);
  if (dis) {
    float *dz = s->sh.z;  // the student logits are not needed after this point
    op->dino_loss_bwd(be, dz, s->sh.z, s->th.z, s->opt.tau_s, N, P, s->opt.lambda_dis * wm);
    sd_head_backward(be, &s->hcfg, &s->hw, &s->hg, &s->sh, s->h_s, dz, s->dh_s, N);
  }
  if (last) grads_final(s, s->dit_total, s->total);  // the head
  op->copy(be, sa->dres, s->dh_s, sizeof(float) * (size_t)N * D);
  sa->Tk = Tv;
  for (int l = E - 1; l >= 0; l--) {  // encoder blocks
    sd_dit_blocks_backward(&s->student, sa, B, l, l + 1);  // dres = d x[l] (B, Tv, D)
    if (last) grads_final(s, s->block_start[l], s->block_start[l + 1]);
  }
  op->scatter_add_tokens(be, sa->dtok, sa->dres, in->vis, B, T, Tv, D);
  sd_dit_embed_backward(&s->student, sa, B, sa->dtok);
  sd_dit_cond_backward(&s->student, sa, B, in->y);
  // A non-finite local loss makes the first embedder gradient NaN before that range is
  // reduced, so that it reaches every rank's gradient norm and every rank skips the step
  // (checked on every micro-batch: the NaN stays in the accumulated gradient).
  op->poison_nonfinite(be, s->grads, s->scalars, 2);
  if (!last) return;  // the next micro-batch adds to these gradients
  grads_final(s, 0, s->block_start[0]);  // embedders (their gradients gather from every block)
  if (s->comm.grad_wait) s->comm.grad_wait(s->comm.ctx);

  // the update gate (skip, clipping factor) from the global gradient norm, on the backend
  op->sum_squares(be, s->scalars + SD_SC_SUMSQ, s->grads, s->total);
  op->step_gate(be, s->scalars + SD_SC_GATE, s->scalars + SD_SC_COUNT, s->scalars + SD_SC_SUMSQ,
                s->opt.grad_clip, step + 1);
  if (!s->defer_stats) sd_sddit_read_stats(s, st);
}

void sd_sddit_read_stats(sd_sddit *s, sd_step_stats *st) {
  float h[SD_SC_COUNT + 3];
  s->be->ops->to_host(s->be, h, s->scalars, sizeof h);
  float l2[2] = {h[s->loss_slot + 1], h[s->loss_slot]};  // L_gen, L_dis of this rank
  if (s->comm.sum_host) {      // the mean over ranks
    l2[0] /= (float)s->comm.world;
    l2[1] /= (float)s->comm.world;
    s->comm.sum_host(s->comm.ctx, l2, 2);
  }
  st->L_gen = l2[0];
  st->L_dis = l2[1];
  st->L = st->L_gen + s->opt.lambda_dis * st->L_dis;
  st->grad_norm = h[SD_SC_GATE + 1];
  st->skipped = !(h[SD_SC_GATE] > 0.0f);
  st->skipped_total = (long)h[SD_SC_COUNT];
  st->skipped_in_a_row = (long)h[SD_SC_COUNT + 1];
  st->last_skipped = (long)h[SD_SC_COUNT + 2];
}

void sd_sddit_teacher_wait(sd_sddit *s) {
  const sd_sddit_comm *c = &s->comm;
  if (!s->teacher_pending) return;
  s->teacher_pending = 0;
  if (c->bcast0_wait) c->bcast0_wait(c->ctx);
  // the broadcast wrote the teacher outside the backend's ops (NCCL): its bf16 copy is stale
  // on the receiving ranks (rank 0's buffer is the source, unchanged)
  if (c->rank != 0) s->be->ops->weights_changed(s->be, s->teacher, s->total);
  if (c->rank != 0 && c->check_teacher) {  // s->grads holds the local EMA (see teacher_update)
    float *a = sd_xmalloc(sizeof(float) * s->total, "teacher check");
    float *b = sd_xmalloc(sizeof(float) * s->total, "teacher check");
    s->be->ops->to_host(s->be, a, s->grads, sizeof(float) * s->total);
    s->be->ops->to_host(s->be, b, s->teacher, sizeof(float) * s->total);
    if (memcmp(a, b, sizeof(float) * s->total) != 0) s->teacher_mismatches++;
    free(a);
    free(b);
  }
}

void sd_sddit_update(sd_sddit *s, int B, long step, sd_step_stats *st) {
  sd_backend *be = s->be;
  const sd_ops *op = be->ops;
  const sd_sddit_opts *o = &s->opt;
  const sd_sddit_comm *c = &s->comm;
  (void)st;  // the skip decision and the clipping factor are the backend's gate
  const float *gate = s->scalars + SD_SC_GATE;
  // Who computes which moving average this step. The teacher EMA covers the embedders +
  // encoder blocks and the head; plain DiT (lambda_dis = 0) keeps no teacher. On broadcast
  // steps rank 0 computes it and sends it (other ranks compute it too only to check it). The
  // generation EMA of the DiT is rank 0's alone.
  const int dis = o->lambda_dis != 0.0f;
  const int every = c->teacher_sync_every > 0 ? c->teacher_sync_every : 1;
  const int bcast = dis && c->bcast0_start && c->world > 1 && (step + 1) % every == 0;
  float *tea = dis && (!bcast || c->rank == 0 || c->check_teacher) ? s->teacher : NULL;
  float *gen = c->rank == 0 ? s->ema : NULL;
  const float tm = st->teacher_m, gd = o->ema_decay;
  // AdamW fused with the averages of the updated weights, one pass per region:
  // the embedders + encoder blocks [0, block_start[E]) teacher + generation, the decoder and
  // final layer [block_start[E], dit_total) generation, the head teacher.
  const size_t e = s->block_start[o->encoder_depth], d = s->dit_total;
  const float lr = sd_sddit_lr(o, step);
  op->adamw_ema(be, s->params, s->grads, s->adam_m, s->adam_v, e, lr, o->beta1, o->beta2,
                o->adam_eps, o->weight_decay, step + 1, 1.0f, tea, tm, gen, gd, gate);
  op->adamw_ema(be, s->params + e, s->grads + e, s->adam_m + e, s->adam_v + e, d - e, lr,
                o->beta1, o->beta2, o->adam_eps, o->weight_decay, step + 1, 1.0f, NULL, 0.0f,
                gen ? gen + e : NULL, gd, gate);
  op->adamw_ema(be, s->params + d, s->grads + d, s->adam_m + d, s->adam_v + d, s->head_total,
                lr, o->beta1, o->beta2, o->adam_eps, o->weight_decay, step + 1, 1.0f,
                tea ? tea + d : NULL, tm, NULL, 0.0f, gate);
  if (!dis) return;
  // center <- m_c center + (1 - m_c) mean(z_t) over the global batch (zt_mean: row sums)
  const int P = s->hcfg.prototypes, world = c->world > 0 ? c->world : 1;
  const long N = (long)B * o->visible_tokens * world;
  if (c->sum_dev) c->sum_dev(c->ctx, s->zt_mean, (size_t)P);
  op->center_update(be, s->center, s->zt_mean, 1.0f / (float)N, o->center_momentum, gate, P);
  if (!bcast) return;
  if (c->rank != 0 && c->check_teacher)  // keep the local EMA to compare with rank 0's
    op->copy(be, s->grads, s->teacher, sizeof(float) * s->total);  // grads: scratch
  // only what the EMA touches: the embedders + encoder blocks, and the head; in flight until
  // sd_sddit_teacher_wait (the next teacher forward, or a checkpoint)
  c->bcast0_start(c->ctx, s->teacher, e);
  c->bcast0_start(c->ctx, s->teacher + d, s->head_total);
  s->teacher_pending = 1;
}
