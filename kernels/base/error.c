// The one fatal-error path (see error.h) and checked allocation.
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void (*g_abort_hook)(int) = NULL;
static int g_rank = 0;

void sd_error_set_abort_hook(void (*hook)(int code)) { g_abort_hook = hook; }
void sd_error_set_rank(int rank) { g_rank = rank; }
int sd_error_rank(void) { return g_rank; }

void sd_fatal_at(const char *file, int line, const char *func, const char *hint,
                 const char *fmt, ...) {
  char host[64] = "?";
  gethostname(host, sizeof host - 1);
  host[sizeof host - 1] = '\0';
  const char *base = strrchr(file, '/');
  base = base ? base + 1 : file;
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fflush(stdout);
  fprintf(stderr, "[rank %d@%s] %s:%d %s: error: %s\n", g_rank, host, base, line, func, msg);
  if (hint) fprintf(stderr, "[rank %d@%s]   hint: %s\n", g_rank, host, hint);
  fflush(stderr);
  if (g_abort_hook) g_abort_hook(1);
  exit(1);
}

void *sd_xmalloc(size_t bytes, const char *what) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) SD_FATAL("out of memory allocating %zu bytes for %s", bytes, what);
  return p;
}

void *sd_xcalloc(size_t count, size_t size, const char *what) {
  void *p = calloc(count ? count : 1, size ? size : 1);
  if (!p) SD_FATAL("out of memory allocating %zu x %zu bytes for %s", count, size, what);
  return p;
}

int sd_errorf(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (err && errlen) vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}
