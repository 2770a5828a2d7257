"""Checkpoint files: atomic writes, safe loads, and the shared pretrained-backbone store.

A checkpoint is a dict of tensors and plain Python values saved with
`torch.save` to a temporary file and renamed into place, so a reader (or a
restarted trial) never sees half a file; loads use `weights_only=True` (no
pickled code runs). Beside each file, `<file>.sha256` holds its digest: a
checkpoint that is truncated, corrupted, or lacks its digest (a write that
died before it) is not loaded. `load_checkpoint` warns, moves it aside to
`<file>.corrupt` and returns None, so the caller recomputes that stage.

The pretrain store keeps one file per `pretrain_key`. `PretrainStore.claim`
takes a file lock on the key: the first trial to arrive trains and saves
while holding it, a trial arriving meanwhile waits, then loads.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from fileio import write_atomic


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def digest_path(path: str | os.PathLike) -> Path:
    """The checksum sidecar of checkpoint `path`: `<path>.sha256`."""
    return Path(str(path) + ".sha256")


def save_atomic(obj: dict[str, Any], path: str | os.PathLike) -> Path:
    """torch.save `obj` to `path` (temporary file + rename) with its sha256 sidecar.

    The sidecar is written before the rename: a crash in between leaves a
    digest that does not match the old file, which is then recomputed, never
    loaded unchecked.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        write_atomic(digest_path(path), f"{_sha256(Path(tmp))}  {path.name}\n".encode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class CorruptCheckpointWarning(UserWarning):
    """A checkpoint failed its checksum (or would not load) and will be recomputed."""


def _discard(path: Path, why: str) -> None:
    warnings.warn(
        f"checkpoint {str(path)!r} {why}; moved to {path.name}.corrupt, recomputing that stage",
        CorruptCheckpointWarning,
        stacklevel=3,
    )
    try:
        os.replace(path, str(path) + ".corrupt")
    except OSError:
        pass
    digest_path(path).unlink(missing_ok=True)


def verify_checkpoint(path: str | os.PathLike) -> str | None:
    """None when `path` matches its sha256 sidecar, else what is wrong with it."""
    path = Path(path)
    try:
        expected = digest_path(path).read_text().split()[0]
    except (OSError, IndexError):
        return "has no checksum file (a write did not complete)"
    actual = _sha256(path)
    if actual != expected:
        return f"fails its checksum (sha256 {actual[:12]}..., expected {expected[:12]}...)"
    return None


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any] | None:
    """The checkpoint at `path`, or None when there is none or it is corrupt (warned).

    Verifies the sha256 sidecar first, then loads tensors only (`weights_only=True`).
    """
    path = Path(path)
    if not path.is_file():
        return None
    problem = verify_checkpoint(path)
    if problem is not None:
        _discard(path, problem)
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 (an unreadable file is a corrupt one)
        _discard(path, f"does not load ({type(err).__name__}: {err})")
        return None


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
