// Small file-system helpers shared by the commands and the checkpoint code: mkdir -p.
#ifndef SD_FILES_H
#define SD_FILES_H

#include <stddef.h>

// mkdir -p path (new directories get mode 0755 before the umask; existing ones are fine).
// 0, or -1 with "cannot create directory 'X': <strerror>" in err (X: the first one that
// failed). Does not check that an existing final component is a directory.
int sd_make_dirs(const char *path, char *err, size_t errlen);

#endif
