#!/usr/bin/env bash
# data-prep/decode_latents.py on a tiny randomly initialised AutoencoderKL (2 down blocks:
# factor 2, 4 latent channels; its decoder's output scaled up so that the images span the
# whole 0..255 range and clamp) and a fake `sddit sample` file whose /samples are
# vae.encode(img).latent_dist.mean * 0.18215 of 5 generated 32x32 images, all on CPU:
#  - --out DIR gets one PNG per sample (index_class<label>.png, index_null.png for the null
#    class) and --npz an .npz with
#    arr_0 uint8 (5, 32, 32, 3) and arr_1 the labels, readable by np.load and by streaming
#    the zip member's .npy header and rows (as the ADM evaluator does); the PNGs equal arr_0;
#  - arr_0 equals the test's own direct decode ((vae.decode(z / 0.18215) + 1) * 127.5, clamped
#    and rounded) to within 1 level (a batch of 3 then 2: only the batching differs);
#  - two files (as ranks write them) decode to the same .npz as one; --limit;
#  - errors: no scale_factor attribute and no --scale-factor (then the flag works), latents
#    with 3 channels for a 4-channel VAE, an image_size the VAE does not decode to, a wrong
#    format attribute, a missing file, neither --out nor --npz.
set -euo pipefail
ROOT=${SD_SOURCE_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
TOOL="$ROOT/data-prep/decode_latents.py"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
. "$ROOT/tests/tiny_vae.sh"
require_vae_deps
make_tiny_vae "$T/vae" 4321 8.0 || fail "making the tiny VAE"

# ---- a tiny VAE, five images, their latents as a samples file (and variants)
$PY - "$T" <<'EOF' || fail "setup"
import os, sys
sys.path.insert(0, os.environ["SD_PYDEPS"])
import numpy as np, torch, h5py, safetensors.torch
from diffusers import AutoencoderKL
T = sys.argv[1]
vae = AutoencoderKL.from_pretrained(T + "/vae")  # made by make_tiny_vae
rng = np.random.default_rng(11)
yy, xx = np.mgrid[0:32, 0:32] / 31.0
imgs = []
for k in range(5):
    a = np.stack([np.sin(3 * xx + k), np.cos(2 * yy - k), xx * yy * 2 - 1], 0)
    imgs.append(np.clip(a + 0.2 * rng.standard_normal((3, 32, 32)), -1, 1))
x = torch.tensor(np.stack(imgs), dtype=torch.float32)
vae.eval()
with torch.no_grad():
    z = (vae.encode(x).latent_dist.mean * 0.18215).numpy()
labels = np.array([3, 0, 7, 7, 10], np.int32)    # 10 = num_classes: the null class
attrs = {"format": "sddit-samples", "format_version": np.int64(1), "sampler": "test",
         "steps": np.int64(0), "guidance": 1.0, "seed": np.int64(0), "weights": "ema",
         "checkpoint": "none", "train_step": np.int64(0), "num_classes": np.int64(10),
         "image_size": np.int64(32), "latent_channels": np.int64(4), "scale_factor": 0.18215,
         "encoder": "tiny"}
def write(name, z, y, drop=(), **over):
    with h5py.File("%s/%s.h5" % (T, name), "w") as f:
        f["samples"] = np.asarray(z, np.float32)
        f["labels"] = np.asarray(y, np.int32)
        a = dict(attrs); a.update(over)
        for k, v in a.items():
            if k not in drop:
                f.attrs[k] = v
write("s", z, labels)
write("s_a", z[:2], labels[:2])
write("s_b", z[2:], labels[2:])
write("nosf", z, labels, drop=("scale_factor",))
write("ch3", z[:, :3], labels, drop=("latent_channels",))
write("wrongfmt", z, labels, format="sddit-latents")
write("badsize", z, labels, image_size=np.int64(64))
np.save(T + "/z.npy", z)
EOF

$PY "$TOOL" --samples "$T/s.h5" --vae "$T/vae" --out "$T/png" --npz "$T/s.npz" --batch-size 3 \
    --device cpu > "$T/log" 2>&1 || { cat "$T/log"; fail "decode"; }
cat "$T/log"
grep -q "decode_latents.py: 5/5 images (100.0%)" "$T/log" || fail "no progress line"
$PY "$TOOL" --samples "$T/s_a.h5" "$T/s_b.h5" --vae "$T/vae" --npz "$T/two" --batch-size 4 \
    > "$T/log" 2>&1 || { cat "$T/log"; fail "decode of two files"; }
$PY "$TOOL" --samples "$T/s.h5" --vae "$T/vae" --npz "$T/lim.npz" --limit 2 \
    > "$T/log" 2>&1 || { cat "$T/log"; fail "decode with --limit"; }
$PY "$TOOL" --samples "$T/nosf.h5" --vae "$T/vae" --npz "$T/flag.npz" --scale-factor 0.18215 \
    > "$T/log" 2>&1 || { cat "$T/log"; fail "decode with --scale-factor"; }

$PY - "$T" <<'EOF' || fail "output checks"
import os, sys
sys.path.insert(0, os.environ["SD_PYDEPS"])
import numpy as np, torch, safetensors.torch
from PIL import Image
from diffusers import AutoencoderKL
T = sys.argv[1]
errs = []
def check(cond, msg):
    if not cond: errs.append(msg)
labels = [3, 0, 7, 7, 10]
d = np.load(T + "/s.npz")
check(sorted(d.files) == ["arr_0", "arr_1"], "npz members %s" % d.files)
a = d["arr_0"]
check(a.dtype == np.uint8 and a.shape == (5, 32, 32, 3), "arr_0 %s %s" % (a.dtype, a.shape))
check(d["arr_1"].tolist() == labels, "arr_1 %s" % d["arr_1"])
# read as the ADM evaluator streams it: the zip member arr_0.npy, a version 1.0 .npy header
# (C order, uint8), then raw rows
import zipfile
with zipfile.ZipFile(T + "/s.npz") as zf, zf.open("arr_0.npy") as fp:
    ver = np.lib.format.read_magic(fp)
    shape, fortran, dt = np.lib.format.read_array_header_1_0(fp)
    rows = np.frombuffer(fp.read(), np.uint8)
check(ver == (1, 0) and shape == (5, 32, 32, 3) and not fortran and dt == np.uint8,
      "arr_0.npy header: version %s, shape %s, fortran %s, dtype %s" % (ver, shape, fortran, dt))
check(rows.size == a.size and np.array_equal(rows.reshape(a.shape), a), "streamed rows != np.load")
# the test's own decode: one batch, ADM's ((x + 1) * 127.5) rounding
vae = AutoencoderKL.from_pretrained(T + "/vae", low_cpu_mem_usage=False).eval()
z = torch.from_numpy(np.load(T + "/z.npy"))
with torch.no_grad():
    x = vae.decode(z / 0.18215).sample.numpy()
ref = np.clip(np.round((x + 1) * 127.5), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
diff = np.abs(a.astype(int) - ref.astype(int))
check(diff.max() <= 1, "arr_0 differs from a direct decode by up to %d levels" % diff.max())
check(a.std() > 40 and (a == 0).mean() > 0.01 and (a == 255).mean() > 0.01,
      "decoded images are degenerate (std %.1f, clamped %.3f/%.3f)" % (a.std(), (a == 0).mean(), (a == 255).mean()))
names = sorted(os.listdir(T + "/png"))
want = ["%06d_%s.png" % (i, "null" if y == 10 else "class%d" % y) for i, y in enumerate(labels)]
check(names == want, "PNGs %s, want %s" % (names, want))
for i, nm in enumerate(want):
    if nm in names:
        im = Image.open(os.path.join(T, "png", nm))
        check(im.mode == "RGB" and np.array_equal(np.asarray(im), a[i]), "%s != arr_0[%d]" % (nm, i))
two = np.load(T + "/two.npz")
check(np.array_equal(two["arr_0"], a) and np.array_equal(two["arr_1"], d["arr_1"]),
      "two files (batch 4) != one file (batch 3)")
lim = np.load(T + "/lim.npz")
check(np.array_equal(lim["arr_0"], a[:2]) and lim["arr_1"].tolist() == labels[:2], "--limit 2")
check(np.array_equal(np.load(T + "/flag.npz")["arr_0"], a), "--scale-factor 0.18215 != attribute")
check(not any(f.endswith(".partial") for f in os.listdir(T)), "a .partial file was left")
print("decoded: max |diff| to a direct decode %d level(s); pixel std %.1f" % (diff.max(), a.std()))
for e in errs: print("  " + e)
sys.exit(1 if errs else 0)
EOF

# ---- errors: one line, no output left behind
expect_error() {  # expect_error NAME PATTERN ARGS...
  local name=$1 pat=$2; shift 2
  if $PY "$TOOL" --vae "$T/vae" --npz "$T/err_$name.npz" "$@" > "$T/log" 2>&1; then fail "$name accepted"; fi
  grep -q -- "$pat" "$T/log" || { cat "$T/log"; fail "$name: message does not say '$pat'"; }
  [ ! -e "$T/err_$name.npz" ] && [ ! -e "$T/err_$name.npz.partial" ] || fail "$name: output left"
}
expect_error nosf "has no scale_factor attribute; pass --scale-factor" --samples "$T/nosf.h5"
expect_error channels "/samples has 3 channels but the VAE $T/vae has latent_channels 4" --samples "$T/ch3.h5"
expect_error size "latents 16x16 decode to 32x32 images with this VAE (factor 2), but image_size is 64" --samples "$T/badsize.h5"
expect_error format "format is 'sddit-latents', expected 'sddit-samples'" --samples "$T/wrongfmt.h5"
expect_error missing "nothere.h5: no such file" --samples "$T/nothere.h5"
if $PY "$TOOL" --samples "$T/s.h5" --vae "$T/vae" > "$T/log" 2>&1; then fail "no output accepted"; fi
grep -q "nothing to write" "$T/log" || { cat "$T/log"; fail "no-output message"; }
echo "test_decode_latents: ok"
