// The mock cuDNN (see cudnn_mock.h).
#include "cudnn_mock.h"
#include "cudnn_sdpa.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAXA = 16, MAXD = 4096 };

typedef struct attr {
  cudnnBackendAttributeName_t name;
  cudnnBackendAttributeType_t type;
  int64_t count;
  unsigned char val[10 * sizeof(void *)];
} attr;

typedef struct desc {
  cudnnBackendDescriptorType_t type;
  int live, finalized;
  attr a[MAXA];
  int na;
  int cfg_index;          // engine configs: the rank the heuristic gave them
  struct desc *graph;     // engine configs: the operation graph of their heuristic
  // tensors, once finalized
  int64_t uid, dims[4], strides[4];
  int dtype, by_value;
} desc;

static desc g_d[MAXD];
static int g_nd, g_errors, g_execs;
static cudnn_mock_opts g_o;
static int64_t g_exec_uid[16];
static void *g_exec_ptr[16], *g_exec_ws;
static int g_exec_n;
static float g_exec_scale;

static int problem(const char *unused, const char *what) {
  (void)unused;
  printf("mock: %s\n", what);
  g_errors++;
  return 1;
}

static desc *D(cudnnBackendDescriptor_t h) {
  const intptr_t i = (intptr_t)h - 1;
  if (i < 0 || i >= g_nd || !g_d[i].live) return NULL;
  return &g_d[i];
}

static attr *find(desc *d, cudnnBackendAttributeName_t name) {
  for (int i = 0; i < d->na; i++)
    if (d->a[i].name == name) return &d->a[i];
  return NULL;
}

// The descriptor an attribute of type BACKEND_DESCRIPTOR points to (count 1).
static desc *ref(desc *d, cudnnBackendAttributeName_t name) {
  attr *a = find(d, name);
  if (!a || a->type != CUDNN_TYPE_BACKEND_DESCRIPTOR || a->count != 1) return NULL;
  cudnnBackendDescriptor_t h;
  memcpy(&h, a->val, sizeof h);
  return D(h);
}

static size_t type_size(cudnnBackendAttributeType_t t) {
  switch (t) {
    case CUDNN_TYPE_INT64: return 8;
    case CUDNN_TYPE_BOOLEAN: return sizeof(bool);
    case CUDNN_TYPE_DATA_TYPE: return sizeof(cudnnDataType_t);
    case CUDNN_TYPE_HEUR_MODE: return sizeof(cudnnBackendHeurMode_t);
    default: return sizeof(void *);  // descriptors, handles, pointers
  }
}

static const char *ver(void) { return "mock"; }
static size_t get_version(void) { return 91900; }
static const char *err_string(cudnnStatus_t s) {
  return s == CUDNN_STATUS_SUCCESS ? "CUDNN_STATUS_SUCCESS"
       : s == CUDNN_STATUS_NOT_SUPPORTED ? "CUDNN_STATUS_NOT_SUPPORTED"
       : s == CUDNN_STATUS_BAD_PARAM ? "CUDNN_STATUS_BAD_PARAM" : "CUDNN_STATUS_(other)";
}
static cudnnStatus_t create(cudnnHandle_t *h) { *h = (cudnnHandle_t)(intptr_t)0x4a11; return 0; }
static cudnnStatus_t destroy(cudnnHandle_t h) { (void)h; return CUDNN_STATUS_SUCCESS; }
static cudnnStatus_t set_stream(cudnnHandle_t h, cudaStream_t s) { (void)h, (void)s; return 0; }

static cudnnStatus_t create_desc(cudnnBackendDescriptorType_t t, cudnnBackendDescriptor_t *out) {
  if (g_nd == MAXD) return CUDNN_STATUS_ALLOC_FAILED;
  desc *d = &g_d[g_nd];
  memset(d, 0, sizeof *d);
  d->type = t;
  d->live = 1;
  d->cfg_index = -1;
  *out = (cudnnBackendDescriptor_t)(intptr_t)(++g_nd);
  return CUDNN_STATUS_SUCCESS;
}

static cudnnStatus_t destroy_desc(cudnnBackendDescriptor_t h) {
  desc *d = D(h);
  if (!d) {
    problem("%s", "destroy of an unknown or destroyed descriptor");
    return CUDNN_STATUS_BAD_PARAM;
  }
  d->live = 0;
  return CUDNN_STATUS_SUCCESS;
}

static cudnnStatus_t set_attr(cudnnBackendDescriptor_t h, cudnnBackendAttributeName_t name,
                              cudnnBackendAttributeType_t type, int64_t count, const void *v) {
  desc *d = D(h);
  if (!d) return problem("%s", "set on an unknown descriptor"), CUDNN_STATUS_BAD_PARAM;
  if (d->finalized) return problem("%s", "set after finalize"), CUDNN_STATUS_BAD_PARAM;
  const size_t bytes = type_size(type) * (size_t)count;
  if (count < 1 || bytes > sizeof d->a[0].val)
    return problem("%s", "attribute count out of range"), CUDNN_STATUS_BAD_PARAM;
  if (type == CUDNN_TYPE_BACKEND_DESCRIPTOR)
    for (int64_t i = 0; i < count; i++) {
      cudnnBackendDescriptor_t r;
      memcpy(&r, (const char *)v + i * sizeof r, sizeof r);
      desc *rd = D(r);
      if (!rd || !rd->finalized)
        return problem("%s", "a descriptor attribute names an unfinalized descriptor"),
               CUDNN_STATUS_BAD_PARAM;
    }
  attr *a = find(d, name);
  if (!a) {
    if (d->na == MAXA) return CUDNN_STATUS_BAD_PARAM;
    a = &d->a[d->na++];
  }
  a->name = name;
  a->type = type;
  a->count = count;
  memcpy(a->val, v, bytes);
  return CUDNN_STATUS_SUCCESS;
}

static int64_t i64(attr *a, int k) {
  int64_t x;
  memcpy(&x, a->val + 8 * k, 8);
  return x;
}

static int finalize_tensor(desc *d) {
  attr *uid = find(d, CUDNN_ATTR_TENSOR_UNIQUE_ID), *dt = find(d, CUDNN_ATTR_TENSOR_DATA_TYPE),
       *dims = find(d, CUDNN_ATTR_TENSOR_DIMENSIONS), *st = find(d, CUDNN_ATTR_TENSOR_STRIDES),
       *al = find(d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT), *bv = find(d, CUDNN_ATTR_TENSOR_IS_BY_VALUE);
  if (!uid || !dt || !dims || !st || !al) return problem("%s", "tensor attribute missing");
  if (uid->type != CUDNN_TYPE_INT64 || dims->type != CUDNN_TYPE_INT64 ||
      st->type != CUDNN_TYPE_INT64 || al->type != CUDNN_TYPE_INT64 ||
      dt->type != CUDNN_TYPE_DATA_TYPE || (bv && bv->type != CUDNN_TYPE_BOOLEAN))
    return problem("%s", "tensor attribute of the wrong type");
  if (dims->count != 4 || st->count != 4) return problem("%s", "tensor not 4-D");
  d->uid = i64(uid, 0);
  for (int k = 0; k < 4; k++) {
    d->dims[k] = i64(dims, k);
    d->strides[k] = i64(st, k);
    if (d->dims[k] < 1 || d->strides[k] < 1) return problem("%s", "non-positive dim or stride");
  }
  cudnnDataType_t t;
  memcpy(&t, dt->val, sizeof t);
  d->dtype = (int)t;
  bool b = false;
  if (bv) memcpy(&b, bv->val, sizeof b);
  d->by_value = b;
  const int64_t a = i64(al, 0), esz = t == CUDNN_DATA_BFLOAT16 ? 2 : 4;
  if (!d->by_value && d->dims[3] > 1 && (d->strides[3] != 1 || (d->strides[2] * esz) % a != 0))
    return problem("%s", "rows not contiguous or not aligned to the declared alignment");
  return 0;
}

// Every tensor of the op checked against Q's dims and its role's layout.
static int check_sdpa(desc *d, int bwd) {
  // (the attributes in role order, from cudnn_sdpa.h; the roles are checked below by type,
  // dims and strides, not by trusting the builder)
  const int n = bwd ? 10 : 6;
  desc *t[10];
  for (int i = 0; i < n; i++) {
    t[i] = ref(d, bwd ? sd_sdpa_bwd_attrs[i] : sd_sdpa_fwd_attrs[i]);
    if (!t[i] || t[i]->type != CUDNN_BACKEND_TENSOR_DESCRIPTOR)
      return problem("%s", "SDPA operation: a tensor attribute missing or not a tensor");
    for (int j = 0; j < i; j++)
      if (t[j]->uid == t[i]->uid) return problem("%s", "SDPA operation: two tensors share a uid");
  }
  const int64_t *q = t[0]->dims;
  for (int i = 0; i < n; i++) {
    if (i == 5) {
      if (!t[i]->by_value || t[i]->dtype != CUDNN_DATA_FLOAT)
        return problem("%s", "scale is not a by-value fp32 scalar");
      continue;
    }
    if (t[i]->by_value) return problem("%s", "a data tensor is by value");
    if (i == 4) {
      if (t[i]->dtype != CUDNN_DATA_FLOAT || t[i]->dims[0] != q[0] || t[i]->dims[1] != q[1] ||
          t[i]->dims[2] != q[2] || t[i]->dims[3] != 1)
        return problem("%s", "Stats is not fp32 [B, H, S, 1]");
      continue;
    }
    if (t[i]->dtype != CUDNN_DATA_BFLOAT16) return problem("%s", "Q/K/V/O/dO/dQ/dK/dV not bf16");
    for (int k = 0; k < 4; k++)
      if (t[i]->dims[k] != q[k]) return problem("%s", "dims differ from Q's");
    // Q K V (and dQ dK dV) share the packed qkv strides, O and dO the out strides
    const desc *like = (i <= 2 || i >= 7) ? t[0] : t[3];
    for (int k = 0; k < 4; k++)
      if (t[i]->strides[k] != like->strides[k]) return problem("%s", "strides differ by role");
  }
  // the packed layout: heads HD apart, tokens 3D apart (qkv) and D apart (out)
  const int64_t E = q[3], H = q[1], S = q[2], Dm = H * E;
  const int64_t *qs = t[0]->strides, *os = t[3]->strides;
  if (qs[1] != E || qs[2] != 3 * Dm || qs[0] != S * 3 * Dm || os[1] != E || os[2] != Dm ||
      os[0] != S * Dm)
    return problem("%s", "strides are not the packed (B, T, 3D) / (B, T, D) layout");
  const int64_t *ss = t[4]->strides;
  if (ss[0] != H * S || ss[1] != S || ss[2] != 1) return problem("%s", "Stats not (B, NH, T)");
  return 0;
}

static cudnnStatus_t finalize(cudnnBackendDescriptor_t h) {
  desc *d = D(h);
  if (!d) return problem("%s", "finalize of an unknown descriptor"), CUDNN_STATUS_BAD_PARAM;
  if (d->finalized) return problem("%s", "finalized twice"), CUDNN_STATUS_BAD_PARAM;
  int bad = 0;
  switch (d->type) {
    case CUDNN_BACKEND_TENSOR_DESCRIPTOR: bad = finalize_tensor(d); break;
    case CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR:
    case CUDNN_BACKEND_OPERATION_SDPA_BWD_DESCRIPTOR:
      bad = check_sdpa(d, d->type == CUDNN_BACKEND_OPERATION_SDPA_BWD_DESCRIPTOR);
      if (!bad && g_o.refuse_op) return CUDNN_STATUS_NOT_SUPPORTED;
      break;
    case CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR: {
      attr *hd = find(d, CUDNN_ATTR_OPERATIONGRAPH_HANDLE), *ops = find(d, CUDNN_ATTR_OPERATIONGRAPH_OPS);
      if (!hd || hd->type != CUDNN_TYPE_HANDLE || !ops || ops->count != 1) bad = problem("%s", "graph: handle or one op missing");
      break;
    }
    case CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR: {
      desc *g = ref(d, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH);
      attr *m = find(d, CUDNN_ATTR_ENGINEHEUR_MODE);
      if (!g || g->type != CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR || !m || m->type != CUDNN_TYPE_HEUR_MODE)
        bad = problem("%s", "heuristic: graph or mode missing");
      break;
    }
    case CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR: {
      attr *hd = find(d, CUDNN_ATTR_EXECUTION_PLAN_HANDLE);
      desc *cfg = ref(d, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG);
      if (!hd || hd->type != CUDNN_TYPE_HANDLE || !cfg || cfg->cfg_index < 0)
        bad = problem("%s", "plan: handle or a heuristic's engine config missing");
      else if (cfg->cfg_index < g_o.plan_refusals)
        return CUDNN_STATUS_NOT_SUPPORTED;
      break;
    }
    case CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR: {
      attr *u = find(d, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS), *p = find(d, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS);
      if (!u || !p || u->count != p->count || !find(d, CUDNN_ATTR_VARIANT_PACK_WORKSPACE))
        bad = problem("%s", "variant pack: uids, pointers or workspace missing");
      break;
    }
    default: break;
  }
  if (bad) return CUDNN_STATUS_BAD_PARAM;
  d->finalized = 1;
  return CUDNN_STATUS_SUCCESS;
}

static cudnnStatus_t get_attr(cudnnBackendDescriptor_t const h, cudnnBackendAttributeName_t name,
                              cudnnBackendAttributeType_t type, int64_t want, int64_t *got,
                              void *out) {
  desc *d = D(h);
  if (!d || !d->finalized) return problem("%s", "get on an unfinalized descriptor"), CUDNN_STATUS_BAD_PARAM;
  if (d->type == CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR && name == CUDNN_ATTR_ENGINEHEUR_RESULTS &&
      type == CUDNN_TYPE_BACKEND_DESCRIPTOR) {
    cudnnBackendHeurMode_t mode;
    memcpy(&mode, find(d, CUDNN_ATTR_ENGINEHEUR_MODE)->val, sizeof mode);
    const int have = mode == CUDNN_HEUR_MODE_FALLBACK ? g_o.fallback_configs : g_o.configs;
    int64_t n = have < want ? have : want;
    for (int64_t i = 0; i < n; i++) {
      cudnnBackendDescriptor_t c;
      memcpy(&c, (char *)out + i * sizeof c, sizeof c);
      desc *cd = D(c);
      if (!cd || cd->type != CUDNN_BACKEND_ENGINECFG_DESCRIPTOR)
        return problem("%s", "results into something not an engine config"), CUDNN_STATUS_BAD_PARAM;
      cd->finalized = 1;
      cd->cfg_index = (int)i + (mode == CUDNN_HEUR_MODE_FALLBACK ? 100 : 0);
      cd->graph = ref(d, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH);
    }
    *got = n;
    return CUDNN_STATUS_SUCCESS;
  }
  if (d->type == CUDNN_BACKEND_ENGINECFG_DESCRIPTOR && name == CUDNN_ATTR_ENGINECFG_ENGINE &&
      type == CUDNN_TYPE_BACKEND_DESCRIPTOR && want == 1) {
    cudnnBackendDescriptor_t e;
    memcpy(&e, out, sizeof e);
    desc *ed = D(e);
    if (!ed || ed->type != CUDNN_BACKEND_ENGINE_DESCRIPTOR)
      return problem("%s", "engine into something not an engine"), CUDNN_STATUS_BAD_PARAM;
    ed->finalized = 1;
    ed->cfg_index = d->cfg_index;
    *got = 1;
    return CUDNN_STATUS_SUCCESS;
  }
  if (d->type == CUDNN_BACKEND_ENGINE_DESCRIPTOR && name == CUDNN_ATTR_ENGINE_NUMERICAL_NOTE &&
      type == CUDNN_TYPE_NUMERICAL_NOTE && want >= 2) {
    cudnnBackendNumericalNote_t notes[2] = {CUDNN_NUMERICAL_NOTE_TENSOR_CORE,
                                            CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC};
    *got = d->cfg_index < g_o.nondeterministic ? 2 : 1;
    memcpy(out, notes, sizeof(notes[0]) * (size_t)*got);
    return CUDNN_STATUS_SUCCESS;
  }
  if (d->type == CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR &&
      name == CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE && type == CUDNN_TYPE_INT64 && want >= 1) {
    const int64_t ws = (int64_t)1 << 20;
    memcpy(out, &ws, 8);
    *got = 1;
    return CUDNN_STATUS_SUCCESS;
  }
  return problem("%s", "unsupported get"), CUDNN_STATUS_NOT_SUPPORTED;
}

// Every non-virtual tensor of the plan's operation is bound, nothing else.
static cudnnStatus_t execute(cudnnHandle_t h, cudnnBackendDescriptor_t plan,
                             cudnnBackendDescriptor_t pack) {
  (void)h;
  desc *p = D(plan), *v = D(pack);
  if (!p || !p->finalized || p->type != CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR || !v ||
      !v->finalized)
    return problem("%s", "execute without a finalized plan and variant pack"), CUDNN_STATUS_BAD_PARAM;
  if (g_o.refuse_execute) return CUDNN_STATUS_NOT_SUPPORTED;
  attr *u = find(v, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS), *pt = find(v, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS);
  g_exec_n = (int)u->count;
  for (int i = 0; i < g_exec_n && i < 16; i++) {
    g_exec_uid[i] = i64(u, i);
    memcpy(&g_exec_ptr[i], pt->val + i * sizeof(void *), sizeof(void *));
  }
  memcpy(&g_exec_ws, find(v, CUDNN_ATTR_VARIANT_PACK_WORKSPACE)->val, sizeof(void *));
  // the pack binds each tensor of the plan's operation (plan -> engine config -> graph ->
  // SDPA operation -> its tensor attributes) exactly once, to a non-NULL pointer, and nothing else
  for (int i = 0; i < g_exec_n; i++) {
    if (!g_exec_ptr[i]) return problem("%s", "a NULL pointer in the variant pack"), CUDNN_STATUS_BAD_PARAM;
    for (int j = 0; j < i; j++)
      if (g_exec_uid[i] == g_exec_uid[j]) return problem("%s", "a uid bound twice"), CUDNN_STATUS_BAD_PARAM;
  }
  desc *cfg = ref(p, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG);
  desc *op = cfg && cfg->graph ? ref(cfg->graph, CUDNN_ATTR_OPERATIONGRAPH_OPS) : NULL;
  if (!op) return problem("%s", "execute: the plan's operation is not reachable"), CUDNN_STATUS_BAD_PARAM;
  const int bwd = op->type == CUDNN_BACKEND_OPERATION_SDPA_BWD_DESCRIPTOR, nt = bwd ? 10 : 6;
  if (g_exec_n != nt) return problem("%s", "variant pack: not one pointer per tensor of the operation"), CUDNN_STATUS_BAD_PARAM;
  for (int i = 0; i < nt; i++) {
    desc *t = ref(op, bwd ? sd_sdpa_bwd_attrs[i] : sd_sdpa_fwd_attrs[i]);
    int bound = 0;
    for (int j = 0; t && j < g_exec_n; j++) bound += g_exec_uid[j] == t->uid;
    if (bound != 1) return problem("%s", "variant pack: a tensor of the operation is not bound"), CUDNN_STATUS_BAD_PARAM;
  }
  g_exec_scale = 0.0f;
  for (int i = 0; i < g_exec_n; i++)
    if (g_exec_uid[i] == 6 /* SD_SDPA_UID_SCALE */) memcpy(&g_exec_scale, g_exec_ptr[i], sizeof(float));
  g_execs++;
  return CUDNN_STATUS_SUCCESS;
}

void cudnn_mock_install(sd_cudnn_api *api, const cudnn_mock_opts *o) {
  memset(g_d, 0, sizeof g_d);
  g_nd = g_errors = g_execs = g_exec_n = 0;
  g_o = *o;
  memset(api, 0, sizeof *api);
  (void)ver;
  api->GetVersion = get_version;
  api->GetErrorString = err_string;
  api->Create = create;
  api->Destroy = destroy;
  api->SetStream = set_stream;
  api->BackendCreateDescriptor = create_desc;
  api->BackendDestroyDescriptor = destroy_desc;
  api->BackendSetAttribute = set_attr;
  api->BackendGetAttribute = get_attr;
  api->BackendFinalize = finalize;
  api->BackendExecute = execute;
}

int cudnn_mock_live(void) {
  int n = 0;
  for (int i = 0; i < g_nd; i++) n += g_d[i].live;
  return n;
}
int cudnn_mock_errors(void) { return g_errors; }
void *cudnn_mock_exec_ptr(int64_t uid) {
  for (int i = 0; i < g_exec_n; i++)
    if (g_exec_uid[i] == uid) return g_exec_ptr[i];
  return NULL;
}
void *cudnn_mock_exec_workspace(void) { return g_exec_ws; }
float cudnn_mock_exec_scale(void) { return g_exec_scale; }
int cudnn_mock_executions(void) { return g_execs; }
