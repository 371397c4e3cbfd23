// The synthetic and HDF5 batch sources (see batch_source.h).
#include "data/batch_source.h"
#include "util/rng.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// Synthetic stream position p: a class-dependent pattern plus keyed noise, label keyed too.
static void synthetic_sample(const sd_config *c, long p, float *x, int32_t *y) {
  const int n = c->model.in_channels * c->model.input_size * c->model.input_size;
  uint32_t idx = (uint32_t)(p % c->synthetic_size);
  *y = (int32_t)sd_rng_below(c->seed, SD_RNG_SYNTHETIC, 1, idx, 0, (uint32_t)c->model.num_classes);
  sd_rng_normal(c->seed, SD_RNG_SYNTHETIC, 0, idx, 0, (size_t)n, x);
  for (int k = 0; k < n; k++)
    x[k] = 0.3f * x[k] + 0.5f * sinf(0.37f * (float)k * (float)(*y + 1));
}

int sd_batch_source_open(sd_batch_source *src, const sd_config *cfg, int rank, int world,
                         char *err, size_t errlen) {
  memset(src, 0, sizeof *src);
  src->cfg = cfg;
  src->rank = rank;
  src->world = world;
  if (cfg->global_batch % world) {
    snprintf(err, errlen, "train.global_batch (%d) must be a multiple of the %d ranks",
             cfg->global_batch, world);
    return -1;
  }
  src->Bl = cfg->global_batch / world;
  if (strcmp(cfg->source, "hdf5") != 0) return 0;
  struct stat st;
  if (stat(cfg->path, &st) != 0 && (errno == ENOENT || errno == ENOTDIR)) {
    const char *why = strerror(errno);
    char cwd[512];
    const int rel = cfg->path[0] != '/' && getcwd(cwd, sizeof cwd);
    snprintf(err, errlen,
             "data.path = %s: cannot open the dataset: %s%s%s%s. Make it with data-prep/ "
             "(data-prep/README.md; ImageNet latents: data-prep/imagenet_latents.py "
             "IMAGENET/train --out %s --devices all --flip), train on another file with "
             "--data.path=FILE, or run without data on the synthetic source with "
             "--data.source=synthetic (a smoke run)",
             cfg->path, why, rel ? " (relative to the working directory " : "", rel ? cwd : "",
             rel ? ")" : "", cfg->path);
    return -1;
  }
  if (sd_dataset_check(cfg->path, strcmp(cfg->validate, "full") == 0, &src->info, err,
                       errlen) != 0)
    return -1;
  if (sd_dataset_check_model(&src->info, cfg->model.in_channels, cfg->model.input_size,
                             cfg->model.num_classes, err, errlen) != 0)
    return -1;
  sd_loader_opts o = {.global_batch = cfg->global_batch, .rank = rank, .world = world,
                      .seed = cfg->seed, .hflip = cfg->hflip, .in_memory = cfg->in_memory,
                      .prefetch = cfg->prefetch,
                      .check_values = strcmp(cfg->validate, "quick") == 0};
  src->loader = sd_loader_open(&src->info, &o, err, errlen);
  if (!src->loader) return -1;
  if (rank == 0 && strcmp(sd_loader_mode(src->loader), "hdf5") == 0)
    fprintf(stderr, "warning: %s is compressed (or its chunks split samples), so every random "
            "read goes through HDF5 and decompresses a whole chunk (about 1300 samples/s in "
            "benchmarks/RESULTS.md); set data.in_memory = true, or rewrite it uncompressed "
            "with one or a few samples per chunk as data-prep/ does\n", cfg->path);
  return 0;
}

int sd_batch_source_get(sd_batch_source *src, long step, float *x, int32_t *y, char *err,
                        size_t errlen) {
  if (src->loader) return sd_loader_get(src->loader, step, x, y, err, errlen);
  const sd_config *c = src->cfg;
  const size_t n = (size_t)c->model.in_channels * c->model.input_size * c->model.input_size;
  const long first = step * (long)c->global_batch + (long)src->rank * src->Bl;
  for (int b = 0; b < src->Bl; b++) synthetic_sample(c, first + b, x + (size_t)b * n, &y[b]);
  return 0;
}

double sd_batch_source_take_wait(sd_batch_source *src) {
  return src->loader ? sd_loader_take_wait(src->loader) : 0.0;
}

void sd_batch_source_close(sd_batch_source *src) {
  sd_loader_close(src->loader);
  src->loader = NULL;
}

void sd_batch_source_describe(const sd_batch_source *src, char *buf, size_t len) {
  if (!src->loader) {
    snprintf(buf, len, "synthetic source, %d patterns", src->cfg->synthetic_size);
    return;
  }
  const sd_dataset_info *i = &src->info;
  snprintf(buf, len, "%s: %ld samples of (%d, %d, %d) %s%s, %d classes, read by %s%s%s",
           i->path, i->n, i->c, i->h, i->w, i->half ? "float16" : "float32",
           i->moments ? " sampled from moments" : "", i->num_classes,
           sd_loader_mode(src->loader), src->cfg->hflip ? ", random flips" : "",
           src->cfg->prefetch ? ", prefetching" : "");
}
