"""Data-parallel trials (`resources.workers` > 1) through Ray Train inside Tune, on CPU (gloo).

A 2-worker sweep of the real trial (twolayer, tiny synthetic data): one MLflow
run per trial with the losses a one-process run of the same config computes;
a worker killed mid-trial: Ray Train restarts the group, which resumes from
the trial's checkpoint, still one run; the spec validates and refuses what
can never be placed.
"""

from __future__ import annotations

import json
from pathlib import Path

import ddp_trainables
import pytest
import trainables_fixtures as fixtures
import yaml

from sweeps import commands
from sweeps.executor import resource_problem
from sweeps.ledger.mlflow_store import Tracker
from sweeps.spec import SpecError, load_spec, parse_spec
from trainables import train

# Relative tolerance on per-epoch losses, 2 workers vs 1 process (see
# tests/test_trainables_distributed.py: the same sums in another order).
TOLERANCE = 1e-4
SHIP_BY_VALUE = (ddp_trainables.train_and_log,)  # see conftest.ray_address


def spec_dict(tmp_path: Path, name: str, **extra) -> dict:
    raw = {
        "name": name,
        "dataset": {"name": "synthetic", "options": fixtures.SMALL},
        "target": "superclass",
        "factors": {"hierarchies": ["manual"], "levels": ["subclass"]},
        "seeds": 1,
        "pretrain": {"epochs": 3, "lr": 0.2, "batch_size": 128},
        "finetune": {"mode": "linear", "epochs": 2, "lr": 0.05, "batch_size": 128},
        "device": "cpu",
        "checkpoint_every_s": 0,
        "resources": {"workers": 2, "cpu": 1},
        "retries": 1,
        "storage_path": str(tmp_path / "store"),
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
    }
    raw.update(extra)
    return raw


def write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_multi_worker_spec_validates(tmp_path, capsys):
    path = write(tmp_path, spec_dict(tmp_path, "dp-valid"))
    assert commands.main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "1 cpu / 0 gpu each worker x 2 workers (data-parallel, Ray Train)" in out
    spec = load_spec(path)
    assert spec.resources.per_trial == {"cpu": 2.0, "gpu": 0.0}
    assert spec.slots() == max(1, (spec.num_cpus or __import__("os").cpu_count() or 1) // 2)


@pytest.mark.parametrize("gpu", [0.5, 2])
def test_a_worker_takes_zero_or_one_gpu(tmp_path, gpu, capsys):
    raw = spec_dict(tmp_path, "dp-bad", resources={"workers": 4, "gpu": gpu, "cpu": 1})
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    assert f"resources.gpu={gpu:g} with workers=4" in str(err.value)
    assert commands.main(["validate", str(write(tmp_path, raw))]) == 2
    # The spec's error format for one problem: one line naming the field, no traceback.
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and f"resources.gpu={gpu:g} with workers=4" in lines[0]


def test_more_gpus_per_trial_than_the_cluster_has_is_refused():
    spec = parse_spec(spec_dict(Path("/tmp"), "dp-gpus", resources={"workers": 8, "gpu": 1}))
    local = resource_problem(spec, {"CPU": 16.0, "GPU": 4.0}, cluster=False)
    assert local and "workers=8 x gpu=1 = 8 GPUs per trial" in local and "to 4" in local
    assert "the cluster has 4" in resource_problem(spec, {"CPU": 64.0, "GPU": 4.0}, cluster=True)
    # An autoscaling cluster that shows no GPU yet may still get them: left to Ray.
    assert resource_problem(spec, {"CPU": 8.0}, cluster=True) is None
    assert resource_problem(spec, {"CPU": 64.0, "GPU": 8.0}, cluster=False) is None


def trial_runs(spec) -> list:
    tracker = Tracker(spec, create=False)
    runs = tracker.client.search_runs([tracker.experiment_id], max_results=100)
    return [r for r in runs if r.data.tags.get("granularity.role") == "trial"]


def history(run, tracker_client, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in tracker_client.get_metric_history(run.info.run_id, key)]


@pytest.mark.slow
def test_gpu_request_on_a_machine_without_gpus_exits_2(tmp_path, ray_address, capsys):
    raw = spec_dict(tmp_path, "dp-nogpu", resources={"workers": 2, "gpu": 1, "cpu": 1})
    assert commands.main(["run", str(write(tmp_path, raw))]) == 2
    err = capsys.readouterr().err
    mine = [line for line in err.splitlines() if " INFO " not in line]  # MLflow logs its store
    assert len(mine) == 1 and "workers=2 x gpu=1 = 2 GPUs per trial" in mine[0], err
    assert "Traceback" not in err


@pytest.mark.slow
def test_two_workers_run_a_trial_with_the_losses_of_one_process(tmp_path, ray_address):
    raw = spec_dict(tmp_path, "dp-e2e", trainable="ddp_trainables:train_and_log")
    path = write(tmp_path, raw)
    assert commands.main(["run", str(path)]) == 0
    spec = load_spec(path)
    runs = trial_runs(spec)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    result = json.loads(next((tmp_path / "store" / "results").glob("*.json")).read_text())
    # The same trial config in this process, one process, no store.
    config = dict(result["config"], pretrain_store=None, checkpoint_dir=None, device="cpu")
    seen: list = []
    single = train(config, lambda metrics, step: seen.append([step, metrics]))
    client = Tracker(spec, create=False).client
    for key in ("pretrain/loss", "finetune/loss"):
        one = [(s, m[key]) for s, m in seen if key in m]
        two = [(s, m[key]) for s, m in result["history"] if key in m]
        assert [s for s, _ in two] == [s for s, _ in one]
        # MLflow holds each epoch (and the final value, logged at step 0 like any trial's).
        logged = history(runs[0], client, key)
        assert sorted(logged) == sorted([*two, (0, two[-1][1])])
        for (_, a), (_, b) in zip(one, two, strict=True):
            assert abs(a - b) <= TOLERANCE * max(1.0, abs(a)), (key, a, b)
    assert abs(runs[0].data.metrics["target_error"] - single["target_error"]) <= 2e-3


@pytest.mark.slow
def test_a_worker_killed_mid_trial_resumes_from_its_checkpoint_in_one_run(tmp_path, ray_address):
    raw = spec_dict(
        tmp_path,
        "dp-kill",
        trainable="ddp_trainables:train_killing_rank1",
        pretrain={"epochs": 40, "lr": 0.2, "batch_size": 32},
    )
    path = write(tmp_path, raw)
    assert commands.main(["run", str(path)]) == 0
    store = tmp_path / "store"
    assert (store / ddp_trainables.KILLED).exists()  # rank 1 did die mid-trial
    spec = load_spec(path)
    runs = trial_runs(spec)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    client = Tracker(spec, create=False).client
    steps = sorted(s for s, _ in history(runs[0], client, "pretrain/loss"))
    assert steps == [0, *range(40)]  # every epoch once (+ the final value at step 0)
    logged = [
        json.loads(line) for line in (store / ddp_trainables.EPOCHS_LOG).read_text().splitlines()
    ]
    pids = list(dict.fromkeys(e["pid"] for e in logged))
    assert len(pids) == 2, pids  # rank 0 of the first group, then of the restarted one
    resumed_at = next(e["step"] for e in logged if e["pid"] == pids[1] and e["stage"] == "pretrain")
    first_run = [e["step"] for e in logged if e["pid"] == pids[0] and e["stage"] == "pretrain"]
    # The restarted group went on from the last checkpoint (an epoch after the first), not from 0.
    assert 0 < resumed_at <= max(first_run) + 1
