// `sddit export` and `sddit import` (see cmd_export.h).
#include "cli/cmd_export.h"
#include "ckpt/ckpt.h"
#include "config/config.h"
#include "model/dit.h"
#include "model/dit_params.h"
#include "error.h"
#include "util/files.h"
#include "util/h5io.h"
#include "model/head.h"
#include "ckpt/safetensors.h"
#include "objective/sddit.h"
#include "objective/sddit_config.h"
#include "sd_git_rev.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EXPORT_FORMAT "sddit-dit"
#define EXPORT_FORMAT_VERSION "1"
#define NAME_LEN 64  // bytes per entry of a checkpoint's /tensors/names

static const char *k_export_usage =
    "usage: sddit export --checkpoint FILE|DIR [--weights ema|raw] --out MODEL.safetensors\n"
    "  writes the DiT of a checkpoint (FILE, or the newest checkpoint of DIR that verifies)\n"
    "  as safetensors under DiT's names and PyTorch shapes: --weights ema (default) the\n"
    "  generation EMA, raw the student's weights (the projection head is not exported);\n"
    "  plus pos_embed (1, T, D), the fixed sin-cos table. Metadata: format, weights,\n"
    "  train_step, git_rev, config (the run's INI text).\n";

static const char *k_import_usage =
    "usage: sddit import --in MODEL.safetensors --out CKPT.h5 [--config FILE.ini]\n"
    "  builds a step-0 checkpoint from DiT weights (as `sddit export` writes them): the model\n"
    "  configuration from --config, else from the file's \"config\" metadata; student,\n"
    "  teacher and generation EMA all get the file's weights; the projection head is\n"
    "  initialised from train.seed as training does; Adam moments and center are zero.\n";

// "--name VALUE" or "--name=VALUE" at argv[*i]: 1 with *value set (and *i advanced past a
// separate value), 0 if argv[*i] is another option. Fatal when the value is missing.
static int take_opt(int argc, char **argv, int *i, const char *name, const char **value,
                    const char *usage) {
  size_t n = strlen(name);
  const char *a = argv[*i];
  if (strncmp(a, name, n) != 0) return 0;
  if (a[n] == '=') {
    *value = a + n + 1;
  } else if (a[n] == '\0') {
    if (*i + 1 >= argc) SD_FATAL_HINT(usage, "%s needs a value", name);
    *value = argv[++*i];
  } else {
    return 0;
  }
  if (!(*value)[0]) SD_FATAL_HINT(usage, "%s needs a value", name);
  return 1;
}

// Loads INI text (from a checkpoint or a safetensors file) over the tiny defaults, as
// `sddit train` loads its --config. `what` names the text's origin in messages.
static void config_from_text(sd_config *cfg, const char *text, const char *what) {
  const char *dir = getenv("TMPDIR");
  char path[4096], err[1024];
  snprintf(path, sizeof path, "%s/sddit-config-XXXXXX", dir && dir[0] ? dir : "/tmp");
  int fd = mkstemp(path);
  if (fd < 0) SD_FATAL("cannot create a temporary file %s: %s", path, strerror(errno));
  size_t len = strlen(text), done = 0;
  while (done < len) {
    ssize_t k = write(fd, text + done, len - done);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      int e = errno;
      close(fd);
      unlink(path);
      SD_FATAL("cannot write the temporary file %s: %s", path, strerror(e));
    }
    done += (size_t)k;
  }
  close(fd);
  sd_config_defaults(cfg, "tiny");
  int rc = sd_config_load_ini(cfg, path, err, sizeof err);
  unlink(path);
  if (rc != 0) {
    // "<tmp path>:line: ..." -> "<what>:line: ..."
    const char *rest = strncmp(err, path, strlen(path)) == 0 ? err + strlen(path) : err;
    SD_FATAL("%s: the configuration does not load: %s%s", what, rest == err ? "" : "line ",
             rest == err ? err : rest + 1);
  }
  if (sd_config_validate(cfg, err, sizeof err) != 0)
    SD_FATAL("%s: the configuration is not valid: %s", what, err);
}

static void shape_str(const int *shape, int ndim, char *buf, size_t len) {
  int64_t s[SD_ST_MAX_DIMS];
  for (int d = 0; d < ndim && d < SD_ST_MAX_DIMS; d++) s[d] = shape[d];
  sd_st_format_shape(s, ndim, buf, len);
}

// ---- reading a checkpoint ------------------------------------------------------------------

static long long attr_i64(hid_t f, const char *path, const char *name) {
  long long v = 0;
  if (sd_h5_attr_num(f, name, H5T_NATIVE_LLONG, &v) != 0)
    SD_FATAL("%s: attribute '%s' is missing or not a number", path, name);
  return v;
}

// Reads elements [0, n) of a 1-D or (n, cols) dataset converted to mtype into dst.
static void read_rows(hid_t f, const char *path, const char *name, hid_t mtype, void *dst,
                      hsize_t n, hsize_t cols) {
  hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
  if (ds < 0) SD_FATAL("%s: dataset %s is missing", path, name);
  hid_t fsp = H5Dget_space(ds);
  int nd = H5Sget_simple_extent_ndims(fsp);
  hsize_t dims[2] = {0, 0};
  if (nd >= 1 && nd <= 2) H5Sget_simple_extent_dims(fsp, dims, NULL);
  if (nd != (cols ? 2 : 1) || dims[0] < n || (cols && dims[1] != cols))
    SD_FATAL("%s: dataset %s has an unexpected shape", path, name);
  hsize_t start[2] = {0, 0}, count[2] = {n, cols};
  hid_t msp = H5Screate_simple(nd, count, NULL);
  if (H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
      H5Dread(ds, mtype, msp, fsp, H5P_DEFAULT, dst) < 0)
    SD_FATAL("%s: cannot read dataset %s", path, name);
  H5Sclose(msp);
  H5Sclose(fsp);
  H5Dclose(ds);
}

// The checkpoint's tensor table agrees with the table the configuration gives (its first
// t->count entries, the DiT's): names, offsets, element counts and shapes.
static void check_table(hid_t f, const char *path, const sd_param_table *t) {
  hid_t ds = H5Dopen2(f, "/tensors/names", H5P_DEFAULT);
  hid_t sp = ds >= 0 ? H5Dget_space(ds) : -1;
  hsize_t n = 0;
  if (sp >= 0) H5Sget_simple_extent_dims(sp, &n, NULL);
  if (sp >= 0) H5Sclose(sp);
  if (ds >= 0) H5Dclose(ds);
  if (n < (hsize_t)t->count)
    SD_FATAL("%s: the tensor table has %llu entries, the configuration's DiT has %d", path,
             (unsigned long long)n, t->count);
  size_t c = (size_t)t->count;
  char *names = sd_xcalloc(c, NAME_LEN, "tensor names");
  uint64_t *offsets = sd_xcalloc(c, sizeof(uint64_t), "tensor offsets");
  uint64_t *numel = sd_xcalloc(c, sizeof(uint64_t), "tensor sizes");
  int32_t *shapes = sd_xcalloc(4 * c, sizeof(int32_t), "tensor shapes");
  hid_t nt = H5Tcopy(H5T_C_S1);
  H5Tset_size(nt, NAME_LEN);
  H5Tset_strpad(nt, H5T_STR_NULLPAD);
  read_rows(f, path, "/tensors/names", nt, names, c, 0);
  H5Tclose(nt);
  read_rows(f, path, "/tensors/offsets", H5T_NATIVE_UINT64, offsets, c, 0);
  read_rows(f, path, "/tensors/numel", H5T_NATIVE_UINT64, numel, c, 0);
  read_rows(f, path, "/tensors/shapes", H5T_NATIVE_INT32, shapes, c, 4);
  for (size_t i = 0; i < c; i++) {
    const sd_param_info *p = &t->items[i];
    char name[NAME_LEN + 1];
    memcpy(name, names + i * NAME_LEN, NAME_LEN);
    name[NAME_LEN] = '\0';
    int same = strcmp(name, p->name) == 0 && offsets[i] == p->offset && numel[i] == p->numel;
    for (int d = 0; d < 4; d++) same &= shapes[4 * i + d] == (d < p->ndim ? p->shape[d] : 0);
    if (!same) {
      char a[64], b[64];
      int nd = 0;
      while (nd < 4 && shapes[4 * i + nd]) nd++;
      shape_str(shapes + 4 * i, nd, a, sizeof a);
      shape_str(p->shape, p->ndim, b, sizeof b);
      SD_FATAL("%s: tensor table entry %zu is %s %s at offset %llu, but its configuration "
               "gives %s %s at offset %zu", path, i, name, a, (unsigned long long)offsets[i],
               p->name, b, p->offset);
    }
  }
  free(names);
  free(offsets);
  free(numel);
  free(shapes);
}

// ---- export --------------------------------------------------------------------------------

int sd_cmd_export(int argc, char **argv) {
  const char *ckpt = NULL, *weights = "ema", *out = NULL;
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      fputs(k_export_usage, stdout);
      return 0;
    }
    if (take_opt(argc, argv, &i, "--checkpoint", &ckpt, k_export_usage) ||
        take_opt(argc, argv, &i, "--weights", &weights, k_export_usage) ||
        take_opt(argc, argv, &i, "--out", &out, k_export_usage))
      continue;
    SD_FATAL_HINT(k_export_usage, "unknown option '%s'", argv[i]);
  }
  if (!ckpt || !out) SD_FATAL_HINT(k_export_usage, "export needs --checkpoint and --out");
  int raw = strcmp(weights, "raw") == 0;
  if (!raw && strcmp(weights, "ema") != 0)
    SD_FATAL_HINT(k_export_usage, "--weights is '%s'; want ema or raw", weights);

  char path[4096], err[1024];
  struct stat sb;
  if (stat(ckpt, &sb) != 0) SD_FATAL("%s: cannot open: %s", ckpt, strerror(errno));
  if (S_ISDIR(sb.st_mode)) {
    int found = sd_ckpt_find_latest(ckpt, path, sizeof path, err, sizeof err);
    if (found < 0) SD_FATAL("%s", err);
    if (found == 0)
      SD_FATAL_HINT("`sddit inspect FILE` says what is wrong with a checkpoint",
                    "%s holds no checkpoint (ckpt-<step>.h5) that verifies", ckpt);
  } else {
    snprintf(path, sizeof path, "%s", ckpt);
    if (sd_ckpt_verify(path, err, sizeof err) != 0)
      SD_FATAL_HINT("`sddit inspect FILE` shows what a checkpoint holds", "%s", err);
  }

  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) SD_FATAL("%s: cannot open the checkpoint", path);
  char *config_text = sd_h5_attr_string_dup(f, "config");
  char *git_rev = sd_h5_attr_string_dup(f, "git_rev");
  if (!config_text || !git_rev) SD_FATAL("%s: attribute config or git_rev is missing", path);
  long long step = attr_i64(f, path, "step");
  long long dit_total = attr_i64(f, path, "dit_total");
  char what[4200];
  snprintf(what, sizeof what, "%s (attribute config)", path);
  sd_config cfg;
  config_from_text(&cfg, config_text, what);
  sd_param_table t;
  sd_dit_param_table(&cfg.model, &t);
  if ((size_t)dit_total != t.total)
    SD_FATAL("%s: dit_total is %lld, but its configuration's DiT has %zu floats", path,
             dit_total, t.total);
  check_table(f, path, &t);
  float *w = sd_xmalloc(sizeof(float) * t.total, "the DiT weights");
  read_rows(f, path, raw ? "/student/params" : "/ema", H5T_NATIVE_FLOAT, w, t.total, 0);
  H5Fclose(f);

  const int T = sd_dit_tokens(&cfg.model), D = cfg.model.hidden;
  float *pos = sd_xmalloc(sizeof(float) * (size_t)T * (size_t)D, "pos_embed");
  sd_dit_pos_table(&cfg.model, pos);
  sd_st_out *tens = sd_xcalloc((size_t)t.count + 1, sizeof *tens, "tensor list");
  tens[0] = (sd_st_out){.name = "pos_embed", .ndim = 3, .shape = {1, T, D}, .data = pos};
  for (int i = 0; i < t.count; i++) {
    const sd_param_info *p = &t.items[i];
    tens[i + 1] = (sd_st_out){.name = p->name, .ndim = p->ndim, .data = w + p->offset};
    for (int d = 0; d < p->ndim; d++) tens[i + 1].shape[d] = p->shape[d];
  }
  char step_s[32], exported_by[96], pos_note[160];
  snprintf(step_s, sizeof step_s, "%lld", step);
  snprintf(exported_by, sizeof exported_by, "sddit %s", SD_GIT_REV);
  snprintf(pos_note, sizeof pos_note, "fixed 2-D sin-cos position table (1, %d, %d) as DiT "
           "registers it; not trained, recomputed from the config", T, D);
  sd_st_kv meta[] = {
      {"format", EXPORT_FORMAT},
      {"format_version", EXPORT_FORMAT_VERSION},
      {"weights", raw ? "raw" : "ema"},
      {"train_step", step_s},
      {"git_rev", git_rev},
      {"exported_by", exported_by},
      {"pos_embed", pos_note},
      {"config", config_text},
  };
  if (sd_st_write_f32(out, meta, (int)(sizeof meta / sizeof meta[0]), tens, t.count + 1, err,
                      sizeof err) != 0)
    SD_FATAL("%s", err);
  printf("# exported the %s weights of %s (step %lld): %d tensors + pos_embed, %zu floats -> "
         "%s\n", raw ? "raw student" : "generation EMA", path, step, t.count, t.total, out);
  free(tens);
  free(pos);
  free(w);
  sd_param_table_free(&t);
  free(config_text);
  free(git_rev);
  return 0;
}

// ---- import --------------------------------------------------------------------------------

// Checks pos_embed (if the file has it) against the fixed table: shape fatal, values a warning.
static void check_pos_embed(const sd_st_file *st, const sd_config *cfg) {
  int k = sd_st_find(st, "pos_embed");
  if (k < 0) return;
  const sd_st_tensor *t = &st->tensors[k];
  const int T = sd_dit_tokens(&cfg->model), D = cfg->model.hidden;
  char have[160];
  sd_st_format_shape(t->shape, t->ndim, have, sizeof have);
  if (t->ndim != 3 || t->shape[0] != 1 || t->shape[1] != T || t->shape[2] != D)
    SD_FATAL_HINT("the configuration (--config, or the file's config metadata) must describe "
                  "the model the weights were trained as",
                  "%s: tensor 'pos_embed' has shape %s, the model from the configuration "
                  "needs (1, %d, %d)", st->path, have, T, D);
  float *got = sd_xmalloc(sizeof(float) * (size_t)T * D, "pos_embed");
  float *want = sd_xmalloc(sizeof(float) * (size_t)T * D, "pos_embed");
  char err[1024];
  if (sd_st_read_f32(st, k, got, err, sizeof err) != 0) {
    fprintf(stderr, "warning: pos_embed not checked: %s\n", err);
  } else {
    sd_dit_pos_table(&cfg->model, want);
    double maxd = 0;
    for (size_t i = 0; i < (size_t)T * D; i++) {
      double d = fabs((double)got[i] - want[i]);
      if (!(d <= maxd)) maxd = d;  // NaN counts
    }
    // float32 tables agree to rounding; a 16-bit copy to its precision on values in [-1, 1]
    double tol = t->dtype == SD_ST_F32 ? 1e-5 : t->dtype == SD_ST_F16 ? 1e-3 : 8e-3;
    if (!(maxd <= tol))
      fprintf(stderr, "warning: %s: pos_embed differs from the fixed sin-cos table by up to %g; "
              "it is not imported (the model always uses the fixed table)\n", st->path, maxd);
  }
  free(got);
  free(want);
}

// Renames the checkpoint at from to out and removes the now empty temporary directory.
static void place_checkpoint(const char *from, const char *tmpdir, const char *out,
                             const char *outdir) {
  if (rename(from, out) != 0) {
    int e = errno;
    unlink(from);
    rmdir(tmpdir);
    SD_FATAL("cannot rename %s to %s: %s", from, out, strerror(e));
  }
  rmdir(tmpdir);
  int fd = open(outdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || fsync(fd) != 0)
    fprintf(stderr, "warning: %s: the directory cannot be fsynced: %s\n", outdir,
            strerror(errno));
  if (fd >= 0) close(fd);
}

int sd_cmd_import(int argc, char **argv) {
  const char *in = NULL, *out = NULL, *config_path = NULL;
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      fputs(k_import_usage, stdout);
      return 0;
    }
    if (take_opt(argc, argv, &i, "--in", &in, k_import_usage) ||
        take_opt(argc, argv, &i, "--out", &out, k_import_usage) ||
        take_opt(argc, argv, &i, "--config", &config_path, k_import_usage))
      continue;
    SD_FATAL_HINT(k_import_usage, "unknown option '%s'", argv[i]);
  }
  if (!in || !out) SD_FATAL_HINT(k_import_usage, "import needs --in and --out");
  struct stat sb;
  if (stat(out, &sb) == 0 && S_ISDIR(sb.st_mode))
    SD_FATAL_HINT(k_import_usage, "--out %s is a directory; give the checkpoint's file name",
                  out);

  char err[1024];
  sd_st_file st;
  if (sd_st_open(&st, in, err, sizeof err) != 0) SD_FATAL("%s", err);
  const char *format = sd_st_meta(&st, "format");
  if (format && strcmp(format, EXPORT_FORMAT) != 0)
    fprintf(stderr, "warning: %s: metadata format is '%s', not '%s'\n", in, format,
            EXPORT_FORMAT);

  sd_config cfg;
  if (config_path) {
    sd_config_defaults(&cfg, "tiny");
    if (sd_config_load_ini(&cfg, config_path, err, sizeof err) != 0) SD_FATAL("%s", err);
    if (sd_config_validate(&cfg, err, sizeof err) != 0)
      SD_FATAL("%s: the configuration is not valid: %s", config_path, err);
  } else {
    const char *text = sd_st_meta(&st, "config");
    if (!text)
      SD_FATAL_HINT("pass --config FILE.ini with the model's configuration ([model] section)",
                    "%s: no \"config\" metadata to take the model configuration from", in);
    char what[4200];
    snprintf(what, sizeof what, "%s (metadata config)", in);
    config_from_text(&cfg, text, what);
  }
  const char *cfg_from = config_path ? config_path : "the file's config metadata";

  // Every DiT tensor, with its shape, before anything is read or created.
  sd_param_table dt;
  sd_dit_param_table(&cfg.model, &dt);
  int *where = sd_xcalloc((size_t)dt.count + 1, sizeof(int), "tensor index");
  int converted = 0;
  for (int i = 0; i < dt.count; i++) {
    const sd_param_info *p = &dt.items[i];
    char want[160], have[160];
    shape_str(p->shape, p->ndim, want, sizeof want);
    int k = where[i] = sd_st_find(&st, p->name);
    if (k < 0)
      SD_FATAL_HINT("the configuration must describe the model the weights were trained as",
                    "%s: tensor '%s' %s is missing (the model from %s has %d DiT tensors)", in,
                    p->name, want, cfg_from, dt.count);
    const sd_st_tensor *t = &st.tensors[k];
    int same = t->ndim == p->ndim;
    for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
    sd_st_format_shape(t->shape, t->ndim, have, sizeof have);
    if (!same)
      SD_FATAL_HINT("the configuration must describe the model the weights were trained as",
                    "%s: tensor '%s' has shape %s, the model from %s needs %s", in, p->name,
                    have, cfg_from, want);
    if (t->dtype != SD_ST_F32 && t->dtype != SD_ST_F16 && t->dtype != SD_ST_BF16)
      SD_FATAL("%s: tensor '%s' has dtype %s; only F32, F16 and BF16 can be imported", in,
               p->name, sd_st_dtype_name(t->dtype));
    converted += t->dtype != SD_ST_F32;
  }
  check_pos_embed(&st, &cfg);
  int extra = 0;
  char extras[512] = "";
  for (int k = 0; k < st.count; k++) {
    const char *name = st.tensors[k].name;
    if (strcmp(name, "pos_embed") == 0 || sd_param_table_find(&dt, name) >= 0) continue;
    // a DiT name the model lacks (a deeper model, say) means the configuration is wrong
    static const char *dit_prefixes[] = {"x_embedder.", "t_embedder.", "y_embedder.", "blocks.",
                                         "final_layer."};
    for (size_t q = 0; q < sizeof dit_prefixes / sizeof dit_prefixes[0]; q++)
      if (strncmp(name, dit_prefixes[q], strlen(dit_prefixes[q])) == 0)
        SD_FATAL_HINT("the configuration must describe the model the weights were trained as",
                      "%s: tensor '%s' is a DiT tensor the model from %s does not have (depth "
                      "%d)", in, name, cfg_from, cfg.model.depth);
    if (extra < 5) {
      strncat(extras, extra ? ", " : "", sizeof extras - strlen(extras) - 1);
      strncat(extras, name, sizeof extras - strlen(extras) - 1);
    }
    extra++;
  }
  if (extra)
    fprintf(stderr, "warning: %s: ignoring %d tensor%s that the DiT does not have: %s%s\n", in,
            extra, extra == 1 ? "" : "s", extras, extra > 5 ? ", ..." : "");
  if (converted)
    fprintf(stderr, "warning: %s: %d tensor%s converted from 16-bit floats to float32\n", in,
            converted, converted == 1 ? "" : "s");

  sd_backend be;
  if (sd_backend_cpu_init(&be, cfg.threads) != 0) SD_FATAL("cannot start the CPU backend");
  sd_sddit_opts o;
  sd_sddit_opts_from_config(&cfg, &o);
  sd_head_config hc;
  sd_head_config_from_config(&cfg, &hc);
  sd_sddit s;
  sd_sddit_create(&s, &cfg.model, &hc, &o, &be, 1);
  if (s.dit_total != dt.total) SD_FATAL("internal: DiT sizes disagree");
  float *host = sd_xcalloc(s.total, sizeof(float), "the weights");
  for (int i = 0; i < dt.count; i++)
    if (sd_st_read_f32(&st, where[i], host + dt.items[i].offset, err, sizeof err) != 0)
      SD_FATAL("%s", err);
  // The head is not part of the DiT: initialised as `sddit train` does for train.seed.
  sd_head_init_host(&s.hcfg, host + s.dit_total, cfg.seed);
  be.ops->to_device(&be, s.params, host, sizeof(float) * s.total);
  sd_sddit_reset_copies(&s);  // teacher = student, EMA = student DiT, moments and center 0
  free(host);

  char *cfg_text = sd_config_print_text(&cfg);
  sd_ckpt_info info = {.step = 0, .seed = cfg.seed, .data_cursor = 0, .world_size = 1,
                       .config_text = cfg_text};
  snprintf(info.git_rev, sizeof info.git_rev, "%s", SD_GIT_REV);
  // sd_ckpt_save names the file ckpt-00000000.h5: write it into a fresh directory next to
  // --out, then rename it to exactly --out (same file system, so the rename is atomic).
  char outdir[4096], tmpdir[4200], saved[4400];
  const char *slash = strrchr(out, '/');
  if (!slash) snprintf(outdir, sizeof outdir, ".");
  else if (slash == out) snprintf(outdir, sizeof outdir, "/");
  else snprintf(outdir, sizeof outdir, "%.*s", (int)(slash - out), out);
  if (sd_make_dirs(outdir, err, sizeof err) != 0) SD_FATAL("%s", err);
  snprintf(tmpdir, sizeof tmpdir, "%s/.sddit-import-XXXXXX", outdir);
  if (!mkdtemp(tmpdir)) SD_FATAL("cannot create a temporary directory in %s: %s", outdir,
                                 strerror(errno));
  if (sd_ckpt_save(tmpdir, &s, &info, 0, saved, sizeof saved, err, sizeof err) != 0) {
    rmdir(tmpdir);
    SD_FATAL("%s", err);
  }
  place_checkpoint(saved, tmpdir, out, outdir);
  printf("# imported %d DiT tensors from %s -> %s (step 0; model from %s; projection head "
         "initialised from train.seed = %llu)\n", dt.count, in, out, cfg_from, cfg.seed);
  free(cfg_text);
  sd_sddit_destroy(&s);
  sd_backend_cpu_destroy(&be);
  free(where);
  sd_param_table_free(&dt);
  sd_st_close(&st);
  return 0;
}
