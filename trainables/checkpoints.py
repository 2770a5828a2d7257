"""Checkpoint files: atomic writes, safe loads, and the shared pretrained-backbone store.

A checkpoint is a dict of tensors and plain Python values saved with
`torch.save` to a temporary file and renamed into place, so a reader (or a
restarted trial) never sees half a file; loads use `weights_only=True`.

The pretrain store keeps one file per `pretrain_key`. `PretrainStore.claim`
takes a file lock on the key: the first trial to arrive trains and saves
while holding it, a trial arriving meanwhile waits, then loads.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock


def save_atomic(obj: dict[str, Any], path: str | os.PathLike) -> Path:
    """torch.save `obj` to `path` via a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any] | None:
    """The checkpoint at `path`, or None when there is none. Loads tensors only (weights_only)."""
    path = Path(path)
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


class PretrainStore:
    """Pretrained backbones shared between trials, one file per pretrain key."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"pretrain_key {key!r} is not a valid file name")
        return self.root / f"{key}.pt"

    @contextmanager
    def claim(self, key: str, timeout_s: float = -1) -> Iterator[dict[str, Any] | None]:
        """Hold the key's lock; yield the stored entry, or None when the caller must train and `put` it."""
        path = self.path(key)
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock", timeout=timeout_s):
            yield load_checkpoint(path)

    def put(self, key: str, entry: dict[str, Any]) -> Path:
        """Store `entry` (call while holding `claim(key)`)."""
        return save_atomic(entry, self.path(key))
