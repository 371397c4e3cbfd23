// cuDNN fused attention graphs, plans, cache and execution (see cudnn_sdpa.h).
#include "cudnn_sdpa.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The tensor attributes of the SDPA operations, in uid order (Q K V O Stats scale, then the
// backward's dO dQ dK dV).
const cudnnBackendAttributeName_t sd_sdpa_fwd_attrs[6] = {
    CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC, CUDNN_ATTR_OPERATION_SDPA_FWD_KDESC,
    CUDNN_ATTR_OPERATION_SDPA_FWD_VDESC, CUDNN_ATTR_OPERATION_SDPA_FWD_ODESC,
    CUDNN_ATTR_OPERATION_SDPA_FWD_STATSDESC, CUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC};
const cudnnBackendAttributeName_t sd_sdpa_bwd_attrs[10] = {
    CUDNN_ATTR_OPERATION_SDPA_BWD_QDESC, CUDNN_ATTR_OPERATION_SDPA_BWD_KDESC,
    CUDNN_ATTR_OPERATION_SDPA_BWD_VDESC, CUDNN_ATTR_OPERATION_SDPA_BWD_ODESC,
    CUDNN_ATTR_OPERATION_SDPA_BWD_STATSDESC, CUDNN_ATTR_OPERATION_SDPA_BWD_SCALEDESC,
    CUDNN_ATTR_OPERATION_SDPA_BWD_DODDESC, CUDNN_ATTR_OPERATION_SDPA_BWD_DQDESC,
    CUDNN_ATTR_OPERATION_SDPA_BWD_DKDESC, CUDNN_ATTR_OPERATION_SDPA_BWD_DVDESC};

static const char *const k_stage_names[SD_SDPA_NSTAGES] = {
    "none", "tensor", "operation", "graph", "heuristic", "plan", "execute"};

const char *sd_sdpa_stage_name(sd_sdpa_stage s) {
  return s >= 0 && s < SD_SDPA_NSTAGES ? k_stage_names[s] : "?";
}

sd_sdpa_stage sd_sdpa_stage_from_name(const char *name) {
  for (int s = 1; name && s < SD_SDPA_NSTAGES; s++)
    if (!strcmp(name, k_stage_names[s])) return (sd_sdpa_stage)s;
  return SD_SDPA_NONE;
}

void sd_sdpa_cache_init(sd_sdpa_cache *c, const sd_cudnn_api *api, cudnnHandle_t handle) {
  memset(c, 0, sizeof *c);
  c->api = api;
  c->handle = handle;
  c->refuse = sd_sdpa_stage_from_name(getenv("SD_CUDNN_REFUSE"));
}

static void plan_destroy(const sd_cudnn_api *api, sd_sdpa_plan *p) {
  for (int i = p->ndesc - 1; i >= 0; i--)
    if (p->desc[i]) api->BackendDestroyDescriptor(p->desc[i]);
  p->ndesc = 0;
  p->plan = NULL;
}

void sd_sdpa_cache_release(sd_sdpa_cache *c) {
  for (int i = 0; i < c->count; i++) {
    plan_destroy(c->api, c->plans[i]);
    free(c->plans[i]);
  }
  free(c->plans);
  c->plans = NULL;
  c->count = c->cap = 0;
}

// ---- building: every call checked; the first refusal is recorded in the plan's why ----

typedef struct builder {
  sd_sdpa_cache *c;
  sd_sdpa_plan *p;
  int failed;
} builder;

static void refused(builder *b, sd_sdpa_stage stage, cudnnStatus_t s, const char *what) {
  if (b->failed) return;
  b->failed = 1;
  const sd_sdpa_key *k = &b->p->key;
  const char *msg = b->c->api->GetErrorString ? b->c->api->GetErrorString(s) : "?";
  char ver[32];
  snprintf(b->p->why, sizeof b->p->why,
           "cuDNN %s refused SDPA_%s at %s (%s) for B=%d T=%d NH=%d HD=%d: %s%s",
           sd_cudnn_version_string(b->c->api, ver, sizeof ver), k->bwd ? "BWD" : "FWD",
           sd_sdpa_stage_name(stage), what, k->B, k->T, k->NH, k->HD, msg,
           b->c->refuse == stage ? " (simulated: SD_CUDNN_REFUSE)" : "");
}

// A simulated refusal at the start of a stage.
static int simulated(builder *b, sd_sdpa_stage stage, const char *what) {
  if (b->c->refuse != stage) return 0;
  refused(b, stage, CUDNN_STATUS_NOT_SUPPORTED, what);
  return 1;
}

static cudnnBackendDescriptor_t make(builder *b, cudnnBackendDescriptorType_t type,
                                     sd_sdpa_stage stage, const char *what) {
  if (b->failed) return NULL;
  if (b->p->ndesc == SD_SDPA_MAX_DESC) {
    refused(b, stage, CUDNN_STATUS_INTERNAL_ERROR, "too many descriptors");
    return NULL;
  }
  cudnnBackendDescriptor_t d = NULL;
  cudnnStatus_t s = b->c->api->BackendCreateDescriptor(type, &d);
  if (s != CUDNN_STATUS_SUCCESS) {
    refused(b, stage, s, what);
    return NULL;
  }
  b->p->desc[b->p->ndesc++] = d;
  return d;
}

static void set(builder *b, cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t name,
                cudnnBackendAttributeType_t type, int64_t count, const void *value,
                sd_sdpa_stage stage, const char *what) {
  if (b->failed) return;
  cudnnStatus_t s = b->c->api->BackendSetAttribute(d, name, type, count, value);
  if (s != CUDNN_STATUS_SUCCESS) refused(b, stage, s, what);
}

static void finalize(builder *b, cudnnBackendDescriptor_t d, sd_sdpa_stage stage,
                     const char *what) {
  if (b->failed) return;
  cudnnStatus_t s = b->c->api->BackendFinalize(d);
  if (s != CUDNN_STATUS_SUCCESS) refused(b, stage, s, what);
}

// A 4-D tensor [d0, d1, d2, d3] with strides; by_value: the fp32 scale.
static cudnnBackendDescriptor_t tensor(builder *b, int64_t uid, cudnnDataType_t type,
                                       const int64_t dims[4], const int64_t strides[4],
                                       int by_value, const char *what) {
  if (simulated(b, SD_SDPA_TENSOR, what)) return NULL;
  cudnnBackendDescriptor_t t = make(b, CUDNN_BACKEND_TENSOR_DESCRIPTOR, SD_SDPA_TENSOR, what);
  const int64_t align = by_value ? 4 : 16;
  set(b, t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid, SD_SDPA_TENSOR, what);
  set(b, t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type, SD_SDPA_TENSOR, what);
  set(b, t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align, SD_SDPA_TENSOR, what);
  set(b, t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims, SD_SDPA_TENSOR, what);
  set(b, t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides, SD_SDPA_TENSOR, what);
  if (by_value) {
    const bool yes = true;  // CUDNN_TYPE_BOOLEAN: a bool
    set(b, t, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &yes, SD_SDPA_TENSOR, what);
  }
  finalize(b, t, SD_SDPA_TENSOR, what);
  return t;
}

// The graph's tensors, in the order of the uids (Q K V O STATS SCALE [dO dQ dK dV]).
static void make_tensors(builder *b, cudnnBackendDescriptor_t t[10]) {
  const sd_sdpa_key *k = &b->p->key;
  const int64_t B = k->B, T = k->T, H = k->NH, E = k->HD, D = H * E;
  const int64_t dims[4] = {B, H, T, E};
  const int64_t qkv_str[4] = {T * 3 * D, E, 3 * D, 1};
  const int64_t out_str[4] = {T * D, E, D, 1};
  const int64_t st_dims[4] = {B, H, T, 1}, st_str[4] = {H * T, T, 1, 1};
  const int64_t one[4] = {1, 1, 1, 1};
  const cudnnDataType_t bf = CUDNN_DATA_BFLOAT16, f32 = CUDNN_DATA_FLOAT;
  t[0] = tensor(b, SD_SDPA_UID_Q, bf, dims, qkv_str, 0, "Q");
  t[1] = tensor(b, SD_SDPA_UID_K, bf, dims, qkv_str, 0, "K");
  t[2] = tensor(b, SD_SDPA_UID_V, bf, dims, qkv_str, 0, "V");
  t[3] = tensor(b, SD_SDPA_UID_O, bf, dims, out_str, 0, "O");
  t[4] = tensor(b, SD_SDPA_UID_STATS, f32, st_dims, st_str, 0, "Stats");
  t[5] = tensor(b, SD_SDPA_UID_SCALE, f32, one, one, 1, "scale");
  if (!k->bwd) return;
  t[6] = tensor(b, SD_SDPA_UID_DO, bf, dims, out_str, 0, "dO");
  t[7] = tensor(b, SD_SDPA_UID_DQ, bf, dims, qkv_str, 0, "dQ");
  t[8] = tensor(b, SD_SDPA_UID_DK, bf, dims, qkv_str, 0, "dK");
  t[9] = tensor(b, SD_SDPA_UID_DV, bf, dims, qkv_str, 0, "dV");
}

static cudnnBackendDescriptor_t make_operation(builder *b, cudnnBackendDescriptor_t t[10]) {
  const int bwd = b->p->key.bwd;
  const char *what = bwd ? "SDPA_BWD operation" : "SDPA_FWD operation";
  if (simulated(b, SD_SDPA_OPERATION, what)) return NULL;
  cudnnBackendDescriptor_t op =
      make(b, bwd ? CUDNN_BACKEND_OPERATION_SDPA_BWD_DESCRIPTOR
                  : CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR, SD_SDPA_OPERATION, what);
  const int n = bwd ? 10 : 6;
  for (int i = 0; i < n; i++)
    set(b, op, bwd ? sd_sdpa_bwd_attrs[i] : sd_sdpa_fwd_attrs[i], CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t[i],
        SD_SDPA_OPERATION, what);
  finalize(b, op, SD_SDPA_OPERATION, what);
  return op;
}

// Engine configs of the heuristic in mode; their count in *n (at most max).
static void heuristic(builder *b, cudnnBackendDescriptor_t graph, cudnnBackendHeurMode_t mode,
                      cudnnBackendDescriptor_t *cfg, int max, int64_t *n) {
  *n = 0;
  const char *what = mode == CUDNN_HEUR_MODE_A ? "heuristic mode A" : "heuristic fallback";
  if (simulated(b, SD_SDPA_HEURISTIC, what)) return;
  cudnnBackendDescriptor_t h = make(b, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, SD_SDPA_HEURISTIC,
                                    what);
  set(b, h, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph,
      SD_SDPA_HEURISTIC, what);
  set(b, h, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode, SD_SDPA_HEURISTIC, what);
  finalize(b, h, SD_SDPA_HEURISTIC, what);
  for (int i = 0; i < max && !b->failed; i++)
    cfg[i] = make(b, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, SD_SDPA_HEURISTIC, what);
  if (b->failed) return;
  cudnnStatus_t s = b->c->api->BackendGetAttribute(h, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                                   CUDNN_TYPE_BACKEND_DESCRIPTOR, max, n, cfg);
  if (s != CUDNN_STATUS_SUCCESS) {
    refused(b, SD_SDPA_HEURISTIC, s, what);
    *n = 0;
  }
  if (*n > max) *n = max;
}

// 1 when the engine of cfg declares itself nondeterministic (a numerical note): a rerun on
// the same inputs could give other bits (the backward's dQ accumulation with atomics).
static int nondeterministic(const sd_cudnn_api *api, cudnnBackendDescriptor_t cfg) {
  cudnnBackendDescriptor_t engine = NULL;
  int64_t n = 0;
  int nd = 0;
  if (api->BackendCreateDescriptor(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &engine) !=
      CUDNN_STATUS_SUCCESS)
    return 0;
  if (api->BackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                               1, &n, &engine) == CUDNN_STATUS_SUCCESS && n == 1) {
    cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
    if (api->BackendGetAttribute(engine, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE,
                                 CUDNN_TYPE_NUMERICAL_NOTE, CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &n,
                                 notes) == CUDNN_STATUS_SUCCESS)
      for (int64_t k = 0; k < n && k < CUDNN_NUMERICAL_NOTE_TYPE_COUNT; k++)
        nd |= notes[k] == CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC;
  }
  api->BackendDestroyDescriptor(engine);
  return nd;
}

// What the engine configs tried so far came to (both heuristic modes).
typedef struct tries {
  int tried, skipped_nd;
  cudnnStatus_t last;  // the last refusal's status
} tries;

// The first of cfg[0..n) whose execution plan finalizes and which is deterministic (unless
// SD_CUDNN_NONDETERMINISTIC=1 allows the others): the plan and its workspace size are kept
// in the plan record, 1 returned; 0 when none (no refusal recorded: the caller decides).
static int make_plan(builder *b, cudnnBackendDescriptor_t *cfg, int64_t n, int fallback,
                     tries *t) {
  sd_sdpa_plan *p = b->p;
  const sd_cudnn_api *api = b->c->api;
  const char *allow = getenv("SD_CUDNN_NONDETERMINISTIC");
  for (int64_t i = 0; i < n && !b->failed; i++) {
    t->tried++;
    p->configs_tried++;
    if (b->c->refuse == SD_SDPA_PLAN) continue;
    if (!(allow && !strcmp(allow, "1")) && nondeterministic(api, cfg[i])) {
      t->skipped_nd++;
      continue;
    }
    cudnnBackendDescriptor_t plan = NULL;
    cudnnStatus_t s = api->BackendCreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &plan);
    if (s != CUDNN_STATUS_SUCCESS) {
      t->last = s;
      continue;
    }
    s = api->BackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1,
                                 &b->c->handle);
    if (s == CUDNN_STATUS_SUCCESS)
      s = api->BackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
                                   CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfg[i]);
    if (s == CUDNN_STATUS_SUCCESS) s = api->BackendFinalize(plan);
    int64_t ws = 0, got = 0;
    if (s == CUDNN_STATUS_SUCCESS) {
      s = api->BackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                   CUDNN_TYPE_INT64, 1, &got, &ws);
      if (s == CUDNN_STATUS_SUCCESS && (got != 1 || ws < 0)) s = CUDNN_STATUS_INTERNAL_ERROR;
    }
    if (s != CUDNN_STATUS_SUCCESS) {
      t->last = s;
      api->BackendDestroyDescriptor(plan);
      continue;
    }
    p->desc[p->ndesc++] = plan;  // a slot is free: build() kept one for it
    p->plan = plan;
    p->workspace = ws;
    p->config = (int)i;
    p->fallback_mode = fallback;
    return 1;
  }
  return 0;
}

static void build(sd_sdpa_cache *c, sd_sdpa_plan *p) {
  builder b = {c, p, 0};
  const sd_sdpa_key *k = &p->key;
  if (k->HD % 8 != 0 || k->HD > 256 || k->B <= 0 || k->T <= 0 || k->NH <= 0) {
    snprintf(p->why, sizeof p->why, "head dim %d is not a multiple of 8 up to 256 (cuDNN's "
             "fused attention needs 16-byte rows)", k->HD);
    return;
  }
  cudnnBackendDescriptor_t t[10] = {0};
  make_tensors(&b, t);
  cudnnBackendDescriptor_t op = make_operation(&b, t);
  if (!b.failed && !simulated(&b, SD_SDPA_GRAPH, "operation graph")) {
    cudnnBackendDescriptor_t g = make(&b, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR,
                                      SD_SDPA_GRAPH, "operation graph");
    set(&b, g, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &c->handle,
        SD_SDPA_GRAPH, "operation graph");
    set(&b, g, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &op,
        SD_SDPA_GRAPH, "operation graph");
    finalize(&b, g, SD_SDPA_GRAPH, "operation graph");
    // the configs of heuristic mode A, then (when none gives a plan) of the fallback mode
    enum { kMaxCfg = 8 };
    cudnnBackendDescriptor_t cfg[kMaxCfg] = {0};
    int64_t n = 0;
    tries tr = {0, 0, CUDNN_STATUS_NOT_SUPPORTED};
    int done = 0;
    for (int fallback = 0; fallback < 2 && !done && !b.failed; fallback++) {
      heuristic(&b, g, fallback ? CUDNN_HEUR_MODE_FALLBACK : CUDNN_HEUR_MODE_A, cfg, kMaxCfg, &n);
      if (!b.failed && p->ndesc == SD_SDPA_MAX_DESC)
        refused(&b, SD_SDPA_PLAN, CUDNN_STATUS_INTERNAL_ERROR, "too many descriptors");
      if (!b.failed) done = make_plan(&b, cfg, n, fallback, &tr);
    }
    if (!b.failed && !done && tr.tried == 0)
      refused(&b, SD_SDPA_HEURISTIC, CUDNN_STATUS_NOT_SUPPORTED,
              "no engine config in heuristic mode A or fallback");
    if (!b.failed && !done) {
      char what[200];
      snprintf(what, sizeof what, "plan finalize: none of %d engine configs (modes A and "
               "fallback) finalized%s", tr.tried,
               tr.skipped_nd ? "; nondeterministic ones left out: SD_CUDNN_NONDETERMINISTIC=1 "
                              "allows them" : "");
      refused(&b, SD_SDPA_PLAN, tr.last, what);
    }
  }
  p->ok = !b.failed;
  if (!p->ok) plan_destroy(c->api, p);
}

int sd_sdpa_check_operation(const sd_cudnn_api *api, const sd_sdpa_key *key, char *why,
                            size_t len) {
  sd_sdpa_cache c;
  memset(&c, 0, sizeof c);
  c.api = api;
  sd_sdpa_plan *p = calloc(1, sizeof *p);
  if (!p) abort();
  p->key = *key;
  builder b = {&c, p, 0};
  cudnnBackendDescriptor_t t[10] = {0};
  make_tensors(&b, t);
  make_operation(&b, t);
  const int rc = b.failed ? -1 : 0;
  snprintf(why, len, "%s", p->why);
  plan_destroy(api, p);
  free(p);
  return rc;
}

sd_sdpa_plan *sd_sdpa_get(sd_sdpa_cache *c, const sd_sdpa_key *key) {
  for (int i = 0; i < c->count; i++)
    if (!memcmp(&c->plans[i]->key, key, sizeof *key)) return c->plans[i];
  if (c->count == c->cap) {
    c->cap = c->cap ? 2 * c->cap : 16;
    sd_sdpa_plan **grown = realloc(c->plans, sizeof *grown * (size_t)c->cap);
    if (!grown) abort();
    c->plans = grown;
  }
  sd_sdpa_plan *p = calloc(1, sizeof *p);
  if (!p) abort();
  p->key = *key;
  c->plans[c->count++] = p;
  build(c, p);
  return p;
}

// ---- execution ----

static int execute(sd_sdpa_cache *c, sd_sdpa_plan *p, int n, const int64_t *uids, void **ptrs,
                   void *workspace, char *err, size_t errlen) {
  const char *stage = NULL;
  cudnnStatus_t s = CUDNN_STATUS_SUCCESS;
  cudnnBackendDescriptor_t pack = NULL;
  for (int i = 0; i < n; i++)  // the tensors were declared 16-byte aligned
    if (uids[i] != SD_SDPA_UID_SCALE && ((uintptr_t)ptrs[i] & 15u)) {
      snprintf(err, errlen, "cuDNN attention: tensor uid %d at %p is not 16-byte aligned",
               (int)uids[i], ptrs[i]);
      p->ok = 0;
      snprintf(p->why, sizeof p->why, "%s", err);
      return -1;
    }
  if (c->refuse == SD_SDPA_EXECUTE) {
    s = CUDNN_STATUS_NOT_SUPPORTED;
    stage = "execute (simulated: SD_CUDNN_REFUSE)";
  }
  if (!stage && (s = c->api->BackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR,
                                                      &pack)) != CUDNN_STATUS_SUCCESS)
    stage = "variant pack create";
  if (!stage && (s = c->api->BackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS,
                                                  CUDNN_TYPE_INT64, n, uids)) !=
                    CUDNN_STATUS_SUCCESS)
    stage = "variant pack uids";
  if (!stage && (s = c->api->BackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS,
                                                  CUDNN_TYPE_VOID_PTR, n, ptrs)) !=
                    CUDNN_STATUS_SUCCESS)
    stage = "variant pack pointers";
  if (!stage && (s = c->api->BackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE,
                                                  CUDNN_TYPE_VOID_PTR, 1, &workspace)) !=
                    CUDNN_STATUS_SUCCESS)
    stage = "variant pack workspace";
  if (!stage && (s = c->api->BackendFinalize(pack)) != CUDNN_STATUS_SUCCESS)
    stage = "variant pack finalize";
  if (!stage && (s = c->api->BackendExecute(c->handle, p->plan, pack)) != CUDNN_STATUS_SUCCESS)
    stage = "execute";
  if (pack) c->api->BackendDestroyDescriptor(pack);
  if (!stage) {
    c->executions++;
    return 0;
  }
  char ver[32];
  snprintf(err, errlen, "cuDNN %s refused SDPA_%s at %s for B=%d T=%d NH=%d HD=%d: %s",
           sd_cudnn_version_string(c->api, ver, sizeof ver), p->key.bwd ? "BWD" : "FWD", stage,
           p->key.B, p->key.T, p->key.NH, p->key.HD,
           c->api->GetErrorString ? c->api->GetErrorString(s) : "?");
  p->ok = 0;
  snprintf(p->why, sizeof p->why, "%s", err);
  return -1;
}

int sd_sdpa_forward(sd_sdpa_cache *c, sd_sdpa_plan *p, void *out, float *lse, const void *qkv,
                    void *workspace, char *err, size_t errlen) {
  const size_t D = (size_t)p->key.NH * p->key.HD;
  float scale = 1.0f / sqrtf((float)p->key.HD);
  const int64_t uids[6] = {SD_SDPA_UID_Q, SD_SDPA_UID_K, SD_SDPA_UID_V,
                           SD_SDPA_UID_O, SD_SDPA_UID_STATS, SD_SDPA_UID_SCALE};
  void *ptrs[6] = {(void *)qkv, (char *)qkv + 2 * D, (char *)qkv + 4 * D, out, lse, &scale};
  return execute(c, p, 6, uids, ptrs, workspace, err, errlen);
}

int sd_sdpa_backward(sd_sdpa_cache *c, sd_sdpa_plan *p, void *dqkv, const void *dout,
                     const void *qkv, const void *out, const float *lse, void *workspace,
                     char *err, size_t errlen) {
  const size_t D = (size_t)p->key.NH * p->key.HD;
  float scale = 1.0f / sqrtf((float)p->key.HD);
  const int64_t uids[10] = {SD_SDPA_UID_Q,     SD_SDPA_UID_K,     SD_SDPA_UID_V,
                            SD_SDPA_UID_O,     SD_SDPA_UID_STATS, SD_SDPA_UID_SCALE,
                            SD_SDPA_UID_DO,    SD_SDPA_UID_DQ,    SD_SDPA_UID_DK,
                            SD_SDPA_UID_DV};
  void *ptrs[10] = {(void *)qkv, (char *)qkv + 2 * D, (char *)qkv + 4 * D, (void *)out,
                    (void *)lse, &scale, (void *)dout, dqkv, (char *)dqkv + 2 * D,
                    (char *)dqkv + 4 * D};
  return execute(c, p, 10, uids, ptrs, workspace, err, errlen);
}
