// Internal to config/ (config_*.c): the key table (every key outside sd_dit_config, in print
// order), the section list, and the helpers the configuration's files share.
#ifndef SD_CONFIG_KEYS_H
#define SD_CONFIG_KEYS_H

#include "config/config.h"

#include <stddef.h>

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

// ---- config_keys.c: the tables and their lookups ----

extern const char *const sd_cfg_sections[];  // in print order
extern const size_t sd_cfg_nsections;
// [model] keys that sd_dit_config_set handles (besides preset).
extern const char *const sd_cfg_dit_keys[];
extern const size_t sd_cfg_ndit_keys;
extern const key_desc sd_cfg_keys[];  // in print order
extern const size_t sd_cfg_nkeys;

// The field of c that k describes.
void *sd_cfg_field_of(sd_config *c, const key_desc *k);
const void *sd_cfg_cfield_of(const sd_config *c, const key_desc *k);
// The table's entry for section.name, or NULL.
const key_desc *sd_cfg_find_key(const char *section, const char *name);
// Whether the len bytes at name are a known section's name.
int sd_cfg_is_section(const char *name, size_t len);
int sd_cfg_is_dit_key(const char *name);
// Appends s to buf (size n), truncating.
void sd_cfg_append(char *buf, size_t n, const char *s);
// "model, sddit, ..." into buf (size n).
void sd_cfg_section_list(char *buf, size_t n);

// ---- config_values.c: values and ranges ----

// Shortest "%.Ng" text (6 to 9 digits) that parses back to exactly v.
void sd_cfg_format_float(float v, char *buf, size_t n);
int sd_cfg_in_range(double v, key_range r);
// "must be > 0" and the like.
const char *sd_cfg_range_text(key_range r);
// Why a string value cannot be stored, or NULL if it can (the text may be written to buf).
const char *sd_cfg_string_problem(const key_desc *k, const char *v, char *buf, size_t n);
// Resets the model and its encoder/decoder split to a preset. Returns 0, or -1 if unknown.
int sd_cfg_apply_preset(sd_config *c, const char *name);

#endif
