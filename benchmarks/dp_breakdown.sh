#!/usr/bin/env bash
# Per-step time breakdown of data-parallel training at several rank counts: data wait,
# compute, exposed communication (the all-reduce the backward did not hide), optimizer, and
# the total communication time, averaged over the progress intervals after the first.
# Usage: benchmarks/dp_breakdown.sh [CONFIG] [STEPS] [RANKS...]
#   defaults: launch/configs/digits.ini 400 1 2 4   (needs data/digits.h5: data-prep/digits.py)
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-launch/configs/digits.ini}; steps=${2:-400}; shift $(( $# > 2 ? 2 : $# )) || true
ranks=("$@"); [ ${#ranks[@]} -gt 0 ] || ranks=(1 2 4)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sd_dp_breakdown.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
printf "# %s, %s steps, %s CPUs, %s\n" "$config" "$steps" "$(nproc)" "$(date -u +%Y-%m-%d)"
printf "%5s %9s %8s %10s %9s %9s %10s %10s\n" ranks img_per_s data_ms compute_ms comm_exp opt_ms comm_total exposed_%
for n in "${ranks[@]}"; do
  launch/sddit-mpirun -n "$n" -- train --config "$config" --train.steps="$steps" \
    --train.log_every=50 --ckpt.every=0 --train.out_dir="$tmp/r$n" >"$tmp/r$n.log" 2>&1 ||
    { echo "run with $n ranks failed:"; tail -5 "$tmp/r$n.log"; exit 1; }
  /usr/bin/python3 - "$tmp/r$n/metrics.jsonl" "$n" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])][1:]  # skip the first interval (warm-up)
avg = lambda k: sum(r[k] for r in rows) / len(rows)
step = avg("ms_data") + avg("ms_compute") + avg("ms_comm_exposed") + avg("ms_optim")
print(f"{sys.argv[2]:>5} {avg('img_per_s'):9.1f} {avg('ms_data'):8.2f} {avg('ms_compute'):10.1f} "
      f"{avg('ms_comm_exposed'):9.2f} {avg('ms_optim'):9.2f} {avg('ms_comm_total'):10.2f} "
      f"{100 * avg('ms_comm_exposed') / step:10.1f}")
PY
done
