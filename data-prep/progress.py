"""The progress line of the long data-prep jobs (imagenet_latents.py, decode_latents.py).

Progress(prog, total, start=0) writes `prog: done/total images (pct%), rate images/s, ETA
h:mm:ss` on stderr, every second on a terminal (rewritten in place), every 30 s in a log, and whenever
update(..., force=True) is called. Rates count from the first update, so model loading is
left out; a job that ends within one batch counts from construction instead. start: images
already done before this run (a resumed job).
"""
import sys
import time


class Progress:
    def __init__(self, prog, total, start=0):
        self.prog, self.total, self.start = prog, total, start
        self.done = self.done0 = start
        self.tty = sys.stderr.isatty()
        self.t_begin = time.monotonic()
        self.t0 = None
        self.last = 0.0

    def update(self, done, force=False):
        now = time.monotonic()
        if self.t0 is None:  # rates count from the first batch (model loading excluded)
            self.t0, self.done0, self.last = now, done, now
        self.done = done
        if not force and now - self.last < (1.0 if self.tty else 30.0):
            return
        self.last = now
        dt = now - self.t0
        rate = (done - self.done0) / dt if dt > 0 else 0.0
        if rate == 0.0 and force:  # a single batch: count from the start (model loading too)
            rate = (done - self.start) / max(1e-9, now - self.t_begin)
        s = int(round((self.total - done) / rate)) if rate > 0 else None
        eta = "%d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60) if s is not None else "?"
        line = "%s: %d/%d images (%.1f%%), %.1f images/s, ETA %s" % (
            self.prog, done, self.total, 100.0 * done / self.total, rate, eta)
        sys.stderr.write(("\r" + line + "   ") if self.tty else line + "\n")
        sys.stderr.flush()

    def end(self):
        if self.tty and self.last:
            sys.stderr.write("\n")
