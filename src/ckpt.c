// Training checkpoints (see ckpt.h). One HDF5 file (v1.8 object format, readable from h5py)
// per save; every dataset is contiguous and carries a uint64 attribute "checksum", the FNV-1a
// 64 hash (offset basis 0xcbf29ce484222325, prime 0x100000001b3) of its raw little-endian
// bytes. A save builds the file in memory with HDF5's core driver and writes the image with
// plain write/fsync/rename, so every disk error is ours to report (see build_image); it needs
// host memory for the whole file. HDF5's own error printing is silenced while this module
// runs; its error stack is turned into one line (the errno text where there is one).
#include "ckpt.h"
#include "error.h"
#include "h5io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NAME_LEN 64            // bytes per entry of /tensors/names (sd_param_info.name)
#define SLAB_BYTES (16u << 20) // datasets are read in slabs of about this size
#define FNV_PRIME 0x100000001b3ULL

// ---- messages and HDF5 errors ----------------------------------------------------------------

static void set_err(char *err, size_t errlen, const char *fmt, ...) SD_PRINTF(3, 4);
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

typedef struct quiet {
  H5E_auto2_t func;
  void *data;
} quiet;

static void quiet_begin(quiet *q) {
  H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static void quiet_end(const quiet *q) { H5Eset_auto2(H5E_DEFAULT, q->func, q->data); }

typedef struct h5_detail {
  int err_no;          // from an "errno = N" in the stack, else 0
  char desc[200];      // the most specific description
} h5_detail;

static herr_t detail_cb(unsigned n, const H5E_error2_t *e, void *data) {
  h5_detail *d = data;
  if (!e->desc) return 0;
  const char *p = strstr(e->desc, "errno = ");
  if (p && !d->err_no) d->err_no = atoi(p + 8);
  if (n == 0) snprintf(d->desc, sizeof d->desc, "%s", e->desc);
  return 0;
}

// The reason for the HDF5 failure just seen: the errno text if the stack has one, else the
// innermost HDF5 description, else saved_errno's text. Call before any other HDF5 call.
static void h5_reason(char *buf, size_t len, int saved_errno) {
  h5_detail d = {0, ""};
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, detail_cb, &d);
  if (d.err_no) snprintf(buf, len, "%s", strerror(d.err_no));
  else if (d.desc[0]) snprintf(buf, len, "HDF5: %s", d.desc);
  else if (saved_errno) snprintf(buf, len, "%s", strerror(saved_errno));
  else snprintf(buf, len, "unknown HDF5 error");
}

// ---- checksum ----------------------------------------------------------------------------

unsigned long long sd_ckpt_fnv1a64(unsigned long long h, const void *data, size_t n) {
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= FNV_PRIME;
  }
  return h;
}

static int host_is_little_endian(void) {
  const uint16_t one = 1;
  unsigned char b;
  memcpy(&b, &one, 1);
  return b == 1;
}

// Continues hash h over n elements of elsize bytes taken in little-endian byte order
// (swap = 0 for byte strings, which have no byte order).
static uint64_t hash_le(uint64_t h, const void *data, size_t n, size_t elsize, int swap) {
  if (!swap || elsize == 1 || host_is_little_endian())
    return sd_ckpt_fnv1a64(h, data, n * elsize);
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++)
    for (size_t b = elsize; b-- > 0;) {
      h ^= p[i * elsize + b];
      h *= FNV_PRIME;
    }
  return h;
}

// ---- the file layout -----------------------------------------------------------------------

typedef enum { KIND_F32, KIND_U64, KIND_I32, KIND_NAME } ds_kind;

typedef struct ds_spec {
  const char *name;
  ds_kind kind;
  int ndim;
  hsize_t dims[2];
  const char *size_from;  // the attribute that implies the length (for messages)
} ds_spec;

enum { NUM_DATASETS = 10, NUM_FAMILIES = 6 };

static const char *kind_name(ds_kind k) {
  switch (k) {
    case KIND_F32: return "float32";
    case KIND_U64: return "uint64";
    case KIND_I32: return "int32";
    default: return "string64";
  }
}

static size_t kind_size(ds_kind k) {
  return k == KIND_F32 || k == KIND_I32 ? 4 : k == KIND_U64 ? 8 : NAME_LEN;
}

// The fixed-length, null-padded 64-byte string type of /tensors/names (close it).
static hid_t name_type(void) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, NAME_LEN);
  H5Tset_strpad(t, H5T_STR_NULLPAD);
  return t;
}

// Every dataset of a checkpoint with the given sizes; the first NUM_FAMILIES are the family
// buffers, in the order family_ptrs() returns them.
static void layout(ds_spec sp[NUM_DATASETS], unsigned long long total,
                   unsigned long long dit_total, unsigned long long prototypes,
                   unsigned long long count) {
  const ds_spec all[NUM_DATASETS] = {
      {"/student/params", KIND_F32, 1, {total, 0}, "total"},
      {"/student/adam_m", KIND_F32, 1, {total, 0}, "total"},
      {"/student/adam_v", KIND_F32, 1, {total, 0}, "total"},
      {"/teacher", KIND_F32, 1, {total, 0}, "total"},
      {"/ema", KIND_F32, 1, {dit_total, 0}, "dit_total"},
      {"/center", KIND_F32, 1, {prototypes, 0}, "prototypes"},
      {"/tensors/names", KIND_NAME, 1, {count, 0}, "the table length"},
      {"/tensors/offsets", KIND_U64, 1, {count, 0}, "the table length"},
      {"/tensors/numel", KIND_U64, 1, {count, 0}, "the table length"},
      {"/tensors/shapes", KIND_I32, 2, {count, 4}, "the table length"},
  };
  memcpy(sp, all, sizeof all);
}

static void family_ptrs(const sd_sddit *s, float *p[NUM_FAMILIES]) {
  p[0] = s->params;
  p[1] = s->adam_m;
  p[2] = s->adam_v;
  p[3] = s->teacher;
  p[4] = s->ema;
  p[5] = s->center;
}

// ---- file-system helpers -----------------------------------------------------------------

static int make_dirs(const char *dir, char *err, size_t errlen) {
  char buf[4096];
  if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) {
    set_err(err, errlen, "checkpoint directory name is too long: %s", dir);
    return -1;
  }
  for (char *p = buf + 1;; p++) {
    if (*p != '/' && *p != '\0') continue;
    char save = *p;
    *p = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
      set_err(err, errlen, "cannot create directory '%s': %s", buf, strerror(errno));
      return -1;
    }
    *p = save;
    if (!save) break;
  }
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    set_err(err, errlen, "'%s' is not a directory", dir);
    return -1;
  }
  return 0;
}

static int fsync_dir(const char *dir, char *err, size_t errlen) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (fd < 0 || fsync(fd) != 0) {
    set_err(err, errlen, "%s: cannot fsync the directory: %s", dir, strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  close(fd);
  return 0;
}

typedef struct ckpt_entry {
  long step;
  char name[256];
} ckpt_entry;

// Step of a name "ckpt-<digits>.h5", or -1.
static long parse_ckpt_name(const char *name) {
  if (strncmp(name, "ckpt-", 5) != 0) return -1;
  const char *p = name + 5;
  size_t nd = strspn(p, "0123456789");
  if (nd == 0 || nd > 18 || strcmp(p + nd, ".h5") != 0) return -1;
  return strtol(p, NULL, 10);
}

static int by_step_desc(const void *a, const void *b) {
  const ckpt_entry *x = a, *y = b;
  if (x->step != y->step) return x->step < y->step ? 1 : -1;
  return strcmp(y->name, x->name);
}

// The ckpt-<digits>.h5 files in dir, newest first (malloc'ed; free()). -1 with errno set
// (ENOENT: no such directory) or ENOMEM.
static int list_ckpts(const char *dir, ckpt_entry **out, int *count) {
  *out = NULL;
  *count = 0;
  DIR *d = opendir(dir);
  if (!d) return -1;
  int cap = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    long step = parse_ckpt_name(de->d_name);
    if (step < 0) continue;
    if (*count == cap) {
      cap = cap ? 2 * cap : 16;
      ckpt_entry *grown = realloc(*out, sizeof(ckpt_entry) * (size_t)cap);
      if (!grown) {
        free(*out);
        *out = NULL;
        closedir(d);
        errno = ENOMEM;
        return -1;
      }
      *out = grown;
    }
    (*out)[*count].step = step;
    snprintf((*out)[*count].name, sizeof (*out)[*count].name, "%s", de->d_name);
    (*count)++;
  }
  closedir(d);
  if (*count) qsort(*out, (size_t)*count, sizeof(ckpt_entry), by_step_desc);
  return 0;
}

// Deletes all but the newest `keep` checkpoints of dir, never `keep_name`. Problems are warnings.
static void prune(const char *dir, int keep, const char *keep_name) {
  if (keep <= 0) return;
  ckpt_entry *e;
  int n;
  if (list_ckpts(dir, &e, &n) != 0) {
    fprintf(stderr, "warning: cannot list '%s' to delete old checkpoints: %s\n", dir,
            strerror(errno));
    return;
  }
  char path[4400];
  for (int i = keep; i < n; i++) {
    if (strcmp(e[i].name, keep_name) == 0) continue;
    snprintf(path, sizeof path, "%s/%s", dir, e[i].name);
    if (unlink(path) != 0)
      fprintf(stderr, "warning: cannot delete old checkpoint %s: %s\n", path, strerror(errno));
  }
  free(e);
}

// ---- writing -------------------------------------------------------------------------------

typedef struct writer {
  hid_t file;
  const char *tmp;
  int failed;
  char what[128];     // what was being done at the first failure
  char reason[256];   // errno text or HDF5's description
} writer;

// Records the first failure; call right after the failing HDF5 call.
static int w_fail(writer *w, const char *what, int saved_errno) {
  if (!w->failed) {
    w->failed = 1;
    snprintf(w->what, sizeof w->what, "%s", what);
    h5_reason(w->reason, sizeof w->reason, saved_errno);
  }
  return -1;
}

static int write_attr(writer *w, const char *name, hid_t ftype, hid_t mtype, const void *v) {
  char what[96];
  snprintf(what, sizeof what, "cannot write attribute '%s'", name);
  hid_t sp = H5Screate(H5S_SCALAR);
  errno = 0;
  hid_t a = H5Acreate2(w->file, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
  int rc = 0;
  if (a < 0) rc = w_fail(w, what, errno);
  else if (H5Awrite(a, mtype, v) < 0) rc = w_fail(w, what, errno);
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  return rc;
}

static int write_attr_str(writer *w, const char *name, const char *value) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  const char *p = value ? value : "";
  int rc = write_attr(w, name, t, t, &p);
  H5Tclose(t);
  return rc;
}

static int write_attr_i64(writer *w, const char *name, long long v) {
  return write_attr(w, name, H5T_STD_I64LE, H5T_NATIVE_LLONG, &v);
}

static int write_attr_u64(writer *w, const char *name, unsigned long long v) {
  return write_attr(w, name, H5T_STD_U64LE, H5T_NATIVE_ULLONG, &v);
}

// Writes a contiguous dataset with its checksum attribute.
static int write_dataset(writer *w, const ds_spec *sp, const void *data) {
  char what[128];
  snprintf(what, sizeof what, "cannot write dataset %s", sp->name);
  hid_t ftype, mtype;
  switch (sp->kind) {
    case KIND_F32: ftype = H5T_IEEE_F32LE; mtype = H5T_NATIVE_FLOAT; break;
    case KIND_U64: ftype = H5T_STD_U64LE; mtype = H5T_NATIVE_UINT64; break;
    case KIND_I32: ftype = H5T_STD_I32LE; mtype = H5T_NATIVE_INT32; break;
    default: ftype = mtype = name_type(); break;
  }
  size_t n = (size_t)sp->dims[0] * (sp->ndim == 2 ? (size_t)sp->dims[1] : 1);
  unsigned long long sum = hash_le(SD_FNV1A64_INIT, data, n, kind_size(sp->kind),
                                   sp->kind != KIND_NAME);
  hid_t space = H5Screate_simple(sp->ndim, sp->dims, NULL);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_layout(dcpl, H5D_CONTIGUOUS);
  H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  int rc = 0;
  errno = 0;
  hid_t ds = H5Dcreate2(w->file, sp->name, ftype, space, lcpl, dcpl, H5P_DEFAULT);
  if (ds < 0) {
    rc = w_fail(w, what, errno);
  } else {
    errno = 0;
    if (H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
      rc = w_fail(w, what, errno);
    } else {
      hid_t as = H5Screate(H5S_SCALAR);
      errno = 0;
      hid_t a = H5Acreate2(ds, "checksum", H5T_STD_U64LE, as, H5P_DEFAULT, H5P_DEFAULT);
      if (a < 0 || H5Awrite(a, H5T_NATIVE_ULLONG, &sum) < 0) rc = w_fail(w, what, errno);
      if (a >= 0) H5Aclose(a);
      H5Sclose(as);
    }
    H5Dclose(ds);
  }
  H5Pclose(lcpl);
  H5Pclose(dcpl);
  H5Sclose(space);
  if (sp->kind == KIND_NAME) H5Tclose(ftype);
  return rc;
}

static int write_attrs(writer *w, const sd_sddit *s, const sd_ckpt_info *info) {
  if (write_attr_str(w, "format", SD_CKPT_FORMAT) ||
      write_attr_i64(w, "format_version", SD_CKPT_FORMAT_VERSION) ||
      write_attr_i64(w, "step", info->step) ||
      write_attr_u64(w, "seed", info->seed) ||
      write_attr_i64(w, "data_cursor", info->data_cursor) ||
      write_attr_i64(w, "world_size", info->world_size) ||
      write_attr_str(w, "git_rev", info->git_rev) ||
      write_attr_str(w, "config", info->config_text) ||
      write_attr_u64(w, "total", s->total) ||
      write_attr_u64(w, "dit_total", s->dit_total) ||
      write_attr_u64(w, "head_total", s->head_total) ||
      write_attr_u64(w, "prototypes", (unsigned long long)s->hcfg.prototypes))
    return -1;
  return 0;
}

// The family buffers, copied to the host one at a time.
static int write_families(writer *w, const sd_sddit *s, const ds_spec *sp) {
  float *src[NUM_FAMILIES];
  family_ptrs(s, src);
  float *host = malloc(sizeof(float) * (s->total ? s->total : 1));
  if (!host) {
    w->failed = 1;
    snprintf(w->what, sizeof w->what, "cannot allocate %zu bytes", sizeof(float) * s->total);
    snprintf(w->reason, sizeof w->reason, "%s", strerror(ENOMEM));
    return -1;
  }
  int rc = 0;
  for (int i = 0; i < NUM_FAMILIES && rc == 0; i++) {
    s->be->ops->to_host(s->be, host, src[i], sizeof(float) * (size_t)sp[i].dims[0]);
    rc = write_dataset(w, &sp[i], host);
  }
  free(host);
  return rc;
}

static int write_table(writer *w, const sd_param_table *t, const ds_spec *sp) {
  size_t n = (size_t)t->count;
  char *names = calloc(n ? n : 1, NAME_LEN);
  uint64_t *offsets = calloc(n ? n : 1, sizeof(uint64_t));
  uint64_t *numel = calloc(n ? n : 1, sizeof(uint64_t));
  int32_t *shapes = calloc(n ? 4 * n : 1, sizeof(int32_t));
  int rc = 0;
  if (!names || !offsets || !numel || !shapes) {
    w->failed = 1;
    snprintf(w->what, sizeof w->what, "cannot allocate the tensor table");
    snprintf(w->reason, sizeof w->reason, "%s", strerror(ENOMEM));
    rc = -1;
  } else {
    for (size_t i = 0; i < n; i++) {
      const sd_param_info *p = &t->items[i];
      strncpy(names + i * NAME_LEN, p->name, NAME_LEN - 1);
      offsets[i] = p->offset;
      numel[i] = p->numel;
      for (int d = 0; d < p->ndim && d < 4; d++) shapes[4 * i + d] = p->shape[d];
    }
    if (write_dataset(w, &sp[6], names) || write_dataset(w, &sp[7], offsets) ||
        write_dataset(w, &sp[8], numel) || write_dataset(w, &sp[9], shapes))
      rc = -1;
  }
  free(names);
  free(offsets);
  free(numel);
  free(shapes);
  return rc;
}

// The in-memory file image. HDF5 builds the file with the core driver (no disk I/O); these
// callbacks own its buffer and keep it past H5Fclose, and we write it out ourselves. (HDF5
// 1.10 cannot recover from a failed H5Fclose: the file id stays behind and the library crashes
// at exit. So HDF5 must never meet a full disk or a file-size limit.)
typedef struct image {
  unsigned char *mem;
  size_t size;
} image;

static void *img_realloc(void *ptr, size_t size, H5FD_file_image_op_t op, void *udata) {
  image *im = udata;
  void *p = realloc(ptr, size ? size : 1);
  if (p && (op == H5FD_FILE_IMAGE_OP_FILE_OPEN || op == H5FD_FILE_IMAGE_OP_FILE_RESIZE)) {
    im->mem = p;
    im->size = size;
  }
  return p;
}

static void *img_malloc(size_t size, H5FD_file_image_op_t op, void *udata) {
  return img_realloc(NULL, size, op, udata);
}

static void *img_memcpy(void *dst, const void *src, size_t size, H5FD_file_image_op_t op,
                        void *udata) {
  return memcpy(dst, src, size);
}

static herr_t img_free(void *ptr, H5FD_file_image_op_t op, void *udata) {
  image *im = udata;
  if (ptr != im->mem) free(ptr);  // the file's buffer outlives H5Fclose (save_quiet frees it)
  return 0;
}

static void *img_udata_copy(void *udata) { return udata; }
static herr_t img_udata_free(void *udata) { return 0; }

// A file access list for an in-memory file whose buffer ends up in im.
static hid_t image_fapl(image *im) {
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5FD_file_image_callbacks_t cb = {img_malloc, img_memcpy, img_realloc, img_free,
                                    img_udata_copy, img_udata_free, im};
  H5Pset_fapl_core(fapl, 16u << 20, 0);
  H5Pset_file_image_callbacks(fapl, &cb);
  H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18);
  return fapl;
}

// Builds the whole checkpoint in memory: im receives the buffer, *len the file's length.
static int build_image(const char *tmp, const sd_sddit *s, const sd_ckpt_info *info, image *im,
                       size_t *len, char *err, size_t errlen) {
  writer w = {.file = -1, .tmp = tmp};
  ds_spec sp[NUM_DATASETS];
  layout(sp, s->total, s->dit_total, (unsigned long long)s->hcfg.prototypes,
         (unsigned long long)s->table.count);
  hid_t fapl = image_fapl(im);
  errno = 0;
  w.file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  if (w.file < 0) w_fail(&w, "cannot create the in-memory file", errno);
  H5Pclose(fapl);
  if (w.file >= 0) {
    if (write_attrs(&w, s, info) == 0 && write_families(&w, s, sp) == 0 &&
        write_table(&w, &s->table, sp) == 0) {
      errno = 0;
      ssize_t n = -1;
      if (H5Fflush(w.file, H5F_SCOPE_GLOBAL) >= 0) n = H5Fget_file_image(w.file, NULL, 0);
      if (n <= 0) w_fail(&w, "cannot flush the in-memory file", errno);
      else *len = (size_t)n;
    }
    errno = 0;
    if (H5Fclose(w.file) < 0) w_fail(&w, "cannot close the in-memory file", errno);
  }
  if (!w.failed && (!im->mem || im->size < *len)) {
    w.failed = 1;
    snprintf(w.what, sizeof w.what, "the in-memory file is incomplete");
    snprintf(w.reason, sizeof w.reason, "%zu of %zu bytes", im->size, *len);
  }
  if (w.failed) set_err(err, errlen, "%s: %s: %s", tmp, w.what, w.reason);
  return w.failed ? -1 : 0;
}

// Writes n bytes to path (created or truncated) and fsyncs it.
static int write_file(const char *path, const unsigned char *p, size_t n, char *err,
                      size_t errlen) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) {
    set_err(err, errlen, "%s: cannot create: %s", path, strerror(errno));
    return -1;
  }
  size_t done = 0;
  int e = 0;
  const char *what = "write failed";
  while (done < n && !e) {
    size_t chunk = n - done < (1u << 30) ? n - done : (1u << 30);
    ssize_t k = write(fd, p + done, chunk);
    if (k > 0) done += (size_t)k;
    else if (k == 0) e = EIO;
    else if (errno != EINTR) e = errno;
  }
  if (!e && fsync(fd) != 0) {
    e = errno;
    what = "fsync failed";
  }
  if (close(fd) != 0 && !e) {
    e = errno;
    what = "close failed";
  }
  if (e) set_err(err, errlen, "%s: %s after %zu of %zu bytes: %s", path, what, done, n,
                 strerror(e));
  return e ? -1 : 0;
}

static int save_quiet(const char *dir, const sd_sddit *s, const sd_ckpt_info *info, int keep,
                      char *path_out, size_t path_len, char *err, size_t errlen) {
  char final[4096], tmp[4100], base[64];
  snprintf(base, sizeof base, "ckpt-%08ld.h5", info->step);
  if (snprintf(final, sizeof final, "%s/%s", dir, base) >= (int)sizeof final ||
      (path_out && strlen(final) >= path_len)) {
    set_err(err, errlen, "checkpoint path '%s/%s' is too long", dir, base);
    return -1;
  }
  snprintf(tmp, sizeof tmp, "%s.tmp", final);
  if (make_dirs(dir, err, errlen) != 0) return -1;
  image im = {NULL, 0};
  size_t len = 0;
  int rc = build_image(tmp, s, info, &im, &len, err, errlen);
  if (rc == 0) rc = write_file(tmp, im.mem, len, err, errlen);
  free(im.mem);
  if (rc == 0 && rename(tmp, final) != 0) {
    set_err(err, errlen, "cannot rename %s to %s: %s", tmp, final, strerror(errno));
    rc = -1;
  }
  if (rc != 0) {
    unlink(tmp);
    return -1;
  }
  // the file is complete and in place; a failure here means its name may not be durable yet
  if (fsync_dir(dir, err, errlen) != 0) return -1;
  if (path_out) snprintf(path_out, path_len, "%s", final);
  prune(dir, keep, base);
  return 0;
}

int sd_ckpt_save(const char *dir, const sd_sddit *s, const sd_ckpt_info *info, int keep,
                 char *path_out, size_t path_len, char *err, size_t errlen) {
  if (err && errlen) err[0] = '\0';
  if (!dir || !dir[0] || !s || !info || info->step < 0) {
    set_err(err, errlen, "sd_ckpt_save: needs a directory, a model and info with step >= 0");
    return -1;
  }
  quiet q;
  quiet_begin(&q);
  int rc = save_quiet(dir, s, info, keep, path_out, path_len, err, errlen);
  quiet_end(&q);
  return rc;
}

// ---- reading -------------------------------------------------------------------------------

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
  unsigned long long total, dit_total, head_total, prototypes;
} ckpt_header;

// Reads a scalar numeric attribute converted to mtype. 0, or -1 if missing or not numeric.
static int read_attr_num(hid_t obj, const char *name, hid_t mtype, void *v) {
  if (H5Aexists(obj, name) <= 0) return -1;
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  if (a < 0) return -1;
  hid_t sp = H5Aget_space(a), t = H5Aget_type(a);
  H5T_class_t cls = H5Tget_class(t);
  int rc = -1;
  if (H5Sget_simple_extent_npoints(sp) == 1 && (cls == H5T_INTEGER || cls == H5T_FLOAT))
    rc = H5Aread(a, mtype, v) < 0 ? -1 : 0;
  H5Tclose(t);
  H5Sclose(sp);
  H5Aclose(a);
  return rc;
}

// Reads a scalar string attribute (fixed or variable length) into a malloc'ed string, or NULL.
static char *read_attr_str(hid_t obj, const char *name) {
  if (H5Aexists(obj, name) <= 0) return NULL;
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  if (a < 0) return NULL;
  hid_t sp = H5Aget_space(a), t = H5Aget_type(a);
  char *out = NULL;
  if (H5Tget_class(t) == H5T_STRING && H5Sget_simple_extent_npoints(sp) == 1) {
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_cset(mt, H5Tget_cset(t));
    if (H5Tis_variable_str(t) > 0) {
      char *p = NULL;
      H5Tset_size(mt, H5T_VARIABLE);
      if (H5Aread(a, mt, &p) >= 0) {
        out = strdup(p ? p : "");
        H5free_memory(p);
      }
    } else {
      size_t n = H5Tget_size(t);
      H5Tset_size(mt, n + 1);
      H5Tset_strpad(mt, H5T_STR_NULLTERM);
      out = calloc(n + 2, 1);
      if (out && H5Aread(a, mt, out) < 0) {
        free(out);
        out = NULL;
      }
    }
    H5Tclose(mt);
  }
  H5Tclose(t);
  H5Sclose(sp);
  H5Aclose(a);
  return out;
}

// Opens r->path read-only into r->file.
static int open_file(reader *r) {
  struct stat st;
  if (stat(r->path, &st) != 0) return r_fail(r, "cannot open: %s", strerror(errno));
  if (S_ISDIR(st.st_mode)) return r_fail(r, "is a directory, not a checkpoint file");
  errno = 0;
  htri_t is = H5Fis_hdf5(r->path);
  if (is <= 0) {
    char reason[256];
    h5_reason(reason, sizeof reason, errno);
    return r_fail(r, "is truncated or not an HDF5 file (%s)",
                  is == 0 ? "no HDF5 signature" : reason);
  }
  errno = 0;
  r->file = H5Fopen(r->path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (r->file < 0) {
    char reason[256];
    h5_reason(reason, sizeof reason, errno);
    return r_fail(r, "is truncated or not an HDF5 file (%s)", reason);
  }
  return 0;
}

static int read_header(reader *r, ckpt_header *h) {
  memset(h, 0, sizeof *h);
  char *format = read_attr_str(r->file, "format");
  if (!format) return r_fail(r, "not an SD-DiT checkpoint (no 'format' attribute)");
  int is_ckpt = strcmp(format, SD_CKPT_FORMAT) == 0;
  if (!is_ckpt) r_fail(r, "not an SD-DiT checkpoint (format is '%s', want '%s')", format,
                       SD_CKPT_FORMAT);
  free(format);
  if (!is_ckpt) return -1;
  if (read_attr_num(r->file, "format_version", H5T_NATIVE_LLONG, &h->version) != 0)
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
    if (read_attr_num(r->file, nums[i].name, nums[i].type, nums[i].v) != 0)
      return r_fail(r, "attribute '%s' is missing or not a number", nums[i].name);
  h->info.step = (long)step;
  h->info.data_cursor = (long)cursor;
  h->info.world_size = (int)world;
  char *rev = read_attr_str(r->file, "git_rev");
  if (!rev) return r_fail(r, "attribute 'git_rev' is missing or not a string");
  snprintf(h->info.git_rev, sizeof h->info.git_rev, "%s", rev);
  free(rev);
  h->info.config_text = read_attr_str(r->file, "config");
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
  fprintf(out, "  git_rev        %s\n", h->info.git_rev);
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

static hid_t kind_memtype(ds_kind k) {
  switch (k) {
    case KIND_F32: return H5Tcopy(H5T_NATIVE_FLOAT);
    case KIND_U64: return H5Tcopy(H5T_NATIVE_UINT64);
    case KIND_I32: return H5Tcopy(H5T_NATIVE_INT32);
    default: return name_type();
  }
}

// Whether the stored element type is the one the layout says.
static int type_matches(hid_t ftype, ds_kind k) {
  H5T_class_t cls = H5Tget_class(ftype);
  size_t size = H5Tget_size(ftype);
  switch (k) {
    case KIND_F32: return cls == H5T_FLOAT && size == 4;
    case KIND_U64: return cls == H5T_INTEGER && size == 8;
    case KIND_I32: return cls == H5T_INTEGER && size == 4;
    default: return cls == H5T_STRING && H5Tis_variable_str(ftype) == 0 && size == NAME_LEN;
  }
}

// Reads dataset ds (shape sp->dims) into dst, or into a scratch buffer when dst is NULL, in
// slabs along the first dimension; hashes the bytes when hash is non-NULL.
static int read_slabs(reader *r, const ds_spec *sp, hid_t ds, void *dst, uint64_t *hash) {
  hid_t mt = kind_memtype(sp->kind);
  size_t el = kind_size(sp->kind);
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
      h5_reason(reason, sizeof reason, errno);
      rc = r_fail(r, "cannot read dataset %s: %s", sp->name, reason);
    } else if (hash) {
      *hash = hash_le(*hash, buf, nr * row, el, sp->kind != KIND_NAME);
    }
    H5Sclose(msp);
  }
  H5Sclose(fsp);
  H5Tclose(mt);
  free(scratch);
  return rc;
}

// Opens a dataset and checks its type and shape against sp. Returns the id, or -1.
static hid_t open_dataset(reader *r, const ds_spec *sp, char *shape, size_t shape_len) {
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
static int check_dataset(reader *r, const ds_spec *sp) {
  char shape[64], status[160];
  unsigned long long stored = 0;
  uint64_t computed = SD_FNV1A64_INIT;
  int was_failed = r->failed, rc = -1;
  hid_t ds = open_dataset(r, sp, shape, sizeof shape);
  snprintf(status, sizeof status, "NOT OK");
  if (ds >= 0) {
    if (read_attr_num(ds, "checksum", H5T_NATIVE_ULLONG, &stored) != 0) {
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
  ds_spec sp[NUM_DATASETS];
  layout(sp, h->total, h->dit_total, h->prototypes, dataset_len(r->file, "/tensors/names"));
  if (r->out) fprintf(r->out, "datasets:\n");
  int rc = 0;
  for (int i = 0; i < NUM_DATASETS; i++) {
    if (check_dataset(r, &sp[i]) != 0) rc = -1;
    if (rc != 0 && !r->out) break;
  }
  return rc;
}

// ---- the tensor table ----------------------------------------------------------------------

typedef struct table {
  int count;
  char *names;         // count * NAME_LEN, null padded
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
  ds_spec sp[NUM_DATASETS];
  unsigned long long n = dataset_len(r->file, "/tensors/names");
  layout(sp, 0, 0, 0, n);
  t->count = (int)n;
  t->names = calloc(n ? n : 1, NAME_LEN);
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
  for (int i = 0; i < t->count; i++) t->names[i * NAME_LEN + NAME_LEN - 1] = '\0';
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
    fprintf(r->out, "  [%d] %-40s %-16s offset %llu numel %llu\n", i, t.names + i * NAME_LEN,
            shape, (unsigned long long)t.offsets[i], (unsigned long long)t.numel[i]);
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
      describe(t.names + i * NAME_LEN, t.shapes + 4 * i, shape_ndim(t.shapes + 4 * i),
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
  ds_spec sp[NUM_DATASETS];
  layout(sp, h->total, h->dit_total, h->prototypes, 0);
  float *dst[NUM_FAMILIES];
  family_ptrs(s, dst);
  float *host = malloc(sizeof(float) * (s->total ? s->total : 1));
  if (!host) return r_fail(r, "cannot allocate %zu bytes", sizeof(float) * s->total);
  char shape[64];
  int rc = 0;
  for (int i = 0; i < NUM_FAMILIES && rc == 0; i++) {
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
  quiet q;
  quiet_begin(&q);
  reader r = {.path = path, .file = -1, .err = err, .errlen = errlen};
  ckpt_header h;
  int rc = check_file(&r, &h);
  if (r.file >= 0) H5Fclose(r.file);
  free(h.info.config_text);
  quiet_end(&q);
  return rc;
}

int sd_ckpt_load(const char *path, sd_sddit *s, sd_ckpt_info *info, char *err, size_t errlen) {
  if (err && errlen) err[0] = '\0';
  if (info) info->config_text = NULL;
  quiet q;
  quiet_begin(&q);
  reader r = {.path = path, .file = -1, .err = err, .errlen = errlen};
  ckpt_header h;
  int rc = check_file(&r, &h);
  if (rc == 0) rc = check_fits(&r, &h, s);
  if (rc == 0 && load_families(&r, &h, s) != 0) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s (the model is partially loaded)", err ? err : "");
    set_err(err, errlen, "%s", msg);
    rc = -1;
  }
  if (r.file >= 0) H5Fclose(r.file);
  if (rc == 0 && info) {
    *info = h.info;
  } else {
    free(h.info.config_text);
  }
  quiet_end(&q);
  return rc;
}

int sd_ckpt_find_latest(const char *dir, char *path, size_t path_len, char *err,
                        size_t errlen) {
  if (err && errlen) err[0] = '\0';
  ckpt_entry *e;
  int n;
  if (list_ckpts(dir, &e, &n) != 0) {
    if (errno == ENOENT) return 0;
    set_err(err, errlen, "cannot list checkpoint directory '%s': %s", dir, strerror(errno));
    return -1;
  }
  int found = 0;
  char p[4400], why[1024];
  for (int i = 0; i < n && !found; i++) {
    snprintf(p, sizeof p, "%s/%s", dir, e[i].name);
    if (sd_ckpt_verify(p, why, sizeof why) == 0) {
      found = 1;
      break;
    }
    size_t pl = strlen(p);
    const char *reason = strncmp(why, p, pl) == 0 && why[pl] == ':' ? why + pl + 2 : why;
    fprintf(stderr, "warning: skipping %s: %s\n", p, reason);
  }
  free(e);
  if (!found) return 0;
  if (strlen(p) >= path_len) {
    set_err(err, errlen, "checkpoint path '%s' does not fit the buffer (%zu bytes)", p,
            path_len);
    return -1;
  }
  snprintf(path, path_len, "%s", p);
  return 1;
}

int sd_ckpt_print_summary(const char *path, FILE *out) {
  char err[1024] = "";
  quiet q;
  quiet_begin(&q);
  reader r = {.path = path, .file = -1, .err = err, .errlen = sizeof err, .out = out};
  ckpt_header h;
  fprintf(out, "checkpoint %s\n", path);
  int rc = check_file(&r, &h);
  if (r.file >= 0 && h.info.config_text) print_table(&r);
  if (r.file >= 0) H5Fclose(r.file);
  free(h.info.config_text);
  if (rc == 0) fprintf(out, "verified: every checksum matches\n");
  else fprintf(out, "NOT VALID: %s\n", err);
  quiet_end(&q);
  return rc;
}
