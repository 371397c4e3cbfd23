// Benchmark: the full SD-DiT training step (teacher encoder forward, student encoder + decoder
// + head forward and backward, AdamW, center, teacher EMA, generation EMA) on synthetic data:
// keyed random latents and labels plus the step's randomness from sd_step_random, as the
// trainer draws it. One greppable row per preset (or one JSON object per row with --json):
//   throughput preset=S/2 batch=8 img_per_s=.. ms_step=.. ms_data=.. ms_fwd_bwd=.. ms_optim=..
//              mfu_pct=.. gflop_per_img=.. peak_rss_mb=..
// FLOPs are analytic (multiply-add = 2, backward = 2 x forward; see the header line printed
// at start). MFU is against --peak-gflops, by default the backend's measured matmul peak
// (a 1024^3 matmul through its matmul op, best of 3).
#include "config/config.h"
#include "error.h"
#include "util/rng.h"
#include "objective/sddit.h"
#include "objective/sddit_config.h"
#include "objective/step_random.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void usage(void) {
  fprintf(stderr, "usage: throughput [--preset tiny,S/2] [--batch 8] [--warmup 1] [--iters 3] "
                  "[--threads N] [--backend cpu|cuda] [--peak-gflops G] [--json]\n"
                  "  presets: comma-separated, from tiny, S/2, B/2, L/2, XL/2\n");
  exit(2);
}

// Forward FLOPs per image of blocks [l0, l1) on Tk tokens: qkv, attention output, MLP and the
// per-image adaLN modulation matmuls, plus QK^T and AV (as in sd_dit_forward_flops).
static double blocks_flops(const sd_dit_config *c, int l0, int l1, int Tk) {
  double D = c->hidden, T = Tk, M = (double)c->mlp_ratio * D;
  double per_block = 2.0 * T * (3 * D * D + D * D + 2 * M * D) + 4.0 * T * T * D + 2.0 * 6 * D * D;
  return (l1 - l0) * per_block;
}

// Patch embedding of all T tokens plus the timestep and label conditioning.
static double embed_flops(const sd_dit_config *c) {
  double D = c->hidden, pp = (double)c->patch * c->patch, T = sd_dit_tokens(c);
  return 2.0 * T * D * c->in_channels * pp + 2.0 * (c->freq_dim * D + D * D);
}

// Final layer: adaLN (2D) and the projection to patches on all T tokens.
static double final_flops(const sd_dit_config *c) {
  double D = c->hidden, pp = (double)c->patch * c->patch, T = sd_dit_tokens(c);
  return 2.0 * T * D * pp * c->out_channels + 2.0 * 2 * D * D;
}

// Projection head on Tv rows: D->H, H->H, H->bn, bn->P.
static double head_flops(const sd_head_config *h, int rows) {
  return 2.0 * rows * ((double)h->in_dim * h->hidden + (double)h->hidden * h->hidden +
                       (double)h->hidden * h->bottleneck + (double)h->bottleneck * h->prototypes);
}

// FLOPs per image of one SD-DiT step: teacher forward (embed + encoder on T tokens + head on
// Tv rows) + 3 x student forward (embed + encoder on Tv + decoder on T + final + head on Tv).
static double step_flops(const sd_dit_config *c, const sd_head_config *h, int E, int Tv) {
  const int T = sd_dit_tokens(c);
  double teacher = embed_flops(c) + blocks_flops(c, 0, E, T) + head_flops(h, Tv);
  double student = embed_flops(c) + blocks_flops(c, 0, E, Tv) + blocks_flops(c, E, c->depth, T) +
                   final_flops(c) + head_flops(h, Tv);
  return teacher + 3.0 * student;
}

static double peak_rss_mb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;  // kilobytes on Linux
}

static int open_backend(sd_backend *be, const char *name, int threads) {
  if (!strcmp(name, "cpu")) {
    sd_backend_cpu_init(be, threads);
    return 0;
  }
  char err[512] = "";
  if (sd_backend_cuda_init(be, 0, err, sizeof err) != 0) {
    printf("# skip: backend cuda unavailable: %s\n", err[0] ? err : "no CUDA device");
    return -1;
  }
  return 0;
}

static void close_backend(sd_backend *be) {
  if (!strcmp(be->name, "cpu")) sd_backend_cpu_destroy(be);
  else sd_backend_cuda_destroy(be);
}

// Best of 3 GFLOP/s of a 1024^3 matmul through the backend's matmul op (one untimed first).
static double measure_peak(sd_backend *be) {
  const int n = 1024;
  const size_t cnt = (size_t)n * n, bytes = sizeof(float) * cnt;
  float *h = sd_xmalloc(bytes, "peak");
  float *a = be->ops->alloc(be, bytes), *w = be->ops->alloc(be, bytes);
  float *o = be->ops->alloc(be, bytes);
  sd_rng_normal(1, SD_RNG_TEST, 0, 0, 0, cnt, h);
  be->ops->to_device(be, a, h, bytes);
  sd_rng_normal(1, SD_RNG_TEST, 0, 1, 0, cnt, h);
  be->ops->to_device(be, w, h, bytes);
  double best = 1e30;
  for (int r = 0; r < 4; r++) {
    be->ops->sync(be);
    double t0 = now_s();
    be->ops->matmul_fwd(be, o, SD_F32, a, SD_F32, w, NULL, n, n, n);
    be->ops->sync(be);
    double dt = now_s() - t0;
    if (r > 0 && dt < best) best = dt;
  }
  be->ops->free(be, a);
  be->ops->free(be, w);
  be->ops->free(be, o);
  free(h);
  return 2.0 * n * n * n / best * 1e-9;
}

typedef struct row {
  double ips, ms_step, ms_data, ms_fb, ms_opt, mfu, gflop_img, rss;
  float loss;
  size_t params;
  int T, Tv;
} row;

static int run_preset(sd_backend *be, const char *preset, int B, int warmup, int iters,
                      double peak_gflops, row *r) {
  sd_dit_config probe;
  if (sd_dit_config_preset(&probe, preset) != 0) {
    fprintf(stderr, "throughput: unknown preset '%s' (known: %s)\n", preset,
            sd_dit_preset_names());
    return -1;
  }
  sd_config cfg;
  sd_config_defaults(&cfg, preset);
  char err[1024];
  if (sd_config_validate(&cfg, err, sizeof err) != 0) SD_FATAL("%s", err);
  sd_sddit_opts o;
  sd_sddit_opts_from_config(&cfg, &o);
  sd_head_config hc;
  sd_head_config_from_config(&cfg, &hc);
  const int T = sd_dit_tokens(&cfg.model), Tv = o.visible_tokens;
  const int n = cfg.model.in_channels * cfg.model.input_size * cfg.model.input_size;
  sd_sddit s;
  sd_sddit_create(&s, &cfg.model, &hc, &o, be, B);
  sd_sddit_init(&s, cfg.seed);

  const int on_device = strcmp(be->name, "cpu") != 0;
  const size_t fb = sizeof(float);
  float *x0 = sd_xmalloc(fb * (size_t)B * n, "x0"), *eps = sd_xmalloc(fb * (size_t)B * n, "eps");
  float *ss = sd_xmalloc(fb * (size_t)B, "sigma_s"), *st = sd_xmalloc(fb * (size_t)B, "sigma_t");
  int32_t *y = sd_xmalloc(sizeof(int32_t) * (size_t)B, "y");
  int32_t *vis = sd_xmalloc(sizeof(int32_t) * (size_t)B * Tv, "vis");
  float *dx0 = NULL, *deps = NULL, *dss = NULL, *dst = NULL;
  int32_t *dy = NULL, *dvis = NULL;
  if (on_device) {
    dx0 = be->ops->alloc(be, fb * (size_t)B * n);
    deps = be->ops->alloc(be, fb * (size_t)B * n);
    dss = be->ops->alloc(be, fb * (size_t)B);
    dst = be->ops->alloc(be, fb * (size_t)B);
    dy = be->ops->alloc(be, sizeof(int32_t) * (size_t)B);
    dvis = be->ops->alloc(be, sizeof(int32_t) * (size_t)B * Tv);
  }
  sd_random_opts ro;
  sd_random_opts_from_config(&cfg, &ro);
  double t_data = 0, t_fb = 0, t_opt = 0;
  float loss = 0;
  for (int it = 0; it < warmup + iters; it++) {
    const long step = it;
    double t0 = now_s();
    // synthetic batch: keyed normal latents and uniform labels, then the step's randomness
    for (int b = 0; b < B; b++) {
      const long g = step * B + b;
      sd_rng_normal(cfg.seed, SD_RNG_SYNTHETIC, 0, (uint32_t)g, 0, (size_t)n, x0 + (size_t)b * n);
      y[b] = (int32_t)sd_rng_below(cfg.seed, SD_RNG_SYNTHETIC, 1, (uint32_t)g, 0,
                                   (uint32_t)cfg.model.num_classes);
    }
    sd_step_random(&ro, step, step * B, B, eps, ss, st, vis, y);
    sd_step_inputs in = {x0, eps, ss, st, y, vis, ss, st};
    if (on_device) {
      be->ops->to_device(be, dx0, x0, fb * (size_t)B * n);
      be->ops->to_device(be, deps, eps, fb * (size_t)B * n);
      be->ops->to_device(be, dss, ss, fb * (size_t)B);
      be->ops->to_device(be, dst, st, fb * (size_t)B);
      be->ops->to_device(be, dy, y, sizeof(int32_t) * (size_t)B);
      be->ops->to_device(be, dvis, vis, sizeof(int32_t) * (size_t)B * Tv);
      be->ops->sync(be);
      in = (sd_step_inputs){dx0, deps, dss, dst, dy, dvis, ss, st};
    }
    double t1 = now_s();
    sd_step_stats stats;
    sd_sddit_forward_backward(&s, &in, B, step, &stats);
    be->ops->sync(be);
    double t2 = now_s();
    sd_sddit_update(&s, B, step, &stats);
    be->ops->sync(be);
    double t3 = now_s();
    loss = stats.L;
    if (it >= warmup) {
      t_data += t1 - t0;
      t_fb += t2 - t1;
      t_opt += t3 - t2;
    }
  }
  r->ms_data = 1e3 * t_data / iters;
  r->ms_fb = 1e3 * t_fb / iters;
  r->ms_opt = 1e3 * t_opt / iters;
  r->ms_step = r->ms_data + r->ms_fb + r->ms_opt;
  r->ips = B / (r->ms_step * 1e-3);
  r->gflop_img = step_flops(&cfg.model, &hc, o.encoder_depth, Tv) * 1e-9;
  r->mfu = peak_gflops > 0 ? 100.0 * r->gflop_img * r->ips / peak_gflops : 0.0;
  r->rss = peak_rss_mb();
  r->loss = loss;
  r->params = s.total;
  r->T = T;
  r->Tv = Tv;
  if (on_device) {
    be->ops->free(be, dx0);
    be->ops->free(be, deps);
    be->ops->free(be, dss);
    be->ops->free(be, dst);
    be->ops->free(be, dy);
    be->ops->free(be, dvis);
  }
  free(x0); free(eps); free(ss); free(st); free(y); free(vis);
  sd_sddit_destroy(&s);
  return 0;
}

int main(int argc, char **argv) {
  const char *presets = "tiny,S/2", *backend = "cpu";
  int B = 8, threads = 0, warmup = 1, iters = 3, json = 0;
  double peak = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--json")) json = 1;
    else if (i + 1 < argc && !strcmp(argv[i], "--preset")) presets = argv[++i];
    else if (i + 1 < argc && !strcmp(argv[i], "--batch")) B = atoi(argv[++i]);
    else if (i + 1 < argc && !strcmp(argv[i], "--threads")) threads = atoi(argv[++i]);
    else if (i + 1 < argc && !strcmp(argv[i], "--warmup")) warmup = atoi(argv[++i]);
    else if (i + 1 < argc && !strcmp(argv[i], "--iters")) iters = atoi(argv[++i]);
    else if (i + 1 < argc && !strcmp(argv[i], "--backend")) backend = argv[++i];
    else if (i + 1 < argc && !strcmp(argv[i], "--peak-gflops")) peak = atof(argv[++i]);
    else usage();
  }
  if (B <= 0 || iters <= 0 || warmup < 0 || peak < 0) usage();
  if (strcmp(backend, "cpu") && strcmp(backend, "cuda")) usage();
  sd_backend be;
  if (open_backend(&be, backend, threads) != 0) return 0;  // skip line printed
  printf("# flops/img = teacher_fwd[embed(T) + enc blocks(T) + head(Tv)] + 3 x student"
         "[embed(T) + enc blocks(Tv) + dec blocks(T) + final(T) + head(Tv)]; block(Tk) = "
         "2*Tk*(4D^2 + 2*M*D) + 4*Tk^2*D + 12*D^2, head(N) = 2*N*(D*H + H^2 + H*bn + bn*P), "
         "backward = 2 x forward, multiply-add = 2\n");
  if (peak > 0) {
    printf("# peak %.1f GFLOP/s (--peak-gflops)\n", peak);
  } else {
    peak = measure_peak(&be);
    printf("# peak %.1f GFLOP/s (measured: 1024^3 %s matmul_fwd, best of 3)\n", peak, be.name);
  }
  printf("# backend %s, threads %d, warmup %d, iters %d\n", be.name, be.num_threads, warmup,
         iters);
  fflush(stdout);
  char *list = strdup(presets), *save = NULL;
  int rc = 0;
  for (char *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
    row r;
    if (run_preset(&be, p, B, warmup, iters, peak, &r) != 0) {
      rc = 2;
      continue;
    }
    if (json)
      printf("{\"bench\": \"throughput\", \"backend\": \"%s\", \"preset\": \"%s\", \"batch\": %d, "
             "\"threads\": %d, \"img_per_s\": %.3f, \"ms_step\": %.2f, \"ms_data\": %.2f, "
             "\"ms_fwd_bwd\": %.2f, \"ms_optim\": %.2f, \"mfu_pct\": %.2f, "
             "\"gflop_per_img\": %.3f, \"peak_rss_mb\": %.1f, \"peak_gflops\": %.1f, "
             "\"params\": %zu, \"tokens\": %d, \"visible_tokens\": %d, \"loss\": %.5g}\n",
             be.name, p, B, be.num_threads, r.ips, r.ms_step, r.ms_data, r.ms_fb, r.ms_opt,
             r.mfu, r.gflop_img, r.rss, peak, r.params, r.T, r.Tv, r.loss);
    else
      printf("throughput preset=%s batch=%d img_per_s=%.3f ms_step=%.2f ms_data=%.2f "
             "ms_fwd_bwd=%.2f ms_optim=%.2f mfu_pct=%.2f gflop_per_img=%.3f peak_rss_mb=%.1f\n",
             p, B, r.ips, r.ms_step, r.ms_data, r.ms_fb, r.ms_opt, r.mfu, r.gflop_img, r.rss);
    fflush(stdout);
  }
  free(list);
  close_backend(&be);
  return rc;
}
