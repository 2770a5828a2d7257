"""The driver lock: `<storage>/driver.lock`, one driver per sweep."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from sweeps.errors import SweepError


@contextlib.contextmanager
def driver_lock(storage: Path, busy: str) -> Iterator[None]:
    """Hold `<storage>/driver.lock` (one driver per sweep); SweepError(busy) when it is taken."""
    from filelock import FileLock, Timeout

    path = storage / "driver.lock"
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise SweepError(f"{busy} (lock {path})") from None
    try:
        yield
    finally:
        lock.release()


def driver_running(storage: Path) -> bool:
    from filelock import FileLock, Timeout

    path = storage / "driver.lock"
    if not path.exists():
        return False
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False
