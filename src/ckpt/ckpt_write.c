// Saving a checkpoint (sd_ckpt_save): the file is built in host memory with HDF5's core driver
// (v1.8 object format, readable from h5py; every dataset contiguous with its "checksum"
// attribute), then written with plain write/fsync to <name>.tmp, renamed, and the directory
// fsynced, so every disk error is ours to report (see build_image). Needs host memory for the
// whole file plus one family buffer.
#include "ckpt/ckpt.h"
#include "ckpt/ckpt_files.h"
#include "ckpt/ckpt_layout.h"
#include "ckpt/ckpt_msg.h"
#include "util/files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// ---- the HDF5 objects ----------------------------------------------------------------------

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
    sd_ckpt_h5_reason(w->reason, sizeof w->reason, saved_errno);
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
static int write_dataset(writer *w, const sd_ckpt_ds_spec *sp, const void *data) {
  char what[128];
  snprintf(what, sizeof what, "cannot write dataset %s", sp->name);
  hid_t ftype, mtype;
  switch (sp->kind) {
    case SD_CKPT_F32: ftype = H5T_IEEE_F32LE; mtype = H5T_NATIVE_FLOAT; break;
    case SD_CKPT_U64: ftype = H5T_STD_U64LE; mtype = H5T_NATIVE_UINT64; break;
    case SD_CKPT_I32: ftype = H5T_STD_I32LE; mtype = H5T_NATIVE_INT32; break;
    default: ftype = mtype = sd_ckpt_name_type(); break;
  }
  size_t n = (size_t)sp->dims[0] * (sp->ndim == 2 ? (size_t)sp->dims[1] : 1);
  unsigned long long sum = sd_ckpt_hash_le(SD_FNV1A64_INIT, data, n,
                                           sd_ckpt_kind_size(sp->kind), sp->kind != SD_CKPT_NAME);
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
  if (sp->kind == SD_CKPT_NAME) H5Tclose(ftype);
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
static int write_families(writer *w, const sd_sddit *s, const sd_ckpt_ds_spec *sp) {
  float *src[SD_CKPT_NUM_FAMILIES];
  sd_ckpt_family_ptrs(s, src);
  float *host = malloc(sizeof(float) * (s->total ? s->total : 1));
  if (!host) {
    w->failed = 1;
    snprintf(w->what, sizeof w->what, "cannot allocate %zu bytes", sizeof(float) * s->total);
    snprintf(w->reason, sizeof w->reason, "%s", strerror(ENOMEM));
    return -1;
  }
  int rc = 0;
  for (int i = 0; i < SD_CKPT_NUM_FAMILIES && rc == 0; i++) {
    s->be->ops->to_host(s->be, host, src[i], sizeof(float) * (size_t)sp[i].dims[0]);
    rc = write_dataset(w, &sp[i], host);
  }
  free(host);
  return rc;
}

static int write_table(writer *w, const sd_param_table *t, const sd_ckpt_ds_spec *sp) {
  size_t n = (size_t)t->count;
  char *names = calloc(n ? n : 1, SD_CKPT_NAME_LEN);
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
      strncpy(names + i * SD_CKPT_NAME_LEN, p->name, SD_CKPT_NAME_LEN - 1);
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

// ---- the in-memory file and the disk -------------------------------------------------------

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
  sd_ckpt_ds_spec sp[SD_CKPT_NUM_DATASETS];
  sd_ckpt_layout(sp, s->total, s->dit_total, (unsigned long long)s->hcfg.prototypes,
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
  if (w.failed) sd_ckpt_set_err(err, errlen, "%s: %s: %s", tmp, w.what, w.reason);
  return w.failed ? -1 : 0;
}

// Writes n bytes to path (created or truncated) and fsyncs it.
static int write_file(const char *path, const unsigned char *p, size_t n, char *err,
                      size_t errlen) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) {
    sd_ckpt_set_err(err, errlen, "%s: cannot create: %s", path, strerror(errno));
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
  if (e) sd_ckpt_set_err(err, errlen, "%s: %s after %zu of %zu bytes: %s", path, what, done,
                         n, strerror(e));
  return e ? -1 : 0;
}

// ---- sd_ckpt_save ---------------------------------------------------------------------------

static int save_quiet(const char *dir, const sd_sddit *s, const sd_ckpt_info *info, int keep,
                      char *path_out, size_t path_len, char *err, size_t errlen) {
  char final[4096], tmp[4100], base[64];
  snprintf(base, sizeof base, "ckpt-%08ld.h5", info->step);
  if (snprintf(final, sizeof final, "%s/%s", dir, base) >= (int)sizeof final ||
      (path_out && strlen(final) >= path_len)) {
    sd_ckpt_set_err(err, errlen, "checkpoint path '%s/%s' is too long", dir, base);
    return -1;
  }
  snprintf(tmp, sizeof tmp, "%s.tmp", final);
  if (sd_make_dirs(dir, err, errlen) != 0) return -1;
  image im = {NULL, 0};
  size_t len = 0;
  int rc = build_image(tmp, s, info, &im, &len, err, errlen);
  if (rc == 0) rc = write_file(tmp, im.mem, len, err, errlen);
  free(im.mem);
  if (rc == 0 && rename(tmp, final) != 0) {
    sd_ckpt_set_err(err, errlen, "cannot rename %s to %s: %s", tmp, final, strerror(errno));
    rc = -1;
  }
  if (rc != 0) {
    unlink(tmp);
    return -1;
  }
  // the file is complete and in place; a failure here means its name may not be durable yet
  if (sd_ckpt_fsync_dir(dir, err, errlen) != 0) return -1;
  if (path_out) snprintf(path_out, path_len, "%s", final);
  sd_ckpt_prune(dir, keep, base);
  return 0;
}

int sd_ckpt_save(const char *dir, const sd_sddit *s, const sd_ckpt_info *info, int keep,
                 char *path_out, size_t path_len, char *err, size_t errlen) {
  if (err && errlen) err[0] = '\0';
  if (!dir || !dir[0] || !s || !info || info->step < 0) {
    sd_ckpt_set_err(err, errlen,
                    "sd_ckpt_save: needs a directory, a model and info with step >= 0");
    return -1;
  }
  sd_ckpt_quiet q;
  sd_ckpt_quiet_begin(&q);
  int rc = save_quiet(dir, s, info, keep, path_out, path_len, err, errlen);
  sd_ckpt_quiet_end(&q);
  return rc;
}
