"""One driver per sweep: `<storage>/driver.lock`, and the workers of a dead driver fenced off.

`driver_lock` keeps a second driver off a running sweep. A driver killed
with SIGKILL leaves its Ray workers behind for a while (Ray reaps them once
it notices, seconds later, longer on a busy machine); a new driver that
starts meanwhile would run beside them: the same trials twice, and result
files still being written while it works. So each driver, once it holds the
lock, writes its id to `<storage>/driver.json` (`claim_sweep`); a worker
checks it before each trial of its pack (`is_current`) and stops when a
newer driver holds the sweep; and every running pack holds a shared lock on
`<storage>/workers.lock` (`worker_hold`), which the new driver waits on
(`wait_for_workers`) before it syncs and schedules, so the old workers'
last results are on disk first. The kernel drops a dead process's locks,
so a killed worker never blocks anyone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from fileio import read_json, write_json_atomic
from sweeps.errors import SweepError

OWNER_FILE = "driver.json"
WORKERS_FILE = "workers.lock"


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


def claim_sweep(storage: Path, invocation: str) -> None:
    """Record `invocation` as the sweep's driver (call it holding `driver_lock`)."""
    write_json_atomic(
        storage / OWNER_FILE,
        {"invocation": invocation, "host": socket.gethostname(), "pid": os.getpid()},
    )


def is_current(storage: str | os.PathLike, invocation: str) -> bool:
    """False once another driver has claimed the sweep (True when none ever did)."""
    owner = read_json(Path(storage) / OWNER_FILE)
    return owner is None or owner.get("invocation") in (None, invocation)


@contextlib.contextmanager
def worker_hold(storage: str | os.PathLike) -> Iterator[None]:
    """A shared lock on `<storage>/workers.lock` for as long as a pack runs."""
    fd = os.open(Path(storage) / WORKERS_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def wait_for_workers(storage: Path, timeout_s: float = 120.0, stream: TextIO | None = None) -> bool:
    """Wait (at most `timeout_s`) until no pack of an earlier driver runs; False if some still do.

    Workers of a killed driver stop at their next trial (`is_current`) or
    when Ray reaps them; one in a long trial may outlast the wait, and the
    sweep then goes on beside it (it starts no further trial).
    """
    storage.mkdir(parents=True, exist_ok=True)
    fd = os.open(storage / WORKERS_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    started = time.monotonic()
    told = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                pass
            waited = time.monotonic() - started
            if waited >= timeout_s:
                print(
                    f"warning: workers of an earlier driver still run after {waited:.0f} s; "
                    "going on beside them (they start no new trial)",
                    file=stream or sys.stderr,
                )
                return False
            if waited > 2.0 and not told:
                print(
                    "waiting for the workers of an earlier (killed) driver to stop ...",
                    file=stream or sys.stderr,
                    flush=True,
                )
                told = True
            time.sleep(0.2)
    finally:
        os.close(fd)  # releases the exclusive lock at once: this driver's packs share it
