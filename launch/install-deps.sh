#!/usr/bin/env bash
# Installs every system package that building, testing and the quickstart need.
# Idempotent and non-interactive; run as root (or with sudo available).
# Usage: launch/install-deps.sh [--no-python]   (--no-python skips PyTorch & friends)
set -euo pipefail

want_python=1
for a in "$@"; do
  case "$a" in
    --no-python) want_python=0 ;;
    -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
    *) echo "install-deps.sh: unknown option '$a' (try --help)" >&2; exit 2 ;;
  esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "install-deps.sh: needs root or sudo to run apt-get" >&2; exit 1; fi
fi

# build: compiler, meson/ninja; numerics: OpenBLAS (CPU matmul); I/O: HDF5 (datasets,
# checkpoints, fixtures); distribution: Open MPI; config: inih (INI parser).
pkgs=(build-essential pkg-config meson ninja-build
      libopenblas-openmp-dev libhdf5-dev hdf5-tools
      libopenmpi-dev openmpi-bin libinih-dev)
# reference, fixtures, data preparation and benchmarks (system python3)
if [ "$want_python" = 1 ]; then
  pkgs+=(python3 python3-numpy python3-torch python3-h5py python3-sklearn)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps.sh: all ${#pkgs[@]} packages already installed"
  exit 0
fi
echo "install-deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps.sh: done"
