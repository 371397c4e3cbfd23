// The safetensors JSON header through cJSON, made strict (see safetensors_json.h).
#include "ckpt/safetensors_json.h"
#include "error.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t sd_st_utf8_len(const unsigned char *p, size_t avail) {
  unsigned c = p[0];
  if (c < 0x80) return 1;
  size_t n;
  unsigned cp, min;
  if ((c & 0xe0) == 0xc0) n = 2, cp = c & 0x1f, min = 0x80;
  else if ((c & 0xf0) == 0xe0) n = 3, cp = c & 0x0f, min = 0x800;
  else if ((c & 0xf8) == 0xf0) n = 4, cp = c & 0x07, min = 0x10000;
  else return 0;
  if (n > avail) return 0;
  for (size_t i = 1; i < n; i++) {
    if ((p[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (p[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

static const char *char_name(char c, char *buf, size_t len) {
  if (c >= 0x21 && c < 0x7f) snprintf(buf, len, "'%c'", c);
  else if (c == ' ') snprintf(buf, len, "a blank");
  else snprintf(buf, len, "byte 0x%02x", (unsigned char)c);
  return buf;
}

// ---- the lexical pass: what RFC 8259 forbids and cJSON accepts ----------------------------

typedef struct lex_error {
  int set;
  size_t pos;
  char what[160];
} lex_error;

static int lex_fail(lex_error *e, size_t pos, const char *fmt, ...) SD_PRINTF(3, 4);
static int lex_fail(lex_error *e, size_t pos, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->what, sizeof e->what, fmt, ap);
  va_end(ap);
  e->pos = pos;
  e->set = 1;
  return -1;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static void skip_digits(const char *p, size_t n, size_t *i) {
  while (*i < n && is_digit(p[*i])) (*i)++;
}

// The number token at *i (a '-' or a digit) against -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
// (cJSON hands anything made of digits, signs, '.', 'e' to strtod: 01, 1. and 1.e5 pass there).
static int lex_number(const char *p, size_t n, size_t *i, lex_error *e) {
  size_t s = *i;
  if (p[*i] == '-') (*i)++;
  if (*i < n && p[*i] == '0') {
    (*i)++;
    if (*i < n && is_digit(p[*i])) return lex_fail(e, s, "malformed number (leading zero)");
  } else if (*i < n && is_digit(p[*i])) {
    skip_digits(p, n, i);
  } else {
    return lex_fail(e, s, "malformed number (expected a digit after '-')");
  }
  if (*i < n && p[*i] == '.') {
    (*i)++;
    if (*i >= n || !is_digit(p[*i]))
      return lex_fail(e, s, "malformed number (expected a digit after '.')");
    skip_digits(p, n, i);
  }
  if (*i < n && (p[*i] == 'e' || p[*i] == 'E')) {
    (*i)++;
    if (*i < n && (p[*i] == '+' || p[*i] == '-')) (*i)++;
    if (*i >= n || !is_digit(p[*i]))
      return lex_fail(e, s, "malformed number (expected a digit in the exponent)");
    skip_digits(p, n, i);
  }
  for (size_t k = s; k < *i; k++)
    if (!is_digit(p[k]))
      return lex_fail(e, s, "the number %.*s is not a plain non-negative integer (a safetensors "
                      "header's numbers are shapes and data offsets)", (int)(*i - s < 40 ? *i - s : 40),
                      p + s);
  return 0;
}

// The string at *i (its opening quote): no raw control character, valid UTF-8, no \u0000
// (cJSON would cut the string there). Escapes themselves are cJSON's to check.
static int lex_string(const char *p, size_t n, size_t *i, lex_error *e) {
  size_t s = (*i)++;
  while (*i < n) {
    unsigned char c = (unsigned char)p[*i];
    if (c == '"') {
      (*i)++;
      return 0;
    }
    if (c < 0x20)
      return lex_fail(e, *i, "control character 0x%02x inside a string (must be escaped)", c);
    if (c >= 0x80) {
      size_t m = sd_st_utf8_len((const unsigned char *)p + *i, n - *i);
      if (!m) return lex_fail(e, *i, "invalid UTF-8 inside a string");
      *i += m;
      continue;
    }
    if (c == '\\') {
      if (n - *i >= 6 && memcmp(p + *i + 1, "u0000", 5) == 0)
        return lex_fail(e, *i, "\\u0000 (a NUL character) inside a string");
      *i += *i + 1 < n ? 2 : 1;
      continue;
    }
    (*i)++;
  }
  return lex_fail(e, s, "string is not closed (no '\"' before the end)");
}

#define MAX_DEPTH 64  // a safetensors header nests 3 deep; cJSON's own limit is 1000

// Outside strings only JSON's blanks may separate tokens (cJSON skips every byte up to 0x20).
static int lex_check(const char *p, size_t n, lex_error *e) {
  int depth = 0;
  for (size_t i = 0; i < n;) {
    char c = p[i];
    if (c == '{' || c == '[') {
      if (++depth > MAX_DEPTH) return lex_fail(e, i, "nested deeper than %d levels", MAX_DEPTH);
      i++;
    } else if (c == '}' || c == ']') {
      depth--;
      i++;
    } else if (c == '"') {
      if (lex_string(p, n, &i, e) != 0) return -1;
    } else if (c == '-' || is_digit(c)) {
      if (lex_number(p, n, &i, e) != 0) return -1;
    } else if ((unsigned char)c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
      return lex_fail(e, i, "control character 0x%02x outside a string",
                      (unsigned)(unsigned char)c);
    } else {
      i++;
    }
  }
  return 0;
}

// ---- repeated keys -------------------------------------------------------------------------

static int name_cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

// The first key that repeats in some object of the tree (sorted per object, so large headers
// stay fast), or NULL; *parent is then the key of the object that holds it (NULL: the top
// level). *oom is set if the check could not allocate.
static const char *repeated_key(const cJSON *v, const char **parent, int *oom) {
  int n = 0;
  for (const cJSON *c = v->child; c; c = c->next) {
    n++;
    if (cJSON_IsObject(c) || cJSON_IsArray(c)) {
      const char *k = repeated_key(c, parent, oom);
      if (k || *oom) return k;
    }
  }
  if (!cJSON_IsObject(v) || n < 2) return NULL;
  const char **names = malloc(sizeof *names * (size_t)n);
  if (!names) {
    *oom = 1;
    return NULL;
  }
  int k = 0;
  for (const cJSON *c = v->child; c; c = c->next) names[k++] = c->string;
  qsort(names, (size_t)n, sizeof *names, name_cmp);
  const char *dup = NULL;
  for (int i = 1; i < n && !dup; i++)
    if (strcmp(names[i - 1], names[i]) == 0) dup = names[i];
  free(names);
  if (dup) *parent = v->string;
  return dup;
}

// ---- parsing -------------------------------------------------------------------------------

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

cJSON *sd_st_json_parse(const char *hdr, size_t n, char *msg, size_t msglen) {
  lex_error lex = {0};
  lex_check(hdr, n, &lex);
  const char *end = NULL;
  // n + 1 bytes: hdr[n] is '\0', which cJSON skips as a blank, so a header that ends too early
  // fails at byte n instead of at its last byte
  cJSON *root = cJSON_ParseWithLengthOpts(hdr, n + 1, &end, 0);
  size_t cj_pos = end && end >= hdr && end <= hdr + n ? (size_t)(end - hdr) : n;
  lex_error err = lex;
  char cn[16];
  if (!root && (!lex.set || cj_pos < lex.pos)) {
    err.set = 1;
    err.pos = cj_pos;
    if (cj_pos < n) snprintf(err.what, sizeof err.what, "unexpected %s",
                             char_name(hdr[cj_pos], cn, sizeof cn));
    else snprintf(err.what, sizeof err.what, "the header ends inside the JSON");
  } else if (root && !err.set) {
    size_t i = cj_pos;
    while (i < n && is_blank(hdr[i])) i++;
    if (i < n) {
      err.set = 1;
      err.pos = i;
      snprintf(err.what, sizeof err.what, "%s after the JSON object (only spaces may pad the "
               "header)", char_name(hdr[i], cn, sizeof cn));
    }
  }
  if (err.set) {
    char before[32];
    size_t k = 0, from = err.pos > 24 ? err.pos - 24 : 0;
    for (size_t i = from; i < err.pos && k < sizeof before - 1; i++)
      before[k++] = hdr[i] >= 0x20 && hdr[i] < 0x7f ? hdr[i] : '?';
    before[k] = '\0';
    snprintf(msg, msglen, "header is not valid JSON at byte %zu of %zu: %s (after \"%s\")",
             err.pos, n, err.what, before);
    cJSON_Delete(root);
    return NULL;
  }
  int oom = 0;
  const char *parent = NULL;
  const char *dup = repeated_key(root, &parent, &oom);
  if (dup || oom) {
    if (oom) snprintf(msg, msglen, "out of memory checking the header's keys");
    else if (!parent) snprintf(msg, msglen, "header lists \"%.100s\" twice", dup);
    else snprintf(msg, msglen, "header is not valid: key \"%.100s\" appears twice in \"%.100s\"",
                  dup, parent);
    cJSON_Delete(root);
    return NULL;
  }
  return root;
}

const char *sd_st_json_type_name(const cJSON *v) {
  if (cJSON_IsNull(v)) return "null";
  if (cJSON_IsBool(v)) return "a boolean";
  if (cJSON_IsNumber(v)) return "a number";
  if (cJSON_IsString(v)) return "a string";
  if (cJSON_IsArray(v)) return "an array";
  return "an object";
}

int sd_st_json_uint(const cJSON *v, uint64_t *out) {
  if (!cJSON_IsNumber(v)) return -1;
  double x = v->valuedouble;
  if (!isfinite(x) || x < 0.0 || x != floor(x) || x >= 9007199254740992.0) return -1;
  *out = (uint64_t)x;
  return 0;
}
