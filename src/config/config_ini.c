// Loading INI files with inih: two passes (model.preset first), strict section names, line
// lengths and repeated keys, and the earliest error's line (see config.h).
#include "config/config_keys.h"
#include "error.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SEEN 128

// State shared by the line reader and the key handler while inih parses one file.
typedef struct ini_ctx {
  sd_config *c;
  FILE *f;
  int pass;      // 1: only [model] preset; 2: every other key
  int line;      // number of the line being parsed
  int err_line;  // line of the earliest error found, 0 = none
  char err[512];
  int nseen;  // keys already set, to refuse a key given twice
  char seen[MAX_SEEN][80];
  int seen_line[MAX_SEEN];
} ini_ctx;

// Keeps the error on the earliest line (the two passes find errors out of line order).
static void ini_error(ini_ctx *x, int line, const char *msg) {
  if (x->err_line && x->err_line <= line) return;
  x->err_line = line;
  snprintf(x->err, sizeof x->err, "%s", msg);
}

// A "[name]" line must name a known section (inih itself only reports sections with keys).
static void check_section_line(ini_ctx *x, const char *line) {
  const unsigned char *s = (const unsigned char *)line;
  if (x->line == 1 && s[0] == 0xEF && s[1] == 0xBB && s[2] == 0xBF) s += 3;  // UTF-8 BOM
  while (isspace(*s)) s++;
  if (*s != '[') return;
  const char *name = (const char *)s + 1;
  const char *end = strchr(name, ']');
  if (!end || sd_cfg_is_section(name, (size_t)(end - name))) return;  // no ']': inih's syntax error
  char known[256], msg[512];
  sd_cfg_section_list(known, sizeof known);
  snprintf(msg, sizeof msg, "unknown section '[%.*s]' (known: %s)", (int)(end - name), name,
           known);
  ini_error(x, x->line, msg);
}

// fgets for inih that counts lines, refuses lines longer than inih's buffer (inih would split
// them), checks section names, and stops at the first error.
static char *ini_read_line(char *str, int num, void *stream) {
  ini_ctx *x = stream;
  if (x->err_line && x->err_line <= x->line) return NULL;
  if (!fgets(str, num, x->f)) return NULL;
  x->line++;
  size_t len = strlen(str);
  if (len && str[len - 1] != '\n') {
    int next = fgetc(x->f);
    if (next != EOF) {
      char msg[128];
      snprintf(msg, sizeof msg, "line longer than %d characters", num - 2);
      ini_error(x, x->line, msg);
      return NULL;
    }
  }
  check_section_line(x, str);
  if (x->err_line == x->line) return NULL;
  return str;
}

static int ini_handle(void *user, const char *section, const char *name, const char *value) {
  ini_ctx *x = user;
  int is_preset = strcmp(section, "model") == 0 && strcmp(name, "preset") == 0;
  if ((x->pass == 1) != is_preset) return 1;  // pass 1 sets the preset, pass 2 the rest
  char msg[512];
  if (!section[0]) {
    snprintf(msg, sizeof msg, "%s: key before any [section] line", name);
    ini_error(x, x->line, msg);
    return 1;
  }
  char full[80];
  snprintf(full, sizeof full, "%s.%s", section, name);
  for (int i = 0; i < x->nseen; i++)
    if (strcmp(x->seen[i], full) == 0) {
      snprintf(msg, sizeof msg, "%s: given twice (first on line %d)", full, x->seen_line[i]);
      ini_error(x, x->line, msg);
      return 1;
    }
  if (sd_config_set(x->c, section, name, value, msg, sizeof msg) != 0) {
    ini_error(x, x->line, msg);
    return 1;
  }
  if (x->nseen < MAX_SEEN) {
    snprintf(x->seen[x->nseen], sizeof x->seen[0], "%s", full);
    x->seen_line[x->nseen++] = x->line;
  }
  return 1;  // errors are kept in x; inih's own return value then means a syntax error
}

int sd_config_load_ini_text(sd_config *c, const char *text, const char *name, char *err,
                            size_t errlen) {
  // a memory stream: both passes read the same bytes (a pipe could not be read twice)
  FILE *f = fmemopen((void *)text, strlen(text), "r");
  if (!f) {
    snprintf(err, errlen, "%s: cannot read the configuration text: %s", name, strerror(errno));
    return -1;
  }
  sd_config work = *c;
  ini_ctx *x = calloc(1, sizeof *x);
  if (!x) SD_FATAL("out of memory reading '%s'", name);
  x->c = &work;
  x->f = f;
  for (int pass = 1; pass <= 2; pass++) {
    rewind(f);
    x->pass = pass;
    x->line = 0;
    int r = ini_parse_stream(ini_read_line, x, ini_handle, x);
    if (r > 0) ini_error(x, r, "syntax error: expected '[section]' or 'key = value'");
    else if (r < 0) ini_error(x, 1, "inih could not allocate its line buffer");
  }
  fclose(f);
  int rc = 0;
  if (x->err_line) {
    snprintf(err, errlen, "%s:%d: %s", name, x->err_line, x->err);
    rc = -1;
  } else {
    *c = work;
  }
  free(x);
  return rc;
}

int sd_config_load_ini(sd_config *c, const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "cannot open config file '%s': %s", path, strerror(errno));
    return -1;
  }
  // read it once (it may be a pipe), at most 1 MiB
  const size_t cap = 1u << 20;
  char *text = malloc(cap + 1);
  if (!text) SD_FATAL("out of memory reading '%s'", path);
  size_t len = fread(text, 1, cap + 1, f);
  int bad = ferror(f), e = errno;
  fclose(f);
  int rc;
  if (bad) {
    snprintf(err, errlen, "%s: read error: %s", path, strerror(e));
    rc = -1;
  } else if (len > cap) {
    snprintf(err, errlen, "%s: larger than 1 MiB; is it a configuration file?", path);
    rc = -1;
  } else if (memchr(text, '\0', len)) {
    snprintf(err, errlen, "%s: contains a NUL byte; is it a configuration file?", path);
    rc = -1;
  } else {
    text[len] = '\0';
    rc = sd_config_load_ini_text(c, text, path, err, errlen);
  }
  free(text);
  return rc;
}
