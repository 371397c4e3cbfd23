#!/usr/bin/env bash
# The main job on one machine: prepares the embedded digits dataset (data/digits.h5) if it is
# missing, builds sddit if ./build has no binary, trains SD-DiT on the digits on the CPU
# (launch/configs/digits.ini: a few minutes on 2 cores) as data-parallel MPI ranks through
# launch/sddit-mpirun (2 ranks when the machine has >= 2 cores, else 1; each rank computes
# 1/ranks of every global batch with cores/ranks OpenMP threads) and says where everything went.
# Run it again to continue from the newest checkpoint (--resume auto is always passed);
# Ctrl-C once makes the ranks checkpoint at the next step and stop, twice aborts.
# Usage: launch/quickstart.sh [sddit train options, e.g. --train.steps=500]
#   QUICKSTART_RANKS=N   run N ranks instead (N = 1: a single process; more than the cores is
#                        allowed and runs oversubscribed, slower)
#   OMP_NUM_THREADS=T    threads per rank (default cores / ranks)
#   SDDIT_BUILD_DIR=DIR  the build directory (default build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${SDDIT_BUILD_DIR:-build}
config=launch/configs/digits.ini
data=data/digits.h5

cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || echo 1)
if [ -n "${QUICKSTART_RANKS:-}" ]; then
  ranks=$QUICKSTART_RANKS
  if ! [[ "$ranks" =~ ^[0-9]+$ ]] || [ "$ranks" -lt 1 ]; then
    echo "quickstart: QUICKSTART_RANKS must be a positive number, not '$ranks'" >&2
    exit 2
  fi
elif [ "$cores" -ge 2 ]; then
  ranks=2
else
  ranks=1
fi

if [ ! -x "$build/src/sddit" ]; then
  echo "quickstart: building into $build/"
  [ -f "$build/build.ninja" ] || meson setup "$build"
  ninja -C "$build"
fi
if [ ! -f "$data" ]; then
  echo "quickstart: preparing $data from scikit-learn's bundled digits"
  /usr/bin/python3 data-prep/digits.py --out "$data"
fi
"$build/src/sddit" inspect "$data" | tail -1
echo "quickstart: training on $ranks rank(s) ($cores cores)"
run_sddit() {  # run_sddit ARGS...: sddit on the chosen ranks
  if [ "$ranks" -eq 1 ] && ! command -v "${MPIRUN:-mpirun}" >/dev/null 2>&1; then
    # One rank needs no MPI runtime: the binary runs as a world of one without a launcher.
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-$cores} "$build/src/sddit" "$@"
  else
    SDDIT_BIN="$build/src/sddit" launch/sddit-mpirun -n "$ranks" --cpu -- "$@"
  fi
}
run_sddit train --config "$config" --resume auto "$@"
out_dir=$(sed -n 's/^out_dir = //p' "$config")
for a in "$@"; do case "$a" in --train.out_dir=*) out_dir=${a#--train.out_dir=} ;; esac; done

# Sample every class from the generation EMA and measure the samples against the real digits:
# three independent classifiers (MLP, SVC, 5-NN) and Frechet distances in classifier features
# and in pixels, each against the real-vs-real floor; the last line says whether the goal
# (every classifier >= 95%, both FDs <= 2x their floor) is met. Guidance 1.1 is near the best
# trade of class accuracy against diversity for this schedule (experiments/RESULTS-digits.md).
guidance=${QUICKSTART_GUIDANCE:-1.1}
echo "quickstart: sampling 50 digits per class (EDM Heun, 40 steps, guidance $guidance)"
run_sddit sample --checkpoint "$out_dir/checkpoints" --per-class 50 --guidance "$guidance" \
  --out "$out_dir/samples.h5"
/usr/bin/python3 data-prep/eval_digits.py --real "$data" --samples "$out_dir/samples.h5" \
  --out "$out_dir/eval"
echo
echo "quickstart: done ($ranks rank(s)). The run is in $out_dir/:"
echo "  config.ini          the effective configuration (sddit train --config $out_dir/config.ini repeats it)"
echo "  metrics.jsonl       one JSON line per progress line (losses, grad norm, lr, img/s)"
echo "  progress/           samples-<step>.png (a grid every 500 steps) and loss.png"
echo "  checkpoints/        the newest checkpoints (sddit inspect $out_dir/checkpoints/ckpt-*.h5)"
echo "  samples.h5          500 generated digits with their classes (sddit sample)"
echo "  eval/samples_grid.png  the samples, one row per class"
echo "  eval/metrics.json   class accuracy (3 classifiers), Frechet distances, the goal (data-prep/eval_digits.py)"
echo "Another seed: launch/quickstart.sh --train.seed=1 --train.out_dir=runs/digits-s1. A longer run"
echo "starts afresh (the cosine learning rate spans train.steps), e.g. --train.steps=5000 --train.out_dir=runs/digits-5k."
