#!/usr/bin/python3
"""Does SD-DiT help? SD-DiT against plain DiT (EDM) and ablations on a real dataset.

  experiments/study.py [--dataset digits|mnist] [--variants a,b] [--seeds 0,1,2] [--steps N]
                       [--every K] [--per-class P] [--guidance G] [--fd-target F] [--out DIR]
                       [--threads T] [--sddit PATH] [--smoke]

For every variant x seed it trains `sddit train --config launch/configs/<dataset>.ini` with
the study's protocol (DATASETS: a constant learning rate, no previews) and the variant's
overrides (checkpoints every K steps, all kept), then samples every checkpoint (`sddit
sample --per-class P --guidance G --seed 0`) and evaluates it with data-prep/eval_digits.py
(class accuracy of three classifiers, Frechet distance in classifier features and in
pixels). The datasets: digits (8x8, 16 tokens, data-prep/digits.py) and mnist (28x28 at
patch 4, 49 tokens, data-prep/mnist.py). Writes into DIR (default runs/study-<dataset>):
  runs/<variant>-s<seed>/      the training run, its samples and evaluations
  runs/<variant>-s<seed>/result.json   that run's rows (resumable: a run with one is skipped)
  step_costs.json, cost/       each variant's training cost per step, measured back to back
  results.json                 every run x checkpoint: step, wall_s, accuracy (the MLP's and
                               the lowest of the three), fd, fd_pixels; the step costs
  curves.png                   FD and accuracy vs steps and vs training time, mean over seeds,
                               error bars +- one standard deviation over seeds
  results.md                   command, machine, date, tables: final checkpoint (equal steps),
                               equal training time, every checkpoint, steps to --fd-target

Training time = steps x the variant's cost per step (measure_costs): one measurement per
variant in the same sitting, so that reused runs and a busy machine do not skew the
comparison. wall_s (the checkpoint file's time minus the start of its run) stays in the rows.
"""
import argparse
import datetime
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = "/usr/bin/python3"

# dataset -> (config, data file, data-prep script, default steps, default every, protocol).
# The protocol goes on top of the dataset's config, whatever the main job's schedule: a
# constant learning rate (convergence curves with comparable checkpoints), no previews.
# Digits keep the 3e-4 of the committed study (its rows stay valid); MNIST, whose steps cost
# three times as much, takes the schedule that made the digits main job (1e-3 after a 100-step
# warm-up, cosine to 0; experiments/RESULTS-digits.md): at a constant 1e-3 its samples were
# still unrecognisable (10% accuracy, chance) after 1000 steps. Under a cosine the checkpoints
# before the last are not converged states, so comparisons use the final ones, and equal
# training time comes from a baseline run over as many steps as SD-DiT's time buys
# (--equal-time), not from interpolating curves.
DATASETS = {
    "digits": ("launch/configs/digits.ini", "data/digits.h5", "data-prep/digits.py", 1500, 250,
               ["--optim.lr=3e-4", "--optim.lr_schedule=constant", "--optim.warmup_steps=0",
                "--log.preview_every=0"]),
    "mnist": ("launch/configs/mnist.ini", "data/mnist.h5", "data-prep/mnist.py", 1500, 500,
              ["--optim.lr=1e-3", "--optim.lr_schedule=cosine", "--optim.warmup_steps=100",
               "--optim.lr_min=0", "--log.preview_every=0"]),
}

# name -> (description, overrides). Encoder + decoder depth sum to 6 (model.depth).
# Every variant spells out the settings it is about, so that it does not change meaning when
# digits.ini's defaults change. SD-DiT as in the paper: mask 0.2, teacher sigma fixed at the
# minimum, lambda_dis 1, encoder 4 + decoder 2 of the 6 blocks.
SDDIT = ["--sddit.mask_ratio=0.2", "--sddit.teacher_sigma_mode=fixed", "--sddit.lambda_dis=1",
         "--sddit.gen_loss_tokens=all", "--model.encoder_depth=4", "--model.decoder_depth=2"]


def sddit_with(*changes):
    keys = [c.split("=")[0] for c in changes]
    return [o for o in SDDIT if o.split("=")[0] not in keys] + list(changes)


VARIANTS = {
    "baseline": ("plain DiT (EDM): no discrimination, no mask",
                 ["--sddit.lambda_dis=0", "--sddit.mask_ratio=0"]),
    "sddit": ("SD-DiT as in the paper (mask 0.2, fixed teacher sigma, lambda 1, dec 2)", SDDIT),
    "mask0": ("SD-DiT, mask_ratio 0", sddit_with("--sddit.mask_ratio=0")),
    "mask0.5": ("SD-DiT, mask_ratio 0.5", sddit_with("--sddit.mask_ratio=0.5")),
    "sigma_logu": ("SD-DiT, teacher sigma log_uniform",
                   sddit_with("--sddit.teacher_sigma_mode=log_uniform")),
    "lambda0.1": ("SD-DiT, lambda_dis 0.1", sddit_with("--sddit.lambda_dis=0.1")),
    "dec1": ("SD-DiT, encoder 5 + decoder 1",
             sddit_with("--model.encoder_depth=5", "--model.decoder_depth=1")),
    "genvis": ("SD-DiT, L_gen on the visible tokens only",
               sddit_with("--sddit.gen_loss_tokens=visible")),
}
# Aliases so that every variant in the brief can be named; they share the run of the
# identical configuration (digits.ini defaults: mask 0.2, fixed sigma, lambda 1, decoder 2).
ALIASES = {"mask0.2": "sddit", "sigma_fixed": "sddit", "lambda1": "sddit", "dec2": "sddit",
           "genall": "sddit"}
DEFAULT_VARIANTS = ["baseline", "sddit", "mask0", "mask0.5", "sigma_logu", "lambda0.1", "dec1",
                    "genvis"]

# Measured on 2 cores, one process with 2 threads: SD-DiT training ~430 img/s at batch 64 (the
# plain-DiT baseline is faster: no teacher or head), sampling (Heun 40 steps, guidance 1)
# ~30 samples/s; eval_digits.py ~4 s per checkpoint.
TRAIN_IMG_S = 430.0
SAMPLE_S = 30.0
EVAL_S = 4.0
BATCH = 64


def log(msg):
    print("[study %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def estimate(n_runs, steps, every, per_class):
    n_ckpt = len(range(every, steps + 1, every)) + (0 if steps % every == 0 else 1)
    train = steps * BATCH / TRAIN_IMG_S
    sample = n_ckpt * (10 * per_class / SAMPLE_S + EVAL_S)
    return n_runs * (train + sample + 2.0), train, sample, n_ckpt


def run(cmd, logf, env):
    with open(logf, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    if r.returncode != 0:
        tail = open(logf).read()[-2000:]
        sys.exit("study: command failed (%d): %s\n--- %s (tail)\n%s" % (
            r.returncode, " ".join(cmd), logf, tail))


def do_run(a, variant, seed, sddit, data, env, config, protocol):
    steps = a.variant_steps.get(variant, a.steps)
    name = "%s-s%d" % (variant, seed)
    rdir = os.path.join(a.out, "runs", name)
    res = os.path.join(rdir, "result.json")
    if os.path.isfile(res):
        log("%s: result exists, skipped" % name)
        with open(res) as f:
            return json.load(f)
    if os.path.isdir(rdir):
        shutil.rmtree(rdir)  # an unfinished run: start it over
    os.makedirs(rdir)
    logf = os.path.join(rdir, "log.txt")
    ckdir = os.path.join(rdir, "checkpoints")
    cmd = [sddit, "train", "--config", os.path.join(ROOT, config)] + protocol + [
           "--resume", "none", "--data.path=" + data, "--train.out_dir=" + rdir,
           "--train.steps=%d" % steps, "--train.seed=%d" % seed,
           "--train.threads=%d" % a.threads, "--train.log_every=%d" % max(1, min(100, a.every)),
           "--ckpt.every=%d" % a.every, "--ckpt.keep=0", "--ckpt.dir=" + ckdir,
           "--optim.ema_decay=%g" % a.ema_decay]
    cmd += ["--" + kv for kv in a.set]
    cmd += VARIANTS[variant][1]
    log("%s: training %d steps" % (name, steps))
    t0 = time.time()
    run(cmd, logf, env)
    ttrain = time.time() - t0
    ckpts = []
    for fn in os.listdir(ckdir):
        if fn.startswith("ckpt-") and fn.endswith(".h5"):
            ckpts.append((int(fn[5:-3]), os.path.join(ckdir, fn)))
    ckpts.sort()
    log("%s: trained in %.0f s, %d checkpoints" % (name, ttrain, len(ckpts)))
    rows = []
    for step, ck in ckpts:
        sfile = os.path.join(rdir, "samples-%d.h5" % step)
        edir = os.path.join(rdir, "eval-%d" % step)
        run([sddit, "sample", "--checkpoint", ck, "--per-class", str(a.per_class),
             "--guidance", str(a.guidance), "--seed", "0", "--out", sfile], logf, env)
        run([PY, os.path.join(ROOT, "data-prep/eval_digits.py"), "--real", data,
             "--samples", sfile, "--out", edir], logf, env)
        with open(os.path.join(edir, "metrics.json")) as f:
            m = json.load(f)
        row = {"variant": variant, "seed": seed, "step": step,
               "wall_s": round(os.path.getmtime(ck) - t0, 3),
               "accuracy": float(m["accuracy"]), "fd": float(m["fd"]),
               "accuracy_min": float(m["goal"]["accuracy_min"]),
               "fd_pixels": float(m["fd_pixels"]),
               "fd_floor": float(m["fd_reference_at_n"])}
        rows.append(row)
        log("%s: step %d  wall %.0f s  accuracy %.3f  fd %.3f" % (
            name, step, row["wall_s"], row["accuracy"], row["fd"]))
    with open(res + ".tmp", "w") as f:
        json.dump(rows, f, indent=1)
    os.replace(res + ".tmp", res)
    return rows


def reuse_rows(a, variants, seeds_of):
    """Writes result.json for the runs that a.reuse (an earlier results.json) holds, when its
    settings match this study's; the runs are then skipped like finished ones."""
    with open(a.reuse) as f:
        old = json.load(f)
    same = {"steps": a.steps, "every": a.every, "per_class": a.per_class,
            "guidance": a.guidance, "ema_decay": a.ema_decay, "set": a.set}
    diff = [k for k, v in same.items() if old.get(k) != v]
    if old.get("dataset", "digits") != a.dataset:
        diff.append("dataset")
    if diff:
        sys.exit("study: --reuse %s: its %s differ from this study's; nothing reused" % (
            a.reuse, ", ".join("%s (%r, here %r)" % (k, old.get(k), same.get(k, a.dataset))
                               for k in diff)))
    n = 0
    for v in variants:
        for sd in seeds_of(v):
            rows = [r for r in old["rows"] if r["variant"] == v and r["seed"] == sd]
            rdir = os.path.join(a.out, "runs", "%s-s%d" % (v, sd))
            res = os.path.join(rdir, "result.json")
            if not rows or os.path.isfile(res):
                continue
            os.makedirs(rdir, exist_ok=True)
            for r in rows:
                r["reused_from"] = os.path.relpath(os.path.abspath(a.reuse), ROOT)
            with open(res, "w") as f:
                json.dump(rows, f, indent=1)
            n += 1
    log("--reuse: %d runs taken from %s" % (n, a.reuse))


def measure_costs(a, variants, sddit, data, env, config, protocol):
    """variant -> seconds per training step, measured in this sitting one variant after the
    other (--cost-steps steps each; the second half's ms_step from metrics.jsonl, so start-up
    and the first steps are left out). Cached in step_costs.json for the same settings. The
    wall-time axes and the equal-wall-time table use steps x this cost: checkpoint file times
    would mix sittings (reused runs) and whatever else shared the machine."""
    path = os.path.join(a.out, "step_costs.json")
    key = {"threads": a.threads, "cost_steps": a.cost_steps, "set": a.set, "protocol": protocol}
    costs = {}
    if os.path.isfile(path):
        with open(path) as f:
            old = json.load(f)
        if old.get("key") == key:
            costs = old["costs"]
    half = max(1, a.cost_steps // 2)
    for v in variants:
        if v in costs:
            continue
        rdir = os.path.join(a.out, "cost", v)
        if os.path.isdir(rdir):
            shutil.rmtree(rdir)
        os.makedirs(rdir)
        cmd = [sddit, "train", "--config", os.path.join(ROOT, config)] + protocol + [
            "--resume", "none", "--data.path=" + data, "--train.out_dir=" + rdir,
            "--train.steps=%d" % (2 * half), "--train.seed=0", "--train.threads=%d" % a.threads,
            "--train.log_every=%d" % half, "--ckpt.every=0", "--ckpt.keep=1"]
        cmd += ["--" + kv for kv in a.set] + VARIANTS[v][1]
        log("%s: measuring the cost of a step (%d steps)" % (v, 2 * half))
        run(cmd, os.path.join(rdir, "log.txt"), env)
        with open(os.path.join(rdir, "metrics.jsonl")) as f:
            lines = [json.loads(x) for x in f if x.strip()]
        costs[v] = lines[-1]["ms_step"] / 1000.0
        log("%s: %.1f ms per step" % (v, 1000 * costs[v]))
        with open(path + ".tmp", "w") as f:
            json.dump({"key": key, "costs": costs}, f, indent=1)
        os.replace(path + ".tmp", path)
    return costs


def mean_curves(rows, variants, costs):
    """variant -> sorted [(step, training time (step x the variant's cost), mean acc, mean fd,
    n seeds, std acc, std fd)]."""
    out = {}
    for v in variants:
        by = {}
        for r in rows:
            if r["variant"] == v:
                by.setdefault(r["step"], []).append(r)
        pts = []
        for s in sorted(by):
            rs = by[s]
            acc_m, acc_s = mean_std([r["accuracy"] for r in rs])
            fd_m, fd_s = mean_std([r["fd"] for r in rs])
            pts.append((s, s * costs[v], acc_m, fd_m, len(rs), acc_s, fd_s))
        out[v] = pts
    return out


def at_time(pts, t):
    """The mean curve at training time t, linear between checkpoints: (steps, accuracy, fd);
    None when t lies beyond the curve's last checkpoint (or before its first)."""
    for p0, p1 in zip(pts, pts[1:]):
        if p0[1] <= t <= p1[1]:
            f = (t - p0[1]) / (p1[1] - p0[1]) if p1[1] > p0[1] else 1.0
            return tuple(p0[i] + f * (p1[i] - p0[i]) for i in (0, 2, 3))
    if pts and abs(pts[-1][1] - t) < 1e-9:
        return pts[-1][0], pts[-1][2], pts[-1][3]
    return None


COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
          (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def draw_curves(curves, path, fd_target):
    from PIL import Image, ImageDraw
    W, H, M = 420, 300, 50
    img = Image.new("RGB", (2 * W, 2 * H + 30 + 16 * ((len(curves) + 2) // 3)), "white")
    d = ImageDraw.Draw(img)
    panels = [(0, 0, 0, 3, "FD (log scale) vs steps"), (W, 0, 1, 3, "FD (log scale) vs training time (s): steps x cost"),
              (0, H, 0, 2, "accuracy vs steps"), (W, H, 1, 2, "accuracy vs training time (s): steps x cost")]
    for ox, oy, xi, yi, title in panels:
        # FD spans two decades (30 at the first checkpoint, < 1 at the end): log10 axis
        tf = (lambda v: math.log10(v)) if yi == 3 else (lambda v: v)
        xs = [p[xi] for pts in curves.values() for p in pts]
        ys = [tf(p[yi]) for pts in curves.values() for p in pts
              if math.isfinite(p[yi]) and (yi != 3 or p[yi] > 0)]
        if yi == 3 and fd_target is not None and fd_target > 0:
            ys.append(tf(fd_target))
        if not xs or not ys:
            continue
        x0, x1 = 0.0, max(xs) or 1.0
        if yi == 2:
            y0, y1 = 0.0, 1.0
        else:
            y0, y1 = math.floor(min(ys) * 2) / 2, math.ceil(max(ys) * 2) / 2
            if y1 <= y0:
                y1 = y0 + 0.5
        L, T, R, B = ox + M, oy + 25, ox + W - 15, oy + H - 30

        def X(v):
            return L + (v - x0) / (x1 - x0) * (R - L)

        def Y(v):
            return B - (v - y0) / (y1 - y0) * (B - T)
        d.rectangle([L, T, R, B], outline="black")
        d.text((L, oy + 8), title, fill="black")
        for k in range(5):
            yv = y0 + (y1 - y0) * k / 4
            d.line([L - 4, Y(yv), L, Y(yv)], fill="black")
            d.text((ox + 5, Y(yv) - 6), "%.3g" % (10 ** yv if yi == 3 else yv), fill="black")
            xv = x0 + (x1 - x0) * k / 4
            d.line([X(xv), B, X(xv), B + 4], fill="black")
            d.text((X(xv) - 10, B + 6), "%.4g" % xv, fill="black")
        if yi == 3 and fd_target is not None and fd_target > 0 and y0 <= tf(fd_target) <= y1:
            for xx in range(int(L), int(R), 8):
                d.line([xx, Y(tf(fd_target)), xx + 4, Y(tf(fd_target))], fill=(120, 120, 120))
        for ci, (v, pts) in enumerate(curves.items()):
            c = COLORS[ci % len(COLORS)]
            P = [(X(p[xi]), Y(tf(p[yi]))) for p in pts
                 if math.isfinite(p[yi]) and (yi != 3 or p[yi] > 0)]
            if len(P) > 1:
                d.line(P, fill=c, width=2)
            si = 6 if yi == 3 else 5  # error bars: +- one standard deviation over seeds
            for p_ in pts:
                if p_[4] > 1 and math.isfinite(p_[yi]) and p_[si] > 0:
                    lo_, hi_ = p_[yi] - p_[si], p_[yi] + p_[si]
                    if yi == 3:
                        lo_ = max(lo_, p_[yi] / 10)  # the log axis cannot show <= 0
                    xx = X(p_[xi])
                    d.line([xx, Y(tf(lo_)), xx, Y(tf(hi_))], fill=c, width=1)
            for px, py in P:
                d.ellipse([px - 2, py - 2, px + 2, py + 2], fill=c)
    ly = 2 * H + 5
    for ci, v in enumerate(curves):
        c = COLORS[ci % len(COLORS)]
        x = 10 + (ci % 3) * 270
        y = ly + 16 * (ci // 3)
        d.rectangle([x, y + 3, x + 14, y + 9], fill=c)
        d.text((x + 20, y), v, fill="black")
    d.text((10, img.height - 14), "mean over seeds, bars +- 1 std; dashed grey: FD target",
           fill="black")
    img.save(path)


def mean_std(xs):
    xs = [x for x in xs if x is not None and math.isfinite(x)]  # rows without the metric
    n = len(xs)
    if n == 0:
        return float("nan"), float("nan")
    m = sum(xs) / n
    return m, (math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0)


def pm(m, sd, fmt):
    """"m +- sd" (just m without a spread; "-" when the rows lack the metric)."""
    if not math.isfinite(m):
        return "-"
    return fmt % m + (" +- " + fmt % sd if math.isfinite(sd) and sd > 0 else "")


def first_reach(pts, target):
    for p_ in pts:
        if p_[3] <= target:
            return p_[0], p_[1]
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="digits", choices=sorted(DATASETS),
                   help="digits (8x8, 16 tokens; default) or mnist (28x28, 49 tokens)")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help="comma list of: %s (aliases %s)" % (
                       ", ".join(VARIANTS), ", ".join("%s=%s" % kv for kv in ALIASES.items())))
    p.add_argument("--main-variants", default="baseline,sddit,mask0",
                   help="the variants run with every seed of --seeds (default: plain DiT, "
                        "SD-DiT, and SD-DiT's discriminative loss without masking)")
    p.add_argument("--seeds", default="0,1,2",
                   help="seeds of the main variants (default 0,1,2)")
    p.add_argument("--ablation-seeds", default="0",
                   help="seeds of the other variants (default 0; 'same' = --seeds)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="a config override for every run (repeatable), e.g. sddit.tau_s=0.1")
    p.add_argument("--steps", type=int, default=None, help="digits 1500, mnist 1000")
    p.add_argument("--every", type=int, default=None, help="250")
    p.add_argument("--per-class", type=int, default=20)
    p.add_argument("--guidance", type=float, default=1.0,
                   help="sampling guidance of the evaluation (1: none, the paper's "
                        "convergence protocol; guidance > 1 trades FD for accuracy)")
    p.add_argument("--ema-decay", type=float, default=0.995,
                   help="generation EMA of the runs (digits.ini has 0.999, which averages "
                        "over ~1000 steps: too long for a 1500-step curve)")
    p.add_argument("--fd-target", type=float, default=1.5)
    p.add_argument("--out", default=None, help="runs/study-<dataset>")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--equal-time", action="store_true",
                   help="also train plain DiT (variant baseline_T, the baseline's seeds) for as "
                        "many steps as SD-DiT's --steps take at the measured costs: equal "
                        "training time with each run's full learning-rate schedule")
    p.add_argument("--cost-steps", type=int, default=200,
                   help="steps of the per-variant cost measurement behind the wall-time "
                        "columns (200)")
    p.add_argument("--reuse", default=None, metavar="RESULTS.json",
                   help="take the rows of runs (variant x seed) found in an earlier study's "
                        "results.json instead of running them, when that study had the same "
                        "dataset, steps, every, per-class, guidance, EMA decay and overrides "
                        "(e.g. experiments/digits_results.json, the committed digits study)")
    p.add_argument("--sddit", default=os.path.join(ROOT, "build/src/sddit"))
    p.add_argument("--smoke", action="store_true",
                   help="~2 minutes: baseline,sddit; seed 0; 60 steps; every 30; 10 per class")
    a = p.parse_args()
    config, data_rel, prep, steps0, every0, protocol = DATASETS[a.dataset]
    a.steps = steps0 if a.steps is None else a.steps
    a.every = every0 if a.every is None else a.every
    a.out = a.out or os.path.join("runs", "study-" + a.dataset)
    if a.smoke:
        a.variants, a.seeds, a.steps, a.every, a.per_class = "baseline,sddit", "0", 60, 30, 10
        a.cost_steps = 20
        a.ablation_seeds = "0"
        a.main_variants = "baseline,sddit"
    variants = []
    for v in a.variants.split(","):
        v = ALIASES.get(v.strip(), v.strip())
        if v not in VARIANTS:
            p.error("unknown variant %r (known: %s)" % (v, ", ".join(list(VARIANTS) + list(ALIASES))))
        if v not in variants:
            variants.append(v)
    seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    abl_seeds = seeds if a.ablation_seeds == "same" else [
        int(s) for s in a.ablation_seeds.split(",") if s.strip()]
    for kv in a.set:
        if "=" not in kv or "." not in kv.split("=", 1)[0]:
            p.error("--set takes SECTION.KEY=VALUE, got %r" % kv)

    main_variants = [ALIASES.get(v.strip(), v.strip()) for v in a.main_variants.split(",")]

    def seeds_of(v):
        return seeds if v in main_variants else abl_seeds
    if a.steps < 1 or a.every < 1 or a.per_class < 1:
        p.error("--steps, --every and --per-class must be positive")
    sddit = os.path.abspath(a.sddit)
    if not os.access(sddit, os.X_OK):
        sys.exit("study: no sddit binary at %s (build it: meson setup build && ninja -C "
                 "build, or pass --sddit PATH)" % sddit)
    a.out = os.path.abspath(a.out)
    os.makedirs(a.out, exist_ok=True)
    data = os.path.join(ROOT, data_rel)
    if not os.path.isfile(data):
        log("preparing %s" % data)
        os.makedirs(os.path.dirname(data), exist_ok=True)
        subprocess.run([PY, os.path.join(ROOT, prep), "--out", data], check=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    a.variant_steps = {}
    costs = None
    if a.equal_time:
        for v in ("baseline", "sddit"):
            if v not in variants:
                p.error("--equal-time needs the variants baseline and sddit")
        costs = measure_costs(a, variants, sddit, data, env, config, protocol)
        n_eq = int(round(a.steps * costs["sddit"] / costs["baseline"]))
        VARIANTS["baseline_T"] = ("plain DiT for %d steps: the training time of SD-DiT's %d"
                                  % (n_eq, a.steps), VARIANTS["baseline"][1])
        a.variant_steps["baseline_T"] = n_eq
        variants.append("baseline_T")
        if "baseline" in main_variants:
            main_variants.append("baseline_T")
        log("--equal-time: SD-DiT %.1f ms/step, plain DiT %.1f ms/step: baseline_T trains %d "
            "steps" % (1000 * costs["sddit"], 1000 * costs["baseline"], n_eq))
    if a.reuse:
        reuse_rows(a, variants, seeds_of)
    n_runs = sum(len(seeds_of(v)) for v in variants)
    total, tt, ts, nck = estimate(n_runs, a.steps, a.every, a.per_class)
    log("%d runs (%d variants; seeds %s for %s, %s for the others), %d steps, %d checkpoints "
        "each, %d samples per checkpoint" % (
            n_runs, len(variants), a.seeds, ",".join(main_variants),
            ",".join(map(str, abl_seeds)), a.steps, nck, 10 * a.per_class))
    log("estimated runtime: %.0f s (~%.1f min): per run %.0f s training + %.0f s sampling/eval "
        "(at %.0f img/s, %.0f samples/s, %.0f s/eval; runs with results are skipped)" % (
            total, total / 60, tt, ts, TRAIN_IMG_S, SAMPLE_S, EVAL_S))
    t_start = time.time()
    rows = []
    k = 0
    for v in variants:
        for s in seeds_of(v):
            k += 1
            log("run %d/%d: %s seed %d (%.0f s elapsed)" % (k, n_runs, v, s, time.time() - t_start))
            rows += do_run(a, v, s, sddit, data, env, config, protocol)

    costs = measure_costs(a, [v for v in variants if v != "baseline_T"], sddit, data, env,
                          config, protocol)
    if "baseline_T" in variants:
        costs["baseline_T"] = costs["baseline"]
    cmdline = " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump({"command": cmdline, "dataset": a.dataset, "config": config,
                   "protocol": protocol, "smoke": a.smoke, "steps": a.steps, "every": a.every,
                   "ema_decay": a.ema_decay,
                   "per_class": a.per_class, "guidance": a.guidance, "fd_target": a.fd_target,
                   "seeds": seeds, "main_variants": main_variants,
                   "ablation_seeds": abl_seeds, "set": a.set, "step_cost_s": costs,
                   "variants": {v: {"description": VARIANTS[v][0], "overrides": VARIANTS[v][1]}
                                for v in variants},
                   "rows": rows}, f, indent=1)
    curves = mean_curves(rows, variants, costs)
    draw_curves(curves, os.path.join(a.out, "curves.png"), a.fd_target)

    md = ["# Study on %s%s" % (a.dataset, " (smoke)" if a.smoke else ""), "",
          "- command: `%s`" % cmdline,
          "- machine: %s, %s, %d cores, %d threads per run" % (
              platform.node(), platform.machine(), os.cpu_count() or 0, a.threads),
          "- date: %s" % datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
          "- %s with %s; steps %d, checkpoint every %d, %d samples per class, guidance %g, "
          "generation EMA decay %g" % (config, " ".join(protocol), a.steps, a.every, a.per_class,
                                       a.guidance, a.ema_decay),
          "- seeds %s (%s), %s (the other variants); overrides on every run: %s" % (
              ",".join(map(str, seeds)), ", ".join(main_variants),
              ",".join(map(str, abl_seeds)), " ".join(a.set) or "none"),
          "- study wall time: %.0f s" % (time.time() - t_start), "",
          "## Equal steps: the final checkpoint (mean +- std over seeds)", "",
          "accuracy: the MLP classifier's; lowest: the lowest of MLP, SVC and 5-NN; FD in the "
          "MLP's features (its real-vs-real floor at these sizes: %s); pixel FD on 64 principal "
          "components; `-`: rows from a reused earlier study that lack the metric (the means "
          "of lowest and pixel FD then cover the other seeds only)." % (
              "%.3f" % mean_std([r.get("fd_floor") for r in rows])[0]
              if any("fd_floor" in r for r in rows) else "-"), "",
          "| variant | overrides | seeds | step | accuracy | lowest | FD | pixel FD | ms/step |",
          "|---|---|---|---|---|---|---|---|---|"]
    for v in variants:
        if not curves[v]:
            continue
        last = curves[v][-1][0]
        fin = [r for r in rows if r["variant"] == v and r["step"] == last]
        acc_m, acc_s = mean_std([r["accuracy"] for r in fin])
        lo_m, lo_s = mean_std([r.get("accuracy_min", float("nan")) for r in fin])
        fd_m, fd_s = mean_std([r["fd"] for r in fin])
        fp_m, fp_s = mean_std([r.get("fd_pixels", float("nan")) for r in fin])
        w_m = 1000 * costs[v]
        md.append("| %s | %s | %d | %d | %s | %s | %s | %s | %.0f |" % (
            v, " ".join(o.lstrip("-") for o in VARIANTS[v][1]
                        if v in ("baseline", "sddit") or o not in SDDIT), len(fin), last,
            pm(acc_m, acc_s, "%.3f"), pm(lo_m, lo_s, "%.3f"), pm(fd_m, fd_s, "%.3f"),
            pm(fp_m, fp_s, "%.1f"), w_m))
    # equal training time, full schedules: SD-DiT's final checkpoint against plain DiT trained
    # for as long (--equal-time)
    if "baseline_T" in variants:
        md += ["", "## Equal training time, full schedules", "",
               "Each run's final checkpoint; baseline_T is plain DiT trained for %d steps, the "
               "time SD-DiT's %d steps take at the measured costs (%.1f and %.1f ms/step)." % (
                   a.variant_steps["baseline_T"], a.steps, 1000 * costs["sddit"],
                   1000 * costs["baseline"]), "",
               "| variant | steps | training time (s) | seeds | accuracy | lowest | FD | pixel FD |",
               "|---|---|---|---|---|---|---|---|"]
        for v in ("baseline", "sddit", "baseline_T"):
            if not curves[v]:
                continue
            last = curves[v][-1][0]
            fin = [r for r in rows if r["variant"] == v and r["step"] == last]
            md.append("| %s | %d | %.0f | %d | %s | %s | %s | %s |" % (
                v, last, last * costs[v], len(fin),
                pm(*mean_std([r["accuracy"] for r in fin]), "%.3f"),
                pm(*mean_std([r.get("accuracy_min") for r in fin]), "%.3f"),
                pm(*mean_std([r["fd"] for r in fin]), "%.3f"),
                pm(*mean_std([r.get("fd_pixels") for r in fin]), "%.1f")))
    # equal wall time: every variant at the training time of the fastest variant's last
    # checkpoint (linear between checkpoints of the mean curve); only meaningful when the
    # learning rate is constant (a cosine's middle checkpoints are not converged states)
    ends = [curves[v][-1][1] for v in variants if curves[v]]
    if ends and "--optim.lr_schedule=cosine" not in protocol:
        t_eq = min(ends)
        md += ["", "## Equal wall time: every variant after %.0f s of training" % t_eq, "",
               "The training time of the fastest variant's last checkpoint, as steps x each "
               "variant's cost per step (ms/step above, measured back to back in this "
               "sitting: step_costs.json); the others' mean curves interpolated there.", "",
               "| variant | steps done by then | accuracy | FD |", "|---|---|---|---|"]
        for v in variants:
            r = at_time(curves[v], t_eq)
            md.append("| %s | %s | %s | %s |" % (
                v, "%.0f" % r[0] if r else "-", "%.3f" % r[1] if r else "-",
                "%.3f" % r[2] if r else "-"))
    steps_all = sorted({r["step"] for r in rows})
    for title, col, fmt in (("FD", 3, "%.2f"), ("Accuracy", 2, "%.3f")):  # curve columns
        md += ["", "## %s at every checkpoint (mean +- std over seeds)" % title, "",
               "| variant | " + " | ".join(str(x) for x in steps_all) + " |",
               "|---|" + "---|" * len(steps_all)]
        for v in variants:
            by = {p_[0]: (p_[col], p_[col + 3], p_[4]) for p_ in curves[v]}
            md.append("| %s | " % v + " | ".join(
                (fmt % by[x][0] + (" +- " + fmt % by[x][1] if by[x][2] > 1 else ""))
                if x in by else "-" for x in steps_all) + " |")
    md += ["", "## Steps to reach FD <= %g" % a.fd_target, "",
           "Mean curve over seeds, and each seed's own first checkpoint at or below the target.",
           "", "| variant | steps (mean curve) | training time (s) | per seed |", "|---|---|---|---|"]
    for v in variants:
        r = first_reach(curves[v], a.fd_target)
        per = []
        for sd in seeds_of(v):
            pts = [(x["step"], x["step"] * costs[v], x["accuracy"], x["fd"], 1, 0.0, 0.0)
                   for x in sorted(rows, key=lambda x: x["step"])
                   if x["variant"] == v and x["seed"] == sd]
            rr = first_reach(pts, a.fd_target)
            per.append("s%d: %s" % (sd, rr[0] if rr else "-"))
        md.append("| %s | %s | %s | %s |" % (v, r[0] if r else "not reached",
                                              "%.0f" % r[1] if r else "-", ", ".join(per)))
    md += ["", "## What the data shows", ""]
    md.append("smoke run: not a result" if a.smoke else
              "The committed readings are experiments/RESULTS-digits.md and "
              "experiments/RESULTS-mnist.md; a different run needs its own, from these tables.")
    md += ["", "Curves: curves.png. Every run x checkpoint: results.json."]
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    log("done in %.0f s: %s/results.json, curves.png, results.md" % (time.time() - t_start, a.out))


if __name__ == "__main__":
    main()
