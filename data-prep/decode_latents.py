#!/usr/bin/python3
"""Decode sampled SD-VAE latents (from `sddit sample`) to images: PNGs and/or an ADM .npz.

  data-prep/decode_latents.py --samples SAMPLES.h5 [MORE.h5 ...] --vae DIR_OR_HUB_ID \\
      [--out DIR] [--npz FILE.npz] [--batch-size 32] [--device cuda:0] [--scale-factor F]

The samples file holds /samples (N, C, h, w) float32 latents already multiplied by the
scale factor (root attribute scale_factor, 0.18215 for SD VAEs) and /labels (N,). Every batch
is divided by the scale factor and decoded with a diffusers AutoencoderKL (--vae: a local
directory in save_pretrained layout, or a hub id such as stabilityai/sd-vae-ft-ema), and the
decoded x in [-1, 1] becomes uint8 as DiT's sample_ddp.py does: clamp(127.5 x + 128, 0, 255)
truncated (i.e. 127.5 (x + 1) rounded half up).

--out DIR: one PNG per sample, DIR/<index, 6 digits>_class<label>.png (_null.png for the null
class, i.e. unconditional samples; index in the order of the files given, concatenated).
--npz FILE: the layout of guided-diffusion's image_sample.py that the ADM evaluator
(evaluations/evaluator.py) reads: arr_0 = uint8 (N, H, W, 3), arr_1 = the labels (int64), as
np.savez writes them (an uncompressed zip of .npy members), streamed batch by batch so that
50,000 images need no more memory than one batch. Outputs are written under temporary names
and renamed when complete.
"""
import argparse
import os
import sys
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
PYDEPS = os.path.join(os.path.dirname(HERE), ".pydeps")  # diffusers (launch/install-deps.sh)
sys.path.insert(0, HERE)
if os.path.isdir(PYDEPS) and PYDEPS not in sys.path:
    sys.path.insert(0, PYDEPS)

import numpy as np  # noqa: E402
from progress import Progress  # noqa: E402
from sddit_h5 import attr_value  # noqa: E402

PROG = "decode_latents.py"
SAMPLES_FORMAT = "sddit-samples"
DEFAULT_VAE = "stabilityai/sd-vae-ft-ema"


class DecodeError(Exception):
    """A problem with the inputs or the command; printed as one message."""


class Inputs:
    """The sample files, checked and concatenated (read lazily, batch by batch)."""

    def __init__(self, paths, scale_factor_flag):
        import h5py
        self.parts = []  # (path, first global index, n)
        self.labels = []
        shape = sf = None
        self.attrs = None
        total = 0
        for path in paths:
            if not os.path.isfile(path):
                raise DecodeError("%s: no such file" % path)
            try:
                f = h5py.File(path, "r")
            except OSError as e:
                raise DecodeError("%s: cannot open as HDF5 (%s)" % (path, e)) from None
            with f:
                a = {k: attr_value(v) for k, v in f.attrs.items()}
                fmt = a.get("format")
                if fmt != SAMPLES_FORMAT:
                    hint = (" (a training dataset, not samples)" if fmt == "sddit-latents" else "")
                    raise DecodeError("%s: root attribute format is %r, expected %r (a file "
                                      "written by `sddit sample`)%s" % (path, fmt, SAMPLES_FORMAT,
                                                                        hint))
                if a.get("format_version") != 1:
                    raise DecodeError("%s: format_version is %r, this tool reads version 1" % (
                        path, a.get("format_version")))
                if "samples" not in f or "labels" not in f:
                    raise DecodeError("%s: needs /samples and /labels" % path)
                s = f["samples"]
                y = f["labels"][...]
                if s.ndim != 4 or s.shape[0] == 0:
                    raise DecodeError("%s: /samples has shape %s, expected (N, C, h, w) with N > 0"
                                      % (path, s.shape))
                if y.shape != (s.shape[0],):
                    raise DecodeError("%s: /labels has shape %s, expected (%d,)" % (
                        path, y.shape, s.shape[0]))
                if shape is not None and s.shape[1:] != shape:
                    raise DecodeError("%s: /samples rows are %s, but %s has %s" % (
                        path, s.shape[1:], self.parts[0][0], shape))
                shape = s.shape[1:]
                lc = a.get("latent_channels")
                if lc is not None and lc != shape[0]:
                    raise DecodeError("%s: latent_channels is %r but /samples has %d channels" % (
                        path, lc, shape[0]))
                fsf = a.get("scale_factor")
                if fsf is None and scale_factor_flag is None:
                    raise DecodeError("%s has no scale_factor attribute; pass --scale-factor "
                                      "(0.18215 for the SD VAEs)" % path)
                if fsf is not None:
                    fsf = float(fsf)
                    if sf is not None and fsf != sf:
                        raise DecodeError("%s: scale_factor %g differs from %g of %s" % (
                            path, fsf, sf, self.parts[0][0]))
                    sf = fsf
                self.parts.append((path, total, s.shape[0]))
                self.labels.append(y.astype(np.int64))
                total += s.shape[0]
                if self.attrs is None:
                    self.attrs = a
        self.n = total
        self.shape = tuple(int(v) for v in shape)
        self.labels = np.concatenate(self.labels)
        self.file_scale_factor = sf
        self.scale_factor = float(scale_factor_flag) if scale_factor_flag is not None else sf

    def read(self, i0, i1):
        """Rows [i0, i1) as float32 (b, C, h, w)."""
        import h5py
        out = []
        for path, first, n in self.parts:
            lo, hi = max(i0, first), min(i1, first + n)
            if lo < hi:
                with h5py.File(path, "r") as f:
                    out.append(f["samples"][lo - first:hi - first].astype(np.float32))
        return np.concatenate(out)


def to_uint8(x):
    """Decoded images (b, 3, H, W) in [-1, 1] (torch) -> uint8 (b, H, W, 3) numpy, as DiT."""
    import torch
    return torch.clamp(127.5 * x.float() + 128.0, 0, 255).permute(0, 2, 3, 1).to(
        "cpu", dtype=torch.uint8).numpy()


class NpzStream:
    """An .npz like np.savez(path, arr_0, arr_1) writes, with arr_0 filled batch by batch."""

    def __init__(self, path, shape, labels):
        self.path, self.tmp = path, path + ".partial"
        self.shape, self.labels, self.filled = shape, labels, 0
        self.zf = zipfile.ZipFile(self.tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self.fp = self.zf.open("arr_0.npy", "w", force_zip64=True)
        np.lib.format.write_array_header_1_0(self.fp, {
            "descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
            "fortran_order": False, "shape": tuple(shape)})

    def write(self, batch):
        assert batch.dtype == np.uint8 and batch.shape[1:] == tuple(self.shape[1:])
        self.fp.write(np.ascontiguousarray(batch).tobytes())
        self.filled += batch.shape[0]

    def finish(self):
        assert self.filled == self.shape[0], (self.filled, self.shape)
        self.fp.close()
        with self.zf.open("arr_1.npy", "w", force_zip64=True) as fp:
            np.lib.format.write_array(fp, np.asarray(self.labels, dtype=np.int64))
        self.zf.close()
        os.replace(self.tmp, self.path)

    def discard(self):
        try:
            self.fp.close()
            self.zf.close()
        except Exception:  # noqa: BLE001
            pass
        try:
            os.remove(self.tmp)
        except FileNotFoundError:
            pass


def parse_args(argv):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--samples", required=True, nargs="+",
                   help="`sddit sample` output(s), concatenated in this order")
    p.add_argument("--vae", default=DEFAULT_VAE,
                   help="diffusers AutoencoderKL: local directory or hub id (default %(default)s)")
    p.add_argument("--out", default=None, help="directory for one PNG per sample")
    p.add_argument("--npz", default=None,
                   help="write the ADM evaluator's layout: arr_0 uint8 (N, H, W, 3), arr_1 labels")
    p.add_argument("--batch-size", type=int, default=32, help="latents per decoder call (32)")
    p.add_argument("--device", default=None,
                   help="cpu, cuda or cuda:N (default: cuda:0 when torch sees a GPU, else cpu)")
    p.add_argument("--vae-dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                   help="dtype the VAE runs in (float32; half types on GPUs only)")
    p.add_argument("--scale-factor", type=float, default=None,
                   help="divide the latents by this (default: the file's scale_factor attribute)")
    p.add_argument("--limit", type=int, default=None, help="decode only the first LIMIT samples")
    a = p.parse_args(argv)
    if a.out is None and a.npz is None:
        p.error("nothing to write: give --out DIR (PNGs), --npz FILE.npz, or both")
    if a.batch_size < 1:
        p.error("--batch-size must be at least 1")
    if a.limit is not None and a.limit < 1:
        p.error("--limit must be at least 1")
    if a.scale_factor is not None and not a.scale_factor > 0:
        p.error("--scale-factor must be positive")
    if a.npz is not None and not a.npz.endswith(".npz"):
        a.npz += ".npz"  # as np.savez names it
    return a


def run(args):
    import imagenet_latents as il  # resolve_vae / load_vae: the same VAE loading as encoding
    t_start = time.monotonic()
    inp = Inputs(args.samples, args.scale_factor)
    n = min(inp.n, args.limit) if args.limit else inp.n
    sf = inp.scale_factor
    if args.scale_factor is not None and inp.file_scale_factor not in (None, sf):
        print("%s: note: --scale-factor %g overrides the file's %g" % (
            PROG, sf, inp.file_scale_factor), file=sys.stderr)
    try:
        vae_dir, vcfg = il.resolve_vae(args.vae)
    except il.PrepError as e:
        raise DecodeError(str(e)) from None
    c, h, w = inp.shape
    vc = int(vcfg.get("latent_channels", 4))
    if c != vc:
        raise DecodeError("%s: /samples has %d channels but the VAE %s has latent_channels %d "
                          "(is this a sample of a latent model for this VAE?)" % (
                              args.samples[0], c, args.vae, vc))
    factor = 2 ** (len(vcfg.get("block_out_channels", (1,))) - 1)
    size = inp.attrs.get("image_size")
    if size is not None and (h * factor != size or w * factor != size):
        raise DecodeError("%s: latents %dx%d decode to %dx%d images with this VAE (factor %d), "
                          "but image_size is %r" % (args.samples[0], h, w, h * factor,
                                                    w * factor, factor, size))
    import torch
    if args.device is None:
        args.device = "cuda:0" if torch.cuda.is_available() else "cpu"
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DecodeError("--device %s: no CUDA device is visible%s" % (
                args.device, il.cuda_hint()))
        torch.cuda.set_device(torch.device(args.device))
    elif args.device != "cpu":
        raise DecodeError("--device %r is not cpu, cuda or cuda:N" % args.device)
    if args.device == "cpu" and args.vae_dtype != "float32":
        raise DecodeError("--vae-dtype %s needs a GPU; on CPU use float32" % args.vae_dtype)
    vae = il.load_vae(vae_dir, args.device, args.vae_dtype)
    dev, vdt = torch.device(args.device), getattr(torch, args.vae_dtype)
    H, W = h * factor, w * factor
    print("%s: %d latents %dx%dx%d (%s) / %g -> %dx%d images with %s on %s, batch %d" % (
        PROG, n, c, h, w, ", ".join(args.samples), sf, H, W, args.vae, args.device,
        args.batch_size), file=sys.stderr)

    npz = NpzStream(args.npz, (n, H, W, 3), inp.labels[:n]) if args.npz else None
    png_tmp = None
    if args.out:
        from PIL import Image
        os.makedirs(args.out, exist_ok=True)
    null_class = inp.attrs.get("num_classes")  # the unconditional label (--classes null)
    prog = Progress(PROG, n)
    try:
        for i0 in range(0, n, args.batch_size):
            i1 = min(n, i0 + args.batch_size)
            z = inp.read(i0, i1)
            bad = ~np.isfinite(z)
            if bad.any():
                raise DecodeError("sample %d holds a non-finite latent" % (
                    i0 + int(np.argwhere(bad)[0][0])))
            with torch.no_grad():
                x = vae.decode(torch.from_numpy(z).to(dev, vdt) / sf).sample
            u8 = to_uint8(x)
            if npz is not None:
                npz.write(u8)
            if args.out:
                for j in range(u8.shape[0]):
                    lab = int(inp.labels[i0 + j])
                    name = os.path.join(args.out, "%06d_%s.png" % (
                        i0 + j, "null" if lab == null_class else "class%d" % lab))
                    png_tmp = name + ".partial.png"
                    Image.fromarray(u8[j], mode="RGB").save(png_tmp)
                    os.replace(png_tmp, name)
                    png_tmp = None
            prog.update(i1)
        prog.update(n, force=True)
        prog.end()
        if npz is not None:
            npz.finish()
    except BaseException:
        prog.end()
        if npz is not None:
            npz.discard()
        if png_tmp and os.path.exists(png_tmp):
            os.remove(png_tmp)
        raise
    wrote = []
    if args.out:
        wrote.append("%d PNGs in %s" % (n, args.out))
    if args.npz:
        wrote.append("%s (arr_0 uint8 %s, arr_1 labels)" % (args.npz, (n, H, W, 3)))
    print("%s: wrote %s in %.1f s" % (PROG, " and ".join(wrote), time.monotonic() - t_start))
    return 0


def main(argv):
    args = parse_args(argv)
    try:
        return run(args)
    except DecodeError as e:
        print("%s: error: %s" % (PROG, e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("%s: interrupted; the .npz was not written (PNGs so far are complete)" % PROG,
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
