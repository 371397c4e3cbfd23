#!/usr/bin/env bash
# Regenerates the PyTorch fixture into a temporary file with tests/reference/ and runs the
# parity test against it: the committed fixture is not stale and the reference still agrees.
# Exits 77 (skip) when the system python3 lacks torch or h5py.
set -u
parity="$1"; src="$2"
py=/usr/bin/python3
[ -x "$py" ] || py=python3
if ! "$py" -c "import torch, h5py" 2>/dev/null; then
  echo "skip: $py has no torch/h5py (run launch/install-deps.sh)"; exit 77
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$py" "$src/tests/reference/make_dit_fixture.py" --out "$tmp/dit_tiny.h5" || { echo "FAIL: fixture generator failed"; exit 1; }
"$parity" "$tmp/dit_tiny.h5"
