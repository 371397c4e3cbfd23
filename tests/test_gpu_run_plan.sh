#!/usr/bin/env bash
# The stage plan of tests/gpu/run.sh, with a fake clock and fake stages (SD_GPU_RUN_FAKE: no
# build, no GPU, no sleeping), so that CI checks that a device call fits its window:
#  1. every stage starts with a timeout no larger than its maximum and than what is left, and
#     ends (its timeout plus the kill grace at worst) before the budget less the summary's
#     reserve; the whole run stays within the budget (480 s by default);
#  2. the essential stages (env, configure/build or bundle, selftest, step, bench) come first, in
#     that order, and all run when the budget allows; the optional ones follow while time
#     remains, and one that does not fit says "not run: N s left, needs ~M s" with N < M;
#  3. with a short budget (200 s) the optional stages that do not fit are skipped with that
#     reason and the summary is still printed; with 120 s an essential stage cannot run and the
#     result says so (exit 1);
#  4. a stage that hangs is cut at its timeout (TIMEOUT; also one that ignores SIGTERM, at its
#     timeout plus the grace), and the stages after it are still planned within the budget;
#  5. the exit status reflects failures: a failing stage, a GPU program that skips although a
#     GPU is visible (FAIL(skip)), a timeout; NCCL's skip alone is no failure;
#  6. the clock is the injected command (SD_GPU_RUN_CLOCK) and advances by the stages' times.
# Usage: test_gpu_run_plan.sh SOURCE_ROOT
set -u
root="$1"
run_sh=$root/tests/gpu/run.sh
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sd_test_run_plan.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { echo "ok   $*"; pass=$((pass+1)); }
bad() { echo "FAIL $*"; fail=$((fail+1)); }
evidence() { sed 's/^/       | /' "$1" | tail -n "${2:-30}"; }
reserve=15 grace=5
essential_bundle="env bundle selftest step attention bench"
essential_native="env configure build selftest step attention bench"
optional="test_ops_cuda test_sddit_cuda test_nccl bench_b2 maxbatch sanitizer"

# run CASE BUDGET MODE FAKE-SPEC: run.sh with fake stages; its output in $tmp/CASE.log, exit in $rc
run() {
  local c=$1 b=$2 m=$3 f=$4
  rm -rf "$tmp/$c.out"
  echo 1700000000 >"$tmp/$c.clock"
  env -u OUT -u SD_GPU_RUN_SIMULATE -u SD_GPU_BENCH -u SD_GPU_BENCH_B2 \
    OUT="$tmp/$c.out" SD_GPU_BUILD_DIR="$tmp/$c.build" SD_GPU_BUNDLE_DIR="$tmp/no-bundle" \
    SD_GPU_RUN_BUDGET="$b" SD_GPU_RUN_MODE="$m" SD_GPU_RUN_FAKE="$f" \
    SD_GPU_RUN_FAKE_CLOCK="$tmp/$c.clock" SD_GPU_RUN_CLOCK="cat $tmp/$c.clock" \
    bash "$run_sh" >"$tmp/$c.log" 2>&1
  rc=$?
}

# plan_violations LOG BUDGET: one line per broken rule of the plan (empty when it holds)
plan_violations() {
  awk -v budget="$2" -v reserve=$reserve -v grace=$grace '
    /^== [a-z_0-9]+: start at / {
      name = $2; sub(":", "", name)
      x = $5; sub(/^\+/, "", x); sub(/s,$/, "", x)
      t = $7; sub(/s$/, "", t)
      e = $9; sub(/^~/, "", e); sub(/s,$/, "", e)
      m = $11; sub(/s,$/, "", m)
      u = $12; sub(/s$/, "", u)
      if (t + 0 > m + 0) print name ": timeout " t " s beyond its max " m " s"
      if (t + 0 > u + 0) print name ": timeout " t " s beyond the " u " s usable"
      if (e + 0 > u + 0) print name ": started though it needs ~" e " s of " u " s usable"
      if (x + t + grace > budget - reserve) print name ": may end at +" x + t + grace " s, past " budget - reserve " s"
      if (u + 0 != budget - x - reserve - grace) print name ": usable " u " s is not budget - elapsed - reserve - grace"
      started++ }
    /^== [a-z_0-9]+: not run: / {
      n = $5; need = $9; sub(/^~/, "", need)
      if (n + 0 >= need + 0) print $2 " not run although " n " s >= ~" need " s" }
    /^==== tests\/gpu\/run.sh summary/ {
      tot = $0; sub(/.*Z, /, "", tot); sub(/s of .*/, "", tot)
      if (tot + 0 > budget + 0) print "the run took " tot " s of a " budget " s budget"
      summary = 1 }
    END { if (!summary) print "no summary"; if (!started) print "no stage started" }' "$1"
}
# the stages in the order they started, and a stage's summary row
started() { sed -n 's/^== \([a-z_0-9]*\): start at .*/\1/p' "$1" | tr '\n' ' ' | sed 's/ $//'; }
row() { grep -E "^$2 +" "$1" | tail -n 1; }
status() { row "$1" "$2" | awk '{print $2}'; }
check_plan() {  # CASE BUDGET
  local v
  v=$(plan_violations "$tmp/$1.log" "$2")
  if [ -z "$v" ]; then
    ok "$1: every timeout within its max and what is left; the run within ${2} s ($(grep -c ': start at' "$tmp/$1.log") stages started)"
  else
    bad "$1: the plan breaks its rules:"; echo "$v" | sed 's/^/       | /'; evidence "$tmp/$1.log"
  fi
}
first_started() {  # CASE WANT: the first stages started are WANT, in order, all ok
  local got st s all=1
  got=$(started "$tmp/$1.log" | cut -d' ' -f1-"$(wc -w <<<"$2")")
  for s in $2; do
    st=$(status "$tmp/$1.log" "$s")
    [ "$st" = ok ] || all=0
  done
  if [ "$got" = "$2" ] && [ $all = 1 ]; then ok "$1: essential stages first and ok: $got"
  else bad "$1: essential stages '$2' should start first and pass; started: '$(started "$tmp/$1.log")'"
       evidence "$tmp/$1.log" 20
  fi
}

# ---- 1-2. the full budget, bundle and native ---------------------------------------------------
run full 480 bundle 1
check_plan full 480
first_started full "$essential_bundle"
if [ $rc = 0 ] && grep -q '^result: every stage that ran passed' "$tmp/full.log"; then
  ok "full: exit 0, $(grep -c '^== [a-z_0-9]*: ok' "$tmp/full.log") stages ok"
else bad "full: exit $rc"; evidence "$tmp/full.log"; fi
n=0; for s in $optional; do [ "$(status "$tmp/full.log" $s)" = ok ] && n=$((n+1)); done
if [ "$(status "$tmp/full.log" test_ops_cuda)" = ok ] && [ $n -ge 4 ]; then
  ok "full: $n optional stages ran after the essential ones"
else bad "full: only $n optional stages ran with the whole budget"; evidence "$tmp/full.log"; fi
files=$(ls "$tmp/full.out" | tr '\n' ' ')
if [ "$(ls "$tmp/full.out" | wc -l)" -le 8 ] && [ -f "$tmp/full.out/summary.txt" ]; then
  ok "full: $(ls "$tmp/full.out" | wc -l) log files ($files)"
else bad "full: the logs are not summary.txt and at most 8 files: $files"; fi

run native 480 native 1
check_plan native 480
first_started native "$essential_native"
if [ $rc = 0 ]; then
  skipped=$(grep -c '^== [a-z_0-9]*: not run: ' "$tmp/native.log")
  ok "native: exit 0; $skipped optional stages left out for time ($(grep -o '^== [a-z_0-9]*: not run: .*' "$tmp/native.log" | head -n 1))"
else bad "native: exit $rc"; evidence "$tmp/native.log"; fi

# ---- 3. short budgets ---------------------------------------------------------------------------
run short 200 bundle 1
check_plan short 200
first_started short "$essential_bundle"
nr=""; for s in $optional; do
  r=$(row "$tmp/short.log" $s)
  case $r in *"not run: "*" s left, needs ~"*) nr="$nr $s" ;; esac
done
if [ $rc = 0 ] && grep -q '^==== tests/gpu/run.sh summary' "$tmp/short.log" &&
   [[ " $nr " == *" test_ops_cuda "* ]] && [[ " $nr " == *" maxbatch "* ]] &&
   [[ " $nr " == *" sanitizer "* ]]; then
  ok "short (200 s): summary printed, exit 0, not run for time:$nr"
else
  bad "short (200 s): exit $rc, stages marked 'not run':$nr"; evidence "$tmp/short.log"
fi

run tiny 120 bundle 1
check_plan tiny 120
if [ $rc = 1 ] && grep -E '^result: .*essential stages not run: .*step' "$tmp/tiny.log" >/dev/null &&
   row "$tmp/tiny.log" step | grep -q 'not run: '; then
  ok "tiny (120 s): exit 1: $(grep '^result: ' "$tmp/tiny.log")"
else bad "tiny (120 s): exit $rc, want 1 and the essential stages not run named"; evidence "$tmp/tiny.log"; fi

# ---- 4. hangs -----------------------------------------------------------------------------------
run hang 480 bundle "step=hang"
check_plan hang 480
r=$(row "$tmp/hang.log" step)
lim=$(awk '{print $4}' <<<"$r"); secs=$(awk '{print $3}' <<<"$r")
after=$(started "$tmp/hang.log" | sed -n 's/.* step //p')
if [ $rc = 1 ] && [ "$(status "$tmp/hang.log" step)" = TIMEOUT ] && [ "$secs" = "$lim" ] &&
   [ "$lim" -le 200 ] && [ "$(status "$tmp/hang.log" bench)" = ok ] && [ -n "$after" ]; then
  ok "hang: step cut at its ${lim} s timeout (TIMEOUT), exit 1; started after it: $after"
else bad "hang: step row '$r', exit $rc, started after it: '$after'"; evidence "$tmp/hang.log"; fi

run hangkill 480 native "build=hangkill,*=10"
check_plan hangkill 480
r=$(row "$tmp/hangkill.log" build)
lim=$(awk '{print $4}' <<<"$r"); secs=$(awk '{print $3}' <<<"$r")
if [ $rc = 1 ] && [ "$(status "$tmp/hangkill.log" build)" = TIMEOUT ] &&
   [ "$secs" = $((lim + grace)) ] &&
   row "$tmp/hangkill.log" selftest | grep -q 'nothing built'; then
  ok "hangkill: build ignoring SIGTERM ends at its timeout + ${grace} s (${secs} s); the stages needing it say 'nothing built'"
else bad "hangkill: build row '$r', exit $rc"; evidence "$tmp/hangkill.log"; fi

run late 480 bundle "test_ops_cuda=hang,*=20"
check_plan late 480
after=$(started "$tmp/late.log" | sed -n 's/.* test_ops_cuda //p')
timeouts=$(awk '/^stage +status/ { f = 1; next } f && $2 == "TIMEOUT" { print $1 }' "$tmp/late.log" | tr '\n' ' ')
if [ $rc = 1 ] && [ "$timeouts" = "test_ops_cuda " ] && [ -n "$after" ]; then
  ok "late: a hang among the optional stages is its only TIMEOUT; started after it: $after"
else bad "late: exit $rc, TIMEOUT rows: '$timeouts', started after the hang: '$after'"
     evidence "$tmp/late.log"; fi

# ---- 5. exit status -----------------------------------------------------------------------------
run selftest_fail 480 bundle "selftest=30:1"
if [ $rc = 1 ] && [ "$(status "$tmp/selftest_fail.log" selftest)" = "FAIL(1)" ] &&
   [ "$(status "$tmp/selftest_fail.log" step)" = ok ] &&
   grep -q '^result: FAILURES' "$tmp/selftest_fail.log"; then
  ok "a failing selftest: FAIL(1), the other stages still run, exit 1"
else bad "a failing selftest: exit $rc, selftest '$(status "$tmp/selftest_fail.log" selftest)'"
     evidence "$tmp/selftest_fail.log"; fi
run bench_skip 480 bundle "bench=5:77"
if [ $rc = 1 ] && [ "$(status "$tmp/bench_skip.log" bench)" = "FAIL(skip)" ]; then
  ok "a GPU program that skips with a GPU visible: FAIL(skip), exit 1"
else bad "bench exiting 77 with a GPU: exit $rc, status '$(status "$tmp/bench_skip.log" bench)'"
     evidence "$tmp/bench_skip.log"; fi
run nccl_skip 480 native "test_nccl=2:77"
if [ $rc = 0 ] && [ "$(status "$tmp/nccl_skip.log" test_nccl)" = SKIP ]; then
  ok "test_nccl skipping (a build without NCCL): SKIP, exit 0"
else bad "test_nccl exiting 77: exit $rc, status '$(status "$tmp/nccl_skip.log" test_nccl)'"
     evidence "$tmp/nccl_skip.log"; fi
run bundle_fail 480 bundle "bundle=3:3"
if [ $rc = 1 ] && [ "$(status "$tmp/bundle_fail.log" bundle)" = "FAIL(3)" ] &&
   row "$tmp/bundle_fail.log" step | grep -q 'nothing built'; then
  ok "an unusable bundle: FAIL(3), the stages needing it say 'nothing built', exit 1"
else bad "an unusable bundle: exit $rc"; evidence "$tmp/bundle_fail.log"; fi

# ---- 6. the clock -------------------------------------------------------------------------------
t1=$(cat "$tmp/full.clock")
tot=$(sed -n 's/^==== tests\/gpu\/run.sh summary (.*Z, \([0-9]*\)s of .*/\1/p' "$tmp/full.log")
sum=$(awk 'f && NF >= 4 && $3 ~ /^[0-9]+$/ { s += $3 } /^stage +status/ { f = 1 } END { print s + 0 }' "$tmp/full.log")
if [ "$t1" = $((1700000000 + tot)) ] && [ "$tot" = "$sum" ] && [ "$tot" -gt 0 ]; then
  ok "the injected clock advanced by the stages' ${sum} s, as the summary says (${tot} s)"
else bad "clock: ends at $t1 (started 1700000000), summary ${tot} s, stages add up to ${sum} s"
     evidence "$tmp/full.log" 20; fi

echo "test_gpu_run_plan: $pass checks passed, $fail failed"
[ $fail -eq 0 ]
