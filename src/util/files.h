// Small file-system helpers shared by the commands and the checkpoint code: mkdir -p.
#ifndef SD_FILES_H
#define SD_FILES_H

#include <stddef.h>

// mkdir -p path (new directories get mode 0755 before the umask; existing ones are fine), and
// path is a directory afterwards. 0, or -1 with "cannot create directory 'X': <strerror>" (X:
// the first one that failed) or "'path' is not a directory" in err.
int sd_make_dirs(const char *path, char *err, size_t errlen);

#endif
