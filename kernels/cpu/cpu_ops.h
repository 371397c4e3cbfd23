// Declarations of the CPU backend's ops, each through its shared signature in ops.h.
#ifndef SD_CPU_OPS_H
#define SD_CPU_OPS_H

#include "ops.h"

sd_matmul_fwd_fn sd_cpu_matmul_fwd;
sd_matmul_bwd_fn sd_cpu_matmul_bwd;
sd_matmul_gelu_fwd_fn sd_cpu_matmul_gelu_fwd;
sd_matmul_bwd_dgelu_fn sd_cpu_matmul_bwd_dgelu;
sd_lnmod_fwd_fn sd_cpu_lnmod_fwd;
sd_lnmod_bwd_fn sd_cpu_lnmod_bwd;
sd_attention_fwd_fn sd_cpu_attention_fwd;
sd_attention_bwd_fn sd_cpu_attention_bwd;
sd_act_fwd_fn sd_cpu_gelu_fwd;
sd_act_bwd_fn sd_cpu_gelu_bwd;
sd_act_fwd_fn sd_cpu_silu_fwd;
sd_act_bwd_fn sd_cpu_silu_bwd;
sd_gated_residual_fwd_fn sd_cpu_gated_residual_fwd;
sd_gated_residual_bwd_fn sd_cpu_gated_residual_bwd;
sd_patchify_fn sd_cpu_patchify;
sd_unpatchify_fwd_fn sd_cpu_unpatchify_fwd;
sd_unpatchify_bwd_fn sd_cpu_unpatchify_bwd;
sd_add_rows_fn sd_cpu_add_rows;
sd_timestep_features_fn sd_cpu_timestep_features;
sd_embed_rows_fwd_fn sd_cpu_embed_rows_fwd;
sd_embed_rows_bwd_fn sd_cpu_embed_rows_bwd;
sd_gather_tokens_fn sd_cpu_gather_tokens;
sd_scatter_add_tokens_fn sd_cpu_scatter_add_tokens;
sd_mse_fwd_fn sd_cpu_mse_fwd;
sd_mse_bwd_fn sd_cpu_mse_bwd;
sd_sum_squares_fn sd_cpu_sum_squares;
sd_l2norm_rows_fwd_fn sd_cpu_l2norm_rows_fwd;
sd_l2norm_rows_bwd_fn sd_cpu_l2norm_rows_bwd;
sd_dino_loss_fwd_fn sd_cpu_dino_loss_fwd;
sd_dino_loss_bwd_fn sd_cpu_dino_loss_bwd;
sd_sum_rows_fn sd_cpu_sum_rows;
sd_merge_tokens_fwd_fn sd_cpu_merge_tokens_fwd;
sd_merge_tokens_bwd_fn sd_cpu_merge_tokens_bwd;
sd_add_scaled_rows_fn sd_cpu_add_scaled_rows;
sd_scale_rows_fn sd_cpu_scale_rows;
sd_edm_loss_fwd_fn sd_cpu_edm_loss_fwd;
sd_edm_loss_bwd_fn sd_cpu_edm_loss_bwd;
sd_adamw_fn sd_cpu_adamw;
sd_adamw_ema_fn sd_cpu_adamw_ema;
sd_ema_fn sd_cpu_ema;
sd_axpy_fn sd_cpu_axpy;
sd_step_gate_fn sd_cpu_step_gate;
sd_poison_nonfinite_fn sd_cpu_poison_nonfinite;
sd_center_update_fn sd_cpu_center_update;
sd_weights_register_fn sd_cpu_weights_register;
sd_weights_changed_fn sd_cpu_weights_changed;

// Reusable scratch memory of at least `bytes`, owned by the CPU backend (valid until the
// next call; not for use from inside a parallel region).
void *sd_cpu_workspace(sd_backend *be, size_t bytes);

#endif
