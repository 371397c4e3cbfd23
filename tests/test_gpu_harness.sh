#!/usr/bin/env bash
# The GPU tests' own harness, on the CPU stand-in (tests/gpu/gpu_common.h), so that CI checks it
# without a GPU: test_ops_cuda --simulate matmul passes in both precisions (bf16 activation
# storage included); each planted fault (SD_GPU_SIM_BUG) makes it fail with the line of its
# kind; test_sddit_cuda --simulate matmul passes on the PyTorch fixture (SD-DiT steps, the
# sampler's denoiser, 50 steps tracking the CPU).
# Usage: test_gpu_harness.sh TEST_OPS_CUDA TEST_SDDIT_CUDA FIXTURE.h5
set -uo pipefail
ops=$1 sddit=$2 fixture=$3
fail=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

if "$ops" --simulate matmul >"$log" 2>&1; then
  echo "ok   test_ops_cuda --simulate matmul: $(tail -1 "$log")"
else
  echo "FAIL test_ops_cuda --simulate matmul (rc $?):"; grep FAIL "$log" | head -20; tail -1 "$log"
  fail=1
fi

# fault : op filter : the line that must appear
for spec in "unwritten:gelu:unwritten FAIL" "guard:copy:guard FAIL (device)" \
            "noacc:axpy:change prec fp32 nmse" "nondet:scatter:scatter_add_tokens" \
            "input:scale_rows:input-changed FAIL" "guard16:lnmod_fwd+bf16act:guard FAIL (device, bf16 copy)"; do
  bug=${spec%%:*} rest=${spec#*:}
  op=${rest%%:*} want=${rest#*:}
  SD_GPU_SIM_BUG=$bug "$ops" --simulate matmul --op "$op" >"$log" 2>&1
  rc=$?
  # (no grep -q at the end of a pipe: it can end the first grep early, which pipefail reports)
  if [ "$rc" -ne 0 ] && grep FAIL "$log" | grep -F -- "$want" >/dev/null; then
    echo "ok   planted fault $bug caught: $(grep FAIL "$log" | grep -F -- "$want" | head -1 | cut -c1-120)"
  else
    echo "FAIL planted fault $bug (op $op) not caught as '$want' (rc $rc):"; tail -3 "$log"
    fail=1
  fi
done

if "$sddit" --simulate matmul "$fixture" >"$log" 2>&1; then
  echo "ok   test_sddit_cuda --simulate matmul: $(tail -1 "$log")"
else
  echo "FAIL test_sddit_cuda --simulate matmul:"; grep FAIL "$log" | head -20; tail -1 "$log"
  fail=1
fi
exit $fail
