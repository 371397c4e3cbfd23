// The SD-DiT objective and optimizer step on one rank: student (DiT encoder + decoder +
// projection head) in one flat buffer with its gradients and AdamW moments, the EMA teacher
// (encoder + head), the generation EMA (DiT) and the center. A step takes the batch and its
// explicit randomness (eps, sigmas, visible-token sets, labels after dropout), so the trainer
// draws them from the keyed RNG and the tests feed them from the PyTorch fixture.
#ifndef SD_SDDIT_H
#define SD_SDDIT_H

#include "model/dit.h"
#include "model/head.h"

typedef struct sd_sddit_opts {
  int encoder_depth;      // blocks 0 .. encoder_depth-1 form the encoder
  int visible_tokens;     // Tv = floor(T * (1 - mask_ratio))
  int gen_visible_only;   // L_gen over visible tokens only (else all tokens)
  float sigma_data;       // 0.5
  float lambda_dis;       // weight of L_dis; 0 = plain DiT (no teacher, head or center work)
  float tau_s;            // student temperature
  float tau_t_start, tau_t_end;
  long teacher_temp_warmup;
  float center_momentum;
  float teacher_momentum; // m0 of the cosine schedule to 1
  long total_steps;       // length of the run, for the cosine schedule
  float lr, beta1, beta2, adam_eps, weight_decay, grad_clip;  // grad_clip 0: off
  long warmup_steps;      // the learning rate rises linearly over these steps (0: none)
  int lr_cosine;          // 1: then a cosine from lr to lr_min at total_steps; 0: constant
  float lr_min;
  float ema_decay;        // generation EMA
} sd_sddit_opts;

// One step's batch and randomness, in backend memory.
typedef struct sd_step_inputs {
  const float *x0;        // (B, C, H, W) clean latents
  const float *eps;       // (B, C, H, W) the pair's shared noise
  const float *sigma_s;   // (B) student noise levels
  const float *sigma_t;   // (B) teacher noise levels
  const int32_t *y;       // (B) labels after dropout (num_classes = null)
  const int32_t *vis;     // (B, Tv) sorted visible token indices
  // Optional host copies of sigma_s and sigma_t (NULL: read back from backend memory). The
  // preconditioning is computed on the host; with these a device backend skips two
  // device-to-host reads, each a stream synchronisation, per step.
  const float *sigma_s_host, *sigma_t_host;
} sd_step_inputs;

typedef struct sd_step_stats {
  float L_gen, L_dis, L;
  float grad_norm;        // before clipping
  float tau_t, teacher_m;
  int skipped;            // non-finite loss or gradients: no update was applied
  // Since sd_sddit_create: steps skipped, skipped in a row up to this one, the last skipped
  // step (1-based; 0: none).
  long skipped_total, skipped_in_a_row, last_skipped;
} sd_step_stats;

// Where a step keeps its scalars in s->scalars (16 floats of backend memory): the losses of
// the last micro-batch (0: L_dis, 1: L_gen), the squared gradient norm, the update gate (gate
// factor, norm), with more than one micro-batch the step's losses (their mean: 6: L_dis,
// 7: L_gen), and
// the skip counters (total, in a row, last step) of ops.h's step_gate.
enum { SD_SC_SUMSQ = 2, SD_SC_GATE = 4, SD_SC_LOSSES = 6, SD_SC_COUNT = 10 };

// Data-parallel hooks, all optional (zeroed = one rank). The trainer fills them from the
// distributed layer; the model stays free of MPI.
typedef struct sd_sddit_comm {
  void *ctx;
  int rank, world;
  int teacher_sync_every;  // rank 0 computes the teacher EMA and broadcasts it every so many
                           // steps (between broadcasts every rank applies the same update)
  int check_teacher;       // non-zero ranks also compute the teacher EMA on broadcast steps and
                           // compare it bitwise with what they receive (a test of replicas)
  // A gradient range is final: reduce it (mean over ranks), possibly in the background.
  void (*grad_ready)(void *ctx, float *grads, size_t count);
  // Every range reported so far is reduced (blocks until done).
  void (*grad_wait)(void *ctx);
  // In-place sum over ranks (blocking) of host memory / of backend memory.
  void (*sum_host)(void *ctx, float *buf, size_t count);
  void (*sum_dev)(void *ctx, float *buf, size_t count);
  // Broadcast of backend memory from rank 0: bcast0_start begins it (it may run in the
  // background; the buffer is not touched until bcast0_wait) and bcast0_wait (NULL: the start
  // was blocking) returns once every started broadcast has arrived.
  void (*bcast0_start)(void *ctx, float *buf, size_t count);
  void (*bcast0_wait)(void *ctx);
} sd_sddit_comm;

typedef struct sd_sddit {
  sd_backend *be;
  sd_dit_config dcfg;
  sd_head_config hcfg;
  sd_sddit_opts opt;
  int B;                  // batch capacity (per rank)
  sd_param_table table;   // DiT tensors, then the head's
  size_t dit_total, head_total, total;
  float *params, *grads, *adam_m, *adam_v;  // (total) each
  float *teacher;         // (total): EMA'd on the embedders + encoder blocks
                          // [0, block_start[encoder_depth]) and the head
  float *ema;             // (dit_total) generation EMA
  float *center;          // (P)
  sd_dit student, tdit;   // views on params / teacher
  sd_head_weights hw, hg, tw;
  sd_dit_acts sa, ta;     // student and teacher activations
  sd_head_acts sh, th;    // student and teacher head activations
  float *x_s, *x_t, *x_in, *D, *dF, *mask;  // (B, n) each
  float *h_s, *dh_s, *ht_vis;               // (B, Tv, D) each
  float *zt_mean;                           // (P) teacher logits summed over the step's rows
  float *zt_part;                           // (P) the same for one later micro-batch
  float *c_skip, *c_out, *c_in, *c_noise, *weight, *c_in_t, *c_noise_t;  // (B) each
  float *scalars;                           // backend scratch for reductions
  sd_sddit_comm comm;                       // zeroed: one rank
  size_t *block_start;                      // (depth + 1) flat offsets: blocks, then final
  long teacher_mismatches;                  // check_teacher: broadcasts that differed
  int teacher_pending;                      // a teacher broadcast is in flight
  float *host_pre;                          // (6, B) host scratch of the preconditioning
  float *ones;                              // (B, Tv, p*p*C) ones (gen_visible_only; else NULL)
  // 0 (default): every forward_backward reads the losses, norm and skip counters back into
  // its sd_step_stats (one stream synchronisation, and with comm hooks a sum over ranks);
  // 1: they stay in backend memory until sd_sddit_read_stats (the trainer, on log steps).
  int defer_stats;
  int loss_slot;          // where the last step's losses are: 0, or SD_SC_LOSSES (micro-batches)
} sd_sddit;

void sd_sddit_create(sd_sddit *s, const sd_dit_config *dcfg, const sd_head_config *hcfg,
                     const sd_sddit_opts *opt, sd_backend *be, int B);
void sd_sddit_destroy(sd_sddit *s);
// DiT and head initialisation keyed by seed; teacher and generation EMA start as copies.
void sd_sddit_init(sd_sddit *s, uint64_t seed);
// Copies the student into the teacher and the generation EMA; zeroes center and moments.
void sd_sddit_reset_copies(sd_sddit *s);
// Teacher temperature, momentum and the learning rate at a step (0-based).
float sd_sddit_tau_t(const sd_sddit_opts *o, long step);
float sd_sddit_lr(const sd_sddit_opts *o, long step);
// The learning-rate schedule in words, for the training header.
void sd_lr_describe(const sd_sddit_opts *o, char *buf, size_t len);
float sd_sddit_teacher_momentum(const sd_sddit_opts *o, long step);
// Forward and backward of L = L_gen + lambda_dis L_dis for B samples (this rank's share);
// gradients in s->grads (overwritten), then the update gate (ops.h step_gate) from the global
// gradient norm: a non-finite loss or gradient on any rank skips the step on every rank.
// With comm hooks the gradients are the mean over ranks (reduced range by range as the
// backward finishes them). st gets tau_t and teacher_m, and unless s->defer_stats the rest
// as sd_sddit_read_stats gives it.
void sd_sddit_forward_backward(sd_sddit *s, const sd_step_inputs *in, int B, long step,
                               sd_step_stats *st);
// Gradient accumulation: micro-batch `micro` of `micros` (0-based, each of B samples, in
// order) of one step. The gradients are those of the mean loss over the step's micros * B
// samples: the first micro-batch overwrites s->grads, the others add to them, each weighted
// 1 / micros; the comm hooks, the non-finite check's effect on every rank and the update gate
// come with the last. sd_sddit_update then takes B * micros as the batch (the center's mean).
// forward_backward is micro-batch 0 of 1.
void sd_sddit_forward_backward_micro(sd_sddit *s, const sd_step_inputs *in, int B, long step,
                                     int micro, int micros, sd_step_stats *st);
// The last step's losses (the mean over ranks: with comm hooks every rank must call this at
// the same steps), gradient norm, skip decision and skip counters, read from backend memory
// (a stream synchronisation). tau_t and teacher_m are left as they are.
void sd_sddit_read_stats(sd_sddit *s, sd_step_stats *st);
// AdamW at the step's learning rate (sd_sddit_lr; nothing is written on a skipped step: the
// backend's gate), then center (batch mean over all ranks; B = this rank's samples in the
// step, all micro-batches together), teacher EMA (rank 0 broadcasts it every
// teacher_sync_every steps) and generation EMA (rank 0 only).
// The broadcast is left in flight: the next forward waits for it only after the student's
// forward, just before the teacher's, so the two overlap.
void sd_sddit_update(sd_sddit *s, int B, long step, sd_step_stats *st);
// Waits for a teacher broadcast in flight (and, with check_teacher, compares it with the local
// EMA). Call before reading s->teacher outside the step: checkpoints, replica checks, the end.
void sd_sddit_teacher_wait(sd_sddit *s);

#endif
