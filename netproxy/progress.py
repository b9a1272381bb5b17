"""Progress of long work on stderr, only when stderr is a terminal.

    with progress("parsing node.rules", total=len(text), unit="bytes") as bar:
        for piece in pieces:
            ...
            bar.advance(len(piece))

shows ``netproxy: parsing node.rules: 12.0/31.5 MB (38%), 3s left`` on one line that is
rewritten in place and cleared at the end. Work without a known total (one call to
``iptables-nft-save``) shows the time spent so far, refreshed by a small thread. Nothing is
written when stderr is not a terminal (piped, redirected, in tests), nor for work done
within :data:`DELAY` seconds, so quick commands and scripts see no difference.
``NETPROXY_PROGRESS=0`` turns it off, ``=1`` forces it on (for tests through a pty the delay
is ``NETPROXY_PROGRESS_DELAY`` seconds).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from types import TracebackType
from typing import IO

DELAY = 1.0
"""Seconds of work before anything is shown."""
INTERVAL = 0.25
"""Least seconds between two redraws."""


def enabled(stream: IO[str] | None = None) -> bool:
    """Whether progress goes to ``stream`` (default stderr)."""
    setting = os.environ.get("NETPROXY_PROGRESS", "")
    if setting == "0":
        return False
    stream = stream if stream is not None else sys.stderr
    try:
        return setting == "1" or stream.isatty()
    except (AttributeError, ValueError):
        return False


def _delay() -> float:
    try:
        return float(os.environ.get("NETPROXY_PROGRESS_DELAY", DELAY))
    except ValueError:
        return DELAY


def _amount(value: float, unit: str) -> str:
    if unit == "bytes":
        return f"{value / 1e6:.1f}"
    return f"{int(value):,}"


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    if seconds < 60:
        return f"{seconds}s"
    return f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    """One line of progress: ``what``, done/total and the time left (or the time spent)."""

    def __init__(self, what: str, total: float | None = None, *, unit: str = "",
                 stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.active = enabled(self.stream)
        self.what = what
        self.total = total
        self.unit = unit
        self.done = 0.0
        self.start = time.monotonic()
        self.stage_start = self.start
        """When the current step began: the time left is estimated from its own pace."""
        self.delay = _delay()
        self.last = 0.0
        self.shown = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if self.active and total is None:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def advance(self, amount: float = 1) -> None:
        self.update(self.done + amount)

    def update(self, done: float, what: str | None = None) -> None:
        """``done`` of the total so far (and, optionally, a new description)."""
        self.done = done
        if what is not None:
            self.what = what
        if not self.active:
            return
        now = time.monotonic()
        if now - self.start < self.delay or now - self.last < INTERVAL:
            return
        self._draw(now)

    def stage(self, what: str, total: float | None = None) -> None:
        """Go on with another step of the same work (done starts again at 0)."""
        self.what, self.total, self.done = what, total, 0.0
        self.stage_start = time.monotonic()
        if self.active and self.shown:
            self._draw(time.monotonic())

    def _tick(self) -> None:
        while True:
            now = time.monotonic()
            if now - self.start >= self.delay:
                self._draw(now)
            if self._stop.wait(INTERVAL):
                return

    def _draw(self, now: float) -> None:
        with self._lock:
            if self._stop.is_set() and self._ticker is not None:
                return
            self.last = now
            spent = now - self.start
            if self.total:
                share = min(self.done / self.total, 1.0)
                unit = " MB" if self.unit == "bytes" else (f" {self.unit}" if self.unit else "")
                text = (f"{self.what}: {_amount(self.done, self.unit)}/"
                        f"{_amount(self.total, self.unit)}{unit} ({share:.0%})")
                if share > 0.02:
                    pace = now - self.stage_start
                    text += f", {_duration(pace / share - pace)} left"
            else:
                text = f"{self.what} ({_duration(spent)} so far)"
            self.stream.write(f"\r\x1b[Knetproxy: {text}")
            self.stream.flush()
            self.shown = True

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        with self._lock:
            if self.shown:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self.shown = False


def progress(what: str, total: float | None = None, *, unit: str = "") -> Progress:
    """A :class:`Progress` on stderr (inactive unless stderr is a terminal)."""
    return Progress(what, total, unit=unit)
