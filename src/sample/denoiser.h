// The EDM denoiser of a trained model: D(x; sigma, y) = c_skip x + c_out F(c_in x; c_noise, y)
// with F the DiT (sd_dit, all tokens, no mask, no teacher) on a backend. The preconditioning
// scalars are the training objective's (sddit.c `precondition`: the same double expressions
// rounded to float) and D is formed by the same op (edm_loss_fwd) as in training, so the
// denoiser equals the student's D of a training step with mask_ratio 0 (tests/test_sampler.c
// checks it bitwise).
//
// Weights come from a checkpoint: its "config" attribute gives the model, /ema (the
// generation EMA, the default for sampling) or the first dit_total floats of /student/params
// (the raw student) give the DiT parameters.
#ifndef SD_DENOISER_H
#define SD_DENOISER_H

#include "config/config.h"
#include "model/dit.h"

#include <stddef.h>
#include <stdint.h>

// A checkpoint's DiT weights and configuration, in host memory.
typedef struct sd_dn_weights {
  char path[1024];      // the checkpoint file
  char *config_text;    // its "config" attribute (malloc'ed)
  sd_config cfg;        // parsed
  long step;            // its "step" attribute (optimizer steps trained)
  int raw;              // 1: /student/params, 0: /ema
  float *params;        // (count) malloc'ed
  size_t count;         // DiT parameters (= the config's DiT parameter table total)
} sd_dn_weights;

// Parses INI text (a checkpoint's "config") into c, starting from the defaults: the same
// parser as `sddit train --config`. Returns 0, or -1 with a message.
int sd_config_from_text(sd_config *c, const char *text, char *err, size_t errlen);

// Verifies the checkpoint (sd_ckpt_verify: format, every checksum), parses its config, checks
// that its tensor table starts with this build's DiT table for that config, and reads the
// weights (raw = 0: /ema, 1: the DiT part of /student/params). Returns 0, or -1 with a message
// that names the file. Never exits.
int sd_dn_weights_read(sd_dn_weights *w, const char *path, int raw, char *err, size_t errlen);
void sd_dn_weights_free(sd_dn_weights *w);

typedef struct sd_denoiser {
  sd_backend *be;
  sd_dit_config cfg;
  double sigma_data;
  int cap;               // samples per network pass (chunks of the caller's batch)
  size_t n;              // elements per sample C*H*W
  sd_dit dit;
  sd_dit_acts acts;
  float *params;         // (table total) backend memory, owned
  float *x, *xin, *D;    // (cap, n) backend memory
  float *coef;           // (5, cap) backend: c_skip, c_out, c_in, c_noise, weight (zeros)
  int32_t *y;            // (cap) backend
  float *loss;           // (1) backend scratch
  float *host_coef;      // (5, cap) host
  long rows;             // rows evaluated so far (network evaluations)
} sd_denoiser;

// Floats of activations one sample needs for a forward at full token count (an estimate of
// sd_dit_acts per sample, for choosing a chunk capacity).
size_t sd_denoiser_floats_per_sample(const sd_dit_config *cfg);

// Builds the denoiser on be for a DiT shape with host parameters (the table total floats) and
// a chunk capacity. Fatal on a shape the EDM denoiser cannot use (out_channels != in_channels).
void sd_denoiser_create(sd_denoiser *d, const sd_dit_config *cfg, double sigma_data,
                        const float *params_host, int capacity, sd_backend *be);
void sd_denoiser_destroy(sd_denoiser *d);

// D_out (B, n) = D(x (B, n); sigma (B), y (B)), host memory, in chunks of d->cap. Labels in
// [0, num_classes] (num_classes = null) and positive finite sigmas, else fatal.
void sd_denoiser_eval(sd_denoiser *d, const float *x, const float *sigma, const int32_t *y,
                      int B, float *D_out);

// sd_denoise_fn adapter: ctx is an sd_denoiser.
void sd_denoiser_fn(void *ctx, const float *x, const float *sigma, const int32_t *y, int B,
                    float *D_out);

#endif
