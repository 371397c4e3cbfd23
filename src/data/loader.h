// The training data loader over a checked format-1 dataset (dataset.h).
//
// The data stream is the concatenation of epoch permutations: stream position p belongs to
// epoch p / N and holds sample perm_e[p % N], where perm_e orders the samples by a keyed
// Philox value of (seed, epoch, index). Global batch s is positions s*G .. s*G+G-1 and rank r
// takes its contiguous slice of G/W of them, so every sample is seen once per epoch on any
// world size, and a resumed run continues the same stream from step * G.
//
// Per position (keyed, identical on every rank and after resume): a horizontal flip when
// enabled, and for /moments the sample mean + exp(logvar / 2) * eps, times scale_factor.
//
// Reads go straight to the file with pread when the dataset is stored uncompressed
// (contiguous, or chunked along N only), else through HDF5; the whole stored array can be held
// in memory instead. A background thread prepares the next `prefetch` batches.
#ifndef SD_LOADER_H
#define SD_LOADER_H

#include "data/dataset.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sd_loader_opts {
  int global_batch;  // G
  int rank, world;   // this rank takes G / world samples of each batch
  uint64_t seed;
  int hflip;         // keyed random horizontal flips
  int in_memory;     // load the stored array once
  int prefetch;      // batches prepared ahead by a thread (0: read inside sd_loader_get)
  int check_values;  // reject a batch holding a non-finite value (data.validate = quick)
} sd_loader_opts;

typedef struct sd_loader sd_loader;

// Opens the loader; info comes from sd_dataset_check. NULL with a message on failure.
sd_loader *sd_loader_open(const sd_dataset_info *info, const sd_loader_opts *o, char *err,
                          size_t errlen);
void sd_loader_close(sd_loader *l);

// This rank's slice of global batch `step`: x (G/W, C, H, W) float32, y (G/W). Consecutive
// steps come from the prefetch queue; any other step restarts it there. Returns 0, or -1 with
// a message naming the file and sample (read error, non-finite value).
int sd_loader_get(sd_loader *l, long step, float *x, int32_t *y, char *err, size_t errlen);

// Seconds sd_loader_get spent waiting for data since the last call of this function.
double sd_loader_take_wait(sd_loader *l);

// How samples are read: "memory", "pread" or "hdf5" (for logs and the benchmark).
const char *sd_loader_mode(const sd_loader *l);

// Sample index at stream position p of a dataset of n samples (a slow, self-contained form of
// what the loader does, for tests and tools).
long sd_loader_sample_at(uint64_t seed, long n, long p);

// The epoch permutation: perm (n) receives the sample indices in stream order for `epoch`.
void sd_epoch_permutation(uint64_t seed, long epoch, long n, int32_t *perm);

#endif
