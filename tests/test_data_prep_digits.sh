#!/usr/bin/env bash
# data-prep/digits.py writes sklearn's 8x8 digits as a format-1 file: exact attributes, shapes,
# dtypes, labels and values (x = v/8 - 1); a rerun replaces it with the same contents; the
# validator (data-prep/sddit_h5.py) accepts it and names the first bad label / value of a
# damaged copy.
set -euo pipefail
ROOT=${SD_SOURCE_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
PY=/usr/bin/python3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

if ! why=$($PY -c 'import numpy, h5py, sklearn.datasets' 2>&1); then
  echo "SKIP: $PY lacks numpy/h5py/scikit-learn (launch/install-deps.sh installs them): $why"
  exit 77
fi

# default output path is data/digits.h5 under the current directory
(cd "$T" && $PY "$ROOT/data-prep/digits.py") > "$T/out1.txt" || fail "digits.py failed"
cat "$T/out1.txt"
[ -f "$T/data/digits.h5" ] || fail "no data/digits.h5 under the current directory"
[ "$(wc -l < "$T/out1.txt")" -eq 1 ] || fail "expected one line of output"
grep -q "digits.h5" "$T/out1.txt" || fail "the output line does not name the file"
cp "$T/data/digits.h5" "$T/first.h5"
# idempotent: a second run replaces the file (via a temporary name) with the same contents
$PY "$ROOT/data-prep/digits.py" --out "$T/data/digits.h5" > /dev/null || fail "rerun failed"
[ ! -e "$T/data/digits.h5.partial" ] || fail "a .partial file was left behind"

$PY - "$T/data/digits.h5" "$T/first.h5" <<'EOF' || fail "content checks"
import sys
import h5py, numpy as np
from sklearn.datasets import load_digits
path, first = sys.argv[1], sys.argv[2]
d = load_digits()
errs = []
def check(cond, msg):
    if not cond: errs.append(msg)
with h5py.File(path, "r") as f:
    a = dict(f.attrs)
    want = {"format": "sddit-latents", "format_version": 1, "num_classes": 10, "image_size": 8,
            "latent_channels": 1, "scale_factor": 1.0, "encoder": "none (pixels, v/8 - 1)",
            "flipped": 0}
    for k, v in want.items():
        check(k in a and a[k] == v, "attribute %s = %r, want %r" % (k, a.get(k), v))
    for k in ("format_version", "num_classes", "image_size", "latent_channels", "flipped"):
        check(np.issubdtype(np.asarray(a[k]).dtype, np.integer), "attribute %s is not an integer" % k)
    check(np.issubdtype(np.asarray(a["scale_factor"]).dtype, np.floating), "scale_factor not a float")
    check(isinstance(a["source"], str) and "load_digits" in a["source"], "source %r" % a.get("source"))
    check(sorted(f.keys()) == ["labels", "latents"], "datasets %s" % sorted(f.keys()))
    x, y = f["latents"], f["labels"]
    check(x.shape == (1797, 1, 8, 8) and x.dtype == np.float32, "latents %s %s" % (x.shape, x.dtype))
    check(y.shape == (1797,) and y.dtype == np.int32, "labels %s %s" % (y.shape, y.dtype))
    check(x.chunks is not None and 1 <= x.chunks[0] <= 16 and x.chunks[1:] == (1, 8, 8),
          "latents chunks %s (want a few samples per chunk)" % (x.chunks,))
    X, Y = x[...], y[...]
hist, ref = np.bincount(Y, minlength=10), np.bincount(d.target, minlength=10)
check(np.array_equal(hist, ref), "label histogram %s != sklearn %s" % (hist, ref))
check(np.array_equal(Y, d.target), "labels are not in sklearn's order")
for i in (0, 1, 17, 1000, 1796):
    want = (d.images[i] / 8.0 - 1.0).astype(np.float32)
    check(np.array_equal(X[i, 0], want), "sample %d: %s != v/8-1 %s" % (i, X[i, 0].ravel()[:8], want.ravel()[:8]))
check(np.array_equal(X[:, 0], (d.images / 8.0 - 1.0).astype(np.float32)), "some value != v/8-1")
check(X.min() == -1.0 and X.max() == 1.0, "range [%g, %g], want [-1, 1]" % (X.min(), X.max()))
with h5py.File(first, "r") as g:
    check(np.array_equal(g["latents"][...], X) and np.array_equal(g["labels"][...], Y),
          "the rerun changed the contents")
for e in errs: print("  " + e)
sys.exit(1 if errs else 0)
EOF

# the validator accepts the file and names the first problem of damaged copies
$PY "$ROOT/data-prep/sddit_h5.py" "$T/data/digits.h5" | grep -q ": ok$" || fail "validator rejected digits.h5"
cp "$T/first.h5" "$T/badlabel.h5"; cp "$T/first.h5" "$T/badvalue.h5"
$PY - "$T" <<'EOF'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1] + "/badlabel.h5", "r+") as f: f["labels"][5] = 10
with h5py.File(sys.argv[1] + "/badvalue.h5", "r+") as f: f["latents"][3, 0, 2, 1] = np.nan
EOF
if $PY "$ROOT/data-prep/sddit_h5.py" "$T/badlabel.h5" 2> "$T/err.txt"; then fail "bad label accepted"; fi
grep -q "/labels\[5\] = 10 is outside \[0, num_classes = 10)" "$T/err.txt" || { cat "$T/err.txt"; fail "label message"; }
if $PY "$ROOT/data-prep/sddit_h5.py" "$T/badvalue.h5" 2> "$T/err.txt"; then fail "NaN accepted"; fi
grep -q "/latents\[3, 0, 2, 1\] is nan" "$T/err.txt" || { cat "$T/err.txt"; fail "NaN message"; }
$PY "$ROOT/data-prep/sddit_h5.py" --quick "$T/badvalue.h5" > /dev/null || fail "--quick should skip the value scan"
echo "test_data_prep_digits: ok"
