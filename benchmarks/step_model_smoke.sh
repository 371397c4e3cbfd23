#!/usr/bin/env bash
# Smoke test of benchmarks/step_model.py: XL/2 and B/2 at their defaults with the FLOP check
# (the op list adds up to the analytic FLOPs per image within 5%); checks that the table and
# the summary lines are printed and every MFU is in (0, 100]. Exits 77 (skipped) without
# /usr/bin/python3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
[ -x "$py" ] || { echo "skip: no $py"; exit 77; }
for preset in XL/2 B/2; do
  out=$("$py" "$here/step_model.py" --preset "$preset" --check-flops)
  echo "$out"
  echo "$out" | "$py" -c '
import sys
lines = sys.stdin.read().splitlines()
hdr = [i for i, l in enumerate(lines) if l.split()[:2] == ["op", "bound"]]
assert len(hdr) == 1, "no table header"
ops = [l for l in lines[hdr[0] + 1:] if l.strip()]
ops = ops[:next(i for i, l in enumerate(ops) if "img/s" in l)]
assert len(ops) >= 10, "want the op rows, got %d" % len(ops)
share = sum(float(l.split()[-1].rstrip("%")) for l in ops)
assert abs(share - 100.0) < 1.0, "shares add up to %.1f%%" % share
mfu = [float(l.split("MFU")[1].strip().rstrip("%")) for l in lines if "MFU" in l and "img/s" in l]
assert len(mfu) == 7, "want 7 summary lines, got %d" % len(mfu)
assert all(0.0 < m <= 100.0 for m in mfu), mfu
assert any(l.startswith("# FLOP check") for l in lines), "no FLOP check"
print("ok: %d op rows, MFU %s" % (len(ops), mfu))
'
done
