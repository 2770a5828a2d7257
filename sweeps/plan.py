"""Expand a validated spec into fully resolved trials with their keys.

One trial = one cell (hierarchy arm, level, data fraction, backbone) x one
replicate seed. Its config is the plain dict of docs/ARCHITECTURE.md that
`trainables.train` takes. Two keys identify it:

- `trial_key`: sha256 of the canonical JSON of the config without its paths,
  keys and device, plus the content hash of its hierarchy. Same experiment,
  same key: a rerun finds it done, an extended spec keeps the old keys.
- `pretrain_key`: a hash of what pretraining depends on (label-function hash,
  dataset + options, data fraction, backbone + options, seed, pretrain
  settings). Arms whose level induces the same partition of the leaves (every
  arm's leaf level, say) share one pretraining.

Derived hierarchies (random, cluster, perturbed) are built in the driver from
the dataset's manual hierarchy and saved under
`<storage>/hierarchies/<content_hash>.json`. Their seed is the replicate seed
by default (`hierarchy_seed: replicate`), so replicate s of a random arm uses
its own random tree and the error bars cover the draw of the tree as well as
data and init; an integer `hierarchy_seed` fixes one tree for all replicates.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from contracts import (
    HIERARCHY_HASH,
    HIERARCHY_P,
    LABEL_FN,
    PRETRAIN_KEY,
    ROLE_TRIAL,
    SCRATCH,
    SCRATCH_LEVEL,
    STAGES,
    run_name,
)
from sweeps.spec import ArmSpec, Spec, SpecError, arm_labels, canonical_hash

# Config entries that locate things rather than define the experiment.
_NOT_IN_KEY = (
    "hierarchy_path",
    "checkpoint_dir",
    "pretrain_store",
    "trial_key",
    "pretrain_key",
    "device",
    "checkpoint_every_s",
)

HierarchyBuilder = Callable[..., Any]


@dataclass(frozen=True)
class Trial:
    """A fully resolved trial: the trainable's config plus what the driver logs about it."""

    config: dict[str, Any]
    arm_kind: str
    num_classes: int
    label_fn: str
    hierarchy_hash: str | None = None
    p: float | None = None

    @property
    def trial_key(self) -> str:
        return self.config["trial_key"]

    @property
    def pretrain_key(self) -> str:
        return self.config["pretrain_key"]

    @property
    def is_scratch(self) -> bool:
        return self.config["hierarchy"] == "scratch"

    @property
    def cell(self) -> tuple[str, str, float, str]:
        """(hierarchy arm, level name, data fraction, backbone): the replicates' cell."""
        c = self.config
        return (c["hierarchy"], c["level_name"] or "scratch", c["data_fraction"], c["backbone"])

    @property
    def run_name(self) -> str:
        """The trial's MLflow run name (contracts.run_name)."""
        c = self.config
        return run_name(
            c["hierarchy"], c["level_name"], c["data_fraction"], c["backbone"], c["seed"]
        )

    def meta(self, role: str = ROLE_TRIAL, extra_tags: Mapping[str, str] | None = None) -> dict:
        """What the driver needs to log the trial's run, carried with it (and into its result file)."""
        tags = {PRETRAIN_KEY: self.pretrain_key, LABEL_FN: self.label_fn, **(extra_tags or {})}
        if self.hierarchy_hash:
            tags[HIERARCHY_HASH] = self.hierarchy_hash
        return {"role": role, "run_name": self.run_name, "params": self.params(), "tags": tags}

    def params(self) -> dict[str, str]:
        """MLflow params (flat, stable names) known before the trial runs."""
        c = self.config
        params: dict[str, Any] = {
            "dataset": c["dataset"],
            "dataset_options": json.dumps(c["dataset_options"], sort_keys=True),
            "target": c["target"],
            "hierarchy": c["hierarchy"],
            "hierarchy_kind": self.arm_kind,
            "level": SCRATCH_LEVEL if c["level"] is None else c["level"],
            "level_name": c["level_name"] or SCRATCH,
            "num_classes": self.num_classes,
            "data_fraction": c["data_fraction"],
            "backbone": c["backbone"],
            "backbone_options": json.dumps(c["backbone_options"], sort_keys=True),
            "seed": c["seed"],
        }
        if self.p is not None:
            params[HIERARCHY_P] = self.p
        for stage in STAGES:
            for key, value in c[stage].items():
                params[f"{stage}.{key}"] = value
        return {k: str(v)[:6000] for k, v in params.items()}


@dataclass
class Plan:
    """Every trial of a spec, the hierarchies they use, and notes on what was skipped."""

    spec: Spec
    trials: list[Trial]
    hierarchies: dict[str, Any]  # content hash -> Hierarchy
    hierarchy_paths: dict[str, Path]
    target: str
    storage: Path
    notes: list[str] = field(default_factory=list)

    def by_key(self) -> dict[str, Trial]:
        return {t.trial_key: t for t in self.trials}

    def pretrain_groups(self) -> dict[str, list[Trial]]:
        """pretrain_key -> its trials (scratch trials each form their own group)."""
        groups: dict[str, list[Trial]] = {}
        for trial in self.trials:
            groups.setdefault(trial.pretrain_key, []).append(trial)
        return groups

    def num_pretrainings(self) -> int:
        """Distinct pretrainings the plan needs (scratch trials need none)."""
        return len({t.pretrain_key for t in self.trials if not t.is_scratch})

    def cells(self) -> list[tuple[str, str, float, str]]:
        return list(dict.fromkeys(t.cell for t in self.trials))

    def summary(self) -> dict[str, Any]:
        arms = Counter(t.config["hierarchy"] for t in self.trials)
        return {
            "trials": len(self.trials),
            "pretrainings": self.num_pretrainings(),
            "cells": len(self.cells()),
            "seeds": len(self.spec.seed_list()),
            "trials_per_arm": dict(arms),
        }


def trial_key_of(config: Mapping[str, Any], hierarchy_hash: str | None, role: str = "trial") -> str:
    """sha256 of the canonical config without paths/keys/device, plus the hierarchy's hash.

    `role="search"` keys an Optuna trial apart from the crossed trial with the same
    settings, so each keeps its own MLflow run.
    """
    payload = {k: v for k, v in config.items() if k not in _NOT_IN_KEY}
    payload["hierarchy_hash"] = hierarchy_hash
    if role != "trial":
        payload["role"] = role
    return canonical_hash(payload, length=64)


def pretrain_key_of(config: Mapping[str, Any], label_fn: str) -> str:
    """Hash of what pretraining depends on; equal keys share one pretrained backbone."""
    payload = {
        "label_fn": label_fn,
        "dataset": config["dataset"],
        "dataset_options": config["dataset_options"],
        "data_fraction": config["data_fraction"],
        "backbone": config["backbone"],
        "backbone_options": config["backbone_options"],
        "seed": config["seed"],
        "pretrain": config["pretrain"] if label_fn != "scratch" else None,
    }
    return canonical_hash(payload, length=32)


def load_dataset(spec: Spec) -> Any:
    """The spec's dataset (its manual hierarchy and class embeddings, for the plan).

    A registry name goes to `trainables.create_dataset(name, **options)`; a
    `module:function` name (for a custom trainable) calls that function with the options.
    """
    name, options = spec.dataset.name, spec.dataset.options
    try:
        if ":" in name:
            import importlib

            module_name, _, attr = name.partition(":")
            return getattr(importlib.import_module(module_name), attr)(**options)
        from trainables import create_dataset

        return create_dataset(name, **options)
    except FileNotFoundError as err:  # a missing data root (or a file under it)
        where = next(
            (f"dataset.options.{k}" for k in ("root", "path", "data_root") if k in options),
            "dataset.options",
        )
        raise SpecError([f"{where}: {err}"]) from None
    except (RuntimeError, TypeError, ImportError, AttributeError, ValueError, OSError) as err:
        raise SpecError([f"dataset: {name!r} with options {options}: {err}"]) from None


def check_backbones(spec: Spec) -> None:
    """Unknown backbone names are a spec error, found before anything runs.

    Only for the project's own trainable (a custom trainable has its own names).
    """
    from sweeps.spec import DEFAULT_TRAINABLE

    if spec.trainable != DEFAULT_TRAINABLE:
        return
    from trainables import list_backbones

    known = set(list_backbones())
    problems = []
    for i, backbone in enumerate(spec.factors.backbones):
        if backbone.name in known:
            continue
        import timm

        if not timm.is_model(backbone.name):
            problems.append(
                f"factors.backbones[{i}].name: unknown backbone {backbone.name!r}; known: "
                f"{', '.join(sorted(known))} or any timm model name"
            )
    if problems:
        raise SpecError(problems)


def _default_builder() -> HierarchyBuilder:
    from hierarchies.registry import build_hierarchy

    return build_hierarchy


def _level_names(spec: Spec, manual: Any, target_index: int) -> list[str]:
    """Level names selected by `factors.levels`, resolved on the manual hierarchy."""
    levels = spec.factors.levels
    names = list(manual.level_names)
    if levels == "all":
        return names
    if levels == "finer":
        return names[target_index + 1 :]
    if levels == "target_and_finer":
        return names[target_index:]
    problems, chosen = [], []
    for i, item in enumerate(levels):
        try:
            name = names[manual.level_index(item)]
        except ValueError as err:
            problems.append(f"factors.levels[{i}]: {err}")
            continue
        if name in chosen:
            problems.append(
                f"factors.levels[{i}]: {item!r} repeats level {name!r} "
                f"(listed as {levels[chosen.index(name)]!r} before)"
            )
        chosen.append(name)
    if problems:
        raise SpecError(problems)
    return chosen


def build_plan(
    spec: Spec,
    *,
    dataset: Any | None = None,
    builder: HierarchyBuilder | None = None,
    tuned: Mapping[Any, Mapping[str, Any]] | None = None,
    write: bool = True,
    storage: Path | None = None,
) -> Plan:
    """Expand `spec` into trials.

    Args:
        dataset: the spec's dataset (built with `load_dataset` when None).
        builder: `build_hierarchy(kind, **kwargs)` (hierarchies' registry when None).
        tuned: values chosen by the search: `{"*": {...}}` for every cell or
            `{cell: {...}}` per cell, keys like `pretrain.lr`.
        write: save hierarchies under `<storage>/hierarchies/` (False: plan only).
        storage: the storage directory (the spec's resolved one when None).
    """
    check_backbones(spec)
    dataset = dataset if dataset is not None else load_dataset(spec)
    manual = dataset.hierarchy
    storage = storage or spec.resolved_storage_path()
    try:
        target_index = manual.level_index(spec.target)
    except ValueError as err:
        raise SpecError([f"target: {err}"]) from None
    target = manual.level_names[target_index]
    wanted = _level_names(spec, manual, target_index)
    build = builder

    hierarchies: dict[str, Any] = {}
    paths: dict[str, Path] = {}
    cache: dict[tuple, Any] = {}
    embeddings_cache: dict[str | None, np.ndarray] = {}
    notes: list[str] = []

    def register(h: Any) -> tuple[str, Path]:
        digest = h.content_hash()
        if digest not in hierarchies:
            hierarchies[digest] = h
            paths[digest] = storage / "hierarchies" / f"{digest}.json"
            if write and not paths[digest].exists():
                h.save(paths[digest])
        return digest, paths[digest]

    def embeddings(arm: ArmSpec) -> np.ndarray:
        if arm.embeddings not in embeddings_cache:
            if arm.embeddings:
                embeddings_cache[arm.embeddings] = np.load(arm.embeddings)
            else:
                embeddings_cache[None] = np.asarray(dataset.class_embeddings())
        return embeddings_cache[arm.embeddings]

    def hierarchy_for(arm: ArmSpec, p: float | None, seed: int) -> Any:
        nonlocal build
        hseed = seed if spec.hierarchy_seed == "replicate" else int(spec.hierarchy_seed)
        if arm.kind == "manual":
            ident: tuple = ("manual", arm.path, arm.format)
        else:
            ident = (arm.kind, p, arm.embeddings, hseed)
        if ident in cache:
            return cache[ident]
        if arm.kind == "manual" and arm.path is None:
            h = manual
        else:
            build = build or _default_builder()
            if arm.kind == "manual":
                h = build("manual", path=arm.path, format=arm.format)
            elif arm.kind == "random":
                h = build("random", reference=manual, seed=hseed)
            elif arm.kind in ("cluster_within", "cluster_global"):
                h = build(
                    "cluster",
                    reference=manual,
                    embeddings=embeddings(arm),
                    mode=arm.kind.removeprefix("cluster_"),
                    target_level=target_index,
                    seed=hseed,
                )
            else:
                h = build("perturbed", reference=manual, p=p, seed=hseed)
        cache[ident] = h
        return h

    base = {
        "dataset": spec.dataset.name,
        "dataset_options": dict(spec.dataset.options),
        "target": target,
    }
    trials: list[Trial] = []
    seeds = spec.seed_list()
    for arm_index, arm in enumerate(spec.factors.hierarchies):
        ps: list[float | None] = list(arm.p) if arm.kind == "perturbed" else [None]
        for label, p in zip(arm_labels(arm), ps, strict=True):
            for backbone in spec.factors.backbones:
                for fraction in spec.factors.data_fractions:
                    for seed in seeds:
                        if arm.kind == "scratch":
                            levels: list[tuple[int | None, str | None]] = [(None, None)]
                            h = None
                        else:
                            h = _arm_hierarchy(hierarchy_for, arm, arm_index, p, seed)
                            levels = [
                                (i, name) for i, name in enumerate(h.level_names) if name in wanted
                            ]
                            missing = [n for n in wanted if n not in h.level_names]
                            if missing and seed == seeds[0]:
                                notes.append(
                                    f"arm {label!r} has no level(s) {missing}; those cells are skipped"
                                )
                        for level, level_name in levels:
                            trials.append(
                                _make_trial(
                                    spec,
                                    base,
                                    label,
                                    arm.kind,
                                    p,
                                    h,
                                    level,
                                    level_name,
                                    fraction,
                                    backbone,
                                    seed,
                                    storage,
                                    tuned,
                                    register,
                                    manual,
                                    target_index,
                                )
                            )
    notes = list(dict.fromkeys(notes))
    keys = Counter(t.trial_key for t in trials)
    dup = [k for k, n in keys.items() if n > 1]
    if dup:
        raise SpecError(
            [f"factors: {len(dup)} trials repeat (same config twice); remove the repeat"]
        )
    return Plan(spec, trials, hierarchies, paths, target, storage, notes)


def _arm_hierarchy(
    hierarchy_for: Callable[..., Any], arm: ArmSpec, index: int, p: float | None, seed: int
) -> Any:
    """Build an arm's hierarchy; a bad file or option is a spec error naming the arm's field."""
    from hierarchies import HierarchyError

    field = "path" if arm.path else "embeddings" if arm.embeddings else "kind"
    try:
        return hierarchy_for(arm, p, seed)
    except (HierarchyError, FileNotFoundError, OSError, ValueError) as err:
        raise SpecError([f"factors.hierarchies[{index}].{field}: {err}"]) from None


def _make_trial(
    spec: Spec,
    base: dict[str, Any],
    label: str,
    kind: str,
    p: float | None,
    h: Any,
    level: int | None,
    level_name: str | None,
    fraction: float,
    backbone: Any,
    seed: int,
    storage: Path,
    tuned: Mapping[Any, Mapping[str, Any]] | None,
    register: Callable[[Any], tuple[str, Path]],
    manual: Any,
    target_index: int,
) -> Trial:
    if h is not None:
        digest, path = register(h)
        label_fn = h.label_function_hash(level)
        num_classes = h.num_classes(level)
    else:
        digest, path, label_fn = None, None, "scratch"
        num_classes = manual.num_classes(target_index)
    config: dict[str, Any] = {
        **base,
        "hierarchy": label,
        "hierarchy_path": str(path) if path else None,
        "level": level,
        "level_name": level_name,
        "data_fraction": fraction,
        "backbone": backbone.name,
        "backbone_options": dict(backbone.options),
        "seed": seed,
        "pretrain": spec.pretrain.model_dump(),
        "finetune": spec.finetune.model_dump(),
        "device": spec.device,
        "checkpoint_every_s": spec.checkpoint_every_s,
    }
    cell = (label, level_name or "scratch", fraction, backbone.name)
    values: dict[str, Any] = {}
    for scope in ("*", cell):
        values.update((tuned or {}).get(scope, {}))
    return _finalise(config, values, storage, Trial(config, kind, num_classes, label_fn, digest, p))


def _finalise(
    config: dict[str, Any],
    values: Mapping[str, Any],
    storage: Path,
    trial: Trial,
    role: str = "trial",
) -> Trial:
    config = json.loads(json.dumps(config))
    for dotted, value in values.items():
        stage, _, key = dotted.partition(".")
        config[stage][key] = value
    config["trial_key"] = trial_key_of(config, trial.hierarchy_hash, role)
    config["pretrain_key"] = pretrain_key_of(config, trial.label_fn)
    config["checkpoint_dir"] = str(storage / "trials" / config["trial_key"])
    config["pretrain_store"] = str(storage / "pretrained")
    return Trial(
        config, trial.arm_kind, trial.num_classes, trial.label_fn, trial.hierarchy_hash, trial.p
    )


def with_settings(
    trial: Trial, values: Mapping[str, Any], storage: Path, *, role: str = "trial"
) -> Trial:
    """A copy of `trial` with dotted settings (`pretrain.lr`) replaced and its keys recomputed."""
    return _finalise(trial.config, values, storage, trial, role)
