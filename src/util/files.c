// Small file-system helpers (see files.h).
#include "util/files.h"
#include "error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int sd_make_dirs(const char *path, char *err, size_t errlen) {
  char buf[4096];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
    return sd_errorf(err, errlen, "cannot create directory '%s': %s", path,
                     strerror(ENAMETOOLONG));
  // each prefix ending before a '/', then the whole path; "" fails in mkdir (ENOENT)
  for (char *p = buf + (buf[0] != '\0');; p++) {
    if (*p != '/' && *p != '\0') continue;
    char save = *p;
    *p = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
      return sd_errorf(err, errlen, "cannot create directory '%s': %s", buf, strerror(errno));
    *p = save;
    if (!save) break;
  }
  struct stat st;  // an existing final component may be a file
  if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
    return sd_errorf(err, errlen, "'%s' is not a directory", path);
  return 0;
}
