#!/usr/bin/env bash
# Command-line behaviour of `sddit params`, `train` and `inspect`: counts printed, bad keys,
# values and inconsistent models refused with a message naming them (a refused train writes
# nothing), non-zero exit codes.
set -u
sddit="$1"
pass=0; fail=0
expect() {  # expect NAME WANT_RC PATTERN -- ARGS...
  local name="$1" want_rc="$2" pattern="$3"; shift 4
  local out rc
  out=$("$sddit" "$@" 2>&1); rc=$?
  if [ "$rc" -eq "$want_rc" ] && grep -qE -- "$pattern" <<<"$out"; then
    echo "ok   $name"; pass=$((pass+1))
  else
    echo "FAIL $name: rc $rc (want $want_rc), output:"; echo "$out" | head -5; fail=$((fail+1))
  fi
}
expect "params S/2 total"        0 "^trainable parameters: [0-9]+$" -- params --model.preset=S/2 --quiet
expect "params tiny table"       0 "blocks\.3\.attn\.qkv\.weight +\(192, 64\)" -- params --model.preset=tiny
expect "unknown preset"          1 "unknown preset 'Q/2'" -- params --model.preset=Q/2
expect "unknown model key"       1 "model\.hiddn: unknown key" -- params --model.hiddn=5
expect "bad value"               1 "model\.depth: 'x1' is not a positive integer" -- params --model.depth=x1
expect "inconsistent shape"      1 "hidden 100 is not divisible by heads 6" -- params --model.hidden=100
expect "unknown option"          1 "unknown option '--frobnicate'" -- params --frobnicate
expect "unknown command"         2 "unknown command 'trian'" -- trian
expect "error names the rank"    1 "^\[rank 0@[^]]+\] [a-z_]+\.c:[0-9]+ " -- params --model.depth=0
expect "train: unknown key"      1 "optim\.lrr" -- train --optim.lrr=1
expect "train: bad value"        1 "optim\.lr.*'abc'" -- train --optim.lr=abc
expect "train: missing config"   1 "no-such\.ini" -- train --config no-such.ini
expect "train: inconsistent"     1 "encoder_depth" -- train --model.encoder_depth=7
expect "train: --resume no file"  1 "cannot resume: .*no-such-ckpt\.h5.*No such file" -- train --resume no-such-ckpt.h5 --train.out_dir="${TMPDIR:-/tmp}/sd_cli_never_written"
[ ! -e "${TMPDIR:-/tmp}/sd_cli_never_written" ] && { echo "ok   refused resume wrote nothing"; pass=$((pass+1)); } || { echo "FAIL refused resume created its out_dir"; fail=$((fail+1)); }
never="${TMPDIR:-/tmp}/sd_cli_never_written_$$"
expect "train: out_channels != in_channels" 1 "model\.out_channels \(8\) differs from model\.in_channels \(4\).*set model\.out_channels = 4" -- train --model.out_channels=8 --train.out_dir="$never"
[ ! -e "$never" ] && { echo "ok   refused out_channels wrote nothing"; pass=$((pass+1)); } || { echo "FAIL refused out_channels created its out_dir $never"; rm -rf "$never"; fail=$((fail+1)); }
expect "train: --resume no value" 1 "--resume needs auto, none or a checkpoint file" -- train --resume
expect "inspect: missing file"   1 "problem: .*nothing\.h5: No such file" -- inspect nothing.h5
expect "inspect: no argument"    2 "usage: sddit inspect" -- inspect
echo "test_cli: $pass checks passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
