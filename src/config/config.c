// Run configuration: defaults, INI loading (inih), overrides, validation, printing (see config.h).
#include "config/config.h"
#include "error.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <ini.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---- the key table: every key outside sd_dit_config, in print order ----

typedef enum key_type { KEY_INT, KEY_LONG, KEY_U64, KEY_FLOAT, KEY_BOOL, KEY_STRING } key_type;

// Allowed values of a number.
typedef enum key_range {
  RANGE_ANY,       // any finite number
  RANGE_POSITIVE,  // > 0
  RANGE_NONNEG,    // >= 0
  RANGE_AT_LEAST_1,
  RANGE_UNIT,       // [0, 1]
  RANGE_UNIT_OPEN,  // [0, 1)
} key_range;

typedef struct key_desc {
  const char *section;
  const char *name;
  key_type type;
  size_t offset;                // of the field in sd_config
  key_range range;              // numbers
  const char *const *choices;   // KEY_STRING: NULL-terminated allowed values, NULL = free text
  size_t size;                  // KEY_STRING: size of the char array
} key_desc;

static const char *const k_sigma_modes[] = {"fixed", "log_uniform", NULL};
static const char *const k_gen_tokens[] = {"all", "visible", NULL};
static const char *const k_sources[] = {"synthetic", "hdf5", NULL};
static const char *const k_validate[] = {"full", "quick", NULL};
static const char *const k_backends[] = {"cpu", "cuda", NULL};
static const char *const k_precisions[] = {"bf16", "fp32", NULL};
static const char *const k_grad_dtypes[] = {"fp32", "bf16", NULL};
static const char *const k_lr_schedules[] = {"constant", "cosine", NULL};

static const char *const k_sections[] = {"model", "sddit", "diffusion", "optim", "data",
                                         "train", "dist", "ckpt", "log"};
#define N_SECTIONS (sizeof k_sections / sizeof k_sections[0])

// [model] keys that sd_dit_config_set handles (besides preset).
static const char *const k_dit_keys[] = {"input_size", "in_channels", "patch", "hidden",
                                         "depth", "heads", "mlp_ratio", "num_classes",
                                         "out_channels", "freq_dim", "max_period", "ln_eps"};
#define N_DIT_KEYS (sizeof k_dit_keys / sizeof k_dit_keys[0])

static const key_desc k_keys[] = {
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
#define N_KEYS (sizeof k_keys / sizeof k_keys[0])

static void *field_of(sd_config *c, const key_desc *k) { return (char *)c + k->offset; }

static const void *cfield_of(const sd_config *c, const key_desc *k) {
  return (const char *)c + k->offset;
}

static const key_desc *find_key(const char *section, const char *name) {
  for (size_t i = 0; i < N_KEYS; i++)
    if (strcmp(k_keys[i].section, section) == 0 && strcmp(k_keys[i].name, name) == 0)
      return &k_keys[i];
  return NULL;
}

static int is_section(const char *name, size_t len) {
  for (size_t i = 0; i < N_SECTIONS; i++)
    if (strlen(k_sections[i]) == len && strncmp(k_sections[i], name, len) == 0) return 1;
  return 0;
}

static int is_dit_key(const char *name) {
  for (size_t i = 0; i < N_DIT_KEYS; i++)
    if (strcmp(k_dit_keys[i], name) == 0) return 1;
  return 0;
}

// Appends s to buf (size n), truncating.
static void append(char *buf, size_t n, const char *s) {
  size_t len = strlen(buf);
  if (len + 1 < n) snprintf(buf + len, n - len, "%s", s);
}

static void section_list(char *buf, size_t n) {
  buf[0] = '\0';
  for (size_t i = 0; i < N_SECTIONS; i++) {
    if (i) append(buf, n, ", ");
    append(buf, n, k_sections[i]);
  }
}

// ---- strict number parsing ----

// The whole text must be the number: no blanks, no trailing characters. 0, or -1 if not a
// number, or -2 if out of the type's range.
static int parse_double(const char *s, double *out) {
  if (!*s || isspace((unsigned char)*s)) return -1;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || *end != '\0') return -1;
  if (errno == ERANGE) return -2;  // overflow or underflow
  if (!isfinite(v)) return -1;     // "inf", "nan"
  *out = v;
  return 0;
}

static int parse_float(const char *s, float *out) {
  double v;
  int rc = parse_double(s, &v);
  if (rc != 0) return rc;
  if (fabs(v) > FLT_MAX) return -2;
  *out = (float)v;
  return 0;
}

static int parse_long(const char *s, long *out) {
  if (!*s || isspace((unsigned char)*s)) return -1;
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (end == s || *end != '\0') return -1;
  if (errno == ERANGE) return -2;
  *out = v;
  return 0;
}

static int parse_u64(const char *s, unsigned long long *out) {
  if (!*s || isspace((unsigned char)*s) || *s == '-') return -1;  // strtoull would negate
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (end == s || *end != '\0') return -1;
  if (errno == ERANGE) return -2;
  *out = v;
  return 0;
}

// Shortest "%.Ng" text (6 to 9 digits) that parses back to exactly v.
static void format_float(float v, char *buf, size_t n) {
  for (int digits = 6; digits <= 9; digits++) {
    snprintf(buf, n, "%.*g", digits, (double)v);
    float back;
    if (parse_float(buf, &back) == 0 && back == v) return;
  }
}

// ---- ranges and values ----

static int in_range(double v, key_range r) {
  switch (r) {
    case RANGE_ANY: return 1;
    case RANGE_POSITIVE: return v > 0.0;
    case RANGE_NONNEG: return v >= 0.0;
    case RANGE_AT_LEAST_1: return v >= 1.0;
    case RANGE_UNIT: return v >= 0.0 && v <= 1.0;
    case RANGE_UNIT_OPEN: return v >= 0.0 && v < 1.0;
  }
  return 0;
}

static const char *range_text(key_range r) {
  switch (r) {
    case RANGE_ANY: return "any number";
    case RANGE_POSITIVE: return "must be > 0";
    case RANGE_NONNEG: return "must be >= 0";
    case RANGE_AT_LEAST_1: return "must be >= 1";
    case RANGE_UNIT: return "must be in [0, 1]";
    case RANGE_UNIT_OPEN: return "must be in [0, 1)";
  }
  return "";
}

// Why a string value cannot be stored, or NULL if it can. Free text must come back unchanged
// from an INI file: inih strips blanks at both ends and cuts a value at " ;".
static const char *string_problem(const key_desc *k, const char *v, char *buf, size_t n) {
  if (k->choices) {
    for (int i = 0; k->choices[i]; i++)
      if (strcmp(v, k->choices[i]) == 0) return NULL;
    snprintf(buf, n, "is not one of: ");
    for (int i = 0; k->choices[i]; i++) {
      if (i) append(buf, n, ", ");
      append(buf, n, k->choices[i]);
    }
    return buf;
  }
  size_t len = strlen(v);
  if (len > SD_CONFIG_MAX_STRING || len >= k->size) {
    snprintf(buf, n, "is longer than %d characters", SD_CONFIG_MAX_STRING);
    return buf;
  }
  if (len && (isspace((unsigned char)v[0]) || isspace((unsigned char)v[len - 1])))
    return "has blanks at its start or end";
  for (size_t i = 0; i < len; i++)
    if (v[i] == ';' || iscntrl((unsigned char)v[i]))
      return "contains ';' or a control character (not allowed in an INI value)";
  return NULL;
}

static int bad_value(char *err, size_t errlen, const key_desc *k, const char *value,
                     const char *why) {
  snprintf(err, errlen, "%s.%s: '%s' %s", k->section, k->name, value, why);
  return -1;
}

static int out_of_range(char *err, size_t errlen, const key_desc *k, const char *value) {
  snprintf(err, errlen, "%s.%s: '%s' is out of range (%s)", k->section, k->name, value,
           range_text(k->range));
  return -1;
}

static int set_table_key(sd_config *c, const key_desc *k, const char *value, char *err,
                         size_t errlen) {
  int rc;
  switch (k->type) {
    case KEY_INT: {
      long v = 0;
      rc = parse_long(value, &v);
      if (rc == -1) return bad_value(err, errlen, k, value, "is not an integer");
      if (rc == -2 || v < INT_MIN || v > INT_MAX || !in_range((double)v, k->range))
        return out_of_range(err, errlen, k, value);
      int *p = field_of(c, k);
      *p = (int)v;
      return 0;
    }
    case KEY_LONG: {
      long v = 0;
      rc = parse_long(value, &v);
      if (rc == -1) return bad_value(err, errlen, k, value, "is not an integer");
      if (rc == -2 || !in_range((double)v, k->range)) return out_of_range(err, errlen, k, value);
      long *p = field_of(c, k);
      *p = v;
      return 0;
    }
    case KEY_U64: {
      unsigned long long v = 0;
      rc = parse_u64(value, &v);
      if (rc == -1) return bad_value(err, errlen, k, value, "is not a non-negative integer");
      if (rc == -2) return bad_value(err, errlen, k, value, "does not fit in 64 bits");
      unsigned long long *p = field_of(c, k);
      *p = v;
      return 0;
    }
    case KEY_FLOAT: {
      float v = 0.0f;
      rc = parse_float(value, &v);
      if (rc == -1) return bad_value(err, errlen, k, value, "is not a number");
      if (rc == -2) return bad_value(err, errlen, k, value, "is out of range for a float");
      if (!in_range((double)v, k->range)) return out_of_range(err, errlen, k, value);
      float *p = field_of(c, k);
      *p = v;
      return 0;
    }
    case KEY_BOOL: {
      static const char *const yes[] = {"true", "1", "yes", "on"};
      static const char *const no[] = {"false", "0", "no", "off"};
      for (int i = 0; i < 4; i++)
        if (strcmp(value, yes[i]) == 0 || strcmp(value, no[i]) == 0) {
          int *p = field_of(c, k);
          *p = strcmp(value, yes[i]) == 0;
          return 0;
        }
      return bad_value(err, errlen, k, value, "is not a boolean (true or false)");
    }
    case KEY_STRING: {
      char why[160];
      const char *problem = string_problem(k, value, why, sizeof why);
      if (problem) return bad_value(err, errlen, k, value, problem);
      char *p = field_of(c, k);
      memset(p, 0, k->size);  // zero the tail too, so equal configs compare equal bytewise
      memcpy(p, value, strlen(value) + 1);
      return 0;
    }
  }
  return -1;
}

// ---- [model] ----

static void set_preset_name(sd_dit_config *m, const char *name) {
  memset(m->preset, 0, sizeof m->preset);
  snprintf(m->preset, sizeof m->preset, "%s", name);
}

// Resets the model and its encoder/decoder split to a preset. Returns 0, or -1 if unknown.
static int apply_preset(sd_config *c, const char *name) {
  sd_dit_config m;
  if (sd_dit_config_preset(&m, name) != 0) return -1;
  set_preset_name(&m, name);
  c->model = m;
  if (strcmp(name, "tiny") == 0) c->decoder_depth = 1;
  else c->decoder_depth = m.hidden >= 1024 ? 4 : 2;
  c->encoder_depth = m.depth - c->decoder_depth;
  c->decoder_hidden = m.hidden;
  c->decoder_heads = m.heads;
  return 0;
}

static int set_model_key(sd_config *c, const char *key, const char *value, char *err,
                         size_t errlen) {
  if (strcmp(key, "preset") == 0) {
    if (strcmp(value, "custom") == 0) {
      set_preset_name(&c->model, "custom");
      return 0;
    }
    if (apply_preset(c, value) != 0) {
      snprintf(err, errlen, "model.preset: unknown preset '%s' (known: %s; or custom)", value,
               sd_dit_preset_names());
      return -1;
    }
    return 0;
  }
  if (is_dit_key(key)) {
    sd_dit_config before = c->model;
    if (sd_dit_config_set(&c->model, key, value, err, errlen) != 0) {
      c->model = before;
      return -1;
    }
    // The preset name stays when the value did not change (a printed config loads back
    // unchanged) and becomes "custom" when it did.
    sd_dit_config after = c->model;
    set_preset_name(&after, before.preset);
    if (memcmp(&after, &before, sizeof after) == 0) c->model = before;
    else set_preset_name(&c->model, "custom");
    return 0;
  }
  const key_desc *k = find_key("model", key);
  if (k) return set_table_key(c, k, value, err, errlen);
  char known[512] = "preset";
  for (size_t i = 0; i < N_DIT_KEYS; i++) {
    append(known, sizeof known, ", ");
    append(known, sizeof known, k_dit_keys[i]);
  }
  for (size_t i = 0; i < N_KEYS; i++)
    if (strcmp(k_keys[i].section, "model") == 0) {
      append(known, sizeof known, ", ");
      append(known, sizeof known, k_keys[i].name);
    }
  snprintf(err, errlen, "model.%s: unknown key (known: %s)", key, known);
  return -1;
}

// ---- public API ----

void sd_config_defaults(sd_config *c, const char *preset) {
  if (!preset) preset = "S/2";
  memset(c, 0, sizeof *c);
  if (apply_preset(c, preset) != 0)
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

int sd_config_set(sd_config *c, const char *section, const char *key, const char *value,
                  char *err, size_t errlen) {
  if (!is_section(section, strlen(section))) {
    char known[256];
    section_list(known, sizeof known);
    snprintf(err, errlen, "%s.%s: unknown section '%s' (known: %s)", section, key, section,
             known);
    return -1;
  }
  if (strcmp(section, "model") == 0) return set_model_key(c, key, value, err, errlen);
  const key_desc *k = find_key(section, key);
  if (k) return set_table_key(c, k, value, err, errlen);
  char known[512] = "";
  for (size_t i = 0; i < N_KEYS; i++)
    if (strcmp(k_keys[i].section, section) == 0) {
      if (known[0]) append(known, sizeof known, ", ");
      append(known, sizeof known, k_keys[i].name);
    }
  if (known[0])
    snprintf(err, errlen, "%s.%s: unknown key (known: %s)", section, key, known);
  else
    snprintf(err, errlen, "%s.%s: unknown key (the [%s] section has no keys yet)", section, key,
             section);
  return -1;
}

int sd_config_apply_override(sd_config *c, const char *arg, char *err, size_t errlen) {
  const char *s = strncmp(arg, "--", 2) == 0 ? arg + 2 : NULL;
  const char *eq = s ? strchr(s, '=') : NULL;
  const char *dot = s ? strchr(s, '.') : NULL;
  char section[32], key[64];
  if (!eq || !dot || dot > eq || dot == s || eq == dot + 1 ||
      (size_t)(dot - s) >= sizeof section || (size_t)(eq - dot - 1) >= sizeof key) {
    snprintf(err, errlen, "'%s': expected --section.key=value (e.g. --optim.lr=3e-4)", arg);
    return -1;
  }
  memcpy(section, s, (size_t)(dot - s));
  section[dot - s] = '\0';
  memcpy(key, dot + 1, (size_t)(eq - dot - 1));
  key[eq - dot - 1] = '\0';
  return sd_config_set(c, section, key, eq + 1, err, errlen);
}

// ---- INI loading ----

#define MAX_SEEN 128

// State shared by the line reader and the key handler while inih parses one file.
typedef struct ini_ctx {
  sd_config *c;
  FILE *f;
  int pass;      // 1: only [model] preset; 2: every other key
  int line;      // number of the line being parsed
  int err_line;  // line of the earliest error found, 0 = none
  char err[512];
  int nseen;  // keys already set, to refuse a key given twice
  char seen[MAX_SEEN][80];
  int seen_line[MAX_SEEN];
} ini_ctx;

// Keeps the error on the earliest line (the two passes find errors out of line order).
static void ini_error(ini_ctx *x, int line, const char *msg) {
  if (x->err_line && x->err_line <= line) return;
  x->err_line = line;
  snprintf(x->err, sizeof x->err, "%s", msg);
}

// A "[name]" line must name a known section (inih itself only reports sections with keys).
static void check_section_line(ini_ctx *x, const char *line) {
  const unsigned char *s = (const unsigned char *)line;
  if (x->line == 1 && s[0] == 0xEF && s[1] == 0xBB && s[2] == 0xBF) s += 3;  // UTF-8 BOM
  while (isspace(*s)) s++;
  if (*s != '[') return;
  const char *name = (const char *)s + 1;
  const char *end = strchr(name, ']');
  if (!end || is_section(name, (size_t)(end - name))) return;  // no ']': inih's syntax error
  char known[256], msg[512];
  section_list(known, sizeof known);
  snprintf(msg, sizeof msg, "unknown section '[%.*s]' (known: %s)", (int)(end - name), name,
           known);
  ini_error(x, x->line, msg);
}

// fgets for inih that counts lines, refuses lines longer than inih's buffer (inih would split
// them), checks section names, and stops at the first error.
static char *ini_read_line(char *str, int num, void *stream) {
  ini_ctx *x = stream;
  if (x->err_line && x->err_line <= x->line) return NULL;
  if (!fgets(str, num, x->f)) return NULL;
  x->line++;
  size_t len = strlen(str);
  if (len && str[len - 1] != '\n') {
    int next = fgetc(x->f);
    if (next != EOF) {
      char msg[128];
      snprintf(msg, sizeof msg, "line longer than %d characters", num - 2);
      ini_error(x, x->line, msg);
      return NULL;
    }
  }
  check_section_line(x, str);
  if (x->err_line == x->line) return NULL;
  return str;
}

static int ini_handle(void *user, const char *section, const char *name, const char *value) {
  ini_ctx *x = user;
  int is_preset = strcmp(section, "model") == 0 && strcmp(name, "preset") == 0;
  if ((x->pass == 1) != is_preset) return 1;  // pass 1 sets the preset, pass 2 the rest
  char msg[512];
  if (!section[0]) {
    snprintf(msg, sizeof msg, "%s: key before any [section] line", name);
    ini_error(x, x->line, msg);
    return 1;
  }
  char full[80];
  snprintf(full, sizeof full, "%s.%s", section, name);
  for (int i = 0; i < x->nseen; i++)
    if (strcmp(x->seen[i], full) == 0) {
      snprintf(msg, sizeof msg, "%s: given twice (first on line %d)", full, x->seen_line[i]);
      ini_error(x, x->line, msg);
      return 1;
    }
  if (sd_config_set(x->c, section, name, value, msg, sizeof msg) != 0) {
    ini_error(x, x->line, msg);
    return 1;
  }
  if (x->nseen < MAX_SEEN) {
    snprintf(x->seen[x->nseen], sizeof x->seen[0], "%s", full);
    x->seen_line[x->nseen++] = x->line;
  }
  return 1;  // errors are kept in x; inih's own return value then means a syntax error
}

int sd_config_load_ini_text(sd_config *c, const char *text, const char *name, char *err,
                            size_t errlen) {
  // a memory stream: both passes read the same bytes (a pipe could not be read twice)
  FILE *f = fmemopen((void *)text, strlen(text), "r");
  if (!f) {
    snprintf(err, errlen, "%s: cannot read the configuration text: %s", name, strerror(errno));
    return -1;
  }
  sd_config work = *c;
  ini_ctx *x = calloc(1, sizeof *x);
  if (!x) SD_FATAL("out of memory reading '%s'", name);
  x->c = &work;
  x->f = f;
  for (int pass = 1; pass <= 2; pass++) {
    rewind(f);
    x->pass = pass;
    x->line = 0;
    int r = ini_parse_stream(ini_read_line, x, ini_handle, x);
    if (r > 0) ini_error(x, r, "syntax error: expected '[section]' or 'key = value'");
    else if (r < 0) ini_error(x, 1, "inih could not allocate its line buffer");
  }
  fclose(f);
  int rc = 0;
  if (x->err_line) {
    snprintf(err, errlen, "%s:%d: %s", name, x->err_line, x->err);
    rc = -1;
  } else {
    *c = work;
  }
  free(x);
  return rc;
}

int sd_config_load_ini(sd_config *c, const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "cannot open config file '%s': %s", path, strerror(errno));
    return -1;
  }
  // read it once (it may be a pipe), at most 1 MiB
  const size_t cap = 1u << 20;
  char *text = malloc(cap + 1);
  if (!text) SD_FATAL("out of memory reading '%s'", path);
  size_t len = fread(text, 1, cap + 1, f);
  int bad = ferror(f), e = errno;
  fclose(f);
  int rc;
  if (bad) {
    snprintf(err, errlen, "%s: read error: %s", path, strerror(e));
    rc = -1;
  } else if (len > cap) {
    snprintf(err, errlen, "%s: larger than 1 MiB; is it a configuration file?", path);
    rc = -1;
  } else if (memchr(text, '\0', len)) {
    snprintf(err, errlen, "%s: contains a NUL byte; is it a configuration file?", path);
    rc = -1;
  } else {
    text[len] = '\0';
    rc = sd_config_load_ini_text(c, text, path, err, errlen);
  }
  free(text);
  return rc;
}

// ---- validation and printing ----

int sd_config_visible_tokens(const sd_config *c) {
  // The ratio as written (its shortest decimal) in double precision, so 0.2 gives what the
  // PyTorch reference computes: int(T * (1 - 0.2)).
  char text[32];
  format_float(c->mask_ratio, text, sizeof text);
  double ratio = strtod(text, NULL);
  return (int)floor(sd_dit_tokens(&c->model) * (1.0 - ratio));
}

static int check_table_value(const sd_config *c, const key_desc *k, char *err, size_t errlen) {
  double v = 0.0;
  char text[64];
  switch (k->type) {
    case KEY_INT: {
      const int *p = cfield_of(c, k);
      v = *p;
      snprintf(text, sizeof text, "%d", *p);
      break;
    }
    case KEY_LONG: {
      const long *p = cfield_of(c, k);
      v = (double)*p;
      snprintf(text, sizeof text, "%ld", *p);
      break;
    }
    case KEY_U64: return 0;
    case KEY_BOOL: return 0;
    case KEY_FLOAT: {
      const float *p = cfield_of(c, k);
      v = *p;
      format_float(*p, text, sizeof text);
      if (!isfinite(v)) {
        snprintf(err, errlen, "%s.%s: %s is not finite", k->section, k->name, text);
        return -1;
      }
      break;
    }
    case KEY_STRING: {
      const char *p = cfield_of(c, k);
      char why[160];
      if (memchr(p, '\0', k->size) == NULL) {
        snprintf(err, errlen, "%s.%s: the string is not terminated", k->section, k->name);
        return -1;
      }
      const char *problem = string_problem(k, p, why, sizeof why);
      if (problem) {
        snprintf(err, errlen, "%s.%s: '%s' %s", k->section, k->name, p, problem);
        return -1;
      }
      return 0;
    }
  }
  if (!in_range(v, k->range)) {
    snprintf(err, errlen, "%s.%s: %s is out of range (%s)", k->section, k->name, text,
             range_text(k->range));
    return -1;
  }
  return 0;
}

int sd_config_validate(const sd_config *c, char *err, size_t errlen) {
  const sd_dit_config *m = &c->model;
  if (sd_dit_config_validate(m, err, errlen) != 0) return -1;
  for (size_t i = 0; i < N_KEYS; i++)
    if (check_table_value(c, &k_keys[i], err, errlen) != 0) return -1;
  if (c->encoder_depth + c->decoder_depth != m->depth) {
    if (m->depth - c->decoder_depth >= 1)
      snprintf(err, errlen,
               "model.encoder_depth (%d) + model.decoder_depth (%d) = %d, but model.depth is "
               "%d: set model.encoder_depth = %d",
               c->encoder_depth, c->decoder_depth, c->encoder_depth + c->decoder_depth,
               m->depth, m->depth - c->decoder_depth);
    else
      snprintf(err, errlen,
               "model.encoder_depth (%d) + model.decoder_depth (%d) = %d, but model.depth is "
               "%d: model.decoder_depth must be below model.depth",
               c->encoder_depth, c->decoder_depth, c->encoder_depth + c->decoder_depth,
               m->depth);
    return -1;
  }
  if (c->decoder_hidden != m->hidden) {
    snprintf(err, errlen,
             "model.decoder_hidden (%d) differs from model.hidden (%d): a decoder width other "
             "than the encoder's is not supported yet",
             c->decoder_hidden, m->hidden);
    return -1;
  }
  if (c->decoder_heads != m->heads) {
    snprintf(err, errlen,
             "model.decoder_heads (%d) differs from model.heads (%d): other decoder head "
             "counts are not supported yet",
             c->decoder_heads, m->heads);
    return -1;
  }
  if (m->out_channels != m->in_channels) {  // D = c_skip x + c_out F needs F shaped like x
    snprintf(err, errlen,
             "model.out_channels (%d) differs from model.in_channels (%d): the EDM denoiser "
             "D = c_skip * x + c_out * F needs the network's output shaped like its input; set "
             "model.out_channels = %d",
             m->out_channels, m->in_channels, m->in_channels);
    return -1;
  }
  if (sd_config_visible_tokens(c) < 1) {
    char ratio[32];
    format_float(c->mask_ratio, ratio, sizeof ratio);
    snprintf(err, errlen,
             "sddit.mask_ratio (%s) leaves no visible token of the %d (model.input_size %d, "
             "model.patch %d)",
             ratio, sd_dit_tokens(m), m->input_size, m->patch);
    return -1;
  }
  if (!(c->sigma_min < c->sigma_max)) {
    char lo[32], hi[32];
    format_float(c->sigma_min, lo, sizeof lo);
    format_float(c->sigma_max, hi, sizeof hi);
    snprintf(err, errlen, "diffusion.sigma_min (%s) must be below diffusion.sigma_max (%s)", lo,
             hi);
    return -1;
  }
  if (strcmp(c->source, "hdf5") == 0 && c->path[0] == '\0') {
    snprintf(err, errlen, "data.path: required when data.source = hdf5");
    return -1;
  }
  if (c->out_dir[0] == '\0') {
    snprintf(err, errlen, "train.out_dir: must not be empty");
    return -1;
  }
  if (c->global_batch % c->accum_steps != 0) {
    snprintf(err, errlen,
             "train.global_batch (%d) is not a multiple of train.accum_steps (%d): every "
             "micro-batch must hold the same number of samples",
             c->global_batch, c->accum_steps);
    return -1;
  }
  if (c->lr_min > c->lr && strcmp(c->lr_schedule, "cosine") == 0) {
    char lo[32], hi[32];
    format_float(c->lr_min, lo, sizeof lo);
    format_float(c->lr, hi, sizeof hi);
    snprintf(err, errlen, "optim.lr_min (%s) is above optim.lr (%s): the cosine schedule "
             "decays from lr to lr_min", lo, hi);
    return -1;
  }
  return 0;
}

static void print_table_value(const sd_config *c, const key_desc *k, FILE *f) {
  char text[64];
  switch (k->type) {
    case KEY_INT: fprintf(f, "%s = %d\n", k->name, *(const int *)cfield_of(c, k)); break;
    case KEY_LONG: fprintf(f, "%s = %ld\n", k->name, *(const long *)cfield_of(c, k)); break;
    case KEY_U64:
      fprintf(f, "%s = %llu\n", k->name, *(const unsigned long long *)cfield_of(c, k));
      break;
    case KEY_FLOAT:
      format_float(*(const float *)cfield_of(c, k), text, sizeof text);
      fprintf(f, "%s = %s\n", k->name, text);
      break;
    case KEY_BOOL:
      fprintf(f, "%s = %s\n", k->name, *(const int *)cfield_of(c, k) ? "true" : "false");
      break;
    case KEY_STRING: {
      const char *v = cfield_of(c, k);
      fprintf(f, "%s =%s%s\n", k->name, v[0] ? " " : "", v);  // no trailing blank when empty
      break;
    }
  }
}

static void print_model(const sd_dit_config *m, FILE *f) {
  const struct {
    const char *name;
    int value;
  } ints[] = {{"input_size", m->input_size},   {"in_channels", m->in_channels},
              {"patch", m->patch},             {"hidden", m->hidden},
              {"depth", m->depth},             {"heads", m->heads},
              {"mlp_ratio", m->mlp_ratio},     {"num_classes", m->num_classes},
              {"out_channels", m->out_channels}, {"freq_dim", m->freq_dim}};
  char text[64];
  fprintf(f, "preset = %s\n", m->preset);
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
    fprintf(f, "%s = %d\n", ints[i].name, ints[i].value);
  format_float(m->max_period, text, sizeof text);
  fprintf(f, "max_period = %s\n", text);
  format_float(m->ln_eps, text, sizeof text);
  fprintf(f, "ln_eps = %s\n", text);
}

void sd_config_print(const sd_config *c, FILE *f) {
  fprintf(f, "# sddit effective configuration (every key); load it with --config FILE\n");
  for (size_t s = 0; s < N_SECTIONS; s++) {
    fprintf(f, "\n[%s]\n", k_sections[s]);
    int keys = 0;
    if (strcmp(k_sections[s], "model") == 0) {
      print_model(&c->model, f);
      keys++;
    }
    for (size_t i = 0; i < N_KEYS; i++)
      if (strcmp(k_keys[i].section, k_sections[s]) == 0) {
        print_table_value(c, &k_keys[i], f);
        keys++;
      }
    if (!keys) fprintf(f, "# reserved: no keys yet\n");
  }
}

char *sd_config_print_text(const sd_config *c) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) SD_FATAL("open_memstream failed");
  sd_config_print(c, f);
  fclose(f);
  return buf;
}
