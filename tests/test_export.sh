#!/usr/bin/env bash
# `sddit export` / `sddit import` through the command line: a tiny model trained 10 steps is
# exported (generation EMA and raw student) as safetensors, checked by an independent parser
# (tests/export_check.py: names, shapes and values bitwise against the checkpoint, and a strict
# PyTorch load_state_dict into the reference DiT when torch is importable); the EMA file is
# imported into a checkpoint that `sddit inspect` accepts and whose /ema equals the original
# bitwise (h5diff); exporting that checkpoint gives the same tensors, byte for byte. Damaged
# or mismatched files are refused with a message naming the problem (and the tensor), and a
# refused import writes nothing.
# Usage: test_export.sh SDDIT
set -u
sddit="$1"
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sd_test_export.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { echo "ok   $*"; pass=$((pass+1)); }
bad() { echo "FAIL $*"; fail=$((fail+1)); }
py=/usr/bin/python3
check="$here/export_check.py"
have_py=0
if "$py" -c "import numpy, h5py" 2>/dev/null; then have_py=1
else echo "note: $py with numpy and h5py missing: the independent checks are skipped"; fi
pycheck() {  # pycheck NAME ARGS...: export_check.py, ok when it exits 0
  local name="$1" out; shift
  if [ "$have_py" = 0 ]; then echo "skip $name (no numpy/h5py)"; return; fi
  if out=$("$py" "$check" "$@" 2>&1); then ok "$name: $(tail -1 <<<"$out")"
  else bad "$name: $(head -5 <<<"$out")"; fi
}
data_section() {  # data_section FILE: the bytes after the header (to stdout)
  local n
  n=$(od -An -tu8 -N8 "$1" | tr -d ' ')
  tail -c +$((9 + n)) "$1"
}

# ---- a trained checkpoint ----
run="$tmp/run"
"$sddit" train --train.steps=10 --train.log_every=10 --train.out_dir="$run" >"$tmp/train.log" 2>&1 \
  || bad "training failed: $(tail -3 "$tmp/train.log")"
ck="$run/checkpoints/ckpt-00000010.h5"
[ -f "$ck" ] || { bad "no checkpoint $ck"; echo "test_export: $pass passed, $fail failed"; exit 1; }

# ---- export ----
if out=$("$sddit" export --checkpoint "$run/checkpoints" --out "$tmp/ema.safetensors" 2>&1) &&
   grep -q "ckpt-00000010.h5 (step 10)" <<<"$out"; then
  ok "export from a directory takes the newest checkpoint (EMA by default)"
else bad "export ema: $out"; fi
"$sddit" export --checkpoint "$ck" --weights raw --out "$tmp/raw.safetensors" >/dev/null 2>&1 \
  && ok "export --weights raw" || bad "export raw failed"
[ -z "$(ls "$tmp" | grep '\.tmp$')" ] && ok "no .tmp file left behind" || bad "left: $(ls "$tmp")"
pycheck "EMA file = checkpoint /ema" check "$tmp/ema.safetensors" "$ck" --weights ema
pycheck "raw file = checkpoint student DiT" check "$tmp/raw.safetensors" "$ck" --weights raw
if ! cmp -s <(data_section "$tmp/ema.safetensors") <(data_section "$tmp/raw.safetensors"); then
  ok "EMA and raw weights differ after 10 steps"
else bad "EMA and raw exports are identical"; fi

# ---- import, inspect, round trip ----
imp="$tmp/imported/model.h5"
if out=$("$sddit" import --in "$tmp/ema.safetensors" --out "$imp" 2>&1) && [ -f "$imp" ]; then
  ok "import writes exactly --out"
else bad "import: $out"; fi
left=$(ls -A "$tmp/imported" | grep -v '^model.h5$')
[ -z "$left" ] && ok "import leaves nothing else in the directory" || bad "import left: $left"
"$sddit" inspect "$imp" >"$tmp/inspect.log" 2>&1 && grep -q "verified" "$tmp/inspect.log" \
  && ok "sddit inspect accepts the imported checkpoint" || bad "inspect: $(tail -3 "$tmp/inspect.log")"
h5diff -q "$imp" "$ck" /ema /ema >/dev/null 2>&1 \
  && ok "round trip lossless: imported /ema == original /ema (h5diff)" || bad "imported /ema differs"
pycheck "imported checkpoint state" imported "$imp" "$ck"
"$sddit" export --checkpoint "$imp" --out "$tmp/ema2.safetensors" >/dev/null 2>&1 || bad "re-export failed"
cmp -s <(data_section "$tmp/ema.safetensors") <(data_section "$tmp/ema2.safetensors") \
  && ok "re-export: data section byte-identical" || bad "re-export: data sections differ"
pycheck "re-export: same tensor entries and bytes" same "$tmp/ema.safetensors" "$tmp/ema2.safetensors"
"$sddit" train --train.steps=12 --train.log_every=12 --train.out_dir="$tmp/run2" --resume "$imp" \
  >"$tmp/resume.log" 2>&1 && grep -q "resumed from .*model.h5 at step 0" "$tmp/resume.log" \
  && ok "training resumes from the imported checkpoint" || bad "resume: $(tail -3 "$tmp/resume.log")"

# ---- refused: a message naming the problem, nothing written ----
refuse() {  # refuse NAME FILE PATTERN [IMPORT ARGS...]
  local name="$1" file="$2" pattern="$3" out rc; shift 3
  out=$("$sddit" import --in "$file" --out "$tmp/refused.h5" "$@" 2>&1); rc=$?
  if [ $rc -ne 0 ] && grep -qE -- "$pattern" <<<"$out" && [ ! -e "$tmp/refused.h5" ]; then
    ok "$name: $(grep -m1 error <<<"$out" | sed 's/.*error: //' | cut -c1-140)"
  else bad "$name: rc $rc, $(head -3 <<<"$out")"; fi
}
# without python: the two damages made with shell tools
head -c -100 "$tmp/ema.safetensors" >"$tmp/trunc.st"
refuse "truncated file" "$tmp/trunc.st" "tensor 'final_layer\.linear\.[a-z]+' data .* runs past the end of the file"
{ printf '\377\377\377\0\0\0\0\0'; tail -c +9 "$tmp/ema.safetensors"; } >"$tmp/biglen.st"
refuse "header length too big" "$tmp/biglen.st" "header length 16777215 exceeds the file"
printf 'hello' >"$tmp/short.st"
refuse "5-byte file" "$tmp/short.st" "too short for a safetensors file"
if [ "$have_py" = 1 ]; then
  mk() { "$py" "$check" rewrite "$tmp/ema.safetensors" "$tmp/$1.st" "$1" || bad "rewrite $1 failed"; }
  for m in dtype unknown-dtype missing misshape overlap badjson nometa extra unicode f16 bf16; do mk $m; done
  refuse "wrong dtype" "$tmp/dtype.st" "tensor 'blocks\.1\.mlp\.fc2\.bias' has dtype I32; only F32, F16 and BF16"
  refuse "unknown dtype" "$tmp/unknown-dtype.st" "tensor 'blocks\.1\.mlp\.fc2\.bias': unknown dtype \"F31\""
  refuse "missing tensor" "$tmp/missing.st" "tensor 'blocks\.2\.mlp\.fc1\.weight' \(256, 64\) is missing"
  refuse "mis-shaped tensor" "$tmp/misshape.st" "tensor 'blocks\.1\.attn\.qkv\.weight' has shape \(64, 192\), the model .* needs \(192, 64\)"
  refuse "overlapping offsets" "$tmp/overlap.st" "tensor 'blocks\.0\.attn\.proj\.bias' .* overlaps tensor 'blocks\.0\.attn\.proj\.weight'"
  refuse "malformed JSON" "$tmp/badjson.st" "header is not valid JSON at byte [0-9]+ of [0-9]+: unexpected '\\[' \\(after .*\"shape\" \"\\)"
  refuse "no config metadata" "$tmp/nometa.st" "no \"config\" metadata.*" 
  # --config instead of metadata (a file from another tool)
  if "$sddit" import --in "$tmp/nometa.st" --out "$tmp/nometa.h5" --config "$run/config.ini" >/dev/null 2>&1 &&
     h5diff -q "$tmp/nometa.h5" "$ck" /ema /ema >/dev/null 2>&1; then
    ok "import --config FILE for a file without metadata"
  else bad "import --config failed"; fi
  sed 's/^depth = 4/depth = 5/;s/^encoder_depth = 3/encoder_depth = 4/' "$run/config.ini" >"$tmp/deep.ini"
  refuse "--config deeper than the weights" "$tmp/ema.safetensors" "tensor 'blocks\.4\.attn\.qkv\.weight' \(192, 64\) is missing" --config "$tmp/deep.ini"
  sed 's/^depth = 4/depth = 3/;s/^encoder_depth = 3/encoder_depth = 2/' "$run/config.ini" >"$tmp/shallow.ini"
  refuse "--config shallower than the weights" "$tmp/ema.safetensors" "tensor 'blocks\.3\.attn\.qkv\.weight' is a DiT tensor the model .* does not have" --config "$tmp/shallow.ini"
  out=$("$sddit" import --in "$tmp/extra.st" --out "$tmp/extra.h5" 2>&1)
  [ $? -eq 0 ] && grep -q "warning: .*ignoring 1 tensor that the DiT does not have: head.extra.weight" <<<"$out" \
    && ok "an extra tensor is listed in a warning and ignored" || bad "extra: $out"
  "$sddit" import --in "$tmp/unicode.st" --out "$tmp/unicode.h5" >/dev/null 2>&1 || bad "unicode import failed"
  pycheck "JSON escapes and UTF-8 in metadata" unicode-ok "$tmp/unicode.h5"
  for k in f16 bf16; do
    out=$("$sddit" import --in "$tmp/$k.st" --out "$tmp/$k.h5" 2>&1)
    if [ $? -eq 0 ] && grep -q "51 tensors converted from 16-bit floats" <<<"$out" && ! grep -q pos_embed <<<"$out" &&
       "$sddit" export --checkpoint "$tmp/$k.h5" --out "$tmp/$k-re.st" >/dev/null 2>&1; then
      pycheck "${k^^} import: values converted exactly" converted "$tmp/$k-re.st" "$tmp/ema.safetensors" "$k"
    else bad "$k import: $out"; fi
  done
fi

# ---- export refusals ----
expect_export() {  # expect_export NAME PATTERN ARGS...
  local name="$1" pattern="$2" out rc; shift 2
  out=$("$sddit" export "$@" 2>&1); rc=$?
  [ $rc -ne 0 ] && grep -qE -- "$pattern" <<<"$out" && ok "$name" || bad "$name: rc $rc, $(head -2 <<<"$out")"
}
expect_export "export: bad --weights" "--weights is 'teacher'; want ema or raw" --checkpoint "$ck" --weights teacher --out "$tmp/x.st"
mkdir -p "$tmp/empty"
expect_export "export: directory without checkpoints" "holds no checkpoint .* that verifies" --checkpoint "$tmp/empty" --out "$tmp/x.st"
printf 'not hdf5' >"$tmp/junk.h5"
expect_export "export: not a checkpoint" "junk\.h5: is truncated or not an HDF5 file" --checkpoint "$tmp/junk.h5" --out "$tmp/x.st"
expect_export "export: missing --out" "export needs --checkpoint and --out" --checkpoint "$ck"
[ ! -e "$tmp/x.st" ] && ok "refused exports write nothing" || bad "a refused export wrote $tmp/x.st"

echo "test_export: $pass checks passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
