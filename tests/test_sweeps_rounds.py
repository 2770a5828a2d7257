"""Adaptive replicates end to end (sweeps/rounds.py) on a local Ray with the fake trainable.

Round 1 runs `initial` seeds of every cell; later rounds add seeds only to the
cells of comparisons still open; each trial's MLflow run carries its round; a
killed driver continues the round on the next `run`.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
from sweeps_fake import CALLS_FILE, write_fake_spec

from sweeps import commands
from sweeps.ledger.mlflow_store import Tracker
from sweeps.ledger.records import read_results
from sweeps.spec import load_spec

# Scratch is far worse (gains settle at once); manual and random differ by noise only.
OPTIONS = {"offsets": {"scratch": 0.3}, "noise": 0.01}
REPLICATES = {"initial": 3, "step": 2, "stop_when": ["gain", "hierarchy"]}


def _spec(tmp_path: Path, name: str, **extra) -> Path:
    return write_fake_spec(
        tmp_path,
        name,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        options={**OPTIONS, **extra.pop("options", {})},
        seeds=7,
        replicates=REPLICATES,
        **extra,
    )


def _trials(path: Path):
    tracker = Tracker(load_spec(path), create=False)
    runs = tracker.client.search_runs([tracker.experiment_id], max_results=1000)
    return [r for r in runs if r.data.tags.get("granularity.role") == "trial"], runs


def _seeds_per_cell(trials) -> Counter:
    return Counter(
        (r.data.params["hierarchy"], r.data.params["level_name"])
        for r in trials
        if r.info.status == "FINISHED"
    )


EXPECTED = {  # looks at 3, 5, 7 seeds: only manual vs random at `mid` stays open to max
    ("manual", "mid"): 7,
    ("random", "mid"): 7,
    ("manual", "leaf"): 3,
    ("random", "leaf"): 3,
    ("scratch", "scratch"): 3,
}


@pytest.mark.slow
def test_rounds_add_seeds_only_where_a_comparison_is_open(tmp_path, ray_address, capsys):
    path = _spec(tmp_path, "adaptive")
    assert commands.main(["run", str(path)]) == 0
    out = capsys.readouterr().out
    trials, runs = _trials(path)
    assert _seeds_per_cell(trials) == EXPECTED
    rounds = {(int(r.data.params["seed"]), r.data.tags["granularity.round"]) for r in trials}
    assert rounds == {(s, str(1 + (s >= 3) + (s >= 5))) for s in range(7)}
    parent = next(r for r in runs if r.data.tags.get("granularity.role") == "sweep")
    design = json.loads(parent.data.tags["granularity.replicates"])
    assert design["initial"] == 3 and design["max"] == 7
    assert "23 trials planned" in out and "not settled within max=7" in out
    # A rerun runs nothing; raising max extends only the open cells.
    assert commands.main(["run", str(path)]) == 0
    assert "0 run now" in capsys.readouterr().out
    assert commands.main(["run", str(path), "replicates.max=9"]) == 0
    trials, _ = _trials(path)
    after = _seeds_per_cell(trials)
    # The open comparison gets its seeds; a raised max re-spends alpha over the new looks
    # (a smaller first-look share), so other cells may get some too, never fewer.
    assert after[("manual", "mid")] == after[("random", "mid")] == 9
    assert all(after[cell] >= n for cell, n in EXPECTED.items())


@pytest.mark.slow
def test_a_driver_killed_mid_round_continues_the_round(tmp_path, ray_address, kill_driver):
    path = _spec(tmp_path, "adaptive-killed", options={"sleep": 0.05}, pack=1)
    # Round 1 has 15 trials: the kill lands inside round 2.
    kill_driver(path, ray_address, after=17, timeout_s=120)
    store = tmp_path / "store"
    before = set(read_results(store))
    assert 15 < len(before) < 23, len(before)
    time.sleep(1.0)
    assert commands.main(["run", str(path)]) == 0
    trials, _ = _trials(path)
    assert _seeds_per_cell(trials) == EXPECTED
    log = (store / CALLS_FILE).read_text().splitlines()
    counts = Counter(json.loads(line)["trial_key"] for line in log)
    assert all(counts[k] == 1 for k in before)


# ---- the round logic without Ray (fast) --------------------------------------------------
class _Executor:
    """Runs trials in process with the fake trainable, writing result files as workers do."""

    def __init__(self, storage: Path, stop_after: int | None = None) -> None:
        self.storage, self.stop_after, self.ran, self.labels = storage, stop_after, [], []

    def __call__(self, trials, metas, label, pack):
        from sweeps_fake import train

        from fileio import write_json_atomic
        from sweeps.ledger.records import result_path

        self.labels.append(label)
        for t in trials:
            if self.stop_after is not None and len(self.ran) >= self.stop_after:
                raise KeyboardInterrupt  # the driver is killed mid-round
            result = train(t.config, lambda metrics, step: None)
            write_json_atomic(result_path(self.storage, t.trial_key), {"result": result})
            self.ran.append(t.trial_key)
        return object()


def _plan(tmp_path: Path, **overrides):
    from sweeps_fake import FakeDataset

    from sweeps.plan import build_plan

    spec = load_spec(_spec(tmp_path, "rounds-unit"), [f"{k}={v}" for k, v in overrides.items()])
    return spec, build_plan(spec, dataset=FakeDataset(), storage=tmp_path / "store")


def _cells_run(plan, keys) -> Counter:
    by_key = plan.by_key()
    return Counter(by_key[k].cell[:2] for k in keys)


def test_round_logic_tags_and_resume_after_a_kill(tmp_path):
    from sweeps.rounds import round_tags, run_rounds

    spec, plan = _plan(tmp_path)
    design = spec.design()
    store = tmp_path / "store"
    (store / "pretrained").mkdir(parents=True, exist_ok=True)
    tags = round_tags(plan, design)
    assert {t.config["seed"]: tags[t.trial_key]["granularity.round"] for t in plan.trials} == {
        0: "1",
        1: "1",
        2: "1",
        3: "2",
        4: "2",
        5: "3",
        6: "3",
    }
    killed = _Executor(store, stop_after=17)  # round 1 has 15 trials
    with pytest.raises(KeyboardInterrupt):
        run_rounds(plan, design, killed, {}, store, "x", "auto")
    again = _Executor(store)
    rounds = run_rounds(plan, design, again, {}, store, "x", "auto")
    assert not set(killed.ran) & set(again.ran)  # nothing finished ran twice
    assert _cells_run(plan, killed.ran + again.ran) == EXPECTED
    assert again.labels == ["x round 2", "x round 3"]
    assert rounds.state.done and rounds.trials_used == 23
    assert "not settled within max=7" in rounds.text()
