// Draws one step's randomness from the keyed RNG: for each global sample index, the pair's
// noise eps, the student and teacher noise levels, the visible-token set and the label
// dropout. The same (seed, step, global index) gives the same numbers on any world size.
#ifndef SD_STEP_RANDOM_H
#define SD_STEP_RANDOM_H

#include <stdint.h>

typedef struct sd_random_opts {
  uint64_t seed;
  float p_mean, p_std;          // ln(sigma_s) ~ N(p_mean, p_std^2)
  int teacher_log_uniform;      // 0: sigma_t = teacher_sigma; 1: log-uniform in [sigma_min, sigma_s]
  float teacher_sigma, sigma_min;
  float label_dropout;          // probability of the null class
  int num_classes;              // null class = num_classes
  int tokens, visible_tokens;   // T, Tv
  int elements;                 // C*H*W per sample
} sd_random_opts;

// Fills host arrays for B samples with global indices first_index .. first_index+B-1:
// eps (B, n), sigma_s (B), sigma_t (B), vis (B, Tv) sorted, y (B) dropped in place.
void sd_step_random(const sd_random_opts *o, long step, long first_index, int B, float *eps,
                    float *sigma_s, float *sigma_t, int32_t *vis, int32_t *y);

#endif
