#!/usr/bin/env bash
# Builds the GPU programs here and packs them, with the shared libraries they need beyond the
# C/C++ runtime and CUDA, into build-gpu-bundle/ (git-ignored). tests/gpu/run.sh uses the
# bundle on a device machine whose image cannot build the project (no HDF5, OpenBLAS, inih or
# MPI development files, or no meson): pass `carry: ["build-gpu-bundle"]` to the device call.
# What differs from a native build there:
#   - compiled for x86-64-v3 (not -march=native) and sm_90 only, without NCCL (test_nccl is
#     not in the bundle);
#   - the CPU reference's BLAS is the netlib one (libblas.so.3, installed as libopenblas.so.0:
#     the programs only call cblas_sgemm), slower than OpenBLAS and rounding differently, which
#     the GPU tolerances do not depend on;
#   - cuBLAS and cuBLASLt come from the machine (too large to carry; run.sh looks in
#     /usr/local/cuda and in the Python wheels' nvidia/*/lib), as does the driver's libcuda;
#     libcudart travels with the bundle.
# Usage: tests/gpu/pack.sh [BUILD_DIR]   (default build-gpu-pack; prints the bundle's size)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:-$root/build-gpu-pack}
bundle=$root/build-gpu-bundle
progs=(test_ops_cuda test_sddit_cuda bench_sddit_cuda)

if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" "$root" -Dcuda=enabled -Dgpu_arch=90 -Dnccl=disabled \
    -Dc_args=-march=x86-64-v3 -Dbuildtype=release
fi
ninja -C "$build" $(printf 'tests/%s ' "${progs[@]}")

rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/lib"
for p in "${progs[@]}"; do cp "$build/tests/$p" "$bundle/bin/"; done

# Libraries: everything ldd resolves except the loader, glibc, the C++/GCC runtime and CUDA.
skip='^(linux-vdso|ld-linux|libc\.so|libm\.so|libmvec|libpthread|libdl\.so|librt\.so|libresolv|libanl|libnsl|libutil|libthread_db|libstdc\+\+|libgcc_s|libcuda\.so|libcublas|libcublasLt|libnccl|libnvrtc|libnvJitLink)'
missing=0
for p in "${progs[@]}"; do
  while read -r name _ path _; do
    [ -n "${name:-}" ] || continue
    name=${name##*/}
    if [[ "$name" =~ $skip ]]; then continue; fi
    if [ "${path:-}" = "not" ] || [ -z "${path:-}" ]; then
      echo "pack.sh: $p needs $name, which ldd does not find here" >&2; missing=1; continue
    fi
    [ -e "$bundle/lib/$name" ] && continue
    if [[ "$name" == libopenblas.so* ]]; then
      netlib=$(ls /usr/lib/x86_64-linux-gnu/blas/libblas.so.3 2>/dev/null || true)
      if [ -n "$netlib" ] && nm -D "$netlib" 2>/dev/null | grep ' T cblas_sgemm$' >/dev/null; then
        cp -L "$netlib" "$bundle/lib/$name"
        echo "pack.sh: $name <- netlib $netlib (cblas_sgemm)"
        continue
      fi
    fi
    cp -L "$path" "$bundle/lib/$name"
  done < <(ldd "$bundle/bin/$p" | sed 's/^[[:space:]]*//')
done
[ "$missing" = 0 ] || exit 1
# drop what only the replaced OpenBLAS needed (libgfortran, libquadmath): keep the libraries
# that the programs load from the bundle
keep=$(for p in "${progs[@]}"; do LD_LIBRARY_PATH="$bundle/lib" ldd "$bundle/bin/$p"; done |
       awk -v d="$bundle/lib/" 'index($3, d) == 1 { sub(".*/", "", $3); print $3 }' | sort -u)
for f in "$bundle/lib"/*; do
  grep -qx "$(basename "$f")" <<<"$keep" || { echo "pack.sh: not needed: $(basename "$f")"; rm -f "$f"; }
done

cat > "$bundle/README.txt" <<EOF
Made by tests/gpu/pack.sh on $(hostname) at $(date -u +%FT%TZ) from $(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown).
bin/: ${progs[*]} (sm_90, x86-64-v3, no NCCL). lib/: their shared libraries except glibc, the
C++ runtime and CUDA. tests/gpu/run.sh runs them when the machine cannot build the project.
EOF
# the check that matters on the device: with only the bundle's lib/, does everything resolve?
for p in "${progs[@]}"; do
  if LD_LIBRARY_PATH="$bundle/lib" ldd "$bundle/bin/$p" | grep -q 'not found'; then
    echo "pack.sh: $p has unresolved libraries:" >&2
    LD_LIBRARY_PATH="$bundle/lib" ldd "$bundle/bin/$p" | grep 'not found' >&2
    exit 1
  fi
done
du -sh "$bundle" "$bundle/lib"
ls "$bundle/lib" | tr '\n' ' '; echo
echo "pack.sh: carry build-gpu-bundle with the device call (64 MiB limit for tree + carried paths)"
