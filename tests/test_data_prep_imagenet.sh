#!/usr/bin/env bash
# data-prep/imagenet_latents.py on a tiny randomly initialised AutoencoderKL (2 down blocks:
# factor 2, 4 latent channels) and 6 generated images in 2 classes (JPEG and PNG, RGB, grey
# and RGBA, sizes 33..200 px), at --image-size 32 (latents 4 x 16 x 16), all on CPU:
#  - /moments: shapes, attributes and labels; mean and log-variance equal a direct
#    vae.encode(x).latent_dist of the test's own ADM centre crop, |diff| <= 1e-5 + 1e-5 |ref|
#    (only the batch composition differs); --flip rows N + i equal the encoding of the
#    mirrored crop;
#  - /latents (float16): equal float16((mean + exp(logvar / 2) * eps) * 0.18215) with eps
#    from the documented Philox keying, to one float16 rounding (|diff| <= 1e-3 (1 + |ref|));
#  - a run interrupted twice (--stop-after) and resumed equals an uninterrupted one bitwise;
#    --devices cpu,cpu equals --devices cpu bitwise;
#  - a complete output is left alone, a changed command is refused (complete and partial);
#  - an unreadable image is named (one and two workers); missing root; no images.
set -euo pipefail
ROOT=${SD_SOURCE_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
TOOL="$ROOT/data-prep/imagenet_latents.py"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
. "$ROOT/tests/tiny_vae.sh"
require_vae_deps
make_tiny_vae "$T/vae" 1234 1.0 || fail "making the tiny VAE"

# ---- a tiny VAE and six images
$PY - "$T" <<'EOF' || fail "setup"
import os, sys
sys.path.insert(0, os.environ["SD_PYDEPS"])
import numpy as np, torch, safetensors.torch
from PIL import Image
from diffusers import AutoencoderKL
T = sys.argv[1]
vae = AutoencoderKL.from_pretrained(T + "/vae")  # made by make_tiny_vae
rng = np.random.default_rng(7)
def make(w, h, mode, path, **kw):
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx * yy) % 256], -1)
    a = (base * 3 // 4 + rng.integers(0, 64, (h, w, 3))).astype(np.uint8)
    Image.fromarray(a).convert(mode).save(path, **kw)
for c in ("cat", "dog"):
    os.makedirs("%s/imgs/%s" % (T, c))
make(70, 50, "RGB", T + "/imgs/cat/a.jpg", quality=90)
make(33, 40, "L", T + "/imgs/cat/b.png")           # grey, smaller than the crop
make(128, 96, "RGB", T + "/imgs/cat/c.jpeg")        # short side >= 2 * 32: BOX halving
make(48, 48, "RGB", T + "/imgs/dog/d.JPG")
make(60, 36, "RGBA", T + "/imgs/dog/e.png")
make(200, 150, "RGB", T + "/imgs/dog/f.jpg")        # halved twice
with open(T + "/imgs/notes.txt", "w") as f: f.write("not a class folder\n")
EOF

COMMON=(--vae "$T/vae" --image-size 32)

# ---- moments (float32) with flipped copies, one worker, batches of 4
$PY "$TOOL" "$T/imgs" --out "$T/mom.h5" "${COMMON[@]}" --moments --flip --dtype float32 \
    --devices cpu --batch-size 4 > "$T/log" 2>&1 || { cat "$T/log"; fail "moments run"; }
tail -n 1 "$T/log"
$PY - "$T" <<'EOF' || fail "moments checks"
import os, sys
sys.path.insert(0, os.environ["SD_PYDEPS"])
import h5py, numpy as np, torch, safetensors.torch
from PIL import Image
from diffusers import AutoencoderKL
T = sys.argv[1]
errs = []
def check(cond, msg):
    if not cond: errs.append(msg)

def adm_crop(path, size):
    # reference preprocessing written for the test: RGB, halve (BOX) while the short side is
    # >= 2 size, BICUBIC to short side = size (rounded), centre crop; then [-1, 1]
    img = Image.open(path).convert("RGB")
    while min(img.width, img.height) >= 2 * size:
        img = img.resize((img.width // 2, img.height // 2), Image.BOX)
    s = size / min(img.width, img.height)
    img = img.resize((round(img.width * s), round(img.height * s)), Image.BICUBIC)
    l, t = (img.width - size) // 2, (img.height - size) // 2
    a = np.asarray(img.crop((l, t, l + size, t + size)), dtype=np.float32)
    return (a / 255 - 0.5) / 0.5                    # (size, size, 3)

files = ["cat/a.jpg", "cat/b.png", "cat/c.jpeg", "dog/d.JPG", "dog/e.png", "dog/f.jpg"]
x = np.stack([adm_crop(T + "/imgs/" + f, 32) for f in files]).transpose(0, 3, 1, 2)
x = np.ascontiguousarray(x)
xf = np.ascontiguousarray(x[:, :, :, ::-1])
vae = AutoencoderKL.from_pretrained(T + "/vae", low_cpu_mem_usage=False).eval()
with torch.no_grad():
    d = vae.encode(torch.from_numpy(x)).latent_dist
    df = vae.encode(torch.from_numpy(xf)).latent_dist
ref = np.concatenate([torch.cat([d.mean, d.logvar], 1).numpy(),
                      torch.cat([df.mean, df.logvar], 1).numpy()])
with h5py.File(T + "/mom.h5", "r") as f:
    a = dict(f.attrs)
    want = {"format": "sddit-latents", "format_version": 1, "num_classes": 2, "image_size": 32,
            "latent_channels": 4, "scale_factor": 0.18215, "encoder": "vae", "flipped": 1}
    for k, v in want.items():
        check(k in a and a[k] == v, "attribute %s = %r, want %r" % (k, a.get(k), v))
    check(isinstance(a.get("source"), str), "source attribute missing")
    check("latents" not in f, "/latents present in moments mode")
    m = f["moments"]
    check(m.shape == (12, 8, 16, 16) and m.dtype == np.float32, "moments %s %s" % (m.shape, m.dtype))
    check(list(f["labels"][...]) == [0, 0, 0, 1, 1, 1] * 2 and f["labels"].dtype == np.int32,
          "labels %s" % f["labels"][...])
    names = [s.decode() if isinstance(s, bytes) else s for s in f["class_names"][...]]
    check(names == ["cat", "dog"], "class_names %s" % names)
    M = m[...]
for lo, hi, what in ((0, 6, "originals"), (6, 12, "flipped copies")):
    for part, sl in (("mean", slice(0, 4)), ("logvar", slice(4, 8))):
        got, exp = M[lo:hi, sl], ref[lo:hi, sl]
        bad = np.abs(got - exp) > 1e-5 + 1e-5 * np.abs(exp)
        check(not bad.any(), "%s %s: max |diff| %.3g vs direct vae.encode" % (
            what, part, np.abs(got - exp).max()))
check(np.abs(M[6:, :4] - M[:6, :4]).max() > 1e-3, "flipped rows equal the originals")
np.save(T + "/ref_moments.npy", ref)
for e in errs: print("  " + e)
sys.exit(1 if errs else 0)
EOF

# ---- latents (float16 default), flipped, one worker, batches of 2: the reference run
RUN=(--out "$T/full.h5" "${COMMON[@]}" --flip --devices cpu --batch-size 2)
$PY "$TOOL" "$T/imgs" "${RUN[@]}" > "$T/log" 2>&1 || { cat "$T/log"; fail "latents run"; }
$PY - "$T" "$ROOT" <<'EOF' || fail "latents checks"
import sys, h5py, numpy as np
T, root = sys.argv[1], sys.argv[2]
ref = np.load(T + "/ref_moments.npy")
errs = []
with h5py.File(T + "/full.h5", "r") as f:
    z = f["latents"]
    if z.shape != (12, 4, 16, 16) or z.dtype != np.float16:
        errs.append("latents %s %s" % (z.shape, z.dtype))
    Z = z[...].astype(np.float32)
    if f.attrs["scale_factor"] != 0.18215 or f.attrs["flipped"] != 1:
        errs.append("attributes %s" % dict(f.attrs))
for r in range(12):
    # documented keying: eps = Generator(Philox(key=(seed << 64) + row)).standard_normal
    eps = np.random.Generator(np.random.Philox(key=(0 << 64) + r)).standard_normal((4, 16, 16), dtype=np.float32)
    want = (ref[r, :4] + np.exp(0.5 * ref[r, 4:]) * eps) * np.float32(0.18215)
    d = np.abs(Z[r] - want)
    if (d > 1e-3 * (1 + np.abs(want))).any():
        errs.append("row %d: max |latent - (mean + std eps) 0.18215| = %.3g" % (r, d.max()))
if not np.isfinite(Z).all() or Z.std() < 1e-3:
    errs.append("degenerate latents (std %g)" % Z.std())
for e in errs: print("  " + e)
sys.exit(1 if errs else 0)
EOF

same() {  # same A B: bitwise equal /latents and /labels
  $PY - "$1" "$2" <<'EOF'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
ok = True
for k in ("latents", "labels"):
    x, y = a[k][...], b[k][...]
    if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
        n = int((x != y).sum()) if x.shape == y.shape else -1
        print("  %s differs between %s and %s (%d values)" % (k, sys.argv[1], sys.argv[2], n))
        ok = False
sys.exit(0 if ok else 1)
EOF
}

# ---- interrupted twice, then resumed by rerunning the same command
RES=(--out "$T/res.h5" "${COMMON[@]}" --flip --devices cpu --batch-size 2)
$PY "$TOOL" "$T/imgs" "${RES[@]}" --stop-after 1 > "$T/log" 2>&1 || { cat "$T/log"; fail "stop 1"; }
[ -f "$T/res.h5.partial" ] && [ ! -e "$T/res.h5" ] || fail "after --stop-after: want res.h5.partial only"
c=$($PY -c 'import sys,h5py; print(h5py.File(sys.argv[1],"r").attrs["completed"])' "$T/res.h5.partial")
[ "$c" = 2 ] || fail "completed = $c after one batch of 2, want 2"
$PY "$TOOL" "$T/imgs" "${RES[@]}" --stop-after 1 > "$T/log" 2>&1 || { cat "$T/log"; fail "stop 2"; }
grep -q "resuming .* at image 2 of 6" "$T/log" || { cat "$T/log"; fail "no resume message"; }
$PY "$TOOL" "$T/imgs" "${RES[@]}" > "$T/log" 2>&1 || { cat "$T/log"; fail "resume"; }
grep -q "resuming .* at image 4 of 6" "$T/log" || { cat "$T/log"; fail "no second resume message"; }
[ -f "$T/res.h5" ] && [ ! -e "$T/res.h5.partial" ] || fail "resumed run did not complete"
same "$T/full.h5" "$T/res.h5" || fail "interrupted + resumed != uninterrupted"

# ---- two CPU workers
$PY "$TOOL" "$T/imgs" --out "$T/par.h5" "${COMMON[@]}" --flip --devices cpu,cpu --batch-size 2 \
    > "$T/log" 2>&1 || { cat "$T/log"; fail "cpu,cpu run"; }
same "$T/full.h5" "$T/par.h5" || fail "--devices cpu,cpu != --devices cpu"

# ---- reruns: same command leaves a complete file alone; a changed one is refused
$PY "$TOOL" "$T/imgs" "${RUN[@]}" > "$T/log" 2>&1 || { cat "$T/log"; fail "rerun of a complete output"; }
grep -q "already complete" "$T/log" || { cat "$T/log"; fail "no 'already complete' message"; }
if $PY "$TOOL" "$T/imgs" "${RUN[@]}" --seed 1 > "$T/log" 2>&1; then fail "changed seed accepted"; fi
grep -q "different configuration" "$T/log" && grep -q "seed: 0 -> 1" "$T/log" || { cat "$T/log"; fail "refusal message"; }
$PY "$TOOL" "$T/imgs" --out "$T/p.h5" "${COMMON[@]}" --devices cpu --batch-size 2 --stop-after 1 > /dev/null 2>&1 || fail "partial for refusal"
if $PY "$TOOL" "$T/imgs" --out "$T/p.h5" "${COMMON[@]}" --devices cpu --dtype float32 > "$T/log" 2>&1; then
  fail "changed dtype accepted for a partial output"; fi
grep -q "p.h5.partial exists" "$T/log" && grep -q "dtype" "$T/log" || { cat "$T/log"; fail "partial refusal message"; }

# ---- errors
cp -r "$T/imgs" "$T/bad"
head -c 300 /dev/urandom > "$T/bad/cat/b2_broken.jpg"
for dev in cpu cpu,cpu; do
  if $PY "$TOOL" "$T/bad" --out "$T/bad_$dev.h5" "${COMMON[@]}" --devices $dev --batch-size 2 > "$T/log" 2>&1; then
    fail "unreadable image accepted ($dev)"; fi
  grep -q "error: cannot read image $T/bad/cat/b2_broken.jpg" "$T/log" || { cat "$T/log"; fail "unreadable image not named ($dev)"; }
done
if $PY "$TOOL" "$T/nowhere" --out "$T/x.h5" "${COMMON[@]}" > "$T/log" 2>&1; then fail "missing root accepted"; fi
grep -q "image root $T/nowhere does not exist" "$T/log" || { cat "$T/log"; fail "missing root message"; }
mkdir -p "$T/empty/a" "$T/empty/b"; touch "$T/empty/a/readme.txt"
if $PY "$TOOL" "$T/empty" --out "$T/x.h5" "${COMMON[@]}" > "$T/log" 2>&1; then fail "no images accepted"; fi
grep -q "error: no images" "$T/log" || { cat "$T/log"; fail "no-images message"; }
[ ! -e "$T/x.h5" ] && [ ! -e "$T/x.h5.partial" ] || fail "an output was left by a failed run"
echo "test_data_prep_imagenet: ok"
