"""Corrupted checkpoints are detected (sha256 sidecar) and recomputed, never silently loaded.

And checkpoints load with `torch.load(weights_only=True)`: a file that would
run code when unpickled is refused, its code never runs.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import pytest
import trainables_fixtures as fixtures

torch = pytest.importorskip("torch")

from trainables import train  # noqa: E402
from trainables.checkpoints import (  # noqa: E402
    CorruptCheckpointWarning,
    PretrainStore,
    digest_path,
    load_checkpoint,
    save_atomic,
)


def _entry() -> dict:
    return {"epoch": 3, "last": {"pretrain/loss": 0.5}, "model": {"w": torch.arange(1000.0)}}


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _drop_digest(path: Path) -> None:
    digest_path(path).unlink()


def test_save_writes_a_digest_and_loads_back(tmp_path):
    path = save_atomic(_entry(), tmp_path / "pretrain.pt")
    recorded = digest_path(path).read_text().split()[0]
    assert recorded == hashlib.sha256(path.read_bytes()).hexdigest()
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 3 and torch.equal(loaded["model"]["w"], torch.arange(1000.0))
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


@pytest.mark.parametrize(
    "damage", [_truncate, _flip_byte, _drop_digest], ids=["truncated", "bitflip", "no-digest"]
)
def test_damaged_checkpoint_is_refused_with_a_warning(tmp_path, damage):
    path = save_atomic(_entry(), tmp_path / "pretrain.pt")
    damage(path)
    with pytest.warns(CorruptCheckpointWarning, match="recomputing"):
        assert load_checkpoint(path) is None
    # Moved aside: the next save starts clean, the bad file stays for inspection.
    assert not path.exists() and (tmp_path / "pretrain.pt.corrupt").exists()
    save_atomic(_entry(), path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_checkpoint(path)["epoch"] == 3


def test_a_pickle_that_runs_code_is_not_loaded(tmp_path):
    marker = tmp_path / "code-ran"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    path = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, path)
    # Even with a matching digest (an attacker can write both files), weights_only refuses it.
    digest_path(path).write_text(hashlib.sha256(path.read_bytes()).hexdigest() + "  evil.pt\n")
    with pytest.warns(CorruptCheckpointWarning, match="does not load"):
        assert load_checkpoint(path) is None
    assert not marker.exists()


def test_corrupt_store_entry_is_retrained(tmp_path):
    store = PretrainStore(tmp_path / "store")
    with store.claim("k1") as entry:
        assert entry is None
        store.put("k1", _entry())
    _flip_byte(store.path("k1"))
    with pytest.warns(CorruptCheckpointWarning), store.claim("k1") as entry:
        assert entry is None  # the caller trains again and puts a good one


def _trial_config(tmp_path: Path) -> dict:
    return fixtures.trial_config(
        tmp_path,
        finetune={"mode": "full", "epochs": 2, "lr": 0.05, "batch_size": 128},
        checkpoint_dir=str(tmp_path / "ckpt"),
    )


class _StopAt:
    """A report callable that stops the trial (as a kill would) at (stage, step)."""

    def __init__(self, stop: tuple[str, int] | None = None) -> None:
        self.stop, self.seen = stop, []

    def __call__(self, metrics: dict, step: int) -> None:
        stage = next(iter(metrics)).split("/")[0]
        self.seen.append((stage, step))
        if (stage, step) == self.stop:
            raise KeyboardInterrupt("simulated kill")


@pytest.mark.parametrize("damage", [_truncate, _flip_byte], ids=["truncated", "bitflip"])
def test_trial_recomputes_a_corrupted_stage_and_gets_the_same_result(tmp_path, damage):
    cfg = _trial_config(tmp_path)
    straight = train({**cfg, "checkpoint_dir": None}, None)
    # Killed in finetuning: pretrain.pt holds the finished pretraining.
    with pytest.raises(KeyboardInterrupt):
        train(cfg, _StopAt(("finetune", 0)))
    damage(Path(cfg["checkpoint_dir"]) / "pretrain.pt")
    again = _StopAt()
    with pytest.warns(CorruptCheckpointWarning):
        resumed = train(cfg, again)
    # Pretraining ran again from epoch 0 (not loaded half-read), finetuning resumed.
    assert [s for st, s in again.seen if st == "pretrain"] == [0, 1, 2]
    assert resumed["target_error"] == straight["target_error"]
    assert resumed["val_error"] == straight["val_error"]
