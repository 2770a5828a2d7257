"""The disk fills up while a checkpoint or a result file is written: nothing half-written is taken for whole.

Two ways to fill it, each writer tried with both:

- `tmpfs`: a real 64 KiB tmpfs mounted for the test (needs root and a
  container that allows `mount`; skipped otherwise, failed under CI=1), so
  the kernel's own ENOSPC hits `write`;
- `fsync`: in-process, `os.fsync` raises ENOSPC (where a full disk shows up
  on file systems that allocate late, NFS included); runs everywhere.

Each time: the writer raises OSError, the file at the path is the previous
complete version (or absent), no temporary file is left, and the readers
(`read_results`, `load_checkpoint`) give the previous version or nothing.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fileio import write_json_atomic
from sweeps.ledger.records import read_results, result_path

SIZE = 64 * 1024


@pytest.fixture(params=["tmpfs", "fsync"])
def full_disk(request, tmp_path, monkeypatch):
    """(folder on a small disk, fill(): make the next big write fail with ENOSPC)."""
    if request.param == "tmpfs":
        mnt = tmp_path / "small"
        mnt.mkdir()
        mounted = shutil.which("mount") and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mnt)],
            capture_output=True,
        )
        if not mounted or mounted.returncode != 0:
            if os.environ.get("CI") == "1":
                pytest.fail("CI=1: cannot mount a tmpfs to fill (needs root)")
            pytest.skip("cannot mount a tmpfs here (needs root); the fsync case still runs")
        try:
            yield mnt, lambda: None  # big payloads overflow it by themselves
        finally:
            subprocess.run(["umount", "-l", str(mnt)], check=False)
        return

    real_fsync = os.fsync
    armed = {"on": False}

    def fsync(fd):
        if armed["on"]:
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    yield tmp_path, lambda: armed.update(on=True)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


def test_a_result_file_is_whole_or_the_previous_one(full_disk):
    storage, fill = full_disk
    key = "k" * 16
    write_json_atomic(result_path(storage, key), {"result": {"target_error": 0.25}, "v": 1})
    fill()
    big = {"result": {"target_error": 0.5}, "history": [[i, {"x": 0.1}] for i in range(20_000)]}
    assert len(json.dumps(big)) > SIZE
    with pytest.raises(OSError) as info:
        write_json_atomic(result_path(storage, key), big)
    assert info.value.errno == errno.ENOSPC
    assert read_results(storage)[key] == {"result": {"target_error": 0.25}, "v": 1}
    assert leftovers(storage) == []
    # A new trial's result that does not fit leaves no file at all.
    with pytest.raises(OSError):
        write_json_atomic(result_path(storage, "n" * 16), big)
    assert not result_path(storage, "n" * 16).exists() and set(read_results(storage)) == {key}


def test_a_checkpoint_is_whole_or_the_previous_one(full_disk):
    torch = pytest.importorskip("torch")
    from trainables.checkpoints import digest_path, load_checkpoint, save_atomic

    folder, fill = full_disk
    path = folder / "trials" / "t" / "pretrain.pt"
    save_atomic({"epoch": 1, "model": {"w": torch.zeros(10)}}, path)
    fill()
    with pytest.raises((OSError, RuntimeError)):  # torch's zip writer says RuntimeError
        save_atomic({"epoch": 2, "model": {"w": torch.ones(64 * 1024)}}, path)  # 256 KiB
    loaded = load_checkpoint(path)
    assert loaded is not None and loaded["epoch"] == 1  # the previous one, verified
    assert torch.equal(loaded["model"]["w"], torch.zeros(10))
    assert digest_path(path).exists() and leftovers(folder) == []
    assert not list(folder.rglob("*.corrupt"))
