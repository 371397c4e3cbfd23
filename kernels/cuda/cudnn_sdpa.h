// Attention through cuDNN's fused scaled-dot-product attention: the forward and backward
// graphs (CUDNN_BACKEND_OPERATION_SDPA_FWD / _BWD_DESCRIPTOR) built with the backend graph API
// for our packed layout, their execution plans (the first deterministic engine config, in the
// order of heuristic mode A and then of the fallback mode, that cuDNN finalizes), a cache of them keyed by shape that never evicts, and their
// execution. Plain C over the function table of cudnn_api.h, so tests/test_cudnn_graph.c
// checks every graph against a mock cuDNN without a GPU. kernels/cuda/attention_cudnn.cu
// decides when to use it and falls back to the hand-written kernels whenever a stage refuses.
//
// Layout (ops.h): qkv (B, T, 3*D), D = NH*HD, feature which*D + h*HD + d, seen by cuDNN as
// Q, K, V of dims [B, NH, T, HD] with strides [T*3D, HD, 3D, 1] at qkv, qkv + D, qkv + 2D;
// out (B, T, D): [B, NH, T, HD] strides [T*D, HD, D, 1]; lse (B, NH, T) fp32: the statistics
// [B, NH, T, 1] strides [NH*T, T, 1, 1]; the scale a by-value fp32 scalar. All bf16.
// The backward reads dO in the layout of out and writes dQ, dK, dV in the layout of qkv.
#ifndef SD_CUDNN_SDPA_H
#define SD_CUDNN_SDPA_H

#include "cudnn_api.h"

#include <stdint.h>

typedef struct sd_sdpa_key {
  int B, T, NH, HD;
  int bwd;  // 0 forward, 1 backward
} sd_sdpa_key;

enum { SD_SDPA_MAX_DESC = 40 };

typedef struct sd_sdpa_plan {
  sd_sdpa_key key;
  int ok;                     // 1: plan usable; 0: refused (why says so)
  char why[480];
  cudnnBackendDescriptor_t desc[SD_SDPA_MAX_DESC];  // every descriptor, destroyed with the plan
  int ndesc;
  cudnnBackendDescriptor_t plan;
  int64_t workspace;          // bytes
  int config;                 // the heuristic rank of the engine config that finalized
  int fallback_mode;          // 0: from heuristic mode A; 1: from CUDNN_HEUR_MODE_FALLBACK
  int configs_tried;
  int cross_checked;          // attention_cudnn.cu: 1 agreed, -1 disagreed (set aside)
} sd_sdpa_plan;

// The stages a refusal can come from, in order; SD_CUDNN_REFUSE=<name> (or sd_sdpa_cache's
// refuse) makes that stage fail as if cuDNN had said CUDNN_STATUS_NOT_SUPPORTED, to exercise
// the fallback on a real device.
typedef enum sd_sdpa_stage {
  SD_SDPA_NONE = 0, SD_SDPA_TENSOR, SD_SDPA_OPERATION, SD_SDPA_GRAPH, SD_SDPA_HEURISTIC,
  SD_SDPA_PLAN, SD_SDPA_EXECUTE, SD_SDPA_NSTAGES
} sd_sdpa_stage;
const char *sd_sdpa_stage_name(sd_sdpa_stage s);
sd_sdpa_stage sd_sdpa_stage_from_name(const char *name);  // SD_SDPA_NONE when unknown

typedef struct sd_sdpa_cache {
  const sd_cudnn_api *api;
  cudnnHandle_t handle;
  sd_sdpa_plan **plans;       // every shape seen, never evicted
  int count, cap;
  sd_sdpa_stage refuse;       // a simulated refusal (SD_CUDNN_REFUSE)
  long executions;
} sd_sdpa_cache;

// The uids of the graphs' tensors (the variant packs name them).
enum { SD_SDPA_UID_Q = 1, SD_SDPA_UID_K, SD_SDPA_UID_V, SD_SDPA_UID_O, SD_SDPA_UID_STATS,
       SD_SDPA_UID_SCALE, SD_SDPA_UID_DO, SD_SDPA_UID_DQ, SD_SDPA_UID_DK, SD_SDPA_UID_DV };

extern const cudnnBackendAttributeName_t sd_sdpa_fwd_attrs[6], sd_sdpa_bwd_attrs[10];

// Starts an empty cache on an API table and a cuDNN handle (already on the right stream);
// refuse from SD_CUDNN_REFUSE.
void sd_sdpa_cache_init(sd_sdpa_cache *c, const sd_cudnn_api *api, cudnnHandle_t handle);
void sd_sdpa_cache_release(sd_sdpa_cache *c);
// The plan for key, built on first use (a refused one is cached too, with its reason, so
// it is not rebuilt every call). Never NULL.
sd_sdpa_plan *sd_sdpa_get(sd_sdpa_cache *c, const sd_sdpa_key *key);

// Builds and finalizes only the tensors and the SDPA operation of key (no handle, no GPU
// needed), then destroys them: 0, or -1 with the refusal in why. For the tests, against the
// real library where one loads (tests/test_cudnn_graph.c).
int sd_sdpa_check_operation(const sd_cudnn_api *api, const sd_sdpa_key *key, char *why,
                            size_t len);

// Executions (device pointers; the scale 1/sqrt(HD) is passed by value). 0, or -1 with the
// reason in err (the plan is then marked refused: later calls fall back at once).
int sd_sdpa_forward(sd_sdpa_cache *c, sd_sdpa_plan *p, void *out /* (B,T,D) bf16 */,
                    float *lse /* (B,NH,T) */, const void *qkv /* (B,T,3D) bf16 */,
                    void *workspace, char *err, size_t errlen);
int sd_sdpa_backward(sd_sdpa_cache *c, sd_sdpa_plan *p, void *dqkv /* (B,T,3D) bf16 */,
                     const void *dout /* (B,T,D) bf16 */, const void *qkv, const void *out,
                     const float *lse, void *workspace, char *err, size_t errlen);

#endif
