"""Expansion of specs into trials, their keys, pretraining sharing, packing, and packs run alone."""

from __future__ import annotations

import json

import pytest
from sweeps_fake import FakeDataset, train

from sweeps.ledger.records import read_results, result_path
from sweeps.packing import make_packs
from sweeps.packs import run_pack
from sweeps.plan import build_plan, with_settings
from sweeps.spec import SpecError, parse_spec


def spec_of(tmp_path, **extra):
    raw = {
        "name": "plan",
        "dataset": {"name": "sweeps_fake:fake_dataset"},
        "target": "coarse",
        "factors": {
            "hierarchies": ["manual", "random", {"kind": "perturbed", "p": [0.0, 0.5]}, "scratch"],
            "levels": "target_and_finer",
            "data_fractions": [0.5, 1.0],
        },
        "seeds": 2,
        "storage_path": str(tmp_path / "store"),
    }
    raw.update(extra)
    return parse_spec(raw)


@pytest.fixture
def plan(tmp_path):
    return build_plan(spec_of(tmp_path), dataset=FakeDataset())


def test_expansion_counts_and_contract_config(plan):
    # 4 levels x 3 hierarchy arms (+ scratch) x 2 fractions x 2 seeds.
    assert len(plan.trials) == (4 * 4 + 1) * 2 * 2
    config = plan.trials[0].config
    assert set(config) == {
        "dataset",
        "dataset_options",
        "target",
        "hierarchy",
        "hierarchy_path",
        "level",
        "level_name",
        "data_fraction",
        "backbone",
        "backbone_options",
        "seed",
        "pretrain",
        "finetune",
        "device",
        "checkpoint_every_s",
        "code_version",
        "trial_key",
        "pretrain_key",
        "checkpoint_dir",
        "pretrain_store",
    }
    assert config["target"] == "coarse"
    scratch = [t for t in plan.trials if t.is_scratch]
    assert len(scratch) == 4
    assert all(t.config["hierarchy_path"] is None and t.config["level"] is None for t in scratch)
    assert scratch[0].params()["level"] == "-1" and scratch[0].params()["num_classes"] == "2"
    json.dumps([t.config for t in plan.trials])  # plain JSON


def test_keys_are_stable_and_ignore_paths(tmp_path):
    a = build_plan(spec_of(tmp_path), dataset=FakeDataset(), write=False)
    b = build_plan(
        spec_of(tmp_path, storage_path=str(tmp_path / "elsewhere")), dataset=FakeDataset()
    )
    assert [t.trial_key for t in a.trials] == [t.trial_key for t in b.trials]
    assert len({t.trial_key for t in a.trials}) == len(a.trials)
    changed = build_plan(spec_of(tmp_path, pretrain={"epochs": 3}), dataset=FakeDataset())
    assert not {t.trial_key for t in a.trials} & {t.trial_key for t in changed.trials}


def test_extending_the_spec_keeps_old_keys(tmp_path):
    small = build_plan(spec_of(tmp_path), dataset=FakeDataset())
    big = build_plan(spec_of(tmp_path, seeds=3), dataset=FakeDataset())
    assert {t.trial_key for t in small.trials} < {t.trial_key for t in big.trials}


def test_identical_label_functions_share_one_pretraining(plan):
    # The leaf level is the same partition in every arm, and perturbed p=0 is the
    # manual hierarchy itself: they collapse into one pretraining per (fraction, seed).
    groups = plan.pretrain_groups()
    leaf = [t for t in plan.trials if t.config["level_name"] == "leaf"]
    assert len({t.pretrain_key for t in leaf}) == 2 * 2
    manual_mid = next(
        t
        for t in plan.trials
        if t.config["hierarchy"] == "manual" and t.config["level_name"] == "mid"
    )
    assert {t.config["hierarchy"] for t in groups[manual_mid.pretrain_key]} == {
        "manual",
        "perturbed_p0",
    }
    assert plan.num_pretrainings() < len([t for t in plan.trials if not t.is_scratch])
    # ...but finetuning differs, so the trial keys do not collapse.
    assert len({t.trial_key for t in leaf}) == len(leaf)


def test_hierarchies_are_saved_by_content_hash(plan):
    paths = {t.config["hierarchy_path"] for t in plan.trials if not t.is_scratch}
    for path in paths:
        data = json.loads(open(path).read())
        assert data["format"] == "granularity.hierarchy/1"
    # replicate-seeded random trees: one per seed; manual: one.
    random_paths = {
        t.config["hierarchy_path"] for t in plan.trials if t.config["hierarchy"] == "random"
    }
    assert len(random_paths) == 2


def test_fixed_hierarchy_seed_uses_one_tree(tmp_path):
    plan = build_plan(spec_of(tmp_path, hierarchy_seed=7), dataset=FakeDataset())
    random_paths = {
        t.config["hierarchy_path"] for t in plan.trials if t.config["hierarchy"] == "random"
    }
    assert len(random_paths) == 1


def test_levels_by_name_index_and_errors(tmp_path):
    base = spec_of(tmp_path).model_dump()
    base["factors"]["levels"] = ["fine", -1]
    plan = build_plan(parse_spec(base), dataset=FakeDataset(), write=False)
    assert {t.config["level_name"] for t in plan.trials if not t.is_scratch} == {"fine", "leaf"}
    base["factors"]["levels"] = ["fine", "nope"]
    with pytest.raises(SpecError, match=r"factors.levels\[1\].*'nope'"):
        build_plan(parse_spec(base), dataset=FakeDataset(), write=False)
    with pytest.raises(SpecError, match="target"):
        build_plan(spec_of(tmp_path, target="species"), dataset=FakeDataset(), write=False)


def test_with_settings_changes_keys(plan, tmp_path):
    trial = plan.trials[0]
    other = with_settings(trial, {"pretrain.lr": 0.5}, tmp_path)
    assert other.config["pretrain"]["lr"] == 0.5 and trial.config["pretrain"]["lr"] == 0.05
    assert other.trial_key != trial.trial_key and other.pretrain_key != trial.pretrain_key


@pytest.mark.parametrize("pack", ["auto", 1, 5])
def test_packs_keep_pretrain_groups_together(plan, pack):
    packs = make_packs(plan.trials, slots=2, pack=pack)
    assert sorted(t.trial_key for p in packs for t in p) == sorted(t.trial_key for t in plan.trials)
    if pack == "auto":
        assert len(packs) == 8
        where = {}
        for i, p in enumerate(packs):
            for t in p:
                where.setdefault(t.pretrain_key, set()).add(i)
        assert all(len(v) == 1 for v in where.values())
    else:
        assert all(len(p) <= pack for p in packs)
    if pack == 1:  # each group's first trial (the pretraining) is scheduled before the rest
        firsts = {}
        for i, p in enumerate(packs):
            firsts.setdefault(p[0].pretrain_key, i)
        n_groups = len(plan.pretrain_groups())
        assert max(firsts.values()) == n_groups - 1


def test_run_pack_persists_results_retries_and_skips(plan, tmp_path):
    storage = tmp_path / "store"
    trials = [t for t in plan.trials if t.config["hierarchy"] in ("manual", "random")][:4]
    items = []
    for t in trials:
        config = dict(t.config, dataset_options={"flaky": ["random"], "fail": []})
        items.append({"config": config, "meta": {"role": "trial"}})
    items[-1]["config"]["dataset_options"] = {"fail": [items[-1]["config"]["hierarchy"]]}
    sent = []
    counts = run_pack(
        items, trainable=train, emit=sent.extend, storage=storage, retries=1, invocation="a"
    )
    assert counts == {"finished": 3, "failed": 1, "skipped": 0}
    kinds = [e["event"] for e in sent]
    assert kinds.count("final") == 3 and kinds.count("failed") == 1
    assert set(read_results(storage)) == {i["config"]["trial_key"] for i in items[:3]}
    record = json.loads(result_path(storage, items[0]["config"]["trial_key"]).read_text())
    assert record["history"] and record["result"]["target_error"] >= 0.1
    # A retried pack (same invocation) skips finished and already-failed trials...
    assert run_pack(
        items, trainable=train, emit=sent.extend, storage=storage, retries=1, invocation="a"
    ) == {"finished": 0, "failed": 0, "skipped": 4}
    # ...a new invocation retries the failed one only.
    again = run_pack(
        items, trainable=train, emit=sent.extend, storage=storage, retries=0, invocation="b"
    )
    assert again == {"finished": 0, "failed": 1, "skipped": 3}


def test_a_second_driver_on_the_same_sweep_is_refused(tmp_path, monkeypatch):
    from filelock import FileLock

    from sweeps.errors import SweepError
    from sweeps.runner import run_sweep

    monkeypatch.chdir(tmp_path)
    spec = spec_of(tmp_path)
    storage = spec.resolved_storage_path()
    storage.mkdir(parents=True)
    with FileLock(str(storage / "driver.lock")):
        with pytest.raises(SweepError, match="another `granularity run`"):
            run_sweep(spec, trainable=train, dataset=FakeDataset())
    assert not (tmp_path / "mlflow.db").exists()
