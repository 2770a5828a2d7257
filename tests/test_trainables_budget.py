"""Step budgets, best-validation selection, matched scratch, a dataset's own validation split."""

from __future__ import annotations

import dataclasses

import pytest
import trainables_fixtures as fixtures
from test_trainables_trial import Recorder

import trainables.stages as stages_module
import trainables.trial as trial_module
from trainables.budget import MAX_SEGMENTS, stage_budget
from trainables.data import Split
from trainables.trial import train

config = fixtures.trial_config


@pytest.fixture
def optimizer_steps(monkeypatch):
    """The optimizer steps of each optimizer a trial creates, in creation order."""
    counts: list[list[int]] = []
    real = stages_module.make_optimizer

    def counting(params, settings):
        optimizer = real(params, settings)
        count = [0]
        counts.append(count)
        optimizer.register_step_post_hook(lambda *_: count.__setitem__(0, count[0] + 1))
        return optimizer

    monkeypatch.setattr(stages_module, "make_optimizer", counting)
    return counts


def budget_config(tmp_path, fraction: float, **stages) -> dict:
    return config(
        tmp_path,
        data_fraction=fraction,
        pretrain={"lr": 0.2, "batch_size": 16, **stages.get("pretrain", {"steps": 9})},
        finetune={"mode": "linear", "batch_size": 16, **stages.get("finetune", {"steps": 6})},
    )


def test_steps_give_the_same_optimizer_steps_at_every_fraction(tmp_path, optimizer_steps):
    results = {}
    for fraction in (0.25, 0.5, 1.0):
        optimizer_steps.clear()
        results[fraction] = train(budget_config(tmp_path, fraction), None)
        assert [c[0] for c in optimizer_steps] == [9, 6], fraction  # pretrain, then the probe
        assert results[fraction]["pretrain/steps"] == 9 and results[fraction]["finetune/steps"] == 6
    # The fractions really differ in size (so epochs would not give equal steps).
    assert results[0.25]["num_train"] < results[1.0]["num_train"]
    optimizer_steps.clear()
    for fraction in (0.25, 1.0):
        train(budget_config(tmp_path, fraction, pretrain={"epochs": 1}, finetune={"epochs": 1}))
    assert optimizer_steps[0][0] < optimizer_steps[2][0]


def test_a_step_budget_is_cut_into_at_most_max_segments():
    small = stage_budget({"steps": 1000, "batch_size": 10}, 35)  # 4 batches an epoch
    assert small.segments == MAX_SEGMENTS and small.total_steps == 1000
    assert small.bounds[0] == 0 and small.bounds[-1] == 1000
    big = stage_budget({"steps": 10, "batch_size": 10}, 1000)  # a tenth of an epoch
    assert big.segments == 1 and big.total_steps == 10
    epochs = stage_budget({"epochs": 3, "batch_size": 10}, 35)
    assert epochs.segments == 3 and epochs.total_steps == 12


def test_a_step_budget_resumes_inside_an_epoch_with_the_same_numbers(tmp_path):
    # ~6 batches an epoch at this fraction: 25 steps are 5 segments of 5, across epoch ends;
    # the best segment so far travels in the checkpoint.
    stages = {"pretrain": {"steps": 25, "selection": "best_val"}, "finetune": {"steps": 6}}
    base = {**budget_config(tmp_path, 0.25, **stages), "checkpoint_dir": str(tmp_path / "ckpt")}
    first = Recorder(fail_at=("pretrain", 3))  # segment 3 is this run's best (asserted below)
    with pytest.raises(KeyboardInterrupt):
        train(base, first)
    resumed_log = Recorder()
    resumed = train(base, resumed_log)
    assert first.steps("pretrain") == [0, 1, 2, 3] and resumed_log.steps("pretrain") == [4]
    straight = train(budget_config(tmp_path, 0.25, **stages), None)
    for metric in ("target_error", "pretrain/loss", "pretrain/val_error", "pretrain/best_segment"):
        assert resumed[metric] == straight[metric], metric
    assert straight["pretrain/best_segment"] == 3  # chosen before the resume: from the checkpoint


def test_best_validation_selection_keeps_the_lowest_validation_error(tmp_path):
    stages = {
        "pretrain": {"steps": 40, "selection": "best_val", "lr": 2.0},
        "finetune": {"steps": 6},
    }
    log = Recorder()
    result = train(budget_config(tmp_path, 1.0, **stages), log)
    reported = [m["pretrain/val_error"] for st, _, m in log.seen if st == "pretrain"]
    assert result["pretrain/val_error"] == min(reported)
    assert reported[int(result["pretrain/best_segment"])] == min(reported)
    last = train(budget_config(tmp_path, 1.0, **{**stages, "pretrain": {"steps": 40, "lr": 2.0}}))
    assert "pretrain/best_segment" not in last and last["pretrain/val_error"] == reported[-1]


def test_matched_scratch_trains_for_both_budgets(tmp_path, optimizer_steps):
    base = {**budget_config(tmp_path, 0.5), "hierarchy_path": None, "level": None}
    train(base, None)
    train({**base, "scratch_budget": "matched"}, None)
    assert [c[0] for c in optimizer_steps] == [9, 9 + 6]


def test_a_dataset_validation_split_replaces_the_carved_one(tmp_path, monkeypatch):
    real = trial_module.load_dataset

    def with_val(name, options):
        ds = real(name, options)
        test = ds.test
        return dataclasses.replace(ds, val=Split(leaf=test.leaf[:5], inputs=test.inputs[:5]))

    monkeypatch.setattr(trial_module, "load_dataset", with_val)
    log = Recorder()
    train(budget_config(tmp_path, 1.0), log)
    for _, _, metrics in log.seen:
        value = metrics.get("pretrain/val_error", metrics.get("finetune/val_error"))
        assert abs(value * 5 - round(value * 5)) < 1e-9  # errors over 5 examples


def test_a_bad_step_budget_is_refused_before_training(tmp_path):
    from trainables import TrialError

    with pytest.raises(TrialError, match="pretrain.steps=0"):
        train(budget_config(tmp_path, 1.0, pretrain={"steps": 0}))
    with pytest.raises(TrialError, match="selection 'best'"):
        train(budget_config(tmp_path, 1.0, finetune={"steps": 3, "selection": "best"}))
