#!/usr/bin/python3
"""Encode an image-folder tree (ImageNet layout) to SD-VAE latents in an sddit format-1 file.

  data-prep/imagenet_latents.py ROOT --out OUT.h5 [--devices all] [--flip] [--moments] ...

ROOT/<class>/<images>: class folders sorted by name give the label indices (their names are
stored in /class_names); images inside a class are taken in sorted path order. Every image is
converted to RGB, centre-cropped the ADM (guided-diffusion) way to --image-size, scaled to
[-1, 1] and encoded with a diffusers AutoencoderKL (--vae: a local directory or a hub id).

/latents row i = latent_dist.sample() * scale_factor, where the sample's noise is keyed by
(--seed, row): eps = numpy Generator(Philox(key=(seed << 64) + row)).standard_normal((C, h, w),
float32), so reruns, resumed runs and any number of devices give the same bits (for the same
batch size, hardware and, on CPU, thread count). With --moments, /moments row i is the
posterior's mean and log-variance (2C channels) and scale_factor is stored but not applied.
With --flip, row N + i holds the horizontally mirrored crop of image i.

The file is built as OUT.partial and renamed when complete. After every batch the root
attribute `completed` records how many source images are done; rerunning the same command
continues from there. A command that would produce different contents is refused.
"""
import argparse
import hashlib
import json
import os
import queue
import re
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PYDEPS = os.path.join(os.path.dirname(HERE), ".pydeps")  # launch/install-deps.sh puts diffusers here
sys.path.insert(0, HERE)
if os.path.isdir(PYDEPS) and PYDEPS not in sys.path:
    sys.path.insert(0, PYDEPS)

import numpy as np  # noqa: E402

import sddit_h5  # noqa: E402
from progress import Progress  # noqa: E402

PROG = "imagenet_latents.py"
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff")
DEFAULT_VAE = "stabilityai/sd-vae-ft-ema"


class PrepError(Exception):
    """A problem with the inputs or the command; printed as one message."""


# ---------------------------------------------------------------- inputs

def list_images(root):
    """(class_names, relative image paths, labels, names of classes without images)."""
    if not os.path.exists(root):
        raise PrepError("image root %s does not exist" % root)
    if not os.path.isdir(root):
        raise PrepError("image root %s is not a directory" % root)
    classes = sorted(e.name for e in os.scandir(root)
                     if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise PrepError("%s has no class folders (expected ROOT/<class>/<images>)" % root)
    paths, labels, empty = [], [], []
    for label, c in enumerate(classes):
        found = []
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, c), followlinks=True):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for fn in filenames:
                if not fn.startswith(".") and fn.lower().endswith(IMAGE_EXTS):
                    found.append(os.path.relpath(os.path.join(dirpath, fn), root))
        if not found:
            empty.append(c)
        found.sort()
        paths += found
        labels += [label] * len(found)
    if not paths:
        raise PrepError("no images (%s) under %s/<class>/" % (" ".join(IMAGE_EXTS), root))
    return classes, paths, np.asarray(labels, dtype=np.int32), empty


def center_crop_arr(img, size):
    """ADM centre crop of a PIL image: halve it with a BOX filter while its short side is at
    least 2 * size, resize it BICUBIC so that the short side is size, then cut the central
    size x size square. Returns a uint8 array (size, size, channels)."""
    from PIL import Image
    res = getattr(Image, "Resampling", Image)
    while min(img.size) >= 2 * size:
        img = img.resize(tuple(s // 2 for s in img.size), resample=res.BOX)
    scale = size / min(img.size)
    img = img.resize(tuple(round(s * scale) for s in img.size), resample=res.BICUBIC)
    a = np.asarray(img)
    top = (a.shape[0] - size) // 2
    left = (a.shape[1] - size) // 2
    return a[top:top + size, left:left + size]


def to_model_input(arr):
    """uint8 (H, W, 3) -> float32 (3, H, W) in [-1, 1] (as ToTensor then Normalize(0.5, 0.5))."""
    x = arr.astype(np.float32) / np.float32(255.0)
    x = (x - np.float32(0.5)) / np.float32(0.5)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def load_image(path, size):
    """The preprocessed crop of one image file as uint8 (size, size, 3); PrepError naming the
    file when it cannot be read."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
        return center_crop_arr(rgb, size)
    except Exception as e:  # noqa: BLE001 - any decoder failure is reported with the file name
        raise PrepError("cannot read image %s: %s: %s" % (path, type(e).__name__, e)) from None


def sample_noise(seed, row, shape):
    """The standard-normal noise of output row `row` (documented in the module docstring)."""
    g = np.random.Generator(np.random.Philox(key=(int(seed) << 64) + int(row)))
    return g.standard_normal(shape, dtype=np.float32)


# ---------------------------------------------------------------- the VAE

def resolve_vae(spec):
    """(local directory, its config dict). A hub id is downloaded (config and weights) once here
    so that the workers only read local files."""
    if os.path.isdir(spec):
        d = os.path.abspath(spec)
    else:
        if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", spec):
            raise PrepError("--vae %s: no such directory (and not a hub id owner/name)" % spec)
        try:
            from huggingface_hub import snapshot_download
        except ImportError as e:
            raise PrepError("--vae %s is a hub id but huggingface_hub is not importable (%s); "
                            "run launch/install-deps.sh" % (spec, e)) from None
        try:
            d = snapshot_download(spec, allow_patterns=["config.json", "*.safetensors"])
            if not any(f.endswith(".safetensors") for f in os.listdir(d)):
                d = snapshot_download(spec, allow_patterns=["config.json", "*.bin"])
        except Exception as e:  # noqa: BLE001
            raise PrepError("cannot fetch the VAE %s from the hub (%s: %s); download it "
                            "elsewhere and pass its directory to --vae" % (
                                spec, type(e).__name__, e)) from None
    cfg_path = os.path.join(d, "config.json")
    if not os.path.isfile(cfg_path):
        raise PrepError("--vae %s: %s is missing (expected a diffusers AutoencoderKL saved with "
                        "save_pretrained)" % (spec, cfg_path))
    with open(cfg_path) as f:
        cfg = json.load(f)
    if cfg.get("_class_name", "AutoencoderKL") != "AutoencoderKL":
        raise PrepError("--vae %s is a %s, not an AutoencoderKL" % (spec, cfg.get("_class_name")))
    return d, cfg


def load_vae(vae_dir, device, dtype_name):
    import torch
    import safetensors.torch  # noqa: F401 - diffusers 0.31 uses it without importing it
    from diffusers import AutoencoderKL
    vae = AutoencoderKL.from_pretrained(vae_dir, low_cpu_mem_usage=False)
    return vae.to(device=torch.device(device), dtype=getattr(torch, dtype_name)).eval()


# ---------------------------------------------------------------- workers

def encode_batches(job):
    """Generator run by each worker (in a subprocess, or in the parent for one device): loads
    the VAE on job['device'], reads its batches ahead with threads and yields
    (k, values, flipped_values or None) per batch, values as float32 numpy arrays."""
    import torch
    from concurrent.futures import ThreadPoolExecutor
    if job["device"] == "cpu":
        torch.set_num_threads(job["cpu_threads"])
    dev = torch.device(job["device"])
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    vae = load_vae(job["vae_dir"], job["device"], job["vae_dtype"])
    vdt = getattr(torch, job["vae_dtype"])
    size, seed, sf, n = job["image_size"], job["seed"], job["scale_factor"], job["n"]

    def encode(arrs, rows):
        x = torch.from_numpy(np.stack([to_model_input(a) for a in arrs]))
        with torch.no_grad():
            dist = vae.encode(x.to(dev, vdt)).latent_dist
            mean, logvar = dist.mean.float(), dist.logvar.float()
            if job["moments"]:
                out = torch.cat([mean, logvar], dim=1)
            else:
                eps = np.stack([sample_noise(seed, r, tuple(mean.shape[1:])) for r in rows])
                eps = torch.from_numpy(eps).to(dev)
                out = (mean + torch.exp(0.5 * logvar) * eps) * sf
        return out.cpu().numpy()

    batches = job["batches"]  # [(k, first source index, [absolute paths])]
    with ThreadPoolExecutor(max_workers=job["loader_threads"]) as pool:
        pending = []
        nxt = 0
        while nxt < len(batches) and len(pending) < 2:  # read two batches ahead
            pending.append([pool.submit(load_image, p, size) for p in batches[nxt][2]])
            nxt += 1
        for k, first, paths in batches:
            futs = pending.pop(0)
            if nxt < len(batches):
                pending.append([pool.submit(load_image, p, size) for p in batches[nxt][2]])
                nxt += 1
            arrs = [f.result() for f in futs]
            rows = list(range(first, first + len(arrs)))
            vals = encode(arrs, rows)
            fvals = None
            if job["flip"]:
                fvals = encode([np.ascontiguousarray(a[:, ::-1]) for a in arrs],
                               [n + r for r in rows])
            yield k, vals, fvals


def worker_main(job, q):
    """Subprocess entry: forwards encode_batches' results (or its error) to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and ends us
    try:
        for item in encode_batches(job):
            q.put(("batch",) + item)
    except PrepError as e:
        q.put(("error", str(e)))
    except BaseException as e:  # noqa: BLE001
        import traceback
        q.put(("error", "worker on %s failed: %s: %s\n%s" % (
            job["device"], type(e).__name__, e, traceback.format_exc())))


def cuda_hint():
    import torch
    if torch.version.cuda is None:
        return ("; this torch %s (%s) is built without CUDA: run the tool with a Python whose "
                "torch has CUDA, e.g. /path/to/env/bin/python %s ..." % (
                    torch.__version__, sys.executable, sys.argv[0]))
    return ""


def parse_devices(spec):
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise PrepError("--devices is empty")
    if parts == ["all"]:
        import torch
        k = torch.cuda.device_count()
        if k == 0:
            raise PrepError("--devices all: no CUDA device is visible%s (or use --devices cpu)"
                            % cuda_hint())
        return ["cuda:%d" % i for i in range(k)]
    out = []
    for p in parts:
        if p == "cpu":
            out.append("cpu")
            continue
        if p == "cuda":
            p = "cuda:0"
        if not (p.startswith("cuda:") and p[5:].isdigit()):
            raise PrepError("--devices: %r is not cpu, cuda, cuda:N or all" % p)
        torch = __import__("torch")
        if int(p[5:]) >= torch.cuda.device_count():
            raise PrepError("--devices: %s is not available (%d CUDA devices visible%s)" % (
                p, torch.cuda.device_count(), cuda_hint()))
        out.append(p)
    return out


# ---------------------------------------------------------------- main

def parse_args(argv):
    p = argparse.ArgumentParser(
        prog=PROG, description="Encode ROOT/<class>/<images> to SD-VAE latents (sddit "
        "format-1 HDF5). Rerun the same command to resume an interrupted run.")
    p.add_argument("root", help="image folder tree ROOT/<class>/<images>")
    p.add_argument("--out", required=True, help="output .h5 (built as OUT.partial)")
    p.add_argument("--vae", default=DEFAULT_VAE,
                   help="diffusers AutoencoderKL: local directory or hub id (default %(default)s)")
    p.add_argument("--encoder-name", default=None,
                   help="encoder attribute (default: the VAE's name, e.g. sd-vae-ft-ema)")
    p.add_argument("--image-size", type=int, default=256, help="crop size in pixels (256)")
    p.add_argument("--moments", action="store_true",
                   help="store the posterior mean and log-variance (/moments) instead of a sample")
    p.add_argument("--flip", action="store_true",
                   help="also store the mirrored crop of image i at row N + i")
    p.add_argument("--seed", type=int, default=0, help="keys the sampling noise (0)")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16",
                   help="stored dtype (float16)")
    p.add_argument("--vae-dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                   help="dtype the VAE runs in (float32; half types on GPUs only)")
    p.add_argument("--scale-factor", type=float, default=None,
                   help="default: the VAE config's scaling_factor (0.18215 for SD VAEs)")
    p.add_argument("--devices", default=None,
                   help="cpu, cuda:N, a comma list (cuda:0,cuda:1; cpu,cpu) or all; one worker "
                        "process per entry (default: all GPUs, else cpu)")
    p.add_argument("--batch-size", type=int, default=32,
                   help="images per encoder call (32); keep it when resuming for identical bits")
    p.add_argument("--loader-threads", type=int, default=6,
                   help="image decoding threads per device (6)")
    p.add_argument("--cpu-threads", type=int, default=None,
                   help="torch threads of every CPU worker (default OMP_NUM_THREADS or all "
                        "cores; CPU results depend on it)")
    p.add_argument("--limit", type=int, default=None,
                   help="encode only the first LIMIT images in order (trials)")
    p.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    for name in ("image_size", "batch_size", "loader_threads"):
        if getattr(a, name) < 1:
            p.error("--%s must be at least 1" % name.replace("_", "-"))
    if a.limit is not None and a.limit < 1:
        p.error("--limit must be at least 1")
    if a.cpu_threads is not None and a.cpu_threads < 1:
        p.error("--cpu-threads must be at least 1")
    if not 0 <= a.seed < 2 ** 64:
        p.error("--seed must be in [0, 2^64)")
    return a


def run(args):
    t_start = time.monotonic()
    root = os.path.abspath(args.root)
    classes, rel, labels, empty = list_images(root)
    if empty:
        print("%s: warning: %d class folder(s) without images keep their label index: %s" % (
            PROG, len(empty), ", ".join(empty[:10]) + (" ..." if len(empty) > 10 else "")),
            file=sys.stderr)
    if args.limit is not None:
        rel, labels = rel[:args.limit], labels[:args.limit]
    n = len(rel)
    listing = hashlib.sha256()
    for r, y in zip(rel, labels):
        listing.update(("%d\t%s\n" % (y, r)).encode("utf-8", "surrogateescape"))

    vae_id = os.path.abspath(args.vae) if os.path.isdir(args.vae) else args.vae
    pre_config = {"tool": "imagenet_latents", "root": root, "num_images": n,
                  "num_classes": len(classes), "file_list_sha256": listing.hexdigest(),
                  "vae": vae_id, "image_size": args.image_size, "seed": args.seed,
                  "moments": args.moments, "flip": args.flip, "dtype": args.dtype,
                  "vae_dtype": args.vae_dtype, "limit": args.limit}
    try:  # refuse a conflicting existing output before fetching the VAE
        sddit_h5.check_existing(args.out, pre_config, ignore_keys=("scale_factor",))
    except sddit_h5.ConfigMismatch as e:
        raise PrepError(str(e)) from None
    vae_dir, vcfg = resolve_vae(args.vae)
    sf = float(args.scale_factor if args.scale_factor is not None
               else vcfg.get("scaling_factor", 0.18215))
    config = dict(pre_config, scale_factor=sf)
    c = int(vcfg.get("latent_channels", 4))
    f = 2 ** (len(vcfg.get("block_out_channels", (1,))) - 1)
    if args.image_size % f:
        raise PrepError("--image-size %d is not a multiple of the VAE's downsampling factor %d"
                        % (args.image_size, f))
    h = args.image_size // f
    rows = 2 * n if args.flip else n
    encoder = args.encoder_name or (os.path.basename(vae_id.rstrip("/")) or vae_id)
    source = "image folder %s: %d images, %d classes, ADM centre crop %d, %s%s; VAE %s" % (
        root, n, len(classes), args.image_size,
        "posterior moments" if args.moments else "latent_dist.sample() seed %d" % args.seed,
        ", flipped copy of image i at row %d + i" % n if args.flip else "", vae_id)
    attrs = {"num_classes": len(classes), "image_size": args.image_size, "latent_channels": c,
             "scale_factor": sf, "encoder": encoder, "source": source,
             "flipped": int(args.flip), "num_source_images": n}
    kind = "moments" if args.moments else "latents"
    devices = parse_devices(args.devices) if args.devices else None
    if devices is None:
        import torch
        k = torch.cuda.device_count()
        devices = ["cuda:%d" % i for i in range(k)] if k else ["cpu"]
        if not k:
            print("%s: note: no CUDA device visible%s; encoding on the CPU" % (
                PROG, cuda_hint()), file=sys.stderr)
    if "cpu" in devices and args.vae_dtype == "float16":
        raise PrepError("--vae-dtype float16 needs GPUs; on CPU use float32")
    try:
        w = sddit_h5.open_writer(args.out, n=rows, sample_shape=(2 * c if args.moments else c, h, h),
                                 dtype=args.dtype, kind=kind, attrs=attrs, config=config,
                                 resume=True, extra_datasets={"class_names": classes})
    except sddit_h5.AlreadyComplete:
        print("%s: %s is already complete (same configuration); nothing to do" % (PROG, args.out))
        return 0
    except sddit_h5.ConfigMismatch as e:
        raise PrepError(str(e)) from None

    start = w.completed
    if start:
        print("%s: resuming %s.partial at image %d of %d" % (PROG, args.out, start, n),
              file=sys.stderr)
    bs = args.batch_size
    batches = [(k, i0, [os.path.join(root, r) for r in rel[i0:min(i0 + bs, n)]])
               for k, i0 in enumerate(range(start, n, bs))]
    omp = os.environ.get("OMP_NUM_THREADS", "").split(",")[0]
    cpu_threads = args.cpu_threads or (int(omp) if omp.isdigit() and int(omp) > 0
                                       else os.cpu_count() or 1)
    nw = max(1, min(len(devices), len(batches)))
    print("%s: %d images, %d classes -> %s (%s %s, %d rows); devices %s; batch %d" % (
        PROG, n, len(classes), args.out, kind, args.dtype, rows, ",".join(devices[:nw]), bs),
        file=sys.stderr)
    jobs = [{"device": devices[i], "vae_dir": vae_dir, "vae_dtype": args.vae_dtype,
             "image_size": args.image_size, "seed": args.seed, "scale_factor": sf, "n": n,
             "moments": args.moments, "flip": args.flip, "cpu_threads": cpu_threads,
             "loader_threads": args.loader_threads, "batches": batches[i::nw]}
            for i in range(nw)]

    procs, queues, gen = [], [], None
    prog = Progress(PROG, n, start)
    stopped = finished = False

    def on_term(signum, frame):
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, on_term)
    try:
        if nw == 1:
            gen = encode_batches(jobs[0])
        else:
            import multiprocessing as mp
            ctx = mp.get_context("spawn")
            for j in jobs:
                q = ctx.Queue(maxsize=3)
                pr = ctx.Process(target=worker_main, args=(j, q), daemon=True)
                pr.start()
                procs.append(pr)
                queues.append(q)
        for k, i0, paths in batches:
            if gen is not None:
                kk, vals, fvals = next(gen)
            else:
                kk, vals, fvals = receive(queues[k % nw], procs[k % nw], jobs[k % nw]["device"])
            assert kk == k, (kk, k)
            b = len(paths)
            w.write(i0, vals, labels[i0:i0 + b])
            if fvals is not None:
                w.write(n + i0, fvals, labels[i0:i0 + b])
            w.set_completed(i0 + b)
            prog.update(i0 + b)
            if args.stop_after is not None and k + 1 >= args.stop_after:
                stopped = True
                break
        finished = not stopped
        prog.update(prog.done, force=True)
        prog.end()
    except KeyboardInterrupt:
        prog.end()
        w.close()
        print("%s: interrupted after %d of %d images; rerun the same command to continue" % (
            PROG, w.completed, n), file=sys.stderr)
        return 130
    except BaseException:
        prog.end()
        w.close()  # the partial file keeps every completed batch
        raise
    finally:
        signal.signal(signal.SIGTERM, old_term)
        if gen is not None:
            gen.close()
        for pr in procs:
            pr.join(timeout=10 if finished else 0)  # done workers exit by themselves
            if pr.is_alive():
                pr.terminate()
                pr.join()
    if stopped:
        w.close()
        print("%s: stopped after %d of %d images as asked (--stop-after); rerun without it to "
              "continue" % (PROG, w.completed, n))
        return 0
    info = w.finish(scan_values=False)
    dt = time.monotonic() - t_start
    print("%s: wrote %s (%d images in %.1f s)" % (PROG, sddit_h5.describe(info), n - start, dt))
    return 0


def receive(q, proc, device):
    while True:
        try:
            msg = q.get(timeout=1.0)
        except queue.Empty:
            if not proc.is_alive():
                raise PrepError("the worker on %s exited (code %s) without a result; out of "
                                "memory?" % (device, proc.exitcode)) from None
            continue
        if msg[0] == "error":
            raise PrepError(msg[1])
        return msg[1:]


def main(argv):
    args = parse_args(argv)
    try:
        return run(args)
    except PrepError as e:
        print("%s: error: %s" % (PROG, e), file=sys.stderr)
        return 1
    except sddit_h5.FormatError as e:
        print("%s: error: %s" % (PROG, e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
