#!/usr/bin/env bash
# Overfits 16 synthetic samples with the tiny SD-DiT for 1000 steps (a few seconds on 2 cores)
# and checks that both losses fall well below their start: mean of the last 10 logged values
# against the first 3 (L_gen to at most 65%, L_dis to at most 25%).
set -u
sddit="$1"
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
"$sddit" train --train.steps=1000 --train.log_every=10 --data.synthetic_size=16 \
  --optim.lr=2e-3 --diffusion.label_dropout=0 --sddit.teacher_momentum=0.9 \
  --sddit.teacher_temp_warmup=0 --train.out_dir="$out" > "$out/log.txt" 2>&1 \
  || { echo "FAIL: training exited non-zero"; tail -5 "$out/log.txt"; exit 1; }
python3 - "$out/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
if len(rows) < 20:
    print(f"FAIL: only {len(rows)} metric rows"); sys.exit(1)
ok = True
for key, limit in (("L_gen", 0.65), ("L_dis", 0.25)):
    first = sum(r[key] for r in rows[:3]) / 3
    last = sum(r[key] for r in rows[-10:]) / 10
    good = last <= limit * first
    ok &= good
    print(f"{'ok  ' if good else 'FAIL'} {key}: first {first:.4f} -> last {last:.4f} "
          f"(ratio {last / first:.3f}, must be <= {limit})")
print(f"test_overfit: {'1 checks passed, 0 failed' if ok else '0 checks passed, 1 failed'}")
sys.exit(0 if ok else 1)
PY
