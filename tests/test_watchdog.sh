#!/usr/bin/env bash
# The watchdog end to end with watchdog_probe: no false alarm while ranks work and wait, a hang
# ended after the timeout, a stopped or killed rank named and the whole job ended, and no
# process left behind. Every mpirun runs under `timeout 60` so a bug cannot hang the suite.
# Skips (77) when mpirun is missing.
set -u
probe="$1"
command -v mpirun >/dev/null || { echo "SKIP: no mpirun"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun_cmd=(timeout 60 mpirun --oversubscribe)
name=$(basename "$probe" | cut -c1-15)  # the process name pgrep/ps see
pass=0; fail=0

# Live (not zombie) probe processes.
live() { ps -eo pid=,stat=,comm= | awk -v n="$name" '$3 == n && $2 !~ /^Z/ {print $1}'; }
before=" $(live | tr '\n' ' ') "

# Fails when a probe process outlives its job (5 s of grace), after ending it.
check_leftovers() {  # check_leftovers NAME
  local pids p left i
  for i in $(seq 25); do
    left=""
    for p in $(live); do [[ "$before" == *" $p "* ]] || left="$left $p"; done
    [ -z "$left" ] && { echo "ok   $1: no process left behind"; pass=$((pass+1)); return; }
    sleep 0.2
  done
  kill -CONT $left 2>/dev/null; kill -KILL $left 2>/dev/null
  echo "FAIL $1: processes left behind:$left"; fail=$((fail+1))
}

# expect NAME RC MIN_S MAX_S PATTERN ANTIPATTERN -- COMMAND...
#   RC: a number, or "nonzero". PATTERN must match the output (extended regex, "" = any);
#   ANTIPATTERN must not ("" = none). The run must take between MIN_S and MAX_S seconds.
expect() {
  local name="$1" want_rc="$2" min_s="$3" max_s="$4" pattern="$5" anti="$6"; shift 7
  local out rc t0 t1 el why=""
  t0=$(date +%s.%N)
  out=$("$@" 2>&1); rc=$?
  t1=$(date +%s.%N)
  el=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  if [ "$want_rc" = nonzero ]; then [ "$rc" -ne 0 ] || why="rc 0 (want non-zero)"
  else [ "$rc" -eq "$want_rc" ] || why="rc $rc (want $want_rc)"; fi
  awk -v e="$el" -v lo="$min_s" -v hi="$max_s" 'BEGIN { exit !(e >= lo && e <= hi) }' ||
    why="$why; took $el s (want $min_s..$max_s s)"
  [ -z "$pattern" ] || grep -qE -- "$pattern" <<<"$out" || why="$why; no /$pattern/ in the output"
  [ -z "$anti" ] || ! grep -qE -- "$anti" <<<"$out" || why="$why; /$anti/ in the output"
  if [ -z "$why" ]; then
    echo "ok   $name (rc $rc, $el s)"; pass=$((pass+1))
  else
    echo "FAIL $name: ${why#; }; output:"; sed 's/^/    /' <<<"$out" | head -30; fail=$((fail+1))
  fi
}

expect "ok, 1 process"  0 0 20 "^watchdog_probe ok: " "watchdog:" -- timeout 60 "$probe" ok 5 0
expect "hang ends in time" 3 0.9 4 "watchdog: error: test hang at step 0 has not completed after" "" \
  -- timeout 60 "$probe" hang
for n in 2 4; do
  expect "ok, $n ranks" 0 4 40 "^watchdog_probe ok: [0-9]+ steps on $n ranks" "watchdog:" \
    -- "${mpirun_cmd[@]}" -n "$n" "$probe" ok
  check_leftovers "ok, $n ranks"
done
expect "rank 1 stopped: named by rank 0" nonzero 2.5 15 "watchdog: .*rank 1@[^ ]+ silent for" "" \
  -- "${mpirun_cmd[@]}" -n 2 "$probe" stop
check_leftovers "rank 1 stopped"
expect "rank 0 stopped: named by rank 1" nonzero 2.5 15 \
  "\[rank 1@[^]]+\] watchdog: .*rank 0@[^ ]+ silent for" "" \
  -- "${mpirun_cmd[@]}" -n 2 "$probe" stop0
check_leftovers "rank 0 stopped"
expect "rank 1 late: rank 0's deadline names it" 3 2 15 \
  "watchdog: .*rank 1@[^ ]+ is alive at step 12, not in a collective" "" \
  -- "${mpirun_cmd[@]}" -n 2 "$probe" late
check_leftovers "rank 1 late"
expect "rank 1 killed: job ends" nonzero 0 15 "" "" -- "${mpirun_cmd[@]}" -n 2 "$probe" die
check_leftovers "rank 1 killed"

echo "test_watchdog: $pass checks passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
