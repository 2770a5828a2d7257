"""One trial: pretrain on a granularity level's labels -> finetune on the target -> evaluate.

`train(config, report)` is the contract (docs/ARCHITECTURE.md, trainables): a
plain function of the trial config dict that calls `report(metrics, step)`
once per epoch and returns the final metrics. It runs without Ray.

Stages:
  1. pretrain: a fresh backbone trained on `hierarchy.labels(level, leaf)` of
     the training subset; stored under `pretrain_key` in `pretrain_store`
     (a second trial with the key loads it: `pretrain_reused=1.0`).
  2. finetune: a fresh head on the target labels; `linear` trains the head
     on frozen, standardised features (the cleanest measure of what
     pretraining learned), `full` trains everything.
  3. evaluate: top-1 target error on the test split and its groups.
The `scratch` arm (`hierarchy_path` None) trains the full model on the target
labels only, with the `pretrain` settings (the budget a pretraining gets; with
`scratch_budget: matched` the pretraining's plus the finetuning's), and
reports its epochs as `finetune/*`.
A stage's budget is `epochs` or `steps` (trainables/budget.py); `selection:
best_val` keeps the weights of its lowest validation error. Validation is the
dataset's own split (`Dataset.val`) when it has one, else carved from train.

Example:
    >>> result = train({"dataset": "synthetic", "target": "superclass",
    ...                 "hierarchy_path": None, "seed": 0,
    ...                 "pretrain": {"epochs": 2}}, None)  # doctest: +SKIP

Longer than 400 lines because the composition's steps (config defaults, label functions, data
split, scratch and pretrain/finetune arms, the shared-pretraining claim, evaluation) share the
private `_Run` state; the stage loop is in trainables/stages.py.
"""

from __future__ import annotations

import base64
import copy
import json
from contextlib import ExitStack
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import Timeout as LockTimeout
from torch import nn

from contracts import (
    CHECKPOINT_EVERY_S,
    FEATURE_NORMS,
    FINETUNE_DEFAULTS,
    FINETUNE_MODES,
    SCRATCH_BUDGETS,
    SELECTIONS,
    STAGE_DEFAULTS,
    TEST_CORRECT,
)
from hierarchies import Hierarchy, HierarchyError, alignment_metrics, examples_per_class
from trainables.backbones import Classifier, create_backbone
from trainables.checkpoints import PretrainStore, load_checkpoint
from trainables.data import Dataset, create_dataset, subset_indices, train_val_indices
from trainables.distributed import Shard, barrier, broadcast_flag, current_shard, wrap
from trainables.engine import (
    Batches,
    Runtime,
    error_rate,
    predict,
    resolve_runtime,
    stage_seed,
)
from trainables.errors import TrialError
from trainables.stages import Report, eval_batch_size, linear_probe, run_stage

# The stage defaults and the checkpoint interval are the trial config's
# contract with sweeps: contracts.py holds them (the spec reads them there
# without importing torch); this module fills absent keys with them.


# Per-example test outcomes ride along as one MLflow tag (8,000 characters at
# most), so analysis can define hard examples from other arms' mistakes.
MAX_CORRECT_EXAMPLES = 47_000  # base64 of 47,000 bits + the count prefix: 7,840 characters


def encode_correct(correct: np.ndarray) -> str | None:
    """Per-test-example correctness as base64 of `np.packbits` (bit i = example i, big-endian).

    None when the test split is too large for one tag (MAX_CORRECT_EXAMPLES).
    """
    if len(correct) > MAX_CORRECT_EXAMPLES:
        return None
    packed = np.packbits(np.asarray(correct, dtype=bool))
    return f"{len(correct)}:" + base64.b64encode(packed.tobytes()).decode("ascii")


# ---- config -------------------------------------------------------------------
def resolve_config(config: dict) -> dict:
    """The config with defaults filled in; raises TrialError naming a bad value."""
    cfg = copy.deepcopy(dict(config))
    cfg.setdefault("dataset", "synthetic")
    cfg.setdefault("dataset_options", {})
    cfg.setdefault("hierarchy_path", None)
    cfg.setdefault("data_fraction", 1.0)
    cfg.setdefault("backbone", "twolayer")
    cfg.setdefault("backbone_options", {})
    cfg.setdefault("seed", 0)
    cfg.setdefault("device", "auto")
    cfg.setdefault("val_fraction", 0.1)
    cfg.setdefault("compile", False)
    every = cfg.setdefault("checkpoint_every_s", CHECKPOINT_EVERY_S)
    if isinstance(every, bool) or not isinstance(every, (int, float)) or not every >= 0:
        raise TrialError(f"checkpoint_every_s={every!r} must be a number >= 0")
    cfg["checkpoint_every_s"] = float(every)
    cfg["pretrain"] = {**STAGE_DEFAULTS, **(cfg.get("pretrain") or {})}
    cfg["finetune"] = {**FINETUNE_DEFAULTS, **(cfg.get("finetune") or {})}
    if cfg["finetune"]["mode"] not in FINETUNE_MODES:
        raise TrialError(
            f"finetune.mode {cfg['finetune']['mode']!r} is not one of {' | '.join(FINETUNE_MODES)}"
        )
    if cfg["finetune"]["feature_norm"] not in FEATURE_NORMS:
        raise TrialError(
            f"finetune.feature_norm {cfg['finetune']['feature_norm']!r} is not one of "
            f"{' | '.join(FEATURE_NORMS)}"
        )
    for stage in ("pretrain", "finetune"):
        for key in ("epochs", "batch_size"):
            if int(cfg[stage][key]) < (0 if key == "epochs" else 1):
                raise TrialError(f"{stage}.{key}={cfg[stage][key]} is out of range")
        steps = cfg[stage].get("steps")
        if steps is not None and (
            isinstance(steps, bool) or not isinstance(steps, int) or steps < 1
        ):
            raise TrialError(f"{stage}.steps={steps!r} must be a whole number >= 1 (or absent)")
        if cfg[stage].get("selection", "last") not in SELECTIONS:
            raise TrialError(
                f"{stage}.selection {cfg[stage]['selection']!r} is not one of "
                f"{' | '.join(SELECTIONS)}"
            )
    if cfg.setdefault("scratch_budget", "pretrain") not in SCRATCH_BUDGETS:
        raise TrialError(
            f"scratch_budget {cfg['scratch_budget']!r} is not one of {' | '.join(SCRATCH_BUDGETS)}"
        )
    if cfg["hierarchy_path"] is not None and cfg.get("level") is None:
        raise TrialError("config has a hierarchy_path but no level")
    return cfg


@lru_cache(maxsize=4)
def _cached_dataset(name: str, options_json: str) -> Dataset:
    return create_dataset(name, **json.loads(options_json))


def load_dataset(name: str, options: dict) -> Dataset:
    """create_dataset, memoised per process: a sweep's trials share one generated dataset."""
    return _cached_dataset(name, json.dumps(options, sort_keys=True))


# ---- the trial ----------------------------------------------------------------
def train(config: dict, report: Report | None = None) -> dict[str, float | str]:
    """Run one trial (see the module docstring); returns the final metrics.

    Raises:
        TrialError: bad level/target/config, non-finite loss.
        FileNotFoundError: the dataset's root does not exist (before training).
    """
    cfg = resolve_config(config)
    threads = cfg.get("num_threads")
    on_cpu = cfg["device"] == "cpu" or (cfg["device"] == "auto" and not torch.cuda.is_available())
    if not threads and on_cpu and cfg["backbone"] == "twolayer":
        # The twolayer trial is a few tiny matmuls per step: extra threads only
        # add synchronisation (measured 7x slower with 2 threads on a busy
        # 2-core machine, bench/bench_trial.py).
        threads = 1
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return _train(cfg, report)
    finally:
        torch.set_num_threads(previous)


def _train(cfg: dict, report: Report | None) -> dict[str, float | str]:
    """The trial proper, on a resolved config: labels, data, model, stages, evaluation.

    Under a process group of several ranks (trainables.distributed) every rank
    runs this; rank 0 alone reports, and every rank returns the same metrics.
    """
    shard = current_shard()
    if not shard.main:
        report = None
    dataset = load_dataset(cfg["dataset"], cfg["dataset_options"])
    labels = _label_functions(cfg, dataset)
    data = _data_split(cfg, dataset)
    runtime = resolve_runtime(cfg["device"], cfg.get("num_workers"))
    if runtime.cuda and shard.parallel:
        torch.cuda.set_device(runtime.device)  # NCCL collectives run on the current device
    model, compiled = _build_model(cfg, dataset, labels.num_pre, runtime, shard)
    run = _Run(cfg, dataset, labels, data, runtime, report, shard)
    if labels.scratch:
        result, test_pred = _train_scratch(run, model, compiled)
    else:
        result, test_pred = _pretrain_and_finetune(run, model, compiled)
    result.update(_evaluate(run, test_pred))
    result.update(_describe_labels(run))
    return result


@dataclass(frozen=True)
class _Labels:
    """The pretraining and target label functions of a trial (leaf id -> class id)."""

    scratch: bool
    target_level: int
    pre_hierarchy: Hierarchy
    pre_level: int
    target_all: np.ndarray
    pre_all: np.ndarray

    @property
    def num_pre(self) -> int:
        return int(self.pre_all.max()) + 1

    @property
    def num_target(self) -> int:
        return int(self.target_all.max()) + 1


def _label_functions(cfg: dict, dataset: Dataset) -> _Labels:
    """The target level of the manual hierarchy and the pretraining level (scratch: the target)."""
    manual = dataset.hierarchy
    try:
        target_level = manual.level_index(cfg.get("target", dataset.default_target))
    except HierarchyError as err:
        raise TrialError(f"bad target: {err}") from err
    scratch = cfg["hierarchy_path"] is None
    if scratch:
        pre_hierarchy, pre_level = manual, target_level
    else:
        try:
            pre_hierarchy = Hierarchy.load(cfg["hierarchy_path"])
            pre_level = pre_hierarchy.level_index(cfg["level"])
        except HierarchyError as err:
            raise TrialError(f"bad pretraining level: {err}") from err
        if pre_hierarchy.leaf_names != manual.leaf_names:
            raise TrialError(
                f"hierarchy {cfg['hierarchy_path']!r} is not over the leaves of dataset "
                f"{dataset.name!r} ({pre_hierarchy.num_leaves} leaves vs {manual.num_leaves}, "
                "or other names / order): derive it from the dataset's manual hierarchy"
            )
    return _Labels(
        scratch,
        target_level,
        pre_hierarchy,
        pre_level,
        manual.mapping(target_level),
        pre_hierarchy.mapping(pre_level),
    )


@dataclass(frozen=True)
class _Data:
    """Example indices: training subset and validation (both of the train split), test."""

    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray


def _data_split(cfg: dict, dataset: Dataset) -> _Data:
    """Validation: the dataset's own split, else carved from the train split first; then the
    nested subset of the rest (`val_idx` indexes `dataset.val` when it has one)."""
    seed = int(cfg["seed"])
    leaf = dataset.train_leaf
    if dataset.val is not None:
        pool, val_idx = np.arange(len(leaf)), np.arange(len(dataset.val))
    else:
        pool, val_idx = train_val_indices(leaf, float(cfg["val_fraction"]), seed)
    train_idx = pool[subset_indices(leaf[pool], float(cfg["data_fraction"]), seed)]
    return _Data(train_idx, val_idx, np.arange(len(dataset.test)))


def _build_model(
    cfg: dict, dataset: Dataset, num_classes: int, runtime: Runtime, shard: Shard
) -> tuple[Classifier, nn.Module]:
    """The backbone with a `num_classes` head, and the module to train (compiled, under DDP)."""
    c, h, _ = dataset.input_shape
    backbone_options = {
        "in_chans": c,
        "input_size": h,
        "patch_size": dataset.patch_size,
        **cfg["backbone_options"],
    }
    # Seed before building: the body's init is the same in every arm for seed s
    # (the head is built after it, whatever its size).
    runtime.seed(int(cfg["seed"]))
    model = create_backbone(cfg["backbone"], num_classes, **backbone_options).to(runtime.device)
    if runtime.cuda:
        model = model.to(memory_format=torch.channels_last)
    return model, _trained_module(model, cfg, runtime, shard)


def _trained_module(model: Classifier, cfg: dict, runtime: Runtime, shard: Shard) -> nn.Module:
    """What the training loop calls: `model`, compiled when asked, under DDP when data-parallel."""
    compiled = torch.compile(model) if cfg["compile"] else model
    return wrap(compiled, runtime.device, shard)


@dataclass(frozen=True)
class _Run:
    """What every stage of one trial reads."""

    cfg: dict
    dataset: Dataset
    labels: _Labels
    data: _Data
    runtime: Runtime
    report: Report | None
    shard: Shard

    @property
    def seed(self) -> int:
        return int(self.cfg["seed"])

    @property
    def ckpt_dir(self) -> Path | None:
        return Path(self.cfg["checkpoint_dir"]) if self.cfg.get("checkpoint_dir") else None

    def checkpoint(self, name: str) -> Path | None:
        return self.ckpt_dir / name if self.ckpt_dir else None

    def stage_args(self, checkpoint: str) -> dict[str, Any]:
        """Keyword arguments every stage takes: seed, its checkpoint file, the interval, report."""
        return {
            "seed": self.seed,
            "ckpt_path": self.checkpoint(checkpoint),
            "checkpoint_every_s": self.cfg["checkpoint_every_s"],
            "report": self.report,
            "shard": self.shard,
        }

    def batches(self, split: str, which: str, mapping: np.ndarray) -> Batches:
        """Batches of `split` ("train" | "test") over the `which` indices, labelled by `mapping`.

        The validation indices (`which="val"`) are of the dataset's own validation
        split when it has one.
        """
        part = self.dataset.train if split == "train" else self.dataset.test
        if which == "val" and self.dataset.val is not None:
            part = self.dataset.val
        idx = getattr(self.data, f"{which}_idx")
        return Batches(self.dataset, part, idx, mapping[part.leaf[idx]], self.runtime)


def scratch_settings(cfg: dict) -> dict:
    """The scratch arm's stage: the pretrain settings, for the pretraining's budget or (`matched`)
    the pretraining's plus the finetuning's (steps plus steps, or epochs plus epochs)."""
    settings = dict(cfg["pretrain"])
    if cfg.get("scratch_budget", "pretrain") == "matched":
        pre, fin = cfg["pretrain"], cfg["finetune"]
        if pre.get("steps") is not None and fin.get("steps") is not None:
            settings["steps"] = int(pre["steps"]) + int(fin["steps"])
        elif pre.get("steps") is None and fin.get("steps") is None:
            settings["epochs"] = int(pre["epochs"]) + int(fin["epochs"])
        else:
            raise TrialError(
                "scratch_budget matched needs pretrain and finetune budgets in one unit "
                "(both steps or both epochs)"
            )
    return settings


def _train_scratch(
    run: _Run, model: Classifier, compiled: nn.Module
) -> tuple[dict[str, float], torch.Tensor]:
    """The scratch arm: the full model on the target labels with the pretrain settings."""
    labels, cfg = run.labels, run.cfg
    result: dict[str, float] = {"pretrain_reused": 0.0, "time/pretrain_s": 0.0}
    stage = run_stage(
        "scratch",
        compiled,
        model.parameters(),
        run.batches("train", "train", labels.pre_all),
        run.batches("train", "val", labels.pre_all),
        scratch_settings(cfg),
        run.runtime,
        **run.stage_args("scratch.pt"),
        metric_prefix="finetune",
    )
    result.update(_finetune_metrics(stage))
    test_pred = predict(
        compiled,
        run.batches("test", "test", labels.target_all),
        run.runtime,
        eval_batch_size(int(cfg["pretrain"]["batch_size"])),
    )
    return result, test_pred


def _pretrain_and_finetune(
    run: _Run, model: Classifier, compiled: nn.Module
) -> tuple[dict[str, float], torch.Tensor]:
    """Pretrain on the level's labels (or load from the store), then finetune on the target."""
    labels, cfg, runtime = run.labels, run.cfg, run.runtime
    result: dict[str, float] = {"pretrain_reused": 0.0, "time/pretrain_s": 0.0}
    pre_train = run.batches("train", "train", labels.pre_all)
    pre_val = run.batches("train", "val", labels.pre_all)
    result.update(
        _pretrain(
            cfg, model, compiled, pre_train, pre_val, runtime, run.ckpt_dir, run.report, run.shard
        )
    )
    fin = cfg["finetune"]
    target_train = run.batches("train", "train", labels.target_all)
    target_val = run.batches("train", "val", labels.target_all)
    target_test = run.batches("test", "test", labels.target_all)
    if fin["mode"] == "linear":
        stage, predictor = linear_probe(
            model,
            labels.num_target,
            {"train": target_train, "val": target_val, "test": target_test},
            fin,
            runtime,
            **run.stage_args("finetune.pt"),
        )
        test_pred = predictor("test")
    else:
        runtime.seed(stage_seed(run.seed, "finetune/head", 0))
        model.reset_head(labels.num_target)
        compiled = _trained_module(model, cfg, runtime, run.shard)
        stage = run_stage(
            "finetune",
            compiled,
            model.parameters(),
            target_train,
            target_val,
            fin,
            runtime,
            **run.stage_args("finetune.pt"),
            metric_prefix="finetune",
        )
        test_pred = predict(compiled, target_test, runtime, eval_batch_size(int(fin["batch_size"])))
    result.update(_finetune_metrics(stage))
    return result, test_pred


def _finetune_metrics(stage: dict[str, float]) -> dict[str, float]:
    """A finetuning (or scratch) stage's metrics, its time, and the validation error."""
    time_s = stage.pop("time_s")
    return {
        "time/finetune_s": time_s,
        **stage,
        "val_error": stage.get("finetune/val_error", float("nan")),
    }


def _evaluate(run: _Run, test_pred: torch.Tensor) -> dict[str, float | str]:
    """Target error on the test split and its groups (easy / hard), and which examples it got right."""
    test = run.dataset.test
    test_labels = torch.as_tensor(run.labels.target_all[test.leaf])
    result: dict[str, float | str] = {"target_error": error_rate(test_pred, test_labels)}
    for group, mask in test.groups.items():
        result[f"target_error_{group}"] = error_rate(test_pred, test_labels, mask)
    correct = encode_correct(test_pred.cpu().numpy() == test_labels.numpy())
    if correct is not None:
        result[TEST_CORRECT] = correct
    return result


def _describe_labels(run: _Run) -> dict[str, float]:
    """Alignment of the pretraining labels with the target, and the class counts."""
    labels = run.labels
    leaf = run.dataset.train_leaf[run.data.train_idx]
    pre_labels = labels.pre_all[leaf]
    align = alignment_metrics(pre_labels, labels.target_all[leaf])
    per_class = examples_per_class(pre_labels)
    return {
        **{f"align/{k}": v for k, v in align.items()},
        "num_train": float(len(run.data.train_idx)),
        "num_classes": float(labels.pre_hierarchy.num_classes(labels.pre_level)),
        "examples_per_class": per_class["mean"],
        "examples_per_class_min": per_class["min"],
    }


# While rank 0 waits for another trial's pretraining of the same key (which may
# take days), the other ranks meet it in a collective this often: a collective
# waiting longer would hit the process group's timeout (30 min under Ray Train).
CLAIM_POLL_S = 10.0


def _claim(store: PretrainStore, key: str, shard: Shard, held: ExitStack) -> dict | None:
    """Take the store's lock on `key` (rank 0, kept by `held`); the stored entry on rank 0, or None."""
    if not shard.parallel:
        return held.enter_context(store.claim(key))
    while True:
        entry, got = None, False
        if shard.main:
            try:
                entry, got = held.enter_context(store.claim(key, timeout_s=CLAIM_POLL_S)), True
            except LockTimeout:
                pass
        if broadcast_flag(got, shard):
            return entry


def _pretrain(
    cfg: dict,
    model: Classifier,
    compiled: nn.Module,
    train_b: Batches,
    val_b: Batches,
    runtime: Runtime,
    ckpt_dir: Path | None,
    report: Report | None,
    shard: Shard,
) -> dict[str, float]:
    """Pretrain `model` in place, or load it from the store; returns stage metrics.

    Data-parallel: rank 0 holds the store's lock and tells the others whether
    the key is stored; they then load it too, or all train and rank 0 stores it.
    """

    def run() -> dict[str, float]:
        stage = run_stage(
            "pretrain",
            compiled,
            model.parameters(),
            train_b,
            val_b,
            cfg["pretrain"],
            runtime,
            seed=int(cfg["seed"]),
            ckpt_path=ckpt_dir / "pretrain.pt" if ckpt_dir else None,
            checkpoint_every_s=cfg["checkpoint_every_s"],
            report=report,
            metric_prefix="pretrain",
            shard=shard,
        )
        return {"time/pretrain_s": stage.pop("time_s"), **stage}

    store_key = cfg.get("pretrain_key")
    if not cfg.get("pretrain_store") or not store_key:
        return run()
    store = PretrainStore(cfg["pretrain_store"])
    with ExitStack() as held:
        entry = _claim(store, store_key, shard, held)
        if broadcast_flag(entry is not None, shard):
            if entry is None:  # another rank: rank 0 found the file, which it holds locked
                entry = load_checkpoint(store.path(store_key))
                if entry is None:
                    raise TrialError(f"pretrain store entry {store_key} unreadable on this rank")
            # The body only: one label function from two hierarchy kinds may
            # number its classes differently, and finetuning replaces the head.
            model.body.load_state_dict(entry["body"])
            return {**entry["metrics"], "pretrain_reused": 1.0, "time/pretrain_s": 0.0}
        metrics = run()
        if shard.main:
            store.put(store_key, {"body": model.body.state_dict(), "metrics": metrics})
        barrier(shard)  # the lock is released only after every rank is past the store
        return metrics
