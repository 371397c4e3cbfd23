#!/usr/bin/env bash
# launch/fid50k.sh and data-prep/fid_eval.py end to end on tiny shapes, all on the CPU:
#  1. the metric math, the network and the weight loader (tests/fid_check.py unit): FID of a
#     set against itself ~ 0, closed forms for diagonal/commuting covariances, scipy's sqrtm,
#     precision/recall 1 for identical and 0 for far-apart sets, IS 1 for uniform and K for
#     confident balanced predictions, pool/spatial taps, FID pooling, strict loading;
#  2. a tiny SD-DiT trained 20 steps (launch/configs/tiny.ini, synthetic 4x8x8 latents), a tiny
#     random AutoencoderKL (tests/tiny_vae.sh), random Inception weights and a reference batch
#     of 20 random images; DRY_RUN=1 prints the three commands (a run directory resolved to
#     its checkpoints/) and writes nothing; missing
#     checkpoint/reference/weights/VAE and weights with a wrong shape are refused before
#     anything runs, naming them;
#  3. fid50k.sh with --num 16 on 2 ranks (1 without mpirun): every stage runs and prints its command, the outputs
#     have the right shapes, the metrics are finite; a rerun skips every stage; after removing
#     the last two outputs it resumes at the decode stage (reference features from the cache)
#     with the same numbers; other settings on the same --out are refused;
#  4. a direct fid_eval.py run on the same .npz files gives the same metrics; against a
#     reference of 8 of the samples and 12 other images (precision and recall > 0, one < 1)
#     every metric equals an independent recomputation from the saved features; the
#     same reference carrying mu/sigma/mu_s/sigma_s (the samples' own statistics) is used for
#     FID/sFID (both ~ 0) while precision/recall still come from its images.
# Usage: test_fid_pipeline.sh SDDIT SOURCE_ROOT
set -euo pipefail
sddit=$1
ROOT=${2:-${SD_SOURCE_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}}
T=$(mktemp -d "${TMPDIR:-/tmp}/sd_test_fid.XXXXXX")
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok   $*"; }
. "$ROOT/tests/tiny_vae.sh"   # PY, SD_PYDEPS, require_vae_deps, make_tiny_vae
require_vae_deps
$PY -c "import scipy.special" 2>/dev/null || { echo "SKIP: scipy not importable by $PY"; exit 77; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OMP_WAIT_POLICY=PASSIVE
FC="$PY $ROOT/tests/fid_check.py"
FID="$ROOT/launch/fid50k.sh"
t_start=$(date +%s)

# ---- 1. unit checks
$FC unit > "$T/unit.log" 2>&1 || { cat "$T/unit.log"; fail "fid_check.py unit"; }
ok "fid_eval.py math, network and loader: $(grep -c '^ok' "$T/unit.log") checks"

# ---- 2. inputs
"$sddit" train --config "$ROOT/launch/configs/tiny.ini" --train.steps=20 --train.log_every=10 \
  --optim.lr=3e-3 --optim.ema_decay=0.9 --train.out_dir="$T/run" > "$T/train.log" 2>&1 ||
  { tail -5 "$T/train.log"; fail "training the tiny model"; }
ls "$T/run/checkpoints"/ckpt-*.h5 > /dev/null || fail "no checkpoint after training"
make_tiny_vae "$T/vae" 4321 8.0 > /dev/null 2>&1 || fail "making the tiny VAE"
$FC weights "$T/incep.pth" 7 > /dev/null || fail "writing random Inception weights"
$FC images "$T/ref.npz" 20 16 3 > /dev/null || fail "writing the reference batch"
ok "inputs: tiny model (20 steps), tiny VAE, random Inception weights, 20 reference images"

export SDDIT_BIN=$sddit
if command -v mpirun > /dev/null 2>&1; then
  ranks=2 launch_pat="sddit-mpirun -n 2 --cpu -- sample"
else
  ranks=1 launch_pat="sddit sample"; echo "note: no mpirun: sampling in one process"
fi
args=(--checkpoint "$T/run/checkpoints" --ref "$T/ref.npz" --inception "$T/incep.pth"
      --vae "$T/vae" --num 16 --steps 10 --seed 3 -n $ranks --backend cpu --scale-factor 0.18215
      --device cpu --decode-batch 8 --eval-batch 8)

a2=("${args[@]}"); a2[1]=$T/run   # a run's directory: its checkpoints/ are used
DRY_RUN=1 "$FID" "${a2[@]}" --out "$T/dry" > "$T/dry.log" 2>&1 || { cat "$T/dry.log"; fail "DRY_RUN=1"; }
[ "$(grep -c '^+ ' "$T/dry.log")" -eq 3 ] &&
  grep -q "$launch_pat --checkpoint $T/run/checkpoints " "$T/dry.log" &&
  grep -q 'decode_latents.py' "$T/dry.log" && grep -q 'fid_eval.py' "$T/dry.log" ||
  { cat "$T/dry.log"; fail "DRY_RUN=1 does not print the three commands"; }
[ ! -e "$T/dry" ] || fail "DRY_RUN=1 created $T/dry"
ok "DRY_RUN=1 prints the three commands (a run directory's checkpoints/ used) and writes nothing"

refuse() {  # refuse NAME PATTERN ARGS...: fid50k.sh exits 2 naming it, before any stage runs
  local name=$1 pat=$2 rc=0
  shift 2
  "$FID" "$@" --out "$T/bad" > "$T/bad.log" 2>&1 || rc=$?
  [ "$rc" -eq 2 ] || { cat "$T/bad.log"; fail "$name: exit $rc, want 2"; }
  grep -q -- "$pat" "$T/bad.log" || { cat "$T/bad.log"; fail "$name: message does not say '$pat'"; }
  ! grep -q '^== \[1/3\]' "$T/bad.log" && [ ! -e "$T/bad/samples.h5" ] ||
    { cat "$T/bad.log"; fail "$name: a stage ran"; }
  ok "refused: $name ($(grep -m1 error "$T/bad.log" | cut -c1-110))"
}
a2=("${args[@]}"); a2[1]=$T/nothere; refuse "missing checkpoint" "--checkpoint $T/nothere: no such file" "${a2[@]}"
a2=("${args[@]}"); a2[3]=$T/no.npz; refuse "missing reference" "--ref $T/no.npz: no such file" "${a2[@]}"
a2=("${args[@]}"); a2[5]=$T/no.pth; refuse "missing weights" "--inception $T/no.pth: no such file" "${a2[@]}"
a2=("${args[@]}"); a2[7]=$T/novae; refuse "missing VAE" "--vae $T/novae: no such directory" "${a2[@]}"
$PY - "$T" <<'EOF' || fail "writing damaged weights"
import sys, torch
sd = torch.load(sys.argv[1] + "/incep.pth")
sd["Mixed_6d.branch1x1.conv.weight"] = sd["Mixed_6d.branch1x1.conv.weight"][:100]
torch.save(sd, sys.argv[1] + "/bad.pth")
EOF
a2=("${args[@]}"); a2[5]=$T/bad.pth
refuse "weights with a wrong shape" "'Mixed_6d.branch1x1.conv.weight' has shape (100, 768, 1, 1), expected (192, 768, 1, 1)" "${a2[@]}"

# ---- 3. the pipeline
t0=$(date +%s)
"$FID" "${args[@]}" --out "$T/out" > "$T/run1.log" 2>&1 || { cat "$T/run1.log"; fail "fid50k.sh"; }
t_run=$(( $(date +%s) - t0 ))
for s in "1/3] sample" "2/3] decode" "3/3] eval"; do
  grep -q "^== \[$s" "$T/run1.log" || { cat "$T/run1.log"; fail "stage $s did not run"; }
done
grep -q "^+ .*$launch_pat --checkpoint $T/run/checkpoints --num 16 --guidance 1.5 --steps 10 --seed 3 --backend cpu --out $T/out/samples.h5" "$T/run1.log" &&
  grep -q "^# wrote $T/out/samples.h5: /samples (16, 4, 8, 8)" "$T/run1.log" &&
  grep -q "decode_latents.py: 16/16 images" "$T/run1.log" &&
  grep -q "fid_eval.py: samples: 16/16 images" "$T/run1.log" &&
  grep -q "fid_eval.py: reference: 20/20 images" "$T/run1.log" &&
  grep -q "fid50k.sh: metrics in $T/out/metrics.json" "$T/run1.log" ||
  { cat "$T/run1.log"; fail "a stage's command, progress or result line is missing"; }
$PY - "$T/out" <<'EOF' || { cat "$T/run1.log"; fail "pipeline outputs"; }
import json, math, sys, h5py, numpy as np
d = sys.argv[1]
with h5py.File(d + "/samples.h5") as f:
    assert f["samples"].shape == (16, 4, 8, 8), f["samples"].shape
    assert f.attrs["steps"] == 10 and f.attrs["guidance"] == 1.5 and f.attrs["seed"] == 3
z = np.load(d + "/samples.npz")
assert z["arr_0"].shape == (16, 16, 16, 3) and z["arr_0"].dtype == np.uint8, z["arr_0"].shape
m = json.load(open(d + "/metrics.json"))
vals = {k: m[k] for k in ("fid", "sfid", "inception_score", "precision", "recall")}
assert all(isinstance(v, float) and math.isfinite(v) for v in vals.values()), vals
assert m["num_samples"] == 16 and m["num_ref_images"] == 20 and m["ref_pool_stats"] == "from arr_0"
assert vals["fid"] > 0 and vals["inception_score"] >= 1 and 0 <= vals["precision"] <= 1
print("metrics: " + ", ".join("%s %.4f" % kv for kv in vals.items()))
EOF
ok "fid50k.sh ran sample ($ranks ranks), decode and eval in ${t_run} s; outputs and metrics are sound"

cp "$T/out/metrics.json" "$T/metrics1.json"
"$FID" "${args[@]}" --out "$T/out" > "$T/run2.log" 2>&1 || { cat "$T/run2.log"; fail "rerun"; }
[ "$(grep -c '^== \[./3\] .*: skipped' "$T/run2.log")" -eq 3 ] && cmp -s "$T/out/metrics.json" "$T/metrics1.json" ||
  { cat "$T/run2.log"; fail "a rerun did not skip every stage"; }
grep -q "^FID " "$T/run2.log" || { cat "$T/run2.log"; fail "a rerun does not print the metrics"; }
ok "a rerun skips all three stages and prints the metrics"

rm "$T/out/samples.npz" "$T/out/metrics.json"
"$FID" "${args[@]}" --out "$T/out" > "$T/run3.log" 2>&1 || { cat "$T/run3.log"; fail "resumed run"; }
grep -q '^== \[1/3\] sample: skipped' "$T/run3.log" && grep -q '^== \[2/3\] decode ->' "$T/run3.log" &&
  grep -q '^== \[3/3\] eval ->' "$T/run3.log" && grep -q 'reference features of 20 images from the cache' "$T/run3.log" ||
  { cat "$T/run3.log"; fail "the resumed run did not continue at the decode stage with cached reference features"; }
$FC same "$T/out/metrics.json" "$T/metrics1.json" 1e-12 > "$T/same.log" || { cat "$T/same.log"; fail "resumed run's metrics"; }
ok "after removing samples.npz and metrics.json, the rerun decodes and evaluates again: same metrics"

rc=0
"$FID" "${args[@]}" --guidance 2.0 --out "$T/out" > "$T/run4.log" 2>&1 || rc=$?
[ "$rc" -eq 2 ] && grep -q "samples.h5 exists but was made with other settings" "$T/run4.log" ||
  { cat "$T/run4.log"; fail "other settings on the same --out were not refused (exit $rc)"; }
ok "other settings on the same --out are refused"

# ---- 4. a direct fid_eval.py run, an independent recomputation, precomputed statistics
direct() {  # direct NAME REF [ARGS...]: fid_eval.py on out/samples.npz against REF into T/NAME
  local name=$1 ref=$2
  shift 2
  $PY "$ROOT/data-prep/fid_eval.py" --ref "$ref" --samples "$T/out/samples.npz" \
    --inception "$T/incep.pth" --out "$T/$name/metrics.json" --device cpu --batch-size 8 "$@" \
    > "$T/$name.log" 2>&1 || { cat "$T/$name.log"; fail "fid_eval.py ($name)"; }
}
direct direct "$T/ref.npz"
grep -q "reference: 20/20 images" "$T/direct.log" || { cat "$T/direct.log"; fail "the direct run used a cache"; }
$FC same "$T/direct/metrics.json" "$T/metrics1.json" 1e-9 > "$T/same.log" || { cat "$T/same.log"; fail "direct run != pipeline"; }
ok "a direct fid_eval.py run (fresh reference features) equals the pipeline's metrics (1e-9):"
sed 's/^/     /' "$T/same.log"

# a reference of 8 of the samples and 12 other images: non-degenerate precision and recall
$FC mix "$T/out/samples.npz" 8 "$T/ref.npz" 12 "$T/mix.npz" > /dev/null || fail "mix"
direct mix "$T/mix.npz" --save-features "$T/mix/feats.npz"
$FC independent "$T/mix/metrics.json" "$T/mix/feats.npz" > "$T/ind.log" 2>&1 ||
  { cat "$T/ind.log"; fail "independent recomputation"; }
$PY -c 'import json, sys; m = json.load(open(sys.argv[1])); p, r = m["precision"], m["recall"]
print("precision %.4f, recall %.4f (want both > 0, one < 1)" % (p, r)); sys.exit(0 if p > 0 and r > 0 and min(p, r) < 1 else 1)' \
  "$T/mix/metrics.json" >> "$T/ind.log" || { cat "$T/ind.log"; fail "precision/recall degenerate (0 or both 1)"; }
ok "metrics against 8 samples + 12 other images equal an independent recomputation from the saved features:"
sed 's/^/     /' "$T/ind.log"

$FC stats-ref "$T/mix.npz" "$T/mix/feats.npz" "$T/mix_stats.npz" > /dev/null || fail "stats-ref"
direct stats "$T/mix_stats.npz"
$PY - "$T/stats/metrics.json" "$T/mix/metrics.json" <<'EOF' || { cat "$T/stats.log"; fail "precomputed statistics"; }
import json, sys
m, d = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
print("     FID %.3g, sFID %.3g against the samples' own statistics (without: %.4f, %.4f); "
      "precision %.4f recall %.4f (without: %.4f, %.4f)" % (m["fid"], m["sfid"], d["fid"], d["sfid"],
      m["precision"], m["recall"], d["precision"], d["recall"]))
assert m["ref_pool_stats"] == "precomputed mu, sigma" and m["ref_spatial_stats"] == "precomputed mu_s, sigma_s"
assert m["fid"] < 1e-6 * d["fid"] and m["sfid"] < 1e-6 * d["sfid"], "FID/sFID not ~0 (tolerance 1e-6 of the run without)"
assert (m["precision"], m["recall"]) == (d["precision"], d["recall"]), "precision/recall differ"
EOF
ok "a reference with mu/sigma/mu_s/sigma_s: FID and sFID use them, precision/recall its images"
echo "test_fid_pipeline: ok in $(( $(date +%s) - t_start )) s"
