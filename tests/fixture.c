// Loads the PyTorch DiT fixture (see fixture.h).
#include "fixture.h"
#include "error.h"
#include "util/h5io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *fixture_path(const char *name, char *buf, size_t len) {
  const char *dir = getenv("SD_FIXTURES");
  snprintf(buf, len, "%s/%s", dir ? dir : "tests/fixtures", name);
  return buf;
}

void fixture_read_tensor(hid_t f, const char *path, float *dst, size_t numel) {
  sd_h5_shape s;
  float *v = sd_h5_read_f32(f, path, &s);
  if (s.numel != numel)
    SD_FATAL("fixture tensor '%s' has %zu elements, the model expects %zu", path, s.numel, numel);
  memcpy(dst, v, sizeof(float) * numel);
  free(v);
}

static int cfg_int(hid_t f, const char *name) { return (int)sd_h5_attr_int(f, "/config", name); }

void fixture_read_dit_config(hid_t f, sd_dit_config *c) {
  sd_dit_config_preset(c, "tiny");
  snprintf(c->preset, sizeof c->preset, "fixture");
  c->input_size = cfg_int(f, "input_size");
  c->in_channels = cfg_int(f, "in_channels");
  c->patch = cfg_int(f, "patch");
  c->hidden = cfg_int(f, "hidden");
  c->depth = cfg_int(f, "depth");
  c->heads = cfg_int(f, "heads");
  c->mlp_ratio = cfg_int(f, "mlp_ratio");
  c->num_classes = cfg_int(f, "num_classes");
  c->out_channels = cfg_int(f, "out_channels");
  c->freq_dim = cfg_int(f, "freq_dim");
  c->max_period = (float)cfg_int(f, "max_period");
}

void fixture_load(fixture *fx, const char *path) {
  memset(fx, 0, sizeof *fx);
  fx->file = sd_h5_open_read(path);
  hid_t f = fx->file;
  if (sd_h5_attr_int(f, "/", "format_version") != 1)
    SD_FATAL("%s: unsupported fixture format_version", path);
  sd_dit_config *c = &fx->cfg;
  fixture_read_dit_config(f, c);
  int B = cfg_int(f, "batch");
  sd_param_table t;
  sd_dit_param_table(c, &t);
  fx->params = sd_xmalloc(sizeof(float) * t.total, "fixture params");
  char p[160];
  for (int i = 0; i < t.count; i++) {
    snprintf(p, sizeof p, "/params/%s", t.items[i].name);
    fixture_read_tensor(f, p, fx->params + t.items[i].offset, t.items[i].numel);
  }
  const int T = sd_dit_tokens(c), D = c->hidden;
  fx->pos = sd_xmalloc(sizeof(float) * (size_t)T * D, "fixture pos");
  fixture_read_tensor(f, "/pos_embed", fx->pos, (size_t)T * D);
  const char *names[2] = {"full", "masked"};
  for (int k = 0; k < 2; k++) {
    fixture_case *fc = &fx->cases[k];
    fc->name = names[k];
    fc->B = B;
    sd_h5_shape s;
    snprintf(p, sizeof p, "/%s/x", names[k]);
    fc->x = sd_h5_read_f32(f, p, NULL);
    snprintf(p, sizeof p, "/%s/c_noise", names[k]);
    fc->c_noise = sd_h5_read_f32(f, p, NULL);
    snprintf(p, sizeof p, "/%s/y", names[k]);
    fc->y = sd_h5_read_i32(f, p, NULL);
    snprintf(p, sizeof p, "/%s/keep_idx", names[k]);
    fc->keep_idx = sd_h5_read_i32(f, p, &s);
    fc->Tk = (int)s.dims[1];
    snprintf(p, sizeof p, "/%s/target", names[k]);
    fc->target = sd_h5_read_f32(f, p, NULL);
    snprintf(p, sizeof p, "/%s/out", names[k]);
    fc->out = sd_h5_read_f32(f, p, NULL);
    snprintf(p, sizeof p, "/%s/loss", names[k]);
    fc->loss = sd_h5_read_f64_scalar(f, p);
    fc->grads = sd_xmalloc(sizeof(float) * t.total, "fixture grads");
    for (int i = 0; i < t.count; i++) {
      snprintf(p, sizeof p, "/%s/grads/%s", names[k], t.items[i].name);
      fixture_read_tensor(f, p, fc->grads + t.items[i].offset, t.items[i].numel);
    }
    if (k == 0) {
      fc->t_features = sd_h5_read_f32(f, "/full/t_features", NULL);
      fc->c = sd_h5_read_f32(f, "/full/c", NULL);
    }
  }
  sd_param_table_free(&t);
}
