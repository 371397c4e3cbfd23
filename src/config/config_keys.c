// The key table and its lookups (see config.h and config_keys.h).
#include "config/config_keys.h"

#include <string.h>

// ---- the key table: every key outside sd_dit_config, in print order ----

static const char *const k_sigma_modes[] = {"fixed", "log_uniform", NULL};
static const char *const k_gen_tokens[] = {"all", "visible", NULL};
static const char *const k_sources[] = {"synthetic", "hdf5", NULL};
static const char *const k_validate[] = {"full", "quick", NULL};
static const char *const k_backends[] = {"cpu", "cuda", NULL};
static const char *const k_precisions[] = {"bf16", "fp32", NULL};
static const char *const k_grad_dtypes[] = {"fp32", "bf16", NULL};
static const char *const k_lr_schedules[] = {"constant", "cosine", NULL};

const char *const sd_cfg_sections[] = {"model", "sddit", "diffusion", "optim", "data",
                                       "train", "dist", "ckpt", "log"};
const size_t sd_cfg_nsections = sizeof sd_cfg_sections / sizeof sd_cfg_sections[0];

// [model] keys that sd_dit_config_set handles (besides preset).
const char *const sd_cfg_dit_keys[] = {"input_size", "in_channels", "patch", "hidden",
                                       "depth", "heads", "mlp_ratio", "num_classes",
                                       "out_channels", "freq_dim", "max_period", "ln_eps"};
const size_t sd_cfg_ndit_keys = sizeof sd_cfg_dit_keys / sizeof sd_cfg_dit_keys[0];

const key_desc sd_cfg_keys[] = {
    {"model", "encoder_depth", KEY_INT, offsetof(sd_config, encoder_depth), RANGE_AT_LEAST_1,
     NULL, 0},
    {"model", "decoder_depth", KEY_INT, offsetof(sd_config, decoder_depth), RANGE_AT_LEAST_1,
     NULL, 0},
    {"model", "decoder_hidden", KEY_INT, offsetof(sd_config, decoder_hidden), RANGE_AT_LEAST_1,
     NULL, 0},
    {"model", "decoder_heads", KEY_INT, offsetof(sd_config, decoder_heads), RANGE_AT_LEAST_1,
     NULL, 0},

    {"sddit", "mask_ratio", KEY_FLOAT, offsetof(sd_config, mask_ratio), RANGE_UNIT_OPEN, NULL, 0},
    {"sddit", "teacher_sigma_mode", KEY_STRING, offsetof(sd_config, teacher_sigma_mode),
     RANGE_ANY, k_sigma_modes, sizeof(((sd_config *)0)->teacher_sigma_mode)},
    {"sddit", "teacher_sigma", KEY_FLOAT, offsetof(sd_config, teacher_sigma), RANGE_POSITIVE,
     NULL, 0},
    {"sddit", "lambda_dis", KEY_FLOAT, offsetof(sd_config, lambda_dis), RANGE_NONNEG, NULL, 0},
    {"sddit", "head_hidden", KEY_INT, offsetof(sd_config, head_hidden), RANGE_AT_LEAST_1, NULL,
     0},
    {"sddit", "head_bottleneck", KEY_INT, offsetof(sd_config, head_bottleneck),
     RANGE_AT_LEAST_1, NULL, 0},
    {"sddit", "head_prototypes", KEY_INT, offsetof(sd_config, head_prototypes),
     RANGE_AT_LEAST_1, NULL, 0},
    {"sddit", "tau_s", KEY_FLOAT, offsetof(sd_config, tau_s), RANGE_POSITIVE, NULL, 0},
    {"sddit", "tau_t_start", KEY_FLOAT, offsetof(sd_config, tau_t_start), RANGE_POSITIVE, NULL,
     0},
    {"sddit", "tau_t_end", KEY_FLOAT, offsetof(sd_config, tau_t_end), RANGE_POSITIVE, NULL, 0},
    {"sddit", "teacher_temp_warmup", KEY_INT, offsetof(sd_config, teacher_temp_warmup),
     RANGE_NONNEG, NULL, 0},
    {"sddit", "center_momentum", KEY_FLOAT, offsetof(sd_config, center_momentum), RANGE_UNIT,
     NULL, 0},
    {"sddit", "teacher_momentum", KEY_FLOAT, offsetof(sd_config, teacher_momentum), RANGE_UNIT,
     NULL, 0},
    {"sddit", "gen_loss_tokens", KEY_STRING, offsetof(sd_config, gen_loss_tokens), RANGE_ANY,
     k_gen_tokens, sizeof(((sd_config *)0)->gen_loss_tokens)},

    {"diffusion", "sigma_data", KEY_FLOAT, offsetof(sd_config, sigma_data), RANGE_POSITIVE,
     NULL, 0},
    {"diffusion", "p_mean", KEY_FLOAT, offsetof(sd_config, p_mean), RANGE_ANY, NULL, 0},
    {"diffusion", "p_std", KEY_FLOAT, offsetof(sd_config, p_std), RANGE_POSITIVE, NULL, 0},
    {"diffusion", "sigma_min", KEY_FLOAT, offsetof(sd_config, sigma_min), RANGE_POSITIVE, NULL,
     0},
    {"diffusion", "sigma_max", KEY_FLOAT, offsetof(sd_config, sigma_max), RANGE_POSITIVE, NULL,
     0},
    {"diffusion", "label_dropout", KEY_FLOAT, offsetof(sd_config, label_dropout), RANGE_UNIT,
     NULL, 0},

    {"optim", "lr", KEY_FLOAT, offsetof(sd_config, lr), RANGE_NONNEG, NULL, 0},
    {"optim", "beta1", KEY_FLOAT, offsetof(sd_config, beta1), RANGE_UNIT_OPEN, NULL, 0},
    {"optim", "beta2", KEY_FLOAT, offsetof(sd_config, beta2), RANGE_UNIT_OPEN, NULL, 0},
    {"optim", "eps", KEY_FLOAT, offsetof(sd_config, eps), RANGE_POSITIVE, NULL, 0},
    {"optim", "weight_decay", KEY_FLOAT, offsetof(sd_config, weight_decay), RANGE_NONNEG, NULL,
     0},
    {"optim", "grad_clip", KEY_FLOAT, offsetof(sd_config, grad_clip), RANGE_NONNEG, NULL, 0},
    {"optim", "ema_decay", KEY_FLOAT, offsetof(sd_config, ema_decay), RANGE_UNIT, NULL, 0},
    {"optim", "warmup_steps", KEY_LONG, offsetof(sd_config, warmup_steps), RANGE_NONNEG, NULL,
     0},
    {"optim", "lr_schedule", KEY_STRING, offsetof(sd_config, lr_schedule), RANGE_ANY,
     k_lr_schedules, sizeof(((sd_config *)0)->lr_schedule)},
    {"optim", "lr_min", KEY_FLOAT, offsetof(sd_config, lr_min), RANGE_NONNEG, NULL, 0},

    {"data", "source", KEY_STRING, offsetof(sd_config, source), RANGE_ANY, k_sources,
     sizeof(((sd_config *)0)->source)},
    {"data", "path", KEY_STRING, offsetof(sd_config, path), RANGE_ANY, NULL,
     sizeof(((sd_config *)0)->path)},
    {"data", "synthetic_size", KEY_INT, offsetof(sd_config, synthetic_size), RANGE_AT_LEAST_1,
     NULL, 0},
    {"data", "hflip", KEY_BOOL, offsetof(sd_config, hflip), RANGE_ANY, NULL, 0},
    {"data", "in_memory", KEY_BOOL, offsetof(sd_config, in_memory), RANGE_ANY, NULL, 0},
    {"data", "prefetch", KEY_INT, offsetof(sd_config, prefetch), RANGE_NONNEG, NULL, 0},
    {"data", "validate", KEY_STRING, offsetof(sd_config, validate), RANGE_ANY, k_validate,
     sizeof(((sd_config *)0)->validate)},

    {"train", "steps", KEY_LONG, offsetof(sd_config, steps), RANGE_NONNEG, NULL, 0},
    {"train", "global_batch", KEY_INT, offsetof(sd_config, global_batch), RANGE_AT_LEAST_1,
     NULL, 0},
    {"train", "seed", KEY_U64, offsetof(sd_config, seed), RANGE_ANY, NULL, 0},
    {"train", "log_every", KEY_INT, offsetof(sd_config, log_every), RANGE_AT_LEAST_1, NULL, 0},
    {"train", "threads", KEY_INT, offsetof(sd_config, threads), RANGE_NONNEG, NULL, 0},
    {"train", "out_dir", KEY_STRING, offsetof(sd_config, out_dir), RANGE_ANY, NULL,
     sizeof(((sd_config *)0)->out_dir)},
    {"train", "metrics", KEY_STRING, offsetof(sd_config, metrics), RANGE_ANY, NULL,
     sizeof(((sd_config *)0)->metrics)},
    {"train", "max_bad_steps", KEY_INT, offsetof(sd_config, max_bad_steps), RANGE_AT_LEAST_1,
     NULL, 0},
    {"train", "accum_steps", KEY_INT, offsetof(sd_config, accum_steps), RANGE_AT_LEAST_1, NULL,
     0},
    {"train", "stop_at", KEY_LONG, offsetof(sd_config, stop_at), RANGE_NONNEG, NULL, 0},
    {"train", "backend", KEY_STRING, offsetof(sd_config, backend), RANGE_ANY, k_backends,
     sizeof(((sd_config *)0)->backend)},
    {"train", "precision", KEY_STRING, offsetof(sd_config, precision), RANGE_ANY, k_precisions,
     sizeof(((sd_config *)0)->precision)},
    {"train", "selftest", KEY_BOOL, offsetof(sd_config, selftest), RANGE_ANY, NULL, 0},

    {"dist", "timeout", KEY_FLOAT, offsetof(sd_config, dist_timeout), RANGE_NONNEG, NULL, 0},
    {"dist", "teacher_sync_every", KEY_INT, offsetof(sd_config, teacher_sync_every),
     RANGE_AT_LEAST_1, NULL, 0},
    {"dist", "overlap", KEY_BOOL, offsetof(sd_config, overlap), RANGE_ANY, NULL, 0},
    {"dist", "grad_dtype", KEY_STRING, offsetof(sd_config, grad_dtype), RANGE_ANY, k_grad_dtypes,
     sizeof(((sd_config *)0)->grad_dtype)},
    {"dist", "check_replicas", KEY_BOOL, offsetof(sd_config, check_replicas), RANGE_ANY, NULL,
     0},

    {"ckpt", "dir", KEY_STRING, offsetof(sd_config, ckpt_dir), RANGE_ANY, NULL,
     sizeof(((sd_config *)0)->ckpt_dir)},
    {"ckpt", "every", KEY_LONG, offsetof(sd_config, ckpt_every), RANGE_NONNEG, NULL, 0},
    {"ckpt", "keep", KEY_INT, offsetof(sd_config, ckpt_keep), RANGE_NONNEG, NULL, 0},
    {"ckpt", "resume", KEY_STRING, offsetof(sd_config, resume), RANGE_ANY, NULL,
     sizeof(((sd_config *)0)->resume)},

    {"log", "preview_every", KEY_LONG, offsetof(sd_config, preview_every), RANGE_NONNEG, NULL,
     0},
    {"log", "preview_classes", KEY_INT, offsetof(sd_config, preview_classes), RANGE_AT_LEAST_1,
     NULL, 0},
    {"log", "preview_per_class", KEY_INT, offsetof(sd_config, preview_per_class),
     RANGE_AT_LEAST_1, NULL, 0},
    {"log", "preview_steps", KEY_INT, offsetof(sd_config, preview_steps), RANGE_AT_LEAST_1, NULL,
     0},
    {"log", "preview_guidance", KEY_FLOAT, offsetof(sd_config, preview_guidance), RANGE_NONNEG,
     NULL, 0},
};
const size_t sd_cfg_nkeys = sizeof sd_cfg_keys / sizeof sd_cfg_keys[0];

void *sd_cfg_field_of(sd_config *c, const key_desc *k) { return (char *)c + k->offset; }

const void *sd_cfg_cfield_of(const sd_config *c, const key_desc *k) {
  return (const char *)c + k->offset;
}

const key_desc *sd_cfg_find_key(const char *section, const char *name) {
  for (size_t i = 0; i < sd_cfg_nkeys; i++)
    if (strcmp(sd_cfg_keys[i].section, section) == 0 && strcmp(sd_cfg_keys[i].name, name) == 0)
      return &sd_cfg_keys[i];
  return NULL;
}

int sd_cfg_is_section(const char *name, size_t len) {
  for (size_t i = 0; i < sd_cfg_nsections; i++)
    if (strlen(sd_cfg_sections[i]) == len && strncmp(sd_cfg_sections[i], name, len) == 0)
      return 1;
  return 0;
}

int sd_cfg_is_dit_key(const char *name) {
  for (size_t i = 0; i < sd_cfg_ndit_keys; i++)
    if (strcmp(sd_cfg_dit_keys[i], name) == 0) return 1;
  return 0;
}

// Appends s to buf (size n), truncating.
void sd_cfg_append(char *buf, size_t n, const char *s) {
  size_t len = strlen(buf);
  if (len + 1 < n) snprintf(buf + len, n - len, "%s", s);
}

void sd_cfg_section_list(char *buf, size_t n) {
  buf[0] = '\0';
  for (size_t i = 0; i < sd_cfg_nsections; i++) {
    if (i) sd_cfg_append(buf, n, ", ");
    sd_cfg_append(buf, n, sd_cfg_sections[i]);
  }
}
