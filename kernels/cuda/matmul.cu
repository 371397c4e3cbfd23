// CUDA matmul (linear layer) forward and backward on cuBLASLt, with the semantics of
// kernels/cpu/matmul.c (see ops.h):
//   fwd: out (M, N) = inp (M, K) @ w (N, K)^T + bias (N)
//   bwd: dinp (M, K) = / += dout (M, N) @ w (N, K);  dw (N, K) += dout^T @ inp;
//        dbias (N) += column sums of dout.  NULL outputs are not computed.
// All buffers are row-major. Weights, biases, gradients are fp32; the activation arguments
// (inp, out of the forward, inp of the backward, the GELU pre-activation) are fp32 or bf16 as
// their sd_dtype says (ops.h). Precision (sd_cuda_state.precision):
//   SD_PREC_FP32: A/B/C/D fp32, CUBLAS_COMPUTE_32F (true fp32 products, no TF32).
//   SD_PREC_BF16: A/B bf16, CUBLAS_COMPUTE_32F (fp32 accumulation). An operand already stored
//                 in bf16 is used as it is; fp32 operands (the weights, dout) are rounded to
//                 bf16 (nearest even) into scratch by a small kernel. D is fp32, or bf16 when
//                 the output is stored in bf16 (rounded once, in the epilogue).
// A bf16-stored activation input makes the GEMM a bf16 one at either precision (cuBLASLt
// multiplies A and B of one type). cuBLASLt's epilogue vectors (bias, GELU aux) have D's type:
// a bf16 D gets a bf16 copy of the bias (the one place a bias is rounded before it is added)
// and a bf16 pre-activation aux; the DGELU epilogue (fp32 D) is used only with an fp32 aux,
// and a bf16 pre-activation takes the separate GELU-backward kernel instead. dbias never goes
// through bf16: a deterministic two-pass column sum of the fp32 dout.
//
// Row-major vs column-major. cuBLASLt is column-major. A row-major X (R, C) with row stride C
// is, byte for byte, the column-major matrix X^T of shape (C x R) with leading dimension C.
// So every product below is written for the transposes: a row-major Y = P @ Q is computed as
// the column-major Y^T = Q^T @ P^T, and each operand's cuBLASLt layout is (rows x cols, ld) of
// the stored column-major matrix, before the transpose op is applied.
#include "cuda_internal.h"

extern "C" {
#include "error.h"
}

#include <cuda_bf16.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// ---- cuBLASLt plans: descriptors + the best of several heuristic algorithms, per shape -----
// The heuristic is asked for up to MM_CANDIDATES algorithms; on a shape's first call each is
// timed a few times on the call's own operands (into a scratch output) and the fastest kept,
// unless SD_CUDA_MATMUL_TUNE=0 (the heuristic's first, the same in every process) or the
// stream is being captured. The choice is fixed for the process, so reruns are bitwise equal;
// two processes may choose differently when timings tie. The cache never evicts.

typedef struct mm_key {
  int m, n, k;          // column-major GEMM: D (m x n) = op(A) (m x k) @ op(B) (k x n)
  int transa, transb;   // cublasOperation_t
  int precision;        // enum sd_cuda_precision (the A/B type)
  int d_type;           // sd_dtype of C = D, and of the bias and aux
  int bias;             // CUBLASLT_EPILOGUE_BIAS with a bias of length m
  int epi;              // enum mm_epi: GELU_AUX(_BIAS) or DGELU with an aux (m x n, ld m)
  int align_a, align_b, align_d, align_bias, align_aux;  // pointer alignment in bytes (<= 256)
} mm_key;

// Activation epilogues: the forward GELU (D = gelu(AB + bias), aux = AB + bias, the
// pre-activation the backward needs) and the backward DGELU (D = AB * gelu'(aux)). cuBLASLt's
// GELU is the tanh approximation, the one DiT uses (kernels/cpu/activations.c).
enum mm_epi { MM_EPI_NONE = 0, MM_EPI_GELU_AUX = 1, MM_EPI_DGELU = 2 };

enum { MM_CANDIDATES = 8 };

typedef struct mm_plan {
  mm_key key;
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t a, b, d;  // C shares D's layout and pointer (C == D, in place)
  cublasLtMatmulAlgo_t algo;       // the one in use
  int ok;                          // the heuristic returned an algorithm
  cublasLtMatmulAlgo_t cand[MM_CANDIDATES];  // the heuristic's, best first
  int ncand;
  int tuned;                       // the candidates were timed (or tuning was skipped)
} mm_plan;

typedef struct mm_cache {
  mm_plan **plans;                 // every shape seen (a DiT has a few dozen), never evicted
  int count, cap;
  long tuned_keys;                 // shapes timed, and their summed times (first, chosen)
  double ms_first, ms_chosen;
  int tune_skipped_capture;
  // What ran (for sd_cuda_matmul_describe): cuBLASLt calls, and calls refused with an
  // epilogue or a bf16 D that fell back (fp32 scratch or separate kernels), with the first.
  long gemms, fallbacks;
  char first_fallback[160];
} mm_cache;

static int ptr_align(const void *p) {
  uintptr_t a = (uintptr_t)p;
  if (!a) return 256;
  int al = 1;
  while (al < 256 && !(a & (uintptr_t)al)) al <<= 1;
  return al;
}

static void plan_destroy(mm_plan *p) {
  if (p->a) cublasLtMatrixLayoutDestroy(p->a);
  if (p->b) cublasLtMatrixLayoutDestroy(p->b);
  if (p->d) cublasLtMatrixLayoutDestroy(p->d);
  if (p->desc) cublasLtMatmulDescDestroy(p->desc);
  memset(p, 0, sizeof *p);
}

void sd_cuda_matmul_release(sd_backend *be) {
  sd_cuda_state *st = sd_cuda_st(be);
  if (!st || !st->matmul_plans) return;
  mm_cache *c = (mm_cache *)st->matmul_plans;
  for (int i = 0; i < c->count; i++) {
    plan_destroy(c->plans[i]);
    free(c->plans[i]);
  }
  free(c->plans);
  free(c);
  st->matmul_plans = NULL;
}

static const char *op_name(int t) { return t == CUBLAS_OP_T ? "T" : "N"; }

static int act_epilogues_on(void);

// SD_CUDA_MATMUL_TUNE=0: no timing, the heuristic's first algorithm.
static int tune_on(void) {
  static int on = -1;
  if (on < 0) {
    const char *e = getenv("SD_CUDA_MATMUL_TUNE");
    on = !(e && !strcmp(e, "0"));
  }
  return on;
}

static const char *epi_name(const mm_key *k) {
  if (k->epi == MM_EPI_DGELU) return "DGELU";
  if (k->epi == MM_EPI_GELU_AUX) return k->bias ? "GELU_AUX_BIAS" : "GELU_AUX";
  return k->bias ? "BIAS" : "none";
}

// Counts a refused epilogue or bf16-D plan; the first one is kept for the description.
static void note_fallback(mm_cache *c, const mm_key *k, const char *why) {
  if (c->fallbacks++ == 0)
    snprintf(c->first_fallback, sizeof c->first_fallback,
             "%d x %d x %d, epilogue %s, %s D: %s", k->m, k->n, k->k, epi_name(k),
             k->d_type == SD_BF16 ? "bf16" : "fp32", why);
}

extern "C" int sd_cuda_matmul_describe(sd_backend *be, char *buf, size_t len) {
  sd_cuda_state *st = sd_cuda_st(be);
  const mm_cache *c = (const mm_cache *)st->matmul_plans;
  char tune[320];
  if (!tune_on())
    snprintf(tune, sizeof tune, "the heuristic's first algorithm (SD_CUDA_MATMUL_TUNE=0)");
  else
    snprintf(tune, sizeof tune, "best of up to %d heuristic algorithms timed per shape "
             "(%ld shapes timed: %.3f ms for the first algorithms, %.3f ms for the chosen, "
             "speedup %.3fx; %d shapes untimed, first seen during stream capture)",
             MM_CANDIDATES, c ? c->tuned_keys : 0L, c ? c->ms_first : 0.0,
             c ? c->ms_chosen : 0.0, c && c->ms_chosen > 0.0 ? c->ms_first / c->ms_chosen : 1.0,
             c ? c->tune_skipped_capture : 0);
  int n = snprintf(buf, len,
                   "matmul: cuBLASLt %zu, %s inputs with fp32 accumulation, GELU/DGELU "
                   "epilogues %s, %s, %d plans, %ld calls, %ld fallbacks%s%s%s",
                   cublasLtGetVersion(), st->precision == SD_PREC_BF16 ? "bf16" : "fp32",
                   act_epilogues_on() ? "on" : "off (SD_CUDA_ACT_EPILOGUES=0)", tune,
                   c ? c->count : 0, c ? c->gemms : 0L, c ? c->fallbacks : 0L,
                   c && c->fallbacks ? " (first: " : "", c && c->fallbacks ? c->first_fallback : "",
                   c && c->fallbacks ? ")" : "");
  return n < 0 ? -1 : 0;
}

// The plan for `key`, built (descriptors + one heuristic query) on first use. `bias` is set in
// the descriptor before the query because the heuristic reads its alignment from the pointer.
static mm_plan *get_plan(sd_cuda_state *st, const mm_key *key, const void *bias,
                         const void *aux) {
  mm_cache *c = (mm_cache *)st->matmul_plans;
  if (!c) {
    c = (mm_cache *)sd_xcalloc(1, sizeof *c, "cuBLASLt plan cache");
    st->matmul_plans = c;
  }
  for (int i = 0; i < c->count; i++)
    if (memcmp(&c->plans[i]->key, key, sizeof *key) == 0) return c->plans[i];
  if (c->count == c->cap) {
    c->cap = c->cap ? 2 * c->cap : 32;
    mm_plan **grown = (mm_plan **)realloc(c->plans, sizeof *c->plans * (size_t)c->cap);
    if (!grown) SD_FATAL("out of memory for the cuBLASLt plan cache (%d plans)", c->cap);
    c->plans = grown;
  }
  mm_plan *p = (mm_plan *)sd_xcalloc(1, sizeof *p, "cuBLASLt plan");
  c->plans[c->count++] = p;
  p->key = *key;

  const cudaDataType_t ab_type = key->precision == SD_PREC_BF16 ? CUDA_R_16BF : CUDA_R_32F;
  const cudaDataType_t d_type = key->d_type == SD_BF16 ? CUDA_R_16BF : CUDA_R_32F;
  SD_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  int32_t ta = key->transa, tb = key->transb;
  SD_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta,
                                                 sizeof ta));
  SD_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb,
                                                 sizeof tb));
  if (key->epi != MM_EPI_NONE) {
    cublasLtEpilogue_t epi = key->epi == MM_EPI_DGELU ? CUBLASLT_EPILOGUE_DGELU
                             : key->bias              ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS
                                                      : CUBLASLT_EPILOGUE_GELU_AUX;
    SD_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                                   sizeof epi));
    const int64_t aux_ld = key->m;
    SD_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux));
    SD_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD,
                                                   &aux_ld, sizeof aux_ld));
  }
  if (key->bias) {  // (the bias has D's type, cuBLASLt's default)
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    if (key->epi == MM_EPI_NONE)  // else GELU_AUX_BIAS, set above
      SD_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                     &epi, sizeof epi));
    SD_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                   &bias, sizeof bias));
  }
  // Stored (pre-op) shapes: A is m x k, or k x m when transposed; B is k x n, or n x k.
  // Every matrix here is contiguous, so ld = its stored row count.
  const uint64_t a_rows = key->transa == CUBLAS_OP_N ? key->m : key->k;
  const uint64_t a_cols = key->transa == CUBLAS_OP_N ? key->k : key->m;
  const uint64_t b_rows = key->transb == CUBLAS_OP_N ? key->k : key->n;
  const uint64_t b_cols = key->transb == CUBLAS_OP_N ? key->n : key->k;
  SD_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->a, ab_type, a_rows, a_cols, (int64_t)a_rows));
  SD_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->b, ab_type, b_rows, b_cols, (int64_t)b_rows));
  SD_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->d, d_type, (uint64_t)key->m, (uint64_t)key->n,
                                             (int64_t)key->m));

  cublasLtMatmulPreference_t pref;
  SD_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  uint64_t ws = st->lt_workspace_bytes;
  SD_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
  // The default assumes 256-byte-aligned buffers; callers pass pointers into larger buffers.
  uint32_t al_a = (uint32_t)key->align_a, al_b = (uint32_t)key->align_b,
           al_d = (uint32_t)key->align_d;
  SD_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a));
  SD_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b));
  SD_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_d, sizeof al_d));
  SD_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d, sizeof al_d));

  cublasLtMatmulHeuristicResult_t res[MM_CANDIDATES];
  memset(res, 0, sizeof res);
  int found = 0;
  cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(st->lt, p->desc, p->a, p->b, p->d, p->d,
                                                    pref, MM_CANDIDATES, res, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  // NOT_SUPPORTED = no algorithm for this configuration: recorded (p->ok = 0) so the caller
  // can fall back (epilogue, bf16 D) or report the shape; so is INVALID_VALUE for a plan with
  // an epilogue or a bf16 D (a type combination this library refuses); anything else is fatal.
  const int optional = key->bias || key->epi != MM_EPI_NONE || key->d_type != SD_F32;
  if (s != CUBLAS_STATUS_NOT_SUPPORTED && !(optional && s == CUBLAS_STATUS_INVALID_VALUE))
    SD_CUBLAS_CHECK(s);
  for (int i = 0; s == CUBLAS_STATUS_SUCCESS && i < found && i < MM_CANDIDATES; i++)
    if (res[i].state == CUBLAS_STATUS_SUCCESS) p->cand[p->ncand++] = res[i].algo;
  p->ok = p->ncand > 0;
  if (p->ok) p->algo = p->cand[0];
  return p;
}

// The first call of a shape: each candidate algorithm timed (one warm-up, three timed calls)
// on this call's A, B, bias and, for DGELU, aux, into a scratch D (and a scratch aux for the
// GELU forward, whose aux is an output), so the real output is untouched; the fastest kept.
static void tune(sd_cuda_state *st, mm_cache *c, mm_plan *p, const void *A, const void *B,
                 float beta, int epi, const void *aux) {
  p->tuned = 1;
  if (!tune_on() || p->ncand < 2) return;
  cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
  SD_CUDA_CHECK(cudaStreamIsCapturing(st->stream, &cap));
  if (cap != cudaStreamCaptureStatusNone) {
    c->tune_skipped_capture++;
    return;
  }
  const size_t bytes = (size_t)p->key.m * (size_t)p->key.n * (p->key.d_type == SD_BF16 ? 2 : 4);
  void *dt = NULL, *xt = NULL;
  SD_CUDA_CHECK(cudaMalloc(&dt, bytes));
  SD_CUDA_CHECK(cudaMemsetAsync(dt, 0, bytes, st->stream));
  if (epi == MM_EPI_GELU_AUX) {
    SD_CUDA_CHECK(cudaMalloc(&xt, bytes));
    SD_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &xt, sizeof xt));
  }
  cudaEvent_t e0, e1;
  SD_CUDA_CHECK(cudaEventCreate(&e0));
  SD_CUDA_CHECK(cudaEventCreate(&e1));
  const float alpha = 1.0f;
  float ms[MM_CANDIDATES];
  int best = 0;
  for (int i = 0; i < p->ncand; i++) {
    ms[i] = INFINITY;
    cublasStatus_t s = CUBLAS_STATUS_SUCCESS;
    for (int r = 0; r < 4 && s == CUBLAS_STATUS_SUCCESS; r++) {
      if (r == 1) SD_CUDA_CHECK(cudaEventRecord(e0, st->stream));
      s = cublasLtMatmul(st->lt, p->desc, &alpha, A, p->a, B, p->b, &beta, dt, p->d, dt, p->d,
                         &p->cand[i], st->lt_workspace, st->lt_workspace_bytes, st->stream);
    }
    SD_CUDA_CHECK(cudaEventRecord(e1, st->stream));
    SD_CUDA_CHECK(cudaEventSynchronize(e1));
    if (s != CUBLAS_STATUS_SUCCESS) continue;  // this candidate refused: left out
    SD_CUDA_CHECK(cudaEventElapsedTime(&ms[i], e0, e1));
    ms[i] /= 3.0f;
    if (ms[i] < ms[best]) best = i;
  }
  if (epi == MM_EPI_GELU_AUX)
    SD_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux));
  SD_CUDA_CHECK(cudaEventDestroy(e0));
  SD_CUDA_CHECK(cudaEventDestroy(e1));
  SD_CUDA_CHECK(cudaFree(dt));
  if (xt) SD_CUDA_CHECK(cudaFree(xt));
  if (!isfinite(ms[best])) return;  // none ran: keep the first (its call reports the error)
  p->algo = p->cand[best];
  c->tuned_keys++;
  c->ms_first += isfinite(ms[0]) ? ms[0] : ms[best];
  c->ms_chosen += ms[best];
}

// D (m x n, column-major, ld m) = op(A) @ op(B) + beta * D (+ bias (m) broadcast over the n
// columns when bias != NULL), then the activation epilogue `epi` with aux (m x n, ld m; see
// mm_epi). A and B are fp32 or bf16 per `precision`; D, the bias and aux are stored as d_type.
// Returns 0, or -1 when an epilogue (bias or activation) or a bf16 D was asked for and
// cuBLASLt has no algorithm for it or refuses it (nothing was queued then).
static int lt_gemm_epi(sd_backend *be, int precision, cublasOperation_t transa,
                       cublasOperation_t transb, int m, int n, int k, const void *A,
                       const void *B, void *D, sd_dtype d_type, float beta, const void *bias,
                       int epi, const void *aux) {
  sd_cuda_state *st = sd_cuda_st(be);
  if (m <= 0 || n <= 0) return 0;
  if (k <= 0) {  // an empty sum: D = beta * D (beta is 0 or 1 here)
    if (bias || epi != MM_EPI_NONE || d_type != SD_F32) return -1;
    if (beta == 0.0f)
      SD_CUDA_CHECK(cudaMemsetAsync(D, 0, sizeof(float) * (size_t)m * (size_t)n, st->stream));
    return 0;
  }
  mm_key key;
  memset(&key, 0, sizeof key);
  key.m = m;
  key.n = n;
  key.k = k;
  key.transa = transa;
  key.transb = transb;
  key.precision = precision;
  key.d_type = d_type;
  key.bias = bias != NULL;
  key.epi = epi;
  key.align_a = ptr_align(A);
  key.align_b = ptr_align(B);
  key.align_d = ptr_align(D);
  key.align_bias = bias ? ptr_align(bias) : 0;
  key.align_aux = aux ? ptr_align(aux) : 0;
  mm_plan *p = get_plan(st, &key, bias, aux);
  mm_cache *cache = (mm_cache *)st->matmul_plans;
  if (p->ok && !p->tuned) tune(st, cache, p, A, B, beta, epi, aux);
  if (!p->ok) {
    if (bias || epi != MM_EPI_NONE || d_type != SD_F32) {
      note_fallback(cache, &key, "no algorithm");
      return -1;
    }
    SD_FATAL_HINT("try SD_CUDA_PRECISION=fp32, or report the shape",
                  "cuBLASLt found no algorithm for D (%d x %d) = op_%s(A) op_%s(B), k = %d, "
                  "%s inputs, alignment A %d B %d D %d bytes",
                  m, n, op_name(transa), op_name(transb), k,
                  precision == SD_PREC_BF16 ? "bf16" : "fp32", key.align_a, key.align_b,
                  key.align_d);
  }
  if (bias)
    SD_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                   &bias, sizeof bias));
  if (epi != MM_EPI_NONE)
    SD_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux));
  const float alpha = 1.0f;
  const cublasStatus_t s = cublasLtMatmul(st->lt, p->desc, &alpha, A, p->a, B, p->b, &beta, D,
                                          p->d, D, p->d, &p->algo, st->lt_workspace,
                                          st->lt_workspace_bytes, st->stream);
  // A refused combination is found at this call (validation: nothing was queued): the plan
  // is marked unusable and the caller falls back, now and for later calls of this shape.
  if ((s == CUBLAS_STATUS_INVALID_VALUE || s == CUBLAS_STATUS_NOT_SUPPORTED) &&
      (bias || epi != MM_EPI_NONE || d_type != SD_F32)) {
    p->ok = 0;
    note_fallback(cache, &key, cublasLtGetStatusString(s));
    return -1;
  }
  SD_CUBLAS_CHECK(s);
  cache->gemms++;
  return 0;
}

// An fp32 D without activation epilogue.
static int lt_gemm(sd_backend *be, int precision, cublasOperation_t transa,
                   cublasOperation_t transb, int m, int n, int k, const void *A, const void *B,
                   float *D, float beta, const float *bias) {
  return lt_gemm_epi(be, precision, transa, transb, m, n, k, A, B, D, SD_F32, beta, bias,
                     MM_EPI_NONE, NULL);
}

// ---- kernels -------------------------------------------------------------------------------

typedef struct cvt_job {
  const float *src;
  __nv_bfloat16 *dst;
  size_t n;
} cvt_job;
typedef struct cvt_jobs {
  cvt_job job[3];
} cvt_jobs;
typedef struct __align__(8) bf16x4 {
  __nv_bfloat162 lo, hi;
} bf16x4;

// dst = bf16(src), round to nearest even (NaN stays NaN, overflow goes to inf); blockIdx.y
// picks the job. 16-byte loads and 8-byte stores when both pointers allow it.
__global__ void to_bf16_kernel(cvt_jobs jobs) {
  // (constant indices keep the parameters out of local memory)
  const cvt_job j = blockIdx.y == 0 ? jobs.job[0] : blockIdx.y == 1 ? jobs.job[1] : jobs.job[2];
  const size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  size_t start = 0;
  if (((uintptr_t)j.src & 15) == 0 && ((uintptr_t)j.dst & 7) == 0) {
    const size_t n4 = j.n / 4;
    const float4 *s4 = (const float4 *)j.src;
    bf16x4 *d4 = (bf16x4 *)j.dst;
    for (size_t i = tid; i < n4; i += stride) {
      const float4 v = s4[i];
      bf16x4 o;
      o.lo = __floats2bfloat162_rn(v.x, v.y);
      o.hi = __floats2bfloat162_rn(v.z, v.w);
      d4[i] = o;
    }
    start = n4 * 4;
  }
  for (size_t i = start + tid; i < j.n; i += stride) j.dst[i] = __float2bfloat16_rn(j.src[i]);
}

// out (M, N) = bias in every row.
__global__ void bias_rows_kernel(float *out, const float *bias, size_t total, int N) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (size_t)gridDim.x * blockDim.x)
    out[i] = bias[i % (size_t)N];
}

// Column sums of dout (M, N), in an order that depends only on (M, N): block (bx, r) takes
// columns bx*32 .. +31 and rows r*rows .. +rows-1; thread (tx, ty) sums rows ty, ty+8, ... of
// that chunk in order; the 8 lanes are then added in lane order. accumulate: dst[n] += sum
// (one chunk); else dst[r*N + n] = the chunk's sum (for colsum_finish_kernel). With db not
// NULL it also writes db (M, N) = bf16(dout) in the same pass (the backward GEMMs' operand:
// one read of dout for both).
// dout is float or __nv_bfloat16 (a bf16-stored gradient; db is NULL then).
enum { CS_COLS = 32, CS_LANES = 8 };
__device__ __forceinline__ float as_f32(float v) { return v; }
__device__ __forceinline__ float as_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T>
__global__ void colsum_partial_kernel(float *dst, const T *dout, int M, int N, int rows,
                                      int accumulate, __nv_bfloat16 *db) {
  __shared__ float sh[CS_LANES][CS_COLS + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int n = blockIdx.x * CS_COLS + tx;
  const int r = blockIdx.y;
  const long m0 = (long)r * rows;
  const long m1 = m0 + rows < M ? m0 + rows : M;
  float acc = 0.0f;
  if (n < N)
    for (long m = m0 + ty; m < m1; m += CS_LANES) {
      const float v = as_f32(dout[(size_t)m * N + n]);
      acc += v;
      if (db) db[(size_t)m * N + n] = __float2bfloat16_rn(v);
    }
  sh[ty][tx] = acc;
  __syncthreads();
  if (ty == 0 && n < N) {
    float s = sh[0][tx];
    for (int l = 1; l < CS_LANES; l++) s += sh[l][tx];
    if (accumulate) dst[n] += s;
    else dst[(size_t)r * N + n] = s;
  }
}

// dbias[n] += sum over r (in order) of partial[r*N + n].
__global__ void colsum_finish_kernel(float *dbias, const float *partial, int R, int N) {
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= N) return;
  float s = 0.0f;
  for (int r = 0; r < R; r++) s += partial[(size_t)r * N + n];
  dbias[n] += s;
}

// Rows per chunk of the column sum: 256, doubled until there are at most 1024 chunks.
static int colsum_rows(int M) {
  int rows = 256;
  while ((M + rows - 1) / rows > 1024) rows *= 2;
  return rows;
}

// ---- helpers -------------------------------------------------------------------------------

static size_t round256(size_t b) { return (b + 255) / 256 * 256; }

static void check_dims(const char *op, int M, int K, int N) {
  if (M < 0 || K < 0 || N < 0) SD_FATAL("%s: negative shape M=%d K=%d N=%d", op, M, K, N);
}

// Queues dst_i = bf16(src_i) for the non-empty jobs (at most 3) in one launch.
static void to_bf16(sd_backend *be, const cvt_job *jobs, int njobs) {
  cvt_jobs js;
  memset(&js, 0, sizeof js);
  int nj = 0;
  size_t most = 0;
  for (int i = 0; i < njobs; i++) {
    if (!jobs[i].n) continue;
    js.job[nj++] = jobs[i];
    if (jobs[i].n > most) most = jobs[i].n;
  }
  if (!nj) return;
  sd_cuda_state *st = sd_cuda_st(be);
  unsigned bx = sd_cuda_blocks(most / 4 + 1, 256);
  const unsigned cap = (unsigned)(st->num_sms > 0 ? st->num_sms : 132) * 16u;
  if (bx > cap) bx = cap;
  to_bf16_kernel<<<dim3(bx, (unsigned)nj), 256, 0, st->stream>>>(js);
  SD_CUDA_LAUNCHED("to_bf16_kernel");
}

static void bias_rows(sd_backend *be, float *out, const float *bias, int M, int N) {
  const size_t total = (size_t)M * (size_t)N;
  bias_rows_kernel<<<sd_cuda_blocks(total, 256), 256, 0, sd_cuda_st(be)->stream>>>(out, bias,
                                                                                   total, N);
  SD_CUDA_LAUNCHED("bias_rows_kernel");
}

// dbias (N) += column sums of dout (M, N; float or bf16); partial: scratch of (chunks x N)
// floats when M needs more than one chunk; dout_bf16 (may be NULL): also bf16(dout) (M, N),
// in the same pass.
template <typename T>
static void colsum_add(sd_backend *be, float *dbias, const T *dout, int M, int N,
                       float *partial, __nv_bfloat16 *dout_bf16) {
  if (M <= 0 || N <= 0) return;
  cudaStream_t s = sd_cuda_st(be)->stream;
  const int rows = colsum_rows(M);
  const int R = (M + rows - 1) / rows;
  const dim3 block(CS_COLS, CS_LANES);
  const dim3 grid((unsigned)((N + CS_COLS - 1) / CS_COLS), (unsigned)R);
  if (R == 1) {
    colsum_partial_kernel<T><<<grid, block, 0, s>>>(dbias, dout, M, N, rows, 1, dout_bf16);
    SD_CUDA_LAUNCHED("colsum_partial_kernel");
    return;
  }
  colsum_partial_kernel<T><<<grid, block, 0, s>>>(partial, dout, M, N, rows, 0, dout_bf16);
  SD_CUDA_LAUNCHED("colsum_partial_kernel");
  colsum_finish_kernel<<<(unsigned)((N + 255) / 256), 256, 0, s>>>(dbias, partial, R, N);
  SD_CUDA_LAUNCHED("colsum_finish_kernel");
}

// ---- the ops -------------------------------------------------------------------------------

// The GEMM's A/B type: bf16 at precision bf16, or when an activation operand is stored in bf16.
static int gemm_precision(int prec, sd_dtype act_in) {
  return prec == SD_PREC_BF16 || act_in == SD_BF16 ? SD_PREC_BF16 : SD_PREC_FP32;
}

// The forward's scratch: [w bf16][inp bf16][bias bf16][fp32 result before its rounding to
// bf16], each part present only when needed, 256-byte aligned.
typedef struct fwd_scratch {
  const void *A, *B;     // the GEMM operands: w and inp as they are, or their bf16 copies
  const void *bias_d;    // the bias in D's type: the fp32 bias, or its bf16 copy (bf16 D)
  float *out32;          // (M, N) fp32 result for a bf16 output the GEMM cannot write itself
} fwd_scratch;

// Lays out the scratch and queues the bf16 conversions of the operands that need one. d_bf16:
// the GEMM writes a bf16 D (the bias is copied to bf16 for its epilogue); want_out32: room for
// out32 (the fp32 route to a bf16 output).
static fwd_scratch fwd_operands(sd_backend *be, int gprec, const void *inp, sd_dtype inp_t,
                                const float *w, const float *bias, int d_bf16, int want_out32,
                                int M, int K, int N) {
  fwd_scratch f;
  f.A = w;
  f.B = inp;
  f.bias_d = bias;
  f.out32 = NULL;
  const size_t nw = (size_t)N * K, ni = (size_t)M * K, no = (size_t)M * N;
  // the weight's persistent bf16 copy (weights_bf16.cu) when it has one
  const void *wcopy = gprec == SD_PREC_BF16 ? sd_cuda_weights_bf16(be, w, nw) : NULL;
  if (wcopy) f.A = wcopy;
  const int cvt_w = gprec == SD_PREC_BF16 && !wcopy;
  const int cvt_i = gprec == SD_PREC_BF16 && inp_t == SD_F32;
  const int cvt_b = d_bf16 && bias;
  const size_t bw = cvt_w ? round256(nw * 2) : 0, bi = cvt_i ? round256(ni * 2) : 0;
  const size_t bb = cvt_b ? round256((size_t)N * 2) : 0;
  const size_t bo = want_out32 ? round256(no * sizeof(float)) : 0;
  if (!bw && !bi && !bb && !bo) return f;
  char *s = (char *)sd_cuda_scratch(be, bw + bi + bb + bo);
  cvt_job jobs[3];
  memset(jobs, 0, sizeof jobs);
  if (cvt_w) {
    jobs[0] = (cvt_job){w, (__nv_bfloat16 *)s, nw};
    f.A = s;
  }
  if (cvt_i) {
    jobs[1] = (cvt_job){(const float *)inp, (__nv_bfloat16 *)(s + bw), ni};
    f.B = s + bw;
  }
  if (cvt_b) {
    jobs[2] = (cvt_job){bias, (__nv_bfloat16 *)(s + bw + bi), (size_t)N};
    f.bias_d = s + bw + bi;
  }
  to_bf16(be, jobs, 3);
  if (bo) f.out32 = (float *)(s + bw + bi + bb);
  return f;
}

// SD_CUDA_ACT_EPILOGUES=0 turns the GELU/DGELU epilogues off (separate kernels instead), for
// comparisons and as a way around a cuBLASLt problem.
static int act_epilogues_on(void) {
  static int on = -1;
  if (on < 0) {
    const char *e = getenv("SD_CUDA_ACT_EPILOGUES");
    on = !(e && strcmp(e, "0") == 0);
  }
  return on;
}

// out32 (M, N) fp32 = the forward product (+ bias), with the operands of f.
static void fwd_into_f32(sd_backend *be, int gprec, const fwd_scratch *f, float *out32,
                         const float *bias, int M, int K, int N) {
  sd_cuda_state *st = sd_cuda_st(be);
  if (K == 0) {  // no products: out = bias rows (or 0), as sgemm with k = 0 gives
    if (bias) bias_rows(be, out32, bias, M, N);
    else SD_CUDA_CHECK(cudaMemsetAsync(out32, 0, sizeof(float) * (size_t)M * N, st->stream));
    return;
  }
  // Row-major out (M, N) = inp (M, K) @ w (N, K)^T, in column-major terms:
  //   out^T (N x M, ld N) = w_cm^T (N x K) @ inp_cm (K x M)
  //   A = w:   row-major (N, K) = column-major K x N, ld K; transa = T -> N x K.
  //   B = inp: row-major (M, K) = column-major K x M, ld K; transb = N -> K x M.
  //   D = out: column-major N x M, ld N.  m = N, n = M, k = K.
  //   bias (N): the epilogue adds bias[i] to row i of D (length m = N), i.e. to column i of
  //   the row-major out, for every token: the CPU's bias in every row.
  if (lt_gemm(be, gprec, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, f->A, f->B, out32, 0.0f, bias) !=
      0) {
    // No bias-epilogue algorithm: start from the bias rows and accumulate (beta = 1), like
    // the CPU path.
    bias_rows(be, out32, bias, M, N);
    lt_gemm(be, gprec, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, f->A, f->B, out32, 1.0f, NULL);
  }
}

static void matmul_fwd_impl(sd_backend *be, void *out, sd_dtype out_t, const void *inp,
                            sd_dtype inp_t, const float *w, const float *bias, int M, int K,
                            int N, int prec) {
  check_dims("matmul_fwd", M, K, N);
  if (M == 0 || N == 0) return;
  const int gprec = gemm_precision(prec, inp_t);
  const int d_bf16 = out_t == SD_BF16 && K > 0 && gprec == SD_PREC_BF16;
  fwd_scratch f = fwd_operands(be, gprec, inp, inp_t, w, bias, d_bf16, 0, M, K, N);
  if (out_t == SD_F32) {
    fwd_into_f32(be, gprec, &f, (float *)out, bias, M, K, N);
    return;
  }
  // bf16 out: written by the GEMM itself (bf16 inputs only), else through fp32 scratch (laid
  // out again with room for it: growing the scratch may replace the buffer)
  if (d_bf16 && lt_gemm_epi(be, gprec, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, f.A, f.B, out,
                            SD_BF16, 0.0f, f.bias_d, MM_EPI_NONE, NULL) == 0)
    return;
  f = fwd_operands(be, gprec, inp, inp_t, w, bias, 0, 1, M, K, N);
  fwd_into_f32(be, gprec, &f, f.out32, bias, M, K, N);
  const cvt_job job = {f.out32, (__nv_bfloat16 *)out, (size_t)M * N};
  to_bf16(be, &job, 1);
}

void sd_cuda_matmul_fwd(sd_backend *be, void *out, sd_dtype out_t, const void *inp,
                        sd_dtype inp_t, const float *w, const float *bias, int M, int K, int N) {
  matmul_fwd_impl(be, out, out_t, inp, inp_t, w, bias, M, K, N, sd_cuda_st(be)->precision);
}

void sd_cuda_matmul_fwd_fp32(sd_backend *be, void *out, sd_dtype out_t, const void *inp,
                             sd_dtype inp_t, const float *w, const float *bias, int M, int K,
                             int N) {
  if (inp_t != SD_F32)
    SD_FATAL("matmul_fwd_fp32 multiplies fp32 inputs: inp must be stored in fp32");
  matmul_fwd_impl(be, out, out_t, inp, inp_t, w, bias, M, K, N, SD_PREC_FP32);
}

// The backward's scratch: [dout bf16][w bf16][inp bf16][column-sum partials][dinp fp32],
// each part present only when needed, 256-byte aligned; the bf16 conversions queued.
typedef struct bwd_scratch {
  const void *dout_g, *w_g, *inp_g;  // the GEMM operands as they are or as bf16 copies
  float *partial;                    // (chunks, N) column-sum partials, or NULL
  float *dinp32;                     // (M, K) fp32 dinp before its rounding to bf16, or NULL
} bwd_scratch;

static bwd_scratch bwd_operands(sd_backend *be, int bf, const void *dout, sd_dtype dout_t,
                                size_t n_dout, int dout_in_colsum, const float *w, size_t n_w,
                                const void *inp, size_t n_inp, size_t partial_bytes,
                                size_t n_dinp32) {
  bwd_scratch b;
  b.dout_g = dout;
  b.w_g = w;
  b.inp_g = inp;
  // the weight's persistent bf16 copy (weights_bf16.cu) when it has one: no conversion
  const void *wcopy = n_w ? sd_cuda_weights_bf16(be, w, n_w) : NULL;
  if (wcopy) n_w = 0;
  const int cvt_dout = bf && dout_t == SD_F32 && n_dout;
  const size_t b_dout = cvt_dout ? round256(n_dout * 2) : 0;
  const size_t b_w = round256(n_w * 2), b_inp = round256(n_inp * 2);
  const size_t b_part = round256(partial_bytes), b_d32 = round256(n_dinp32 * sizeof(float));
  const size_t total = b_dout + b_w + b_inp + b_part + b_d32;
  char *s = total ? (char *)sd_cuda_scratch(be, total) : NULL;
  b.partial = partial_bytes ? (float *)(s + b_dout + b_w + b_inp) : NULL;
  b.dinp32 = n_dinp32 ? (float *)(s + b_dout + b_w + b_inp + b_part) : NULL;
  __nv_bfloat16 *db = (__nv_bfloat16 *)s, *wb = (__nv_bfloat16 *)(s + b_dout);
  __nv_bfloat16 *ib = (__nv_bfloat16 *)(s + b_dout + b_w);
  // (dout_in_colsum: the column sums write dout's bf16 copy, later, in the same pass)
  const cvt_job jobs[3] = {{(const float *)dout, db, cvt_dout && !dout_in_colsum ? n_dout : 0},
                           {w, wb, n_w},
                           {(const float *)inp, ib, n_inp}};
  to_bf16(be, jobs, 3);
  if (cvt_dout) b.dout_g = db;
  if (n_w) b.w_g = wb;
  if (wcopy) b.w_g = wcopy;
  if (n_inp) b.inp_g = ib;
  return b;
}

// matmul_bwd with dout stored as dout_t and, for the DGELU form, dinp stored as dinp_t: with
// dgelu_pre (M, K, stored as pre_t) the input gradient is multiplied by gelu'(dgelu_pre), in
// the GEMM's DGELU epilogue when cuBLASLt has one for the shape (K a multiple of 8 for its aux
// leading dimension, the aux in D's type), else by the GELU backward kernel after it. A bf16
// dinp is rounded once, after the GELU factor (through fp32 scratch when not in the epilogue).
static void matmul_bwd_impl(sd_backend *be, void *dinp, sd_dtype dinp_t, float *dw, float *dbias,
                            const void *dout, sd_dtype dout_t, const void *inp, sd_dtype inp_t,
                            const float *w, int M, int K, int N, int accumulate_dinp,
                            const void *dgelu_pre, sd_dtype pre_t, int prec) {
  check_dims("matmul_bwd", M, K, N);
  if (M == 0 || (!dinp && !dw && !dbias)) return;  // M = 0: every output is empty or += 0
  if (dinp_t == SD_BF16 && accumulate_dinp) SD_FATAL("matmul_bwd: a bf16 dinp cannot accumulate");
  const int gprec =
      gemm_precision(prec, inp_t == SD_BF16 || dout_t == SD_BF16 ? SD_BF16 : SD_F32);
  const int bf = gprec == SD_PREC_BF16;
  const int want_dinp = dinp && K > 0;
  const int want_dw = dw && K > 0 && N > 0;
  const int cs_rows = colsum_rows(M);
  const int cs_chunks = (M + cs_rows - 1) / cs_rows;
  const size_t partial_bytes =
      dbias && N > 0 && cs_chunks > 1 ? sizeof(float) * (size_t)cs_chunks * N : 0;
  const size_t n_dout = (want_dinp && N > 0) || want_dw ? (size_t)M * N : 0;
  const size_t n_w = bf && want_dinp && N > 0 ? (size_t)N * K : 0;
  const size_t n_inp = bf && want_dw && inp_t == SD_F32 ? (size_t)M * K : 0;
  // dbias and a bf16 copy of an fp32 dout both wanted: one pass for both (not with a bf16
  // dinp, whose fallback may lay the scratch out again)
  const int fused_dout = bf && n_dout && dout_t == SD_F32 && dbias && N > 0 &&
                         dinp_t == SD_F32;
  // DGELU in cuBLASLt's epilogue: its aux (pre) must have D's (dinp's) type
  const int try_epi = want_dinp && dgelu_pre && pre_t == dinp_t && act_epilogues_on() &&
                      N > 0 && K % 8 == 0;
  const int need_d32 = want_dinp && dinp_t == SD_BF16 && !try_epi;
  bwd_scratch b = bwd_operands(be, bf, dout, dout_t, n_dout, fused_dout, w, n_w, inp, n_inp,
                               partial_bytes, need_d32 ? (size_t)M * K : 0);
  if (fused_dout)
    colsum_add(be, dbias, (const float *)dout, M, N, b.partial, (__nv_bfloat16 *)b.dout_g);

  if (want_dinp) {
    // Row-major dinp (M, K) = dout (M, N) @ w (N, K), in column-major terms:
    //   dinp^T (K x M, ld K) = w_cm (K x N) @ dout_cm (N x M)
    //   A = w:    row-major (N, K) = column-major K x N, ld K; transa = N.
    //   B = dout: row-major (M, N) = column-major N x M, ld N; transb = N.
    //   D = dinp: column-major K x M, ld K.  m = K, n = M, k = N;
    //   beta = 1 to accumulate, else 0 (C is not read; N = 0 gives dinp = 0).
    int fused = try_epi && lt_gemm_epi(be, gprec, CUBLAS_OP_N, CUBLAS_OP_N, K, M, N, b.w_g,
                                       b.dout_g, dinp, dinp_t, 0.0f, NULL, MM_EPI_DGELU,
                                       dgelu_pre) == 0;
    if (!fused && dinp_t == SD_BF16) {
      // fp32 in scratch, the GELU factor, one rounding into dinp; a failed epilogue queued
      // nothing, so the operands are laid out again with room for the fp32 dinp
      if (!b.dinp32)
        b = bwd_operands(be, bf, dout, dout_t, n_dout, 0, w, n_w, inp, n_inp, partial_bytes,
                         (size_t)M * K);
      lt_gemm(be, gprec, CUBLAS_OP_N, CUBLAS_OP_N, K, M, N, b.w_g, b.dout_g, b.dinp32, 0.0f,
              NULL);
      if (dgelu_pre)
        sd_cuda_gelu_bwd_pre_t(be, b.dinp32, b.dinp32, dgelu_pre, pre_t, (size_t)M * K);
      const cvt_job job = {b.dinp32, (__nv_bfloat16 *)dinp, (size_t)M * K};
      to_bf16(be, &job, 1);
    } else if (!fused) {
      lt_gemm(be, gprec, CUBLAS_OP_N, CUBLAS_OP_N, K, M, N, b.w_g, b.dout_g, (float *)dinp,
              accumulate_dinp ? 1.0f : 0.0f, NULL);
      if (dgelu_pre)
        sd_cuda_gelu_bwd_pre_t(be, (float *)dinp, (float *)dinp, dgelu_pre, pre_t,
                               (size_t)M * K);
    }
  }
  if (want_dw) {
    // Row-major dw (N, K) += dout^T (N, M) @ inp (M, K), in column-major terms:
    //   dw^T (K x N, ld K) += inp_cm (K x M) @ dout_cm^T (M x N)
    //   A = inp:  row-major (M, K) = column-major K x M, ld K; transa = N.
    //   B = dout: row-major (M, N) = column-major N x M, ld N; transb = T -> M x N.
    //   D = dw:   column-major K x N, ld K.  m = K, n = N, k = M; beta = 1.
    lt_gemm(be, gprec, CUBLAS_OP_N, CUBLAS_OP_T, K, N, M, b.inp_g, b.dout_g, dw, 1.0f, NULL);
  }
  if (dbias && !fused_dout) {
    if (dout_t == SD_BF16)
      colsum_add(be, dbias, (const __nv_bfloat16 *)dout, M, N, b.partial,
                 (__nv_bfloat16 *)NULL);
    else
      colsum_add(be, dbias, (const float *)dout, M, N, b.partial, (__nv_bfloat16 *)NULL);
  }
}

void sd_cuda_matmul_bwd(sd_backend *be, float *dinp, float *dw, float *dbias, const void *dout,
                        sd_dtype dout_t, const void *inp, sd_dtype inp_t, const float *w,
                        int M, int K, int N, int accumulate_dinp) {
  matmul_bwd_impl(be, dinp, SD_F32, dw, dbias, dout, dout_t, inp, inp_t, w, M, K, N,
                  accumulate_dinp, NULL, SD_F32, sd_cuda_st(be)->precision);
}

void sd_cuda_matmul_bwd_fp32(sd_backend *be, float *dinp, float *dw, float *dbias,
                             const void *dout, sd_dtype dout_t, const void *inp, sd_dtype inp_t,
                             const float *w, int M, int K, int N, int accumulate_dinp) {
  if (dout_t != SD_F32 || inp_t != SD_F32)
    SD_FATAL("matmul_bwd_fp32 multiplies fp32 inputs: dout and inp must be stored in fp32");
  matmul_bwd_impl(be, dinp, SD_F32, dw, dbias, dout, dout_t, inp, inp_t, w, M, K, N,
                  accumulate_dinp, NULL, SD_F32, SD_PREC_FP32);
}

void sd_cuda_matmul_bwd_dgelu(sd_backend *be, void *dinp, float *dw, float *dbias,
                              const float *dout, const void *inp, const float *w,
                              const void *pre, sd_dtype t, int M, int K, int N) {
  if (!dinp || !pre) SD_FATAL("matmul_bwd_dgelu needs dinp and pre");
  if (K > 0 && N == 0) {  // no products: dinp = 0 (times gelu' is still 0)
    SD_CUDA_CHECK(cudaMemsetAsync(dinp, 0, sd_dtype_size(t) * (size_t)M * K,
                                  sd_cuda_st(be)->stream));
    return;
  }
  matmul_bwd_impl(be, dinp, t, dw, dbias, dout, SD_F32, inp, t, w, M, K, N, 0, pre, t,
                  sd_cuda_st(be)->precision);
}

// pre (M, N) = inp @ w^T + bias, out = gelu(pre), all three stored as t: one cuBLASLt call
// with the GELU_AUX(_BIAS) epilogue when it has an algorithm (N a multiple of 8 for the aux
// leading dimension), else the matmul followed by the GELU kernel.
void sd_cuda_matmul_gelu_fwd(sd_backend *be, void *out, void *pre, const void *inp, sd_dtype t,
                             const float *w, const float *bias, int M, int K, int N) {
  check_dims("matmul_gelu_fwd", M, K, N);
  if (M == 0 || N == 0) return;
  if (K > 0 && N % 8 == 0 && act_epilogues_on()) {
    const int gprec = gemm_precision(sd_cuda_st(be)->precision, t);
    // (a bf16 out is written by the epilogue itself: no fp32 scratch for it)
    const fwd_scratch f = fwd_operands(be, gprec, inp, t, w, bias, t == SD_BF16, 0, M, K, N);
    // the layout of sd_cuda_matmul_fwd; aux = pre has D's shape, type and leading dimension
    if (lt_gemm_epi(be, gprec, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, f.A, f.B, out, t, 0.0f,
                    f.bias_d, MM_EPI_GELU_AUX, pre) == 0)
      return;
  }
  if (t == SD_F32) {
    sd_cuda_matmul_fwd(be, pre, t, inp, t, w, bias, M, K, N);
    sd_cuda_gelu_fwd_t(be, out, pre, t, (size_t)M * N);
    return;
  }
  // bf16: both outputs from the fp32 pre-activation (in scratch), each rounded once
  const int gprec = gemm_precision(sd_cuda_st(be)->precision, t);
  const fwd_scratch f = fwd_operands(be, gprec, inp, t, w, bias, 0, 1, M, K, N);
  fwd_into_f32(be, gprec, &f, f.out32, bias, M, K, N);
  const size_t n = (size_t)M * N;
  const cvt_job to_pre = {f.out32, (__nv_bfloat16 *)pre, n};
  to_bf16(be, &to_pre, 1);
  sd_cuda_gelu_fwd(be, f.out32, f.out32, n);
  const cvt_job to_out = {f.out32, (__nv_bfloat16 *)out, n};
  to_bf16(be, &to_out, 1);
}

// ---- self-test -----------------------------------------------------------------------------

typedef struct st_rng {
  uint64_t s;
} st_rng;

static float st_uniform(st_rng *r) {  // [-1, 1)
  r->s = r->s * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((double)(r->s >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

typedef struct st_case {
  int M, K, N;
  int offset;  // floats added to every device pointer (misaligns them when not a multiple of 4)
} st_case;

typedef struct st_worst {
  double err;  // |got - want| / (sum of |terms| + |initial value|): relative to the magnitude
  int bad;     // a NaN/inf or an error over tolerance was seen
  char what[320];
} st_worst;

// Compares got[i] with want[i] (scale[i] = the magnitude the error is measured against).
static void st_compare(st_worst *w, const char *label, const float *got, const double *want,
                       const double *scale, int rows, int cols, double tol) {
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < cols; j++) {
      const size_t ix = (size_t)i * cols + j;
      const double g = got[ix];
      const double sc = scale[ix] > 1e-30 ? scale[ix] : 1e-30;
      const double e = isfinite(g) ? fabs(g - want[ix]) / sc : INFINITY;
      const int over = !(e <= tol);
      if ((over && !w->bad) || (over == w->bad && e > w->err)) {
        w->err = e;
        w->bad = over;
        snprintf(w->what, sizeof w->what,
                 "%s[%d][%d] = %.9g, expected %.9g (error %.3g of the terms' magnitude %.3g; "
                 "tolerance %.0e)",
                 label, i, j, g, want[ix], e, sc, tol);
      }
    }
}

typedef struct st_bufs {
  float *h[12];
  double *r[2];
  float *d[8];
} st_bufs;

static void st_free(sd_backend *be, st_bufs *b) {
  for (int i = 0; i < 12; i++) free(b->h[i]);
  for (int i = 0; i < 2; i++) free(b->r[i]);
  for (int i = 0; i < 8; i++)
    if (b->d[i]) be->ops->free(be, b->d[i]);
  memset(b, 0, sizeof *b);
}

// One shape in the current precision. Returns 0, or -1 with the message in w->what.
static int st_run_case(sd_backend *be, const st_case *c, uint64_t seed, st_worst *w,
                       char *err, size_t len) {
  const int M = c->M, K = c->K, N = c->N, off = c->offset;
  const int prec = sd_cuda_st(be)->precision;
  const double tol = prec == SD_PREC_BF16 ? 1e-2 : 1e-5;
  const char *pname = prec == SD_PREC_BF16 ? "bf16" : "fp32";
  const size_t nMK = (size_t)M * K, nNK = (size_t)N * K, nMN = (size_t)M * N;
  const size_t big = nMK > nNK ? (nMK > nMN ? nMK : nMN) : (nNK > nMN ? nNK : nMN);
  st_bufs b;
  memset(&b, 0, sizeof b);
  // host: 0 inp, 1 w, 2 bias, 3 dout, 4 dinp0, 5 dw0, 6 dbias0, 7..11 results
  const size_t hn[12] = {nMK, nNK, (size_t)N, nMN, nMK, nNK, (size_t)N, nMN, nMK, nNK,
                         (size_t)N, big};
  for (int i = 0; i < 12; i++) b.h[i] = (float *)sd_xmalloc(sizeof(float) * hn[i], "selftest");
  b.r[0] = (double *)sd_xmalloc(sizeof(double) * big, "selftest");  // want
  b.r[1] = (double *)sd_xmalloc(sizeof(double) * big, "selftest");  // scale
  st_rng rng = {seed};
  for (int i = 0; i < 7; i++)
    for (size_t j = 0; j < hn[i]; j++) b.h[i][j] = st_uniform(&rng);
  float *inp = b.h[0], *wt = b.h[1], *bias = b.h[2], *dout = b.h[3];
  float *dinp0 = b.h[4], *dw0 = b.h[5], *dbias0 = b.h[6];
  float *got = b.h[7], *got2 = b.h[11];
  double *want = b.r[0], *scale = b.r[1];

  // device: 0 inp, 1 w, 2 bias, 3 dout, 4 out, 5 dinp, 6 dw, 7 dbias; each at +offset floats
  const size_t dn[8] = {nMK, nNK, (size_t)N, nMN, nMN, nMK, nNK, (size_t)N};
  float *d[8];
  for (int i = 0; i < 8; i++) {
    b.d[i] = (float *)be->ops->alloc(be, sizeof(float) * (dn[i] + (size_t)off));
    d[i] = b.d[i] + off;
  }
  for (int i = 0; i < 4; i++) be->ops->to_device(be, d[i], b.h[i], sizeof(float) * dn[i]);
  char label[160];
  int fail = 0;
#define ST_LABEL(name)                                                                        \
  snprintf(label, sizeof label, "%s M=%d K=%d N=%d offset=%d seed=%llu: %s", pname, M, K, N,  \
           off, (unsigned long long)seed, name)

  // forward, with and without bias; out poisoned with NaN (0xFF bytes) first
  for (int with_bias = 1; with_bias >= 0; with_bias--) {
    be->ops->memset(be, d[4], 0xFF, sizeof(float) * nMN);
    sd_cuda_matmul_fwd(be, d[4], SD_F32, d[0], SD_F32, d[1], with_bias ? d[2] : NULL, M, K,
                       N);
    be->ops->to_host(be, got, d[4], sizeof(float) * nMN);
    for (int m = 0; m < M; m++)
      for (int n = 0; n < N; n++) {
        double acc = with_bias ? bias[n] : 0.0, mag = with_bias ? fabs(bias[n]) : 0.0;
        for (int k = 0; k < K; k++) {
          const double t = (double)inp[(size_t)m * K + k] * wt[(size_t)n * K + k];
          acc += t;
          mag += fabs(t);
        }
        want[(size_t)m * N + n] = acc;
        scale[(size_t)m * N + n] = mag;
      }
    ST_LABEL(with_bias ? "fwd out (bias)" : "fwd out (no bias)");
    st_compare(w, label, got, want, scale, M, N, tol);
  }

  // backward, all three outputs, dinp accumulated; then again from the same start, which
  // must reproduce every bit
  for (int rep = 0; rep < 2; rep++) {
    be->ops->to_device(be, d[5], dinp0, sizeof(float) * nMK);
    be->ops->to_device(be, d[6], dw0, sizeof(float) * nNK);
    be->ops->to_device(be, d[7], dbias0, sizeof(float) * N);
    sd_cuda_matmul_bwd(be, d[5], d[6], d[7], d[3], SD_F32, d[0], SD_F32, d[1], M, K, N, 1);
    float *r_dinp = rep ? got2 : b.h[8];
    be->ops->to_host(be, r_dinp, d[5], sizeof(float) * nMK);
    if (rep && memcmp(got2, b.h[8], sizeof(float) * nMK) != 0) fail = 1;
    float *r_dw = rep ? got2 : b.h[9];
    be->ops->to_host(be, r_dw, d[6], sizeof(float) * nNK);
    if (rep && memcmp(got2, b.h[9], sizeof(float) * nNK) != 0) fail = 1;
    float *r_db = rep ? got2 : b.h[10];
    be->ops->to_host(be, r_db, d[7], sizeof(float) * N);
    if (rep && memcmp(got2, b.h[10], sizeof(float) * N) != 0) fail = 1;
  }
  if (fail) {
    ST_LABEL("bwd");
    snprintf(err, len, "matmul selftest %s: a second run with the same inputs differs", label);
    st_free(be, &b);
    return -1;
  }
  // dinp (+=)
  for (int m = 0; m < M; m++)
    for (int k = 0; k < K; k++) {
      double acc = dinp0[(size_t)m * K + k], mag = fabs(acc);
      for (int n = 0; n < N; n++) {
        const double t = (double)dout[(size_t)m * N + n] * wt[(size_t)n * K + k];
        acc += t;
        mag += fabs(t);
      }
      want[(size_t)m * K + k] = acc;
      scale[(size_t)m * K + k] = mag;
    }
  ST_LABEL("bwd dinp (+=)");
  st_compare(w, label, b.h[8], want, scale, M, K, tol);
  // dw (+=)
  for (int n = 0; n < N; n++)
    for (int k = 0; k < K; k++) {
      double acc = dw0[(size_t)n * K + k], mag = fabs(acc);
      for (int m = 0; m < M; m++) {
        const double t = (double)dout[(size_t)m * N + n] * inp[(size_t)m * K + k];
        acc += t;
        mag += fabs(t);
      }
      want[(size_t)n * K + k] = acc;
      scale[(size_t)n * K + k] = mag;
    }
  ST_LABEL("bwd dw (+=)");
  st_compare(w, label, b.h[9], want, scale, N, K, tol);
  // dbias (+=): fp32 in both precisions
  for (int n = 0; n < N; n++) {
    double acc = dbias0[n], mag = fabs(acc);
    for (int m = 0; m < M; m++) {
      acc += dout[(size_t)m * N + n];
      mag += fabs(dout[(size_t)m * N + n]);
    }
    want[n] = acc;
    scale[n] = mag;
  }
  ST_LABEL("bwd dbias (+=)");
  st_compare(w, label, b.h[10], want, scale, 1, N, 1e-5);

  // backward, dinp only, overwritten: poisoned with NaN first (beta = 0 must not read it)
  be->ops->memset(be, d[5], 0xFF, sizeof(float) * nMK);
  sd_cuda_matmul_bwd(be, d[5], NULL, NULL, d[3], SD_F32, d[0], SD_F32, d[1], M, K, N, 0);
  be->ops->to_host(be, got, d[5], sizeof(float) * nMK);
  for (int m = 0; m < M; m++)
    for (int k = 0; k < K; k++) {
      double acc = 0.0, mag = 0.0;
      for (int n = 0; n < N; n++) {
        const double t = (double)dout[(size_t)m * N + n] * wt[(size_t)n * K + k];
        acc += t;
        mag += fabs(t);
      }
      want[(size_t)m * K + k] = acc;
      scale[(size_t)m * K + k] = mag;
    }
  ST_LABEL("bwd dinp (=)");
  st_compare(w, label, got, want, scale, M, K, tol);
#undef ST_LABEL
  be->ops->sync(be);
  st_free(be, &b);
  if (w->bad) {
    snprintf(err, len, "matmul selftest failed: worst element %s", w->what);
    return -1;
  }
  return 0;
}

extern "C" int sd_cuda_matmul_selftest(sd_backend *be, char *err, size_t len) {
  if (!be || !be->name || strcmp(be->name, "cuda") != 0 || !be->impl)
    return sd_errorf(err, len, "matmul selftest: not a CUDA backend");
  static const st_case cases[] = {
      {64, 96, 48, 0},   // aligned
      {37, 29, 19, 1},   // odd sizes, pointers 4 bytes off 16-byte alignment
      {600, 40, 70, 0},  // M > 256: the two-pass dbias reduction
      {128, 512, 64, 3}, // longer sums, pointers 12 bytes off
      {5, 1, 3, 2},      // K = 1
  };
  static uint64_t calls = 0;
  const uint64_t base_seed = ((uint64_t)time(NULL) << 16) ^ (++calls * 0x9E3779B97F4A7C15ull);
  sd_cuda_state *st = sd_cuda_st(be);
  const int saved = st->precision;
  double worst[2] = {0, 0};
  const int precs[2] = {SD_PREC_FP32, SD_PREC_BF16};
  for (int p = 0; p < 2; p++) {
    st->precision = precs[p];
    st_worst w;
    memset(&w, 0, sizeof w);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
      const uint64_t seed = base_seed + i * 1000003ull + (uint64_t)p * 7919ull;
      if (st_run_case(be, &cases[i], seed, &w, err, len) != 0) {
        st->precision = saved;
        return -1;
      }
    }
    worst[p] = w.err;
  }
  st->precision = saved;
  snprintf(err, len,
           "matmul selftest passed: worst error relative to the terms' magnitude %.3g (fp32, "
           "tolerance 1e-5), %.3g (bf16, tolerance 1e-2)",
           worst[0], worst[1]);
  return 0;
}
