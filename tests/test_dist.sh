#!/usr/bin/env bash
# The distributed layer's collectives under mpirun with 1, 2 and 4 ranks (oversubscribed on
# small machines), with chunks of 1000 elements so counts span many chunks: every sum of dyadic
# values must be exact, broadcasts and maxima exact. Also without a launcher (world of one).
# Usage: test_dist.sh DIST_PROBE
set -u
probe="$1"
command -v mpirun >/dev/null || { echo "mpirun not found: skipped"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
pass=0; fail=0
run() {  # run NAME CMD...
  local name="$1"; shift
  local out rc
  out=$(timeout 120 "$@" 2>&1); rc=$?
  echo "$out" | grep -E "^(ok|FAIL)" | sed "s/^/  [$name] /"
  if [ $rc -eq 0 ] && grep -q "^passed" <<<"$out" && ! grep -q "^FAIL" <<<"$out"; then
    echo "ok   $name"; pass=$((pass+1))
  else
    echo "FAIL $name: exit $rc"; echo "$out" | tail -5; fail=$((fail+1))
  fi
}
SD_DIST_CHUNK=1000 run "no launcher" "$probe"
for n in 1 2 4; do
  run "mpirun -n $n, chunk 1000" mpirun -n "$n" -x SD_DIST_CHUNK=1000 "$probe"
done
run "mpirun -n 2, one chunk" mpirun -n 2 "$probe"
echo "test_dist: $pass checks passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
