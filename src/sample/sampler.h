// The EDM sampler (Karras et al. 2022, Algorithm 1 with deterministic steps) over an abstract
// denoiser D(x; sigma, y), with classifier-free guidance. Host memory throughout: the sampler
// knows nothing of the network, so tests drive it with closed-form denoisers and the CLI with
// the DiT (denoiser.h).
#ifndef SD_SAMPLER_H
#define SD_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

// D_out (B, n) = D(x (B, n); sigma (B), y (B)). Rows are independent samples; the sampler
// passes up to 2B rows in one call (conditional rows, then null-class rows).
typedef void (*sd_denoise_fn)(void *ctx, const float *x, const float *sigma, const int32_t *y,
                              int B, float *D_out);

typedef struct sd_sampler_opts {
  int steps;          // N >= 1 (40): sigma_0 .. sigma_{N-1} > 0, sigma_N = 0
  float smin, smax;   // 0.002, 80
  float rho;          // 7
  int heun;           // 1: Heun (second-order correction except on the last step); 0: Euler
  float guidance;     // s (1.5): D = D_u + s (D_c - D_u); s == 1: the conditional model only
  int null_class;     // the label of the unconditional row (num_classes)
  size_t elements;    // n = C * H * W per sample
} sd_sampler_opts;

// The defaults above for a model with num_classes classes and n elements per sample.
void sd_sampler_opts_default(sd_sampler_opts *o, int num_classes, size_t n);

// sig (N+1): sig[i] = (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho for
// i < N, computed in double and stored as float; sig[N] = 0. N == 1 gives sig[0] = smax.
void sd_edm_sigmas(int N, float smin, float smax, float rho, float *sig);

// EDM preconditioning of one noise level sigma > 0 (Karras et al. 2022, table 1), in double and
// rounded to float: c_skip, c_out, c_in, c_noise = ln(sigma)/4, and the loss weight
// (sigma^2 + sigma_data^2) / (sigma sigma_data)^2. The training objective and the sampler's
// denoiser both take it from here, so D is formed the same way in both.
typedef struct sd_edm_coef {
  float c_skip, c_out, c_in, c_noise, weight;
} sd_edm_coef;
sd_edm_coef sd_edm_precondition(double sigma, double sigma_data);

// Network evaluations (rows through the denoiser) per sample: (2N - 1) for Heun, N for Euler,
// twice that with guidance != 1.
long sd_edm_evaluations(const sd_sampler_opts *o);

// x_out (B, n) = the sampler's result from x = noise * sigma_0 for labels y (B). noise (B, n)
// is standard normal. The state is kept in double; the denoiser sees it rounded to float.
// Deterministic: the same inputs give bitwise the same output. Fatal on bad options; a
// non-finite denoiser output is passed through (callers count non-finite samples).
void sd_edm_sample(const sd_sampler_opts *o, sd_denoise_fn fn, void *ctx, int B,
                   const int32_t *y, const float *noise, float *x_out);

// Checks the options; returns 0, or -1 with a message naming the option.
int sd_sampler_opts_check(const sd_sampler_opts *o, char *err, size_t errlen);

#endif
