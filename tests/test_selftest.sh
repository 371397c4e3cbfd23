#!/usr/bin/env bash
# `sddit selftest` and the selftest `sddit train` runs on the cuda backend, on the CPU stand-in
# of the CUDA backend (--simulate matmul / SD_CUDA_SIMULATE=matmul), so that CI checks its
# logic without a GPU:
#  1. the full form (small and model shapes, both precisions, determinism, one whole SD-DiT
#     step against the CPU) passes on the tiny model, and the quick form at the production
#     shapes (XL/2: width 1152, 16 heads of 72, 256 tokens, 204 visible) passes;
#  2. every planted fault (SD_GPU_SIM_BUG) makes it fail (exit 1) with a FAIL line of its kind,
#     and the whole-step check alone catches a gradient 5% off;
#  3. usage errors exit 2 with a message; without a device (or a CUDA build) it exits 77;
#  4. `sddit train --train.backend=cuda` runs the quick form before training; a planted fault
#     stops it before anything is written; train.selftest = false skips the check.
# Usage: test_selftest.sh SDDIT SOURCE_ROOT
set -u
sddit="$1"; root="$2"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sd_test_selftest.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OMP_WAIT_POLICY=PASSIVE
unset SD_GPU_SIM_BUG SD_CUDA_SIMULATE
pass=0; fail=0
ok()  { echo "ok   $*"; pass=$((pass+1)); }
bad() { echo "FAIL $*"; fail=$((fail+1)); }
last() { tail -n "${2:-3}" "$1" | sed 's/^/       | /'; }
sim=(--simulate matmul)

# ---- 1. passes on the stand-in -----------------------------------------------------------------
"$sddit" selftest "${sim[@]}" --model.preset=tiny --seed 3 >"$tmp/full.log" 2>&1
rc=$?
summary=$(grep '^selftest: ' "$tmp/full.log" | tail -n 1)
if [ $rc = 0 ] && [[ "$summary" =~ ^selftest:\ ([0-9]+)\ checks\ passed,\ 0\ failed ]] &&
   [ "${BASH_REMATCH[1]}" -gt 1000 ]; then
  ok "full form on tiny: $summary"
else
  bad "full form on tiny: exit $rc, summary '$summary'"; last "$tmp/full.log" 8
fi
for want in '^selftest path: ' '^determinism prec fp32: .* 0 differ ok' \
            '^determinism prec bf16: .* 0 differ ok' '^step prec fp32 tiny: .*: ok$' \
            '^step prec bf16 tiny: .*: ok$' '^# selftest: .* op checks on small shapes'; do
  grep -qE "$want" "$tmp/full.log" && ok "full form prints /$want/" \
    || bad "full form: no line matching /$want/"
done
grep -q ' FAIL' "$tmp/full.log" && bad "full form printed a FAIL line: $(grep -m1 ' FAIL' "$tmp/full.log")"

"$sddit" selftest "${sim[@]}" --quick >"$tmp/quick.log" 2>&1
rc=$?
shape=$(grep -m1 '^# selftest: ' "$tmp/quick.log")
if [ $rc = 0 ] && grep -q '^selftest: [0-9]* checks passed, 0 failed' "$tmp/quick.log" &&
   [[ "$shape" == *"XL-2: batch 2, 256 tokens, width 1152, 16 heads of 72, 204 visible tokens"* ]]; then
  ok "quick form at the XL/2 shapes: $(grep '^selftest: ' "$tmp/quick.log")"
else
  bad "quick form at XL/2: exit $rc, '$shape'"; last "$tmp/quick.log" 5
fi
grep -q '^# precision fp32' "$tmp/quick.log" && bad "quick form ran fp32 although the config says bf16"
grep -q '^step ' "$tmp/quick.log" && bad "quick form ran the whole step"

# ---- 2. planted faults ------------------------------------------------------------------------
# fault -> the line that must name it
declare -A kind=([unwritten]='unwritten FAIL' [guard]='guard FAIL' [noacc]='^op axpy.* FAIL'
                 [nondet]='^determinism .* FAIL' [input]='input-changed FAIL'
                 [guard16]='guard FAIL .*bf16 copy' [gradscale]='^op edm_loss_bwd.* FAIL')
for bug in unwritten guard noacc nondet input guard16 gradscale; do
  SD_GPU_SIM_BUG=$bug "$sddit" selftest "${sim[@]}" --model.preset=tiny --no-step --seed 5 \
    >"$tmp/bug.log" 2>&1
  rc=$?
  if [ $rc = 1 ] && grep -qE "${kind[$bug]}" "$tmp/bug.log" &&
     grep -qE '^selftest: [0-9]+ checks passed, [1-9][0-9]* failed' "$tmp/bug.log"; then
    ok "planted fault $bug refused: $(grep -m1 -E "${kind[$bug]}" "$tmp/bug.log" | cut -c1-110)"
  else
    bad "planted fault $bug: exit $rc, no line /${kind[$bug]}/"; last "$tmp/bug.log"
  fi
done
SD_GPU_SIM_BUG=gradscale "$sddit" selftest "${sim[@]}" --model.preset=tiny --shapes none --step \
  --precision bf16 >"$tmp/step.log" 2>&1
rc=$?
if [ $rc = 1 ] && grep -qE '^step prec bf16 grad .* FAIL' "$tmp/step.log"; then
  ok "the whole-step check alone catches a 5% gradient error: $(grep -m1 '^step prec bf16 tiny' "$tmp/step.log" | cut -c1-120)"
else
  bad "the whole-step check missed a 5% gradient error (exit $rc)"; last "$tmp/step.log"
fi

# ---- 3. usage and no device -------------------------------------------------------------------
usage_case() {  # NAME MESSAGE_PATTERN ARGS...
  local name="$1" pat="$2"; shift 2
  "$sddit" selftest "$@" >"$tmp/u.log" 2>&1
  local rc=$?
  if [ $rc = 2 ] && grep -qE -e "$pat" "$tmp/u.log"; then ok "usage: $name -> exit 2, /$pat/"
  else bad "usage: $name: exit $rc (want 2), no /$pat/"; last "$tmp/u.log"; fi
}
usage_case "bad precision" "--precision 'fp16'" --precision fp16
usage_case "bad shapes" "--shapes 'big'" --shapes big
usage_case "unknown option" "unknown option '--frobnicate'" --frobnicate 1
usage_case "backend cpu" "only cuda" --backend cpu
usage_case "nothing to check" "nothing to check" --shapes none --no-step
usage_case "bad config key" "model.widht" --model.widht=3
usage_case "unknown simulation" "unknown simulation mode" --simulate gpu
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "skip the no-device case: a GPU is visible here"
else
  "$sddit" selftest --quick >"$tmp/nodev.log" 2>&1
  rc=$?
  if [ $rc = 77 ] && grep -qE '^skip: sddit selftest: .*(no CUDA device|no CUDA backend)' "$tmp/nodev.log"; then
    ok "no device: exit 77, $(head -n 1 "$tmp/nodev.log" | cut -c1-100)"
  else
    bad "no device: exit $rc (want 77)"; last "$tmp/nodev.log"
  fi
fi

# ---- 4. sddit train on the cuda backend ---------------------------------------------------------
train=(train --config "$root/launch/configs/tiny.ini" --train.backend=cuda --train.steps=4
       --train.log_every=2)
SD_CUDA_SIMULATE=matmul "$sddit" "${train[@]}" --train.out_dir="$tmp/run1" >"$tmp/t1.log" 2>&1
rc=$?
if [ $rc = 0 ] && grep -q '^selftest: [0-9]* checks passed, 0 failed' "$tmp/t1.log" &&
   [ -f "$tmp/run1/metrics.jsonl" ]; then
  ok "train runs the selftest first, then trains: $(grep '^selftest: ' "$tmp/t1.log")"
else
  bad "train with the selftest: exit $rc"; last "$tmp/t1.log" 5
fi
before=$(grep -n '^selftest: ' "$tmp/t1.log" | cut -d: -f1)
first_step=$(grep -n -m1 '^ *step\|"step"\|^step ' "$tmp/t1.log" | cut -d: -f1)
cfgline=$(grep -n -m1 '^# effective configuration' "$tmp/t1.log" | cut -d: -f1)
if [ -n "$before" ] && [ -n "$cfgline" ] && [ "$before" -lt "$cfgline" ]; then
  ok "the selftest comes before the run writes anything (line $before < line $cfgline)"
else
  bad "the selftest is not before the effective configuration (lines '$before', '$cfgline')"
fi
SD_GPU_SIM_BUG=noacc SD_CUDA_SIMULATE=matmul "$sddit" "${train[@]}" --train.out_dir="$tmp/run2" \
  >"$tmp/t2.log" 2>&1
rc=$?
if [ $rc != 0 ] && grep -q 'failed its selftest' "$tmp/t2.log" && [ ! -e "$tmp/run2" ]; then
  ok "a planted fault stops train before anything is written: $(grep -m1 'error:' "$tmp/t2.log" | cut -c1-120)"
else
  bad "a planted fault: train exit $rc, run dir $( [ -e "$tmp/run2" ] && echo exists || echo absent)"
  last "$tmp/t2.log"
fi
SD_GPU_SIM_BUG=noacc SD_CUDA_SIMULATE=matmul "$sddit" "${train[@]}" --train.selftest=false \
  --train.out_dir="$tmp/run3" >"$tmp/t3.log" 2>&1
rc=$?
if [ $rc = 0 ] && ! grep -q '^selftest: ' "$tmp/t3.log"; then
  ok "train.selftest = false skips the check"
else
  bad "train.selftest = false: exit $rc, selftest lines $(grep -c '^selftest: ' "$tmp/t3.log")"
  last "$tmp/t3.log"
fi
"$sddit" train --config "$root/launch/configs/tiny.ini" --train.steps=2 \
  --train.out_dir="$tmp/run4" >"$tmp/t4.log" 2>&1
grep -q '^selftest: ' "$tmp/t4.log" && bad "the cpu backend ran a selftest" \
  || ok "the cpu backend runs no selftest"

echo "test_selftest: $pass checks passed, $fail failed"
[ $fail = 0 ] && [ $pass -gt 0 ]
