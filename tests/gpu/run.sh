#!/usr/bin/env bash
# The GPU check in one prepared call (DESIGN.md test 7): a verdict on one GPU within a budget of
# SD_GPU_RUN_BUDGET seconds (480: an 8-minute window). It follows a stage plan: the essential
# stages first, then the optional ones in order while time remains.
#
#   stage            expected   max  what
#   env                     5    30  nvidia-smi -L and --query-gpu, driver, CUDA, nvcc, CPU,
#                                    the CUDA libraries (reads only: no setting is changed)
#   configure   (native)   20    90  meson setup build-gpu -Dcuda=enabled -Dgpu_arch=90
#   build       (native)   90   240  ninja -C build-gpu with only the five programs used here
#                                    (sddit, test_ops_cuda, test_sddit_cuda, bench_sddit_cuda,
#                                    nccl_probe), sm_90 code plus its PTX: 41 s on 2 cores with
#                                    the C objects built; from scratch on 16 cores about a
#                                    minute, attention.cu (half a minute alone) the long pole
#   bundle      (bundle)   10    60  unpack build-gpu-bundle/ (tests/gpu/pack.sh), find the
#                                    CUDA libraries, ldd every program, compare the sources
#   selftest               30   150  sddit selftest --backend cuda --precision bf16
#                                    --shapes small,production --no-step: every op against the
#                                    CPU at small and XL/2 shapes (hidden 1152, head dim 72)
#   step                   60   200  sddit selftest --backend cuda --shapes none --step
#                                    --model.preset=XL/2: one SD-DiT training step of XL/2 on
#                                    the GPU against the CPU backend, fp32 and bf16 (the CPU
#                                    side, two XL/2 steps, is most of the time)
#   attention              20    90  test_ops_cuda --op attention with SD_CUDA_ATTENTION=cudnn, then
#                                    =handwritten, then SD_CUDNN_REFUSE=plan (the fallback), and
#                                    sddit selftest --shapes production with cuDNN forced; each
#                                    also runs the op checks' forced paths (attention_*+cudnn,
#                                    +handwritten, +refused at T and the visible Tk)
#   bench                  45   120  bench_sddit_cuda --peak --preset XL/2 --batch 32: bf16 GEMM
#                                    peak, img/s, MFU, memory; beside it the img/s that
#                                    benchmarks/step_model.py predicts at the measured peak
#   -- optional, in this order, each only if it fits in what is left:
#   test_ops_cuda          40   180  every CUDA op against the CPU op, all shapes, both precisions
#   test_sddit_cuda        20   120  the PyTorch SD-DiT fixture, the denoiser, 50 tracked steps
#   test_nccl              20    60  NCCL collectives (tests/gpu/test_nccl.sh)
#   bench_b2               40    90  bench_sddit_cuda --preset B/2 --batch 128 (MFU against the
#                                    peak measured by bench)
#   maxbatch               90   180  bench_sddit_cuda --max-batch: XL/2 then B/2
#   sanitizer              60   150  compute-sanitizer memcheck on test_ops_cuda's tiny shapes
# The estimates are for one H200 with 16 cores, from the CPU stand-in's times on 2 cores (the
# CPU reference is most of each check) and the FLOPs: about 170 s of essential stages with the
# bundle, 270 s when building, and 270 s of optional ones.
# Plan: before a stage, usable = budget - elapsed - reserve (SD_GPU_RUN_RESERVE, 15 s, kept for
# the predictions and the summary) - 5 s (the grace between timeout's TERM and its KILL). The
# stage starts only if its expected time fits in usable (else "not run: N s left, needs ~M s"),
# under a timeout of min(its max, usable): no stage can run past the budget, a hang is cut
# at its timeout, and the stages after it are planned on what is left. A failed stage does not
# stop the others; when nothing could be built the stages that need it say so.
# Modes (SD_GPU_RUN_MODE): auto (default: the bundle when build-gpu-bundle/ is here, carried
# with the call, else native), native (configure and build here; a bundle, if any, when the
# configure or build fails), bundle. In bundle mode selftest and step run the bundle's sddit.
# Logs go to $OUT (the device tool's folder) when set, else to build-gpu/run-logs: summary.txt,
# env.log, build.log, selftest.log (selftest, step), tests.log (test_ops_cuda, test_sddit_cuda,
# test_nccl), bench.log (bench, bench_b2), maxbatch.log, sanitizer.log: 8 files. The last thing
# printed is the summary table, one row per stage:
#   stage            status        secs limit  detail
# status: ok, FAIL(rc), TIMEOUT, SKIP (a 77, or not run: the detail says why), FAIL(skip) when a
# GPU program skipped although nvidia-smi sees a GPU, STALE (a bundle built from other sources).
# The exit status is 0 when every stage that ran passed and every essential stage ran.
# Environment: SD_GPU_RUN_BUDGET (480), SD_GPU_RUN_RESERVE (15), SD_GPU_RUN_MODE,
# SD_GPU_BUILD_DIR (build-gpu), SD_GPU_BUNDLE_DIR (build-gpu-bundle), SD_GPU_BENCH (XL/2:32) and
# SD_GPU_BENCH_B2 (B/2:128) as preset:batch, SD_GPU_TEST_SEED (the test programs' seed);
# SD_GPU_RUN_SIMULATE=1: every program on the CPU stand-in (--simulate matmul, small presets),
# a dry run of this script without a GPU (give it a larger budget on a small machine).
# For tests of the plan itself: SD_GPU_RUN_CLOCK, a command printing the time in epoch seconds
# (default date +%s); SD_GPU_RUN_FAKE="NAME=SECS[:RC] ... [*=SECS[:RC]]" (or 1: every stage its
# expected time): no stage command runs; each stage instead advances the clock file
# SD_GPU_RUN_FAKE_CLOCK (a temporary one by default, which the clock then reads) by SECS and
# exits RC (0); SECS "hang" takes its whole timeout (exit 124), "hangkill" that plus the grace
# (exit 137); no sleeping, no GPU, nothing built.
# Usage: bash tests/gpu/run.sh
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root" || exit 1
budget=${SD_GPU_RUN_BUDGET:-480}
reserve=${SD_GPU_RUN_RESERVE:-15}
grace=5
build=${SD_GPU_BUILD_DIR:-build-gpu}
bundle=${SD_GPU_BUNDLE_DIR:-$root/build-gpu-bundle}
bench_spec=${SD_GPU_BENCH:-XL/2:32}
b2_spec=${SD_GPU_BENCH_B2:-B/2:128}
step_preset=XL/2
sim=()
selftest_model=()
if [ -n "${SD_GPU_RUN_SIMULATE:-}" ]; then
  sim=(--simulate matmul)
  bench_spec=${SD_GPU_BENCH:-tiny:8}
  b2_spec=${SD_GPU_BENCH_B2:-S/2:2}
  step_preset=tiny
  selftest_model=(--model.preset=S/2)
fi
out=${OUT:-$root/$build/run-logs}
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/sd_gpu_run.XXXXXX")
trap 'rm -rf "$work"' EXIT
so=$work/stage.out  # the output of the stage running now (appended to its log after)

fake=${SD_GPU_RUN_FAKE:-}
clock=${SD_GPU_RUN_CLOCK:-}
if [ -n "$fake" ]; then
  fake_clock=${SD_GPU_RUN_FAKE_CLOCK:-$work/clock}
  [ -s "$fake_clock" ] || echo 1000000000 >"$fake_clock"
  [ -n "$clock" ] || clock="cat $fake_clock"
fi
now() { if [ -n "$clock" ]; then $clock; else date +%s; fi; }
t_start=$(now)
left() { echo $((budget - ($(now) - t_start))); }

# tools that images keep outside the default PATH: CUDA's, and python3's scripts (pip's meson)
for d in /usr/local/cuda/bin "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null)"; do
  [ -n "$d" ] && [ -d "$d" ] && case ":$PATH:" in *":$d:"*) ;; *) PATH=$PATH:$d ;; esac
done
export PATH

names=(); states=(); secs=(); limits=(); details=(); essential_missing=""
record() {  # NAME STATUS SECS DETAIL [LIMIT]
  names+=("$1"); states+=("$2"); secs+=("$3"); details+=("$4"); limits+=("${5:--}")
}

oneline() {  # a command as one line of at most 200 characters (the env and bundle scripts)
  local c="$*"
  c=${c//$'\n'/ }
  echo "${c:0:200}"
}
# fake_stage NAME TIMEOUT CMD...: what run_stage does instead of CMD under SD_GPU_RUN_FAKE
fake_stage() {
  local name=$1 to=$2 spec="" dflt="" e s r t entries
  shift 2
  echo "fake $name: $(oneline "$@")"
  IFS=', ' read -r -a entries <<<"$fake"
  for e in "${entries[@]}"; do
    case $e in "$name="*) spec=${e#*=} ;; "*="*) dflt=${e#*=} ;; esac
  done
  spec=${spec:-${dflt:-$exp_now}}
  s=${spec%%:*}
  r=0
  [ "$s" != "$spec" ] && r=${spec#*:}
  case $s in
    hang) s=$to r=124 ;;
    hangkill) s=$((to + grace)) r=137 ;;
    *) [ "$s" -gt "$to" ] && s=$to r=124 ;;
  esac
  t=$(cat "$fake_clock")
  echo $((t + s)) >"$fake_clock"
  return "$r"
}

# run_stage NAME EXPECTED MAX LOG CMD...: plans the stage (see the top) and runs CMD under its
# timeout, its output in $so and appended to LOG. Sets rc (200: not run, $why says why), dt and
# to (the timeout given).
run_stage() {
  local name=$1 exp=$2 max=$3 log=$4 usable t0
  shift 4
  usable=$(($(left) - reserve - grace))
  rc=0 dt=0 to=- why=""
  : >"$so"
  if [ "$exp" -gt "$usable" ]; then
    rc=200
    why="not run: $((usable > 0 ? usable : 0)) s left, needs ~$exp s"
    echo "== $name: $why"
    echo "### $name: $why" >>"$log"
    return
  fi
  to=$((max < usable ? max : usable))
  t0=$(now)
  echo "== $name: start at +$((t0 - t_start))s, timeout ${to}s (expected ~${exp}s, max ${max}s, ${usable}s usable)"
  echo "### $name: $(oneline "$@") (timeout ${to}s, $(date -u +%T))" >>"$log"
  if [ -n "$fake" ]; then
    exp_now=$exp fake_stage "$name" "$to" "$@" >"$so" 2>&1
    rc=$?
  else
    timeout -k "$grace" "$to" "$@" >"$so" 2>&1
    rc=$?
  fi
  dt=$(($(now) - t0))
  cat "$so" >>"$log"
  echo "### $name: exit $rc after ${dt}s" >>"$log"
  echo "== $name: $(status_of $rc) (${dt}s of ${to}s)"
}
status_of() {  # rc -> status word
  case $1 in
    0) echo ok ;;
    77 | 200) echo SKIP ;;
    124 | 137) echo TIMEOUT ;;
    *) echo "FAIL($1)" ;;
  esac
}
gpu_status() {  # like status_of, but a skip (77) where nvidia-smi sees a GPU is a failure
  if [ "$1" = 77 ] && [ -n "${gpu:-}" ]; then echo "FAIL(skip)"; else status_of "$1"; fi
}
show() {  # the last lines of the stage's output, indented, as progress
  tail -n "${1:-6}" "$so" 2>/dev/null | cut -c1-200 | sed 's/^/    /'
}
have() {  # PROGRAM: built (in a fake run, anything counts as built unless nothing could be)
  [ "$mode" != none ] && { [ -n "$fake" ] || [ -x "$1" ]; }
}
# record_stage NAME ESSENTIAL DETAIL [STATUS]: the row of the stage run_stage just planned
record_stage() {
  local st=${4:-$(gpu_status $rc)} d=$3
  if [ "$rc" = 200 ]; then
    d=$why
    [ "$2" = 1 ] && essential_missing="$essential_missing $1"
  fi
  record "$1" "$st" "$dt" "$d" "$to"
}
not_built() {  # NAME ESSENTIAL WHY
  record "$1" SKIP 0 "$3"
  [ "$2" = 1 ] && essential_missing="$essential_missing $1"
}

# ---- env ------------------------------------------------------------------------------------
env_log=$out/env.log
: >"$env_log"
env_script='
echo "date: $(date -u +%FT%TZ)   host: $(hostname)   git: $(git -C "$1" describe --always --dirty 2>/dev/null || echo "?")"
echo "cpu: $(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2- | sed "s/^ //"), $(nproc) cores"
echo "memory: $(free -g 2>/dev/null | awk "/Mem:/ {print \$2 \" GiB\"}")"
echo "--- nvidia-smi -L"; nvidia-smi -L
echo "--- nvidia-smi --query-gpu"
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm,power.draw,temperature.gpu,compute_mode --format=csv
echo "--- nvidia-smi (header)"; nvidia-smi | head -n 4
echo "--- nvcc"; nvcc --version 2>&1 | tail -n 2
echo "--- meson / ninja / cuobjdump / compute-sanitizer"
(meson --version || python3 -m mesonbuild.mesonmain --version) 2>&1 | head -n 1
ninja --version 2>&1 | head -n 1
command -v cuobjdump compute-sanitizer
echo "--- CUDA libraries the loader knows"
ldconfig -p 2>/dev/null | grep -E "libcuda\.so|libcudart|libcublas|libnccl|libcudnn\.so" | sed "s/^[[:space:]]*//"
echo "--- cuDNN (the fused attention loads libcudnn.so.9 at run time: the loader path, then the wheels)"
python3 -c "
import ctypes, os
c = [\"libcudnn.so.9\"]
try:
    import nvidia
    c += [os.path.join(p, \"cudnn\", \"lib\", \"libcudnn.so.9\") for p in nvidia.__path__]
except Exception:
    pass
c += [\"/usr/local/cuda/lib64/libcudnn.so.9\"]
for f in c:
    try:
        lib = ctypes.CDLL(f)
    except OSError:
        continue
    lib.cudnnGetVersion.restype = ctypes.c_size_t
    v = lib.cudnnGetVersion()
    print(\"cudnn=%d.%d.%d (%s)\" % (v // 10000, v // 100 % 100, v % 100, f))
    break
else:
    print(\"cudnn=none found (the hand-written attention kernels run)\")
" 2>/dev/null || echo "cudnn=? (no python3)"
echo "gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1)"
echo "cuda_driver=$(nvidia-smi 2>/dev/null | sed -n "s/.*CUDA Version: *\([0-9.]*\).*/\1/p" | head -n 1)"
echo "nvcc_release=$(nvcc --version 2>/dev/null | sed -n "s/.*release \([0-9.]*\).*/\1/p" | head -n 1)"
exit 0'
run_stage env 5 30 "$env_log" bash -c "$env_script" env "$root"
gpu=$(sed -n 's/^gpu=//p' "$so" | head -n 1)
cuda_ver=$(sed -n 's/^cuda_driver=//p' "$so" | head -n 1)
nvcc_ver=$(sed -n 's/^nvcc_release=//p' "$so" | head -n 1)
cudnn_ver=$(sed -n 's/^cudnn=//p' "$so" | head -n 1)
cudnn_short=${cudnn_ver%% (*}
[ -n "$fake" ] && gpu="fake GPU (SD_GPU_RUN_FAKE)"
sed -n '/^--- nvidia-smi -L/,/^---/p' "$so" | grep -v '^---' | sed 's/^/    /'
echo "    driver/memory: ${gpu:-no nvidia-smi}; CUDA (driver) ${cuda_ver:-?}; nvcc ${nvcc_ver:-none}"
echo "    cuDNN: ${cudnn_ver:-?}"
if [ -n "$gpu" ]; then env_st=ok
elif [ ${#sim[@]} -gt 0 ]; then env_st=SKIP
else env_st="FAIL(no GPU)"
fi
[ "$rc" = 0 ] || env_st=$(status_of $rc)
record_stage env 1 "${gpu:-nvidia-smi found no GPU}; CUDA ${cuda_ver:-?}; nvcc ${nvcc_ver:-none}; cuDNN ${cudnn_short:-?}" "$env_st"

# ---- configure and build, or the bundle -----------------------------------------------------
build_log=$out/build.log
: >"$build_log"
have_bundle=0
{ [ -f "$bundle/bundle.tar.xz" ] || [ -x "$bundle/bin/sddit" ]; } && have_bundle=1
mode=${SD_GPU_RUN_MODE:-auto}
if [ "$mode" = auto ]; then
  mode=native
  [ "$have_bundle" = 1 ] && mode=bundle
fi
meson_cmd=()
if command -v meson >/dev/null; then meson_cmd=(meson)
elif python3 -c 'import mesonbuild' 2>/dev/null; then meson_cmd=(python3 -m mesonbuild.mesonmain)
fi
[ -n "$fake" ] && [ ${#meson_cmd[@]} -eq 0 ] && meson_cmd=(meson)
runenv=(env)  # how the GPU programs run: with the bundle's library path in bundle mode
targets=(src/sddit tests/test_ops_cuda tests/test_sddit_cuda tests/bench_sddit_cuda tests/nccl_probe)
if [ "$mode" = native ]; then
  if [ ${#meson_cmd[@]} -eq 0 ]; then
    echo "meson: not found" | tee -a "$build_log" >"$so"
    rc=127 dt=0 to=-
  else
    reconf=()
    [ -f "$build/build.ninja" ] && reconf=(--reconfigure)
    run_stage configure 20 90 "$build_log" "${meson_cmd[@]}" setup "${reconf[@]}" "$build" \
      -Dcuda=enabled -Dgpu_arch=90
  fi
  [ "$rc" = 0 ] || show 8
  if [ "$rc" = 0 ]; then
    record_stage configure 1 "meson setup $build -Dcuda=enabled -Dgpu_arch=90"
  else
    err=$(grep -m1 -iE 'error|not found' "$so" | cut -c1-80)
    if [ "$rc" = 200 ]; then record_stage configure 1 ""
    elif [ "$have_bundle" = 1 ]; then record_stage configure 1 "${err:-meson setup failed} -> the bundle"
    else record_stage configure 1 "${err:-meson setup failed}; no bundle (tests/gpu/pack.sh)"
    fi
    if [ "$rc" != 200 ] && [ "$have_bundle" = 1 ]; then mode=bundle; else mode=none; fi
  fi
fi
if [ "$mode" = native ]; then
  run_stage build 90 240 "$build_log" ninja -C "$build" "${targets[@]}"
  [ "$rc" = 0 ] || show 12
  if [ "$rc" = 0 ]; then
    record_stage build 1 "ninja -C $build ${targets[*]##*/}"
  else
    record_stage build 1 "$(grep -m1 -E 'error|FAILED' "$so" | cut -c1-90)"
    if [ "$rc" != 200 ] && [ "$have_bundle" = 1 ]; then mode=bundle; else mode=none; fi
  fi
fi
if [ "$mode" = bundle ]; then
  # unpack, point the loader at the bundle's lib/ and the machine's CUDA libraries (the CUDA
  # toolkit's folders and the Python wheels' nvidia/*/lib), ldd every program, and compare the
  # bundle's sources with the tree here
  bundle_script='
b=$1 dst=$2 root=$3
if [ -f "$b/bundle.tar.xz" ]; then
  mkdir -p "$dst"
  tar -C "$dst" -xJf "$b/bundle.tar.xz" 2>/dev/null ||
    python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" "$b/bundle.tar.xz" "$dst" ||
    { echo "unpack failed"; exit 4; }
else
  dst=$b
fi
echo "bundle_dir=$dst"
head -n 12 "$b/README.txt" 2>/dev/null
dirs=$dst/lib
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda/lib \
         $(python3 -c "import nvidia, os; print(\" \".join(os.path.join(p, x, \"lib\") for p in nvidia.__path__ for x in sorted(os.listdir(p))))" 2>/dev/null); do
  [ -d "$d" ] && dirs=$dirs:$d
done
echo "libpath=$dirs"
export LD_LIBRARY_PATH=$dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
missing=""
for p in "$dst"/bin/*; do
  echo "--- ldd $p"; ldd "$p" | grep -E "not found|libcu|libnccl|libopenblas|libhdf5"
  missing="$missing $(ldd "$p" | awk "/not found/ {print \$1}")"
done
missing=$(tr " " "\n" <<<"$missing" | sort -u | tr "\n" " " | sed "s/^ *//; s/ *$//")
echo "missing=$missing"
if command -v cuobjdump >/dev/null; then
  echo "--- cuobjdump --list-elf --list-ptx sddit (kinds and architectures, counted)"
  cuobjdump --list-elf --list-ptx "$dst/bin/sddit" 2>&1 | grep -oE "(sm|compute)_[0-9]+[a-z]?\.(cubin|ptx)" | sort | uniq -c
fi
want=$(head -n 1 "$b/SOURCES" 2>/dev/null)
here=$(bash "$root/tests/gpu/pack.sh" --sources-hash 2>/dev/null)
if [ -z "$want" ]; then echo "sources=unknown"
elif [ "$want" = "$here" ]; then echo "sources=same"
else echo "sources=other (bundle $want, here $here)"
fi
[ -z "$missing" ] || exit 3'
  run_stage bundle 10 60 "$build_log" bash -c "$bundle_script" bundle "$bundle" "$work/bundle" "$root"
  bdir=$(sed -n 's/^bundle_dir=//p' "$so" | head -n 1)
  libpath=$(sed -n 's/^libpath=//p' "$so" | head -n 1)
  missing=$(sed -n 's/^missing=//p' "$so" | head -n 1)
  sources=$(sed -n 's/^sources=//p' "$so" | head -n 1)
  grep -E "^(missing|sources)=" "$so" | sed 's/^/    /'
  bindir=${bdir:-$work/bundle}/bin
  # for the GPU programs alone: the bundle's libraries (libz, libssl, ...) are not for python3
  [ -n "$libpath" ] && runenv+=("LD_LIBRARY_PATH=$libpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
  d="$(sed -n 's/^made: //p' "$so" | head -n 1 | cut -c1-70)"
  if [ "$rc" = 0 ]; then
    case $sources in
      other*) record_stage bundle 1 "built from other sources than these: run tests/gpu/pack.sh" STALE ;;
      *) record_stage bundle 1 "$(ls "$bindir" 2>/dev/null | wc -l) programs, made $d, sources ${sources:-?}" ;;
    esac
  else
    [ -n "$missing" ] && d="libraries not found: $missing"
    record_stage bundle 1 "$d"
    mode=none
  fi
  sddit=$bindir/sddit
  tbin=$bindir
elif [ "$mode" = native ]; then
  sddit=$build/src/sddit
  tbin=$build/tests
fi
if [ "$mode" = none ]; then
  sddit=/nonexistent
  tbin=/nonexistent
fi
export SD_FIXTURES=$root/tests/fixtures SD_SOURCE_ROOT=$root
# cuDNN is loaded at run time (libcudnn.so.9): in a native build, from the Python wheels'
# nvidia/cudnn/lib when the system's library path has none (the bundle's path has them)
if [ "$mode" = native ] && [ -z "$fake" ]; then
  wl=$(python3 -c "import nvidia, os; print(':'.join(os.path.join(p, x, 'lib') for p in nvidia.__path__ for x in sorted(os.listdir(p)) if os.path.isdir(os.path.join(p, x, 'lib'))))" 2>/dev/null)
  [ -n "$wl" ] && runenv+=("LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$wl")
fi

# ---- selftest and step ------------------------------------------------------------------------
st_log=$out/selftest.log
: >"$st_log"
step_detail() {  # per precision: both losses, the gradients, seconds
  awk 'function grab(s, key) {
         if (match(s, key " [-+0-9.einaf][^ ,]*")) return substr(s, RSTART + length(key) + 1, RLENGTH - length(key) - 1)
         return "?" }
       /^step prec .* samples/ { s = s sprintf("%s%s: L_gen rel %s L_dis rel %s grad nmse %s %s", (s == "" ? "" : "; "),
                                   $3, grab($0, "L_gen rel"), grab($0, "L_dis rel"), grab($0, "gradient nmse"), $NF) }
       END { printf "%s", s }' "$so"
}
if have "$sddit"; then
  run_stage selftest 30 150 "$st_log" "${runenv[@]}" "$sddit" selftest --backend cuda --precision bf16 \
    --shapes small,production --no-step "${selftest_model[@]}" ${sim[@]:+"${sim[@]}"}
  grep -E "^(selftest|FAIL|op .*FAIL)" "$so" | head -n 12 | cut -c1-200 | sed 's/^/    /'
  [ "$rc" = 0 ] || show 4
  d=$(grep '^selftest: ' "$so" | tail -n 1 | sed 's/^selftest: //')
  f=$(grep -m1 'FAIL' "$so" | cut -c1-100)
  [ "$rc" = 77 ] && d=$(grep -m1 '^skip: ' "$so" | cut -c7-100)
  record_stage selftest 1 "${d:-no summary line}${f:+; first: $f}"

  run_stage step 60 200 "$st_log" "${runenv[@]}" "$sddit" selftest --backend cuda --shapes none --step \
    --model.preset="$step_preset" ${sim[@]:+"${sim[@]}"}
  grep -E "^(step prec .* samples|selftest: |FAIL)" "$so" | head -n 8 | cut -c1-200 | sed 's/^/    /'
  [ "$rc" = 0 ] || show 4
  d=$(step_detail)
  f=$(grep -m1 'FAIL' "$so" | cut -c1-100)
  [ "$rc" = 77 ] && d=$(grep -m1 '^skip: ' "$so" | cut -c7-100)
  record_stage step 1 "$step_preset: ${d:-no step line}${f:+; first: $f}"

  # the attention paths one by one: cuDNN forced (a refusal is an error here), the
  # hand-written kernels forced, a simulated cuDNN refusal (the fallback), and cuDNN at the
  # model's shapes (head dim 72, 256 and 204 tokens)
  attn_script='set -eo pipefail
for m in cudnn handwritten; do echo "== SD_CUDA_ATTENTION=$m"; SD_CUDA_ATTENTION=$m "$1" --op attention --prec bf16 $SIM | tail -n 3; done
echo "== SD_CUDNN_REFUSE=plan: the fallback"; SD_CUDNN_REFUSE=plan "$1" --op attention --prec bf16 $SIM | tail -n 3
echo "== SD_CUDA_ATTENTION=cudnn at the model shapes"; SD_CUDA_ATTENTION=cudnn "$2" selftest --backend cuda --precision bf16 --shapes production --no-step "${@:3}" | grep -E "^(selftest|FAIL)"'
  run_stage attention 20 90 "$st_log" "${runenv[@]}" SIM="${sim[*]}" bash -c "$attn_script" attention \
    "$tbin/test_ops_cuda" "$sddit" "${selftest_model[@]}" ${sim[@]:+"${sim[@]}"}
  grep -E "^(==|selftest|test_ops_cuda|FAIL)" "$so" | head -n 12 | cut -c1-200 | sed 's/^/    /'
  [ "$rc" = 0 ] || show 4
  d=$(grep -c '^test_ops_cuda: .* 0 failed' "$so")
  f=$(grep -m1 'FAIL' "$so" | cut -c1-100)
  record_stage attention 1 "cuDNN, hand-written, refused->fallback: ${d:-0}/3 clean; $(grep '^selftest path: attention (bf16)' "$so" | head -n 1 | cut -c1-90)${f:+; first: $f}"
else
  not_built selftest 1 "nothing built"
  not_built step 1 "nothing built"
  not_built attention 1 "nothing built"
fi

# ---- bench (XL/2) -------------------------------------------------------------------------------
bench_log=$out/bench.log
: >"$bench_log"
bench_rows() {  # FILE [PEAK]: one "; preset bB img/s MFU mem" per bench line
  awk -v pk="${2:-0}" '/^bench / { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
                      m = v["mfu"]; if (m + 0 == 0 && pk > 0) m = v["tflops"] / pk
                      printf "; %s b%s %.1f img/s MFU %.3f %.1f GiB", v["preset"], v["batch"], v["img_per_s"], m, v["mem_peak_gib"] }' "$1"
}
predictions() {  # FILE PEAK: what benchmarks/step_model.py predicts for each bench line
  local preset batch m l
  while read -r preset batch; do
    l=$(($(left) - 2))
    [ "$l" -lt 3 ] && break
    m=$(timeout "$((l < 15 ? l : 15))" python3 benchmarks/step_model.py --preset "$preset" \
          --batch "$batch" ${2:+--peak-tflops "$2"} 2>/dev/null | awk '/^as built/ { print $(NF-3) }')
    [ -n "$m" ] && echo -n "; model $preset b$batch $m img/s"
  done < <(awk '/^bench / { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
                           print v["preset"], v["batch"] }' "$1")
}
split_spec() {  # SPEC FIELD: presets (1) or batches (2), comma-joined
  tr ',' '\n' <<<"$1" | cut -d: -f"$2" | paste -sd,
}
peak=""
if have "$tbin/bench_sddit_cuda"; then
  run_stage bench 45 120 "$bench_log" "${runenv[@]}" "$tbin/bench_sddit_cuda" --peak \
    --preset "$(split_spec "$bench_spec" 1)" --batch "$(split_spec "$bench_spec" 2)" \
    --steps 10 --warmup 2 --seconds 20 ${sim[@]:+"${sim[@]}" --peak-size 1024}
  grep -E "^(peak|bench|note)" "$so" | cut -c1-200 | sed 's/^/    /'
  [ "$rc" = 0 ] || show 6
  peak=$(awk '/^peak gemm/ { for (i = 1; i <= NF; i++) if ($i ~ /^tflops=/) print substr($i, 8) }' "$so" | tail -n 1)
  d="bf16 GEMM peak ${peak:-?} TFLOP/s$(bench_rows "$so")"
  # beside each measured row, what benchmarks/step_model.py predicts for it at the measured
  # GEMM peak (its other rates are leads: compare, then correct the model or the kernels)
  [ "$rc" = 0 ] && d="$d$(predictions "$so" "$peak")"
  [ "$rc" = 77 ] && d=$(grep -m1 '^skip: ' "$so" | cut -c7-100)
  record_stage bench 1 "$d"
else
  not_built bench 1 "nothing built"
fi

# ---- optional: the GPU test programs ------------------------------------------------------------
tests_log=$out/tests.log
: >"$tests_log"
summary_of() {  # TEST: the "N checks passed, M failed" line of a test
  grep -h -E "^$1: .*(passed|failed|skipped)" "$so" 2>/dev/null | tail -n 1 | sed "s/^$1: //"
}
ops_detail() {  # FAIL count, and the op closest to its limit
  awk '$1 == "op" && $5 == "nmse" {
         r = ($8 > 0) ? $6 / $8 : ($6 > 0 ? 1e99 : 0)
         if (r > worst) { worst = r; w = $2 " " $4 " nmse " $6 " limit " $8 } }
       /(^| )FAIL/ { f++ }
       END { printf "%d FAIL lines; closest to its limit: %s", f + 0, (w == "" ? "-" : w) }' "$so"
}
sddit_detail() {  # the fixture summaries and the 50-step tracking, per precision
  awk 'function grab(s, key) {
         if (match(s, key " [-+0-9.in][^ ,)]*")) return substr(s, RSTART + length(key) + 1, RLENGTH - length(key) - 1)
         return "?" }
       /^# sddit prec .* summary/ { s = s sprintf(" %s: losses %s grads %s student %s;", $4,
                                    grab($0, "losses"), grab($0, "gradients"), grab($0, "student")) }
       /^track50 prec .* max_rel/ { t = t sprintf(" track50 %s: L_gen %s L_dis %s (limit %s);", $3,
                                    grab($0, "L_gen"), grab($0, "L_dis"), grab($0, "limit")) }
       END { r = s t; sub(/^ /, "", r); printf "%s", r }' "$so"
}
join() {  # the non-empty arguments, separated by "; "
  local r="" a
  for a in "$@"; do [ -n "$a" ] && r="${r:+$r; }$a"; done
  echo "$r"
}
skip_detail() {  # TEST: why it skipped
  grep -h -m1 "^skip: " "$so" | sed "s/^skip: $1: //; s/^skip: //" | cut -c1-100
}
for t in test_ops_cuda test_sddit_cuda; do
  if ! have "$tbin/$t"; then not_built "$t" 0 "nothing built"; continue; fi
  if [ $t = test_ops_cuda ]; then exp=40 max=180; else exp=20 max=120; fi
  run_stage "$t" "$exp" "$max" "$tests_log" "${runenv[@]}" OMP_NUM_THREADS=4 OMP_WAIT_POLICY=PASSIVE \
    "$tbin/$t" ${sim[@]:+"${sim[@]}"}
  grep -h "FAIL" "$so" | head -n 5 | cut -c1-200 | sed 's/^/    /'
  case $t in
    test_ops_cuda) d=$(join "$(summary_of $t)" "$(ops_detail)") ;;
    *) d=$(join "$(summary_of $t)" "$(sddit_detail)") ;;
  esac
  [ "$rc" = 77 ] && d=$(skip_detail $t)
  record_stage "$t" 0 "$d"
done
if have "$tbin/nccl_probe"; then
  run_stage test_nccl 20 60 "$tests_log" "${runenv[@]}" bash tests/gpu/test_nccl.sh "$tbin/nccl_probe"
  d=$(summary_of test_nccl)
  [ "$rc" = 77 ] && d=$(grep -h -m1 -E "^(skip|test_nccl: skipped)" "$so" | cut -c1-100)
  record_stage test_nccl 0 "$d" "$(status_of $rc)"  # no NCCL in the build: a skip, not a failure
elif [ "$mode" = bundle ]; then
  not_built test_nccl 0 "not in the bundle (packed without NCCL)"
else
  not_built test_nccl 0 "nothing built"
fi

# ---- optional: B/2 benchmark, largest batch, compute-sanitizer -----------------------------------
if have "$tbin/bench_sddit_cuda"; then
  run_stage bench_b2 40 90 "$bench_log" "${runenv[@]}" "$tbin/bench_sddit_cuda" \
    --preset "$(split_spec "$b2_spec" 1)" --batch "$(split_spec "$b2_spec" 2)" \
    --steps 10 --warmup 2 --seconds 20 ${sim[@]:+"${sim[@]}"}
  grep -E "^bench" "$so" | cut -c1-200 | sed 's/^/    /'
  [ "$rc" = 0 ] || show 6
  d=$(bench_rows "$so" "${peak:-0}")
  d=${d#; }
  [ -n "$peak" ] && d="$d (MFU against the peak of the bench stage)"
  [ "$rc" = 0 ] && d="$d$(predictions "$so" "$peak")"
  [ "$rc" = 77 ] && d=$(grep -m1 '^skip: ' "$so" | cut -c7-100)
  record_stage bench_b2 0 "$d"

  maxb_log=$out/maxbatch.log
  : >"$maxb_log"
  run_stage maxbatch 90 180 "$maxb_log" "${runenv[@]}" "$tbin/bench_sddit_cuda" --max-batch --preset XL/2,B/2 \
    --max-batch-limit 2048 ${sim[@]:+"${sim[@]}"}
  grep -E "fits=|model:" "$so" | cut -c1-200 | sed 's/^/    /'
  d=$(awk '/fits=/ { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
                     s = s sprintf("%s%s fits %s (predicted %s)", (s == "" ? "" : "; "), v["preset"], v["fits"], v["predicted"]) }
           END { print s }' "$so")
  [ -n "$d" ] || d=$(grep -E "batch=[0-9]+ ran" "$so" | tail -n 1 | cut -c1-80)
  [ -n "$d" ] || d=$(grep -h "^maxbatch .*skipped" "$so" | sed 's/^maxbatch //' | paste -sd';' | cut -c1-120)
  [ "$rc" = 77 ] && d=$(grep -m1 '^skip: ' "$so" | cut -c7-100)
  record_stage maxbatch 0 "${d:-see maxbatch.log}"
else
  not_built bench_b2 0 "nothing built"
  : >"$out/maxbatch.log"
  not_built maxbatch 0 "nothing built"
fi

san_log=$out/sanitizer.log
: >"$san_log"
if ! have "$tbin/test_ops_cuda"; then
  not_built sanitizer 0 "nothing built"
elif [ -z "$fake" ] && ! command -v compute-sanitizer >/dev/null; then
  not_built sanitizer 0 "compute-sanitizer not installed"
else
  run_stage sanitizer 60 150 "$san_log" "${runenv[@]}" OMP_NUM_THREADS=4 compute-sanitizer --tool memcheck \
    --error-exitcode 3 "$tbin/test_ops_cuda" --op @tiny --prec fp32 ${sim[@]:+"${sim[@]}"}
  show 4
  d="$(grep -h -m1 -E 'ERROR SUMMARY|Invalid' "$so" | cut -c1-90) (memcheck, tiny shapes, fp32)"
  if [ "$rc" != 0 ] && grep -qiE "device not supported|not supported on this" "$so"; then
    record_stage sanitizer 0 "the sanitizer does not support this device (see sanitizer.log)" SKIP
  else
    record_stage sanitizer 0 "$d" "$(status_of $rc)"
  fi
fi

# ---- summary ------------------------------------------------------------------------------------
total=$(($(now) - t_start))
fail=0
for st in "${states[@]}"; do
  case $st in FAIL* | TIMEOUT | ERROR | STALE | "?") fail=1 ;; esac
done
if [ $fail = 1 ]; then result="FAILURES (see the logs)"
elif [ -n "$essential_missing" ]; then result="INCOMPLETE"
else result="every stage that ran passed"
fi
[ -n "$essential_missing" ] && result="$result; essential stages not run:$essential_missing" && fail=1
{
  echo
  echo "==== tests/gpu/run.sh summary ($(date -u +%FT%TZ), ${total}s of a ${budget}s budget, mode $mode) ===="
  echo "device: ${gpu:-?} | CUDA (driver) ${cuda_ver:-?} | nvcc ${nvcc_ver:-?} | logs: $out"
  printf '%-16s %-13s %5s %5s  %s\n' stage status secs limit detail
  for i in "${!names[@]}"; do
    printf '%-16s %-13s %5s %5s  %s\n' "${names[$i]}" "${states[$i]}" "${secs[$i]}" \
      "${limits[$i]}" "${details[$i]}"
  done
  echo "result: $result"
} | tee "$out/summary.txt"
exit $fail
