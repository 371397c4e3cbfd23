// The whole run configuration: defaults per model preset, INI files (read with inih),
// command-line overrides (--section.key=value), cross-key validation, and printing the
// effective configuration back as an INI file that loads to the same struct.
#ifndef SD_CONFIG_H
#define SD_CONFIG_H

#include "model/dit_config.h"

#include <stddef.h>
#include <stdio.h>

// Longest string value (data.path, train.out_dir, ...): a printed "key = value" line must fit
// inih's 200-byte line buffer, or the printed file would not load back.
#define SD_CONFIG_MAX_STRING 180

typedef struct sd_config {
  sd_dit_config model;  // [model] keys handled by sd_dit_config_set (preset first)
  // [model] extra keys. Their defaults follow model.preset; setting depth, hidden or heads
  // alone does not move them (validation names the key to change).
  int encoder_depth;   // default: depth - decoder_depth
  int decoder_depth;   // default: 2 for hidden < 1024 (S, B), 4 for L and XL; tiny: 1
  int decoder_hidden;  // must equal hidden (other widths are not supported yet)
  int decoder_heads;   // must equal heads (same)
  // [sddit]
  float mask_ratio;             // 0.2, in [0, 1); visible tokens = floor(T * (1 - ratio))
  char teacher_sigma_mode[16];  // "fixed" (default) or "log_uniform"
  float teacher_sigma;          // 0.002 (> 0)
  float lambda_dis;             // 1.0 (>= 0)
  int head_hidden, head_bottleneck, head_prototypes;  // 2048, 256, 8192; tiny: 64, 16, 32
  float tau_s;                                        // 0.1
  float tau_t_start, tau_t_end;                       // 0.04, 0.07
  int teacher_temp_warmup;                            // steps, 1000 (>= 0)
  float center_momentum;                              // 0.9, in [0, 1]
  float teacher_momentum;                             // 0.996, in [0, 1]
  char gen_loss_tokens[16];                           // "all" (default) or "visible"
  // [diffusion]
  float sigma_data, p_mean, p_std, sigma_min, sigma_max, label_dropout;  // 0.5, -1.2, 1.2,
                                                                         // 0.002, 80, 0.1
  // [optim]: 1e-4, 0.9, 0.999, 1e-8, 0, 0 (no clipping), 0.9999
  float lr, beta1, beta2, eps, weight_decay, grad_clip, ema_decay;
  long warmup_steps;        // linear learning-rate warm-up over the first steps (0: none)
  char lr_schedule[16];     // after the warm-up: "constant" (default) or "cosine" (to lr_min
                            // at train.steps)
  float lr_min;             // the cosine schedule's final learning rate (0)
  // [data]
  char source[16];     // "synthetic" (default) or "hdf5"
  char path[512];      // HDF5 file (required when source = hdf5)
  int synthetic_size;  // samples in the synthetic source, 1024
  int hflip;           // keyed random horizontal flips (false; no use for digits)
  int in_memory;       // read the whole dataset into memory at start (false)
  int prefetch;        // batches read ahead by the loader thread (2; 0 = read in the step)
  char validate[8];    // "full": scan every latent for non-finite values at start (default);
                       // "quick": check each batch as it is read
  // [train]
  long steps;               // 1000
  int global_batch;         // 256 (tiny: 16)
  unsigned long long seed;  // 0
  int log_every;            // 10
  int threads;              // 0 = OpenMP default
  char out_dir[512];        // "runs/default"
  char metrics[512];        // "" = <out_dir>/metrics.jsonl
  int max_bad_steps;        // 10: non-finite steps in a row before the run stops
  char backend[8];          // "cpu" (default) or "cuda" (one GPU per rank, by local rank)
  char precision[8];        // cuda matmul inputs: "bf16" (default; fp32 accumulation) or "fp32"
  int selftest;             // cuda: check every op at this model's shapes against the CPU
                            // before training (true; sddit selftest --quick)
  int accum_steps;          // gradient accumulation: each step's global batch in this many
                            // micro-batches per rank (1; memory of one micro-batch)
  long stop_at;             // 0 (off): end this run after that step with a checkpoint, as a
                            // preempted job would; --resume auto continues the same schedule
  // [dist]
  float dist_timeout;       // seconds a collective or a silent rank may take before the job
                            // ends with a message naming it (300; 0 = no watchdog)
  int teacher_sync_every;   // rank 0 broadcasts the teacher EMA every so many steps (1)
  int overlap;              // gradient all-reduce overlapped with the backward (true)
  char grad_dtype[8];       // gradient all-reduce in "fp32" (default) or "bf16" (half the
                            // bytes; each rank's contribution and partial sums rounded to bf16)
  int check_replicas;       // compare weights across ranks after every step (false; tests)
  // [ckpt]
  char ckpt_dir[512];       // "" = <out_dir>/checkpoints
  long ckpt_every;          // steps between checkpoints (1000; 0 = only at the end)
  int ckpt_keep;            // newest checkpoints kept (3; 0 = all)
  char resume[512];         // "none" (default), "auto" (newest that verifies) or a file
  // [log]: progress previews, rank 0, every preview_every steps (0 = off) and at the end:
  // <out_dir>/progress/samples-<step>.png (the generation EMA sampled for preview_classes
  // classes x preview_per_class, preview_steps Heun steps, guidance preview_guidance, the
  // same noise every time) and <out_dir>/progress/loss.png (the losses so far)
  long preview_every;       // 0
  int preview_classes;      // 10 (at most model.num_classes; spread evenly over them)
  int preview_per_class;    // 8
  int preview_steps;        // 18
  float preview_guidance;   // 1.5
} sd_config;

// Every default for a model preset (NULL = "S/2"). An unknown preset is a fatal error: pass
// names from the user through sd_config_set(c, "model", "preset", ...) instead.
void sd_config_defaults(sd_config *c, const char *preset);

// Applies an INI file on top of c. Sections: model, sddit, diffusion, optim, data, train, dist,
// ckpt, and log (reserved, no keys yet). [model] preset is applied before the other keys
// wherever it appears. A key given twice is an error. Returns 0, or -1 with
// "file:line: section.key: ..." in err; c is unchanged on error.
int sd_config_load_ini(sd_config *c, const char *path, char *err, size_t errlen);

// The same for INI text in memory (e.g. the configuration stored in a checkpoint); name is used
// in messages in place of the file name.
int sd_config_load_ini_text(sd_config *c, const char *text, const char *name, char *err,
                            size_t errlen);

// Sets one key. model.preset resets the [model] section (model shape and encoder/decoder split)
// to that preset's defaults and leaves the other sections alone; "custom" keeps the current
// model. Returns 0, or -1 with "section.key: ..." in err; c is unchanged on error.
int sd_config_set(sd_config *c, const char *section, const char *key, const char *value,
                  char *err, size_t errlen);

// Applies one "--section.key=value" argument. Returns 0, or -1 with a message.
int sd_config_apply_override(sd_config *c, const char *arg, char *err, size_t errlen);

// Checks every key's range and the keys against each other. Returns 0, or -1 with a message
// naming the keys.
int sd_config_validate(const sd_config *c, char *err, size_t errlen);

// Writes the effective configuration as an INI file: every key, every section.
void sd_config_print(const sd_config *c, FILE *f);

// The same as malloc'ed text (the caller frees it).
char *sd_config_print_text(const sd_config *c);

// Tokens the student sees per image: floor(T * (1 - mask_ratio)), T = sd_dit_tokens.
int sd_config_visible_tokens(const sd_config *c);

#endif
