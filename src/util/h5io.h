// Small HDF5 helpers: read whole datasets as float/int32/double with their shape, read
// numeric and string attributes, write float datasets. Failures are fatal and name file and
// path, except in the attribute readers marked "never fatal".
#ifndef SD_H5IO_H
#define SD_H5IO_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sd_h5_shape {
  int ndim;
  size_t dims[8];
  size_t numel;
} sd_h5_shape;

// Opens a file read-only; fatal with the file name if it is missing or not HDF5.
hid_t sd_h5_open_read(const char *path);
// 1 if the link (dataset or group) exists, else 0.
int sd_h5_exists(hid_t file, const char *path);
// Reads a dataset converted to the wanted type (malloc'ed; free()). shape may be NULL.
float *sd_h5_read_f32(hid_t file, const char *path, sd_h5_shape *shape);
int32_t *sd_h5_read_i32(hid_t file, const char *path, sd_h5_shape *shape);
double sd_h5_read_f64_scalar(hid_t file, const char *path);
// Integer attribute `name` of the object at path.
long long sd_h5_attr_int(hid_t file, const char *path, const char *name);
// Floating-point attribute `name` of the object at path.
double sd_h5_attr_double(hid_t file, const char *path, const char *name);
// Scalar string attribute (fixed or variable length, ASCII or UTF-8) of the object obj (a
// file, group or dataset) as a malloc'ed string (free()); never fatal: NULL if missing, not
// a string or not a single value.
char *sd_h5_attr_string_dup(hid_t obj, const char *name);
// The same into buf (truncated to len - 1 bytes): 0, or -1 (buf "") if sd_h5_attr_string_dup
// gives NULL.
int sd_h5_attr_string(hid_t f, const char *name, char *buf, size_t len);
// Scalar numeric (integer or floating-point) attribute of obj converted to mtype into *v;
// never fatal: 0, or -1 if missing, not a number or not a single value.
int sd_h5_attr_num(hid_t obj, const char *name, hid_t mtype, void *v);
// Writes a float dataset (creating intermediate groups).
void sd_h5_write_f32(hid_t file, const char *path, const float *data, int ndim,
                     const size_t *dims);
// The file name of an open file (for messages).
const char *sd_h5_file_name(hid_t file, char *buf, size_t len);

#endif
