// The default configuration of each model preset (see config.h).
#include "config/config_keys.h"
#include "error.h"

#include <string.h>

void sd_config_defaults(sd_config *c, const char *preset) {
  if (!preset) preset = "S/2";
  memset(c, 0, sizeof *c);
  if (sd_cfg_apply_preset(c, preset) != 0)
    SD_FATAL("sd_config_defaults: unknown model preset '%s' (known: %s)", preset,
             sd_dit_preset_names());
  int tiny = strcmp(preset, "tiny") == 0;

  c->mask_ratio = 0.2f;
  snprintf(c->teacher_sigma_mode, sizeof c->teacher_sigma_mode, "fixed");
  c->teacher_sigma = 0.002f;
  c->lambda_dis = 1.0f;
  c->head_hidden = tiny ? 64 : 2048;
  c->head_bottleneck = tiny ? 16 : 256;
  c->head_prototypes = tiny ? 32 : 8192;
  c->tau_s = 0.1f;
  c->tau_t_start = 0.04f;
  c->tau_t_end = 0.07f;
  c->teacher_temp_warmup = 1000;
  c->center_momentum = 0.9f;
  c->teacher_momentum = 0.996f;
  snprintf(c->gen_loss_tokens, sizeof c->gen_loss_tokens, "all");

  c->sigma_data = 0.5f;
  c->p_mean = -1.2f;
  c->p_std = 1.2f;
  c->sigma_min = 0.002f;
  c->sigma_max = 80.0f;
  c->label_dropout = 0.1f;

  c->lr = 1e-4f;
  c->beta1 = 0.9f;
  c->beta2 = 0.999f;
  c->eps = 1e-8f;
  c->weight_decay = 0.0f;
  c->grad_clip = 0.0f;
  c->ema_decay = 0.9999f;
  c->warmup_steps = 0;
  snprintf(c->lr_schedule, sizeof c->lr_schedule, "constant");
  c->lr_min = 0.0f;

  snprintf(c->source, sizeof c->source, "synthetic");
  c->synthetic_size = 1024;
  c->hflip = 0;
  c->in_memory = 0;
  c->prefetch = 2;
  snprintf(c->validate, sizeof c->validate, "full");

  c->steps = 1000;
  c->global_batch = tiny ? 16 : 256;
  c->seed = 0;
  c->log_every = 10;
  c->threads = 0;
  snprintf(c->out_dir, sizeof c->out_dir, "runs/default");
  c->max_bad_steps = 10;
  snprintf(c->backend, sizeof c->backend, "cpu");
  snprintf(c->precision, sizeof c->precision, "bf16");
  c->selftest = 1;
  c->accum_steps = 1;

  c->dist_timeout = 300.0f;
  c->teacher_sync_every = 1;
  c->overlap = 1;
  snprintf(c->grad_dtype, sizeof c->grad_dtype, "fp32");
  c->check_replicas = 0;

  c->ckpt_every = 1000;
  c->ckpt_keep = 3;
  snprintf(c->resume, sizeof c->resume, "none");

  c->preview_every = 0;
  c->preview_classes = 10;
  c->preview_per_class = 8;
  c->preview_steps = 18;
  c->preview_guidance = 1.5f;
}
