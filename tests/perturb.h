// A CPU backend with exactly one op perturbed (its output scaled by 1 + PERTURB_EPS), used to
// show that a test notices when any single op is wrong.
#ifndef SD_PERTURB_H
#define SD_PERTURB_H

#include "ops.h"

#define PERTURB_EPS 1e-2f

// Number of perturbable ops and the name of op k.
int perturb_count(void);
const char *perturb_name(int k);
// Makes be a CPU backend whose op k is perturbed (k < 0: none).
void perturb_backend(sd_backend *be, int k);

#endif
