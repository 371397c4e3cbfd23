// CPU matmul (linear layer) forward and backward on BLAS sgemm.
#include "cpu_ops.h"

#include <cblas.h>
#include <string.h>

void sd_cpu_matmul_fwd(sd_backend *be, float *out, const float *inp, const float *w,
                       const float *bias, int M, int K, int N) {
  (void)be;
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
                       const float *dout, const float *inp, const float *w, int M, int K,
                       int N, int accumulate_dinp) {
  (void)be;
  if (dinp)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f, dout, N, w, K,
                accumulate_dinp ? 1.0f : 0.0f, dinp, K);
  if (dw)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1.0f, dout, N, inp, K, 1.0f,
                dw, K);
  if (dbias) colsum_add(dbias, dout, M, N);
}

// The MLP's fused forms on the CPU are the two ops in sequence, called through the backend's
// table (so a test that swaps one of them sees it here too): the reference the CUDA epilogue
// versions are tested against.
void sd_cpu_matmul_gelu_fwd(sd_backend *be, float *out, float *pre, const float *inp,
                            const float *w, const float *bias, int M, int K, int N) {
  be->ops->matmul_fwd(be, pre, inp, w, bias, M, K, N);
  be->ops->gelu_fwd(be, out, pre, (size_t)M * N);
}

void sd_cpu_matmul_bwd_dgelu(sd_backend *be, float *dinp, float *dw, float *dbias,
                             const float *dout, const float *inp, const float *w,
                             const float *pre, int M, int K, int N) {
  be->ops->matmul_bwd(be, dinp, dw, dbias, dout, inp, w, M, K, N, 0);
  be->ops->gelu_bwd(be, dinp, dinp, pre, (size_t)M * K);
}
