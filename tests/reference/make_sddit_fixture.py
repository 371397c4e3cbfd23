# Writes tests/fixtures/sddit_tiny.h5: initial parameters, explicit per-step randomness,
# losses, step-0 gradients and the final student / teacher / EMA / center / Adam state of
# 5 SD-DiT training steps computed in float64 by sddit_reference.py, for the C tests.
# --schedule writes tests/fixtures/sddit_tiny_sched.h5 instead: the same steps with a 2-step
# linear learning-rate warm-up and a cosine decay to lr_min (the C test also runs it with
# gradient accumulation, 2 micro-batches of 2: the same full-batch mean in exact arithmetic).
# Deterministic (fixed seeds, no HDF5 timestamps). Run with the system python:
#   /usr/bin/python3 tests/reference/make_sddit_fixture.py [--schedule] [--out PATH] [--gradcheck]
import argparse
import dataclasses
import os
import sys
import time

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dit_reference as ref  # noqa: E402
import sddit_reference as sref  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "sddit_tiny.h5")
SCHED_OUT = os.path.join(REPO, "tests", "fixtures", "sddit_tiny_sched.h5")
SEED = 20240612
BATCH = 4
TV = 12
STEPS = 5
SIGMA_T = 0.002
DROP_PROB = 0.25
SCFG = sref.SDDiTConfig(
    dit=sref.FIXTURE_CONFIG.dit, encoder_depth=2, head_hidden=64, head_bottleneck=16, head_prototypes=32,
    sigma_data=0.5, lr=1e-3, beta1=0.9, beta2=0.999, adam_eps=1e-6, weight_decay=0.0, clip=0.0,
    teacher_momentum=0.9, total_steps=10, teacher_temp_warmup=4, tau_t_start=0.04, tau_t_end=0.07,
    tau_s=0.1, center_momentum=0.9, lambda_dis=1.0, ema_decay=0.9)
GRADCHECK_PARAMS = ("head.last_layer.weight_v", "head.mlp.0.weight", "blocks.0.attn.qkv.weight",
                    "blocks.1.adaLN_modulation.1.bias", "x_embedder.proj.weight", "final_layer.linear.weight")


def f32(t):
    """Round to float32 and back to float64."""
    return t.to(torch.float32).to(torch.float64)


def build_student(scfg, gen):
    model = sref.SDDiT(scfg, dtype=torch.float64)
    ref.init_dit(model, gen)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if not n.startswith("head."):
                p.add_(0.02 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
        sref.init_head(model.head, gen)
        for n, p in model.head.named_parameters():
            if n.endswith(".bias"):
                p.add_(0.02 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
        for p in model.parameters():
            p.copy_(f32(p))
    return model


def make_batch(scfg, gen):
    cfg = scfg.dit
    B, S, T = BATCH, cfg.input_size, cfg.tokens
    x0 = f32(0.5 * torch.randn(B, cfg.in_channels, S, S, generator=gen, dtype=torch.float64))
    y = torch.randint(0, cfg.num_classes, (B,), generator=gen)
    drop = torch.rand(B, generator=gen, dtype=torch.float64) < DROP_PROB
    y = torch.where(drop, torch.full_like(y, cfg.num_classes), y)
    eps = f32(torch.randn(B, cfg.in_channels, S, S, generator=gen, dtype=torch.float64))
    sigma_s = f32(torch.exp(-1.2 + 1.2 * torch.randn(B, generator=gen, dtype=torch.float64)))
    sigma_t = f32(torch.full((B,), SIGMA_T, dtype=torch.float64))
    vis = torch.stack([torch.randperm(T, generator=gen)[:TV].sort().values for _ in range(B)])
    return {"x0": x0, "y": y, "eps": eps, "sigma_s": sigma_s, "sigma_t": sigma_t, "vis": vis}


def make_all(scfg):
    torch.manual_seed(SEED)                       # trunc_normal_ uses the global RNG
    gen = torch.Generator().manual_seed(SEED)
    student = build_student(scfg, gen)
    dgen = torch.Generator().manual_seed(SEED + 1)
    batches = [make_batch(scfg, dgen) for _ in range(STEPS)]
    return student, batches


def gradcheck(scfg, names=GRADCHECK_PARAMS):
    """gradcheck of step-0's float64 loss L w.r.t. a few student tensors (the teacher is a
    perturbed copy so that z_t != z_s, and the center is non-zero)."""
    from torch.nn.utils.stateless import functional_call
    student, batches = make_all(scfg)
    state = sref.SDDiTState(student)
    g = torch.Generator().manual_seed(SEED + 2)
    with torch.no_grad():
        for p in state.teacher.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g, dtype=torch.float64))
        state.center.copy_(0.1 * torch.randn(scfg.head_prototypes, generator=g, dtype=torch.float64))
    tau_t = sref.teacher_temp(1, scfg)

    class Loss(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self):
            return sref.sddit_loss(self.m, state.teacher, batches[0], state.center, tau_t)["L"]

    wrap = Loss(student)
    ps = tuple(dict(student.named_parameters())[n].detach().clone().requires_grad_(True) for n in names)

    def fn(*tensors):
        return functional_call(wrap, {"m." + n: t for n, t in zip(names, tensors)}, ())

    ok = torch.autograd.gradcheck(fn, ps, eps=1e-6, atol=1e-7, rtol=1e-5)
    print(f"gradcheck of L w.r.t. {', '.join(names)} "
          f"({sum(p.numel() for p in ps)} elements): {ok}")
    return ok


SCHED_CFG = dataclasses.replace(SCFG, warmup_steps=2, lr_schedule="cosine", lr_min=1e-4)


def write(path, scfg=SCFG):
    t0 = time.time()
    cfg = scfg.dit
    student, batches = make_all(scfg)
    nulls = sum(int((b["y"] == cfg.num_classes).sum()) for b in batches)
    assert 0 < nulls < STEPS * BATCH, "fixture should contain some (not all) null labels"
    init = {n: p.detach().clone() for n, p in student.named_parameters()}
    state = sref.SDDiTState(student)
    diags = [state.train_step(b, want_grads=(k == 0)) for k, b in enumerate(batches)]

    # sanity checks: every part moves
    d0 = diags[0]
    for n in init:
        s = d0["grads_gen"][n] + d0["grads_dis"][n]
        assert torch.allclose(s, d0["grads"][n], atol=1e-12, rtol=1e-10), n
    dec = ("final_layer.",) + tuple(f"blocks.{i}." for i in range(scfg.encoder_depth, cfg.depth))
    for n in init:
        if n.startswith(dec):
            assert d0["grads_dis"][n].abs().max() == 0, n
        if n.startswith("head."):
            assert d0["grads_gen"][n].abs().max() == 0, n
        else:
            assert d0["grads_gen"][n].abs().max() > 0, n
    lg = [d["L_gen"] for d in diags]
    ld = [d["L_dis"] for d in diags]
    assert len(set(lg)) == STEPS and len(set(ld)) == STEPS
    fs = dict(state.student.named_parameters())
    ft = dict(state.teacher.named_parameters())
    ema_names = set(sref.teacher_ema_names(scfg))
    for n in init:
        if n in ema_names:
            assert (ft[n] - init[n]).abs().max() > 1e-6, n
            assert (ft[n] - fs[n]).abs().max() > 1e-6, n
        else:
            assert torch.equal(ft[n], init[n]), n
        assert (fs[n] - init[n]).abs().max() > 1e-4, n
    assert state.center.abs().max() > 0

    gz = dict(compression="gzip", compression_opts=9, shuffle=True)
    order = h5py.h5p.CRT_ORDER_TRACKED | h5py.h5p.CRT_ORDER_INDEXED

    def ds(group, name, arr):
        arr = np.ascontiguousarray(arr)
        kw = dict(gz, chunks=arr.shape) if arr.ndim > 0 and arr.size > 1 else {}  # one chunk each
        group.create_dataset(name, data=arr, track_times=False, **kw)

    def scalar(group, name, val):
        group.create_dataset(name, data=np.float64(val), track_times=False)

    def group(parent, name):
        # No modification times, creation order kept: two runs give byte-identical files.
        gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
        gcpl.set_obj_track_times(False)
        gcpl.set_link_creation_order(order)
        gcpl.set_attr_creation_order(order)
        return h5py.Group(h5py.h5g.create(parent.id, name.encode(), gcpl=gcpl))

    def tensors(parent, name, d, same_as=None):
        """One f32 dataset per tensor; a tensor bit-identical to same_as[n] (the teacher's
        non-EMA'd decoder) becomes a hard link to that dataset (plain dataset to readers)."""
        g = group(parent, name)
        for n, t in d.items():
            a = t.detach().numpy().astype(np.float32)
            if same_as is not None and np.array_equal(same_as[n][()], a):
                g[n] = same_as[n]
            else:
                ds(g, n, a)
        return g

    os.makedirs(os.path.dirname(path), exist_ok=True)
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_obj_track_times(False)
    fcpl.set_link_creation_order(order)
    fcpl.set_attr_creation_order(order)
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)  # HDF5 1.10 format: single-chunk index, small headers
    fapl.set_libver_bounds(h5py.h5f.LIBVER_V110, h5py.h5f.LIBVER_V110)
    fid = h5py.h5f.create(path.encode(), h5py.h5f.ACC_TRUNC, fcpl=fcpl, fapl=fapl)
    with h5py.File(fid) as f:
        f.attrs["format"] = "sddit-fixture-sddit"
        f.attrs["format_version"] = np.int64(1)
        f.attrs["generator"] = "tests/reference/make_sddit_fixture.py"
        f.attrs["torch_version"] = str(torch.__version__)
        g = group(f, "config")
        for k, v in (("input_size", cfg.input_size), ("in_channels", cfg.in_channels), ("patch", cfg.patch),
                     ("hidden", cfg.hidden), ("depth", cfg.depth), ("heads", cfg.heads),
                     ("mlp_ratio", cfg.mlp_ratio), ("num_classes", cfg.num_classes),
                     ("out_channels", cfg.out_channels), ("freq_dim", cfg.freq_dim),
                     ("max_period", cfg.max_period), ("encoder_depth", scfg.encoder_depth),
                     ("decoder_depth", scfg.decoder_depth), ("head_hidden", scfg.head_hidden),
                     ("head_bottleneck", scfg.head_bottleneck), ("head_prototypes", scfg.head_prototypes),
                     ("batch", BATCH), ("visible_tokens", TV), ("steps", STEPS),
                     ("total_steps", scfg.total_steps), ("teacher_temp_warmup", scfg.teacher_temp_warmup),
                     ("warmup_steps", scfg.warmup_steps), ("lr_cosine", int(scfg.lr_schedule == "cosine"))):
            g.attrs[k] = np.int64(v)
        for k in ("sigma_data", "lr", "lr_min", "beta1", "beta2", "adam_eps", "weight_decay", "teacher_momentum",
                  "ema_decay", "center_momentum", "lambda_dis", "tau_s", "tau_t_start", "tau_t_end"):
            g.attrs[k] = np.float64(getattr(scfg, k))
        g_init = tensors(group(f, "init"), "params", init)
        gs = group(f, "steps")
        for k, (b, d) in enumerate(zip(batches, diags)):
            g = group(gs, str(k))
            ds(g, "x0", b["x0"].numpy().astype(np.float32))
            ds(g, "y", b["y"].numpy().astype(np.int32))
            ds(g, "eps", b["eps"].numpy().astype(np.float32))
            ds(g, "sigma_s", b["sigma_s"].numpy().astype(np.float32))
            ds(g, "sigma_t", b["sigma_t"].numpy().astype(np.float32))
            ds(g, "vis", b["vis"].numpy().astype(np.int32))
            for key in ("L_gen", "L_dis", "L", "tau_t", "teacher_momentum", "lr"):
                scalar(g, key, d[key])
            if k == 0:
                for key in ("grads", "grads_gen", "grads_dis"):
                    tensors(g, key, d[key])
                for key in ("D", "z_t", "z_s"):
                    ds(g, key, d[key].numpy().astype(np.float32))
            print(f"step {k}: L_gen={d['L_gen']:.10f} L_dis={d['L_dis']:.10f} L={d['L']:.10f} "
                  f"tau_t={d['tau_t']:.4f} m={d['teacher_momentum']:.6f} y={b['y'].tolist()}")
        g = group(f, "final")
        tensors(g, "student", fs)
        tensors(g, "teacher", ft, same_as=g_init)
        tensors(g, "ema", dict(state.ema.named_parameters()))
        ds(g, "center", state.center.numpy().astype(np.float32))
        tensors(g, "adam_m", state.m)
        tensors(g, "adam_v", state.v)
    print(f"wrote {path} ({os.path.getsize(path)} bytes) in {time.time() - t0:.2f} s")


def main():
    ap = argparse.ArgumentParser(description="write tests/fixtures/sddit_tiny.h5")
    ap.add_argument("--out", default=None, help="default: tests/fixtures/sddit_tiny.h5 "
                    "(--schedule: sddit_tiny_sched.h5)")
    ap.add_argument("--schedule", action="store_true",
                    help="2-step warm-up and a cosine learning rate (sddit_tiny_sched.h5)")
    ap.add_argument("--gradcheck", action="store_true",
                    help="also gradcheck step 0's loss w.r.t. a few student tensors")
    a = ap.parse_args()
    scfg = SCHED_CFG if a.schedule else SCFG
    write(a.out or (SCHED_OUT if a.schedule else DEFAULT_OUT), scfg)
    if a.gradcheck:
        assert gradcheck(SCFG)


if __name__ == "__main__":
    main()
