// What the device checks share (see gpu_check.h): the device under test or its CPU stand-in,
// the nmse measure, canaries and guards. Used by `sddit selftest` and the GPU tests.
#include "device/gpu_check.h"
#include "util/clock.h"
#include "bf16.h"
#include "storage.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


// ---- the CPU stand-in ---------------------------------------------------------------------

static sd_backend g_cpu;        // the CPU backend the stand-in wraps
static sd_ops g_sim_ops;        // its op table with the matmuls (and attention) wrapped
static int g_sim_bf16 = 1;      // precision: 1 bf16, 0 fp32
static int g_sim_attention = 0; // bf16 also rounds the attention inputs

float sd_gpu_bf16_round(float x) { return sd_bf16_to_float(sd_bf16_from_float(x)); }

static float *rounded_copy(const float *x, size_t n) {
  float *r = malloc(sizeof(float) * (n ? n : 1));
  if (!r) {
    fprintf(stderr, "gpu_check: out of host memory (%zu floats)\n", n);
    exit(1);
  }
  for (size_t i = 0; i < n; i++) r[i] = sd_gpu_bf16_round(x[i]);
  return r;
}

// Moves about two thirds of the elements by one ulp up or down, keyed by each value and its
// index, so the same inputs jitter the same way (determinism checks still hold).
static void jitter(float *x, size_t n) {
  if (!x) return;
  for (size_t i = 0; i < n; i++) {
    uint32_t bits;
    memcpy(&bits, &x[i], sizeof bits);
    uint32_t h = (uint32_t)i * 2654435761u ^ bits * 0x9e3779b9u;
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    uint32_t r = h % 3u;
    if (r == 1) x[i] = nextafterf(x[i], INFINITY);
    else if (r == 2) x[i] = nextafterf(x[i], -INFINITY);
  }
}

// The stand-in's matmuls in bf16: both GEMM inputs as bf16 values (an input already stored in
// bf16 is one; fp32 inputs and the weights are rounded), fp32 products, the output stored as
// asked.
static float *rounded_input(const void *x, sd_dtype t, size_t n) {
  const float *x32 = sd_cpu_load(x, t, n);
  float *r = rounded_copy(x32, n);
  sd_cpu_unload(x, x32);
  return r;
}

static void sim_matmul_fwd(sd_backend *be, void *out, sd_dtype out_t, const void *inp,
                           sd_dtype inp_t, const float *w, const float *bias, int M, int K,
                           int N) {
  if (!g_sim_bf16) {
    g_cpu.ops->matmul_fwd(be, out, out_t, inp, inp_t, w, bias, M, K, N);
    if (out_t == SD_F32) jitter(out, (size_t)M * N);
    return;
  }
  float *ri = rounded_input(inp, inp_t, (size_t)M * K), *rw = rounded_copy(w, (size_t)N * K);
  g_cpu.ops->matmul_fwd(be, out, out_t, ri, SD_F32, rw, bias, M, K, N);
  free(ri);
  free(rw);
}

static void sim_matmul_bwd(sd_backend *be, float *dinp, float *dw, float *dbias,
                           const void *dout, sd_dtype dout_t, const void *inp, sd_dtype inp_t,
                           const float *w, int M, int K, int N, int accumulate_dinp) {
  if (!g_sim_bf16) {
    g_cpu.ops->matmul_bwd(be, dinp, dw, dbias, dout, dout_t, inp, inp_t, w, M, K, N,
                          accumulate_dinp);
    jitter(dinp, (size_t)M * K);
    jitter(dw, (size_t)N * K);
    return;
  }
  float *rd = rounded_input(dout, dout_t, (size_t)M * N);
  float *ri = rounded_input(inp, inp_t, (size_t)M * K), *rw = rounded_copy(w, (size_t)N * K);
  g_cpu.ops->matmul_bwd(be, dinp, dw, NULL, rd, SD_F32, ri, SD_F32, rw, M, K, N, accumulate_dinp);
  if (dbias)  // the column sums of dout as stored, in fp32
    g_cpu.ops->matmul_bwd(be, NULL, NULL, dbias, dout, dout_t, inp, inp_t, w, M, K, N, 0);
  free(rd);
  free(ri);
  free(rw);
}

static void sim_attention_fwd(sd_backend *be, void *out, float *lse, const void *qkv,
                              sd_dtype t, int B, int T, int NH, int HD) {
  if (!g_sim_bf16 || !g_sim_attention) {
    g_cpu.ops->attention_fwd(be, out, lse, qkv, t, B, T, NH, HD);
    return;
  }
  float *rq = rounded_input(qkv, t, (size_t)B * T * 3 * NH * HD);
  float *o32 = sd_cpu_out(out, t, (size_t)B * T * NH * HD);
  g_cpu.ops->attention_fwd(be, o32, lse, rq, SD_F32, B, T, NH, HD);
  sd_cpu_store(out, t, o32, (size_t)B * T * NH * HD);
  free(rq);
}

static void sim_attention_bwd(sd_backend *be, float *dqkv, const float *dout, const void *qkv,
                              const void *out, sd_dtype t, const float *lse, int B, int T,
                              int NH, int HD) {
  if (!g_sim_bf16 || !g_sim_attention) {
    g_cpu.ops->attention_bwd(be, dqkv, dout, qkv, out, t, lse, B, T, NH, HD);
    return;
  }
  const size_t n_out = (size_t)B * T * NH * HD;
  float *rq = rounded_input(qkv, t, 3 * n_out), *rd = rounded_copy(dout, n_out);
  const float *o32 = sd_cpu_load(out, t, n_out);  // (rq is fp32: everything goes in as fp32)
  g_cpu.ops->attention_bwd(be, dqkv, rd, rq, o32, SD_F32, lse, B, T, NH, HD);
  sd_cpu_unload(out, o32);
  free(rq);
  free(rd);
}

// Planted faults (SD_GPU_SIM_BUG=unwritten|guard|noacc|nondet|input|guard16|gradscale), to see
// that the tests catch each kind: an element never written, a write past the end, = instead of
// +=, results that change between runs, an input overwritten, a bf16 write past the end, a
// gradient 5% off (edm_loss_bwd: the whole training step's gradients scale with it).
static const char *g_sim_bug = "";
static unsigned g_sim_bug_calls = 0;

static void bug_gelu_fwd(sd_backend *be, float *out, const float *x, size_t n) {
  g_cpu.ops->gelu_fwd(be, out, x, n > 1 ? n - 1 : n);  // the last element is never written
}
static void bug_copy(sd_backend *be, void *dst, const void *src, size_t bytes) {
  g_cpu.ops->copy(be, dst, src, bytes);
  memset((char *)dst + bytes, 0, 4);  // 4 bytes past the end
}
static void bug_axpy(sd_backend *be, float *y, const float *x, size_t n, float a) {
  for (size_t i = 0; i < n; i++) y[i] = a * x[i];  // = instead of +=
  (void)be;
}
static void bug_scatter_add(sd_backend *be, float *x, const float *sub, const int32_t *idx,
                            int B, int T, int Tk, int D) {
  g_cpu.ops->scatter_add_tokens(be, x, sub, idx, B, T, Tk, D);
  if (++g_sim_bug_calls % 2) x[idx[0] * D] = nextafterf(x[idx[0] * D], INFINITY);
}
static void bug_scale_rows(sd_backend *be, float *out, const float *x, const float *sc, int B,
                           size_t n) {
  g_cpu.ops->scale_rows(be, out, x, sc, B, n);
  ((float *)x)[0] = 1.0f;  // an input overwritten
}

static void bug_lnmod_fwd(sd_backend *be, void *out, sd_dtype out_t, float *mean, float *rstd,
                          const float *x, const float *shift, const float *scale,
                          int mod_stride, int B, int T, int D, float eps) {
  g_cpu.ops->lnmod_fwd(be, out, out_t, mean, rstd, x, shift, scale, mod_stride, B, T, D, eps);
  if (out_t == SD_BF16) ((uint16_t *)out)[(size_t)B * T * D] = 0;  // one bf16 past the end
}

static void bug_edm_loss_bwd(sd_backend *be, float *dF, const float *D, const float *x0,
                             const float *c_out, const float *weight, const float *mask, int B,
                             size_t n, float scale) {
  g_cpu.ops->edm_loss_bwd(be, dF, D, x0, c_out, weight, mask, B, n, scale);
  for (size_t i = 0; i < (size_t)B * n; i++) dF[i] *= 1.05f;  // a gradient 5% too large
}

static void plant_bug(const char *bug) {
  g_sim_bug = bug;
  if (!strcmp(bug, "unwritten")) g_sim_ops.gelu_fwd = bug_gelu_fwd;
  else if (!strcmp(bug, "guard")) g_sim_ops.copy = bug_copy;
  else if (!strcmp(bug, "noacc")) g_sim_ops.axpy = bug_axpy;
  else if (!strcmp(bug, "nondet")) g_sim_ops.scatter_add_tokens = bug_scatter_add;
  else if (!strcmp(bug, "input")) g_sim_ops.scale_rows = bug_scale_rows;
  else if (!strcmp(bug, "guard16")) g_sim_ops.lnmod_fwd = bug_lnmod_fwd;
  else if (!strcmp(bug, "gradscale")) g_sim_ops.edm_loss_bwd = bug_edm_loss_bwd;
  else g_sim_bug = "";
  if (g_sim_bug[0]) printf("planted fault: %s\n", g_sim_bug);
}

int sd_gpu_is_sim(const sd_backend *be) { return be->ops == &g_sim_ops; }

static int sim_open(sd_backend *be, const char *mode, char *err, size_t errlen) {
  if (strcmp(mode, "matmul") != 0 && strcmp(mode, "matmul+attention") != 0) {
    snprintf(err, errlen, "unknown simulation mode '%s' (known: matmul, matmul+attention)", mode);
    return 2;
  }
  sd_backend_cpu_init(&g_cpu, 0);
  g_sim_ops = *g_cpu.ops;
  g_sim_ops.matmul_fwd = sim_matmul_fwd;
  g_sim_ops.matmul_bwd = sim_matmul_bwd;
  g_sim_ops.attention_fwd = sim_attention_fwd;
  g_sim_ops.attention_bwd = sim_attention_bwd;
  g_sim_attention = strcmp(mode, "matmul+attention") == 0;
  const char *bug = getenv("SD_GPU_SIM_BUG");
  if (bug) plant_bug(bug);
  g_sim_bf16 = 1;
  *be = g_cpu;
  be->name = "sim";
  be->ops = &g_sim_ops;
  be->act_dtype = SD_BF16;
  printf("device under test: CPU stand-in (bf16 rounds the inputs of the matmuls%s and "
         "stores activations in bf16; fp32 moves matmul outputs by one ulp), %d threads\n",
         g_sim_attention ? " and of attention" : "", be->num_threads);
  return 0;
}

// ---- opening the device ---------------------------------------------------------------------

int sd_gpu_open(sd_backend *be, const char *sim_mode, int device, char *err, size_t errlen) {
  if (sim_mode) return sim_open(be, sim_mode, err, errlen);
  err[0] = '\0';
  int rc = sd_backend_cuda_init(be, device, err, errlen);
  if (rc == 0) {
    printf("device under test: CUDA backend '%s' on device %d\n", be->name ? be->name : "?",
           device);
    return 0;
  }
  if (strstr(err, "no CUDA device") || strstr(err, "no CUDA backend")) return 77;
  char msg[512];
  snprintf(msg, sizeof msg, "%s", err);
  snprintf(err, errlen, "the CUDA backend did not start on device %d (rc %d): %s", device, rc,
           msg);
  return 1;
}

void sd_gpu_open_or_skip(sd_backend *be, const char *sim_mode, const char *test_name) {
  char err[640] = "";
  int rc = sd_gpu_open(be, sim_mode, 0, err, sizeof err);
  if (rc == 0) return;
  if (rc == 77) printf("skip: %s: %s\n", test_name, err);
  else printf("FAIL %s: %s\n", test_name, err);
  fflush(stdout);
  exit(rc);
}

void sd_gpu_describe(sd_backend *be, char *buf, size_t len) {
  if (sd_gpu_is_sim(be)) {
    snprintf(buf, len,
             "CPU stand-in of the CUDA backend (%d threads): the CPU ops, with matmul inputs "
             "rounded to bf16%s at precision bf16 and activations stored as %s\n"
             "matmul: the CPU backend's sgemm on those inputs (fp32: outputs moved by one ulp)\n"
             "attention: the CPU backend's%s",
             be->num_threads, g_sim_attention ? " (attention inputs too)" : "",
             sd_dtype_name(be->act_dtype), g_sim_attention ? ", on bf16-rounded inputs" : "");
    return;
  }
  sd_backend_cuda_describe(be, buf, len);
}

void sd_gpu_close(sd_backend *be) {
  if (sd_gpu_is_sim(be)) {
    sd_backend_cpu_destroy(&g_cpu);
    memset(be, 0, sizeof *be);
  } else {
    sd_backend_cuda_destroy(be);
  }
}

int sd_gpu_set_precision(sd_backend *be, const char *precision, char *err, size_t errlen) {
  if (strcmp(precision, "fp32") != 0 && strcmp(precision, "bf16") != 0) {
    snprintf(err, errlen, "unknown precision '%s'", precision);
    return -1;
  }
  if (sd_gpu_is_sim(be)) {
    g_sim_bf16 = strcmp(precision, "bf16") == 0;
    be->act_dtype = g_sim_bf16 ? SD_BF16 : SD_F32;  // as the CUDA backend's precision does
    return 0;
  }
  err[0] = '\0';
  int rc = sd_backend_cuda_set_precision(be, precision, err, errlen);
  if (rc != 0 && !err[0]) snprintf(err, errlen, "returned %d", rc);
  return rc == 0 ? 0 : -1;
}

// ---- measures -----------------------------------------------------------------------------

static int same_bits(float a, float b) {
  uint32_t x, y;
  memcpy(&x, &a, sizeof x);
  memcpy(&y, &b, sizeof y);
  return x == y;
}

static double nmse_core(const float *a, const float *ref, const float *base, size_t n,
                        size_t *worst) {
  double num = 0.0, den = 0.0, wd = -1.0;
  size_t w = 0;
  int nonfinite = 0;
  for (size_t i = 0; i < n; i++) {
    double b = base ? (double)base[i] : 0.0;
    if (same_bits(a[i], ref[i])) {
      if (isfinite(ref[i]) && isfinite(b)) den += ((double)ref[i] - b) * ((double)ref[i] - b);
      continue;
    }
    if (!isfinite(a[i]) || !isfinite(ref[i]) || !isfinite(b)) {
      if (!nonfinite) w = i;
      nonfinite = 1;
      continue;
    }
    double d = (double)a[i] - (double)ref[i], r = (double)ref[i] - b;
    num += d * d;
    den += r * r;
    if (!nonfinite && fabs(d) > wd) {
      wd = fabs(d);
      w = i;
    }
  }
  if (worst) *worst = w;
  if (nonfinite) return INFINITY;
  if (num == 0.0) return 0.0;
  if (den == 0.0) return INFINITY;
  return num / den;
}

double sd_gpu_nmse(const float *a, const float *ref, size_t n, size_t *worst) {
  return nmse_core(a, ref, NULL, n, worst);
}

double sd_gpu_nmse_delta(const float *a, const float *ref, const float *base, size_t n,
                      size_t *worst) {
  return nmse_core(a, ref, base, n, worst);
}

