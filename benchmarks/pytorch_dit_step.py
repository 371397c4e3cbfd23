# CPU baseline: times one float32 DiT training step (forward + backward of an MSE loss) in
# plain PyTorch, using the reference model in tests/reference/dit_reference.py.
#   /usr/bin/python3 benchmarks/pytorch_dit_step.py --preset S/2 --batch 8 --threads 2
# Prints one line: "pytorch preset=... batch=... threads=... ms_per_step=... img_per_s=...
# gflop_per_s=... params=..." (or a JSON object with --json). GFLOP/s counts 3x forward FLOPs.
import argparse
import json
import os
import sys
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "reference"))
import dit_reference as ref  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description="time a float32 DiT forward+backward step on CPU")
    ap.add_argument("--preset", default="S/2", choices=sorted(ref.PRESETS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = leave default)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print a JSON object instead of the line")
    a = ap.parse_args()

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    threads = torch.get_num_threads()
    cfg = ref.PRESETS[a.preset]
    gen = torch.Generator().manual_seed(a.seed)
    torch.manual_seed(a.seed)
    model = ref.init_dit(ref.DiT(cfg, dtype=torch.float32), gen)
    model.train()

    B, S = a.batch, cfg.input_size
    x = torch.randn(B, cfg.in_channels, S, S, generator=gen)
    c_noise = torch.randn(B, generator=gen) * 0.5
    y = torch.randint(0, cfg.num_classes, (B,), generator=gen)
    target = torch.randn(B, cfg.out_channels, S, S, generator=gen)

    def step():
        model.zero_grad(set_to_none=True)
        loss = ((model(x, c_noise, y) - target) ** 2).mean()
        loss.backward()
        return loss

    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)

    ms = 1e3 * sum(times) / len(times)
    step_flops = 3 * ref.forward_flops(cfg) * B
    res = {
        "impl": "pytorch", "preset": a.preset, "batch": B, "threads": threads,
        "ms_per_step": round(ms, 3), "ms_min": round(1e3 * min(times), 3),
        "img_per_s": round(B / (ms / 1e3), 3),
        "gflop_per_s": round(step_flops / (ms / 1e3) / 1e9, 3),
        "gflop_per_step": round(step_flops / 1e9, 3),
        "params": ref.count_params(cfg), "iters": a.iters, "warmup": a.warmup,
        "torch_version": str(torch.__version__),
    }
    if a.json:
        print(json.dumps(res))
    else:
        print(f"pytorch preset={a.preset} batch={B} threads={threads} ms_per_step={res['ms_per_step']:.1f} "
              f"img_per_s={res['img_per_s']:.2f} gflop_per_s={res['gflop_per_s']:.2f} params={res['params']}")


if __name__ == "__main__":
    main()
