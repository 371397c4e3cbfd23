// Reading checkpoints: sd_ckpt_verify (format, version, every dataset's type, shape and
// checksum), sd_ckpt_load (verify, check the model fits, copy the families in) and
// sd_ckpt_print_summary. Datasets are read in slabs, so checking needs little memory.
#include "ckpt/ckpt.h"
#include "ckpt/ckpt_layout.h"
#include "ckpt/ckpt_msg.h"
#include "error.h"
#include "util/h5io.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SLAB_BYTES (16u << 20) // datasets are read in slabs of about this size

// ---- the file and its header ---------------------------------------------------------------

typedef struct reader {
  const char *path;
  hid_t file;
  char *err;
  size_t errlen;
  FILE *out;     // summary printing, or NULL
  int failed;
} reader;

// Records "<path>: message" (the first problem only). Returns -1.
static int r_fail(reader *r, const char *fmt, ...) SD_PRINTF(2, 3);
static int r_fail(reader *r, const char *fmt, ...) {
  if (!r->failed && r->err && r->errlen) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(r->err, r->errlen, "%s: %s", r->path, msg);
  }
  r->failed = 1;
  return -1;
}

typedef struct ckpt_header {
  long long version;
  sd_ckpt_info info;   // config_text malloc'ed
  char *git_rev;       // malloc'ed, whole (info.git_rev holds as much as fits)
  unsigned long long total, dit_total, head_total, prototypes;
} ckpt_header;

// Opens r->path read-only into r->file.
static int open_file(reader *r) {
  struct stat st;
  if (stat(r->path, &st) != 0) return r_fail(r, "cannot open: %s", strerror(errno));
  if (S_ISDIR(st.st_mode)) return r_fail(r, "is a directory, not a checkpoint file");
  errno = 0;
  htri_t is = H5Fis_hdf5(r->path);
  if (is <= 0) {
    char reason[256];
    sd_ckpt_h5_reason(reason, sizeof reason, errno);
    return r_fail(r, "is truncated or not an HDF5 file (%s)",
                  is == 0 ? "no HDF5 signature" : reason);
  }
  errno = 0;
  r->file = H5Fopen(r->path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (r->file < 0) {
    char reason[256];
    sd_ckpt_h5_reason(reason, sizeof reason, errno);
    return r_fail(r, "is truncated or not an HDF5 file (%s)", reason);
  }
  return 0;
}

static int read_header(reader *r, ckpt_header *h) {
  memset(h, 0, sizeof *h);
  char *format = sd_h5_attr_string_dup(r->file, "format");
  if (!format) return r_fail(r, "not an SD-DiT checkpoint (no 'format' attribute)");
  int is_ckpt = strcmp(format, SD_CKPT_FORMAT) == 0;
  if (!is_ckpt) r_fail(r, "not an SD-DiT checkpoint (format is '%s', want '%s')", format,
                       SD_CKPT_FORMAT);
  free(format);
  if (!is_ckpt) return -1;
  if (sd_h5_attr_num(r->file, "format_version", H5T_NATIVE_LLONG, &h->version) != 0)
    return r_fail(r, "attribute 'format_version' is missing or not a number");
  if (h->version != SD_CKPT_FORMAT_VERSION)
    return r_fail(r, "checkpoint format_version %lld is not supported (this build reads %d)",
                  h->version, SD_CKPT_FORMAT_VERSION);
  long long step, cursor, world;
  struct { const char *name; hid_t type; void *v; } nums[] = {
      {"step", H5T_NATIVE_LLONG, &step},
      {"seed", H5T_NATIVE_ULLONG, &h->info.seed},
      {"data_cursor", H5T_NATIVE_LLONG, &cursor},
      {"world_size", H5T_NATIVE_LLONG, &world},
      {"total", H5T_NATIVE_ULLONG, &h->total},
      {"dit_total", H5T_NATIVE_ULLONG, &h->dit_total},
      {"head_total", H5T_NATIVE_ULLONG, &h->head_total},
      {"prototypes", H5T_NATIVE_ULLONG, &h->prototypes},
  };
  for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
    if (sd_h5_attr_num(r->file, nums[i].name, nums[i].type, nums[i].v) != 0)
      return r_fail(r, "attribute '%s' is missing or not a number", nums[i].name);
  h->info.step = (long)step;
  h->info.data_cursor = (long)cursor;
  h->info.world_size = (int)world;
  h->git_rev = sd_h5_attr_string_dup(r->file, "git_rev");
  if (!h->git_rev) return r_fail(r, "attribute 'git_rev' is missing or not a string");
  snprintf(h->info.git_rev, sizeof h->info.git_rev, "%s", h->git_rev);
  h->info.config_text = sd_h5_attr_string_dup(r->file, "config");
  if (!h->info.config_text) return r_fail(r, "attribute 'config' is missing or not a string");
  if (h->dit_total + h->head_total != h->total || h->dit_total > h->total)
    return r_fail(r, "attributes disagree: dit_total %llu + head_total %llu != total %llu",
                  h->dit_total, h->head_total, h->total);
  return 0;
}

static void print_header(FILE *out, const ckpt_header *h) {
  fprintf(out, "  format         %s (version %lld)\n", SD_CKPT_FORMAT, h->version);
  fprintf(out, "  step           %ld\n", h->info.step);
  fprintf(out, "  seed           %llu\n", h->info.seed);
  fprintf(out, "  data_cursor    %ld\n", h->info.data_cursor);
  fprintf(out, "  world_size     %d\n", h->info.world_size);
  fprintf(out, "  git_rev        %s\n", h->git_rev);
  fprintf(out, "  total          %llu floats (DiT %llu + head %llu), prototypes %llu\n",
          h->total, h->dit_total, h->head_total, h->prototypes);
  fprintf(out, "config:\n");
  const char *c = h->info.config_text;
  while (*c) {
    size_t n = strcspn(c, "\n");
    fprintf(out, "  | %.*s\n", (int)n, c);
    c += n + (c[n] == '\n');
  }
}

// ---- datasets ------------------------------------------------------------------------------

// Length (first dimension) of a 1-D or 2-D dataset, or 0 if it is missing.
static unsigned long long dataset_len(hid_t file, const char *name) {
  if (!sd_h5_exists(file, name)) return 0;
  hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
  if (ds < 0) return 0;
  hid_t sp = H5Dget_space(ds);
  hsize_t dims[2] = {0, 0};
  unsigned long long n = 0;
  if (H5Sget_simple_extent_ndims(sp) >= 1 && H5Sget_simple_extent_ndims(sp) <= 2 &&
      H5Sget_simple_extent_dims(sp, dims, NULL) >= 0)
    n = dims[0];
  H5Sclose(sp);
  H5Dclose(ds);
  return n;
}

static const char *kind_name(sd_ckpt_kind k) {
  switch (k) {
    case SD_CKPT_F32: return "float32";
    case SD_CKPT_U64: return "uint64";
    case SD_CKPT_I32: return "int32";
    default: return "string64";
  }
}

static hid_t kind_memtype(sd_ckpt_kind k) {
  switch (k) {
    case SD_CKPT_F32: return H5Tcopy(H5T_NATIVE_FLOAT);
    case SD_CKPT_U64: return H5Tcopy(H5T_NATIVE_UINT64);
    case SD_CKPT_I32: return H5Tcopy(H5T_NATIVE_INT32);
    default: return sd_ckpt_name_type();
  }
}

// Whether the stored element type is the one the layout says.
static int type_matches(hid_t ftype, sd_ckpt_kind k) {
  H5T_class_t cls = H5Tget_class(ftype);
  size_t size = H5Tget_size(ftype);
  switch (k) {
    case SD_CKPT_F32: return cls == H5T_FLOAT && size == 4;
    case SD_CKPT_U64: return cls == H5T_INTEGER && size == 8;
    case SD_CKPT_I32: return cls == H5T_INTEGER && size == 4;
    default:
      return cls == H5T_STRING && H5Tis_variable_str(ftype) == 0 && size == SD_CKPT_NAME_LEN;
  }
}

// Reads dataset ds (shape sp->dims) into dst, or into a scratch buffer when dst is NULL, in
// slabs along the first dimension; hashes the bytes when hash is non-NULL.
static int read_slabs(reader *r, const sd_ckpt_ds_spec *sp, hid_t ds, void *dst, uint64_t *hash) {
  hid_t mt = kind_memtype(sp->kind);
  size_t el = sd_ckpt_kind_size(sp->kind);
  size_t row = sp->ndim == 2 ? (size_t)sp->dims[1] : 1;
  size_t rows = sp->dims[0];
  size_t per = SLAB_BYTES / (el * row);
  if (per < 1) per = 1;
  if (per > rows) per = rows ? rows : 1;
  unsigned char *scratch = dst ? NULL : malloc(per * row * el);
  int rc = 0;
  if (!dst && !scratch) rc = r_fail(r, "cannot allocate %zu bytes to read %s", per * row * el,
                                    sp->name);
  hid_t fsp = H5Dget_space(ds);
  for (size_t r0 = 0; r0 < rows && rc == 0; r0 += per) {
    size_t nr = rows - r0 < per ? rows - r0 : per;
    hsize_t start[2] = {r0, 0}, count[2] = {nr, row};
    unsigned char *buf = dst ? (unsigned char *)dst + r0 * row * el : scratch;
    hid_t msp = H5Screate_simple(sp->ndim, count, NULL);
    errno = 0;
    if (H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        H5Dread(ds, mt, msp, fsp, H5P_DEFAULT, buf) < 0) {
      char reason[256];
      sd_ckpt_h5_reason(reason, sizeof reason, errno);
      rc = r_fail(r, "cannot read dataset %s: %s", sp->name, reason);
    } else if (hash) {
      *hash = sd_ckpt_hash_le(*hash, buf, nr * row, el, sp->kind != SD_CKPT_NAME);
    }
    H5Sclose(msp);
  }
  H5Sclose(fsp);
  H5Tclose(mt);
  free(scratch);
  return rc;
}

// Opens a dataset and checks its type and shape against sp. Returns the id, or -1.
static hid_t open_dataset(reader *r, const sd_ckpt_ds_spec *sp, char *shape, size_t shape_len) {
  snprintf(shape, shape_len, "-");
  if (!sd_h5_exists(r->file, sp->name)) {
    r_fail(r, "dataset %s is missing", sp->name);
    return -1;
  }
  hid_t ds = H5Dopen2(r->file, sp->name, H5P_DEFAULT);
  if (ds < 0) {
    r_fail(r, "%s is not a dataset", sp->name);
    return -1;
  }
  hid_t fsp = H5Dget_space(ds), ft = H5Dget_type(ds);
  hsize_t dims[2] = {0, 0};
  int nd = H5Sget_simple_extent_ndims(fsp);
  if (nd >= 1 && nd <= 2) H5Sget_simple_extent_dims(fsp, dims, NULL);
  if (nd == 2) snprintf(shape, shape_len, "(%llu, %llu)", (unsigned long long)dims[0],
                        (unsigned long long)dims[1]);
  else if (nd == 1) snprintf(shape, shape_len, "(%llu)", (unsigned long long)dims[0]);
  else snprintf(shape, shape_len, "rank %d", nd);
  int ok = 1;
  if (!type_matches(ft, sp->kind)) {
    ok = 0;
    r_fail(r, "dataset %s has the wrong element type (want %s)", sp->name, kind_name(sp->kind));
  } else if (nd != sp->ndim || dims[0] != sp->dims[0] ||
             (nd == 2 && dims[1] != sp->dims[1])) {
    char want[64];
    if (sp->ndim == 2) snprintf(want, sizeof want, "(%llu, %llu)",
                                (unsigned long long)sp->dims[0], (unsigned long long)sp->dims[1]);
    else snprintf(want, sizeof want, "(%llu)", (unsigned long long)sp->dims[0]);
    ok = 0;
    r_fail(r, "dataset %s has shape %s, want %s (from %s)", sp->name, shape, want, sp->size_from);
  }
  H5Tclose(ft);
  H5Sclose(fsp);
  if (!ok) {
    H5Dclose(ds);
    return -1;
  }
  return ds;
}

// Checks one dataset: present, type, shape, checksum. Prints a line when r->out is set.
static int check_dataset(reader *r, const sd_ckpt_ds_spec *sp) {
  char shape[64], status[160];
  unsigned long long stored = 0;
  uint64_t computed = SD_FNV1A64_INIT;
  int was_failed = r->failed, rc = -1;
  hid_t ds = open_dataset(r, sp, shape, sizeof shape);
  snprintf(status, sizeof status, "NOT OK");
  if (ds >= 0) {
    if (sd_h5_attr_num(ds, "checksum", H5T_NATIVE_ULLONG, &stored) != 0) {
      r_fail(r, "dataset %s has no checksum attribute", sp->name);
      snprintf(status, sizeof status, "no checksum attribute");
    } else if (read_slabs(r, sp, ds, NULL, &computed) == 0) {
      if (computed == stored) {
        rc = 0;
        snprintf(status, sizeof status, "checksum %016llx ok", stored);
      } else {
        r_fail(r, "dataset %s fails its checksum: stored %016llx, computed %016llx", sp->name,
               stored, (unsigned long long)computed);
        snprintf(status, sizeof status, "checksum MISMATCH: stored %016llx, computed %016llx",
                 stored, (unsigned long long)computed);
      }
    }
    H5Dclose(ds);
  }
  if (r->out) {
    fprintf(r->out, "  %-18s %-8s %-12s %s\n", sp->name, kind_name(sp->kind), shape, status);
    if (rc != 0 && !was_failed) fprintf(r->out, "    problem: %s\n", r->err);
  }
  return rc;
}

// Opens and checks everything; leaves r->file open (if it opened) and h filled. With r->out,
// prints as it goes and continues past dataset problems.
static int check_file(reader *r, ckpt_header *h) {
  memset(h, 0, sizeof *h);
  if (open_file(r) != 0 || read_header(r, h) != 0) return -1;
  if (r->out) print_header(r->out, h);
  sd_ckpt_ds_spec sp[SD_CKPT_NUM_DATASETS];
  sd_ckpt_layout(sp, h->total, h->dit_total, h->prototypes,
                 dataset_len(r->file, "/tensors/names"));
  if (r->out) fprintf(r->out, "datasets:\n");
  int rc = 0;
  for (int i = 0; i < SD_CKPT_NUM_DATASETS; i++) {
    if (check_dataset(r, &sp[i]) != 0) rc = -1;
    if (rc != 0 && !r->out) break;
  }
  return rc;
}

// ---- the tensor table ----------------------------------------------------------------------

typedef struct table {
  int count;
  char *names;         // count * SD_CKPT_NAME_LEN, null padded
  uint64_t *offsets, *numel;
  int32_t *shapes;     // count * 4, zero padded
} table;

static void table_free(table *t) {
  free(t->names);
  free(t->offsets);
  free(t->numel);
  free(t->shapes);
  memset(t, 0, sizeof *t);
}

static int read_table(reader *r, table *t) {
  memset(t, 0, sizeof *t);
  sd_ckpt_ds_spec sp[SD_CKPT_NUM_DATASETS];
  unsigned long long n = dataset_len(r->file, "/tensors/names");
  sd_ckpt_layout(sp, 0, 0, 0, n);
  t->count = (int)n;
  t->names = calloc(n ? n : 1, SD_CKPT_NAME_LEN);
  t->offsets = calloc(n ? n : 1, sizeof(uint64_t));
  t->numel = calloc(n ? n : 1, sizeof(uint64_t));
  t->shapes = calloc(n ? 4 * n : 1, sizeof(int32_t));
  if (!t->names || !t->offsets || !t->numel || !t->shapes) {
    table_free(t);
    return r_fail(r, "cannot allocate the tensor table (%llu entries)", n);
  }
  void *dst[4] = {t->names, t->offsets, t->numel, t->shapes};
  char shape[64];
  for (int i = 0; i < 4; i++) {
    hid_t ds = open_dataset(r, &sp[6 + i], shape, sizeof shape);
    int rc = ds < 0 ? -1 : read_slabs(r, &sp[6 + i], ds, dst[i], NULL);
    if (ds >= 0) H5Dclose(ds);
    if (rc != 0) {
      table_free(t);
      return -1;
    }
  }
  for (int i = 0; i < t->count; i++)
    t->names[i * SD_CKPT_NAME_LEN + SD_CKPT_NAME_LEN - 1] = '\0';
  return 0;
}

static void format_shape(const int32_t *shape, int ndim, char *buf, size_t len) {
  size_t k = (size_t)snprintf(buf, len, "(");
  for (int d = 0; d < ndim && k < len; d++)
    k += (size_t)snprintf(buf + k, len - k, d ? ", %d" : "%d", (int)shape[d]);
  if (k < len) snprintf(buf + k, len - k, ")");
}

static int shape_ndim(const int32_t *shape) {
  int nd = 0;
  while (nd < 4 && shape[nd] != 0) nd++;
  return nd;
}

static void print_table(reader *r) {
  table t;
  if (read_table(r, &t) != 0) return;
  fprintf(r->out, "tensors: %d\n", t.count);
  char shape[64];
  for (int i = 0; i < t.count; i++) {
    if (i == 3 && t.count > 6) {
      fprintf(r->out, "  ... %d more ...\n", t.count - 6);
      i = t.count - 3;
    }
    format_shape(t.shapes + 4 * i, shape_ndim(t.shapes + 4 * i), shape, sizeof shape);
    fprintf(r->out, "  [%d] %-40s %-16s offset %llu numel %llu\n", i,
            t.names + i * SD_CKPT_NAME_LEN, shape, (unsigned long long)t.offsets[i],
            (unsigned long long)t.numel[i]);
  }
  table_free(&t);
}

// One side of a table comparison, for messages: "<name> (shape) at offset N".
static void describe(const char *name, const int32_t *shape, int ndim, unsigned long long off,
                     char *buf, size_t len) {
  char sh[64];
  format_shape(shape, ndim, sh, sizeof sh);
  snprintf(buf, len, "%s %s at offset %llu", name, sh, off);
}

// Whether the checkpoint (header h, open in r) holds a model with exactly s's layout.
static int check_fits(reader *r, const ckpt_header *h, const sd_sddit *s) {
  table t;
  if (read_table(r, &t) != 0) return -1;
  const sd_param_table *m = &s->table;
  int n = t.count > m->count ? t.count : m->count, rc = 0;
  char a[160], b[160];
  for (int i = 0; i < n && rc == 0; i++) {
    if (i < t.count)
      describe(t.names + i * SD_CKPT_NAME_LEN, t.shapes + 4 * i, shape_ndim(t.shapes + 4 * i),
               (unsigned long long)t.offsets[i], a, sizeof a);
    if (i < m->count) {
      const sd_param_info *p = &m->items[i];
      int32_t sh[4] = {0, 0, 0, 0};
      for (int d = 0; d < p->ndim && d < 4; d++) sh[d] = p->shape[d];
      describe(p->name, sh, p->ndim, (unsigned long long)p->offset, b, sizeof b);
    }
    if (i >= t.count)
      rc = r_fail(r, "checkpoint's tensor table ends after %d tensors, this model has %s",
                  t.count, b);
    else if (i >= m->count)
      rc = r_fail(r, "checkpoint has %s, this model's tensor table ends after %d tensors", a,
                  m->count);
    else if (strcmp(a, b) != 0 || t.numel[i] != m->items[i].numel)
      rc = r_fail(r, "checkpoint has %s, this model has %s", a, b);
  }
  table_free(&t);
  if (rc != 0) return rc;
  struct { const char *name; unsigned long long ck; size_t model; } sizes[] = {
      {"total", h->total, s->total},
      {"dit_total", h->dit_total, s->dit_total},
      {"head_total", h->head_total, s->head_total},
      {"prototypes", h->prototypes, (size_t)s->hcfg.prototypes},
  };
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    if (sizes[i].ck != sizes[i].model)
      return r_fail(r, "checkpoint has %s = %llu, this model has %zu", sizes[i].name,
                    sizes[i].ck, sizes[i].model);
  return 0;
}

// Copies every family dataset into s.
static int load_families(reader *r, const ckpt_header *h, sd_sddit *s) {
  sd_ckpt_ds_spec sp[SD_CKPT_NUM_DATASETS];
  sd_ckpt_layout(sp, h->total, h->dit_total, h->prototypes, 0);
  float *dst[SD_CKPT_NUM_FAMILIES];
  sd_ckpt_family_ptrs(s, dst);
  float *host = malloc(sizeof(float) * (s->total ? s->total : 1));
  if (!host) return r_fail(r, "cannot allocate %zu bytes", sizeof(float) * s->total);
  char shape[64];
  int rc = 0;
  for (int i = 0; i < SD_CKPT_NUM_FAMILIES && rc == 0; i++) {
    hid_t ds = open_dataset(r, &sp[i], shape, sizeof shape);
    rc = ds < 0 ? -1 : read_slabs(r, &sp[i], ds, host, NULL);
    if (ds >= 0) H5Dclose(ds);
    if (rc == 0)
      s->be->ops->to_device(s->be, dst[i], host, sizeof(float) * (size_t)sp[i].dims[0]);
  }
  free(host);
  return rc;
}

// ---- public reading API ----------------------------------------------------------------------

int sd_ckpt_verify(const char *path, char *err, size_t errlen) {
  if (err && errlen) err[0] = '\0';
  sd_ckpt_quiet q;
  sd_ckpt_quiet_begin(&q);
  reader r = {.path = path, .file = -1, .err = err, .errlen = errlen};
  ckpt_header h;
  int rc = check_file(&r, &h);
  if (r.file >= 0) H5Fclose(r.file);
  free(h.info.config_text);
  free(h.git_rev);
  sd_ckpt_quiet_end(&q);
  return rc;
}

int sd_ckpt_load(const char *path, sd_sddit *s, sd_ckpt_info *info, char *err, size_t errlen) {
  if (err && errlen) err[0] = '\0';
  if (info) info->config_text = NULL;
  sd_ckpt_quiet q;
  sd_ckpt_quiet_begin(&q);
  reader r = {.path = path, .file = -1, .err = err, .errlen = errlen};
  ckpt_header h;
  int rc = check_file(&r, &h);
  if (rc == 0) rc = check_fits(&r, &h, s);
  if (rc == 0 && load_families(&r, &h, s) != 0) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s (the model is partially loaded)", err ? err : "");
    sd_ckpt_set_err(err, errlen, "%s", msg);
    rc = -1;
  }
  if (r.file >= 0) H5Fclose(r.file);
  free(h.git_rev);
  if (rc == 0 && info) {
    *info = h.info;
  } else {
    free(h.info.config_text);
  }
  sd_ckpt_quiet_end(&q);
  return rc;
}

int sd_ckpt_print_summary(const char *path, FILE *out) {
  char err[1024] = "";
  sd_ckpt_quiet q;
  sd_ckpt_quiet_begin(&q);
  reader r = {.path = path, .file = -1, .err = err, .errlen = sizeof err, .out = out};
  ckpt_header h;
  fprintf(out, "checkpoint %s\n", path);
  int rc = check_file(&r, &h);
  if (r.file >= 0 && h.info.config_text) print_table(&r);
  if (r.file >= 0) H5Fclose(r.file);
  free(h.info.config_text);
  free(h.git_rev);
  if (rc == 0) fprintf(out, "verified: every checksum matches\n");
  else fprintf(out, "NOT VALID: %s\n", err);
  sd_ckpt_quiet_end(&q);
  return rc;
}
