#!/usr/bin/env bash
# DiT forward+backward on the CPU: sddit beside PyTorch (float32, same model, batch and
# threads), printed side by side with the ratio. Usage:
#   benchmarks/dit_step_vs_pytorch.sh [BUILD_DIR] [PRESET] [BATCH] [THREADS] [ITERS]
set -euo pipefail
build=${1:-build}; preset=${2:-S/2}; batch=${3:-8}; threads=${4:-2}; iters=${5:-5}
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3; [ -x "$py" ] || py=python3
ours=$(OMP_NUM_THREADS=$threads "$build/benchmarks/bench_dit_step" --preset "$preset" \
       --batch "$batch" --threads "$threads" --iters "$iters")
theirs=$(OMP_NUM_THREADS=$threads "$py" "$here/pytorch_dit_step.py" --preset "$preset" \
       --batch "$batch" --threads "$threads" --iters "$iters")
get() { sed -n "s/.* $2=\([0-9.]*\).*/\1/p" <<<"$1"; }
printf "%-8s %-6s %5s %7s %12s %10s %12s\n" impl preset batch threads ms_per_step img_per_s gflop_per_s
printf "%-8s %-6s %5s %7s %12s %10s %12s\n" sddit "$preset" "$batch" "$threads" \
  "$(get "$ours" ms_per_step)" "$(get "$ours" img_per_s)" "$(get "$ours" gflop_per_s)"
printf "%-8s %-6s %5s %7s %12s %10s %12s\n" pytorch "$preset" "$batch" "$threads" \
  "$(get "$theirs" ms_per_step)" "$(get "$theirs" img_per_s)" "$(get "$theirs" gflop_per_s)"
awk -v a="$(get "$ours" img_per_s)" -v b="$(get "$theirs" img_per_s)" \
  'BEGIN { printf "speedup (sddit img/s / pytorch img/s): %.2fx\n", a / b }'
