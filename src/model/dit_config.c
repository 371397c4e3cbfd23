// DiT model presets, key setting and validation (see dit_config.h).
#include "model/dit_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct size_preset {
  const char *name;
  int depth, hidden, heads;
} size_preset;

// DiT's sizes (depth / hidden / heads); the patch comes from the "/p" suffix.
static const size_preset k_sizes[] = {
    {"S", 12, 384, 6}, {"B", 12, 768, 12}, {"L", 24, 1024, 16}, {"XL", 28, 1152, 16}};

const char *sd_dit_preset_names(void) { return "tiny, S/2, B/2, L/2, XL/2 (also /4, /8)"; }

static void set_defaults(sd_dit_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->input_size = 32;
  cfg->in_channels = 4;
  cfg->patch = 2;
  cfg->mlp_ratio = 4;
  cfg->num_classes = 1000;
  cfg->out_channels = 4;
  cfg->freq_dim = 256;
  cfg->max_period = 10000.0f;
  cfg->ln_eps = 1e-6f;
}

int sd_dit_config_preset(sd_dit_config *cfg, const char *name) {
  set_defaults(cfg);
  if (strcmp(name, "tiny") == 0) {
    cfg->input_size = 8;
    cfg->hidden = 64;
    cfg->depth = 4;
    cfg->heads = 4;
    cfg->num_classes = 10;
  } else {
    const char *slash = strchr(name, '/');
    if (!slash) return -1;
    int found = 0;
    for (size_t i = 0; i < sizeof k_sizes / sizeof k_sizes[0]; i++)
      if ((size_t)(slash - name) == strlen(k_sizes[i].name) &&
          strncmp(name, k_sizes[i].name, (size_t)(slash - name)) == 0) {
        cfg->depth = k_sizes[i].depth;
        cfg->hidden = k_sizes[i].hidden;
        cfg->heads = k_sizes[i].heads;
        found = 1;
      }
    if (!found) return -1;
    if (strcmp(slash + 1, "2") == 0) cfg->patch = 2;
    else if (strcmp(slash + 1, "4") == 0) cfg->patch = 4;
    else if (strcmp(slash + 1, "8") == 0) cfg->patch = 8;
    else return -1;
  }
  snprintf(cfg->preset, sizeof cfg->preset, "%s", name);
  return 0;
}

static int parse_int(const char *key, const char *value, int *out, char *err, size_t errlen) {
  char *end;
  errno = 0;
  long v = strtol(value, &end, 10);
  if (errno || end == value || *end != '\0' || v <= 0 || v > 1000000) {
    snprintf(err, errlen, "model.%s: '%s' is not a positive integer", key, value);
    return -1;
  }
  *out = (int)v;
  return 0;
}

static int parse_float(const char *key, const char *value, float *out, char *err,
                       size_t errlen) {
  char *end;
  errno = 0;
  float v = strtof(value, &end);
  if (errno || end == value || *end != '\0' || !(v > 0.0f)) {
    snprintf(err, errlen, "model.%s: '%s' is not a positive number", key, value);
    return -1;
  }
  *out = v;
  return 0;
}

int sd_dit_config_set(sd_dit_config *cfg, const char *key, const char *value, char *err,
                      size_t errlen) {
  if (strcmp(key, "preset") == 0) {
    if (sd_dit_config_preset(cfg, value) != 0) {
      snprintf(err, errlen, "model.preset: unknown preset '%s' (known: %s)", value,
               sd_dit_preset_names());
      return -1;
    }
    return 0;
  }
  struct {
    const char *name;
    int *field;
  } ints[] = {{"input_size", &cfg->input_size},   {"in_channels", &cfg->in_channels},
              {"patch", &cfg->patch},             {"hidden", &cfg->hidden},
              {"depth", &cfg->depth},             {"heads", &cfg->heads},
              {"mlp_ratio", &cfg->mlp_ratio},     {"num_classes", &cfg->num_classes},
              {"out_channels", &cfg->out_channels}, {"freq_dim", &cfg->freq_dim}};
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
    if (strcmp(key, ints[i].name) == 0) {
      snprintf(cfg->preset, sizeof cfg->preset, "custom");
      return parse_int(key, value, ints[i].field, err, errlen);
    }
  if (strcmp(key, "max_period") == 0) return parse_float(key, value, &cfg->max_period, err, errlen);
  if (strcmp(key, "ln_eps") == 0) return parse_float(key, value, &cfg->ln_eps, err, errlen);
  snprintf(err, errlen,
           "model.%s: unknown key (known: preset, input_size, in_channels, patch, hidden, "
           "depth, heads, mlp_ratio, num_classes, out_channels, freq_dim, max_period, ln_eps)",
           key);
  return -1;
}

int sd_dit_config_validate(const sd_dit_config *c, char *err, size_t errlen) {
  if (c->input_size <= 0 || c->in_channels <= 0 || c->patch <= 0 || c->hidden <= 0 ||
      c->depth <= 0 || c->heads <= 0 || c->mlp_ratio <= 0 || c->num_classes <= 0 ||
      c->out_channels <= 0 || c->freq_dim <= 0) {
    snprintf(err, errlen, "model: every size must be positive");
    return -1;
  }
  if (c->input_size % c->patch) {
    snprintf(err, errlen, "model: input_size %d is not divisible by patch %d", c->input_size,
             c->patch);
    return -1;
  }
  if (c->hidden % c->heads) {
    snprintf(err, errlen, "model: hidden %d is not divisible by heads %d", c->hidden, c->heads);
    return -1;
  }
  if (c->hidden % 4) {
    snprintf(err, errlen, "model: hidden %d must be a multiple of 4 (2-D sin-cos positions)",
             c->hidden);
    return -1;
  }
  if (c->freq_dim % 2) {
    snprintf(err, errlen, "model: freq_dim %d must be even", c->freq_dim);
    return -1;
  }
  return 0;
}

int sd_dit_tokens(const sd_dit_config *cfg) {
  int g = cfg->input_size / cfg->patch;
  return g * g;
}

double sd_dit_forward_flops(const sd_dit_config *c, int Tk) {
  double D = c->hidden, T = Tk, M = (double)c->mlp_ratio * D, pp = (double)c->patch * c->patch;
  double Tfull = sd_dit_tokens(c);
  double per_block = 2.0 * T * (3 * D * D + D * D + 2 * M * D) + 4.0 * T * T * D + 2.0 * 6 * D * D;
  return c->depth * per_block + 2.0 * Tfull * D * c->in_channels * pp +
         2.0 * Tfull * D * pp * c->out_channels + 2.0 * 2 * D * D +
         2.0 * (c->freq_dim * D + D * D);
}
