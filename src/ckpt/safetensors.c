// The safetensors writer and strict reader (see safetensors.h); the JSON header goes through
// cJSON (safetensors_json.c).
#include "ckpt/safetensors.h"
#include "ckpt/safetensors_json.h"
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

static int parse_metadata(sd_st_file *st, const cJSON *m, char *err, size_t errlen) {
  if (!cJSON_IsObject(m))
    return st_fail(err, errlen, st->path, "__metadata__ is %s, want an object of strings",
                   sd_st_json_type_name(m));
  int n = cJSON_GetArraySize(m);
  st->meta_keys = calloc((size_t)n + 1, sizeof(char *));
  st->meta_values = calloc((size_t)n + 1, sizeof(char *));
  if (!st->meta_keys || !st->meta_values) return st_fail(err, errlen, st->path, "out of memory");
  int i = 0;
  for (const cJSON *v = m->child; v; v = v->next, i++) {
    if (!cJSON_IsString(v))
      return st_fail(err, errlen, st->path, "__metadata__ key \"%.100s\" is %s, want a string",
                     v->string, sd_st_json_type_name(v));
    st->nmeta = i + 1;  // before the copies: sd_st_close frees whichever of them succeeded
    st->meta_keys[i] = strdup(v->string);
    st->meta_values[i] = strdup(v->valuestring);
    if (!st->meta_keys[i] || !st->meta_values[i])
      return st_fail(err, errlen, st->path, "out of memory");
  }
  return 0;
}

// One tensor entry: {"dtype": ..., "shape": [...], "data_offsets": [b, e]}.
static int parse_tensor(sd_st_file *st, const char *name, const cJSON *v, sd_st_tensor *t,
                        char *err, size_t errlen) {
  const char *p = st->path;
  if (!name[0]) return st_fail(err, errlen, p, "a tensor has an empty name");
  if (!cJSON_IsObject(v))
    return st_fail(err, errlen, p, "tensor '%s': entry is %s, want an object with dtype, "
                   "shape and data_offsets", name, sd_st_json_type_name(v));
  const cJSON *dt = NULL, *sh = NULL, *off = NULL;
  for (const cJSON *c = v->child; c; c = c->next) {
    if (strcmp(c->string, "dtype") == 0) dt = c;
    else if (strcmp(c->string, "shape") == 0) sh = c;
    else if (strcmp(c->string, "data_offsets") == 0) off = c;
    else return st_fail(err, errlen, p, "tensor '%s': unexpected key \"%.100s\" (want dtype, "
                        "shape and data_offsets)", name, c->string);
  }
  if (!dt || !sh || !off)
    return st_fail(err, errlen, p, "tensor '%s': no \"%s\"", name,
                   !dt ? "dtype" : !sh ? "shape" : "data_offsets");
  if (!cJSON_IsString(dt))
    return st_fail(err, errlen, p, "tensor '%s': dtype is %s, want a string", name,
                   sd_st_json_type_name(dt));
  t->dtype = SD_ST_NUM_DTYPES;
  for (int k = 0; k < SD_ST_NUM_DTYPES; k++)
    if (strcmp(dt->valuestring, k_dtypes[k].name) == 0) t->dtype = (sd_st_dtype)k;
  if (t->dtype == SD_ST_NUM_DTYPES) {
    char known[160] = "";
    for (int k = 0; k < SD_ST_NUM_DTYPES; k++) {
      strncat(known, k ? ", " : "", sizeof known - strlen(known) - 1);
      strncat(known, k_dtypes[k].name, sizeof known - strlen(known) - 1);
    }
    return st_fail(err, errlen, p, "tensor '%s': unknown dtype \"%.40s\" (safetensors dtypes: "
                   "%s)", name, dt->valuestring, known);
  }
  if (!cJSON_IsArray(sh))
    return st_fail(err, errlen, p, "tensor '%s': shape is %s, want an array of integers", name,
                   sd_st_json_type_name(sh));
  int ndim = cJSON_GetArraySize(sh);
  if (ndim > SD_ST_MAX_DIMS)
    return st_fail(err, errlen, p, "tensor '%s': shape has %d dimensions, at most %d are "
                   "supported", name, ndim, SD_ST_MAX_DIMS);
  t->ndim = ndim;
  uint64_t numel = 1;
  int d = 0;
  for (const cJSON *c = sh->child; c; c = c->next, d++) {
    uint64_t x;
    if (sd_st_json_uint(c, &x) != 0) {
      char num[40];
      if (cJSON_IsNumber(c)) snprintf(num, sizeof num, "%.17g", c->valuedouble);
      return st_fail(err, errlen, p, "tensor '%s': shape[%d] is not a non-negative integer "
                     "below 2^53 (%s)", name, d, cJSON_IsNumber(c) ? num : sd_st_json_type_name(c));
    }
    t->shape[d] = (int64_t)x;
    if (x && numel > UINT64_MAX / x)
      return st_fail(err, errlen, p, "tensor '%s': shape overflows 64 bits", name);
    numel *= x;
  }
  t->numel = numel;
  if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
    return st_fail(err, errlen, p, "tensor '%s': data_offsets is %s, want [begin, end]", name,
                   cJSON_IsArray(off) ? "an array without exactly 2 entries"
                                      : sd_st_json_type_name(off));
  if (sd_st_json_uint(off->child, &t->begin) != 0 ||
      sd_st_json_uint(off->child->next, &t->end) != 0)
    return st_fail(err, errlen, p, "tensor '%s': data_offsets are not non-negative integers "
                   "below 2^53", name);
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
  char msg[512];
  cJSON *root = sd_st_json_parse(hdr, n, msg, sizeof msg);
  if (!root) return st_fail(err, errlen, p, "%s", msg);
  int rc = 0;
  st->tensors = calloc((size_t)cJSON_GetArraySize(root) + 1, sizeof *st->tensors);
  if (!st->tensors) rc = st_fail(err, errlen, p, "out of memory");
  for (const cJSON *v = root->child; v && rc == 0; v = v->next) {
    if (strcmp(v->string, "__metadata__") == 0) {
      rc = parse_metadata(st, v, err, errlen);
    } else {
      rc = parse_tensor(st, v->string, v, &st->tensors[st->count], err, errlen);
      if (rc == 0) st->count++;
    }
  }
  cJSON_Delete(root);
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

// s is valid UTF-8 (cJSON copies bytes above 0x7f as they are).
static int valid_utf8(const char *s) {
  size_t n = strlen(s);
  for (size_t i = 0; i < n;) {
    size_t m = sd_st_utf8_len((const unsigned char *)s + i, n - i);
    if (!m) return 0;
    i += m;
  }
  return 1;
}

// Appends a number written exactly (cJSON's own numbers are doubles printed with %g).
static int add_raw_u64(cJSON *array, unsigned long long v) {
  char text[32];
  snprintf(text, sizeof text, "%llu", v);
  cJSON *item = cJSON_CreateRaw(text);
  if (item && cJSON_AddItemToArray(array, item)) return 0;
  cJSON_Delete(item);
  return -1;
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

// The JSON tree of the header; NULL if out of memory.
static cJSON *header_tree(const sd_st_kv *meta, int nmeta, const sd_st_out *t, int n) {
  cJSON *root = cJSON_CreateObject();
  int ok = root != NULL;
  if (ok && nmeta > 0) {
    cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
    ok = m != NULL;
    for (int i = 0; i < nmeta && ok; i++)
      ok = cJSON_AddStringToObject(m, meta[i].key, meta[i].value ? meta[i].value : "") != NULL;
  }
  uint64_t off = 0;
  for (int i = 0; i < n && ok; i++) {
    cJSON *e = cJSON_AddObjectToObject(root, t[i].name), *shape = NULL, *offsets = NULL;
    ok = e && cJSON_AddStringToObject(e, "dtype", "F32") &&
         (shape = cJSON_AddArrayToObject(e, "shape")) != NULL;
    for (int d = 0; d < t[i].ndim && ok; d++)
      ok = add_raw_u64(shape, (unsigned long long)t[i].shape[d]) == 0;
    uint64_t bytes = 4 * out_numel(&t[i]);
    ok = ok && (offsets = cJSON_AddArrayToObject(e, "data_offsets")) != NULL &&
         add_raw_u64(offsets, (unsigned long long)off) == 0 &&
         add_raw_u64(offsets, (unsigned long long)(off + bytes)) == 0;
    off += bytes;
  }
  if (!ok) {
    cJSON_Delete(root);
    return NULL;
  }
  return root;
}

// The header JSON padded with spaces to a multiple of 8 bytes (*out, malloc'ed; *len bytes).
// 0, or -1 with a message.
static int build_header(const char *path, const sd_st_kv *meta, int nmeta, const sd_st_out *t,
                        int n, char **out, size_t *len, char *err, size_t errlen) {
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
    if (!valid_utf8(t[i].name))
      return st_fail(err, errlen, path, "tensor name '%s' is not valid UTF-8", t[i].name);
  }
  for (int i = 0; i < nmeta; i++) {
    for (int j = 0; j < i; j++)
      if (strcmp(meta[i].key, meta[j].key) == 0)
        return st_fail(err, errlen, path, "metadata key '%s' is given twice", meta[i].key);
    if (!valid_utf8(meta[i].key))
      return st_fail(err, errlen, path, "metadata key is not valid UTF-8");
    if (meta[i].value && !valid_utf8(meta[i].value))
      return st_fail(err, errlen, path, "metadata '%s' is not valid UTF-8", meta[i].key);
  }
  cJSON *root = header_tree(meta, nmeta, t, n);
  char *json = root ? cJSON_PrintUnformatted(root) : NULL;
  cJSON_Delete(root);
  if (!json) return st_fail(err, errlen, path, "out of memory building the header");
  size_t k = strlen(json), padded = (k + 7) / 8 * 8;
  *out = malloc(padded);
  if (*out) {
    memcpy(*out, json, k);
    memset(*out + k, ' ', padded - k);
    *len = padded;
  }
  cJSON_free(json);
  if (!*out) return st_fail(err, errlen, path, "out of memory building the header");
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
  char *hdr = NULL;
  size_t hdr_len = 0;
  if (build_header(path, meta, nmeta, t, n, &hdr, &hdr_len, err, errlen) != 0) return -1;
  size_t plen = strlen(path);
  char *tmp = malloc(plen + 5);
  if (!tmp) {
    free(hdr);
    return st_fail(err, errlen, path, "out of memory");
  }
  snprintf(tmp, plen + 5, "%s.tmp", path);
  int rc = 0;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) {
    rc = st_fail(err, errlen, tmp, "cannot create: %s", strerror(errno));
  } else {
    unsigned char len8[8];
    for (int k = 0; k < 8; k++) len8[k] = (unsigned char)((uint64_t)hdr_len >> (8 * k));
    if (write_all(fd, len8, 8) != 0 || write_all(fd, hdr, hdr_len) != 0)
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
  free(hdr);
  return rc;
}
