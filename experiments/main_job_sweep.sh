#!/usr/bin/env bash
# What decides the main job's quality: the digits run of launch/quickstart.sh (2 ranks, 2500
# steps, batch 64) trained under several learning-rate schedules, then sampled from the
# generation EMA and from the raw weights at several guidance scales and scored by
# data-prep/eval_digits.py (3 classifiers, FD in classifier features and in pixels, each
# against its real-vs-real floor). One line per (setting, weights, guidance).
#   experiments/main_job_sweep.sh [OUT_DIR]        (default runs/main-job-sweep; ~45 min on 2 cores)
#   SWEEP_SETTINGS="name:overrides;..." SWEEP_GUIDANCE="1 1.5" SWEEP_PER_CLASS=30 to change it
# Finished trainings are skipped (--resume auto finds their last checkpoint), so a second
# sitting only samples and scores.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/main-job-sweep}
build=${SDDIT_BUILD_DIR:-build}
per=${SWEEP_PER_CLASS:-30}
guides=${SWEEP_GUIDANCE:-1 1.1 1.5 2 2.5}
# name:overrides (space-separated); the first is the main job as it was before the schedule
settings=${SWEEP_SETTINGS:-"const3e-4:--optim.lr=3e-4 --optim.lr_schedule=constant --optim.warmup_steps=0 --optim.ema_decay=0.999;cos3e-4:--optim.lr=3e-4 --optim.warmup_steps=100 --optim.ema_decay=0.999;cos6e-4:--optim.lr=6e-4 --optim.warmup_steps=100 --optim.ema_decay=0.999;cos1e-3:--optim.lr=1e-3 --optim.warmup_steps=200 --optim.ema_decay=0.999;cos2e-3:--optim.lr=2e-3 --optim.warmup_steps=200 --optim.ema_decay=0.999"}
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1} OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
[ -x "$build/src/sddit" ] || { echo "main_job_sweep: no $build/src/sddit (build first)" >&2; exit 1; }
[ -f data/digits.h5 ] || /usr/bin/python3 data-prep/digits.py --out data/digits.h5
mkdir -p "$out"
printf '%-10s %-4s %-5s %s\n' setting wts g "classifiers (mlp, svc, knn) | goal | lowest accuracy, FD / floor, pixel FD / floor"
IFS=';' read -ra list <<< "$settings"
for item in "${list[@]}"; do
  name=${item%%:*}; over=${item#*:}
  run="$out/$name"
  # shellcheck disable=SC2086
  SDDIT_BIN="$build/src/sddit" launch/sddit-mpirun -n 2 --cpu -- train --config launch/configs/digits.ini \
    --train.out_dir="$run" --resume auto --log.preview_every=0 $over > "$run.train.log" 2>&1 \
    || { echo "main_job_sweep: training $name failed: $(tail -2 "$run.train.log")" >&2; exit 1; }
  for w in ema raw; do
    for g in $guides; do
      s="$run/samples-$w-g$g.h5"
      [ -f "$s" ] || OMP_NUM_THREADS=2 "$build/src/sddit" sample --checkpoint "$run/checkpoints" \
        --weights "$w" --per-class "$per" --guidance "$g" --out "$s" > /dev/null
      r=$(/usr/bin/python3 data-prep/eval_digits.py --real data/digits.h5 --samples "$s" --out "$run/eval-$w-g$g")
      acc=$(echo "$r" | sed -n 's/.*accuracy by classifier (held-out real in brackets): //p' | sed 's/ ([0-9.]*%)//g')
      goal=$(echo "$r" | sed -n 's/.*their floor): //p')
      printf '%-10s %-4s %-5s %s | %s\n' "$name" "$w" "$g" "$acc" "$goal"
    done
  done
done
