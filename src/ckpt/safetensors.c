// The safetensors writer and strict reader (see safetensors.h), with a small JSON parser for
// the header.
#include "ckpt/safetensors.h"
#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// ---- dtypes and small helpers --------------------------------------------------------------

static const struct {
  const char *name;
  size_t size;
} k_dtypes[SD_ST_NUM_DTYPES] = {
    [SD_ST_BOOL] = {"BOOL", 1},       [SD_ST_U8] = {"U8", 1},   [SD_ST_I8] = {"I8", 1},
    [SD_ST_F8_E5M2] = {"F8_E5M2", 1}, [SD_ST_F8_E4M3] = {"F8_E4M3", 1},
    [SD_ST_I16] = {"I16", 2},         [SD_ST_U16] = {"U16", 2}, [SD_ST_F16] = {"F16", 2},
    [SD_ST_BF16] = {"BF16", 2},       [SD_ST_I32] = {"I32", 4}, [SD_ST_U32] = {"U32", 4},
    [SD_ST_F32] = {"F32", 4},         [SD_ST_F64] = {"F64", 8}, [SD_ST_I64] = {"I64", 8},
    [SD_ST_U64] = {"U64", 8},
};

const char *sd_st_dtype_name(sd_st_dtype t) {
  return (unsigned)t < SD_ST_NUM_DTYPES ? k_dtypes[t].name : "?";
}

size_t sd_st_dtype_size(sd_st_dtype t) {
  return (unsigned)t < SD_ST_NUM_DTYPES ? k_dtypes[t].size : 0;
}

static int host_is_le(void) {
  const uint16_t one = 1;
  unsigned char b;
  memcpy(&b, &one, 1);
  return b == 1;
}

static void swap_bytes(void *data, size_t n, size_t el) {
  unsigned char *p = data;
  for (size_t i = 0; i < n; i++, p += el)
    for (size_t a = 0, b = el - 1; a < b; a++, b--) {
      unsigned char t = p[a];
      p[a] = p[b];
      p[b] = t;
    }
}

// "<path>: message" into err. Returns -1.
static int st_fail(char *err, size_t errlen, const char *path, const char *fmt, ...)
    SD_PRINTF(4, 5);
static int st_fail(char *err, size_t errlen, const char *path, const char *fmt, ...) {
  if (!err || !errlen) return -1;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(err, errlen, "%s: %s", path, msg);
  return -1;
}

void sd_st_format_shape(const int64_t *shape, int ndim, char *buf, size_t len) {
  size_t k = (size_t)snprintf(buf, len, "(");
  for (int d = 0; d < ndim && k < len; d++)
    k += (size_t)snprintf(buf + k, len - k, d ? ", %lld" : "%lld", (long long)shape[d]);
  if (ndim == 1 && k < len) k += (size_t)snprintf(buf + k, len - k, ",");
  if (k < len) snprintf(buf + k, len - k, ")");
}

// Length of the valid UTF-8 sequence at p (at most avail bytes), or 0 if it is not one
// (overlong forms, surrogates and code points above U+10FFFF are refused).
static size_t utf8_len(const unsigned char *p, size_t avail) {
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

// ---- JSON ----------------------------------------------------------------------------------

typedef enum { J_NULL, J_FALSE, J_TRUE, J_NUM, J_STR, J_ARR, J_OBJ } jtype;

typedef struct jval {
  jtype t;
  size_t pos;          // byte of the header where the value starts
  char *s;             // J_STR: decoded text (NUL-terminated); J_NUM: the number as written
  size_t slen;
  int n;               // J_ARR, J_OBJ: members
  char **keys;         // J_OBJ
  struct jval *items;  // n values
} jval;

typedef struct jparser {
  const char *p;
  size_t len, i;
  int depth;
  int failed;
  size_t err_pos;
  char msg[256];
} jparser;

static int j_fail(jparser *ps, size_t pos, const char *fmt, ...) SD_PRINTF(3, 4);
static int j_fail(jparser *ps, size_t pos, const char *fmt, ...) {
  if (!ps->failed) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->msg, sizeof ps->msg, fmt, ap);
    va_end(ap);
    ps->err_pos = pos;
    ps->failed = 1;
  }
  return -1;
}

static void j_free(jval *v) {
  if (!v) return;
  free(v->s);
  for (int i = 0; i < v->n; i++) {
    if (v->keys) free(v->keys[i]);
    if (v->items) j_free(&v->items[i]);
  }
  free(v->keys);
  free(v->items);
  memset(v, 0, sizeof *v);
}

static int j_is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static void j_skip_ws(jparser *ps) {
  while (ps->i < ps->len && j_is_ws(ps->p[ps->i])) ps->i++;
}

static const char *j_char_name(char c, char *buf, size_t len) {
  if (c >= 0x21 && c < 0x7f) snprintf(buf, len, "'%c'", c);
  else snprintf(buf, len, "byte 0x%02x", (unsigned char)c);
  return buf;
}

static int j_hex4(jparser *ps, size_t at, unsigned *out) {
  if (ps->len - at < 4) return j_fail(ps, at, "\\u escape needs 4 hex digits");
  unsigned v = 0;
  for (int k = 0; k < 4; k++) {
    char c = ps->p[at + k];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return j_fail(ps, at + k, "\\u escape needs 4 hex digits");
    v = v * 16 + (unsigned)d;
  }
  *out = v;
  return 0;
}

// A string starting at the opening quote; decoded into *out (malloc'ed), its length in *n.
static int j_string(jparser *ps, char **out, size_t *n) {
  size_t start = ps->i++;
  // the decoded text is never longer than the source
  size_t end = start + 1;
  while (end < ps->len && ps->p[end] != '"') end += ps->p[end] == '\\' ? 2 : 1;
  if (end >= ps->len) return j_fail(ps, start, "string is not closed (no '\"' before the end)");
  char *buf = malloc(end - start + 1);
  if (!buf) return j_fail(ps, start, "out of memory");
  size_t k = 0;
  while (ps->i < end) {
    unsigned char c = (unsigned char)ps->p[ps->i];
    if (c < 0x20) {
      free(buf);
      return j_fail(ps, ps->i, "control character 0x%02x inside a string (must be escaped)", c);
    }
    if (c >= 0x80) {
      size_t m = utf8_len((const unsigned char *)ps->p + ps->i, end - ps->i);
      if (!m) {
        free(buf);
        return j_fail(ps, ps->i, "invalid UTF-8 inside a string");
      }
      memcpy(buf + k, ps->p + ps->i, m);
      k += m;
      ps->i += m;
      continue;
    }
    if (c != '\\') {
      buf[k++] = (char)c;
      ps->i++;
      continue;
    }
    size_t at = ps->i;
    char e = ps->p[at + 1];
    ps->i += 2;
    switch (e) {
      case '"': buf[k++] = '"'; break;
      case '\\': buf[k++] = '\\'; break;
      case '/': buf[k++] = '/'; break;
      case 'b': buf[k++] = '\b'; break;
      case 'f': buf[k++] = '\f'; break;
      case 'n': buf[k++] = '\n'; break;
      case 'r': buf[k++] = '\r'; break;
      case 't': buf[k++] = '\t'; break;
      case 'u': {
        unsigned cp, lo;
        if (j_hex4(ps, ps->i, &cp) != 0) {
          free(buf);
          return -1;
        }
        ps->i += 4;
        if (cp >= 0xdc00 && cp <= 0xdfff) {
          free(buf);
          return j_fail(ps, at, "\\u%04x is a lone low surrogate", cp);
        }
        if (cp >= 0xd800 && cp <= 0xdbff) {
          if (ps->i + 6 > end || ps->p[ps->i] != '\\' || ps->p[ps->i + 1] != 'u' ||
              j_hex4(ps, ps->i + 2, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff) {
            free(buf);
            return j_fail(ps, at, "\\u%04x is a high surrogate without its low half", cp);
          }
          ps->i += 6;
          cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        }
        // 6 source bytes (12 for a pair) always hold the at most 4 UTF-8 bytes
        if (cp < 0x80) {
          buf[k++] = (char)cp;
        } else if (cp < 0x800) {
          buf[k++] = (char)(0xc0 | (cp >> 6));
          buf[k++] = (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
          buf[k++] = (char)(0xe0 | (cp >> 12));
          buf[k++] = (char)(0x80 | ((cp >> 6) & 0x3f));
          buf[k++] = (char)(0x80 | (cp & 0x3f));
        } else {
          buf[k++] = (char)(0xf0 | (cp >> 18));
          buf[k++] = (char)(0x80 | ((cp >> 12) & 0x3f));
          buf[k++] = (char)(0x80 | ((cp >> 6) & 0x3f));
          buf[k++] = (char)(0x80 | (cp & 0x3f));
        }
        break;
      }
      default:
        free(buf);
        if (e > 0x20 && e < 0x7f) return j_fail(ps, at, "unknown escape '\\%c'", e);
        return j_fail(ps, at, "unknown escape: byte 0x%02x after '\\'", (unsigned char)e);
    }
  }
  ps->i = end + 1;
  buf[k] = '\0';
  *out = buf;
  *n = k;
  return 0;
}

static int j_value(jparser *ps, jval *v);

typedef struct key_ref {
  const char *key;
  int idx;
} key_ref;

static int key_cmp(const void *a, const void *b) {
  const key_ref *x = a, *y = b;
  int c = strcmp(x->key, y->key);
  return c ? c : x->idx - y->idx;
}

// Refuses an object whose keys repeat (sorted, so large headers stay fast).
static int j_check_dups(jparser *ps, const jval *v) {
  if (v->n < 2) return 0;
  key_ref *r = malloc(sizeof *r * (size_t)v->n);
  if (!r) return j_fail(ps, v->pos, "out of memory");
  for (int i = 0; i < v->n; i++) r[i] = (key_ref){v->keys[i], i};
  qsort(r, (size_t)v->n, sizeof *r, key_cmp);
  int rc = 0;
  for (int i = 1; i < v->n && rc == 0; i++)
    if (strcmp(r[i - 1].key, r[i].key) == 0)
      rc = j_fail(ps, v->items[r[i].idx].pos, "key \"%.100s\" appears twice in one object",
                  r[i].key);
  free(r);
  return rc;
}

// Grows the member arrays of an array or object to hold one more.
static int j_grow(jparser *ps, jval *v, int *cap, int with_keys) {
  if (v->n < *cap) return 0;
  int nc = *cap ? 2 * *cap : 8;
  jval *items = realloc(v->items, sizeof *items * (size_t)nc);
  if (!items) return j_fail(ps, ps->i, "out of memory");
  v->items = items;
  if (with_keys) {
    char **keys = realloc(v->keys, sizeof *keys * (size_t)nc);
    if (!keys) return j_fail(ps, ps->i, "out of memory");
    v->keys = keys;
  }
  *cap = nc;
  return 0;
}

static int j_container(jparser *ps, jval *v, int is_obj) {
  char close = is_obj ? '}' : ']';
  char cn[16];
  if (++ps->depth > 32) return j_fail(ps, ps->i, "nested deeper than 32 levels");
  ps->i++;
  int cap = 0;
  j_skip_ws(ps);
  if (ps->i < ps->len && ps->p[ps->i] == close) {
    ps->i++;
    ps->depth--;
    return 0;
  }
  for (;;) {
    j_skip_ws(ps);
    if (j_grow(ps, v, &cap, is_obj) != 0) return -1;
    if (is_obj) {
      if (ps->i >= ps->len) return j_fail(ps, ps->i, "the header ends inside an object");
      if (ps->p[ps->i] != '"')
        return j_fail(ps, ps->i, "expected a key (a string), found %s",
                      j_char_name(ps->p[ps->i], cn, sizeof cn));
      size_t kpos = ps->i, klen;
      char *key;
      if (j_string(ps, &key, &klen) != 0) return -1;
      v->keys[v->n] = key;
      v->items[v->n] = (jval){.t = J_NULL};
      v->n++;  // owned from here, freed with v on failure
      if (strlen(key) != klen) return j_fail(ps, kpos, "key contains a NUL character");
      j_skip_ws(ps);
      if (ps->i >= ps->len || ps->p[ps->i] != ':')
        return j_fail(ps, ps->i, "expected ':' after the key \"%.100s\"", key);
      ps->i++;
      if (j_value(ps, &v->items[v->n - 1]) != 0) return -1;
    } else {
      v->items[v->n] = (jval){.t = J_NULL};
      v->n++;
      if (j_value(ps, &v->items[v->n - 1]) != 0) return -1;
    }
    j_skip_ws(ps);
    if (ps->i >= ps->len)
      return j_fail(ps, ps->i, "the header ends inside an %s", is_obj ? "object" : "array");
    char c = ps->p[ps->i];
    if (c == ',') {
      ps->i++;
      continue;
    }
    if (c == close) {
      ps->i++;
      break;
    }
    return j_fail(ps, ps->i, "expected ',' or '%c', found %s", close,
                  j_char_name(c, cn, sizeof cn));
  }
  ps->depth--;
  return is_obj ? j_check_dups(ps, v) : 0;
}

static int j_digits(jparser *ps) {
  size_t s = ps->i;
  while (ps->i < ps->len && ps->p[ps->i] >= '0' && ps->p[ps->i] <= '9') ps->i++;
  return ps->i > s ? 0 : j_fail(ps, ps->i, "malformed number (expected a digit)");
}

static int j_number(jparser *ps, jval *v) {
  size_t s = ps->i;
  if (ps->p[ps->i] == '-') ps->i++;
  if (ps->i < ps->len && ps->p[ps->i] == '0') {
    ps->i++;
    if (ps->i < ps->len && ps->p[ps->i] >= '0' && ps->p[ps->i] <= '9')
      return j_fail(ps, s, "malformed number (leading zero)");
  } else if (j_digits(ps) != 0) {
    return -1;
  }
  if (ps->i < ps->len && ps->p[ps->i] == '.') {
    ps->i++;
    if (j_digits(ps) != 0) return -1;
  }
  if (ps->i < ps->len && (ps->p[ps->i] == 'e' || ps->p[ps->i] == 'E')) {
    ps->i++;
    if (ps->i < ps->len && (ps->p[ps->i] == '+' || ps->p[ps->i] == '-')) ps->i++;
    if (j_digits(ps) != 0) return -1;
  }
  v->t = J_NUM;
  v->slen = ps->i - s;
  v->s = malloc(v->slen + 1);
  if (!v->s) return j_fail(ps, s, "out of memory");
  memcpy(v->s, ps->p + s, v->slen);
  v->s[v->slen] = '\0';
  return 0;
}

static int j_value(jparser *ps, jval *v) {
  j_skip_ws(ps);
  memset(v, 0, sizeof *v);
  v->pos = ps->i;
  if (ps->i >= ps->len) return j_fail(ps, ps->i, "the header ends where a value should be");
  char c = ps->p[ps->i], cn[16];
  static const struct { const char *word; jtype t; } lits[] = {
      {"null", J_NULL}, {"false", J_FALSE}, {"true", J_TRUE}};
  switch (c) {
    case '{': v->t = J_OBJ; return j_container(ps, v, 1);
    case '[': v->t = J_ARR; return j_container(ps, v, 0);
    case '"': v->t = J_STR; return j_string(ps, &v->s, &v->slen);
    default: break;
  }
  if (c == '-' || (c >= '0' && c <= '9')) return j_number(ps, v);
  for (size_t k = 0; k < sizeof lits / sizeof lits[0]; k++) {
    size_t n = strlen(lits[k].word);
    if (ps->len - ps->i >= n && memcmp(ps->p + ps->i, lits[k].word, n) == 0) {
      v->t = lits[k].t;
      ps->i += n;
      return 0;
    }
  }
  return j_fail(ps, ps->i, "unexpected %s where a value should be", j_char_name(c, cn, sizeof cn));
}

static const char *j_type_name(jtype t) {
  switch (t) {
    case J_NULL: return "null";
    case J_FALSE: case J_TRUE: return "a boolean";
    case J_NUM: return "a number";
    case J_STR: return "a string";
    case J_ARR: return "an array";
    default: return "an object";
  }
}

// A JSON number that must be a non-negative integer below 2^63. 0, or -1.
static int j_uint(const jval *v, uint64_t *out) {
  if (v->t != J_NUM || v->s[0] == '-') return -1;
  uint64_t x = 0;
  for (const char *p = v->s; *p; p++) {
    if (*p < '0' || *p > '9') return -1;  // a fraction or an exponent
    if (x > (UINT64_C(0x7fffffffffffffff) - (uint64_t)(*p - '0')) / 10) return -1;
    x = x * 10 + (uint64_t)(*p - '0');
  }
  *out = x;
  return 0;
}

// ---- reading -------------------------------------------------------------------------------

static int read_full(int fd, void *buf, size_t n, uint64_t off) {
  unsigned char *p = buf;
  while (n) {
    size_t chunk = n < (1u << 30) ? n : (1u << 30);
    ssize_t k = pread(fd, p, chunk, (off_t)off);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) return -1;
    if (k == 0) {
      errno = 0;  // end of file
      return -1;
    }
    p += k;
    off += (uint64_t)k;
    n -= (size_t)k;
  }
  return 0;
}

void sd_st_close(sd_st_file *st) {
  if (!st) return;
  if (st->fd >= 0) close(st->fd);
  for (int i = 0; i < st->count; i++) free(st->tensors[i].name);
  free(st->tensors);
  for (int i = 0; i < st->nmeta; i++) {
    free(st->meta_keys[i]);
    free(st->meta_values[i]);
  }
  free(st->meta_keys);
  free(st->meta_values);
  free(st->path);
  memset(st, 0, sizeof *st);
  st->fd = -1;
}

static int parse_metadata(sd_st_file *st, const jval *m, char *err, size_t errlen) {
  if (m->t != J_OBJ)
    return st_fail(err, errlen, st->path, "__metadata__ is %s, want an object of strings",
                   j_type_name(m->t));
  st->meta_keys = calloc((size_t)m->n + 1, sizeof(char *));
  st->meta_values = calloc((size_t)m->n + 1, sizeof(char *));
  if (!st->meta_keys || !st->meta_values) return st_fail(err, errlen, st->path, "out of memory");
  for (int i = 0; i < m->n; i++) {
    const jval *v = &m->items[i];
    if (v->t != J_STR)
      return st_fail(err, errlen, st->path, "__metadata__ key \"%.100s\" is %s, want a string",
                     m->keys[i], j_type_name(v->t));
    if (strlen(v->s) != v->slen)
      return st_fail(err, errlen, st->path,
                     "__metadata__ value of \"%.100s\" contains a NUL character", m->keys[i]);
    st->meta_keys[i] = strdup(m->keys[i]);
    st->meta_values[i] = strdup(v->s);
    if (!st->meta_keys[i] || !st->meta_values[i])
      return st_fail(err, errlen, st->path, "out of memory");
    st->nmeta = i + 1;
  }
  return 0;
}

// One tensor entry: {"dtype": ..., "shape": [...], "data_offsets": [b, e]}.
static int parse_tensor(sd_st_file *st, const char *name, const jval *v, sd_st_tensor *t,
                        char *err, size_t errlen) {
  const char *p = st->path;
  if (!name[0]) return st_fail(err, errlen, p, "a tensor has an empty name");
  if (v->t != J_OBJ)
    return st_fail(err, errlen, p, "tensor '%s': entry is %s, want an object with dtype, "
                   "shape and data_offsets", name, j_type_name(v->t));
  const jval *dt = NULL, *sh = NULL, *off = NULL;
  for (int i = 0; i < v->n; i++) {
    if (strcmp(v->keys[i], "dtype") == 0) dt = &v->items[i];
    else if (strcmp(v->keys[i], "shape") == 0) sh = &v->items[i];
    else if (strcmp(v->keys[i], "data_offsets") == 0) off = &v->items[i];
    else return st_fail(err, errlen, p, "tensor '%s': unexpected key \"%.100s\" (want dtype, "
                        "shape and data_offsets)", name, v->keys[i]);
  }
  if (!dt || !sh || !off)
    return st_fail(err, errlen, p, "tensor '%s': no \"%s\"", name,
                   !dt ? "dtype" : !sh ? "shape" : "data_offsets");
  if (dt->t != J_STR)
    return st_fail(err, errlen, p, "tensor '%s': dtype is %s, want a string", name,
                   j_type_name(dt->t));
  t->dtype = SD_ST_NUM_DTYPES;
  for (int k = 0; k < SD_ST_NUM_DTYPES; k++)
    if (strcmp(dt->s, k_dtypes[k].name) == 0) t->dtype = (sd_st_dtype)k;
  if (t->dtype == SD_ST_NUM_DTYPES) {
    char known[160] = "";
    for (int k = 0; k < SD_ST_NUM_DTYPES; k++) {
      strncat(known, k ? ", " : "", sizeof known - strlen(known) - 1);
      strncat(known, k_dtypes[k].name, sizeof known - strlen(known) - 1);
    }
    return st_fail(err, errlen, p, "tensor '%s': unknown dtype \"%.40s\" (safetensors dtypes: "
                   "%s)", name, dt->s, known);
  }
  if (sh->t != J_ARR)
    return st_fail(err, errlen, p, "tensor '%s': shape is %s, want an array of integers", name,
                   j_type_name(sh->t));
  if (sh->n > SD_ST_MAX_DIMS)
    return st_fail(err, errlen, p, "tensor '%s': shape has %d dimensions, at most %d are "
                   "supported", name, sh->n, SD_ST_MAX_DIMS);
  t->ndim = sh->n;
  uint64_t numel = 1;
  for (int d = 0; d < sh->n; d++) {
    uint64_t x;
    if (j_uint(&sh->items[d], &x) != 0)
      return st_fail(err, errlen, p, "tensor '%s': shape[%d] is not a non-negative integer "
                     "(%s)", name, d, sh->items[d].t == J_NUM ? sh->items[d].s
                                                              : j_type_name(sh->items[d].t));
    t->shape[d] = (int64_t)x;
    if (x && numel > UINT64_MAX / x)
      return st_fail(err, errlen, p, "tensor '%s': shape overflows 64 bits", name);
    numel *= x;
  }
  t->numel = numel;
  if (off->t != J_ARR || off->n != 2)
    return st_fail(err, errlen, p, "tensor '%s': data_offsets is %s, want [begin, end]", name,
                   off->t == J_ARR ? "an array without exactly 2 entries" : j_type_name(off->t));
  if (j_uint(&off->items[0], &t->begin) != 0 || j_uint(&off->items[1], &t->end) != 0)
    return st_fail(err, errlen, p, "tensor '%s': data_offsets are not non-negative integers",
                   name);
  if (t->end < t->begin)
    return st_fail(err, errlen, p, "tensor '%s': data_offsets [%llu, %llu] end before they "
                   "begin", name, (unsigned long long)t->begin, (unsigned long long)t->end);
  size_t el = k_dtypes[t->dtype].size;
  char shape[160];
  sd_st_format_shape(t->shape, t->ndim, shape, sizeof shape);
  if (numel > UINT64_MAX / el || t->end - t->begin != numel * el)
    return st_fail(err, errlen, p, "tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, "
                   "but dtype %s with shape %s needs %llu", name, (unsigned long long)t->begin,
                   (unsigned long long)t->end, (unsigned long long)(t->end - t->begin),
                   k_dtypes[t->dtype].name, shape,
                   numel > UINT64_MAX / el ? 0ULL : (unsigned long long)(numel * el));
  if ((t->name = strdup(name)) == NULL) return st_fail(err, errlen, p, "out of memory");
  return 0;
}

static int by_offset(const void *a, const void *b) {
  const sd_st_tensor *x = *(const sd_st_tensor *const *)a, *y = *(const sd_st_tensor *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

// The tensors tile [0, data_len) exactly.
static int check_tiling(sd_st_file *st, uint64_t data_len, char *err, size_t errlen) {
  const char *p = st->path;
  if (st->count == 0) {
    if (data_len)
      return st_fail(err, errlen, p, "%llu data bytes follow a header that lists no tensor",
                     (unsigned long long)data_len);
    return 0;
  }
  sd_st_tensor **order = malloc(sizeof *order * (size_t)st->count);
  if (!order) return st_fail(err, errlen, p, "out of memory");
  for (int i = 0; i < st->count; i++) order[i] = &st->tensors[i];
  qsort(order, (size_t)st->count, sizeof *order, by_offset);
  uint64_t at = 0;
  const sd_st_tensor *prev = NULL;
  int rc = 0;
  for (int i = 0; i < st->count && rc == 0; i++) {
    const sd_st_tensor *t = order[i];
    if (t->begin > at)
      rc = st_fail(err, errlen, p, "data bytes [%llu, %llu) belong to no tensor (a gap before "
                   "tensor '%s'; tensors must be contiguous)", (unsigned long long)at,
                   (unsigned long long)t->begin, t->name);
    else if (t->begin < at)
      rc = st_fail(err, errlen, p, "tensor '%s' [%llu, %llu) overlaps tensor '%s' [%llu, %llu)",
                   t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                   prev->name, (unsigned long long)prev->begin, (unsigned long long)prev->end);
    else if (t->end > data_len)
      rc = st_fail(err, errlen, p, "tensor '%s' data [%llu, %llu) runs past the end of the file: "
                   "the data section holds only %llu bytes (the file is truncated?)", t->name,
                   (unsigned long long)t->begin, (unsigned long long)t->end,
                   (unsigned long long)data_len);
    at = t->end;
    prev = t;
  }
  if (rc == 0 && at != data_len)
    rc = st_fail(err, errlen, p, "%llu bytes follow the last tensor's data (the tensors cover "
                 "%llu of the %llu data bytes)", (unsigned long long)(data_len - at),
                 (unsigned long long)at, (unsigned long long)data_len);
  free(order);
  return rc;
}

static int parse_header(sd_st_file *st, const char *hdr, size_t n, char *err, size_t errlen) {
  const char *p = st->path;
  if (hdr[0] != '{')
    return st_fail(err, errlen, p, "header does not start with '{' (not a safetensors file?)");
  jparser ps = {.p = hdr, .len = n};
  jval root;
  int rc = j_value(&ps, &root);
  if (rc == 0) {
    j_skip_ws(&ps);
    if (ps.i < n) {
      char cn[16];
      j_fail(&ps, ps.i, "%s after the JSON object (only spaces may pad the header)",
             j_char_name(hdr[ps.i], cn, sizeof cn));
      rc = -1;
    }
  }
  if (rc != 0) {
    char ctx[64];
    size_t k = 0, from = ps.err_pos > 20 ? ps.err_pos - 20 : 0;
    for (size_t i = from; i < n && i < ps.err_pos + 20 && k < sizeof ctx - 1; i++)
      ctx[k++] = hdr[i] >= 0x20 && hdr[i] < 0x7f ? hdr[i] : '?';
    ctx[k] = '\0';
    st_fail(err, errlen, p, "header is not valid JSON at byte %zu of %zu: %s (near \"%s\")",
            ps.err_pos, n, ps.msg, ctx);
    j_free(&root);
    return -1;
  }
  st->tensors = calloc((size_t)root.n + 1, sizeof *st->tensors);
  if (!st->tensors) rc = st_fail(err, errlen, p, "out of memory");
  for (int i = 0; i < root.n && rc == 0; i++) {
    if (strcmp(root.keys[i], "__metadata__") == 0) {
      rc = parse_metadata(st, &root.items[i], err, errlen);
    } else {
      rc = parse_tensor(st, root.keys[i], &root.items[i], &st->tensors[st->count], err, errlen);
      if (rc == 0) st->count++;
    }
  }
  j_free(&root);
  return rc;
}

static int open_checked(sd_st_file *st, const char *path, char *err, size_t errlen) {
  st->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (st->fd < 0) return st_fail(err, errlen, path, "cannot open: %s", strerror(errno));
  struct stat sb;
  if (fstat(st->fd, &sb) != 0)
    return st_fail(err, errlen, path, "cannot stat: %s", strerror(errno));
  if (S_ISDIR(sb.st_mode)) return st_fail(err, errlen, path, "is a directory, not a file");
  st->file_size = (uint64_t)sb.st_size;
  if (st->file_size < 8)
    return st_fail(err, errlen, path, "is %llu bytes long, too short for a safetensors file "
                   "(it starts with an 8-byte header length)", (unsigned long long)st->file_size);
  unsigned char len8[8];
  if (read_full(st->fd, len8, 8, 0) != 0)
    return st_fail(err, errlen, path, "cannot read the header length: %s",
                   errno ? strerror(errno) : "end of file");
  uint64_t n = 0;
  for (int k = 7; k >= 0; k--) n = (n << 8) | len8[k];
  st->header_len = n;
  st->data_start = 8 + n;
  if (n == 0) return st_fail(err, errlen, path, "header length is 0 (not a safetensors file?)");
  if (n > st->file_size - 8)
    return st_fail(err, errlen, path, "header length %llu exceeds the file: only %llu bytes "
                   "follow the 8-byte length (truncated, or not a safetensors file)",
                   (unsigned long long)n, (unsigned long long)(st->file_size - 8));
  if (n > SD_ST_MAX_HEADER)
    return st_fail(err, errlen, path, "header length %llu is over the %u-byte limit",
                   (unsigned long long)n, SD_ST_MAX_HEADER);
  char *hdr = malloc((size_t)n + 1);
  if (!hdr) return st_fail(err, errlen, path, "out of memory for a %llu-byte header",
                           (unsigned long long)n);
  int rc = 0;
  if (read_full(st->fd, hdr, (size_t)n, 8) != 0)
    rc = st_fail(err, errlen, path, "cannot read the header: %s",
                 errno ? strerror(errno) : "end of file");
  if (rc == 0) {
    hdr[n] = '\0';
    rc = parse_header(st, hdr, (size_t)n, err, errlen);
  }
  free(hdr);
  if (rc == 0) rc = check_tiling(st, st->file_size - st->data_start, err, errlen);
  return rc;
}

int sd_st_open(sd_st_file *st, const char *path, char *err, size_t errlen) {
  memset(st, 0, sizeof *st);
  st->fd = -1;
  if (err && errlen) err[0] = '\0';
  st->path = strdup(path);
  if (!st->path) return st_fail(err, errlen, path, "out of memory");
  if (open_checked(st, path, err, errlen) != 0) {
    sd_st_close(st);
    return -1;
  }
  return 0;
}

int sd_st_find(const sd_st_file *st, const char *name) {
  for (int i = 0; i < st->count; i++)
    if (strcmp(st->tensors[i].name, name) == 0) return i;
  return -1;
}

const char *sd_st_meta(const sd_st_file *st, const char *key) {
  for (int i = 0; i < st->nmeta; i++)
    if (strcmp(st->meta_keys[i], key) == 0) return st->meta_values[i];
  return NULL;
}

static float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, bits;
  if (e == 0 && m == 0) {
    bits = sign;
  } else if (e == 0) {  // subnormal: normalise
    int s = -1;
    do {
      s++;
      m <<= 1;
    } while (!(m & 0x400));
    bits = sign | ((uint32_t)(127 - 15 - s) << 23) | ((m & 0x3ff) << 13);
  } else if (e == 31) {
    bits = sign | 0x7f800000u | (m << 13);
  } else {
    bits = sign | ((e + 127 - 15) << 23) | (m << 13);
  }
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

int sd_st_read_f32(const sd_st_file *st, int i, float *dst, char *err, size_t errlen) {
  if (i < 0 || i >= st->count) return st_fail(err, errlen, st->path, "no tensor number %d", i);
  const sd_st_tensor *t = &st->tensors[i];
  if (t->dtype != SD_ST_F32 && t->dtype != SD_ST_F16 && t->dtype != SD_ST_BF16)
    return st_fail(err, errlen, st->path, "tensor '%s' has dtype %s; only F32, F16 and BF16 "
                   "can be read", t->name, sd_st_dtype_name(t->dtype));
  uint64_t off = st->data_start + t->begin;
  if (t->dtype == SD_ST_F32) {
    if (read_full(st->fd, dst, (size_t)(t->end - t->begin), off) != 0)
      return st_fail(err, errlen, st->path, "cannot read tensor '%s': %s", t->name,
                     errno ? strerror(errno) : "unexpected end of file");
    if (!host_is_le()) swap_bytes(dst, (size_t)t->numel, 4);
    return 0;
  }
  const size_t chunk = 1u << 20;
  uint16_t *buf = malloc(sizeof(uint16_t) * chunk);
  if (!buf) return st_fail(err, errlen, st->path, "out of memory reading tensor '%s'", t->name);
  int rc = 0;
  for (uint64_t done = 0; done < t->numel && rc == 0;) {
    size_t n = t->numel - done < chunk ? (size_t)(t->numel - done) : chunk;
    if (read_full(st->fd, buf, 2 * n, off + 2 * done) != 0) {
      rc = st_fail(err, errlen, st->path, "cannot read tensor '%s': %s", t->name,
                   errno ? strerror(errno) : "unexpected end of file");
      break;
    }
    if (!host_is_le()) swap_bytes(buf, n, 2);
    for (size_t k = 0; k < n; k++) {
      if (t->dtype == SD_ST_F16) {
        dst[done + k] = f16_to_f32(buf[k]);
      } else {
        uint32_t bits = (uint32_t)buf[k] << 16;
        memcpy(&dst[done + k], &bits, sizeof(float));
      }
    }
    done += n;
  }
  free(buf);
  return rc;
}

// ---- writing -------------------------------------------------------------------------------

typedef struct sbuf {
  char *p;
  size_t len, cap;
  int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) SD_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...) {
  char tmp[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  sb_add(b, tmp, n < 0 ? 0 : (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

// A JSON string literal. -1 if s is not valid UTF-8.
static int sb_json_str(sbuf *b, const char *s) {
  const unsigned char *u = (const unsigned char *)s;
  size_t n = strlen(s);
  sb_add(b, "\"", 1);
  for (size_t i = 0; i < n;) {
    unsigned char c = u[i];
    if (c >= 0x80) {
      size_t m = utf8_len(u + i, n - i);
      if (!m) return -1;
      sb_add(b, s + i, m);
      i += m;
      continue;
    }
    if (c == '"') sb_str(b, "\\\"");
    else if (c == '\\') sb_str(b, "\\\\");
    else if (c == '\n') sb_str(b, "\\n");
    else if (c == '\t') sb_str(b, "\\t");
    else if (c == '\r') sb_str(b, "\\r");
    else if (c < 0x20) sb_printf(b, "\\u%04x", c);
    else sb_add(b, s + i, 1);
    i++;
  }
  sb_add(b, "\"", 1);
  return 0;
}

static int write_all(int fd, const void *data, size_t n) {
  const unsigned char *p = data;
  while (n) {
    size_t chunk = n < (1u << 30) ? n : (1u << 30);
    ssize_t k = write(fd, p, chunk);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) return -1;
    if (k == 0) {
      errno = EIO;
      return -1;
    }
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

static uint64_t out_numel(const sd_st_out *t) {
  uint64_t n = 1;
  for (int d = 0; d < t->ndim; d++) n *= (uint64_t)t->shape[d];
  return n;
}

// The padded header JSON. 0, or -1 with a message.
static int build_header(const char *path, const sd_st_kv *meta, int nmeta, const sd_st_out *t,
                        int n, sbuf *b, char *err, size_t errlen) {
  for (int i = 0; i < n; i++) {
    if (!t[i].name || !t[i].name[0] || strcmp(t[i].name, "__metadata__") == 0)
      return st_fail(err, errlen, path, "tensor %d has no usable name", i);
    if (t[i].ndim < 0 || t[i].ndim > SD_ST_MAX_DIMS)
      return st_fail(err, errlen, path, "tensor '%s' has %d dimensions", t[i].name, t[i].ndim);
    for (int d = 0; d < t[i].ndim; d++)
      if (t[i].shape[d] < 0)
        return st_fail(err, errlen, path, "tensor '%s' has a negative dimension", t[i].name);
    for (int j = 0; j < i; j++)
      if (strcmp(t[i].name, t[j].name) == 0)
        return st_fail(err, errlen, path, "tensor name '%s' is given twice", t[i].name);
  }
  for (int i = 0; i < nmeta; i++)
    for (int j = 0; j < i; j++)
      if (strcmp(meta[i].key, meta[j].key) == 0)
        return st_fail(err, errlen, path, "metadata key '%s' is given twice", meta[i].key);
  sb_str(b, "{");
  if (nmeta > 0) {
    sb_str(b, "\"__metadata__\":{");
    for (int i = 0; i < nmeta; i++) {
      if (i) sb_str(b, ",");
      if (sb_json_str(b, meta[i].key) != 0)
        return st_fail(err, errlen, path, "metadata key is not valid UTF-8");
      sb_str(b, ":");
      if (sb_json_str(b, meta[i].value ? meta[i].value : "") != 0)
        return st_fail(err, errlen, path, "metadata '%s' is not valid UTF-8", meta[i].key);
    }
    sb_str(b, "}");
  }
  uint64_t off = 0;
  for (int i = 0; i < n; i++) {
    if (nmeta > 0 || i) sb_str(b, ",");
    if (sb_json_str(b, t[i].name) != 0)
      return st_fail(err, errlen, path, "tensor name '%s' is not valid UTF-8", t[i].name);
    sb_str(b, ":{\"dtype\":\"F32\",\"shape\":[");
    for (int d = 0; d < t[i].ndim; d++)
      sb_printf(b, d ? ",%lld" : "%lld", (long long)t[i].shape[d]);
    uint64_t bytes = 4 * out_numel(&t[i]);
    sb_printf(b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
              (unsigned long long)(off + bytes));
    off += bytes;
  }
  sb_str(b, "}");
  while (b->len % 8) sb_str(b, " ");
  if (b->oom) return st_fail(err, errlen, path, "out of memory building the header");
  return 0;
}

static int fsync_parent(const char *path) {
  char dir[4096];
  const char *slash = strrchr(path, '/');
  if (!slash) snprintf(dir, sizeof dir, ".");
  else if (slash == path) snprintf(dir, sizeof dir, "/");
  else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  int rc = fsync(fd);
  close(fd);
  return rc;
}

int sd_st_write_f32(const char *path, const sd_st_kv *meta, int nmeta, const sd_st_out *t,
                    int n, char *err, size_t errlen) {
  if (err && errlen) err[0] = '\0';
  sbuf b = {0};
  if (build_header(path, meta, nmeta, t, n, &b, err, errlen) != 0) {
    free(b.p);
    return -1;
  }
  size_t plen = strlen(path);
  char *tmp = malloc(plen + 5);
  if (!tmp) {
    free(b.p);
    return st_fail(err, errlen, path, "out of memory");
  }
  snprintf(tmp, plen + 5, "%s.tmp", path);
  int rc = 0;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) {
    rc = st_fail(err, errlen, tmp, "cannot create: %s", strerror(errno));
  } else {
    unsigned char len8[8];
    for (int k = 0; k < 8; k++) len8[k] = (unsigned char)((uint64_t)b.len >> (8 * k));
    if (write_all(fd, len8, 8) != 0 || write_all(fd, b.p, b.len) != 0)
      rc = st_fail(err, errlen, tmp, "write failed: %s", strerror(errno));
    float *swap = NULL;
    const size_t chunk = 1u << 20;
    if (rc == 0 && !host_is_le() && (swap = malloc(sizeof(float) * chunk)) == NULL)
      rc = st_fail(err, errlen, tmp, "out of memory");
    for (int i = 0; i < n && rc == 0; i++) {
      uint64_t numel = out_numel(&t[i]);
      if (numel == 0) continue;
      if (!swap) {
        if (write_all(fd, t[i].data, (size_t)(4 * numel)) != 0)
          rc = st_fail(err, errlen, tmp, "write failed at tensor '%s': %s", t[i].name,
                       strerror(errno));
        continue;
      }
      for (uint64_t done = 0; done < numel && rc == 0; done += chunk) {
        size_t k = numel - done < chunk ? (size_t)(numel - done) : chunk;
        memcpy(swap, t[i].data + done, 4 * k);
        swap_bytes(swap, k, 4);
        if (write_all(fd, swap, 4 * k) != 0)
          rc = st_fail(err, errlen, tmp, "write failed at tensor '%s': %s", t[i].name,
                       strerror(errno));
      }
    }
    free(swap);
    if (rc == 0 && fsync(fd) != 0)
      rc = st_fail(err, errlen, tmp, "fsync failed: %s", strerror(errno));
    if (close(fd) != 0 && rc == 0)
      rc = st_fail(err, errlen, tmp, "close failed: %s", strerror(errno));
    if (rc == 0 && rename(tmp, path) != 0)
      rc = st_fail(err, errlen, path, "cannot rename %s to it: %s", tmp, strerror(errno));
    if (rc != 0) unlink(tmp);
    else if (fsync_parent(path) != 0)
      rc = st_fail(err, errlen, path, "written, but its directory cannot be fsynced: %s",
                   strerror(errno));
  }
  free(tmp);
  free(b.p);
  return rc;
}
