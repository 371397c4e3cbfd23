#!/usr/bin/python3
"""scikit-learn's bundled 8x8 digits (1797 images, 10 classes) as an sddit format-1 file.

Pixel space, no encoder: /latents (1797, 1, 8, 8) float32 with x = v / 8 - 1 for the stored
values v in 0..16 (so x is in [-1, 1]), /labels int32 (the digit), in sklearn's original
order. Needs no network: the data ships inside scikit-learn.

  data-prep/digits.py [--out data/digits.h5]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sddit_h5  # noqa: E402

import numpy as np  # noqa: E402


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.path.join("data", "digits.h5"),
                   help="output file (default: data/digits.h5 under the current directory); "
                        "replaced atomically if it exists")
    args = p.parse_args(argv)
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        print("digits.py: error: scikit-learn is needed (%s); run launch/install-deps.sh" % e,
              file=sys.stderr)
        return 1
    d = load_digits()
    images = np.asarray(d.images, dtype=np.float64)  # (1797, 8, 8), values 0..16
    labels = np.asarray(d.target, dtype=np.int32)
    x = (images / 8.0 - 1.0).astype(np.float32)[:, None, :, :]
    n = x.shape[0]
    attrs = {
        "num_classes": 10, "image_size": 8, "latent_channels": 1, "scale_factor": 1.0,
        "encoder": "none (pixels, v/8 - 1)",
        "source": "scikit-learn load_digits (UCI optical digits, 8x8, values 0..16), "
                  "original order",
        "flipped": 0,
    }
    info = sddit_h5.write_whole(args.out, x, labels, attrs, {"tool": "digits", "n": n})
    print("digits.py: wrote %s" % sddit_h5.describe(info))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
