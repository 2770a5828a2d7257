"""Faults inside a sweep, on a local Ray: trials that raise (out-of-memory included), NaN
loss, and a tracking server that fails mid-sweep.

What a user would notice: a failing trial is retried up to `retries`, then its
run is FAILED with the reason and the sweep goes on and exits 1 with a summary;
MLflow failing mid-sweep does not stop the sweep, results stay in the sweep's
storage and reach MLflow once it is back (`granularity sync` or the next run),
never lost and never twice.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest
import sweeps_fake
from sweeps_fake import write_fake_spec

from sweeps import commands
from sweeps.ledger.mlflow_store import Tracker
from sweeps.ledger.records import read_results
from sweeps.spec import load_spec

ATTEMPTS_LOG = "attempts.log"


def faulty_train(config: dict, report) -> dict:
    """tests/sweeps_fake.py's trainable, plus out-of-memory errors steered by `control`.

    `oom`: arms that always raise torch.OutOfMemoryError; `oom_once`: arms whose
    first attempt raises RuntimeError('CUDA out of memory ...') (as older torch does).
    """
    options = dict(config["dataset_options"])
    if options.get("control") and Path(options["control"]).exists():
        options.update(json.loads(Path(options["control"]).read_text()))
    storage = Path(config["pretrain_store"]).parent
    storage.mkdir(parents=True, exist_ok=True)
    with open(storage / ATTEMPTS_LOG, "a") as handle:
        handle.write(config["trial_key"] + "\n")
    arm = config["hierarchy"]
    if arm in options.get("oom", []):
        import torch

        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
    marker = Path(config["checkpoint_dir"]) / "oom-once"
    if arm in options.get("oom_once", []) and not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB (simulated)")
    return sweeps_fake.train(config, report)


def write_spec(tmp_path: Path, name: str, **extra) -> Path:
    fields = {"trainable": "test_faults_trials:faulty_train", "seeds": 1, "retries": 2, **extra}
    return write_fake_spec(
        tmp_path, name, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", **fields
    )


def trial_runs(path: Path) -> list:
    tracker = Tracker(load_spec(path), create=False)
    runs = tracker.client.search_runs([tracker.experiment_id], max_results=1000)
    return [r for r in runs if r.data.tags.get("granularity.role") == "trial"]


def attempts(tmp_path: Path) -> Counter:
    log = tmp_path / "store" / ATTEMPTS_LOG
    return Counter(log.read_text().split()) if log.exists() else Counter()


def test_out_of_memory_is_retried_then_failed_and_the_sweep_goes_on(tmp_path, ray_address, capsys):
    control = {"oom": ["random"], "oom_once": ["manual"]}
    path = write_spec(tmp_path, "oom", options=control)
    assert commands.main(["run", str(path)]) == 1
    out = capsys.readouterr().out
    assert "2 failed" in out and "OutOfMemoryError: CUDA out of memory" in out
    runs = trial_runs(path)
    assert len(runs) == 5
    tried = attempts(tmp_path)
    for run in runs:
        key, arm = run.data.tags["granularity.trial_key"], run.data.params["hierarchy"]
        if arm == "random":  # always OOM: 1 + retries attempts, then FAILED with the reason
            assert run.info.status == "FAILED" and tried[key] == 3
            assert run.data.tags["granularity.failure"].startswith("OutOfMemoryError: CUDA out")
            assert run.data.tags["granularity.attempts"] == "3"
        elif arm == "manual":  # OOM once, retried in place, finished in the same run
            assert run.info.status == "FINISHED" and tried[key] == 2
            assert run.data.tags["granularity.attempts"] == "2"
        else:
            assert run.info.status == "FINISHED" and tried[key] == 1
    assert commands.main(["status", str(path)]) == 1
    assert "2 x OutOfMemoryError: CUDA out of memory" in capsys.readouterr().out


def test_nan_loss_fails_the_trial_with_the_reason_without_retries(tmp_path, ray_address, capsys):
    """A non-finite loss recurs with the same seed: failed at once, its retries not spent."""
    pytest.importorskip("torch")
    path = write_spec(
        tmp_path,
        "nan",
        dataset={"name": "synthetic", "options": {"train_per_leaf": 8, "test_per_leaf": 4}},
        trainable="trainables:train",
        target="superclass",
        factors={"hierarchies": ["manual"], "levels": [2]},
        pretrain={"epochs": 2, "lr": 1e30, "batch_size": 128},
        finetune={"epochs": 1},
        device="cpu",
        retries=2,
    )
    assert commands.main(["run", str(path)]) == 1
    out = capsys.readouterr().out
    assert "1 failed" in out and "TrialError" in out and "non-finite loss" in out
    (run,) = trial_runs(path)
    assert run.info.status == "FAILED"
    assert "non-finite loss" in run.data.tags["granularity.failure"]
    assert run.data.tags["granularity.attempts"] == "1"  # not retried (an OOM is: above)


class _Outage:
    """Every MLflow call fails while `down` (as with an unreachable server)."""

    def __init__(self) -> None:
        self.down = False
        self.trip_after: int | None = None  # go down after this many child-run log_batch calls
        self.batches = 0
        self.failed_calls = 0


class _FlakyClient:
    def __init__(self, inner, outage: _Outage) -> None:
        self._inner, self._outage = inner, outage

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            outage = self._outage
            if name == "log_batch" and outage.trip_after is not None:
                outage.batches += 1
                if outage.batches > outage.trip_after:
                    outage.down, outage.trip_after = True, None
            if outage.down:
                outage.failed_calls += 1
                raise ConnectionError(f"simulated outage: {name} cannot reach the server")
            return attr(*args, **kwargs)

        return call


@pytest.fixture
def outage(monkeypatch):
    state = _Outage()
    original = Tracker.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.client = _FlakyClient(self.client, state)

    monkeypatch.setattr(Tracker, "__init__", init)
    monkeypatch.setattr("sweeps.ledger.ledger.Ledger.OFFLINE_RETRY_S", 0.5)
    return state


def _check_mlflow_complete(path: Path, tmp_path: Path, expect_failed: set[str]) -> None:
    """One run per trial_key; FINISHED with every metric and its history once, or FAILED."""
    runs = trial_runs(path)
    keys = [r.data.tags["granularity.trial_key"] for r in runs]
    assert len(keys) == len(set(keys)) == 5
    stored = read_results(tmp_path / "store")
    tracker = Tracker(load_spec(path), create=False)
    for run in runs:
        key = run.data.tags["granularity.trial_key"]
        if run.data.params["hierarchy"] in expect_failed:
            assert run.info.status == "FAILED" and "boom" in run.data.tags["granularity.failure"]
            continue
        assert run.info.status == "FINISHED"
        record = stored[key]
        assert set(record["result"]) <= set(run.data.metrics)
        for name in {n for _, values in record["history"] for n in values}:
            steps = [m.step for m in tracker.client.get_metric_history(run.info.run_id, name)]
            assert sorted(steps) == sorted(s for s, v in record["history"] if name in v), name
        assert [f.path for f in tracker.client.list_artifacts(run.info.run_id)] == ["config.json"]


def test_tracking_outage_keeps_results_and_sync_writes_them_once(
    tmp_path, ray_address, outage, capsys
):
    control = tmp_path / "control.json"  # steers the fake trainable without changing trial keys
    control.write_text(json.dumps({"fail": ["random"]}))
    path = write_spec(tmp_path, "outage", options={"control": str(control)}, retries=0)
    outage.trip_after = 2  # a couple of writes get through, then the server is gone
    assert commands.main(["run", str(path)]) == 1
    captured = capsys.readouterr()
    assert outage.failed_calls > 0
    assert "warning: MLflow write failed" in captured.err
    assert "pending sync" in captured.out and "granularity sync" in captured.out
    # Nothing lost: every trial's result (or failure) is in the sweep's storage.
    assert len(read_results(tmp_path / "store")) == 3
    assert len(list((tmp_path / "store" / "results").glob("*.failed.json"))) == 2

    outage.down = False  # the server is back
    complete = [r for r in trial_runs(path) if r.info.status in ("FINISHED", "FAILED")]
    assert len(complete) < 5  # the outage left trials for sync
    assert commands.main(["sync", str(path)]) == 0
    assert f"{5 - len(complete)} trial(s) written" in capsys.readouterr().out
    _check_mlflow_complete(path, tmp_path, expect_failed={"random"})
    assert commands.main(["sync", str(path)]) == 0  # idempotent: nothing twice
    assert "0 trial(s) written" in capsys.readouterr().out
    before = sum(attempts(tmp_path).values())
    control.write_text("{}")  # the fix
    assert commands.main(["run", str(path)]) == 0
    assert sum(attempts(tmp_path).values()) == before + 2  # only the two failed trials reran
    runs = trial_runs(path)
    assert len(runs) == 5 and {r.info.status for r in runs} == {"FINISHED"}


def test_tracking_back_before_the_end_is_synced_by_the_same_run(
    tmp_path, ray_address, outage, monkeypatch, capsys
):
    path = write_spec(tmp_path, "blip", options={"sleep": 0.05})
    outage.trip_after = 1
    original = Tracker.trial_runs

    def trial_runs_back(self):  # the end-of-run sync finds the server back
        outage.down = False
        return original(self)

    monkeypatch.setattr(Tracker, "trial_runs", trial_runs_back)
    assert commands.main(["run", str(path)]) == 0
    out = capsys.readouterr().out
    assert outage.failed_calls >= 1 and "pending sync" not in out
    _check_mlflow_complete(path, tmp_path, expect_failed=set())
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]  # set by sweeps.ledger.mlflow_store


def test_tracking_down_at_start_runs_anyway_and_syncs_later_once(tmp_path, ray_address, capsys):
    from servers import free_port

    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    path = write_fake_spec(tmp_path, "down-at-start", tracking_uri=down, seeds=1, retries=0)
    assert commands.main(["run", str(path)]) == 1  # ran, but MLflow has nothing yet
    captured = capsys.readouterr()
    assert f"tracking server {down} unreachable" in captured.err and "runs anyway" in captured.err
    assert "5 pending sync (MLflow unreachable)" in captured.err  # the progress line
    assert "5 trial result(s) pending sync" in captured.out and "Traceback" not in captured.err
    assert len(read_results(tmp_path / "store")) == 5  # nothing lost
    ran = sum(sweeps_fake_calls(tmp_path).values())
    assert ran == 5
    for command in ("status", "sync"):  # these need the server: one line, exit 2
        assert commands.main([command, str(path)]) == 2
        err = capsys.readouterr().err
        assert f"tracking server {down} unreachable" in err and "Traceback" not in err

    # The server is back (here: the store it serves, named directly).
    back = [f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"]
    assert commands.main(["sync", str(path), *back]) == 0
    assert "5 trial(s) written" in capsys.readouterr().out
    assert commands.main(["sync", str(path), *back]) == 0
    assert "0 trial(s) written" in capsys.readouterr().out  # exactly once
    assert commands.main(["run", str(path), *back]) == 0
    assert sum(sweeps_fake_calls(tmp_path).values()) == ran  # nothing ran again
    spec = load_spec(path, back)
    tracker = Tracker(spec, create=False)
    runs = tracker.client.search_runs([tracker.experiment_id], max_results=100)
    trials = [r for r in runs if r.data.tags.get("granularity.role") == "trial"]
    keys = [r.data.tags["granularity.trial_key"] for r in trials]
    assert len(keys) == len(set(keys)) == 5 and {r.info.status for r in trials} == {"FINISHED"}
    for run in trials:
        assert len(tracker.client.get_metric_history(run.info.run_id, "finetune/loss")) == 2


def sweeps_fake_calls(tmp_path: Path) -> Counter:
    log = tmp_path / "store" / sweeps_fake.CALLS_FILE
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter(json.loads(line)["trial_key"] for line in lines)
