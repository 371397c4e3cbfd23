#!/usr/bin/env bash
# Data-parallel training under mpirun (CPU ranks, oversubscribed on small machines):
#  1. 1, 2 and 4 ranks over 5 steps of the tiny SD-DiT: the same losses (DP_LOSS_RTOL) and
#     weights (DP_WEIGHT_RTOL, tests/tolerances.h); with dist.check_replicas every rank holds
#     bitwise the same weights after every step and every teacher broadcast equals the local EMA
#     (the trainer aborts otherwise);
#     a NaN in one rank's batch is skipped by every rank, and a persistent one stops the run;
#     gradient accumulation (train.accum_steps) on 1 and 2 ranks gives the same losses and
#     weights as one rank with the whole batch;
#  2. the overlapped gradient all-reduce gives bitwise the run without overlap; the bf16
#     all-reduce (dist.grad_dtype = bf16) keeps replicas bitwise equal and tracks the fp32 run
#     within DP_BF16_LOSS_RTOL / DP_BF16_WEIGHT_RTOL, without being equal to it;
#  3. SIGTERM to one rank: all ranks stop at the next step boundary, rank 0 checkpoints, exit 0;
#     `--resume auto` then ends bitwise equal to the uninterrupted run;
#  4. kill -9 of one rank: the job ends non-zero within 60 s and the last checkpoint verifies;
#  5. the progress line's time split on 2 and 4 ranks (every step logged, with and without
#     overlap, the replica check's extra waits included): every part >= 0 and the parts add up
#     to ms_step (STEP_TIME_SUM_RTOL).
# Usage: test_mpi_train.sh SDDIT SOURCE_ROOT
set -u
sddit="$1"; root="$2"
command -v mpirun >/dev/null || { echo "mpirun not found: skipped"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sd_test_mpi_train.XXXXXX")
cleanup() { pkill -KILL -f "$tmp" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
pass=0; fail=0
ok()  { echo "ok   $*"; pass=$((pass+1)); }
bad() { echo "FAIL $*"; fail=$((fail+1)); }
tol() { sed -n "s/^#define $1 //p" "$root/tests/tolerances.h"; }
loss_tol=$(tol DP_LOSS_RTOL); weight_tol=$(tol DP_WEIGHT_RTOL)
bf16_loss_tol=$(tol DP_BF16_LOSS_RTOL); bf16_weight_tol=$(tol DP_BF16_WEIGHT_RTOL)
time_tol=$(tol STEP_TIME_SUM_RTOL)
mpi() {  # mpi N ARGS...: sddit on N ranks (SD_FAULT_NAN passed on when set)
  local n="$1"; shift
  local x=(-x OMP_NUM_THREADS -x OMP_WAIT_POLICY)
  [ -n "${SD_FAULT_NAN:-}" ] && x+=(-x SD_FAULT_NAN)
  timeout 300 mpirun -n "$n" "${x[@]}" "$sddit" "$@"
}

compare_runs() {  # compare_runs DIR_A DIR_B LABEL: the same losses and final weights
  local out rc
  out=$(/usr/bin/python3 - "$1" "$2" "$loss_tol" "$weight_tol" <<'PY'
import json, sys
import h5py, numpy as np
a, b, ltol, wtol = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
def losses(d):
    return [(j["step"], j["L_gen"], j["L_dis"]) for j in map(json.loads, open(d + "/metrics.jsonl"))]
la, lb = losses(a), losses(b)
worst = max(abs(x - y) / abs(x) for p, q in zip(la, lb) for x, y in zip(p[1:], q[1:]))
ok = len(la) == len(lb) == 5 and worst <= ltol
print(f"{'ok  ' if ok else 'FAIL'} losses of 5 steps: worst relative difference {worst:.2e} (tolerance {ltol:g})")
fa = h5py.File(a + "/checkpoints/ckpt-00000005.h5", "r")
fb = h5py.File(b + "/checkpoints/ckpt-00000005.h5", "r")
for k in ["/student/params", "/student/adam_m", "/student/adam_v", "/teacher", "/ema", "/center"]:
    x, y = fa[k][:], fb[k][:]
    i = int(np.argmax(np.abs(x - y)))
    err = float(np.abs(x - y).max() / np.abs(x).max())
    good = err <= wtol
    ok = ok and good
    print(f"{'ok  ' if good else 'FAIL'} {k}: norm-relative difference {err:.2e} (tolerance {wtol:g}; worst index {i}: {x[i]:.8g} vs {y[i]:.8g})")
sys.exit(0 if ok else 1)
PY
  ); rc=$?
  echo "$out" | sed "s/^/  [$3] /"
  [ $rc -eq 0 ] && ok "$3: same losses and weights" || bad "$3: differ"
}

# ---- 1. world sizes 1, 2, 4 ----
common=(train --train.steps=5 --train.log_every=1 --train.global_batch=8 --ckpt.every=0
        --dist.check_replicas=true --dist.timeout=60)
"$sddit" "${common[@]}" --train.out_dir="$tmp/w1" >"$tmp/w1.log" 2>&1 || bad "1 rank failed: $(tail -2 "$tmp/w1.log")"
for n in 2 4; do
  if mpi "$n" "${common[@]}" --train.out_dir="$tmp/w$n" >"$tmp/w$n.log" 2>&1; then
    ok "$n ranks: 5 steps with the replica check after every step (bitwise equal weights, teacher broadcast = local EMA)"
  else
    bad "$n ranks failed: $(grep -E 'error' "$tmp/w$n.log" | head -3)"
  fi
  compare_runs "$tmp/w1" "$tmp/w$n" "1 vs $n ranks"
done

# ---- gradient accumulation: the same global batch in micro-batches ----
# (1 rank, 2 micro-batches of 4), (2 ranks, 2 of 2 each), (1 rank, 8 of 1): the same losses and
# weights as one rank with the whole batch, within the data-parallel tolerances
for v in "1 2" "2 2" "1 8"; do
  set -- $v
  d="$tmp/acc$1x$2"
  if [ "$1" = 1 ]; then "$sddit" "${common[@]}" --train.accum_steps="$2" --train.out_dir="$d" >"$d.log" 2>&1
  else mpi "$1" "${common[@]}" --train.accum_steps="$2" --train.out_dir="$d" >"$d.log" 2>&1; fi \
    || bad "$1 rank(s) x $2 micro-batches failed: $(grep -E 'error' "$d.log" | head -3)"
  grep -q "($2 micro-batches of $((8 / $1 / $2)) accumulated)" "$d.log" \
    && ok "$1 rank(s) x $2 micro-batches: the header says so" || bad "no micro-batch line in $d.log"
  compare_runs "$tmp/w1" "$d" "1 rank vs $1 rank(s) x $2 micro-batches"
done
"$sddit" "${common[@]}" --train.accum_steps=3 --train.out_dir="$tmp/acc3" >"$tmp/acc3.log" 2>&1
if [ $? -ne 0 ] && grep -q "not a multiple of train.accum_steps" "$tmp/acc3.log" && [ ! -e "$tmp/acc3" ]; then
  ok "global batch 8 with 3 micro-batches: refused before anything is written"
else
  bad "accum_steps=3 with global batch 8: $(tail -2 "$tmp/acc3.log")"
fi

# ---- non-finite values on one rank ----
SD_FAULT_NAN=1:2 mpi 2 "${common[@]}" --train.out_dir="$tmp/nan" >"$tmp/nan.log" 2>&1; rc=$?
skipped=$(grep -c '"skipped_total": 1' "$tmp/nan/metrics.jsonl" 2>/dev/null)
if [ $rc -eq 0 ] && grep -q "step 3 skipped on every rank" "$tmp/nan.log" && [ "${skipped:-0}" -ge 3 ]; then
  ok "NaN in rank 1's batch at step 3: every rank skipped it (replicas still equal), counted, run finished"
else
  bad "NaN on one rank: exit $rc, $(grep -E 'skipped|error' "$tmp/nan.log" | head -3)"
fi
SD_FAULT_NAN=1:2+ mpi 2 "${common[@]}" --train.steps=30 --train.max_bad_steps=3 --train.out_dir="$tmp/nan2" >"$tmp/nan2.log" 2>&1; rc=$?
if [ $rc -ne 0 ] && grep -q "4 non-finite steps in a row (limit train.max_bad_steps = 3) at step 6" "$tmp/nan2.log"; then
  ok "NaN on one rank at every step: the run stops after max_bad_steps with a message"
else
  bad "persistent NaN: exit $rc, $(grep -E 'error' "$tmp/nan2.log" | head -2)"
fi

# ---- 2. overlap on and off ----
mpi 2 "${common[@]}" --dist.overlap=false --train.out_dir="$tmp/no" >"$tmp/no.log" 2>&1 || bad "no-overlap run failed"
diffs=""
for d in /student/params /student/adam_m /student/adam_v /teacher /center; do
  h5diff -q "$tmp/w2/checkpoints/ckpt-00000005.h5" "$tmp/no/checkpoints/ckpt-00000005.h5" "$d" "$d" >/dev/null 2>&1 || diffs="$diffs $d"
done
[ -z "$diffs" ] && ok "overlapped all-reduce == all-reduce after the backward, bitwise" || bad "overlap changes$diffs"

if mpi 2 "${common[@]}" --dist.grad_dtype=bf16 --train.out_dir="$tmp/bf16" >"$tmp/bf16.log" 2>&1; then
  ok "bf16 gradient all-reduce on 2 ranks: replica check after every step passed"
else
  bad "bf16 all-reduce run failed: $(grep -E 'error' "$tmp/bf16.log" | head -3)"
fi
out=$(/usr/bin/python3 - "$tmp/w2" "$tmp/bf16" "$bf16_loss_tol" "$bf16_weight_tol" <<'PY'
import json, sys
import h5py, numpy as np
a, b, ltol, wtol = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
def losses(d):
    return [(j["L_gen"], j["L_dis"]) for j in map(json.loads, open(d + "/metrics.jsonl"))]
la, lb = losses(a), losses(b)
worst = max(abs(x - y) / abs(x) for p, q in zip(la, lb) for x, y in zip(p, q))
ok = len(la) == len(lb) == 5 and worst <= ltol
print(f"{'ok  ' if ok else 'FAIL'} losses of 5 steps, bf16 vs fp32 all-reduce: worst relative difference {worst:.2e} (tolerance {ltol:g})")
x = h5py.File(a + "/checkpoints/ckpt-00000005.h5", "r")["/student/params"][:]
y = h5py.File(b + "/checkpoints/ckpt-00000005.h5", "r")["/student/params"][:]
err = float(np.abs(x - y).max() / np.abs(x).max())
i = int(np.argmax(np.abs(x - y)))
good = 0 < err <= wtol
print(f"{'ok  ' if good else 'FAIL'} student weights, bf16 vs fp32 all-reduce: norm-relative difference {err:.2e} (must be > 0: the bf16 path ran; tolerance {wtol:g}; worst index {i}: {x[i]:.8g} vs {y[i]:.8g})")
sys.exit(0 if ok and good else 1)
PY
); rc=$?
echo "$out" | sed "s/^/  [bf16 all-reduce] /"
[ $rc -eq 0 ] && ok "bf16 all-reduce tracks the fp32 one" || bad "bf16 all-reduce off track"

# ---- 3. SIGTERM on one rank, then --resume auto ----
long=(train --train.steps=120 --train.log_every=5 --train.global_batch=32 --ckpt.every=0 --dist.timeout=60)
mpi 2 "${long[@]}" --train.out_dir="$tmp/ref" >"$tmp/ref.log" 2>&1 || bad "reference run failed: $(tail -2 "$tmp/ref.log")"
mpi 2 "${long[@]}" --train.out_dir="$tmp/sig" >"$tmp/sig.log" 2>&1 &
job=$!
for _ in $(seq 600); do  # until 10 steps are logged
  [ -f "$tmp/sig/metrics.jsonl" ] && [ "$(wc -l < "$tmp/sig/metrics.jsonl")" -ge 2 ] && break
  sleep 0.05
done
ranks=$(pgrep -f "out_dir=$tmp/sig" | while read -r p; do [ "$(cat /proc/$p/comm 2>/dev/null)" = sddit ] && echo "$p"; done)
victim=$(echo "$ranks" | tail -1)
if [ -n "$victim" ]; then kill -TERM "$victim"; fi
wait $job; rc=$?
stopped=$(sed -n 's/.*SIGTERM received: stopped after step \([0-9]*\).*/\1/p' "$tmp/sig.log")
if [ $rc -eq 0 ] && [ -n "$stopped" ] && [ "$stopped" -lt 120 ] && [ -f "$tmp/sig/checkpoints/ckpt-$(printf %08d "$stopped").h5" ]; then
  ok "SIGTERM to one rank ($(echo "$ranks" | wc -w) ranks seen): all stopped after step $stopped, checkpoint written, exit 0"
else
  bad "SIGTERM: exit $rc, stopped '$stopped', $(tail -3 "$tmp/sig.log")"
fi
mpi 2 "${long[@]}" --train.out_dir="$tmp/sig" --resume auto >"$tmp/sig2.log" 2>&1 || bad "resume after SIGTERM failed: $(tail -2 "$tmp/sig2.log")"
diffs=""
for d in /student/params /student/adam_m /student/adam_v /teacher /ema /center; do
  h5diff -q "$tmp/ref/checkpoints/ckpt-00000120.h5" "$tmp/sig/checkpoints/ckpt-00000120.h5" "$d" "$d" >/dev/null 2>&1 || diffs="$diffs $d"
done
[ -z "$diffs" ] && ok "SIGTERM + --resume auto == uninterrupted 2-rank run, bitwise" || bad "resumed run differs in$diffs"

# ---- 4. kill -9 of one rank ----
mpi 2 train --train.steps=1000000 --train.log_every=50 --train.global_batch=8 --ckpt.every=20 \
  --dist.timeout=20 --train.out_dir="$tmp/kill" >"$tmp/kill.log" 2>&1 &
job=$!
for _ in $(seq 600); do
  ls "$tmp/kill/checkpoints/"ckpt-*.h5 >/dev/null 2>&1 && break
  sleep 0.05
done
sleep 0.5
victim=$(pgrep -f "out_dir=$tmp/kill" | while read -r p; do [ "$(cat /proc/$p/comm 2>/dev/null)" = sddit ] && echo "$p"; done | tail -1)
t0=$(date +%s)
[ -n "$victim" ] && kill -KILL "$victim"
wait $job; rc=$?
dt=$(( $(date +%s) - t0 ))
newest=$(ls "$tmp/kill/checkpoints/"ckpt-*.h5 2>/dev/null | tail -1)
if [ $rc -ne 0 ] && [ $dt -le 60 ] && [ -n "$newest" ] && "$sddit" inspect "$newest" >/dev/null 2>&1 && ! ls "$tmp/kill/checkpoints/"*.tmp >/dev/null 2>&1; then
  ok "kill -9 of one rank: job ended with exit $rc after ${dt} s; newest checkpoint $(basename "$newest") verifies"
else
  bad "kill -9: exit $rc after ${dt} s, newest '$newest'; $(tail -3 "$tmp/kill.log")"
fi
# ---- 5. the time split of the progress line (metrics.jsonl of the runs above) ----
time_split() {  # time_split DIR: every line's parts >= 0 and adding up to ms_step
  /usr/bin/python3 - "$1/metrics.jsonl" "$time_tol" <<'PY'
import json, sys
path, tol = sys.argv[1], float(sys.argv[2])
parts = ["ms_data", "ms_compute", "ms_comm_exposed", "ms_optim", "ms_other"]
lines = [json.loads(t) for t in open(path)]
bad = []
for j in lines:
    missing = [k for k in parts + ["ms_step"] if k not in j]
    neg = [f"{k} = {j[k]:g}" for k in parts + ["ms_step"] if j.get(k, 0) < 0]
    total = sum(j.get(k, 0) for k in parts)
    step = j.get("ms_step", float("nan"))
    if missing or neg or not abs(total - step) <= tol * step:
        bad.append(f"step {j['step']}: ms_step {step:g}, parts " +
                   " + ".join(f"{k[3:]} {j.get(k, float('nan')):g}" for k in parts) +
                   f" = {total:g}" + (f"; negative: {', '.join(neg)}" if neg else "") +
                   (f"; missing: {', '.join(missing)}" if missing else ""))
print(f"{len(lines)} lines, {len(bad)} wrong" + "".join("\n    " + b for b in bad[:5]))
sys.exit(0 if lines and not bad else 1)
PY
}
for run in w2 w4 no bf16; do
  out=$(time_split "$tmp/$run" 2>&1); rc=$?
  [ $rc -eq 0 ] && ok "$run: every step's time parts >= 0 and adding up to ms_step ($out)" \
                || bad "$run: time parts of metrics.jsonl: $out"
done

pgrep -f "out_dir=$tmp" >/dev/null && bad "processes left behind: $(pgrep -af "out_dir=$tmp" | head -3)"

echo "test_mpi_train: $pass checks passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
