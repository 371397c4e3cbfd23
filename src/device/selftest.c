// The device self-test (see selftest.h).
#include "util/clock.h"
#include "device/selftest.h"
#include "model/dit_config.h"
#include "device/gpu_check.h"
#include "device/op_checks.h"
#include "device/selftest_step.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const k_prec[2] = {"fp32", "bf16"};

// The op-check shape of cfg's model: B samples, its tokens, width, heads, visible tokens,
// image, timestep features, label rows and head sizes; tag is written into tagbuf.
static void model_shape(const sd_config *cfg, int B, sd_opcheck_shape *s, char *tagbuf,
                        size_t taglen) {
  const sd_dit_config *m = &cfg->model;
  snprintf(tagbuf, taglen, "%s", m->preset[0] ? m->preset : "model");
  for (char *c = tagbuf; *c; c++)
    if (*c == '/') *c = '-';
  const int Tk = sd_config_visible_tokens(cfg);
  *s = (sd_opcheck_shape){.tag = tagbuf,
                          .B = B,
                          .T = sd_dit_tokens(m),
                          .D = m->hidden,
                          .NH = m->heads,
                          .Tk = Tk,
                          .C = m->in_channels,
                          .H = m->input_size,
                          .W = m->input_size,
                          .p = m->patch,
                          .F = m->freq_dim,
                          .rows = m->num_classes + 1,
                          .N = B * Tk,
                          .P = cfg->head_prototypes,
                          .bn = cfg->head_bottleneck,
                          .Hh = cfg->head_hidden};
}

// The "selftest path:" lines: what the device is and what its ops chose.
static void print_paths(sd_backend *dev) {
  char d[2048];
  sd_gpu_describe(dev, d, sizeof d);
  for (char *line = strtok(d, "\n"); line; line = strtok(NULL, "\n"))
    printf("selftest path: %s\n", line);
}

int sd_selftest_run(sd_backend *dev, const sd_config *cfg, const sd_selftest_opts *o) {
  const double t0 = sd_now_s();
  sd_backend cpu;
  sd_backend_cpu_init(&cpu, cfg->threads);
  int passed0, failed0;
  sd_opcheck_totals(&passed0, &failed0);
  char tag[32];
  sd_opcheck_shape prod;
  model_shape(cfg, o->batch > 0 ? o->batch : 2, &prod, tag, sizeof tag);
  if (o->shapes & SD_SELFTEST_SMALL) {
    sd_opcheck_add_test_shapes("tail");
    sd_opcheck_add_test_shapes("tiny");
    sd_opcheck_add_test_shapes("vec");  // the element-wise and norm kernels' paths
  }
  if (o->shapes & SD_SELFTEST_PRODUCTION) sd_opcheck_add_shape(&prod);
  if (o->shapes) sd_opcheck_add_optim_memory();  // AdamW, the EMAs, axpy, memset, copy
  if (o->shapes && !o->quiet) {
    printf("# selftest: %d op checks on %s%s%s and the optimizer (%s: batch %d, %d tokens, width %d, %d heads of "
           "%d, %d visible tokens, head %d/%d/%d)\n",
           sd_opcheck_count(), o->shapes & SD_SELFTEST_SMALL ? "small shapes (tail, tiny, vec)" : "",
           o->shapes == (SD_SELFTEST_SMALL | SD_SELFTEST_PRODUCTION) ? " and " : "",
           o->shapes & SD_SELFTEST_PRODUCTION ? "the model's shapes" : "", tag, prod.B, prod.T,
           prod.D, prod.NH, prod.NH ? prod.D / prod.NH : 0, prod.Tk, prod.Hh, prod.bn, prod.P);
  }
  if (o->shapes) sd_opcheck_uncovered();
  if (o->unit && !sd_gpu_is_sim(dev)) sd_opcheck_run_unit_selftests(dev);
  int step_failed = 0, step_passed = 0;
  for (int prec = 0; prec < 2; prec++) {
    if (!(o->precisions & (1 << prec))) continue;
    if (o->shapes) {
      sd_opcheck_opts oo = {.filter = o->filter,
                            .only_prec = k_prec[prec],
                            .seed = o->seed,
                            .determinism = o->determinism,
                            .transfers = o->transfers,
                            .verbose = o->verbose,
                            .progress = !o->quiet,
                            .quiet = o->quiet};
      sd_opcheck_run(dev, &cpu, &oo);
    }
    if (o->step) {
      char err[512];
      if (sd_gpu_set_precision(dev, k_prec[prec], err, sizeof err) != 0) {
        printf("FAIL precision %s: %s\n", k_prec[prec], err);
        step_failed++;
        continue;
      }
      step_failed += sd_selftest_step(dev, &cpu, cfg, prec, o->step_batch > 0 ? o->step_batch : 2,
                                      o->seed, o->verbose, &step_passed);
    }
  }
  sd_opcheck_clear();
  char err[512];
  if (sd_gpu_set_precision(dev, cfg->precision, err, sizeof err) != 0) {
    printf("FAIL restoring precision %s: %s\n", cfg->precision, err);
    step_failed++;
  }
  sd_backend_cpu_destroy(&cpu);
  int passed, failed;
  sd_opcheck_totals(&passed, &failed);
  passed = passed - passed0 + step_passed;
  failed = failed - failed0 + step_failed;
  if (o->quiet && !failed) return 0;
  print_paths(dev);
  printf("selftest: %d checks passed, %d failed in %.1f s\n", passed, failed,
         sd_now_s() - t0);
  fflush(stdout);
  if (!failed && !passed) return 1;  // a run that checked nothing does not pass
  return failed;
}

int sd_selftest_quick(sd_backend *dev, const sd_config *cfg, int quiet) {
  sd_selftest_opts o = {.shapes = SD_SELFTEST_PRODUCTION,
                        .quiet = quiet,
                        .precisions = strcmp(cfg->precision, "fp32") == 0 ? 1 : 2,
                        .batch = 2,
                        .seed = cfg->seed};
  return sd_selftest_run(dev, cfg, &o);
}
