#!/usr/bin/python3
"""FID, sFID, Inception Score, precision and recall of a sample batch against a reference batch.

  data-prep/fid_eval.py --ref REF.npz --samples SAMPLES.npz --inception WEIGHTS.pth \\
      [--out metrics.json] [--device cpu|cuda|cuda:N] [--batch-size 50] [--cache-dir DIR]
  data-prep/fid_eval.py --check --ref REF.npz --inception WEIGHTS.pth   (validate inputs only)

Both batches are in the ADM evaluator's layout: an .npz whose arr_0 is uint8 (N, H, W, 3)
(decode_latents.py --npz writes it; arr_0 is streamed, so 50,000 images need one batch of
memory). The reference may also carry mu, sigma (pool features) and mu_s, sigma_s (spatial
features) as ADM's reference batches do (VIRTUAL_imagenet256_labeled.npz): FID and sFID then use
them; precision and recall always need the reference images (arr_0).

The network is Inception-v3 as in the 2015-12-05 TensorFlow graph used for FID, built here in
torch with torchvision's parameter names so that the usual PyTorch port of that graph
(pt_inception-2015-12-05-*.pth: 1008-way fc, no auxiliary head) loads strictly:
  - images are scaled to [-1, 1] (x / 127.5 - 1) and resized to 299 x 299 bilinearly
    (align_corners=False);
  - the pool branches of Mixed_5b-d, Mixed_6b-e and Mixed_7b are 3x3 average pools that
    exclude the padding from the mean; Mixed_7c's is a 3x3 max pool;
  - pool features: the 2048 values after the final global average pool (TF "pool_3");
  - spatial features (sFID): TF's "mixed_6/conv" tensor, i.e. the ReLU output of the 1x1 branch
    of the 7th mixed block (mixed, mixed_1, ... mixed_6 = torchvision's Mixed_6d), 17 x 17 x
    192; its first 7 channels flattened in (height, width, channel) order: 2023 values;
  - Inception Score: softmax over all 1008 outputs of pool @ fc.weight^T, without fc's bias
    (what ADM's evaluator computes), averaged over splits of 5000 samples (ADM's split size:
    10 splits for 50,000; the last split may be smaller; fewer samples make one split).
FID and sFID are Frechet distances |mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2))
between Gaussians fitted in float64 (np.cov, N - 1); Tr((S1 S2)^(1/2)) is the sum of the
singular values of F1^T F2 for factors S = F F^T (pivoted Cholesky through scipy's LAPACK,
else symmetric eigendecomposition square roots): real, no square root of a non-symmetric
matrix, and exact to rounding even for the rank-deficient covariances of fewer samples than
dimensions. Precision and recall follow
Kynkaanniemi et al. 2019 with k = 3 as ADM does: a sample lies on the reference manifold when
it is within the distance from some reference image to that image's 3rd nearest reference
neighbour (the image itself not counted); precision = the fraction of samples on the reference
manifold, recall = the fraction of reference images on the sample manifold. Distances are
squared Euclidean in float32 on the device, from features centred on the reference mean.

The reference's features are cached (--cache-dir, default: the directory of --out) keyed by the
reference file (path, size, modification time) and the weights' SHA-256, so a second
evaluation against the same reference computes only the samples' features. Writes --out (JSON,
every number and the inputs) and prints a table.
"""
import argparse
import hashlib
import json
import os
import sys
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
from progress import Progress  # noqa: E402

PROG = "fid_eval.py"
FEATURE_VERSION = 1      # bump when the features change (invalidates caches)
NUM_LOGITS = 1008
POOL_DIM = 2048
SPATIAL_CHANNELS = 7
SPATIAL_DIM = 17 * 17 * SPATIAL_CHANNELS  # 2023
IS_SPLIT_SIZE = 5000
PR_K = 3


class EvalError(Exception):
    """A problem with the inputs or the command; printed as one message."""


# ------------------------------------------------------------------------------- the network

def _nn():
    import torch.nn as nn
    return nn


def make_inception():
    """The FID Inception-v3 (torchvision parameter names, no auxiliary head), in eval mode."""
    import torch
    import torch.nn.functional as F
    nn = _nn()

    class Unit(nn.Module):
        """conv (no bias) -> batch norm (eps 1e-3) -> ReLU."""

        def __init__(self, cin, cout, k, stride=1, pad=0):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad, bias=False)
            self.bn = nn.BatchNorm2d(cout, eps=0.001)

        def forward(self, x):
            return F.relu(self.bn(self.conv(x)))

    def avg3(x):  # the mean over the window's in-image positions only
        return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)

    class BlockA(nn.Module):  # 35 x 35: Mixed_5b, 5c, 5d
        def __init__(self, cin, pool_features):
            super().__init__()
            self.branch1x1 = Unit(cin, 64, 1)
            self.branch5x5_1 = Unit(cin, 48, 1)
            self.branch5x5_2 = Unit(48, 64, 5, pad=2)
            self.branch3x3dbl_1 = Unit(cin, 64, 1)
            self.branch3x3dbl_2 = Unit(64, 96, 3, pad=1)
            self.branch3x3dbl_3 = Unit(96, 96, 3, pad=1)
            self.branch_pool = Unit(cin, pool_features, 1)

        def forward(self, x):
            a = self.branch1x1(x)
            b = self.branch5x5_2(self.branch5x5_1(x))
            c = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            return torch.cat([a, b, c, self.branch_pool(avg3(x))], 1)

    class BlockB(nn.Module):  # 35 -> 17: Mixed_6a
        def __init__(self, cin):
            super().__init__()
            self.branch3x3 = Unit(cin, 384, 3, stride=2)
            self.branch3x3dbl_1 = Unit(cin, 64, 1)
            self.branch3x3dbl_2 = Unit(64, 96, 3, pad=1)
            self.branch3x3dbl_3 = Unit(96, 96, 3, stride=2)

        def forward(self, x):
            a = self.branch3x3(x)
            b = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            return torch.cat([a, b, F.max_pool2d(x, 3, stride=2)], 1)

    class BlockC(nn.Module):  # 17 x 17: Mixed_6b..6e (factorised 7x7)
        def __init__(self, cin, c7):
            super().__init__()
            self.branch1x1 = Unit(cin, 192, 1)
            self.branch7x7_1 = Unit(cin, c7, 1)
            self.branch7x7_2 = Unit(c7, c7, (1, 7), pad=(0, 3))
            self.branch7x7_3 = Unit(c7, 192, (7, 1), pad=(3, 0))
            self.branch7x7dbl_1 = Unit(cin, c7, 1)
            self.branch7x7dbl_2 = Unit(c7, c7, (7, 1), pad=(3, 0))
            self.branch7x7dbl_3 = Unit(c7, c7, (1, 7), pad=(0, 3))
            self.branch7x7dbl_4 = Unit(c7, c7, (7, 1), pad=(3, 0))
            self.branch7x7dbl_5 = Unit(c7, 192, (1, 7), pad=(0, 3))
            self.branch_pool = Unit(cin, 192, 1)
            self.tap = None  # set to a list to receive the 1x1 branch's output

        def forward(self, x):
            a = self.branch1x1(x)
            if self.tap is not None:
                self.tap.append(a)
            b = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            c = x
            for u in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                      self.branch7x7dbl_4, self.branch7x7dbl_5):
                c = u(c)
            return torch.cat([a, b, c, self.branch_pool(avg3(x))], 1)

    class BlockD(nn.Module):  # 17 -> 8: Mixed_7a
        def __init__(self, cin):
            super().__init__()
            self.branch3x3_1 = Unit(cin, 192, 1)
            self.branch3x3_2 = Unit(192, 320, 3, stride=2)
            self.branch7x7x3_1 = Unit(cin, 192, 1)
            self.branch7x7x3_2 = Unit(192, 192, (1, 7), pad=(0, 3))
            self.branch7x7x3_3 = Unit(192, 192, (7, 1), pad=(3, 0))
            self.branch7x7x3_4 = Unit(192, 192, 3, stride=2)

        def forward(self, x):
            a = self.branch3x3_2(self.branch3x3_1(x))
            b = x
            for u in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3,
                      self.branch7x7x3_4):
                b = u(b)
            return torch.cat([a, b, F.max_pool2d(x, 3, stride=2)], 1)

    class BlockE(nn.Module):  # 8 x 8: Mixed_7b (average pool), Mixed_7c (max pool)
        def __init__(self, cin, max_pool):
            super().__init__()
            self.max_pool = max_pool
            self.branch1x1 = Unit(cin, 320, 1)
            self.branch3x3_1 = Unit(cin, 384, 1)
            self.branch3x3_2a = Unit(384, 384, (1, 3), pad=(0, 1))
            self.branch3x3_2b = Unit(384, 384, (3, 1), pad=(1, 0))
            self.branch3x3dbl_1 = Unit(cin, 448, 1)
            self.branch3x3dbl_2 = Unit(448, 384, 3, pad=1)
            self.branch3x3dbl_3a = Unit(384, 384, (1, 3), pad=(0, 1))
            self.branch3x3dbl_3b = Unit(384, 384, (3, 1), pad=(1, 0))
            self.branch_pool = Unit(cin, 192, 1)

        def forward(self, x):
            a = self.branch1x1(x)
            b = self.branch3x3_1(x)
            b = torch.cat([self.branch3x3_2a(b), self.branch3x3_2b(b)], 1)
            c = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            c = torch.cat([self.branch3x3dbl_3a(c), self.branch3x3dbl_3b(c)], 1)
            p = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else avg3(x)
            return torch.cat([a, b, c, self.branch_pool(p)], 1)

    class InceptionFID(nn.Module):
        def __init__(self):
            super().__init__()
            self.Conv2d_1a_3x3 = Unit(3, 32, 3, stride=2)
            self.Conv2d_2a_3x3 = Unit(32, 32, 3)
            self.Conv2d_2b_3x3 = Unit(32, 64, 3, pad=1)
            self.Conv2d_3b_1x1 = Unit(64, 80, 1)
            self.Conv2d_4a_3x3 = Unit(80, 192, 3)
            self.Mixed_5b = BlockA(192, 32)
            self.Mixed_5c = BlockA(256, 64)
            self.Mixed_5d = BlockA(288, 64)
            self.Mixed_6a = BlockB(288)
            self.Mixed_6b = BlockC(768, 128)
            self.Mixed_6c = BlockC(768, 160)
            self.Mixed_6d = BlockC(768, 160)
            self.Mixed_6e = BlockC(768, 192)
            self.Mixed_7a = BlockD(768)
            self.Mixed_7b = BlockE(1280, max_pool=False)
            self.Mixed_7c = BlockE(2048, max_pool=True)
            self.fc = nn.Linear(POOL_DIM, NUM_LOGITS)

        def forward(self, u8):
            """uint8 (b, H, W, 3) -> (pool (b, 2048), spatial (b, 2023)), float32."""
            x = u8.permute(0, 3, 1, 2).float() / 127.5 - 1.0
            if tuple(x.shape[2:]) != (299, 299):
                x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
            x = F.max_pool2d(x, 3, stride=2)
            x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
            x = F.max_pool2d(x, 3, stride=2)
            tap = []
            self.Mixed_6d.tap = tap
            for m in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                      self.Mixed_7c):
                x = m(x)
            self.Mixed_6d.tap = None
            pool = x.mean(dim=(2, 3))
            spatial = tap[0][:, :SPATIAL_CHANNELS].permute(0, 2, 3, 1).reshape(x.shape[0], -1)
            return pool, spatial

    return InceptionFID().eval()


def init_random(model, seed):
    """Random weights that keep activations O(1) (He-normal convs, identity batch norms with
    small random shifts): for tests, never for real numbers."""
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("conv.weight"):
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif name.endswith("bn.weight") or name.endswith("bn.running_var"):
                p.fill_(1.0)
            elif name.endswith("bn.bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bn.running_mean"):
                p.zero_()
            elif name == "fc.weight":
                p.copy_(torch.randn(p.shape, generator=g) / POOL_DIM ** 0.5)
            elif name == "fc.bias":
                p.zero_()
    return model


def _optional_key(name):
    return name.endswith("num_batches_tracked")  # absent from older state dicts


def load_weights(model, path):
    """Loads the state dict at path strictly (every key present, no others, shapes equal);
    an EvalError names the first problem. Returns the file's SHA-256."""
    import torch
    if not os.path.isfile(path):
        raise EvalError("--inception %s: no such file" % path)
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    try:
        sd = torch.load(path, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for damaged files
        raise EvalError("--inception %s: cannot load as a PyTorch state dict (truncated or not "
                        "a .pth?): %s: %s" % (path, type(e).__name__, str(e).split("\n")[0]))
    if not isinstance(sd, dict):
        raise EvalError("--inception %s holds a %s, not a state dict (a dict of tensors)" % (
            path, type(sd).__name__))
    want = {k: v for k, v in model.state_dict().items()}
    missing = [k for k in want if k not in sd and not _optional_key(k)]
    unexpected = [k for k in sd if k not in want]
    hint = (" (expected the FID Inception-v3 port: torchvision Inception3 names, 1008-way fc, "
            "no AuxLogits)")
    if missing:
        raise EvalError("--inception %s: missing key '%s'%s%s" % (
            path, missing[0], " and %d more" % (len(missing) - 1) if len(missing) > 1 else "",
            hint))
    if unexpected:
        raise EvalError("--inception %s: unexpected key '%s'%s%s" % (
            path, unexpected[0],
            " and %d more" % (len(unexpected) - 1) if len(unexpected) > 1 else "", hint))
    clean = {}
    for k, ref in want.items():
        if k not in sd:
            clean[k] = ref
            continue
        v = sd[k]
        if not torch.is_tensor(v):
            raise EvalError("--inception %s: '%s' is a %s, not a tensor" % (
                path, k, type(v).__name__))
        if tuple(v.shape) != tuple(ref.shape):
            raise EvalError("--inception %s: '%s' has shape %s, expected %s%s" % (
                path, k, tuple(v.shape), tuple(ref.shape), hint))
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise EvalError("--inception %s: '%s' holds non-finite values" % (path, k))
        clean[k] = v.to(ref.dtype)
    model.load_state_dict(clean, strict=True)
    return sha.hexdigest()


# ----------------------------------------------------------------------------- the batches

class Batch:
    """An ADM .npz: arr_0 (streamed, uint8 (N, H, W, 3)) and the optional statistics."""

    STATS = ("mu", "sigma", "mu_s", "sigma_s")

    def __init__(self, path, what):
        self.path, self.what = path, what
        if not os.path.isfile(path):
            raise EvalError("%s %s: no such file" % (what, path))
        if not zipfile.is_zipfile(path):
            raise EvalError("%s %s: not an .npz (zip) file; expected the ADM layout (arr_0 "
                            "uint8 (N, H, W, 3))" % (what, path))
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
        self.members = sorted(n[:-4] for n in names if n.endswith(".npy"))
        self.n = 0
        self.shape = None
        if "arr_0.npy" in names:
            self._read_header()
        self.stats = self._read_stats()
        if self.shape is None and self.stats.get("mu") is None:
            raise EvalError("%s %s has no arr_0 (members: %s); expected arr_0 = uint8 images "
                            "(N, H, W, 3)" % (what, path, ", ".join(self.members) or "none"))

    def _read_header(self):
        with zipfile.ZipFile(self.path) as zf, zf.open("arr_0.npy") as fp:
            shape, fortran, dtype = self._header(fp)
        if dtype != np.uint8 or len(shape) != 4 or shape[3] != 3 or fortran:
            raise EvalError("%s %s: arr_0 is %s %s%s; expected uint8 (N, H, W, 3) images as the "
                            "ADM evaluator reads them" % (
                                self.what, self.path, dtype, shape,
                                " (Fortran order)" if fortran else ""))
        if shape[0] < 1:
            raise EvalError("%s %s: arr_0 holds no images" % (self.what, self.path))
        self.n, self.shape = int(shape[0]), tuple(int(s) for s in shape)

    def _header(self, fp):
        """Reads arr_0.npy's magic and header from fp: (shape, fortran_order, dtype)."""
        try:
            version = np.lib.format.read_magic(fp)
            if version == (1, 0):
                return np.lib.format.read_array_header_1_0(fp)
            if version == (2, 0):
                return np.lib.format.read_array_header_2_0(fp)
            raise ValueError("npy format version %s" % (version,))
        except ValueError as e:
            raise EvalError("%s %s: arr_0 is not a readable .npy (%s)" % (
                self.what, self.path, e)) from None

    def _read_stats(self):
        present = [k for k in self.STATS if k in self.members]
        if not present:
            return {}
        with np.load(self.path) as d:
            st = {k: np.asarray(d[k], dtype=np.float64) for k in present}
        for mu, sig, dim in (("mu", "sigma", POOL_DIM), ("mu_s", "sigma_s", SPATIAL_DIM)):
            if (mu in st) != (sig in st):
                raise EvalError("%s %s has %s but not %s" % (
                    self.what, self.path, mu if mu in st else sig, sig if mu in st else mu))
            if mu in st:
                if st[mu].shape != (dim,) or st[sig].shape != (dim, dim):
                    raise EvalError("%s %s: %s %s and %s %s; expected (%d,) and (%d, %d)" % (
                        self.what, self.path, mu, st[mu].shape, sig, st[sig].shape, dim, dim,
                        dim))
                if not (np.isfinite(st[mu]).all() and np.isfinite(st[sig]).all()):
                    raise EvalError("%s %s: %s or %s holds non-finite values" % (
                        self.what, self.path, mu, sig))
        return st

    def batches(self, size):
        """Yields uint8 (b, H, W, 3) arrays in order."""
        row = int(np.prod(self.shape[1:]))
        with zipfile.ZipFile(self.path) as zf, zf.open("arr_0.npy") as fp:
            self._header(fp)
            for i0 in range(0, self.n, size):
                b = min(size, self.n - i0)
                buf = fp.read(b * row)
                if len(buf) != b * row:
                    raise EvalError("%s %s: arr_0 ends after %d of %d images (truncated)" % (
                        self.what, self.path, i0 + len(buf) // row, self.n))
                yield np.frombuffer(buf, np.uint8).reshape((b,) + self.shape[1:])


# ---------------------------------------------------------------------------- the features

def features(model, batch, device, batch_size, label):
    """(pool (N, 2048), spatial (N, 2023)) float32 of every image of batch, with progress."""
    import torch
    pools, spatials = [], []
    prog = Progress("%s: %s" % (PROG, label), batch.n)
    done = 0
    try:
        with torch.no_grad():
            for u8 in batch.batches(batch_size):
                p, s = model(torch.from_numpy(np.array(u8)).to(device))
                pools.append(p.cpu().numpy())
                spatials.append(s.cpu().numpy())
                done += u8.shape[0]
                prog.update(done)
        prog.update(done, force=True)
    finally:
        prog.end()
    pool, spatial = np.concatenate(pools), np.concatenate(spatials)
    for name, a in (("pool", pool), ("spatial", spatial)):
        bad = ~np.isfinite(a)
        if bad.any():
            raise EvalError("%s %s: image %d gives non-finite %s features (damaged weights?)" % (
                batch.what, batch.path, int(np.argwhere(bad)[0][0]), name))
    return pool, spatial


def cache_key(ref_path, weights_sha):
    st = os.stat(ref_path)
    return {"ref": os.path.realpath(ref_path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "inception_sha256": weights_sha, "feature_version": FEATURE_VERSION}


def cache_path(cache_dir, key):
    h = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    base = os.path.splitext(os.path.basename(key["ref"]))[0]
    return os.path.join(cache_dir, "ref_features_%s_%s.npz" % (base, h))


def cache_load(path, key, n):
    """(pool, spatial) from a cache file made for key, else None."""
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path) as d:
            if json.loads(str(d["key"])) != key:
                return None
            pool, spatial = d["pool"], d["spatial"]
    except Exception as e:  # noqa: BLE001 - a damaged cache is recomputed
        print("%s: warning: ignoring the damaged cache %s (%s)" % (PROG, path, e),
              file=sys.stderr)
        return None
    if pool.shape != (n, POOL_DIM) or spatial.shape != (n, SPATIAL_DIM):
        return None
    return pool, spatial


def cache_save(path, key, pool, spatial):
    tmp = path + ".partial.npz"
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    np.savez(tmp, key=np.array(json.dumps(key, sort_keys=True)), pool=pool, spatial=spatial)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------- the metrics

def gaussian(feats):
    """(mean, covariance) in float64 of feature rows."""
    f = np.asarray(feats, dtype=np.float64)
    if f.shape[0] < 2:
        raise EvalError("a covariance needs at least 2 images, got %d" % f.shape[0])
    return f.mean(0), np.cov(f, rowvar=False)


def psd_factor(s, method="auto"):
    """F with F F^T = S for a symmetric positive semi-definite S: a pivoted Cholesky factor
    (LAPACK dpstrf through scipy, rank-revealing: F has rank(S) columns), or without scipy the
    symmetric square root from an eigendecomposition (negative rounding-error eigenvalues
    set to 0; also method="eigh")."""
    s = (s + s.T) / 2.0
    try:
        from scipy.linalg import lapack
    except ImportError:
        method = "eigh"
    if method == "eigh":
        w, v = np.linalg.eigh(s)
        return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    c, piv, rank, info = lapack.dpstrf(s, lower=1)
    if info < 0:
        raise EvalError("pivoted Cholesky failed (LAPACK dpstrf info %d)" % info)
    f = np.zeros((s.shape[0], rank))
    f[piv - 1] = np.tril(c)[:, :rank]  # S = P L L^T P^T
    return f


def trace_sqrt_product(s1, s2, method="auto"):
    """Tr((S1 S2)^(1/2)) = the sum of the singular values of F1^T F2 for factors S = F F^T:
    the non-zero eigenvalues of S1 S2 = F1 F1^T F2 F2^T are those of (F1^T F2)(F1^T F2)^T."""
    f1, f2 = psd_factor(s1, method), psd_factor(s2, method)
    if f1.shape[1] == 0 or f2.shape[1] == 0:
        return 0.0
    return float(np.linalg.svd(f1.T @ f2, compute_uv=False).sum())


def frechet_distance(mu1, s1, mu2, s2):
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(s1, np.float64), np.asarray(s2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
        raise EvalError("Frechet distance of mismatched statistics: mu %s / %s, sigma %s / %s"
                        % (mu1.shape, mu2.shape, s1.shape, s2.shape))
    d = mu1 - mu2
    fd = float(d @ d + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt_product(s1, s2))
    return max(fd, 0.0)


def logits_of(pool, fc_weight):
    """pool (N, 2048) @ fc.weight^T in float64 (no bias), as ADM's evaluator scores IS."""
    return np.asarray(pool, np.float64) @ np.asarray(fc_weight, np.float64).T


def inception_score(logits, split_size=IS_SPLIT_SIZE):
    """(mean, std over splits, number of splits) of exp(E_x KL(p(y|x) || p(y))) per split."""
    logits = np.asarray(logits, np.float64)
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    scores = []
    for i in range(0, logp.shape[0], split_size):
        lp = logp[i:i + split_size]
        p = np.exp(lp)
        log_py = np.log(p.mean(0))
        scores.append(float(np.exp((p * (lp - log_py)).sum(1).mean())))
    return float(np.mean(scores)), float(np.std(scores)), len(scores)


class Manifold:
    """Squared distances between float32 feature rows, in blocks on a torch device."""

    def __init__(self, device, centre, block_elems=1 << 25):
        import torch
        self.torch, self.device, self.block_elems = torch, device, block_elems
        self.centre = torch.as_tensor(np.asarray(centre, np.float32), device=device)

    def rows(self, feats):
        t = self.torch.as_tensor(np.asarray(feats, np.float32), device=self.device) - self.centre
        return t, (t * t).sum(1)

    def blocks(self, a, b):
        """Yields (i0, i1, squared distances (i1 - i0, len(b))) over row blocks of a."""
        (ta, na), (tb, nb) = a, b
        step = max(1, self.block_elems // max(1, tb.shape[0]))
        for i0 in range(0, ta.shape[0], step):
            x = ta[i0:i0 + step]
            d = na[i0:i0 + step, None] + nb[None, :] - 2.0 * (x @ tb.T)
            yield i0, i0 + x.shape[0], d.clamp_min_(0.0)

    def radii(self, a, k):
        """Squared distance from every row of a to its k-th nearest other row of a."""
        out = self.torch.empty(a[0].shape[0], device=self.device)
        for i0, i1, d in self.blocks(a, a):
            out[i0:i1] = self.torch.kthvalue(d, k + 1, dim=1).values  # index 0: the row itself
        return out

    def coverage(self, a, b, radii_b):
        """Fraction of rows of a within radii_b of some row of b."""
        inside = 0
        for _, _, d in self.blocks(a, b):
            inside += int((d <= radii_b[None, :]).any(1).sum())
        return inside / a[0].shape[0]


def precision_recall(sample_pool, ref_pool, device="cpu", k=PR_K):
    """(precision, recall) of samples against references (Kynkaanniemi et al. 2019)."""
    if sample_pool.shape[0] <= k or ref_pool.shape[0] <= k:
        raise EvalError("precision/recall with k = %d need more than %d samples and reference "
                        "images (have %d and %d)" % (k, k, sample_pool.shape[0],
                                                      ref_pool.shape[0]))
    m = Manifold(device, np.asarray(ref_pool, np.float64).mean(0))
    s, r = m.rows(sample_pool), m.rows(ref_pool)
    precision = m.coverage(s, r, m.radii(r, k))
    recall = m.coverage(r, s, m.radii(s, k))
    return precision, recall


# ---------------------------------------------------------------------------------- the run

def pick_device(spec):
    import torch
    if spec in (None, "auto"):
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EvalError("--device %s: no CUDA device is visible to this torch %s (%s)" % (
                spec, torch.__version__, sys.executable))
        torch.backends.cudnn.allow_tf32 = False      # float32 convolutions and matmuls, so
        torch.backends.cuda.matmul.allow_tf32 = False  # that GPU and CPU features agree
        return torch.device(spec)
    if spec != "cpu":
        raise EvalError("--device %r is not cpu, cuda or cuda:N" % spec)
    return torch.device("cpu")


def ref_features(model, ref, device, args, sha):
    """The reference images' features, from the cache when it has them."""
    key = cache_key(ref.path, sha)
    path = None
    if not args.no_cache:
        cdir = args.cache_dir or os.path.dirname(os.path.abspath(args.out or "metrics.json"))
        path = cache_path(cdir, key)
        hit = cache_load(path, key, ref.n)
        if hit is not None:
            print("%s: reference features of %d images from the cache %s" % (PROG, ref.n, path),
                  file=sys.stderr)
            return hit, path
    feats = features(model, ref, device, args.batch_size, "reference")
    if path is not None:
        cache_save(path, key, *feats)
    return feats, path


def metrics(s_pool, s_spatial, r_pool, r_spatial, stats, fc_weight, device):
    """The five numbers (and IS's spread) from the features; stats: the reference's
    precomputed mu/sigma/mu_s/sigma_s, used in place of its features' when present."""
    def ref_gaussian(mu, sig, feats):
        if mu in stats:
            return stats[mu], stats[sig]
        return gaussian(feats) if feats is not None else None
    pool_ref = ref_gaussian("mu", "sigma", r_pool)
    spatial_ref = ref_gaussian("mu_s", "sigma_s", r_spatial)
    is_mean, is_std, is_splits = inception_score(logits_of(s_pool, fc_weight))
    prec, rec = (precision_recall(s_pool, r_pool, device) if r_pool is not None
                 else (None, None))
    return {
        "fid": frechet_distance(*gaussian(s_pool), *pool_ref),
        "sfid": frechet_distance(*gaussian(s_spatial), *spatial_ref) if spatial_ref else None,
        "inception_score": is_mean, "inception_score_std": is_std,
        "inception_score_splits": is_splits, "precision": prec, "recall": rec,
    }


def notes_for(samples, ref):
    notes = []
    if samples.n != 50000:
        notes.append("%d samples, not 50,000: FID and sFID are biased upward with fewer samples "
                     "and compare only at equal counts" % samples.n)
    if "mu" not in ref.stats:
        notes.append("the reference statistics come from its %d images (ADM's reference batches "
                     "carry the statistics of the whole training set)" % ref.n)
    if ref.shape is None:
        notes.append("the reference has no images: no precision and recall")
    return notes


def evaluate(args):
    import torch
    t0 = time.monotonic()
    ref = Batch(args.ref, "--ref")
    samples = Batch(args.samples, "--samples") if not args.check else None
    if samples is not None and samples.shape is None:
        raise EvalError("--samples %s has no arr_0 images" % args.samples)
    device = pick_device(args.device)
    model = make_inception()
    sha = load_weights(model, args.inception)
    if args.check:
        print("%s: ok: %s (%s), %s (SHA-256 %s...)" % (
            PROG, args.ref, describe(ref), args.inception, sha[:12]))
        return 0
    model = model.to(device)
    print("%s: %d samples %s and reference %s (%s) on %s, batch %d" % (
        PROG, samples.n, "x".join(map(str, samples.shape[1:3])), args.ref, describe(ref),
        device, args.batch_size), file=sys.stderr)
    s_pool, s_spatial = features(model, samples, device, args.batch_size, "samples")
    r_pool = r_spatial = cache_file = None
    if ref.shape is not None:
        (r_pool, r_spatial), cache_file = ref_features(model, ref, device, args, sha)
    fc_weight = model.fc.weight.detach().cpu().numpy()
    out = metrics(s_pool, s_spatial, r_pool, r_spatial, ref.stats, fc_weight, device)
    if args.save_features:
        extra = {} if r_pool is None else {"ref_pool": r_pool, "ref_spatial": r_spatial}
        np.savez(args.save_features, sample_pool=s_pool, sample_spatial=s_spatial,
                 sample_logits=logits_of(s_pool, fc_weight), **extra)
    st = ref.stats
    out.update({
        "num_samples": samples.n, "num_ref_images": ref.n,
        "sample_image_size": list(samples.shape[1:3]),
        "ref_image_size": list(ref.shape[1:3]) if ref.shape else None,
        "ref_pool_stats": "precomputed mu, sigma" if "mu" in st else "from arr_0",
        "ref_spatial_stats": ("precomputed mu_s, sigma_s" if "mu_s" in st else
                              "from arr_0" if ref.shape else "none"),
        "samples": os.path.abspath(args.samples), "ref": os.path.abspath(args.ref),
        "inception": os.path.abspath(args.inception), "inception_sha256": sha,
        "ref_feature_cache": cache_file, "device": str(device), "batch_size": args.batch_size,
        "torch": torch.__version__, "precision_recall_k": PR_K, "is_split_size": IS_SPLIT_SIZE,
        "feature_version": FEATURE_VERSION, "notes": notes_for(samples, ref),
        "seconds": round(time.monotonic() - t0, 2),
    })
    if args.out:
        write_json(args.out, out)
    print_table(out, args.out)
    return 0


def describe(b):
    parts = []
    if b.shape is not None:
        parts.append("%d images %dx%d" % (b.n, b.shape[1], b.shape[2]))
    if b.stats:
        parts.append("precomputed " + ", ".join(k for k in Batch.STATS if k in b.stats))
    return "; ".join(parts)


def write_json(path, obj):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".partial"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def print_table(m, out):
    def num(v):
        return "n/a" if v is None else "%.4f" % v
    rows = [("FID", num(m["fid"])), ("sFID", num(m["sfid"])),
            ("Inception Score", "%s (std %.4f over %d split%s)" % (
                num(m["inception_score"]), m["inception_score_std"],
                m["inception_score_splits"], "" if m["inception_score_splits"] == 1 else "s")),
            ("Precision", num(m["precision"])), ("Recall", num(m["recall"]))]
    print("%-16s %s" % ("metric", "value"))
    for k, v in rows:
        print("%-16s %s" % (k, v))
    print("(%d samples vs %d reference images; reference statistics %s; %.1f s%s)" % (
        m["num_samples"], m["num_ref_images"], m["ref_pool_stats"], m["seconds"],
        "; written to %s" % out if out else ""))
    for n in m["notes"]:
        print("note: " + n)


def parse_args(argv):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--ref", required=True, help="reference batch .npz (arr_0, optional stats)")
    p.add_argument("--samples", help="sample batch .npz (arr_0 uint8 (N, H, W, 3))")
    p.add_argument("--inception", required=True,
                   help="FID Inception-v3 state dict (pt_inception-2015-12-05-*.pth)")
    p.add_argument("--out", help="write the metrics here as JSON")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--batch-size", type=int, default=50, help="images per network call (50)")
    p.add_argument("--cache-dir", help="reference feature cache (default: --out's directory)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--save-features", metavar="FILE.npz",
                   help="also write the features (sample_pool, sample_spatial, sample_logits, "
                        "ref_pool, ref_spatial)")
    p.add_argument("--check", action="store_true",
                   help="only validate --ref and --inception (loads the weights), then exit")
    a = p.parse_args(argv)
    if not a.check and not a.samples:
        p.error("--samples is required (unless --check)")
    if a.batch_size < 1:
        p.error("--batch-size must be at least 1")
    return a


def main(argv):
    args = parse_args(argv)
    try:
        return evaluate(args)
    except EvalError as e:
        print("%s: error: %s" % (PROG, e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("%s: interrupted; nothing written" % PROG, file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
