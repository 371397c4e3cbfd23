// CPU matmul (linear layer) forward and backward on BLAS sgemm (fp32 products; bf16-stored
// activations are widened first and bf16 outputs rounded once, see storage.h).
#include "cpu_ops.h"
#include "storage.h"

#include <cblas.h>
#include <string.h>

static void matmul_fwd_f32(float *out, const float *inp, const float *w, const float *bias,
                           int M, int K, int N) {
  float beta = 0.0f;
  if (bias) {
    // out (M, N) starts as the bias in every row, then sgemm accumulates onto it.
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) memcpy(out + (size_t)m * N, bias, sizeof(float) * (size_t)N);
    beta = 1.0f;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, inp, K, w, K, beta,
              out, N);
}

void sd_cpu_matmul_fwd(sd_backend *be, void *out, sd_dtype out_t, const void *inp,
                       sd_dtype inp_t, const float *w, const float *bias, int M, int K, int N) {
  (void)be;
  const float *in32 = sd_cpu_load(inp, inp_t, (size_t)M * K);  // (M, K)
  float *out32 = sd_cpu_out(out, out_t, (size_t)M * N);        // (M, N)
  matmul_fwd_f32(out32, in32, w, bias, M, K, N);
  sd_cpu_store(out, out_t, out32, (size_t)M * N);
  sd_cpu_unload(inp, in32);
}

// dbias (N) += column sums of dout (M, N); each column summed over m in order, so the
// result does not depend on the thread count.
static void colsum_add(float *dbias, const float *dout, int M, int N) {
  enum { CB = 64 };
  int nblocks = (N + CB - 1) / CB;
#pragma omp parallel for schedule(static)
  for (int blk = 0; blk < nblocks; blk++) {
    int n0 = blk * CB, n1 = n0 + CB < N ? n0 + CB : N;
    float acc[CB] = {0};
    for (int m = 0; m < M; m++) {
      const float *row = dout + (size_t)m * N;
      for (int n = n0; n < n1; n++) acc[n - n0] += row[n];
    }
    for (int n = n0; n < n1; n++) dbias[n] += acc[n - n0];
  }
}

void sd_cpu_matmul_bwd(sd_backend *be, float *dinp, float *dw, float *dbias,
                       const void *dout_any, sd_dtype dout_t, const void *inp_any,
                       sd_dtype inp_t, const float *w, int M, int K, int N,
                       int accumulate_dinp) {
  (void)be;
  const float *inp = dw ? sd_cpu_load(inp_any, inp_t, (size_t)M * K) : NULL;  // (M, K)
  const float *dout = sd_cpu_load(dout_any, dout_t, (size_t)M * N);           // (M, N)
  if (dinp)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f, dout, N, w, K,
                accumulate_dinp ? 1.0f : 0.0f, dinp, K);
  if (dw)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1.0f, dout, N, inp, K, 1.0f,
                dw, K);
  if (dbias) colsum_add(dbias, dout, M, N);
  sd_cpu_unload(inp_any, inp);
  sd_cpu_unload(dout_any, dout);
}

// The MLP's fused forms on the CPU are the two ops in sequence, called through the backend's
// table (so a test that swaps one of them sees it here too): the reference the CUDA epilogue
// versions are tested against.
// In bf16 storage both outputs come from the fp32 pre-activation: out = bf16(gelu(pre)),
// pre = bf16(pre), as the cuBLASLt epilogue does.
void sd_cpu_matmul_gelu_fwd(sd_backend *be, void *out, void *pre, const void *inp, sd_dtype t,
                            const float *w, const float *bias, int M, int K, int N) {
  const size_t n = (size_t)M * N;
  float *pre32 = sd_cpu_out(pre, t, n), *out32 = sd_cpu_out(out, t, n);  // (M, N)
  be->ops->matmul_fwd(be, pre32, SD_F32, inp, t, w, bias, M, K, N);
  be->ops->gelu_fwd(be, out32, pre32, n);
  sd_cpu_store(out, t, out32, n);
  sd_cpu_store(pre, t, pre32, n);
}

void sd_cpu_matmul_bwd_dgelu(sd_backend *be, void *dinp, float *dw, float *dbias,
                             const float *dout, const void *inp, const float *w,
                             const void *pre, sd_dtype t, int M, int K, int N) {
  const size_t n = (size_t)M * K;
  float *d32 = sd_cpu_out(dinp, t, n);  // (M, K)
  be->ops->matmul_bwd(be, d32, dw, dbias, dout, SD_F32, inp, t, w, M, K, N, 0);
  const float *pre32 = sd_cpu_load(pre, t, n);  // (M, K)
  be->ops->gelu_bwd(be, d32, d32, pre32, n);
  sd_cpu_unload(pre, pre32);
  sd_cpu_store(dinp, t, d32, n);
}
