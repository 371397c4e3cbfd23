#!/usr/bin/python3
"""Writer and validator for sddit's HDF5 dataset format, version 1.

Layout written by every data-prep tool:
  /latents  (N, C, H, W) float16 or float32, already multiplied by scale_factor, or
  /moments  (N, 2C, H, W) mean then log-variance along axis 1 (scale_factor not applied)
  /labels   (N,) int32 in [0, num_classes)
  root attributes: format = "sddit-latents", format_version = 1, num_classes, image_size,
  latent_channels, scale_factor, encoder, source, optionally flipped (0/1), and the
  bookkeeping attributes prep_config (JSON of what produced the file) and completed.

A file is built under OUT.partial and renamed to OUT only when complete and validated, so a
file at the final path is always whole. Long jobs record how many work units are done in the
root attribute `completed` after every batch; rerunning the same command reopens the partial
file and continues (see open_writer).

As a program it validates files:  data-prep/sddit_h5.py FILE... [--quick]
"""
import json
import os
import sys

import numpy as np

FORMAT = "sddit-latents"
FORMAT_VERSION = 1
CHUNK_TARGET_BYTES = 64 << 10  # a chunk holds a few samples: at most this many bytes ...
CHUNK_MAX_SAMPLES = 16         # ... and at most this many samples


class FormatError(Exception):
    """A file breaks format version 1; the message names the path, object and index."""


class ConfigMismatch(Exception):
    """An existing (partial or complete) output was made by a different command."""


class AlreadyComplete(Exception):
    """The final output exists and was made by the same configuration."""


def chunk_samples(sample_bytes):
    return int(max(1, min(CHUNK_MAX_SAMPLES, CHUNK_TARGET_BYTES // max(1, sample_bytes))))


def _h5py():
    import h5py
    return h5py


def attr_value(v):
    """An HDF5 attribute as a Python value: bytes decoded (UTF-8), numpy scalars unwrapped."""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.generic):
        return v.item()
    return v


def _attr_str(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def config_differences(old, new):
    """Human-readable list of keys whose values differ between two config dicts."""
    out = []
    for k in sorted(set(old) | set(new)):
        if old.get(k) != new.get(k):
            out.append("%s: %s -> %s" % (k, json.dumps(old.get(k)), json.dumps(new.get(k))))
    return out


def read_config(path):
    """The prep_config dict stored in a file, or None if it has none."""
    h5py = _h5py()
    with h5py.File(path, "r") as f:
        if "prep_config" not in f.attrs:
            return None
        return json.loads(_attr_str(f.attrs["prep_config"]))


def check_existing(path, config, ignore_keys=()):
    """Looks at OUT and OUT.partial: returns "complete", "partial" or None (neither exists);
    raises ConfigMismatch, listing the differences, when the one found was made with another
    configuration (keys in ignore_keys are not compared)."""
    config = json.loads(json.dumps(config))
    for p, what in ((path, "complete"), (path + ".partial", "partial")):
        if not os.path.exists(p):
            continue
        try:
            old = read_config(p)
        except OSError as e:
            raise ConfigMismatch("%s exists but cannot be read as HDF5 (%s); remove it to "
                                 "start over" % (p, e)) from None
        a = {k: v for k, v in (old or {}).items() if k not in ignore_keys}
        b = {k: v for k, v in config.items() if k not in ignore_keys}
        if old is None or a != b:
            diff = config_differences(a, b) if old else ["(it has no prep_config)"]
            raise ConfigMismatch(
                "%s exists (%s) but was made with a different configuration:\n  %s\n"
                "Rerun the original command to %s, or remove %s (or choose another --out) to "
                "start over." % (p, what, "\n  ".join(diff),
                                 "keep it" if what == "complete" else "continue it", p))
        return what
    return None


class Writer:
    """One format-1 file under construction (use open_writer)."""

    def __init__(self, final_path, f, kind, n, num_classes, completed):
        self.final_path = final_path
        self.partial_path = final_path + ".partial"
        self.f = f
        self.kind = kind
        self.values = f[kind]
        self.labels = f["labels"]
        self.n = n
        self.num_classes = num_classes
        self.completed = completed

    def write(self, offset, values, labels):
        """Stores rows [offset, offset + len(values)); checks finiteness and label range."""
        values = np.asarray(values)
        labels = np.asarray(labels)
        b = values.shape[0]
        if values.shape[1:] != self.values.shape[1:]:
            raise ValueError("%s: rows of shape %s do not fit /%s %s" % (
                self.partial_path, values.shape[1:], self.kind, self.values.shape))
        if labels.shape != (b,):
            raise ValueError("%s: %d labels for %d rows" % (self.partial_path, labels.size, b))
        if offset < 0 or offset + b > self.n:
            raise ValueError("%s: rows %d..%d are outside [0, %d)" % (
                self.partial_path, offset, offset + b - 1, self.n))
        stored = values.astype(self.values.dtype)
        bad = ~np.isfinite(stored)
        if bad.any():
            idx = np.argwhere(bad)[0]
            raise FormatError("%s: /%s[%d, %d, %d, %d] would be %s (from %r); refusing to "
                              "store a non-finite value" % (
                                  self.partial_path, self.kind, offset + idx[0], idx[1], idx[2],
                                  idx[3], stored[tuple(idx)], values[tuple(idx)]))
        bad = (labels < 0) | (labels >= self.num_classes)
        if bad.any():
            i = int(np.argmax(bad))
            raise FormatError("%s: /labels[%d] = %d is outside [0, num_classes = %d)" % (
                self.partial_path, offset + i, labels[i], self.num_classes))
        self.values[offset:offset + b] = stored
        self.labels[offset:offset + b] = labels.astype(np.int32)

    def set_completed(self, k):
        """Records that k work units are done and pushes everything to disk."""
        self.completed = int(k)
        self.f.attrs["completed"] = np.int64(k)
        self.f.flush()
        try:
            os.fsync(self.f.id.get_vfd_handle())
        except Exception:  # noqa: BLE001 - fsync is best effort (not every driver has a handle)
            pass

    def finish(self, scan_values=False):
        """Closes, validates and renames OUT.partial to OUT. Returns the validation summary."""
        self.f.flush()
        self.f.close()
        info = validate(self.partial_path, scan_values=scan_values)
        os.replace(self.partial_path, self.final_path)
        info["path"] = self.final_path
        return info

    def close(self):
        """Closes without finishing (the partial file stays for a later resume)."""
        try:
            self.f.close()
        except Exception:  # noqa: BLE001
            pass

    def discard(self):
        self.close()
        try:
            os.remove(self.partial_path)
        except FileNotFoundError:
            pass


def open_writer(path, *, n, sample_shape, dtype, kind, attrs, config, resume,
                extra_datasets=None):
    """Opens OUT.partial for writing.

    n: rows; sample_shape: one row's (C', H, W) (C' = 2C for kind "moments"); dtype: "float16"
    or "float32"; attrs: the format attributes (format and format_version are added);
    config: JSON-able dict of everything that determines the contents, stored as prep_config;
    extra_datasets: {name: numpy array} written once at creation (e.g. class_names).

    resume=False: any old partial file is replaced (the final file is replaced by finish()).
    resume=True: an existing OUT made with the same config raises AlreadyComplete, one made
    with another config raises ConfigMismatch; an existing OUT.partial with the same config is
    reopened and the returned writer's .completed says how far it got; with another config it
    raises ConfigMismatch.
    """
    h5py = _h5py()
    if kind not in ("latents", "moments"):
        raise ValueError("kind must be latents or moments")
    dtype = np.dtype(dtype)
    if dtype not in (np.float16, np.float32):
        raise ValueError("dtype must be float16 or float32")
    partial = path + ".partial"
    config = json.loads(json.dumps(config))  # normalise (tuples -> lists) for comparisons
    num_classes = int(attrs["num_classes"])
    shape = (int(n),) + tuple(int(s) for s in sample_shape)

    if resume:
        state = check_existing(path, config)
        if state == "complete":
            raise AlreadyComplete(path)
        if state == "partial":
            f = h5py.File(partial, "r+")
            if kind not in f or f[kind].shape != shape or f[kind].dtype != dtype:
                f.close()
                raise ConfigMismatch("%s: its /%s does not have shape %s and dtype %s; remove it "
                                     "to start over" % (partial, kind, shape, dtype))
            return Writer(path, f, kind, shape[0], num_classes, int(f.attrs.get("completed", 0)))

    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    if os.path.exists(partial):
        os.remove(partial)
    f = h5py.File(partial, "w")
    try:
        all_attrs = {"format": FORMAT, "format_version": FORMAT_VERSION}
        all_attrs.update(attrs)
        for k, v in all_attrs.items():
            if isinstance(v, str):
                f.attrs[k] = v
            elif isinstance(v, (bool, np.bool_)):
                f.attrs[k] = np.int64(int(v))
            elif isinstance(v, (int, np.integer)):
                f.attrs[k] = np.int64(v)
            elif isinstance(v, (float, np.floating)):
                f.attrs[k] = np.float64(v)
            else:
                raise TypeError("attribute %s: unsupported value %r" % (k, v))
        f.attrs["prep_config"] = json.dumps(config, sort_keys=True)
        f.attrs["completed"] = np.int64(0)
        row_bytes = int(np.prod(shape[1:])) * dtype.itemsize
        cs = min(chunk_samples(row_bytes), shape[0])
        # Allocate every chunk now without writing fill values (sparse, fast): later writes
        # touch raw data and one attribute only, so an interrupted run leaves a consistent
        # file to resume. (The chunk shape goes into our own property list: h5py's chunks=
        # argument would reset the fill time.)
        for name, shp, dt, chunk in ((kind, shape, dtype, (cs,) + shape[1:]),
                                     ("labels", shape[:1], np.int32, (min(shape[0], 1 << 16),))):
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_chunk(chunk)
            dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
            dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
            f.create_dataset(name, shape=shp, dtype=dt, dcpl=dcpl)
        for name, arr in (extra_datasets or {}).items():
            if isinstance(arr, (list, tuple)) and arr and isinstance(arr[0], str):
                f.create_dataset(name, data=list(arr), dtype=h5py.string_dtype())
            else:
                f.create_dataset(name, data=arr)
        f.flush()
    except BaseException:
        f.close()
        os.remove(partial)
        raise
    return Writer(path, f, kind, shape[0], num_classes, 0)


def write_whole(path, x, labels, attrs, config):
    """Writes a whole in-memory dataset (x (N, C, H, W) float32, labels (N,) int32) as a
    format-1 latents file in one go (atomically, as open_writer does) and returns finish()'s
    summary; a failure leaves no partial file."""
    n = x.shape[0]
    w = open_writer(path, n=n, sample_shape=x.shape[1:], dtype="float32", kind="latents",
                    attrs=attrs, resume=False, config=config)
    try:
        w.write(0, x, labels)
        w.set_completed(n)
        return w.finish(scan_values=True)
    except BaseException:
        w.discard()
        raise


def validate(path, scan_values=True, block_bytes=64 << 20):
    """Checks a file against format version 1 and returns a summary dict; raises FormatError
    naming the path, the object and (for values) the first bad index."""
    h5py = _h5py()
    if not os.path.isfile(path):
        raise FormatError("%s: no such file" % path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise FormatError("%s: cannot open as HDF5 (%s)" % (path, e)) from None
    with f:
        a = f.attrs
        fmt = _attr_str(a["format"]) if "format" in a else None
        if fmt != FORMAT:
            raise FormatError("%s: root attribute format is %r, expected %r" % (path, fmt, FORMAT))
        for k in ("format_version", "num_classes", "image_size", "latent_channels"):
            if k not in a or not np.issubdtype(np.asarray(a[k]).dtype, np.integer):
                raise FormatError("%s: root attribute %r is missing or not an integer" % (path, k))
        if int(a["format_version"]) != FORMAT_VERSION:
            raise FormatError("%s: format_version is %d, expected %d" % (
                path, int(a["format_version"]), FORMAT_VERSION))
        for k in ("num_classes", "image_size", "latent_channels"):
            if int(a[k]) < 1:
                raise FormatError("%s: root attribute %s = %d must be positive" % (
                    path, k, int(a[k])))
        if "scale_factor" not in a or not np.issubdtype(np.asarray(a["scale_factor"]).dtype,
                                                        np.number):
            raise FormatError("%s: root attribute 'scale_factor' is missing or not a number" % path)
        sf = float(a["scale_factor"])
        if not np.isfinite(sf) or sf <= 0:
            raise FormatError("%s: scale_factor = %g must be positive" % (path, sf))
        for k in ("encoder", "source"):
            if k in a and not isinstance(a[k], (str, bytes)):
                raise FormatError("%s: root attribute %r must be a string" % (path, k))
        if "flipped" in a and int(a["flipped"]) not in (0, 1):
            raise FormatError("%s: root attribute flipped = %r must be 0 or 1" % (path, a["flipped"]))
        kinds = [k for k in ("latents", "moments") if k in f]
        if len(kinds) != 1:
            raise FormatError("%s: must hold exactly one of /latents and /moments (has %s)" % (
                path, ", ".join("/" + k for k in kinds) or "neither"))
        kind = kinds[0]
        v = f[kind]
        if v.ndim != 4 or v.shape[0] < 1 or v.shape[2] != v.shape[3]:
            raise FormatError("%s: /%s has shape %s; it must be (N, %s, H, H) with N >= 1" % (
                path, kind, v.shape, "2C" if kind == "moments" else "C"))
        if v.dtype not in (np.dtype("<f2"), np.dtype("<f4")):
            raise FormatError("%s: /%s has dtype %s; it must be little-endian float16 or "
                              "float32" % (path, kind, v.dtype))
        c = v.shape[1] // 2 if kind == "moments" else v.shape[1]
        if kind == "moments" and v.shape[1] % 2:
            raise FormatError("%s: /moments has shape %s: axis 1 must be even" % (path, v.shape))
        if c != int(a["latent_channels"]):
            raise FormatError("%s: /%s has %d latent channels but latent_channels = %d" % (
                path, kind, c, int(a["latent_channels"])))
        if "labels" not in f:
            raise FormatError("%s: /labels is missing" % path)
        lab = f["labels"]
        if lab.shape != (v.shape[0],) or lab.dtype != np.int32:
            raise FormatError("%s: /labels has shape %s dtype %s; it must be (%d,) int32" % (
                path, lab.shape, lab.dtype, v.shape[0]))
        y = lab[...]
        nc = int(a["num_classes"])
        bad = np.nonzero((y < 0) | (y >= nc))[0]
        if bad.size:
            i = int(bad[0])
            raise FormatError("%s: /labels[%d] = %d is outside [0, num_classes = %d)" % (
                path, i, y[i], nc))
        if scan_values:
            row = int(np.prod(v.shape[1:])) * v.dtype.itemsize
            step = max(1, block_bytes // row)
            for s in range(0, v.shape[0], step):
                blk = v[s:s + step]
                bad = ~np.isfinite(blk)
                if bad.any():
                    idx = np.argwhere(bad)[0]
                    raise FormatError("%s: /%s[%d, %d, %d, %d] is %s" % (
                        path, kind, s + idx[0], idx[1], idx[2], idx[3], blk[tuple(idx)]))
        return {
            "path": path, "kind": kind, "shape": tuple(v.shape), "dtype": str(v.dtype),
            "num_classes": nc, "image_size": int(a["image_size"]), "latent_channels": c,
            "scale_factor": sf, "encoder": _attr_str(a.get("encoder", "")),
            "source": _attr_str(a.get("source", "")),
            "flipped": int(a["flipped"]) if "flipped" in a else None,
            "classes_present": int(np.unique(y).size),
        }


def describe(info):
    return "%s: /%s %s %s, %d classes, image_size %d, scale_factor %g, encoder %r%s" % (
        info["path"], info["kind"], "(" + ", ".join(str(s) for s in info["shape"]) + ")",
        info["dtype"], info["num_classes"], info["image_size"], info["scale_factor"],
        info["encoder"], ", flipped copies" if info.get("flipped") else "")


def main(argv):
    import argparse
    p = argparse.ArgumentParser(description="Validate sddit format-1 HDF5 datasets.")
    p.add_argument("files", nargs="+")
    p.add_argument("--quick", action="store_true",
                   help="skip the scan that every stored value is finite")
    args = p.parse_args(argv)
    rc = 0
    for path in args.files:
        try:
            info = validate(path, scan_values=not args.quick)
            print(describe(info) + ": ok")
        except FormatError as e:
            print("error: %s" % e, file=sys.stderr)
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
