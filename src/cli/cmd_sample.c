// `sddit sample` and `sddit denoise` (see cmd_sample.h).
#include "util/clock.h"
#include "cli/cmd_sample.h"
#include "device/backend_open.h"
#include "ckpt/ckpt.h"
#include "data/dataset.h"
#include "sample/denoiser.h"
#include "dist/dist.h"
#include "error.h"
#include "util/rng.h"
#include "sample/sampler.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ACT_BUDGET_BYTES (2ull << 30)  // activations of one network pass (chunk capacity)

static const char *k_sample_usage =
    "usage: sddit sample --checkpoint FILE|DIR [options]\n"
    "  --checkpoint FILE|DIR   a checkpoint, or a directory: its newest checkpoint that verifies\n"
    "  --weights ema|raw       the generation EMA (default) or the raw student weights\n"
    "  --steps N               sampler steps (40); Heun uses 2N-1 network evaluations\n"
    "  --sampler heun|euler    EDM deterministic Heun (default) or Euler\n"
    "  --guidance S            classifier-free guidance scale (1.5; 1 = conditional only)\n"
    "  --classes LIST          comma-separated classes, e.g. 0,3,7 ('null' = unconditional)\n"
    "  --per-class K           K samples of each class (of LIST, else of every class)\n"
    "  --num N                 N samples with uniform random classes (of LIST if given)\n"
    "                          (default: one sample of each class)\n"
    "  --seed S                noise and random classes (0)\n"
    "  --batch B               samples per sampler batch (64)\n"
    "  --out FILE.h5           output (samples.h5)\n"
    "  --sigma-min, --sigma-max, --rho   the EDM schedule (0.002, 80, 7)\n"
    "  --threads N             CPU threads per rank (0 = OpenMP default)\n"
    "  --backend cpu|cuda      where the network runs (cpu); cuda: this rank's GPU\n"
    "  --precision bf16|fp32   cuda matmul inputs (default: the checkpoint's train.precision)\n"
    "  --save-noise            also store the start noise as /noise\n"
    "  runs on every rank of an mpirun/srun job; the output does not depend on the ranks\n";

static const char *k_denoise_usage =
    "usage: sddit denoise --checkpoint FILE|DIR [--weights ema|raw] --in IN.h5 --out OUT.h5\n"
    "  IN.h5: /x (B, C, H, W), /sigma (B) > 0, /labels (B) in [0, num_classes]\n"
    "  (num_classes = the null class); OUT.h5 gets /D (B, C, H, W) = D(x; sigma, labels)\n"
    "  --batch B   samples per network pass (64); --threads N CPU threads (0 = default)\n";


// ---- options ---------------------------------------------------------------------------------

// If argv[*i] is --name or --name=value, returns its value (consuming the next argument for
// the first form) or fatal when it is missing; else NULL.
static const char *opt_value(int argc, char **argv, int *i, const char *name,
                             const char *usage) {
  const char *a = argv[*i];
  size_t k = strlen(name);
  if (strncmp(a, name, k) != 0) return NULL;
  if (a[k] == '=') return a + k + 1;
  if (a[k] != '\0') return NULL;
  if (*i + 1 >= argc) SD_FATAL_HINT(usage, "%s needs a value", name);
  return argv[++*i];
}

static long parse_long(const char *name, const char *v, long lo, long hi) {
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (!*v || *end || errno || x < lo || x > hi) {
    if (hi == LONG_MAX) SD_FATAL("%s: '%s' is not an integer >= %ld", name, v, lo);
    SD_FATAL("%s: '%s' is not an integer in [%ld, %ld]", name, v, lo, hi);
  }
  return x;
}

static double parse_double(const char *name, const char *v) {
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (!*v || *end || errno || !isfinite(x)) SD_FATAL("%s: '%s' is not a finite number", name, v);
  return x;
}

static unsigned long long parse_u64(const char *name, const char *v) {
  char *end;
  errno = 0;
  if (!*v || *v == '-') SD_FATAL("%s: '%s' is not a non-negative integer", name, v);
  unsigned long long x = strtoull(v, &end, 10);
  if (*end || errno) SD_FATAL("%s: '%s' is not a non-negative integer", name, v);
  return x;
}

static int parse_weights(const char *v) {
  if (!strcmp(v, "ema")) return 0;
  if (!strcmp(v, "raw")) return 1;
  SD_FATAL("--weights: '%s' is not ema or raw", v);
}

// A checkpoint file, or the newest verifying checkpoint of a directory, into out.
static void resolve_checkpoint(const char *arg, char *out, size_t len) {
  struct stat st;
  if (stat(arg, &st) != 0)
    SD_FATAL_HINT("give a checkpoint file or a run's checkpoint directory",
                  "--checkpoint %s: %s", arg, strerror(errno));
  if (!S_ISDIR(st.st_mode)) {
    snprintf(out, len, "%s", arg);
    return;
  }
  char err[1024];
  int found = sd_ckpt_find_latest(arg, out, len, err, sizeof err);
  if (found < 0) SD_FATAL("--checkpoint %s: %s", arg, err);
  if (found == 0)
    SD_FATAL_HINT("checkpoints are named ckpt-<step>.h5; `sddit inspect FILE` checks one",
                  "--checkpoint %s: the directory holds no checkpoint that verifies", arg);
}

// Reads the weights on rank 0 and broadcasts them (config text, step, parameters) to every
// rank; the other ranks parse the same configuration.
static void load_weights(sd_dist *dist, const char *arg, int raw, sd_dn_weights *w) {
  char err[2048];
  int64_t hdr[3] = {0, 0, 0};  // config bytes, step, parameter count
  if (dist->rank == 0) {
    char path[1024];
    resolve_checkpoint(arg, path, sizeof path);
    if (sd_dn_weights_read(w, path, raw, err, sizeof err) != 0)
      SD_FATAL_HINT("`sddit inspect FILE` shows what a checkpoint holds", "%s", err);
    hdr[0] = (int64_t)strlen(w->config_text) + 1;
    hdr[1] = w->step;
    hdr[2] = (int64_t)w->count;
  }
  if (dist->world == 1) return;
  sd_dist_bcast_bytes(dist, hdr, sizeof hdr, 0, "checkpoint header");
  if (dist->rank != 0) {
    memset(w, 0, sizeof *w);
    w->raw = raw;
    w->step = (long)hdr[1];
    w->count = (size_t)hdr[2];
    w->config_text = sd_xmalloc((size_t)hdr[0], "configuration text");
    w->params = sd_xmalloc(sizeof(float) * (w->count ? w->count : 1), "weights");
  }
  sd_dist_bcast_bytes(dist, w->config_text, (size_t)hdr[0], 0, "configuration text");
  sd_dist_bcast_bytes(dist, w->path, sizeof w->path, 0, "checkpoint path");
  sd_dist_bcast_f32(dist, w->params, w->count, 0, "weights");
  if (dist->rank != 0 && sd_config_from_text(&w->cfg, w->config_text, err, sizeof err) != 0)
    SD_FATAL("%s: configuration: %s", w->path, err);
}

// Chunk capacity: up to `rows` samples per pass, fewer if activations would pass the budget.
static int chunk_capacity(const sd_dit_config *c, long rows) {
  size_t per = sd_denoiser_floats_per_sample(c) * sizeof(float);
  long fit = (long)(ACT_BUDGET_BYTES / (per ? per : 1));
  if (fit < 1) fit = 1;
  return (int)(rows < fit ? rows : fit);
}

// ---- HDF5 output -----------------------------------------------------------------------------

typedef struct h5out {
  hid_t f;
  char path[1100], tmp[1120];
  int failed;
  char what[256];
} h5out;

static void out_fail(h5out *o, const char *fmt, ...) SD_PRINTF(2, 3);
static void out_fail(h5out *o, const char *fmt, ...) {
  if (o->failed) return;
  o->failed = 1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(o->what, sizeof o->what, fmt, ap);
  va_end(ap);
}

// The output's directory must be writable (checked before any work).
static void check_writable(const char *path) {
  char dir[1100];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (!slash) snprintf(dir, sizeof dir, ".");
  else if (slash == dir) dir[1] = '\0';
  else *slash = '\0';
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
    SD_FATAL("--out %s: directory '%s' does not exist", path, dir);
  if (access(dir, W_OK) != 0)
    SD_FATAL("--out %s: directory '%s' is not writable: %s", path, dir, strerror(errno));
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
    SD_FATAL("--out %s: is a directory", path);
}

static void out_open(h5out *o, const char *path) {
  memset(o, 0, sizeof *o);
  snprintf(o->path, sizeof o->path, "%s", path);
  snprintf(o->tmp, sizeof o->tmp, "%s.tmp", path);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  o->f = H5Fcreate(o->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (o->f < 0) SD_FATAL("cannot create '%s': %s", o->tmp, strerror(errno));
}

static void out_attr(h5out *o, const char *name, hid_t ftype, hid_t mtype, const void *v) {
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(o->f, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0 || H5Awrite(a, mtype, v) < 0) out_fail(o, "cannot write attribute '%s'", name);
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
}

static void out_attr_str(h5out *o, const char *name, const char *value) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  const char *p = value ? value : "";
  out_attr(o, name, t, t, &p);
  H5Tclose(t);
}

static void out_attr_i64(h5out *o, const char *name, long long v) {
  out_attr(o, name, H5T_STD_I64LE, H5T_NATIVE_LLONG, &v);
}

static void out_attr_u64(h5out *o, const char *name, unsigned long long v) {
  out_attr(o, name, H5T_STD_U64LE, H5T_NATIVE_ULLONG, &v);
}

static void out_attr_f64(h5out *o, const char *name, double v) {
  out_attr(o, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

// Creates dataset name (ndim dims) of file type ftype; returns it open, or -1.
static hid_t out_dataset(h5out *o, const char *name, hid_t ftype, int ndim,
                         const hsize_t *dims) {
  hid_t sp = H5Screate_simple(ndim, dims, NULL);
  hid_t ds = H5Dcreate2(o->f, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Sclose(sp);
  if (ds < 0) out_fail(o, "cannot create dataset %s", name);
  return ds;
}

// Writes rows [r0, r0 + nr) of a dataset whose rows have `row` elements.
static void out_rows(h5out *o, hid_t ds, hid_t mtype, int ndim, const hsize_t *dims, size_t r0,
                     size_t nr, const void *data, const char *name) {
  if (ds < 0 || nr == 0) return;
  hsize_t start[4] = {r0, 0, 0, 0}, count[4];
  for (int d = 0; d < ndim; d++) count[d] = d == 0 ? nr : dims[d];
  hid_t fsp = H5Dget_space(ds), msp = H5Screate_simple(ndim, count, NULL);
  if (H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
      H5Dwrite(ds, mtype, msp, fsp, H5P_DEFAULT, data) < 0)
    out_fail(o, "cannot write rows %zu..%zu of %s", r0, r0 + nr - 1, name);
  H5Sclose(msp);
  H5Sclose(fsp);
}

// Closes, fsyncs and renames the file into place; fatal (after removing the .tmp) on failure.
static void out_commit(h5out *o) {
  if (!o->failed && H5Fflush(o->f, H5F_SCOPE_GLOBAL) < 0) out_fail(o, "cannot flush");
  if (H5Fclose(o->f) < 0) out_fail(o, "cannot close");
  o->f = -1;
  if (!o->failed) {
    int fd = open(o->tmp, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) out_fail(o, "cannot fsync: %s", strerror(errno));
    if (fd >= 0) close(fd);
  }
  if (!o->failed && rename(o->tmp, o->path) != 0)
    out_fail(o, "cannot rename it to %s: %s", o->path, strerror(errno));
  if (o->failed) {
    unlink(o->tmp);
    SD_FATAL_HINT("a full disk or a quota is the usual cause", "%s: %s (nothing was written)",
                  o->tmp, o->what);
  }
}

// ---- sample ----------------------------------------------------------------------------------

typedef struct sample_args {
  const char *checkpoint, *out, *classes, *backend, *precision;
  int raw, heun, save_noise, threads;
  long steps, per_class, num, batch;
  double guidance, smin, smax, rho;
  unsigned long long seed;
} sample_args;

static void parse_sample_args(int argc, char **argv, sample_args *a) {
  memset(a, 0, sizeof *a);
  a->out = "samples.h5";
  a->backend = "cpu";
  a->heun = 1;
  a->steps = 40;
  a->guidance = 1.5;
  a->batch = 64;
  a->smin = 0.002;
  a->smax = 80.0;
  a->rho = 7.0;
  a->per_class = -1;
  a->num = -1;
  const char *u = k_sample_usage;
  for (int i = 2; i < argc; i++) {
    const char *v;
    if ((v = opt_value(argc, argv, &i, "--checkpoint", u))) a->checkpoint = v;
    else if ((v = opt_value(argc, argv, &i, "--weights", u))) a->raw = parse_weights(v);
    else if ((v = opt_value(argc, argv, &i, "--steps", u)))
      a->steps = parse_long("--steps", v, 1, 100000);
    else if ((v = opt_value(argc, argv, &i, "--sampler", u))) {
      if (!strcmp(v, "heun")) a->heun = 1;
      else if (!strcmp(v, "euler")) a->heun = 0;
      else SD_FATAL("--sampler: '%s' is not heun or euler", v);
    } else if ((v = opt_value(argc, argv, &i, "--guidance", u))) {
      a->guidance = parse_double("--guidance", v);
      if (a->guidance < 0) SD_FATAL("--guidance: %s must be >= 0", v);
    } else if ((v = opt_value(argc, argv, &i, "--classes", u))) a->classes = v;
    else if ((v = opt_value(argc, argv, &i, "--per-class", u)))
      a->per_class = parse_long("--per-class", v, 1, INT_MAX);
    else if ((v = opt_value(argc, argv, &i, "--num", u))) a->num = parse_long("--num", v, 1, INT_MAX);
    else if ((v = opt_value(argc, argv, &i, "--seed", u))) a->seed = parse_u64("--seed", v);
    else if ((v = opt_value(argc, argv, &i, "--batch", u)))
      a->batch = parse_long("--batch", v, 1, 1 << 20);
    else if ((v = opt_value(argc, argv, &i, "--out", u))) a->out = v;
    else if ((v = opt_value(argc, argv, &i, "--sigma-min", u))) a->smin = parse_double("--sigma-min", v);
    else if ((v = opt_value(argc, argv, &i, "--sigma-max", u))) a->smax = parse_double("--sigma-max", v);
    else if ((v = opt_value(argc, argv, &i, "--rho", u))) a->rho = parse_double("--rho", v);
    else if ((v = opt_value(argc, argv, &i, "--threads", u)))
      a->threads = (int)parse_long("--threads", v, 0, 4096);
    else if ((v = opt_value(argc, argv, &i, "--backend", u))) {
      if (strcmp(v, "cpu") != 0 && strcmp(v, "cuda") != 0)
        SD_FATAL("--backend: '%s' is not cpu or cuda", v);
      a->backend = v;
    } else if ((v = opt_value(argc, argv, &i, "--precision", u))) {
      if (strcmp(v, "bf16") != 0 && strcmp(v, "fp32") != 0)
        SD_FATAL("--precision: '%s' is not bf16 or fp32", v);
      a->precision = v;
    } else if (!strcmp(argv[i], "--save-noise")) a->save_noise = 1;
    else SD_FATAL_HINT(u, "unknown option '%s'", argv[i]);
  }
  if (!a->checkpoint) SD_FATAL_HINT(u, "--checkpoint FILE|DIR is required");
  if (a->num > 0 && a->per_class > 0) SD_FATAL_HINT(u, "give --num or --per-class, not both");
  if (!a->out[0]) SD_FATAL("--out needs a file name");
}

// Parses --classes against the model: a malloc'ed list of labels, count in *n.
static int32_t *parse_classes(const char *list, int K, int *n) {
  int cap = 1;
  for (const char *p = list; *p; p++) cap += *p == ',';
  int32_t *out = sd_xmalloc(sizeof(int32_t) * (size_t)cap, "classes");
  *n = 0;
  const char *p = list;
  for (;;) {
    size_t len = strcspn(p, ",");
    char item[32];
    if (len == 0 || len >= sizeof item)
      SD_FATAL("--classes '%s': empty or overlong item (want e.g. 0,3,7 or null)", list);
    memcpy(item, p, len);
    item[len] = '\0';
    long c;
    if (!strcmp(item, "null")) {
      c = K;
    } else {
      char *end;
      errno = 0;
      c = strtol(item, &end, 10);
      if (*end || errno) SD_FATAL("--classes: '%s' is not a class number or null", item);
      if (c < 0 || c >= K)
        SD_FATAL_HINT("use 'null' for the unconditional (null) class",
                      "--classes: class %ld is unknown: the model has %d classes (0..%d)", c, K,
                      K - 1);
    }
    out[(*n)++] = (int32_t)c;
    if (!p[len]) break;
    p += len + 1;
  }
  return out;
}

// Labels of every sample (the same on every rank). Returns N.
static long make_labels(const sample_args *a, int K, int32_t **labels_out) {
  int nl = 0;
  int32_t *list = NULL;
  if (a->classes) {
    list = parse_classes(a->classes, K, &nl);
  } else {
    nl = K;
    list = sd_xmalloc(sizeof(int32_t) * (size_t)K, "classes");
    for (int k = 0; k < K; k++) list[k] = k;
  }
  long N;
  int32_t *lab;
  if (a->num > 0) {
    N = a->num;
    lab = sd_xmalloc(sizeof(int32_t) * (size_t)N, "labels");
    for (long i = 0; i < N; i++)
      lab[i] = list[sd_rng_below(a->seed, SD_RNG_SAMPLE, 1, (uint32_t)i, 0, (uint32_t)nl)];
  } else {
    long per = a->per_class > 0 ? a->per_class : 1;
    if ((double)per * nl > INT_MAX) SD_FATAL("%ld x %d samples are too many", per, nl);
    N = per * nl;
    lab = sd_xmalloc(sizeof(int32_t) * (size_t)N, "labels");
    for (long i = 0; i < N; i++) lab[i] = list[i / per];
  }
  free(list);
  *labels_out = lab;
  return N;
}

static void format_eta(double s, char *buf, size_t len) {
  if (!isfinite(s) || s < 0) s = 0;
  long t = (long)s;
  if (t >= 3600) snprintf(buf, len, "%ldh%02ldm", t / 3600, t / 60 % 60);
  else snprintf(buf, len, "%ldm%02lds", t / 60, t % 60);
}

int sd_cmd_sample(int argc, char **argv) {
  if (argc < 3) {
    fputs(k_sample_usage, stderr);
    return 2;
  }
  for (int i = 2; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      fputs(k_sample_usage, stdout);
      return 0;
    }
  sd_dist dist;
  sd_dist_init(&dist, &argc, &argv);
  const int rank = dist.rank, world = dist.world, lead = rank == 0;
  sample_args a;
  parse_sample_args(argc, argv, &a);
  if (lead) check_writable(a.out);

  sd_dn_weights w;
  memset(&w, 0, sizeof w);
  load_weights(&dist, a.checkpoint, a.raw, &w);
  const sd_config *cfg = &w.cfg;
  const int K = cfg->model.num_classes;
  const size_t n = (size_t)cfg->model.in_channels * cfg->model.input_size *
                   cfg->model.input_size;
  int32_t *labels = NULL;
  const long N = make_labels(&a, K, &labels);

  sd_sampler_opts so;
  sd_sampler_opts_default(&so, K, n);
  so.steps = (int)a.steps;
  so.heun = a.heun;
  so.guidance = (float)a.guidance;
  so.smin = (float)a.smin;
  so.smax = (float)a.smax;
  so.rho = (float)a.rho;
  char err[1024];
  if (sd_sampler_opts_check(&so, err, sizeof err) != 0) SD_FATAL("%s", err);

  // batches of a.batch samples, each rank a contiguous run of whole batches
  const long bs = a.batch, nbatch = (N + bs - 1) / bs;
  const long b_lo = nbatch * rank / world, b_hi = nbatch * (rank + 1) / world;
  const long s_lo = b_lo * bs < N ? b_lo * bs : N, s_hi = b_hi * bs < N ? b_hi * bs : N;
  const long mine = s_hi - s_lo;

  sd_backend be;
  if (sd_backend_open(&be, a.backend, a.precision ? a.precision : cfg->precision, a.threads,
                      dist.local_rank, err, sizeof err) != 0)
    SD_FATAL_HINT("use --backend cpu, or run where a GPU is visible", "--backend %s: %s",
                  a.backend, err);
  const long rows = so.guidance != 1.0f ? 2 * bs : bs;
  const int cap = chunk_capacity(&cfg->model, rows);
  sd_denoiser dn;
  sd_denoiser_create(&dn, &cfg->model, cfg->sigma_data, w.params, cap, &be);
  const long evals = sd_edm_evaluations(&so);
  if (lead) {
    printf("# checkpoint %s (step %ld), weights %s\n", w.path, w.step, a.raw ? "raw" : "ema");
    printf("# model %s: samples (%d, %d, %d), %d classes, sigma_data %g\n", cfg->model.preset,
           cfg->model.in_channels, cfg->model.input_size, cfg->model.input_size, K,
           cfg->sigma_data);
    printf("# sampler %s, %d steps, sigma %g..%g, rho %g, guidance %g: %ld network evaluations "
           "per sample\n", a.heun ? "heun" : "euler", so.steps, so.smax, so.smin, so.rho,
           so.guidance, evals);
    if (strcmp(be.name, "cpu") == 0)
      printf("# %ld samples, seed %llu, batch %ld, %d rank%s x %d threads, %d samples per "
             "network pass\n", N, a.seed, bs, world, world == 1 ? "" : "s", be.num_threads,
             cap);
    else
      printf("# %ld samples, seed %llu, batch %ld, %d rank%s x one GPU (%s matmuls), %d "
             "samples per network pass\n", N, a.seed, bs, world, world == 1 ? "" : "s",
             a.precision ? a.precision : cfg->precision, cap);
    fflush(stdout);
  }

  // this rank's share
  float *xs = sd_xmalloc(sizeof(float) * (size_t)(mine ? mine : 1) * n, "samples");
  float *noise = sd_xmalloc(sizeof(float) * (size_t)(mine ? mine : 1) * n, "noise");
  const double t0 = sd_now_s();
  double t_print = t0;
  for (long b = b_lo; b < b_hi; b++) {
    const long i0 = b * bs, nb = (i0 + bs < N ? i0 + bs : N) - i0;
    float *nz = noise + (size_t)(i0 - s_lo) * n;
    for (long k = 0; k < nb; k++)
      sd_rng_normal(a.seed, SD_RNG_SAMPLE, 0, (uint32_t)(i0 + k), 0, n, nz + (size_t)k * n);
    sd_edm_sample(&so, sd_denoiser_fn, &dn, (int)nb, labels + i0, nz,
                  xs + (size_t)(i0 - s_lo) * n);
    const double now = sd_now_s();
    const long done = i0 + nb - s_lo;
    if (lead && (now - t_print >= 1.0 || b + 1 == b_hi)) {
      const double rate = done / (now - t0);
      char eta[32];
      format_eta((mine - done) / rate, eta, sizeof eta);
      printf("sample %ld/%ld on rank 0 (%ld in all) | %.2f samples/s per rank | ETA %s\n",
             done, mine, N, rate, eta);
      fflush(stdout);
      t_print = now;
    }
  }
  const double t_sample = sd_now_s() - t0;
  long bad = 0;
  for (size_t j = 0; j < (size_t)mine * n; j++) bad += !isfinite(xs[j]);
  double sums[2] = {(double)bad, (double)dn.rows};
  sd_dist_allreduce_sum_f64(&dist, sums, 2, "sample statistics");

  // gather to rank 0 in slabs (allreduce-sum: other ranks contribute zeros) and write there
  h5out o;
  hid_t ds_x = -1, ds_n = -1, ds_y = -1;
  const hsize_t dims[4] = {(hsize_t)N, (hsize_t)cfg->model.in_channels,
                           (hsize_t)cfg->model.input_size, (hsize_t)cfg->model.input_size};
  if (lead) {
    out_open(&o, a.out);
    ds_x = out_dataset(&o, "/samples", H5T_IEEE_F32LE, 4, dims);
    ds_y = out_dataset(&o, "/labels", H5T_STD_I32LE, 1, dims);
    if (a.save_noise) ds_n = out_dataset(&o, "/noise", H5T_IEEE_F32LE, 4, dims);
  }
  long slab = (long)((64u << 20) / (sizeof(float) * n));
  if (slab < 1) slab = 1;
  float *buf = sd_xmalloc(sizeof(float) * (size_t)(slab < N ? slab : N) * n, "gather slab");
  for (int pass = 0; pass < (a.save_noise ? 2 : 1); pass++) {
    const float *src = pass == 0 ? xs : noise;
    for (long r0 = 0; r0 < N; r0 += slab) {
      const long nr = N - r0 < slab ? N - r0 : slab;
      memset(buf, 0, sizeof(float) * (size_t)nr * n);
      const long lo = r0 > s_lo ? r0 : s_lo, hi = r0 + nr < s_hi ? r0 + nr : s_hi;
      if (hi > lo)
        memcpy(buf + (size_t)(lo - r0) * n, src + (size_t)(lo - s_lo) * n,
               sizeof(float) * (size_t)(hi - lo) * n);
      sd_dist_allreduce_sum_f32(&dist, buf, (size_t)nr * n, "gather samples");
      if (lead) out_rows(&o, pass == 0 ? ds_x : ds_n, H5T_NATIVE_FLOAT, 4, dims, (size_t)r0,
                         (size_t)nr, buf, pass == 0 ? "/samples" : "/noise");
    }
  }
  free(buf);
  if (lead) {
    out_rows(&o, ds_y, H5T_NATIVE_INT32, 1, dims, 0, (size_t)N, labels, "/labels");
    if (ds_x >= 0) H5Dclose(ds_x);
    if (ds_y >= 0) H5Dclose(ds_y);
    if (ds_n >= 0) H5Dclose(ds_n);
    out_attr_str(&o, "format", "sddit-samples");
    out_attr_i64(&o, "format_version", 1);
    out_attr_str(&o, "sampler", a.heun ? "heun" : "euler");
    out_attr_i64(&o, "steps", so.steps);
    out_attr_f64(&o, "guidance", so.guidance);
    out_attr_u64(&o, "seed", a.seed);
    out_attr_str(&o, "weights", a.raw ? "raw" : "ema");
    out_attr_str(&o, "backend", be.name);
    out_attr_str(&o, "checkpoint", w.path);
    out_attr_i64(&o, "train_step", w.step);
    out_attr_i64(&o, "num_classes", K);
    out_attr_f64(&o, "sigma_min", so.smin);
    out_attr_f64(&o, "sigma_max", so.smax);
    out_attr_f64(&o, "rho", so.rho);
    out_attr_f64(&o, "sigma_data", cfg->sigma_data);
    out_attr_i64(&o, "evaluations_per_sample", evals);
    out_attr_str(&o, "config", w.config_text);
    if (!strcmp(cfg->source, "hdf5") && cfg->path[0]) {
      sd_dataset_info info;
      if (access(cfg->path, R_OK) == 0 &&
          sd_dataset_check(cfg->path, 0, &info, err, sizeof err) == 0) {
        out_attr_i64(&o, "image_size", info.image_size);
        out_attr_i64(&o, "latent_channels", info.latent_channels);
        out_attr_f64(&o, "scale_factor", info.scale_factor);
        char *encoder = sd_dataset_text_attr(cfg->path, "encoder");
        out_attr_str(&o, "encoder", encoder);
        free(encoder);
      } else {
        fprintf(stderr, "warning: the training data %s is not readable here; image_size, "
                "latent_channels, scale_factor and encoder are left out\n", cfg->path);
      }
    }
    out_commit(&o);
    printf("# wrote %s: /samples (%ld, %d, %d, %d), /labels (%ld)%s in %.1f s "
           "(%.2f samples/s, %.0f network evaluations)\n", a.out, N, cfg->model.in_channels,
           cfg->model.input_size, cfg->model.input_size, N, a.save_noise ? ", /noise" : "",
           t_sample, N / (t_sample > 0 ? t_sample : 1e-9), sums[1]);
    if (sums[0] > 0)
      fprintf(stderr, "warning: %.0f sample values are not finite\n", sums[0]);
    fflush(stdout);
  }
  free(xs);
  free(noise);
  free(labels);
  sd_denoiser_destroy(&dn);
  sd_backend_close(&be);
  sd_dn_weights_free(&w);
  int64_t code = 0;
  sd_dist_allreduce_max_i64(&dist, &code, 1, "exit status");
  sd_dist_finalize(&dist);
  return (int)code;
}

// ---- denoise ---------------------------------------------------------------------------------

// Reads a whole dataset converted to mtype after checking its rank and class; dims filled.
static void *read_input(hid_t f, const char *in, const char *name, H5T_class_t want, int ndim,
                        hsize_t *dims, hid_t mtype, size_t elsize, const char *hint) {
  if (H5Lexists(f, name, H5P_DEFAULT) <= 0)
    SD_FATAL_HINT(hint, "%s: dataset %s is missing", in, name);
  hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
  if (ds < 0) SD_FATAL_HINT(hint, "%s: %s is not a dataset", in, name);
  hid_t sp = H5Dget_space(ds), t = H5Dget_type(ds);
  int nd = H5Sget_simple_extent_ndims(sp);
  if (nd != ndim) SD_FATAL_HINT(hint, "%s: %s has %d dimensions, want %d", in, name, nd, ndim);
  H5Sget_simple_extent_dims(sp, dims, NULL);
  if (H5Tget_class(t) != want)
    SD_FATAL_HINT(hint, "%s: %s must hold %s values", in, name,
                  want == H5T_FLOAT ? "floating-point" : "integer");
  size_t count = 1;
  for (int d = 0; d < nd; d++) count *= dims[d];
  void *buf = sd_xmalloc(elsize * (count ? count : 1), name);
  if (count && H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
    SD_FATAL("%s: cannot read %s (corrupt file?)", in, name);
  H5Tclose(t);
  H5Sclose(sp);
  H5Dclose(ds);
  return buf;
}

int sd_cmd_denoise(int argc, char **argv) {
  if (argc < 3) {
    fputs(k_denoise_usage, stderr);
    return 2;
  }
  const char *u = k_denoise_usage, *ckpt = NULL, *in = NULL, *out = NULL;
  int raw = 0, threads = 0;
  long batch = 64;
  for (int i = 2; i < argc; i++) {
    const char *v;
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      fputs(u, stdout);
      return 0;
    }
    if ((v = opt_value(argc, argv, &i, "--checkpoint", u))) ckpt = v;
    else if ((v = opt_value(argc, argv, &i, "--weights", u))) raw = parse_weights(v);
    else if ((v = opt_value(argc, argv, &i, "--in", u))) in = v;
    else if ((v = opt_value(argc, argv, &i, "--out", u))) out = v;
    else if ((v = opt_value(argc, argv, &i, "--batch", u)))
      batch = parse_long("--batch", v, 1, 1 << 20);
    else if ((v = opt_value(argc, argv, &i, "--threads", u)))
      threads = (int)parse_long("--threads", v, 0, 4096);
    else SD_FATAL_HINT(u, "unknown option '%s'", argv[i]);
  }
  if (!ckpt) SD_FATAL_HINT(u, "--checkpoint FILE is required");
  if (!in) SD_FATAL_HINT(u, "--in IN.h5 is required");
  if (!out) SD_FATAL_HINT(u, "--out OUT.h5 is required");
  check_writable(out);
  sd_dist dist;  // one process: no MPI
  memset(&dist, 0, sizeof dist);
  dist.world = 1;
  sd_dn_weights w;
  load_weights(&dist, ckpt, raw, &w);
  const sd_dit_config *mc = &w.cfg.model;
  const int K = mc->num_classes, C = mc->in_channels, S = mc->input_size;
  const size_t n = (size_t)C * S * S;

  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  struct stat st;
  if (stat(in, &st) != 0) SD_FATAL("--in %s: %s", in, strerror(errno));
  if (H5Fis_hdf5(in) <= 0) SD_FATAL("--in %s: not an HDF5 file", in);
  hid_t f = H5Fopen(in, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) SD_FATAL("--in %s: cannot open (truncated or corrupt?)", in);
  char hint[160];
  snprintf(hint, sizeof hint, "the model wants /x (B, %d, %d, %d), /sigma (B), /labels (B) "
           "in [0, %d]", C, S, S, K);
  hsize_t dx[4], ds[1], dy[1];
  float *x = read_input(f, in, "/x", H5T_FLOAT, 4, dx, H5T_NATIVE_FLOAT, sizeof(float), hint);
  float *sig = read_input(f, in, "/sigma", H5T_FLOAT, 1, ds, H5T_NATIVE_FLOAT, sizeof(float),
                          hint);
  int32_t *y = read_input(f, in, "/labels", H5T_INTEGER, 1, dy, H5T_NATIVE_INT32,
                          sizeof(int32_t), hint);
  H5Fclose(f);
  const long B = (long)dx[0];
  if (dx[1] != (hsize_t)C || dx[2] != (hsize_t)S || dx[3] != (hsize_t)S)
    SD_FATAL_HINT(hint, "%s: /x has shape (%llu, %llu, %llu, %llu) but the model's samples are "
                  "(%d, %d, %d)", in, (unsigned long long)dx[0], (unsigned long long)dx[1],
                  (unsigned long long)dx[2], (unsigned long long)dx[3], C, S, S);
  if (B < 1 || B > INT_MAX) SD_FATAL("%s: /x holds %ld samples", in, B);
  if (ds[0] != dx[0] || dy[0] != dx[0])
    SD_FATAL_HINT(hint, "%s: /x has %ld samples but /sigma has %llu and /labels %llu", in, B,
                  (unsigned long long)ds[0], (unsigned long long)dy[0]);
  for (long b = 0; b < B; b++) {
    if (!(sig[b] > 0.0f) || !isfinite(sig[b]))
      SD_FATAL("%s: /sigma[%ld] = %g must be positive and finite", in, b, sig[b]);
    if (y[b] < 0 || y[b] > K)
      SD_FATAL_HINT(hint, "%s: /labels[%ld] = %d is outside [0, %d] (%d = the null class)", in,
                    b, y[b], K, K);
  }
  for (size_t j = 0; j < (size_t)B * n; j++)
    if (!isfinite(x[j])) SD_FATAL("%s: /x holds a non-finite value at flat index %zu", in, j);

  sd_backend be;
  sd_backend_cpu_init(&be, threads);
  sd_denoiser dn;
  sd_denoiser_create(&dn, mc, w.cfg.sigma_data, w.params, chunk_capacity(mc, B < batch ? B : batch),
                     &be);
  float *D = sd_xmalloc(sizeof(float) * (size_t)B * n, "D");
  sd_denoiser_eval(&dn, x, sig, y, (int)B, D);
  h5out o;
  out_open(&o, out);
  const hsize_t dims[4] = {dx[0], dx[1], dx[2], dx[3]};
  hid_t dd = out_dataset(&o, "/D", H5T_IEEE_F32LE, 4, dims);
  out_rows(&o, dd, H5T_NATIVE_FLOAT, 4, dims, 0, (size_t)B, D, "/D");
  if (dd >= 0) H5Dclose(dd);
  out_attr_str(&o, "format", "sddit-denoised");
  out_attr_i64(&o, "format_version", 1);
  out_attr_str(&o, "checkpoint", w.path);
  out_attr_str(&o, "weights", raw ? "raw" : "ema");
  out_attr_i64(&o, "train_step", w.step);
  out_attr_f64(&o, "sigma_data", w.cfg.sigma_data);
  out_commit(&o);
  printf("# wrote %s: /D (%ld, %d, %d, %d) from %s (step %ld, weights %s)\n", out, B, C, S, S,
         w.path, w.step, raw ? "raw" : "ema");
  free(x);
  free(sig);
  free(y);
  free(D);
  sd_denoiser_destroy(&dn);
  sd_backend_cpu_destroy(&be);
  sd_dn_weights_free(&w);
  return 0;
}
