// Internal to the checkpoint module (ckpt_*.c): the checkpoint directory on disk (making a
// rename in it durable, deleting old checkpoints; creating it is sd_make_dirs of util/files.h).
#ifndef SD_CKPT_FILES_H
#define SD_CKPT_FILES_H

#include <stddef.h>

// fsyncs the directory itself (so a rename in it is durable). 0, or -1 with a message in err.
int sd_ckpt_fsync_dir(const char *dir, char *err, size_t errlen);

// Deletes all but the newest `keep` ckpt-<digits>.h5 files of dir (keep <= 0: none), never
// `keep_name`. Problems are warnings on stderr.
void sd_ckpt_prune(const char *dir, int keep, const char *keep_name);

#endif
