"""End to end on a local Ray (started once for this module) with a fast fake trainable.

What a user would notice: the MLflow structure of the contract, a rerun that
runs nothing, an extension that runs only the new trials, failures retried then
reported (exit code 1), a killed driver that loses nothing, invalid specs that
write nothing.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from sweeps_fake import CALLS_FILE, write_fake_spec

from analysis.hard_examples import decode_correct
from sweeps import commands
from sweeps.ledger.mlflow_store import Tracker
from sweeps.ledger.records import read_results
from sweeps.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mlflow_dir(tmp_path_factory):
    # One SQLite store for the module: creating its schema costs seconds.
    return tmp_path_factory.mktemp("mlflow")


def write_spec(tmp_path: Path, mlflow_dir: Path, name: str, **extra) -> Path:
    return write_fake_spec(
        tmp_path, name, tracking_uri=f"sqlite:///{mlflow_dir / 'mlflow.db'}", **extra
    )


def run_cli(*argv: str) -> int:
    return commands.main(list(argv))


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "store" / CALLS_FILE
    return (
        [json.loads(line)["trial_key"] for line in log.read_text().splitlines()]
        if log.exists()
        else []
    )


def runs_of(spec_path: Path):
    return runs_of_spec(load_spec(spec_path))


def runs_of_spec(spec):
    tracker = Tracker(spec, create=False)
    return tracker, tracker.client.search_runs([tracker.experiment_id], max_results=1000)


def test_mlflow_structure_rerun_and_extend(tmp_path, mlflow_dir, ray_address, capsys):
    path = write_spec(tmp_path, mlflow_dir, "structure")
    assert run_cli("run", str(path)) == 0
    tracker, runs = runs_of(path)
    # The experiment opens in MLflow's model-training view, not the GenAI overview.
    experiment = tracker.client.get_experiment(tracker.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    parents = [r for r in runs if r.data.tags.get("granularity.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("granularity.role") == "trial"]
    assert len(parents) == 1 and len(children) == (2 * 2 + 1) * 2
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    artifacts = [f.path for f in tracker.client.list_artifacts(parent.info.run_id, "hierarchies")]
    assert len(artifacts) == 3  # manual + one random tree per seed
    for run in children:
        tags, params = run.data.tags, run.data.params
        assert run.info.status == "FINISHED"
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        for tag in (
            "granularity.trial_key",
            "granularity.pretrain_key",
            "granularity.label_fn",
            "granularity.spec_hash",
        ):
            assert tags[tag]
        for param in (
            "dataset",
            "target",
            "hierarchy",
            "level",
            "level_name",
            "num_classes",
            "data_fraction",
            "num_train",
            "backbone",
            "seed",
            "pretrain.epochs",
            "pretrain.lr",
            "finetune.mode",
        ):
            assert param in params, param
        assert "target_error" in run.data.metrics
        assert [f.path for f in tracker.client.list_artifacts(run.info.run_id)] == ["config.json"]
    scratch = next(r for r in children if r.data.params["hierarchy"] == "scratch")
    assert (scratch.data.params["level"], scratch.data.params["level_name"]) == ("-1", "scratch")
    manual = next(r for r in children if r.data.params["hierarchy"] == "manual")
    history = tracker.client.get_metric_history(manual.info.run_id, "pretrain/loss")
    assert sorted(m.step for m in history) == [0, 1]
    first = calls(tmp_path)
    assert len(first) == len(children)

    # Rerun: nothing runs, nothing is duplicated.
    assert run_cli("run", str(path)) == 0
    assert calls(tmp_path) == first
    assert "10 already done, 0 run now" in capsys.readouterr().out

    # Extend: a third seed runs only the 5 new trials.
    assert run_cli("run", str(path), "seeds=3") == 0
    new = calls(tmp_path)[len(first) :]
    assert len(new) == 5 and not set(new) & set(first)
    _, runs = runs_of(path)
    keys = [
        r.data.tags["granularity.trial_key"]
        for r in runs
        if r.data.tags.get("granularity.role") == "trial"
    ]
    assert len(keys) == len(set(keys)) == 15

    assert run_cli("validate", str(path), "seeds=4") == 0
    out = capsys.readouterr().out
    assert "20 trials" in out and "already done: 15" in out


def test_failures_are_retried_then_reported(tmp_path, mlflow_dir, ray_address, capsys):
    control = tmp_path / "control.json"
    control.write_text(json.dumps({"fail": ["random"], "flaky": ["manual"]}))
    path = write_spec(tmp_path, mlflow_dir, "failures", options={"control": str(control)}, seeds=1)
    assert run_cli("run", str(path)) == 1
    out = capsys.readouterr().out
    assert "2 failed" in out and "boom in arm random" in out
    tracker, runs = runs_of(path)
    trials = [r for r in runs if r.data.tags.get("granularity.role") == "trial"]
    by_arm = {}
    for run in trials:
        by_arm.setdefault(run.data.params["hierarchy"], []).append(run)
    assert {r.info.status for r in by_arm["random"]} == {"FAILED"}
    assert all("boom" in r.data.tags["granularity.failure"] for r in by_arm["random"])
    assert all(r.data.tags["granularity.attempts"] == "2" for r in by_arm["random"])
    # The flaky arm failed once, was retried in place and finished in the same run.
    assert {r.info.status for r in by_arm["manual"]} == {"FINISHED"}
    assert all(r.data.tags["granularity.attempts"] == "2" for r in by_arm["manual"])
    random_keys = {r.data.tags["granularity.trial_key"] for r in by_arm["random"]}
    assert sorted(k for k in calls(tmp_path) if k in random_keys) == sorted(list(random_keys) * 2)

    assert run_cli("status", str(path)) == 1
    out = capsys.readouterr().out
    assert "3 done, 0 running, 2 failed, 0 missing" in out
    assert "2 x RuntimeError: boom in arm random" in out

    # Fixing the cause and rerunning runs only the failed trials, in their own runs.
    control.write_text("{}")
    before = len(calls(tmp_path))
    assert run_cli("run", str(path)) == 0
    assert len(calls(tmp_path)) == before + 2
    _, runs = runs_of(path)
    trials = [r for r in runs if r.data.tags.get("granularity.role") == "trial"]
    assert len(trials) == 5 and {r.info.status for r in trials} == {"FINISHED"}


def test_crashed_worker_is_retried_by_ray_without_redoing_finished_trials(
    tmp_path, mlflow_dir, ray_address
):
    path = write_spec(
        tmp_path,
        mlflow_dir,
        "crash",
        options={"crash": ["random"]},
        seeds=1,
        pack=100,
        factors={"hierarchies": ["manual", "random"], "levels": ["mid", "leaf"]},
    )
    assert run_cli("run", str(path)) == 0
    log = calls(tmp_path)
    # One pack: manual trials finish, the first random trial kills the worker;
    # Ray restarts the pack, which skips the finished trials.
    assert len(log) == len(set(log)) + 1
    _, runs = runs_of(path)
    trials = [r for r in runs if r.data.tags.get("granularity.role") == "trial"]
    assert len(trials) == 4 and {r.info.status for r in trials} == {"FINISHED"}


def test_invalid_spec_writes_nothing(tmp_path, capsys):
    db = tmp_path / "mlflow.db"
    path = write_spec(tmp_path, tmp_path, "invalid", factors={"hierarchies": ["randm"]})
    assert run_cli("run", str(path)) == 2
    err = capsys.readouterr().err
    assert "factors.hierarchies[0].kind" in err and "'randm'" in err
    assert run_cli("run", str(write_spec(tmp_path, tmp_path, "invalid2")), "pretrain.epoch=1") == 2
    assert "unknown key 'epoch'" in capsys.readouterr().err
    path = write_spec(tmp_path, tmp_path, "invalid3", target="species")
    assert run_cli("run", str(path)) == 2
    assert "target" in capsys.readouterr().err
    assert not db.exists() and not (tmp_path / "store").exists()


def test_unreachable_address_is_named_at_once():
    import socket

    from sweeps.ray_backend import check_reachable

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionError, match=f"no Ray cluster answers at 127.0.0.1:{port}"):
        check_reachable(f"127.0.0.1:{port}")
    check_reachable("auto")  # left to Ray
    check_reachable("ray://head:10001")


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_driver_loses_nothing(tmp_path, mlflow_dir, ray_address, kill_driver, signum):
    name = f"killed-{signal.Signals(signum).name}"
    path = write_spec(tmp_path, mlflow_dir, name, options={"sleep": 0.05}, seeds=3, pack=2)
    code = kill_driver(path, ray_address, after=4, signum=signum)
    store = tmp_path / "store"
    finished_before = set(read_results(store))
    assert finished_before, "the driver was killed before any trial finished"
    if signum == signal.SIGINT:  # a clean stop: exit 130, open runs marked KILLED
        assert code == 130
        _, runs = runs_of(path)
        assert "RUNNING" not in {r.info.status for r in runs}
    time.sleep(1.0)  # let Ray reap the dead driver's workers

    assert run_cli("run", str(path)) == 0
    _, runs = runs_of(path)
    trials = [r for r in runs if r.data.tags.get("granularity.role") == "trial"]
    keys = [r.data.tags["granularity.trial_key"] for r in trials]
    assert len(keys) == len(set(keys)) == 15
    assert {r.info.status for r in trials} == {"FINISHED"}
    # Results that finished before the kill were not run again.
    rerun = calls(tmp_path)
    assert all(rerun.count(k) == 1 for k in finished_before)


def test_search_tunes_then_crosses(tmp_path, mlflow_dir, ray_address):
    path = write_spec(
        tmp_path,
        mlflow_dir,
        "search",
        seeds=1,
        factors={"hierarchies": ["manual"], "levels": ["leaf"], "data_fractions": [1.0]},
        search={
            "parameters": {"pretrain.lr": {"low": 0.001, "high": 0.1, "log": True}},
            "n_trials": 4,
            "reference": {"hierarchy": "manual"},
        },
    )
    assert run_cli("run", str(path)) == 0
    tracker, runs = runs_of(path)
    parent = next(r for r in runs if r.data.tags.get("granularity.role") == "sweep")
    chosen = float(parent.data.params["search.pretrain.lr"])
    searched = [r for r in runs if r.data.tags.get("granularity.role") == "search"]
    assert len(searched) == 4
    assert (
        chosen
        == min(searched, key=lambda r: r.data.metrics["val_error"]).data.params["pretrain.lr"]
        or abs(
            chosen
            - float(
                min(searched, key=lambda r: r.data.metrics["val_error"]).data.params["pretrain.lr"]
            )
        )
        < 1e-12
    )
    trial = next(r for r in runs if r.data.tags.get("granularity.role") == "trial")
    assert float(trial.data.params["pretrain.lr"]) == chosen
    before = len(calls(tmp_path))
    assert run_cli("run", str(path)) == 0  # resumed study: no new search trials, nothing reruns
    assert len(calls(tmp_path)) == before


def test_quickstart_smoke_with_the_real_trainable(tmp_path, mlflow_dir, ray_address, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    spec = str(ROOT / "sweeps" / "quickstart.yaml")
    overrides = [
        "factors.hierarchies=[manual, cluster_within, scratch]",
        "factors.levels=[class, extra2]",
        f"tracking.uri=sqlite:///{mlflow_dir / 'mlflow.db'}",
        "name=quickstart-smoke",
    ]
    assert run_cli("run", spec, "--smoke", *overrides) == 0
    tracker, runs = runs_of_spec(load_spec(spec, overrides, smoke=True))
    trials = [r for r in runs if r.data.tags.get("granularity.role") == "trial"]
    assert len(trials) == 5 and {r.info.status for r in trials} == {"FINISHED"}
    for run in trials:
        assert 0.0 <= run.data.metrics["target_error"] <= 1.0
        assert "finetune/loss" in run.data.metrics
        # Per-test-example outcomes ride along as a tag (hard examples on real data).
        correct = decode_correct(run.data.tags["granularity.test_correct"])
        assert abs((1 - correct.mean()) - run.data.metrics["target_error"]) < 1e-6  # float32
    # extra2 is every arm's finest level: one pretraining serves both arms.
    finest = [r for r in trials if r.data.params["level_name"] == "extra2"]
    assert len({r.data.tags["granularity.pretrain_key"] for r in finest}) == 1
    assert sorted(r.data.metrics["pretrain_reused"] for r in finest) == [0.0, 1.0]
