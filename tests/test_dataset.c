// The HDF5 dataset checks and the loader. The test writes its own files with the HDF5 C API
// (every layout: contiguous, chunked, compressed; float16 and float32; /moments), then checks:
// float16 conversion against HDF5's own, one test per validation error (the message must name
// the file, the object and the first bad index), and the loader's order (identical across runs,
// read paths, prefetching and world sizes; every sample once per epoch), flips and moments;
// and that the summary `sddit inspect` prints holds the encoder and source attributes whole at
// any length, fixed- or variable-length.
#include "check.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "tolerances.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[512];

// ---- writing test files ----

typedef struct spec {
  const char *var;       // "latents", "moments" or NULL (none)
  long n;
  int cs, h, w;          // stored (N, cs, h, w)
  int ndim;              // 4 normally
  int dtype;             // 16, 32, 64 (float) or -32 (int32)
  int layout;            // 0 contiguous, 1 chunked by 4 samples, 2 chunked + gzip
  int labels;            // 0 ok, 1 missing, 2 one short, 3 float32
  long bad_label_at;     // -1: none
  int bad_label;
  long nan_at;           // -1: none; else sample whose value [1, 2, 3] (or [0,0,0]) is nan
  int inf_not_nan;
  const char *format;
  int version, classes, image_size, channels_attr;
  int omit_classes;
  double logvar;         // moments: stored log-variance
} spec;

static spec base_spec(void) {
  spec s = {.var = "latents", .n = 10, .cs = 2, .h = 4, .w = 4, .ndim = 4, .dtype = 16,
            .layout = 0, .labels = 0, .bad_label_at = -1, .nan_at = -1,
            .format = "sddit-latents", .version = 1, .classes = 3, .image_size = 32,
            .channels_attr = 2, .logvar = 0.0};
  return s;
}

static hid_t half_type(void) {
  hid_t t = H5Tcopy(H5T_IEEE_F32LE);
  H5Tset_fields(t, 15, 10, 5, 0, 10);
  H5Tset_size(t, 2);
  H5Tset_ebias(t, 15);
  H5Tset_precision(t, 16);
  return t;
}

// Value of stored element (i, c, y, x): sample i is identifiable from element 0 (= i), the
// rest varies with position so flips are visible. Exact in float16 for the sizes used here.
static float value_at(long i, int c, int y, int x) {
  if (c == 0 && y == 0 && x == 0) return (float)i;
  return 0.25f * (float)c + 0.125f * (float)y + 0.5f * (float)x - 1.0f;
}

static void attr_string(hid_t f, const char *name, const char *v) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, strlen(v) + 1);
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, t, v);
  H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
}

static void attr_int(hid_t f, const char *name, long long v) {
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_LLONG, &v);
  H5Aclose(a);
  H5Sclose(sp);
}

static void attr_double(hid_t f, const char *name, double v) {
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_DOUBLE, &v);
  H5Aclose(a);
  H5Sclose(sp);
}

// Returns the file's path (static storage per call; kept until the end of the test).
static const char *write_spec(const char *name, const spec *s) {
  static char paths[64][1024];
  static int next = 0;
  char *path = paths[next++ % 64];
  snprintf(path, sizeof paths[0], "%s/%s", g_dir, name);
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (s->format) attr_string(f, "format", s->format);
  attr_int(f, "format_version", s->version);
  if (!s->omit_classes) attr_int(f, "num_classes", s->classes);
  attr_int(f, "image_size", s->image_size);
  attr_int(f, "latent_channels", s->channels_attr);
  attr_double(f, "scale_factor", 0.5);
  attr_string(f, "encoder", "test");
  attr_string(f, "source", "test_dataset.c");
  if (s->var) {
    hsize_t dims[4] = {(hsize_t)s->n, (hsize_t)s->cs, (hsize_t)s->h, (hsize_t)s->w};
    if (s->ndim == 3) dims[1] = (hsize_t)s->h, dims[2] = (hsize_t)s->w;
    size_t total = (size_t)s->n * s->cs * s->h * s->w;
    float *v = malloc(sizeof(float) * total);
    size_t k = 0;
    for (long i = 0; i < s->n; i++)
      for (int c = 0; c < s->cs; c++)
        for (int y = 0; y < s->h; y++)
          for (int x = 0; x < s->w; x++, k++) {
            v[k] = value_at(i, c, y, x);
            if (strcmp(s->var, "moments") == 0 && c >= s->cs / 2) v[k] = (float)s->logvar;
            if (i == s->nan_at && ((s->cs > 1 && c == 1 && y == 2 && x == 3) ||
                                   (s->cs == 1 && k % ((size_t)s->h * s->w) == 0)))
              v[k] = s->inf_not_nan ? INFINITY : NAN;
          }
    hid_t ftype = s->dtype == 16   ? half_type()
                  : s->dtype == 32 ? H5Tcopy(H5T_IEEE_F32LE)
                  : s->dtype == 64 ? H5Tcopy(H5T_IEEE_F64LE)
                                   : H5Tcopy(H5T_STD_I32LE);
    hid_t sp = H5Screate_simple(s->ndim, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (s->layout > 0 && s->ndim == 4) {
      hsize_t cd[4] = {4, dims[1], dims[2], dims[3]};
      H5Pset_chunk(dcpl, 4, cd);
      if (s->layout == 2) H5Pset_deflate(dcpl, 4);
    }
    char dpath[32];
    snprintf(dpath, sizeof dpath, "/%s", s->var);
    hid_t ds = H5Dcreate2(f, dpath, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (s->dtype == -32) {
      int32_t *iv = malloc(sizeof(int32_t) * total);
      for (size_t j = 0; j < total; j++) iv[j] = (int32_t)v[j];
      H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, iv);
      free(iv);
    } else {
      H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);  // HDF5 converts
    }
    H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(sp);
    H5Tclose(ftype);
    free(v);
  }
  if (s->labels != 1) {
    hsize_t n = (hsize_t)(s->labels == 2 ? s->n - 1 : s->n);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)n);
    for (hsize_t i = 0; i < n; i++) y[i] = (int32_t)(i % (hsize_t)s->classes);
    if (s->bad_label_at >= 0) y[s->bad_label_at] = s->bad_label;
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t ds = H5Dcreate2(f, "/labels", s->labels == 3 ? H5T_IEEE_F32LE : H5T_STD_I32LE, sp,
                          H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, y);
    H5Dclose(ds);
    H5Sclose(sp);
    free(y);
  }
  H5Fclose(f);
  return path;
}

// ---- float16 ----

static void test_half(void) {
  // every binary16 value against HDF5's own conversion
  hid_t ht = half_type();
  uint16_t *h = malloc(sizeof(uint16_t) * 65536 * 2);  // H5Tconvert works in place: room for floats
  for (int i = 0; i < 65536; i++) h[i] = (uint16_t)i;
  H5Tconvert(ht, H5T_NATIVE_FLOAT, 65536, h, NULL, H5P_DEFAULT);
  const float *ref = (const float *)h;
  long bad = -1;
  for (int i = 0; i < 65536 && bad < 0; i++) {
    float a = sd_half_to_float((uint16_t)i);
    if (isnan(ref[i]) ? !isnan(a) : memcmp(&a, &ref[i], sizeof a) != 0) bad = i;
  }
  check_true(bad < 0, "half_to_float equals HDF5's conversion for all 65536 values%s",
             bad < 0 ? "" : " (first mismatch shown next)");
  if (bad >= 0)
    printf("  bits 0x%04lx: ours %.9g, HDF5 %.9g\n", bad, sd_half_to_float((uint16_t)bad),
           ref[bad]);
  free(h);
  H5Tclose(ht);
  // float -> half rounds to nearest: round trip of every finite half, and random floats land on
  // the nearer of the two neighbouring halves
  bad = -1;
  for (int i = 0; i < 65536 && bad < 0; i++) {
    float f = sd_half_to_float((uint16_t)i);
    if (isfinite(f) && sd_float_to_half(f) != (uint16_t)i) bad = i;
  }
  check_true(bad < 0, "float_to_half(half_to_float(h)) == h for every finite half (first bad %ld)",
             bad);
  float r[4096];
  fill_uniform(r, 4096, 7, -70000.0f, 70000.0f);
  for (int i = 0; i < 2048; i++) r[i] *= 1e-4f;  // small and subnormal ranges
  for (int i = 0; i < 512; i++) r[i] *= 1e-3f;
  int worst = -1;
  for (int i = 0; i < 4096 && worst < 0; i++) {
    uint16_t q = sd_float_to_half(r[i]);
    float a = sd_half_to_float(q);
    if (fabsf(r[i]) >= 65520.0f) {
      if (!isinf(a)) worst = i;
      continue;
    }
    float up = sd_half_to_float((uint16_t)(q + 1)), dn = sd_half_to_float((uint16_t)(q - 1));
    float d = fabsf(a - r[i]);
    if ((isfinite(up) && fabsf(up - r[i]) < d) || (isfinite(dn) && (q & 0x7fff) &&
                                                   fabsf(dn - r[i]) < d))
      worst = i;
  }
  check_true(worst < 0, "float_to_half picks the nearest half for 4096 random floats%s",
             worst < 0 ? "" : " (a counterexample follows)");
  if (worst >= 0) printf("  %.9g -> %.9g\n", r[worst], sd_half_to_float(sd_float_to_half(r[worst])));
}

// ---- long text attributes in the summary ----

// Replaces the root string attribute `name` with v: fixed-length (v's length + 1, null
// terminated) or variable-length.
static void replace_attr_string(const char *path, const char *name, const char *v, int vlen) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  if (H5Aexists(f, name) > 0) H5Adelete(f, name);
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, vlen ? H5T_VARIABLE : strlen(v) + 1);
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
  herr_t rc = vlen ? H5Awrite(a, t, &v) : H5Awrite(a, t, v);
  check_true(a >= 0 && rc >= 0, "%s: wrote a %zu-character %s-length attribute '%s'", path,
             strlen(v), vlen ? "variable" : "fixed", name);
  H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
  H5Fclose(f);
}

// A text of n characters whose every 10-character cell says where it is: "s0000010..".
static char *long_text(const char *tag, size_t n) {
  char *v = malloc(n + 1);
  for (size_t i = 0; i < n; i += 10) snprintf(v + i, n - i + 1, "%s%07zu..", tag, i);
  v[n] = '\0';
  return v;
}

// The summary's line "  NAME ... VALUE\n" must hold the whole value.
static void expect_summary_line(const char *summary, const char *name, const char *value,
                                const char *what) {
  const char *line = strstr(summary, name);
  while (line && line != summary && line[-1] != ' ') line = strstr(line + 1, name);
  const char *v = line ? line + strlen(name) : NULL;
  while (v && *v == ' ') v++;
  size_t shown = v ? strcspn(v, "\n") : 0;
  int ok = v && shown == strlen(value) && strncmp(v, value, shown) == 0;
  check_true(ok, "summary prints the %s %s attribute whole: %zu of %zu characters", what, name,
             shown, strlen(value));
  if (!ok && v) printf("  printed: %.*s\n  ...ends: %.40s\n", (int)(shown < 200 ? shown : 200),
                       v, shown > 40 ? v + shown - 40 : v);
}

static void test_long_attributes(void) {
  char *source = long_text("s", 600), *encoder = long_text("e", 300);
  for (int vlen = 0; vlen < 2; vlen++) {
    spec s = base_spec();
    const char *path = write_spec(vlen ? "long_attrs_vlen.h5" : "long_attrs_fixed.h5", &s);
    replace_attr_string(path, "source", source, vlen);
    replace_attr_string(path, "encoder", encoder, !vlen);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    int rc = sd_dataset_print_summary(path, out);
    fclose(out);
    check_true(rc == 0, "%s: summary says ok (rc %d)", path, rc);
    expect_summary_line(text, "source", source, vlen ? "variable-length" : "fixed-length");
    expect_summary_line(text, "encoder", encoder, vlen ? "fixed-length" : "variable-length");
    char *again = sd_dataset_text_attr(path, "source");
    check_true(strcmp(again, source) == 0, "sd_dataset_text_attr gives the %zu characters back "
               "(%zu)", strlen(source), strlen(again));
    free(again);
    free(text);
  }
  char *none = sd_dataset_text_attr("/nonexistent/x.h5", "source");
  check_true(strcmp(none, "unknown") == 0, "an unreadable file's attribute is 'unknown' (%s)",
             none);
  free(none);
  free(source);
  free(encoder);
}

// ---- validation messages ----

static void expect_error(const char *name, const spec *s, int scan, const char *want) {
  const char *path = write_spec(name, s);
  sd_dataset_info info;
  char err[1024] = "";
  int rc = sd_dataset_check(path, scan, &info, err, sizeof err);
  check_true(rc == -1 && strstr(err, want) && strstr(err, name), "%-22s -> %s", name,
             rc ? err : "(accepted)");
  if (rc != -1 || !strstr(err, want)) printf("  expected the message to contain: %s\n", want);
}

static void test_validation(void) {
  sd_dataset_info info;
  char err[1024] = "", path[1024];
  snprintf(path, sizeof path, "%s/no_such.h5", g_dir);
  int rc = sd_dataset_check(path, 1, &info, err, sizeof err);
  check_true(rc == -1 && strstr(err, "no_such.h5") && strstr(err, "No such file"),
             "missing file -> %s", err);
  snprintf(path, sizeof path, "%s/text.h5", g_dir);
  FILE *f = fopen(path, "w");
  fputs("not hdf5\n", f);
  fclose(f);
  rc = sd_dataset_check(path, 1, &info, err, sizeof err);
  check_true(rc == -1 && strstr(err, "text.h5: is not an HDF5 file"), "text file -> %s", err);

  spec s = base_spec();
  const char *good = write_spec("good.h5", &s);
  rc = sd_dataset_check(good, 1, &info, err, sizeof err);
  check_true(rc == 0 && info.n == 10 && info.c == 2 && info.h == 4 && info.half &&
                 info.num_classes == 3 && !info.moments,
             "a valid file is accepted (n %ld, c %d, h %d, half %d)%s%s", info.n, info.c, info.h,
             info.half, rc ? ": " : "", rc ? err : "");
  // truncated copy of a valid file
  snprintf(path, sizeof path, "%s/truncated.h5", g_dir);
  char cmd[2200];
  snprintf(cmd, sizeof cmd, "head -c 1500 '%s' > '%s'", good, path);
  if (system(cmd) != 0) printf("  (head failed)\n");
  rc = sd_dataset_check(path, 1, &info, err, sizeof err);
  check_true(rc == -1 && strstr(err, "truncated.h5") && strstr(err, "truncated"),
             "truncated file -> %s", err);

  spec t;
  t = base_spec(); t.format = NULL;
  expect_error("no_format.h5", &t, 1, "root attribute 'format' is missing");
  t = base_spec(); t.format = "sddit-checkpoint";
  expect_error("ckpt_format.h5", &t, 1, "is a checkpoint, not a dataset");
  t = base_spec(); t.version = 2;
  expect_error("version2.h5", &t, 1, "format_version is 2; this build reads version 1");
  t = base_spec(); t.omit_classes = 1;
  expect_error("no_classes.h5", &t, 1, "root attribute 'num_classes' is missing");
  t = base_spec(); t.var = NULL;
  expect_error("no_latents.h5", &t, 1, "has neither /latents nor /moments");
  t = base_spec(); t.ndim = 3;
  expect_error("latents_3d.h5", &t, 1, "/latents has shape (10, 4, 4) but must be (N, C, H, W)");
  t = base_spec(); t.dtype = 64;
  expect_error("latents_f64.h5", &t, 1, "/latents has type float64 but must be float16 or float32");
  t = base_spec(); t.dtype = -32;
  expect_error("latents_int.h5", &t, 1, "/latents has type int32 but must be float16 or float32");
  t = base_spec(); t.w = 5;
  expect_error("not_square.h5", &t, 1, "samples must be square");
  t = base_spec(); t.channels_attr = 4;
  expect_error("channels_attr.h5", &t, 1, "so 2 latent channels, but the root attribute "
               "latent_channels is 4");
  t = base_spec(); t.var = "moments"; t.cs = 3; t.channels_attr = 1;
  expect_error("moments_odd.h5", &t, 1, "axis 1 must be even");
  t = base_spec(); t.labels = 1;
  expect_error("no_labels.h5", &t, 1, "/labels is missing");
  t = base_spec(); t.labels = 2;
  expect_error("labels_short.h5", &t, 1, "/labels has 9 entries but /latents has 10 samples");
  t = base_spec(); t.labels = 3;
  expect_error("labels_float.h5", &t, 1, "/labels has type float32 but must be int32");
  t = base_spec(); t.bad_label_at = 7; t.bad_label = 3;
  expect_error("label_high.h5", &t, 1, "/labels[7] = 3 is outside [0, num_classes = 3)");
  t = base_spec(); t.bad_label_at = 4; t.bad_label = -1;
  expect_error("label_negative.h5", &t, 1, "/labels[4] = -1 is outside");
  t = base_spec(); t.nan_at = 6;
  expect_error("nan_f16.h5", &t, 1, "/latents[6, 1, 2, 3] is nan (sample 6)");
  t = base_spec(); t.nan_at = 9; t.inf_not_nan = 1; t.dtype = 32; t.layout = 2;
  expect_error("inf_f32_gzip.h5", &t, 1, "/latents[9, 1, 2, 3] is inf (sample 9)");
  // quick validation accepts the file; the loader then names the sample when it reads it
  t = base_spec(); t.nan_at = 6;
  const char *p = write_spec("nan_quick.h5", &t);
  rc = sd_dataset_check(p, 0, &info, err, sizeof err);
  check_true(rc == 0, "data.validate = quick does not scan values (rc %d)", rc);
  sd_loader_opts o = {.global_batch = 10, .rank = 0, .world = 1, .seed = 1, .prefetch = 2,
                      .check_values = 1};
  sd_loader *l = sd_loader_open(&info, &o, err, sizeof err);
  float x[10 * 32];
  int32_t y[10];
  rc = l ? sd_loader_get(l, 0, x, y, err, sizeof err) : -2;
  check_true(rc == -1 && strstr(err, "nan_quick.h5: sample 6 of /latents holds nan"),
             "quick mode: the batch holding the bad sample -> %s", err);
  sd_loader_close(l);

  // the model must fit the file
  rc = sd_dataset_check(good, 1, &info, err, sizeof err);
  rc = sd_dataset_check_model(&info, 4, 4, 3, err, sizeof err);
  check_true(rc == -1 && strstr(err, "model.in_channels = 4") &&
                 strstr(err, "set model.in_channels = 2"), "channels -> %s", err);
  rc = sd_dataset_check_model(&info, 2, 8, 3, err, sizeof err);
  check_true(rc == -1 && strstr(err, "model.input_size = 8") &&
                 strstr(err, "set model.input_size = 4"), "size -> %s", err);
  rc = sd_dataset_check_model(&info, 2, 4, 1000, err, sizeof err);
  check_true(rc == -1 && strstr(err, "model.num_classes = 1000") && strstr(err, "good.h5"),
             "classes -> %s", err);
  rc = sd_dataset_check_model(&info, 2, 4, 3, err, sizeof err);
  check_true(rc == 0, "a matching model is accepted%s%s", rc ? ": " : "", rc ? err : "");
}

// ---- the loader ----

typedef struct run {
  float *x;     // (steps, G, n)
  int32_t *y;   // (steps, G)
} run;

// Reads `steps` batches (in order, or in a shuffled order when `scramble`) for every rank of
// `world` and assembles the global batches.
static int read_run(const char *path, int G, int world, long steps, uint64_t seed, int prefetch,
                    int in_memory, int hflip, int scramble, run *r, const char **mode) {
  sd_dataset_info info;
  char err[1024];
  if (sd_dataset_check(path, 1, &info, err, sizeof err) != 0) {
    printf("  %s\n", err);
    return -1;
  }
  const size_t n = (size_t)info.c * info.h * info.w;
  r->x = malloc(sizeof(float) * n * (size_t)G * (size_t)steps);
  r->y = malloc(sizeof(int32_t) * (size_t)G * (size_t)steps);
  const int Bl = G / world;
  for (int rank = 0; rank < world; rank++) {
    sd_loader_opts o = {.global_batch = G, .rank = rank, .world = world, .seed = seed,
                        .hflip = hflip, .in_memory = in_memory, .prefetch = prefetch};
    sd_loader *l = sd_loader_open(&info, &o, err, sizeof err);
    if (!l) {
      printf("  %s\n", err);
      return -1;
    }
    if (mode) *mode = sd_loader_mode(l);
    for (long k = 0; k < steps; k++) {
      long s = scramble ? (k * 7 + 3) % steps : k;  // steps coprime with 7 in the tests
      size_t at = (size_t)s * G + (size_t)rank * Bl;
      if (sd_loader_get(l, s, r->x + at * n, r->y + at, err, sizeof err) != 0) {
        printf("  %s\n", err);
        sd_loader_close(l);
        return -1;
      }
    }
    sd_loader_close(l);
  }
  return 0;
}

static void free_run(run *r) {
  free(r->x);
  free(r->y);
}

static void test_loader(void) {
  spec s = base_spec();
  s.n = 10;
  const char *contig = write_spec("loader_contig.h5", &s);
  s.layout = 1;
  const char *chunked = write_spec("loader_chunked.h5", &s);
  s.layout = 2;
  const char *gzip = write_spec("loader_gzip.h5", &s);
  s = base_spec();
  s.dtype = 32;
  const char *f32 = write_spec("loader_f32.h5", &s);
  const int G = 4;
  const long steps = 10;  // 40 positions = 4 epochs of 10
  const size_t n = 2 * 4 * 4, bytes = sizeof(float) * n * G * steps;

  run ref, other;
  const char *mode = "";
  int ok = read_run(contig, G, 1, steps, 5, 0, 0, 0, 0, &ref, &mode) == 0;
  check_true(ok && strcmp(mode, "pread") == 0, "contiguous file is read by pread (%s)", mode);
  if (!ok) return;
  // every sample exactly once per epoch; labels follow their samples
  for (long e = 0; e < 4; e++) {
    int seen[10] = {0}, labels_ok = 1;
    for (int k = 0; k < 10; k++) {
      long p = e * 10 + k;
      int idx = (int)ref.x[(size_t)p * n];
      if (idx >= 0 && idx < 10) seen[idx]++;
      labels_ok &= ref.y[p] == idx % 3;
    }
    int once = 1;
    for (int i = 0; i < 10; i++) once &= seen[i] == 1;
    check_true(once && labels_ok, "epoch %ld holds every sample once, labels match (%d %d %d %d "
               "%d %d %d %d %d %d)", e, seen[0], seen[1], seen[2], seen[3], seen[4], seen[5],
               seen[6], seen[7], seen[8], seen[9]);
  }
  int differ = 0;
  for (int k = 0; k < 10; k++) differ |= ref.x[(size_t)k * n] != ref.x[(size_t)(10 + k) * n];
  check_true(differ, "epochs 0 and 1 have different orders");
  int shuffled = 0;
  for (int k = 0; k < 10; k++) shuffled |= ref.x[(size_t)k * n] != (float)k;
  check_true(shuffled, "epoch 0 is not the file order");
  long at = sd_loader_sample_at(5, 10, 23);
  check_true(at == (long)ref.x[(size_t)23 * n], "sd_loader_sample_at(23) = %ld, loader read %g",
             at, ref.x[(size_t)23 * n]);

  struct {
    const char *what, *path;
    int world, prefetch, in_memory, scramble;
    const char *mode;
  } cases[] = {
      {"again, same seed", contig, 1, 0, 0, 0, "pread"},
      {"prefetch 2", contig, 1, 2, 0, 0, "pread"},
      {"prefetch 3, steps out of order", contig, 1, 3, 0, 1, "pread"},
      {"in memory", contig, 1, 2, 1, 0, "memory"},
      {"chunked", chunked, 1, 2, 0, 0, "pread"},
      {"chunked + gzip", gzip, 1, 2, 0, 0, "hdf5"},
      {"float32", f32, 1, 1, 0, 0, "pread"},
      {"2 ranks", contig, 2, 2, 0, 0, "pread"},
      {"4 ranks", chunked, 4, 0, 0, 1, "pread"},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    ok = read_run(cases[c].path, G, cases[c].world, steps, 5, cases[c].prefetch,
                  cases[c].in_memory, 0, cases[c].scramble, &other, &mode) == 0;
    char what[128];
    snprintf(what, sizeof what, "loader %s (%s) equals the reference", cases[c].what, mode);
    if (ok) {
      check_bitwise(what, other.x, ref.x, bytes);
      check_bitwise("  and its labels", other.y, ref.y, sizeof(int32_t) * G * steps);
      check_true(strcmp(mode, cases[c].mode) == 0, "  read path %s (expected %s)", mode,
                 cases[c].mode);
      free_run(&other);
    } else {
      check_true(0, "%s: the run failed", what);
    }
  }
  ok = read_run(contig, G, 1, steps, 6, 0, 0, 0, 0, &other, NULL) == 0;
  check_true(ok && memcmp(other.x, ref.x, bytes) != 0, "another seed gives another order");
  if (ok) free_run(&other);

  // flips: each sample as stored or mirrored along W, both happen, and reruns agree
  run f1, f2;
  ok = read_run(contig, G, 1, steps, 5, 2, 0, 1, 0, &f1, NULL) == 0 &&
       read_run(contig, G, 1, steps, 5, 0, 0, 1, 1, &f2, NULL) == 0;
  if (ok) {
    check_bitwise("flipped runs agree (prefetch / scrambled)", f1.x, f2.x, bytes);
    int flipped = 0, kept = 0, wrong = -1;
    for (long p = 0; p < G * steps; p++) {
      const float *a = f1.x + (size_t)p * n, *r0 = ref.x + (size_t)p * n;
      int same = memcmp(a, r0, sizeof(float) * n) == 0, mirror = 1;
      for (int c = 0; c < 2; c++)
        for (int yy = 0; yy < 4; yy++)
          for (int xx = 0; xx < 4; xx++)
            mirror &= a[(c * 4 + yy) * 4 + xx] == r0[(c * 4 + yy) * 4 + (3 - xx)];
      kept += same;
      flipped += mirror && !same;
      if (!same && !mirror && wrong < 0) wrong = (int)p;
    }
    check_true(wrong < 0 && flipped > 5 && kept > 5,
               "hflip: %d mirrored, %d kept, first other %d", flipped, kept, wrong);
    free_run(&f1);
    free_run(&f2);
  } else {
    check_true(0, "flip runs failed");
  }
  free_run(&ref);

  // moments: x = (mean + exp(logvar / 2) eps) * scale_factor, eps ~ N(0, 1) keyed
  s = base_spec();
  s.var = "moments";
  s.cs = 4;
  s.channels_attr = 2;
  s.logvar = 2.0 * log(0.5);  // std 0.5
  const char *mom = write_spec("moments.h5", &s);
  run m;
  const long msteps = 250;  // 1000 draws per element position
  ok = read_run(mom, G, 1, msteps, 5, 2, 0, 0, 0, &m, &mode) == 0;
  if (ok) {
    // element (c=1, y=2, x=3) has mean 0.25 + 0.25 + 1.5 - 1 = 1.0: x ~ N(0.5, 0.25^2)
    double sum = 0, sq = 0;
    const long cnt = G * msteps;
    for (long p = 0; p < cnt; p++) {
      double v = m.x[(size_t)p * n + (1 * 4 + 2) * 4 + 3];
      sum += v;
      sq += v * v;
    }
    double mean = sum / cnt, sd = sqrt(sq / cnt - mean * mean);
    double se = 0.25 / sqrt((double)cnt);
    check_true(fabs(mean - 0.5) < RNG_SIGMAS * se && fabs(sd - 0.25) < RNG_SIGMAS * se * 1.5,
               "moments sampled: mean %.4f (0.5), std %.4f (0.25), %ld draws", mean, sd, cnt);
    run m2;
    if (read_run(mom, G, 2, msteps, 5, 0, 1, 0, 1, &m2, NULL) == 0) {
      check_bitwise("moment samples identical across ranks, read paths, order",
                    m2.x, m.x, sizeof(float) * n * G * msteps);
      free_run(&m2);
    }
    free_run(&m);
  } else {
    check_true(0, "moments run failed");
  }

  // a batch that does not divide over the ranks
  sd_dataset_info info;
  char err[1024];
  sd_dataset_check(contig, 0, &info, err, sizeof err);
  sd_loader_opts o = {.global_batch = 6, .rank = 0, .world = 4, .seed = 1};
  sd_loader *l = sd_loader_open(&info, &o, err, sizeof err);
  check_true(!l && strstr(err, "train.global_batch (6) must divide evenly over 4 ranks"),
             "batch 6 over 4 ranks -> %s", l ? "(accepted)" : err);
  sd_loader_close(l);
}

int main(void) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  const char *tmp = getenv("TMPDIR");
  snprintf(g_dir, sizeof g_dir, "%s/sd_test_dataset_XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(g_dir)) {
    perror("mkdtemp");
    return 1;
  }
  test_half();
  test_validation();
  test_long_attributes();
  test_loader();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd) != 0) printf("could not remove %s\n", g_dir);
  return check_exit("test_dataset");
}
