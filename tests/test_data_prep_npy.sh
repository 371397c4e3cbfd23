#!/usr/bin/env bash
# data-prep/npy_to_h5.py: fast-DiT-style <i>.npy folders become a format-1 file equal to the
# inputs in numeric file order (float32 exactly, float16 as numpy rounds), with one-copy
# (1, C, H, W) / (C, H, W) and two-copy (2, C, H, W) features, (1,) and scalar labels; and
# mismatched shapes, out-of-range labels, a missing partner file and a bad name are refused
# with messages naming the file, leaving no output behind.
set -euo pipefail
ROOT=${SD_SOURCE_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
PY=/usr/bin/python3
TOOL="$ROOT/data-prep/npy_to_h5.py"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

if ! why=$($PY -c 'import numpy, h5py' 2>&1); then
  echo "SKIP: $PY lacks numpy/h5py (launch/install-deps.sh installs them): $why"; exit 77
fi

# one (1, 4, 8, 8) feature and (1,) label per file, 12 files so that 10.npy sorts after 9.npy;
# a second set with (2, 4, 8, 8) features, (4, 8, 8)-shaped singles and scalar labels
$PY - "$T" <<'EOF' || fail "setup"
import os, sys, numpy as np
T = sys.argv[1]
rng = np.random.default_rng(3)
for d in ("f1", "l1", "f2", "l2", "f3", "l3"): os.makedirs(os.path.join(T, d))
for i in range(12):
    np.save("%s/f1/%d.npy" % (T, i), rng.standard_normal((1, 4, 8, 8)).astype(np.float32))
    np.save("%s/l1/%d.npy" % (T, i), np.array([i % 5], dtype=np.int64))
    np.save("%s/f2/%d.npy" % (T, i), rng.standard_normal((2, 4, 8, 8)).astype(np.float32))
    np.save("%s/l2/%d.npy" % (T, i), np.int64((3 * i) % 5))
for i in range(3):
    np.save("%s/f3/%d.npy" % (T, i), rng.standard_normal((4, 8, 8)).astype(np.float32))
    np.save("%s/l3/%d.npy" % (T, i), np.array([1], dtype=np.int32))
EOF

$PY "$TOOL" --features "$T/f1" --labels "$T/l1" --out "$T/o32.h5" --num-classes 5 --image-size 64 \
    --dtype float32 || fail "float32 conversion"
$PY "$TOOL" --features "$T/f1" --labels "$T/l1" --out "$T/o16.h5" --num-classes 5 --image-size 64 \
    > /dev/null || fail "float16 conversion"
$PY "$TOOL" --features "$T/f2" --labels "$T/l2" --out "$T/oflip.h5" --num-classes 5 --dtype float32 \
    > /dev/null || fail "two-copy conversion"
$PY "$TOOL" --features "$T/f3" --labels "$T/l3" --out "$T/o3.h5" --num-classes 2 --dtype float32 \
    > /dev/null || fail "(C, H, W) conversion"

$PY - "$T" <<'EOF' || fail "content checks"
import sys, h5py, numpy as np
T = sys.argv[1]
errs = []
def check(cond, msg):
    if not cond: errs.append(msg)
def inputs(fd, ld, n):
    return (np.stack([np.load("%s/%s/%d.npy" % (T, fd, i)) for i in range(n)]),
            np.array([int(np.load("%s/%s/%d.npy" % (T, ld, i)).reshape(())) for i in range(n)]))
x1, y1 = inputs("f1", "l1", 12)
x2, y2 = inputs("f2", "l2", 12)
x3, y3 = inputs("f3", "l3", 3)
with h5py.File(T + "/o32.h5", "r") as f:
    a = dict(f.attrs)
    want = {"format": "sddit-latents", "format_version": 1, "num_classes": 5, "image_size": 64,
            "latent_channels": 4, "scale_factor": 0.18215, "encoder": "sd-vae-ft-ema", "flipped": 0}
    for k, v in want.items():
        check(k in a and a[k] == v, "o32 attribute %s = %r, want %r" % (k, a.get(k), v))
    check(f["latents"].shape == (12, 4, 8, 8) and f["latents"].dtype == np.float32, "o32 latents")
    check(np.array_equal(f["latents"][...], x1[:, 0]), "o32 latents != inputs in numeric order")
    check(f["labels"].dtype == np.int32 and np.array_equal(f["labels"][...], y1), "o32 labels")
with h5py.File(T + "/o16.h5", "r") as f:
    check(f["latents"].dtype == np.float16, "o16 dtype %s" % f["latents"].dtype)
    check(np.array_equal(f["latents"][...], x1[:, 0].astype(np.float16)), "o16 != float16(inputs)")
with h5py.File(T + "/oflip.h5", "r") as f:
    check(f.attrs["flipped"] == 1 and f.attrs["image_size"] == 256, "oflip attributes")
    L = f["latents"][...]
    check(L.shape == (24, 4, 8, 8), "oflip shape %s" % (L.shape,))
    check(np.array_equal(L[:12], x2[:, 0]) and np.array_equal(L[12:], x2[:, 1]),
          "oflip: rows i / N + i are not copies 0 / 1 of file i")
    check(np.array_equal(f["labels"][...], np.concatenate([y2, y2])), "oflip labels")
with h5py.File(T + "/o3.h5", "r") as f:
    check(np.array_equal(f["latents"][...], x3) and list(f["labels"][...]) == [1, 1, 1], "o3")
for e in errs: print("  " + e)
sys.exit(1 if errs else 0)
EOF

refused() {  # refused PATTERN ARGS...: the converter fails, names what PATTERN says, leaves nothing
  local pat="$1"; shift
  rm -f "$T/bad.h5" "$T/bad.h5.partial"
  if $PY "$TOOL" --out "$T/bad.h5" "$@" > "$T/log" 2>&1; then fail "accepted: $*"; fi
  grep -q -- "$pat" "$T/log" || { cat "$T/log"; fail "message should match '$pat'"; }
  [ ! -e "$T/bad.h5" ] && [ ! -e "$T/bad.h5.partial" ] || fail "output left behind: $*"
}
cp -r "$T/f1" "$T/fs"; $PY -c 'import numpy as np, sys; np.save(sys.argv[1], np.zeros((1, 4, 4, 4), np.float32))' "$T/fs/7.npy"
refused "$T/fs/7.npy has shape (1, 4, 4, 4) but $T/fs/0.npy has (1, 4, 8, 8)" --features "$T/fs" --labels "$T/l1" --num-classes 5
refused "$T/l1/4.npy holds label 4, outside \[0, --num-classes = 4)" --features "$T/f1" --labels "$T/l1" --num-classes 4
cp -r "$T/l1" "$T/lm"; rm "$T/lm/9.npy"
refused "$T/lm has no 9.npy to go with $T/f1/9.npy" --features "$T/f1" --labels "$T/lm" --num-classes 5
cp -r "$T/f1" "$T/fn"; cp "$T/f1/0.npy" "$T/fn/x1.npy"
refused "$T/fn/x1.npy: file name is not <number>.npy" --features "$T/fn" --labels "$T/l1" --num-classes 5
echo "test_data_prep_npy: ok"
