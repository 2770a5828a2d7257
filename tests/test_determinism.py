"""Determinism: the same spec and seed on the same machine give identical results, trial by trial.

A small quickstart sweep with the real trainable runs twice, into two
storage folders and two MLflow stores; every final metric of every trial
matches exactly, in the result files and in the MLflow export
(analysis.load). What may differ across machines and thread counts is
measured by bench/bench_determinism.py (README, "Determinism").
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from analysis.load import load_runs
from sweeps import commands
from sweeps.ledger.records import read_results
from sweeps.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
# Measures of time, not of the model: they differ from run to run by nature.
TIMING = ("wall", "_s", "per_s", "time")


@pytest.fixture(scope="module")
def ray_address():
    from sweeps.ray_backend import ray_session

    with ray_session(num_cpus=2) as info:
        yield info["address"]


def _overrides(folder: Path) -> list[str]:
    return [
        "factors.hierarchies=[manual, random, scratch]",
        "factors.levels=[class, extra2]",
        "seeds=1",
        f"storage_path={folder / 'store'}",
        f"tracking.uri=sqlite:///{folder / 'mlflow.db'}",
        "name=determinism",
    ]


def _model_metrics(result: dict) -> dict:
    return {
        k: v
        for k, v in result.items()
        if not any(t in k for t in TIMING) and k != "pretrain_reused"
    }


def test_one_trial_twice_in_process_gives_the_same_numbers(tmp_path):
    """The trainable alone (no Ray): one pretrain -> finetune trial, twice, fresh stores."""
    pytest.importorskip("torch")
    from sweeps.plan import build_plan
    from trainables import train

    spec = load_spec(
        ROOT / "sweeps" / "quickstart.yaml",
        [*_overrides(tmp_path), "factors.hierarchies=[manual]", "factors.levels=[class]"],
        smoke=True,
    )
    (trial,) = build_plan(spec, write=True).trials
    results, curves = [], []
    for run in ("a", "b"):
        config = {
            **trial.config,
            "checkpoint_dir": str(tmp_path / run / "trial"),
            "pretrain_store": str(tmp_path / run / "pretrained"),
        }
        curve: list = []
        results.append(
            _model_metrics(train(config, lambda m, step, out=curve: out.append((step, m))))
        )
        curves.append(curve)
    assert results[0] == results[1] and "target_error" in results[0]
    assert curves[0] == curves[1] and curves[0]


@pytest.mark.slow  # two sweeps on Ray with the real trainable: about a minute on 2 busy cores
def test_same_spec_same_seed_same_results(tmp_path, ray_address):
    pytest.importorskip("torch")
    spec = str(ROOT / "sweeps" / "quickstart.yaml")
    stores = [tmp_path / "a", tmp_path / "b"]
    for folder in stores:
        assert commands.main(["run", spec, "--smoke", *_overrides(folder)]) == 0
    first, second = (read_results(folder / "store") for folder in stores)
    assert len(first) == 5 and set(first) == set(second)  # 2 arms x 2 levels + scratch
    for key in first:
        a, b = (_model_metrics(r[key]["result"]) for r in (first, second))
        assert a.keys() == b.keys() and "target_error" in a
        differ = {
            k: (a[k], b[k])
            for k in a
            if a[k] != b[k]
            and not (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k]))
        }
        assert differ == {}, (first[key]["config"]["hierarchy"], differ)
        # Per-epoch curves too.
        assert first[key]["history"] == second[key]["history"]
    # The export analysis reads: the same numbers, trial by trial.
    exports = []
    for folder in stores:
        spec_obj = load_spec(spec, _overrides(folder), smoke=True)
        frame = load_runs(spec_obj.name, spec_obj.tracking.uri)
        exports.append(frame.set_index("trial_key")["target_error"].sort_index())
    assert len(exports[0]) == 5
    assert exports[0].equals(exports[1])
