#!/usr/bin/python3
"""Helpers and unit checks for data-prep/fid_eval.py (used by tests/test_fid_pipeline.sh).

  fid_check.py unit                          the metric math, the network, the weight loader
  fid_check.py weights OUT.pth SEED          a randomly initialised FID Inception state dict
  fid_check.py images OUT.npz N SIZE SEED    an ADM batch of N random SIZE x SIZE images
  fid_check.py same A.json B.json RTOL       the metrics of two runs agree
  fid_check.py independent METRICS FEATS     metrics.json against a recomputation from the
                                             saved features with other formulas
  fid_check.py stats-ref REF.npz FEATS OUT   REF's arr_0 plus mu/sigma/mu_s/sigma_s of the
                                             samples' features (so FID/sFID against it ~ 0)
  fid_check.py mix A.npz NA B.npz NB OUT     arr_0 = the first NA images of A, then NB of B
Every check prints its evidence; a failure exits 1 with the values and the tolerance.
"""
import json
import os
import sys
import tempfile

ROOT = os.environ.get("SD_SOURCE_ROOT") or os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "data-prep"))

import numpy as np  # noqa: E402
import fid_eval as fe  # noqa: E402

METRICS = ("fid", "sfid", "inception_score", "precision", "recall")
failures = []


def check(ok, what, evidence):
    print("%s %s: %s" % ("ok  " if ok else "FAIL", what, evidence))
    if not ok:
        failures.append(what)


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


# ------------------------------------------------------------------------- math: FD

def random_cov(rng, d, n):
    x = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * 0.3 + rng.random(d)
    return fe.gaussian(x)


def unit_frechet(rng):
    mu, s = random_cov(rng, 64, 1000)
    fd = fe.frechet_distance(mu, s, mu, s)
    check(fd / np.trace(s) < 1e-6, "FD of a full-rank set against itself ~ 0",
          "FD %.3g, Tr(S) %.4g, relative %.3g (tolerance 1e-6)" % (fd, np.trace(s),
                                                                   fd / np.trace(s)))
    x = np.abs(rng.standard_normal((16, 2048))).astype(np.float32)  # rank 15 in 2048 dims
    mu, s = fe.gaussian(x)
    fd = fe.frechet_distance(mu, s, mu, s)
    check(fd / np.trace(s) < 1e-6, "FD of 16 samples in 2048 dims against itself ~ 0",
          "FD %.3g, Tr(S) %.4g, relative %.3g (tolerance 1e-6)" % (fd, np.trace(s),
                                                                   fd / np.trace(s)))
    d = 50
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    a, b = rng.random(d) * 3 + 0.01, rng.random(d) * 2 + 0.01
    closed = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    fd = fe.frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    check(rel(fd, closed) < 1e-9, "FD of diagonal covariances = |dmu|^2 + sum (sqrt a - sqrt b)^2",
          "%.12g vs closed form %.12g, relative %.2g (tolerance 1e-9)" % (fd, closed,
                                                                          rel(fd, closed)))
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    fd = fe.frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    check(rel(fd, closed) < 1e-9, "FD of commuting covariances Q diag Q^T (same closed form)",
          "%.12g vs %.12g, relative %.2g (tolerance 1e-9)" % (fd, closed, rel(fd, closed)))
    _, s1 = random_cov(rng, 40, 500)
    _, s2 = random_cov(rng, 40, 300)
    try:
        import scipy.linalg
        f = fe.psd_factor(s1)
        check(np.abs(f @ f.T - s1).max() < 1e-12 * np.abs(s1).max(), "psd_factor: F F^T = S",
              "max |F F^T - S| / max |S| = %.2g (tolerance 1e-12)" % (
                  np.abs(f @ f.T - s1).max() / np.abs(s1).max()))
        t_chol, t_eigh = fe.trace_sqrt_product(s1, s2), fe.trace_sqrt_product(s1, s2, "eigh")
        check(rel(t_eigh, t_chol) < 1e-10,
              "Tr((S1 S2)^(1/2)): eigh square roots = pivoted Cholesky",
              "%.12g vs %.12g (tolerance 1e-10)" % (t_eigh, t_chol))
        root = scipy.linalg.sqrtm(s1 @ s2)
        ref = float(np.trace(s1) + np.trace(s2) - 2 * np.trace(root).real)
        fd = fe.frechet_distance(mu1[:40], s1, mu1[:40], s2)
        check(rel(fd, ref) < 1e-6, "FD of general covariances against scipy.linalg.sqrtm",
              "%.12g vs %.12g, relative %.2g (tolerance 1e-6)" % (fd, ref, rel(fd, ref)))
    except ImportError:
        print("skip FD against scipy.linalg.sqrtm (no scipy)")


# ------------------------------------------------------------------------- math: P/R, IS

def unit_precision_recall(rng):
    x = rng.standard_normal((40, 32)).astype(np.float32)
    p, r = fe.precision_recall(x, x)
    check(p == 1.0 and r == 1.0, "precision, recall of a set against itself = 1, 1",
          "%g, %g" % (p, r))
    p, r = fe.precision_recall(x + 1000.0, x)
    check(p == 0.0 and r == 0.0, "precision, recall of far-apart sets = 0, 0", "%g, %g" % (p, r))
    far = rng.standard_normal((20, 32)).astype(np.float32) + 1000.0
    p, _ = fe.precision_recall(np.concatenate([x[:20], far]), x)
    check(p == 0.5, "precision of half reference points, half far points = 0.5", "%g" % p)
    # 1-D by hand, k = 3: reference radii 3, 2, 2, 3, 9 around 0, 1, 2, 3, 10; samples 12 (in,
    # via 10), 20 (out), -3.5 (out), -2.9 (in, via 0), 5 (in, via 3): precision 3/5
    ref = np.array([0, 1, 2, 3, 10], np.float32)[:, None] * np.ones((1, 4), np.float32) / 2
    smp = np.array([12, 20, -3.5, -2.9, 5], np.float32)[:, None] * np.ones((1, 4), np.float32) / 2
    p, _ = fe.precision_recall(smp, ref)
    check(abs(p - 0.6) < 1e-12, "precision of a hand-computed 1-D case = 0.6", "%g" % p)


def unit_inception_score():
    m, sd, n = fe.inception_score(np.zeros((100, 1008)))
    check(abs(m - 1.0) < 1e-12 and n == 1, "IS of uniform predictions = 1", "%.15g (%d split)" % (
        m, n))
    k = 10
    logits = np.zeros((50 * k, 1008))
    logits[np.arange(50 * k), np.arange(50 * k) % k] = 60.0
    m, sd, n = fe.inception_score(logits)
    check(abs(m - k) < 1e-9, "IS of confident predictions balanced over 10 classes = 10",
          "%.12g (tolerance 1e-9)" % m)
    logits = np.zeros((12000, 1008))
    logits[np.arange(12000), np.arange(12000) % 4] = 60.0
    m, sd, n = fe.inception_score(logits)
    check(n == 3 and abs(m - 4) < 1e-9, "IS over 12000 samples: splits of 5000 (3 splits), = 4",
          "%.12g over %d splits" % (m, n))


# ------------------------------------------------------------------------- network, weights

def unit_network(tmp):
    import torch
    model = fe.init_random(fe.make_inception(), 1)
    count = sum(p.numel() for p in model.parameters())
    check(count == 23850960, "parameter count of the FID Inception-v3 (no aux head, 1008-way fc)",
          "%d (want 23850960)" % count)
    grabbed = {}

    def grab(name):
        def hook(mod, inp, outp):
            grabbed[name] = (inp[0].detach().clone(), outp.detach().clone())
        return hook
    hooks = [getattr(model, m).register_forward_hook(grab(m))
             for m in ("Conv2d_1a_3x3", "Mixed_7c")]
    hooks.append(model.Mixed_6d.branch1x1.register_forward_hook(grab("6d")))
    u8 = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (2, 20, 24, 3), np.uint8))
    u8[0, :6, :6] = 0      # constant blocks: their interpolated interiors stay -1 and 1
    u8[0, 10:16, 10:16] = 255
    with torch.no_grad():
        pool, spatial = model(u8)
    for h in hooks:
        h.remove()
    x_in = grabbed["Conv2d_1a_3x3"][0]
    check(tuple(x_in.shape) == (2, 3, 299, 299) and abs(x_in.min() + 1) < 1e-6 and
          abs(x_in.max() - 1) < 1e-6, "input resized to 299x299 and scaled to [-1, 1] (1e-6)",
          "shape %s, range [%g, %g]" % (tuple(x_in.shape), x_in.min(), x_in.max()))
    want = grabbed["Mixed_7c"][1].mean(dim=(2, 3))
    check(tuple(pool.shape) == (2, 2048) and torch.equal(pool, want),
          "pool features = the mean of Mixed_7c's 8x8x2048 output", "shape %s" % (
              tuple(pool.shape),))
    b6 = grabbed["6d"][1]
    want = b6[:, :7].permute(0, 2, 3, 1).reshape(2, -1)
    check(tuple(b6.shape[1:]) == (192, 17, 17) and torch.equal(spatial, want),
          "spatial features = Mixed_6d's 1x1 branch (TF mixed_6/conv), channels 0..6, HWC order",
          "branch %s, features %s" % (tuple(b6.shape), tuple(spatial.shape)))
    # the pools: Mixed_5b's average pool excludes the padding, Mixed_7c's is a max pool
    grabbed.clear()
    hooks = [model.Mixed_5b.branch_pool.register_forward_hook(grab("5b_pool")),
             model.Mixed_7c.branch_pool.register_forward_hook(grab("7c_pool"))]
    with torch.no_grad():
        model.Mixed_5b(torch.ones(1, 192, 35, 35))
        spike = torch.zeros(1, 2048, 8, 8)
        spike[0, :, 0, 0] = 5.0
        model.Mixed_7c(spike)
    for h in hooks:
        h.remove()
    p5 = grabbed["5b_pool"][0]
    check(torch.allclose(p5, torch.ones_like(p5)), "Mixed_5b pool: average excluding padding "
          "(ones stay ones at the border)", "corner %g" % p5[0, 0, 0, 0])
    p7 = grabbed["7c_pool"][0][0, 0]
    check(float(p7[1, 1]) == 5.0 and float(p7[2, 2]) == 0.0,
          "Mixed_7c pool: 3x3 max pool (a spike at (0,0) fills (1,1), not (2,2))",
          "(1,1) %g, (2,2) %g" % (p7[1, 1], p7[2, 2]))
    unit_weights(model, tmp)


def expect_refused(model, path, pattern, what):
    try:
        fe.load_weights(model, path)
    except fe.EvalError as e:
        check(pattern in str(e), what, str(e)[:160])
        return
    check(False, what, "accepted")


def unit_weights(model, tmp):
    import torch
    sd = model.state_dict()
    good = os.path.join(tmp, "good.pth")
    torch.save(sd, good)
    fresh = fe.make_inception()
    fe.load_weights(fresh, good)
    same = all(torch.equal(fresh.state_dict()[k], v) for k, v in sd.items())
    check(same, "a state dict round trip loads strictly and equals the original", good)
    bad = dict(sd)
    bad["fc.weight"] = torch.zeros(1000, 2048)
    torch.save(bad, os.path.join(tmp, "shape.pth"))
    expect_refused(fresh, os.path.join(tmp, "shape.pth"),
                   "'fc.weight' has shape (1000, 2048), expected (1008, 2048)",
                   "a wrong shape is refused, naming the tensor")
    bad = dict(sd)
    del bad["Mixed_7c.branch_pool.conv.weight"]
    torch.save(bad, os.path.join(tmp, "missing.pth"))
    expect_refused(fresh, os.path.join(tmp, "missing.pth"),
                   "missing key 'Mixed_7c.branch_pool.conv.weight'",
                   "a missing key is refused, naming it")
    bad = dict(sd)
    bad["AuxLogits.fc.weight"] = torch.zeros(1008, 768)
    torch.save(bad, os.path.join(tmp, "extra.pth"))
    expect_refused(fresh, os.path.join(tmp, "extra.pth"), "unexpected key 'AuxLogits.fc.weight'",
                   "an unexpected key is refused, naming it")
    with open(good, "rb") as f:
        head = f.read(os.path.getsize(good) // 2)
    with open(os.path.join(tmp, "trunc.pth"), "wb") as f:
        f.write(head)
    expect_refused(fresh, os.path.join(tmp, "trunc.pth"), "cannot load as a PyTorch state dict",
                   "a truncated file is refused")
    old = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    torch.save(old, os.path.join(tmp, "old.pth"))
    fe.load_weights(fresh, os.path.join(tmp, "old.pth"))
    check(True, "a state dict without num_batches_tracked loads", "%d keys" % len(old))


def unit_batches(tmp):
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (7, 5, 6, 3), np.uint8)
    p = os.path.join(tmp, "b.npz")
    np.savez(p, a, np.arange(7))
    b = fe.Batch(p, "--samples")
    got = np.concatenate(list(b.batches(3)))
    check(b.n == 7 and np.array_equal(got, a), "arr_0 streamed in batches of 3 = np.load",
          "n %d" % b.n)
    np.savez(os.path.join(tmp, "f.npz"), a.astype(np.float32))
    for name, pat, what in (
            ("f.npz", "arr_0 is float32 (7, 5, 6, 3)", "float images are refused"),
            ("nothere.npz", "no such file", "a missing file is refused")):
        try:
            fe.Batch(os.path.join(tmp, name), "--ref")
            check(False, what, "accepted")
        except fe.EvalError as e:
            check(pat in str(e), what, str(e)[:150])
    np.savez(os.path.join(tmp, "s.npz"), arr_0=a, mu=np.zeros(2048), sigma=np.eye(2047))
    try:
        fe.Batch(os.path.join(tmp, "s.npz"), "--ref")
        check(False, "statistics of the wrong shape are refused", "accepted")
    except fe.EvalError as e:
        check("sigma (2047, 2047)" in str(e), "statistics of the wrong shape are refused",
              str(e)[:150])


def cmd_unit():
    rng = np.random.default_rng(0)
    unit_frechet(rng)
    unit_precision_recall(rng)
    unit_inception_score()
    with tempfile.TemporaryDirectory() as tmp:
        unit_batches(tmp)
        unit_network(tmp)


# ------------------------------------------------------------------------- test inputs

def cmd_weights(out, seed):
    import torch
    torch.save(fe.init_random(fe.make_inception(), int(seed)).state_dict(), out)
    print("wrote %s (random FID Inception weights, seed %s)" % (out, seed))


def cmd_images(out, n, size, seed):
    """Smooth random colour fields plus noise: images that differ in more than noise."""
    rng = np.random.default_rng(int(seed))
    n, size = int(n), int(size)
    yy, xx = np.mgrid[0:size, 0:size] / max(1, size - 1)
    imgs = []
    for _ in range(n):
        f = rng.random((3, 3)) * 6
        ph = rng.random(3) * 6.3
        chans = [np.sin(f[c, 0] * xx + f[c, 1] * yy + ph[c]) * rng.random() for c in range(3)]
        x = np.stack(chans, -1) + 0.15 * rng.standard_normal((size, size, 3))
        imgs.append(np.clip((x + 1) * 127.5, 0, 255).astype(np.uint8))
    np.savez(out, np.stack(imgs), rng.integers(0, 10, n))
    print("wrote %s (%d random %dx%d images)" % (out, n, size, size))


# ------------------------------------------------------------------------- comparisons

def cmd_same(a, b, tol):
    ma, mb = json.load(open(a)), json.load(open(b))
    for k in METRICS:
        x, y = ma[k], mb[k]
        ok = x is not None and y is not None and np.isfinite(x) and np.isfinite(y) and (
            abs(x - y) <= float(tol) * max(abs(x), abs(y), 1e-12))
        check(ok, "%s agrees" % k, "%r vs %r (relative tolerance %s)" % (x, y, tol))


def cmd_independent(metrics, feats):
    """Recompute every metric from the saved features with other formulas: the Frechet
    distances from the singular values of the centred data's cross product, precision/recall
    from sorted float64 distances, IS from scipy's softmax and rel_entr; the tool's numbers
    must agree."""
    import scipy.special
    m = json.load(open(metrics))
    d = np.load(feats)

    def fd(x, y):
        # Tr((S1 S2)^(1/2)) from the centred data: S1 S2's non-zero eigenvalues are the squared
        # singular values of A B^T / sqrt((n - 1)(m - 1)) (A, B the centred rows)
        x, y = x.astype(np.float64), y.astype(np.float64)
        a, b = x - x.mean(0), y - y.mean(0)
        n, mm = len(x), len(y)
        tr = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt((n - 1) * (mm - 1))
        dm = x.mean(0) - y.mean(0)
        return float(dm @ dm + (a * a).sum() / (n - 1) + (b * b).sum() / (mm - 1) - 2 * tr)

    def pr(s, r, k=3):
        s, r = s.astype(np.float64), r.astype(np.float64)
        dss = ((s[:, None] - s[None]) ** 2).sum(-1)
        drr = ((r[:, None] - r[None]) ** 2).sum(-1)
        dsr = ((s[:, None] - r[None]) ** 2).sum(-1)
        rad_r, rad_s = np.sort(drr, 1)[:, k], np.sort(dss, 1)[:, k]
        precision = float((dsr <= rad_r[None]).any(1).mean())
        return precision, float((dsr.T <= rad_s[None]).any(1).mean())

    logits = d["sample_logits"]
    p = scipy.special.softmax(logits, 1)
    kl = scipy.special.rel_entr(p, p.mean(0, keepdims=True)).sum(1)
    want = {"fid": fd(d["sample_pool"], d["ref_pool"]),
            "sfid": fd(d["sample_spatial"], d["ref_spatial"]),
            "inception_score": float(np.exp(kl.mean()))}
    want["precision"], want["recall"] = pr(d["sample_pool"], d["ref_pool"])
    for k, tol in (("fid", 1e-6), ("sfid", 1e-6), ("inception_score", 1e-9)):
        check(rel(m[k], want[k]) <= tol, "%s = the independent recomputation" % k,
              "%.10g vs %.10g, relative %.2g (tolerance %g)" % (m[k], want[k], rel(m[k], want[k]),
                                                                tol))
    for k in ("precision", "recall"):
        check(m[k] == want[k], "%s = brute-force float64 k-NN" % k, "%r vs %r" % (m[k], want[k]))


def cmd_stats_ref(ref, feats, out):
    d = np.load(feats)
    mu, sig = fe.gaussian(d["sample_pool"])
    mu_s, sig_s = fe.gaussian(d["sample_spatial"])
    with np.load(ref) as r:
        np.savez(out, arr_0=r["arr_0"], mu=mu, sigma=sig, mu_s=mu_s, sigma_s=sig_s)
    print("wrote %s (arr_0 of %s, statistics of the samples' features)" % (out, ref))


def cmd_mix(a, na, b, nb, out):
    with np.load(a) as da, np.load(b) as db:
        x = np.concatenate([da["arr_0"][:int(na)], db["arr_0"][:int(nb)]])
    np.savez(out, x)
    print("wrote %s (%d images of %s, %d of %s)" % (out, int(na), a, int(nb), b))


def main(argv):
    cmds = {"mix": (cmd_mix, 5), "unit": (cmd_unit, 0), "weights": (cmd_weights, 2),
            "images": (cmd_images, 4),
            "same": (cmd_same, 3), "independent": (cmd_independent, 2),
            "stats-ref": (cmd_stats_ref, 3)}
    if not argv or argv[0] not in cmds or len(argv) - 1 != cmds[argv[0]][1]:
        print(__doc__, file=sys.stderr)
        return 2
    cmds[argv[0]][0](*argv[1:])
    if failures:
        print("%d check(s) failed: %s" % (len(failures), "; ".join(failures)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
