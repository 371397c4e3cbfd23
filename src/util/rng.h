// Keyed counter-based randomness (Philox4x32-10). Every random number in training is a pure
// function of (seed, purpose, step, index, element), so runs on any world size, resumed runs,
// and the CPU and CUDA backends see the same numbers.
#ifndef SD_RNG_H
#define SD_RNG_H

#include <stddef.h>
#include <stdint.h>

// What a stream of random numbers is for; part of the key so streams never overlap.
typedef enum sd_rng_purpose {
  SD_RNG_INIT = 1,        // parameter initialisation (index = tensor number)
  SD_RNG_NOISE = 2,       // eps of the diffusion pair
  SD_RNG_SIGMA_S = 3,     // student noise level
  SD_RNG_SIGMA_T = 4,     // teacher noise level
  SD_RNG_MASK = 5,        // visible-token sets
  SD_RNG_LABEL_DROP = 6,  // classifier-free-guidance label dropout
  SD_RNG_FLIP = 7,        // horizontal flips
  SD_RNG_PERMUTE = 8,     // epoch permutation of the dataset
  SD_RNG_SYNTHETIC = 9,   // synthetic data source
  SD_RNG_SAMPLE = 10,     // sampler starting noise
  SD_RNG_MOMENTS = 11,    // sampling latents from stored VAE moments
  SD_RNG_SELFTEST = 12,   // sddit selftest's inputs and parameter noise
  SD_RNG_TEST = 99        // tests
} sd_rng_purpose;

// The Philox4x32-10 bijection (Salmon et al., SC'11): out = philox(ctr, key).
void sd_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

// Four raw 32-bit words of block `block` of the stream (seed, purpose, step, index).
void sd_rng_block(uint64_t seed, uint32_t purpose, uint32_t step, uint32_t index,
                  uint32_t block, uint32_t out[4]);

// n uniforms in (0, 1) / standard normals: elements offset .. offset+n-1 of the stream.
// Element e comes from block e/4, lane e%4 (normals: Box-Muller on lanes (0,1), (2,3)).
void sd_rng_uniform(uint64_t seed, uint32_t purpose, uint32_t step, uint32_t index,
                    uint32_t offset, size_t n, float *out);
void sd_rng_normal(uint64_t seed, uint32_t purpose, uint32_t step, uint32_t index,
                   uint32_t offset, size_t n, float *out);

// One uniform 32-bit integer in [0, bound) (bound > 0), element e of the stream.
uint32_t sd_rng_below(uint64_t seed, uint32_t purpose, uint32_t step, uint32_t index,
                      uint32_t e, uint32_t bound);

#endif
