"""The driver's MLflow writes, in order, on one background thread (`WriteQueue`)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any


class WriteQueue:
    """Runs the driver's MLflow writes in order on one background thread.

    Ray Tune's function trainables block in `tune.report` until the driver's
    Tune loop has handled the result, so a write made inside the loop stalls
    the worker that reported: with SQLite, the quickstart's workers spent
    ~30 s of its ~60 s waiting on MLflow. The loop hands its writes here and
    goes on; `close` waits for every write handed over.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[Callable[[], Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="granularity-mlflow", daemon=True)
        self._thread.start()

    def submit(self, write: Callable[[], Any]) -> None:
        """Queue `write` (it handles its own errors: one that raises is dropped)."""
        self._queue.put(write)

    def _loop(self) -> None:
        while True:
            write = self._queue.get()
            if write is None:
                return
            try:
                write()
            except Exception:  # noqa: BLE001 (callers record failures themselves)
                pass

    def close(self) -> None:
        """Wait for every queued write, then stop the thread."""
        self._queue.put(None)
        self._thread.join()
