// DiT model shape: presets (tiny, S/2, B/2, L/2, XL/2, and any "<size>/<patch>") and keys.
#ifndef SD_DIT_CONFIG_H
#define SD_DIT_CONFIG_H

#include <stddef.h>

typedef struct sd_dit_config {
  char preset[16];   // name of the preset this started from ("custom" after edits)
  int input_size;    // latent side H = W
  int in_channels;   // C
  int patch;         // p
  int hidden;        // D
  int depth;         // number of blocks L
  int heads;         // NH
  int mlp_ratio;     // MLP width = mlp_ratio * D
  int num_classes;   // K; the label table has K + 1 rows (last = null class)
  int out_channels;  // Cout (4 for EDM; DiT's learned-sigma variant has 8)
  int freq_dim;      // timestep feature width (256)
  float max_period;  // timestep feature max period (10000)
  float ln_eps;      // layer-norm epsilon (1e-6)
} sd_dit_config;

// Fills cfg from a preset name. Returns 0, or -1 for an unknown name.
int sd_dit_config_preset(sd_dit_config *cfg, const char *name);
// Sets one key (input_size, in_channels, patch, hidden, depth, heads, mlp_ratio, num_classes,
// out_channels, freq_dim, max_period, ln_eps, preset). Returns 0, or -1 with a message.
int sd_dit_config_set(sd_dit_config *cfg, const char *key, const char *value, char *err,
                      size_t errlen);
// Checks consistency (divisibility, positivity). Returns 0, or -1 with a message.
int sd_dit_config_validate(const sd_dit_config *cfg, char *err, size_t errlen);
// Number of tokens T = (H/p)^2.
int sd_dit_tokens(const sd_dit_config *cfg);
// Analytic forward FLOPs per image with Tk tokens through the blocks (multiply-add = 2).
double sd_dit_forward_flops(const sd_dit_config *cfg, int Tk);
// Comma-separated list of preset names, for messages.
const char *sd_dit_preset_names(void);

#endif
