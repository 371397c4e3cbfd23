// DiT initialisation: zeros where adaLN-Zero and DiT put them, xavier-uniform bounds and
// variance on linears, N(0, 0.02) on the label table and t-MLP; reproducible from the seed.
#include "check.h"
#include "model/dit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
  sd_backend be;
  sd_backend_cpu_init(&be, 0);
  sd_dit_config cfg;
  sd_dit_config_preset(&cfg, "S/2");
  cfg.depth = 2;
  sd_dit m;
  sd_dit_create(&m, &cfg, &be);
  sd_dit_init_weights(&m, 1);
  for (int i = 0; i < m.table.count; i++) {
    const sd_param_info *p = &m.table.items[i];
    const float *v = m.params + p->offset;
    double s = 0, s2 = 0, mx = 0;
    for (size_t k = 0; k < p->numel; k++) {
      s += v[k];
      s2 += (double)v[k] * v[k];
      mx = fmax(mx, fabs(v[k]));
    }
    double mean = s / p->numel, var = s2 / p->numel - mean * mean;
    int is_zero = strstr(p->name, ".bias") || strstr(p->name, "adaLN_modulation") ||
                  strncmp(p->name, "final_layer.linear", 18) == 0;
    int is_normal = strstr(p->name, "y_embedder") || strstr(p->name, "t_embedder.mlp");
    if (is_zero) {
      check_true(mx == 0.0, "%-40s all zero (max |v| %.3g)", p->name, mx);
    } else if (is_normal) {
      double se = 0.02 * 0.02 * sqrt(2.0 / p->numel) * 6;
      check_true(fabs(var - 0.0004) < se, "%-40s std %.5f (want 0.02)", p->name, sqrt(var));
    } else {
      double fan_out = p->shape[0], fan_in = (double)p->numel / p->shape[0];
      double bound = sqrt(6.0 / (fan_in + fan_out)), want = bound * bound / 3;
      check_true(mx <= bound && fabs(var - want) < want * 6 * sqrt(0.8 / p->numel),
                 "%-40s xavier: max %.5f <= %.5f, var %.3g (want %.3g)", p->name, mx, bound,
                 var, want);
    }
  }
  float *first = malloc(sizeof(float) * m.table.total);
  memcpy(first, m.params, sizeof(float) * m.table.total);
  sd_dit_init_weights(&m, 1);
  check_bitwise("same seed gives the same weights", first, m.params,
                sizeof(float) * m.table.total);
  sd_dit_init_weights(&m, 2);
  check_true(memcmp(first, m.params, sizeof(float) * m.table.total) != 0,
             "a different seed gives different weights");
  free(first);
  sd_dit_destroy(&m);
  return check_exit("test_init");
}
