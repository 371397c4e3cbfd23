#!/usr/bin/python3
"""Convert fast-DiT-style feature folders to an sddit format-1 file.

  data-prep/npy_to_h5.py --features DIR --labels DIR --out OUT.h5 \\
      [--num-classes 1000] [--image-size 256] [--scale-factor 0.18215] [--dtype float16]

--features holds <i>.npy, each one sample (1, C, H, W) or (C, H, W), or (2, C, H, W) holding a
sample and its horizontally flipped copy; --labels holds <i>.npy with the label ((1,) or a
scalar). Files are taken in numeric order of i; both folders must hold the same indices and
every feature the same shape. Row r of /latents is the r-th feature in that order; with
two-copy features the second copy of the r-th file goes to row N + r (flipped = 1).

fast-DiT's extract_features.py saves latent_dist.sample() * 0.18215, so its features are already
scaled: they are copied as they are and scale_factor (default 0.18215) is only recorded.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sddit_h5  # noqa: E402

import numpy as np  # noqa: E402

PROG = "npy_to_h5.py"


class ConvError(Exception):
    pass


def numbered_files(d, what):
    if not os.path.isdir(d):
        raise ConvError("%s folder %s does not exist" % (what, d))
    out = {}
    for fn in os.listdir(d):
        if not fn.endswith(".npy"):
            continue
        stem = fn[:-4]
        if not stem.isdigit():
            raise ConvError("%s: file name is not <number>.npy" % os.path.join(d, fn))
        if int(stem) in out:
            raise ConvError("%s and %s have the same number" % (
                os.path.join(d, out[int(stem)]), os.path.join(d, fn)))
        out[int(stem)] = fn
    if not out:
        raise ConvError("%s folder %s holds no <number>.npy files" % (what, d))
    return out


def read_header(path):
    """(shape, dtype) of a .npy file without reading its data."""
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        except ValueError as e:
            raise ConvError("%s: not a .npy file (%s)" % (path, e)) from None
    return shape, dtype


def main(argv):
    p = argparse.ArgumentParser(prog=PROG, description="fast-DiT .npy feature folders to sddit "
                                "format-1 HDF5 (see the module docstring).")
    p.add_argument("--features", required=True, help="folder of <i>.npy features")
    p.add_argument("--labels", required=True, help="folder of <i>.npy labels")
    p.add_argument("--out", required=True, help="output .h5 (replaced atomically)")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--image-size", type=int, default=256, help="pixel size of the source images")
    p.add_argument("--scale-factor", type=float, default=0.18215,
                   help="recorded only: fast-DiT features are already multiplied by it")
    p.add_argument("--encoder", default="sd-vae-ft-ema", help="encoder attribute (%(default)s)")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16",
                   help="stored dtype (float16)")
    p.add_argument("--batch", type=int, default=1024, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        return convert(args)
    except (ConvError, sddit_h5.FormatError) as e:
        print("%s: error: %s" % (PROG, e), file=sys.stderr)
        return 1


def convert(args):
    if args.num_classes < 1 or args.image_size < 1 or not args.scale_factor > 0:
        raise ConvError("--num-classes, --image-size and --scale-factor must be positive")
    feats = numbered_files(args.features, "features")
    labs = numbered_files(args.labels, "labels")
    for a, b, da, db in ((feats, labs, args.features, args.labels),
                         (labs, feats, args.labels, args.features)):
        missing = sorted(set(a) - set(b))
        if missing:
            raise ConvError("%s has no %d.npy to go with %s (%d such file(s))" % (
                db, missing[0], os.path.join(da, a[missing[0]]), len(missing)))
    idx = sorted(feats)
    n = len(idx)
    first = os.path.join(args.features, feats[idx[0]])
    shape0, dtype0 = read_header(first)
    if len(shape0) == 3:
        copies, sample = 1, tuple(shape0)
    elif len(shape0) == 4 and shape0[0] in (1, 2):
        copies, sample = shape0[0], tuple(shape0[1:])
    else:
        raise ConvError("%s has shape %s; expected (1, C, H, W), (C, H, W) or (2, C, H, W)" % (
            first, shape0))
    if not np.issubdtype(dtype0, np.floating):
        raise ConvError("%s has dtype %s; features must be floating point" % (first, dtype0))
    rows = n * copies
    attrs = {"num_classes": args.num_classes, "image_size": args.image_size,
             "latent_channels": sample[0], "scale_factor": args.scale_factor,
             "encoder": args.encoder,
             "source": "fast-DiT features %s (%d files%s)" % (
                 os.path.abspath(args.features), n,
                 ", flipped copy of file r at row %d + r" % n if copies == 2 else ""),
             "flipped": int(copies == 2)}
    config = {"tool": "npy_to_h5", "features": os.path.abspath(args.features),
              "labels": os.path.abspath(args.labels), "n": n}
    w = sddit_h5.open_writer(args.out, n=rows, sample_shape=sample, dtype=args.dtype,
                             kind="latents", attrs=attrs, config=config, resume=False)
    try:
        tty = sys.stderr.isatty()
        for s in range(0, n, args.batch):
            chunk = idx[s:s + args.batch]
            xs, ys = [], []
            for i in chunk:
                fp = os.path.join(args.features, feats[i])
                x = np.load(fp, allow_pickle=False)
                if x.shape != tuple(shape0):
                    raise ConvError("%s has shape %s but %s has %s" % (fp, x.shape, first, shape0))
                xs.append(x.reshape((copies,) + sample))
                lp = os.path.join(args.labels, labs[i])
                y = np.load(lp, allow_pickle=False)
                if y.size != 1 or y.ndim > 1:
                    raise ConvError("%s has shape %s; a label file holds one value ((1,) or a "
                                    "scalar)" % (lp, y.shape))
                v = y.reshape(())
                if not np.issubdtype(y.dtype, np.integer) and not (
                        np.issubdtype(y.dtype, np.floating) and float(v).is_integer()):
                    raise ConvError("%s holds %r, not an integer label" % (lp, v.item()))
                v = int(v)
                if not 0 <= v < args.num_classes:
                    raise ConvError("%s holds label %d, outside [0, --num-classes = %d)" % (
                        lp, v, args.num_classes))
                ys.append(v)
            x = np.stack(xs)  # (b, copies, C, H, W)
            y = np.asarray(ys, dtype=np.int32)
            for c in range(copies):
                w.write(c * n + s, x[:, c], y)
            w.set_completed(s + len(chunk))
            if tty:
                sys.stderr.write("\r%s: %d/%d files" % (PROG, s + len(chunk), n))
        if tty:
            sys.stderr.write("\n")
        info = w.finish(scan_values=False)
    except BaseException:
        w.discard()
        raise
    gaps = "" if idx[-1] - idx[0] + 1 == n else " (numbers with gaps: %d..%d)" % (idx[0], idx[-1])
    print("%s: wrote %s from %d files%s" % (PROG, sddit_h5.describe(info), n, gaps))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
