// The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian
// header length N, N bytes of UTF-8 JSON
//   {"__metadata__": {"key": "value", ...},
//    "name": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}, ...}
// then the raw little-endian tensor bytes; offsets count from the first byte after the header.
//
// The writer stores float32 tensors contiguously in the order given (JSON keys in the same
// order, __metadata__ first), pads the header with spaces to a multiple of 8 bytes, and writes
// <path>.tmp, fsyncs it, renames it to <path> and fsyncs the directory.
//
// The reader is strict: the header length fits the file, the JSON is well formed (parsed by
// cJSON, with what RFC 8259 forbids and cJSON accepts refused as well: raw control characters,
// invalid UTF-8 or \u0000 in strings, malformed numbers, keys repeated in one object; nesting
// at most 64 deep; see safetensors_json.h), shapes and offsets are plain non-negative integers
// below 2^53 (no sign, fraction or exponent), metadata values are strings, each tensor entry
// has exactly dtype, shape and data_offsets, the dtype is a safetensors dtype, end - begin =
// numel * element size, and the tensors tile the data section exactly (sorted by offset: no
// gap, no overlap, nothing after the last). Every message starts with the file name and names
// the tensor, the repeated key or the byte of the header where the problem is.
// F32, F16 and BF16 tensors can be read (converted to float32). Every function returns its
// errors as messages; none exits.
#ifndef SD_SAFETENSORS_H
#define SD_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define SD_ST_MAX_DIMS 8
#define SD_ST_MAX_HEADER (100u << 20)  // largest header accepted (as the reference library)

typedef enum {
  SD_ST_BOOL, SD_ST_U8, SD_ST_I8, SD_ST_F8_E5M2, SD_ST_F8_E4M3, SD_ST_I16, SD_ST_U16,
  SD_ST_F16, SD_ST_BF16, SD_ST_I32, SD_ST_U32, SD_ST_F32, SD_ST_F64, SD_ST_I64, SD_ST_U64,
  SD_ST_NUM_DTYPES
} sd_st_dtype;

// "F32" etc., and bytes per element.
const char *sd_st_dtype_name(sd_st_dtype t);
size_t sd_st_dtype_size(sd_st_dtype t);

typedef struct sd_st_kv {
  const char *key, *value;
} sd_st_kv;

// One float32 tensor to write.
typedef struct sd_st_out {
  const char *name;
  int ndim;                         // 0 .. SD_ST_MAX_DIMS (0: a scalar)
  int64_t shape[SD_ST_MAX_DIMS];
  const float *data;                // numel floats (host order; written little-endian)
} sd_st_out;

// Writes the file (see above). Names must be unique, non-empty and not "__metadata__"; metadata
// keys unique. Returns 0, or -1 with a message naming the path; <path>.tmp is removed and an
// existing <path> is untouched on failure.
int sd_st_write_f32(const char *path, const sd_st_kv *meta, int nmeta, const sd_st_out *t,
                    int n, char *err, size_t errlen);

typedef struct sd_st_tensor {
  char *name;
  sd_st_dtype dtype;
  int ndim;
  int64_t shape[SD_ST_MAX_DIMS];
  uint64_t numel;
  uint64_t begin, end;              // byte offsets in the data section
} sd_st_tensor;

typedef struct sd_st_file {
  char *path;
  int fd;
  uint64_t file_size, header_len;   // header_len = N
  uint64_t data_start;              // 8 + N
  int count;                        // tensors, in the order of the JSON header
  sd_st_tensor *tensors;
  int nmeta;
  char **meta_keys, **meta_values;  // in the order of the JSON header
} sd_st_file;

// Opens and validates everything but the tensor values. Returns 0, or -1 with a message that
// starts with the path (st is then empty; sd_st_close is still allowed).
int sd_st_open(sd_st_file *st, const char *path, char *err, size_t errlen);
void sd_st_close(sd_st_file *st);
// Index of a tensor, or -1.
int sd_st_find(const sd_st_file *st, const char *name);
// A metadata value, or NULL.
const char *sd_st_meta(const sd_st_file *st, const char *key);
// Reads tensor i converted to float32 (numel floats into dst). F32, F16 and BF16 only; any other
// dtype, or a read error, gives -1 with a message naming the tensor.
int sd_st_read_f32(const sd_st_file *st, int i, float *dst, char *err, size_t errlen);
// "(d0, d1, ...)" into buf.
void sd_st_format_shape(const int64_t *shape, int ndim, char *buf, size_t len);

#endif
