// Header-mutation fuzz test of the safetensors reader (src/ckpt/safetensors*.c), built with
// AddressSanitizer and UBSan where the compiler has them.
//
// Seeds: a file written by sd_st_write_f32 (metadata with escapes and non-ASCII text, a scalar,
// an empty tensor, 1-D to 4-D tensors) and a hand-written header with F16, BF16 and I32
// entries. Each case applies 1 to 4 mutations (bit flips, bytes replaced by JSON's special
// characters, dictionary tokens inserted: escapes, surrogates, huge and malformed numbers,
// deep nesting, duplicate keys, ...; ranges deleted or duplicated; the 8-byte length changed;
// the file truncated), writes the file and opens it. Every case must end in one of two ways:
//   refused: sd_st_open returns -1 with a message that starts with the path, names something
//            (more than the path), fits its buffer and has no "(null)";
//   accepted: every invariant of the API holds (tensor names non-empty and findable, offsets
//            inside the data section and tiling it, bytes = elements x dtype size) and every
//            F32/F16/BF16 tensor reads back.
// Accepted files whose data section is the seed's read back the seed's values for every tensor
// listed as in the seed. Before the random cases, a table of fixed headers pins the verdict and
// the message of each rule (number forms, 2^53, escapes, UTF-8, repeated keys, nesting, the
// end of the header) and the decoding of escapes. A crash or a sanitizer report fails the test
// by itself. Usage:
//   test_safetensors_fuzz [CASES (default 20000)] [SEED (default 1)]
// It prints the number of accepted and refused cases and the commonest refusals.
#include "ckpt/safetensors.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t g_rng;

static uint64_t next_u64(void) {  // xorshift64*
  g_rng ^= g_rng >> 12;
  g_rng ^= g_rng << 25;
  g_rng ^= g_rng >> 27;
  return g_rng * UINT64_C(2685821657736338717);
}

static size_t below(size_t n) { return n ? (size_t)(next_u64() % n) : 0; }

typedef struct bytes {
  unsigned char *p;
  size_t len, cap;
} bytes;

static void reserve(bytes *b, size_t n) {
  if (n <= b->cap) return;
  size_t cap = b->cap ? b->cap : 1024;
  while (cap < n) cap *= 2;
  b->p = realloc(b->p, cap);
  if (!b->p) {
    fprintf(stderr, "test_safetensors_fuzz: out of memory\n");
    exit(1);
  }
  b->cap = cap;
}

static void put(bytes *b, size_t at, const void *src, size_t n) {  // insert n bytes at `at`
  reserve(b, b->len + n);
  memmove(b->p + at + n, b->p + at, b->len - at);
  memcpy(b->p + at, src, n);
  b->len += n;
}

static void cut(bytes *b, size_t at, size_t n) {
  if (at + n > b->len) n = b->len - at;
  memmove(b->p + at, b->p + at + n, b->len - at - n);
  b->len -= n;
}

static uint64_t get_len(const bytes *f) {
  uint64_t n = 0;
  for (int k = 7; k >= 0; k--) n = (n << 8) | f->p[k];
  return n;
}

static void set_len(bytes *f, uint64_t n) {
  for (int k = 0; k < 8; k++) f->p[k] = (unsigned char)(n >> (8 * k));
}

static int read_file(const char *path, bytes *out) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  unsigned char buf[65536];
  size_t k;
  while ((k = fread(buf, 1, sizeof buf, f)) > 0) put(out, out->len, buf, k);
  fclose(f);
  return 0;
}

static int write_file(const char *path, const bytes *b) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  int ok = fwrite(b->p, 1, b->len, f) == b->len;
  return fclose(f) == 0 && ok ? 0 : -1;
}

// ---- seeds ---------------------------------------------------------------------------------

static int seed_written(const char *dir, bytes *out) {
  static float data[4096];
  for (size_t i = 0; i < sizeof data / sizeof data[0]; i++) data[i] = (float)i * 0.25f - 3.0f;
  sd_st_kv meta[] = {{"format", "pt"},
                     {"config", "[model]\npreset = tiny\n"},
                     {"note", "caf\xc3\xa9 \"q\"\t\\ \xe2\x9c\x93 \xf0\x9f\x98\x80"}};
  sd_st_out t[] = {
      {"pos_embed", 3, {1, 16, 8}, data},
      {"x_embedder.proj.weight", 4, {8, 4, 2, 2}, data},
      {"x_embedder.proj.bias", 1, {8}, data},
      {"scale", 0, {0}, data},
      {"empty", 2, {0, 5}, data},
      {"blocks.0.attn.qkv.weight", 2, {24, 8}, data},
  };
  char path[4200], err[1024];
  snprintf(path, sizeof path, "%s/seed.safetensors", dir);
  if (sd_st_write_f32(path, meta, 3, t, 6, err, sizeof err) != 0) {
    fprintf(stderr, "test_safetensors_fuzz: cannot write the seed: %s\n", err);
    return -1;
  }
  return read_file(path, out);
}

// f = the 8-byte length, json padded with blanks to a multiple of 8, data_len zero bytes.
static void header_file(bytes *f, const char *json, size_t data_len) {
  size_t n = strlen(json), padded = (n + 7) / 8 * 8;
  f->len = 0;
  unsigned char len8[8];
  for (int k = 0; k < 8; k++) len8[k] = (unsigned char)((uint64_t)padded >> (8 * k));
  put(f, 0, len8, 8);
  put(f, f->len, json, n);
  while (f->len < 8 + padded) put(f, f->len, " ", 1);
  for (size_t k = 0; k < data_len; k++) put(f, f->len, "", 1);
}

static void seed_by_hand(bytes *out) {
  header_file(out,
              "{\"__metadata__\":{\"k\":\"v\\u00e9\\ud83d\\ude00\"},"
              "\"h\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,6]},"
              "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,1],\"data_offsets\":[6,10]},"
              "\"i\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[10,14]}}", 0);
  const unsigned char data[14] = {0x00, 0x3c, 0x00, 0xc0, 0x00, 0x7c,  // F16 1, -2, inf
                                  0x80, 0x3f, 0x00, 0x40,              // BF16 1, 2
                                  1, 0, 0, 0};                         // I32 1
  put(out, out->len, data, sizeof data);
}

// ---- mutations -----------------------------------------------------------------------------

static const char *const k_tokens[] = {
    "{", "}", "[", "]", "\"", ":", ",", " ", "\\", "\\u0000", "\\ud800", "\\udc00",
    "\\ud83d\\ude00", "\\u00e9", "\\x", "\\", "\t", "\n", "\x01", "\x7f", "\xc3", "\xff",
    "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc0\xaf", "0", "-0", "-1", "01", "1.", ".5", "1e",
    "1e999", "-1e999", "1.5", "2e3", "9007199254740992", "9007199254740993",
    "18446744073709551615", "18446744073709551616", "99999999999999999999999999", "null",
    "true", "false", "nul", "NaN", "Infinity", "\"__metadata__\"", "\"__metadata__\":{}",
    "\"__metadata__\":[]", "\"dtype\"", "\"shape\"", "\"data_offsets\"", "\"F16\"", "\"BF16\"",
    "\"F32\"", "\"F64\"", "\"I32\"", "\"BOOL\"", "\"F8_E4M3\"", "\"F31\"", "[]", "[0]", "[0,0]",
    "[0,4]", "[4,0]", "[1,1,1,1,1,1,1,1,1]", "{}", "\"\"", "\"x\":1", ",\"x\":1", "\"dtype\":\"F32\",",
    "\"x\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},",
};
#define N_TOKENS (sizeof k_tokens / sizeof k_tokens[0])

static const char k_specials[] = "{}[]\":,\\ \t\n0123456789-+.eEutfn\x00\x1f\x80\xff";

static void mutate_header(bytes *f) {
  size_t hlen = f->len >= 8 ? (size_t)get_len(f) : 0;
  if (hlen > f->len - 8) hlen = f->len - 8;
  size_t lo = 8, hi = 8 + hlen;  // the header bytes [lo, hi)
  size_t at = lo + below(hi - lo + 1);
  switch (below(7)) {
    case 0:  // flip one bit
      if (hi > lo) f->p[lo + below(hi - lo)] ^= (unsigned char)(1u << below(8));
      break;
    case 1:  // replace a byte by a special one
      if (hi > lo) f->p[lo + below(hi - lo)] = (unsigned char)k_specials[below(sizeof k_specials - 1)];
      break;
    case 2: case 3: {  // insert a token
      const char *t = k_tokens[below(N_TOKENS)];
      put(f, at, t, strlen(t));
      hi += strlen(t);
      break;
    }
    case 4: {  // delete a range
      size_t n = 1 + below(below(2) ? 4 : 64);
      if (at + n > hi) n = hi - at;
      cut(f, at, n);
      hi -= n;
      break;
    }
    case 5: {  // duplicate a range of the header elsewhere in it
      if (hi <= lo) break;
      size_t from = lo + below(hi - lo), n = 1 + below(80);
      if (from + n > hi) n = hi - from;
      unsigned char tmp[80];
      memcpy(tmp, f->p + from, n);
      put(f, at, tmp, n);
      hi += n;
      break;
    }
    default: {  // deep nesting
      size_t depth = below(2) ? 40 : 3000;
      char *s = malloc(2 * depth + 1);
      if (!s) exit(1);
      char open = below(2) ? '[' : '{';
      memset(s, open, depth);
      s[depth] = '\0';
      if (open == '[' && below(2)) memset(s + depth, ']', depth), s[2 * depth] = '\0';
      put(f, at, s, strlen(s));
      hi += strlen(s);
      free(s);
      break;
    }
  }
  set_len(f, hi - 8);  // keep the length field true to the header (other mutations break it)
}

static void mutate_file(bytes *f) {
  switch (below(4)) {
    case 0: set_len(f, next_u64() >> below(64)); break;     // any length
    case 1: set_len(f, get_len(f) + below(17) - 8); break;  // a few bytes off
    case 2: if (f->len) f->len = below(f->len); break;      // truncated
    default: {                                              // data bytes added or removed
      if (below(2) && f->len > 8 + get_len(f)) f->len--;
      else put(f, f->len, "\0\0\0\0", 1 + below(4));
    }
  }
}

// ---- checks --------------------------------------------------------------------------------

static int g_failures;

static void fail(long c, const char *what, const bytes *f, const char *path) {
  if (++g_failures > 10) return;
  char keep[4300];
  snprintf(keep, sizeof keep, "%s.case%ld", path, c);
  int kept = rename(path, keep) == 0;
  fprintf(stderr, "FAIL case %ld: %s (%zu-byte file%s%s)\n", c, what, f->len,
          kept ? " kept as " : "", kept ? keep : "");
}

static int check_accepted(const sd_st_file *st, char *why, size_t n) {
  uint64_t data_len = st->file_size - st->data_start, covered = 0;
  if (st->data_start != 8 + st->header_len || st->data_start > st->file_size)
    return snprintf(why, n, "data_start %llu is wrong", (unsigned long long)st->data_start), -1;
  for (int i = 0; i < st->count; i++) {
    const sd_st_tensor *t = &st->tensors[i];
    if (!t->name || !t->name[0]) return snprintf(why, n, "tensor %d has no name", i), -1;
    if (sd_st_find(st, t->name) != i)
      return snprintf(why, n, "tensor '%s' is not found at its index", t->name), -1;
    if (t->dtype >= SD_ST_NUM_DTYPES || t->ndim < 0 || t->ndim > SD_ST_MAX_DIMS)
      return snprintf(why, n, "tensor '%s' has a bad dtype or rank", t->name), -1;
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) numel *= (uint64_t)t->shape[d];
    if (numel != t->numel || t->end - t->begin != numel * sd_st_dtype_size(t->dtype))
      return snprintf(why, n, "tensor '%s': bytes != elements x size", t->name), -1;
    if (t->begin > t->end || t->end > data_len)
      return snprintf(why, n, "tensor '%s' lies outside the data", t->name), -1;
    covered += t->end - t->begin;
    if (t->dtype == SD_ST_F32 || t->dtype == SD_ST_F16 || t->dtype == SD_ST_BF16) {
      float *buf = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
      char err[512];
      int rc = buf ? sd_st_read_f32(st, i, buf, err, sizeof err) : -1;
      free(buf);
      if (rc != 0) return snprintf(why, n, "tensor '%s' does not read back: %s", t->name, err), -1;
    }
  }
  if (covered != data_len)
    return snprintf(why, n, "tensors cover %llu of %llu data bytes", (unsigned long long)covered,
                    (unsigned long long)data_len), -1;
  for (int i = 0; i < st->nmeta; i++)
    if (!st->meta_keys[i] || !st->meta_values[i])
      return snprintf(why, n, "metadata %d is missing", i), -1;
  return 0;
}

// The refusal's kind: its text after the path, up to the first digit, quote or colon.
typedef struct kind {
  char text[48];
  long count;
  char example[160];  // the first message of this kind
} kind;

static void count_kind(kind *kinds, int *nk, int cap, const char *msg) {
  char k[48];
  size_t j = 0;
  for (const char *s = msg; *s && j < sizeof k - 1; s++) {
    if ((*s >= '0' && *s <= '9') || *s == '\'' || *s == '"' || *s == ':' || *s == '(') break;
    k[j++] = *s;
  }
  while (j && k[j - 1] == ' ') j--;
  k[j] = '\0';
  for (int i = 0; i < *nk; i++)
    if (strcmp(kinds[i].text, k) == 0) {
      kinds[i].count++;
      return;
    }
  if (*nk < cap) {
    snprintf(kinds[*nk].text, sizeof kinds[*nk].text, "%s", k);
    snprintf(kinds[*nk].example, sizeof kinds[*nk].example, "%s", msg);
    kinds[(*nk)++].count = 1;
  }
}

static int by_count(const void *a, const void *b) {
  long x = ((const kind *)a)->count, y = ((const kind *)b)->count;
  return (y > x) - (y < x);
}

static int check_accepted(const sd_st_file *st, char *why, size_t n);

// ---- fixed headers: each rule's verdict and message ----------------------------------------

typedef struct fixed_case {
  const char *json;    // the header (padded with blanks to 8 bytes here)
  size_t data_len;     // zero bytes after it
  const char *expect;  // a part of the message, or NULL: accepted
} fixed_case;

#define T8 "\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"
static const fixed_case k_fixed[] = {
    {"{" T8 "}", 8, NULL},
    {"{}", 0, NULL},
    {"{\"t\":{\"dtype\":\"F32\",\"shape\":[0,9007199254740993],\"data_offsets\":[0,0]}}", 0,
     "shape[1] is not a non-negative integer below 2^53"},
    {"{\"t\":{\"dtype\":\"F32\",\"shape\":[9007199254740992],\"data_offsets\":[0,0]}}", 0,
     "shape[0] is not a non-negative integer below 2^53"},
    {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,18446744073709551616]}}", 8,
     "data_offsets are not non-negative integers below 2^53"},
    {"{\"t\":{\"dtype\":\"F32\",\"shape\":[-0],\"data_offsets\":[0,0]}}", 0,
     "the number -0 is not a plain non-negative integer"},
    {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8,
     "the number 2.0 is not a plain non-negative integer"},
    {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8e0]}}", 8,
     "the number 8e0 is not a plain non-negative integer"},
    {"{\"t\":{\"dtype\":\"F32\",\"shape\":[02],\"data_offsets\":[0,8]}}", 8, "leading zero"},
    {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2.],\"data_offsets\":[0,8]}}", 8,
     "expected a digit after '.'"},
    {"{\"t\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
     "key \"dtype\" appears twice in \"t\""},
    {"{" T8 "," T8 "}", 8, "header lists \"t\" twice"},
    {"{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}," T8 "}", 8,
     "key \"k\" appears twice in \"__metadata__\""},
    {"{\"t\\u0000x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
     "\\u0000 (a NUL character) inside a string"},
    {"{\"__metadata__\":{\"k\":\"a\tb\"}," T8 "}", 8,
     "control character 0x09 inside a string"},
    {"{\"t\xff\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
     "invalid UTF-8 inside a string"},
    {"{\"t\xed\xa0\x80\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
     "invalid UTF-8 inside a string"},
    {"{\x01" T8 "}", 8, "control character 0x01 outside a string"},
    {"{" T8, 8, "the header ends inside the JSON"},
    {"{" T8 "}x", 8, "'x' after the JSON object"},
    {"{\"t\\ud800\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
     "header is not valid JSON at byte"},
    {"{\"t\\q\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
     "header is not valid JSON at byte"},
    {"{\"__metadata__\":{\"k\":1}," T8 "}", 8, "__metadata__ key \"k\" is a number, want a string"},
    {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":\"\"}}", 8,
     "unexpected key \"x\""},
};

static void run_fixed(const char *path) {
  bytes f = {0};
  int passed = 0, nfixed = (int)(sizeof k_fixed / sizeof k_fixed[0]);
  for (int i = 0; i < nfixed; i++) {
    const fixed_case *fc = &k_fixed[i];
    header_file(&f, fc->json, fc->data_len);
    write_file(path, &f);
    sd_st_file st;
    char err[1024];
    int rc = sd_st_open(&st, path, err, sizeof err);
    int ok = fc->expect ? rc == -1 && strstr(err, fc->expect) != NULL : rc == 0;
    if (ok) passed++;
    else {
      g_failures++;
      fprintf(stderr, "FAIL fixed case %d: want %s%s%s, got %s\n  header: %.200s\n", i,
              fc->expect ? "a refusal saying \"" : "acceptance", fc->expect ? fc->expect : "",
              fc->expect ? "\"" : "", rc == 0 ? "acceptance" : err, fc->json);
    }
    sd_st_close(&st);
  }
  // nesting: 64 levels pass the lexical pass (and meet the metadata rule), 65 do not
  for (int levels = 62; levels <= 63; levels++) {  // + the top level and __metadata__
    char json[512];
    int k = snprintf(json, sizeof json, "{\"__metadata__\":{\"k\":");
    for (int d = 0; d < levels; d++) json[k++] = '[';
    for (int d = 0; d < levels; d++) json[k++] = ']';
    snprintf(json + k, sizeof json - (size_t)k, "}}");
    header_file(&f, json, 0);
    write_file(path, &f);
    sd_st_file st;
    char err[1024];
    const char *want = levels == 62 ? "__metadata__ key \"k\" is an array"
                                    : "nested deeper than 64 levels";
    if (sd_st_open(&st, path, err, sizeof err) == 0 || !strstr(err, want)) {
      g_failures++;
      fprintf(stderr, "FAIL nesting %d: want \"%s\", got %s\n", levels + 2, want, err);
    } else {
      passed++;
    }
    sd_st_close(&st);
  }
  // escapes decode to the right bytes
  header_file(&f, "{\"__metadata__\":{\"k\\\"\":\"a\\\"b\\\\c\\/\\u00e9\\ud83d\\ude00\\n\\t\"},"
                  "\"t\\u00e9\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
  write_file(path, &f);
  sd_st_file st;
  char err[1024];
  const char *want_value = "a\"b\\c/\xc3\xa9\xf0\x9f\x98\x80\n\t";
  if (sd_st_open(&st, path, err, sizeof err) != 0) {
    g_failures++;
    fprintf(stderr, "FAIL escapes: refused: %s\n", err);
  } else if (st.count != 1 || strcmp(st.tensors[0].name, "t\xc3\xa9") != 0 ||
             !sd_st_meta(&st, "k\"") || strcmp(sd_st_meta(&st, "k\""), want_value) != 0) {
    g_failures++;
    fprintf(stderr, "FAIL escapes: name \"%s\", metadata k\" = \"%s\"\n",
            st.count ? st.tensors[0].name : "(none)",
            sd_st_meta(&st, "k\"") ? sd_st_meta(&st, "k\"") : "(none)");
  } else {
    passed++;
  }
  sd_st_close(&st);
  free(f.p);
  printf("fixed headers: %d of %d as expected\n", passed, nfixed + 3);
}

// ---- the seeds' own values, for accepted files that keep the seed's data -------------------

typedef struct seed_view {
  sd_st_file st;
  float **values;  // per tensor: its values, or NULL (a dtype that does not read as float)
} seed_view;

static int open_seed(seed_view *sv, const char *path, const bytes *seed) {
  char err[1024];
  write_file(path, seed);
  if (sd_st_open(&sv->st, path, err, sizeof err) != 0) {
    fprintf(stderr, "FAIL seed refused: %s\n", err);
    return -1;
  }
  sv->values = calloc((size_t)sv->st.count + 1, sizeof *sv->values);
  for (int i = 0; i < sv->st.count; i++) {
    const sd_st_tensor *t = &sv->st.tensors[i];
    if (t->dtype != SD_ST_F32 && t->dtype != SD_ST_F16 && t->dtype != SD_ST_BF16) continue;
    sv->values[i] = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
    if (sd_st_read_f32(&sv->st, i, sv->values[i], err, sizeof err) != 0) {
      fprintf(stderr, "FAIL seed tensor does not read: %s\n", err);
      return -1;
    }
  }
  char why[512];
  if (check_accepted(&sv->st, why, sizeof why) != 0) {
    fprintf(stderr, "FAIL seed: %s\n", why);
    return -1;
  }
  close(sv->st.fd);  // the values are in memory; the file is rewritten by every case
  sv->st.fd = -1;
  return 0;
}

static void close_seed(seed_view *sv) {
  for (int i = 0; i < sv->st.count; i++) free(sv->values[i]);
  free(sv->values);
  sd_st_close(&sv->st);
}

// For an accepted file whose data section equals the seed's: every tensor listed exactly as in
// the seed (name, dtype, shape, offsets) reads back the seed's values. 0, or -1 with why.
static int check_against_seed(const sd_st_file *st, const bytes *f, const seed_view *sv,
                              const bytes *seed, char *why, size_t n) {
  uint64_t dl = st->file_size - st->data_start, sdl = sv->st.file_size - sv->st.data_start;
  if (dl != sdl || memcmp(f->p + st->data_start, seed->p + sv->st.data_start, (size_t)dl) != 0)
    return 0;  // the data changed: nothing to compare with
  for (int i = 0; i < st->count; i++) {
    const sd_st_tensor *t = &st->tensors[i];
    int j = sd_st_find(&sv->st, t->name);
    if (j < 0 || !sv->values[j]) continue;
    const sd_st_tensor *u = &sv->st.tensors[j];
    if (t->dtype != u->dtype || t->ndim != u->ndim || t->begin != u->begin || t->end != u->end ||
        memcmp(t->shape, u->shape, sizeof(int64_t) * (size_t)t->ndim) != 0)
      continue;
    float *buf = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
    char err[512];
    int rc = sd_st_read_f32(st, i, buf, err, sizeof err);
    int same = rc == 0 && memcmp(buf, sv->values[j], sizeof(float) * (size_t)t->numel) == 0;
    free(buf);
    if (!same) return snprintf(why, n, "tensor '%s' reads back other values than the seed's",
                               t->name), -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  long cases = argc > 1 ? atol(argv[1]) : 20000;
  g_rng = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
  if (g_rng == 0) g_rng = 1;
  // TMPDIR, else memory (/dev/shm: 20,000 small files written and read), else /tmp
  const char *tmp = getenv("TMPDIR");
  if (!tmp || !tmp[0]) tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/sd_st_fuzz.XXXXXX", tmp);
  if (!mkdtemp(dir)) {
    fprintf(stderr, "test_safetensors_fuzz: mkdtemp: %s\n", strerror(errno));
    return 1;
  }
  bytes seeds[2] = {{0}, {0}};
  if (seed_written(dir, &seeds[0]) != 0) return 1;
  seed_by_hand(&seeds[1]);
  char path[4200];
  snprintf(path, sizeof path, "%s/case.safetensors", dir);

  // the fixed headers, then the seeds themselves are accepted and consistent
  run_fixed(path);
  seed_view views[2];
  for (int s = 0; s < 2; s++) {
    memset(&views[s], 0, sizeof views[s]);
    if (open_seed(&views[s], path, &seeds[s]) != 0) return 1;
  }

  long accepted = 0, refused = 0;
  kind kinds[64];
  int nk = 0;
  bytes f = {0};
  size_t plen = strlen(path);
  for (long c = 0; c < cases; c++) {
    int which = (int)below(2);
    const bytes *seed = &seeds[which];
    f.len = 0;
    put(&f, 0, seed->p, seed->len);
    int muts = 1 + (int)below(4);
    for (int m = 0; m < muts; m++) {
      if (below(8) == 0) mutate_file(&f);
      else if (f.len >= 8) mutate_header(&f);
    }
    if (write_file(path, &f) != 0) {
      fprintf(stderr, "test_safetensors_fuzz: cannot write %s: %s\n", path, strerror(errno));
      return 1;
    }
    sd_st_file st;
    char err[1024];
    memset(err, 'x', sizeof err);
    int rc = sd_st_open(&st, path, err, sizeof err);
    char why[600];
    if (rc == 0) {
      accepted++;
      if (check_accepted(&st, why, sizeof why) != 0 ||
          check_against_seed(&st, &f, &views[which], seed, why, sizeof why) != 0)
        fail(c, why, &f, path);
    } else if (rc != -1) {
      snprintf(why, sizeof why, "sd_st_open returned %d", rc);
      fail(c, why, &f, path);
    } else {
      refused++;
      size_t n = strnlen(err, sizeof err);
      if (n == sizeof err) {
        fail(c, "the message is not terminated inside its buffer", &f, path);
      } else if (strncmp(err, path, plen) != 0 || strncmp(err + plen, ": ", 2) != 0 ||
                 n < plen + 8) {
        snprintf(why, sizeof why, "the message does not start with the path and name a "
                 "problem: \"%.300s\"", err);
        fail(c, why, &f, path);
      } else if (strstr(err, "(null)")) {
        snprintf(why, sizeof why, "the message prints a NULL: \"%.300s\"", err);
        fail(c, why, &f, path);
      } else {
        count_kind(kinds, &nk, 64, err + plen + 2);
      }
      if (st.count != 0 || st.tensors || st.fd != -1) fail(c, "a refused file left state", &f, path);
    }
    sd_st_close(&st);
  }
  unlink(path);
  char seedpath[4200];
  snprintf(seedpath, sizeof seedpath, "%s/seed.safetensors", dir);
  unlink(seedpath);
  if (!g_failures) rmdir(dir);

  qsort(kinds, (size_t)nk, sizeof kinds[0], by_count);
  printf("%ld cases: %ld accepted (all invariants hold), %ld refused with a message naming the "
         "file and the problem, %d failures\n", cases, accepted, refused, g_failures);
  printf("commonest refusals (%d kinds):\n", nk);
  for (int i = 0; i < nk && i < 16; i++) {
    printf("  %7ld  e.g. ", kinds[i].count);
    for (const char *e = kinds[i].example; *e; e++)  // the example as printable ASCII
      putchar(*e >= 0x20 && *e < 0x7f ? *e : '?');
    putchar('\n');
  }
  free(f.p);
  free(seeds[0].p);
  free(seeds[1].p);
  close_seed(&views[0]);
  close_seed(&views[1]);
  if (g_failures) {
    printf("FAIL: %d cases failed (the first 10 are listed above and kept in %s)\n", g_failures,
           dir);
    return 1;
  }
  if (accepted == 0 || refused == 0) {
    printf("FAIL: the mutations never %s a file: the test is not exercising the reader\n",
           accepted == 0 ? "kept" : "broke");
    return 1;
  }
  return 0;
}
