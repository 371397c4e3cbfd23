// Parameter counts of the DiT presets against the PyTorch reference's counts stored in the
// fixture (/param_counts), for our 4 output channels and DiT's learned-sigma 8.
#include "check.h"
#include "model/dit_params.h"
#include "fixture.h"
#include "util/h5io.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  char path[512];
  if (argc > 1) snprintf(path, sizeof path, "%s", argv[1]);
  else fixture_path("dit_tiny.h5", path, sizeof path);
  hid_t f = sd_h5_open_read(path);
  const char *presets[] = {"S/2", "B/2", "L/2", "XL/2"};
  const char *keys[] = {"S_2", "B_2", "L_2", "XL_2"};
  for (int i = 0; i < 4; i++)
    for (int oc = 4; oc <= 8; oc += 4) {
      sd_dit_config cfg;
      sd_dit_config_preset(&cfg, presets[i]);
      cfg.out_channels = oc;
      sd_param_table t;
      sd_dit_param_table(&cfg, &t);
      char attr[64];
      snprintf(attr, sizeof attr, "%s_out%d", keys[i], oc);
      long long want = sd_h5_attr_int(f, "/param_counts", attr);
      snprintf(attr, sizeof attr, "%s_out%d_with_pos", keys[i], oc);
      long long want_pos = sd_h5_attr_int(f, "/param_counts", attr);
      long long pos = (long long)sd_dit_tokens(&cfg) * cfg.hidden;
      check_true((long long)t.total == want,
                 "%-5s out_channels %d: %lld trainable (reference %lld); with pos_embed %lld "
                 "(reference %lld)", presets[i], oc, (long long)t.total, want,
                 (long long)t.total + pos, want_pos);
      check_true((long long)t.total + pos == want_pos, "%-5s out_channels %d: with pos_embed",
                 presets[i], oc);
      sd_param_table_free(&t);
    }
  H5Fclose(f);
  return check_exit("test_param_counts");
}
