#!/usr/bin/python3
"""Data-parallel scaling model of the SD-DiT training step (benchmarks/RESULTS.md, "Scaling").

  t(N) = t_compute(B_local) + t_optimizer + exposed_comm(N) [+ exposed teacher broadcast(N)]

exposed_comm: the gradient all-reduce, one bucket per DiT block, one for the projection head,
one for the final layer and one for the embedders (as src/train/train_dist.c posts them), float32
gradients (sd_nccl_allreduce_mean_f32: 4 bytes per parameter; --grad-dtype bf16: 2 bytes, as
dist.grad_dtype = bf16 sends them). Each bucket's all-reduce starts
when its gradient is ready and runs on one communication stream, one bucket after the other;
the backward is spread evenly over the blocks (the head and final-layer buckets are ready when
the backward starts, block depth-1 .. 0 after 1/depth .. depth/depth of it, the embedders at
its end), so a bucket's all-reduce hides behind the backward of the blocks still to come, and
what runs past the end of the backward is exposed.

All-reduce cost of S bytes (alpha-beta, ring): N <= G GPUs of one node:
  2(N-1) a_nv + 2(N-1)/N * S / busbw_nv
N = n nodes x G GPUs, hierarchical (intra-node reduce-scatter, inter-node ring all-reduce of
S/G per GPU on its own NIC, intra-node all-gather):
  2 * [(G-1) a_nv + (G-1)/G * S / busbw_nv] + a_ib0 + 2(n-1) a_ib + 2(n-1)/n * (S/G) / busbw_ib
Teacher broadcast (rank 0's EMA teacher of the embedders + encoder blocks + head, sent every
dist.teacher_sync_every steps, default 1). It starts after the optimizer and the next step
runs the student's forward before it waits for it (src/objective/sddit.c), so only what exceeds the
student forward is exposed (--no-teacher-overlap: all of it, as before that overlap):
  2 * [(G-1) a_nv + (G-1)/G * S / busbw_nv] + a_ib0 + (n-1) a_ib + (S/G) / busbw_ib   (n > 1)

Compute per GPU: one H200 runs ~1100 SD-DiT XL/2 images/s at the hardware limit (the target
used in RESULTS.md); that fixes the FLOP rate at 100% ("hw"), other presets scale by their
analytic FLOPs per image (the formula of benchmarks/throughput.c); "realistic" is 50% of it.
Optimizer: memory-bound AdamW + center + two EMAs, ~52 bytes of HBM traffic per parameter at
80% of the H200's 4.8 TB/s.

Usage: scaling_model.py [--presets S/2,B/2,L/2,XL/2] [--gpus 8,16,...,1024] [--batch 32]
                        [--mfu 0.5] [--teacher-sync-every 1] [--png benchmarks/scaling.png]
                        [--cpu-check] [--quiet-assumptions]
"""
import argparse
import math
import sys

# ---- model presets (src/model/dit_config.c) and SD-DiT defaults (launch/configs/*.ini) ----
PRESETS = {  # depth, hidden, encoder_depth
    "S/2": (12, 384, 10), "B/2": (12, 768, 10), "L/2": (24, 1024, 20), "XL/2": (28, 1152, 24),
}
BASE = dict(input_size=32, in_channels=4, out_channels=4, patch=2, num_classes=1000,
            freq_dim=256, mlp_ratio=4, head=(2048, 256, 8192), mask_ratio=0.2)
# digits.ini (tiny with hidden 128, depth 6, encoder 4): the measured CPU case
DIGITS = dict(depth=6, hidden=128, encoder_depth=4, input_size=8, in_channels=1,
              out_channels=1, patch=2, num_classes=10, freq_dim=256, mlp_ratio=4,
              head=(128, 32, 64), mask_ratio=0.2)

# ---- link assumptions (documented vendor figures, not measured here) ----
LINKS = dict(
    G=8,                 # GPUs per node (HGX H200: 8 x SXM)
    busbw_nv=370e9,      # NVLink 4: 450 GB/s per direction per GPU; NCCL busbw ~370-400 GB/s
    a_nv=1.0e-6,         # per ring step inside a node
    busbw_ib=42e9,       # IB NDR 400 Gb/s = 50 GB/s per GPU (one NIC per GPU); busbw ~40-45
    a_ib0=8e-6,          # IB latency ~5-10 us per operation
    a_ib=3e-6,           # + per ring step between nodes (NCCL ring latency grows with nodes)
)
H200 = dict(xl2_img_s_hw=1100.0, hbm_Bps=4.8e12, hbm_eff=0.8, opt_bytes_per_param=52.0)


def cfg_of(preset):
    if preset == "digits":
        return dict(DIGITS)
    depth, hidden, enc = PRESETS[preset]
    c = dict(BASE)
    c.update(depth=depth, hidden=hidden, encoder_depth=enc)
    return c


def tokens(c):
    return (c["input_size"] // c["patch"]) ** 2


def visible(c):
    T = tokens(c)
    return T - math.ceil(c["mask_ratio"] * T)  # 204 of 256, 12 of 16 (RESULTS.md)


def buckets(c):
    """(name, params) in the order the backward makes them ready; matches `sddit params`."""
    D, pp, C, O = c["hidden"], c["patch"] ** 2, c["in_channels"], c["out_channels"]
    H, bn, P = c["head"]
    block = 18 * D * D + 15 * D  # qkv, proj, fc1, fc2 (mlp_ratio 4), adaLN 6D
    final = 2 * D * D + 2 * D + D * pp * O + pp * O
    embed = D * C * pp + D + c["freq_dim"] * D + D + D * D + D + (c["num_classes"] + 1) * D
    head = D * H + H + H * H + H + H * bn + bn + bn * P
    out = [("head", head, 0), ("final", final, 0)]
    out += [("block%d" % i, block, c["depth"] - i) for i in reversed(range(c["depth"]))]
    out.append(("embed", embed, c["depth"]))
    return out  # third field: blocks of backward done when the bucket is ready


def teacher_params(c):
    b = {n: p for n, p, _ in buckets(c)}
    return b["embed"] + c["encoder_depth"] * b["block0"] + b["head"]


def flop_parts(c):
    """FLOPs per image of the teacher's forward and of the student's forward (throughput.c)."""
    D, M, pp, T, Tv = c["hidden"], c["mlp_ratio"] * c["hidden"], c["patch"] ** 2, tokens(c), visible(c)
    H, bn, P = c["head"]
    blk = lambda n, Tk: n * (2.0 * Tk * (4 * D * D + 2 * M * D) + 4.0 * Tk * Tk * D + 12.0 * D * D)
    embed = 2.0 * T * D * c["in_channels"] * pp + 2.0 * (c["freq_dim"] * D + D * D)
    final = 2.0 * T * D * pp * c["out_channels"] + 4.0 * D * D
    head = 2.0 * Tv * (D * H + H * H + H * bn + bn * P)
    E = c["encoder_depth"]
    teacher = embed + blk(E, T) + head
    student = embed + blk(E, Tv) + blk(c["depth"] - E, T) + final + head
    return teacher, student


def step_flops(c):
    """FLOPs per image of one SD-DiT step (benchmarks/throughput.c step_flops): total, backward."""
    teacher, student = flop_parts(c)
    return teacher + 3.0 * student, 2.0 * student


def student_forward_flops(c):
    """FLOPs per image of the student's forward (the part the teacher broadcast hides behind)."""
    return flop_parts(c)[1]


def allreduce_time(S, N, L):
    G = L["G"]
    if N <= 1:
        return 0.0
    if N <= G:
        return 2 * (N - 1) * L["a_nv"] + 2.0 * (N - 1) / N * S / L["busbw_nv"]
    n = N // G
    intra = (G - 1) * L["a_nv"] + (G - 1) / G * S / L["busbw_nv"]
    return 2 * intra + L["a_ib0"] + 2 * (n - 1) * L["a_ib"] + 2.0 * (n - 1) / n * (S / G) / L["busbw_ib"]


def bcast_time(S, N, L):
    G = L["G"]
    if N <= 1:
        return 0.0
    if N <= G:  # pipelined chain inside the node
        return (N - 1) * L["a_nv"] + S / L["busbw_nv"]
    n = N // G
    intra = (G - 1) * L["a_nv"] + (G - 1) / G * S / L["busbw_nv"]
    return 2 * intra + L["a_ib0"] + (n - 1) * L["a_ib"] + (S / G) / L["busbw_ib"]


def exposed(c, N, t_bwd, L, ar=allreduce_time, bytes_per=4):
    """(total all-reduce time, exposed time) of the bucketed gradient all-reduce."""
    depth, end, total = c["depth"], 0.0, 0.0
    for _, p, done in buckets(c):
        t = ar(p * bytes_per, N, L)
        ready = t_bwd * done / depth
        end = max(end, ready) + t
        total += t
    return total, max(0.0, end - t_bwd)


def predict(preset, N, batch, mfu, sync_every, L=LINKS, grad_bytes=4, teacher_overlap=True):
    c = cfg_of(preset)
    f, fb = step_flops(c)
    fxl, _ = step_flops(cfg_of("XL/2"))
    rate = fxl * H200["xl2_img_s_hw"] * mfu  # FLOP/s per GPU
    t_comp = batch * f / rate
    t_bwd = batch * fb / rate
    nparam = sum(p for _, p, _ in buckets(c))
    t_opt = nparam * H200["opt_bytes_per_param"] / (H200["hbm_Bps"] * H200["hbm_eff"])
    comm, exp = exposed(c, N, t_bwd, L, bytes_per=grad_bytes)
    tb_all = bcast_time(teacher_params(c) * 4, N, L) if sync_every > 0 else 0.0
    hidden = batch * student_forward_flops(c) / rate if teacher_overlap else 0.0
    tb = max(0.0, tb_all - hidden) / sync_every if sync_every > 0 else 0.0
    step = t_comp + t_opt + exp + tb
    return dict(preset=preset, gpus=N, batch=batch, step=step, comm=comm + tb_all / max(sync_every, 1),
                exp=exp + tb, eff=(t_comp + t_opt) / step, t_comp=t_comp, t_opt=t_opt, bcast=tb,
                bcast_all=tb_all)


# ---- the CPU case: alpha/beta fitted to the 2-rank all-reduce table of RESULTS.md ----
CPU_AR2 = [  # size bytes, time us (OMP_NUM_THREADS=1 mpirun -n 2 build/benchmarks/allreduce)
    (8, 0.57), (16, 0.57), (32, 0.74), (64, 0.82), (128, 0.57), (256, 1.43), (512, 1.04),
    (1024, 1.34), (2048, 3.30), (4096, 4.99), (8192, 10.28), (16384, 12.77), (32768, 17.82),
    (65536, 25.87), (131072, 84.73), (262144, 56.12), (524288, 128.09), (1048576, 197.46),
    (2097152, 410.22), (4194304, 699.44)]  # up to 4 MiB: the range the digits buckets use
# dp_breakdown.sh digits 400 steps (RESULTS.md): ranks -> compute, exposed, all-reduce total ms
CPU_MEASURED = {1: (78.3, 0.00, 0.00), 2: (85.4, 1.43, 28.95), 4: (73.7, 14.09, 43.74)}


def fit_cpu(n=2):
    import numpy as np
    s = np.array([r[0] for r in CPU_AR2], float)
    t = np.array([r[1] for r in CPU_AR2], float) * 1e-6
    x = 2.0 * (n - 1) / n * s
    w = 1.0 / t  # relative errors: every decade counts
    A = np.stack([np.ones_like(x), x], 1) * w[:, None]
    (alpha, beta), *_ = np.linalg.lstsq(A, t * w, rcond=None)
    return max(alpha, 0.0), beta  # s, s per byte (1/beta = busbw)


def cpu_check(out):
    alpha, beta = fit_cpu()
    ar = lambda S, N, L: 2 * (N - 1) * alpha + 2.0 * (N - 1) / N * S * beta if N > 1 else 0.0
    c = cfg_of("digits")
    f, fb = step_flops(c)
    print("# CPU check (digits, global batch 64, 2 ranks): ring alpha-beta fitted to the 2-rank "
          "all-reduce table: alpha %.2f us per step, busbw %.2f GB/s" % (alpha * 1e6, 1e-9 / beta),
          file=out)
    print("# ranks  model_comm_ms  meas_comm_ms  model_exposed_ms  meas_exposed_ms", file=out)
    for n in (2, 4):
        comp = CPU_MEASURED[n][0] * 1e-3
        comm, exp = exposed(c, n, comp * fb / f, None, ar=ar)
        print("# %5d %14.2f %13.2f %17.2f %16.2f" % (n, comm * 1e3, CPU_MEASURED[n][2],
                                                    exp * 1e3, CPU_MEASURED[n][1]), file=out)


def write_png(path, rows, presets, title):
    """Efficiency vs GPUs (log2 x axis), one line per preset; PIL only (no matplotlib here)."""
    from PIL import Image, ImageDraw
    W, H, l, r, t, b = 900, 560, 80, 150, 50, 70
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    gpus = sorted({x["gpus"] for x in rows})
    lo = min(0.5, math.floor(min(x["eff"] for x in rows) * 10) / 10)
    X = lambda g: l + (math.log2(g) - math.log2(gpus[0])) / max(1e-9, math.log2(gpus[-1] / gpus[0])) * (W - l - r)
    Y = lambda e: t + (1.0 - e) / (1.0 - lo) * (H - t - b)
    d.rectangle([l, t, W - r, H - b], outline="black")
    e = lo
    while e <= 1.0001:
        d.line([l, Y(e), W - r, Y(e)], fill=(225, 225, 225))
        d.text((l - 40, Y(e) - 6), "%.0f%%" % (e * 100), fill="black")
        e += 0.1
    for g in gpus:
        d.line([X(g), H - b, X(g), H - b + 5], fill="black")
        d.text((X(g) - 10, H - b + 10), str(g), fill="black")
    d.line([l, Y(0.9), W - r, Y(0.9)], fill=(200, 0, 0))
    d.text((W - r + 5, Y(0.9) - 6), "target 90%", fill=(200, 0, 0))
    d.text((l, 15), title, fill="black")
    d.text(((l + W - r) // 2 - 60, H - 30), "GPUs (8 per node)", fill="black")
    d.text((10, t - 20), "weak-scaling efficiency", fill="black")
    colors = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (148, 103, 189), (140, 86, 75)]
    for i, p in enumerate(presets):
        pts = [(X(x["gpus"]), Y(x["eff"])) for x in rows if x["preset"] == p]
        col = colors[i % len(colors)]
        d.line(pts, fill=col, width=3)
        for px, py in pts:
            d.ellipse([px - 3, py - 3, px + 3, py + 3], fill=col)
        ly = t + 80 + 20 * i
        d.line([W - r + 10, ly, W - r + 30, ly], fill=col, width=3)
        d.text((W - r + 34, ly - 6), p, fill="black")
    img.save(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default="S/2,B/2,L/2,XL/2")
    ap.add_argument("--gpus", default="8,16,32,64,128,256,512,1024")
    ap.add_argument("--batch", type=int, default=32, help="images per GPU (weak scaling)")
    ap.add_argument("--mfu", type=float, default=0.5, help="fraction of the 1100 img/s XL/2 hw limit")
    ap.add_argument("--teacher-sync-every", type=int, default=1,
                    help="dist.teacher_sync_every (0 here: no broadcast at all; the trainer reads <= 0 as 1)")
    ap.add_argument("--grad-dtype", choices=("fp32", "bf16"), default="fp32",
                    help="dist.grad_dtype: bytes per gradient in the all-reduce")
    ap.add_argument("--no-teacher-overlap", action="store_true",
                    help="the teacher broadcast fully exposed (no overlap with the student forward)")
    ap.add_argument("--png", default="")
    ap.add_argument("--cpu-check", action="store_true")
    ap.add_argument("--quiet-assumptions", action="store_true")
    a = ap.parse_args(argv)
    presets = [p for p in a.presets.split(",") if p]
    for p in presets:
        if p not in PRESETS:
            ap.error("unknown preset %s (known: %s)" % (p, ", ".join(PRESETS)))
    gpus = [int(g) for g in a.gpus.split(",") if g]
    kw = dict(grad_bytes=2 if a.grad_dtype == "bf16" else 4, teacher_overlap=not a.no_teacher_overlap)
    if any(g < 1 or (g > LINKS["G"] and g % LINKS["G"]) for g in gpus):
        ap.error("--gpus: above %d GPUs, whole nodes only" % LINKS["G"])
    if not a.quiet_assumptions:
        L = LINKS
        print("# assumptions: %d GPUs/node; NVLink 4 busbw %.0f GB/s (450 GB/s/dir/GPU), %.1f us/ring step; "
              "IB NDR busbw %.0f GB/s per GPU (400 Gb/s, 1 NIC/GPU), latency %.0f us + %.0f us per "
              "inter-node ring step; hierarchical all-reduce" % (
                  L["G"], L["busbw_nv"] / 1e9, L["a_nv"] * 1e6, L["busbw_ib"] / 1e9,
                  L["a_ib0"] * 1e6, L["a_ib"] * 1e6))
        print("# compute: H200 %.0f SD-DiT XL/2 img/s at the hw limit, here x%.2f (MFU); %s gradients "
              "(%d B/param), buckets per block + head + final + embedders; optimizer %.0f B/param at "
              "%.0f%% of %.1f TB/s; teacher broadcast every %d step(s), %s" % (
                  H200["xl2_img_s_hw"], a.mfu, a.grad_dtype, kw["grad_bytes"],
                  H200["opt_bytes_per_param"], H200["hbm_eff"] * 100, H200["hbm_Bps"] / 1e12,
                  a.teacher_sync_every, "overlapped with the student forward"
                  if kw["teacher_overlap"] else "fully exposed"))
    print("%-6s %6s %13s %9s %9s %10s %10s" % ("preset", "gpus", "per_gpu_batch", "step_ms",
                                                 "comm_ms", "exposed_ms", "efficiency"))
    rows = []
    for p in presets:
        for g in gpus:
            r = predict(p, g, a.batch, a.mfu, a.teacher_sync_every, **kw)
            rows.append(r)
            print("%-6s %6d %13d %9.2f %9.2f %10.2f %10.3f" % (p, g, a.batch, r["step"] * 1e3,
                                                             r["comm"] * 1e3, r["exp"] * 1e3, r["eff"]))
    if "XL/2" in presets and 256 in gpus:
        r = [x for x in rows if x["preset"] == "XL/2" and x["gpus"] == 256][0]
        print("# target: XL/2 weak-scaling efficiency >= 0.90 at 256 GPUs (IB NDR): modelled %.3f -> %s "
              "(gradient all-reduce exposed %.2f ms, teacher broadcast %.2f ms of which %.2f ms exposed, "
              "of a %.2f ms step)" % (
                  r["eff"], "met" if r["eff"] >= 0.9 else "NOT met", (r["exp"] - r["bcast"]) * 1e3,
                  r["bcast_all"] * 1e3, r["bcast"] * 1e3, r["step"] * 1e3))
        print("#   other cases (same links):")
        other = 2 if kw["grad_bytes"] == 4 else 4
        for mfu, se, gb, ov in ((a.mfu, 100, kw["grad_bytes"], kw["teacher_overlap"]),
                                (a.mfu, a.teacher_sync_every, other, kw["teacher_overlap"]),
                                (a.mfu, a.teacher_sync_every, kw["grad_bytes"], not kw["teacher_overlap"]),
                                (1.0, a.teacher_sync_every, kw["grad_bytes"], kw["teacher_overlap"]),
                                (1.0, 100, kw["grad_bytes"], kw["teacher_overlap"])):
            q = predict("XL/2", 256, a.batch, mfu, se, grad_bytes=gb, teacher_overlap=ov)
            print("#   variant: MFU %.0f%%, %s gradients, teacher broadcast %s%s: efficiency %.3f "
                  "(step %.2f ms, exposed %.2f ms)" % (
                      mfu * 100, "bf16" if gb == 2 else "fp32",
                      "every %d step(s)" % se if se > 0 else "off",
                      "" if se <= 0 else ", overlapped" if ov else ", not overlapped",
                      q["eff"], q["step"] * 1e3, q["exp"] * 1e3))
    if a.cpu_check:
        cpu_check(sys.stdout)
    if a.png:
        if "XL/2" in presets and a.teacher_sync_every != 100:  # the broadcast amortized
            lab = "XL/2 bcast/100"
            rows = rows + [dict(predict("XL/2", g, a.batch, a.mfu, 100, **kw), preset=lab) for g in gpus]
            presets = presets + [lab]
        write_png(a.png, rows, presets, "SD-DiT weak scaling, H200 NVLink + IB NDR, %d img/GPU, "
                  "MFU %.0f%%, teacher bcast every %d" % (a.batch, a.mfu * 100, a.teacher_sync_every))
        print("# wrote %s" % a.png)


if __name__ == "__main__":
    main()
