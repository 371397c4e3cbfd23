#!/usr/bin/python3
"""Roofline model of one SD-DiT training step on one GPU, op by op (benchmarks/RESULTS.md,
"Step model"): for every op the CUDA backend runs, the FLOPs it executes and the fewest bytes
it moves through device memory with the storage types it uses (bf16 saved activations and
weight copies, fp32 residual stream, fp32 gradients rounded to bf16 inside each backward
matmul), and the time each takes at a rate ceiling:

  GEMMs (cuBLASLt, bf16 inputs; the best of several heuristic candidates, timed once per
      shape): flops / gemm_tflops; their activation traffic is hidden
  the head's prototype-logit GEMM, fp32 inputs on purpose (ops.h): flops / fp32_gemm_tflops
  attention: cuDNN's fused SDPA (kernels/cuda/cudnn_sdpa.c): forward 4 T^2 D at attn_tflops,
      backward 10 T^2 D (S, dV, dP, dQ, dK: one recomputation of the scores) at
      attn_bwd_tflops; --attention handwritten: the tensor-core kernels of attention_tc.cu
      (backward 14 T^2 D: the dK/dV and dQ kernels each recompute the scores) at
      --handwritten-attn-tflops; --attention tiles: the fp32-FMA kernels at --attn-fma-tflops
  everything else (layer norms, gated residuals, conversions of fp32 gradients to bf16 with the
  bias column sums in the same pass, attention input/output conversions, losses, the
  optimizer): bytes / hbm_tbs

and so the step time, img/s and MFU. MFU counts model FLOPs only: the analytic FLOPs per image
of benchmarks/throughput.c and tests/gpu/bench_sddit_cuda.c (3 x the student's forward + the
teacher's forward), not the recomputed attention scores, over the measured bf16 GEMM peak. The
default ceilings are the ones measured on an H200 of this workplace (a bf16 8192^3 matrix
product 769-798 TFLOP/s; a device-to-device copy 4.3 TB/s counting both directions) scaled by
the fraction each kernel class is expected to reach (RESULTS.md justifies each); they are leads
until tests/gpu/run.sh measures them. The purpose is the ranking: which op class costs what,
and what each planned change would buy ("predict, change, measure").

The step (src/objective/sddit.c): student embed + encoder on the Tv visible tokens + decoder on all T
tokens + final layer + head on Tv rows, forward and backward; teacher (EMA) embed + encoder on
T tokens + head, forward only; EDM and discriminative losses; AdamW with the teacher and
generation EMAs and the bf16 weight copies written in the same pass (one pass per region).
Weights are not converted per matmul call: the matmuls read the bf16 copies the optimizer
wrote (--per-call-weight-conversion shows the cost of the old way).

Usage: step_model.py [--preset XL/2] [--batch 256] [--gemm-tflops 650]
                     [--fp32-gemm-tflops 50] [--attn-tflops 350] [--attn-bwd-tflops 250]
                     [--attention cudnn|handwritten|tiles] [--handwritten-attn-tflops 90]
                     [--attn-fma-tflops 35] [--hbm-tbs 3.6] [--peak-tflops 790]
                     [--per-call-weight-conversion] [--check-flops]
"""
import argparse
import sys

PRESETS = {  # depth, hidden, heads, encoder_depth (src/model/dit_config.c, launch/configs/*.ini)
    "S/2": (12, 384, 6, 10), "B/2": (12, 768, 12, 10), "L/2": (24, 1024, 16, 20),
    "XL/2": (28, 1152, 16, 24),
}
BASE = dict(T=256, in_ch=4, out_ch=4, patch=2, freq=256, mlp=4, head=(2048, 256, 8192),
            mask=0.2)
ACT = 2      # bytes of a stored activation (bf16)
F32 = 4


class Tally:
    """Per op class: FLOPs and bytes per image, and the rate class that bounds them."""

    def __init__(self):
        self.rows = {}  # name -> [kind, flops, bytes]

    def add(self, name, kind, flops=0.0, nbytes=0.0):
        r = self.rows.setdefault(name, [kind, 0.0, 0.0])
        r[1] += flops
        r[2] += nbytes


def gemm(t, name, n, k, m, fwd=True, bwd=False, kind="gemm", dout_bf16=False):
    """A linear layer on n rows, k -> m: forward 2nkm; backward dinp and dw, 2nkm each.
    dout_bf16: its output gradient is stored in bf16 (the MLP's, written by fc2's backward)."""
    if fwd:
        t.add("gemm " + name, kind, 2.0 * n * k * m)
    if bwd:
        t.add("gemm " + name, kind, 4.0 * n * k * m)
        if kind == "gemm" and dout_bf16:
            # the GEMMs read the bf16 dout as it is; the bias column sums read it once more
            t.add("dbias column sums", "mem", 0.0, n * m * ACT)
        elif kind == "gemm":
            # dout (n, m) fp32 is rounded to bf16 for both GEMMs (read 4, write 2); the bias
            # column sums run in the same pass (matmul.cu colsum_partial_kernel); the fp32
            # prototype GEMM has no bias and no conversion
            t.add("convert dout to bf16", "mem", 0.0, n * m * (F32 + ACT))


def blocks(t, n, D, NH, count, train, mlp, attention):
    """count DiT blocks on n tokens (per image); train: with their backward."""
    M = mlp * D
    for _ in range(count):
        # forward
        # LN + modulate (norm_act.cu, one pass): read x fp32, write out bf16; two per block
        t.add("layer norm + modulate", "mem", 0.0, 2 * n * D * (F32 + ACT))
        gemm(t, "qkv", n, D, 3 * D, bwd=train)
        t.add("attention", "attn", 4.0 * n * n * D)
        # qkv bf16 in, out bf16 (and lse, n fp32 per head: negligible) out
        t.add("attention io", "mem", 0.0, n * 3 * D * ACT + n * D * ACT)
        gemm(t, "proj", n, D, D, bwd=train)
        # x + gate * y: read x fp32 and y bf16, write fp32; two per block
        t.add("gated residual", "mem", 0.0, 2 * n * D * (F32 + ACT + F32))
        gemm(t, "fc1 (+GELU epilogue)", n, D, M, bwd=train, dout_bf16=True)
        gemm(t, "fc2", n, M, D, bwd=train)
        if not train:
            continue
        # backward
        t.add("gated residual", "mem", 0.0, 2 * n * D * (F32 + ACT + F32))  # dres, y -> dy
        # (fc2's backward applies gelu'(pre) in cuBLASLt's DGELU epilogue and writes the MLP's
        # gradient in bf16: its aux, the bf16 pre-activation, has the output's type)
        # LN backward, one fused kernel: read dout and x fp32, dx += (read + write fp32)
        t.add("layer norm + modulate", "mem", 0.0, 2 * n * D * (F32 + F32 + 2 * F32))
        if attention == "cudnn":
            # one recomputation of the scores: S, dV, dP, dQ, dK
            t.add("attention backward", "attn_bwd", 10.0 * n * n * D)
            # dout fp32 -> bf16 (read 4, write 2); cuDNN reads q, k, v, o, dO (bf16) and the
            # stats, accumulates dQ in an fp32 workspace (about one read + write), writes dq,
            # dk, dv in bf16; then dqkv bf16 -> fp32 (read 2, write 4 per element)
            t.add("attention io", "mem", 0.0,
                  n * D * (F32 + ACT) + n * D * (3 * ACT + ACT + ACT) + n * D * 2 * F32 +
                  n * 3 * D * ACT + n * 3 * D * (ACT + F32))
        else:
            # flash backward: St, dPt, dV, dK (dK/dV kernel) + S, dP, dQ (dQ kernel): 14 n^2 D
            t.add("attention backward", "attn_bwd", 14.0 * n * n * D)
            # Dvec: dout, out; both kernels read qkv and dout; dqkv written
            t.add("attention io", "mem", 0.0,
                  n * D * (F32 + ACT) + 2 * n * (3 * D * ACT + D * F32) + n * 3 * D * F32)


def step(preset, batch, attention="cudnn", per_call_weights=False):
    depth, D, NH, E = PRESETS[preset]
    T, mask, (H, bn, P) = BASE["T"], BASE["mask"], BASE["head"]
    Tv = int(round(T * (1 - mask)))
    pp = BASE["patch"] ** 2
    t = Tally()
    # student (forward + backward), teacher (forward only)
    for who, train in (("student", True), ("teacher", False)):
        gemm(t, "patch embed", T, BASE["in_ch"] * pp, D, bwd=train)
        t.add("embed + select tokens", "mem", 0.0, T * D * F32 * 3)
        blocks(t, Tv if train else T, D, NH, E, train, BASE["mlp"], attention)
        rows = Tv
        gemm(t, "head", rows, D, H, bwd=train)
        gemm(t, "head", rows, H, H, bwd=train)
        gemm(t, "head", rows, H, bn, bwd=train)
        gemm(t, "head prototypes (fp32)", rows, bn, P, bwd=train, kind="gemm32")
        t.add("head norms + DINO loss", "mem", 0.0, rows * P * F32 * (3 if train else 2))
    blocks(t, T, D, NH, depth - E, True, BASE["mlp"], attention)  # decoder on all tokens
    gemm(t, "final", T, D, pp * BASE["out_ch"], bwd=True)
    t.add("EDM loss + merge tokens", "mem", 0.0, T * D * F32 * 4)
    per_block_params = 12 * D * D + 6 * D * D  # attention, MLP, adaLN modulation
    params = depth * per_block_params + D * H + H * H + H * bn + bn * P
    teacher = E * per_block_params + D * H + H * H + H * bn + bn * P  # encoder + head
    if per_call_weights:
        # the old way: weights rounded to bf16 for every matmul call (forward, backward dinp;
        # teacher forward): read 4, write 2 bytes per parameter and call
        calls = 2 * depth + E
        t.add("convert weights to bf16", "mem", 0.0,
              calls * per_block_params * (F32 + ACT) / batch)
    # AdamW per parameter: p, m, v read + written, g read (28 bytes) and the bf16 copy written
    # (2); the teacher EMA read + written and its bf16 copy (10) on the encoder and head; the
    # generation EMA read + written (8) on the DiT (rank 0, which the other ranks wait for)
    head = D * H + H * H + H * bn + bn * P
    opt = params * (7 * F32 + ACT) + teacher * (2 * F32 + ACT) + (params - head) * 2 * F32
    if per_call_weights:
        opt -= params * ACT + teacher * ACT
    t.add("optimizer + EMAs", "mem", 0.0, opt / batch)
    return t, params, Tv


def analytic_flops(preset):
    """FLOPs per image of benchmarks/throughput.c's step_flops (3 x student fwd + teacher)."""
    depth, D, NH, E = PRESETS[preset]
    T, mask, (H, bn, P) = BASE["T"], BASE["mask"], BASE["head"]
    Tv = int(round(T * (1 - mask)))
    pp, M = BASE["patch"] ** 2, BASE["mlp"] * D

    def blk(n, count):
        return count * (2.0 * n * (3 * D * D + D * D + 2 * M * D) + 4.0 * n * n * D +
                        2.0 * 6 * D * D)
    embed = 2.0 * T * D * BASE["in_ch"] * pp + 2.0 * (BASE["freq"] * D + D * D)
    final = 2.0 * T * D * pp * BASE["out_ch"] + 2.0 * 2 * D * D
    head = 2.0 * Tv * (D * H + H * H + H * bn + bn * P)
    teacher = embed + blk(T, E) + head
    student = embed + blk(Tv, E) + blk(T, depth - E) + final + head
    return teacher + 3.0 * student


def times(t, a, attention=None, drop=(), proto_bf16=False):
    attention = attention or a.attention
    fwd = dict(cudnn=a.attn_tflops, handwritten=a.handwritten_attn_tflops,
               tiles=a.attn_fma_tflops)[attention]
    bwd = dict(cudnn=a.attn_bwd_tflops, handwritten=a.handwritten_attn_tflops,
               tiles=a.attn_fma_tflops)[attention]
    rate = dict(gemm=a.gemm_tflops * 1e12, gemm32=a.fp32_gemm_tflops * 1e12,
                attn=fwd * 1e12, attn_bwd=bwd * 1e12, mem=a.hbm_tbs * 1e12)
    if proto_bf16:
        rate["gemm32"] = rate["gemm"]
    out = {}
    for name, (kind, flops, nbytes) in t.rows.items():
        if name in drop:
            continue
        out[name] = nbytes / rate["mem"] if kind == "mem" else flops / rate[kind]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="XL/2", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=256, help="images per GPU per step")
    ap.add_argument("--gemm-tflops", type=float, default=650.0,
                    help="achieved bf16 GEMM rate on the DiT shapes (lead: 82%% of the "
                         "measured 790)")
    ap.add_argument("--fp32-gemm-tflops", type=float, default=50.0,
                    help="fp32 GEMM without TF32 (FMA units, 67 TFLOP/s peak; lead)")
    ap.add_argument("--attention", default="cudnn", choices=("cudnn", "handwritten", "tiles"),
                    help="the attention kernels the step runs (cudnn: the default for bf16)")
    ap.add_argument("--attn-tflops", type=float, default=350.0,
                    help="cuDNN fused SDPA forward at T 256, head dim 72 (lead)")
    ap.add_argument("--attn-bwd-tflops", type=float, default=250.0,
                    help="cuDNN fused SDPA backward at T 256, head dim 72 (lead)")
    ap.add_argument("--handwritten-attn-tflops", type=float, default=90.0,
                    help="the hand-written wmma kernels (attention_tc.cu), forward and "
                         "backward (lead: a static review's 50-90)")
    ap.add_argument("--attn-fma-tflops", type=float, default=35.0,
                    help="fused attention on fp32 FMAs (about half of 67 TFLOP/s, lead)")
    ap.add_argument("--hbm-tbs", type=float, default=3.6,
                    help="achieved HBM bandwidth of the vectorised memory-bound kernels, TB/s "
                         "(84%% of the measured 4.3)")
    ap.add_argument("--peak-tflops", type=float, default=790.0,
                    help="the measured bf16 GEMM peak MFU is reported against")
    ap.add_argument("--per-call-weight-conversion", action="store_true",
                    help="weights rounded to bf16 in every matmul call (before the bf16 copies)")
    ap.add_argument("--check-flops", action="store_true",
                    help="check that the GEMM and attention FLOPs add up to the analytic count")
    a = ap.parse_args()

    t, params, Tv = step(a.preset, a.batch, a.attention, a.per_call_weight_conversion)
    flops_img = analytic_flops(a.preset)
    tm = times(t, a)
    total = sum(tm.values())
    print("# %s, batch %d per GPU, T 256, Tv %d; %.1f GFLOP per image (analytic, model FLOPs), "
          "%.0fM params" % (a.preset, a.batch, Tv, flops_img * 1e-9, params * 1e-6))
    fwd = dict(cudnn=a.attn_tflops, handwritten=a.handwritten_attn_tflops,
               tiles=a.attn_fma_tflops)[a.attention]
    bwd = dict(cudnn=a.attn_bwd_tflops, handwritten=a.handwritten_attn_tflops,
               tiles=a.attn_fma_tflops)[a.attention]
    print("# ceilings: GEMM %.0f TFLOP/s, attention (%s) %.0f fwd / %.0f bwd, memory %.1f "
          "TB/s; MFU against %.0f TFLOP/s"
          % (a.gemm_tflops, a.attention, fwd, bwd, a.hbm_tbs, a.peak_tflops))
    print("%-28s %-8s %12s %10s %10s %6s" % ("op", "bound", "GFLOP/img", "MB/img", "us/img",
                                               "share"))
    for name, (kind, flops, nbytes) in sorted(t.rows.items(), key=lambda kv: -tm[kv[0]]):
        print("%-28s %-8s %12.2f %10.2f %10.1f %5.1f%%" % (
            name, kind, flops * 1e-9, nbytes * 1e-6, tm[name] * 1e6, 100 * tm[name] / total))

    def summary(label, seconds):
        ips = 1.0 / seconds
        mfu = flops_img * ips / (a.peak_tflops * 1e12)
        print("%-52s %8.0f img/s  MFU %5.1f%%" % (label, ips, 100 * mfu))

    print()
    summary("as built (%s attention)" % a.attention, total)
    for other in ("cudnn", "handwritten", "tiles"):
        if other != a.attention:
            to, _, _ = step(a.preset, a.batch, other, a.per_call_weight_conversion)
            summary("%s attention" % other, sum(times(to, a, attention=other).values()))
    summary("every block gradient in bf16 (no conversions)",
            sum(times(t, a, drop=("convert dout to bf16",)).values()))
    fusable = ("layer norm + modulate", "gated residual", "convert dout to bf16",
               "convert weights to bf16", "dbias column sums")
    summary("norms, residuals, conversions fused into GEMMs",
            sum(times(t, a, drop=fusable).values()))
    summary("prototype logits in bf16 like the other GEMMs",
            sum(times(t, a, proto_bf16=True).values()))
    summary("GEMMs and attention only", sum(v for k, v in tm.items() if t.rows[k][0] != "mem"))
    print("# the hardware limit: %.0f img/s (every model FLOP at %.0f TFLOP/s)"
          % (a.peak_tflops * 1e12 / flops_img, a.peak_tflops))

    if a.check_flops:
        model = sum(f for k, f, _ in t.rows.values() if k != "mem")
        # the analytic count is 3 x forward for the student; the model counts the attention
        # backward as executed (2.5 x its forward with cuDNN, 3.5 x with the hand-written
        # kernels: recomputed scores), and leaves out the per-image adaLN and t-MLP matmuls
        # and the head's fp32 / bf16 split: within 5%
        rel = abs(model - flops_img) / flops_img
        print("# FLOP check: executed %.1f GFLOP/img, analytic %.1f, difference %.2f%% "
              "(limit 5%%)" % (model * 1e-9, flops_img * 1e-9, 100 * rel))
        if rel > 0.05:
            sys.exit(1)


if __name__ == "__main__":
    main()
