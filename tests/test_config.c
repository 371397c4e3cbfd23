// Run configuration: defaults per preset, the launch/configs files, print -> load round trip,
// command-line overrides, and the message of each error class (written to a temp dir).
#include "check.h"
#include "config/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[256];          // temp dir for the files this test writes
static char g_written[128][320];  // files to remove at the end
static int g_nwritten;

static const char *write_file(const char *name, const char *text) {
  static char path[320];
  snprintf(path, sizeof path, "%s/%s", g_dir, name);
  FILE *f = fopen(path, "w");
  if (!f) {
    check_true(0, "cannot write %s", path);
    return path;
  }
  fputs(text, f);
  fclose(f);
  if (g_nwritten < 128) snprintf(g_written[g_nwritten++], sizeof g_written[0], "%s", path);
  return path;
}

// ---- field-by-field comparison: counts the differing fields, names the first ----

typedef struct diff {
  int count;
  char first[64];
} diff;

static void note(diff *d, const char *name) {
  if (d->count++ == 0) snprintf(d->first, sizeof d->first, "%s", name);
}
static void cmp_int(diff *d, const char *name, long long a, long long b) {
  if (a != b) note(d, name);
}
static void cmp_u64(diff *d, const char *name, unsigned long long a, unsigned long long b) {
  if (a != b) note(d, name);
}
static void cmp_float(diff *d, const char *name, float a, float b) {
  if (memcmp(&a, &b, sizeof a) != 0) note(d, name);
}
static void cmp_str(diff *d, const char *name, const char *a, const char *b) {
  if (strcmp(a, b) != 0) note(d, name);
}

#define N_FIELDS 55  // every field of sd_config, model included

static diff compare(const sd_config *a, const sd_config *b) {
  diff d = {0, ""};
  const sd_dit_config *x = &a->model, *y = &b->model;
  cmp_str(&d, "model.preset", x->preset, y->preset);
  cmp_int(&d, "model.input_size", x->input_size, y->input_size);
  cmp_int(&d, "model.in_channels", x->in_channels, y->in_channels);
  cmp_int(&d, "model.patch", x->patch, y->patch);
  cmp_int(&d, "model.hidden", x->hidden, y->hidden);
  cmp_int(&d, "model.depth", x->depth, y->depth);
  cmp_int(&d, "model.heads", x->heads, y->heads);
  cmp_int(&d, "model.mlp_ratio", x->mlp_ratio, y->mlp_ratio);
  cmp_int(&d, "model.num_classes", x->num_classes, y->num_classes);
  cmp_int(&d, "model.out_channels", x->out_channels, y->out_channels);
  cmp_int(&d, "model.freq_dim", x->freq_dim, y->freq_dim);
  cmp_float(&d, "model.max_period", x->max_period, y->max_period);
  cmp_float(&d, "model.ln_eps", x->ln_eps, y->ln_eps);
  cmp_int(&d, "model.encoder_depth", a->encoder_depth, b->encoder_depth);
  cmp_int(&d, "model.decoder_depth", a->decoder_depth, b->decoder_depth);
  cmp_int(&d, "model.decoder_hidden", a->decoder_hidden, b->decoder_hidden);
  cmp_int(&d, "model.decoder_heads", a->decoder_heads, b->decoder_heads);
  cmp_float(&d, "sddit.mask_ratio", a->mask_ratio, b->mask_ratio);
  cmp_str(&d, "sddit.teacher_sigma_mode", a->teacher_sigma_mode, b->teacher_sigma_mode);
  cmp_float(&d, "sddit.teacher_sigma", a->teacher_sigma, b->teacher_sigma);
  cmp_float(&d, "sddit.lambda_dis", a->lambda_dis, b->lambda_dis);
  cmp_int(&d, "sddit.head_hidden", a->head_hidden, b->head_hidden);
  cmp_int(&d, "sddit.head_bottleneck", a->head_bottleneck, b->head_bottleneck);
  cmp_int(&d, "sddit.head_prototypes", a->head_prototypes, b->head_prototypes);
  cmp_float(&d, "sddit.tau_s", a->tau_s, b->tau_s);
  cmp_float(&d, "sddit.tau_t_start", a->tau_t_start, b->tau_t_start);
  cmp_float(&d, "sddit.tau_t_end", a->tau_t_end, b->tau_t_end);
  cmp_int(&d, "sddit.teacher_temp_warmup", a->teacher_temp_warmup, b->teacher_temp_warmup);
  cmp_float(&d, "sddit.center_momentum", a->center_momentum, b->center_momentum);
  cmp_float(&d, "sddit.teacher_momentum", a->teacher_momentum, b->teacher_momentum);
  cmp_str(&d, "sddit.gen_loss_tokens", a->gen_loss_tokens, b->gen_loss_tokens);
  cmp_float(&d, "diffusion.sigma_data", a->sigma_data, b->sigma_data);
  cmp_float(&d, "diffusion.p_mean", a->p_mean, b->p_mean);
  cmp_float(&d, "diffusion.p_std", a->p_std, b->p_std);
  cmp_float(&d, "diffusion.sigma_min", a->sigma_min, b->sigma_min);
  cmp_float(&d, "diffusion.sigma_max", a->sigma_max, b->sigma_max);
  cmp_float(&d, "diffusion.label_dropout", a->label_dropout, b->label_dropout);
  cmp_float(&d, "optim.lr", a->lr, b->lr);
  cmp_float(&d, "optim.beta1", a->beta1, b->beta1);
  cmp_float(&d, "optim.beta2", a->beta2, b->beta2);
  cmp_float(&d, "optim.eps", a->eps, b->eps);
  cmp_float(&d, "optim.weight_decay", a->weight_decay, b->weight_decay);
  cmp_float(&d, "optim.grad_clip", a->grad_clip, b->grad_clip);
  cmp_float(&d, "optim.ema_decay", a->ema_decay, b->ema_decay);
  cmp_str(&d, "data.source", a->source, b->source);
  cmp_str(&d, "data.path", a->path, b->path);
  cmp_int(&d, "data.synthetic_size", a->synthetic_size, b->synthetic_size);
  cmp_int(&d, "train.steps", a->steps, b->steps);
  cmp_int(&d, "train.global_batch", a->global_batch, b->global_batch);
  cmp_u64(&d, "train.seed", a->seed, b->seed);
  cmp_int(&d, "train.log_every", a->log_every, b->log_every);
  cmp_int(&d, "train.threads", a->threads, b->threads);
  cmp_str(&d, "train.out_dir", a->out_dir, b->out_dir);
  cmp_str(&d, "train.metrics", a->metrics, b->metrics);
  cmp_int(&d, "train.max_bad_steps", a->max_bad_steps, b->max_bad_steps);
  return d;
}

// Prints c, loads the text into defaults of another preset, and checks every field comes back
// and that printing the loaded config gives the same text.
static void check_round_trip(const char *label, const sd_config *c, const char *other_preset) {
  char path[320], path2[320], err[512];
  snprintf(path, sizeof path, "%s", write_file("round_trip.ini", ""));
  FILE *f = fopen(path, "w");
  sd_config_print(c, f);
  fclose(f);
  sd_config back;
  sd_config_defaults(&back, other_preset);
  int rc = sd_config_load_ini(&back, path, err, sizeof err);
  check_true(rc == 0, "%s: printed config loads back%s%s", label, rc ? ": " : "", rc ? err : "");
  diff d = compare(c, &back);
  check_true(d.count == 0, "%s: print -> load into %s defaults: %d fields differ%s%s", label,
             other_preset, d.count, d.count ? ", first " : "", d.first);
  snprintf(path2, sizeof path2, "%s", write_file("round_trip2.ini", ""));
  f = fopen(path2, "w");
  sd_config_print(&back, f);
  fclose(f);
  char a[8192] = "", b[8192] = "";
  f = fopen(path, "r");
  size_t na = fread(a, 1, sizeof a - 1, f);
  fclose(f);
  f = fopen(path2, "r");
  size_t nb = fread(b, 1, sizeof b - 1, f);
  fclose(f);
  check_true(na == nb && memcmp(a, b, na) == 0, "%s: printing the loaded config gives the same "
             "%zu bytes", label, na);
}

// ---- defaults ----

static void test_defaults(void) {
  char err[512];
  sd_config c;
  sd_config_defaults(&c, NULL);
  check_true(strcmp(c.model.preset, "S/2") == 0 && c.model.depth == 12 && c.model.hidden == 384,
             "defaults(NULL) is S/2 (depth %d, hidden %d)", c.model.depth, c.model.hidden);
  check_true(c.encoder_depth == 10 && c.decoder_depth == 2 && c.decoder_hidden == 384 &&
                 c.decoder_heads == 6,
             "S/2 split: encoder %d + decoder %d, decoder width %d, heads %d", c.encoder_depth,
             c.decoder_depth, c.decoder_hidden, c.decoder_heads);
  check_true(c.mask_ratio == 0.2f && strcmp(c.teacher_sigma_mode, "fixed") == 0 &&
                 c.teacher_sigma == 0.002f && c.lambda_dis == 1.0f && c.head_hidden == 2048 &&
                 c.head_bottleneck == 256 && c.head_prototypes == 8192 && c.tau_s == 0.1f &&
                 c.tau_t_start == 0.04f && c.tau_t_end == 0.07f &&
                 c.teacher_temp_warmup == 1000 && c.center_momentum == 0.9f &&
                 c.teacher_momentum == 0.996f && strcmp(c.gen_loss_tokens, "all") == 0,
             "[sddit] defaults");
  check_true(c.sigma_data == 0.5f && c.p_mean == -1.2f && c.p_std == 1.2f &&
                 c.sigma_min == 0.002f && c.sigma_max == 80.0f && c.label_dropout == 0.1f,
             "[diffusion] defaults");
  check_true(c.lr == 1e-4f && c.beta1 == 0.9f && c.beta2 == 0.999f && c.eps == 1e-8f &&
                 c.weight_decay == 0.0f && c.grad_clip == 0.0f && c.ema_decay == 0.9999f,
             "[optim] defaults");
  check_true(strcmp(c.source, "synthetic") == 0 && c.path[0] == '\0' &&
                 c.synthetic_size == 1024,
             "[data] defaults");
  check_true(c.steps == 1000 && c.global_batch == 256 && c.seed == 0 && c.log_every == 10 &&
                 c.threads == 0 && strcmp(c.out_dir, "runs/default") == 0 &&
                 c.metrics[0] == '\0' && c.max_bad_steps == 10,
             "[train] defaults");
  check_true(sd_config_validate(&c, err, sizeof err) == 0, "S/2 defaults validate");
  check_true(sd_config_visible_tokens(&c) == 204, "S/2: 204 of 256 tokens visible at 0.2 (%d)",
             sd_config_visible_tokens(&c));

  sd_config_defaults(&c, "tiny");
  check_true(c.encoder_depth == 3 && c.decoder_depth == 1 && c.head_hidden == 64 &&
                 c.head_bottleneck == 16 && c.head_prototypes == 32 && c.global_batch == 16,
             "tiny: encoder 3 + decoder 1, head 64/16/32, global_batch 16");
  check_true(sd_config_validate(&c, err, sizeof err) == 0, "tiny defaults validate");
  check_true(sd_config_visible_tokens(&c) == 12, "tiny: 12 of 16 tokens visible at 0.2 (%d)",
             sd_config_visible_tokens(&c));

  const char *presets[] = {"B/2", "L/2", "XL/2", "S/4"};
  const int dec[] = {2, 4, 4, 2}, enc[] = {10, 20, 24, 10};
  for (int i = 0; i < 4; i++) {
    sd_config_defaults(&c, presets[i]);
    int ok = sd_config_validate(&c, err, sizeof err) == 0;
    check_true(c.decoder_depth == dec[i] && c.encoder_depth == enc[i] && ok &&
                   c.head_prototypes == 8192 && c.global_batch == 256,
               "%s: encoder %d + decoder %d, validates", presets[i], c.encoder_depth,
               c.decoder_depth);
  }
}

// ---- launch/configs ----

static void test_preset_files(void) {
  const char *root = getenv("SD_SOURCE_ROOT");
  if (!root) root = ".";
  const char *files[] = {"tiny", "S-2", "B-2", "L-2", "XL-2"};
  const char *presets[] = {"tiny", "S/2", "B/2", "L/2", "XL/2"};
  for (int i = 0; i < 5; i++) {
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/launch/configs/%s.ini", root, files[i]);
    sd_config c;
    sd_config_defaults(&c, i == 0 ? "XL/2" : "tiny");  // the file must set everything itself
    int rc = sd_config_load_ini(&c, path, err, sizeof err);
    check_true(rc == 0, "%s loads%s%s", path, rc ? ": " : "", rc ? err : "");
    rc = sd_config_validate(&c, err, sizeof err);
    check_true(rc == 0, "%s.ini validates%s%s", files[i], rc ? ": " : "", rc ? err : "");
    // The file holds the code's defaults for its preset, except the run length and names.
    sd_config want;
    sd_config_defaults(&want, presets[i]);
    if (i == 0) {
      want.steps = 200;
      want.teacher_temp_warmup = 50;
    } else {
      want.steps = 400000;
      want.log_every = 100;
      // the GPU presets train on the ImageNet latents that data-prep/README.md makes
      snprintf(want.source, sizeof want.source, "hdf5");
      snprintf(want.path, sizeof want.path, "data/imagenet256-latents.h5");
    }
    snprintf(want.out_dir, sizeof want.out_dir, "runs/%s", files[i]);
    diff d = compare(&c, &want);
    check_true(d.count == 0, "%s.ini = defaults(%s) + run length: %d fields differ%s%s",
               files[i], presets[i], d.count, d.count ? ", first " : "", d.first);
    check_round_trip(files[i], &c, i == 0 ? "XL/2" : "tiny");
  }
}

// ---- round trip of a config where every field differs from the defaults ----

static void test_round_trip_everything(void) {
  const char *sets[][3] = {
      {"model", "input_size", "16"}, {"model", "in_channels", "8"}, {"model", "patch", "4"},
      {"model", "hidden", "96"}, {"model", "depth", "6"}, {"model", "heads", "3"},
      {"model", "mlp_ratio", "2"}, {"model", "num_classes", "7"},
      {"model", "out_channels", "8"}, {"model", "freq_dim", "128"},
      {"model", "max_period", "5000"}, {"model", "ln_eps", "1e-5"},
      {"model", "encoder_depth", "3"}, {"model", "decoder_depth", "3"},
      {"model", "decoder_hidden", "96"}, {"model", "decoder_heads", "3"},
      {"sddit", "mask_ratio", "0.3"}, {"sddit", "teacher_sigma_mode", "log_uniform"},
      {"sddit", "teacher_sigma", "0.05"}, {"sddit", "lambda_dis", "0.333333333"},
      {"sddit", "head_hidden", "128"}, {"sddit", "head_bottleneck", "32"},
      {"sddit", "head_prototypes", "64"}, {"sddit", "tau_s", "0.2"},
      {"sddit", "tau_t_start", "0.03"}, {"sddit", "tau_t_end", "0.05"},
      {"sddit", "teacher_temp_warmup", "7"}, {"sddit", "center_momentum", "0.8"},
      {"sddit", "teacher_momentum", "0.99"}, {"sddit", "gen_loss_tokens", "visible"},
      {"diffusion", "sigma_data", "0.6"}, {"diffusion", "p_mean", "-1.1"},
      {"diffusion", "p_std", "1.3"}, {"diffusion", "sigma_min", "0.01"},
      {"diffusion", "sigma_max", "50"}, {"diffusion", "label_dropout", "0.15"},
      {"optim", "lr", "3e-4"}, {"optim", "beta1", "0.8"}, {"optim", "beta2", "0.95"},
      {"optim", "eps", "1e-6"}, {"optim", "weight_decay", "0.01"},
      {"optim", "grad_clip", "1.5"}, {"optim", "ema_decay", "0.999"},
      {"data", "source", "hdf5"}, {"data", "path", "/data/my latents #1.h5"},
      {"data", "synthetic_size", "77"}, {"train", "steps", "123456789012"},
      {"train", "global_batch", "32"}, {"train", "seed", "18446744073709551615"},
      {"train", "log_every", "5"}, {"train", "threads", "3"},
      {"train", "out_dir", "runs/a b"}, {"train", "metrics", "m.jsonl"},
      {"train", "max_bad_steps", "2"}};
  sd_config c, defaults;
  sd_config_defaults(&c, "S/2");
  sd_config_defaults(&defaults, "S/2");
  char err[512];
  int failed = 0;
  for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
    if (sd_config_set(&c, sets[i][0], sets[i][1], sets[i][2], err, sizeof err) != 0) {
      check_true(0, "set %s.%s = %s: %s", sets[i][0], sets[i][1], sets[i][2], err);
      failed = 1;
    }
  check_true(!failed, "every key set through sd_config_set");
  int rc = sd_config_validate(&c, err, sizeof err);
  check_true(rc == 0, "the all-changed config validates%s%s", rc ? ": " : "", rc ? err : "");
  check_true(strcmp(c.model.preset, "custom") == 0, "an edited model is preset 'custom' (%s)",
             c.model.preset);
  diff d = compare(&c, &defaults);
  check_true(d.count == N_FIELDS, "all %d fields differ from the defaults (%d)", N_FIELDS,
             d.count);
  check_round_trip("all fields changed", &c, "S/2");
  check_round_trip("all fields changed", &c, "tiny");
}

// ---- [model] preset applied first; setting a key to its value keeps the preset name ----

static void test_preset_first(void) {
  char err[512];
  sd_config c;
  sd_config_defaults(&c, "S/2");
  const char *p = write_file("preset_last.ini",
                             "[train]\nsteps = 5\n[model]\nnum_classes = 5\npreset = tiny\n");
  int rc = sd_config_load_ini(&c, p, err, sizeof err);
  check_true(rc == 0 && c.model.hidden == 64 && c.model.num_classes == 5 && c.steps == 5 &&
                 c.decoder_depth == 1 && strcmp(c.model.preset, "custom") == 0,
             "preset after other [model] keys: tiny with num_classes 5 (hidden %d, classes %d, "
             "preset %s)", c.model.hidden, c.model.num_classes, c.model.preset);
  check_true(c.global_batch == 256 && c.head_prototypes == 8192,
             "model.preset leaves the other sections alone (global_batch %d)", c.global_batch);
  check_true(sd_config_validate(&c, err, sizeof err) == 0, "it validates");

  sd_config_defaults(&c, "S/2");
  p = write_file("same_value.ini", "[model]\npreset = B/2\nhidden = 768\ndepth = 12\n");
  rc = sd_config_load_ini(&c, p, err, sizeof err);
  check_true(rc == 0 && strcmp(c.model.preset, "B/2") == 0,
             "setting a model key to the preset's value keeps the name (%s)", c.model.preset);
}

// ---- command-line overrides ----

static void expect_override_error(sd_config *c, const char *arg, const char *want) {
  char err[512] = "";
  sd_config before = *c;
  int rc = sd_config_apply_override(c, arg, err, sizeof err);
  diff d = compare(c, &before);
  check_true(rc == -1 && strstr(err, want) != NULL && d.count == 0,
             "override %-36s refused, config unchanged: %s", arg, err);
}

static void test_overrides(void) {
  char err[512];
  sd_config c;
  sd_config_defaults(&c, "S/2");
  int rc = sd_config_apply_override(&c, "--optim.lr=3e-4", err, sizeof err);
  check_true(rc == 0 && c.lr == 3e-4f, "--optim.lr=3e-4 -> %g", (double)c.lr);
  rc = sd_config_apply_override(&c, "--model.preset=L/2", err, sizeof err);
  check_true(rc == 0 && c.model.depth == 24 && c.model.hidden == 1024 && c.encoder_depth == 20 &&
                 c.decoder_depth == 4 && c.decoder_hidden == 1024 && c.decoder_heads == 16 &&
                 c.lr == 3e-4f,
             "--model.preset=L/2 resets [model] only: depth %d = %d + %d, lr kept",
             c.model.depth, c.encoder_depth, c.decoder_depth);
  check_true(sd_config_validate(&c, err, sizeof err) == 0, "L/2 override validates");
  rc = sd_config_apply_override(&c, "--train.seed=18446744073709551615", err, sizeof err);
  check_true(rc == 0 && c.seed == 18446744073709551615ULL, "--train.seed=2^64-1 -> %llu",
             c.seed);
  rc = sd_config_apply_override(&c, "--data.path=a=b.h5", err, sizeof err);
  check_true(rc == 0 && strcmp(c.path, "a=b.h5") == 0, "--data.path=a=b.h5 -> '%s'", c.path);
  rc = sd_config_apply_override(&c, "--train.metrics=", err, sizeof err);
  check_true(rc == 0 && c.metrics[0] == '\0', "--train.metrics= -> empty");
  rc = sd_config_apply_override(&c, "--train.steps=-0", err, sizeof err);
  check_true(rc == 0 && c.steps == 0, "--train.steps=-0 -> 0");
  rc = sd_config_apply_override(&c, "--model.preset=custom", err, sizeof err);
  check_true(rc == 0 && c.model.depth == 24 && strcmp(c.model.preset, "custom") == 0,
             "--model.preset=custom keeps the model");

  expect_override_error(&c, "optim.lr=1", "'optim.lr=1': expected --section.key=value");
  expect_override_error(&c, "--optim.lr", "expected --section.key=value");
  expect_override_error(&c, "--lr=1.5", "expected --section.key=value");
  expect_override_error(&c, "--optim.=1", "expected --section.key=value");
  expect_override_error(&c, "--optim.lr=abc", "optim.lr: 'abc' is not a number");
  expect_override_error(&c, "--optim.lr=nan", "optim.lr: 'nan' is not a number");
  expect_override_error(&c, "--optim.lr=1e-4x", "optim.lr: '1e-4x' is not a number");
  expect_override_error(&c, "--optim.lr= 1", "optim.lr: ' 1' is not a number");
  expect_override_error(&c, "--optim.lr=1e39", "optim.lr: '1e39' is out of range for a float");
  expect_override_error(&c, "--optim.eps=0", "optim.eps: '0' is out of range (must be > 0)");
  expect_override_error(&c, "--optim.lrr=1", "optim.lrr: unknown key (known: lr, beta1");
  expect_override_error(&c, "--optm.lr=1", "optm.lr: unknown section 'optm' (known: model");
  expect_override_error(&c, "--model.hiddn=4", "model.hiddn: unknown key (known: preset");
  expect_override_error(&c, "--model.depth=x1", "model.depth: 'x1' is not a positive integer");
  expect_override_error(&c, "--model.preset=Q/2", "model.preset: unknown preset 'Q/2'");
  expect_override_error(&c, "--train.steps=1.5", "train.steps: '1.5' is not an integer");
  expect_override_error(&c, "--train.global_batch=99999999999",
                        "train.global_batch: '99999999999' is out of range (must be >= 1)");
  expect_override_error(&c, "--train.seed=-1", "train.seed: '-1' is not a non-negative integer");
  expect_override_error(&c, "--train.seed=18446744073709551616",
                        "train.seed: '18446744073709551616' does not fit in 64 bits");
  expect_override_error(&c, "--sddit.gen_loss_tokens=some",
                        "sddit.gen_loss_tokens: 'some' is not one of: all, visible");
  expect_override_error(&c, "--train.out_dir=runs/x ", "has blanks at its start or end");
  expect_override_error(&c, "--data.path=a ;b", "contains ';' or a control character");
  expect_override_error(&c, "--dist.world=4", "dist.world: unknown key (known: timeout");
  expect_override_error(&c, "--log.every=4",
                        "log.every: unknown key (known: preview_every, preview_classes");
  expect_override_error(&c, "--optim.lr_schedule=linear",
                        "optim.lr_schedule: 'linear' is not one of: constant, cosine");
  expect_override_error(&c, "--train.accum_steps=0", "train.accum_steps: '0' is out of range");
  expect_override_error(&c, "--optim.warmup_steps=-5", "optim.warmup_steps: '-5' is out of range");
}

// ---- error messages from files ----

static void expect_load_error(const char *name, const char *text, const char *want) {
  char err[512] = "";
  const char *path = write_file(name, text);
  sd_config c, before;
  sd_config_defaults(&c, "S/2");
  before = c;
  int rc = sd_config_load_ini(&c, path, err, sizeof err);
  diff d = compare(&c, &before);
  check_true(rc == -1 && strstr(err, want) != NULL && d.count == 0, "%-20s %s", name, err);
}

static void expect_invalid(const char *name, const char *text, const char *want) {
  char err[512] = "";
  const char *path = write_file(name, text);
  sd_config c;
  sd_config_defaults(&c, "S/2");
  int rc = sd_config_load_ini(&c, path, err, sizeof err);
  check_true(rc == 0, "%s loads%s%s", name, rc ? ": " : "", rc ? err : "");
  rc = sd_config_validate(&c, err, sizeof err);
  check_true(rc == -1 && strstr(err, want) != NULL, "%-20s %s", name, err);
}

static void test_file_errors(void) {
  expect_load_error("unknown_section.ini", "[model]\npreset = S/2\n\n[optm]\nlr = 1\n",
                    "unknown_section.ini:4: unknown section '[optm]' (known: model, sddit");
  expect_load_error("empty_section.ini", "[train]\nsteps = 3\n[foo]\n",
                    "empty_section.ini:3: unknown section '[foo]'");
  expect_load_error("unknown_key.ini", "[optim]\nlr = 1e-4\nlrr = 3\n",
                    "unknown_key.ini:3: optim.lrr: unknown key (known: lr, beta1");
  expect_load_error("unknown_model_key.ini", "[model]\nhiddn = 4\n",
                    "unknown_model_key.ini:2: model.hiddn: unknown key");
  expect_load_error("log_key.ini", "[log]\nevery = 4\n",
                    "log_key.ini:2: log.every: unknown key (known: preview_every");
  expect_load_error("bad_bool.ini", "[data]\nhflip = maybe\n",
                    "bad_bool.ini:2: data.hflip: 'maybe' is not a boolean (true or false)");
  expect_load_error("bad_number.ini",
                    "# optimiser\n[optim]\nbeta1 = 0.9\nbeta2 = 0.999\n\n; the next is wrong\n"
                    "lr = abc\n",
                    "bad_number.ini:7: optim.lr: 'abc' is not a number");
  expect_load_error("bad_int.ini", "[train]\nsteps = 10k\n",
                    "bad_int.ini:2: train.steps: '10k' is not an integer");
  expect_load_error("out_of_range.ini", "[sddit]\nmask_ratio = 1.0\n",
                    "out_of_range.ini:2: sddit.mask_ratio: '1.0' is out of range (must be in "
                    "[0, 1))");
  expect_load_error("out_of_range_int.ini", "[train]\nglobal_batch = 0\n",
                    "out_of_range_int.ini:2: train.global_batch: '0' is out of range (must be "
                    ">= 1)");
  expect_load_error("bad_choice.ini", "[data]\nsource = s3\n",
                    "bad_choice.ini:2: data.source: 's3' is not one of: synthetic, hdf5");
  expect_load_error("bad_preset.ini", "[optim]\nlr = 1e-4\n[model]\npreset = Q/2\n",
                    "bad_preset.ini:4: model.preset: unknown preset 'Q/2'");
  expect_load_error("first_error.ini", "[optim]\nlr = abc\n[model]\npreset = Q/2\n",
                    "first_error.ini:2: optim.lr: 'abc' is not a number");
  expect_load_error("twice.ini", "[optim]\nlr = 1e-4\neps = 1e-8\nlr = 2e-4\n",
                    "twice.ini:4: optim.lr: given twice (first on line 2)");
  expect_load_error("preset_twice.ini", "[model]\npreset = S/2\n[train]\n[model]\npreset = B/2\n",
                    "preset_twice.ini:5: model.preset: given twice (first on line 2)");
  expect_load_error("indented.ini", "[optim]\nlr = 1e-4\n  eps = 1e-8\n",
                    "indented.ini:3: optim.lr: given twice (first on line 2)");
  expect_load_error("syntax.ini", "[optim]\nlr 1e-4\n",
                    "syntax.ini:2: syntax error: expected '[section]' or 'key = value'");
  expect_load_error("no_section.ini", "lr = 1e-4\n[optim]\n",
                    "no_section.ini:1: lr: key before any [section] line");
  char text[600];
  snprintf(text, sizeof text, "[data]\npath = /%0250d\n", 0);
  expect_load_error("long_line.ini", text, "long_line.ini:2: line longer than 198 characters");
  snprintf(text, sizeof text, "[data]\npath = /%0185d\n", 0);
  expect_load_error("long_value.ini", text, "is longer than 180 characters");
  char missing[320], err[512] = "";
  snprintf(missing, sizeof missing, "%s/missing.ini", g_dir);
  sd_config c;
  sd_config_defaults(&c, "S/2");
  int rc = sd_config_load_ini(&c, missing, err, sizeof err);
  check_true(rc == -1 && strstr(err, "cannot open config file") && strstr(err, missing),
             "%-20s %s", "missing.ini", err);
  rc = sd_config_load_ini(&c, g_dir, err, sizeof err);
  check_true(rc == -1 && strstr(err, g_dir), "%-20s %s", "(a directory)", err);

  expect_invalid("accum.ini", "[train]\nglobal_batch = 8\naccum_steps = 3\n",
                 "train.global_batch (8) is not a multiple of train.accum_steps (3)");
  expect_invalid("lr_min.ini", "[optim]\nlr = 1e-4\nlr_schedule = cosine\nlr_min = 1e-3\n",
                 "optim.lr_min (0.001) is above optim.lr (0.0001)");
  expect_invalid("depths.ini", "[model]\npreset = S/2\ndecoder_depth = 4\n",
                 "model.encoder_depth (10) + model.decoder_depth (4) = 14, but model.depth is "
                 "12: set model.encoder_depth = 8");
  expect_invalid("depths_model.ini", "[model]\ndepth = 8\n",
                 "but model.depth is 8: set model.encoder_depth = 6");
  expect_invalid("decoder_hidden.ini", "[model]\ndecoder_hidden = 512\n",
                 "model.decoder_hidden (512) differs from model.hidden (384)");
  expect_invalid("decoder_heads.ini", "[model]\ndecoder_heads = 8\n",
                 "model.decoder_heads (8) differs from model.heads (6)");
  expect_invalid("out_channels.ini", "[model]\nout_channels = 8\n",
                 "model.out_channels (8) differs from model.in_channels (4): the EDM denoiser "
                 "D = c_skip * x + c_out * F needs the network's output shaped like its input; "
                 "set model.out_channels = 4");
  expect_invalid("in_channels.ini", "[model]\npreset = tiny\nin_channels = 1\n",
                 "model.out_channels (4) differs from model.in_channels (1)");
  expect_invalid("no_visible.ini",
                 "[model]\npreset = tiny\n[sddit]\nmask_ratio = 0.95\n",
                 "sddit.mask_ratio (0.95) leaves no visible token of the 16");
  expect_invalid("model_shape.ini", "[model]\nhidden = 100\n",
                 "hidden 100 is not divisible by heads 6");
  expect_invalid("sigmas.ini", "[diffusion]\nsigma_min = 100\n",
                 "diffusion.sigma_min (100) must be below diffusion.sigma_max (80)");
  expect_invalid("hdf5_no_path.ini", "[data]\nsource = hdf5\n",
                 "data.path: required when data.source = hdf5");
  expect_invalid("empty_out_dir.ini", "[train]\nout_dir =\n", "train.out_dir: must not be empty");
}

// ---- validation of values set in code ----

static void test_validate_ranges(void) {
  char err[512] = "";
  sd_config c;
  sd_config_defaults(&c, "S/2");
  c.tau_s = 0.0f;
  int rc = sd_config_validate(&c, err, sizeof err);
  check_true(rc == -1 && strstr(err, "sddit.tau_s: 0 is out of range (must be > 0)"),
             "validate re-checks ranges: %s", err);
  sd_config_defaults(&c, "S/2");
  c.global_batch = 0;
  rc = sd_config_validate(&c, err, sizeof err);
  check_true(rc == -1 && strstr(err, "train.global_batch: 0 is out of range (must be >= 1)"),
             "validate re-checks ranges: %s", err);
  sd_config_defaults(&c, "S/2");
  snprintf(c.source, sizeof c.source, "s3");
  rc = sd_config_validate(&c, err, sizeof err);
  check_true(rc == -1 && strstr(err, "data.source: 's3' is not one of: synthetic, hdf5"),
             "validate re-checks choices: %s", err);
}

int main(void) {
  const char *tmp = getenv("TMPDIR");
  snprintf(g_dir, sizeof g_dir, "%s/sd_test_config_XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(g_dir)) {
    check_true(0, "mkdtemp %s", g_dir);
    return check_exit("test_config");
  }
  test_defaults();
  test_preset_files();
  test_round_trip_everything();
  test_preset_first();
  test_overrides();
  test_file_errors();
  test_validate_ranges();
  for (int i = 0; i < g_nwritten; i++) remove(g_written[i]);
  rmdir(g_dir);
  return check_exit("test_config");
}
