// The checkpoint directory: fsync of the directory, listing ckpt-<digits>.h5 newest
// first, deleting all but the newest K (see ckpt_files.h), and sd_ckpt_find_latest.
#include "ckpt/ckpt.h"
#include "ckpt/ckpt_files.h"
#include "ckpt/ckpt_msg.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// ---- directory helpers -------------------------------------------------------------------

int sd_ckpt_fsync_dir(const char *dir, char *err, size_t errlen) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (fd < 0 || fsync(fd) != 0) {
    sd_ckpt_set_err(err, errlen, "%s: cannot fsync the directory: %s", dir, strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  close(fd);
  return 0;
}

typedef struct ckpt_entry {
  long step;
  char name[256];
} ckpt_entry;

// Step of a name "ckpt-<digits>.h5", or -1.
static long parse_ckpt_name(const char *name) {
  if (strncmp(name, "ckpt-", 5) != 0) return -1;
  const char *p = name + 5;
  size_t nd = strspn(p, "0123456789");
  if (nd == 0 || nd > 18 || strcmp(p + nd, ".h5") != 0) return -1;
  return strtol(p, NULL, 10);
}

static int by_step_desc(const void *a, const void *b) {
  const ckpt_entry *x = a, *y = b;
  if (x->step != y->step) return x->step < y->step ? 1 : -1;
  return strcmp(y->name, x->name);
}

// The ckpt-<digits>.h5 files in dir, newest first (malloc'ed; free()). -1 with errno set
// (ENOENT: no such directory) or ENOMEM.
static int list_ckpts(const char *dir, ckpt_entry **out, int *count) {
  *out = NULL;
  *count = 0;
  DIR *d = opendir(dir);
  if (!d) return -1;
  int cap = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    long step = parse_ckpt_name(de->d_name);
    if (step < 0) continue;
    if (*count == cap) {
      cap = cap ? 2 * cap : 16;
      ckpt_entry *grown = realloc(*out, sizeof(ckpt_entry) * (size_t)cap);
      if (!grown) {
        free(*out);
        *out = NULL;
        closedir(d);
        errno = ENOMEM;
        return -1;
      }
      *out = grown;
    }
    (*out)[*count].step = step;
    snprintf((*out)[*count].name, sizeof (*out)[*count].name, "%s", de->d_name);
    (*count)++;
  }
  closedir(d);
  if (*count) qsort(*out, (size_t)*count, sizeof(ckpt_entry), by_step_desc);
  return 0;
}

void sd_ckpt_prune(const char *dir, int keep, const char *keep_name) {
  if (keep <= 0) return;
  ckpt_entry *e;
  int n;
  if (list_ckpts(dir, &e, &n) != 0) {
    fprintf(stderr, "warning: cannot list '%s' to delete old checkpoints: %s\n", dir,
            strerror(errno));
    return;
  }
  char path[4400];
  for (int i = keep; i < n; i++) {
    if (strcmp(e[i].name, keep_name) == 0) continue;
    snprintf(path, sizeof path, "%s/%s", dir, e[i].name);
    if (unlink(path) != 0)
      fprintf(stderr, "warning: cannot delete old checkpoint %s: %s\n", path, strerror(errno));
  }
  free(e);
}

// ---- the newest checkpoint that verifies ---------------------------------------------------

int sd_ckpt_find_latest(const char *dir, char *path, size_t path_len, char *err,
                        size_t errlen) {
  if (err && errlen) err[0] = '\0';
  ckpt_entry *e;
  int n;
  if (list_ckpts(dir, &e, &n) != 0) {
    if (errno == ENOENT) return 0;
    sd_ckpt_set_err(err, errlen, "cannot list checkpoint directory '%s': %s", dir,
                    strerror(errno));
    return -1;
  }
  int found = 0;
  char p[4400], why[1024];
  for (int i = 0; i < n && !found; i++) {
    snprintf(p, sizeof p, "%s/%s", dir, e[i].name);
    if (sd_ckpt_verify(p, why, sizeof why) == 0) {
      found = 1;
      break;
    }
    size_t pl = strlen(p);
    const char *reason = strncmp(why, p, pl) == 0 && why[pl] == ':' ? why + pl + 2 : why;
    fprintf(stderr, "warning: skipping %s: %s\n", p, reason);
  }
  free(e);
  if (!found) return 0;
  if (strlen(p) >= path_len) {
    sd_ckpt_set_err(err, errlen, "checkpoint path '%s' does not fit the buffer (%zu bytes)",
                    p, path_len);
    return -1;
  }
  snprintf(path, path_len, "%s", p);
  return 1;
}
