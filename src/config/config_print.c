// Printing the effective configuration as an INI file that loads back to the same struct (see
// config.h).
#include "config/config_keys.h"
#include "error.h"

#include <string.h>

static void print_table_value(const sd_config *c, const key_desc *k, FILE *f) {
  char text[64];
  switch (k->type) {
    case KEY_INT: fprintf(f, "%s = %d\n", k->name, *(const int *)sd_cfg_cfield_of(c, k)); break;
    case KEY_LONG: fprintf(f, "%s = %ld\n", k->name, *(const long *)sd_cfg_cfield_of(c, k)); break;
    case KEY_U64:
      fprintf(f, "%s = %llu\n", k->name, *(const unsigned long long *)sd_cfg_cfield_of(c, k));
      break;
    case KEY_FLOAT:
      sd_cfg_format_float(*(const float *)sd_cfg_cfield_of(c, k), text, sizeof text);
      fprintf(f, "%s = %s\n", k->name, text);
      break;
    case KEY_BOOL:
      fprintf(f, "%s = %s\n", k->name, *(const int *)sd_cfg_cfield_of(c, k) ? "true" : "false");
      break;
    case KEY_STRING: {
      const char *v = sd_cfg_cfield_of(c, k);
      fprintf(f, "%s =%s%s\n", k->name, v[0] ? " " : "", v);  // no trailing blank when empty
      break;
    }
  }
}

static void print_model(const sd_dit_config *m, FILE *f) {
  const struct {
    const char *name;
    int value;
  } ints[] = {{"input_size", m->input_size},   {"in_channels", m->in_channels},
              {"patch", m->patch},             {"hidden", m->hidden},
              {"depth", m->depth},             {"heads", m->heads},
              {"mlp_ratio", m->mlp_ratio},     {"num_classes", m->num_classes},
              {"out_channels", m->out_channels}, {"freq_dim", m->freq_dim}};
  char text[64];
  fprintf(f, "preset = %s\n", m->preset);
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
    fprintf(f, "%s = %d\n", ints[i].name, ints[i].value);
  sd_cfg_format_float(m->max_period, text, sizeof text);
  fprintf(f, "max_period = %s\n", text);
  sd_cfg_format_float(m->ln_eps, text, sizeof text);
  fprintf(f, "ln_eps = %s\n", text);
}

void sd_config_print(const sd_config *c, FILE *f) {
  fprintf(f, "# sddit effective configuration (every key); load it with --config FILE\n");
  for (size_t s = 0; s < sd_cfg_nsections; s++) {
    fprintf(f, "\n[%s]\n", sd_cfg_sections[s]);
    int keys = 0;
    if (strcmp(sd_cfg_sections[s], "model") == 0) {
      print_model(&c->model, f);
      keys++;
    }
    for (size_t i = 0; i < sd_cfg_nkeys; i++)
      if (strcmp(sd_cfg_keys[i].section, sd_cfg_sections[s]) == 0) {
        print_table_value(c, &sd_cfg_keys[i], f);
        keys++;
      }
    if (!keys) fprintf(f, "# reserved: no keys yet\n");
  }
}

char *sd_config_print_text(const sd_config *c) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) SD_FATAL("open_memstream failed");
  sd_config_print(c, f);
  fclose(f);
  return buf;
}
