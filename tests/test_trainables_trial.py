"""The trial: pretrain -> finetune -> evaluate, restarts, pretrain sharing, failures."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest
import trainables_fixtures as fixtures

from trainables import TrialError, train
from trainables.trial import load_dataset

FINAL_KEYS = {
    "target_error",
    "target_error_easy",
    "target_error_hard",
    "val_error",
    "align/cond_entropy",
    "align/nmi",
    "align/ami",
    "align/purity",
    "align/ari",
    "num_train",
    "num_classes",
    "examples_per_class",
    "time/pretrain_s",
    "time/finetune_s",
    "pretrain_reused",
}


hierarchy_file = fixtures.hierarchy_file  # shared with the checkpoint fault tests
config = fixtures.trial_config


class Recorder:
    def __init__(self, fail_at: tuple[str, int] | None = None) -> None:
        self.seen: list[tuple[str, int, dict]] = []
        self.fail_at = fail_at

    def __call__(self, metrics: dict, step: int) -> None:
        stage = next(iter(metrics)).split("/")[0]
        self.seen.append((stage, step, metrics))
        if self.fail_at == (stage, step):
            raise KeyboardInterrupt("simulated kill")

    def steps(self, stage: str) -> list[int]:
        return [s for st, s, _ in self.seen if st == stage]


def test_trial_runs_and_reports_the_contract(tmp_path):
    rec = Recorder()
    result = train(config(tmp_path), rec)
    assert FINAL_KEYS <= set(result)
    assert 0.0 <= result["target_error"] <= 1.0
    assert result["num_classes"] == 32 and result["pretrain_reused"] == 0.0
    assert result["align/cond_entropy"] == pytest.approx(0.0)  # subclasses nest in superclasses
    assert rec.steps("pretrain") == [0, 1, 2] and rec.steps("finetune") == [0, 1]
    assert set(rec.seen[0][2]) == {"pretrain/loss", "pretrain/error", "pretrain/val_error"}
    assert set(rec.seen[-1][2]) == {"finetune/loss", "finetune/error", "finetune/val_error"}


def test_same_config_same_numbers(tmp_path):
    a = train(config(tmp_path), None)
    b = train(config(tmp_path), None)
    timeless = [k for k in a if not k.startswith("time/")]
    assert {k: a[k] for k in timeless} == {k: b[k] for k in timeless}


def test_seed_pairs_the_subset_across_arms(tmp_path):
    coarse = train(config(tmp_path, level=0, data_fraction=0.5), None)
    fine = train(config(tmp_path, level=2, data_fraction=0.5), None)
    assert coarse["num_train"] == fine["num_train"]
    assert coarse["num_classes"] == 4 and fine["num_classes"] == 32


@pytest.mark.parametrize("mode", ["linear", "full"])
def test_restart_continues_from_the_last_epoch(tmp_path, mode):
    base = config(
        tmp_path,
        checkpoint_dir=str(tmp_path / "ckpt"),
        pretrain={"epochs": 4, "lr": 0.2},
        finetune={"mode": mode, "epochs": 3},
    )
    first = Recorder(fail_at=("pretrain", 1))
    with pytest.raises(KeyboardInterrupt):
        train(base, first)
    second = Recorder(fail_at=("finetune", 0))
    with pytest.raises(KeyboardInterrupt):
        train(base, second)
    third = Recorder()
    resumed = train(base, third)
    assert first.steps("pretrain") == [0, 1]
    assert second.steps("pretrain") == [2, 3] and second.steps("finetune") == [0]
    assert third.steps("pretrain") == [] and third.steps("finetune") == [1, 2]
    # Resuming changes nothing: same numbers as one uninterrupted run.
    straight = train(
        config(tmp_path, pretrain={"epochs": 4, "lr": 0.2}, finetune={"mode": mode, "epochs": 3}),
        None,
    )
    assert resumed["target_error"] == straight["target_error"]
    assert resumed["val_error"] == straight["val_error"]


def test_checkpoints_wait_for_their_interval(tmp_path):
    """Under a long interval a short stage saves no epoch checkpoint: a restart redoes it."""
    base = config(
        tmp_path,
        checkpoint_dir=str(tmp_path / "ckpt"),
        checkpoint_every_s=3600,
        pretrain={"epochs": 3, "lr": 0.2},
    )
    with pytest.raises(KeyboardInterrupt):
        train(base, Recorder(fail_at=("pretrain", 2)))
    assert not (tmp_path / "ckpt" / "pretrain.pt").exists()
    again = Recorder()
    resumed = train(base, again)
    assert again.steps("pretrain") == [0, 1, 2]
    straight = train(config(tmp_path, pretrain={"epochs": 3, "lr": 0.2}), None)
    assert resumed["target_error"] == straight["target_error"]
    with pytest.raises(TrialError, match="checkpoint_every_s=-1"):
        train(config(tmp_path, checkpoint_every_s=-1), None)
    with pytest.raises(TrialError, match="checkpoint_every_s='soon' must be a number"):
        train(config(tmp_path, checkpoint_every_s="soon"), None)


def test_second_trial_with_the_pretrain_key_loads_it(tmp_path):
    store = str(tmp_path / "store")
    first_rec, second_rec = Recorder(), Recorder()
    first = train(config(tmp_path, pretrain_store=store), first_rec)
    second = train(
        config(
            tmp_path, pretrain_store=store, trial_key="t1", finetune={"mode": "linear", "epochs": 4}
        ),
        second_rec,
    )
    assert first["pretrain_reused"] == 0.0 and second["pretrain_reused"] == 1.0
    assert second_rec.steps("pretrain") == []  # loaded, not trained
    assert second["time/pretrain_s"] == 0.0
    assert second["pretrain/loss"] == first["pretrain/loss"]
    assert (Path(store) / "p0.pt").is_file()


def _train_in_process(cfg: dict, queue) -> None:
    queue.put(train(cfg, None)["pretrain_reused"])


@pytest.mark.slow
def test_two_processes_share_one_pretraining(tmp_path):
    cfg = config(
        tmp_path, pretrain_store=str(tmp_path / "store"), pretrain={"epochs": 15, "lr": 0.2}
    )
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_train_in_process, args=(cfg, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert sorted(queue.get(timeout=5) for _ in procs) == [0.0, 1.0]


def test_scratch_trains_on_the_target_only(tmp_path):
    rec = Recorder()
    result = train(config(tmp_path, hierarchy="scratch", hierarchy_path=None, level=None), rec)
    assert result["num_classes"] == 4 and result["align/nmi"] == pytest.approx(1.0)
    assert rec.steps("pretrain") == [] and rec.steps("finetune") == [0, 1, 2]
    assert result["time/pretrain_s"] == 0.0


def test_nan_loss_ends_the_trial_with_the_reason(tmp_path):
    with pytest.raises(TrialError, match="non-finite loss"):
        train(config(tmp_path, pretrain={"epochs": 3, "lr": 1e30}), None)


def test_bad_level_fails_before_training(tmp_path):
    rec = Recorder()
    with pytest.raises(TrialError, match="out of range"):
        train(config(tmp_path, level=9), rec)
    with pytest.raises(TrialError, match="nope"):
        train(config(tmp_path, target="nope"), rec)
    assert rec.seen == []


def test_missing_root_fails_before_training(tmp_path):
    rec = Recorder()
    with pytest.raises(FileNotFoundError, match="no_cifar"):
        train(
            config(
                tmp_path,
                dataset="cifar100",
                dataset_options={"root": str(tmp_path / "no_cifar")},
                hierarchy_path=None,
            ),
            rec,
        )
    assert rec.seen == []


def test_trial_on_image_files_through_dataloader_workers(tmp_path):
    root, hierarchy = fixtures.write_imagefolder(tmp_path / "folder", per_class=4)
    from hierarchies import Hierarchy

    opts = {"root": str(root), "hierarchy": str(hierarchy), "image_size": 16}
    tree = load_dataset("imagefolder", opts).hierarchy
    assert isinstance(tree, Hierarchy)
    path = tmp_path / "h.json"
    tree.save(path)
    result = train(
        config(
            tmp_path,
            dataset="imagefolder",
            dataset_options=opts,
            target="group",
            hierarchy_path=str(path),
            level="class",
            num_workers=2,
            pretrain={"epochs": 1, "batch_size": 4},
            finetune={"epochs": 1},
        ),
        None,
    )
    assert result["num_classes"] == 4 and "target_error_hard" not in result


def test_digits_with_a_timm_backbone(tmp_path):
    path = tmp_path / "digits.json"
    load_dataset("digits", {}).hierarchy.save(path)
    result = train(
        config(
            tmp_path,
            dataset="digits",
            dataset_options={},
            target="parity",
            hierarchy_path=str(path),
            level="digit",
            backbone="resnet18",
            data_fraction=0.1,
            pretrain={"epochs": 1, "batch_size": 64},
            finetune={"mode": "full", "epochs": 1, "batch_size": 64},
        ),
        None,
    )
    assert np.isfinite(result["target_error"]) and result["num_classes"] == 10


def test_hierarchy_over_other_leaves_is_refused(tmp_path):
    other = tmp_path / "other.json"
    load_dataset("digits", {}).hierarchy.save(other)
    with pytest.raises(TrialError, match="not over the leaves"):
        train(config(tmp_path, hierarchy_path=str(other), level=0), None)


def test_same_partition_numbered_differently_shares_the_pretraining(tmp_path):
    from hierarchies import Hierarchy

    manual = Hierarchy.load(hierarchy_file(tmp_path))
    relabelled = manual.with_levels(
        [np.random.default_rng(0).permutation(32)[manual.mapping("subclass")]],
        kind="random",
        level_names=["leafish"],
    )
    path = tmp_path / "relabelled.json"
    relabelled.save(path)
    store = str(tmp_path / "store")
    train(config(tmp_path, pretrain_store=store), None)
    shared = train(config(tmp_path, pretrain_store=store, hierarchy_path=str(path), level=0), None)
    assert shared["pretrain_reused"] == 1.0
