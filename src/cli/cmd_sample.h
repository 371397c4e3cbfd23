// `sddit sample` (EDM sampling from a checkpoint, on every rank of an MPI job) and
// `sddit denoise` (one evaluation of the denoiser on given inputs).
//
// sample output (HDF5, written to OUT.tmp then renamed), format "sddit-samples" version 1:
//   /samples (N, C, H, W) float32 in the model's data space (scaled latents)
//   /labels  (N) int32 class of each sample (num_classes = the null class)
//   /noise   (N, C, H, W) float32 standard-normal start noise (only with --save-noise)
//   root attributes: format, format_version, sampler, steps, guidance, seed, weights,
//   checkpoint, train_step, num_classes, sigma_min, sigma_max, rho, evaluations_per_sample,
//   sigma_data, config (the checkpoint's configuration text), and image_size,
//   latent_channels, scale_factor, encoder copied from the training data file when the
//   configuration's data.path is an HDF5 dataset that can be read.
// Sample i's noise is the stream (seed, SD_RNG_SAMPLE, step 0, index i) and its random class
// (--num) element 0 of (seed, SD_RNG_SAMPLE, step 1, index i); batches of --batch samples are
// the same on any number of ranks, so the output is bitwise the same on any world size (with
// the same thread count per rank).
//
// denoise: IN has /x (B, C, H, W), /sigma (B) and /labels (B) int; OUT gets /D (B, C, H, W)
// float32 (format "sddit-denoised" version 1, attributes checkpoint, weights, train_step).
#ifndef SD_CMD_SAMPLE_H
#define SD_CMD_SAMPLE_H

int sd_cmd_sample(int argc, char **argv);
int sd_cmd_denoise(int argc, char **argv);

#endif
