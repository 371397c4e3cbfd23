// Internal to the checkpoint module (ckpt_*.c): error messages into the caller's buffer, and
// HDF5's own error printing silenced while a checkpoint call runs, its error stack turned
// into one line (the errno text where there is one).
#ifndef SD_CKPT_MSG_H
#define SD_CKPT_MSG_H

#include "error.h"

#include <hdf5.h>
#include <stddef.h>

// printf into err (nothing when err is NULL or errlen is 0).
void sd_ckpt_set_err(char *err, size_t errlen, const char *fmt, ...) SD_PRINTF(3, 4);

// HDF5's automatic error handler, saved and turned off by sd_ckpt_quiet_begin, restored by
// sd_ckpt_quiet_end.
typedef struct sd_ckpt_quiet {
  H5E_auto2_t func;
  void *data;
} sd_ckpt_quiet;

void sd_ckpt_quiet_begin(sd_ckpt_quiet *q);
void sd_ckpt_quiet_end(const sd_ckpt_quiet *q);

// The reason for the HDF5 failure just seen: the errno text if the stack has one, else the
// innermost HDF5 description, else saved_errno's text. Call before any other HDF5 call.
void sd_ckpt_h5_reason(char *buf, size_t len, int saved_errno);

#endif
