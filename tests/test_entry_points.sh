#!/usr/bin/env bash
# The GPU entry points, on a machine without GPU or Slurm:
#  1. slurm/*.sbatch with DRY_RUN=1 (fake SLURM_* variables): the printed srun command trains
#     on the cuda backend with the dataset (the config's data.path, or DATA); a missing dataset
#     is a warning in a dry run and an error before srun in a real one; scaling.sbatch prints
#     one srun per GPU count and creates nothing; no "not written yet" placeholders are left;
#  2. one-node.sbatch and scaling.sbatch for real through a stand-in srun (mpirun underneath)
#     on the CPU stand-in of the CUDA backend (SD_CUDA_SIMULATE) with the tiny config: the
#     command runs, 2 ranks train, scaling.sbatch writes its table and deletes the checkpoints;
#  3. launch/sddit-mpirun --dry-run with stand-in GPUs: a GPU config gets one rank per GPU and
#     keeps the cuda backend; --cpu appends --train.backend=cpu; a CPU config gets CPU ranks;
#     a GPU config without a GPU warns;
#  4. the GPU presets load and validate; without their dataset they stop naming the path and
#     how to make it, with nothing written; with a dataset but no GPU they stop with the device
#     error that names --train.backend=cpu, with nothing written;
#  5. sddit train started by srun as one of several tasks without MPI (SLURM_NTASKS > 1), or
#     alone in its MPI world under a launcher that started several, is refused with nothing
#     written; the batch shell's own SLURM_NTASKS and mpirun inside an allocation are not;
#  6. bash -n and (when installed) shellcheck on the scripts.
# Usage: test_entry_points.sh SDDIT SOURCE_ROOT
set -u
sddit="$1"; root="$2"
case "$sddit" in /*) ;; *) sddit="$PWD/$sddit" ;; esac
case "$root" in /*) ;; *) root="$PWD/$root" ;; esac
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sd_test_entry.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
unset SD_CUDA_SIMULATE DATA CONFIG RUN_DIR OUT_DIR SDDIT_ROOT DRY_RUN GPU_COUNTS STEPS
unset SLURM_JOB_ID SLURM_NTASKS SLURM_NPROCS SLURM_STEP_ID SLURM_STEP_NUM_TASKS SLURM_PROCID
unset OMPI_COMM_WORLD_SIZE PMI_SIZE PMI_RANK PMIX_RANK
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
pass=0; fail=0; skip=0
ok()   { echo "ok   $*"; pass=$((pass+1)); }
bad()  { echo "FAIL $*"; fail=$((fail+1)); }
skip() { echo "skip $*"; skip=$((skip+1)); }
# has FILE TEXT...: every TEXT occurs in FILE (fixed strings)
has() { local f=$1; shift; for t in "$@"; do grep -qF -- "$t" "$f" || return 1; done; }
show() { sed 's/^/       | /' "$1" | head -"${2:-8}"; }  # the evidence, indented
cfg_path=$(sed -n 's/^path = //p' "$root/launch/configs/XL-2.ini")
[ -n "$cfg_path" ] || bad "launch/configs/XL-2.ini has no 'path = ' in [data]"

# A tiny valid dataset with XL/2's sample shape (4 x 32 x 32, 1000 classes).
have_h5py=0
if /usr/bin/python3 - "$tmp/lat.h5" <<'PY' 2>"$tmp/h5py.err"
import sys
import h5py, numpy as np
with h5py.File(sys.argv[1], "w") as f:
    f.create_dataset("latents", data=np.zeros((4, 4, 32, 32), np.float32), chunks=(1, 4, 32, 32))
    f.create_dataset("labels", data=np.arange(4, dtype=np.int32))
    for k, v in dict(format="sddit-latents", format_version=1, num_classes=1000, image_size=256,
                     latent_channels=4, scale_factor=0.18215, encoder="none",
                     source="test_entry_points").items():
        f.attrs[k] = v
PY
then have_h5py=1; else skip "no h5py (/usr/bin/python3): the checks that need a dataset file: $(tail -1 "$tmp/h5py.err")"; fi

# Stand-ins: srun (logs its arguments; `--mpi=list` says pmix; otherwise runs the command on
# --ntasks or SLURM_NTASKS ranks through mpirun), nvidia-smi with 4 GPUs and one with none, an
# sddit that says it has CUDA, an mpirun that only answers --version.
mkdir -p "$tmp/bin" "$tmp/gpus" "$tmp/nogpus"
cat >"$tmp/bin/srun" <<'EOF'
#!/usr/bin/env bash
echo "srun $*" >>"$SRUN_LOG"
n=${SLURM_NTASKS:-1}
while [ $# -gt 0 ]; do
  case "$1" in
    --mpi=list) echo "MPI plugin types are..."; echo "        pmix"; exit 0 ;;
    --ntasks=*) n=${1#--ntasks=}; shift ;;
    -*) shift ;;
    *) break ;;
  esac
done
# mpirun must not take the fake job for a Slurm allocation it should launch into
for v in $(compgen -e | grep '^SLURM_'); do unset "$v"; done
exec mpirun -n "$n" -x SD_CUDA_SIMULATE -x OMP_NUM_THREADS -x OMP_WAIT_POLICY "$@"
EOF
# shellcheck disable=SC2016  # the stand-ins' own $i and $1
printf '#!/bin/sh\nfor i in 0 1 2 3; do echo "GPU $i: Stand-in GPU (UUID: GPU-$i)"; done\n' >"$tmp/gpus/nvidia-smi"
printf '#!/bin/sh\nexit 0\n' >"$tmp/nogpus/nvidia-smi"
# shellcheck disable=SC2016
printf '#!/bin/sh\n[ "$1" = version ] && echo "sddit 0.1.0 (cuda yes, nccl yes, blas openblas-openmp)"\nexit 0\n' >"$tmp/gpus/sddit"
printf '#!/bin/sh\necho "mpirun (Open MPI) 4.1.4"\n' >"$tmp/bin/fake-mpirun"
chmod +x "$tmp/bin/srun" "$tmp/gpus/nvidia-smi" "$tmp/nogpus/nvidia-smi" "$tmp/gpus/sddit" "$tmp/bin/fake-mpirun"
export SRUN_LOG="$tmp/srun.log"
slurm_env=(SLURM_JOB_ID=4242 SLURM_JOB_NAME=sddit SLURM_NTASKS=8 SLURM_GPUS_PER_NODE=8
           SLURM_CPUS_PER_TASK=2 SLURM_JOB_NODELIST=node01 SLURM_JOB_NUM_NODES=1)

# ---- 1. sbatch dry runs ----
for s in one-node multi-node preemptible; do
  out="$tmp/dry-$s"
  env "${slurm_env[@]}" DRY_RUN=1 SDDIT_BIN="$sddit" SDDIT_ROOT="$root" RUN_DIR="$tmp/run-$s" \
    bash "$root/slurm/$s.sbatch" >"$out.out" 2>"$out.err"; rc=$?
  line=$(grep '^+ srun' "$out.out")
  if [ $rc -eq 0 ] && [[ "$line" == *" train --config launch/configs/XL-2.ini "* ]] &&
     [[ "$line" == *" --train.backend=cuda "* ]] && [[ "$line" == *" --data.path=$cfg_path "* ]] &&
     [[ "$line" == *" --resume auto"* ]]; then
    ok "$s.sbatch DRY_RUN=1: srun ... train --config launch/configs/XL-2.ini --train.backend=cuda --data.path=$cfg_path ... --resume auto"
  else
    bad "$s.sbatch DRY_RUN=1: expected exit 0 and an srun line with the XL/2 config, --train.backend=cuda and --data.path=$cfg_path; got exit $rc:"
    show "$out.out"; show "$out.err"
  fi
  if [ ! -f "$root/$cfg_path" ]; then
    if has "$out.err" "warning: no dataset at $root/$cfg_path" "data-prep/imagenet_latents.py" "DATA="; then
      ok "$s.sbatch DRY_RUN=1 without the dataset: a warning naming $root/$cfg_path, data-prep and DATA"
    else
      bad "$s.sbatch DRY_RUN=1 without the dataset: expected a warning naming $root/$cfg_path, data-prep/imagenet_latents.py and DATA; got:"
      show "$out.err"
    fi
  fi
  [ ! -e "$tmp/run-$s" ] || bad "$s.sbatch DRY_RUN=1 created the run directory $tmp/run-$s"
  if [ $have_h5py -eq 1 ]; then
    env "${slurm_env[@]}" DRY_RUN=1 DATA="$tmp/lat.h5" SDDIT_BIN="$sddit" SDDIT_ROOT="$root" \
      bash "$root/slurm/$s.sbatch" --train.steps=10 >"$out-data.out" 2>"$out-data.err"; rc=$?
    line=$(grep '^+ srun' "$out-data.out")
    if [ $rc -eq 0 ] && [[ "$line" == *" --train.backend=cuda --data.path=$tmp/lat.h5 "* ]] &&
       [[ "$line" == *"--resume auto --train.steps=10" ]] && ! grep -q warning "$out-data.err"; then
      ok "$s.sbatch DRY_RUN=1 DATA=FILE: --data.path=FILE, the extra arguments last, no warning"
    else
      bad "$s.sbatch DRY_RUN=1 DATA=$tmp/lat.h5: expected --train.backend=cuda --data.path=$tmp/lat.h5 ... --resume auto --train.steps=10 and no warning; got exit $rc:"
      show "$out-data.out"; show "$out-data.err"
    fi
  fi
  # a real run without the dataset stops before srun starts anything
  : >"$SRUN_LOG"
  env "${slurm_env[@]}" PATH="$tmp/bin:$PATH" DATA="$tmp/missing.h5" SDDIT_BIN="$sddit" \
    SDDIT_ROOT="$root" RUN_DIR="$tmp/run-$s" bash "$root/slurm/$s.sbatch" >"$out-real.out" 2>"$out-real.err"; rc=$?
  if [ $rc -ne 0 ] && has "$out-real.err" "error: no dataset at $tmp/missing.h5 (DATA)" \
       "data-prep/imagenet_latents.py" "--data.source=synthetic" && [ ! -s "$SRUN_LOG" ] &&
     [ ! -e "$tmp/run-$s" ]; then
    ok "$s.sbatch (a real run) with DATA missing: exit $rc before srun, naming the file, data-prep and --data.source=synthetic"
  else
    bad "$s.sbatch real run, DATA=$tmp/missing.h5: expected a non-zero exit naming the file before any srun and no run directory; got exit $rc, srun calls: $(cat "$SRUN_LOG")"
    show "$out-real.err"
  fi
done

out="$tmp/dry-scaling"
env "${slurm_env[@]}" SLURM_JOB_NUM_NODES=2 DRY_RUN=1 SDDIT_BIN="$sddit" SDDIT_ROOT="$root" \
  OUT_DIR="$tmp/scal-dry" bash "$root/slurm/scaling.sbatch" >"$out.out" 2>"$out.err"; rc=$?
n_all=$(grep -c '^+ srun' "$out.out")
n_good=$(grep '^+ srun' "$out.out" | grep -F -- ' --train.backend=cuda --data.source=synthetic ' |
         grep -cF -- '--config launch/configs/XL-2.ini')
if [ $rc -eq 0 ] && [ "$n_all" -eq 5 ] && [ "$n_good" -eq 5 ] &&
   grep -qF -- '--nodes=2 --ntasks=16 --ntasks-per-node=8' "$out.out" &&
   grep -qF -- '--train.global_batch=512' "$out.out" && [ ! -e "$tmp/scal-dry" ]; then
  ok "scaling.sbatch DRY_RUN=1 on 2 nodes: 5 srun lines (1, 2, 4, 8, 16 GPUs), XL/2 on the cuda backend, synthetic data, 32 per GPU; nothing created"
else
  bad "scaling.sbatch DRY_RUN=1 (2 nodes): expected exit 0, 5 srun lines with --train.backend=cuda --data.source=synthetic (16 GPUs: --nodes=2 --ntasks=16, global batch 512), no $tmp/scal-dry; got exit $rc, $n_all lines, $n_good matching:"
  show "$out.out" 12; show "$out.err"
fi
if [ $have_h5py -eq 1 ]; then
  env "${slurm_env[@]}" DRY_RUN=1 DATA="$tmp/lat.h5" GPU_COUNTS=8 SDDIT_BIN="$sddit" SDDIT_ROOT="$root" \
    bash "$root/slurm/scaling.sbatch" >"$out-data.out" 2>"$out-data.err"; rc=$?
  if [ $rc -eq 0 ] && [ "$(grep -c '^+ srun' "$out-data.out")" -eq 1 ] &&
     grep -qF -- "--train.backend=cuda --data.source=hdf5 --data.path=$tmp/lat.h5 " "$out-data.out"; then
    ok "scaling.sbatch DRY_RUN=1 DATA=FILE GPU_COUNTS=8: one srun training on that file"
  else
    bad "scaling.sbatch DRY_RUN=1 DATA=$tmp/lat.h5 GPU_COUNTS=8: expected one srun line with --data.source=hdf5 --data.path=$tmp/lat.h5; got exit $rc:"
    show "$out-data.out"; show "$out-data.err"
  fi
fi
left=$(grep -rniE 'not written yet|placeholder|still being written' "$root/slurm" | head -3)
if [ -z "$left" ]; then ok "slurm/: no 'not written yet' / 'placeholder' / 'still being written' left"
else bad "slurm/ still says: $left"; fi

# ---- 2. real runs through the stand-in srun, on the CPU stand-in of the CUDA backend ----
if ! command -v mpirun >/dev/null 2>&1; then
  skip "mpirun not found: the real runs of one-node.sbatch and scaling.sbatch"
else
  : >"$SRUN_LOG"
  env "${slurm_env[@]}" SLURM_NTASKS=2 PATH="$tmp/bin:$PATH" SD_CUDA_SIMULATE=matmul \
    CONFIG=launch/configs/tiny.ini SDDIT_BIN="$sddit" SDDIT_ROOT="$root" RUN_DIR="$tmp/run-real" \
    timeout 300 bash "$root/slurm/one-node.sbatch" --train.steps=4 --train.global_batch=8 \
    --train.log_every=2 >"$tmp/real.out" 2>&1; rc=$?
  if [ $rc -eq 0 ] && has "$tmp/run-real/metrics.jsonl" '"step": 4' '"ranks": 2' &&
     has "$tmp/run-real/config.ini" "backend = cuda" && [ -f "$tmp/run-real/checkpoints/ckpt-00000004.h5" ]; then
    ok "one-node.sbatch through srun (2 ranks, tiny config, cuda stand-in): 4 steps, metrics with 2 ranks, backend = cuda, checkpoint"
  else
    bad "one-node.sbatch real run: expected exit 0, metrics with \"ranks\": 2 up to step 4, backend = cuda in config.ini; got exit $rc, srun: $(cat "$SRUN_LOG")"
    show "$tmp/real.out" 20
  fi
  env "${slurm_env[@]}" SLURM_GPUS_PER_NODE=2 PATH="$tmp/bin:$PATH" SD_CUDA_SIMULATE=matmul \
    CONFIG=launch/configs/tiny.ini GPU_COUNTS="1 2" STEPS=6 LOG_EVERY=2 RANK_BATCH=4 \
    SDDIT_BIN="$sddit" SDDIT_ROOT="$root" OUT_DIR="$tmp/scal" \
    timeout 300 bash "$root/slurm/scaling.sbatch" >"$tmp/scal.out" 2>"$tmp/scal.err"; rc=$?
  rows=$(awk '$1 ~ /^[0-9]+$/' "$tmp/scal/scaling.txt" 2>/dev/null)
  r1=$(echo "$rows" | awk '$1 == 1 { print $3, $6 }'); r2=$(echo "$rows" | awk '$1 == 2 { print $3 }')
  if [ $rc -eq 0 ] && [ "$r1" = "4 1.000" ] && [ "$r2" = 8 ] && [ ! -e "$tmp/scal/g1/checkpoints" ] &&
     [ -s "$tmp/scal/g2/metrics.jsonl" ]; then
    ok "scaling.sbatch through srun (1 and 2 ranks, tiny config): table rows for 1 GPU (batch 4, efficiency 1.000) and 2 GPUs (batch 8), checkpoints deleted"
  else
    bad "scaling.sbatch real run: expected exit 0 and rows '1 ... 4 ... 1.000' and '2 ... 8 ...' in $tmp/scal/scaling.txt, no checkpoints; got exit $rc:"
    show "$tmp/scal.out"; show "$tmp/scal.err" 12
  fi
fi

# ---- 3. launch/sddit-mpirun --dry-run ----
mr() {  # mr NAME GPU_DIR SDDIT ARGS...: a dry run from the source root with that nvidia-smi
  local name=$1 dir=$2 bin=$3; shift 3
  (cd "$root" && PATH="$dir:$PATH" SDDIT_BIN="$bin" MPIRUN="$tmp/bin/fake-mpirun" \
    launch/sddit-mpirun --dry-run "$@" >"$tmp/mr-$name.out" 2>"$tmp/mr-$name.err")
}
mr gpu "$tmp/gpus" "$tmp/gpus/sddit" -- train --config launch/configs/XL-2.ini --resume auto; rc=$?
l=$(cat "$tmp/mr-gpu.out")
if [ $rc -eq 0 ] && [[ "$l" == *"fake-mpirun -n 4 "* ]] && [[ "$l" == *"train --config launch/configs/XL-2.ini --resume auto" ]] &&
   [[ "$l" != *"--train.backend=cpu"* ]] && [[ "$l" != *"CUDA_VISIBLE_DEVICES="* ]]; then
  ok "sddit-mpirun --dry-run, XL/2 with 4 GPUs: -n 4, the config's cuda backend kept"
else
  bad "sddit-mpirun --dry-run (XL/2, 4 stand-in GPUs): expected '-n 4 ... train --config launch/configs/XL-2.ini --resume auto' without --train.backend=cpu; got exit $rc: $l $(cat "$tmp/mr-gpu.err")"
fi
mr cpu "$tmp/gpus" "$tmp/gpus/sddit" --cpu -- train --config launch/configs/XL-2.ini; rc=$?
l=$(cat "$tmp/mr-cpu.out")
if [ $rc -eq 0 ] && [[ "$l" == *"train --config launch/configs/XL-2.ini --train.backend=cpu" ]] &&
   [[ "$l" == *"CUDA_VISIBLE_DEVICES="* ]] && [[ "$l" != *" -n 4 "* ]]; then
  ok "sddit-mpirun --cpu --dry-run, XL/2 with 4 GPUs: CPU ranks, CUDA_VISIBLE_DEVICES empty, --train.backend=cpu appended"
else
  bad "sddit-mpirun --cpu --dry-run (XL/2): expected CPU ranks, CUDA_VISIBLE_DEVICES= and '... --train.backend=cpu' at the end; got exit $rc: $l"
fi
mr digits "$tmp/gpus" "$tmp/gpus/sddit" -- train --config launch/configs/digits.ini; rc=$?
l=$(cat "$tmp/mr-digits.out")
if [ $rc -eq 0 ] && [[ "$l" != *" -n 4 "* ]] && [[ "$l" == *"train --config launch/configs/digits.ini" ]]; then
  ok "sddit-mpirun --dry-run, the digits (CPU) config with 4 GPUs: CPU ranks, not one per GPU"
else
  bad "sddit-mpirun --dry-run (digits.ini, 4 stand-in GPUs): expected CPU ranks (not -n 4); got exit $rc: $l"
fi
mr sample "$tmp/gpus" "$tmp/gpus/sddit" --cpu -- sample --checkpoint x --backend cuda; rc=$?
l=$(cat "$tmp/mr-sample.out")
if [ $rc -eq 0 ] && [[ "$l" == *"sample --checkpoint x --backend cuda --backend cpu" ]]; then
  ok "sddit-mpirun --cpu --dry-run -- sample: --backend cpu appended"
else
  bad "sddit-mpirun --cpu --dry-run -- sample --backend cuda: expected '--backend cpu' appended; got exit $rc: $l"
fi
mr nogpu "$tmp/nogpus" "$sddit" -- train --config launch/configs/XL-2.ini; rc=$?
l=$(cat "$tmp/mr-nogpu.out")
if [ $rc -eq 0 ] && [[ "$l" == *" -n 1 "* ]] && has "$tmp/mr-nogpu.err" "asks for the cuda backend" "--cpu"; then
  ok "sddit-mpirun --dry-run, XL/2 without a GPU: one rank and a warning pointing at --cpu"
else
  bad "sddit-mpirun --dry-run (XL/2, no GPU): expected -n 1 and a warning naming the cuda backend and --cpu; got exit $rc: $l $(cat "$tmp/mr-nogpu.err")"
fi

# ---- 4. the GPU presets: parse, dataset missing, device missing ----
for p in S-2 B-2 L-2 XL-2; do
  d="$tmp/cwd-$p"; mkdir -p "$d"
  (cd "$d" && "$sddit" train --config "$root/launch/configs/$p.ini" >"$d.out" 2>&1); rc=$?
  if [ $rc -ne 0 ] && has "$d.out" "data.path = $cfg_path: cannot open the dataset: No such file or directory (relative to the working directory $d)" \
       "data-prep/imagenet_latents.py" "--data.path=FILE" "--data.source=synthetic" &&
     [ -z "$(ls -A "$d")" ]; then
    ok "$p.ini loads and validates, then without its dataset: stops naming $cfg_path, data-prep, --data.path and --data.source=synthetic; nothing written"
  else
    bad "$p.ini without the dataset: expected a non-zero exit, the message naming $cfg_path and the fixes, and an empty working directory; got exit $rc, files: $(ls -A "$d"):"
    show "$d.out"
  fi
done
gpu_here=0
if "$sddit" version | grep -q 'cuda yes' && command -v nvidia-smi >/dev/null 2>&1 &&
   [ "$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')" -gt 0 ]; then gpu_here=1; fi
if [ $have_h5py -eq 0 ]; then
  :
elif [ $gpu_here -eq 1 ]; then
  skip "a GPU is visible: the no-device error of the XL/2 preset cannot be provoked here"
else
  d="$tmp/cwd-dev"; mkdir -p "$d"
  (cd "$d" && "$sddit" train --config "$root/launch/configs/XL-2.ini" --data.path="$tmp/lat.h5" >"$d.out" 2>&1); rc=$?
  if [ $rc -ne 0 ] && has "$d.out" "train.backend = cuda:" "--train.backend=cpu" && [ -z "$(ls -A "$d")" ]; then
    ok "XL-2.ini with a dataset but no GPU: stops with the device error naming --train.backend=cpu; nothing written"
  else
    bad "XL-2.ini with a dataset, no GPU: expected a non-zero exit, 'train.backend = cuda:' and '--train.backend=cpu', nothing written; got exit $rc, files: $(ls -A "$d"):"
    show "$d.out"
  fi
fi
d="$tmp/cwd-tiny"; mkdir -p "$d"
(cd "$d" && "$sddit" train --config "$root/launch/configs/tiny.ini" --train.steps=0 >"$d.out" 2>&1); rc=$?
if [ $rc -eq 0 ]; then ok "tiny.ini loads, validates and starts (train.steps = 0)"
else bad "tiny.ini --train.steps=0: expected exit 0, got $rc:"; show "$d.out"; fi
if /usr/bin/python3 "$root/data-prep/digits.py" --out "$tmp/digits.h5" >"$tmp/digits.out" 2>&1; then
  d="$tmp/cwd-digits"; mkdir -p "$d"
  (cd "$d" && "$sddit" train --config "$root/launch/configs/digits.ini" --data.path="$tmp/digits.h5" \
     --train.steps=0 >"$d.out" 2>&1); rc=$?
  if [ $rc -eq 0 ]; then ok "digits.ini loads, validates and starts on data-prep/digits.py's file (train.steps = 0)"
  else bad "digits.ini --train.steps=0: expected exit 0, got $rc:"; show "$d.out"; fi
else
  skip "data-prep/digits.py failed (scikit-learn?): digits.ini not started: $(tail -1 "$tmp/digits.out")"
fi

# ---- 5. several tasks, one MPI world each ----
lone() {  # lone NAME EXPECTED_TEXT ENV...: sddit train refused, nothing written
  local name=$1 want=$2; shift 2
  local d="$tmp/lone-$name"; mkdir -p "$d"
  (cd "$d" && env "$@" timeout 120 "$sddit" train --config "$root/launch/configs/tiny.ini" --train.steps=1 >"$d.out" 2>&1); local rc=$?
  if [ $rc -ne 0 ] && [ $rc -ne 124 ] && has "$d.out" "$want" "nothing was written" && [ -z "$(ls -A "$d")" ]; then
    ok "$name: refused ('$want'), nothing written"
  else
    bad "$name: expected a refusal containing '$want' and 'nothing was written', an empty working directory; got exit $rc, files: $(ls -A "$d"):"
    show "$d.out"
  fi
}
lone "srun -n 2 without --mpi (SLURM_NTASKS=2)" \
  "SLURM_NTASKS = 2: srun started 2 tasks, but MPI was not started" \
  SLURM_JOB_ID=1 SLURM_NTASKS=2 SLURM_NPROCS=2 SLURM_STEP_ID=0 SLURM_STEP_NUM_TASKS=2 SLURM_PROCID=1
if has "$tmp/lone-srun -n 2 without --mpi (SLURM_NTASKS=2).out" "srun --mpi=pmix" "srun --mpi=list" "[rank 1@"; then
  ok "  ... the message names srun --mpi=pmix and srun --mpi=list, as task 1"
else
  bad "  ... expected the hint 'srun --mpi=pmix' and 'srun --mpi=list' and '[rank 1@', got:"
  show "$tmp/lone-srun -n 2 without --mpi (SLURM_NTASKS=2).out"
fi
lone "srun -n 3 without --mpi (SLURM_NPROCS=3 only)" "SLURM_NPROCS = 3" \
  SLURM_JOB_ID=1 SLURM_NPROCS=3 SLURM_STEP_ID=0
lone "srun --mpi=pmi2 with an MPI that ignores it (world 1)" \
  "SLURM_NTASKS = 2: srun started 2 tasks, but MPI reports a world of 1" \
  SLURM_JOB_ID=1 SLURM_NTASKS=2 SLURM_STEP_ID=0 SLURM_STEP_NUM_TASKS=2 PMI_RANK=0
lone "OMPI_COMM_WORLD_SIZE=2, world 1" \
  "OMPI_COMM_WORLD_SIZE = 2: the launcher started 2 processes, but MPI reports a world of 1" \
  OMPI_COMM_WORLD_SIZE=2
d="$tmp/batch-shell"; mkdir -p "$d"
(cd "$d" && env SLURM_JOB_ID=1 SLURM_NTASKS=8 "$sddit" train --config "$root/launch/configs/tiny.ini" \
   --train.steps=1 >"$d.out" 2>&1); rc=$?
if [ $rc -eq 0 ] && has "$d.out" "warning: SLURM_NTASKS = 8 but this process was not started by srun"; then
  ok "the batch shell's SLURM_NTASKS = 8 (not started by srun): one rank trains, with a warning"
else
  bad "batch shell (SLURM_NTASKS=8, no SLURM_STEP_*): expected exit 0 and the warning; got exit $rc:"; show "$d.out"
fi
if command -v mpirun >/dev/null 2>&1; then
  d="$tmp/mpirun-in-alloc"; mkdir -p "$d"
  # -x: the variables reach the rank only (mpirun itself would take them for an allocation)
  (cd "$d" && timeout 120 mpirun -n 1 -x SLURM_NTASKS=8 -x SLURM_STEP_ID=0 -x SLURM_STEP_NUM_TASKS=1 \
     "$sddit" train --config "$root/launch/configs/tiny.ini" --train.steps=1 >"$d.out" 2>&1); rc=$?
  if [ $rc -eq 0 ] && ! grep -q "nothing was written" "$d.out"; then
    ok "mpirun -n 1 inside an allocation (SLURM_NTASKS = 8 from srun's daemon step): trains, not refused"
  else
    bad "mpirun -n 1 with SLURM_NTASKS=8 SLURM_STEP_ID=0: expected exit 0 and no refusal; got exit $rc:"; show "$d.out"
  fi
else
  skip "mpirun not found: mpirun inside an allocation"
fi

# ---- 6. syntax ----
scripts=("$root"/slurm/*.sbatch "$root/slurm/common.sh" "$root/launch/sddit-mpirun")
for f in "${scripts[@]}"; do bash -n "$f" || bad "bash -n $f"; done
if command -v shellcheck >/dev/null 2>&1; then
  if (cd "$root" && shellcheck -x "${scripts[@]}" >"$tmp/sc.out" 2>&1); then
    ok "shellcheck: slurm/*.sbatch, slurm/common.sh, launch/sddit-mpirun"
  else
    bad "shellcheck:"; show "$tmp/sc.out" 20
  fi
else
  skip "shellcheck not installed (bash -n only)"
fi

echo "test_entry_points: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
