// Setting values: strict number parsing, ranges, the table's keys, the [model] keys and
// presets, and the public setters sd_config_set and sd_config_apply_override (see config.h).
#include "config/config_keys.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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
void sd_cfg_format_float(float v, char *buf, size_t n) {
  for (int digits = 6; digits <= 9; digits++) {
    snprintf(buf, n, "%.*g", digits, (double)v);
    float back;
    if (parse_float(buf, &back) == 0 && back == v) return;
  }
}

// ---- ranges and values ----

int sd_cfg_in_range(double v, key_range r) {
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

const char *sd_cfg_range_text(key_range r) {
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
const char *sd_cfg_string_problem(const key_desc *k, const char *v, char *buf, size_t n) {
  if (k->choices) {
    for (int i = 0; k->choices[i]; i++)
      if (strcmp(v, k->choices[i]) == 0) return NULL;
    snprintf(buf, n, "is not one of: ");
    for (int i = 0; k->choices[i]; i++) {
      if (i) sd_cfg_append(buf, n, ", ");
      sd_cfg_append(buf, n, k->choices[i]);
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
           sd_cfg_range_text(k->range));
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
      if (rc == -2 || v < INT_MIN || v > INT_MAX || !sd_cfg_in_range((double)v, k->range))
        return out_of_range(err, errlen, k, value);
      int *p = sd_cfg_field_of(c, k);
      *p = (int)v;
      return 0;
    }
    case KEY_LONG: {
      long v = 0;
      rc = parse_long(value, &v);
      if (rc == -1) return bad_value(err, errlen, k, value, "is not an integer");
      if (rc == -2 || !sd_cfg_in_range((double)v, k->range))
        return out_of_range(err, errlen, k, value);
      long *p = sd_cfg_field_of(c, k);
      *p = v;
      return 0;
    }
    case KEY_U64: {
      unsigned long long v = 0;
      rc = parse_u64(value, &v);
      if (rc == -1) return bad_value(err, errlen, k, value, "is not a non-negative integer");
      if (rc == -2) return bad_value(err, errlen, k, value, "does not fit in 64 bits");
      unsigned long long *p = sd_cfg_field_of(c, k);
      *p = v;
      return 0;
    }
    case KEY_FLOAT: {
      float v = 0.0f;
      rc = parse_float(value, &v);
      if (rc == -1) return bad_value(err, errlen, k, value, "is not a number");
      if (rc == -2) return bad_value(err, errlen, k, value, "is out of range for a float");
      if (!sd_cfg_in_range((double)v, k->range)) return out_of_range(err, errlen, k, value);
      float *p = sd_cfg_field_of(c, k);
      *p = v;
      return 0;
    }
    case KEY_BOOL: {
      static const char *const yes[] = {"true", "1", "yes", "on"};
      static const char *const no[] = {"false", "0", "no", "off"};
      for (int i = 0; i < 4; i++)
        if (strcmp(value, yes[i]) == 0 || strcmp(value, no[i]) == 0) {
          int *p = sd_cfg_field_of(c, k);
          *p = strcmp(value, yes[i]) == 0;
          return 0;
        }
      return bad_value(err, errlen, k, value, "is not a boolean (true or false)");
    }
    case KEY_STRING: {
      char why[160];
      const char *problem = sd_cfg_string_problem(k, value, why, sizeof why);
      if (problem) return bad_value(err, errlen, k, value, problem);
      char *p = sd_cfg_field_of(c, k);
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
int sd_cfg_apply_preset(sd_config *c, const char *name) {
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
    if (sd_cfg_apply_preset(c, value) != 0) {
      snprintf(err, errlen, "model.preset: unknown preset '%s' (known: %s; or custom)", value,
               sd_dit_preset_names());
      return -1;
    }
    return 0;
  }
  if (sd_cfg_is_dit_key(key)) {
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
  const key_desc *k = sd_cfg_find_key("model", key);
  if (k) return set_table_key(c, k, value, err, errlen);
  char known[512] = "preset";
  for (size_t i = 0; i < sd_cfg_ndit_keys; i++) {
    sd_cfg_append(known, sizeof known, ", ");
    sd_cfg_append(known, sizeof known, sd_cfg_dit_keys[i]);
  }
  for (size_t i = 0; i < sd_cfg_nkeys; i++)
    if (strcmp(sd_cfg_keys[i].section, "model") == 0) {
      sd_cfg_append(known, sizeof known, ", ");
      sd_cfg_append(known, sizeof known, sd_cfg_keys[i].name);
    }
  snprintf(err, errlen, "model.%s: unknown key (known: %s)", key, known);
  return -1;
}

// ---- public API: setters (sd_config_defaults is in config_defaults.c) ----

int sd_config_set(sd_config *c, const char *section, const char *key, const char *value,
                  char *err, size_t errlen) {
  if (!sd_cfg_is_section(section, strlen(section))) {
    char known[256];
    sd_cfg_section_list(known, sizeof known);
    snprintf(err, errlen, "%s.%s: unknown section '%s' (known: %s)", section, key, section,
             known);
    return -1;
  }
  if (strcmp(section, "model") == 0) return set_model_key(c, key, value, err, errlen);
  const key_desc *k = sd_cfg_find_key(section, key);
  if (k) return set_table_key(c, k, value, err, errlen);
  char known[512] = "";
  for (size_t i = 0; i < sd_cfg_nkeys; i++)
    if (strcmp(sd_cfg_keys[i].section, section) == 0) {
      if (known[0]) sd_cfg_append(known, sizeof known, ", ");
      sd_cfg_append(known, sizeof known, sd_cfg_keys[i].name);
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
