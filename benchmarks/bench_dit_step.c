// Benchmark: DiT forward+backward (MSE against a random target) on a backend, as in one
// training step without the optimizer. Prints one greppable line (or JSON with --json):
//   sddit preset=S/2 batch=8 threads=2 ms_fwd=.. ms_bwd=.. ms_per_step=.. img_per_s=.. gflop_per_s=..
// FLOPs are analytic: 3 x forward (sd_dit_forward_flops), multiply-add = 2.
#include "model/dit.h"
#include "error.h"
#include "util/rng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void usage(void) {
  fprintf(stderr, "usage: bench_dit_step [--preset S/2] [--batch 8] [--threads N] "
                  "[--warmup 2] [--iters 5] [--json]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *preset = "S/2";
  int B = 8, threads = 0, warmup = 2, iters = 5, json = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--json")) json = 1;
    else if (i + 1 < argc && !strcmp(argv[i], "--preset")) preset = argv[++i];
    else if (i + 1 < argc && !strcmp(argv[i], "--batch")) B = atoi(argv[++i]);
    else if (i + 1 < argc && !strcmp(argv[i], "--threads")) threads = atoi(argv[++i]);
    else if (i + 1 < argc && !strcmp(argv[i], "--warmup")) warmup = atoi(argv[++i]);
    else if (i + 1 < argc && !strcmp(argv[i], "--iters")) iters = atoi(argv[++i]);
    else usage();
  }
  if (B <= 0 || iters <= 0 || warmup < 0) usage();
  sd_dit_config cfg;
  if (sd_dit_config_preset(&cfg, preset) != 0)
    SD_FATAL("unknown preset '%s' (known: %s)", preset, sd_dit_preset_names());
  sd_backend be;
  sd_backend_cpu_init(&be, threads);
  sd_dit m;
  sd_dit_create(&m, &cfg, &be);
  sd_dit_init_weights(&m, 0);
  const int T = sd_dit_tokens(&cfg);
  const size_t nimg = (size_t)B * cfg.in_channels * cfg.input_size * cfg.input_size;
  float *x = sd_xmalloc(sizeof(float) * nimg, "x"), *tgt = sd_xmalloc(sizeof(float) * nimg, "t");
  float *dout = sd_xmalloc(sizeof(float) * nimg, "dout");
  float *cn = sd_xmalloc(sizeof(float) * (size_t)B, "c_noise");
  int32_t *y = sd_xmalloc(sizeof(int32_t) * (size_t)B, "y");
  sd_rng_normal(1, SD_RNG_TEST, 0, 0, 0, nimg, x);
  sd_rng_normal(1, SD_RNG_TEST, 0, 1, 0, nimg, tgt);
  sd_rng_normal(1, SD_RNG_TEST, 0, 2, 0, (size_t)B, cn);
  for (int b = 0; b < B; b++) y[b] = (int32_t)sd_rng_below(1, SD_RNG_TEST, 0, 3, (uint32_t)b, (uint32_t)cfg.num_classes);
  sd_dit_acts a;
  sd_dit_acts_create(&a, &m, B, T);
  double t_fwd = 0, t_bwd = 0;
  for (int it = 0; it < warmup + iters; it++) {
    double t0 = now_s();
    sd_dit_forward(&m, &a, B, x, cn, y, NULL, T);
    float loss;
    be.ops->mse_fwd(&be, &loss, a.out, tgt, nimg);
    double t1 = now_s();
    be.ops->memset(&be, m.grads, 0, sizeof(float) * m.table.total);
    be.ops->mse_bwd(&be, dout, a.out, tgt, nimg, 1.0f);
    sd_dit_backward(&m, &a, B, y, dout);
    be.ops->sync(&be);
    double t2 = now_s();
    if (it >= warmup) {
      t_fwd += t1 - t0;
      t_bwd += t2 - t1;
    }
  }
  double ms_f = 1e3 * t_fwd / iters, ms_b = 1e3 * t_bwd / iters, ms = ms_f + ms_b;
  double flops = 3.0 * sd_dit_forward_flops(&cfg, T) * B;
  double ips = B / (ms * 1e-3), gfs = flops / (ms * 1e-3) * 1e-9;
  if (json)
    printf("{\"impl\": \"sddit\", \"backend\": \"%s\", \"preset\": \"%s\", \"batch\": %d, "
           "\"threads\": %d, \"ms_fwd\": %.2f, \"ms_bwd\": %.2f, \"ms_per_step\": %.2f, "
           "\"img_per_s\": %.3f, \"gflop_per_s\": %.2f, \"params\": %zu}\n",
           be.name, preset, B, be.num_threads, ms_f, ms_b, ms, ips, gfs, m.table.total);
  else
    printf("sddit preset=%s batch=%d threads=%d ms_fwd=%.2f ms_bwd=%.2f ms_per_step=%.2f "
           "img_per_s=%.3f gflop_per_s=%.2f params=%zu\n",
           preset, B, be.num_threads, ms_f, ms_b, ms, ips, gfs, m.table.total);
  sd_dit_acts_destroy(&a, &m);
  sd_dit_destroy(&m);
  free(x); free(tgt); free(dout); free(cn); free(y);
  return 0;
}
