#!/usr/bin/env bash
# `sddit sample` and `sddit denoise` end to end, on a tiny model trained for 20 steps:
#  1. sample on 1 process, and with mpirun -n 2 and -n 3: bitwise the same /samples, /labels
#     and /noise (h5diff); the output's layout and attributes; class selection flags;
#  2. `denoise` (ema and raw weights) equals the training step's D computed by an independent
#     path (test_sampler denoise-ref: sd_ckpt_load into an sd_sddit, mask_ratio 0);
#  3. a one-step Euler `sample` equals `denoise` at x = sigma_0 * noise: guidance 1 is the
#     conditional D, guidance 2 is D_u + 2 (D_c - D_u); guidance 1 costs half the evaluations;
#  4. the training data's attributes are copied when data.path is readable;
#  5. bad flags and files: clear messages, exit codes 1 (errors) and 2 (no arguments), no
#     output file left behind.
# Usage: test_sample_cli.sh SDDIT TEST_SAMPLER SOURCE_ROOT
set -u
sddit="$1"; helper="$2"; root="$3"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sd_test_sample_cli.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE  # the same thread count for every run
pass=0; fail=0
ok()  { echo "ok   $*"; pass=$((pass+1)); }
bad() { echo "FAIL $*"; fail=$((fail+1)); }
tol=$(sed -n "s/^#define SAMPLE_CLI_RTOL //p" "$root/tests/tolerances.h")
py=/usr/bin/python3
have_py=0
$py -c "import h5py, numpy" 2>/dev/null && have_py=1
pycheck() {  # pycheck NAME SCRIPT ARGS...: the script prints its evidence and exits 0 on success
  local name="$1" script="$2"; shift 2
  if [ $have_py -eq 0 ]; then echo "skip $name (no h5py)"; return; fi
  local out
  out=$($py -c "$script" "$@" 2>&1) && ok "$name: $out" || bad "$name: $out"
}

# ---- a tiny model, 20 steps ----
# (a large learning rate and a short EMA so that 20 steps move the weights and the classes matter)
"$sddit" train --train.steps=20 --train.log_every=10 --optim.lr=3e-3 --optim.ema_decay=0.9 \
  --train.out_dir="$tmp/run" >"$tmp/train.log" 2>&1 \
  || { echo "FAIL training the tiny model: $(tail -3 "$tmp/train.log")"; exit 1; }
ck="$tmp/run/checkpoints/ckpt-00000020.h5"
[ -f "$ck" ] && ok "trained 20 steps: $ck" || { echo "FAIL no checkpoint"; exit 1; }

# ---- 1. world-size invariance and the output format ----
common=(--num 10 --batch 4 --seed 5 --save-noise)
"$sddit" sample --checkpoint "$tmp/run/checkpoints" "${common[@]}" --out "$tmp/s1.h5" >"$tmp/s1.log" 2>&1 \
  && ok "sample, 1 process: $(tail -1 "$tmp/s1.log")" || bad "sample failed: $(tail -3 "$tmp/s1.log")"
grep -qE "^sample 10/10 on rank 0 \(10 in all\) \| [0-9.]+ samples/s" "$tmp/s1.log" \
  && ok "progress line" || bad "no progress line: $(cat "$tmp/s1.log")"
out=$("$sddit" inspect "$tmp/s1.h5" 2>&1); rc=$?
[ $rc -eq 0 ] && grep -q "^ok: " <<<"$out" && grep -q "guidance *1.5" <<<"$out" \
  && ok "inspect reads the sample file" || bad "inspect on samples: rc $rc, $(echo "$out" | tail -2)"
grep -q "158 network evaluations per sample" "$tmp/s1.log" && grep -q "1580 network evaluations)" "$tmp/s1.log" \
  && ok "guidance 1.5: 158 evaluations per sample (Heun 40 = 79, twice for the null class)" \
  || bad "evaluation count: $(grep evaluations "$tmp/s1.log")"
if command -v mpirun >/dev/null; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
  for n in 2 3; do
    if timeout 120 mpirun -n $n -x OMP_NUM_THREADS -x OMP_WAIT_POLICY "$sddit" sample --checkpoint "$ck" \
         "${common[@]}" --out "$tmp/s$n.h5" >"$tmp/s$n.log" 2>&1; then
      diffs=""
      for d in /samples /labels /noise; do
        h5diff -q "$tmp/s1.h5" "$tmp/s$n.h5" $d $d >/dev/null 2>&1 || diffs="$diffs $d"
      done
      [ -z "$diffs" ] && ok "mpirun -n $n: /samples, /labels, /noise bitwise equal to 1 process" \
        || bad "mpirun -n $n differs in$diffs"
      [ "$(grep -c '^# wrote' "$tmp/s$n.log")" -eq 1 ] && ok "mpirun -n $n: rank 0 alone writes" \
        || bad "mpirun -n $n: $(grep -c '^# wrote' "$tmp/s$n.log") writers"
    else
      bad "mpirun -n $n sample failed: $(tail -3 "$tmp/s$n.log")"
    fi
  done
else
  echo "skip mpirun parts (mpirun not found)"
fi
pycheck "output layout and attributes" '
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r"); a = f.attrs
x, y, z = f["samples"], f["labels"], f["noise"]
assert x.shape == (10, 4, 8, 8) and x.dtype == np.float32, (x.shape, x.dtype)
assert y.shape == (10,) and y.dtype == np.int32 and z.shape == x.shape
assert np.isfinite(x[:]).all() and ((y[:] >= 0) & (y[:] < 10)).all()
want = dict(format="sddit-samples", format_version=1, sampler="heun", steps=40, guidance=1.5,
            seed=5, weights="ema", checkpoint=sys.argv[2], train_step=20, num_classes=10)
for k, v in want.items():
    assert a[k] == v, (k, a[k], v)
assert "[model]" in a["config"] and "image_size" not in a  # synthetic data: no data attributes
nz = z[:]
assert abs(nz.mean()) < 0.1 and abs(nz.std() - 1) < 0.1, (nz.mean(), nz.std())
print("(10, 4, 8, 8) float32, labels %s, attributes %s" % (list(y[:]), sorted(a.keys())))
' "$tmp/s1.h5" "$ck"
"$sddit" sample --checkpoint "$ck" --classes 0,3,null --per-class 2 --steps 2 --out "$tmp/c.h5" >/dev/null 2>&1 \
  || bad "--classes 0,3,null --per-class 2 failed"
pycheck "--classes 0,3,null --per-class 2" '
import sys, h5py
y = list(h5py.File(sys.argv[1], "r")["labels"][:]); assert y == [0, 0, 3, 3, 10, 10], y; print(y)' "$tmp/c.h5"
"$sddit" sample --checkpoint "$ck" --per-class 1 --steps 2 --out "$tmp/pc.h5" >/dev/null 2>&1 || bad "--per-class 1 failed"
pycheck "--per-class 1 (every class)" '
import sys, h5py
y = list(h5py.File(sys.argv[1], "r")["labels"][:]); assert y == list(range(10)), y; print(y)' "$tmp/pc.h5"
"$sddit" sample --checkpoint "$ck" --num 10 --batch 3 --seed 6 --steps 2 --out "$tmp/seed6.h5" >/dev/null 2>&1 || bad "seed 6 failed"
pycheck "another seed: other noise and classes" '
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
assert not np.array_equal(a["labels"][:], b["labels"][:]); assert not np.allclose(a["samples"][:], b["samples"][:])
print("labels %s vs %s" % (list(a["labels"][:]), list(b["labels"][:])))' "$tmp/s1.h5" "$tmp/seed6.h5"

# ---- 2. denoise == the training step's D (independent load and forward) ----
if [ $have_py -eq 1 ]; then
  $py - "$tmp/in.h5" <<'PY'
import sys, h5py, numpy as np
r = np.random.default_rng(7)
sigma = np.array([0.002, 0.03, 0.5, 1.0, 7.0, 80.0], np.float32)
x0 = r.standard_normal((6, 4, 8, 8)).astype(np.float32) * 0.5
x = (x0 + sigma[:, None, None, None] * r.standard_normal((6, 4, 8, 8))).astype(np.float32)
with h5py.File(sys.argv[1], "w") as f:
    f["x"] = x; f["sigma"] = sigma; f["labels"] = np.array([0, 9, 10, 3, 10, 5], np.int32)
PY
  for wts in ema raw; do
    "$sddit" denoise --checkpoint "$ck" --weights $wts --in "$tmp/in.h5" --out "$tmp/d_$wts.h5" >"$tmp/d.log" 2>&1 \
      || bad "denoise --weights $wts failed: $(tail -2 "$tmp/d.log")"
    "$helper" denoise-ref "$tmp/run/config.ini" "$ck" "$tmp/in.h5" "$tmp/r_$wts.h5" $wts >"$tmp/r.log" 2>&1 \
      || bad "reference failed: $(tail -2 "$tmp/r.log")"
    pycheck "denoise --weights $wts == training D" '
import sys, h5py, numpy as np
d, r = h5py.File(sys.argv[1], "r")["D"][:], h5py.File(sys.argv[2], "r")["D"][:]
err = np.abs(d - r).max() / np.abs(r).max()
assert d.shape == (6, 4, 8, 8) and err <= float(sys.argv[3]), err
print("norm-relative difference %.2e (tolerance %s)" % (err, sys.argv[3]))' "$tmp/d_$wts.h5" "$tmp/r_$wts.h5" "$tol"
  done
  pycheck "ema and raw weights give different D" '
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r")["D"][:], h5py.File(sys.argv[2], "r")["D"][:]
assert not np.array_equal(a, b); print("max |D_ema - D_raw| %.2e" % np.abs(a - b).max())' "$tmp/d_ema.h5" "$tmp/d_raw.h5"
else
  echo "skip denoise comparisons (no h5py)"
fi

# ---- 3. one Euler step: sample == denoise at x = sigma_0 noise; guidance ----
one=(--sampler euler --steps 1 --classes 0,4,9,null --save-noise --seed 11)
"$sddit" sample --checkpoint "$ck" "${one[@]}" --guidance 1 --out "$tmp/g1.h5" >"$tmp/g1.log" 2>&1 || bad "guidance 1 sample failed"
"$sddit" sample --checkpoint "$ck" "${one[@]}" --guidance 2 --out "$tmp/g2.h5" >"$tmp/g2.log" 2>&1 || bad "guidance 2 sample failed"
grep -q " 1 network evaluations per sample" "$tmp/g1.log" && grep -q " 2 network evaluations per sample" "$tmp/g2.log" \
  && ok "guidance 1 evaluates the conditional model only (1 vs 2 evaluations per step)" \
  || bad "evaluations: $(grep -h evaluations "$tmp/g1.log" "$tmp/g2.log")"
if [ $have_py -eq 1 ]; then
  $py - "$tmp/g1.h5" "$tmp/x80.h5" "$tmp/x80u.h5" <<'PY'
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
x = (f["noise"][:].astype(np.float64) * 80.0).astype(np.float32)
for path, lab in ((sys.argv[2], f["labels"][:]), (sys.argv[3], np.full(4, 10, np.int32))):
    with h5py.File(path, "w") as o:
        o["x"] = x; o["sigma"] = np.full(4, 80.0, np.float32); o["labels"] = lab.astype(np.int32)
PY
  "$sddit" denoise --checkpoint "$ck" --in "$tmp/x80.h5" --out "$tmp/dc.h5" >/dev/null 2>&1 || bad "denoise (cond) failed"
  "$sddit" denoise --checkpoint "$ck" --in "$tmp/x80u.h5" --out "$tmp/du.h5" >/dev/null 2>&1 || bad "denoise (null) failed"
  pycheck "one Euler step, guidance 1 == D_c (denoise)" '
import sys, h5py, numpy as np
s = h5py.File(sys.argv[1], "r")["samples"][:]; dc = h5py.File(sys.argv[2], "r")["D"][:]
err = np.abs(s - dc).max() / np.abs(dc).max(); assert err <= float(sys.argv[3]), err
print("norm-relative difference %.2e" % err)' "$tmp/g1.h5" "$tmp/dc.h5" "$tol"
  pycheck "one Euler step, guidance 2 == D_u + 2 (D_c - D_u)" '
import sys, h5py, numpy as np
s = h5py.File(sys.argv[1], "r")["samples"][:]
dc = h5py.File(sys.argv[2], "r")["D"][:].astype(np.float64); du = h5py.File(sys.argv[3], "r")["D"][:].astype(np.float64)
ref = du + 2.0 * (dc - du); err = np.abs(s - ref).max() / np.abs(ref).max()
assert err <= float(sys.argv[4]), err
assert np.abs(dc - du)[:3].max() > 1e-2 * np.abs(du).max(), np.abs(dc - du)[:3].max()  # the classes matter
print("norm-relative difference %.2e, max |D_c - D_u| %.2e" % (err, np.abs(dc - du).max()))' "$tmp/g2.h5" "$tmp/dc.h5" "$tmp/du.h5" "$tol"
fi

# ---- 4. the training data's attributes ----
if [ $have_py -eq 1 ]; then
  $py - "$tmp/data.h5" <<'PY'
import sys, h5py, numpy as np
r = np.random.default_rng(3)
with h5py.File(sys.argv[1], "w") as f:
    f["latents"] = (r.standard_normal((32, 4, 8, 8)) * 0.5).astype(np.float32)
    f["labels"] = (np.arange(32) % 10).astype(np.int32)
    for k, v in dict(format="sddit-latents", format_version=1, num_classes=10, image_size=64,
                     latent_channels=4, scale_factor=0.18215, encoder="test-vae",
                     source="test_sample_cli").items():
        f.attrs[k] = v
PY
  "$sddit" train --train.steps=2 --data.source=hdf5 --data.path="$tmp/data.h5" --train.out_dir="$tmp/run2" >"$tmp/t2.log" 2>&1 \
    || bad "training on the HDF5 file failed: $(tail -2 "$tmp/t2.log")"
  "$sddit" sample --checkpoint "$tmp/run2/checkpoints" --num 2 --steps 2 --out "$tmp/a.h5" >/dev/null 2>&1 || bad "sample (hdf5 run) failed"
  pycheck "data attributes copied" '
import sys, h5py
a = h5py.File(sys.argv[1], "r").attrs
got = (a["image_size"], a["latent_channels"], round(float(a["scale_factor"]), 5), a["encoder"])
assert got == (64, 4, 0.18215, "test-vae"), got; print(got)' "$tmp/a.h5"
  rm "$tmp/data.h5"
  out=$("$sddit" sample --checkpoint "$tmp/run2/checkpoints" --num 2 --steps 2 --out "$tmp/b.h5" 2>&1); rc=$?
  [ $rc -eq 0 ] && grep -q "warning: the training data .* is not readable here" <<<"$out" \
    && ok "data file gone: a warning, attributes left out" || bad "data file gone: rc $rc: $out"
fi

# ---- 5. errors ----
expect() {  # expect NAME WANT_RC PATTERN -- ARGS...
  local name="$1" want_rc="$2" pattern="$3"; shift 4
  local out rc
  out=$("$sddit" "$@" 2>&1); rc=$?
  if [ "$rc" -eq "$want_rc" ] && grep -qE -- "$pattern" <<<"$out"; then ok "$name"
  else bad "$name: rc $rc (want $want_rc), output: $(echo "$out" | head -4)"; fi
}
o="$tmp/never.h5"
cp "$ck" "$tmp/trunc.h5"; truncate -s 100000 "$tmp/trunc.h5"
cp "$ck" "$tmp/flip.h5"
[ $have_py -eq 1 ] && $py -c '
import sys, h5py
f = h5py.File(sys.argv[1], "r"); off = f["ema"].id.get_offset(); f.close()
with open(sys.argv[1], "r+b") as g:
    g.seek(off + 1000); b = g.read(1); g.seek(off + 1000); g.write(bytes([b[0] ^ 0x40]))' "$tmp/flip.h5"
mkdir -p "$tmp/empty"
expect "no arguments: usage, rc 2"        2 "usage: sddit sample" -- sample
expect "--help"                           0 "--checkpoint FILE\|DIR" -- sample --help
expect "missing --checkpoint"             1 "--checkpoint FILE\|DIR is required" -- sample --out "$o"
expect "checkpoint file missing"          1 "--checkpoint .*nope\.h5: No such file" -- sample --checkpoint "$tmp/nope.h5" --out "$o"
expect "truncated checkpoint"             1 "trunc\.h5: is truncated or not an HDF5 file" -- sample --checkpoint "$tmp/trunc.h5" --out "$o"
[ $have_py -eq 1 ] && expect "corrupted checkpoint (checksum)" 1 "flip\.h5: dataset /ema fails its checksum" -- sample --checkpoint "$tmp/flip.h5" --out "$o"
expect "directory without checkpoints"    1 "holds no checkpoint that verifies" -- sample --checkpoint "$tmp/empty" --out "$o"
expect "--steps 0"                        1 "--steps: '0' is not an integer in \[1, 100000\]" -- sample --checkpoint "$ck" --steps 0 --out "$o"
expect "unknown class"                    1 "class 10 is unknown: the model has 10 classes \(0\.\.9\)" -- sample --checkpoint "$ck" --classes 1,10 --out "$o"
expect "class not a number"               1 "'x' is not a class number or null" -- sample --checkpoint "$ck" --classes 1,x --out "$o"
expect "empty class list item"            1 "empty or overlong item" -- sample --checkpoint "$ck" --classes 1,,2 --out "$o"
expect "--weights foo"                    1 "--weights: 'foo' is not ema or raw" -- sample --checkpoint "$ck" --weights foo --out "$o"
expect "--sampler foo"                    1 "--sampler: 'foo' is not heun or euler" -- sample --checkpoint "$ck" --sampler foo --out "$o"
expect "--guidance -1"                    1 "--guidance: -1 must be >= 0" -- sample --checkpoint "$ck" --guidance -1 --out "$o"
expect "--guidance nan"                   1 "--guidance: 'nan' is not a finite number" -- sample --checkpoint "$ck" --guidance nan --out "$o"
expect "--num and --per-class"            1 "give --num or --per-class, not both" -- sample --checkpoint "$ck" --num 3 --per-class 2 --out "$o"
expect "--batch 0"                        1 "--batch: '0' is not an integer" -- sample --checkpoint "$ck" --batch 0 --out "$o"
expect "--seed -1"                        1 "--seed: '-1' is not a non-negative integer" -- sample --checkpoint "$ck" --seed -1 --out "$o"
expect "unknown option"                   1 "unknown option '--stpes'" -- sample --checkpoint "$ck" --stpes 3 --out "$o"
expect "option without value"             1 "--steps needs a value" -- sample --checkpoint "$ck" --steps
expect "output directory missing"         1 "directory '.*/no/such' does not exist" -- sample --checkpoint "$ck" --out "$tmp/no/such/x.h5"
expect "--backend gpu"                    1 "--backend: 'gpu' is not cpu or cuda" -- sample --checkpoint "$ck" --backend gpu --out "$o"
expect "--precision fp16"                 1 "--precision: 'fp16' is not bf16 or fp32" -- sample --checkpoint "$ck" --precision fp16 --out "$o"
out=$("$sddit" sample --checkpoint "$ck" --backend cuda --num 2 --steps 2 --out "$tmp/cuda.h5" 2>&1); rc=$?
if [ $rc -eq 1 ] && grep -qE -- "--backend cuda: .*(without CUDA|no CUDA device)" <<<"$out" && grep -q "hint: use --backend cpu" <<<"$out"; then
  ok "--backend cuda without a usable GPU: refused, naming why, with a hint"
elif [ $rc -eq 0 ] && h5dump -a /backend "$tmp/cuda.h5" 2>/dev/null | grep -q '"cuda"'; then
  ok "--backend cuda: sampled on the GPU (a device is visible)"
else
  bad "--backend cuda: rc $rc: $(echo "$out" | tail -3)"
fi
[ ! -e "$o" ] && [ -z "$(ls "$tmp"/*.tmp 2>/dev/null)" ] && ok "refused runs wrote nothing" || bad "a refused run left $o or a .tmp file"
expect "denoise: no arguments, rc 2"      2 "usage: sddit denoise" -- denoise
expect "denoise: missing --in"            1 "--in IN\.h5 is required" -- denoise --checkpoint "$ck" --out "$o"
expect "denoise: --in missing file"       1 "--in .*nope\.h5: No such file" -- denoise --checkpoint "$ck" --in "$tmp/nope.h5" --out "$o"
expect "denoise: --weights foo"           1 "--weights: 'foo' is not ema or raw" -- denoise --checkpoint "$ck" --weights foo --in "$tmp/in.h5" --out "$o"
if [ $have_py -eq 1 ]; then
  $py - "$tmp" <<'PY'
import sys, h5py, numpy as np
d = sys.argv[1]
def w(name, x, s, y, drop=None):
    with h5py.File(d + "/" + name, "w") as f:
        for k, v in (("x", x), ("sigma", s), ("labels", y)):
            if k != drop: f[k] = v
x = np.zeros((2, 4, 8, 8), np.float32); s = np.ones(2, np.float32); y = np.zeros(2, np.int32)
w("shape.h5", np.zeros((2, 3, 8, 8), np.float32), s, y)
w("nosigma.h5", x, s, y, drop="sigma")
w("negsigma.h5", x, np.array([1, -1], np.float32), y)
w("label.h5", x, s, np.array([0, 11], np.int32))
w("count.h5", x, np.ones(3, np.float32), y)
w("nan.h5", np.full((2, 4, 8, 8), np.nan, np.float32), s, y)
PY
  expect "denoise: /x shape"              1 "/x has shape \(2, 3, 8, 8\) but the model's samples are \(4, 8, 8\)" -- denoise --checkpoint "$ck" --in "$tmp/shape.h5" --out "$o"
  expect "denoise: /sigma missing"        1 "dataset /sigma is missing" -- denoise --checkpoint "$ck" --in "$tmp/nosigma.h5" --out "$o"
  expect "denoise: negative sigma"        1 "/sigma\[1\] = -1 must be positive" -- denoise --checkpoint "$ck" --in "$tmp/negsigma.h5" --out "$o"
  expect "denoise: label out of range"    1 "/labels\[1\] = 11 is outside \[0, 10\]" -- denoise --checkpoint "$ck" --in "$tmp/label.h5" --out "$o"
  expect "denoise: count mismatch"        1 "/x has 2 samples but /sigma has 3" -- denoise --checkpoint "$ck" --in "$tmp/count.h5" --out "$o"
  expect "denoise: non-finite /x"         1 "/x holds a non-finite value" -- denoise --checkpoint "$ck" --in "$tmp/nan.h5" --out "$o"
  [ ! -e "$o" ] && ok "refused denoise runs wrote nothing" || bad "a refused denoise left $o"
fi

echo "test_sample_cli: $pass checks passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
