"""Ctrl-C in the driver: a SIGINT handler whose interrupt cannot be swallowed by Ray or MLflow."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

_INTERRUPTED = threading.Event()


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt in the driver's loop after a Ctrl-C.

    The first KeyboardInterrupt can land inside Ray or MLflow code that
    swallows it (a callback from C++, say); the driver's own handlers raise it
    again at the next event or Tune step, so an interrupted sweep always stops
    and marks its open runs KILLED.
    """
    if _INTERRUPTED.is_set():
        raise KeyboardInterrupt


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        _INTERRUPTED.set()
        raise KeyboardInterrupt

    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _INTERRUPTED.clear()
