# Plain-PyTorch reference of the DiT (diffusion transformer, Peebles & Xie) used to
# generate test fixtures and a CPU timing baseline for the C implementation.
# Names, layouts and numerics here are the contract the C code follows.
#
#   /usr/bin/python3 tests/reference/dit_reference.py --counts   # parameter table
#   /usr/bin/python3 tests/reference/dit_reference.py --selftest # quick internal checks
import argparse
import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ----------------------------------------------------------------------------- config

@dataclass(frozen=True)
class DiTConfig:
    input_size: int = 32      # latent side H = W
    in_channels: int = 4      # C
    patch: int = 2            # p
    hidden: int = 384         # D
    depth: int = 12           # L
    heads: int = 6            # NH
    mlp_ratio: int = 4
    num_classes: int = 1000   # K (embedding table has K+1 rows, last = null class)
    out_channels: int = 4     # Cout (8 = DiT's learn_sigma)
    freq_dim: int = 256
    max_period: int = 10000

    @property
    def grid(self):
        return self.input_size // self.patch

    @property
    def tokens(self):
        return self.grid * self.grid

    @property
    def head_dim(self):
        return self.hidden // self.heads


PRESETS = {
    "tiny": DiTConfig(input_size=8, in_channels=4, patch=2, hidden=64, depth=4, heads=4, num_classes=10),
    "S/2": DiTConfig(hidden=384, depth=12, heads=6),
    "B/2": DiTConfig(hidden=768, depth=12, heads=12),
    "L/2": DiTConfig(hidden=1024, depth=24, heads=16),
    "XL/2": DiTConfig(hidden=1152, depth=28, heads=16),
}

# Configuration of tests/fixtures/dit_tiny.h5.
FIXTURE_CONFIG = DiTConfig(input_size=8, in_channels=4, patch=2, hidden=32, depth=2, heads=2,
                           mlp_ratio=4, num_classes=10, out_channels=4)


def preset(name, **overrides):
    return replace(PRESETS[name], **overrides)


# ----------------------------------------------------------------------------- fixed tables

def sincos_1d(width, pos):
    """1-D sincos of positions `pos` (float64 array) for an even `width`: [sin | cos]."""
    assert width % 2 == 0
    half = width // 2
    omega = 1.0 / 10000.0 ** (np.arange(half, dtype=np.float64) / half)
    args = np.asarray(pos, dtype=np.float64).reshape(-1)[:, None] * omega[None, :]
    return np.concatenate([np.sin(args), np.cos(args)], axis=1)


def pos_embed_table(hidden, grid):
    """(T, D) float64 numpy table; token m = row*G + col.
    Columns [0, D/2) encode the token's column index, [D/2, D) its row index."""
    assert hidden % 4 == 0
    m = np.arange(grid * grid)
    row, col = m // grid, m % grid
    return np.concatenate([sincos_1d(hidden // 2, col), sincos_1d(hidden // 2, row)], axis=1)


def timestep_features(c_noise, dim=256, max_period=10000):
    """(B,) -> (B, dim): [cos(c*f_k) | sin(c*f_k)], f_k = exp(-ln(max_period) k / (dim/2))."""
    half = dim // 2
    k = torch.arange(half, dtype=torch.float64, device=c_noise.device)
    freqs = torch.exp(-math.log(max_period) * k / half).to(c_noise.dtype)
    args = c_noise[:, None] * freqs[None, :]
    feat = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        feat = torch.cat([feat, torch.zeros_like(feat[:, :1])], dim=-1)
    return feat


# ----------------------------------------------------------------------------- modules

def modulate(h, shift, scale):
    return h * (1 + scale[:, None]) + shift[:, None]


def layer_norm(h):
    return F.layer_norm(h, (h.shape[-1],), eps=1e-6)


def gelu_tanh(h):
    return 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * h * h * h)))


class PatchEmbed(nn.Module):
    def __init__(self, cfg, **fk):
        super().__init__()
        self.proj = nn.Conv2d(cfg.in_channels, cfg.hidden, cfg.patch, stride=cfg.patch, **fk)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, T, D), m = row*G + col


class TimestepEmbedder(nn.Module):
    def __init__(self, cfg, **fk):
        super().__init__()
        self.freq_dim, self.max_period = cfg.freq_dim, cfg.max_period
        self.mlp = nn.Sequential(nn.Linear(cfg.freq_dim, cfg.hidden, **fk), nn.SiLU(),
                                 nn.Linear(cfg.hidden, cfg.hidden, **fk))

    def forward(self, c_noise):
        return self.mlp(timestep_features(c_noise, self.freq_dim, self.max_period))


class LabelEmbedder(nn.Module):
    def __init__(self, cfg, **fk):
        super().__init__()
        self.embedding_table = nn.Embedding(cfg.num_classes + 1, cfg.hidden, **fk)

    def forward(self, y):
        return self.embedding_table(y)


class Attention(nn.Module):
    def __init__(self, cfg, **fk):
        super().__init__()
        self.heads = cfg.heads
        self.qkv = nn.Linear(cfg.hidden, 3 * cfg.hidden, **fk)
        self.proj = nn.Linear(cfg.hidden, cfg.hidden, **fk)

    def forward(self, x):
        B, N, D = x.shape
        hd = D // self.heads
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                       # (B, NH, N, hd)
        att = torch.softmax((q @ k.transpose(-2, -1)) * hd ** -0.5, dim=-1)
        o = (att @ v).transpose(1, 2).reshape(B, N, D)
        return self.proj(o)


class Mlp(nn.Module):
    def __init__(self, cfg, **fk):
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden, cfg.mlp_ratio * cfg.hidden, **fk)
        self.fc2 = nn.Linear(cfg.mlp_ratio * cfg.hidden, cfg.hidden, **fk)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class DiTBlock(nn.Module):
    def __init__(self, cfg, **fk):
        super().__init__()
        self.attn = Attention(cfg, **fk)
        self.mlp = Mlp(cfg, **fk)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(cfg.hidden, 6 * cfg.hidden, **fk))

    def forward(self, x, c):
        sh_msa, sc_msa, g_msa, sh_mlp, sc_mlp, g_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + g_msa[:, None] * self.attn(modulate(layer_norm(x), sh_msa, sc_msa))
        x = x + g_mlp[:, None] * self.mlp(modulate(layer_norm(x), sh_mlp, sc_mlp))
        return x


class FinalLayer(nn.Module):
    def __init__(self, cfg, **fk):
        super().__init__()
        # adaLN_modulation is registered before linear: this fixes the parameter order.
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(cfg.hidden, 2 * cfg.hidden, **fk))
        self.linear = nn.Linear(cfg.hidden, cfg.patch * cfg.patch * cfg.out_channels, **fk)

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(layer_norm(x), shift, scale))


class DiT(nn.Module):
    def __init__(self, cfg, dtype=None, device=None):
        super().__init__()
        self.cfg = cfg
        fk = {"dtype": dtype, "device": device}
        self.x_embedder = PatchEmbed(cfg, **fk)
        self.t_embedder = TimestepEmbedder(cfg, **fk)
        self.y_embedder = LabelEmbedder(cfg, **fk)
        self.blocks = nn.ModuleList([DiTBlock(cfg, **fk) for _ in range(cfg.depth)])
        self.final_layer = FinalLayer(cfg, **fk)
        bdtype = dtype if dtype is not None else torch.get_default_dtype()
        if device is not None and torch.device(device).type == "meta":
            pos = torch.empty(1, cfg.tokens, cfg.hidden, dtype=bdtype, device="meta")
        else:
            pos = torch.from_numpy(pos_embed_table(cfg.hidden, cfg.grid)).to(bdtype)[None]
            if device is not None:
                pos = pos.to(device)
        # Fixed table, not trainable, kept out of state_dict so state_dict == parameter list.
        self.register_buffer("pos_embed", pos, persistent=False)

    def conditioning(self, c_noise, y):
        return self.t_embedder(c_noise) + self.y_embedder(y)

    def unpatchify(self, tok):
        cfg = self.cfg
        B, G, p, Co = tok.shape[0], cfg.grid, cfg.patch, cfg.out_channels
        tok = tok.reshape(B, G, G, p, p, Co)
        return torch.einsum("nhwpqc->nchpwq", tok).reshape(B, Co, G * p, G * p)

    def forward(self, x, c_noise, y, keep_idx=None):
        x = self.x_embedder(x) + self.pos_embed
        c = self.conditioning(c_noise, y)
        if keep_idx is not None:
            idx = keep_idx.long()[:, :, None].expand(-1, -1, x.shape[-1])
            x = torch.gather(x, 1, idx)
        for blk in self.blocks:
            x = blk(x, c)
        out = self.final_layer(x, c)                      # (B, N, p*p*Cout)
        if keep_idx is not None:
            full = out.new_zeros(out.shape[0], self.cfg.tokens, out.shape[-1])
            idx = keep_idx.long()[:, :, None].expand(-1, -1, out.shape[-1])
            out = full.scatter(1, idx, out)
        return self.unpatchify(out)


# ----------------------------------------------------------------------------- init

def _xavier_uniform_(w2d, generator):
    fan_out, fan_in = w2d.shape
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        w2d.uniform_(-bound, bound, generator=generator)


@torch.no_grad()
def init_dit(model, generator):
    """DiT initialisation, driven only by `generator` (a CPU torch.Generator)."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            _xavier_uniform_(m.weight, generator)
            if m.bias is not None:
                m.bias.zero_()
    w = model.x_embedder.proj.weight
    _xavier_uniform_(w.view(w.shape[0], -1), generator)
    model.x_embedder.proj.bias.zero_()
    model.y_embedder.embedding_table.weight.normal_(0.0, 0.02, generator=generator)
    model.t_embedder.mlp[0].weight.normal_(0.0, 0.02, generator=generator)
    model.t_embedder.mlp[2].weight.normal_(0.0, 0.02, generator=generator)
    for blk in model.blocks:
        blk.adaLN_modulation[-1].weight.zero_()
        blk.adaLN_modulation[-1].bias.zero_()
    fl = model.final_layer
    for lin in (fl.adaLN_modulation[-1], fl.linear):
        lin.weight.zero_()
        lin.bias.zero_()
    return model


# ----------------------------------------------------------------------------- counts and FLOPs

def param_shapes(cfg):
    """Ordered list of (name, shape) for every trainable parameter (pos_embed excluded)."""
    D, C, p, K, Co, Fd = cfg.hidden, cfg.in_channels, cfg.patch, cfg.num_classes, cfg.out_channels, cfg.freq_dim
    H = cfg.mlp_ratio * D
    out = [("x_embedder.proj.weight", (D, C, p, p)), ("x_embedder.proj.bias", (D,)),
           ("t_embedder.mlp.0.weight", (D, Fd)), ("t_embedder.mlp.0.bias", (D,)),
           ("t_embedder.mlp.2.weight", (D, D)), ("t_embedder.mlp.2.bias", (D,)),
           ("y_embedder.embedding_table.weight", (K + 1, D))]
    for i in range(cfg.depth):
        b = f"blocks.{i}."
        out += [(b + "attn.qkv.weight", (3 * D, D)), (b + "attn.qkv.bias", (3 * D,)),
                (b + "attn.proj.weight", (D, D)), (b + "attn.proj.bias", (D,)),
                (b + "mlp.fc1.weight", (H, D)), (b + "mlp.fc1.bias", (H,)),
                (b + "mlp.fc2.weight", (D, H)), (b + "mlp.fc2.bias", (D,)),
                (b + "adaLN_modulation.1.weight", (6 * D, D)), (b + "adaLN_modulation.1.bias", (6 * D,))]
    out += [("final_layer.adaLN_modulation.1.weight", (2 * D, D)),
            ("final_layer.adaLN_modulation.1.bias", (2 * D,)),
            ("final_layer.linear.weight", (p * p * Co, D)),
            ("final_layer.linear.bias", (p * p * Co,))]
    return out


def count_params(cfg, include_pos=False):
    """Trainable parameter count by arithmetic; include_pos adds the (T, D) pos_embed table."""
    n = sum(math.prod(s) for _, s in param_shapes(cfg))
    return n + (cfg.tokens * cfg.hidden if include_pos else 0)


def count_model_params(model, include_pos=False):
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return n + (model.pos_embed.numel() if include_pos else 0)


def forward_flops(cfg, tokens=None):
    """Forward FLOPs per image (multiply-add = 2). A training step is 3x this."""
    T = cfg.tokens if tokens is None else tokens
    D, C, p, Co, Fd = cfg.hidden, cfg.in_channels, cfg.patch, cfg.out_channels, cfg.freq_dim
    H = cfg.mlp_ratio * D
    per_block = 2 * T * (3 * D * D + D * D + H * D + H * D) + 2 * 2 * T * T * D + 2 * 6 * D * D
    return (cfg.depth * per_block
            + 2 * T * D * C * p * p           # patch embed
            + 2 * T * D * p * p * Co          # final linear
            + 2 * 2 * D * D                   # final adaLN
            + 2 * (Fd * D + D * D))           # timestep MLP


# ----------------------------------------------------------------------------- CLI

def count_table():
    rows = []
    for name in ("S/2", "B/2", "L/2", "XL/2"):
        for co in (4, 8):
            cfg = preset(name, out_channels=co)
            rows.append((name, co, count_params(cfg), count_params(cfg, include_pos=True)))
    return rows


def _check_counts():
    """Arithmetic vs meta-device model (all presets) vs real model (tiny, S/2)."""
    for name in PRESETS:
        for co in (4, 8):
            cfg = preset(name, out_channels=co)
            meta = DiT(cfg, device="meta")
            names = [(n, tuple(p.shape)) for n, p in meta.named_parameters()]
            assert names == param_shapes(cfg), name
            assert count_model_params(meta) == count_params(cfg)
            assert count_model_params(meta, True) == count_params(cfg, True)
            if name in ("tiny", "S/2"):
                real = DiT(cfg)
                assert count_model_params(real, True) == count_params(cfg, True)
                assert list(real.state_dict().keys()) == [n for n, _ in param_shapes(cfg)]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--counts", action="store_true", help="print parameter-count table")
    ap.add_argument("--selftest", action="store_true", help="run quick internal checks")
    a = ap.parse_args()
    if a.selftest:
        _check_counts()
        h = torch.randn(1000, dtype=torch.float64)
        assert torch.allclose(gelu_tanh(h), F.gelu(h, approximate="tanh"), atol=1e-14)
        print("selftest ok")
    if a.counts or not a.selftest:
        _check_counts()
        print(f"{'preset':6} {'Cout':>4} {'trainable':>14} {'with_pos':>14} {'fwd GFLOP/img':>14}")
        for name, co, n, npos in count_table():
            fl = forward_flops(preset(name, out_channels=co)) / 1e9
            print(f"{name:6} {co:4d} {n:14,d} {npos:14,d} {fl:14.3f}")


if __name__ == "__main__":
    main()
