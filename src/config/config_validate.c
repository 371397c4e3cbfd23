// Validation: each key's range and the rules across keys (see config.h).
#include "config/config_keys.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int sd_config_visible_tokens(const sd_config *c) {
  // The ratio as written (its shortest decimal) in double precision, so 0.2 gives what the
  // PyTorch reference computes: int(T * (1 - 0.2)).
  char text[32];
  sd_cfg_format_float(c->mask_ratio, text, sizeof text);
  double ratio = strtod(text, NULL);
  return (int)floor(sd_dit_tokens(&c->model) * (1.0 - ratio));
}

static int check_table_value(const sd_config *c, const key_desc *k, char *err, size_t errlen) {
  double v = 0.0;
  char text[64];
  switch (k->type) {
    case KEY_INT: {
      const int *p = sd_cfg_cfield_of(c, k);
      v = *p;
      snprintf(text, sizeof text, "%d", *p);
      break;
    }
    case KEY_LONG: {
      const long *p = sd_cfg_cfield_of(c, k);
      v = (double)*p;
      snprintf(text, sizeof text, "%ld", *p);
      break;
    }
    case KEY_U64: return 0;
    case KEY_BOOL: return 0;
    case KEY_FLOAT: {
      const float *p = sd_cfg_cfield_of(c, k);
      v = *p;
      sd_cfg_format_float(*p, text, sizeof text);
      if (!isfinite(v)) {
        snprintf(err, errlen, "%s.%s: %s is not finite", k->section, k->name, text);
        return -1;
      }
      break;
    }
    case KEY_STRING: {
      const char *p = sd_cfg_cfield_of(c, k);
      char why[160];
      if (memchr(p, '\0', k->size) == NULL) {
        snprintf(err, errlen, "%s.%s: the string is not terminated", k->section, k->name);
        return -1;
      }
      const char *problem = sd_cfg_string_problem(k, p, why, sizeof why);
      if (problem) {
        snprintf(err, errlen, "%s.%s: '%s' %s", k->section, k->name, p, problem);
        return -1;
      }
      return 0;
    }
  }
  if (!sd_cfg_in_range(v, k->range)) {
    snprintf(err, errlen, "%s.%s: %s is out of range (%s)", k->section, k->name, text,
             sd_cfg_range_text(k->range));
    return -1;
  }
  return 0;
}

int sd_config_validate(const sd_config *c, char *err, size_t errlen) {
  const sd_dit_config *m = &c->model;
  if (sd_dit_config_validate(m, err, errlen) != 0) return -1;
  for (size_t i = 0; i < sd_cfg_nkeys; i++)
    if (check_table_value(c, &sd_cfg_keys[i], err, errlen) != 0) return -1;
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
    sd_cfg_format_float(c->mask_ratio, ratio, sizeof ratio);
    snprintf(err, errlen,
             "sddit.mask_ratio (%s) leaves no visible token of the %d (model.input_size %d, "
             "model.patch %d)",
             ratio, sd_dit_tokens(m), m->input_size, m->patch);
    return -1;
  }
  if (!(c->sigma_min < c->sigma_max)) {
    char lo[32], hi[32];
    sd_cfg_format_float(c->sigma_min, lo, sizeof lo);
    sd_cfg_format_float(c->sigma_max, hi, sizeof hi);
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
    sd_cfg_format_float(c->lr_min, lo, sizeof lo);
    sd_cfg_format_float(c->lr, hi, sizeof hi);
    snprintf(err, errlen, "optim.lr_min (%s) is above optim.lr (%s): the cosine schedule "
             "decays from lr to lr_min", lo, hi);
    return -1;
  }
  return 0;
}
