#!/usr/bin/env bash
# Progress previews during training (log.preview_every), checked with an independent PNG
# decoder (PIL) against `sddit sample`:
#  - 20 steps on the digits (constant learning rate and generation EMA 0.9, so that the EMA
#    moves within 20 steps) with previews every 10: samples-00000010.png, samples-00000020.png
#    and loss.png appear, with the sizes the layout implies (10 classes x 3, 8x8 cells upscaled
#    4x, 1-px separators: 100 x 331; the plot 900 x 360);
#  - the step-20 grid equals `sddit sample --classes 0,..,9 --per-class 3 --steps 4
#    --guidance 1.5 --seed 0` on the step-20 checkpoint, rendered as round((x + 1) * 127.5)
#    clipped to 0..255 (at most 1 grey level apart: the sampler batches differ);
#  - the step-10 grid differs from the step-20 one (the previews follow the training);
#  - the loss plot holds both curves (blue and red pixels in their panels);
#  - previews that cannot be written (progress/ is a file) only warn: the run finishes and
#    checkpoints.
# Usage: test_preview.sh SDDIT SOURCE_ROOT   (exit 77: skipped without python3 + h5py + PIL)
set -u
sddit="$1"; root="$2"
py=/usr/bin/python3
if ! "$py" -c 'import numpy, h5py, PIL, sklearn' 2>/dev/null; then
  echo "skip: $py lacks numpy/h5py/PIL/sklearn (run launch/install-deps.sh)"; exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sd_test_preview.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { echo "ok   $*"; pass=$((pass+1)); }
bad() { echo "FAIL $*"; fail=$((fail+1)); }
"$py" "$root/data-prep/digits.py" --out "$tmp/digits.h5" >/dev/null || { echo "FAIL digits.py"; exit 1; }
common=(train --config "$root/launch/configs/digits.ini" --data.path="$tmp/digits.h5"
        --train.steps=20 --train.log_every=5 --ckpt.every=10 --ckpt.keep=0
        --log.preview_every=10 --log.preview_per_class=3 --log.preview_steps=4
        --log.preview_guidance=1.5 --optim.ema_decay=0.9 --optim.warmup_steps=0
        --optim.lr_schedule=constant)
"$sddit" "${common[@]}" --train.out_dir="$tmp/r" >"$tmp/r.log" 2>&1 || bad "training failed: $(tail -3 "$tmp/r.log")"
grep -q "# preview: .*samples-00000020.png (10 x 3 samples, 4 Heun steps, guidance 1.5)" "$tmp/r.log" \
  && ok "the progress says where the previews went" || bad "no preview line: $(grep preview "$tmp/r.log")"
"$sddit" sample --checkpoint "$tmp/r/checkpoints/ckpt-00000020.h5" --classes 0,1,2,3,4,5,6,7,8,9 \
  --per-class 3 --steps 4 --guidance 1.5 --seed 0 --out "$tmp/s20.h5" >"$tmp/s.log" 2>&1 \
  || bad "sddit sample failed: $(tail -2 "$tmp/s.log")"
out=$("$py" - "$tmp/r/progress" "$tmp/s20.h5" <<'PY'
import os, sys
import h5py, numpy as np
from PIL import Image
d, sfile = sys.argv[1], sys.argv[2]
res = []
def check(cond, msg):
    res.append(("ok  " if cond else "FAIL") + " " + msg)
names = sorted(os.listdir(d))
check(names == ["loss.png", "samples-00000010.png", "samples-00000020.png"], "files: %s" % names)
g10 = np.asarray(Image.open(os.path.join(d, "samples-00000010.png")).convert("RGB"))
g20 = np.asarray(Image.open(os.path.join(d, "samples-00000020.png")).convert("RGB"))
check(g20.shape == (331, 100, 3), "grid size %s (want 331 x 100)" % (g20.shape,))
x = h5py.File(sfile, "r")["samples"][:, 0].astype(np.float64)  # (30, 8, 8)
want = np.full((331, 100), 128, np.int64)
u8 = np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.int64)
for i in range(30):
    r, c = divmod(i, 3)
    want[1 + r * 33:1 + r * 33 + 32, 1 + c * 33:1 + c * 33 + 32] = np.kron(u8[i], np.ones((4, 4), np.int64))
got = g20[:, :, 0].astype(np.int64)
grey = bool((g20[:, :, 0] == g20[:, :, 1]).all() and (g20[:, :, 1] == g20[:, :, 2]).all())
diff = np.abs(got - want)
k = np.unravel_index(int(np.argmax(diff)), diff.shape)
check(grey and diff.max() <= 1, "step-20 grid vs `sddit sample`: max difference %d grey levels at "
      "(row %d, col %d): %d vs %d; %.2f%% of pixels differ (limit 1 level)" % (
          diff.max(), k[0], k[1], got[k], want[k], 100 * (diff > 0).mean()))
check(np.abs(g10.astype(int) - g20.astype(int)).max() > 16, "step-10 and step-20 grids differ")
lp = np.asarray(Image.open(os.path.join(d, "loss.png")).convert("RGB")).astype(int)
check(lp.shape == (360, 900, 3), "loss plot size %s" % (lp.shape,))
blue = (lp[:, :450, 2] > 150) & (lp[:, :450, 0] < 80)
red = (lp[:, 450:, 0] > 180) & (lp[:, 450:, 1] < 80)
check(blue.sum() > 50 and red.sum() > 50, "loss plot: %d blue (L_gen) and %d red (L_dis) pixels"
      % (blue.sum(), red.sum()))
print("\n".join(res))
sys.exit(0 if all(r.startswith("ok") for r in res) else 1)
PY
)
echo "$out" | while read -r l; do echo "  $l"; done
echo "$out" | grep -q FAIL && bad "preview images (above)" || ok "preview images: files, sizes, grid = sddit sample, plot curves"
mkdir -p "$tmp/f" && touch "$tmp/f/progress"
"$sddit" "${common[@]}" --train.out_dir="$tmp/f" >"$tmp/f.log" 2>&1; rc=$?
if [ $rc -eq 0 ] && grep -q "warning: no previews" "$tmp/f.log" && [ -f "$tmp/f/checkpoints/ckpt-00000020.h5" ]; then
  ok "an unwritable preview directory warns; the run finishes and checkpoints"
else
  bad "unwritable previews: exit $rc, $(grep -E 'warning|error' "$tmp/f.log" | head -2)"
fi
echo "test_preview: $pass checks passed, $fail failed"
[ "$fail" -eq 0 ]
