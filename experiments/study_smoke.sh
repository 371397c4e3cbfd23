#!/usr/bin/env bash
# Smoke test of experiments/study.py: its --smoke mode (2 variants, 1 seed, 60 steps,
# checkpoints every 30, 10 samples per class) into a temp dir with the given build's sddit;
# checks results.json (2 variants, finite accuracy and fd), curves.png and results.md.
# Usage: experiments/study_smoke.sh SDDIT_EXE|BUILD_DIR SOURCE_ROOT   (exit 77: skipped)
set -euo pipefail
arg=${1:?usage: study_smoke.sh SDDIT_EXE|BUILD_DIR SOURCE_ROOT}
src=${2:?usage: study_smoke.sh SDDIT_EXE|BUILD_DIR SOURCE_ROOT}
if [ -d "$arg" ]; then sddit=$arg/src/sddit; else sddit=$arg; fi
[ -x "$sddit" ] || { echo "study_smoke: no sddit at $sddit" >&2; exit 1; }
if ! /usr/bin/python3 -c 'import numpy, h5py, PIL, sklearn' 2>/dev/null; then
  echo "study_smoke: skipped (needs /usr/bin/python3 with numpy, h5py, PIL, sklearn)"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 "$src/experiments/study.py" --smoke --sddit "$sddit" --out "$tmp/study"
/usr/bin/python3 - "$tmp/study" <<'PY'
import json, math, os, sys
d = sys.argv[1]
r = json.load(open(os.path.join(d, "results.json")))
rows = r["rows"]
vs = sorted({x["variant"] for x in rows})
assert vs == ["baseline", "sddit"], vs
for x in rows:
    assert math.isfinite(x["accuracy"]) and math.isfinite(x["fd"]), x
    assert 0 <= x["accuracy"] <= 1 and x["fd"] >= 0, x
for v in vs:
    steps = sorted(x["step"] for x in rows if x["variant"] == v)
    assert steps == [30, 60], (v, steps)
assert os.path.getsize(os.path.join(d, "curves.png")) > 0
md = open(os.path.join(d, "results.md")).read()
assert "smoke run: not a result" in md and "| baseline |" in md and "| sddit |" in md, md
print("study_smoke: ok: %d rows, variants %s" % (len(rows), ", ".join(vs)))
PY
# Resumable: a second run skips both runs.
/usr/bin/python3 "$src/experiments/study.py" --smoke --sddit "$sddit" --out "$tmp/study" \
  | grep -c 'result exists, skipped' | grep -qx 2
echo "study_smoke: resume skipped both runs"
