# Plain-PyTorch float64 reference of the SD-DiT training objective and optimizer step
# (self-distilled DiT: masked student encoder + projection head distilled from an EMA
# teacher, decoder trained with the EDM denoising loss), built on dit_reference.DiT.
# Names, orders and numerics here are the contract the C code follows.
#
#   /usr/bin/python3 tests/reference/sddit_reference.py --selftest
import argparse
import math
import os
import sys
from dataclasses import dataclass, field

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dit_reference as ref  # noqa: E402


# ----------------------------------------------------------------------------- config

@dataclass(frozen=True)
class SDDiTConfig:
    dit: ref.DiTConfig = field(default_factory=ref.DiTConfig)
    encoder_depth: int = 2          # blocks [0, encoder_depth) = encoder, the rest = decoder
    head_hidden: int = 64           # H
    head_bottleneck: int = 16       # bn
    head_prototypes: int = 32       # P
    sigma_data: float = 0.5
    # AdamW (PyTorch semantics, bias-corrected)
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    adam_eps: float = 1e-6
    weight_decay: float = 0.0
    clip: float = 0.0               # global-norm gradient clip; <= 0 means off
    # learning-rate schedule: linear warm-up over warmup_steps, then constant or a cosine
    # from lr to lr_min at total_steps
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    lr_min: float = 0.0
    # self-distillation
    teacher_momentum: float = 0.9   # m0 of the cosine teacher-EMA schedule
    total_steps: int = 10
    teacher_temp_warmup: int = 4
    tau_t_start: float = 0.04
    tau_t_end: float = 0.07
    tau_s: float = 0.1
    center_momentum: float = 0.9
    lambda_dis: float = 1.0
    # generation EMA
    ema_decay: float = 0.9

    @property
    def decoder_depth(self):
        return self.dit.depth - self.encoder_depth


# Configuration of tests/fixtures/sddit_tiny.h5.
FIXTURE_CONFIG = SDDiTConfig(
    dit=ref.DiTConfig(input_size=8, in_channels=4, patch=2, hidden=32, depth=3, heads=2,
                      mlp_ratio=4, num_classes=10, out_channels=4),
    encoder_depth=2, head_hidden=64, head_bottleneck=16, head_prototypes=32)


# ----------------------------------------------------------------------------- schedules

def edm_scalings(sigma, sd):
    """(B,) sigma -> c_skip, c_out, c_in, c_noise, lambda, each (B,)."""
    s2 = sigma * sigma + sd * sd
    return (sd * sd / s2, sigma * sd / torch.sqrt(s2), 1.0 / torch.sqrt(s2),
            torch.log(sigma) / 4.0, s2 / (sigma * sd) ** 2)


def teacher_temp(step, scfg):
    """tau_t(step) = t0 + (t1 - t0) * min(step / warmup, 1), step counted from 0."""
    frac = min(step / scfg.teacher_temp_warmup, 1.0) if scfg.teacher_temp_warmup > 0 else 1.0
    return scfg.tau_t_start + (scfg.tau_t_end - scfg.tau_t_start) * frac


def learning_rate(step, scfg):
    """lr(step), step counted from 0: lr * (step + 1) / warmup during the warm-up, then lr
    (constant) or lr_min + (lr - lr_min) * (cos(pi * f) + 1) / 2 with f = (step - warmup) /
    (total_steps - warmup) clamped to [0, 1] (cosine)."""
    if step < scfg.warmup_steps:
        return scfg.lr * (step + 1) / scfg.warmup_steps
    if scfg.lr_schedule == "constant":
        return scfg.lr
    assert scfg.lr_schedule == "cosine", scfg.lr_schedule
    span = scfg.total_steps - scfg.warmup_steps
    f = min((step - scfg.warmup_steps) / span, 1.0) if span > 0 else 1.0
    return scfg.lr_min + (scfg.lr - scfg.lr_min) * (math.cos(math.pi * f) + 1.0) / 2.0


def teacher_momentum(step, scfg):
    """m(step) = 1 - (1 - m0) * (cos(pi * step / total_steps) + 1) / 2; m(0) = m0."""
    return 1.0 - (1.0 - scfg.teacher_momentum) * (math.cos(math.pi * step / scfg.total_steps) + 1.0) / 2.0


# ----------------------------------------------------------------------------- modules

class NormedLinear(nn.Module):
    """Weight-normalised linear, gain fixed to 1, no bias: z = u @ (v / ||v_row||)^T."""

    def __init__(self, in_dim, out_dim, **fk):
        super().__init__()
        self.weight_v = nn.Parameter(torch.empty(out_dim, in_dim, **fk))

    def forward(self, u):
        w = self.weight_v / self.weight_v.norm(dim=1, keepdim=True)
        return u @ w.t()


class ProjectionHead(nn.Module):
    """g: Linear-GELU(tanh)-Linear-GELU(tanh)-Linear, L2-normalise, NormedLinear."""

    def __init__(self, scfg, **fk):
        super().__init__()
        D, H, bn, P = scfg.dit.hidden, scfg.head_hidden, scfg.head_bottleneck, scfg.head_prototypes
        self.mlp = nn.Sequential(nn.Linear(D, H, **fk), nn.GELU(approximate="tanh"),
                                 nn.Linear(H, H, **fk), nn.GELU(approximate="tanh"),
                                 nn.Linear(H, bn, **fk))
        self.last_layer = NormedLinear(bn, P, **fk)

    def forward(self, h):
        v = self.mlp(h)
        u = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return self.last_layer(u)


class SDDiT(ref.DiT):
    """Student / teacher network: the DiT (all its parameters, same order) followed by the
    projection head `head.*`. DiT.forward is unchanged (used for sampling with the EMA)."""

    def __init__(self, scfg, dtype=None, device=None):
        super().__init__(scfg.dit, dtype=dtype, device=device)
        self.scfg = scfg
        self.head = ProjectionHead(scfg, dtype=dtype, device=device)

    def embed(self, x):
        return self.x_embedder(x) + self.pos_embed           # (B, T, D)

    def encode(self, tok, c):
        for blk in self.blocks[:self.scfg.encoder_depth]:
            tok = blk(tok, c)
        return tok

    def decode(self, seq, c):
        for blk in self.blocks[self.scfg.encoder_depth:]:
            seq = blk(seq, c)
        return self.unpatchify(self.final_layer(seq, c))


def head_param_names():
    return ["head.mlp.0.weight", "head.mlp.0.bias", "head.mlp.2.weight", "head.mlp.2.bias",
            "head.mlp.4.weight", "head.mlp.4.bias", "head.last_layer.weight_v"]


def param_shapes(scfg):
    D, H, bn, P = scfg.dit.hidden, scfg.head_hidden, scfg.head_bottleneck, scfg.head_prototypes
    hs = [(H, D), (H,), (H, H), (H,), (bn, H), (bn,), (P, bn)]
    return ref.param_shapes(scfg.dit) + list(zip(head_param_names(), hs))


def teacher_ema_names(scfg):
    """Parameters the teacher EMA updates: embedders, encoder blocks, head (in order)."""
    enc = tuple(f"blocks.{i}." for i in range(scfg.encoder_depth))
    out = []
    for n, _ in param_shapes(scfg):
        if n.startswith(("x_embedder.", "t_embedder.", "y_embedder.", "head.") + enc):
            out.append(n)
    return out


@torch.no_grad()
def init_head(head, generator, std=0.02):
    """Linears: trunc_normal_(std) (global torch RNG; torch 1.13 has no generator argument),
    biases zero; last_layer.weight_v ~ U(-1/sqrt(bn), 1/sqrt(bn)) from `generator`."""
    for m in head.mlp:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std)
            m.bias.zero_()
    bound = 1.0 / math.sqrt(head.last_layer.weight_v.shape[1])
    head.last_layer.weight_v.uniform_(-bound, bound, generator=generator)
    return head


# ----------------------------------------------------------------------------- objective

def gather_tokens(tok, vis):
    return torch.gather(tok, 1, vis.long()[:, :, None].expand(-1, -1, tok.shape[-1]))


@torch.no_grad()
def teacher_logits(teacher, x_t, sigma_t, y, vis):
    """z_t (B, Tv, P): teacher encoder on all T tokens, then its head at the vis positions."""
    sd = teacher.scfg.sigma_data
    _, _, c_in, c_noise, _ = edm_scalings(sigma_t, sd)
    c = teacher.conditioning(c_noise, y)
    h = teacher.encode(teacher.embed(c_in[:, None, None, None] * x_t), c)
    return teacher.head(gather_tokens(h, vis))


def student_pass(student, x_s, sigma_s, y, vis):
    """Returns z_s (B, Tv, P) and the denoiser output D (B, C, H, W)."""
    sd = student.scfg.sigma_data
    c_skip, c_out, c_in, c_noise, _ = edm_scalings(sigma_s, sd)
    c = student.conditioning(c_noise, y)
    tok = student.embed(c_in[:, None, None, None] * x_s)      # (B, T, D)
    h = student.encode(gather_tokens(tok, vis), c)            # (B, Tv, D)
    z = student.head(h)
    idx = vis.long()[:, :, None].expand(-1, -1, tok.shape[-1])
    seq = tok.scatter(1, idx, h)                              # masked rows keep tok_s
    Fx = student.decode(seq, c)
    D = c_skip[:, None, None, None] * x_s + c_out[:, None, None, None] * Fx
    return z, D


def sddit_loss(student, teacher, batch, center, tau_t):
    """batch: dict x0, y, eps, sigma_s, sigma_t, vis. Returns dict with L, L_gen, L_dis
    (scalars; L carries the graph), z_t, z_s, D, x_s, x_t."""
    scfg = student.scfg
    x0, eps, s_s, s_t = batch["x0"], batch["eps"], batch["sigma_s"], batch["sigma_t"]
    y, vis = batch["y"].long(), batch["vis"]
    x_s = x0 + s_s[:, None, None, None] * eps
    x_t = x0 + s_t[:, None, None, None] * eps
    z_t = teacher_logits(teacher, x_t, s_t, y, vis)
    z_s, D = student_pass(student, x_s, s_s, y, vis)
    Pt = torch.softmax((z_t - center) / tau_t, dim=-1)
    L_dis = -(Pt * torch.log_softmax(z_s / scfg.tau_s, dim=-1)).sum(-1).mean()
    lam = edm_scalings(s_s, scfg.sigma_data)[4]
    L_gen = (lam * ((D - x0) ** 2).flatten(1).mean(1)).mean()
    L = L_gen + scfg.lambda_dis * L_dis
    return {"L": L, "L_gen": L_gen, "L_dis": L_dis, "z_t": z_t, "z_s": z_s, "D": D,
            "x_s": x_s, "x_t": x_t}


# ----------------------------------------------------------------------------- optimizer / state

def clip_grad_norm(grads, max_norm):
    """Like torch.nn.utils.clip_grad_norm_: g *= min(1, max_norm / (||g||_2 + 1e-6))."""
    total = torch.sqrt(sum((g * g).sum() for g in grads.values()))
    coef = min(1.0, max_norm / (total.item() + 1e-6))
    return {n: g * coef for n, g in grads.items()}, total.item()


@torch.no_grad()
def adamw_update(params, grads, m, v, t, scfg):
    """Hand-written AdamW, t = step + 1, at learning_rate(t - 1) (in-place on params, m, v;
    all dicts by name)."""
    lr = learning_rate(t - 1, scfg)
    b1, b2 = scfg.beta1, scfg.beta2
    bc1, bc2 = 1.0 - b1 ** t, 1.0 - b2 ** t
    for n, p in params.items():
        g = grads[n]
        m[n].mul_(b1).add_((1.0 - b1) * g)
        v[n].mul_(b2).add_((1.0 - b2) * g * g)
        mhat, vhat = m[n] / bc1, v[n] / bc2
        p.sub_(lr * (mhat / (torch.sqrt(vhat) + scfg.adam_eps) + scfg.weight_decay * p))


class SDDiTState:
    """Student, teacher (full SDDiT copy), generation EMA (DiT), center, Adam moments."""

    def __init__(self, student):
        scfg = student.scfg
        self.scfg = scfg
        self.student = student
        self.teacher = SDDiT(scfg, dtype=torch.float64)
        self.teacher.load_state_dict(student.state_dict())
        self.teacher.requires_grad_(False)
        self.ema = ref.DiT(scfg.dit, dtype=torch.float64)
        self.ema.load_state_dict({n: p for n, p in student.state_dict().items() if not n.startswith("head.")})
        self.ema.requires_grad_(False)
        self.center = torch.zeros(scfg.head_prototypes, dtype=torch.float64)
        self.m = {n: torch.zeros_like(p) for n, p in student.named_parameters()}
        self.v = {n: torch.zeros_like(p) for n, p in student.named_parameters()}
        self.step = 0

    def train_step(self, batch, want_grads=False):
        """One SD-DiT step (steps 1..11 of the contract). Returns diagnostics."""
        scfg, step = self.scfg, self.step
        tau_t, mom = teacher_temp(step, scfg), teacher_momentum(step, scfg)
        st = self.student
        names = [n for n, _ in st.named_parameters()]
        params = dict(st.named_parameters())
        out = sddit_loss(st, self.teacher, batch, self.center, tau_t)
        diag = {"tau_t": tau_t, "teacher_momentum": mom, "lr": learning_rate(step, scfg),
                "L": out["L"].item(),
                "L_gen": out["L_gen"].item(), "L_dis": out["L_dis"].item(),
                "z_t": out["z_t"].detach(), "z_s": out["z_s"].detach(), "D": out["D"].detach()}
        plist = [params[n] for n in names]
        if want_grads:
            for key, loss in (("grads_gen", out["L_gen"]), ("grads_dis", scfg.lambda_dis * out["L_dis"])):
                gs = torch.autograd.grad(loss, plist, retain_graph=True, allow_unused=True)
                diag[key] = {n: (torch.zeros_like(p) if g is None else g) for n, p, g in zip(names, plist, gs)}
        gs = torch.autograd.grad(out["L"], plist, allow_unused=True)
        grads = {n: (torch.zeros_like(p) if g is None else g) for n, p, g in zip(names, plist, gs)}
        diag["grads"] = grads
        if scfg.clip > 0:
            grads, diag["grad_norm"] = clip_grad_norm(grads, scfg.clip)
        with torch.no_grad():
            adamw_update(params, grads, self.m, self.v, step + 1, scfg)
            zt = out["z_t"].reshape(-1, scfg.head_prototypes)
            self.center.mul_(scfg.center_momentum).add_((1.0 - scfg.center_momentum) * zt.mean(0))
            tp = dict(self.teacher.named_parameters())
            for n in teacher_ema_names(scfg):
                tp[n].mul_(mom).add_((1.0 - mom) * params[n])
            d = scfg.ema_decay
            for n, e in self.ema.named_parameters():
                e.mul_(d).add_((1.0 - d) * params[n])
        self.step += 1
        return diag


# ----------------------------------------------------------------------------- selftest

def _selftest():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    scfg = FIXTURE_CONFIG
    cfg = scfg.dit
    st = SDDiT(scfg, dtype=torch.float64)
    ref.init_dit(st, gen)
    init_head(st.head, gen)
    with torch.no_grad():
        for p in st.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    # names / order
    assert [(n, tuple(p.shape)) for n, p in st.named_parameters()] == param_shapes(scfg)
    assert list(st.state_dict().keys()) == [n for n, _ in param_shapes(scfg)]
    # weight norm with g = 1 equals torch's weight_norm
    lin = nn.Linear(scfg.head_bottleneck, scfg.head_prototypes, bias=False).double()
    lin.weight.data.copy_(st.head.last_layer.weight_v.data)
    lin = nn.utils.weight_norm(lin, dim=0)
    lin.weight_g.data.fill_(1.0)
    u = torch.randn(5, scfg.head_bottleneck, dtype=torch.float64, generator=gen)
    assert torch.allclose(lin(u), st.head.last_layer(u), atol=1e-14)
    # with all tokens visible, the decoder output equals the plain DiT forward
    B = 3
    x = torch.randn(B, cfg.in_channels, cfg.input_size, cfg.input_size, dtype=torch.float64, generator=gen)
    sig = torch.tensor([0.01, 0.5, 10.0], dtype=torch.float64)
    y = torch.tensor([1, cfg.num_classes, 4])
    vis = torch.arange(cfg.tokens).repeat(B, 1)
    with torch.no_grad():
        _, D = student_pass(st, x, sig, y, vis)
        c_skip, c_out, c_in, c_noise, _ = edm_scalings(sig, scfg.sigma_data)
        Fx = ref.DiT.forward(st, c_in[:, None, None, None] * x, c_noise, y)
        D2 = c_skip[:, None, None, None] * x + c_out[:, None, None, None] * Fx
    assert (D - D2).abs().max().item() < 1e-12
    # hand AdamW equals torch.optim.AdamW
    ps = {"a": torch.randn(7, dtype=torch.float64, generator=gen), "b": torch.randn(3, 2, dtype=torch.float64, generator=gen)}
    tps = [p.clone().requires_grad_(True) for p in ps.values()]
    hcfg = SDDiTConfig(dit=cfg, weight_decay=0.05, lr=3e-3)
    opt = torch.optim.AdamW(tps, lr=hcfg.lr, betas=(hcfg.beta1, hcfg.beta2), eps=hcfg.adam_eps,
                            weight_decay=hcfg.weight_decay)
    m = {n: torch.zeros_like(p) for n, p in ps.items()}
    v = {n: torch.zeros_like(p) for n, p in ps.items()}
    for t in range(1, 5):
        gr = {n: torch.randn(p.shape, dtype=torch.float64, generator=gen) for n, p in ps.items()}
        for tp, g in zip(tps, gr.values()):
            tp.grad = g.clone()
        opt.step()
        adamw_update(ps, gr, m, v, t, hcfg)
    for tp, p in zip(tps, ps.values()):
        assert torch.allclose(tp.detach(), p, atol=1e-14, rtol=0)
    # schedules
    assert abs(teacher_momentum(0, scfg) - scfg.teacher_momentum) < 1e-15
    assert abs(teacher_temp(0, scfg) - 0.04) < 1e-15 and abs(teacher_temp(99, scfg) - 0.07) < 1e-15
    print("selftest ok")


def main():
    ap = argparse.ArgumentParser(description="SD-DiT float64 reference")
    ap.add_argument("--selftest", action="store_true")
    ap.parse_args()
    _selftest()


if __name__ == "__main__":
    main()
