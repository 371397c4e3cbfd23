// The op checks (ggml test-backend-ops style): every op of sd_ops on a device backend against
// the CPU backend, shared by `sddit selftest` and tests/gpu/test_ops_cuda. For each check:
// fresh random inputs (never zeros), the CPU op and the device op on the same inputs, outputs
// pre-filled with a canary NaN (GPU_CANARY_BITS) so unwritten elements fail, accumulating (+=)
// and in-place outputs pre-filled with the same random values on both sides, GPU_GUARD_FLOATS
// guard floats before and after every device buffer that must stay untouched, inputs that must
// come back unchanged, and the nmse limit of kernels/tolerances_gpu.h, in fp32 and in bf16 matmul
// precision. Then the whole list may run again on the device and must give the same bits
// (determinism). Shapes are added per model shape (sd_opcheck_add_shape); see op_checks.h.
//
// Output, one line per compared tensor (failures only, unless verbose):
//   op NAME prec P nmse X limit Y ok|FAIL worst_index i got g want w
// NAME = op[+variant]@shape.buffer (":change" = the change of an accumulating output alone);
// also "guard", "input-changed", "unwritten" and "determinism" lines on failure.
#include "util/clock.h"
#include "bf16.h"
#include "device/op_checks.h"
#include "error.h"
#include "device/gpu_check.h"
#include "util/rng.h"
#include "tolerances_gpu.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { R_IN, R_OUT, R_ACC };          // input; output (=, canary pre-fill); += or in place
enum { K_F32, K_I32 };
enum { F_NORMAL, F_UNIFORM, F_LOGNORMAL, F_CUSTOM };

#define MAXB 10
#define LIM(x) ((const double[2]){x})

typedef struct bspec {
  const char *name;
  size_t n;         // elements (4 bytes each)
  int role, kind, fill;
  float a, b;       // normal: std, mean; uniform: lo, hi; lognormal: mu, sigma
  int act;          // an activation argument: stored as the check's act type in the call
  double lim[2];    // outputs: nmse limit (fp32, bf16)
  double dlim[2];   // accumulating outputs: limit on the change alone (0: not compared)
} bspec;

typedef struct check check;
struct check {
  char name[96];
  const char *op;
  int nb;
  bspec b[MAXB];
  void *host[MAXB];      // the inputs both backends get (OUT: canary)
  float *gpu_out[MAXB];  // outputs of the first GPU run, for the determinism pass
  int iv[12];
  float fv[8];
  size_t zv[2];
  sd_dtype act;           // storage of the act buffers in the call (SD_BF16: bf16 runs only)
  int misalign;           // every buffer one element longer, the op handed buffer + 1
  void (*prep)(check *c, sd_backend *cpu, uint64_t seed, uint32_t key);
  void (*call)(const check *c, sd_backend *be, void **p);
};

static check *g_checks;
static int g_n, g_cap;
static int g_misalign;  // new checks get misalign (add_vector_paths)
static const char *g_filter = NULL;
static int g_verbose = 1;
static int g_pass, g_fail;

static void check_record(int ok) {
  if (ok) g_pass++;
  else g_fail++;
}
static const char *g_prec_names[2] = {"fp32", "bf16"};

#define F(k) ((float *)p[k])
#define I(k) ((int32_t *)p[k])

// The storage type buffer k is handed to the op in.
static sd_dtype dt_of(const check *c, int k) { return c->b[k].act ? c->act : SD_F32; }
#define T(k) dt_of(c, k)

static check *new_check(const char *op, void (*call)(const check *, sd_backend *, void **),
                        const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static check *new_check(const char *op, void (*call)(const check *, sd_backend *, void **),
                        const char *fmt, ...) {
  if (g_n == g_cap) {
    g_cap = g_cap ? 2 * g_cap : 64;
    g_checks = realloc(g_checks, sizeof *g_checks * (size_t)g_cap);
    if (!g_checks) SD_FATAL("out of memory for the check list");
  }
  check *c = &g_checks[g_n++];
  memset(c, 0, sizeof *c);
  c->op = op;
  c->call = call;
  c->misalign = g_misalign;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->name, sizeof c->name, fmt, ap);
  va_end(ap);
  return c;
}

static int add_buf(check *c, const char *name, size_t n, int role, int kind, int fill, float a,
                   float b, const double *lim, const double *dlim) {
  if (c->nb == MAXB) SD_FATAL("%s: too many buffers", c->name);
  bspec *s = &c->b[c->nb];
  memset(s, 0, sizeof *s);
  s->name = name;
  s->n = (n ? n : 1) + (c->misalign ? 1 : 0);  // (misaligned: element 0 is not the op's)
  s->role = role;
  s->kind = kind;
  s->fill = fill;
  s->a = a;
  s->b = b;
  if (lim) memcpy(s->lim, lim, sizeof s->lim);
  if (dlim) memcpy(s->dlim, dlim, sizeof s->dlim);
  return c->nb++;
}
static int in_f(check *c, const char *name, size_t n, int fill, float a, float b) {
  return add_buf(c, name, n, R_IN, K_F32, fill, a, b, NULL, NULL);
}
static int in_i(check *c, const char *name, size_t n) {
  return add_buf(c, name, n, R_IN, K_I32, F_CUSTOM, 0, 0, NULL, NULL);
}
static int out_f(check *c, const char *name, size_t n, const double *lim) {
  return add_buf(c, name, n, R_OUT, K_F32, F_CUSTOM, 0, 0, lim, NULL);
}
static int acc_f(check *c, const char *name, size_t n, int fill, float a, float b,
                 const double *lim, const double *dlim) {
  return add_buf(c, name, n, R_ACC, K_F32, fill, a, b, lim, dlim);
}

// ---- input generation ---------------------------------------------------------------------

static void fill_f32(float *x, size_t n, const bspec *s, uint64_t seed, uint32_t key,
                     uint32_t idx) {
  if (s->fill == F_UNIFORM) {
    sd_rng_uniform(seed, SD_RNG_TEST, key, idx, 0, n, x);
    for (size_t i = 0; i < n; i++) x[i] = s->a + (s->b - s->a) * x[i];
  } else {
    sd_rng_normal(seed, SD_RNG_TEST, key, idx, 0, n, x);
    if (s->fill == F_LOGNORMAL)
      for (size_t i = 0; i < n; i++) x[i] = expf(s->a + s->b * x[i]);
    else
      for (size_t i = 0; i < n; i++) x[i] = s->a * x[i] + s->b;
  }
}

// Sorted distinct subsets of Tk of T tokens per sample (as the visible-token sets).
static void gen_subsets(int32_t *idx, int B, int T, int Tk, uint64_t seed, uint32_t key,
                        uint32_t stream) {
  float *u = sd_xmalloc(sizeof(float) * (size_t)T, "keys");
  int32_t *order = sd_xmalloc(sizeof(int32_t) * (size_t)T, "order");
  for (int b = 0; b < B; b++) {
    sd_rng_uniform(seed, SD_RNG_TEST, key, stream + 1000u * (uint32_t)b, 0, (size_t)T, u);
    for (int t = 0; t < T; t++) order[t] = t;
    for (int i = 0; i < Tk; i++) {  // partial selection of the Tk smallest keys
      int m = i;
      for (int j = i + 1; j < T; j++)
        if (u[order[j]] < u[order[m]]) m = j;
      int32_t tmp = order[i];
      order[i] = order[m];
      order[m] = tmp;
    }
    int32_t *v = idx + (size_t)b * Tk;
    for (int i = 0; i < Tk; i++) v[i] = order[i];
    for (int i = 1; i < Tk; i++)  // insertion sort
      for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
        int32_t tmp = v[j];
        v[j] = v[j - 1];
        v[j - 1] = tmp;
      }
  }
  free(u);
  free(order);
}

static void gen_labels(int32_t *y, int B, int rows, uint64_t seed, uint32_t key,
                       uint32_t stream) {
  for (int b = 0; b < B; b++)
    y[b] = (int32_t)sd_rng_below(seed, SD_RNG_TEST, key, stream, (uint32_t)b, (uint32_t)rows);
}

static void gen_inputs(check *c, sd_backend *cpu, uint64_t seed, uint32_t key) {
  for (int i = 0; i < c->nb; i++) {
    bspec *s = &c->b[i];
    c->host[i] = sd_xmalloc(4 * s->n, "check input");
    if (s->role == R_OUT) {
      uint32_t *w = c->host[i];
      for (size_t k = 0; k < s->n; k++) w[k] = GPU_CANARY_BITS;
    } else if (s->kind == K_F32 && s->fill != F_CUSTOM) {
      fill_f32(c->host[i], s->n, s, seed, key, (uint32_t)i);
    } else {
      memset(c->host[i], 0, 4 * s->n);  // the prep fills it
    }
  }
  if (c->prep) {  // the prep sees the buffers as the op does
    for (int i = 0; c->misalign && i < c->nb; i++) c->host[i] = (char *)c->host[i] + 4;
    c->prep(c, cpu, seed, key);
    for (int i = 0; c->misalign && i < c->nb; i++) c->host[i] = (char *)c->host[i] - 4;
  }
}

static void free_inputs(check *c) {
  for (int i = 0; i < c->nb; i++) {
    free(c->host[i]);
    free(c->gpu_out[i]);
    c->host[i] = NULL;
    c->gpu_out[i] = NULL;
  }
}

// ---- running and comparing --------------------------------------------------------------

static void report(const char *name, const char *prec, double nmse, double lim, size_t worst,
                   float got, float want) {
  int ok = nmse <= lim;  // NaN fails
  if (ok && !g_verbose) {
    check_record(1);
    return;
  }
  printf("op %s prec %s nmse %.3e limit %.1e %s worst_index %zu got %.9g want %.9g\n", name,
         prec, nmse, lim, ok ? "ok" : "FAIL", worst, got, want);
  check_record(ok);
}

// bf16-storage checks (c->act == SD_BF16): each act buffer is handed to the op as a bf16 copy
// of its fp32 contents, made the same way on both backends, and the op's bf16 outputs are
// widened back into the fp32 buffer, so input checks and comparisons work on fp32 buffers as
// for every other check. The bf16 copy has guard regions of its own (GPU_GUARD_FLOATS * 2
// halves of the guard pattern before and after), checked when it is released. An output
// element the op never wrote comes back as the canary's top half, a bf16 NaN, which fails the
// comparison.
enum { STAGE_GUARD = 2 * GPU_GUARD_FLOATS };  // bf16 elements of guard on each side
static const uint16_t STAGE_GUARD_BITS = (uint16_t)(GPU_GUARD_BITS >> 16);

// Returns the device allocation; the op's pointer is STAGE_GUARD elements into it.
static void *stage_bf16(sd_backend *be, const void *dev, size_t n) {
  const size_t tot = n + 2 * (size_t)STAGE_GUARD;
  float *h = sd_xmalloc(sizeof(float) * n, "staging");
  uint16_t *hb = sd_xmalloc(2 * tot, "staging (bf16)");
  be->ops->to_host(be, h, dev, sizeof(float) * n);
  for (size_t k = 0; k < tot; k++) hb[k] = STAGE_GUARD_BITS;
  for (size_t k = 0; k < n; k++) hb[STAGE_GUARD + k] = sd_bf16_from_float(h[k]);
  void *d = be->ops->alloc(be, 2 * tot);
  be->ops->to_device(be, d, hb, 2 * tot);
  free(h);
  free(hb);
  return d;
}
static void *staged_ptr(void *staged) { return (uint16_t *)staged + STAGE_GUARD; }
// Checks the guards (a failure is reported and counted), widens the bf16 contents back into
// dev when write_back, and frees the copy.
static void unstage_bf16(sd_backend *be, void *dev, void *staged, size_t n, int write_back,
                         const char *what, const char *prec, const char *who) {
  const size_t tot = n + 2 * (size_t)STAGE_GUARD;
  uint16_t *hb = sd_xmalloc(2 * tot, "staging (bf16)");
  be->ops->to_host(be, hb, staged, 2 * tot);
  for (size_t k = 0; k < tot; k++) {
    if (k == STAGE_GUARD) k += n;
    if (hb[k] != STAGE_GUARD_BITS) {
      printf("op %s prec %s guard FAIL (%s, bf16 copy) %s the buffer, element %zu: 0x%04x\n",
             what, prec, who, k < STAGE_GUARD ? "before" : "after",
             k < STAGE_GUARD ? STAGE_GUARD - k : k - STAGE_GUARD - n + 1, hb[k]);
      check_record(0);
      break;
    }
  }
  if (write_back) {
    float *h = sd_xmalloc(sizeof(float) * n, "staging");
    for (size_t k = 0; k < n; k++) h[k] = sd_bf16_to_float(hb[STAGE_GUARD + k]);
    be->ops->to_device(be, dev, h, sizeof(float) * n);
    free(h);
  }
  free(hb);
  be->ops->free(be, staged);
}

// Runs c on be over guarded copies of the host data. res[i] gets every buffer's final contents
// (malloc'd). Guard damage and changed inputs are reported (and counted) here.
static void run_on(const check *c, sd_backend *be, float **res, const char *prec,
                   const char *who) {
  const size_t G = GPU_GUARD_FLOATS;
  void *dev[MAXB], *ptr[MAXB];
  uint32_t *stage[MAXB];
  for (int i = 0; i < c->nb; i++) {
    const size_t n = c->b[i].n, tot = n + 2 * G;
    stage[i] = sd_xmalloc(4 * tot, "staging");
    for (size_t k = 0; k < G; k++) stage[i][k] = stage[i][G + n + k] = GPU_GUARD_BITS;
    memcpy(stage[i] + G, c->host[i], 4 * n);
    dev[i] = be->ops->alloc(be, 4 * tot);
    be->ops->to_device(be, dev[i], stage[i], 4 * tot);
    ptr[i] = (char *)dev[i] + 4 * G;
  }
  void *arg[MAXB], *staged[MAXB];
  for (int i = 0; i < c->nb; i++) {
    staged[i] = c->act == SD_BF16 && c->b[i].act ? stage_bf16(be, ptr[i], c->b[i].n) : NULL;
    arg[i] = staged[i] ? staged_ptr(staged[i]) : ptr[i];
    if (c->misalign) arg[i] = (char *)arg[i] + (staged[i] ? 2 : 4);  // one element in
  }
  c->call(c, be, arg);
  for (int i = 0; i < c->nb; i++)
    if (staged[i]) {
      char what[160];
      snprintf(what, sizeof what, "%s.%s", c->name, c->b[i].name);
      unstage_bf16(be, ptr[i], staged[i], c->b[i].n, c->b[i].role != R_IN, what, prec, who);
    }
  be->ops->sync(be);
  int guards_ok = 1;
  for (int i = 0; i < c->nb; i++) {
    const bspec *s = &c->b[i];
    const size_t n = s->n, tot = n + 2 * G;
    memset(stage[i], 0, 4 * tot);
    be->ops->to_host(be, stage[i], dev[i], 4 * tot);
    be->ops->free(be, dev[i]);
    for (size_t k = 0; k < tot; k++) {
      if (k == G) k = G + n;
      if (k >= tot) break;
      if (stage[i][k] != GPU_GUARD_BITS) {
        printf("op %s.%s prec %s guard FAIL (%s) %s the buffer, float %zu of %zu: 0x%08x\n",
               c->name, s->name, prec, who, k < G ? "before" : "after",
               k < G ? G - k : k - G - n + 1, G, stage[i][k]);
        guards_ok = 0;
        break;
      }
    }
    if (s->role == R_IN && memcmp(stage[i] + G, c->host[i], 4 * n) != 0) {
      size_t k = 0;
      while (((uint32_t *)c->host[i])[k] == stage[i][G + k]) k++;
      printf("op %s.%s prec %s input-changed FAIL (%s) index %zu was 0x%08x now 0x%08x\n",
             c->name, s->name, prec, who, k, ((uint32_t *)c->host[i])[k], stage[i][G + k]);
      guards_ok = 0;
    }
    res[i] = sd_xmalloc(4 * n, "result");
    memcpy(res[i], stage[i] + G, 4 * n);
    free(stage[i]);
  }
  check_record(guards_ok);
}

static void compare(check *c, float **gpu, float **cpu, int prec) {
  for (int i = 0; i < c->nb; i++) {
    const bspec *s = &c->b[i];
    if (s->role == R_IN) continue;
    char name[160];
    snprintf(name, sizeof name, "%s.%s", c->name, s->name);
    // elements the GPU left as canary where the CPU wrote something
    size_t unwritten = 0, first = 0;
    const uint32_t *g = (const uint32_t *)gpu[i], *r = (const uint32_t *)cpu[i];
    for (size_t k = 0; k < s->n; k++)
      if (g[k] == GPU_CANARY_BITS && r[k] != GPU_CANARY_BITS && !unwritten++) first = k;
    if (unwritten) {
      printf("op %s prec %s unwritten FAIL %zu of %zu elements still hold the canary, first "
             "index %zu\n", name, g_prec_names[prec], unwritten, s->n, first);
      check_record(0);
    }
    size_t w = 0;
    double e = sd_gpu_nmse(gpu[i], cpu[i], s->n, &w);
    report(name, g_prec_names[prec], e, s->lim[prec], w, gpu[i][w], cpu[i][w]);
    if (s->role == R_ACC && s->dlim[prec] > 0) {
      char dname[180];
      snprintf(dname, sizeof dname, "%s:change", name);
      e = sd_gpu_nmse_delta(gpu[i], cpu[i], c->host[i], s->n, &w);
      report(dname, g_prec_names[prec], e, s->dlim[prec], w,
             gpu[i][w] - ((float *)c->host[i])[w], cpu[i][w] - ((float *)c->host[i])[w]);
    }
  }
}

// ---- the op calls -------------------------------------------------------------------------
// iv/fv hold each op's sizes and scalars in the order of its signature.

static void call_matmul_fwd(const check *c, sd_backend *be, void **p) {
  // iv: M K N has_bias; bufs: inp w bias out
  be->ops->matmul_fwd(be, p[3], T(3), p[0], T(0), F(1), c->iv[3] ? F(2) : NULL, c->iv[0],
                      c->iv[1], c->iv[2]);
}
static void call_matmul_bwd(const check *c, sd_backend *be, void **p) {
  // iv: M K N has_dinp acc has_dbias; bufs: dout inp w dinp dw dbias
  be->ops->matmul_bwd(be, c->iv[3] ? F(3) : NULL, F(4), c->iv[5] ? F(5) : NULL, p[0], T(0),
                      p[1], T(1), F(2), c->iv[0], c->iv[1], c->iv[2], c->iv[4]);
}
static void call_matmul_fwd_fp32(const check *c, sd_backend *be, void **p) {
  be->ops->matmul_fwd_fp32(be, p[3], T(3), p[0], T(0), F(1), c->iv[3] ? F(2) : NULL,
                           c->iv[0], c->iv[1], c->iv[2]);  // as call_matmul_fwd
}
static void call_matmul_bwd_fp32(const check *c, sd_backend *be, void **p) {
  be->ops->matmul_bwd_fp32(be, c->iv[3] ? F(3) : NULL, F(4), c->iv[5] ? F(5) : NULL, p[0],
                           T(0), p[1], T(1), F(2), c->iv[0], c->iv[1], c->iv[2],
                           c->iv[4]);  // as matmul_bwd
}
static void call_matmul_gelu_fwd(const check *c, sd_backend *be, void **p) {
  // iv: M K N; bufs: inp w bias out pre
  be->ops->matmul_gelu_fwd(be, p[3], p[4], p[0], T(0), F(1), F(2), c->iv[0], c->iv[1],
                           c->iv[2]);
}
static void call_matmul_bwd_dgelu(const check *c, sd_backend *be, void **p) {
  // iv: M K N; bufs: dout inp w pre dinp dw dbias
  be->ops->matmul_bwd_dgelu(be, p[4], F(5), F(6), F(0), p[1], F(2), p[3], T(1), c->iv[0],
                            c->iv[1], c->iv[2]);
}
static void call_lnmod_fwd(const check *c, sd_backend *be, void **p) {
  // iv: B T D stride shift_off scale_off; bufs: x mod out mean rstd
  be->ops->lnmod_fwd(be, p[2], T(2), F(3), F(4), F(0), F(1) + c->iv[4], F(1) + c->iv[5],
                     c->iv[3], c->iv[0], c->iv[1], c->iv[2], c->fv[0]);
}
static void call_lnmod_bwd(const check *c, sd_backend *be, void **p) {
  // iv: B T D stride scale_off dshift_off dscale_off; bufs: dout x mean rstd mod dx dmod
  be->ops->lnmod_bwd(be, F(5), F(6) + c->iv[5], F(6) + c->iv[6], F(0), F(1), F(2), F(3),
                     F(4) + c->iv[4], c->iv[3], c->iv[0], c->iv[1], c->iv[2]);
}
static void call_attention_fwd(const check *c, sd_backend *be, void **p) {
  // iv: B T NH HD; bufs: qkv out lse
  be->ops->attention_fwd(be, p[1], F(2), p[0], T(0), c->iv[0], c->iv[1], c->iv[2], c->iv[3]);
}
static void call_attention_bwd(const check *c, sd_backend *be, void **p) {
  // bufs: dout qkv out lse dqkv
  be->ops->attention_bwd(be, F(4), F(0), p[1], p[2], T(1), F(3), c->iv[0], c->iv[1], c->iv[2],
                         c->iv[3]);
}
static void call_act_fwd(const check *c, sd_backend *be, void **p) {
  // iv: which(0 gelu, 1 silu) inplace; bufs: x out (inplace: x only)
  sd_act_fwd_fn *f = c->iv[0] ? be->ops->silu_fwd : be->ops->gelu_fwd;
  if (c->iv[1]) f(be, F(0), F(0), c->zv[0]);
  else f(be, F(1), F(0), c->zv[0]);
}
static void call_act_bwd(const check *c, sd_backend *be, void **p) {
  // iv: which alias; bufs: dout x dx (alias: dout x, dx = dout)
  sd_act_bwd_fn *f = c->iv[0] ? be->ops->silu_bwd : be->ops->gelu_bwd;
  if (c->iv[1]) f(be, F(0), F(0), F(1), c->zv[0]);
  else f(be, F(2), F(0), F(1), c->zv[0]);
}
static void call_gres_fwd(const check *c, sd_backend *be, void **p) {
  // iv: B T D stride gate_off alias; bufs: x y mod out (alias: out = x)
  float *out = c->iv[5] ? F(0) : F(3);
  be->ops->gated_residual_fwd(be, out, F(0), p[1], T(1), F(2) + c->iv[4], c->iv[3], c->iv[0],
                              c->iv[1], c->iv[2]);
}
static void call_gres_bwd(const check *c, sd_backend *be, void **p) {
  // iv: B T D stride gate_off; bufs: dout y mod dy dmod
  be->ops->gated_residual_bwd(be, F(3), F(4) + c->iv[4], F(0), p[1], T(1), F(2) + c->iv[4],
                              c->iv[3], c->iv[0], c->iv[1], c->iv[2]);
}
static void call_patchify(const check *c, sd_backend *be, void **p) {
  // iv: B C H W p; bufs: x patches
  be->ops->patchify(be, F(1), F(0), c->iv[0], c->iv[1], c->iv[2], c->iv[3], c->iv[4]);
}
static void call_unpatchify_fwd(const check *c, sd_backend *be, void **p) {
  // iv: B C H W p Tk has_idx; bufs: tok idx img
  be->ops->unpatchify_fwd(be, F(2), F(0), c->iv[6] ? I(1) : NULL, c->iv[5], c->iv[0],
                          c->iv[1], c->iv[2], c->iv[3], c->iv[4]);
}
static void call_unpatchify_bwd(const check *c, sd_backend *be, void **p) {
  // bufs: dimg idx dtok
  be->ops->unpatchify_bwd(be, F(2), F(0), c->iv[6] ? I(1) : NULL, c->iv[5], c->iv[0],
                          c->iv[1], c->iv[2], c->iv[3], c->iv[4]);
}
static void call_add_rows(const check *c, sd_backend *be, void **p) {
  // iv: B N; bufs: x row
  be->ops->add_rows(be, F(0), F(1), c->iv[0], c->iv[1]);
}
static void call_timestep(const check *c, sd_backend *be, void **p) {
  // iv: B F; fv: max_period; bufs: t feat
  be->ops->timestep_features(be, F(1), F(0), c->iv[0], c->iv[1], c->fv[0]);
}
static void call_embed_fwd(const check *c, sd_backend *be, void **p) {
  // iv: B D rows; bufs: table y out
  be->ops->embed_rows_fwd(be, F(2), F(0), I(1), c->iv[0], c->iv[1], c->iv[2]);
}
static void call_embed_bwd(const check *c, sd_backend *be, void **p) {
  // iv: B D rows; bufs: dout y dtable
  be->ops->embed_rows_bwd(be, F(2), F(0), I(1), c->iv[0], c->iv[1]);
}
static void call_gather(const check *c, sd_backend *be, void **p) {
  // iv: B T Tk D; bufs: x idx out
  be->ops->gather_tokens(be, F(2), F(0), I(1), c->iv[0], c->iv[1], c->iv[2], c->iv[3]);
}
static void call_scatter_add(const check *c, sd_backend *be, void **p) {
  // bufs: sub idx x
  be->ops->scatter_add_tokens(be, F(2), F(0), I(1), c->iv[0], c->iv[1], c->iv[2], c->iv[3]);
}
static void call_mse_fwd(const check *c, sd_backend *be, void **p) {
  // bufs: a b loss
  be->ops->mse_fwd(be, F(2), F(0), F(1), c->zv[0]);
}
static void call_mse_bwd(const check *c, sd_backend *be, void **p) {
  // fv: scale; bufs: a b da
  be->ops->mse_bwd(be, F(2), F(0), F(1), c->zv[0], c->fv[0]);
}
static void call_sum_squares(const check *c, sd_backend *be, void **p) {
  be->ops->sum_squares(be, F(1), F(0), c->zv[0]);
}
static void call_l2n_fwd(const check *c, sd_backend *be, void **p) {
  // iv: N d; bufs: x out norms
  be->ops->l2norm_rows_fwd(be, F(1), F(2), F(0), c->iv[0], c->iv[1]);
}
static void call_l2n_bwd(const check *c, sd_backend *be, void **p) {
  // iv: N d alias; bufs: dout out norms dx (alias: dx = dout)
  float *dx = c->iv[2] ? F(0) : F(3);
  be->ops->l2norm_rows_bwd(be, dx, F(0), F(1), F(2), c->iv[0], c->iv[1]);
}
static void call_dino_fwd(const check *c, sd_backend *be, void **p) {
  // iv: N P alias; fv: tau_s tau_t; bufs: z_s z_t center loss pt (alias: pt = z_t)
  float *pt = c->iv[2] ? F(1) : F(4);
  be->ops->dino_loss_fwd(be, F(3), pt, F(0), F(1), F(2), c->fv[0], c->fv[1], c->iv[0],
                         c->iv[1]);
}
static void call_dino_bwd(const check *c, sd_backend *be, void **p) {
  // iv: N P alias; fv: tau_s scale; bufs: z_s pt dz (alias: dz = z_s)
  float *dz = c->iv[2] ? F(0) : F(2);
  be->ops->dino_loss_bwd(be, dz, F(0), F(1), c->fv[0], c->iv[0], c->iv[1], c->fv[1]);
}
static void call_sum_rows(const check *c, sd_backend *be, void **p) {
  be->ops->sum_rows(be, F(1), F(0), c->iv[0], c->iv[1]);
}
static void call_merge_fwd(const check *c, sd_backend *be, void **p) {
  // iv: B T Tk D; bufs: base sub idx out
  be->ops->merge_tokens_fwd(be, F(3), F(0), F(1), I(2), c->iv[0], c->iv[1], c->iv[2],
                            c->iv[3]);
}
static void call_merge_bwd(const check *c, sd_backend *be, void **p) {
  // bufs: dout idx dbase dsub
  be->ops->merge_tokens_bwd(be, F(2), F(3), F(0), I(1), c->iv[0], c->iv[1], c->iv[2],
                            c->iv[3]);
}
static void call_add_scaled(const check *c, sd_backend *be, void **p) {
  // iv: B; bufs: x0 eps sigma out
  be->ops->add_scaled_rows(be, F(3), F(0), F(1), F(2), c->iv[0], c->zv[0]);
}
static void call_scale_rows(const check *c, sd_backend *be, void **p) {
  // iv: B inplace; bufs: x s out (inplace: x s)
  float *out = c->iv[1] ? F(0) : F(2);
  be->ops->scale_rows(be, out, F(0), F(1), c->iv[0], c->zv[0]);
}
static void call_edm_fwd(const check *c, sd_backend *be, void **p) {
  // iv: B has_mask; bufs: F x x0 c_skip c_out weight mask loss D
  be->ops->edm_loss_fwd(be, F(7), F(8), F(0), F(1), F(2), F(3), F(4), F(5),
                        c->iv[1] ? F(6) : NULL, c->iv[0], c->zv[0]);
}
static void call_edm_bwd(const check *c, sd_backend *be, void **p) {
  // iv: B has_mask; fv: scale; bufs: D x0 c_out weight mask dF
  be->ops->edm_loss_bwd(be, F(5), F(0), F(1), F(2), F(3), c->iv[1] ? F(4) : NULL, c->iv[0],
                        c->zv[0], c->fv[0]);
}
static void call_adamw(const check *c, sd_backend *be, void **p) {
  // iv: t; fv: lr beta1 beta2 eps wd grad_scale; bufs: g p m v
  be->ops->adamw(be, F(1), F(0), F(2), F(3), c->zv[0], c->fv[0], c->fv[1], c->fv[2], c->fv[3],
                 c->fv[4], (long)c->iv[0], c->fv[5]);
}
static void call_adamw_ema(const check *c, sd_backend *be, void **p) {
  // iv: t; fv: lr beta1 beta2 eps wd grad_scale decay1 decay2; bufs: g p m v e1 e2
  // iv: t gated; bufs: g p m v e1 e2 [gate]
  be->ops->adamw_ema(be, F(1), F(0), F(2), F(3), c->zv[0], c->fv[0], c->fv[1], c->fv[2],
                     c->fv[3], c->fv[4], (long)c->iv[0], c->fv[5], F(4), c->fv[6], F(5),
                     c->fv[7], c->iv[1] ? F(6) : NULL);
}
static void call_ema(const check *c, sd_backend *be, void **p) {
  be->ops->ema(be, F(1), F(0), c->zv[0], c->fv[0]);  // bufs: src dst
}
static void call_axpy(const check *c, sd_backend *be, void **p) {
  be->ops->axpy(be, F(1), F(0), c->zv[0], c->fv[0]);  // bufs: x y
}
static void call_memset(const check *c, sd_backend *be, void **p) {
  be->ops->memset(be, F(0), c->iv[0], c->zv[1]);  // bufs: buf; zv[1] bytes
}
static void call_copy(const check *c, sd_backend *be, void **p) {
  be->ops->copy(be, F(1), F(0), c->zv[1]);  // bufs: src dst; zv[1] bytes
}

// ---- preparations: inputs that must be consistent with each other --------------------------

static void prep_lnmod_bwd(check *c, sd_backend *cpu, uint64_t seed, uint32_t key) {
  (void)cpu;
  (void)seed;
  (void)key;
  const int B = c->iv[0], T = c->iv[1], D = c->iv[2];
  const float *x = c->host[1];
  float *mean = c->host[2], *rstd = c->host[3];
  for (long r = 0; r < (long)B * T; r++) {
    double m = 0, v = 0;
    for (int d = 0; d < D; d++) m += x[r * D + d];
    m /= D;
    for (int d = 0; d < D; d++) v += (x[r * D + d] - m) * (x[r * D + d] - m);
    v /= D;
    mean[r] = (float)m;
    rstd[r] = (float)(1.0 / sqrt(v + 1e-6));
  }
}

static void prep_attention_bwd(check *c, sd_backend *cpu, uint64_t seed, uint32_t key) {
  (void)seed;
  (void)key;
  // (fp32: a bf16-storage check hands the op bf16 copies of qkv and out, rounded from these)
  cpu->ops->attention_fwd(cpu, c->host[2], c->host[3], c->host[1], SD_F32, c->iv[0], c->iv[1],
                          c->iv[2], c->iv[3]);
}

static void prep_idx(check *c, int buf, int B, int T, int Tk, uint64_t seed, uint32_t key) {
  gen_subsets(c->host[buf], B, T, Tk, seed, key, 77u);
}
static void prep_unpatchify(check *c, sd_backend *cpu, uint64_t seed, uint32_t key) {
  (void)cpu;
  const int T = (c->iv[2] / c->iv[4]) * (c->iv[3] / c->iv[4]);
  if (c->iv[6]) prep_idx(c, 1, c->iv[0], T, c->iv[5], seed, key);
}
static void prep_tokens(check *c, sd_backend *cpu, uint64_t seed, uint32_t key) {
  (void)cpu;
  int buf = -1;  // the first int32 buffer
  for (int i = 0; i < c->nb && buf < 0; i++)
    if (c->b[i].kind == K_I32) buf = i;
  prep_idx(c, buf, c->iv[0], c->iv[1], c->iv[2], seed, key);
}
static void prep_labels(check *c, sd_backend *cpu, uint64_t seed, uint32_t key) {
  (void)cpu;
  gen_labels(c->host[1], c->iv[0], c->iv[2], seed, key, 5u);
}
static void prep_l2n_fwd(check *c, sd_backend *cpu, uint64_t seed, uint32_t key) {
  (void)cpu;
  (void)seed;
  (void)key;
  if (!c->iv[2]) return;
  float *x = c->host[0];  // clamp variant: row 0 tiny (norm < 1e-12)
  for (int k = 0; k < c->iv[1]; k++) x[k] *= 1e-20f;
}
static void prep_l2n_bwd(check *c, sd_backend *cpu, uint64_t seed, uint32_t key) {
  const int N = c->iv[0], d = c->iv[1];
  float *x = sd_xmalloc(sizeof(float) * (size_t)N * d, "x");
  bspec s = {.fill = F_NORMAL, .a = 1.0f};
  fill_f32(x, (size_t)N * d, &s, seed, key, 50u);
  for (int k = 0; k < d; k++) x[k] *= 1e-20f;  // row 0 on the clamped path
  cpu->ops->l2norm_rows_fwd(cpu, c->host[1], c->host[2], x, N, d);
  free(x);
}
static void prep_dino_bwd(check *c, sd_backend *cpu, uint64_t seed, uint32_t key) {
  const int N = c->iv[0], P = c->iv[1];
  float *zt = sd_xmalloc(sizeof(float) * (size_t)N * P, "z_t");
  float *center = sd_xmalloc(sizeof(float) * (size_t)P, "center");
  bspec s = {.fill = F_UNIFORM, .a = -1.0f, .b = 1.0f};
  fill_f32(zt, (size_t)N * P, &s, seed, key, 50u);
  bspec sc = {.fill = F_NORMAL, .a = 0.05f};
  fill_f32(center, (size_t)P, &sc, seed, key, 51u);
  float loss;
  cpu->ops->dino_loss_fwd(cpu, &loss, c->host[1], c->host[0], zt, center, c->fv[0], 0.05f, N,
                          P);
  free(zt);
  free(center);
}
static void prep_edm(check *c, sd_backend *cpu, uint64_t seed, uint32_t key, int coef0,
                     int mask_buf) {
  (void)cpu;
  const int B = c->iv[0];
  const size_t n = c->zv[0];
  float *cs = c->host[coef0], *co = c->host[coef0 + 1], *w = c->host[coef0 + 2];
  float z;
  for (int b = 0; b < B; b++) {  // EDM preconditioning of ln sigma ~ N(-1.2, 1.2^2)
    sd_rng_normal(seed, SD_RNG_TEST, key, 60u, (uint32_t)b, 1, &z);
    double sg = exp(-1.2 + 1.2 * z), sd = 0.5;
    if (cs) cs[b] = (float)(sd * sd / (sg * sg + sd * sd));
    co[b] = (float)(sg * sd / sqrt(sg * sg + sd * sd));
    w[b] = (float)((sg * sg + sd * sd) / ((sg * sd) * (sg * sd)));
  }
  float *m = c->host[mask_buf];
  for (size_t i = 0; i < (size_t)B * n; i++) m[i] = 1.0f;
  if (c->iv[1]) {  // 0/1 in blocks of 8 elements, about 80% ones
    float *u = sd_xmalloc(sizeof(float) * ((size_t)B * n / 8 + 1), "mask keys");
    sd_rng_uniform(seed, SD_RNG_TEST, key, 61u, 0, (size_t)B * n / 8 + 1, u);
    for (size_t i = 0; i < (size_t)B * n; i++) m[i] = u[i / 8] < 0.8f ? 1.0f : 0.0f;
    free(u);
  }
}
static void prep_edm_fwd(check *c, sd_backend *cpu, uint64_t seed, uint32_t key) {
  prep_edm(c, cpu, seed, key, 3, 6);
}
static void prep_edm_bwd(check *c, sd_backend *cpu, uint64_t seed, uint32_t key) {
  // bufs: D x0 c_out weight mask dF -> coefficients at 2 (c_out), 3 (weight); no c_skip
  (void)cpu;
  const int B = c->iv[0];
  float z;
  float *co = c->host[2], *w = c->host[3];
  for (int b = 0; b < B; b++) {
    sd_rng_normal(seed, SD_RNG_TEST, key, 60u, (uint32_t)b, 1, &z);
    double sg = exp(-1.2 + 1.2 * z), sd = 0.5;
    co[b] = (float)(sg * sd / sqrt(sg * sg + sd * sd));
    w[b] = (float)((sg * sg + sd * sd) / ((sg * sd) * (sg * sd)));
  }
  float *m = c->host[4];
  const size_t n = c->zv[0];
  for (size_t i = 0; i < (size_t)B * n; i++) m[i] = 1.0f;
  if (c->iv[1]) {
    float *u = sd_xmalloc(sizeof(float) * ((size_t)B * n / 8 + 1), "mask keys");
    sd_rng_uniform(seed, SD_RNG_TEST, key, 61u, 0, (size_t)B * n / 8 + 1, u);
    for (size_t i = 0; i < (size_t)B * n; i++) m[i] = u[i / 8] < 0.8f ? 1.0f : 0.0f;
    free(u);
  }
}

// ---- the check list -------------------------------------------------------------------------

typedef sd_opcheck_shape shape;

static void add_matmuls(const shape *s) {
  const int M = s->B * s->T, D = s->D, Mm = 4 * s->D, Ti = (s->H / s->p) * (s->W / s->p);
  const int pf = s->C * s->p * s->p;
  struct {
    const char *what;
    int M, K, N, bias, bwd;  // bwd: 0 full, 1 acc dinp, 2 no dinp, 3 no dbias
  } mm[] = {
      {"qkv", M, D, 3 * D, 1, 0},        {"fc2", M, Mm, D, 1, 1},
      {"qkv-Tk", s->B * s->Tk, D, 3 * D, 1, 0},  // the student encoder's visible tokens
      {"adaln", s->B, D, 6 * D, 1, 1},   {"head_in", s->N, D, s->Hh, 1, 0},
      {"head_last", s->N, s->bn, s->P, 0, 3}, {"patch", s->B * Ti, pf, D, 1, 2},
  };
  for (size_t k = 0; k < sizeof mm / sizeof mm[0]; k++) {
    check *c = new_check("matmul_fwd", call_matmul_fwd, "matmul_fwd%s@%s-%s",
                         mm[k].bias ? "" : "+nobias", s->tag, mm[k].what);
    c->iv[0] = mm[k].M, c->iv[1] = mm[k].K, c->iv[2] = mm[k].N, c->iv[3] = mm[k].bias;
    in_f(c, "inp", (size_t)mm[k].M * mm[k].K, F_NORMAL, 1.0f, 0.0f);
    in_f(c, "w", (size_t)mm[k].N * mm[k].K, F_NORMAL, 0.05f, 0.0f);
    in_f(c, "bias", mm[k].bias ? (size_t)mm[k].N : 1, F_NORMAL, 0.1f, 0.0f);
    out_f(c, "out", (size_t)mm[k].M * mm[k].N, LIM(GPU_NMSE_MATMUL_FWD));

    static const char *vname[] = {"", "+acc", "+nodinp", "+nodbias"};
    const int v = mm[k].bwd;
    c = new_check("matmul_bwd", call_matmul_bwd, "matmul_bwd%s@%s-%s", vname[v], s->tag,
                  mm[k].what);
    c->iv[0] = mm[k].M, c->iv[1] = mm[k].K, c->iv[2] = mm[k].N;
    c->iv[3] = v != 2, c->iv[4] = v == 1, c->iv[5] = v != 3;
    in_f(c, "dout", (size_t)mm[k].M * mm[k].N, F_NORMAL, 1.0f, 0.0f);
    in_f(c, "inp", (size_t)mm[k].M * mm[k].K, F_NORMAL, 1.0f, 0.0f);
    in_f(c, "w", (size_t)mm[k].N * mm[k].K, F_NORMAL, 0.05f, 0.0f);
    if (v == 1)
      acc_f(c, "dinp", (size_t)mm[k].M * mm[k].K, F_NORMAL, 1.0f, 0.0f,
            LIM(GPU_NMSE_MATMUL_BWD), LIM(GPU_NMSE_MATMUL_BWD));
    else if (v == 2)
      in_f(c, "unused", 1, F_NORMAL, 1.0f, 0.0f);
    else
      out_f(c, "dinp", (size_t)mm[k].M * mm[k].K, LIM(GPU_NMSE_MATMUL_BWD));
    acc_f(c, "dw", (size_t)mm[k].N * mm[k].K, F_NORMAL, 1.0f, 0.0f, LIM(GPU_NMSE_MATMUL_BWD),
          LIM(GPU_NMSE_MATMUL_BWD));
    if (v == 3) in_f(c, "unused", 1, F_NORMAL, 1.0f, 0.0f);
    else
      acc_f(c, "dbias", (size_t)mm[k].N, F_NORMAL, 1.0f, 0.0f, LIM(GPU_NMSE_MATMUL_BWD),
            LIM(GPU_NMSE_MATMUL_BWD));
  }
}

// A check of an op with its activation arguments stored in bf16 (c->act; see stage_bf16),
// named NAME+bf16act@TAG-WHAT; mark_act marks a buffer as such an argument.
static check *act_check(const char *op, void (*call)(const check *, sd_backend *, void **),
                        const char *name, const char *tag, const char *what) {
  check *c = new_check(op, call, "%s+bf16act@%s-%s", name, tag, what);
  c->act = SD_BF16;
  return c;
}
static void mark_act(check *c, int buf) { c->b[buf].act = 1; }

// The MLP's fused GELU forms: fc1 + GELU forward and fc2's backward through the GELU (the
// cuBLASLt epilogues), the head's hidden layer, and a shape whose width is not a multiple of 8
// (the epilogues need one; the separate kernels run instead). act SD_BF16: the DiT's MLP with
// its activations (inp, pre, out; the backward's inp, pre and dinp) stored in bf16, so the
// head's layer (always fp32) is left out and the stored outputs get the bf16-storage limits.
static void add_matmul_gelu(const shape *s, sd_dtype act) {
  const int M = s->B * s->T, D = s->D, Mm = 4 * s->D;
  const int bf = act == SD_BF16;
  struct {
    const char *what;
    int M, K, N;
  } mm[] = {{"fc1", M, D, Mm}, {"head_hidden", s->N, s->Hh, s->Hh}, {"odd", 37, 20, 30}};
  const double *fwd_lim = bf ? LIM(GPU_NMSE_ACT_MATMUL) : LIM(GPU_NMSE_MATMUL_GELU_FWD);
  const double *dinp_lim = bf ? LIM(GPU_NMSE_ACT_MATMUL) : LIM(GPU_NMSE_MATMUL_BWD_DGELU);
  for (size_t k = 0; k < sizeof mm / sizeof mm[0]; k++) {
    if (bf && !strcmp(mm[k].what, "head_hidden")) continue;
    const int m = mm[k].M, kk = mm[k].K, n = mm[k].N;
    check *c = bf ? act_check("matmul_gelu_fwd", call_matmul_gelu_fwd, "matmul_gelu_fwd",
                              s->tag, mm[k].what)
                  : new_check("matmul_gelu_fwd", call_matmul_gelu_fwd, "matmul_gelu_fwd@%s-%s",
                              s->tag, mm[k].what);
    c->iv[0] = m, c->iv[1] = kk, c->iv[2] = n;
    const int f_inp = in_f(c, "inp", (size_t)m * kk, F_NORMAL, 1.0f, 0.0f);
    in_f(c, "w", (size_t)n * kk, F_NORMAL, 0.05f, 0.0f);
    in_f(c, "bias", (size_t)n, F_NORMAL, 0.1f, 0.0f);
    const int f_out = out_f(c, "out", (size_t)m * n, fwd_lim);
    const int f_pre = out_f(c, "pre", (size_t)m * n, fwd_lim);
    if (bf) mark_act(c, f_inp), mark_act(c, f_out), mark_act(c, f_pre);
    // the layer after the GELU: out (m, kk) = gelu(pre (m, n)) @ w2 (kk, n)^T; its backward
    c = bf ? act_check("matmul_bwd_dgelu", call_matmul_bwd_dgelu, "matmul_bwd_dgelu", s->tag,
                       mm[k].what)
           : new_check("matmul_bwd_dgelu", call_matmul_bwd_dgelu, "matmul_bwd_dgelu@%s-%s",
                       s->tag, mm[k].what);
    c->iv[0] = m, c->iv[1] = n, c->iv[2] = kk;
    in_f(c, "dout", (size_t)m * kk, F_NORMAL, 1.0f, 0.0f);
    const int b_inp = in_f(c, "inp", (size_t)m * n, F_NORMAL, 1.0f, 0.0f);
    in_f(c, "w", (size_t)kk * n, F_NORMAL, 0.05f, 0.0f);
    const int b_pre = in_f(c, "pre", (size_t)m * n, F_NORMAL, 1.5f, 0.0f);
    const int b_dinp = out_f(c, "dinp", (size_t)m * n, dinp_lim);
    if (bf) mark_act(c, b_inp), mark_act(c, b_pre), mark_act(c, b_dinp);
    acc_f(c, "dw", (size_t)kk * n, F_NORMAL, 1.0f, 0.0f, LIM(GPU_NMSE_MATMUL_BWD_DGELU),
          LIM(GPU_NMSE_MATMUL_BWD_DGELU));
    acc_f(c, "dbias", (size_t)kk, F_NORMAL, 1.0f, 0.0f, LIM(GPU_NMSE_MATMUL_BWD_DGELU),
          LIM(GPU_NMSE_MATMUL_BWD_DGELU));
  }
}

// The head's prototype logits, multiplied with fp32 inputs in every precision: fp32 limits
// for both runs.
static void add_matmul_fp32(const shape *s) {
  const int M = s->N, K = s->bn, N = s->P;
  check *c = new_check("matmul_fwd_fp32", call_matmul_fwd_fp32, "matmul_fwd_fp32@%s-logits",
                       s->tag);
  c->iv[0] = M, c->iv[1] = K, c->iv[2] = N, c->iv[3] = 0;
  in_f(c, "inp", (size_t)M * K, F_NORMAL, 1.0f, 0.0f);
  in_f(c, "w", (size_t)N * K, F_NORMAL, 0.05f, 0.0f);
  in_f(c, "bias", 1, F_NORMAL, 0.1f, 0.0f);
  out_f(c, "out", (size_t)M * N, LIM(GPU_NMSE_MATMUL_FP32_ALWAYS));
  c = new_check("matmul_bwd_fp32", call_matmul_bwd_fp32, "matmul_bwd_fp32@%s-logits", s->tag);
  c->iv[0] = M, c->iv[1] = K, c->iv[2] = N, c->iv[3] = 1, c->iv[4] = 0, c->iv[5] = 0;
  in_f(c, "dout", (size_t)M * N, F_NORMAL, 1.0f, 0.0f);
  in_f(c, "inp", (size_t)M * K, F_NORMAL, 1.0f, 0.0f);
  in_f(c, "w", (size_t)N * K, F_NORMAL, 0.05f, 0.0f);
  out_f(c, "dinp", (size_t)M * K, LIM(GPU_NMSE_MATMUL_FP32_ALWAYS));
  acc_f(c, "dw", (size_t)N * K, F_NORMAL, 1.0f, 0.0f, LIM(GPU_NMSE_MATMUL_FP32_ALWAYS),
        LIM(GPU_NMSE_MATMUL_FP32_ALWAYS));
  in_f(c, "unused", 1, F_NORMAL, 1.0f, 0.0f);
}

static void add_norm_attention(const shape *s) {
  const int B = s->B, T = s->T, D = s->D, NH = s->NH, HD = D / NH;
  const size_t BTD = (size_t)B * T * D;
  struct {
    const char *what;
    int stride, shift, scale;
  } ln[] = {{"msa", 6 * D, 0, D}, {"mlp", 6 * D, 3 * D, 4 * D}, {"final", 2 * D, 0, D}};
  for (size_t k = 0; k < sizeof ln / sizeof ln[0]; k++) {
    check *c = new_check("lnmod_fwd", call_lnmod_fwd, "lnmod_fwd@%s-%s", s->tag, ln[k].what);
    c->iv[0] = B, c->iv[1] = T, c->iv[2] = D, c->iv[3] = ln[k].stride;
    c->iv[4] = ln[k].shift, c->iv[5] = ln[k].scale;
    c->fv[0] = 1e-6f;
    in_f(c, "x", BTD, F_NORMAL, 1.5f, 0.7f);
    in_f(c, "mod", (size_t)B * ln[k].stride, F_NORMAL, 0.5f, 0.0f);
    out_f(c, "out", BTD, LIM(GPU_NMSE_LNMOD_FWD));
    out_f(c, "mean", (size_t)B * T, LIM(GPU_NMSE_LNMOD_FWD));
    out_f(c, "rstd", (size_t)B * T, LIM(GPU_NMSE_LNMOD_FWD));

    c = new_check("lnmod_bwd", call_lnmod_bwd, "lnmod_bwd@%s-%s", s->tag, ln[k].what);
    c->iv[0] = B, c->iv[1] = T, c->iv[2] = D, c->iv[3] = ln[k].stride;
    c->iv[4] = ln[k].scale, c->iv[5] = ln[k].shift, c->iv[6] = ln[k].scale;
    c->prep = prep_lnmod_bwd;
    in_f(c, "dout", BTD, F_NORMAL, 1.0f, 0.0f);
    in_f(c, "x", BTD, F_NORMAL, 1.5f, 0.7f);
    in_f(c, "mean", (size_t)B * T, F_CUSTOM, 0, 0);
    in_f(c, "rstd", (size_t)B * T, F_CUSTOM, 0, 0);
    in_f(c, "mod", (size_t)B * ln[k].stride, F_NORMAL, 0.5f, 0.0f);
    acc_f(c, "dx", BTD, F_NORMAL, 1.0f, 0.0f, LIM(GPU_NMSE_LNMOD_BWD), LIM(GPU_NMSE_LNMOD_BWD));
    acc_f(c, "dmod", (size_t)B * ln[k].stride, F_NORMAL, 1.0f, 0.0f, LIM(GPU_NMSE_LNMOD_BWD),
          LIM(GPU_NMSE_LNMOD_BWD));
  }

  check *c = new_check("attention_fwd", call_attention_fwd, "attention_fwd@%s", s->tag);
  c->iv[0] = B, c->iv[1] = T, c->iv[2] = NH, c->iv[3] = HD;
  in_f(c, "qkv", 3 * BTD, F_NORMAL, 1.0f, 0.0f);
  out_f(c, "out", BTD, LIM(GPU_NMSE_ATTENTION_FWD));
  out_f(c, "lse", (size_t)B * NH * T, LIM(GPU_NMSE_ATTENTION_LSE));
  // visible tokens only (the student encoder's Tk)
  c = new_check("attention_fwd", call_attention_fwd, "attention_fwd@%s-Tk", s->tag);
  c->iv[0] = B, c->iv[1] = s->Tk, c->iv[2] = NH, c->iv[3] = HD;
  in_f(c, "qkv", 3 * (size_t)B * s->Tk * D, F_NORMAL, 1.0f, 0.0f);
  out_f(c, "out", (size_t)B * s->Tk * D, LIM(GPU_NMSE_ATTENTION_FWD));
  out_f(c, "lse", (size_t)B * NH * s->Tk, LIM(GPU_NMSE_ATTENTION_LSE));

  c = new_check("attention_bwd", call_attention_bwd, "attention_bwd@%s", s->tag);
  c->iv[0] = B, c->iv[1] = T, c->iv[2] = NH, c->iv[3] = HD;
  c->prep = prep_attention_bwd;
  in_f(c, "dout", BTD, F_NORMAL, 1.0f, 0.0f);
  in_f(c, "qkv", 3 * BTD, F_NORMAL, 1.0f, 0.0f);
  in_f(c, "out", BTD, F_CUSTOM, 0, 0);
  in_f(c, "lse", (size_t)B * NH * T, F_CUSTOM, 0, 0);
  out_f(c, "dqkv", 3 * BTD, LIM(GPU_NMSE_ATTENTION_BWD));
  // and its backward, as the student encoder runs it
  const size_t BTkD = (size_t)B * s->Tk * D;
  c = new_check("attention_bwd", call_attention_bwd, "attention_bwd@%s-Tk", s->tag);
  c->iv[0] = B, c->iv[1] = s->Tk, c->iv[2] = NH, c->iv[3] = HD;
  c->prep = prep_attention_bwd;
  in_f(c, "dout", BTkD, F_NORMAL, 1.0f, 0.0f);
  in_f(c, "qkv", 3 * BTkD, F_NORMAL, 1.0f, 0.0f);
  in_f(c, "out", BTkD, F_CUSTOM, 0, 0);
  in_f(c, "lse", (size_t)B * NH * s->Tk, F_CUSTOM, 0, 0);
  out_f(c, "dqkv", 3 * BTkD, LIM(GPU_NMSE_ATTENTION_BWD));
}

// The gated residual forward and backward with a bf16-stored branch output y (the MLP's gate
// rows of a (B, 6D) modulation buffer), as the bf16-activation checks of a shape add them.
static void add_gated_residual_act(const char *tag, int B, int T, int D) {
  const size_t BTD = (size_t)B * T * D;
  check *c = act_check("gated_residual_fwd", call_gres_fwd, "gated_residual_fwd", tag, "mlp");
  c->iv[0] = B, c->iv[1] = T, c->iv[2] = D, c->iv[3] = 6 * D, c->iv[4] = 5 * D, c->iv[5] = 0;
  in_f(c, "x", BTD, F_NORMAL, 1.0f, 0.0f);
  mark_act(c, in_f(c, "y", BTD, F_NORMAL, 1.0f, 0.0f));
  in_f(c, "mod", (size_t)B * 6 * D, F_NORMAL, 0.5f, 0.0f);
  out_f(c, "out", BTD, LIM(GPU_NMSE_GATED_RESIDUAL_FWD));
  c = act_check("gated_residual_bwd", call_gres_bwd, "gated_residual_bwd", tag, "mlp");
  c->iv[0] = B, c->iv[1] = T, c->iv[2] = D, c->iv[3] = 6 * D, c->iv[4] = 5 * D;
  in_f(c, "dout", BTD, F_NORMAL, 1.0f, 0.0f);
  mark_act(c, in_f(c, "y", BTD, F_NORMAL, 1.0f, 0.0f));
  in_f(c, "mod", (size_t)B * 6 * D, F_NORMAL, 0.5f, 0.0f);
  out_f(c, "dy", BTD, LIM(GPU_NMSE_GATED_RESIDUAL_BWD));
  acc_f(c, "dmod", (size_t)B * 6 * D, F_NORMAL, 1.0f, 0.0f, LIM(GPU_NMSE_GATED_RESIDUAL_BWD),
        LIM(GPU_NMSE_GATED_RESIDUAL_BWD));
}

// The ops whose activation arguments the DiT stores in bf16 at precision bf16 (ops.h), with
// those arguments in bf16: the shapes of the DiT's block and final layer (the MLP's GELU forms
// are in add_matmul_gelu).
static void add_act_storage(const shape *s) {
  const int B = s->B, T = s->T, D = s->D, NH = s->NH, HD = D / NH, M = B * T, Mm = 4 * D;
  const int PC = s->C * s->p * s->p;
  const size_t BTD = (size_t)B * T * D;
  // matmul_fwd: act -> act (qkv), act -> fp32 (the final linear)
  struct {
    const char *what;
    int K, N, act_out;
  } mf[] = {{"qkv", D, 3 * D, 1}, {"final", D, PC, 0}};
  for (size_t k = 0; k < sizeof mf / sizeof mf[0]; k++) {
    check *c = act_check("matmul_fwd", call_matmul_fwd, "matmul_fwd", s->tag, mf[k].what);
    c->iv[0] = M, c->iv[1] = mf[k].K, c->iv[2] = mf[k].N, c->iv[3] = 1;
    mark_act(c, in_f(c, "inp", (size_t)M * mf[k].K, F_NORMAL, 1.0f, 0.0f));
    in_f(c, "w", (size_t)mf[k].N * mf[k].K, F_NORMAL, 0.05f, 0.0f);
    in_f(c, "bias", (size_t)mf[k].N, F_NORMAL, 0.1f, 0.0f);
    const size_t no = (size_t)M * mf[k].N;
    if (mf[k].act_out) mark_act(c, out_f(c, "out", no, LIM(GPU_NMSE_ACT_MATMUL)));
    else out_f(c, "out", no, LIM(GPU_NMSE_MATMUL_FWD));
  }
  // matmul_bwd with a bf16 inp and dout (fc1's backward: the MLP's gradient is stored in bf16)
  check *c = act_check("matmul_bwd", call_matmul_bwd, "matmul_bwd", s->tag, "fc1");
  c->iv[0] = M, c->iv[1] = D, c->iv[2] = Mm, c->iv[3] = 1, c->iv[4] = 0, c->iv[5] = 1;
  mark_act(c, in_f(c, "dout", (size_t)M * Mm, F_NORMAL, 1.0f, 0.0f));
  mark_act(c, in_f(c, "inp", (size_t)M * D, F_NORMAL, 1.0f, 0.0f));
  in_f(c, "w", (size_t)Mm * D, F_NORMAL, 0.05f, 0.0f);
  out_f(c, "dinp", (size_t)M * D, LIM(GPU_NMSE_MATMUL_BWD));
  acc_f(c, "dw", (size_t)Mm * D, F_NORMAL, 1.0f, 0.0f, LIM(GPU_NMSE_MATMUL_BWD),
        LIM(GPU_NMSE_MATMUL_BWD));
  acc_f(c, "dbias", (size_t)Mm, F_NORMAL, 1.0f, 0.0f, LIM(GPU_NMSE_MATMUL_BWD),
        LIM(GPU_NMSE_MATMUL_BWD));
  // (the MLP's GELU forms with bf16 storage: add_matmul_gelu(s, SD_BF16))
  // layer norm + modulate with a bf16 out
  c = act_check("lnmod_fwd", call_lnmod_fwd, "lnmod_fwd", s->tag, "msa");
  c->iv[0] = B, c->iv[1] = T, c->iv[2] = D, c->iv[3] = 6 * D, c->iv[4] = 0, c->iv[5] = D;
  c->fv[0] = 1e-6f;
  in_f(c, "x", BTD, F_NORMAL, 1.5f, 0.7f);
  in_f(c, "mod", (size_t)B * 6 * D, F_NORMAL, 0.5f, 0.0f);
  mark_act(c, out_f(c, "out", BTD, LIM(GPU_NMSE_ACT_LNMOD)));
  out_f(c, "mean", (size_t)B * T, LIM(GPU_NMSE_LNMOD_FWD));
  out_f(c, "rstd", (size_t)B * T, LIM(GPU_NMSE_LNMOD_FWD));
  // attention on bf16 qkv and out
  c = act_check("attention_fwd", call_attention_fwd, "attention_fwd", s->tag, "all");
  c->iv[0] = B, c->iv[1] = T, c->iv[2] = NH, c->iv[3] = HD;
  mark_act(c, in_f(c, "qkv", 3 * BTD, F_NORMAL, 1.0f, 0.0f));
  mark_act(c, out_f(c, "out", BTD, LIM(GPU_NMSE_ACT_ATTENTION)));
  out_f(c, "lse", (size_t)B * NH * T, LIM(GPU_NMSE_ATTENTION_LSE));
  c = act_check("attention_bwd", call_attention_bwd, "attention_bwd", s->tag, "all");
  c->iv[0] = B, c->iv[1] = T, c->iv[2] = NH, c->iv[3] = HD;
  c->prep = prep_attention_bwd;
  in_f(c, "dout", BTD, F_NORMAL, 1.0f, 0.0f);
  mark_act(c, in_f(c, "qkv", 3 * BTD, F_NORMAL, 1.0f, 0.0f));
  mark_act(c, in_f(c, "out", BTD, F_CUSTOM, 0, 0));
  in_f(c, "lse", (size_t)B * NH * T, F_CUSTOM, 0, 0);
  out_f(c, "dqkv", 3 * BTD, LIM(GPU_NMSE_ATTENTION_BWD));
  // gated residual with a bf16 branch output y
  add_gated_residual_act(s->tag, B, T, D);
}

// bf16 attention on each path the CUDA backend has (kernels/cuda/attention_cudnn.cu), forced
// per check: "cudnn" (cuDNN's fused SDPA), "handwritten" (the tensor-core / fp32-tile
// kernels) and "refused" (cuDNN with a simulated refusal at plan finalize: the fallback), at
// the shape's T and its visible Tk, forward and backward; head dims cuDNN takes (multiple
// of 8) only. After the device's call the path it took is checked: cuDNN must not run when
// the hand-written kernels or the refusal are forced; a forced cuDNN that fell back prints a
// note with the reason (a FAIL under SD_CUDA_ATTENTION=cudnn). Where the forcing functions
// are absent (no CUDA build) or the call never reaches them (the CPU stand-in), the checks are
// plain bf16 attention checks.
int sd_cuda_attention_force_path(int path);
int sd_cuda_attention_last_path(char *why, size_t len);
#pragma weak sd_cuda_attention_force_path
#pragma weak sd_cuda_attention_last_path

enum { ATTN_PATH_HANDWRITTEN = 1, ATTN_PATH_CUDNN = 2, ATTN_PATH_REFUSED = 3 };  // iv[4]

static void attention_path_verdict(const check *c) {
  char why[512] = "";
  const int got = sd_cuda_attention_last_path ? sd_cuda_attention_last_path(why, sizeof why) : -1;
  if (got < 0) return;  // not the CUDA backend's bf16 call
  const int forced = c->iv[4];
  const char *env = getenv("SD_CUDA_ATTENTION");
  if (got == 1 && forced != ATTN_PATH_CUDNN) {
    printf("op %s path FAIL cuDNN ran although the %s path was forced\n", c->name,
           forced == ATTN_PATH_REFUSED ? "refused-cuDNN (fallback)" : "hand-written");
    check_record(0);
  } else if (got == 0 && forced == ATTN_PATH_CUDNN) {
    const int strict = env && !strcmp(env, "cudnn");
    printf("%s %s path: the hand-written kernels ran although cuDNN was forced: %s\n",
           strict ? "op" : "note:", c->name, why);
    if (strict) check_record(0);
  } else if (got == 0 && forced == ATTN_PATH_REFUSED && g_verbose) {
    printf("op %s path ok (fallback: %s)\n", c->name, why);
  }
}

static void call_attention_fwd_path(const check *c, sd_backend *be, void **p) {
  const int prev = sd_cuda_attention_force_path ? sd_cuda_attention_force_path(c->iv[4]) : -1;
  call_attention_fwd(c, be, p);
  attention_path_verdict(c);
  if (sd_cuda_attention_force_path) sd_cuda_attention_force_path(prev);
}
static void call_attention_bwd_path(const check *c, sd_backend *be, void **p) {
  const int prev = sd_cuda_attention_force_path ? sd_cuda_attention_force_path(c->iv[4]) : -1;
  call_attention_bwd(c, be, p);
  attention_path_verdict(c);
  if (sd_cuda_attention_force_path) sd_cuda_attention_force_path(prev);
}

static void add_attention_paths(const shape *s) {
  const int B = s->B, D = s->D, NH = s->NH, HD = D / NH;
  if (HD % 8 != 0) return;
  static const char *const names[4] = {NULL, "handwritten", "cudnn", "refused"};
  const int Ts[2] = {s->T, s->Tk};
  for (int k = 0; k < 2; k++) {
    const int T = Ts[k];
    if (k == 1 && T == s->T) break;  // no masking: one length
    const size_t BTD = (size_t)B * T * D;
    char what[32];
    snprintf(what, sizeof what, "T%d", T);
    for (int path = ATTN_PATH_HANDWRITTEN; path <= ATTN_PATH_REFUSED; path++) {
      char name[48];
      snprintf(name, sizeof name, "attention_fwd+%s", names[path]);
      check *c = act_check("attention_fwd", call_attention_fwd_path, name, s->tag, what);
      c->iv[0] = B, c->iv[1] = T, c->iv[2] = NH, c->iv[3] = HD, c->iv[4] = path;
      mark_act(c, in_f(c, "qkv", 3 * BTD, F_NORMAL, 1.0f, 0.0f));
      mark_act(c, out_f(c, "out", BTD, LIM(GPU_NMSE_ACT_ATTENTION)));
      out_f(c, "lse", (size_t)B * NH * T, LIM(GPU_NMSE_ATTENTION_LSE));
      snprintf(name, sizeof name, "attention_bwd+%s", names[path]);
      c = act_check("attention_bwd", call_attention_bwd_path, name, s->tag, what);
      c->iv[0] = B, c->iv[1] = T, c->iv[2] = NH, c->iv[3] = HD, c->iv[4] = path;
      c->prep = prep_attention_bwd;
      in_f(c, "dout", BTD, F_NORMAL, 1.0f, 0.0f);
      mark_act(c, in_f(c, "qkv", 3 * BTD, F_NORMAL, 1.0f, 0.0f));
      mark_act(c, in_f(c, "out", BTD, F_CUSTOM, 0, 0));
      in_f(c, "lse", (size_t)B * NH * T, F_CUSTOM, 0, 0);
      out_f(c, "dqkv", 3 * BTD, LIM(GPU_NMSE_ATTENTION_BWD));
    }
  }
}

static void add_pointwise(const shape *s) {
  const size_t n = (size_t)s->B * s->T * 4 * s->D;  // an MLP activation
  const char *names[2] = {"gelu", "silu"};
  const double *lims[2][2] = {{LIM(GPU_NMSE_GELU_FWD), LIM(GPU_NMSE_GELU_BWD)},
                              {LIM(GPU_NMSE_SILU_FWD), LIM(GPU_NMSE_SILU_BWD)}};
  for (int a = 0; a < 2; a++)
    for (int v = 0; v < 2; v++) {
      char op[16], opb[16];
      snprintf(op, sizeof op, "%s_fwd", names[a]);
      snprintf(opb, sizeof opb, "%s_bwd", names[a]);
      check *c = new_check(a ? "silu_fwd" : "gelu_fwd", call_act_fwd, "%s%s@%s", op,
                           v ? "+inplace" : "", s->tag);
      c->iv[0] = a, c->iv[1] = v, c->zv[0] = n;
      if (v) {
        acc_f(c, "x", n, F_NORMAL, 2.5f, 0.0f, lims[a][0], NULL);
      } else {
        in_f(c, "x", n, F_NORMAL, 2.5f, 0.0f);
        out_f(c, "out", n, lims[a][0]);
      }
      c = new_check(a ? "silu_bwd" : "gelu_bwd", call_act_bwd, "%s%s@%s", opb,
                    v ? "+alias" : "", s->tag);
      c->iv[0] = a, c->iv[1] = v, c->zv[0] = n;
      if (v) {
        acc_f(c, "dout", n, F_NORMAL, 1.0f, 0.0f, lims[a][1], NULL);
        in_f(c, "x", n, F_NORMAL, 2.5f, 0.0f);
      } else {
        in_f(c, "dout", n, F_NORMAL, 1.0f, 0.0f);
        in_f(c, "x", n, F_NORMAL, 2.5f, 0.0f);
        out_f(c, "dx", n, lims[a][1]);
      }
    }
  // the conditioning path's short vectors (B*D) too
  check *c = new_check("silu_fwd", call_act_fwd, "silu_fwd@%s-cond", s->tag);
  c->iv[0] = 1, c->zv[0] = (size_t)s->B * s->D;
  in_f(c, "x", c->zv[0], F_NORMAL, 1.0f, 0.0f);
  out_f(c, "out", c->zv[0], LIM(GPU_NMSE_SILU_FWD));
}

static void add_residual_patch(const shape *s) {
  const int B = s->B, T = s->T, D = s->D;
  const size_t BTD = (size_t)B * T * D;
  for (int alias = 0; alias < 2; alias++) {
    check *c = new_check("gated_residual_fwd", call_gres_fwd, "gated_residual_fwd%s@%s",
                         alias ? "+alias" : "", s->tag);
    c->iv[0] = B, c->iv[1] = T, c->iv[2] = D, c->iv[3] = 6 * D, c->iv[4] = 2 * D;
    c->iv[5] = alias;
    if (alias) acc_f(c, "x", BTD, F_NORMAL, 1.0f, 0.0f, LIM(GPU_NMSE_GATED_RESIDUAL_FWD), NULL);
    else in_f(c, "x", BTD, F_NORMAL, 1.0f, 0.0f);
    in_f(c, "y", BTD, F_NORMAL, 1.0f, 0.0f);
    in_f(c, "mod", (size_t)B * 6 * D, F_NORMAL, 0.5f, 0.0f);
    if (alias) in_f(c, "unused", 1, F_NORMAL, 1.0f, 0.0f);
    else out_f(c, "out", BTD, LIM(GPU_NMSE_GATED_RESIDUAL_FWD));
  }
  check *c = new_check("gated_residual_bwd", call_gres_bwd, "gated_residual_bwd@%s", s->tag);
  c->iv[0] = B, c->iv[1] = T, c->iv[2] = D, c->iv[3] = 6 * D, c->iv[4] = 5 * D;
  in_f(c, "dout", BTD, F_NORMAL, 1.0f, 0.0f);
  in_f(c, "y", BTD, F_NORMAL, 1.0f, 0.0f);
  in_f(c, "mod", (size_t)B * 6 * D, F_NORMAL, 0.5f, 0.0f);
  out_f(c, "dy", BTD, LIM(GPU_NMSE_GATED_RESIDUAL_BWD));
  acc_f(c, "dmod", (size_t)B * 6 * D, F_NORMAL, 1.0f, 0.0f, LIM(GPU_NMSE_GATED_RESIDUAL_BWD),
        LIM(GPU_NMSE_GATED_RESIDUAL_BWD));

  const int C = s->C, H = s->H, W = s->W, p = s->p, Ti = (H / p) * (W / p), pf = C * p * p;
  const int Tki = Ti * 4 / 5;
  const size_t img = (size_t)B * C * H * W;
  c = new_check("patchify", call_patchify, "patchify@%s", s->tag);
  c->iv[0] = B, c->iv[1] = C, c->iv[2] = H, c->iv[3] = W, c->iv[4] = p;
  in_f(c, "x", img, F_NORMAL, 1.0f, 0.0f);
  out_f(c, "patches", (size_t)B * Ti * pf, LIM(GPU_NMSE_PATCHIFY));
  for (int masked = 0; masked < 2; masked++) {
    const int Tk = masked ? Tki : Ti;
    c = new_check("unpatchify_fwd", call_unpatchify_fwd, "unpatchify_fwd%s@%s",
                  masked ? "+idx" : "", s->tag);
    c->iv[0] = B, c->iv[1] = C, c->iv[2] = H, c->iv[3] = W, c->iv[4] = p, c->iv[5] = Tk;
    c->iv[6] = masked;
    c->prep = prep_unpatchify;
    in_f(c, "tok", (size_t)B * Tk * pf, F_NORMAL, 1.0f, 0.0f);
    in_i(c, "idx", (size_t)B * Tk);
    out_f(c, "img", img, LIM(GPU_NMSE_UNPATCHIFY_FWD));
    c = new_check("unpatchify_bwd", call_unpatchify_bwd, "unpatchify_bwd%s@%s",
                  masked ? "+idx" : "", s->tag);
    memcpy(c->iv, c[-1].iv, sizeof c->iv);
    c->prep = prep_unpatchify;
    in_f(c, "dimg", img, F_NORMAL, 1.0f, 0.0f);
    in_i(c, "idx", (size_t)B * Tk);
    out_f(c, "dtok", (size_t)B * Tk * pf, LIM(GPU_NMSE_UNPATCHIFY_BWD));
  }
  c = new_check("add_rows", call_add_rows, "add_rows@%s", s->tag);
  c->iv[0] = B, c->iv[1] = T * D;
  acc_f(c, "x", BTD, F_NORMAL, 1.0f, 0.0f, LIM(GPU_NMSE_ADD_ROWS), LIM(GPU_NMSE_ADD_ROWS));
  in_f(c, "row", (size_t)T * D, F_NORMAL, 1.0f, 0.0f);
}

static void add_conditioning_tokens(const shape *s) {
  const int B = s->B, T = s->T, D = s->D, Tk = s->Tk;
  const int Bt = B < 16 ? 16 : B;  // more rows than a tiny batch for the timestep features
  check *c = new_check("timestep_features", call_timestep, "timestep_features@%s", s->tag);
  c->iv[0] = Bt, c->iv[1] = s->F, c->fv[0] = 10000.0f;
  in_f(c, "t", (size_t)Bt, F_UNIFORM, -3.0f, 3.0f);  // c_noise = ln(sigma) / 4
  out_f(c, "feat", (size_t)Bt * s->F, LIM(GPU_NMSE_TIMESTEP_FEATURES));

  const int Be = 37;  // labels repeat
  c = new_check("embed_rows_fwd", call_embed_fwd, "embed_rows_fwd@%s", s->tag);
  c->iv[0] = Be, c->iv[1] = D, c->iv[2] = s->rows;
  c->prep = prep_labels;
  in_f(c, "table", (size_t)s->rows * D, F_NORMAL, 0.5f, 0.0f);
  in_i(c, "y", (size_t)Be);
  acc_f(c, "out", (size_t)Be * D, F_NORMAL, 1.0f, 0.0f, LIM(GPU_NMSE_EMBED_ROWS_FWD),
        LIM(GPU_NMSE_EMBED_ROWS_FWD));
  c = new_check("embed_rows_bwd", call_embed_bwd, "embed_rows_bwd@%s", s->tag);
  c->iv[0] = Be, c->iv[1] = D, c->iv[2] = s->rows;
  c->prep = prep_labels;
  in_f(c, "dout", (size_t)Be * D, F_NORMAL, 1.0f, 0.0f);
  in_i(c, "y", (size_t)Be);
  acc_f(c, "dtable", (size_t)s->rows * D, F_NORMAL, 1.0f, 0.0f, LIM(GPU_NMSE_EMBED_ROWS_BWD),
        LIM(GPU_NMSE_EMBED_ROWS_BWD));

  const size_t BTD = (size_t)B * T * D, BKD = (size_t)B * Tk * D;
  c = new_check("gather_tokens", call_gather, "gather_tokens@%s", s->tag);
  c->iv[0] = B, c->iv[1] = T, c->iv[2] = Tk, c->iv[3] = D;
  c->prep = prep_tokens;
  in_f(c, "x", BTD, F_NORMAL, 1.0f, 0.0f);
  in_i(c, "idx", (size_t)B * Tk);
  out_f(c, "out", BKD, LIM(GPU_NMSE_GATHER_TOKENS));
  c = new_check("scatter_add_tokens", call_scatter_add, "scatter_add_tokens@%s", s->tag);
  memcpy(c->iv, c[-1].iv, sizeof c->iv);
  c->prep = prep_tokens;
  in_f(c, "sub", BKD, F_NORMAL, 1.0f, 0.0f);
  in_i(c, "idx", (size_t)B * Tk);
  acc_f(c, "x", BTD, F_NORMAL, 1.0f, 0.0f, LIM(GPU_NMSE_SCATTER_ADD_TOKENS),
        LIM(GPU_NMSE_SCATTER_ADD_TOKENS));
  c = new_check("merge_tokens_fwd", call_merge_fwd, "merge_tokens_fwd@%s", s->tag);
  memcpy(c->iv, c[-1].iv, sizeof c->iv);
  c->prep = prep_tokens;
  in_f(c, "base", BTD, F_NORMAL, 1.0f, 0.0f);
  in_f(c, "sub", BKD, F_NORMAL, 1.0f, 0.0f);
  in_i(c, "idx", (size_t)B * Tk);
  out_f(c, "out", BTD, LIM(GPU_NMSE_MERGE_TOKENS_FWD));
  c = new_check("merge_tokens_bwd", call_merge_bwd, "merge_tokens_bwd@%s", s->tag);
  memcpy(c->iv, c[-1].iv, sizeof c->iv);
  c->prep = prep_tokens;
  in_f(c, "dout", BTD, F_NORMAL, 1.0f, 0.0f);
  in_i(c, "idx", (size_t)B * Tk);
  acc_f(c, "dbase", BTD, F_NORMAL, 1.0f, 0.0f, LIM(GPU_NMSE_MERGE_TOKENS_BWD),
        LIM(GPU_NMSE_MERGE_TOKENS_BWD));
  out_f(c, "dsub", BKD, LIM(GPU_NMSE_MERGE_TOKENS_BWD));
}

static void add_losses_head(const shape *s) {
  const int B = s->B;
  const size_t n = (size_t)s->C * s->H * s->W, Bn = (size_t)B * n;
  const size_t big = ((size_t)1 << 20) + 3;
  const size_t ns[2] = {Bn, big};
  for (int k = 0; k < 2; k++) {
    check *c = new_check("mse_fwd", call_mse_fwd, "mse_fwd@%s-n%zu", s->tag, ns[k]);
    c->zv[0] = ns[k];
    in_f(c, "a", ns[k], F_NORMAL, 1.0f, 0.0f);
    in_f(c, "b", ns[k], F_NORMAL, 1.0f, 0.3f);
    out_f(c, "loss", 1, LIM(GPU_NMSE_MSE_FWD));
    c = new_check("mse_bwd", call_mse_bwd, "mse_bwd@%s-n%zu", s->tag, ns[k]);
    c->zv[0] = ns[k], c->fv[0] = 0.7f;
    in_f(c, "a", ns[k], F_NORMAL, 1.0f, 0.0f);
    in_f(c, "b", ns[k], F_NORMAL, 1.0f, 0.3f);
    out_f(c, "da", ns[k], LIM(GPU_NMSE_MSE_BWD));
  }
  const size_t sq[2] = {(size_t)s->T * s->D + 5, (size_t)3000017};
  for (int k = 0; k < 2; k++) {
    check *c = new_check("sum_squares", call_sum_squares, "sum_squares@%s-n%zu", s->tag, sq[k]);
    c->zv[0] = sq[k];
    in_f(c, "x", sq[k], F_NORMAL, 0.01f, 0.0f);
    out_f(c, "out", 1, LIM(GPU_NMSE_SUM_SQUARES));
  }
  // head: rows of the bottleneck and the prototype weights (weight norm)
  const int Nl[2] = {s->N, s->P}, dl[2] = {s->bn, s->bn};
  for (int k = 0; k < 2; k++) {
    check *c = new_check("l2norm_rows_fwd", call_l2n_fwd, "l2norm_rows_fwd%s@%s-N%d",
                         k ? "+clamp" : "", s->tag, Nl[k]);
    c->iv[0] = Nl[k], c->iv[1] = dl[k], c->iv[2] = k;
    c->prep = prep_l2n_fwd;
    in_f(c, "x", (size_t)Nl[k] * dl[k], F_NORMAL, 1.0f, 0.0f);
    out_f(c, "out", (size_t)Nl[k] * dl[k], LIM(GPU_NMSE_L2NORM_ROWS_FWD));
    out_f(c, "norms", (size_t)Nl[k], LIM(GPU_NMSE_L2NORM_ROWS_FWD));
    c = new_check("l2norm_rows_bwd", call_l2n_bwd, "l2norm_rows_bwd%s@%s-N%d",
                  k ? "+alias" : "", s->tag, Nl[k]);
    c->iv[0] = Nl[k], c->iv[1] = dl[k], c->iv[2] = k;
    c->prep = prep_l2n_bwd;
    if (k)
      acc_f(c, "dout", (size_t)Nl[k] * dl[k], F_NORMAL, 1.0f, 0.0f,
            LIM(GPU_NMSE_L2NORM_ROWS_BWD), NULL);
    else
      in_f(c, "dout", (size_t)Nl[k] * dl[k], F_NORMAL, 1.0f, 0.0f);
    in_f(c, "out", (size_t)Nl[k] * dl[k], F_CUSTOM, 0, 0);
    in_f(c, "norms", (size_t)Nl[k], F_CUSTOM, 0, 0);
    if (!k) out_f(c, "dx", (size_t)Nl[k] * dl[k], LIM(GPU_NMSE_L2NORM_ROWS_BWD));
  }
  const int N = s->N, P = s->P;
  const size_t NP = (size_t)N * P;
  for (int alias = 0; alias < 2; alias++) {
    check *c = new_check("dino_loss_fwd", call_dino_fwd, "dino_loss_fwd%s@%s",
                         alias ? "+alias" : "", s->tag);
    c->iv[0] = N, c->iv[1] = P, c->iv[2] = alias, c->fv[0] = 0.1f, c->fv[1] = 0.04f;
    in_f(c, "z_s", NP, F_UNIFORM, -1.0f, 1.0f);  // cosine logits
    if (alias) acc_f(c, "z_t", NP, F_UNIFORM, -1.0f, 1.0f, LIM(GPU_NMSE_DINO_LOSS_FWD), NULL);
    else in_f(c, "z_t", NP, F_UNIFORM, -1.0f, 1.0f);
    in_f(c, "center", (size_t)P, F_NORMAL, 0.05f, 0.0f);
    out_f(c, "loss", 1, LIM(GPU_NMSE_DINO_LOSS_FWD));
    if (alias) in_f(c, "unused", 1, F_NORMAL, 1.0f, 0.0f);
    else out_f(c, "pt", NP, LIM(GPU_NMSE_DINO_LOSS_FWD));
    c = new_check("dino_loss_bwd", call_dino_bwd, "dino_loss_bwd%s@%s", alias ? "+alias" : "",
                  s->tag);
    c->iv[0] = N, c->iv[1] = P, c->iv[2] = alias, c->fv[0] = 0.1f, c->fv[1] = 1.0f;
    c->prep = prep_dino_bwd;
    if (alias) acc_f(c, "z_s", NP, F_UNIFORM, -1.0f, 1.0f, LIM(GPU_NMSE_DINO_LOSS_BWD), NULL);
    else in_f(c, "z_s", NP, F_UNIFORM, -1.0f, 1.0f);
    in_f(c, "pt", NP, F_CUSTOM, 0, 0);
    if (!alias) out_f(c, "dz_s", NP, LIM(GPU_NMSE_DINO_LOSS_BWD));
  }
  check *c = new_check("sum_rows", call_sum_rows, "sum_rows@%s", s->tag);
  c->iv[0] = N, c->iv[1] = P;
  in_f(c, "x", NP, F_UNIFORM, 0.0f, 0.01f);  // probabilities
  out_f(c, "out", (size_t)P, LIM(GPU_NMSE_SUM_ROWS));

  // EDM
  c = new_check("add_scaled_rows", call_add_scaled, "add_scaled_rows@%s", s->tag);
  c->iv[0] = B, c->zv[0] = n;
  in_f(c, "x0", Bn, F_NORMAL, 1.0f, 0.0f);
  in_f(c, "eps", Bn, F_NORMAL, 1.0f, 0.0f);
  in_f(c, "sigma", (size_t)B, F_LOGNORMAL, -1.2f, 1.2f);
  out_f(c, "out", Bn, LIM(GPU_NMSE_ADD_SCALED_ROWS));
  for (int inplace = 0; inplace < 2; inplace++) {
    c = new_check("scale_rows", call_scale_rows, "scale_rows%s@%s", inplace ? "+inplace" : "",
                  s->tag);
    c->iv[0] = B, c->iv[1] = inplace, c->zv[0] = n;
    if (inplace) acc_f(c, "x", Bn, F_NORMAL, 1.0f, 0.0f, LIM(GPU_NMSE_SCALE_ROWS), NULL);
    else in_f(c, "x", Bn, F_NORMAL, 1.0f, 0.0f);
    in_f(c, "s", (size_t)B, F_LOGNORMAL, 0.0f, 1.0f);
    if (!inplace) out_f(c, "out", Bn, LIM(GPU_NMSE_SCALE_ROWS));
  }
  for (int masked = 0; masked < 2; masked++) {
    c = new_check("edm_loss_fwd", call_edm_fwd, "edm_loss_fwd%s@%s", masked ? "+mask" : "",
                  s->tag);
    c->iv[0] = B, c->iv[1] = masked, c->zv[0] = n;
    c->prep = prep_edm_fwd;
    in_f(c, "F", Bn, F_NORMAL, 1.0f, 0.0f);
    in_f(c, "x", Bn, F_NORMAL, 1.5f, 0.0f);
    in_f(c, "x0", Bn, F_NORMAL, 1.0f, 0.0f);
    in_f(c, "c_skip", (size_t)B, F_CUSTOM, 0, 0);
    in_f(c, "c_out", (size_t)B, F_CUSTOM, 0, 0);
    in_f(c, "weight", (size_t)B, F_CUSTOM, 0, 0);
    in_f(c, "mask", Bn, F_CUSTOM, 0, 0);
    out_f(c, "loss", 1, LIM(GPU_NMSE_EDM_LOSS_FWD));
    out_f(c, "D", Bn, LIM(GPU_NMSE_EDM_LOSS_FWD));
    c = new_check("edm_loss_bwd", call_edm_bwd, "edm_loss_bwd%s@%s", masked ? "+mask" : "",
                  s->tag);
    c->iv[0] = B, c->iv[1] = masked, c->zv[0] = n, c->fv[0] = 1.0f;
    c->prep = prep_edm_bwd;
    in_f(c, "D", Bn, F_NORMAL, 1.0f, 0.0f);
    in_f(c, "x0", Bn, F_NORMAL, 1.0f, 0.0f);
    in_f(c, "c_out", (size_t)B, F_CUSTOM, 0, 0);
    in_f(c, "weight", (size_t)B, F_CUSTOM, 0, 0);
    in_f(c, "mask", Bn, F_CUSTOM, 0, 0);
    out_f(c, "dF", Bn, LIM(GPU_NMSE_EDM_LOSS_BWD));
  }
}

// The update gate of adamw_ema (buffer 6): open with a clipping factor, or shut (skip).
static void prep_gate_quarter(check *c, sd_backend *cpu, uint64_t seed, uint32_t key) {
  (void)cpu, (void)seed, (void)key;
  ((float *)c->host[6])[0] = 0.25f, ((float *)c->host[6])[1] = 8.0f;
}
static void prep_gate_shut(check *c, sd_backend *cpu, uint64_t seed, uint32_t key) {
  (void)cpu, (void)seed, (void)key;
  ((float *)c->host[6])[0] = 0.0f, ((float *)c->host[6])[1] = INFINITY;
}

static void add_optim_memory(void) {
  const size_t n = 1000003;
  struct {
    const char *v;
    int t;
    float wd, gs;
  } ad[] = {{"t1", 1, 0.0f, 1.0f}, {"t1000+wd+clip", 1000, 0.03f, 0.5f}};
  for (int k = 0; k < 2; k++) {
    check *c = new_check("adamw", call_adamw, "adamw+%s@n%zu", ad[k].v, n);
    c->iv[0] = ad[k].t, c->zv[0] = n;
    c->fv[0] = 1e-3f, c->fv[1] = 0.9f, c->fv[2] = 0.999f, c->fv[3] = 1e-8f;
    c->fv[4] = ad[k].wd, c->fv[5] = ad[k].gs;
    in_f(c, "g", n, F_NORMAL, 0.01f, 0.0f);
    acc_f(c, "p", n, F_NORMAL, 0.5f, 0.0f, LIM(GPU_NMSE_ADAMW), LIM(GPU_NMSE_ADAMW_STEP));
    acc_f(c, "m", n, F_NORMAL, 0.005f, 0.0f, LIM(GPU_NMSE_ADAMW), NULL);
    acc_f(c, "v", n, F_UNIFORM, 1e-6f, 1e-4f, LIM(GPU_NMSE_ADAMW), NULL);
  }
  // AdamW with the teacher and generation EMAs in one pass (the trainer's update): without a
  // gate, with the gate open at a clipping factor, and shut (a skipped step)
  const char *gname[3] = {"", "+gate0.25", "+gateshut"};
  for (int k = 0; k < 3; k++) {
    check *c = new_check("adamw_ema", call_adamw_ema, "adamw_ema+2ema%s@n%zu", gname[k], n);
    c->iv[0] = 1000, c->iv[1] = k > 0, c->zv[0] = n;
    c->fv[0] = 1e-3f, c->fv[1] = 0.9f, c->fv[2] = 0.999f, c->fv[3] = 1e-8f;
    c->fv[4] = 0.03f, c->fv[5] = 0.5f, c->fv[6] = 0.996f, c->fv[7] = 0.9999f;
    if (k) c->prep = k == 1 ? prep_gate_quarter : prep_gate_shut;
    in_f(c, "g", n, F_NORMAL, 0.01f, 0.0f);
    acc_f(c, "p", n, F_NORMAL, 0.5f, 0.0f, LIM(GPU_NMSE_ADAMW), LIM(GPU_NMSE_ADAMW_STEP));
    acc_f(c, "m", n, F_NORMAL, 0.005f, 0.0f, LIM(GPU_NMSE_ADAMW), NULL);
    acc_f(c, "v", n, F_UNIFORM, 1e-6f, 1e-4f, LIM(GPU_NMSE_ADAMW), NULL);
    acc_f(c, "e1", n, F_NORMAL, 0.5f, 0.0f, LIM(GPU_NMSE_EMA), LIM(GPU_NMSE_EMA_STEP));
    acc_f(c, "e2", n, F_NORMAL, 0.5f, 0.0f, LIM(GPU_NMSE_EMA), LIM(GPU_NMSE_EMA_STEP));
    if (k) in_f(c, "gate", 2, F_CUSTOM, 0, 0);
  }
  const float decays[2] = {0.9999f, 0.9f};
  for (int k = 0; k < 2; k++) {
    check *c = new_check("ema", call_ema, "ema+%g@n%zu", decays[k], n);
    c->zv[0] = n, c->fv[0] = decays[k];
    in_f(c, "src", n, F_NORMAL, 0.5f, 0.0f);
    acc_f(c, "dst", n, F_NORMAL, 0.5f, 0.0f, LIM(GPU_NMSE_EMA), LIM(GPU_NMSE_EMA_STEP));
  }
  const float as[2] = {1.0f, -0.37f};
  for (int k = 0; k < 2; k++) {
    check *c = new_check("axpy", call_axpy, "axpy+%g@n%zu", as[k], n);
    c->zv[0] = n, c->fv[0] = as[k];
    in_f(c, "x", n, F_NORMAL, 1.0f, 0.0f);
    acc_f(c, "y", n, F_NORMAL, 1.0f, 0.0f, LIM(GPU_NMSE_AXPY), LIM(GPU_NMSE_AXPY));
  }
  const int values[2] = {0, 0xa5};
  for (int k = 0; k < 2; k++) {  // an odd byte count: the last float is partly written
    check *c = new_check("memset", call_memset, "memset+0x%02x@bytes%zu", values[k], 4 * n - 1);
    c->iv[0] = values[k], c->zv[1] = 4 * n - 1;
    out_f(c, "buf", n, LIM(GPU_NMSE_MEMORY));
  }
  check *c = new_check("copy", call_copy, "copy@bytes%zu", 4 * n - 2);
  c->zv[1] = 4 * n - 2;
  in_f(c, "src", n, F_NORMAL, 1.0f, 0.0f);
  out_f(c, "dst", n, LIM(GPU_NMSE_MEMORY));
}

// Layer norm + modulate (fp32 and bf16 out, the backward) and the gated residual with a bf16
// branch, at the MLP's modulation offsets: add_vector_paths' share of add_norm_attention and
// add_act_storage, without the matmuls and attention.
static void add_lnmod_residual(const shape *s) {
  const int B = s->B, T = s->T, D = s->D;
  const size_t BTD = (size_t)B * T * D;
  for (int bf = 0; bf < 2; bf++) {
    check *c = bf ? act_check("lnmod_fwd", call_lnmod_fwd, "lnmod_fwd", s->tag, "mlp")
                  : new_check("lnmod_fwd", call_lnmod_fwd, "lnmod_fwd@%s-mlp", s->tag);
    c->iv[0] = B, c->iv[1] = T, c->iv[2] = D, c->iv[3] = 6 * D, c->iv[4] = 3 * D;
    c->iv[5] = 4 * D, c->fv[0] = 1e-6f;
    in_f(c, "x", BTD, F_NORMAL, 1.5f, 0.7f);
    in_f(c, "mod", (size_t)B * 6 * D, F_NORMAL, 0.5f, 0.0f);
    const int o = out_f(c, "out", BTD, bf ? LIM(GPU_NMSE_ACT_LNMOD) : LIM(GPU_NMSE_LNMOD_FWD));
    if (bf) mark_act(c, o);
    out_f(c, "mean", (size_t)B * T, LIM(GPU_NMSE_LNMOD_FWD));
    out_f(c, "rstd", (size_t)B * T, LIM(GPU_NMSE_LNMOD_FWD));
  }
  check *c = new_check("lnmod_bwd", call_lnmod_bwd, "lnmod_bwd@%s-mlp", s->tag);
  c->iv[0] = B, c->iv[1] = T, c->iv[2] = D, c->iv[3] = 6 * D;
  c->iv[4] = 4 * D, c->iv[5] = 3 * D, c->iv[6] = 4 * D;
  c->prep = prep_lnmod_bwd;
  in_f(c, "dout", BTD, F_NORMAL, 1.0f, 0.0f);
  in_f(c, "x", BTD, F_NORMAL, 1.5f, 0.7f);
  in_f(c, "mean", (size_t)B * T, F_CUSTOM, 0, 0);
  in_f(c, "rstd", (size_t)B * T, F_CUSTOM, 0, 0);
  in_f(c, "mod", (size_t)B * 6 * D, F_NORMAL, 0.5f, 0.0f);
  acc_f(c, "dx", BTD, F_NORMAL, 1.0f, 0.0f, LIM(GPU_NMSE_LNMOD_BWD), LIM(GPU_NMSE_LNMOD_BWD));
  acc_f(c, "dmod", (size_t)B * 6 * D, F_NORMAL, 1.0f, 0.0f, LIM(GPU_NMSE_LNMOD_BWD),
        LIM(GPU_NMSE_LNMOD_BWD));
  add_gated_residual_act(s->tag, B, T, D);
}

// The element-wise, row, layer-norm, token and loss ops (norm_act.cu, lnmod_fast.cu,
// tokens_embed.cu, loss_optim.cu) on their vector and scalar paths: D = 1152 (DiT-XL; 33
// tokens: two 32-token chunks in the backward sums), D = 37 (odd: rows not a multiple of 8,
// flat sizes with tails), and every pointer one element past 16-byte alignment ("-mis": D = 72
// and 1152, fp32 and bf16 storage). Matmuls and attention are left to the model shapes.
static void add_vector_paths(void) {
  static const shape vs[] = {
      // tag          B  T    D   NH  Tk  C  H   W  p  F    rows  N   P   bn  Hh
      {"vec1152",     2, 33, 1152, 16, 26, 4, 6, 6, 2, 256, 11, 52, 67, 37, 64},
      {"vec37",       1, 33, 37, 1, 26, 3, 6, 10, 2, 42, 11, 26, 37, 19, 37},
      {"vec72-mis",   3, 37, 72, 1, 29, 3, 14, 10, 2, 42, 11, 87, 37, 19, 72},
      {"vec1152-mis", 1, 33, 1152, 16, 26, 4, 6, 6, 2, 256, 11, 26, 67, 37, 64},
  };
  for (size_t k = 0; k < sizeof vs / sizeof vs[0]; k++) {
    g_misalign = strstr(vs[k].tag, "-mis") != NULL;
    add_lnmod_residual(&vs[k]);
    add_pointwise(&vs[k]);
    add_residual_patch(&vs[k]);
    add_conditioning_tokens(&vs[k]);
    add_losses_head(&vs[k]);
    g_misalign = 0;
  }
}

// The shapes tests/gpu/test_ops_cuda checks: DiT-S-like (B 2, T 256, D 384, NH 6), odd tails
// (T 37, D 72, one head of 72 as in DiT-XL) and the tiny preset (head dim 16).
static const shape k_shapes[] = {
    // tag   B   T    D   NH  Tk   C  H   W  p  F    rows  N    P     bn   Hh
    {"dits", 2, 256, 384, 6, 204, 4, 32, 32, 2, 256, 1001, 408, 8192, 256, 2048},
    {"tail", 3, 37, 72, 1, 29, 3, 14, 10, 2, 42, 11, 87, 37, 19, 72},
    {"tiny", 4, 16, 64, 4, 12, 4, 8, 8, 2, 256, 11, 48, 32, 16, 64},
    // a width that is not a multiple of 4 and a head dim cuDNN does not take: the general
    // (scalar) kernels and the hand-written attention
    {"odd", 2, 37, 75, 3, 29, 3, 10, 10, 2, 42, 11, 58, 37, 19, 75},
};

void sd_opcheck_add_shape(const sd_opcheck_shape *s) {
  add_matmuls(s);
  add_matmul_gelu(s, SD_F32);
  add_matmul_gelu(s, SD_BF16);
  add_matmul_fp32(s);
  add_norm_attention(s);
  add_act_storage(s);
  add_attention_paths(s);
  add_pointwise(s);
  add_residual_patch(s);
  add_conditioning_tokens(s);
  add_losses_head(s);
}

// ---- a step's decisions on the backend: step_gate, poison_nonfinite, center_update --------

static void call_step_gate(const check *c, sd_backend *be, void **p) {
  // fv: clip; iv: step; bufs: sumsq gate count
  be->ops->step_gate(be, F(1), F(2), F(0), c->fv[0], c->iv[0]);
}
static void call_poison(const check *c, sd_backend *be, void **p) {
  // iv: n; bufs: v x
  be->ops->poison_nonfinite(be, F(1), F(0), c->iv[0]);
}
static void call_center_update(const check *c, sd_backend *be, void **p) {
  // iv: P; fv: inv_count momentum; bufs: sum gate center
  be->ops->center_update(be, F(2), F(0), c->fv[0], c->fv[1], F(1), c->iv[0]);
}
// The custom inputs: sumsq per case (iv[1]), running counters; the values to test for
// finiteness (iv[1]: which one is not finite, -1 none); the gate (iv[1]: open or shut).
static void prep_step_gate(check *c, sd_backend *cpu, uint64_t seed, uint32_t key) {
  (void)cpu, (void)seed, (void)key;
  const float sumsq[4] = {2.25f, 400.0f, INFINITY, 0.0f};  // norm 1.5, 20 (clipped), inf, 0
  ((float *)c->host[0])[0] = sumsq[c->iv[1]];
  float *count = c->host[2];
  count[0] = 7.0f, count[1] = 2.0f, count[2] = 41.0f;
}
static void prep_poison(check *c, sd_backend *cpu, uint64_t seed, uint32_t key) {
  (void)cpu, (void)seed, (void)key;
  float *v = c->host[0];
  v[0] = 0.25f, v[1] = -3.0f;
  if (c->iv[1] >= 0) v[c->iv[1]] = c->iv[1] == 0 ? NAN : -INFINITY;
}
static void prep_center_update(check *c, sd_backend *cpu, uint64_t seed, uint32_t key) {
  (void)cpu, (void)seed, (void)key;
  float *gate = c->host[1];
  gate[0] = c->iv[1] ? 0.5f : 0.0f;
  gate[1] = 3.0f;
}

static void add_step_decisions(void) {
  const char *gname[4] = {"norm1.5", "clipped", "inf", "zero"};
  for (int k = 0; k < 4; k++) {  // the gate: plain, clipped, skipped, zero gradient
    check *c = new_check("step_gate", call_step_gate, "step_gate+%s@clip%s", gname[k],
                         k == 1 ? "4" : "0");
    c->iv[0] = 42, c->iv[1] = k, c->fv[0] = k == 1 ? 4.0f : 0.0f;
    c->prep = prep_step_gate;
    in_f(c, "sumsq", 1, F_CUSTOM, 0, 0);
    out_f(c, "gate", 2, LIM(GPU_NMSE_STEP_GATE));
    acc_f(c, "count", 3, F_CUSTOM, 0, 0, LIM(GPU_NMSE_STEP_GATE), NULL);
  }
  for (int k = -1; k < 2; k++) {  // finite losses, a NaN one, an infinite one
    check *c = new_check("poison_nonfinite", call_poison, "poison_nonfinite+%s@n2",
                         k < 0 ? "finite" : k == 0 ? "nan" : "inf");
    c->iv[0] = 2, c->iv[1] = k;
    c->prep = prep_poison;
    in_f(c, "v", 2, F_CUSTOM, 0, 0);
    acc_f(c, "x", 300, F_NORMAL, 1.0f, 0.0f, LIM(GPU_NMSE_POISON), NULL);
  }
  for (int k = 0; k < 2; k++) {  // an open gate updates the center, a shut one leaves it
    const int P = 65536 + 3;
    check *c = new_check("center_update", call_center_update, "center_update+%s@P%d",
                         k ? "open" : "shut", P);
    c->iv[0] = P, c->iv[1] = k, c->fv[0] = 1.0f / 6144.0f, c->fv[1] = 0.9f;
    c->prep = prep_center_update;
    in_f(c, "sum", (size_t)P, F_NORMAL, 30.0f, 0.0f);
    in_f(c, "gate", 2, F_CUSTOM, 0, 0);
    acc_f(c, "center", (size_t)P, F_NORMAL, 0.01f, 0.0f, LIM(GPU_NMSE_CENTER_UPDATE), NULL);
  }
}

void sd_opcheck_add_optim_memory(void) {
  add_optim_memory();
  add_step_decisions();
}

int sd_opcheck_add_test_shapes(const char *tag) {
  int n = 0;
  for (size_t k = 0; k < sizeof k_shapes / sizeof k_shapes[0]; k++)
    if (!tag || !strcmp(tag, k_shapes[k].tag)) sd_opcheck_add_shape(&k_shapes[k]), n++;
  if (!tag || !strcmp(tag, "vec")) add_vector_paths(), n++;
  return n;
}

// to_device / to_host with odd byte counts into the middle of guarded buffers, and a large
// memset past 2^31 bytes (index arithmetic) on a real device.
static void check_transfers(sd_backend *be, uint64_t seed, int prec) {
  const char *pn = g_prec_names[prec];
  const size_t G = GPU_GUARD_FLOATS, n = 100003, tot = n + 2 * G, bytes = 4 * n - 3;
  uint32_t *stage = sd_xmalloc(4 * tot, "stage"), *back = sd_xmalloc(4 * tot, "back");
  uint32_t *want = sd_xmalloc(4 * tot, "want");
  float *data = sd_xmalloc(4 * n, "data");
  bspec s = {.fill = F_NORMAL, .a = 1.0f};
  fill_f32(data, n, &s, seed, 9000u + (uint32_t)prec, 0);
  for (size_t k = 0; k < tot; k++)
    stage[k] = k < G || k >= G + n ? GPU_GUARD_BITS : GPU_CANARY_BITS;
  char *dev = be->ops->alloc(be, 4 * tot);
  be->ops->to_device(be, dev, stage, 4 * tot);
  be->ops->to_device(be, dev + 4 * G, data, bytes);  // the last float keeps a canary byte
  be->ops->to_host(be, back, dev, 4 * tot);
  memcpy(want, stage, 4 * tot);
  memcpy((char *)(want + G), data, bytes);
  size_t w = 0;
  double e = sd_gpu_nmse((float *)back, (float *)want, tot, &w);
  report("to_device+odd_bytes@n100003", pn, e, 0.0, w, ((float *)back)[w], ((float *)want)[w]);
  for (size_t k = 0; k < tot; k++) back[k] = want[k] = GPU_GUARD_BITS;
  be->ops->to_host(be, (char *)(back + G), dev + 4 * G, bytes);  // into a guarded host buffer
  memcpy((char *)(want + G), data, bytes);
  e = sd_gpu_nmse((float *)back, (float *)want, tot, &w);
  report("to_host+odd_bytes@n100003", pn, e, 0.0, w, ((float *)back)[w], ((float *)want)[w]);
  be->ops->free(be, dev);
  if (!sd_gpu_is_sim(be)) {  // 3 GiB + 64 bytes: memset, then read back both ends
    const size_t big = ((size_t)3 << 30) + 64;
    char *d = be->ops->alloc(be, big);
    be->ops->memset(be, d, 0x3c, big);
    unsigned char ends[2][64];
    be->ops->to_host(be, ends[0], d, 64);
    be->ops->to_host(be, ends[1], d + big - 64, 64);
    int ok = 1;
    for (int k = 0; k < 64; k++) ok &= ends[0][k] == 0x3c && ends[1][k] == 0x3c;
    report("memset+0x3c@bytes3221225536", pn, ok ? 0.0 : INFINITY, 0.0, 0, 0, 0);
    be->ops->free(be, d);
  }
  free(stage);
  free(back);
  free(want);
  free(data);
}

// Test hooks of kernels/cuda/weights_bf16.cu (weak: absent from builds without CUDA): the
// bf16 copy of registered weights as it is, and a write that bypasses the ops.
const void *sd_cuda_weights_peek(sd_backend *be, const float *w, size_t n, int *stale);
void sd_cuda_weights_test_write(sd_backend *be, void *dst, const void *src, size_t bytes);
#pragma weak sd_cuda_weights_peek
#pragma weak sd_cuda_weights_test_write

typedef struct wcheck {
  sd_backend *be;
  const char *pn;
  int device;           // a CUDA backend (its test hooks apply), not the stand-in
  int M, K, N;
  float *inp, *out;     // device (M, K), (M, N)
  float *h1, *h2;       // host (M, N)
} wcheck;

// matmul_fwd with the registered weight w and with its unregistered twin w_t (the same
// values): reported as "op weights+WHAT", bitwise equal (want_same) or not.
static void weights_products(wcheck *c, const float *w, const float *w_t, int want_same,
                             const char *what) {
  const size_t no = (size_t)c->M * c->N;
  c->be->ops->matmul_fwd(c->be, c->out, SD_F32, c->inp, SD_F32, w, NULL, c->M, c->K, c->N);
  c->be->ops->to_host(c->be, c->h1, c->out, 4 * no);
  c->be->ops->matmul_fwd(c->be, c->out, SD_F32, c->inp, SD_F32, w_t, NULL, c->M, c->K, c->N);
  c->be->ops->to_host(c->be, c->h2, c->out, 4 * no);
  size_t k = 0;
  while (k < no && !memcmp(&c->h1[k], &c->h2[k], 4)) k++;
  const int same = k == no;
  char name[96];
  snprintf(name, sizeof name, "weights+%s@%dx%dx%d", what, c->M, c->K, c->N);
  if (same == want_same) report(name, c->pn, 0.0, 0.0, 0, c->h1[0], c->h2[0]);
  else if (same) report(name, c->pn, INFINITY, 0.0, 0, c->h1[0], c->h2[0]);  // should differ
  else report(name, c->pn, INFINITY, 0.0, k, c->h1[k], c->h2[k]);
}

// On a device: the copy of w (n) is fresh and each element bf16 (nearest even) of w's.
static void weights_copy_exact(wcheck *c, const float *w, size_t n, const char *what) {
  if (!c->device || !sd_cuda_weights_peek || strcmp(c->pn, "bf16")) return;  // copies: bf16
  char name[96];
  snprintf(name, sizeof name, "weights+%s.copy@n%zu", what, n);
  int stale = 1;
  const void *cp = sd_cuda_weights_peek(c->be, w, n, &stale);
  if (!cp || stale) {
    printf("op %s prec %s FAIL: %s\n", name, c->pn, cp ? "the copy is stale" : "no bf16 copy");
    check_record(0);
    return;
  }
  float *hw = sd_xmalloc(4 * n, "weights check");
  uint16_t *hc = sd_xmalloc(2 * n, "weights check");
  c->be->ops->to_host(c->be, hw, w, 4 * n);
  c->be->ops->to_host(c->be, hc, cp, 2 * n);
  size_t k = 0;
  while (k < n && hc[k] == sd_bf16_from_float(hw[k])) k++;
  report(name, c->pn, k == n ? 0.0 : INFINITY, 0.0, k == n ? 0 : k,
         k == n ? 0.0f : sd_bf16_to_float(hc[k]), k == n ? 0.0f : sd_gpu_bf16_round(hw[k]));
  free(hw);
  free(hc);
}

// Registered weights (ops.h weights_register) after each kind of write give bitwise the
// products of unregistered twins: the first read, adamw_ema (the student and its teacher EMA
// registered, as the trainer has them), to_device, a compute op (scale_rows), and a write
// that bypasses the ops followed by weights_changed (on a device, the products differ before
// weights_changed: evidence that the matmuls read the copy). On a device the copies are also
// compared with bf16 of the fp32 values.
static void check_weight_copies(sd_backend *be, uint64_t seed, int prec) {
  // (the stand-in keeps no copies: its checks pass trivially, the device's are the real ones)
  const int device = !sd_gpu_is_sim(be) && !strcmp(be->name, "cuda");
  wcheck c = {be, g_prec_names[prec], device, 33, 64, 48, NULL, NULL, NULL, NULL};
  const size_t nw = (size_t)c.N * c.K, ni = (size_t)c.M * c.K, no = (size_t)c.M * c.N;
  const sd_ops *op = be->ops;
  float *h = sd_xmalloc(4 * (nw > ni ? nw : ni), "weights check");
  c.h1 = sd_xmalloc(4 * no, "weights check");
  c.h2 = sd_xmalloc(4 * no, "weights check");
  bspec sp = {.fill = F_NORMAL, .a = 0.5f};
  // w, e (registered), w_t, e_t (twins), g, m, v, m_t, v_t, s (N) scales
  float *w = op->alloc(be, 4 * nw), *e = op->alloc(be, 4 * nw), *w_t = op->alloc(be, 4 * nw);
  float *e_t = op->alloc(be, 4 * nw), *g = op->alloc(be, 4 * nw), *m = op->alloc(be, 4 * nw);
  float *v = op->alloc(be, 4 * nw), *m_t = op->alloc(be, 4 * nw), *v_t = op->alloc(be, 4 * nw);
  float *sc = op->alloc(be, 4 * (size_t)c.N);
  c.inp = op->alloc(be, 4 * ni);
  c.out = op->alloc(be, 4 * no);
  fill_f32(h, ni, &sp, seed, 9100u + (uint32_t)prec, 0);
  op->to_device(be, c.inp, h, 4 * ni);
  float *twins[4] = {w, w_t, e, e_t};
  for (int k = 0; k < 4; k++) {
    fill_f32(h, nw, &sp, seed, 9110u + (uint32_t)prec + 2u * (uint32_t)(k / 2), 0);
    op->to_device(be, twins[k], h, 4 * nw);
  }
  sp.a = 0.01f;
  fill_f32(h, nw, &sp, seed, 9120u + (uint32_t)prec, 0);
  op->to_device(be, g, h, 4 * nw);
  float *mv[4] = {m, m_t, v, v_t};
  for (int k = 0; k < 4; k++) op->memset(be, mv[k], 0, 4 * nw);
  op->weights_register(be, w, nw);
  op->weights_register(be, e, nw);
  weights_products(&c, w, w_t, 1, "first_read");
  weights_products(&c, e, e_t, 1, "first_read_teacher");
  for (int k = 0; k < 2; k++)
    op->adamw_ema(be, k ? w_t : w, g, k ? m_t : m, k ? v_t : v, nw, 1e-2f, 0.9f, 0.999f, 1e-8f,
                  0.01f, 3, 1.0f, k ? e_t : e, 0.99f, NULL, 0.0f, NULL);
  weights_copy_exact(&c, w, nw, "adamw_ema");
  weights_copy_exact(&c, e, nw, "adamw_ema_teacher");
  weights_products(&c, w, w_t, 1, "adamw_ema");
  weights_products(&c, e, e_t, 1, "adamw_ema_teacher");
  sp.a = 0.5f;
  fill_f32(h, nw, &sp, seed, 9130u + (uint32_t)prec, 0);
  op->to_device(be, w, h, 4 * nw);
  op->to_device(be, w_t, h, 4 * nw);
  weights_products(&c, w, w_t, 1, "to_device");
  fill_f32(h, (size_t)c.N, &sp, seed, 9140u + (uint32_t)prec, 0);
  op->to_device(be, sc, h, 4 * (size_t)c.N);
  op->scale_rows(be, w, w, sc, c.N, (size_t)c.K);
  op->scale_rows(be, w_t, w_t, sc, c.N, (size_t)c.K);
  weights_products(&c, w, w_t, 1, "scale_rows");
  weights_copy_exact(&c, w, nw, "scale_rows_refreshed");
  // a write outside the ops: the stand-in's memory is the host's, a device's through the hook
  fill_f32(h, nw, &sp, seed, 9150u + (uint32_t)prec, 0);
  const int dev = device && sd_cuda_weights_test_write;
  if (dev || sd_gpu_is_sim(be)) {
    for (int k = 0; k < 2; k++) {
      if (dev) sd_cuda_weights_test_write(be, k ? w_t : w, h, 4 * nw);
      else memcpy(k ? w_t : w, h, 4 * nw);
    }
    if (dev && prec == 1) weights_products(&c, w, w_t, 0, "bypass_unseen");
    op->weights_changed(be, w, nw);
    weights_products(&c, w, w_t, 1, "weights_changed");
  }
  float *bufs[] = {w, e, w_t, e_t, g, m, v, m_t, v_t, sc, c.inp, c.out};
  for (size_t k = 0; k < sizeof bufs / sizeof bufs[0]; k++) op->free(be, bufs[k]);
  free(h);
  free(c.h1);
  free(c.h2);
}

// The CUDA files' own self-tests (declared with C linkage in kernels/cuda/cuda_internal.h,
// which C cannot include). Weak, so builds without them link; each one that is there runs once.
int sd_cuda_matmul_selftest(sd_backend *be, char *err, size_t len);
int sd_cuda_norm_act_selftest(sd_backend *be, char *err, size_t len);
int sd_cuda_tokens_selftest(sd_backend *be, char *err, size_t len);
int sd_cuda_attention_selftest(sd_backend *be, char *err, size_t len);
int sd_cuda_loss_optim_selftest(sd_backend *be, char *err, size_t len);
#pragma weak sd_cuda_matmul_selftest
int sd_cuda_weights_selftest(sd_backend *be, char *err, size_t len);
#pragma weak sd_cuda_weights_selftest
#pragma weak sd_cuda_norm_act_selftest
#pragma weak sd_cuda_tokens_selftest
#pragma weak sd_cuda_attention_selftest
#pragma weak sd_cuda_loss_optim_selftest

void sd_opcheck_run_unit_selftests(sd_backend *be) {
  struct {
    const char *name;
    int (*fn)(sd_backend *, char *, size_t);
  } st[] = {{"sd_cuda_matmul_selftest", sd_cuda_matmul_selftest},
            {"sd_cuda_norm_act_selftest", sd_cuda_norm_act_selftest},
            {"sd_cuda_tokens_selftest", sd_cuda_tokens_selftest},
            {"sd_cuda_attention_selftest", sd_cuda_attention_selftest},
            {"sd_cuda_loss_optim_selftest", sd_cuda_loss_optim_selftest},
            {"sd_cuda_weights_selftest", sd_cuda_weights_selftest}};
  for (size_t i = 0; i < sizeof st / sizeof st[0]; i++) {
    if (!st[i].fn) {
      printf("unit %s not in this build\n", st[i].name);
      continue;
    }
    char err[1024] = "";
    double t0 = sd_now_s();
    int rc = st[i].fn(be, err, sizeof err);
    printf("unit %s %s (%.1f s)%s%s\n", st[i].name, rc == 0 ? "ok" : "FAIL",
           sd_now_s() - t0, err[0] ? ": " : "", err);
    check_record(rc == 0);
  }
}


// Every op of sd_ops (besides alloc, free, to_device, to_host, sync) must have a check.
static const char *const k_all_ops[] = {
    "matmul_fwd", "matmul_bwd", "lnmod_fwd", "lnmod_bwd", "attention_fwd", "attention_bwd",
    "gelu_fwd", "gelu_bwd", "silu_fwd", "silu_bwd", "gated_residual_fwd",
    "gated_residual_bwd", "patchify", "unpatchify_fwd", "unpatchify_bwd", "add_rows",
    "timestep_features", "embed_rows_fwd", "embed_rows_bwd", "gather_tokens",
    "scatter_add_tokens", "mse_fwd", "mse_bwd", "sum_squares", "l2norm_rows_fwd",
    "l2norm_rows_bwd", "dino_loss_fwd", "dino_loss_bwd", "sum_rows", "merge_tokens_fwd",
    "merge_tokens_bwd", "add_scaled_rows", "scale_rows", "edm_loss_fwd", "edm_loss_bwd",
    "adamw", "ema", "axpy", "step_gate", "poison_nonfinite", "center_update", "memset",
    "copy"};

int sd_opcheck_count(void) { return g_n; }

int sd_opcheck_uncovered(void) {
  const int nall = (int)(sizeof k_all_ops / sizeof k_all_ops[0]);
  int missing = 0;
  for (int k = 0; k < nall; k++) {
    int seen = 0;
    for (int i = 0; i < g_n && !seen; i++) seen = !strcmp(g_checks[i].op, k_all_ops[k]);
    if (!seen) {
      printf("FAIL no check covers op %s\n", k_all_ops[k]);
      check_record(0);
      missing++;
    }
  }
  return missing;
}

int sd_opcheck_op_count(void) { return (int)(sizeof k_all_ops / sizeof k_all_ops[0]); }

// The device's results of a second run of check i against its first: the same bits.
static void check_determinism(check *c, sd_backend *dev, int prec, int *same, int *differ) {
  float *again[MAXB] = {0};
  run_on(c, dev, again, g_prec_names[prec], "device, second run");
  for (int b = 0; b < c->nb; b++) {
    if (c->b[b].role != R_IN) {
      const uint32_t *x = (const uint32_t *)c->gpu_out[b], *y = (const uint32_t *)again[b];
      size_t k = 0;
      while (k < c->b[b].n && x[k] == y[k]) k++;
      if (k < c->b[b].n) {
        printf("determinism %s.%s prec %s FAIL first_index %zu got 0x%08x then 0x%08x\n",
               c->name, c->b[b].name, g_prec_names[prec], k, x[k], y[k]);
        (*differ)++;
        check_record(0);
      } else {
        (*same)++;
        check_record(1);
      }
    }
    free(again[b]);
  }
}

int sd_opcheck_run(sd_backend *dev, sd_backend *cpu, const sd_opcheck_opts *o) {
  const int fail0 = g_fail;
  g_filter = o->filter;
  g_verbose = o->verbose;
  for (int prec = 0; prec < 2; prec++) {
    if (o->only_prec && strcmp(o->only_prec, g_prec_names[prec]) != 0) continue;
    char err[512];
    if (sd_gpu_set_precision(dev, g_prec_names[prec], err, sizeof err) != 0) {
      printf("FAIL precision %s: %s\n", g_prec_names[prec], err);
      check_record(0);
      continue;
    }
    if (!o->quiet) printf("# precision %s\n", g_prec_names[prec]);
    double t0 = sd_now_s();
    int ran = 0;
    for (int i = 0; i < g_n; i++) {
      check *c = &g_checks[i];
      if (g_filter && !strstr(c->name, g_filter)) continue;
      if (c->act == SD_BF16 && prec == 0) continue;  // bf16 storage goes with bf16 matmuls
      const uint32_t key = (uint32_t)(i * 2 + prec);  // fresh inputs per check and precision
      gen_inputs(c, cpu, o->seed, key);
      float *res_cpu[MAXB] = {0};
      run_on(c, cpu, res_cpu, g_prec_names[prec], "cpu");
      run_on(c, dev, c->gpu_out, g_prec_names[prec], "device");
      compare(c, c->gpu_out, res_cpu, prec);
      for (int b = 0; b < c->nb; b++) free(res_cpu[b]);
      if (!o->determinism) free_inputs(c);
      ran++;
      if (o->progress && (ran % 50 == 0))
        printf("# precision %s: %d checks, %.1f s, %d failed so far\n", g_prec_names[prec], ran,
               sd_now_s() - t0, g_fail - fail0);
    }
    if (o->transfers) check_transfers(dev, o->seed, prec);
    if (o->transfers) check_weight_copies(dev, o->seed, prec);  // registered bf16 weights
    double t1 = sd_now_s();
    if (o->determinism) {  // the whole list again on the device, the same bits
      int same = 0, differ = 0;
      for (int i = 0; i < g_n; i++) {
        check *c = &g_checks[i];
        if (g_filter && !strstr(c->name, g_filter)) continue;
        if (c->act == SD_BF16 && prec == 0) continue;
        check_determinism(c, dev, prec, &same, &differ);
        free_inputs(c);
      }
      if (!o->quiet || differ)
        printf("determinism prec %s: %d outputs bitwise equal on a second run, %d differ %s\n",
               g_prec_names[prec], same, differ, differ ? "FAIL" : "ok");
    }
    if (o->quiet) continue;
    printf("# precision %s: %d checks, %.1f s compare%s", g_prec_names[prec], ran, t1 - t0,
           o->determinism ? "" : "\n");
    if (o->determinism) printf(", %.1f s determinism\n", sd_now_s() - t1);
  }
  return g_fail - fail0;
}

void sd_opcheck_totals(int *passed, int *failed) {
  *passed = g_pass;
  *failed = g_fail;
}

void sd_opcheck_clear(void) {
  for (int i = 0; i < g_n; i++) free_inputs(&g_checks[i]);
  free(g_checks);
  g_checks = NULL;
  g_n = g_cap = 0;
}
