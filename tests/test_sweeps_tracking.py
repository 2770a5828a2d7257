"""The bulk writer of whole trials gives the runs the per-trial MLflow calls give.

`Tracker.record_trials` writes trials that ended before any write of theirs
in one SQL transaction through MLflow's SQLAlchemy models (a private API);
anything it writes must read back through MlflowClient exactly as the
per-trial calls (create_run, log_batch, log_text, set_terminated) write it,
so analysis, `status` and `sync` cannot tell them apart.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from sweeps_fake import write_fake_spec

from analysis.load import load_runs
from contracts import PARENT
from sweeps.ledger.mlflow_sql import sql_store
from sweeps.ledger.mlflow_store import Tracker, WholeTrial
from sweeps.spec import load_spec


def _trials() -> list[WholeTrial]:
    epochs = [[0, {"pretrain/loss": 1.0}], [1, {"pretrain/loss": 0.5}], [0, {"finetune/loss": 0.7}]]
    common = {
        "tags": {"granularity.role": "trial", "granularity.label_fn": "abc"},
        "epochs": epochs,
    }
    return [
        WholeTrial(
            key="k-finished",
            run_name="manual/leaf/f1.0/twolayer/s0",
            params={"hierarchy": "manual", "seed": "0", "level": "3"},
            config={"trial_key": "k-finished", "seed": 0},
            attempts=2,
            result={
                "target_error": 0.25,
                "num_train": 160.0,
                "val_error": math.nan,
                "test_correct": "0101",
            },
            wall_s=1.5,
            **common,
        ),
        WholeTrial(
            key="k-failed",
            run_name="random/leaf/f1.0/twolayer/s0",
            params={"hierarchy": "random", "seed": "0", "level": "3"},
            config={"trial_key": "k-failed", "seed": 0},
            attempts=1,
            reason="RuntimeError: boom",
            **common,
        ),
    ]


def _written(tmp_path, name: str, bulk: bool, monkeypatch) -> tuple[Tracker, dict[str, str]]:
    spec = load_spec(
        write_fake_spec(tmp_path, name, tracking_uri=f"sqlite:///{tmp_path / name}.db")
    )
    tracker = Tracker(spec)
    tracker.start_parent(spec, "{}")
    if not bulk:  # the per-trial calls, as for a store that is not SQL
        monkeypatch.setattr("sweeps.ledger.mlflow_store.sql_store", lambda client: None)
    else:
        assert sql_store(tracker.client) is not None
    return tracker, tracker.record_trials(_trials(), "spec-hash")


def _view(tracker: Tracker, run_id: str, tmp_path) -> dict:
    run = tracker.client.get_run(run_id)
    tags = {k: v for k, v in run.data.tags.items() if k != PARENT}
    history = {
        name: sorted((m.step, m.value) for m in tracker.client.get_metric_history(run_id, name))
        for name in run.data.metrics
    }
    artifacts = [f.path for f in tracker.client.list_artifacts(run_id)]
    config = None
    if artifacts:
        folder = tmp_path / "downloads" / run_id
        folder.mkdir(parents=True)
        path = tracker.client.download_artifacts(run_id, "config.json", str(folder))
        config = json.loads(Path(path).read_text())
    return {
        "status": run.info.status,
        "name": run.info.run_name,
        "ended": run.info.end_time is not None,
        "tags": tags,
        "parent": run.data.tags[PARENT] == tracker.parent_id,
        "params": run.data.params,
        "metrics": {k: "nan" if math.isnan(v) else v for k, v in run.data.metrics.items()},
        "history": {
            k: [(s, "nan" if math.isnan(v) else v) for s, v in h] for k, h in history.items()
        },
        "artifacts": artifacts,
        "config": config,
    }


def test_bulk_written_trials_read_back_as_the_per_trial_calls_write_them(tmp_path, monkeypatch):
    bulk, bulk_ids = _written(tmp_path, "bulk", True, monkeypatch)
    calls, call_ids = _written(tmp_path, "calls", False, monkeypatch)
    assert set(bulk_ids) == set(call_ids) == {"k-finished", "k-failed"}
    for key in bulk_ids:
        got, want = _view(bulk, bulk_ids[key], tmp_path), _view(calls, call_ids[key], tmp_path)
        for field, value in want.items():
            assert got[field] == value, (key, field)
    assert (
        _view(bulk, bulk_ids["k-failed"], tmp_path)["tags"]["granularity.failure"]
        == "RuntimeError: boom"
    )
    assert bulk.trial_runs()["k-finished"].status == "FINISHED"
    assert bulk.trial_runs()["k-failed"].status == "FAILED"
    frames = [
        load_runs(t.name, t.uri, statuses=("FINISHED", "FAILED"), method=m)
        .drop(columns=["run_id", "parent_run_id", "start_time", "end_time"])
        .sort_values("trial_key")
        .reset_index(drop=True)
        for t in (bulk, calls)
        for m in ("sql", "search")
    ]
    for frame in frames[1:]:
        assert frame.equals(frames[0])


def test_a_failed_bulk_write_leaves_no_run(tmp_path, monkeypatch):
    spec = load_spec(write_fake_spec(tmp_path, "atomic", tracking_uri=f"sqlite:///{tmp_path}/a.db"))
    tracker = Tracker(spec)
    tracker.start_parent(spec, "{}")

    class _Same:  # every run gets one id: the second run's row breaks the transaction
        hex = "0" * 32

    monkeypatch.setattr("sweeps.ledger.mlflow_store.uuid.uuid4", lambda: _Same())
    with pytest.raises(MlflowException, match="UNIQUE constraint failed"):
        tracker.record_trials(_trials(), "spec-hash")
    assert tracker.trial_runs() == {}  # all or nothing: the result files re-sync them
