# Baseline: the full SD-DiT training step in plain PyTorch, float32, built from the reference
# model in tests/reference/sddit_reference.py with the same config as our preset (encoder /
# decoder split, head sizes, mask ratio, AdamW, EMA settings as sd_config_defaults):
#   synthetic batch + step randomness (latents, labels with dropout, eps, sigma_s ~ logN,
#   fixed sigma_t, visible-token sets) -> teacher encoder forward under no_grad -> student
#   encoder on the visible tokens + head + decoder on all tokens -> L_gen + lambda * L_dis ->
#   backward -> torch.optim.AdamW -> center -> teacher EMA (embedders, encoder, head) ->
#   generation EMA (DiT parameters).
#   /usr/bin/python3 benchmarks/pytorch_sddit_step.py --preset S/2 --batch 8 --threads 2
# Prints one greppable row
#   pytorch preset=S/2 batch=8 threads=2 img_per_s=.. ms_step=.. (+ ms_min, device, dtype...)
# or a JSON object with --json. ms_step is the median over --iters timed steps after --warmup.
# On a GPU (torch.cuda.is_available()) it runs bf16 autocast, scaled_dot_product_attention
# when torch has it and torch.compile when torch has it; "# note:" lines say what is missing.
import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "reference"))
import dit_reference as dref  # noqa: E402
import sddit_reference as ref  # noqa: E402

# sd_config_defaults (src/config/config_defaults.c) for the benchmark's presets.
MASK_RATIO = 0.2
P_MEAN, P_STD = -1.2, 1.2
TEACHER_SIGMA = 0.002
LABEL_DROPOUT = 0.1


def sddit_config(preset):
    dit = dref.PRESETS[preset]
    tiny = preset == "tiny"
    dec = 1 if tiny else (4 if dit.hidden >= 1024 else 2)
    return ref.SDDiTConfig(
        dit=dit, encoder_depth=dit.depth - dec,
        head_hidden=64 if tiny else 2048, head_bottleneck=16 if tiny else 256,
        head_prototypes=32 if tiny else 8192, sigma_data=0.5,
        lr=1e-4, beta1=0.9, beta2=0.999, adam_eps=1e-8, weight_decay=0.0, clip=0.0,
        teacher_momentum=0.996, total_steps=1000, teacher_temp_warmup=1000,
        tau_t_start=0.04, tau_t_end=0.07, tau_s=0.1, center_momentum=0.9, lambda_dis=1.0,
        ema_decay=0.9999)


def visible_tokens(T):
    return int(math.floor(T * (1.0 - MASK_RATIO)))


def sdpa_attention_forward(self, x):
    """dit_reference.Attention.forward with F.scaled_dot_product_attention (torch >= 2.0)."""
    B, N, D = x.shape
    hd = D // self.heads
    qkv = self.qkv(x).reshape(B, N, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
    o = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
    return self.proj(o.transpose(1, 2).reshape(B, N, D))


def main():
    ap = argparse.ArgumentParser(description="time the SD-DiT training step in PyTorch")
    ap.add_argument("--preset", default="S/2", choices=sorted(dref.PRESETS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = default)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--no-compile", action="store_true", help="GPU: skip torch.compile")
    ap.add_argument("--json", action="store_true", help="print a JSON object instead of the row")
    a = ap.parse_args()
    if a.batch <= 0 or a.iters <= 0 or a.warmup < 0:
        ap.error("--batch and --iters must be > 0, --warmup >= 0")

    use_cuda = a.device == "cuda" or (a.device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        print("# skip: CUDA not available to torch")
        return 0
    dev = torch.device("cuda" if use_cuda else "cpu")
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    threads = torch.get_num_threads()
    notes = []
    has_sdpa = hasattr(F, "scaled_dot_product_attention")
    has_compile = hasattr(torch, "compile")
    where = "" if use_cuda else " (GPU path only; CPU runs float32 eager)"
    if not has_sdpa:
        notes.append(f"torch {torch.__version__} has no scaled_dot_product_attention: "
                     f"reference softmax(QK^T)V attention{where}")
    if not has_compile:
        notes.append(f"torch {torch.__version__} has no torch.compile: eager{where}")
    if use_cuda and has_sdpa:
        dref.Attention.forward = sdpa_attention_forward
    for n in notes:
        print(f"# note: {n}", file=sys.stderr)

    scfg = sddit_config(a.preset)
    cfg = scfg.dit
    B, T, Tv = a.batch, cfg.tokens, visible_tokens(cfg.tokens)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    student = ref.SDDiT(scfg, dtype=torch.float32)
    dref.init_dit(student, gen)
    ref.init_head(student.head, gen)
    student = student.to(dev).train()
    teacher = ref.SDDiT(scfg, dtype=torch.float32).to(dev)
    teacher.load_state_dict(student.state_dict())
    teacher.requires_grad_(False)
    ema = dref.DiT(cfg, dtype=torch.float32).to(dev)
    ema.load_state_dict({n: p for n, p in student.state_dict().items() if not n.startswith("head.")})
    ema.requires_grad_(False)
    center = torch.zeros(scfg.head_prototypes, device=dev)

    sp = dict(student.named_parameters())
    tp = dict(teacher.named_parameters())
    t_names = ref.teacher_ema_names(scfg)
    t_dst, t_src = [tp[n] for n in t_names], [sp[n] for n in t_names]
    e_names = [n for n, _ in ema.named_parameters()]
    e_dst, e_src = [p for _, p in ema.named_parameters()], [sp[n] for n in e_names]
    opt = torch.optim.AdamW(student.parameters(), lr=scfg.lr, betas=(scfg.beta1, scfg.beta2),
                            eps=scfg.adam_eps, weight_decay=scfg.weight_decay)

    loss_fn = ref.sddit_loss
    compiled = False
    if use_cuda and has_compile and not a.no_compile:
        loss_fn = torch.compile(ref.sddit_loss)
        compiled = True

    C, S = cfg.in_channels, cfg.input_size
    dgen = torch.Generator(device=dev).manual_seed(a.seed + 1)

    def make_batch():
        x0 = torch.randn(B, C, S, S, generator=dgen, device=dev)
        y = torch.randint(0, cfg.num_classes, (B,), generator=dgen, device=dev)
        drop = torch.rand(B, generator=dgen, device=dev) < LABEL_DROPOUT
        y = torch.where(drop, torch.full_like(y, cfg.num_classes), y)
        eps = torch.randn(B, C, S, S, generator=dgen, device=dev)
        sigma_s = torch.exp(P_MEAN + P_STD * torch.randn(B, generator=dgen, device=dev))
        sigma_t = torch.full((B,), TEACHER_SIGMA, device=dev)
        vis = torch.rand(B, T, generator=dgen, device=dev).argsort(dim=1)[:, :Tv].sort(dim=1).values
        return {"x0": x0, "y": y, "eps": eps, "sigma_s": sigma_s, "sigma_t": sigma_t, "vis": vis}

    def amp():
        if use_cuda:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step(it):
        tau_t, mom = ref.teacher_temp(it, scfg), ref.teacher_momentum(it, scfg)
        batch = make_batch()
        with amp():
            out = loss_fn(student, teacher, batch, center, tau_t)
        opt.zero_grad(set_to_none=True)
        out["L"].backward()
        opt.step()
        with torch.no_grad():
            zt = out["z_t"].float().reshape(-1, scfg.head_prototypes)
            center.mul_(scfg.center_momentum).add_((1.0 - scfg.center_momentum) * zt.mean(0))
            torch._foreach_mul_(t_dst, mom)
            torch._foreach_add_(t_dst, t_src, alpha=1.0 - mom)
            torch._foreach_mul_(e_dst, scfg.ema_decay)
            torch._foreach_add_(e_dst, e_src, alpha=1.0 - scfg.ema_decay)
        return out["L"].detach()

    def sync():
        if use_cuda:
            torch.cuda.synchronize()

    loss = None
    for it in range(a.warmup):
        loss = step(it)
    sync()
    times = []
    for it in range(a.warmup, a.warmup + a.iters):
        t0 = time.perf_counter()
        loss = step(it)
        sync()
        times.append(time.perf_counter() - t0)

    ms = 1e3 * statistics.median(times)
    res = {
        "impl": "pytorch", "preset": a.preset, "batch": B, "threads": threads,
        "img_per_s": round(B / (ms / 1e3), 3), "ms_step": round(ms, 2),
        "ms_min": round(1e3 * min(times), 2), "device": dev.type,
        "dtype": "bf16-autocast" if use_cuda else "float32",
        "sdpa": bool(use_cuda and has_sdpa), "compile": compiled,
        "tokens": T, "visible_tokens": Tv, "encoder_depth": scfg.encoder_depth,
        "params": sum(p.numel() for p in student.parameters()),
        "loss": round(float(loss), 5), "iters": a.iters, "warmup": a.warmup,
        "torch_version": str(torch.__version__), "notes": notes,
    }
    if a.json:
        print(json.dumps(res))
    else:
        print(f"pytorch preset={a.preset} batch={B} threads={threads} img_per_s={res['img_per_s']:.3f} "
              f"ms_step={res['ms_step']:.2f} ms_min={res['ms_min']:.2f} device={dev.type} "
              f"dtype={res['dtype']} T={T} Tv={Tv} params={res['params']} loss={res['loss']:.5g}")
    if not math.isfinite(float(loss)):
        print("pytorch_sddit_step: non-finite loss", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
