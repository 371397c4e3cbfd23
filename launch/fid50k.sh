#!/usr/bin/env bash
# fid50k.sh: one command from a checkpoint to FID-50K, sFID, Inception Score, precision and
# recall (data-prep/README.md, "Evaluation"). Three stages, each printed before it runs:
#   1. sample   launch/sddit-mpirun -- sample ... --out OUT/samples.h5   (every rank samples)
#   2. decode   data-prep/decode_latents.py --samples OUT/samples.h5 --npz OUT/samples.npz
#   3. evaluate data-prep/fid_eval.py --ref REF --samples OUT/samples.npz --out OUT/metrics.json
#
# Usage: launch/fid50k.sh --checkpoint CKPT_OR_DIR --ref REF.npz --inception WEIGHTS.pth \
#            --vae VAE_DIR_OR_HUB_ID [options]
#   --num N            samples, classes drawn uniformly (50000)
#   --guidance S       classifier-free guidance scale (1.5)
#   --steps N          EDM Heun steps (40)
#   --seed S           noise and classes (0)
#   -n RANKS           sampling ranks (default: sddit-mpirun's: one per GPU, else 2 CPU ranks)
#   --backend B        cuda or cpu for sampling (default: cuda when GPUs are listed by
#                      nvidia-smi and sddit is built with CUDA, else cpu)
#   --out DIR          where everything goes (fid50k)
#   --batch B          sampler batch per rank (sddit's default)
#   --scale-factor F   latent scale factor, for sample files without one (decode_latents.py)
#   --vae-dtype T      float32 (default), float16 or bfloat16 (GPUs) for decoding
#   --device D         cpu, cuda or cuda:N for decoding and Inception (default: cuda when the
#                      Python's torch sees a GPU)
#   --decode-batch B   latents per VAE call (32);  --eval-batch B  images per Inception call (50)
#   --python PY        the Python for stages 2 and 3 (default $PYTHON, else /usr/bin/python3;
#                      on GPUs one whose torch has CUDA)
#   -h, --help         this text
# Environment: DRY_RUN=1 checks the arguments and prints the commands only; SDDIT_BIN (the
# sddit binary, default build/src/sddit), MPIRUN and MPIRUN_ARGS as for sddit-mpirun.
#
# Reruns continue: a stage whose output exists and was made with the same settings
# (OUT/.fid50k/STAGE.key) is skipped, so an interrupted run resumes at the first stage not
# done. An output made with other settings is refused (remove it or choose another --out).
# With a checkpoint directory (or a run's directory holding checkpoints/) the settings include
# its newest ckpt-*.h5, so new checkpoints are noticed. Bad inputs (missing checkpoint, reference, weights or VAE; weights that do not
# load strictly; a Python without numpy/h5py/torch/diffusers) stop the run before anything.
# It ends by printing the table and where the metrics are (OUT/metrics.json).
# Exit status: 0 done; 1 a stage failed; 2 bad arguments or inputs.
set -euo pipefail

prog=fid50k.sh
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die() { echo "$prog: error: $*" >&2; exit "${EXIT:-2}"; }
note() { echo "$prog: $*" >&2; }

# ---- arguments ----
ckpt="" ref="" inception="" vae=""
num=50000 guidance=1.5 steps=40 seed=0 ranks="" backend="" out=fid50k batch=""
scale_factor="" vae_dtype=float32 device="" decode_batch=32 eval_batch=50
py=${PYTHON:-/usr/bin/python3}
need() { [ "$2" -ge 2 ] || die "$1 needs a value (see --help)"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --checkpoint) need "$1" $#; ckpt=$2; shift 2 ;;
    --ref) need "$1" $#; ref=$2; shift 2 ;;
    --inception) need "$1" $#; inception=$2; shift 2 ;;
    --vae) need "$1" $#; vae=$2; shift 2 ;;
    --num) need "$1" $#; num=$2; shift 2 ;;
    --guidance) need "$1" $#; guidance=$2; shift 2 ;;
    --steps) need "$1" $#; steps=$2; shift 2 ;;
    --seed) need "$1" $#; seed=$2; shift 2 ;;
    -n|--ranks) need "$1" $#; ranks=$2; shift 2 ;;
    --backend) need "$1" $#; backend=$2; shift 2 ;;
    --out) need "$1" $#; out=$2; shift 2 ;;
    --batch) need "$1" $#; batch=$2; shift 2 ;;
    --scale-factor) need "$1" $#; scale_factor=$2; shift 2 ;;
    --vae-dtype) need "$1" $#; vae_dtype=$2; shift 2 ;;
    --device) need "$1" $#; device=$2; shift 2 ;;
    --decode-batch) need "$1" $#; decode_batch=$2; shift 2 ;;
    --eval-batch) need "$1" $#; eval_batch=$2; shift 2 ;;
    --python) need "$1" $#; py=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

posint() { [[ "$2" =~ ^[0-9]+$ ]] && [ "$2" -ge 1 ] || die "$1 wants a positive integer, not '$2'"; }
number() { [[ "$2" =~ ^[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$ ]] || die "$1 wants a non-negative number, not '$2'"; }
[ -n "$ckpt" ] || die "--checkpoint is required (see --help)"
[ -n "$ref" ] || die "--ref is required (see --help)"
[ -n "$inception" ] || die "--inception is required (see --help)"
[ -n "$vae" ] || die "--vae is required (see --help)"
posint --num "$num"; posint --steps "$steps"; number --guidance "$guidance"
[[ "$seed" =~ ^[0-9]+$ ]] || die "--seed wants a non-negative integer, not '$seed'"
[ -z "$ranks" ] || posint -n "$ranks"
[ -z "$batch" ] || posint --batch "$batch"
posint --decode-batch "$decode_batch"; posint --eval-batch "$eval_batch"
[ -z "$scale_factor" ] || number --scale-factor "$scale_factor"
case "$vae_dtype" in float32|float16|bfloat16) ;; *) die "--vae-dtype '$vae_dtype' is not float32, float16 or bfloat16" ;; esac
case "$backend" in ""|cuda|cpu) ;; *) die "--backend '$backend' is not cuda or cpu" ;; esac

# ---- the inputs, before anything runs ----
newest_ckpt=""
newest_in() { (cd "$1" && ls ckpt-*.h5 2>/dev/null | sort | tail -1 || true); }
if [ -d "$ckpt" ]; then
  newest_ckpt=$(newest_in "$ckpt")
  if [ -z "$newest_ckpt" ] && [ -d "$ckpt/checkpoints" ]; then  # a run's output directory
    ckpt=${ckpt%/}/checkpoints
    newest_ckpt=$(newest_in "$ckpt")
  fi
  [ -n "$newest_ckpt" ] || die "--checkpoint $ckpt: the directory holds no ckpt-*.h5"
elif [ ! -f "$ckpt" ]; then
  die "--checkpoint $ckpt: no such file or directory"
fi
[ -r "$ckpt" ] || die "--checkpoint $ckpt: not readable"
[ -f "$ref" ] || die "--ref $ref: no such file (the reference batch .npz, e.g. VIRTUAL_imagenet256_labeled.npz)"
[ -f "$inception" ] || die "--inception $inception: no such file (the FID Inception-v3 weights, pt_inception-2015-12-05-*.pth)"
if [ -e "$vae" ]; then
  [ -f "$vae/config.json" ] || die "--vae $vae: not a diffusers AutoencoderKL directory (no config.json)"
elif ! [[ "$vae" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$ ]]; then
  die "--vae $vae: no such directory (and not a hub id owner/name)"
fi
bin=${SDDIT_BIN:-$repo/build/src/sddit}
[ -x "$bin" ] || die "no sddit binary at $bin: build first (meson setup build && ninja -C build) or set SDDIT_BIN"
command -v "$py" >/dev/null 2>&1 || die "--python $py: not found"

abspath() { (cd "$(dirname "$1")" && printf '%s/%s' "$(pwd -P)" "$(basename "$1")"); }
ckpt_abs=$(abspath "$ckpt"); ref_abs=$(abspath "$ref"); inception_abs=$(abspath "$inception")
vae_abs=$vae; [ ! -e "$vae" ] || vae_abs=$(abspath "$vae")

# Sampling backend: cuda when GPUs are listed and the binary has CUDA, unless told otherwise.
if [ -z "$backend" ]; then
  backend=cpu
  gpus=0
  if command -v nvidia-smi >/dev/null 2>&1; then
    gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
  fi
  if [ "$gpus" -gt 0 ] && ! "$bin" version 2>/dev/null | grep -q 'cuda no'; then
    backend=cuda
  fi
elif [ "$backend" = cuda ] && "$bin" version 2>/dev/null | grep -q 'cuda no'; then
  die "--backend cuda: $bin is built without CUDA (meson setup build -Dcuda=enabled)"
fi

# ---- the stages' commands and the settings that determine each output ----
samples=$out/samples.h5 npz=$out/samples.npz metrics=$out/metrics.json keys=$out/.fid50k
sample_args=(sample --checkpoint "$ckpt" --num "$num" --guidance "$guidance" --steps "$steps"
             --seed "$seed" --backend "$backend")
[ -z "$batch" ] || sample_args+=(--batch "$batch")
sample_args+=(--out "$samples")
if command -v "${MPIRUN:-mpirun}" >/dev/null 2>&1; then
  launcher=("$repo/launch/sddit-mpirun")
  [ -z "$ranks" ] || launcher+=(-n "$ranks")
  [ "$backend" = cuda ] || launcher+=(--cpu)
  sample_cmd=("${launcher[@]}" -- "${sample_args[@]}")
else
  [ -z "$ranks" ] || [ "$ranks" -eq 1 ] || die "-n $ranks needs mpirun, which is not installed (apt-get install openmpi-bin)"
  note "mpirun not found: sampling in one process"
  sample_cmd=("$bin" "${sample_args[@]}")
fi
decode_cmd=("$py" "$repo/data-prep/decode_latents.py" --samples "$samples" --vae "$vae"
            --npz "$npz" --batch-size "$decode_batch" --vae-dtype "$vae_dtype")
[ -z "$scale_factor" ] || decode_cmd+=(--scale-factor "$scale_factor")
eval_cmd=("$py" "$repo/data-prep/fid_eval.py" --ref "$ref" --samples "$npz"
          --inception "$inception" --out "$metrics" --batch-size "$eval_batch")
if [ -n "$device" ]; then
  decode_cmd+=(--device "$device"); eval_cmd+=(--device "$device")
fi

fsize() { stat -c %s "$1" 2>/dev/null || echo 0; }
key_sample="checkpoint=$ckpt_abs${newest_ckpt:+ newest=$newest_ckpt} num=$num"
key_sample+=" guidance=$guidance steps=$steps seed=$seed backend=$backend"
key_decode="$key_sample | vae=$vae_abs vae_dtype=$vae_dtype scale_factor=${scale_factor:-file}"
key_eval="$key_decode | ref=$ref_abs ($(fsize "$ref") bytes)"
key_eval+=" inception=$inception_abs ($(fsize "$inception") bytes)"

# An existing output must come from the same settings; otherwise stop before anything runs.
check_output() {  # check_output STAGE FILE KEY
  [ -e "$2" ] || return 0
  local had=""
  [ -f "$keys/$1.key" ] && had=$(cat "$keys/$1.key")
  [ "$had" = "$3" ] && return 0
  die "$2 exists but was made with other settings (${had:-no record in $keys/$1.key});" \
      "now: $3. Remove it (and the later stages' outputs) or choose another --out"
}
check_output sample "$samples" "$key_sample"
check_output decode "$npz" "$key_decode"
check_output eval "$metrics" "$key_eval"

# The Python side: its packages, the VAE (a hub id is fetched now), the reference batch and
# the weights (loaded strictly), so that a bad one stops the run before hours of sampling.
preflight() {
  local why
  why=$("$py" - "$repo" "$vae" <<'PYEOF' 2>&1
import os, sys
repo, vae = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(repo, "data-prep"))
if os.path.isdir(os.path.join(repo, ".pydeps")):
    sys.path.insert(0, os.path.join(repo, ".pydeps"))
import numpy, h5py, torch, PIL, diffusers  # noqa: F401 - what the stages import
import imagenet_latents as il
try:
    il.resolve_vae(vae)
except il.PrepError as e:
    sys.exit(str(e))
print("torch %s, CUDA %s" % (torch.__version__, "yes" if torch.cuda.is_available() else "no"))
PYEOF
  ) || die "the Python stages cannot run with $py: ${why##*$'\n'}"
  why=${why##*$'\n'}
  note "Python: $py ($why)"
  if [ "$backend" = cuda ] && [[ "$why" == *"CUDA no"* ]] && [ -z "$device" ]; then
    note "warning: $py's torch sees no GPU: decoding and Inception run on the CPU (slow for" \
         "many images); pass --python with a Python whose torch has CUDA"
  fi
  "$py" "$repo/data-prep/fid_eval.py" --check --ref "$ref" --inception "$inception" >/dev/null ||
    die "the reference batch or the Inception weights were refused (above)"
}

dry=${DRY_RUN:-0}
stage_no=0
run_stage() {  # run_stage NAME OUTPUT KEY CMD...: run unless OUTPUT exists (same settings)
  local name=$1 output=$2 key=$3 t0 rc line
  shift 3
  stage_no=$((stage_no + 1))
  if [ -e "$output" ]; then
    echo "== [$stage_no/3] $name: skipped, $output is complete (same settings)"
    return 0
  fi
  echo "== [$stage_no/3] $name -> $output"
  line=$(printf '%q ' "$@")
  printf '+ %s\n' "${line% }"
  [ "$dry" = 1 ] && return 0
  mkdir -p "$keys"
  printf '%s' "$key" > "$keys/$name.key"  # outputs appear atomically, after this
  t0=$(date +%s)
  rc=0
  "$@" || rc=$?
  [ "$rc" -eq 0 ] || EXIT=1 die "stage $name failed (exit $rc); fix the cause and rerun the same command to continue"
  [ -e "$output" ] || EXIT=1 die "stage $name exited 0 but wrote no $output"
  echo "== [$stage_no/3] $name done in $(( $(date +%s) - t0 )) s"
}

if [ "$dry" != 1 ]; then
  preflight
  mkdir -p "$out"
fi
echo "$prog: $num samples of $ckpt (guidance $guidance, $steps steps, seed $seed, backend $backend) -> $out"
run_stage sample "$samples" "$key_sample" "${sample_cmd[@]}"
run_stage decode "$npz" "$key_decode" "${decode_cmd[@]}"
run_stage eval "$metrics" "$key_eval" "${eval_cmd[@]}"
[ "$dry" = 1 ] && exit 0

"$py" - "$metrics" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1]))
def f(v):
    return "n/a" if v is None else "%.4f" % v
print("FID %s  sFID %s  IS %s  precision %s  recall %s  (%d samples vs %d reference images)" % (
    f(m["fid"]), f(m["sfid"]), f(m["inception_score"]), f(m["precision"]), f(m["recall"]),
    m["num_samples"], m["num_ref_images"]))
PYEOF
echo "$prog: metrics in $metrics (samples $samples, images $npz)"
