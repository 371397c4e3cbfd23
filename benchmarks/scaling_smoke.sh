#!/usr/bin/env bash
# Smoke test of benchmarks/scaling_model.py: a tiny option set; checks that the table is
# printed (header + one row per preset x GPU count) and every efficiency is in (0, 1].
# Exits 77 (skipped) when /usr/bin/python3 or its numpy is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
[ -x "$py" ] || { echo "skip: no $py"; exit 77; }
"$py" -c 'import numpy' 2>/dev/null || { echo "skip: no numpy for $py"; exit 77; }
out=$("$py" "$here/scaling_model.py" --presets S/2,XL/2 --gpus 8,16,256 --cpu-check)
echo "$out"
echo "$out" | "$py" -c '
import sys
lines = sys.stdin.read().splitlines()
hdr = [i for i, l in enumerate(lines) if l.split()[:7] == ["preset", "gpus", "per_gpu_batch", "step_ms", "comm_ms", "exposed_ms", "efficiency"]]
assert len(hdr) == 1, "no table header"
rows = [l.split() for l in lines[hdr[0] + 1:] if l and not l.startswith("#")]
assert len(rows) == 6, "want 6 rows, got %d" % len(rows)
for r in rows:
    assert len(r) == 7, r
    eff, step, exp = float(r[6]), float(r[3]), float(r[5])
    assert 0.0 < eff <= 1.0, "efficiency out of (0, 1]: %s" % r
    assert step > 0 and 0 <= exp < step, r
assert any(l.startswith("# target: XL/2") for l in lines), "no target line"
assert any(l.startswith("# CPU check") for l in lines), "no CPU check"
print("ok: %d rows" % len(rows))
'
