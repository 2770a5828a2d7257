"""The controls of issue 25 through the plan, the trainable, the CLI and MLflow.

`leaf_level` (derived arms move whole classes, finer levels shared),
`factors.finetune_modes` (one pretraining for the probe and full finetuning),
`factors.dataset_options` (each value its own data, carried to keys, params,
status and run names), `analysis:` (tagged on the sweep's run), and bad values
refused by the CLI with one line, nothing created.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from sweeps_fake import write_fake_spec

from contracts import ANALYSIS_CONFIG
from sweeps import commands
from sweeps.ledger.mlflow_store import Tracker
from sweeps.plan import build_plan
from sweeps.spec import load_spec, parse_spec
from sweeps.status import plan_factors

SMALL = {"train_per_leaf": 8, "test_per_leaf": 4, "extra_levels": [2]}


def raw_spec(tmp_path: Path, **extra) -> dict:
    raw = {
        "name": "controls",
        "dataset": {"name": "synthetic", "options": SMALL},
        "target": "superclass",
        "factors": {"hierarchies": ["manual", "random", "scratch"], "levels": "all"},
        "seeds": 1,
        "pretrain": {"epochs": 1, "lr": 0.2},
        "finetune": {"epochs": 1},
        "device": "cpu",
        "storage_path": str(tmp_path / "store"),
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
    }
    for key, value in extra.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) and key in raw else value
    for key in ("pretrain", "finetune"):  # None: leave the field out
        raw[key] = {k: v for k, v in raw[key].items() if v is not None}
    return raw


def plan_of(tmp_path: Path, **extra):
    return build_plan(parse_spec(raw_spec(tmp_path, **extra)), write=False)


def pretrain_keys(plan, arm: str) -> dict[str, str]:
    return {
        t.config["level_name"]: t.pretrain_key for t in plan.trials if t.config["hierarchy"] == arm
    }


def test_the_default_leaf_level_shares_every_finer_level_with_manual(tmp_path):
    plan = plan_of(tmp_path)  # synthetic declares leaf_level subclass
    manual, random = pretrain_keys(plan, "manual"), pretrain_keys(plan, "random")
    assert manual["subclass"] == random["subclass"] and manual["extra1"] == random["extra1"]
    assert manual["class"] != random["class"]  # above it, whole subclasses are regrouped
    # The leaves as leaf level (the old control): single leaves move, subclasses are split.
    leaves = {"hierarchies": ["manual", {"kind": "random", "leaf_level": "extra1"}]}
    old = plan_of(tmp_path, factors=leaves)
    assert pretrain_keys(old, "manual")["subclass"] != pretrain_keys(old, "random")["subclass"]


def test_linear_and_full_finetuning_share_one_pretraining(tmp_path):
    from trainables import train

    one = plan_of(tmp_path)
    both = build_plan(  # written: the trials below read its hierarchy files
        parse_spec(raw_spec(tmp_path, factors={"finetune_modes": ["linear", "full"]}))
    )
    pretrained = [t for t in one.trials if not t.is_scratch]
    assert len(both.trials) == 2 * len(pretrained) + 1  # scratch has no finetuning to cross
    assert both.num_pretrainings() == one.num_pretrainings()
    cell = [t for t in both.trials if t.cell == ("manual", "class", 1.0, "twolayer")]
    assert sorted(t.config["finetune"]["mode"] for t in cell) == ["full", "linear"]
    assert len({t.pretrain_key for t in cell}) == 1 and len({t.trial_key for t in cell}) == 2
    pretrainings = []
    results = []
    for t in cell:  # both trials run, against one pretrain store
        config = {**t.config, "checkpoint_dir": None, "num_threads": 1}
        seen: list[str] = []
        results.append(train(config, lambda m, step, seen=seen: seen.extend(m)))
        pretrainings.append(sum(name == "pretrain/loss" for name in seen))
    assert pretrainings == [1, 0]  # one epoch of pretraining in all
    assert [r["pretrain_reused"] for r in results] == [0.0, 1.0]


def test_a_dataset_option_factor_reaches_trials_params_and_status(tmp_path):
    plan = plan_of(tmp_path, factors={"dataset_options": {"noise": [0.5, 0.75]}})
    one = plan_of(tmp_path)
    assert len(plan.trials) == 2 * len(one.trials)
    assert plan.num_pretrainings() == 2 * one.num_pretrainings()  # each value its own data
    by_noise = {0.5: [], 0.75: []}
    for t in plan.trials:
        by_noise[t.config["dataset_options"]["noise"]].append(t)
        assert t.config["dataset_options"]["train_per_leaf"] == 8  # the fixed options kept
        assert t.params()["dataset.noise"] == str(t.config["dataset_options"]["noise"])
        assert t.run_name.endswith(f"/noise={t.config['dataset_options']['noise']}")
        assert t.factors()["dataset.noise"] == t.config["dataset_options"]["noise"]
    assert len(by_noise[0.5]) == len(by_noise[0.75])
    assert plan.summary()["cells"] == 2 * one.summary()["cells"]
    assert "dataset.noise" in plan_factors(plan)


def test_steps_and_matched_scratch_reach_the_configs_without_changing_old_keys(tmp_path):
    old = plan_of(tmp_path)
    assert all("steps" not in t.config["pretrain"] for t in old.trials)
    assert all("scratch_budget" not in t.config for t in old.trials)
    new = plan_of(
        tmp_path,
        pretrain={"epochs": None, "steps": 30, "selection": "best_val"},
        finetune={"epochs": None, "steps": 10},
        scratch_budget="matched",
    )
    for t in new.trials:
        assert t.config["pretrain"]["steps"] == 30 and "epochs" not in t.config["pretrain"]
        assert t.config["pretrain"]["selection"] == "best_val"
        assert t.config.get("scratch_budget") == ("matched" if t.is_scratch else None)


def test_a_scratch_arm_with_its_own_budget_sits_beside_the_matched_one(tmp_path):
    plan = plan_of(
        tmp_path,
        factors={
            "hierarchies": [
                "manual",
                "scratch",
                {"kind": "scratch", "label": "scratch_plain", "budget": "pretrain"},
            ]
        },
        scratch_budget="matched",
    )
    budgets = {t.config["hierarchy"]: t.config.get("scratch_budget") for t in plan.trials}
    assert budgets == {"manual": None, "scratch": "matched", "scratch_plain": None}
    keys = {t.config["hierarchy"]: t.trial_key for t in plan.trials if t.is_scratch}
    assert keys["scratch"] != keys["scratch_plain"]
    # The plain arm trains as the default scratch arm does: the pretraining's settings alone.
    default = plan_of(tmp_path, factors={"hierarchies": ["manual", "scratch"]})
    plain = next(t for t in plan.trials if t.config["hierarchy"] == "scratch_plain")
    same = next(t for t in default.trials if t.is_scratch)
    for field in ("pretrain", "finetune", "dataset_options", "seed"):
        assert plain.config[field] == same.config[field], field
    assert "scratch_budget" not in same.config


def write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


BAD = {
    "leaf_level": (
        {"factors": {"hierarchies": ["manual", {"kind": "random", "leaf_level": "species"}]}},
        "factors.hierarchies[1].leaf_level: unknown level 'species'",
    ),
    "steps_and_epochs": ({"pretrain": {"steps": 100}}, "pretrain.steps: 100 given with epochs=1"),
    "unknown_option": (
        {"factors": {"dataset_options": {"colour": ["red", "blue"]}}},
        "factors.dataset_options.colour: dataset 'synthetic' has no option 'colour'",
    ),
    "analysis_option": (
        {"analysis": {"block": "fold"}},
        "analysis.block: 'fold' is not a crossed dataset option",
    ),
}


@pytest.mark.parametrize("command", ["run", "validate"])
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_values_exit_2_with_one_line_and_create_nothing(tmp_path, capsys, case, command):
    extra, needle = BAD[case]
    path = write(tmp_path, raw_spec(tmp_path, **extra))
    before = sorted(p.name for p in tmp_path.iterdir())
    assert commands.main([command, str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no store, no MLflow db


def test_the_shipped_controls_spec_uses_every_new_field():
    spec = load_spec("controls_smoke")
    assert spec.factors.finetune_modes == ["linear", "full"]
    assert spec.factors.dataset_options and spec.analysis.size and spec.analysis.block
    assert spec.pretrain.steps and spec.finetune.steps and spec.scratch_budget == "matched"
    assert spec.pretrain.selection == "best_val"
    assert any(a.leaf_level for a in spec.factors.hierarchies)
    assert load_spec("controls_smoke", smoke=True).pretrain.steps < spec.pretrain.steps


def test_crossed_factors_reach_mlflow_params_and_the_sweep_run(tmp_path, ray_address):
    """Through a real run on Ray (conftest's `ray_address`) with the fake trainable."""
    path = write_fake_spec(
        tmp_path,
        "crossed",
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        factors={
            "hierarchies": ["manual", "scratch"],
            "levels": ["leaf"],
            "finetune_modes": ["linear", "full"],
            "dataset_options": {"variant": ["a", "b"]},
        },
        analysis={"block": "variant"},
        seeds=1,
    )
    assert commands.main(["run", str(path)]) == 0
    tracker = Tracker(load_spec(path), create=False)
    runs = tracker.client.search_runs([tracker.experiment_id], max_results=100)
    trials = [r for r in runs if r.data.tags.get("granularity.role") == "trial"]
    seen = sorted(
        (
            r.data.params["dataset.variant"],
            r.data.params["hierarchy"],
            r.data.params["finetune.mode"],
        )
        for r in trials
    )
    assert seen == [
        ("a", "manual", "full"),
        ("a", "manual", "linear"),
        ("a", "scratch", "linear"),
        ("b", "manual", "full"),
        ("b", "manual", "linear"),
        ("b", "scratch", "linear"),
    ]
    parent = next(r for r in runs if r.data.tags.get("granularity.role") == "sweep")
    assert json.loads(parent.data.tags[ANALYSIS_CONFIG]) == {"block": "variant"}


RULES = {
    "matched_units": (
        {"scratch_budget": "matched", "pretrain": {"epochs": None, "steps": 50}},
        "scratch_budget: matched adds the pretraining and finetuning budgets, but pretrain "
        "uses steps and finetune epochs",
    ),
    "mode_twice": (
        {"factors": {"finetune_modes": ["linear", "full"]}, "finetune": {"mode": "full"}},
        "finetune.mode: set together with factors.finetune_modes",
    ),
    "replicates": (
        {"factors": {"finetune_modes": ["full"]}, "replicates": {"initial": 2}, "seeds": 4},
        "replicates: adaptive replicates compare cells",
    ),
    "option_fixed_and_crossed": (
        {"factors": {"dataset_options": {"train_per_leaf": [4, 8]}}},
        "factors.dataset_options.train_per_leaf: also set in dataset.options",
    ),
    "empty_option": (
        {"factors": {"dataset_options": {"noise": []}}},
        "dataset_options.noise is an empty list",
    ),
    "size_is_block": (
        {
            "factors": {"dataset_options": {"noise": [0.5, 0.7]}},
            "analysis": {"size": "noise", "block": "noise"},
        },
        "analysis.block: 'noise' is the size axis too",
    ),
    "selection": ({"pretrain": {"selection": "best"}}, "pretrain.selection"),
    "budget_not_scratch": (
        {"factors": {"hierarchies": ["manual", {"kind": "random", "budget": "matched"}]}},
        "budget applies only to kind 'scratch', not 'random'",
    ),
    "arm_budget_matched_units": (
        {
            "factors": {"hierarchies": ["manual", {"kind": "scratch", "budget": "matched"}]},
            "pretrain": {"epochs": None, "steps": 50},
        },
        "scratch_budget: matched adds the pretraining and finetuning budgets",
    ),
}


@pytest.mark.parametrize("case", sorted(RULES))
def test_the_new_fields_are_checked_against_the_rest_of_the_spec(tmp_path, case):
    from sweeps.spec import SpecError

    extra, needle = RULES[case]
    with pytest.raises(SpecError) as caught:
        parse_spec(raw_spec(tmp_path, **extra))
    assert needle in str(caught.value), str(caught.value)
    assert len(caught.value.problems) == 1


def test_the_estimate_prices_a_step_budget_the_same_at_every_fraction(tmp_path):
    from sweeps import estimate as est

    plan = plan_of(
        tmp_path,
        factors={"data_fractions": [0.25, 1.0]},
        pretrain={"epochs": None, "steps": 40},
        finetune={"epochs": None, "steps": 10},
        scratch_budget="matched",
    )
    # 400 examples at the probe's fraction, batch 128: 4 steps an epoch of 2 s (0.5 s a step).
    probe = est.Probe("p", 0.25, pretrain_epoch_s=2.0, finetune_epoch_s=1.0, fixed_s=1.0,
                      first_s=0.0, wall_s=0.0, num_train=400)  # fmt: skip
    seconds = {
        (t.config["hierarchy"], t.config["data_fraction"]): est.trial_seconds(
            t, probe, pretrains=True
        )
        for t in plan.trials
        if t.config["level_name"] in ("class", None)
    }
    assert seconds[("manual", 0.25)] == seconds[("manual", 1.0)] == 1.0 + 40 * 0.5 + 10 * 0.25
    assert seconds[("scratch", 0.25)] == seconds[("scratch", 1.0)] == 1.0 + (40 + 10) * 0.5


def test_a_step_budget_probe_trains_on_a_capped_share_of_a_large_set(tmp_path, monkeypatch):
    """Two probe epochs of a large set would time what the steps never run: the probe of a
    step-budget trial trains on about PROBE_STEP_EXAMPLES examples; an epoch budget's does not."""
    from sweeps import estimate as est
    from trainables.trial import load_dataset

    monkeypatch.setattr(est, "PROBE_STEP_EXAMPLES", 40)
    steps = plan_of(
        tmp_path, pretrain={"epochs": None, "steps": 6}, finetune={"epochs": None, "steps": 3}
    )
    trial = next(t for t in steps.trials if not t.is_scratch)
    c = trial.config
    examples = len(load_dataset(c["dataset"], c["dataset_options"]).train)
    assert examples > 40
    assert est.probe_fraction(trial) == pytest.approx(40 / examples)
    probe = est.run_probe(trial, steps.hierarchies.get(trial.hierarchy_hash), train_trainable())
    assert probe.data_fraction == pytest.approx(40 / examples)
    assert 0 < probe.num_train <= 40  # the validation share comes out of the subset
    epochs = plan_of(tmp_path)
    assert est.probe_fraction(next(t for t in epochs.trials if not t.is_scratch)) == 1.0


def train_trainable():
    from trainables import train

    return train
