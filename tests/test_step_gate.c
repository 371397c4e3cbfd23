// A training step keeps its decisions on the backend: with defer_stats no op reads back to the
// host or synchronises inside forward_backward + update (counted through a wrapped CPU op
// table), deferring the read changes no bit of the weights, a non-finite loss skips the
// update (weights, moments, teacher, EMA and center bitwise unchanged; counters total 1, in a
// row 1, last step), the next finite step updates again and resets the run, and clipping sets
// the gate to clip / norm.
#include "check.h"
#include "config/config.h"
#include "error.h"
#include "objective/sddit.h"
#include "objective/sddit_config.h"
#include "objective/step_random.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sd_ops g_ops;       // the CPU ops with to_host and sync counted
static const sd_ops *g_cpu;
static long g_to_host, g_sync;

static void counted_to_host(sd_backend *be, void *dst, const void *src, size_t bytes) {
  g_to_host++;
  g_cpu->to_host(be, dst, src, bytes);
}
static void counted_sync(sd_backend *be) {
  g_sync++;
  g_cpu->sync(be);
}

typedef struct run {
  sd_backend be;
  sd_sddit s;
  sd_random_opts ro;
  int B;
  size_t n;
  float *x0, *eps, *ss, *st;
  int32_t *y, *vis;
} run;

static void run_open(run *r, float grad_clip, int defer) {
  sd_config cfg;
  sd_config_defaults(&cfg, "tiny");
  cfg.grad_clip = grad_clip;
  sd_backend_cpu_init(&r->be, 0);
  g_cpu = r->be.ops;
  g_ops = *g_cpu;
  g_ops.to_host = counted_to_host;
  g_ops.sync = counted_sync;
  r->be.ops = &g_ops;
  sd_dit_config dc = cfg.model;
  sd_head_config hc;
  sd_head_config_from_config(&cfg, &hc);
  sd_sddit_opts o;
  sd_sddit_opts_from_config(&cfg, &o);
  r->B = 4;
  sd_sddit_create(&r->s, &dc, &hc, &o, &r->be, r->B);
  sd_sddit_init(&r->s, 7);
  r->s.defer_stats = defer;
  sd_random_opts_from_config(&cfg, &r->ro);
  r->n = (size_t)dc.in_channels * dc.input_size * dc.input_size;
  const size_t bn = (size_t)r->B * r->n;
  r->x0 = sd_xmalloc(sizeof(float) * bn, "x0");
  r->eps = sd_xmalloc(sizeof(float) * bn, "eps");
  r->ss = sd_xmalloc(sizeof(float) * r->B, "ss");
  r->st = sd_xmalloc(sizeof(float) * r->B, "st");
  r->y = sd_xmalloc(sizeof(int32_t) * r->B, "y");
  r->vis = sd_xmalloc(sizeof(int32_t) * (size_t)r->B * o.visible_tokens, "vis");
}

static void run_step(run *r, long step, int poison) {
  fill_normal(r->x0, (size_t)r->B * r->n, 100 + (uint32_t)step, 1.0f);
  if (poison) r->x0[3] = NAN;
  for (int b = 0; b < r->B; b++) r->y[b] = (int32_t)((step + b) % 10);  // data labels (dropout next)
  sd_step_random(&r->ro, step, step * r->B, r->B, r->eps, r->ss, r->st, r->vis, r->y);
  sd_step_inputs in = {r->x0, r->eps, r->ss, r->st, r->y, r->vis, r->ss, r->st};
  sd_step_stats st;
  sd_sddit_forward_backward(&r->s, &in, r->B, step, &st);
  sd_sddit_update(&r->s, r->B, step, &st);
}

static void run_close(run *r) {
  sd_sddit_destroy(&r->s);
  r->be.ops = g_cpu;
  sd_backend_cpu_destroy(&r->be);
  free(r->x0), free(r->eps), free(r->ss), free(r->st), free(r->y), free(r->vis);
}

// Copies of everything an update writes.
typedef struct state {
  float *p, *m, *v, *teacher, *ema, *center;
} state;
static void snap(const sd_sddit *s, state *k) {
  const size_t t = sizeof(float) * s->total, d = sizeof(float) * s->dit_total,
               c = sizeof(float) * (size_t)s->hcfg.prototypes;
  k->p = memcpy(sd_xmalloc(t, "p"), s->params, t);
  k->m = memcpy(sd_xmalloc(t, "m"), s->adam_m, t);
  k->v = memcpy(sd_xmalloc(t, "v"), s->adam_v, t);
  k->teacher = memcpy(sd_xmalloc(t, "teacher"), s->teacher, t);
  k->ema = memcpy(sd_xmalloc(d, "ema"), s->ema, d);
  k->center = memcpy(sd_xmalloc(c, "center"), s->center, c);
}
static void unsnap(state *k) {
  free(k->p), free(k->m), free(k->v), free(k->teacher), free(k->ema), free(k->center);
}

int main(void) {
  // 1. no read-back or synchronisation inside deferred steps; the same weights as reading
  //    back every step
  run a, b;
  run_open(&a, 0.0f, 1);
  g_to_host = g_sync = 0;
  for (long k = 0; k < 3; k++) run_step(&a, k, 0);
  check_true(g_to_host == 0 && g_sync == 0,
             "3 deferred steps: %ld reads back to the host and %ld synchronisations (want 0)",
             g_to_host, g_sync);
  sd_step_stats st;
  sd_sddit_read_stats(&a.s, &st);
  check_true(g_to_host == 1, "read_stats: one read back (got %ld)", g_to_host);
  check_true(isfinite(st.L_gen) && isfinite(st.L_dis) && st.grad_norm > 0 && !st.skipped &&
                 st.skipped_total == 0 && st.skipped_in_a_row == 0,
             "stats after 3 steps: L_gen %g L_dis %g grad_norm %g skipped %d total %ld row %ld",
             st.L_gen, st.L_dis, st.grad_norm, st.skipped, st.skipped_total,
             st.skipped_in_a_row);
  run_open(&b, 0.0f, 0);
  g_to_host = 0;
  for (long k = 0; k < 3; k++) run_step(&b, k, 0);
  check_true(g_to_host == 3, "3 steps reading back: %ld reads (want 3)", g_to_host);
  check_bitwise("weights after 3 steps: deferred == read back every step", a.s.params,
                b.s.params, sizeof(float) * a.s.total);
  check_bitwise("teacher after 3 steps: deferred == read back every step", a.s.teacher,
                b.s.teacher, sizeof(float) * a.s.total);
  run_close(&b);

  // 2. a non-finite loss skips the update entirely; the next finite step updates
  state before;
  snap(&a.s, &before);
  run_step(&a, 3, 1);
  sd_sddit_read_stats(&a.s, &st);
  check_true(st.skipped && st.skipped_total == 1 && st.skipped_in_a_row == 1 &&
                 st.last_skipped == 4,
             "NaN in the batch of step 4: skipped %d, total %ld, in a row %ld, last %ld "
             "(want 1, 1, 1, 4)", st.skipped, st.skipped_total, st.skipped_in_a_row,
             st.last_skipped);
  check_bitwise("skipped step: weights unchanged", a.s.params, before.p,
                sizeof(float) * a.s.total);
  check_bitwise("skipped step: first moments unchanged", a.s.adam_m, before.m,
                sizeof(float) * a.s.total);
  check_bitwise("skipped step: second moments unchanged", a.s.adam_v, before.v,
                sizeof(float) * a.s.total);
  check_bitwise("skipped step: teacher unchanged", a.s.teacher, before.teacher,
                sizeof(float) * a.s.total);
  check_bitwise("skipped step: generation EMA unchanged", a.s.ema, before.ema,
                sizeof(float) * a.s.dit_total);
  check_bitwise("skipped step: center unchanged", a.s.center, before.center,
                sizeof(float) * (size_t)a.s.hcfg.prototypes);
  run_step(&a, 4, 0);
  sd_sddit_read_stats(&a.s, &st);
  check_true(!st.skipped && st.skipped_total == 1 && st.skipped_in_a_row == 0 &&
                 st.last_skipped == 4,
             "finite step 5: skipped %d, total %ld, in a row %ld, last %ld (want 0, 1, 0, 4)",
             st.skipped, st.skipped_total, st.skipped_in_a_row, st.last_skipped);
  check_true(memcmp(a.s.params, before.p, sizeof(float) * a.s.total) != 0 &&
                 memcmp(a.s.center, before.center,
                        sizeof(float) * (size_t)a.s.hcfg.prototypes) != 0,
             "finite step 5: the weights and the center changed again");
  unsnap(&before);
  run_close(&a);

  // 3. clipping: the gate is clip / norm, and the clipped update differs from the unclipped
  run c;
  run_open(&c, 1e-3f, 1);
  run_step(&c, 0, 0);
  float gate[2];
  c.be.ops->to_host(&c.be, gate, c.s.scalars + SD_SC_GATE, sizeof gate);
  check_true(gate[1] > 1e-3f && gate[0] == 1e-3f / gate[1],
             "clip 1e-3: gate %.9g, want clip / norm = %.9g (norm %g)", gate[0],
             1e-3f / gate[1], gate[1]);
  run_close(&c);
  return check_exit("test_step_gate");
}
