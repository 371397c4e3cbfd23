// The model's option structs (objective and optimizer options, projection head shape) built
// from a run configuration, for every place that creates an sd_sddit from an sd_config.
#ifndef SD_SDDIT_CONFIG_H
#define SD_SDDIT_CONFIG_H

#include "config/config.h"
#include "objective/sddit.h"
#include "objective/step_random.h"

// The objective, schedule and optimizer options of configuration c (o is zeroed first).
void sd_sddit_opts_from_config(const sd_config *c, sd_sddit_opts *o);
// The projection head's shape: input width model.hidden, then head_hidden, head_bottleneck,
// head_prototypes.
void sd_head_config_from_config(const sd_config *c, sd_head_config *h);
// The keyed per-step randomness of configuration c (seed, noise levels, label dropout, token
// counts from the model shape and sddit.mask_ratio, elements per sample).
void sd_random_opts_from_config(const sd_config *c, sd_random_opts *o);

#endif
