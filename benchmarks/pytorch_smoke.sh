#!/usr/bin/env bash
# Smoke run of the PyTorch SD-DiT step baseline: tiny preset, batch 2, one iteration.
# Exit 77 (meson: skipped) when python3 or torch is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3; [ -x "$py" ] || py=$(command -v python3 || true)
if [ -z "$py" ] || ! "$py" -c 'import torch' >/dev/null 2>&1; then
  echo "skip: torch not importable by ${py:-python3}"
  exit 77
fi
out=$("$py" "$here/pytorch_sddit_step.py" --preset tiny --batch 2 --warmup 0 --iters 1 \
      --threads 2 --device cpu)
echo "$out"
grep -q '^pytorch preset=tiny batch=2 threads=2 img_per_s=[0-9.]* ms_step=[0-9.]*' <<<"$out"
