// Checkpoints: a save/load round trip restores every family buffer bitwise and the run
// attributes; keep-last-K; a flipped byte and a truncated file are caught by verify (and
// refused by load); find_latest skips a corrupt newest file; another model's checkpoint and a
// non-checkpoint HDF5 file are refused; a write that hits the file-size limit fails cleanly
// and leaves the existing checkpoint byte-for-byte intact; the summary (`sddit inspect`) prints
// a long git_rev attribute whole.
#include "check.h"
#include "ckpt/ckpt.h"
#include "error.h"
#include "objective/step_random.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

enum { BATCH = 2, VISIBLE = 12 };

static char g_root[512];

// ---- helpers ---------------------------------------------------------------------------------

static void make_model(sd_sddit *s, sd_backend *be, int depth, int prototypes, uint64_t seed) {
  sd_dit_config dc;
  sd_dit_config_preset(&dc, "tiny");
  dc.depth = depth;
  sd_head_config hc = {.in_dim = dc.hidden, .hidden = 32, .bottleneck = 16,
                       .prototypes = prototypes};
  sd_sddit_opts o = {.encoder_depth = 2, .visible_tokens = VISIBLE, .sigma_data = 0.5f,
                     .lambda_dis = 1.0f, .tau_s = 0.1f, .tau_t_start = 0.04f,
                     .tau_t_end = 0.07f, .teacher_temp_warmup = 10, .center_momentum = 0.9f,
                     .teacher_momentum = 0.996f, .total_steps = 100, .lr = 1e-3f,
                     .beta1 = 0.9f, .beta2 = 0.999f, .adam_eps = 1e-8f,
                     .weight_decay = 0.01f, .ema_decay = 0.99f};
  sd_sddit_create(s, &dc, &hc, &o, be, BATCH);
  sd_sddit_init(s, seed);
}

// Two optimizer steps on random inputs, so moments, teacher, EMA and center move.
static void train_steps(sd_sddit *s, int steps) {
  const sd_dit_config *dc = &s->dcfg;
  const int n = dc->in_channels * dc->input_size * dc->input_size;
  float *x0 = sd_xmalloc(sizeof(float) * BATCH * n, "x0");
  float *eps = sd_xmalloc(sizeof(float) * BATCH * n, "eps");
  float ss[BATCH], st[BATCH];
  int32_t y[BATCH], vis[BATCH * VISIBLE];
  sd_random_opts ro = {.seed = 1, .p_mean = -1.2f, .p_std = 1.2f, .teacher_sigma = 0.002f,
                       .sigma_min = 0.002f, .label_dropout = 0.1f,
                       .num_classes = dc->num_classes, .tokens = sd_dit_tokens(dc),
                       .visible_tokens = VISIBLE, .elements = n};
  for (long step = 0; step < steps; step++) {
    fill_normal(x0, (size_t)BATCH * n, 100 + (uint32_t)step, 1.0f);
    for (int b = 0; b < BATCH; b++) y[b] = b % dc->num_classes;
    sd_step_random(&ro, step, step * BATCH, BATCH, eps, ss, st, vis, y);
    sd_step_inputs in = {x0, eps, ss, st, y, vis, ss, st};
    sd_step_stats stats;
    sd_sddit_forward_backward(s, &in, BATCH, step, &stats);
    sd_sddit_update(s, BATCH, step, &stats);
  }
  free(x0);
  free(eps);
}

static void make_info(sd_ckpt_info *info, long step) {
  memset(info, 0, sizeof *info);
  info->step = step;
  info->seed = 1;
  info->data_cursor = step * BATCH;
  info->world_size = 1;
  snprintf(info->git_rev, sizeof info->git_rev, "abc1234-dirty");
  info->config_text = "[train]\nseed = 1\nsteps = 100\n\n[model]\npreset = tiny\n";
}

static void join(char *buf, size_t len, const char *a, const char *b) {
  if (snprintf(buf, len, "%s/%s", a, b) >= (int)len) SD_FATAL("path too long: %s/%s", a, b);
}

static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

static long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void copy_file(const char *src, const char *dst) {
  FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
  if (!in || !out) SD_FATAL("cannot copy %s to %s: %s", src, dst, strerror(errno));
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, in)) > 0)
    if (fwrite(buf, 1, n, out) != n) SD_FATAL("cannot write %s", dst);
  fclose(in);
  if (fclose(out) != 0) SD_FATAL("cannot write %s", dst);
}

static unsigned long long file_hash(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  unsigned long long h = SD_FNV1A64_INIT;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) h = sd_ckpt_fnv1a64(h, buf, n);
  fclose(f);
  return h;
}

// Flips one byte `index` bytes into the raw data of dataset `name`.
static void flip_dataset_byte(const char *path, const char *name, size_t index) {
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t ds = f < 0 ? -1 : H5Dopen2(f, name, H5P_DEFAULT);
  haddr_t off = ds < 0 ? HADDR_UNDEF : H5Dget_offset(ds);
  if (ds >= 0) H5Dclose(ds);
  if (f >= 0) H5Fclose(f);
  if (off == HADDR_UNDEF) SD_FATAL("%s: no offset for dataset %s", path, name);
  int fd = open(path, O_RDWR);
  unsigned char b;
  if (fd < 0 || pread(fd, &b, 1, (off_t)(off + index)) != 1) SD_FATAL("cannot read %s", path);
  b ^= 0x10;
  if (pwrite(fd, &b, 1, (off_t)(off + index)) != 1) SD_FATAL("cannot write %s", path);
  close(fd);
}

static int by_name(const void *a, const void *b) { return strcmp(a, b); }

// Sorted, comma-separated names in dir.
static void list_dir(const char *dir, char *buf, size_t len) {
  char names[32][256];
  int n = 0;
  DIR *d = opendir(dir);
  struct dirent *de;
  while (d && (de = readdir(d)) != NULL && n < 32)
    if (de->d_name[0] != '.') snprintf(names[n++], 256, "%s", de->d_name);
  if (d) closedir(d);
  qsort(names, (size_t)n, 256, by_name);
  buf[0] = '\0';
  for (int i = 0; i < n; i++) {
    size_t k = strlen(buf);
    snprintf(buf + k, len - k, "%s%s", i ? "," : "", names[i]);
  }
}

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  int n = 0;
  while (readdir(d)) n++;
  closedir(d);
  return n;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  return remove(path);
}

static int families_equal(const char *label, const sd_sddit *a, const sd_sddit *b) {
  const char *names[] = {"params", "adam_m", "adam_v", "teacher", "ema", "center"};
  const float *pa[] = {a->params, a->adam_m, a->adam_v, a->teacher, a->ema, a->center};
  const float *pb[] = {b->params, b->adam_m, b->adam_v, b->teacher, b->ema, b->center};
  size_t n[] = {a->total, a->total, a->total, a->total, a->dit_total,
                (size_t)a->hcfg.prototypes};
  int ok = 1;
  char what[96];
  for (int i = 0; i < 6; i++) {
    snprintf(what, sizeof what, "%s: %s", label, names[i]);
    ok &= check_bitwise(what, pa[i], pb[i], sizeof(float) * n[i]);
  }
  return ok;
}

static double sum_sq(const float *x, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
  return s;
}

static double sum_sq_diff(const float *x, const float *y, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
  return s;
}

// A copy of s's family buffers (to show a refused load changed nothing).
static void snapshot(const sd_sddit *s, sd_sddit *copy) {
  *copy = *s;
  copy->params = sd_xmalloc(sizeof(float) * s->total, "snap");
  copy->adam_m = sd_xmalloc(sizeof(float) * s->total, "snap");
  copy->adam_v = sd_xmalloc(sizeof(float) * s->total, "snap");
  copy->teacher = sd_xmalloc(sizeof(float) * s->total, "snap");
  copy->ema = sd_xmalloc(sizeof(float) * s->dit_total, "snap");
  copy->center = sd_xmalloc(sizeof(float) * (size_t)s->hcfg.prototypes, "snap");
  memcpy(copy->params, s->params, sizeof(float) * s->total);
  memcpy(copy->adam_m, s->adam_m, sizeof(float) * s->total);
  memcpy(copy->adam_v, s->adam_v, sizeof(float) * s->total);
  memcpy(copy->teacher, s->teacher, sizeof(float) * s->total);
  memcpy(copy->ema, s->ema, sizeof(float) * s->dit_total);
  memcpy(copy->center, s->center, sizeof(float) * (size_t)s->hcfg.prototypes);
}

static void snapshot_free(sd_sddit *copy) {
  free(copy->params); free(copy->adam_m); free(copy->adam_v);
  free(copy->teacher); free(copy->ema); free(copy->center);
}

// ---- the checks ------------------------------------------------------------------------------

// 1. Round trip; leaves the checkpoint's path in path.
static void test_round_trip(sd_backend *be, sd_sddit *s, char *path, size_t len) {
  printf("# 1. round trip\n");
  train_steps(s, 2);
  check_true(sum_sq(s->adam_v, s->total) > 0 && sum_sq(s->center, (size_t)s->hcfg.prototypes) > 0,
             "after 2 steps adam_v (sum sq %.3g) and center (sum sq %.3g) are non-zero",
             sum_sq(s->adam_v, s->total), sum_sq(s->center, (size_t)s->hcfg.prototypes));
  check_true(sum_sq_diff(s->teacher, s->params, s->total) > 0 &&
                 sum_sq_diff(s->ema, s->params, s->dit_total) > 0,
             "teacher and EMA differ from the student (sum sq diff %.3g, %.3g)",
             sum_sq_diff(s->teacher, s->params, s->total),
             sum_sq_diff(s->ema, s->params, s->dit_total));
  char dir[600], want[700], err[1024], tmp[720];
  join(dir, sizeof dir, g_root, "rt/sub");
  join(want, sizeof want, dir, "ckpt-00000002.h5");
  sd_ckpt_info info;
  make_info(&info, 2);
  int rc = sd_ckpt_save(dir, s, &info, 0, path, len, err, sizeof err);
  check_true(rc == 0, "save into a new nested directory returns 0 (got %d: %s)", rc, err);
  check_true(strcmp(path, want) == 0, "save reports path %s (want %s)", path, want);
  snprintf(tmp, sizeof tmp, "%s.tmp", want);
  check_true(file_size(want) > 0 && file_size(tmp) < 0, "%s exists (%ld bytes), no .tmp left",
             want, file_size(want));
  rc = sd_ckpt_verify(path, err, sizeof err);
  check_true(rc == 0, "verify of the fresh checkpoint returns 0 (got %d: %s)", rc, err);

  sd_sddit s2;
  make_model(&s2, be, 4, 32, 2);
  sd_ckpt_info got;
  memset(&got, 0, sizeof got);
  rc = sd_ckpt_load(path, &s2, &got, err, sizeof err);
  check_true(rc == 0, "load into a model initialised with another seed returns 0 (got %d: %s)",
             rc, err);
  families_equal("loaded", &s2, s);
  check_true(got.step == 2 && got.seed == 1 && got.data_cursor == 2 * BATCH &&
                 got.world_size == 1,
             "info: step %ld seed %llu cursor %ld world %d (want 2 1 %d 1)", got.step, got.seed,
             got.data_cursor, got.world_size, 2 * BATCH);
  check_true(strcmp(got.git_rev, info.git_rev) == 0, "info: git_rev '%s' (want '%s')",
             got.git_rev, info.git_rev);
  check_true(got.config_text && strcmp(got.config_text, info.config_text) == 0,
             "info: config text round-trips (got %zu bytes, want %zu)",
             got.config_text ? strlen(got.config_text) : 0, strlen(info.config_text));
  free(got.config_text);
  sd_sddit_destroy(&s2);

  char *text = NULL;
  size_t tlen = 0;
  FILE *mem = open_memstream(&text, &tlen);
  rc = sd_ckpt_print_summary(path, mem);
  fclose(mem);
  fputs(text, stdout);
  check_true(rc == 0 && contains(text, "sddit-checkpoint") && contains(text, "/student/adam_v") &&
                 contains(text, "x_embedder.proj.weight") &&
                 contains(text, "head.last_layer.weight_v") && contains(text, "preset = tiny"),
             "summary returns %d and names the format, datasets, first/last tensors, config", rc);
  free(text);
}

// 2. keep = 2 with saves at 10, 20, 30.
static void test_keep(const sd_sddit *s) {
  printf("# 2. keep the last 2\n");
  char dir[600], err[1024], names[2048];
  join(dir, sizeof dir, g_root, "keep");
  int rc = 0;
  for (long step = 10; step <= 30 && rc == 0; step += 10) {
    sd_ckpt_info info;
    make_info(&info, step);
    rc = sd_ckpt_save(dir, s, &info, 2, NULL, 0, err, sizeof err);
  }
  check_true(rc == 0, "three saves with keep = 2 return 0 (%s)", err);
  list_dir(dir, names, sizeof names);
  check_true(strcmp(names, "ckpt-00000020.h5,ckpt-00000030.h5") == 0,
             "directory holds exactly ckpt-20 and ckpt-30: %s", names);
}

// 3. A flipped byte in /student/adam_v.
static void test_corruption(sd_backend *be, const char *good) {
  printf("# 3. corrupted tensor data\n");
  char dir[600], bad[700], err[1024];
  join(dir, sizeof dir, g_root, "bad");
  mkdir(dir, 0755);
  join(bad, sizeof bad, dir, "ckpt-00000002.h5");
  copy_file(good, bad);
  sd_sddit s2;
  make_model(&s2, be, 4, 32, 3);
  flip_dataset_byte(bad, "/student/adam_v", sizeof(float) * (s2.total / 2) + 1);
  int rc = sd_ckpt_verify(bad, err, sizeof err);
  check_true(rc == -1 && contains(err, "student/adam_v") && contains(err, "checksum") &&
                 strncmp(err, bad, strlen(bad)) == 0,
             "verify of a flipped byte fails naming the path, dataset and checksum: %s", err);
  sd_sddit before;
  snapshot(&s2, &before);
  sd_ckpt_info info = {.config_text = (char *)"stale"};
  rc = sd_ckpt_load(bad, &s2, &info, err, sizeof err);
  check_true(rc == -1 && info.config_text == NULL, "load refuses it (rc %d, config_text %s): %s",
             rc, info.config_text ? "set" : "NULL", err);
  families_equal("model after the refused load", &s2, &before);
  snapshot_free(&before);
  sd_sddit_destroy(&s2);
}

// 4. Truncation and a missing file.
static void test_truncation(const char *good) {
  printf("# 4. truncated and missing files\n");
  char path[700], err[1024];
  join(path, sizeof path, g_root, "bad/truncated.h5");
  copy_file(good, path);
  long size = file_size(path);
  if (truncate(path, size / 2) != 0) SD_FATAL("cannot truncate %s", path);
  int rc = sd_ckpt_verify(path, err, sizeof err);
  check_true(rc == -1 && contains(err, "truncated") && strncmp(err, path, strlen(path)) == 0,
             "verify of a file cut to %ld of %ld bytes fails: %s", size / 2, size, err);
  join(path, sizeof path, g_root, "bad/missing.h5");
  rc = sd_ckpt_verify(path, err, sizeof err);
  check_true(rc == -1 && contains(err, path) && contains(err, strerror(ENOENT)),
             "verify of a missing file fails: %s", err);
}

// Runs find_latest with stderr captured into buf.
static int find_latest_captured(const char *dir, char *path, size_t len, char *err,
                                size_t errlen, char *buf, size_t buflen) {
  char cap[700];
  join(cap, sizeof cap, g_root, "stderr.txt");
  fflush(stderr);
  int saved = dup(2), fd = open(cap, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (saved < 0 || fd < 0) SD_FATAL("cannot capture stderr");
  dup2(fd, 2);
  close(fd);
  int rc = sd_ckpt_find_latest(dir, path, len, err, errlen);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  FILE *f = fopen(cap, "r");
  size_t n = f ? fread(buf, 1, buflen - 1, f) : 0;
  buf[n] = '\0';
  if (f) fclose(f);
  fputs(buf, stdout);
  return rc;
}

// 5. find_latest skips a corrupt newest file and a stray .tmp.
static void test_find_latest(const sd_sddit *s) {
  printf("# 5. find_latest\n");
  char dir[600], path[700], want[700], err[1024], warn[4096];
  join(dir, sizeof dir, g_root, "latest");
  int rc = 0;
  for (long step = 10; step <= 30 && rc == 0; step += 10) {
    sd_ckpt_info info;
    make_info(&info, step);
    rc = sd_ckpt_save(dir, s, &info, 0, path, sizeof path, err, sizeof err);
  }
  if (rc != 0) SD_FATAL("setup: %s", err);
  flip_dataset_byte(path, "/student/params", 7);
  char stray[700];
  join(stray, sizeof stray, dir, "ckpt-00000040.h5.tmp");
  copy_file(path, stray);
  rc = find_latest_captured(dir, path, sizeof path, err, sizeof err, warn, sizeof warn);
  join(want, sizeof want, dir, "ckpt-00000020.h5");
  check_true(rc == 1 && strcmp(path, want) == 0, "find_latest returns %d, %s (want 1, %s)", rc,
             rc == 1 ? path : err, want);
  check_true(contains(warn, "warning: skipping ") && contains(warn, "ckpt-00000030.h5: ") &&
                 contains(warn, "checksum") && !contains(warn, ".tmp"),
             "one warning names ckpt-30 and its checksum problem, none the .tmp");
  join(dir, sizeof dir, g_root, "empty");
  mkdir(dir, 0755);
  rc = find_latest_captured(dir, path, sizeof path, err, sizeof err, warn, sizeof warn);
  check_true(rc == 0, "empty directory: find_latest returns %d (want 0)", rc);
  join(dir, sizeof dir, g_root, "no-such-dir");
  rc = find_latest_captured(dir, path, sizeof path, err, sizeof err, warn, sizeof warn);
  check_true(rc == 0, "missing directory: find_latest returns %d (want 0)", rc);
  join(dir, sizeof dir, g_root, "stderr.txt");
  rc = sd_ckpt_find_latest(dir, path, sizeof path, err, sizeof err);
  check_true(rc == -1 && contains(err, dir), "a file as directory: returns %d: %s", rc, err);
}

// 6. Another model's checkpoint.
static void test_wrong_model(sd_backend *be, const char *good) {
  printf("# 6. checkpoint of another model\n");
  char err[1024];
  sd_sddit s3;
  make_model(&s3, be, 5, 32, 1);
  int rc = sd_ckpt_load(good, &s3, NULL, err, sizeof err);
  check_true(rc == -1 && contains(err, "checkpoint has final_layer") &&
                 contains(err, "this model has blocks.4.attn.qkv.weight"),
             "depth 5 model refuses a depth 4 checkpoint: %s", err);
  sd_sddit_destroy(&s3);
  make_model(&s3, be, 4, 64, 1);
  rc = sd_ckpt_load(good, &s3, NULL, err, sizeof err);
  check_true(rc == -1 && contains(err, "head.last_layer.weight_v (32, 16)") &&
                 contains(err, "head.last_layer.weight_v (64, 16)"),
             "64-prototype model refuses a 32-prototype checkpoint: %s", err);
  sd_sddit_destroy(&s3);
}

// An HDF5 file whose only content is a root attribute format = `format`.
static void write_attr_file(const char *path, const char *format) {
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, "format", t, sp, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0 || a < 0 || H5Awrite(a, t, &format) < 0) SD_FATAL("cannot write %s", path);
  H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
  H5Fclose(f);
}

// 8. Not a checkpoint, and a newer format version.
static void test_not_checkpoint(const char *good) {
  printf("# 8. not a checkpoint\n");
  char path[700], err[1024];
  join(path, sizeof path, g_root, "latents.h5");
  write_attr_file(path, "sddit-latents");
  int rc = sd_ckpt_verify(path, err, sizeof err);
  check_true(rc == -1 && contains(err, "not an SD-DiT checkpoint") &&
                 contains(err, "sddit-latents"),
             "a latents file is refused: %s", err);
  join(path, sizeof path, g_root, "v2.h5");
  copy_file(good, path);
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  long long v = 2;
  hid_t a = f < 0 ? -1 : H5Aopen(f, "format_version", H5P_DEFAULT);
  if (a < 0 || H5Awrite(a, H5T_NATIVE_LLONG, &v) < 0) SD_FATAL("cannot edit %s", path);
  H5Aclose(a);
  H5Fclose(f);
  rc = sd_ckpt_verify(path, err, sizeof err);
  check_true(rc == -1 && contains(err, "format_version 2"), "format_version 2 is refused: %s",
             err);
}

// 9. The summary prints the git_rev attribute whole, however long (here 300 characters, set
// with HDF5 on a copy: attributes carry no checksum).
static void test_long_git_rev(const char *good) {
  printf("# 9. long git_rev in the summary\n");
  char path[700], rev[301];
  for (int i = 0; i < 300; i += 10) snprintf(rev + i, sizeof rev - (size_t)i, "g%07d..", i);
  join(path, sizeof path, g_root, "long_rev.h5");
  copy_file(good, path);
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  if (f < 0 || H5Adelete(f, "git_rev") < 0) SD_FATAL("cannot edit %s", path);
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, sizeof rev);
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, "git_rev", t, sp, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0 || H5Awrite(a, t, rev) < 0) SD_FATAL("cannot write git_rev into %s", path);
  H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
  H5Fclose(f);
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  int rc = sd_ckpt_print_summary(path, out);
  fclose(out);
  const char *line = strstr(text, "git_rev");
  size_t shown = 0;
  if (line) {
    line += strlen("git_rev");
    line += strspn(line, " ");
    shown = strcspn(line, "\n");
  }
  int whole = line && shown == strlen(rev) && strncmp(line, rev, shown) == 0;
  check_true(rc == 0 && whole, "summary: verifies (rc %d) and prints git_rev whole: %zu of %zu "
             "characters", rc, shown, strlen(rev));
  if (!whole && line) printf("  printed: %.*s\n", (int)shown, line);
  free(text);
}

// 7. A save that hits RLIMIT_FSIZE (run last: it changes process limits).
static void test_io_failure(const sd_sddit *s) {
  printf("# 7. write failure (file size limit)\n");
  char dir[600], old[700], err[1024], names[2048];
  join(dir, sizeof dir, g_root, "io");
  sd_ckpt_info info;
  make_info(&info, 30);
  if (sd_ckpt_save(dir, s, &info, 2, old, sizeof old, err, sizeof err) != 0)
    SD_FATAL("setup: %s", err);
  const long size = file_size(old);
  const unsigned long long hash = file_hash(old);
  signal(SIGXFSZ, SIG_IGN);
  struct rlimit saved;
  if (getrlimit(RLIMIT_FSIZE, &saved) != 0) SD_FATAL("getrlimit: %s", strerror(errno));
  const long limits[] = {size / 2, 4096};
  for (int k = 0; k < 2; k++) {
    const int fds = count_fds();
    make_info(&info, 40);
    struct rlimit lim = saved;
    lim.rlim_cur = (rlim_t)limits[k];
    if (setrlimit(RLIMIT_FSIZE, &lim) != 0) SD_FATAL("setrlimit: %s", strerror(errno));
    int rc = sd_ckpt_save(dir, s, &info, 1, NULL, 0, err, sizeof err);
    if (setrlimit(RLIMIT_FSIZE, &saved) != 0) SD_FATAL("cannot restore RLIMIT_FSIZE");
    check_true(rc == -1 && contains(err, "ckpt-00000040.h5") && contains(err, strerror(EFBIG)),
               "limit %ld bytes: save fails naming the path and errno text: %s", limits[k], err);
    list_dir(dir, names, sizeof names);
    check_true(strcmp(names, "ckpt-00000030.h5") == 0,
               "limit %ld bytes: the directory holds only ckpt-30 (no .tmp): %s", limits[k],
               names);
    rc = sd_ckpt_verify(old, err, sizeof err);
    check_true(rc == 0 && file_hash(old) == hash && file_size(old) == size,
               "limit %ld bytes: ckpt-30 still verifies (%s) and its bytes are unchanged",
               limits[k], rc == 0 ? "ok" : err);
    check_true(count_fds() == fds, "limit %ld bytes: no file descriptor leaked (%d, before %d)",
               limits[k], count_fds(), fds);
  }
  make_info(&info, 40);
  int rc = sd_ckpt_save(dir, s, &info, 1, NULL, 0, err, sizeof err);
  list_dir(dir, names, sizeof names);
  check_true(rc == 0 && strcmp(names, "ckpt-00000040.h5") == 0,
             "with the limit restored the save works and keep = 1 prunes ckpt-30: %s %s", names,
             rc == 0 ? "" : err);
}

int main(void) {
  const char *tmpdir = getenv("TMPDIR");
  snprintf(g_root, sizeof g_root, "%s/sddit-ckpt-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
  if (!mkdtemp(g_root)) SD_FATAL("mkdtemp %s: %s", g_root, strerror(errno));
  sd_backend be;
  sd_backend_cpu_init(&be, 0);
  sd_sddit s;
  make_model(&s, &be, 4, 32, 1);
  char good[700];
  test_round_trip(&be, &s, good, sizeof good);
  test_keep(&s);
  test_corruption(&be, good);
  test_truncation(good);
  test_find_latest(&s);
  test_wrong_model(&be, good);
  test_not_checkpoint(good);
  test_long_git_rev(good);
  test_io_failure(&s);
  sd_sddit_destroy(&s);
  sd_backend_cpu_destroy(&be);
  nftw(g_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  return check_exit("test_ckpt");
}
