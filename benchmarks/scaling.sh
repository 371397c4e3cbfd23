#!/usr/bin/env bash
# Measured data-parallel scaling of `sddit train`: strong scaling (fixed global batch) and weak
# scaling (fixed per-rank batch) over several rank counts, from each run's metrics.jsonl
# (averages over the progress intervals after the first). Prints one table; efficiency =
# img/s at N ranks / (N x img/s at the first rank count) for both kinds (strong: speedup / N;
# weak: throughput per rank against the smallest run). The model of the same step for H200
# clusters is benchmarks/scaling_model.py; results in benchmarks/RESULTS.md ("Scaling").
#
# Usage: benchmarks/scaling.sh [CONFIG] [STEPS] [RANKS...]
#   defaults: launch/configs/digits.ini 200 1 2 4   (digits needs data/digits.h5: data-prep/digits.py;
#             launch/configs/tiny.ini uses synthetic data)
# Environment:
#   GLOBAL_BATCH   strong scaling's global batch (default 64)
#   RANK_BATCH     weak scaling's batch per rank (default 16)
#   KINDS          "strong weak" (default), or one of them
#   LAUNCH         the launcher with {n} for the rank count (default: launch/sddit-mpirun -n {n} --);
#                  and {nodes} for ceil(n / TASKS_PER_NODE), e.g. 'srun --mpi=pmix
#                  --nodes={nodes} --ntasks={n} build/src/sddit' (slurm/scaling.sbatch)
#   TASKS_PER_NODE ranks per node for {nodes} (default 1)
#   OUT_DIR        keep the runs there (default: a temporary directory, deleted at the end)
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-launch/configs/digits.ini}; steps=${2:-200}; shift $(( $# > 2 ? 2 : $# )) || true
ranks=("$@"); [ ${#ranks[@]} -gt 0 ] || ranks=(1 2 4)
gb=${GLOBAL_BATCH:-64}; rb=${RANK_BATCH:-16}; kinds=${KINDS:-strong weak}
default_launch='launch/sddit-mpirun -n {n} --'
launch=${LAUNCH:-$default_launch}
[ -f "$config" ] || { echo "scaling.sh: no config $config" >&2; exit 2; }
if [ -n "${OUT_DIR:-}" ]; then tmp=$OUT_DIR; mkdir -p "$tmp"
else tmp=$(mktemp -d "${TMPDIR:-/tmp}/sd_scaling.XXXXXX"); trap 'rm -rf "$tmp"' EXIT; fi
log_every=$(( steps >= 100 ? 50 : (steps >= 20 ? steps / 4 : 5) ))

printf "# %s, %s steps, log every %s, %s CPUs, %s, launcher: %s\n" "$config" "$steps" \
  "$log_every" "$(nproc)" "$(date -u +%Y-%m-%d)" "$launch"
printf "%-6s %5s %12s %8s %9s %8s %8s %10s %9s %8s %10s\n" kind ranks global_batch per_rank \
  img_per_s step_ms data_ms compute_ms exposed opt_ms efficiency
for kind in $kinds; do
  base=""
  for n in "${ranks[@]}"; do
    case $kind in
      strong) g=$gb ;;
      weak) g=$(( rb * n )) ;;
      *) echo "scaling.sh: unknown kind '$kind' (strong, weak)" >&2; exit 2 ;;
    esac
    if (( g % n )); then echo "scaling.sh: global batch $g is not a multiple of $n ranks" >&2; exit 2; fi
    run="$tmp/$kind-r$n"
    tpn=${TASKS_PER_NODE:-1}; nodes=$(( (n + tpn - 1) / tpn ))
    cmd=${launch//\{n\}/$n}; cmd=${cmd//\{nodes\}/$nodes}
    # shellcheck disable=SC2086  # the launcher is split into words on purpose
    $cmd train --config "$config" --train.steps="$steps" --train.global_batch="$g" \
      --train.log_every="$log_every" --ckpt.every=0 --train.out_dir="$run" >"$run.log" 2>&1 ||
      { echo "scaling.sh: $kind run with $n ranks failed:" >&2; tail -5 "$run.log" >&2; exit 1; }
    [ -s "$run/metrics.jsonl" ] || { echo "scaling.sh: no $run/metrics.jsonl; log:" >&2; tail -5 "$run.log" >&2; exit 1; }
    line=$(/usr/bin/python3 - "$run/metrics.jsonl" "$kind" "$n" "$g" "${base:-0}" <<'PY'
import json, sys
path, kind, n, g, base = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
rows = [json.loads(l) for l in open(path) if l.strip()]
rows = [r for r in rows if "img_per_s" in r]
rows = rows[1:] if len(rows) > 1 else rows  # the first interval holds the warm-up
if not rows:
    sys.exit("no progress rows in " + path)
avg = lambda k: sum(r.get(k, 0.0) for r in rows) / len(rows)
ips = avg("img_per_s")
step = avg("ms_data") + avg("ms_compute") + avg("ms_comm_exposed") + avg("ms_optim")
b = base if base > 0 else ips / n  # img/s per rank of the first run
print(f"{ips / n:.6f}|{kind:<6} {n:5d} {g:12d} {g // n:8d} {ips:9.1f} {step:8.2f} {avg('ms_data'):8.2f} "
      f"{avg('ms_compute'):10.2f} {avg('ms_comm_exposed'):9.2f} {avg('ms_optim'):8.2f} {ips / (n * b):10.3f}")
PY
)
    [ -n "$base" ] || base=${line%%|*}
    echo "${line#*|}"
  done
done
