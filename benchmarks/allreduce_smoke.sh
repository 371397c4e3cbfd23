#!/usr/bin/env bash
# Smoke run of the all-reduce benchmark: 2 ranks under mpirun, 8 B .. 1 MiB, 3 iterations after
# 1 warm-up, checking on. Fails when the run fails, the table is missing or incomplete (18 sizes),
# or any row reports wrong elements. Exit 77 (skipped) without mpirun.
# Usage: allreduce_smoke.sh ALLREDUCE_EXECUTABLE
set -u
exe="$1"
command -v mpirun >/dev/null || { echo "mpirun not found: skipped"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
out=$(timeout 100 mpirun -n 2 "$exe" -b 8 -e 1M -n 3 -w 1 2>&1); rc=$?
echo "$out"
[ $rc -eq 0 ] || { echo "FAIL: allreduce exited with $rc"; exit 1; }
grep -q "^# ranks 2 " <<<"$out" || { echo "FAIL: header (ranks 2) missing"; exit 1; }
grep -q "size.*count.*type.*time_us.*algbw_GBs.*busbw_GBs.*wrong" <<<"$out" \
  || { echo "FAIL: table header missing"; exit 1; }
rows=$(awk '$3 == "float" && NF == 7' <<<"$out")
nrows=$(grep -c . <<<"$rows")
[ "$nrows" -eq 18 ] || { echo "FAIL: expected 18 rows (8 B .. 1 MiB), got $nrows"; exit 1; }
bad=$(awk '$7 != "0"' <<<"$rows")
[ -z "$bad" ] || { echo "FAIL: rows with wrong elements:"; echo "$bad"; exit 1; }
grep -q "^  *1048576 *262144 *float" <<<"$rows" || { echo "FAIL: 1 MiB row missing"; exit 1; }
echo "ok: allreduce smoke, $nrows sizes, no wrong elements"
# The NCCL path: a table on a machine with GPUs, else one "# skip:" line and exit 0.
out=$(timeout 60 "$exe" --nccl -b 8 -e 1K -n 2 -w 1 2>&1); rc=$?
if [ $rc -eq 0 ] && { grep -q "^# skip: --nccl: " <<<"$out" || grep -q "NCCL, device memory" <<<"$out"; }; then
  echo "ok: --nccl: $(head -1 <<<"$out")"
else
  echo "FAIL: --nccl: exit $rc"; echo "$out" | tail -3; exit 1
fi
