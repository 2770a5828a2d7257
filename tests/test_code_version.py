"""Results that notice changed code: an edited trainable module reruns its trials, nothing else does.

On a local Ray with the fast fake trainable, behind a `module:function` of a
module written to tmp_path (the user's own training code).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sweeps_fake import CALLS_FILE, write_fake_spec

from sweeps import commands
from sweeps.code_version import code_version, file_digest, version_of
from sweeps.ledger.mlflow_store import Tracker
from sweeps.ledger.records import read_results
from sweeps.spec import load_spec

TRAINABLE = '"""A user\'s trainable: the fake one behind a module of its own."""\n' + (
    "from sweeps_fake import train  # noqa: F401\n"
)


@pytest.fixture(scope="module")
def ray_address():
    from sweeps.ray_backend import ray_session

    with ray_session(num_cpus=2) as info:
        yield info["address"]


def _calls(storage: Path) -> list[str]:
    log = storage / CALLS_FILE
    if not log.exists():
        return []
    return [json.loads(line)["trial_key"] for line in log.read_text().splitlines()]


def _user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> Path:
    folder = tmp_path / "usercode"
    folder.mkdir()
    module = folder / f"{name}.py"
    module.write_text(TRAINABLE)
    monkeypatch.syspath_prepend(str(folder))
    return module


def _spec(tmp_path: Path, module: str) -> Path:
    return write_fake_spec(
        tmp_path,
        "stale",
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        trainable=f"{module}:train",
        factors={"hierarchies": ["manual", "scratch"], "levels": ["leaf"]},
        seeds=2,
    )


def test_edited_trainable_reruns_its_trials_and_nothing_else(
    tmp_path, monkeypatch, ray_address, capsys
):
    module = _user_module(tmp_path, monkeypatch, "user_train_stale")
    path = _spec(tmp_path, "user_train_stale")
    storage = tmp_path / "store"
    assert commands.main(["run", str(path)]) == 0
    first = _calls(storage)
    assert len(first) == 4  # (manual leaf + scratch) x 2 seeds
    old = read_results(storage)
    versions = {r["config"]["code_version"] for r in old.values()}
    assert len(versions) == 1

    # Nothing edited: nothing reruns, nothing is called stale.
    capsys.readouterr()
    assert commands.main(["run", str(path)]) == 0
    assert _calls(storage) == first
    assert "stale" not in capsys.readouterr().out

    # The user fixes their training code: every trial is stale and reruns.
    module.write_text(TRAINABLE + "# a fix\n")
    assert commands.main(["status", str(path)]) == 0
    assert "4 done trial(s) are stale" in capsys.readouterr().out
    assert commands.main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "4 done trial(s) are stale" in out and "to run: 4" in out
    assert commands.main(["run", str(path)]) == 0
    out = capsys.readouterr().out
    assert "4 done trial(s) are stale" in out and "run reruns them" in out
    second = _calls(storage)
    assert sorted(second[4:]) == sorted(first)  # each trial once more
    new = read_results(storage)
    (new_version,) = {r["config"]["code_version"] for r in new.values()}
    assert new_version not in versions
    # Pretrainings are keyed by code too: the rerun made its own.
    old_pretrain = {r["config"]["pretrain_key"] for r in old.values()}
    assert not old_pretrain & {r["config"]["pretrain_key"] for r in new.values()}
    # MLflow: the newest run of each trial carries the new version; the old runs stay.
    spec = load_spec(path)
    tracker = Tracker(spec, create=False)
    runs = tracker.client.search_runs(
        [tracker.experiment_id], "tags.`granularity.role` = 'trial'", max_results=100
    )
    tags = [r.data.tags["granularity.code_version"] for r in runs]
    assert sorted(tags) == sorted([new_version] * 4 + list(versions) * 4)
    assert {k: s.run_id for k, s in tracker.trial_runs().items()} == {
        r.data.tags["granularity.trial_key"]: r.info.run_id
        for r in runs
        if r.data.tags["granularity.code_version"] == new_version
    }

    # Edited again, kept on request: nothing reruns, and the run says how many it kept.
    module.write_text(TRAINABLE + "# a second fix\n")
    assert commands.main(["run", str(path), "--reuse-stale"]) == 0
    out = capsys.readouterr().out
    assert "4 done trial(s) are stale" in out and "kept (--reuse-stale)" in out
    assert _calls(storage) == second


def test_version_changes_with_the_trainable_module_only(tmp_path, monkeypatch):
    module = _user_module(tmp_path, monkeypatch, "user_train_version")
    spec = load_spec(_spec(tmp_path, "user_train_version"))
    first = code_version(spec)
    assert code_version(spec) == first
    module.write_text(TRAINABLE + "x = 1\n")
    assert code_version(spec) != first
    module.write_text(TRAINABLE)
    assert code_version(spec) == first
    # The project's own code is in it: a package's files are part of the version.
    assert version_of(["trainables"], {}) != version_of([], {})


def test_data_files_are_in_the_version(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "train.bin").write_bytes(b"0" * 10)
    before = version_of([], {"root": str(root)})
    (root / "train.bin").write_bytes(b"0" * 11)
    assert version_of([], {"root": str(root)}) != before


def test_file_digest_is_cached_by_mtime_and_size(tmp_path, monkeypatch):
    path = tmp_path / "m.py"
    path.write_text("a = 1\n")
    digest = file_digest(path)
    reads = []
    original = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self) or original(self))
    assert file_digest(path) == digest and reads == []  # unchanged: not read again
    path.write_text("a = 22\n")
    assert file_digest(path) != digest and reads == [path]
