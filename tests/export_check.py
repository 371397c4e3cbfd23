#!/usr/bin/python3
"""Independent checks of `sddit export` / `sddit import` files (for tests/test_export.sh).

The safetensors files are parsed here with json + numpy only, not with sddit's reader.

  export_check.py check MODEL.safetensors CKPT.h5 --weights ema|raw
      names, shapes, dtypes and values (bitwise) against the checkpoint's /ema or
      /student/params and its /tensors table; the file's layout (8-byte length, padded header,
      contiguous offsets); metadata; pos_embed against the sin-cos table; with torch importable,
      a strict load_state_dict into the reference DiT (tests/reference/dit_reference.py).
  export_check.py same A.safetensors B.safetensors
      identical tensor entries and data bytes; prints the metadata keys that differ.
  export_check.py imported CKPT.h5 ORIGINAL.h5
      an imported checkpoint: step 0, student DiT = teacher DiT = /ema = ORIGINAL's /ema,
      teacher head = student head, zero Adam moments and center.
  export_check.py rewrite SRC DST MODE
      writes a modified copy (test inputs): truncate, biglen, dtype, unknown-dtype, missing,
      misshape, extra, overlap, badjson, nometa, unicode, f16, bf16.
  export_check.py unicode-ok CKPT.h5
      the checkpoint imported from a `unicode` file holds the non-ASCII data.path.
  export_check.py converted MODEL.safetensors ORIGINAL.safetensors f16|bf16
      MODEL's tensors equal ORIGINAL's rounded through that 16-bit type (bitwise).
Exit status 0 when every check passes; failures are printed.
"""
import json
import os
import struct
import sys

import numpy as np

DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "I32": np.dtype("<i4"),
          "F64": np.dtype("<f8"), "I64": np.dtype("<i8"), "U8": np.dtype("u1")}
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL", msg)


def read_st(path):
    """(metadata, {name: (dtype, shape, begin, end)} in header order, data bytes, N)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = raw[8:8 + n].decode("utf-8")
    obj = json.loads(header, object_pairs_hook=_no_dups)
    meta = obj.pop("__metadata__", {})
    return meta, obj, raw[8 + n:], n, header


def _no_dups(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError("duplicate key %r" % k)
        d[k] = v
    return d


def tensor(entry, data):
    dt = np.dtype("<u2") if entry["dtype"] == "BF16" else DTYPES[entry["dtype"]]
    b, e = entry["data_offsets"]
    return np.frombuffer(data[b:e], dtype=dt).reshape(entry["shape"])


def write_st(path, meta, entries):
    """entries: list of (name, dtype, shape, bytes); offsets assigned contiguously."""
    hdr, off, blobs = {}, 0, []
    if meta is not None:
        hdr["__metadata__"] = meta
    for name, dtype, shape, blob in entries:
        hdr[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(blob)]}
        off += len(blob)
        blobs.append(blob)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def ini_model(text):
    """[model] keys of the INI text as ints where they are ints."""
    section, out = None, {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and section == "model" and not line.startswith("#"):
            k, v = (s.strip() for s in line.split("=", 1))
            try:
                out[k] = int(v)
            except ValueError:
                out[k] = v
    return out


def pos_table(hidden, grid):
    """DiT's 2-D sin-cos table (T, D), float64: columns [0, D/2) the column, then the row."""
    def one(width, pos):
        half = width // 2
        omega = 1.0 / 10000.0 ** (np.arange(half, dtype=np.float64) / half)
        a = np.asarray(pos, dtype=np.float64)[:, None] * omega[None, :]
        return np.concatenate([np.sin(a), np.cos(a)], axis=1)
    m = np.arange(grid * grid)
    return np.concatenate([one(hidden // 2, m % grid), one(hidden // 2, m // grid)], axis=1)


def h5_table(f):
    names = [n.decode().rstrip("\0") if isinstance(n, bytes) else n for n in f["/tensors/names"][()]]
    offs, numel, shapes = f["/tensors/offsets"][()], f["/tensors/numel"][()], f["/tensors/shapes"][()]
    return [(names[i], int(offs[i]), int(numel[i]), tuple(int(s) for s in shapes[i] if s != 0))
            for i in range(len(names))]


def check(st_path, ck_path, weights):
    import h5py
    meta, ents, data, n, header = read_st(st_path)
    if n % 8:
        fail("header length %d is not a multiple of 8" % n)
    if header.rstrip(" ") != header.rstrip() or not header.rstrip(" ").endswith("}"):
        fail("header is not JSON padded with spaces")
    # contiguous, in order, covering the data section
    spans = sorted((e["data_offsets"][0], e["data_offsets"][1], k) for k, e in ents.items())
    at = 0
    for b, e, k in spans:
        if b != at:
            fail("tensor %s begins at %d, expected %d" % (k, b, at))
        at = e
    if at != len(data):
        fail("tensors cover %d of %d data bytes" % (at, len(data)))
    with h5py.File(ck_path, "r") as f:
        table = h5_table(f)
        dit_total = int(f.attrs["dit_total"])
        fam = f["/ema"][()] if weights == "ema" else f["/student/params"][:dit_total]
        step = int(f.attrs["step"])
        cfg_text = f.attrs["config"]
        cfg_text = cfg_text.decode() if isinstance(cfg_text, bytes) else cfg_text
    want_meta = {"format": "sddit-dit", "weights": weights, "train_step": str(step),
                 "config": cfg_text}
    for k, v in want_meta.items():
        if meta.get(k) != v:
            fail("metadata %s is %r, want %r" % (k, (meta.get(k) or "")[:60], v[:60]))
    for k in ("git_rev", "pos_embed", "format_version"):
        if k not in meta:
            fail("metadata has no %s" % k)
    dit = [t for t in table if t[1] < dit_total]
    names = set(ents)
    for name, off, numel, shape in dit:
        if name not in ents:
            fail("tensor %s missing" % name)
            continue
        e = ents[name]
        if e["dtype"] != "F32" or tuple(e["shape"]) != shape:
            fail("tensor %s is %s %s, want F32 %s" % (name, e["dtype"], e["shape"], shape))
            continue
        got = tensor(e, data)
        want = fam[off:off + numel].astype("<f4").reshape(shape)
        if got.tobytes() != want.tobytes():
            fail("tensor %s differs from the checkpoint's %s" % (name, weights))
        names.discard(name)
    m = ini_model(cfg_text)
    D, G = m["hidden"], m["input_size"] // m["patch"]
    if "pos_embed" not in ents:
        fail("no pos_embed")
    else:
        pe = tensor(ents["pos_embed"], data)
        if pe.shape != (1, G * G, D):
            fail("pos_embed shape %s, want (1, %d, %d)" % (pe.shape, G * G, D))
        elif np.abs(pe[0].astype(np.float64) - pos_table(D, G)).max() > 1e-6:
            fail("pos_embed is not the sin-cos table")
        names.discard("pos_embed")
    if names:
        fail("unexpected tensors %s" % sorted(names))
    xw = ents.get("x_embedder.proj.weight")
    if xw and tuple(xw["shape"]) != (D, m["in_channels"], m["patch"], m["patch"]):
        fail("x_embedder.proj.weight shape %s is not (D, C, p, p)" % xw["shape"])
    print("checked %d DiT tensors + pos_embed of %s against %s %s" % (len(dit), st_path, ck_path,
                                                                     weights))
    check_torch(ents, data, m)


def check_torch(ents, data, m):
    try:
        import torch
    except ImportError:
        print("torch not importable: skipping the PyTorch state_dict load")
        return
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
    import dit_reference as ref
    keys = ("input_size", "in_channels", "patch", "hidden", "depth", "heads", "mlp_ratio",
            "num_classes", "out_channels", "freq_dim")
    cfg = ref.DiTConfig(**{k: m[k] for k in keys})
    model = ref.DiT(cfg, dtype=torch.float32)
    sd = {k: torch.from_numpy(tensor(e, data).copy()) for k, e in ents.items() if k != "pos_embed"}
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        fail("PyTorch DiT load_state_dict(strict=True): %s" % str(e)[:300])
        return
    pe = torch.from_numpy(tensor(ents["pos_embed"], data).copy())
    if tuple(pe.shape) != tuple(model.pos_embed.shape) or \
            (pe - model.pos_embed.float()).abs().max().item() > 1e-6:
        fail("pos_embed differs from the reference DiT's buffer")
    with torch.no_grad():
        x = torch.randn(2, cfg.in_channels, cfg.input_size, cfg.input_size)
        out = model(x, torch.tensor([0.1, -0.3]), torch.tensor([1, cfg.num_classes]))
    if tuple(out.shape) != (2, cfg.out_channels, cfg.input_size, cfg.input_size) or \
            not torch.isfinite(out).all():
        fail("reference DiT forward with the loaded weights is not finite or mis-shaped")
    print("PyTorch: load_state_dict(strict=True) into the reference DiT and a forward pass ok")


def same(a, b):
    ma, ea, da, _, _ = read_st(a)
    mb, eb, db, _, _ = read_st(b)
    if list(ea.items()) != list(eb.items()):
        fail("tensor entries differ")
    if da != db:
        fail("data sections differ (%d vs %d bytes)" % (len(da), len(db)))
    diff = sorted(k for k in set(ma) | set(mb) if ma.get(k) != mb.get(k))
    if not failures:
        print("tensor entries and %d data bytes identical; metadata differs in: %s"
              % (len(da), ", ".join(diff) or "nothing"))


def imported(ck, orig):
    import h5py
    with h5py.File(ck, "r") as f, h5py.File(orig, "r") as g:
        dt = int(f.attrs["dit_total"])
        ema = f["/ema"][()]
        checks = [
            ("step 0", int(f.attrs["step"]) == 0),
            ("/ema equals the original /ema", ema.tobytes() == g["/ema"][()].tobytes()),
            ("student DiT equals /ema", f["/student/params"][:dt].tobytes() == ema.tobytes()),
            ("teacher equals student", f["/teacher"][()].tobytes()
             == f["/student/params"][()].tobytes()),
            ("Adam moments zero", not f["/student/adam_m"][()].any()
             and not f["/student/adam_v"][()].any()),
            ("center zero", not f["/center"][()].any()),
            ("head finite and not zero", np.isfinite(f["/student/params"][dt:]).all()
             and f["/student/params"][dt:].any()),
        ]
    for name, ok in checks:
        if not ok:
            fail("imported checkpoint: " + name)
    print("imported checkpoint: " + ", ".join(n for n, _ in checks))


def rewrite(src, dst, mode):
    meta, ents, data, n, _ = read_st(src)
    items = [(k, e["dtype"], e["shape"], data[e["data_offsets"][0]:e["data_offsets"][1]])
             for k, e in ents.items()]
    if mode == "truncate":
        with open(src, "rb") as f:
            raw = f.read()
        with open(dst, "wb") as f:
            f.write(raw[:-100])
        return
    if mode == "biglen":
        with open(src, "rb") as f:
            raw = f.read()
        with open(dst, "wb") as f:
            f.write(struct.pack("<Q", len(raw)) + raw[8:])
        return
    if mode in ("badjson", "overlap", "unknown-dtype", "dtype"):
        hdr = {"__metadata__": meta} if meta else {}
        hdr.update(ents)
        if mode == "overlap":
            e = hdr["blocks.0.attn.proj.bias"]
            e["data_offsets"] = [e["data_offsets"][0] - 4, e["data_offsets"][1] - 4]
        elif mode == "unknown-dtype":
            hdr["blocks.1.mlp.fc2.bias"]["dtype"] = "F31"
        elif mode == "dtype":
            hdr["blocks.1.mlp.fc2.bias"]["dtype"] = "I32"
        h = json.dumps(hdr, separators=(",", ":"))
        if mode == "badjson":
            h = h.replace('"shape":', '"shape" ', 1)
        h = h.encode()
        h += b" " * (-len(h) % 8)
        with open(dst, "wb") as f:
            f.write(struct.pack("<Q", len(h)) + h + data)
        return
    if mode == "missing":
        items = [it for it in items if it[0] != "blocks.2.mlp.fc1.weight"]
    elif mode == "misshape":
        items = [(k, d, s[::-1] if k == "blocks.1.attn.qkv.weight" else s, b)
                 for k, d, s, b in items]
    elif mode == "extra":
        items.append(("head.extra.weight", "F32", [2, 3], np.arange(6, dtype="<f4").tobytes()))
    elif mode == "nometa":
        meta = None
    elif mode == "unicode":  # \u escapes (ensure_ascii), a surrogate pair, a quote, a tab
        meta = dict(meta, note='caf\u00e9 "q"\t\u2713 \U0001F600')
        meta["config"] = meta["config"].replace("\npath =\n", "\npath = %s\n" % UNICODE_PATH)
    elif mode in ("f16", "bf16"):
        out = []
        for k, d, s, b in items:
            a = np.frombuffer(b, dtype="<f4")
            if mode == "f16":
                out.append((k, "F16", s, a.astype("<f2").tobytes()))
            else:
                out.append((k, "BF16", s, (a.view("<u4") >> 16).astype("<u2").tobytes()))
        items = out
    else:
        raise SystemExit("unknown mode " + mode)
    write_st(dst, meta, items)


UNICODE_PATH = "/data/h\u00e9llo-\u2713-\U0001F600.h5"


def unicode_ok(ck):
    import h5py
    with h5py.File(ck, "r") as f:
        text = f.attrs["config"]
        text = text.decode() if isinstance(text, bytes) else text
    if "path = %s\n" % UNICODE_PATH not in text:
        fail("the imported checkpoint's config lacks data.path = %r" % UNICODE_PATH)
    else:
        print("non-ASCII metadata (\\u escapes, a surrogate pair) decoded into the config")


def converted(path, orig, kind):
    _, ea, da, _, _ = read_st(path)
    _, eb, db, _, _ = read_st(orig)
    eb = {k: e for k, e in eb.items() if k != "pos_embed"}  # recomputed, never imported
    for k, e in eb.items():
        a = tensor(ea[k], da)
        b = tensor(e, db)
        want = (b.astype("<f2").astype("<f4") if kind == "f16"
                else ((b.view("<u4") >> 16) << 16).view("<f4"))
        if a.tobytes() != want.astype("<f4").tobytes():
            fail("tensor %s is not the %s-rounded original" % (k, kind))
    print("%d tensors equal the %s-rounded originals" % (len(eb), kind))


def main(argv):
    cmd = argv[1]
    if cmd == "check":
        check(argv[2], argv[3], argv[argv.index("--weights") + 1])
    elif cmd == "same":
        same(argv[2], argv[3])
    elif cmd == "imported":
        imported(argv[2], argv[3])
    elif cmd == "rewrite":
        rewrite(argv[2], argv[3], argv[4])
    elif cmd == "unicode-ok":
        unicode_ok(argv[2])
    elif cmd == "converted":
        converted(argv[2], argv[3], argv[4])
    else:
        raise SystemExit(__doc__)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
