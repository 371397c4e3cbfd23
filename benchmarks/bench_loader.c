// Benchmark: the data loader's throughput (samples/s) on a generated format-1 file of DiT-size
// latents (default 100k x 4x32x32 float16, chunked 16 samples per chunk), set against what one
// H200 consumes at DiT-XL/2 speed (about 1100 img/s at the hardware limit). Target: at least
// 10x headroom per rank. Rows, in order:
//   cold   pread   0   page cache dropped first (fsync + POSIX_FADV_DONTNEED)
//   warm   pread   0   file read once fully first
//   warm   pread   2   time the consumer sees in sd_loader_get with a prefetch thread
//   load   memory  0   sd_loader_open with in_memory = 1 (the whole array, once)
//   warm   memory  0   reads from that copy
//   cold   hdf5    0   a second, smaller file with gzip (forces the HDF5 read path)
//   warm   hdf5    0
// Each measurement: sd_dataset_check (no value scan), sd_loader_open (world 1, global batch =
// --batch, seed 0, no flips), then consecutive steps 0, 1, ... until --samples are read.
// Output: a header and one greppable row per measurement, or one JSON object per row (--json).
// Files this run generates are deleted at the end unless --keep; an existing file of the right
// shape and layout is reused (and kept).
#include "data/dataset.h"
#include "error.h"
#include "data/loader.h"
#include "util/rng.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CONSUMER_IMG_PER_S 1100.0  // one H200 at DiT-XL/2 speed (hardware limit)
#define SOURCE_TAG "bench_loader.c"

typedef struct opts {
  char file[1024];
  long n, samples, gzip_n;
  int channels, size, chunk, batch, prefetch, json, keep, smoke;
  const char *threads_note;
} opts;

typedef struct meas {
  const char *mode, *read_path;
  int prefetch;
  long samples;
  double seconds, open_s;
  double first_batch_ms, max_batch_ms;  // the first get (with the epoch permutation), the rest
  long n;
  int chunk, gzip;
  double resident;  // fraction of the file in the page cache before the run (-1: unknown)
} meas;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void usage(void) {
  fprintf(stderr,
          "usage: bench_loader [--file PATH] [--n 100000] [--channels 4] [--size 32] "
          "[--chunk 16 (0: contiguous)] [--batch 32] [--samples 20000] [--prefetch 2] "
          "[--gzip-n 5000 (0: skip the hdf5 rows)] [--threads-note TEXT] [--json] [--keep] "
          "[--smoke]\n");
  exit(2);
}

// ---- generated files (deleted at exit unless --keep) ----

static char g_generated[2][1100];
static int g_ngenerated, g_keep;

static void remove_generated(void) {
  for (int i = 0; i < g_ngenerated; i++) {
    char tmp[1200];  // left by a generation that failed
    snprintf(tmp, sizeof tmp, "%.1100s.tmp", g_generated[i]);
    unlink(tmp);
    if (g_keep) {
      fprintf(stderr, "kept %s\n", g_generated[i]);
    } else if (unlink(g_generated[i]) != 0 && errno != ENOENT) {
      fprintf(stderr, "warning: cannot delete %s: %s\n", g_generated[i], strerror(errno));
    }
  }
}

// ---- writing a format-1 file ----

static hid_t half_type(void) {  // IEEE binary16, little-endian
  hid_t t = H5Tcopy(H5T_IEEE_F32LE);
  H5Tset_fields(t, 15, 10, 5, 0, 10);
  H5Tset_size(t, 2);
  H5Tset_ebias(t, 15);
  H5Tset_precision(t, 16);
  return t;
}

static void attr_string(hid_t f, const char *name, const char *v) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, strlen(v) + 1);
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0 || H5Awrite(a, t, v) < 0) SD_FATAL("cannot write attribute %s", name);
  H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
}

static void attr_int(hid_t f, const char *name, long long v) {
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0 || H5Awrite(a, H5T_NATIVE_LLONG, &v) < 0) SD_FATAL("cannot write attribute %s", name);
  H5Aclose(a);
  H5Sclose(sp);
}

static void attr_double(hid_t f, const char *name, double v) {
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0 || H5Awrite(a, H5T_NATIVE_DOUBLE, &v) < 0) SD_FATAL("cannot write attribute %s", name);
  H5Aclose(a);
  H5Sclose(sp);
}

static void fsync_path(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) SD_FATAL("cannot open %s: %s", path, strerror(errno));
  if (fsync(fd) != 0) SD_FATAL("cannot fsync %s: %s", path, strerror(errno));
  close(fd);
}

// Writes /latents (n, C, S, S) float16 (standard normal values), /labels int32 in [0, 1000)
// and the format-1 root attributes to path (through path.tmp, renamed at the end, fsynced).
// chunk: samples per chunk (0: contiguous); gzip: deflate level 1 (needs chunk > 0).
static double generate(const char *path, long n, int C, int S, int chunk, int gzip, int quiet) {
  char tmp[1100];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  double t0 = now_s();
  hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) SD_FATAL("cannot create %s", tmp);
  attr_string(f, "format", "sddit-latents");
  attr_int(f, "format_version", 1);
  attr_int(f, "num_classes", 1000);
  attr_int(f, "image_size", 8LL * S);
  attr_int(f, "latent_channels", C);
  attr_double(f, "scale_factor", 0.18215);
  attr_string(f, "encoder", "none (random normal values, bench_loader)");
  attr_string(f, "source", SOURCE_TAG);

  const size_t row = (size_t)C * S * S;
  hsize_t dims[4] = {(hsize_t)n, (hsize_t)C, (hsize_t)S, (hsize_t)S};
  hid_t ht = half_type();
  hid_t sp = H5Screate_simple(4, dims, NULL);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (chunk > 0) {
    hsize_t cd[4] = {(hsize_t)chunk, (hsize_t)C, (hsize_t)S, (hsize_t)S};
    H5Pset_chunk(dcpl, 4, cd);
    if (gzip) H5Pset_deflate(dcpl, 1);
  }
  hid_t ds = H5Dcreate2(f, "/latents", ht, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  if (ds < 0) SD_FATAL("cannot create /latents in %s", tmp);
  // blocks of whole chunks, about 2048 samples (16 MB of float16 at 4x32x32)
  long block = chunk > 0 ? (long)chunk * (2048 / chunk > 0 ? 2048 / chunk : 1) : 2048;
  float *v = sd_xmalloc(sizeof(float) * row * (size_t)block, "generation block");
  uint16_t *h = sd_xmalloc(sizeof(uint16_t) * row * (size_t)block, "generation block");
  double last = t0;
  for (long first = 0, b = 0; first < n; first += block, b++) {
    long cnt = n - first < block ? n - first : block;
    size_t m = row * (size_t)cnt;
    sd_rng_normal(1, SD_RNG_TEST, (uint32_t)b, 0, 0, m, v);
    for (size_t i = 0; i < m; i++) h[i] = sd_float_to_half(v[i]);
    hsize_t start[4] = {(hsize_t)first, 0, 0, 0};
    hsize_t count[4] = {(hsize_t)cnt, (hsize_t)C, (hsize_t)S, (hsize_t)S};
    hid_t fs = H5Dget_space(ds), ms = H5Screate_simple(4, count, NULL);
    if (H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        H5Dwrite(ds, ht, ms, fs, H5P_DEFAULT, h) < 0)
      SD_FATAL("cannot write /latents rows %ld..%ld of %s", first, first + cnt - 1, tmp);
    H5Sclose(ms);
    H5Sclose(fs);
    double t = now_s();
    if (!quiet && (t - last > 2.0 || first + cnt == n)) {
      fprintf(stderr, "\rgenerating %s: %5.1f%% (%.1f s)", path, 100.0 * (first + cnt) / n,
              t - t0);
      last = t;
    }
  }
  free(v);
  free(h);
  H5Dclose(ds);
  H5Pclose(dcpl);
  H5Sclose(sp);
  H5Tclose(ht);

  int32_t *y = sd_xmalloc(sizeof(int32_t) * (size_t)n, "labels");
  for (long i = 0; i < n; i++)
    y[i] = (int32_t)sd_rng_below(1, SD_RNG_TEST, 1, 0, (uint32_t)i, 1000);
  hsize_t nl = (hsize_t)n;
  hid_t lsp = H5Screate_simple(1, &nl, NULL);
  hid_t lds = H5Dcreate2(f, "/labels", H5T_STD_I32LE, lsp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (lds < 0 || H5Dwrite(lds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, y) < 0)
    SD_FATAL("cannot write /labels of %s", tmp);
  H5Dclose(lds);
  H5Sclose(lsp);
  free(y);
  if (H5Fclose(f) < 0) SD_FATAL("cannot close %s (disk full?)", tmp);
  fsync_path(tmp);
  if (rename(tmp, path) != 0) SD_FATAL("cannot rename %s to %s: %s", tmp, path, strerror(errno));
  double secs = now_s() - t0;
  if (!quiet) fprintf(stderr, "\rgenerated %s: %ld samples in %.1f s%20s\n", path, n, secs, "");
  return secs;
}

// 1: path is a valid file of this shape and layout (reuse it); 0: missing, or written by this
// benchmark with another shape (regenerate); -1: something else (never overwritten).
static int file_state(const char *path, long n, int C, int S, int chunk, int gzip) {
  struct stat st;
  if (stat(path, &st) != 0) return 0;
  sd_dataset_info info;
  char err[1024];
  if (sd_dataset_check(path, 0, &info, err, sizeof err) != 0) {
    fprintf(stderr, "%s\n", err);
    return -1;
  }
  char *source = sd_dataset_text_attr(path, "source");
  const int ours = strcmp(source, SOURCE_TAG) == 0;
  free(source);
  if (info.moments || !info.half || info.n != n || info.c != C || info.h != S || info.w != S)
    return ours ? 0 : -1;
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return -1;
  hid_t ds = H5Dopen2(f, "/latents", H5P_DEFAULT);
  hid_t dcpl = H5Dget_create_plist(ds);
  int nfilters = H5Pget_nfilters(dcpl);
  H5D_layout_t layout = H5Pget_layout(dcpl);
  hsize_t cd[4] = {0};
  if (layout == H5D_CHUNKED) H5Pget_chunk(dcpl, 4, cd);
  H5Pclose(dcpl);
  H5Dclose(ds);
  H5Fclose(f);
  int same = chunk > 0 ? layout == H5D_CHUNKED && cd[0] == (hsize_t)chunk
                        : layout == H5D_CONTIGUOUS;
  same = same && (gzip ? nfilters > 0 : nfilters == 0);
  return same ? 1 : ours ? 0 : -1;
}

// Reuses or (re)generates path; returns the generation time (0 when reused).
static double ensure_file(const char *path, long n, int C, int S, int chunk, int gzip, int quiet) {
  int s = file_state(path, n, C, S, chunk, gzip);
  if (s < 0)
    SD_FATAL("%s exists but is not a bench_loader file of shape (%ld, %d, %d, %d) %s: remove it "
             "or pass another --file", path, n, C, S, S, gzip ? "with gzip" : "without filters");
  if (s == 1) {
    if (!quiet) fprintf(stderr, "reusing %s\n", path);
    return 0;
  }
  snprintf(g_generated[g_ngenerated++], sizeof g_generated[0], "%s", path);
  return generate(path, n, C, S, chunk, gzip, quiet);
}

// ---- the page cache ----

static long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

// Fraction of the file's pages in the page cache (mincore), or -1 if unknown.
static double resident_fraction(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  long size = file_size(path);
  double frac = -1;
  long page = sysconf(_SC_PAGESIZE);
  if (size > 0 && page > 0) {
    void *p = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
    if (p != MAP_FAILED) {
      size_t pages = ((size_t)size + (size_t)page - 1) / (size_t)page;
      unsigned char *vec = malloc(pages);
      if (vec && mincore(p, (size_t)size, vec) == 0) {
        size_t in = 0;
        for (size_t i = 0; i < pages; i++) in += vec[i] & 1;
        frac = (double)in / (double)pages;
      }
      free(vec);
      munmap(p, (size_t)size);
    }
  }
  close(fd);
  return frac;
}

// Asks the kernel to forget the file's cached pages (written back first).
static void drop_cache(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) SD_FATAL("cannot open %s: %s", path, strerror(errno));
  if (fsync(fd) != 0) SD_FATAL("cannot fsync %s: %s", path, strerror(errno));
  int rc = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  if (rc != 0) fprintf(stderr, "warning: posix_fadvise(DONTNEED) on %s: %s\n", path, strerror(rc));
  close(fd);
}

// Reads the whole file once (into the page cache); returns the seconds it took.
static double warm_cache(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) SD_FATAL("cannot open %s: %s", path, strerror(errno));
  const size_t bs = 4u << 20;
  char *buf = sd_xmalloc(bs, "read buffer");
  double t0 = now_s();
  for (;;) {
    ssize_t r = read(fd, buf, bs);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) SD_FATAL("cannot read %s: %s", path, strerror(errno));
    if (r == 0) break;
  }
  double secs = now_s() - t0;
  free(buf);
  close(fd);
  return secs;
}

// ---- one measurement ----

static meas measure(const opts *o, const char *path, const char *mode, int prefetch, int in_memory,
                   long samples, int gzip, meas *load) {
  sd_dataset_info info;
  char err[1024];
  meas r = {.mode = mode, .prefetch = prefetch, .gzip = gzip, .chunk = o->chunk,
           .resident = resident_fraction(path)};
  if (sd_dataset_check(path, 0, &info, err, sizeof err) != 0) SD_FATAL("%s", err);
  sd_loader_opts lo = {.global_batch = o->batch, .rank = 0, .world = 1, .seed = 0, .hflip = 0,
                       .in_memory = in_memory, .prefetch = prefetch, .check_values = 0};
  double t0 = now_s();
  sd_loader *l = sd_loader_open(&info, &lo, err, sizeof err);
  if (!l) SD_FATAL("%s", err);
  r.open_s = now_s() - t0;
  r.read_path = sd_loader_mode(l);
  r.n = info.n;
  if (load) {  // in memory: the open is the load of the whole array
    *load = r;
    load->mode = "load";
    load->samples = info.n;
    load->seconds = r.open_s;
    load->first_batch_ms = load->max_batch_ms = 0;
  }
  const size_t out_row = (size_t)info.c * info.h * info.w;
  float *x = sd_xmalloc(sizeof(float) * out_row * (size_t)o->batch, "batch");
  int32_t *y = sd_xmalloc(sizeof(int32_t) * (size_t)o->batch, "labels");
  const long steps = (samples + o->batch - 1) / o->batch;
  double sum = 0, tstart = now_s();
  for (long s = 0; s < steps; s++) {
    double tb = now_s();
    if (sd_loader_get(l, s, x, y, err, sizeof err) != 0) SD_FATAL("%s", err);
    double ms = 1e3 * (now_s() - tb);
    if (s == 0) r.first_batch_ms = ms;
    else if (ms > r.max_batch_ms) r.max_batch_ms = ms;
    sum += x[0] + x[out_row * (size_t)o->batch - 1] + y[0];
  }
  r.seconds = now_s() - tstart;
  r.samples = steps * o->batch;
  if (!isfinite(sum)) SD_FATAL("non-finite values read from %s", path);
  free(x);
  free(y);
  sd_loader_close(l);
  return r;
}

static int g_nproc;
static double g_file_mb;

static void print_row(const opts *o, const meas *r) {
  const double sample_bytes = 2.0 * o->channels * o->size * o->size;
  double sps = r->samples / r->seconds, mbps = sps * sample_bytes / 1e6;
  if (o->json)
    printf("{\"bench\": \"loader\", \"mode\": \"%s\", \"read_path\": \"%s\", \"prefetch\": %d, "
           "\"samples\": %ld, \"seconds\": %.4f, \"samples_per_s\": %.1f, \"MB_per_s\": %.2f, "
           "\"headroom_vs_1100\": %.2f, \"batch\": %d, \"n\": %ld, \"chunk\": %d, "
           "\"gzip\": %d, \"open_s\": %.4f, \"first_batch_ms\": %.3f, \"max_batch_ms\": %.3f, "
           "\"resident_before\": %.3f, "
           "\"nproc\": %d, \"file_MB\": %.1f}\n",
           r->mode, r->read_path, r->prefetch, r->samples, r->seconds, sps, mbps,
           sps / CONSUMER_IMG_PER_S, o->batch, r->n, r->chunk, r->gzip, r->open_s,
           r->first_batch_ms, r->max_batch_ms, r->resident, g_nproc, g_file_mb);
  else
    printf("%-5s  %-9s  %8d  %7ld  %7.3f  %13.0f  %8.1f  %16.1f\n", r->mode, r->read_path,
           r->prefetch, r->samples, r->seconds, sps, mbps, sps / CONSUMER_IMG_PER_S);
  fflush(stdout);
}

static void cpu_model(char *buf, size_t len) {
  snprintf(buf, len, "unknown CPU");
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return;
  char line[512];
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "model name", 10) == 0) {
      char *p = strchr(line, ':');
      if (p) {
        p++;
        while (*p == ' ') p++;
        p[strcspn(p, "\n")] = 0;
        snprintf(buf, len, "%s", p);
      }
      break;
    }
  fclose(f);
}

static long parse_long(const char *s) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end) usage();
  return v;
}

int main(int argc, char **argv) {
  opts o = {.n = -1, .samples = -1, .gzip_n = -1, .channels = 4, .size = 32, .chunk = 16,
            .batch = 32, .prefetch = 2};
  const char *file = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--json")) o.json = 1;
    else if (!strcmp(a, "--keep")) o.keep = 1;
    else if (!strcmp(a, "--smoke")) o.smoke = 1;
    else if (i + 1 >= argc) usage();
    else if (!strcmp(a, "--file")) file = argv[++i];
    else if (!strcmp(a, "--threads-note")) o.threads_note = argv[++i];
    else if (!strcmp(a, "--n")) o.n = parse_long(argv[++i]);
    else if (!strcmp(a, "--samples")) o.samples = parse_long(argv[++i]);
    else if (!strcmp(a, "--gzip-n")) o.gzip_n = parse_long(argv[++i]);
    else if (!strcmp(a, "--channels")) o.channels = (int)parse_long(argv[++i]);
    else if (!strcmp(a, "--size")) o.size = (int)parse_long(argv[++i]);
    else if (!strcmp(a, "--chunk")) o.chunk = (int)parse_long(argv[++i]);
    else if (!strcmp(a, "--batch")) o.batch = (int)parse_long(argv[++i]);
    else if (!strcmp(a, "--prefetch")) o.prefetch = (int)parse_long(argv[++i]);
    else usage();
  }
  if (o.n < 0) o.n = o.smoke ? 512 : 100000;
  if (o.samples < 0) o.samples = o.smoke ? 256 : 20000;
  if (o.gzip_n < 0) o.gzip_n = o.n < 5000 ? o.n : 5000;
  if (o.n < 1 || o.n > INT32_MAX || o.samples < 1 || o.gzip_n < 0 || o.channels < 1 ||
      o.size < 1 || o.chunk < 0 || o.batch < 1 || o.prefetch < 1)
    usage();
  if (file) {
    snprintf(o.file, sizeof o.file, "%s", file);
  } else {
    const char *tmpdir = getenv("TMPDIR");
    snprintf(o.file, sizeof o.file, "%s/sddit_bench_latents%s.h5",
             tmpdir && *tmpdir ? tmpdir : "/tmp", o.smoke ? "_smoke" : "");
  }
  int chunk = o.chunk > o.n ? (int)o.n : o.chunk;  // HDF5: chunk <= dimension
  o.chunk = chunk;
  char gz_file[1100];
  size_t flen = strlen(o.file);
  if (flen > 3 && !strcmp(o.file + flen - 3, ".h5"))
    snprintf(gz_file, sizeof gz_file, "%.*s_gzip.h5", (int)(flen - 3), o.file);
  else
    snprintf(gz_file, sizeof gz_file, "%s_gzip.h5", o.file);
  g_keep = o.keep;
  atexit(remove_generated);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  const int quiet = o.smoke;

  double gen_s = ensure_file(o.file, o.n, o.channels, o.size, chunk, 0, quiet);
  g_nproc = (int)sysconf(_SC_NPROCESSORS_ONLN);
  g_file_mb = file_size(o.file) / 1e6;
  char cpu[256];
  cpu_model(cpu, sizeof cpu);
  FILE *hdr = o.json ? stderr : stdout;
  fprintf(hdr, "# bench_loader: %d cores (%s); consumer: one H200 at DiT-XL/2 speed, %.0f img/s; "
               "headroom = samples_per_s / %.0f (target >= 10 per rank)\n",
          g_nproc, cpu, CONSUMER_IMG_PER_S, CONSUMER_IMG_PER_S);
  fprintf(hdr, "# file %s: /latents (%ld, %d, %d, %d) float16, %s, %.1f MB%s\n", o.file, o.n,
          o.channels, o.size, o.size,
          chunk ? "chunked" : "contiguous", g_file_mb, gen_s > 0 ? "" : " (reused)");
  if (chunk)
    fprintf(hdr, "#   chunks of %d samples (%.0f KiB) without filters\n", chunk,
            chunk * 2.0 * o.channels * o.size * o.size / 1024);
  if (gen_s > 0) fprintf(hdr, "#   generated in %.1f s (written, fsynced)\n", gen_s);
  fprintf(hdr, "# batch %d per rank (world 1), seed 0, no flips; samples read per row: %ld; "
               "prefetch K adds one producer thread, prefetch 0 reads in the caller\n",
          o.batch, (o.samples + o.batch - 1) / o.batch * o.batch);
  if (o.threads_note) fprintf(hdr, "# threads: %s\n", o.threads_note);
  if (!o.json)
    printf("mode   read_path  prefetch  samples  seconds  samples_per_s  MB_per_s  "
           "headroom_vs_1100\n");
  fflush(stdout);

  // 1. cold
  drop_cache(o.file);
  double res_cold = resident_fraction(o.file);
  meas r = measure(&o, o.file, "cold", 0, 0, o.samples, 0, NULL);
  print_row(&o, &r);
  // 2, 3. warm (after reading the file once)
  double warm_s = warm_cache(o.file);
  r = measure(&o, o.file, "warm", 0, 0, o.samples, 0, NULL);
  print_row(&o, &r);
  meas warm_pf = measure(&o, o.file, "warm", o.prefetch, 0, o.samples, 0, NULL);
  print_row(&o, &warm_pf);
  // 4. in memory
  meas load;
  r = measure(&o, o.file, "warm", 0, 1, o.samples, 0, &load);
  print_row(&o, &load);
  print_row(&o, &r);
  // 5. through HDF5 (gzip)
  double gz_mb = 0, gz_res = -1;
  if (o.gzip_n > 0) {
    int gchunk = chunk > 0 ? chunk : 16;
    if (gchunk > o.gzip_n) gchunk = (int)o.gzip_n;
    opts og = o;
    og.chunk = gchunk;
    ensure_file(gz_file, o.gzip_n, o.channels, o.size, gchunk, 1, quiet);
    gz_mb = file_size(gz_file) / 1e6;
    long gs = o.samples < o.gzip_n ? o.samples : o.gzip_n;
    drop_cache(gz_file);
    gz_res = resident_fraction(gz_file);
    r = measure(&og, gz_file, "cold", 0, 0, gs, 1, NULL);
    print_row(&o, &r);
    warm_cache(gz_file);
    r = measure(&og, gz_file, "warm", 0, 0, gs, 1, NULL);
    print_row(&o, &r);
  }

  fprintf(hdr, "# cold: fsync + posix_fadvise(DONTNEED) first; %.0f%% of the file was still "
               "in this kernel's page cache after that. A VM's host may still cache the file, "
               "so cold reads here can be faster than a real disk.\n",
          res_cold >= 0 ? 100 * res_cold : -1.0);
  fprintf(hdr, "# warm: the file read once sequentially first (%.2f s, %.0f MB/s, partly "
               "cached by the cold row)\n", warm_s, g_file_mb / warm_s);
  fprintf(hdr, "# warm prefetch %d: wall time of sd_loader_get with no work between calls; the "
               "first batch (with the epoch permutation of %ld) took %.2f ms, the slowest other "
               "%.2f ms (a DiT-XL/2 step at %d per rank: %.1f ms)\n",
          o.prefetch, o.n, warm_pf.first_batch_ms, warm_pf.max_batch_ms, o.batch,
          1e3 * o.batch / CONSUMER_IMG_PER_S);
  fprintf(hdr, "# load: sd_loader_open with in_memory = 1 reads all %ld samples (from the page "
               "cache); the memory row then reads from that copy\n", o.n);
  if (o.gzip_n > 0)
    fprintf(hdr, "# hdf5: a second file %s, /latents (%ld, ...) gzip level 1, %.1f MB (%.0f%% of "
                 "raw; %.0f%% cached after the drop); MB_per_s counts uncompressed float16\n",
            gz_file, o.gzip_n, gz_mb,
            100 * gz_mb / (o.gzip_n * 2.0 * o.channels * o.size * o.size / 1e6),
            gz_res >= 0 ? 100 * gz_res : -1.0);
  return 0;
}
