// Benchmark: SD-DiT training steps (teacher forward, student forward and backward, AdamW, the
// EMAs: sd_sddit_forward_backward + sd_sddit_update) on the CUDA backend with synthetic data.
// benchmarks/bench_dit_step runs on the CPU backend only (no --backend flag), hence this.
//
// Per preset it prints one greppable line:
//   bench preset=XL/2 batch=32 prec=bf16 steps=10 ms_per_step=.. img_per_s=.. tflops=..
//         mfu=.. peak_tflops=.. mem_model_gib=.. mem_peak_gib=.. pool_high_gib=..
// FLOPs are analytic (multiply-add = 2): the teacher's encoder forward on all T tokens plus
// three times the student's forward (encoder on the visible tokens, decoder on all, final
// layer, head), attention included; MFU = achieved FLOP/s / the bf16 GEMM peak measured here
// (--peak: an S x S x S product through the backend's own matmul_fwd, best of several, its
// weight a registered region read as its persistent bf16 copy, as the model's are: the
// product alone, no conversion in the denominator). The numerator counts model FLOPs only.
// Memory: cudaMemGetInfo before the model and its lowest point after the timed steps
// (mem_peak), and the backend's memory pool high-water mark when it allocates from one.
// --max-batch: the largest batch that fits. The backend's alloc is fatal on failure, so each
// candidate (doubling) is first probed with a plain cudaMalloc of the size predicted from the
// memory measured at two small batches (plus a margin); only a probe that succeeds is built
// and stepped. Prints "maxbatch preset=.. fits=B (largest doubling that ran) predicted=B'".
//
// Usage: bench_sddit_cuda [--preset B/2[,XL/2...]] [--batch N[,N...]] [--steps 10]
//        [--warmup 2] [--seconds 60] [--precision bf16|fp32] [--peak] [--peak-size 8192]
//        [--max-batch] [--max-batch-limit 4096] [--simulate matmul]
// Exits 77 (skip) without a CUDA backend or device; --simulate runs on the CPU stand-in
// (smoke test of this program).
#include "util/clock.h"
#include "error.h"
#include "bf16.h"
#include "device/gpu_check.h"
#include "sd_build_config.h"
#include "objective/sddit.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if SD_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

// ---- device memory (CUDA runtime; zeros without it) ---------------------------------------

static int mem_info(size_t *free_b, size_t *total_b) {
#if SD_HAVE_CUDA
  cudaDeviceSynchronize();
  int dev = 0;
  cudaMemPool_t pool;
  if (cudaGetDevice(&dev) == cudaSuccess && cudaDeviceGetMemPool(&pool, dev) == cudaSuccess)
    cudaMemPoolTrimTo(pool, 0);  // freed pool memory back to the device before measuring
  if (cudaMemGetInfo(free_b, total_b) == cudaSuccess) return 0;
  cudaGetLastError();
#endif
  *free_b = *total_b = 0;
  return -1;
}

static double pool_high_gib(int reset) {
#if SD_HAVE_CUDA
  int dev = 0;
  cudaMemPool_t pool;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetMemPool(&pool, dev) != cudaSuccess)
    return 0;
  unsigned long long v = 0;
  if (reset) {
    cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &v);
    cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReservedMemHigh, &v);
    cudaGetLastError();
    return 0;
  }
  if (cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemHigh, &v) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return (double)v / (1 << 30);
#else
  (void)reset;
  return 0;
#endif
}

// A plain allocation that may fail (the probe): 1 if `bytes` could be allocated.
static int probe_alloc(size_t bytes) {
#if SD_HAVE_CUDA
  void *p = NULL;
  cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  cudaFree(p);
  return 1;
#else
  (void)bytes;
  return 1;
#endif
}

static void device_name(char *buf, size_t len) {
  snprintf(buf, len, "unknown");
#if SD_HAVE_CUDA
  struct cudaDeviceProp p;
  int dev = 0;
  if (cudaGetDevice(&dev) == cudaSuccess && cudaGetDeviceProperties(&p, dev) == cudaSuccess)
    snprintf(buf, len, "%.200s, %d SMs, %.1f GiB", p.name, p.multiProcessorCount,
             (double)p.totalGlobalMem / (1 << 30));
  cudaGetLastError();
#endif
}

// ---- inputs -------------------------------------------------------------------------------

// Fast non-zero pseudo-random fill (xorshift): weights and inputs need only be non-trivial.
static void fill_fast(float *x, size_t n, uint64_t seed, float scale) {
  uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
  for (size_t i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    x[i] = scale * ((float)(s >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f + 1e-3f);
  }
}

typedef struct model_cfg {
  sd_dit_config dc;
  sd_head_config hc;
  sd_sddit_opts o;
} model_cfg;

static int make_cfg(const char *preset, model_cfg *m) {
  memset(m, 0, sizeof *m);
  if (sd_dit_config_preset(&m->dc, preset) != 0) return -1;
  const int tiny = strcmp(preset, "tiny") == 0, T = sd_dit_tokens(&m->dc);
  m->hc = (sd_head_config){.in_dim = m->dc.hidden, .hidden = tiny ? 64 : 2048,
                           .bottleneck = tiny ? 16 : 256, .prototypes = tiny ? 32 : 8192};
  const int dec = tiny ? 1 : (m->dc.hidden >= 1024 ? 4 : 2);  // as sd_cfg_apply_preset (src/config/config_values.c)
  m->o = (sd_sddit_opts){.encoder_depth = m->dc.depth - dec,
                         .visible_tokens = (int)floor(T * 0.8), .sigma_data = 0.5f,
                         .lambda_dis = 1.0f, .tau_s = 0.1f, .tau_t_start = 0.04f,
                         .tau_t_end = 0.07f, .teacher_temp_warmup = 1000,
                         .center_momentum = 0.9f, .teacher_momentum = 0.996f,
                         .total_steps = 1000, .lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.999f,
                         .adam_eps = 1e-8f, .ema_decay = 0.9999f};
  return 0;
}

static double block_flops(const sd_dit_config *c, double Tk) {
  const double D = c->hidden, M = (double)c->mlp_ratio * D;
  return 2.0 * Tk * (3 * D * D + D * D + 2 * M * D) + 4.0 * Tk * Tk * D + 2.0 * 6 * D * D;
}

// FLOPs of one training step per sample (see the header comment).
static double step_flops(const model_cfg *m) {
  const sd_dit_config *c = &m->dc;
  const double D = c->hidden, T = sd_dit_tokens(c), Tv = m->o.visible_tokens;
  const double pp = (double)c->patch * c->patch, E = m->o.encoder_depth, L = c->depth;
  const double H = m->hc.hidden, bn = m->hc.bottleneck, P = m->hc.prototypes;
  const double cond = 2.0 * (c->freq_dim * D + D * D), embed = 2.0 * T * D * c->in_channels * pp;
  const double fin = 2.0 * 2 * D * D + 2.0 * T * D * pp * c->out_channels;
  const double head = Tv * 2.0 * (D * H + H * H + H * bn + bn * P);
  const double teacher = cond + embed + E * block_flops(c, T) + head;
  const double student = cond + embed + E * block_flops(c, Tv) + head +
                         (L - E) * block_flops(c, T) + fin;
  return teacher + 3.0 * student;
}

typedef struct step_data {
  float *x0[2], *eps[2], *ss[2], *st[2];
  int32_t *y[2], *vis[2];
  float *ss_host[2], *st_host[2];  // host copies of the noise levels, as the trainer keeps
} step_data;

// Two sets of synthetic step inputs in backend memory (alternated between steps).
static void make_inputs(sd_backend *be, const model_cfg *m, int B, step_data *d) {
  const int T = sd_dit_tokens(&m->dc), Tv = m->o.visible_tokens;
  const size_t n = (size_t)m->dc.in_channels * m->dc.input_size * m->dc.input_size;
  float *h = sd_xmalloc(sizeof(float) * (size_t)B * n, "inputs");
  int32_t *hi = sd_xmalloc(sizeof(int32_t) * (size_t)B * (Tv > 1 ? Tv : 1), "indices");
  for (int k = 0; k < 2; k++) {
    d->x0[k] = be->ops->alloc(be, sizeof(float) * (size_t)B * n);
    d->eps[k] = be->ops->alloc(be, sizeof(float) * (size_t)B * n);
    d->ss[k] = be->ops->alloc(be, sizeof(float) * (size_t)B);
    d->st[k] = be->ops->alloc(be, sizeof(float) * (size_t)B);
    d->y[k] = be->ops->alloc(be, sizeof(int32_t) * (size_t)B);
    d->vis[k] = be->ops->alloc(be, sizeof(int32_t) * (size_t)B * Tv);
    fill_fast(h, (size_t)B * n, 11 + k, 1.0f);
    be->ops->to_device(be, d->x0[k], h, sizeof(float) * (size_t)B * n);
    fill_fast(h, (size_t)B * n, 21 + k, 1.0f);
    be->ops->to_device(be, d->eps[k], h, sizeof(float) * (size_t)B * n);
    d->ss_host[k] = sd_xmalloc(sizeof(float) * (size_t)B, "sigma_s");
    d->st_host[k] = sd_xmalloc(sizeof(float) * (size_t)B, "sigma_t");
    for (int b = 0; b < B; b++) {
      d->ss_host[k][b] = expf(-1.2f + 1.2f * (float)((b * 7 + k) % 11 - 5) / 5.0f);
      d->st_host[k][b] = 0.002f;
    }
    be->ops->to_device(be, d->ss[k], d->ss_host[k], sizeof(float) * (size_t)B);
    be->ops->to_device(be, d->st[k], d->st_host[k], sizeof(float) * (size_t)B);
    for (int b = 0; b < B; b++) hi[b] = (b * 37 + k) % (m->dc.num_classes + 1);
    be->ops->to_device(be, d->y[k], hi, sizeof(int32_t) * (size_t)B);
    for (int b = 0; b < B; b++) {  // Tv of T tokens, sorted: every token but a shifted stride
      int c = 0;
      for (int t = 0; t < T && c < Tv; t++)
        if ((t + b + k) % 5 != 0 || T - t <= Tv - c) hi[(size_t)b * Tv + c++] = t;
    }
    be->ops->to_device(be, d->vis[k], hi, sizeof(int32_t) * (size_t)B * Tv);
  }
  free(h);
  free(hi);
}

static void free_inputs(sd_backend *be, step_data *d) {
  for (int k = 0; k < 2; k++) {
    void *p[] = {d->x0[k], d->eps[k], d->ss[k], d->st[k], d->y[k], d->vis[k]};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) be->ops->free(be, p[i]);
    free(d->ss_host[k]);
    free(d->st_host[k]);
  }
}

static void init_model(sd_sddit *s) {
  float *h = sd_xmalloc(sizeof(float) * s->total, "parameters");
  fill_fast(h, s->total, 5, 0.02f);
  s->be->ops->to_device(s->be, s->params, h, sizeof(float) * s->total);
  free(h);
  sd_sddit_reset_copies(s);
}

static void one_step(sd_sddit *s, const step_data *d, int B, long step, sd_step_stats *st) {
  const int k = (int)(step & 1);
  sd_step_inputs in = {d->x0[k], d->eps[k], d->ss[k], d->st[k], d->y[k], d->vis[k],
                       d->ss_host[k], d->st_host[k]};
  sd_sddit_forward_backward(s, &in, B, step, st);
  sd_sddit_update(s, B, step, st);
}

// ---- the measurements -----------------------------------------------------------------------

// The GEMM peak: a square matmul_fwd with its input and output in the backend's activation
// storage (bf16 at precision bf16, as the DiT's block matmuls run; the weight read as its
// persistent bf16 copy, as the model's weights are).
static double measure_peak(sd_backend *be, int S, int reps) {
  const size_t n = (size_t)S * S, es = sd_dtype_size(be->act_dtype);
  float *h = sd_xmalloc(sizeof(float) * n, "peak inputs");
  void *a = be->ops->alloc(be, es * n), *o = be->ops->alloc(be, es * n);
  float *w = be->ops->alloc(be, sizeof(float) * n);
  fill_fast(h, n, 1, 1.0f);
  if (be->act_dtype == SD_BF16) {
    uint16_t *hb = sd_xmalloc(2 * n, "peak inputs (bf16)");
    for (size_t i = 0; i < n; i++) hb[i] = sd_bf16_from_float(h[i]);
    be->ops->to_device(be, a, hb, 2 * n);
    free(hb);
  } else {
    be->ops->to_device(be, a, h, sizeof(float) * n);
  }
  fill_fast(h, n, 2, 1.0f);
  be->ops->to_device(be, w, h, sizeof(float) * n);
  be->ops->weights_register(be, w, n);  // the warm-ups make its bf16 copy; then GEMMs only
  free(h);
  double best = 1e30;
  for (int r = 0; r < reps + 2; r++) {
    be->ops->sync(be);
    double t0 = sd_now_s();
    be->ops->matmul_fwd(be, o, be->act_dtype, a, be->act_dtype, w, NULL, S, S, S);
    be->ops->sync(be);
    double t = sd_now_s() - t0;
    if (r >= 2 && t < best) best = t;  // two warm-ups
  }
  be->ops->free(be, a);
  be->ops->free(be, w);
  be->ops->free(be, o);
  const double tf = 2.0 * S * (double)S * S / best * 1e-12;
  printf("peak gemm M=N=K=%d best_of=%d ms=%.3f tflops=%.4g (matmul_fwd, %s input and output, "
         "the weight's bf16 copy: no conversion)\n", S, reps, best * 1e3, tf,
         sd_dtype_name(be->act_dtype));
  return tf;
}

static void bench_preset(sd_backend *be, const char *preset, const char *prec, int B,
                         int steps, int warmup, double seconds, double peak) {
  model_cfg m;
  if (make_cfg(preset, &m) != 0) SD_FATAL("unknown preset '%s'", preset);
  size_t f0, tot, f1, f2;
  mem_info(&f0, &tot);
  pool_high_gib(1);
  sd_sddit s;
  sd_sddit_create(&s, &m.dc, &m.hc, &m.o, be, B);
  init_model(&s);
  step_data d;
  make_inputs(be, &m, B, &d);
  mem_info(&f1, &tot);
  sd_step_stats st;
  double tw = sd_now_s();
  for (int k = 0; k < warmup; k++) one_step(&s, &d, B, k, &st);
  be->ops->sync(be);
  const double warm_s = sd_now_s() - tw;
  int done = 0;
  double t0 = sd_now_s(), t = 0;
  while (done < steps && (done == 0 || t < seconds)) {
    one_step(&s, &d, B, warmup + done, &st);
    done++;
    be->ops->sync(be);
    t = sd_now_s() - t0;
  }
  size_t fmin = f1;
#if SD_HAVE_CUDA
  if (!sd_gpu_is_sim(be) && cudaMemGetInfo(&f2, &tot) == cudaSuccess && f2 < fmin) fmin = f2;
#endif
  (void)f2;
  const double ms = 1e3 * t / done, ips = B / (t / done);
  const double flops = step_flops(&m) * B, tf = flops / (t / done) * 1e-12;
  const double gib = 1.0 / (1 << 30);
  printf("bench preset=%s batch=%d prec=%s steps=%d ms_per_step=%.2f img_per_s=%.2f "
         "tflops=%.4g mfu=%.4f peak_tflops=%.4g mem_model_gib=%.2f mem_peak_gib=%.2f "
         "pool_high_gib=%.2f warmup_s=%.1f L=%.4f params=%zu gflop_per_img=%.1f\n",
         preset, B, prec, done, ms, ips, tf, peak > 0 ? tf / peak : 0.0, peak,
         (double)(f0 - f1) * gib, (double)(f0 - fmin) * gib, pool_high_gib(0), warm_s, st.L,
         s.total, step_flops(&m) * 1e-9);
  free_inputs(be, &d);
  sd_sddit_destroy(&s);
}

// Device bytes a model at batch B takes after one step (cudaMemGetInfo difference).
static double bytes_at(sd_backend *be, const model_cfg *m, int B) {
  size_t f0, f1, tot;
  mem_info(&f0, &tot);
  sd_sddit s;
  sd_sddit_create(&s, &m->dc, &m->hc, &m->o, be, B);
  init_model(&s);
  step_data d;
  make_inputs(be, m, B, &d);
  sd_step_stats st;
  one_step(&s, &d, B, 0, &st);
  be->ops->sync(be);
  size_t fa;
  mem_info(&fa, &tot);
  f1 = fa;
  free_inputs(be, &d);
  sd_sddit_destroy(&s);
  return (double)f0 - (double)f1;
}

static void max_batch(sd_backend *be, const char *preset, int limit) {
  model_cfg m;
  if (make_cfg(preset, &m) != 0) SD_FATAL("unknown preset '%s'", preset);
  size_t fr, tot;
  if (mem_info(&fr, &tot) != 0 || sd_gpu_is_sim(be)) {
    printf("maxbatch preset=%s skipped: no device memory information\n", preset);
    return;
  }
  const int b0 = 2;
  const double m1 = bytes_at(be, &m, b0), m2 = bytes_at(be, &m, 2 * b0);
  const double per = (m2 - m1) / b0, fixed = m1 - b0 * per;
  const double margin = 512.0 * (1 << 20);
  printf("maxbatch preset=%s model: %.2f GiB fixed + %.3f GiB per sample (measured at batch %d "
         "and %d), %.1f GiB free\n", preset, fixed / (1 << 30), per / (1 << 30), b0, 2 * b0,
         (double)fr / (1 << 30));
  int fits = 2 * b0;
  const int predicted = per > 0 ? (int)((fr - fixed - margin) / (per * 1.05)) : 0;
  for (int B = 4 * b0; B <= limit; B *= 2) {
    const double need = 1.05 * (fixed + per * B) + margin;
    if (!probe_alloc((size_t)need)) {
      printf("maxbatch preset=%s batch=%d probe of %.2f GiB failed: does not fit\n", preset, B,
             need / (1 << 30));
      break;
    }
    double t0 = sd_now_s();
    const double used = bytes_at(be, &m, B);
    printf("maxbatch preset=%s batch=%d ran one step, %.2f GiB (%.1f s)\n", preset, B,
           used / (1 << 30), sd_now_s() - t0);
    fits = B;
  }
  printf("maxbatch preset=%s fits=%d (largest doubling that ran) predicted=%d (linear model, "
         "5%% + 0.5 GiB margin)\n", preset, fits, predicted);
}

static int split(char *s, char **out, int max) {
  int n = 0;
  for (char *tok = strtok(s, ","); tok && n < max; tok = strtok(NULL, ",")) out[n++] = tok;
  return n;
}

int main(int argc, char **argv) {
  char presets_buf[256] = "B/2,XL/2", batch_buf[256] = "";
  const char *prec = "bf16", *sim = NULL;
  int steps = 10, warmup = 2, peak = 0, peak_size = 8192, maxb = 0, maxb_limit = 4096;
  double seconds = 60;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--peak")) peak = 1;
    else if (!strcmp(a, "--max-batch")) maxb = 1;
    else if (v && !strcmp(a, "--preset")) snprintf(presets_buf, sizeof presets_buf, "%s", v), i++;
    else if (v && !strcmp(a, "--batch")) snprintf(batch_buf, sizeof batch_buf, "%s", v), i++;
    else if (v && !strcmp(a, "--steps")) steps = atoi(v), i++;
    else if (v && !strcmp(a, "--warmup")) warmup = atoi(v), i++;
    else if (v && !strcmp(a, "--seconds")) seconds = atof(v), i++;
    else if (v && !strcmp(a, "--precision")) prec = v, i++;
    else if (v && !strcmp(a, "--peak-size")) peak_size = atoi(v), i++;
    else if (v && !strcmp(a, "--max-batch-limit")) maxb_limit = atoi(v), i++;
    else if (v && !strcmp(a, "--simulate")) sim = v, i++;
    else {
      fprintf(stderr, "usage: bench_sddit_cuda [--preset B/2[,XL/2]] [--batch N[,N]] "
                      "[--steps 10] [--warmup 2] [--seconds 60] [--precision bf16|fp32] "
                      "[--peak] [--peak-size 8192] [--max-batch] [--max-batch-limit 4096] "
                      "[--simulate matmul]\n");
      return 2;
    }
  }
  if (steps < 1 || warmup < 0 || peak_size < 16) {
    fprintf(stderr, "bench_sddit_cuda: bad --steps, --warmup or --peak-size\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  sd_backend be;
  sd_gpu_open_or_skip(&be, sim, "bench_sddit_cuda");
  char err[512], name[256];
  if (sd_gpu_set_precision(&be, prec, err, sizeof err) != 0)
    printf("note: precision %s not set (%s): the backend's default is measured\n", prec, err);
  device_name(name, sizeof name);
  printf("device %s, precision %s\n", sd_gpu_is_sim(&be) ? "CPU stand-in" : name, prec);
  char *presets[8], *batches[8];
  const int np = split(presets_buf, presets, 8), nb = batch_buf[0] ? split(batch_buf, batches, 8) : 0;
  double peak_tf = 0;
  if (peak) {
    // the peak in bf16 whatever the benchmark's precision (MFU is against bf16)
    if (sd_gpu_set_precision(&be, "bf16", err, sizeof err) != 0)
      printf("note: bf16 not set for the peak (%s)\n", err);
    peak_tf = measure_peak(&be, peak_size, 5);
    sd_gpu_set_precision(&be, prec, err, sizeof err);
  }
  for (int i = 0; i < np; i++) {
    const int tiny = !strcmp(presets[i], "tiny");
    int B = i < nb ? atoi(batches[i]) : (tiny ? 8 : (strstr(presets[i], "XL") ? 32 : 128));
    if (B <= 0) B = 8;
    if (maxb) max_batch(&be, presets[i], maxb_limit);
    else bench_preset(&be, presets[i], prec, B, steps, warmup, seconds, peak_tf);
  }
  // the kernels the steps ran on (attention: cuDNN or the hand-written ones, and why; matmul
  // algorithms; weight copies), each line prefixed for grep
  char desc[4096];
  sd_gpu_describe(&be, desc, sizeof desc);
  for (char *line = strtok(desc, "\n"); line; line = strtok(NULL, "\n"))
    printf("bench-path: %s\n", line);
  sd_gpu_close(&be);
  return 0;
}
