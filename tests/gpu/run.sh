#!/usr/bin/env bash
# The GPU check in one prepared call (DESIGN.md test 7): on one GPU, in under 10 minutes.
#   1. env        nvidia-smi -L, driver, CUDA and nvcc versions, CPU (reads only: no settings
#                 of the card are changed)
#   2. configure  meson setup build-gpu -Dcuda=enabled -Dgpu_arch=90 (reused when present)
#   3. build      ninja -C build-gpu
#      If the machine cannot configure (no meson, or no HDF5/OpenBLAS/inih/MPI development
#      files) and a prebuilt bundle is here (build-gpu-bundle/, made by tests/gpu/pack.sh and
#      carried with the call), the stages below run the bundle's programs instead.
#   4. tests      meson test -C build-gpu --suite gpu --print-errorlogs (test_nccl,
#                 test_ops_cuda, test_sddit_cuda); bundle: the two test programs directly
#   5. bench      bench_sddit_cuda --peak: bf16 GEMM peak, then SD-DiT training steps at
#                 DiT-B/2 and DiT-XL/2 (img/s, MFU against that peak, memory), each beside the
#                 img/s benchmarks/step_model.py predicts for it
#   6. maxbatch   bench_sddit_cuda --max-batch: the largest batch that fits, XL/2 then B/2
#   7. sanitizer  compute-sanitizer memcheck on test_ops_cuda's tiny shapes (out-of-bounds
#                 reads the guard regions cannot see), when installed and time is left
# Every stage runs under a timeout cut to what is left of the budget (SD_GPU_RUN_BUDGET
# seconds, default 540), so a hang cannot eat the lease; a failed stage does not stop the
# others that can still run. Logs go to $OUT (the device tool's folder) when set, else to
# build-gpu/run-logs: summary.txt, env.log, build.log, tests.log, testlog.txt, bench.log,
# maxbatch.log, sanitizer.log (8 files: what the device tool brings back). The last thing
# printed is the summary table, one row per stage:
#   stage      status      secs  detail
# status: ok, FAIL(rc), TIMEOUT, SKIP (a 77 or a stage that could not run: the detail says why);
# FAIL(skip) when a GPU program skipped although nvidia-smi sees a GPU.
# Environment: SD_GPU_RUN_BUDGET (seconds), SD_GPU_RUN_MODE (native|bundle), SD_GPU_BUILD_DIR
# (build-gpu), SD_GPU_BENCH ("B/2:128,XL/2:32": preset:batch list), SD_GPU_TEST_SEED, and
# SD_GPU_RUN_SIMULATE=1: every program on the CPU stand-in (--simulate matmul; the benchmark
# on small presets), a dry run of this script on a machine without a GPU.
# Usage: bash tests/gpu/run.sh      (exit status 0 when every stage that ran passed)
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root" || exit 1
budget=${SD_GPU_RUN_BUDGET:-540}
build=${SD_GPU_BUILD_DIR:-build-gpu}
bundle=$root/build-gpu-bundle
bench_spec=${SD_GPU_BENCH:-B/2:128,XL/2:32}
sim=()
if [ -n "${SD_GPU_RUN_SIMULATE:-}" ]; then
  sim=(--simulate matmul)
  bench_spec=${SD_GPU_BENCH:-tiny:8,S/2:2}
fi
out=${OUT:-$root/$build/run-logs}
mkdir -p "$out"
t_start=$(date +%s)

# tools that images keep outside the default PATH
for d in /usr/local/cuda/bin /opt/torch/.venv/bin "$HOME/.local/bin"; do
  [ -d "$d" ] && case ":$PATH:" in *":$d:"*) ;; *) PATH=$PATH:$d ;; esac
done
export PATH

names=(); states=(); secs=(); details=()
left() { echo $((budget - ($(date +%s) - t_start))); }
record() { names+=("$1"); states+=("$2"); secs+=("$3"); details+=("$4"); }

# run_stage NAME MAX_SECONDS LOGFILE CMD...: the command under a timeout (MAX_SECONDS or what
# is left, less a reserve for the summary), appended to LOGFILE; sets $rc and $dt.
run_stage() {
  local name=$1 max=$2 log=$3
  shift 3
  local l to t0
  l=$(left)
  to=$((max < l - 15 ? max : l - 15))
  rc=0
  dt=0
  if [ "$to" -lt 10 ]; then
    rc=200
    return
  fi
  t0=$(date +%s)
  {
    echo "### $name: $* (timeout ${to}s, $(date -u +%T))"
  } >>"$log"
  timeout -k 10 "$to" "$@" >>"$log" 2>&1
  rc=$?
  dt=$(($(date +%s) - t0))
  echo "### $name: exit $rc after ${dt}s" >>"$log"
}
status_of() {  # rc -> status word
  case $1 in
    0) echo ok ;;
    77) echo SKIP ;;
    124 | 137) echo TIMEOUT ;;
    200) echo SKIP ;;
    *) echo "FAIL($1)" ;;
  esac
}
gpu_status() {  # like status_of, but a skip (77) where nvidia-smi sees a GPU is a failure
  if [ "$1" = 77 ] && [ -n "${gpu:-}" ]; then echo "FAIL(skip)"; else status_of "$1"; fi
}
show() {  # the last lines of a log, indented, as progress
  tail -n "${2:-6}" "$1" 2>/dev/null | cut -c1-200 | sed 's/^/    /'
}

# ---- 1. environment ------------------------------------------------------------------------
env_log=$out/env.log
: >"$env_log"
{
  echo "date: $(date -u +%FT%TZ)   host: $(hostname)   git: $(git describe --always --dirty 2>/dev/null || echo '?')"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
  echo "memory: $(free -g 2>/dev/null | awk '/Mem:/ {print $2 " GiB"}')"
  echo "--- nvidia-smi -L"; nvidia-smi -L
  echo "--- nvidia-smi --query-gpu"
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm,power.draw,temperature.gpu,compute_mode --format=csv
  echo "--- nvidia-smi (header)"; nvidia-smi | head -n 4
  echo "--- nvcc"; nvcc --version 2>&1 | tail -n 2
  echo "--- meson / ninja"; (meson --version || python3 -m mesonbuild.mesonmain --version) 2>&1 | head -n 1
  ninja --version 2>&1 | head -n 1
} >>"$env_log" 2>&1
gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1)
cuda_ver=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -n 1)
nvcc_ver=$(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p' | head -n 1)
echo "== env"; nvidia-smi -L 2>&1 | sed 's/^/    /'
echo "    driver/memory: ${gpu:-no nvidia-smi}; CUDA (driver) ${cuda_ver:-?}; nvcc ${nvcc_ver:-none}"
record env "$([ -n "$gpu" ] && echo ok || echo 'FAIL(no GPU)')" 0 \
  "${gpu:-nvidia-smi found no GPU}; CUDA ${cuda_ver:-?}; nvcc ${nvcc_ver:-none}"

# ---- 2-3. configure and build --------------------------------------------------------------
build_log=$out/build.log
: >"$build_log"
mode=${SD_GPU_RUN_MODE:-native}
meson_cmd=()
if command -v meson >/dev/null; then meson_cmd=(meson)
elif python3 -c 'import mesonbuild' 2>/dev/null; then meson_cmd=(python3 -m mesonbuild.mesonmain)
fi
if [ "$mode" = native ]; then
  if [ ${#meson_cmd[@]} -eq 0 ]; then
    echo "meson: not found" >>"$build_log"
    rc=127 dt=0
  elif [ -f "$build/build.ninja" ]; then
    run_stage configure 120 "$build_log" "${meson_cmd[@]}" setup --reconfigure "$build" \
      -Dcuda=enabled -Dgpu_arch=90
  else
    run_stage configure 120 "$build_log" "${meson_cmd[@]}" setup "$build" -Dcuda=enabled \
      -Dgpu_arch=90
  fi
  cfg_rc=$rc
  echo "== configure: $(status_of $cfg_rc) (${dt}s)"
  [ "$cfg_rc" = 0 ] || show "$build_log" 8
  if [ "$cfg_rc" = 0 ]; then
    record configure ok "$dt" "meson setup $build -Dcuda=enabled -Dgpu_arch=90"
  elif [ "$cfg_rc" = 200 ]; then
    record configure SKIP 0 "not run: no time left"
    mode=none
  elif [ -x "$bundle/bin/test_ops_cuda" ]; then
    record configure "$(status_of $cfg_rc)" "$dt" \
      "$(grep -m1 -iE 'error|not found' "$build_log" | cut -c1-90) -> prebuilt bundle"
    mode=bundle
  else
    record configure "$(status_of $cfg_rc)" "$dt" \
      "$(grep -m1 -iE 'error|not found' "$build_log" | cut -c1-80); no bundle (tests/gpu/pack.sh)"
    mode=none
  fi
fi
if [ "$mode" = native ]; then
  run_stage build 300 "$build_log" ninja -C "$build"
  echo "== build: $(status_of $rc) (${dt}s)"
  [ "$rc" = 0 ] || show "$build_log" 12
  if [ "$rc" = 0 ]; then
    record build ok "$dt" "ninja -C $build"
  elif [ "$rc" = 200 ]; then
    record build SKIP 0 "not run: no time left"
    mode=none
  else
    record build "$(status_of $rc)" "$dt" "$(grep -m1 -E 'error|FAILED' "$build_log" | cut -c1-90)"
    if [ -x "$bundle/bin/test_ops_cuda" ]; then mode=bundle; else mode=none; fi
  fi
fi
if [ "$mode" = bundle ]; then
  libdirs=("$bundle/lib")
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda/lib; do
    [ -d "$d" ] && libdirs+=("$d")
  done
  for d in $(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, x, "lib") for p in nvidia.__path__ for x in sorted(os.listdir(p))))' 2>/dev/null); do
    [ -d "$d" ] && libdirs+=("$d")
  done
  LD_LIBRARY_PATH="$(IFS=:; echo "${libdirs[*]}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export LD_LIBRARY_PATH
  missing=$(for p in "$bundle"/bin/*; do ldd "$p" 2>&1 | grep 'not found'; done | sort -u | awk '{print $1}' | tr '\n' ' ')
  {
    echo "### bundle: $(head -n 1 "$bundle/README.txt" 2>/dev/null)"
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    for p in "$bundle"/bin/*; do echo "--- ldd $p"; ldd "$p"; done
  } >>"$build_log" 2>&1
  if [ -n "$missing" ]; then
    record build "FAIL(libs)" 0 "bundle libraries not found: $missing"
    mode=none
  else
    record build ok 0 "prebuilt bundle (sm_90, no NCCL): $(head -n 1 "$bundle/README.txt" | cut -c1-60)"
  fi
  echo "== bundle: ${missing:+missing $missing}${missing:-libraries resolve}"
fi
if [ "$mode" = native ]; then bindir=$build/tests; else bindir=$bundle/bin; fi

# ---- 4. the GPU test suite -------------------------------------------------------------------
tests_log=$out/tests.log
: >"$tests_log"
export SD_FIXTURES=$root/tests/fixtures SD_SOURCE_ROOT=$root
skipline() {  # why a program skipped (its "skip: ..." line), from a log
  grep -h -m1 "^skip: " "$1" 2>/dev/null | sed 's/^skip: //' | cut -c1-100
}
join() {  # the non-empty arguments, separated by "; "
  local r="" a
  for a in "$@"; do [ -n "$a" ] && r="${r:+$r; }$a"; done
  echo "$r"
}
test_detail() {  # TEST LOG STATUS
  if [ "$3" = SKIP ]; then
    grep -h -m1 "^skip: $1" "$2" 2>/dev/null | sed "s/^skip: $1: //" | cut -c1-100
    grep -h -E "^$1: skipped" "$2" 2>/dev/null | tail -n 1
    return
  fi
  case $1 in
    test_ops_cuda) join "$(summary_of "$1" "$2")" "$(ops_detail "$2")" ;;
    test_sddit_cuda) join "$(summary_of "$1" "$2")" "$(sddit_detail "$2")" ;;
    *) summary_of "$1" "$2" ;;
  esac
}
summary_of() {  # the "N checks passed, M failed" line of a test, from a log
  grep -h -E "^$1: .*(passed|failed|skipped)" "$2" 2>/dev/null | tail -n 1 | sed "s/^$1: //"
}
ops_detail() {  # FAIL count, and the op closest to its limit
  awk '$1 == "op" && $5 == "nmse" {
         r = ($8 > 0) ? $6 / $8 : ($6 > 0 ? 1e99 : 0)
         if (r > worst) { worst = r; w = $2 " " $4 " nmse " $6 " limit " $8 } }
       /(^| )FAIL/ { f++ }
       END { printf "%d FAIL lines; closest to its limit: %s", f + 0, (w == "" ? "-" : w) }' "$1"
}
sddit_detail() {  # the fixture summaries and the 50-step tracking, per precision
  awk 'function grab(s, key) {
         if (match(s, key " [-+0-9.in][^ ,)]*")) return substr(s, RSTART + length(key) + 1, RLENGTH - length(key) - 1)
         return "?" }
       /^# sddit prec .* summary/ { s = s sprintf(" %s: losses %s grads %s student %s;", $4,
                                    grab($0, "losses"), grab($0, "gradients"), grab($0, "student")) }
       /^track50 prec .* max_rel/ { t = t sprintf(" track50 %s: L_gen %s L_dis %s (limit %s);", $3,
                                    grab($0, "L_gen"), grab($0, "L_dis"), grab($0, "limit")) }
       END { printf "%s%s", s, t }' "$1"
}
if [ "$mode" = native ]; then
  run_stage tests 330 "$tests_log" "${meson_cmd[@]}" test -C "$build" --suite gpu \
    --print-errorlogs --num-processes 1 ${sim[@]:+--test-args "${sim[*]}"}
  tl=$out/testlog.txt
  if [ "$rc" = 200 ]; then
    echo "not run: no time left" >"$tl"
  else
    cp "$build/meson-logs/testlog.txt" "$tl" 2>/dev/null || echo "no testlog.txt" >"$tl"
  fi
  echo "== tests: $(status_of $rc) (${dt}s)"
  grep -E "^ *[0-9]+/[0-9]+ .*(OK|FAIL|SKIP|TIMEOUT|ERROR)" "$tests_log" | sed 's/^/    /'
  for t in test_nccl test_ops_cuda test_sddit_cuda; do
    line=$(grep -E "^ *[0-9]+/[0-9]+ .* $t +" "$tests_log" | tail -n 1)
    st=$(awk '{for (i = 1; i <= NF; i++) if ($i ~ /^(OK|FAIL|SKIP|TIMEOUT|ERROR|EXPECTEDFAIL|UNEXPECTEDPASS)$/) print $i}' <<<"$line" | head -n 1)
    s=$(awk '{for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+s$/) print $i}' <<<"$line" | tail -n 1)
    d=$(test_detail "$t" "$tl" "$st" | head -n 1)
    case $st in
      OK) st=ok ;;
      SKIP) [ -n "$gpu" ] && [ "$t" != test_nccl ] && st="FAIL(skip)" ;;
      "") st=$([ "$rc" = 0 ] && echo "?" || echo "$(status_of $rc)") ;;
    esac
    if [ -n "$s" ]; then s=$(printf '%.0f' "${s%s}" 2>/dev/null); else s=-; fi
    [ "$rc" = 200 ] && d="not run: no time left"
    record "$t" "$st" "$s" "$d"
  done
elif [ "$mode" = bundle ]; then
  tl=$out/testlog.txt
  : >"$tl"
  for t in test_ops_cuda test_sddit_cuda; do
    max=$([ $t = test_ops_cuda ] && echo 240 || echo 150)
    OMP_NUM_THREADS=4 OMP_WAIT_POLICY=PASSIVE run_stage "$t" "$max" "$tl" "$bindir/$t" \
      ${sim[@]:+"${sim[@]}"}
    echo "== $t: $(status_of $rc) (${dt}s)"
    grep -h "FAIL" "$tl" | head -n 5 | sed 's/^/    /'
    d=$(test_detail "$t" "$tl" "$(status_of $rc)" | head -n 1)
    [ "$rc" = 200 ] && d="not run: no time left"
    record "$t" "$(gpu_status $rc)" "$dt" "$d"
  done
  cp "$tl" "$tests_log"
  record test_nccl SKIP 0 "not in the bundle (built without NCCL)"
else
  for t in test_nccl test_ops_cuda test_sddit_cuda; do record "$t" SKIP 0 "nothing built"; done
fi

# ---- 5. training benchmark --------------------------------------------------------------------
bench_log=$out/bench.log
: >"$bench_log"
if [ "$mode" != none ] && [ -x "$bindir/bench_sddit_cuda" ]; then
  presets=$(tr ',' '\n' <<<"$bench_spec" | cut -d: -f1 | paste -sd,)
  batches=$(tr ',' '\n' <<<"$bench_spec" | cut -d: -f2 | paste -sd,)
  run_stage bench 150 "$bench_log" "$bindir/bench_sddit_cuda" --peak --preset "$presets" \
    --batch "$batches" --steps 10 --warmup 2 --seconds 30 ${sim[@]:+"${sim[@]}" --peak-size 1024}
  echo "== bench: $(status_of $rc) (${dt}s)"
  grep -E "^(peak|bench|note)" "$bench_log" | cut -c1-200 | sed 's/^/    /'
  [ "$rc" = 0 ] || show "$bench_log" 6
  d=$(awk '/^peak gemm/ { for (i = 1; i <= NF; i++) if ($i ~ /^tflops=/) p = substr($i, 8) }
           /^bench / { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
                       s = s sprintf("; %s b%s %.1f img/s MFU %.3f %.1f GiB", v["preset"], v["batch"], v["img_per_s"], v["mfu"], v["mem_peak_gib"]) }
           END { printf "bf16 GEMM peak %s TFLOP/s%s", (p == "" ? "?" : p), s }' "$bench_log")
  # beside each measured row, what benchmarks/step_model.py predicts for it at the measured
  # GEMM peak (its other rates are leads: compare, then correct the model or the kernels)
  peak=$(awk '/^peak gemm/ { for (i = 1; i <= NF; i++) if ($i ~ /^tflops=/) print substr($i, 8) }' \
         "$bench_log" | tail -1)
  while read -r preset batch; do
    m=$(timeout 20 python3 benchmarks/step_model.py --preset "$preset" --batch "$batch" \
          ${peak:+--peak-tflops "$peak"} 2>/dev/null | awk '/^as built/ { print $(NF-3) }')
    [ -n "$m" ] && d="$d; model $preset b$batch $m img/s"
  done < <(awk '/^bench / { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
                           print v["preset"], v["batch"] }' "$bench_log")
  [ "$rc" = 77 ] && d=$(skipline "$bench_log")
  [ "$rc" = 200 ] && d="not run: no time left"
  record bench "$(gpu_status $rc)" "$dt" "$d"
else
  record bench SKIP 0 "nothing built"
fi

# ---- 6. largest batch -----------------------------------------------------------------------
maxb_log=$out/maxbatch.log
: >"$maxb_log"
if [ "$mode" != none ] && [ -x "$bindir/bench_sddit_cuda" ]; then
  run_stage maxbatch 150 "$maxb_log" "$bindir/bench_sddit_cuda" --max-batch --preset XL/2,B/2 \
    --max-batch-limit 2048 ${sim[@]:+"${sim[@]}"}
  echo "== maxbatch: $(status_of $rc) (${dt}s)"
  grep -E "fits=|model:" "$maxb_log" | cut -c1-200 | sed 's/^/    /'
  d=$(awk '/fits=/ { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
                     s = s sprintf("%s%s fits %s (predicted %s)", (s == "" ? "" : "; "), v["preset"], v["fits"], v["predicted"]) }
           END { print s }' "$maxb_log")
  [ -n "$d" ] || d=$(grep -E "batch=[0-9]+ ran" "$maxb_log" | tail -n 1 | cut -c1-80)
  [ -n "$d" ] || d=$(grep -m1 "^maxbatch" "$maxb_log" | cut -c1-100)
  [ "$rc" = 77 ] && d=$(skipline "$maxb_log")
  [ "$rc" = 200 ] && d="not run: no time left"
  record maxbatch "$(gpu_status $rc)" "$dt" "${d:-see maxbatch.log}"
else
  record maxbatch SKIP 0 "nothing built"
fi

# ---- 7. compute-sanitizer ---------------------------------------------------------------------
san_log=$out/sanitizer.log
: >"$san_log"
if [ "$mode" != none ] && command -v compute-sanitizer >/dev/null && [ "$(left)" -gt 100 ]; then
  OMP_NUM_THREADS=4 run_stage sanitizer 180 "$san_log" compute-sanitizer --tool memcheck \
    --error-exitcode 3 "$bindir/test_ops_cuda" --op @tiny --prec fp32 ${sim[@]:+"${sim[@]}"}
  echo "== sanitizer: $(status_of $rc) (${dt}s)"
  show "$san_log" 4
  record sanitizer "$(status_of $rc)" "$dt" \
    "$(grep -h -m1 -E 'ERROR SUMMARY|Invalid' "$san_log" | cut -c1-90) (memcheck, tiny shapes, fp32)"
else
  record sanitizer SKIP 0 "$(command -v compute-sanitizer >/dev/null && echo 'not enough time left' || echo 'compute-sanitizer not installed')"
fi

# ---- summary ------------------------------------------------------------------------------------
total=$(($(date +%s) - t_start))
fail=0
for st in "${states[@]}"; do
  case $st in FAIL* | TIMEOUT | ERROR | "?") fail=1 ;; esac
done
{
  echo
  echo "==== tests/gpu/run.sh summary ($(date -u +%FT%TZ), ${total}s of a ${budget}s budget, mode $mode) ===="
  echo "device: ${gpu:-?} | CUDA (driver) ${cuda_ver:-?} | nvcc ${nvcc_ver:-?} | logs: $out"
  printf '%-16s %-13s %5s  %s\n' stage status secs detail
  for i in "${!names[@]}"; do
    printf '%-16s %-13s %5s  %s\n' "${names[$i]}" "${states[$i]}" "${secs[$i]}" "${details[$i]}"
  done
  echo "result: $([ $fail = 0 ] && echo 'every stage that ran passed' || echo 'FAILURES (see the logs)')"
} | tee "$out/summary.txt"
exit $fail
