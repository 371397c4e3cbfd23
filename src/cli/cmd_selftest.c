// `sddit selftest`: checks a GPU before it trains. Every op of kernels/ops.h on the device
// against the CPU reference at small shapes and at the model's own shapes (XL/2 unless a
// config or --model.* says otherwise), in both matmul precisions, each output compared with
// the limits of kernels/tolerances_gpu.h, then again for the same bits; optionally one whole
// SD-DiT step of the model against the CPU. Prints what the backend chose and exits 0 (pass),
// 1 (a mismatch), 2 (usage) or 77 (no device to test, or no CUDA backend in this build).
#include "cli/cmd_selftest.h"
#include "config/config.h"
#include "error.h"
#include "device/gpu_check.h"
#include "nccl_comm.h"
#include "device/selftest.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char k_usage[] =
    "usage: sddit selftest [--backend cuda] [--device N] [--precision bf16|fp32|both]\n"
    "                      [--shapes small,production|small|production|none] [--quick]\n"
    "                      [--step|--no-step] [--step-batch N] [--no-determinism]\n"
    "                      [--op SUBSTRING] [--seed N] [--verbose]\n"
    "                      [--config FILE.ini] [--SECTION.KEY=VALUE ...]\n"
    "Checks every op of the CUDA backend against the CPU reference, at small shapes and at\n"
    "the model's own shapes (the config's model, XL/2 by default: hidden 1152, head dim 72,\n"
    "256 tokens, 204 visible), in bf16 and fp32 matmul precision, with canaries, guard\n"
    "regions and the tolerance table; then each check again for the same bits; --step adds\n"
    "one SD-DiT training step of the model against the CPU (default on; needs the CPU memory\n"
    "of the model's replica). Prints each failure with its worst element, the kernels the\n"
    "backend chose (selftest path: ...) and a last line 'selftest: N checks passed, M failed'.\n"
    "  --quick          the model's shapes, the config's precision, no step, no determinism\n"
    "                   pass: what `sddit train` runs before training (train.selftest)\n"
    "  --device N       the CUDA device (default: the local rank under mpirun/srun, else 0)\n"
    "  --simulate MODE  the CPU stand-in of the CUDA backend (matmul, matmul+attention)\n"
    "                   instead of a device, to test this command without a GPU\n"
    "Exit status: 0 pass, 1 a mismatch, 2 usage, 77 no device or no CUDA backend.\n";

static int env_int(const char *name, int dflt) {
  const char *v = getenv(name);
  return v && *v ? atoi(v) : dflt;
}

// This process's local rank as the launcher tells it (no MPI needed).
static int launcher_local_rank(void) {
  int r = env_int("OMPI_COMM_WORLD_LOCAL_RANK", -1);
  if (r < 0) r = env_int("SLURM_LOCALID", -1);
  if (r < 0) r = env_int("MPI_LOCALRANKID", -1);
  return r < 0 ? 0 : r;
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "sddit selftest: ");
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n\n%s", k_usage);
  return 2;
}

static int parse_shapes(const char *v, int *shapes) {
  if (!strcmp(v, "none")) return *shapes = 0, 0;
  int s = 0;
  char buf[64];
  snprintf(buf, sizeof buf, "%s", v);
  for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
    if (!strcmp(t, "small")) s |= SD_SELFTEST_SMALL;
    else if (!strcmp(t, "production")) s |= SD_SELFTEST_PRODUCTION;
    else return -1;
  }
  *shapes = s;
  return s ? 0 : -1;
}

int sd_cmd_selftest(int argc, char **argv) {
  sd_config cfg;
  char err[1024];
  sd_config_defaults(&cfg, "XL/2");
  sd_selftest_opts o = {.shapes = SD_SELFTEST_SMALL | SD_SELFTEST_PRODUCTION,
                        .precisions = 3,
                        .determinism = 1,
                        .transfers = 1,
                        .unit = 1,
                        .step = 1,
                        .step_batch = 2,
                        .batch = 2,
                        .seed = 1};
  const char *sim = NULL, *prec = NULL;
  int device = -1, quick = 0, step_set = -1, det_set = -1, shapes_set = 0;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char *next = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(k_usage, stdout);
      return 0;
    }
    if (!strcmp(a, "--quick")) quick = 1;
    else if (!strcmp(a, "--step")) step_set = 1;
    else if (!strcmp(a, "--no-step")) step_set = 0;
    else if (!strcmp(a, "--no-determinism")) det_set = 0;
    else if (!strcmp(a, "--verbose")) o.verbose = 1;
    else if (!strncmp(a, "--", 2) && strchr(a + 2, '.') && strchr(a, '=')) {
      if (sd_config_apply_override(&cfg, a, err, sizeof err) != 0)
        return usage_error("%s", err);
    } else if (!next) {
      return usage_error("unknown option or missing value: '%s'", a);
    } else if (!strcmp(a, "--backend")) {
      if (strcmp(next, "cuda") != 0)
        return usage_error("--backend %s: only cuda can be tested against the CPU reference",
                           next);
      i++;
    } else if (!strcmp(a, "--device")) {
      char *end;
      device = (int)strtol(next, &end, 10);
      if (*end || device < 0) return usage_error("--device '%s': expected a number >= 0", next);
      i++;
    } else if (!strcmp(a, "--precision")) {
      if (strcmp(next, "bf16") && strcmp(next, "fp32") && strcmp(next, "both"))
        return usage_error("--precision '%s': expected bf16, fp32 or both", next);
      prec = argv[++i];
    } else if (!strcmp(a, "--shapes")) {
      if (parse_shapes(next, &o.shapes) != 0)
        return usage_error("--shapes '%s': expected small, production, both joined by a "
                           "comma, or none", next);
      shapes_set = 1;
      i++;
    } else if (!strcmp(a, "--step-batch")) {
      char *end;
      o.step_batch = (int)strtol(next, &end, 10);
      if (*end || o.step_batch < 1) return usage_error("--step-batch '%s': expected >= 1", next);
      i++;
    } else if (!strcmp(a, "--op")) {
      o.filter = argv[++i];
    } else if (!strcmp(a, "--seed")) {
      char *end;
      o.seed = strtoull(next, &end, 0);
      if (*end) return usage_error("--seed '%s': expected a number", next);
      i++;
    } else if (!strcmp(a, "--simulate")) {
      sim = argv[++i];
    } else if (!strcmp(a, "--config")) {
      if (sd_config_load_ini(&cfg, next, err, sizeof err) != 0) return usage_error("%s", err);
      i++;
    } else {
      return usage_error("unknown option '%s'", a);
    }
  }
  if (sd_config_validate(&cfg, err, sizeof err) != 0) return usage_error("%s", err);
  if (quick) {
    if (!shapes_set) o.shapes = SD_SELFTEST_PRODUCTION;
    o.determinism = o.transfers = o.unit = o.step = 0;
    if (!prec) prec = cfg.precision;
  }
  if (step_set >= 0) o.step = step_set;
  if (det_set >= 0) o.determinism = det_set;
  if (prec) o.precisions = !strcmp(prec, "both") ? 3 : !strcmp(prec, "fp32") ? 1 : 2;
  if (!o.shapes && !o.step) return usage_error("%s", "nothing to check: --shapes none without --step");

  setvbuf(stdout, NULL, _IOLBF, 0);
  if (device < 0) {
    device = launcher_local_rank();
    if (!sim) {
      char msg[256];
      int count = sd_cuda_device_count(msg, sizeof msg);
      if (count > 0) device %= count;
    }
  }
  sd_backend dev;
  int rc = sd_gpu_open(&dev, sim, device, err, sizeof err);
  if (rc == 77) {
    printf("skip: sddit selftest: %s\n", err);
    fprintf(stderr, "sddit selftest: nothing to test: %s\n", err);
    return 77;
  }
  if (rc != 0) {
    fprintf(stderr, "sddit selftest: %s\n", err);
    return rc == 2 ? 2 : 1;
  }
  if (sd_gpu_set_precision(&dev, cfg.precision, err, sizeof err) != 0) {
    fprintf(stderr, "sddit selftest: precision %s: %s\n", cfg.precision, err);
    sd_gpu_close(&dev);
    return 1;
  }
  printf("# sddit selftest: seed %llu, precision %s, model %s%s\n", (unsigned long long)o.seed,
         o.precisions == 3 ? "fp32 and bf16" : o.precisions == 1 ? "fp32" : "bf16",
         cfg.model.preset, o.step ? ", one training step against the CPU" : "");
  int failed = sd_selftest_run(&dev, &cfg, &o);
  sd_gpu_close(&dev);
  if (failed)
    fprintf(stderr,
            "sddit selftest: %d mismatch%s on %s device %d (the lines with FAIL above name the "
            "op, the shape and the worst element): do not train on this device; rerun with "
            "--verbose for every comparison, and report the output\n",
            failed, failed == 1 ? "" : "es", sim ? "the stand-in" : "CUDA", device);
  return failed ? 1 : 0;
}
