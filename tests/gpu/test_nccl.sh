#!/usr/bin/env bash
# The NCCL communicator on GPUs (nccl_probe.c): one process without a launcher, with small
# chunks (SD_NCCL_CHUNK=1000, so counts span many NCCL calls) and with the default chunk; then,
# when at least 2 GPUs are visible and mpirun exists, one rank per GPU (and 2 ranks when there
# are more than 2). Exits 77 (skip) when the build has no NCCL or no GPU is visible.
# Usage: test_nccl.sh NCCL_PROBE
set -u
probe="$1"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
pass=0; fail=0; ngpu=0
run() {  # run NAME CMD...
  local name="$1"; shift
  local out rc n
  out=$(timeout 300 "$@" 2>&1); rc=$?
  if [ $rc -eq 77 ]; then
    echo "$out"; echo "test_nccl: skipped ($name)"; exit 77
  fi
  n=$(sed -n 's/^visible devices \([0-9]*\).*/\1/p' <<<"$out" | head -1)
  [ -n "$n" ] && ngpu=$n
  echo "$out" | grep -E "^(ok|FAIL|note)" | sed "s/^/  [$name] /"
  if [ $rc -eq 0 ] && grep -q "^passed" <<<"$out" && ! grep -q "^FAIL" <<<"$out"; then
    echo "ok   $name"; pass=$((pass+1))
  else
    echo "FAIL $name: exit $rc"; echo "$out" | tail -8; fail=$((fail+1))
  fi
}
SD_NCCL_CHUNK=1000 run "no launcher, chunk 1000" "$probe"
run "no launcher, default chunk" "$probe"
if [ "$ngpu" -ge 2 ]; then
  if command -v mpirun >/dev/null; then
    run "mpirun -n $ngpu, chunk 1000" mpirun -n "$ngpu" -x SD_NCCL_CHUNK=1000 "$probe"
    run "mpirun -n $ngpu, default chunk" mpirun -n "$ngpu" "$probe"
    if [ "$ngpu" -gt 2 ]; then
      run "mpirun -n 2, chunk 1000" mpirun -n 2 -x SD_NCCL_CHUNK=1000 "$probe"
    fi
  else
    echo "note: $ngpu GPUs but no mpirun: multi-rank checks skipped"
  fi
else
  echo "note: fewer than 2 GPUs visible: multi-rank checks skipped"
fi
echo "test_nccl: $pass checks passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
