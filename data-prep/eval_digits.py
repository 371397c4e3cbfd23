#!/usr/bin/python3
"""Evaluate generated digits (from `sddit sample`) against the real digits.

  data-prep/eval_digits.py --real data/digits.h5 --samples SAMPLES.h5 [MORE.h5 ...] --out DIR

The real digits are a format-1 pixel-space file with 10 classes: data-prep/digits.py's 8x8
digits or data-prep/mnist.py's 28x28 MNIST digits (any S x S, one channel; the samples must
have the same size). Three independent classifiers are trained on them, on the S*S pixels
(x + 1) / 2 in [0, 1], with 25% of every class held out by a fixed permutation (numpy
default_rng(--split-seed)): scikit-learn's MLPClassifier (one hidden layer of 64 ReLU units,
fixed random_state), an RBF support-vector machine (SVC, its defaults) and 5 nearest
neighbours. It reports

  - their accuracy on the held-out real digits (a sanity check: about 97-99%);
  - (a) the accuracy with which each recognises the generated samples as their conditioning
    class, overall (and, for the MLP, per class with the confusion matrix); the goal line
    uses the lowest of the three;
  - (b) the Frechet distance between the real digits (all of them) and the generated ones in
    the classifier's feature space (its 64 hidden-layer activations): |mu1 - mu2|^2 +
    Tr(S1 + S2 - 2 sqrt(S1 S2)); and, as a reference floor, the same distance between the
    held-out real digits and the training ones, also scaled to the sizes of the comparison
    (FD's estimation bias grows like 1/N1 + 1/N2, so small sample sets score higher even when
    they are perfect: 200 real digits score about 1.8 times the held-out floor);
  - (c) the same Frechet distance and floors in pixel space (the S*S grey levels (x + 1) * 8,
    so 8x8 digits are on their original 0..16 scale), which depends on no classifier;
  - a goal line: every classifier's accuracy >= 95% and both FDs <= 2x their floor at these
    sizes (--goal-accuracy, --goal-fd-ratio).

Generated pixels are clipped to [-1, 1] first (the fraction clipped is reported). Writes
DIR/metrics.json (every number) and DIR/samples_grid.png (row c = class c, up to --per-class
samples in file order, upscaled --scale times with nearest neighbours, 1-pixel grey
separators, ink white on black) and prints a short table. Several sample files are
concatenated in the order given. Samples with label 10 (the null class: `sddit sample
--classes null`, unconditional) count in the FD and fill an 11th grid row, not in the accuracy.
"""
import argparse
import json
import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sddit_h5 import attr_value  # noqa: E402

PROG = "eval_digits.py"
SAMPLES_FORMAT = "sddit-samples"
DATA_FORMAT = "sddit-latents"
HIDDEN = 64
NEIGHBOURS = 5
PIXEL_SCALE = 8.0  # pixel-space FD on (x + 1) * 8: the 8x8 digits' original 0..16
SEPARATOR = 128  # grey of the grid's separators and empty cells


class EvalError(Exception):
    """A problem with the inputs; printed as one line."""


def _jsonable(v):
    v = attr_value(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def _open(path):
    import h5py
    if not os.path.isfile(path):
        raise EvalError("%s: no such file" % path)
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise EvalError("%s: cannot open as HDF5 (%s)" % (path, e)) from None


def _check_labels(path, y, n, num_classes, null_ok=False):
    """Labels in [0, num_classes), or also num_classes (the null class) when null_ok."""
    if y.shape != (n,):
        raise EvalError("%s: /labels has shape %s, expected (%d,) (one per sample)" % (
            path, y.shape, n))
    if not np.issubdtype(y.dtype, np.integer):
        raise EvalError("%s: /labels has dtype %s, expected integers" % (path, y.dtype))
    bad = (y < 0) | (y > num_classes if null_ok else y >= num_classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise EvalError("%s: /labels[%d] = %d is outside [0, %d)%s (%d labels out of range)" % (
            path, i, int(y[i]), num_classes,
            " and is not %d, the null class" % num_classes if null_ok else "", int(bad.sum())))


def load_real(path):
    """(x (N, S, S) float64 in [-1, 1], labels (N,) int64) from digits.py's or mnist.py's
    format-1 file."""
    with _open(path) as f:
        fmt = attr_value(f.attrs.get("format"))
        if fmt != DATA_FORMAT:
            hint = (" (that is a samples file: pass it as --samples)"
                    if fmt == SAMPLES_FORMAT else "")
            raise EvalError("%s: root attribute format is %r, expected %r (the file written by "
                            "data-prep/digits.py)%s" % (path, fmt, DATA_FORMAT, hint))
        if "latents" not in f or "labels" not in f:
            raise EvalError("%s: needs /latents and /labels (data-prep/digits.py writes them)"
                            % path)
        x = f["latents"][...]
        y = f["labels"][...]
    if x.ndim != 4 or x.shape[1] != 1 or x.shape[2] != x.shape[3] or x.shape[2] < 2:
        raise EvalError("%s: /latents has shape %s, expected (N, 1, S, S) (digits in pixel "
                        "space, e.g. 8x8 or 28x28)" % (path, x.shape))
    _check_labels(path, y, x.shape[0], 10)
    if np.unique(y).size != 10:
        raise EvalError("%s: not every digit 0..9 is present" % path)
    return x[:, 0].astype(np.float64), y.astype(np.int64)


def load_samples(paths, size):
    """(x (N, size, size) float64, labels (N,) int64, attrs of the first file)."""
    xs, ys, attrs = [], [], None
    for path in paths:
        with _open(path) as f:
            fmt = attr_value(f.attrs.get("format"))
            if fmt != SAMPLES_FORMAT:
                hint = (" (that is a training dataset: pass it as --real)"
                        if fmt == DATA_FORMAT else "")
                raise EvalError("%s: root attribute format is %r, expected %r (a file written "
                                "by `sddit sample`)%s" % (path, fmt, SAMPLES_FORMAT, hint))
            ver = attr_value(f.attrs.get("format_version"))
            if ver != 1:
                raise EvalError("%s: format_version is %r, this tool reads version 1" % (
                    path, ver))
            if "samples" not in f or "labels" not in f:
                raise EvalError("%s: needs /samples and /labels" % path)
            x = f["samples"][...]
            y = f["labels"][...]
            a = {k: _jsonable(v) for k, v in f.attrs.items()}
        if x.ndim != 4 or x.shape[1:] != (1, size, size):
            raise EvalError("%s: /samples has shape %s, expected (N, 1, %d, %d) like the real "
                            "digits (is this a sample of a model of that dataset?)" % (
                                path, x.shape, size, size))
        if x.shape[0] == 0:
            raise EvalError("%s: /samples is empty" % path)
        nc = a.get("num_classes")
        if nc is not None and nc != 10:
            raise EvalError("%s: num_classes is %r, the digits have 10" % (path, nc))
        _check_labels(path, y, x.shape[0], 10, null_ok=True)
        bad = ~np.isfinite(x)
        if bad.any():
            i = int(np.argwhere(bad)[0][0])
            raise EvalError("%s: %d of %d samples hold non-finite values (first: sample %d)" % (
                path, int(bad.reshape(len(x), -1).any(1).sum()), len(x), i))
        xs.append(x[:, 0].astype(np.float64))
        ys.append(y.astype(np.int64))
        attrs = attrs if attrs is not None else a
    return np.concatenate(xs), np.concatenate(ys), attrs


def split(labels, seed, frac=0.25):
    """Indices (train, held_out): per class, the first round(frac * n_c) of that class in the
    order of numpy default_rng(seed).permutation(N) are held out."""
    perm = np.random.default_rng(seed).permutation(labels.size)
    held = []
    for c in range(10):
        idx = perm[labels[perm] == c]
        held.append(idx[:int(round(frac * idx.size))])
    held = np.sort(np.concatenate(held))
    train = np.setdiff1d(np.arange(labels.size), held)
    return train, held


def features_in(x):
    """Classifier input: clipped pixels as (x + 1) / 2 in [0, 1], flattened to S*S values."""
    return ((np.clip(x, -1.0, 1.0) + 1.0) * 0.5).reshape(len(x), -1)


def train_classifier(X, y, seed):
    from sklearn.neural_network import MLPClassifier
    from sklearn.exceptions import ConvergenceWarning
    clf = MLPClassifier(hidden_layer_sizes=(HIDDEN,), activation="relu", solver="adam",
                        alpha=1e-4, max_iter=2000, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    return clf


def train_others(X, y):
    """The two classifiers that share nothing with the MLP: an RBF SVC and 5-NN."""
    from sklearn.svm import SVC
    from sklearn.neighbors import KNeighborsClassifier
    return {"svc": SVC().fit(X, y), "knn": KNeighborsClassifier(NEIGHBOURS).fit(X, y)}


def hidden(clf, X):
    """The MLP's hidden-layer activations, from its coefs_ and intercepts_."""
    z = X @ clf.coefs_[0] + clf.intercepts_[0]
    act = clf.activation
    if act == "relu":
        return np.maximum(z, 0.0)
    if act == "tanh":
        return np.tanh(z)
    if act == "logistic":
        return 1.0 / (1.0 + np.exp(-z))
    if act == "identity":
        return z
    raise EvalError("unknown MLP activation %r" % act)


def _eig_sqrtm_trace(s1, s2):
    """Tr(sqrt(S1 S2)) from eigendecompositions: S1 S2 is similar to the symmetric positive
    semi-definite A = S1^(1/2) S2 S1^(1/2), so the trace is the sum of sqrt(eig(A))."""
    w, v = np.linalg.eigh(s1)
    r = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    ev = np.linalg.eigvalsh(r @ s2 @ r)
    return float(np.sqrt(np.clip(ev, 0.0, None)).sum())


def _sqrtm_trace(s1, s2):
    """Tr(sqrt(S1 S2)) for symmetric positive semi-definite S1, S2; (value, method)."""
    try:
        import scipy.linalg
    except ImportError:
        return _eig_sqrtm_trace(s1, s2), "eigendecomposition"
    with warnings.catch_warnings():  # a singular product only warns; checked below
        warnings.simplefilter("ignore")
        covmean = scipy.linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():  # near-singular product: offset both diagonals
            off = np.eye(s1.shape[0]) * 1e-6
            covmean = scipy.linalg.sqrtm((s1 + off) @ (s2 + off))
    if not np.isfinite(covmean).all():
        return _eig_sqrtm_trace(s1, s2), "eigendecomposition (sqrtm failed)"
    if np.iscomplexobj(covmean):  # rounding leaves tiny imaginary parts
        imag = np.abs(np.diagonal(covmean).imag).max()
        if imag > 1e-3 * max(1.0, np.abs(covmean.real).max()):
            return _eig_sqrtm_trace(s1, s2), "eigendecomposition (sqrtm complex)"
        covmean = covmean.real
    return float(np.trace(covmean)), "scipy.linalg.sqrtm"


def frechet(f1, f2):
    """Frechet distance between Gaussians fitted to feature rows f1 and f2; (fd, method)."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1 = np.cov(f1, rowvar=False)
    s2 = np.cov(f2, rowvar=False)
    tr, how = _sqrtm_trace(s1, s2)
    d = mu1 - mu2
    fd = float(d @ d + np.trace(s1) + np.trace(s2) - 2.0 * tr)
    return max(fd, 0.0), how


def to_u8(x):
    """Clipped pixels in [-1, 1] -> 0..255 (v = (x + 1) * 8 in 0..16, times 255 / 16)."""
    return np.round((np.clip(x, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def grid_png(x, y, path, per_class, scale):
    """Row c: the first per_class samples of class c, upscaled, 1-px separators, and an 11th row
    for null-class (unconditional) samples if there are any; (w, h)."""
    from PIL import Image
    counts = np.bincount(y, minlength=11)
    rows = 11 if counts[10] else 10
    cols = int(max(1, min(per_class, counts.max())))
    size = x.shape[1]
    cell = size * scale
    w = cols * cell + cols + 1
    h = rows * cell + rows + 1
    img = np.full((h, w), SEPARATOR, dtype=np.uint8)
    u8 = to_u8(x)
    for c in range(rows):
        for j, i in enumerate(np.flatnonzero(y == c)[:cols]):
            t, l = 1 + c * (cell + 1), 1 + j * (cell + 1)
            img[t:t + cell, l:l + cell] = np.kron(u8[i], np.ones((scale, scale), np.uint8))
    Image.fromarray(img, mode="L").save(path)
    return w, h


def parse_args(argv):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--real", required=True,
                   help="the real digits (data-prep/digits.py or data-prep/mnist.py)")
    p.add_argument("--samples", required=True, nargs="+",
                   help="`sddit sample` output(s): /samples (N, 1, S, S), /labels")
    p.add_argument("--out", required=True, help="directory for metrics.json, samples_grid.png")
    p.add_argument("--seed", type=int, default=0, help="the classifier's random_state (0)")
    p.add_argument("--split-seed", type=int, default=0,
                   help="seed of the held-out split's permutation (0)")
    p.add_argument("--per-class", type=int, default=10, help="grid columns per class (10)")
    p.add_argument("--scale", type=int, default=None,
                   help="grid upscaling factor (default: 4 for 8x8, 1 from 28x28 on)")
    p.add_argument("--goal-accuracy", type=float, default=0.95,
                   help="the goal line's accuracy for every classifier (0.95)")
    p.add_argument("--goal-fd-ratio", type=float, default=2.0,
                   help="the goal line's FD limit, as a multiple of the floor (2)")
    a = p.parse_args(argv)
    if a.per_class < 1 or (a.scale is not None and a.scale < 1):
        p.error("--per-class and --scale must be at least 1")
    return a


def run(args):
    xr, yr = load_real(args.real)
    size = xr.shape[1]
    xs, ys, sattrs = load_samples(args.samples, size)
    scale = args.scale if args.scale is not None else max(1, 32 // size)
    if ys.size < 2:
        raise EvalError("%d sample: the FD needs at least 2" % ys.size)
    tr, ho = split(yr, args.split_seed)
    Xr, Xs = features_in(xr), features_in(xs)
    clf = train_classifier(Xr[tr], yr[tr], args.seed)
    held_acc = float((clf.predict(Xr[ho]) == yr[ho]).mean())
    others = train_others(Xr[tr], yr[tr])

    pred = clf.predict(Xs)
    cond = ys < 10  # label 10: the null class (unconditional samples): no accuracy, FD only
    ok = pred[cond] == ys[cond]
    counts = np.bincount(ys, minlength=11)
    n_null = int(counts[10])
    acc = float(ok.mean()) if ok.size else None
    per_class = {str(c): (float((pred[ys == c] == c).mean()) if counts[c] else None)
                 for c in range(10)}
    conf = np.zeros((10, 10), dtype=np.int64)
    np.add.at(conf, (ys[cond], pred[cond]), 1)
    # every classifier: held-out real accuracy, accuracy on the (conditional) samples
    accs = {"mlp": {"held_out_accuracy": held_acc, "accuracy": acc}}
    for name, c in others.items():
        accs[name] = {"held_out_accuracy": float((c.predict(Xr[ho]) == yr[ho]).mean()),
                      "accuracy": (float((c.predict(Xs[cond]) == ys[cond]).mean())
                                   if cond.any() else None)}
    acc_min = min(v["accuracy"] for v in accs.values()) if cond.any() else None

    hr, hs = hidden(clf, Xr), hidden(clf, Xs)
    fd, how = frechet(hr, hs)
    fd_kind = None
    if n_null and cond.any():
        fd_kind = {k: (frechet(hr, hs[sel])[0] if sel.sum() > 1 else None)
                   for k, sel in (("conditional", cond), ("unconditional", ~cond))}
    fd_ref, _ = frechet(hr[tr], hr[ho])
    # FD's estimation bias grows like 1/N1 + 1/N2 (exactly so for the mean term): the floor
    # that real digits would reach at the sizes of this comparison, to first order
    fd_ref_n = fd_ref * (1.0 / ys.size + 1.0 / yr.size) / (1.0 / ho.size + 1.0 / tr.size)
    # pixel space: the grey levels (x + 1) * 8 projected on the real digits' first 64 principal
    # components (an orthogonal rotation of all pixels when S*S <= 64: the plain pixel FD)
    pr, ps = (np.clip(xr, -1, 1) + 1).reshape(len(xr), -1) * PIXEL_SCALE, \
        (np.clip(xs, -1, 1) + 1).reshape(len(xs), -1) * PIXEL_SCALE
    mu = pr.mean(0)
    basis = np.linalg.svd(pr - mu, full_matrices=False)[2][:64].T  # (S*S, <= 64)
    qr, qs = (pr - mu) @ basis, (ps - mu) @ basis
    fd_pix, _ = frechet(qr, qs)
    fd_pix_ref, _ = frechet(qr[tr], qr[ho])
    fd_pix_ref_n = fd_pix_ref * (1.0 / ys.size + 1.0 / yr.size) / (1.0 / ho.size + 1.0 / tr.size)
    goal = {"accuracy_min": acc_min, "fd_ratio": fd / fd_ref_n if fd_ref_n > 0 else None,
            "fd_pixels_ratio": fd_pix / fd_pix_ref_n if fd_pix_ref_n > 0 else None,
            "goal_accuracy": args.goal_accuracy, "goal_fd_ratio": args.goal_fd_ratio}
    goal["met"] = bool(acc_min is not None and acc_min >= args.goal_accuracy and
                       goal["fd_ratio"] is not None and goal["fd_ratio"] <= args.goal_fd_ratio
                       and goal["fd_pixels_ratio"] is not None
                       and goal["fd_pixels_ratio"] <= args.goal_fd_ratio)
    clipped = float((np.abs(xs) > 1.0).mean())
    far = float((np.abs(xs) > 1.0 + 1.0 / 16).mean())  # by more than half a level of v

    os.makedirs(args.out, exist_ok=True)
    grid = os.path.join(args.out, "samples_grid.png")
    gw, gh = grid_png(xs, ys, grid, args.per_class, scale)
    m = {
        "real": os.path.abspath(args.real),
        "samples": [os.path.abspath(s) for s in args.samples],
        "sample_attrs": sattrs,
        "num_samples": int(ys.size),
        "samples_per_class": counts[:10].tolist(),
        "num_unconditional": n_null,
        "classifier": {
            "model": "sklearn MLPClassifier(hidden_layer_sizes=(%d,), activation='relu', "
                     "solver='adam', alpha=1e-4, max_iter=2000, random_state=%d)"
                     % (HIDDEN, args.seed),
            "input": "(clip(x, -1, 1) + 1) / 2, %d pixels" % (size * size),
            "split": "per class, 25%% held out by numpy default_rng(%d).permutation"
                     % args.split_seed,
            "train_size": int(tr.size), "held_out_size": int(ho.size),
            "held_out_accuracy": held_acc,
            "iterations": int(clf.n_iter_),
        },
        "accuracy": acc,
        "accuracy_by_classifier": accs,
        "classifiers": {"mlp": "the classifier above", "svc": "sklearn SVC() (RBF, C=1, "
                        "gamma='scale')", "knn": "sklearn KNeighborsClassifier(%d)" % NEIGHBOURS},
        "accuracy_per_class": per_class,
        "confusion": {"rows": "conditioning class", "columns": "predicted class",
                      "matrix": conf.tolist()},
        "fd": fd,
        "fd_reference": fd_ref,
        "fd_reference_at_n": fd_ref_n,
        "fd_by_kind": fd_kind,
        "fd_pixels": fd_pix,
        "fd_pixels_reference": fd_pix_ref,
        "fd_pixels_reference_at_n": fd_pix_ref_n,
        "fd_pixels_details": "grey levels (clip(x, -1, 1) + 1) * %g on the real digits' first "
                             "%d principal components; floors as for fd" % (PIXEL_SCALE,
                                                                           basis.shape[1]),
        "goal": goal,
        "fd_details": {
            "features": "the classifier's %d hidden-layer activations" % HIDDEN,
            "fd": "all %d real digits vs the %d samples (conditional and unconditional "
                  "alike; fd_by_kind separates them when both are present)" % (yr.size, ys.size),
            "fd_reference": "held-out real (%d) vs training real (%d): the floor that finite "
                            "real sets reach; it grows as the sets shrink" % (ho.size, tr.size),
            "fd_reference_at_n": "fd_reference x (1/%d + 1/%d) / (1/%d + 1/%d): the real-vs-real "
                                 "floor scaled to these set sizes (FD's bias grows like "
                                 "1/N1 + 1/N2)" % (ys.size, yr.size, ho.size, tr.size),
            "sqrt": how,
        },
        "sample_pixels": {"min": float(xs.min()), "max": float(xs.max()),
                          "mean": float(xs.mean()), "fraction_clipped": clipped,
                          "fraction_clipped_by_half_a_level": far},
        "grid": {"path": os.path.abspath(grid), "width": gw, "height": gh,
                 "per_class": args.per_class, "scale": scale},
    }
    mpath = os.path.join(args.out, "metrics.json")
    with open(mpath + ".tmp", "w") as f:
        json.dump(m, f, indent=2)
        f.write("\n")
    os.replace(mpath + ".tmp", mpath)

    print("%s: %d samples (%s); classifier: %d-unit MLP, held-out real accuracy %.1f%% (%d)" % (
        PROG, ys.size, ", ".join(args.samples), HIDDEN, 100 * held_acc, ho.size))
    print("  class " + " ".join("%6d" % c for c in range(10)) + "    all")
    print("  n     " + " ".join("%6d" % n for n in counts[:10]) + " %6d" % int(cond.sum()))
    pct = ["-" if v is None else "%.1f" % (100 * v)
           for v in [per_class[str(c)] for c in range(10)] + [acc]]
    print("  acc %  " + " ".join("%6s" % v for v in pct))
    print("  accuracy by classifier (held-out real in brackets): " + ", ".join(
        "%s %s (%.1f%%)" % (k, "-" if v["accuracy"] is None else "%.1f%%" % (100 * v["accuracy"]),
                           100 * v["held_out_accuracy"]) for k, v in accs.items()))
    if n_null:
        print("  %d unconditional (null-class) samples: in the FD and the grid's last row, not in "
              "the accuracy" % n_null)
    print("  FD (classifier features): samples vs real %.4g; real vs real: held-out vs train "
          "%.4g, scaled to %d samples %.4g" % (fd, fd_ref, ys.size, fd_ref_n))
    print("  FD (pixels, %d principal components): samples vs real %.4g; real vs real scaled to "
          "%d samples %.4g" % (basis.shape[1], fd_pix, ys.size, fd_pix_ref_n))
    if fd_kind:
        print("  FD of the conditional samples alone %s, of the unconditional ones %s" % tuple(
            "-" if v is None else "%.4g" % v for v in (fd_kind["conditional"],
                                                        fd_kind["unconditional"])))
    if clipped:
        print("  %.2f%% of the generated pixels were outside [-1, 1] and clipped (%.2f%% by more "
              "than half a grey level, 1/16)" % (100 * clipped, 100 * far))
    print("  wrote %s and %s (%d x %d)" % (mpath, grid, gw, gh))
    fmt = lambda v: "-" if v is None else "%.2f" % v  # noqa: E731
    print("  goal (every classifier >= %.0f%%, both FDs <= %gx their floor): %s | lowest "
          "accuracy %s%%, FD %sx floor, pixel FD %sx floor" % (
              100 * args.goal_accuracy, args.goal_fd_ratio, "MET" if goal["met"] else "not met",
              "-" if acc_min is None else "%.1f" % (100 * acc_min), fmt(goal["fd_ratio"]),
              fmt(goal["fd_pixels_ratio"])))
    return 0


def main(argv):
    args = parse_args(argv)
    try:
        return run(args)
    except EvalError as e:
        print("%s: error: %s" % (PROG, e), file=sys.stderr)
        return 1
    except ImportError as e:
        print("%s: error: %s (run launch/install-deps.sh)" % (PROG, e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
