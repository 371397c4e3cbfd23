#!/usr/bin/env bash
# The source layout's rules (README "Layout"), checked on the tree:
#   1. kernels/ depends on nothing in src/: every #include "..." of a file under kernels/
#      resolves inside kernels/ (beside the file, kernels/, kernels/cpu, kernels/base) or is
#      the generated sd_build_config.h;
#   2. src/ holds folders only (no source file at its top), and every .c file under src/ is
#      listed in its folder's meson.build.
# Usage: test_layout.sh SOURCE_ROOT
set -uo pipefail
root=${1:?usage: test_layout.sh SOURCE_ROOT}
cd "$root" || exit 1
fails=0
bad() { echo "FAIL $*"; fails=$((fails + 1)); }

# 1. kernels/ includes
checked=0
while IFS= read -r file; do
  dir=$(dirname "$file")
  while IFS= read -r inc; do
    checked=$((checked + 1))
    [ "$inc" = sd_build_config.h ] && continue
    found=""
    for d in "$dir" kernels kernels/cpu kernels/base; do
      if [ -f "$d/$inc" ]; then found=$(realpath --relative-to=. "$d/$inc"); break; fi
    done
    if [ -z "$found" ]; then
      bad "$file includes \"$inc\", which is not in kernels/"
    elif [[ "$found" != kernels/* ]]; then
      bad "$file includes \"$inc\" = $found, outside kernels/"
    fi
  done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$file")
done < <(find kernels -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \))
echo "ok   kernels/: $checked quoted includes checked"

# 2. src/ folders and their meson.build files
top=$(find src -maxdepth 1 -type f \( -name '*.c' -o -name '*.h' \) | sort)
[ -z "$top" ] || bad "source files at the top of src/ (each belongs in a folder): $top"
listed=0
while IFS= read -r c; do
  folder=$(dirname "$c")
  if ! grep -q "'$(basename "$c")'" "$folder/meson.build" 2>/dev/null; then
    bad "$c is not listed in $folder/meson.build"
  else
    listed=$((listed + 1))
  fi
done < <(find src -mindepth 2 -name '*.c' | sort)
echo "ok   src/: $listed .c files, each listed in its folder's meson.build"
[ "$checked" -gt 0 ] && [ "$listed" -gt 0 ] || bad "nothing was checked (wrong SOURCE_ROOT?)"

echo "test_layout: $fails failed"
[ "$fails" -eq 0 ]
