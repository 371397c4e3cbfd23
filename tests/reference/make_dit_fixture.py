# Writes tests/fixtures/dit_tiny.h5: parameters, inputs, outputs, loss and gradients of a
# tiny DiT computed in float64 by dit_reference.py, for the C implementation's tests.
# Deterministic (fixed seeds). Run with the system python:
#   /usr/bin/python3 tests/reference/make_dit_fixture.py [--out PATH] [--gradcheck]
import argparse
import math
import os
import sys

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dit_reference as ref  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "dit_tiny.h5")
SEED = 20240611
BATCH = 3
TV = 12  # kept tokens per sample in the masked case
# Smaller model (same token count, so the same masking) for a quick gradcheck.
GRADCHECK_CONFIG = ref.DiTConfig(input_size=8, in_channels=4, patch=2, hidden=8, depth=2, heads=2,
                                 mlp_ratio=4, num_classes=10, out_channels=4, freq_dim=16)


def f32(t):
    """Round to float32 and back to float64."""
    return t.to(torch.float32).to(torch.float64)


def build_model(cfg, gen):
    model = ref.DiT(cfg, dtype=torch.float64)
    ref.init_dit(model, gen)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
            p.copy_(f32(p))
    return model


def make_inputs(cfg, gen):
    B, T = BATCH, cfg.tokens
    x = f32(torch.randn(B, cfg.in_channels, cfg.input_size, cfg.input_size, generator=gen, dtype=torch.float64))
    c_noise = f32(torch.tensor([math.log(s) / 4 for s in (0.01, 0.7, 20.0)], dtype=torch.float64))
    y = torch.tensor([3, cfg.num_classes, 7], dtype=torch.int64)  # middle sample = null class
    target = f32(torch.randn(B, cfg.out_channels, cfg.input_size, cfg.input_size, generator=gen,
                             dtype=torch.float64))
    keep_full = torch.arange(T).repeat(B, 1)
    keep_masked = torch.stack([torch.randperm(T, generator=gen)[:TV].sort().values for _ in range(B)])
    assert len({tuple(r.tolist()) for r in keep_masked}) == B, "masked subsets must differ"
    return x, c_noise, y, target, keep_full, keep_masked


def run_case(model, x, c_noise, y, target, keep_idx):
    model.zero_grad(set_to_none=True)
    out = model(x, c_noise, y, keep_idx)
    loss = ((out - target) ** 2).mean()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    return out.detach(), loss.detach(), grads


def gradcheck(cfg):
    """torch.autograd.gradcheck of the float64 reference with keep_idx, on inputs and params."""
    from torch.nn.utils.stateless import functional_call
    gen = torch.Generator().manual_seed(SEED + 1)
    model = build_model(cfg, gen)
    x, c_noise, y, _, _, keep = make_inputs(cfg, gen)
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())
    xr, cr = x.clone().requires_grad_(True), c_noise.clone().requires_grad_(True)

    def fn(xx, cc, *ps):
        return functional_call(model, dict(zip(names, ps)), (xx, cc, y, keep))

    ok = torch.autograd.gradcheck(fn, (xr, cr) + params, eps=1e-6, atol=1e-7, rtol=1e-5)
    print(f"gradcheck (inputs + {len(params)} params, keep_idx Tv={keep.shape[1]}): {ok}")
    return ok


def write(path):
    cfg = ref.FIXTURE_CONFIG
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    model = build_model(cfg, gen)
    x, c_noise, y, target, keep_full, keep_masked = make_inputs(cfg, gen)

    with torch.no_grad():
        t_feat = ref.timestep_features(c_noise, cfg.freq_dim, cfg.max_period)
        cond = model.conditioning(c_noise, y)

    cases = {}
    out_full, loss_full, g_full = run_case(model, x, c_noise, y, target, None)
    with torch.no_grad():
        out_arange = model(x, c_noise, y, keep_full)
    diff = (out_full - out_arange).abs().max().item()
    assert diff < 1e-12, f"keep_idx=arange differs from keep_idx=None by {diff}"
    cases["full"] = (keep_full, out_full, loss_full, g_full)
    cases["masked"] = (keep_masked,) + run_case(model, x, c_noise, y, target, keep_masked)

    gz = dict(compression="gzip", compression_opts=9, shuffle=True)

    def ds(group, name, arr):
        arr = np.ascontiguousarray(arr)
        kw = gz if arr.ndim > 0 and arr.size > 1 else {}
        group.create_dataset(name, data=arr, track_times=False, **kw)

    def group(parent, name):
        # Groups without modification times (and with creation order kept), so that two
        # runs give byte-identical files.
        gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
        gcpl.set_obj_track_times(False)
        order = h5py.h5p.CRT_ORDER_TRACKED | h5py.h5p.CRT_ORDER_INDEXED
        gcpl.set_link_creation_order(order)
        gcpl.set_attr_creation_order(order)
        return h5py.Group(h5py.h5g.create(parent.id, name.encode(), gcpl=gcpl))

    os.makedirs(os.path.dirname(path), exist_ok=True)
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)  # root group: no times, creation order kept
    fcpl.set_obj_track_times(False)
    fcpl.set_link_creation_order(h5py.h5p.CRT_ORDER_TRACKED | h5py.h5p.CRT_ORDER_INDEXED)
    fcpl.set_attr_creation_order(h5py.h5p.CRT_ORDER_TRACKED | h5py.h5p.CRT_ORDER_INDEXED)
    fid = h5py.h5f.create(path.encode(), h5py.h5f.ACC_TRUNC, fcpl=fcpl)
    with h5py.File(fid) as f:
        f.attrs["format"] = "sddit-fixture-dit"
        f.attrs["format_version"] = np.int64(1)
        f.attrs["generator"] = "tests/reference/make_dit_fixture.py"
        f.attrs["torch_version"] = str(torch.__version__)
        g = group(f, "config")
        for k, v in (("input_size", cfg.input_size), ("in_channels", cfg.in_channels), ("patch", cfg.patch),
                     ("hidden", cfg.hidden), ("depth", cfg.depth), ("heads", cfg.heads),
                     ("mlp_ratio", cfg.mlp_ratio), ("num_classes", cfg.num_classes),
                     ("out_channels", cfg.out_channels), ("batch", BATCH), ("freq_dim", cfg.freq_dim),
                     ("max_period", cfg.max_period)):
            g.attrs[k] = np.int64(v)
        g = group(f, "params")
        for n, p in model.named_parameters():
            ds(g, n, p.detach().numpy().astype(np.float32))
        ds(f, "pos_embed", model.pos_embed[0].numpy().astype(np.float32))
        g = group(f, "param_counts")
        for name, co, n, npos in ref.count_table():
            key = f"{name.replace('/', '_')}_out{co}"
            g.attrs[key] = np.int64(n)
            g.attrs[key + "_with_pos"] = np.int64(npos)
        for case, (keep, out, loss, grads) in cases.items():
            g = group(f, case)
            ds(g, "x", x.numpy().astype(np.float32))
            ds(g, "c_noise", c_noise.numpy().astype(np.float32))
            ds(g, "y", y.numpy().astype(np.int32))
            ds(g, "keep_idx", keep.numpy().astype(np.int32))
            ds(g, "target", target.numpy().astype(np.float32))
            ds(g, "out", out.numpy().astype(np.float32))
            g.create_dataset("loss", data=np.float64(loss.item()), track_times=False)
            gg = group(g, "grads")
            for n, gr in grads.items():
                ds(gg, n, gr.numpy().astype(np.float32))
            if case == "full":
                ds(g, "t_features", t_feat.numpy().astype(np.float32))
                ds(g, "c", cond.numpy().astype(np.float32))
            print(f"{case:6s} loss={loss.item():.12f} |out|max={out.abs().max().item():.4f}")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def main():
    ap = argparse.ArgumentParser(description="write tests/fixtures/dit_tiny.h5")
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--gradcheck", action="store_true",
                    help="also run torch.autograd.gradcheck on a smaller float64 model (~30 s)")
    ap.add_argument("--gradcheck-fixture-config", action="store_true",
                    help="gradcheck on the fixture's own config instead (several minutes)")
    a = ap.parse_args()
    write(a.out)
    if a.gradcheck_fixture_config:
        assert gradcheck(ref.FIXTURE_CONFIG)
    elif a.gradcheck:
        assert gradcheck(GRADCHECK_CONFIG)


if __name__ == "__main__":
    main()
