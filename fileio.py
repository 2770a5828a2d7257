"""Files every package writes and reads whole: atomic writes and JSON records (stdlib only).

A top-level module beside `contracts`, so that every package may import it
without importing another package (tests/test_imports.py).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_atomic(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> Path:
    """Write `data` to `path` via a temporary file, fsync and rename.

    A reader (or a crash) never sees half a file. Every package's persistent
    files (hierarchies, checkpoints, result records, caches) go through here.
    `fsync=False` leaves the flush to disk to the caller (one `os.sync` for
    many files); the rename still makes the file whole or absent for any
    process, and a killed process loses nothing the kernel holds.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600; these files are shared (Ray workers, other users).
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: Path, payload: Any, *, fsync: bool = True) -> None:
    """Write JSON so that a reader (or a crash) never sees half a file (`fsync`: see write_atomic)."""
    write_atomic(path, json.dumps(payload).encode(), fsync=fsync)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object at `path`, or None when missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
