// CPU multi-head attention (non-causal), forward and backward. One (batch, head) pair per
// OpenMP task; scores live in a per-thread T x T scratch, never in the saved activations:
// the backward recomputes probabilities from the saved log-sum-exp.
#include "cpu_ops.h"
#include "error.h"
#include "storage.h"

#include "fast_math.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>

// Per-thread scratch from the backend's reusable workspace.
static float *scratch_alloc(sd_backend *be, size_t per_thread, int *nthreads_out) {
  int nt = omp_get_max_threads();
  *nthreads_out = nt;
  return sd_cpu_workspace(be, sizeof(float) * per_thread * (size_t)nt);
}

static void attention_fwd_f32(sd_backend *be, float *out, float *lse, const float *qkv, int B,
                              int T, int NH, int HD) {
  const int D = NH * HD, ld = 3 * D;
  const float scale = 1.0f / sqrtf((float)HD);
  int nt;
  float *scratch = scratch_alloc(be, (size_t)T * T, &nt);
#pragma omp parallel for schedule(static)
  for (int bh = 0; bh < B * NH; bh++) {
    int b = bh / NH, h = bh % NH;
    float *S = scratch + (size_t)omp_get_thread_num() * T * T;  // (T, T)
    const float *q = qkv + (size_t)b * T * ld + h * HD;
    const float *k = q + D, *v = q + 2 * D;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HD, scale, q, ld, k, ld, 0.0f,
                S, T);
    for (int i = 0; i < T; i++) {
      float *row = S + (size_t)i * T;
      float mx = row[0];
#pragma omp simd reduction(max : mx)
      for (int j = 1; j < T; j++) mx = row[j] > mx ? row[j] : mx;
      float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
      for (int j = 0; j < T; j++) {
        row[j] = sd_expf(row[j] - mx);
        sum += row[j];
      }
      float inv = 1.0f / sum;
      for (int j = 0; j < T; j++) row[j] *= inv;
      lse[(size_t)bh * T + i] = mx + logf(sum);
    }
    float *o = out + (size_t)b * T * D + h * HD;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HD, T, 1.0f, S, T, v, ld, 0.0f,
                o, D);
  }
}

static void attention_bwd_f32(sd_backend *be, float *dqkv, const float *dout,
                              const float *qkv, const float *out, const float *lse, int B,
                              int T, int NH, int HD) {
  const int D = NH * HD, ld = 3 * D;
  const float scale = 1.0f / sqrtf((float)HD);
  int nt;
  float *scratch = scratch_alloc(be, (size_t)2 * T * T + T, &nt);
#pragma omp parallel for schedule(static)
  for (int bh = 0; bh < B * NH; bh++) {
    int b = bh / NH, h = bh % NH;
    float *P = scratch + (size_t)omp_get_thread_num() * (2 * (size_t)T * T + T);  // (T, T)
    float *dP = P + (size_t)T * T;                                                // (T, T)
    float *delta = dP + (size_t)T * T;                                            // (T)
    const float *q = qkv + (size_t)b * T * ld + h * HD;
    const float *k = q + D, *v = q + 2 * D;
    const float *o = out + (size_t)b * T * D + h * HD;
    const float *dO = dout + (size_t)b * T * D + h * HD;
    float *dq = dqkv + (size_t)b * T * ld + h * HD;
    float *dk = dq + D, *dv = dq + 2 * D;
    const float *L = lse + (size_t)bh * T;
    // P = exp(scale * q k^T - lse)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HD, scale, q, ld, k, ld, 0.0f,
                P, T);
    for (int i = 0; i < T; i++) {
      float *row = P + (size_t)i * T;
#pragma omp simd
      for (int j = 0; j < T; j++) row[j] = sd_expf(row[j] - L[i]);
      float s = 0.0f;
      for (int d = 0; d < HD; d++) s += dO[(size_t)i * D + d] * o[(size_t)i * D + d];
      delta[i] = s;
    }
    // dV = P^T dO ; dP = dO V^T
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HD, T, 1.0f, P, T, dO, D, 0.0f,
                dv, ld);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HD, 1.0f, dO, D, v, ld, 0.0f,
                dP, T);
    // dS = P * (dP - delta), kept in dP
    for (int i = 0; i < T; i++) {
      float *pr = P + (size_t)i * T, *dr = dP + (size_t)i * T;
      for (int j = 0; j < T; j++) dr[j] = pr[j] * (dr[j] - delta[i]);
    }
    // dQ = scale dS K ; dK = scale dS^T Q
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HD, T, scale, dP, T, k, ld, 0.0f,
                dq, ld);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HD, T, scale, dP, T, q, ld, 0.0f,
                dk, ld);
  }
}

void sd_cpu_attention_fwd(sd_backend *be, void *out, float *lse, const void *qkv, sd_dtype t,
                          int B, int T, int NH, int HD) {
  const size_t n_out = (size_t)B * T * NH * HD, n_qkv = 3 * n_out;
  const float *qkv32 = sd_cpu_load(qkv, t, n_qkv);  // (B, T, 3D)
  float *out32 = sd_cpu_out(out, t, n_out);         // (B, T, D)
  attention_fwd_f32(be, out32, lse, qkv32, B, T, NH, HD);
  sd_cpu_store(out, t, out32, n_out);
  sd_cpu_unload(qkv, qkv32);
}

void sd_cpu_attention_bwd(sd_backend *be, float *dqkv, const float *dout, const void *qkv,
                          const void *out, sd_dtype t, const float *lse, int B, int T, int NH,
                          int HD) {
  const size_t n_out = (size_t)B * T * NH * HD, n_qkv = 3 * n_out;
  const float *qkv32 = sd_cpu_load(qkv, t, n_qkv), *out32 = sd_cpu_load(out, t, n_out);
  attention_bwd_f32(be, dqkv, dout, qkv32, out32, lse, B, T, NH, HD);
  sd_cpu_unload(qkv, qkv32);
  sd_cpu_unload(out, out32);
}
