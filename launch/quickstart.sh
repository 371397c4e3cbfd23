#!/usr/bin/env bash
# The main job on one machine: prepares the embedded digits dataset (data/digits.h5) if it is
# missing, builds sddit if ./build has no binary, trains SD-DiT on the digits on the CPU
# (launch/configs/digits.ini: a few minutes on 2 cores) and says where everything went.
# Run it again to continue from the newest checkpoint (--resume auto is always passed).
# Usage: launch/quickstart.sh [sddit train options, e.g. --train.steps=500]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${SDDIT_BUILD_DIR:-build}
config=launch/configs/digits.ini
data=data/digits.h5

if [ ! -x "$build/src/sddit" ]; then
  echo "quickstart: building into $build/"
  [ -f "$build/build.ninja" ] || meson setup "$build"
  ninja -C "$build"
fi
if [ ! -f "$data" ]; then
  echo "quickstart: preparing $data from scikit-learn's bundled digits"
  /usr/bin/python3 data-prep/digits.py --out "$data"
fi
# One thread per core unless the caller chose.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
"$build/src/sddit" inspect "$data" | tail -1
"$build/src/sddit" train --config "$config" --resume auto "$@"
out_dir=$(sed -n 's/^out_dir = //p' "$config")
for a in "$@"; do case "$a" in --train.out_dir=*) out_dir=${a#--train.out_dir=} ;; esac; done
echo
echo "quickstart: done. The run is in $out_dir/:"
echo "  config.ini          the effective configuration (sddit train --config $out_dir/config.ini repeats it)"
echo "  metrics.jsonl       one JSON line per progress line (losses, grad norm, img/s)"
echo "  checkpoints/        the newest checkpoints (sddit inspect $out_dir/checkpoints/ckpt-*.h5)"
echo "Run launch/quickstart.sh --train.steps=5000 to continue training from the last checkpoint."
