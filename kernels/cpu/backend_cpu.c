// The CPU backend: host memory, OpenMP threads, and the table of CPU ops.
#include "cpu_ops.h"
#include "error.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static void *cpu_alloc(sd_backend *be, size_t bytes) {
  (void)be;
  size_t rounded = (bytes + 63) / 64 * 64;
  void *p = aligned_alloc(64, rounded ? rounded : 64);
  if (!p) SD_FATAL("out of host memory allocating %zu bytes", bytes);
  return p;
}
static void cpu_free(sd_backend *be, void *p) { (void)be; free(p); }
static void cpu_memset(sd_backend *be, void *p, int v, size_t n) { (void)be; memset(p, v, n); }
static void cpu_copy(sd_backend *be, void *dst, const void *src, size_t n) {
  (void)be;
  if (n) memmove(dst, src, n);
}
static void cpu_sync(sd_backend *be) { (void)be; }

typedef struct cpu_state {
  void *ws;        // workspace
  size_t ws_bytes;
} cpu_state;

void *sd_cpu_workspace(sd_backend *be, size_t bytes) {
  cpu_state *st = be->impl;
  if (!st) SD_FATAL("CPU backend used before sd_backend_cpu_init");
  if (bytes > st->ws_bytes) {
    free(st->ws);
    st->ws = cpu_alloc(be, bytes);
    st->ws_bytes = bytes;
  }
  return st->ws;
}

static const sd_ops cpu_ops = {
    .matmul_fwd = sd_cpu_matmul_fwd,
    .matmul_bwd = sd_cpu_matmul_bwd,
    .matmul_fwd_fp32 = sd_cpu_matmul_fwd,  // the CPU always multiplies in fp32
    .matmul_bwd_fp32 = sd_cpu_matmul_bwd,
    .matmul_gelu_fwd = sd_cpu_matmul_gelu_fwd,
    .matmul_bwd_dgelu = sd_cpu_matmul_bwd_dgelu,
    .lnmod_fwd = sd_cpu_lnmod_fwd,
    .lnmod_bwd = sd_cpu_lnmod_bwd,
    .attention_fwd = sd_cpu_attention_fwd,
    .attention_bwd = sd_cpu_attention_bwd,
    .gelu_fwd = sd_cpu_gelu_fwd,
    .gelu_bwd = sd_cpu_gelu_bwd,
    .silu_fwd = sd_cpu_silu_fwd,
    .silu_bwd = sd_cpu_silu_bwd,
    .gated_residual_fwd = sd_cpu_gated_residual_fwd,
    .gated_residual_bwd = sd_cpu_gated_residual_bwd,
    .patchify = sd_cpu_patchify,
    .unpatchify_fwd = sd_cpu_unpatchify_fwd,
    .unpatchify_bwd = sd_cpu_unpatchify_bwd,
    .add_rows = sd_cpu_add_rows,
    .timestep_features = sd_cpu_timestep_features,
    .embed_rows_fwd = sd_cpu_embed_rows_fwd,
    .embed_rows_bwd = sd_cpu_embed_rows_bwd,
    .gather_tokens = sd_cpu_gather_tokens,
    .scatter_add_tokens = sd_cpu_scatter_add_tokens,
    .mse_fwd = sd_cpu_mse_fwd,
    .mse_bwd = sd_cpu_mse_bwd,
    .sum_squares = sd_cpu_sum_squares,
    .l2norm_rows_fwd = sd_cpu_l2norm_rows_fwd,
    .l2norm_rows_bwd = sd_cpu_l2norm_rows_bwd,
    .dino_loss_fwd = sd_cpu_dino_loss_fwd,
    .dino_loss_bwd = sd_cpu_dino_loss_bwd,
    .sum_rows = sd_cpu_sum_rows,
    .merge_tokens_fwd = sd_cpu_merge_tokens_fwd,
    .merge_tokens_bwd = sd_cpu_merge_tokens_bwd,
    .add_scaled_rows = sd_cpu_add_scaled_rows,
    .scale_rows = sd_cpu_scale_rows,
    .edm_loss_fwd = sd_cpu_edm_loss_fwd,
    .edm_loss_bwd = sd_cpu_edm_loss_bwd,
    .adamw = sd_cpu_adamw,
    .ema = sd_cpu_ema,
    .adamw_ema = sd_cpu_adamw_ema,
    .axpy = sd_cpu_axpy,
    .step_gate = sd_cpu_step_gate,
    .poison_nonfinite = sd_cpu_poison_nonfinite,
    .center_update = sd_cpu_center_update,
    .weights_register = sd_cpu_weights_register,
    .weights_changed = sd_cpu_weights_changed,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .memset = cpu_memset,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .copy = cpu_copy,
    .sync = cpu_sync,
};

int sd_backend_cpu_init(sd_backend *be, int num_threads) {
  memset(be, 0, sizeof *be);
  be->name = "cpu";
  be->ops = &cpu_ops;
  be->impl = sd_xcalloc(1, sizeof(cpu_state), "CPU backend state");
#ifdef _OPENMP
  if (num_threads > 0) omp_set_num_threads(num_threads);
  be->num_threads = omp_get_max_threads();
#else
  be->num_threads = 1;
#endif
  return 0;
}

void sd_backend_cpu_destroy(sd_backend *be) {
  cpu_state *st = be->impl;
  if (st) {
    free(st->ws);
    free(st);
  }
  memset(be, 0, sizeof *be);
}
