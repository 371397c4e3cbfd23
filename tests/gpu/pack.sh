#!/usr/bin/env bash
# Builds the GPU programs here and packs them, with the shared libraries they need beyond glibc,
# the C++ runtime and the large CUDA libraries, into build-gpu-bundle/ (git-ignored).
# tests/gpu/run.sh uses the bundle on a device machine whose image cannot build the project (no
# HDF5, OpenBLAS, inih or MPI development files, or no meson): pass
# `carry: ["build-gpu-bundle"]` to the device call. The bundle:
#   bundle.tar.xz  bin/: sddit (run.sh's selftest and step stages), test_ops_cuda,
#                  test_sddit_cuda, bench_sddit_cuda, and nccl_probe with SD_PACK_NCCL=enabled;
#                  lib/: their libraries (OpenBLAS and its libgfortran, HDF5, inih, Open MPI,
#                  libgomp, ..., and libcudart.so.13)
#   README.txt     how it was made; the CUDA libraries each program needs, by soname, and
#                  which travel
#   SOURCES        the hash of the sources it was built from (run.sh compares it with its tree)
# What differs from a native build there:
#   - compiled for x86-64-v3 (not -march=native) and for sm_80 and sm_90 machine code plus
#     compute_90 PTX (meson.build adds the PTX of the highest gpu_arch), which the driver of a
#     newer GPU compiles at load; without NCCL unless SD_PACK_NCCL=enabled (then libnccl.so.2
#     must be on the device too);
#   - cuBLAS and cuBLASLt (libcublas.so.13, libcublasLt.so.13: hundreds of MB) and NCCL come
#     from the machine: run.sh looks in /usr/local/cuda/lib64 (and targets/x86_64-linux/lib),
#     then in the Python wheels' nvidia/*/lib (the nvidia-cublas wheel of CUDA 13 has them in
#     nvidia/cu13/lib, nvidia-nccl-cu13 in nvidia/nccl/lib); the driver's libcuda.so.1 is the
#     machine's; libcudart.so.13 (under 1 MB) travels in lib/.
# Size: every program links the same kernels (about 20 MB of fatbin each), so the programs are
# packed with single-threaded xz -9, whose 64 MiB window spans them and stores the repeats
# once: the bundle is about a tenth of its unpacked size. The device call carries at most
# 64 MiB, the tree included; this script fails above 48 MiB together.
# Usage: tests/gpu/pack.sh [BUILD_DIR]   (default build-gpu-pack; reuses it when configured)
#        tests/gpu/pack.sh --sources-hash (the hash of the sources here, as SOURCES holds it)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

sources_hash() {  # what the programs are built from: their C, CUDA and meson files (not the
                  # other tests, so that a change there does not make the bundle stale)
  (cd "$root" && find meson.build meson_options.txt src kernels tests/gpu tests/check.[ch] \
     tests/dit_case.[ch] tests/fixture.[ch] tests/perturb.[ch] tests/tolerances.h -type f \
     \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' -o -name '*.in' \
        -o -name meson.build -o -name meson_options.txt \) -print0 | LC_ALL=C sort -z |
     xargs -0 sha256sum | sha256sum | cut -c1-16)
}
if [ "${1:-}" = --sources-hash ]; then sources_hash; exit 0; fi

build=${1:-$root/build-gpu-pack}
bundle=$root/build-gpu-bundle
nccl=${SD_PACK_NCCL:-disabled}
progs=(src/sddit tests/test_ops_cuda tests/test_sddit_cuda tests/bench_sddit_cuda)
[ "$nccl" = enabled ] && progs+=(tests/nccl_probe)
limit_mib=48

opts=(-Dcuda=enabled "-Dgpu_arch=80,90" -Dnccl="$nccl" -Dc_args=-march=x86-64-v3
      -Dbuildtype=release)
if [ -f "$build/build.ninja" ]; then
  meson configure "$build" "${opts[@]}" >/dev/null
else
  meson setup "$build" "$root" "${opts[@]}"
fi
ninja -C "$build" "${progs[@]}"
hash=$(sources_hash)

stage=$(mktemp -d "${TMPDIR:-/tmp}/sd_pack.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib"
for p in "${progs[@]}"; do cp "$build/$p" "$stage/bin/"; done
names=("${progs[@]##*/}")

# Libraries: everything ldd resolves except the loader, glibc, the C++/GCC runtime and the
# CUDA libraries that the device has (the driver, cuBLAS, cuBLASLt, NCCL).
system='^(linux-vdso|ld-linux|libc\.so|libm\.so|libmvec|libpthread|libdl\.so|librt\.so|libresolv|libanl|libnsl|libutil|libthread_db|libstdc\+\+|libgcc_s)'
device='^(libcuda\.so|libcublas|libcublasLt|libnccl|libnvrtc|libnvJitLink)'
missing=0
for p in "${names[@]}"; do
  while read -r name _ path _; do
    [ -n "${name:-}" ] || continue
    name=${name##*/}
    if [[ "$name" =~ $system ]] || [[ "$name" =~ $device ]]; then continue; fi
    if [ "${path:-}" = "not" ] || [ -z "${path:-}" ]; then
      echo "pack.sh: $p needs $name, which ldd does not find here" >&2; missing=1; continue
    fi
    [ -e "$stage/lib/$name" ] || cp -L "$path" "$stage/lib/$name"
  done < <(ldd "$stage/bin/$p" | sed 's/^[[:space:]]*//')
done
[ "$missing" = 0 ] || exit 1

# The check that matters on the device: with the bundle's lib/ first, every library resolves
# into lib/ except the system's and the device's CUDA libraries.
for p in "${names[@]}"; do
  bad=$(LD_LIBRARY_PATH="$stage/lib" ldd "$stage/bin/$p" | sed 's/^[[:space:]]*//' |
        d="$stage/lib/" sys="$system" dev="$device" awk \
          '{ n = $1; sub(".*/", "", n) }
           n ~ ENVIRON["sys"] || n ~ ENVIRON["dev"] { next }
           $3 == "not" || index($3, ENVIRON["d"]) != 1 { print n " => " $3 }')
  if [ -n "$bad" ]; then
    echo "pack.sh: $p would load from outside the bundle's lib/:" >&2
    echo "$bad" >&2
    exit 1
  fi
done

# Machine code for sm_80 and sm_90 and PTX for compute_90 in every program: cuobjdump when
# installed, else the fatbin's own entry headers (kind 1 = PTX, 2 = ELF; the architecture).
gpu_code() {  # PROGRAM -> "elf sm_80", "ptx compute_90", ... one per kind and architecture
  if command -v cuobjdump >/dev/null; then
    cuobjdump --list-elf --list-ptx "$1" | grep -oE '(sm|compute)_[0-9]+[a-z]?\.(cubin|ptx)' |
      sed -E 's/^(.*)\.cubin$/elf \1/; s/^(.*)\.ptx$/ptx \1/' | sed 's/elf compute_/elf sm_/; s/ptx sm_/ptx compute_/' | sort -u
    return
  fi
  objcopy -O binary --only-section=.nv_fatbin "$1" "$stage/fatbin"
  python3 - "$stage/fatbin" <<'EOF'
import struct, sys
data, seen, off = open(sys.argv[1], "rb").read(), set(), 0
while off + 16 <= len(data):
    magic, _, hsize, fsize = struct.unpack_from("<IHHQ", data, off)
    if magic != 0xBA55ED50:
        off += 8
        continue
    e, end = off + hsize, off + hsize + fsize
    while e + 32 <= end:
        kind, _, ehs, size = struct.unpack_from("<HHIQ", data, e)
        arch = struct.unpack_from("<I", data, e + 28)[0]
        seen.add("ptx compute_%d" % arch if kind == 1 else "elf sm_%d" % arch)
        if ehs == 0:
            break
        e += ehs + size
    off = end
print("\n".join(sorted(seen)))
EOF
}
code=""
for p in "${names[@]}"; do
  c=$(gpu_code "$stage/bin/$p" | tr '\n' ' ')
  for want in "elf sm_80" "elf sm_90" "ptx compute_90"; do
    case " $c" in *" $want "*) ;; *) echo "pack.sh: $p has no $want (it has: $c)" >&2; exit 1 ;; esac
  done
  code=$c
done

# The CUDA libraries each program asks for (NEEDED), by soname, and where each comes from
cuda_libs=""
for p in "${names[@]}"; do
  l=$(readelf -d "$stage/bin/$p" | sed -n 's/.*(NEEDED).*\[\(lib\(cu\|nccl\)[^]]*\)\]/\1/p' | tr '\n' ' ')
  cuda_libs="$cuda_libs$p: $l"$'\n'
done
carried=""
for f in "$stage"/lib/libcudart* "$stage"/lib/libcublas* "$stage"/lib/libnccl*; do [ -e "$f" ] && carried="$carried${f##*/} "; done

cat > "$stage/README.txt" <<EOF
made: $(date -u +%FT%TZ) from $(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)
Made by tests/gpu/pack.sh: bin/ ${names[*]}; x86-64-v3; GPU code: ${code}; NCCL $nccl.
lib/: their shared libraries except glibc, the C++ runtime and the device's CUDA libraries.
CUDA libraries the programs load (soname):
${cuda_libs}carried in lib/: ${carried:-none}; from the device (run.sh searches /usr/local/cuda and
the Python wheels' nvidia/*/lib): the others, and the driver's libcuda.so.1.
tests/gpu/run.sh runs these programs when the machine cannot build the project.
EOF

echo "pack.sh: compressing (xz -9, one thread: its window spans all the programs)"
rm -rf "$bundle"
mkdir -p "$bundle"
tar -C "$stage" -cf - README.txt bin lib | xz -9 -T1 >"$bundle/bundle.tar.xz"
cp "$stage/README.txt" "$bundle/README.txt"
echo "$hash" >"$bundle/SOURCES"

cat "$bundle/README.txt"
unpacked=$(du -sb "$stage" | cut -f1)
packed=$(du -sb "$bundle" | cut -f1)
tree=$(cd "$root" && git ls-files -z -co --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -n 1 | cut -f1)
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "pack.sh: bundle $(mib "$packed") ($(mib "$unpacked") unpacked); tree $(mib "$tree"); together $(mib $((packed + tree))) of the 64 MiB a device call carries"
if [ $((packed + tree)) -gt $((limit_mib * 1048576)) ]; then
  echo "pack.sh: over $limit_mib MiB together: too close to the limit" >&2
  exit 1
fi
echo "pack.sh: carry build-gpu-bundle with the device call"
