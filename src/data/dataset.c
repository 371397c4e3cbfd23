// Format-version-1 dataset checks, row reads and summaries (see dataset.h).
#include "util/clock.h"
#include "data/dataset.h"
#include "error.h"
#include "util/h5io.h"

#include <errno.h>
#include <stdarg.h>
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

float sd_half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);  // inf or nan
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;  // +-0
  } else {  // subnormal: normalise
    int e = -1;
    do {
      man <<= 1;
      e++;
    } while (!(man & 0x400u));
    bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
  }
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

uint16_t sd_float_to_half(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0);
  if (ax >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: overflow to inf
  if (ax < 0x38800000u) {                        // below the smallest normal half
    float a;
    memcpy(&a, &ax, sizeof a);
    // subnormal: round a / 2^-24 to the nearest even integer
    float q = a * 16777216.0f;
    uint32_t r = (uint32_t)q;
    float frac = q - (float)r;
    if (frac > 0.5f || (frac == 0.5f && (r & 1u))) r++;
    return sign | (uint16_t)r;
  }
  uint32_t e = (ax >> 23) - 112u, m = ax & 0x7fffffu;
  uint32_t h = (e << 10) | (m >> 13);
  uint32_t rest = m & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
  return sign | (uint16_t)h;
}

// ---- helpers that report instead of exiting ----


// Integer attribute of the root group: 0, or -1 if missing / not an integer.
static int root_attr_long(hid_t f, const char *name, long *out) {
  if (H5Aexists(f, name) <= 0) return -1;
  hid_t a = H5Aopen(f, name, H5P_DEFAULT);
  if (a < 0) return -1;
  hid_t t = H5Aget_type(a);
  int ok = H5Tget_class(t) == H5T_INTEGER;
  long long v = 0;
  if (ok) ok = H5Aread(a, H5T_NATIVE_LLONG, &v) >= 0;
  H5Tclose(t);
  H5Aclose(a);
  if (!ok) return -1;
  *out = (long)v;
  return 0;
}

static int root_attr_double(hid_t f, const char *name, double *out) {
  if (H5Aexists(f, name) <= 0) return -1;
  hid_t a = H5Aopen(f, name, H5P_DEFAULT);
  if (a < 0) return -1;
  hid_t t = H5Aget_type(a);
  H5T_class_t cl = H5Tget_class(t);
  int ok = (cl == H5T_FLOAT || cl == H5T_INTEGER) && H5Aread(a, H5T_NATIVE_DOUBLE, out) >= 0;
  H5Tclose(t);
  H5Aclose(a);
  return ok ? 0 : -1;
}

static const char *type_name(hid_t t, char *buf, size_t len) {
  size_t sz = H5Tget_size(t);
  switch (H5Tget_class(t)) {
    case H5T_FLOAT: snprintf(buf, len, "float%zu", 8 * sz); break;
    case H5T_INTEGER:
      snprintf(buf, len, "%sint%zu", H5Tget_sign(t) == H5T_SGN_NONE ? "u" : "", 8 * sz);
      break;
    case H5T_STRING: snprintf(buf, len, "string"); break;
    case H5T_COMPOUND: snprintf(buf, len, "compound"); break;
    default: snprintf(buf, len, "an unsupported type"); break;
  }
  return buf;
}

static void shape_text(const hsize_t *d, int nd, char *buf, size_t len) {
  size_t used = (size_t)snprintf(buf, len, "(");
  for (int i = 0; i < nd && used < len; i++)
    used += (size_t)snprintf(buf + used, len - used, "%s%llu", i ? ", " : "",
                             (unsigned long long)d[i]);
  if (used < len) snprintf(buf + used, len - used, "%s)", nd == 1 ? "," : "");
}


// ---- reading rows ----

static int read_rows_open(hid_t ds, const sd_dataset_info *info, long first, long count,
                          float *out, char *err, size_t errlen) {
  const size_t row = (size_t)info->stored_channels * info->h * info->w;
  hsize_t start[4] = {(hsize_t)first, 0, 0, 0};
  hsize_t cnt[4] = {(hsize_t)count, (hsize_t)info->stored_channels, (hsize_t)info->h,
                    (hsize_t)info->w};
  hid_t fs = H5Dget_space(ds);
  hid_t ms = H5Screate_simple(4, cnt, NULL);
  int rc = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL) < 0 ? -1 : 0;
  if (rc == 0 && info->half) {
    uint16_t *raw = malloc(sizeof(uint16_t) * row * (size_t)count);
    hid_t ft = H5Dget_type(ds);
    rc = raw && H5Dread(ds, ft, ms, fs, H5P_DEFAULT, raw) >= 0 ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < row * (size_t)count; i++) out[i] = sd_half_to_float(raw[i]);
    H5Tclose(ft);
    free(raw);
  } else if (rc == 0) {
    rc = H5Dread(ds, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, out) >= 0 ? 0 : -1;
  }
  H5Sclose(ms);
  H5Sclose(fs);
  if (rc)
    return sd_errorf(err, errlen, "%s: cannot read %s rows %ld..%ld (file truncated or corrupt?)",
                info->path, info->var, first, first + count - 1);
  return 0;
}

int sd_dataset_read_rows(const sd_dataset_info *info, long first, long count, float *out,
                         char *err, size_t errlen) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  hid_t f = H5Fopen(info->path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return sd_errorf(err, errlen, "%s: cannot open (truncated or not HDF5?)", info->path);
  hid_t ds = H5Dopen2(f, info->var, H5P_DEFAULT);
  int rc = ds < 0 ? sd_errorf(err, errlen, "%s: cannot open %s", info->path, info->var)
                  : read_rows_open(ds, info, first, count, out, err, errlen);
  if (ds >= 0) H5Dclose(ds);
  H5Fclose(f);
  return rc;
}

// ---- the checks ----

// An open dataset with its type, rank, dims and printed shape (close with close_probe).
typedef struct probe {
  hid_t ds, space, type;
  int nd;
  hsize_t d[8];
  char shape[128];
} probe;

static int open_probe(hid_t f, const char *name, probe *pr) {
  memset(pr, 0, sizeof *pr);
  pr->ds = H5Dopen2(f, name, H5P_DEFAULT);
  if (pr->ds < 0) return -1;
  pr->space = H5Dget_space(pr->ds);
  pr->type = H5Dget_type(pr->ds);
  pr->nd = H5Sget_simple_extent_ndims(pr->space);
  if (pr->nd > 0 && pr->nd <= 8) H5Sget_simple_extent_dims(pr->space, pr->d, NULL);
  shape_text(pr->d, pr->nd > 0 && pr->nd <= 8 ? pr->nd : 0, pr->shape, sizeof pr->shape);
  return 0;
}

static void close_probe(probe *pr) {
  H5Tclose(pr->type);
  H5Sclose(pr->space);
  H5Dclose(pr->ds);
}

static int check_attributes(hid_t f, sd_dataset_info *info, char *err, size_t errlen) {
  const char *p = info->path;
  char *fmt = sd_h5_attr_string_dup(f, "format");
  if (!fmt)
    return sd_errorf(err, errlen,
                "%s: root attribute 'format' is missing or not a string (a format-1 dataset "
                "has format = \"sddit-latents\"; write one with data-prep/)", p);
  int bad = 0;
  if (strcmp(fmt, "sddit-checkpoint") == 0)
    bad = sd_errorf(err, errlen, "%s: is a checkpoint, not a dataset (format = \"%s\")", p, fmt);
  else if (strcmp(fmt, "sddit-latents") != 0)
    bad = sd_errorf(err, errlen, "%s: root attribute format is \"%s\", expected \"sddit-latents\"",
                p, fmt);
  free(fmt);
  if (bad) return bad;
  long version = 0;
  if (root_attr_long(f, "format_version", &version) != 0)
    return sd_errorf(err, errlen, "%s: root attribute 'format_version' is missing or not an integer",
                p);
  if (version != 1)
    return sd_errorf(err, errlen, "%s: format_version is %ld; this build reads version 1", p,
                version);
  const char *ints[] = {"num_classes", "image_size", "latent_channels"};
  int *dst[] = {&info->num_classes, &info->image_size, &info->latent_channels};
  for (int i = 0; i < 3; i++) {
    long v = 0;
    if (root_attr_long(f, ints[i], &v) != 0)
      return sd_errorf(err, errlen, "%s: root attribute '%s' is missing or not an integer", p,
                  ints[i]);
    if (v < 1 || v > (1L << 30))
      return sd_errorf(err, errlen, "%s: root attribute %s = %ld must be positive", p, ints[i], v);
    *dst[i] = (int)v;
  }
  if (root_attr_double(f, "scale_factor", &info->scale_factor) != 0)
    return sd_errorf(err, errlen, "%s: root attribute 'scale_factor' is missing or not a number", p);
  if (!isfinite(info->scale_factor) || info->scale_factor <= 0)
    return sd_errorf(err, errlen, "%s: root attribute scale_factor = %g must be positive", p,
                info->scale_factor);
  return 0;
}

char *sd_dataset_text_attr(const char *path, const char *name) {
  char *v = NULL;
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  hid_t f = H5Fis_hdf5(path) > 0 ? H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT) : -1;
  if (f >= 0) {
    v = sd_h5_attr_string_dup(f, name);
    H5Fclose(f);
  }
  if (!v) {
    v = sd_xmalloc(sizeof "unknown", name);
    memcpy(v, "unknown", sizeof "unknown");
  }
  return v;
}

static int check_values_layout(hid_t f, sd_dataset_info *info, char *err, size_t errlen) {
  const char *p = info->path;
  int has_lat = H5Lexists(f, "latents", H5P_DEFAULT) > 0;
  int has_mom = H5Lexists(f, "moments", H5P_DEFAULT) > 0;
  if (!has_lat && !has_mom)
    return sd_errorf(err, errlen, "%s: has neither /latents nor /moments", p);
  if (has_lat && has_mom)
    return sd_errorf(err, errlen, "%s: has both /latents and /moments; keep one", p);
  info->moments = has_mom;
  snprintf(info->var, sizeof info->var, "%s", has_mom ? "/moments" : "/latents");
  probe pr;
  if (open_probe(f, info->var, &pr) != 0)
    return sd_errorf(err, errlen, "%s: %s is not a dataset", p, info->var);
  const hid_t t = pr.type;
  const int nd = pr.nd;
  const hsize_t *d = pr.d;
  const char *shape = pr.shape;
  char tn[32];
  int rc = 0;
  size_t sz = H5Tget_size(t);
  const char *want = has_mom ? "(N, 2C, H, W)" : "(N, C, H, W)";
  if (nd != 4) {
    rc = sd_errorf(err, errlen, "%s: %s has shape %s but must be %s", p, info->var, shape, want);
  } else if (H5Tget_class(t) != H5T_FLOAT || (sz != 2 && sz != 4)) {
    rc = sd_errorf(err, errlen, "%s: %s has type %s but must be float16 or float32", p, info->var,
              type_name(t, tn, sizeof tn));
  } else if (d[0] < 1) {
    rc = sd_errorf(err, errlen, "%s: %s has no samples (shape %s)", p, info->var, shape);
  } else if (d[2] != d[3]) {
    rc = sd_errorf(err, errlen, "%s: %s has shape %s: samples must be square (H = W)", p, info->var,
              shape);
  } else if (has_mom && d[1] % 2) {
    rc = sd_errorf(err, errlen, "%s: /moments has shape %s: axis 1 must be even (mean, log-variance)",
              p, shape);
  } else {
    info->n = (long)d[0];
    info->stored_channels = (int)d[1];
    info->c = has_mom ? (int)d[1] / 2 : (int)d[1];
    info->h = (int)d[2];
    info->w = (int)d[3];
    info->half = sz == 2;
    info->little_endian = H5Tget_order(t) == H5T_ORDER_LE;
    if (info->half && !info->little_endian)
      rc = sd_errorf(err, errlen, "%s: %s is big-endian float16; rewrite it little-endian", p,
                info->var);
    else if (info->c != info->latent_channels)
      rc = sd_errorf(err, errlen, "%s: %s has shape %s, so %d latent channels, but the root "
                "attribute latent_channels is %d", p, info->var, shape, info->c,
                info->latent_channels);
  }
  close_probe(&pr);
  return rc;
}

static int check_labels(hid_t f, sd_dataset_info *info, char *err, size_t errlen) {
  const char *p = info->path;
  if (H5Lexists(f, "labels", H5P_DEFAULT) <= 0)
    return sd_errorf(err, errlen, "%s: /labels is missing", p);
  probe pr;
  if (open_probe(f, "/labels", &pr) != 0)
    return sd_errorf(err, errlen, "%s: /labels is not a dataset", p);
  const hid_t t = pr.type;
  const int nd = pr.nd;
  const hsize_t *d = pr.d;
  const char *shape = pr.shape;
  char tn[32];
  int rc = 0;
  if (nd != 1) {
    rc = sd_errorf(err, errlen, "%s: /labels has shape %s but must be (N,)", p, shape);
  } else if (H5Tget_class(t) != H5T_INTEGER) {
    rc = sd_errorf(err, errlen, "%s: /labels has type %s but must be int32", p,
              type_name(t, tn, sizeof tn));
  } else if ((long)d[0] != info->n) {
    rc = sd_errorf(err, errlen, "%s: /labels has %llu entries but %s has %ld samples", p,
              (unsigned long long)d[0], info->var, info->n);
  } else {
    long long *y = malloc(sizeof(long long) * (size_t)info->n);
    if (!y) rc = sd_errorf(err, errlen, "%s: out of memory reading /labels", p);
    else if (H5Dread(pr.ds, H5T_NATIVE_LLONG, H5S_ALL, H5S_ALL, H5P_DEFAULT, y) < 0)
      rc = sd_errorf(err, errlen, "%s: cannot read /labels (truncated or corrupt?)", p);
    for (long i = 0; rc == 0 && i < info->n; i++)
      if (y[i] < 0 || y[i] >= info->num_classes)
        rc = sd_errorf(err, errlen, "%s: /labels[%ld] = %lld is outside [0, num_classes = %d)", p, i,
                  y[i], info->num_classes);
    free(y);
  }
  close_probe(&pr);
  return rc;
}

// Every stored value finite, in blocks of rows; a progress line when it takes a while.
static int scan_values(hid_t f, const sd_dataset_info *info, char *err, size_t errlen) {
  const size_t row = (size_t)info->stored_channels * info->h * info->w;
  long block = (long)((64u << 20) / (row * sizeof(float)));
  if (block < 1) block = 1;
  float *buf = malloc(sizeof(float) * row * (size_t)(block < info->n ? block : info->n));
  if (!buf) return sd_errorf(err, errlen, "%s: out of memory scanning %s", info->path, info->var);
  hid_t ds = H5Dopen2(f, info->var, H5P_DEFAULT);
  double t0 = sd_now_s(), last = t0;
  int rc = 0, printed = 0;
  for (long first = 0; rc == 0 && first < info->n; first += block) {
    long count = info->n - first < block ? info->n - first : block;
    rc = read_rows_open(ds, info, first, count, buf, err, errlen);
    for (size_t i = 0; rc == 0 && i < row * (size_t)count; i++) {
      if (isfinite(buf[i])) continue;
      size_t k = i % row;
      int ch = (int)(k / ((size_t)info->h * info->w));
      int yy = (int)(k / (size_t)info->w % (size_t)info->h), xx = (int)(k % (size_t)info->w);
      rc = sd_errorf(err, errlen, "%s: %s[%ld, %d, %d, %d] is %s (sample %ld); data.validate = full "
                "checks every value", info->path, info->var, first + (long)(i / row), ch, yy,
                xx, isnan(buf[i]) ? "nan" : "inf", first + (long)(i / row));
    }
    double now = sd_now_s();
    if (now - last > 2.0) {
      fprintf(stderr, "\rchecking %s of %s: %5.1f%% (%.0f samples/s)", info->var, info->path,
              100.0 * (first + count) / info->n, (first + count) / (now - t0));
      last = now;
      printed = 1;
    }
  }
  if (printed) fprintf(stderr, "\n");
  H5Dclose(ds);
  free(buf);
  return rc;
}

int sd_dataset_check(const char *path, int scan, sd_dataset_info *info, char *err,
                     size_t errlen) {
  memset(info, 0, sizeof *info);
  snprintf(info->path, sizeof info->path, "%s", path);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);  // our messages replace HDF5's error stack
  struct stat st;
  if (stat(path, &st) != 0)
    return sd_errorf(err, errlen, "%s: cannot open the dataset: %s", path, strerror(errno));
  if (!S_ISREG(st.st_mode)) return sd_errorf(err, errlen, "%s: is not a regular file", path);
  if (H5Fis_hdf5(path) <= 0)
    return sd_errorf(err, errlen, "%s: is not an HDF5 file (or is truncated)", path);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return sd_errorf(err, errlen, "%s: cannot open as HDF5 (truncated or corrupt?)", path);
  int rc = check_attributes(f, info, err, errlen);
  if (rc == 0) rc = check_values_layout(f, info, err, errlen);
  if (rc == 0) rc = check_labels(f, info, err, errlen);
  if (rc == 0 && scan) rc = scan_values(f, info, err, errlen);
  H5Fclose(f);
  return rc;
}

int sd_dataset_check_model(const sd_dataset_info *info, int in_channels, int input_size,
                           int num_classes, char *err, size_t errlen) {
  if (in_channels != info->c)
    return sd_errorf(err, errlen, "model.in_channels = %d but %s has %d channels per sample "
                "(%s is (%ld, %d, %d, %d)): set model.in_channels = %d", in_channels, info->path,
                info->c, info->var, info->n, info->stored_channels, info->h, info->w, info->c);
  if (input_size != info->h)
    return sd_errorf(err, errlen, "model.input_size = %d but the samples of %s are %dx%d: set "
                "model.input_size = %d", input_size, info->path, info->h, info->w, info->h);
  if (num_classes != info->num_classes)
    return sd_errorf(err, errlen, "model.num_classes = %d but %s has num_classes = %d: set "
                "model.num_classes = %d", num_classes, info->path, info->num_classes,
                info->num_classes);
  return 0;
}

int sd_dataset_print_summary(const char *path, FILE *out) {
  sd_dataset_info info;
  char err[1024];
  int rc = sd_dataset_check(path, 0, &info, err, sizeof err);
  fprintf(out, "dataset %s\n", path);
  if (rc != 0) {
    fprintf(out, "problem: %s\n", err);
    return 1;
  }
  fprintf(out, "  format          sddit-latents, version 1\n");
  fprintf(out, "  %-15s (%ld, %d, %d, %d) %s%s\n", info.var + 1, info.n, info.stored_channels,
          info.h, info.w, info.half ? "float16" : "float32",
          info.moments ? " (mean, log-variance)" : "");
  fprintf(out, "  labels          (%ld,) in [0, %d)\n", info.n, info.num_classes);
  fprintf(out, "  image_size      %d\n  latent_channels %d\n  scale_factor    %g\n",
          info.image_size, info.latent_channels, info.scale_factor);
  const char *texts[] = {"encoder", "source"};
  for (int i = 0; i < 2; i++) {
    char *v = sd_dataset_text_attr(path, texts[i]);
    fprintf(out, "  %-15s %s\n", texts[i], v);
    free(v);
  }
  // per-channel statistics over every stored value, then the label histogram
  const int cs = info.stored_channels;
  const size_t plane = (size_t)info.h * info.w, row = (size_t)cs * plane;
  long block = (long)((64u << 20) / (row * sizeof(float)));
  if (block < 1) block = 1;
  if (block > info.n) block = info.n;
  float *buf = malloc(sizeof(float) * row * (size_t)block);
  double *sum = calloc((size_t)cs, sizeof(double)), *sq = calloc((size_t)cs, sizeof(double));
  long bad = -1;
  for (long first = 0; buf && sum && sq && rc == 0 && first < info.n; first += block) {
    long count = info.n - first < block ? info.n - first : block;
    rc = sd_dataset_read_rows(&info, first, count, buf, err, sizeof err) ? 1 : 0;
    for (long s = 0; rc == 0 && s < count; s++)
      for (int c = 0; c < cs; c++)
        for (size_t k = 0; k < plane; k++) {
          double v = buf[(size_t)s * row + (size_t)c * plane + k];
          if (!isfinite(v)) {
            if (bad < 0) bad = first + s;
            continue;
          }
          sum[c] += v;
          sq[c] += v * v;
        }
  }
  if (rc == 0) {
    fprintf(out, "  channel  %12s %12s%s\n", "mean", "std", info.moments ? "  (stored)" : "");
    double count = (double)info.n * (double)plane;
    for (int c = 0; c < cs; c++) {
      double m = sum[c] / count, var = sq[c] / count - m * m;
      fprintf(out, "  %7d  %12.5g %12.5g\n", c, m, sqrt(var > 0 ? var : 0));
    }
  }
  free(buf);
  free(sum);
  free(sq);
  if (rc == 0) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t ds = H5Dopen2(f, "/labels", H5P_DEFAULT);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)info.n);
    long *hist = calloc((size_t)info.num_classes, sizeof(long));
    if (y && hist && H5Dread(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, y) >= 0) {
      for (long i = 0; i < info.n; i++) hist[y[i]]++;
      long lo = hist[0], hi = hist[0];
      for (int k = 0; k < info.num_classes; k++) {
        if (hist[k] < lo) lo = hist[k];
        if (hist[k] > hi) hi = hist[k];
      }
      fprintf(out, "  label histogram (min %ld, max %ld per class)\n", lo, hi);
      int shown = info.num_classes <= 20 ? info.num_classes : 10;
      for (int k = 0; k < shown; k++) fprintf(out, "  %7d  %ld\n", k, hist[k]);
      if (shown < info.num_classes) fprintf(out, "  ... (%d classes)\n", info.num_classes);
    }
    free(y);
    free(hist);
    H5Dclose(ds);
    H5Fclose(f);
  }
  if (rc != 0) {
    fprintf(out, "problem: %s\n", err);
    return 1;
  }
  if (bad >= 0) {
    rc = sd_dataset_check(path, 1, &info, err, sizeof err);
    fprintf(out, "problem: %s\n", rc ? err : "non-finite values");
    return 1;
  }
  fprintf(out, "ok: %ld samples, every label in range and every value finite\n", info.n);
  return 0;
}
