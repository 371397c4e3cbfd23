// Where a training step's clean samples and labels come from: the built-in synthetic source
// (keyed patterns, for smoke runs and benchmarks) or the HDF5 loader (loader.h). Both are
// keyed by (seed, step, stream position), so a batch is the same on any world size and after
// a resume.
#ifndef SD_BATCH_SOURCE_H
#define SD_BATCH_SOURCE_H

#include "config/config.h"
#include "data/loader.h"

#include <stdint.h>

typedef struct sd_batch_source {
  const sd_config *cfg;
  int rank, world, Bl;    // Bl = global_batch / world samples per rank
  sd_dataset_info info;   // hdf5 only
  sd_loader *loader;      // hdf5 only
} sd_batch_source;

// Opens the source named by data.source; for hdf5 checks the file (data.validate) and that
// the model fits it. Returns 0, or -1 with a message.
int sd_batch_source_open(sd_batch_source *src, const sd_config *cfg, int rank, int world,
                         char *err, size_t errlen);
// This rank's slice of global batch `step`: x (Bl, C, H, W), y (Bl). 0, or -1 with a message.
int sd_batch_source_get(sd_batch_source *src, long step, float *x, int32_t *y, char *err,
                        size_t errlen);
// Seconds spent waiting for data since the last call.
double sd_batch_source_take_wait(sd_batch_source *src);
void sd_batch_source_close(sd_batch_source *src);
// One line describing the source (file, samples, read path) for the log.
void sd_batch_source_describe(const sd_batch_source *src, char *buf, size_t len);

#endif
