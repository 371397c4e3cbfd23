// The sddit command line: one binary with subcommands.
#include "cli/cmd_sample.h"
#include "cli/cmd_export.h"
#include "cli/cmd_selftest.h"
#include "model/dit.h"
#include "model/dit_config.h"
#include "model/dit_params.h"
#include "error.h"
#include "cli/inspect.h"
#include "sd_build_config.h"
#include "train/train.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
  fprintf(f,
          "usage: sddit <command> [options]\n"
          "\n"
          "commands:\n"
          "  train     train SD-DiT (sddit train --help)\n"
          "  sample    sample images (latents) from a checkpoint (sddit sample --help)\n"
          "  denoise   one evaluation of the denoiser D(x; sigma, y) (sddit denoise --help)\n"
          "  inspect   summarise and check a dataset or checkpoint (sddit inspect FILE...)\n"
          "  export    a checkpoint's DiT as safetensors (sddit export --help)\n"
          "  import    a checkpoint from DiT safetensors (sddit import --help)\n"
          "  selftest  check the GPU's ops against the CPU reference (sddit selftest --help)\n"
          "  params    print the DiT parameter table (names, shapes, counts)\n"
          "  version   print the version and build features\n"
          "  help      this text\n"
          "\n"
          "model options (any command that builds a model):\n"
          "  --model.preset=NAME     %s (default S/2)\n"
          "  --model.KEY=VALUE       input_size, in_channels, patch, hidden, depth, heads,\n"
          "                          mlp_ratio, num_classes, out_channels, freq_dim\n"
          "  --quiet                 params: print only the total\n",
          sd_dit_preset_names());
}

// Applies --model.key=value options in order; fatal on anything unknown.
static void parse_model_options(int argc, char **argv, sd_dit_config *cfg, int *quiet) {
  char err[256];
  if (sd_dit_config_preset(cfg, "S/2") != 0) SD_FATAL("built-in preset S/2 missing");
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--quiet") == 0) {
      *quiet = 1;
      continue;
    }
    if (strncmp(a, "--model.", 8) != 0 || !strchr(a, '='))
      SD_FATAL_HINT("run 'sddit help' for the options", "unknown option '%s'", a);
    char key[64];
    const char *eq = strchr(a, '=');
    size_t klen = (size_t)(eq - (a + 8));
    if (klen == 0 || klen >= sizeof key) SD_FATAL("bad option '%s'", a);
    memcpy(key, a + 8, klen);
    key[klen] = '\0';
    if (sd_dit_config_set(cfg, key, eq + 1, err, sizeof err) != 0) SD_FATAL("%s", err);
  }
  if (sd_dit_config_validate(cfg, err, sizeof err) != 0) SD_FATAL("%s", err);
}

static int cmd_params(int argc, char **argv) {
  sd_dit_config cfg;
  int quiet = 0;
  parse_model_options(argc, argv, &cfg, &quiet);
  sd_param_table t;
  sd_dit_param_table(&cfg, &t);
  if (!quiet) {
    printf("# model %s: input %d, channels %d->%d, patch %d, hidden %d, depth %d, heads %d, "
           "classes %d, tokens %d\n",
           cfg.preset, cfg.input_size, cfg.in_channels, cfg.out_channels, cfg.patch,
           cfg.hidden, cfg.depth, cfg.heads, cfg.num_classes, sd_dit_tokens(&cfg));
    printf("%-44s %-22s %12s\n", "name", "shape", "numel");
    for (int i = 0; i < t.count; i++) {
      char shape[64] = "(";
      for (int d = 0; d < t.items[i].ndim; d++) {
        char s[16];
        snprintf(s, sizeof s, d ? ", %d" : "%d", t.items[i].shape[d]);
        strncat(shape, s, sizeof shape - strlen(shape) - 1);
      }
      strncat(shape, ")", sizeof shape - strlen(shape) - 1);
      printf("%-44s %-22s %12zu\n", t.items[i].name, shape, t.items[i].numel);
    }
    printf("# forward GFLOP per image: %.3f\n", sd_dit_forward_flops(&cfg, sd_dit_tokens(&cfg)) * 1e-9);
  }
  printf("trainable parameters: %zu\n", t.total);
  sd_param_table_free(&t);
  return 0;
}

int main(int argc, char **argv) {
  // HDF5 1.10 can crash at exit while closing a file whose write failed (a full disk); every
  // file we open is closed explicitly, so the library's exit-time cleanup is not needed.
  H5dont_atexit();
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
    usage(stdout);
    return 0;
  }
  if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
    printf("sddit %s (cuda %s, nccl %s, blas %s)\n", SD_VERSION, SD_HAVE_CUDA ? "yes" : "no",
           SD_HAVE_NCCL ? "yes" : "no", SD_BLAS_NAME);
    return 0;
  }
  if (strcmp(cmd, "params") == 0) return cmd_params(argc, argv);
  if (strcmp(cmd, "train") == 0) return sd_cmd_train(argc, argv);
  if (strcmp(cmd, "inspect") == 0) return sd_cmd_inspect(argc, argv);
  if (strcmp(cmd, "export") == 0) return sd_cmd_export(argc, argv);
  if (strcmp(cmd, "import") == 0) return sd_cmd_import(argc, argv);
  if (strcmp(cmd, "sample") == 0) return sd_cmd_sample(argc, argv);
  if (strcmp(cmd, "denoise") == 0) return sd_cmd_denoise(argc, argv);
  if (strcmp(cmd, "selftest") == 0) return sd_cmd_selftest(argc, argv);
  fprintf(stderr, "sddit: unknown command '%s'\n\n", cmd);
  usage(stderr);
  return 2;
}
