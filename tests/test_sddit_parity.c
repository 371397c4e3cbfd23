// PyTorch parity of the whole SD-DiT objective: loads tests/fixtures/sddit_tiny.h5 (written by
// tests/reference/make_sddit_fixture.py with explicit randomness), runs 5 training steps on
// the CPU backend, and compares both losses and the learning rate every step, every student
// gradient at step 0, and after 5 steps the student, teacher, generation EMA, center and Adam
// moments.
//   test_sddit_parity [FIXTURE.h5 [MICROS]]
// MICROS > 1 runs every step as that many accumulated micro-batches (the fixture's batch
// split in order); the reference computed the full batch at once. sddit_tiny_sched.h5 has a
// learning-rate warm-up and cosine schedule (attributes warmup_steps, lr_cosine, lr_min;
// absent: constant).
#include "check.h"
#include "error.h"
#include "fixture.h"
#include "util/h5io.h"
#include "objective/sddit.h"
#include "tolerances.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int ai(hid_t f, const char *k) { return (int)sd_h5_attr_int(f, "/config", k); }
static float af(hid_t f, const char *k) { return (float)sd_h5_attr_double(f, "/config", k); }
// An optional attribute of /config (def when the fixture predates it).
static double aopt(hid_t f, const char *k, double def) {
  return H5Aexists_by_name(f, "/config", k, H5P_DEFAULT) > 0 ? sd_h5_attr_double(f, "/config", k)
                                                            : def;
}

static void compare_scalar(const char *what, double got, double want, double tol) {
  double e = fabs(got - want) / fmax(fabs(want), 1e-30);
  check_true(e <= tol, "%-40s got %.9g want %.9g rel_err %.3e (tol %.0e)", what, got, want, e, tol);
}

// Compares every tensor of `buf` (our layout, `count` tensors of the table) with group path.
static double compare_tensors(hid_t f, const sd_param_table *t, int count, const float *buf,
                              const char *group, double tol, const float *base) {
  double worst = 0;
  char p[256], what[200];
  for (int i = 0; i < count; i++) {
    const sd_param_info *pi = &t->items[i];
    float *want = sd_xmalloc(sizeof(float) * pi->numel, "want");
    snprintf(p, sizeof p, "%s/%s", group, pi->name);
    fixture_read_tensor(f, p, want, pi->numel);
    const float *got = buf + pi->offset;
    float *got_d = NULL;
    if (base) {  // compare changes from base instead of values
      got_d = sd_xmalloc(sizeof(float) * pi->numel, "delta");
      for (size_t k = 0; k < pi->numel; k++) {
        got_d[k] = got[k] - base[pi->offset + k];
        want[k] -= base[pi->offset + k];
      }
      got = got_d;
    }
    snprintf(what, sizeof what, "%s%s %s", base ? "change of " : "", group, pi->name);
    double e;
    check_close(what, got, want, pi->numel, tol, &e);
    worst = fmax(worst, e);
    free(want);
    free(got_d);
  }
  return worst;
}

int main(int argc, char **argv) {
  char path[512];
  if (argc > 1) snprintf(path, sizeof path, "%s", argv[1]);
  else fixture_path("sddit_tiny.h5", path, sizeof path);
  const int micros = argc > 2 ? atoi(argv[2]) : 1;
  hid_t f = sd_h5_open_read(path);
  sd_dit_config dc;
  fixture_read_dit_config(f, &dc);
  sd_head_config hc = {.in_dim = dc.hidden, .hidden = ai(f, "head_hidden"),
                       .bottleneck = ai(f, "head_bottleneck"),
                       .prototypes = ai(f, "head_prototypes")};
  sd_sddit_opts o = {
      .encoder_depth = ai(f, "encoder_depth"), .visible_tokens = ai(f, "visible_tokens"),
      .sigma_data = af(f, "sigma_data"), .lambda_dis = af(f, "lambda_dis"),
      .tau_s = af(f, "tau_s"), .tau_t_start = af(f, "tau_t_start"),
      .tau_t_end = af(f, "tau_t_end"), .teacher_temp_warmup = ai(f, "teacher_temp_warmup"),
      .center_momentum = af(f, "center_momentum"), .teacher_momentum = af(f, "teacher_momentum"),
      .total_steps = ai(f, "total_steps"), .lr = af(f, "lr"), .beta1 = af(f, "beta1"),
      .beta2 = af(f, "beta2"), .adam_eps = af(f, "adam_eps"),
      .weight_decay = af(f, "weight_decay"), .grad_clip = 0.0f, .ema_decay = af(f, "ema_decay"),
      .warmup_steps = (long)aopt(f, "warmup_steps", 0), .lr_cosine = (int)aopt(f, "lr_cosine", 0),
      .lr_min = (float)aopt(f, "lr_min", 0)};
  const int B = ai(f, "batch"), steps = ai(f, "steps"), Tv = o.visible_tokens;
  if (micros < 1 || B % micros != 0)
    SD_FATAL("micro-batch count %d must divide the fixture's batch %d", micros, B);
  const int Bm = B / micros;
  printf("# %s: batch %d as %d micro-batch%s of %d; learning rate: warm-up %ld, %s\n", path, B,
         micros, micros == 1 ? "" : "es", Bm, o.warmup_steps, o.lr_cosine ? "cosine" : "constant");
  sd_backend be;
  sd_backend_cpu_init(&be, 0);
  sd_sddit s;
  sd_sddit_create(&s, &dc, &hc, &o, &be, Bm);
  char p[256];
  for (int i = 0; i < s.table.count; i++) {
    snprintf(p, sizeof p, "/init/params/%s", s.table.items[i].name);
    fixture_read_tensor(f, p, s.params + s.table.items[i].offset, s.table.items[i].numel);
  }
  sd_sddit_reset_copies(&s);
  float *init = sd_xmalloc(sizeof(float) * s.total, "initial params");
  memcpy(init, s.params, sizeof(float) * s.total);
  const size_t n = (size_t)dc.in_channels * dc.input_size * dc.input_size;
  for (int k = 0; k < steps; k++) {
    sd_step_inputs in;
    float *x0, *eps, *ss, *st_;
    int32_t *y, *vis;
    sd_h5_shape sh;
    snprintf(p, sizeof p, "/steps/%d/x0", k);      x0 = sd_h5_read_f32(f, p, &sh);
    if (sh.numel != B * n) SD_FATAL("%s has %zu elements, want %zu", p, sh.numel, B * n);
    snprintf(p, sizeof p, "/steps/%d/eps", k);     eps = sd_h5_read_f32(f, p, NULL);
    snprintf(p, sizeof p, "/steps/%d/sigma_s", k); ss = sd_h5_read_f32(f, p, NULL);
    snprintf(p, sizeof p, "/steps/%d/sigma_t", k); st_ = sd_h5_read_f32(f, p, NULL);
    snprintf(p, sizeof p, "/steps/%d/y", k);       y = sd_h5_read_i32(f, p, NULL);
    snprintf(p, sizeof p, "/steps/%d/vis", k);     vis = sd_h5_read_i32(f, p, &sh);
    if (sh.numel != (size_t)B * Tv) SD_FATAL("%s has %zu elements, want %d", p, sh.numel, B * Tv);
    sd_step_stats stats;
    for (int m = 0; m < micros; m++) {  // samples [m Bm, (m+1) Bm) of the step
      const size_t o1 = (size_t)m * Bm;
      in = (sd_step_inputs){x0 + o1 * n, eps + o1 * n, ss + o1, st_ + o1, y + o1,
                            vis + o1 * Tv, NULL, NULL};  // sigmas read back
      sd_sddit_forward_backward_micro(&s, &in, Bm, k, m, micros, &stats);
    }
    char what[64];
    const char *names[] = {"L_gen", "L_dis", "L", "tau_t", "teacher_momentum", "lr"};
    float got[] = {stats.L_gen, stats.L_dis, stats.L, stats.tau_t, stats.teacher_m,
                   sd_sddit_lr(&o, k)};
    for (int q = 0; q < 6; q++) {
      snprintf(p, sizeof p, "/steps/%d/%s", k, names[q]);
      if (H5Lexists(f, p, H5P_DEFAULT) <= 0 && q == 5) {  // older fixtures: constant lr
        compare_scalar("lr (constant)", got[q], o.lr, PARITY_LOSS_RTOL);
        continue;
      }
      snprintf(what, sizeof what, "step %d %s", k, names[q]);
      compare_scalar(what, got[q], sd_h5_read_f64_scalar(f, p), PARITY_LOSS_RTOL);
    }
    if (k == 0) {
      snprintf(p, sizeof p, "/steps/0/grads");
      double g = compare_tensors(f, &s.table, s.table.count, s.grads, p, PARITY_GRAD_RTOL, NULL);
      printf("# step 0: worst gradient rel_err %.3e (tol %.0e)\n", g, PARITY_GRAD_RTOL);
    }
    sd_sddit_update(&s, B, k, &stats);
    free(x0); free(eps); free(ss); free(st_); free(y); free(vis);
  }
  int dit_count = s.table.count - 7;
  double e1 = compare_tensors(f, &s.table, s.table.count, s.params, "/final/student", PARITY_PARAM_RTOL, NULL);
  double e2 = compare_tensors(f, &s.table, s.table.count, s.params, "/final/student", PARITY_DELTA_RTOL, init);
  double e3 = compare_tensors(f, &s.table, s.table.count, s.teacher, "/final/teacher", PARITY_PARAM_RTOL, NULL);
  double e4 = compare_tensors(f, &s.table, dit_count, s.ema, "/final/ema", PARITY_PARAM_RTOL, NULL);
  double e5 = compare_tensors(f, &s.table, s.table.count, s.adam_m, "/final/adam_m", PARITY_MOMENT_RTOL, NULL);
  double e6 = compare_tensors(f, &s.table, s.table.count, s.adam_v, "/final/adam_v", PARITY_MOMENT_RTOL, NULL);
  float *center = sd_xmalloc(sizeof(float) * (size_t)hc.prototypes, "center");
  fixture_read_tensor(f, "/final/center", center, (size_t)hc.prototypes);
  double e7;
  check_close("final center", s.center, center, (size_t)hc.prototypes, PARITY_PARAM_RTOL, &e7);
  printf("# after %d steps: student %.3e (change %.3e), teacher %.3e, ema %.3e, adam m %.3e, "
         "v %.3e, center %.3e\n", steps, e1, e2, e3, e4, e5, e6, e7);
  free(center);
  free(init);
  sd_sddit_destroy(&s);
  H5Fclose(f);
  return check_exit("test_sddit_parity");
}
