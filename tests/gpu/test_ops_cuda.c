// Every op of sd_ops on the CUDA backend against the CPU backend (ggml test-backend-ops style),
// through the op checks of src/device/op_checks.c: canary-filled outputs, guard regions, unchanged
// inputs, the nmse limits of kernels/tolerances_gpu.h, in fp32 and in bf16 matmul precision, then
// the whole list again on the GPU for the same bits (determinism). Shapes: DiT-S-like (B 2,
// T 256, D 384, NH 6), odd tails (T 37, D 72, one head of 72 as in DiT-XL) and the tiny preset
// (head dim 16). `sddit selftest` runs the same checks at a model's own shapes.
//
// Output, one line per compared tensor:
//   op NAME prec P nmse X limit Y ok|FAIL worst_index i got g want w
// NAME = op[+variant]@shape.buffer (":change" = the change of an accumulating output alone);
// also "guard", "input-changed", "unwritten" and "determinism" lines on failure / per check.
//
// Usage: test_ops_cuda [--op SUBSTRING] [--seed N] [--prec fp32|bf16]
//                      [--simulate matmul|matmul+attention]
// Exits 77 (skip) when the build has no CUDA backend or no device is visible. --simulate runs
// everything against the CPU stand-in of gpu_check.h instead (for the harness itself and the
// bf16 limits). The seed is printed; SD_GPU_TEST_SEED sets it too. Before the checks, the CUDA
// files' own self-tests (sd_cuda_*_selftest) run when the build has them ("unit" lines).
#include "device/gpu_check.h"
#include "device/op_checks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  const char *sim = NULL;
  sd_opcheck_opts o = {.determinism = 1, .transfers = 1, .verbose = 1};
  int have_seed = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--op") && i + 1 < argc) o.filter = argv[++i];
    else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
      o.seed = strtoull(argv[++i], NULL, 0), have_seed = 1;
    else if (!strcmp(argv[i], "--prec") && i + 1 < argc)
      o.only_prec = argv[++i];
    else if (!strcmp(argv[i], "--simulate") && i + 1 < argc) sim = argv[++i];
    else {
      fprintf(stderr, "usage: test_ops_cuda [--op SUBSTRING] [--seed N] [--prec fp32|bf16] "
                      "[--simulate matmul|matmul+attention]\n");
      return 2;
    }
  }
  if (!have_seed) {
    const char *e = getenv("SD_GPU_TEST_SEED");
    o.seed = e ? strtoull(e, NULL, 0) : (uint64_t)time(NULL) * 1000003u ^ (uint64_t)getpid();
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  sd_backend gpu, cpu;
  sd_gpu_open_or_skip(&gpu, sim, "test_ops_cuda");
  sd_backend_cpu_init(&cpu, 0);
  printf("seed %llu (SD_GPU_TEST_SEED=%llu reproduces it)\n", (unsigned long long)o.seed,
         (unsigned long long)o.seed);
  sd_opcheck_add_test_shapes(NULL);
  sd_opcheck_add_optim_memory();
  sd_opcheck_uncovered();
  printf("%d checks over %d ops (+ alloc, free, to_device, to_host, sync), 2 precisions\n",
         sd_opcheck_count(), sd_opcheck_op_count());
  if (!sd_gpu_is_sim(&gpu) && !o.filter) sd_opcheck_run_unit_selftests(&gpu);
  sd_opcheck_run(&gpu, &cpu, &o);
  sd_opcheck_clear();
  sd_backend_cpu_destroy(&cpu);
  sd_gpu_close(&gpu);
  int passed, failed;
  sd_opcheck_totals(&passed, &failed);
  printf("test_ops_cuda: %d checks passed, %d failed\n", passed, failed);
  return failed ? 1 : (passed ? 0 : 1);  // a run that checked nothing fails
}
