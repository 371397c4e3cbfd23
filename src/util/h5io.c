// Small HDF5 helpers (see h5io.h).
#include "util/h5io.h"
#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *sd_h5_file_name(hid_t file, char *buf, size_t len) {
  if (H5Fget_name(file, buf, len) < 0) snprintf(buf, len, "?");
  return buf;
}

hid_t sd_h5_open_read(const char *path) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);  // we report errors ourselves
  FILE *f = fopen(path, "rb");
  if (!f) SD_FATAL("cannot open '%s': no such file or not readable", path);
  fclose(f);
  if (H5Fis_hdf5(path) <= 0) SD_FATAL("'%s' is not an HDF5 file", path);
  hid_t id = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (id < 0) SD_FATAL("cannot open HDF5 file '%s' (truncated or corrupt?)", path);
  return id;
}

int sd_h5_exists(hid_t file, const char *path) {
  // check each prefix so a missing intermediate group is not an error
  char buf[512];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *s = buf + 1; ; s++) {
    if (*s == '/' || *s == '\0') {
      char save = *s;
      *s = '\0';
      if (H5Lexists(file, buf, H5P_DEFAULT) <= 0) return 0;
      *s = save;
      if (save == '\0') return 1;
    }
  }
}

static void *read_as(hid_t file, const char *path, hid_t memtype, size_t elsize,
                     sd_h5_shape *shape) {
  char fname[256];
  if (!sd_h5_exists(file, path))
    SD_FATAL("%s: dataset '%s' is missing", sd_h5_file_name(file, fname, sizeof fname), path);
  hid_t ds = H5Dopen2(file, path, H5P_DEFAULT);
  if (ds < 0)
    SD_FATAL("%s: '%s' is not a dataset", sd_h5_file_name(file, fname, sizeof fname), path);
  hid_t sp = H5Dget_space(ds);
  hsize_t dims[8] = {0};
  int nd = H5Sget_simple_extent_ndims(sp);
  if (nd < 0 || nd > 8)
    SD_FATAL("%s: dataset '%s' has an unsupported rank", sd_h5_file_name(file, fname, sizeof fname), path);
  H5Sget_simple_extent_dims(sp, dims, NULL);
  size_t n = 1;
  for (int i = 0; i < nd; i++) n *= dims[i];
  void *buf = sd_xmalloc(n * elsize, path);
  if (H5Dread(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
    SD_FATAL("%s: cannot read dataset '%s' (wrong type or corrupt data)",
             sd_h5_file_name(file, fname, sizeof fname), path);
  if (shape) {
    shape->ndim = nd;
    shape->numel = n;
    for (int i = 0; i < nd; i++) shape->dims[i] = dims[i];
  }
  H5Sclose(sp);
  H5Dclose(ds);
  return buf;
}

float *sd_h5_read_f32(hid_t file, const char *path, sd_h5_shape *shape) {
  return read_as(file, path, H5T_NATIVE_FLOAT, sizeof(float), shape);
}

int32_t *sd_h5_read_i32(hid_t file, const char *path, sd_h5_shape *shape) {
  return read_as(file, path, H5T_NATIVE_INT32, sizeof(int32_t), shape);
}

double sd_h5_read_f64_scalar(hid_t file, const char *path) {
  sd_h5_shape s;
  double *v = read_as(file, path, H5T_NATIVE_DOUBLE, sizeof(double), &s);
  char fname[256];
  if (s.numel != 1)
    SD_FATAL("%s: '%s' should hold one value, holds %zu",
             sd_h5_file_name(file, fname, sizeof fname), path, s.numel);
  double r = v[0];
  free(v);
  return r;
}

long long sd_h5_attr_int(hid_t file, const char *path, const char *name) {
  char fname[256];
  if (H5Aexists_by_name(file, path, name, H5P_DEFAULT) <= 0)
    SD_FATAL("%s: attribute '%s' of '%s' is missing",
             sd_h5_file_name(file, fname, sizeof fname), name, path);
  hid_t at = H5Aopen_by_name(file, path, name, H5P_DEFAULT, H5P_DEFAULT);
  long long v = 0;
  if (H5Aread(at, H5T_NATIVE_LLONG, &v) < 0)
    SD_FATAL("%s: attribute '%s' of '%s' is not an integer",
             sd_h5_file_name(file, fname, sizeof fname), name, path);
  H5Aclose(at);
  return v;
}

double sd_h5_attr_double(hid_t file, const char *path, const char *name) {
  char fname[256];
  if (H5Aexists_by_name(file, path, name, H5P_DEFAULT) <= 0)
    SD_FATAL("%s: attribute '%s' of '%s' is missing",
             sd_h5_file_name(file, fname, sizeof fname), name, path);
  hid_t at = H5Aopen_by_name(file, path, name, H5P_DEFAULT, H5P_DEFAULT);
  double v = 0;
  if (H5Aread(at, H5T_NATIVE_DOUBLE, &v) < 0)
    SD_FATAL("%s: attribute '%s' of '%s' is not a number",
             sd_h5_file_name(file, fname, sizeof fname), name, path);
  H5Aclose(at);
  return v;
}

void sd_h5_write_f32(hid_t file, const char *path, const float *data, int ndim,
                     const size_t *dims) {
  hsize_t hd[8];
  for (int i = 0; i < ndim; i++) hd[i] = dims[i];
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t sp = H5Screate_simple(ndim, hd, NULL);
  hid_t ds = H5Dcreate2(file, path, H5T_IEEE_F32LE, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  char fname[256];
  if (ds < 0 || H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    SD_FATAL("%s: cannot write dataset '%s'", sd_h5_file_name(file, fname, sizeof fname), path);
  H5Dclose(ds);
  H5Sclose(sp);
  H5Pclose(lcpl);
}

char *sd_h5_attr_string_dup(hid_t obj, const char *name) {
  if (H5Aexists(obj, name) <= 0) return NULL;
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  if (a < 0) return NULL;
  hid_t sp = H5Aget_space(a), t = H5Aget_type(a);
  char *out = NULL;
  if (H5Tget_class(t) == H5T_STRING && H5Sget_simple_extent_npoints(sp) == 1) {
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_cset(mt, H5Tget_cset(t));  // HDF5 does not convert between ASCII and UTF-8
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

int sd_h5_attr_string(hid_t f, const char *name, char *buf, size_t len) {
  buf[0] = '\0';
  char *v = sd_h5_attr_string_dup(f, name);
  if (!v) return -1;
  snprintf(buf, len, "%s", v);
  free(v);
  return 0;
}

int sd_h5_attr_num(hid_t obj, const char *name, hid_t mtype, void *v) {
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

