#!/usr/bin/env bash
# Full SD-DiT training step on the CPU: sddit (benchmarks/throughput) beside PyTorch
# (benchmarks/pytorch_sddit_step.py: float32, same model, config, batch and threads),
# printed side by side with the ratio ours/pytorch. Usage:
#   benchmarks/sddit_vs_pytorch.sh [BUILD_DIR] [PRESET] [BATCH] [THREADS] [ITERS]
set -euo pipefail
build=${1:-build}; preset=${2:-S/2}; batch=${3:-8}; threads=${4:-2}; iters=${5:-3}
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3; [ -x "$py" ] || py=python3
ours=$(OMP_NUM_THREADS=$threads OMP_WAIT_POLICY=PASSIVE "$build/benchmarks/throughput" \
       --preset "$preset" --batch "$batch" --threads "$threads" --warmup 1 --iters "$iters" \
       | grep '^throughput ')
theirs=$(OMP_NUM_THREADS=$threads "$py" "$here/pytorch_sddit_step.py" --preset "$preset" \
       --batch "$batch" --threads "$threads" --warmup 1 --iters "$iters" --device cpu \
       | grep '^pytorch ')
get() { sed -n "s/.* $2=\([0-9.]*\).*/\1/p" <<<"$1"; }
printf "%-8s %-6s %5s %7s %10s %10s\n" impl preset batch threads img_per_s ms_step
printf "%-8s %-6s %5s %7s %10s %10s\n" sddit "$preset" "$batch" "$threads" \
  "$(get "$ours" img_per_s)" "$(get "$ours" ms_step)"
printf "%-8s %-6s %5s %7s %10s %10s\n" pytorch "$preset" "$batch" "$threads" \
  "$(get "$theirs" img_per_s)" "$(get "$theirs" ms_step)"
awk -v a="$(get "$ours" img_per_s)" -v b="$(get "$theirs" img_per_s)" \
  'BEGIN { printf "ratio ours/pytorch (img/s): %.2fx (target >= 1.50x)\n", a / b }'
