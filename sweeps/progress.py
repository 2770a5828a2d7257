"""The driver's progress line on stderr: done, running, failed, remaining, ETA."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """One compact line on stderr: done, running, failed, remaining, ETA."""

    def __init__(self, total: int, *, stream: TextIO | None = None, label: str = "") -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.label = label
        self.done = self.failed = self.running = 0
        self.pending = 0  # results MLflow has not got yet (tracking server unreachable)
        self.started = time.monotonic()
        self.last_print = 0.0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def line(self) -> str:
        remaining = self.total - self.done - self.failed
        elapsed = time.monotonic() - self.started
        eta = "?"
        finished = self.done + self.failed
        if finished and remaining:
            eta = duration(elapsed / finished * remaining)
        elif not remaining:
            eta = "0s"
        pending = f", {self.pending} pending sync (MLflow unreachable)" if self.pending else ""
        return (
            f"[{self.label}] {self.done}/{self.total} done, {self.running} running, "
            f"{self.failed} failed, {remaining} remaining{pending}, ETA {eta} "
            f"({duration(elapsed)} elapsed)"
        )

    def show(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_print < (1.0 if self.tty else 15.0):
            return
        self.last_print = now
        end = "\r" if self.tty and not force else "\n"
        print(self.line().ljust(100 if self.tty else 0), end=end, file=self.stream, flush=True)


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
