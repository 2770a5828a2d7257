"""A resolved trial (`Trial`: config, keys, MLflow params and run name) and a spec's `Plan` of them.

Two keys identify a trial:

- `trial_key`: sha256 of the canonical JSON of the config without its paths,
  keys and device, plus the content hash of its hierarchy. Same experiment,
  same key: a rerun finds it done, an extended spec keeps the old keys.
- `pretrain_key`: a hash of what pretraining depends on (label-function hash,
  dataset + options, data fraction, backbone + options, seed, pretrain
  settings, code version). Arms whose level induces the same partition of the leaves (every
  arm's leaf level, say) share one pretraining.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts import (
    CODE_VERSION,
    HIERARCHY_HASH,
    HIERARCHY_P,
    LABEL_FN,
    PRETRAIN_KEY,
    ROLE_TRIAL,
    SCRATCH,
    SCRATCH_LEVEL,
    STAGES,
    TRIAL_PARAMS,
    Cell,
)
from sweeps.spec import Spec, canonical_hash

# Config entries that locate things rather than define the experiment.
_NOT_IN_KEY = (
    "hierarchy_path",
    "checkpoint_dir",
    "pretrain_store",
    "trial_key",
    "pretrain_key",
    "device",
    "checkpoint_every_s",
    # The code that ran a trial is not the experiment: a stale result is rerun
    # under the same key (sweeps/code_version.py).
    "code_version",
)


@dataclass(frozen=True)
class Trial:
    """A fully resolved trial: the trainable's config plus what the driver logs about it."""

    config: dict[str, Any]
    arm_kind: str
    num_classes: int
    label_fn: str
    hierarchy_hash: str | None = None
    p: float | None = None
    # The crossed factors beyond the cell: (("finetune_mode", "full"), ("dataset.fold", 1), ...).
    variant: tuple[tuple[str, Any], ...] = ()

    @property
    def trial_key(self) -> str:
        return self.config["trial_key"]

    @property
    def pretrain_key(self) -> str:
        return self.config["pretrain_key"]

    @property
    def is_scratch(self) -> bool:
        """A scratch arm's trial, whatever its label (`scratch`, `scratch_plain`, ...)."""
        return self.arm_kind == SCRATCH

    @property
    def cell(self) -> Cell:
        """(hierarchy arm, level name, data fraction, backbone): the replicates' cell."""
        return Cell.of(self.config)

    @property
    def full_cell(self) -> tuple[Any, ...]:
        """The cell plus the crossed factors' values (what seeds replicate)."""
        return (*self.cell, *self.variant)

    def factors(self) -> dict[str, Any]:
        """The trial's value of every crossed factor, by name (status tables, reports)."""
        c = self.config
        return {
            "hierarchy": c["hierarchy"],
            "level_name": c["level_name"],
            "data_fraction": c["data_fraction"],
            "backbone": c["backbone"],
            **dict(self.variant),
            "seed": c["seed"],
        }

    @property
    def run_name(self) -> str:
        """The trial's MLflow run name (`Cell.run_name`), then the crossed factors' values."""
        name = self.cell.run_name(self.config["seed"])
        extra = [f"{k.removeprefix('dataset.')}={v}" for k, v in self.variant]
        return "/".join([name, *extra])

    def meta(self, role: str = ROLE_TRIAL, extra_tags: Mapping[str, str] | None = None) -> dict:
        """What the driver needs to log the trial's run, carried with it (and into its result file)."""
        tags = {PRETRAIN_KEY: self.pretrain_key, LABEL_FN: self.label_fn, **(extra_tags or {})}
        if self.config.get("code_version"):
            tags[CODE_VERSION] = self.config["code_version"]
        if self.hierarchy_hash:
            tags[HIERARCHY_HASH] = self.hierarchy_hash
        return {"role": role, "run_name": self.run_name, "params": self.params(), "tags": tags}

    def params(self) -> dict[str, str]:
        """MLflow params (flat, stable names) known before the trial runs."""
        c = self.config
        values: dict[str, Any] = {
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
        params = {name: values[name] for name in TRIAL_PARAMS}  # the contract's list, its order
        if self.p is not None:
            params[HIERARCHY_P] = self.p
        # Crossed dataset options as columns of their own: `dataset.<option>`.
        params.update((k, v) for k, v in self.variant if k.startswith("dataset."))
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

    def cells(self) -> list[Cell]:
        return list(dict.fromkeys(t.cell for t in self.trials))

    def summary(self) -> dict[str, Any]:
        arms = Counter(t.config["hierarchy"] for t in self.trials)
        return {
            "trials": len(self.trials),
            "pretrainings": self.num_pretrainings(),
            "cells": len({t.full_cell for t in self.trials}),
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
        "pretrain": config["pretrain"] if label_fn != SCRATCH else None,
        # Pretrainings made by other code are not reused (sweeps/code_version.py).
        "code_version": config.get("code_version"),
    }
    return canonical_hash(payload, length=32)
