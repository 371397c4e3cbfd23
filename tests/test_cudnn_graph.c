// cuDNN's fused attention graphs (kernels/cuda/cudnn_sdpa.c) against a mock cuDNN
// (tests/cudnn_mock.c), no GPU needed: the forward and backward graphs at DiT-XL/2's shapes
// (head dim 72, 16 heads, 256 tokens and the 204 visible ones) and small ones build and
// execute with every tensor bound to the right place of the packed buffers; the plan cache
// reuses a shape's plan and never evicts; a refusal at every stage (simulated, an SDPA
// operation refused, no engine config, every plan refused, only nondeterministic engines,
// execute refused) leaves a plan marked refused with a message naming the cuDNN version, the
// stage, the shape and the status, and no descriptor leaks; heuristic mode A's configs are
// tried first, then the fallback mode's. Where a real libcudnn.so.9 loads (no GPU needed),
// its validation of the tensors and the SDPA operations (finalize) must accept every shape.
#include "check.h"
#include "cudnn_mock.h"
#include "cudnn_sdpa.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const cudnn_mock_opts k_ok = {.configs = 3, .fallback_configs = 1};

// Builds and runs key on the mock; checks the bindings, or (want_in_why) the refusal's
// message. Returns the plan's ok; *fallback_mode (if not NULL): the heuristic mode its
// engine config came from (0 A, 1 fallback).
static int run_shape(const sd_sdpa_key *k, const cudnn_mock_opts *o, sd_sdpa_stage refuse,
                     const char *want_in_why, int *fallback_mode) {
  sd_cudnn_api api;
  cudnn_mock_install(&api, o);
  cudnnHandle_t h;
  api.Create(&h);
  sd_sdpa_cache c;
  sd_sdpa_cache_init(&c, &api, h);
  c.refuse = refuse;
  char tag[160];
  snprintf(tag, sizeof tag, "%s B%d T%d NH%d HD%d%s%s", k->bwd ? "bwd" : "fwd", k->B, k->T,
           k->NH, k->HD, refuse ? " refuse at " : "", refuse ? sd_sdpa_stage_name(refuse) : "");
  sd_sdpa_plan *p = sd_sdpa_get(&c, k);
  const size_t D = (size_t)k->NH * k->HD;
  // fake device addresses, 256-byte aligned, far apart
  char *qkv = (char *)(uintptr_t)0x10000000, *out = (char *)(uintptr_t)0x20000000,
       *lse = (char *)(uintptr_t)0x30000000, *dout = (char *)(uintptr_t)0x40000000,
       *dqkv = (char *)(uintptr_t)0x50000000, *ws = (char *)(uintptr_t)0x60000000;
  char err[400] = "";
  int rc = -1;
  if (p->ok) {
    rc = k->bwd ? sd_sdpa_backward(&c, p, dqkv, dout, qkv, out, (const float *)lse, ws, err,
                                   sizeof err)
                : sd_sdpa_forward(&c, p, out, (float *)lse, qkv, ws, err, sizeof err);
  }
  if (want_in_why) {
    const char *why = p->ok ? err : p->why;
    check_true(rc != 0 && !p->ok && strstr(why, want_in_why) != NULL,
               "%s: refused and marked (\"%s\", want \"%s\")", tag, why, want_in_why);
    if (!strstr(want_in_why, "multiple of 8")) {  // a refusal by (mock) cuDNN: who, what, where
      char who[64], shape[80];
      snprintf(who, sizeof who, "cuDNN 9.19.0 refused SDPA_%s at ", k->bwd ? "BWD" : "FWD");
      snprintf(shape, sizeof shape, "for B=%d T=%d NH=%d HD=%d: CUDNN_STATUS_", k->B, k->T,
               k->NH, k->HD);
      check_true(!strncmp(why, who, strlen(who)) && strstr(why, shape) &&
                     (!refuse || strstr(why, "(simulated: SD_CUDNN_REFUSE)")),
                 "%s: the message names the version, operation, shape and status (\"%s\")",
                 tag, why);
    }
  } else {
    check_true(p->ok && rc == 0, "%s: plan built (config %d of %d tried, workspace %lld) and "
               "executed (%s%s)", tag, p->config, p->configs_tried, (long long)p->workspace,
               p->why, err);
    int binds = cudnn_mock_exec_ptr(SD_SDPA_UID_Q) == qkv &&
                cudnn_mock_exec_ptr(SD_SDPA_UID_K) == qkv + 2 * D &&
                cudnn_mock_exec_ptr(SD_SDPA_UID_V) == qkv + 4 * D &&
                cudnn_mock_exec_ptr(SD_SDPA_UID_O) == out &&
                cudnn_mock_exec_ptr(SD_SDPA_UID_STATS) == lse &&
                cudnn_mock_exec_workspace() == ws &&
                fabsf(cudnn_mock_exec_scale() - 1.0f / sqrtf((float)k->HD)) < 1e-7f;
    if (k->bwd)
      binds = binds && cudnn_mock_exec_ptr(SD_SDPA_UID_DO) == dout &&
              cudnn_mock_exec_ptr(SD_SDPA_UID_DQ) == dqkv &&
              cudnn_mock_exec_ptr(SD_SDPA_UID_DK) == dqkv + 2 * D &&
              cudnn_mock_exec_ptr(SD_SDPA_UID_DV) == dqkv + 4 * D;
    else
      binds = binds && cudnn_mock_exec_ptr(SD_SDPA_UID_DO) == NULL;
    check_true(binds, "%s: Q K V at qkv + 0, 2D, 4D bytes, O, Stats, workspace, scale 1/sqrt(HD)"
               "%s bound (Q %p K %p V %p O %p scale %g)", tag,
               k->bwd ? ", dO, dQ dK dV at dqkv + 0, 2D, 4D" : "",
               cudnn_mock_exec_ptr(SD_SDPA_UID_Q), cudnn_mock_exec_ptr(SD_SDPA_UID_K),
               cudnn_mock_exec_ptr(SD_SDPA_UID_V), cudnn_mock_exec_ptr(SD_SDPA_UID_O),
               cudnn_mock_exec_scale());
  }
  const int ok = p->ok;
  if (fallback_mode) *fallback_mode = p->fallback_mode;
  sd_sdpa_cache_release(&c);
  check_true(cudnn_mock_errors() == 0 && cudnn_mock_live() == 0,
             "%s: no invalid call (%d) and no descriptor left (%d)", tag, cudnn_mock_errors(),
             cudnn_mock_live());
  return ok;
}

int main(void) {
  // 1. graphs at the model's shapes, forward and backward
  const int shapes[][4] = {{8, 256, 16, 72}, {8, 204, 16, 72}, {2, 37, 2, 16}, {3, 64, 4, 64}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    for (int bwd = 0; bwd < 2; bwd++) {
      sd_sdpa_key k = {shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], bwd};
      run_shape(&k, &k_ok, SD_SDPA_NONE, NULL, NULL);
    }
  // 2. refusals: every simulated stage, and the mock's own refusals
  const sd_sdpa_key xl = {8, 204, 16, 72, 1}, xl_fwd = {8, 256, 16, 72, 0};
  for (int s = SD_SDPA_TENSOR; s < SD_SDPA_NSTAGES; s++) {
    run_shape(&xl, &k_ok, (sd_sdpa_stage)s, sd_sdpa_stage_name((sd_sdpa_stage)s), NULL);
    run_shape(&xl_fwd, &k_ok, (sd_sdpa_stage)s, sd_sdpa_stage_name((sd_sdpa_stage)s), NULL);
  }
  cudnn_mock_opts o = k_ok;
  o.refuse_op = 1;
  run_shape(&xl, &o, SD_SDPA_NONE, "at operation (SDPA_BWD operation)", NULL);
  run_shape(&xl_fwd, &o, SD_SDPA_NONE, "at operation (SDPA_FWD operation)", NULL);
  o = k_ok;
  o.configs = 0, o.fallback_configs = 0;
  run_shape(&xl, &o, SD_SDPA_NONE, "no engine config", NULL);
  o = k_ok;
  o.plan_refusals = 1000;  // every config of both modes refuses
  run_shape(&xl, &o, SD_SDPA_NONE, "none of 4 engine configs (modes A and fallback) finalized",
            NULL);
  int mode = -1;
  o = k_ok;
  o.plan_refusals = 2;  // the third config of mode A finalizes
  check_true(run_shape(&xl, &o, SD_SDPA_NONE, NULL, &mode) && mode == 0,
             "mode A's third config kept (heuristic mode %d, want 0)", mode);
  o = k_ok;
  o.plan_refusals = 8;  // none of mode A's finalizes: the fallback mode's does
  check_true(run_shape(&xl, &o, SD_SDPA_NONE, NULL, &mode) && mode == 1,
             "all of mode A's configs refused: the fallback mode's kept (mode %d, want 1)", mode);
  o = k_ok;
  o.configs = 0;  // mode A empty: the fallback heuristic's config
  check_true(run_shape(&xl, &o, SD_SDPA_NONE, NULL, &mode) && mode == 1,
             "mode A empty: the fallback mode's config kept (mode %d, want 1)", mode);
  o = k_ok;
  o.nondeterministic = 2;  // the third config is the first deterministic one
  check_true(run_shape(&xl, &o, SD_SDPA_NONE, NULL, &mode) && mode == 0,
             "mode A's third (first deterministic) config kept (mode %d, want 0)", mode);
  o = k_ok;
  o.nondeterministic = 1000;
  run_shape(&xl, &o, SD_SDPA_NONE, "nondeterministic ones left out", NULL);
  o = k_ok;
  o.refuse_execute = 1;
  run_shape(&xl, &o, SD_SDPA_NONE, "at execute", NULL);
  run_shape(&xl_fwd, &o, SD_SDPA_NONE, "at execute", NULL);
  const sd_sdpa_key odd = {2, 37, 3, 12, 0};
  run_shape(&odd, &k_ok, SD_SDPA_NONE, "not a multiple of 8", NULL);

  // 3. the cache: a shape's plan is reused, distinct shapes get distinct plans, none evicted
  sd_cudnn_api api;
  cudnn_mock_install(&api, &k_ok);
  cudnnHandle_t h;
  api.Create(&h);
  sd_sdpa_cache c;
  sd_sdpa_cache_init(&c, &api, h);
  c.refuse = SD_SDPA_NONE;
  sd_sdpa_plan *first = NULL;
  int distinct = 1;
  for (int T = 1; T <= 60; T++)
    for (int bwd = 0; bwd < 2; bwd++) {
      sd_sdpa_key k = {4, T, 2, 16, bwd};
      sd_sdpa_plan *p = sd_sdpa_get(&c, &k);
      if (!first) first = p;
      if (c.count != 2 * (T - 1) + bwd + 1 || !p->ok) distinct = 0;
    }
  sd_sdpa_key k1 = {4, 1, 2, 16, 0};
  check_true(distinct && c.count == 120 && sd_sdpa_get(&c, &k1) == first && c.count == 120,
             "cache: 120 shapes, 120 plans kept, the first one found again (count %d)",
             c.count);
  sd_sdpa_cache_release(&c);
  check_true(cudnn_mock_live() == 0 && cudnn_mock_errors() == 0,
             "cache release: no descriptor left (%d), no invalid call (%d)", cudnn_mock_live(),
             cudnn_mock_errors());

  // 4. the real library's own validation, where one loads: the tensors and the SDPA
  // operations finalize (dims, strides, data types, the operation's tensors against each
  // other); the graph, heuristics and plans need a device and are the GPU run's
  sd_cudnn_api real;
  char why[480];
  if (sd_cudnn_api_load(&real, why, sizeof why) != 0) {
    printf("skip real cuDNN: %s\n", why);
  } else {
    char ver[32];
    sd_cudnn_version_string(&real, ver, sizeof ver);
    const int more[][4] = {{256, 256, 16, 72}, {256, 204, 16, 72}, {1, 1, 1, 8},
                           {2, 100, 4, 128}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0] + sizeof more / sizeof more[0]; i++)
      for (int bwd = 0; bwd < 2; bwd++) {
        const int *sh = i < sizeof shapes / sizeof shapes[0]
                            ? shapes[i] : more[i - sizeof shapes / sizeof shapes[0]];
        sd_sdpa_key k = {sh[0], sh[1], sh[2], sh[3], bwd};
        why[0] = 0;
        const int rc = sd_sdpa_check_operation(&real, &k, why, sizeof why);
        check_true(rc == 0, "real cuDNN %s: SDPA_%s tensors and operation finalize for B=%d "
                   "T=%d NH=%d HD=%d%s%s", ver, bwd ? "BWD" : "FWD", k.B, k.T, k.NH, k.HD,
                   rc ? ": " : "", rc ? why : "");
      }
    sd_cudnn_api_unload(&real);
  }
  return check_exit("test_cudnn_graph");
}
