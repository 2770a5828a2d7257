"""The whole sweep (`Spec`): its sections, top-level fields and derived views."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from contracts import CHECKPOINT_EVERY_S, SCRATCH_BUDGETS
from sequential import Design
from sweeps.spec.canonical import canonical_hash, canonical_json
from sweeps.spec.factors import DatasetSpec, FactorsSpec, LevelItem
from sweeps.spec.sections import (
    AnalysisSpec,
    FinetuneSpec,
    ReplicatesSpec,
    ResourcesSpec,
    SearchSpec,
    StageSpec,
    TrackingSpec,
)
from sweeps.spec.strict import StrictSection, repeated_values

# More trials than this are refused before the plan is expanded (a seed count
# with a few zeros too many would take minutes to expand, then swamp MLflow);
# `--max-trials N` (the spec's `max_trials`) lifts it.
MAX_TRIALS = 20_000
DEFAULT_TRAINABLE = "trainables:train"


class Spec(StrictSection):
    """A whole sweep. See sweeps/quickstart.yaml for an annotated example."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    description: str = ""
    dataset: DatasetSpec
    target: LevelItem
    factors: FactorsSpec = Field(default_factory=FactorsSpec)
    seeds: int | list[int] = 3
    hierarchy_seed: Literal["replicate"] | int = "replicate"
    pretrain: StageSpec = Field(default_factory=StageSpec)
    finetune: FinetuneSpec = Field(default_factory=FinetuneSpec)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Seconds of training between a stage's epoch checkpoints (0: every epoch);
    # where a trial stopped is not part of what it computes, so not of its key.
    checkpoint_every_s: float = Field(default=CHECKPOINT_EVERY_S, ge=0)
    search: SearchSpec | None = None
    replicates: ReplicatesSpec | None = None
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    max_concurrent: int | None = Field(default=None, ge=1)
    num_cpus: int | None = Field(default=None, ge=1)
    retries: int = Field(default=1, ge=0)
    pack: Literal["auto"] | int = "auto"
    storage_path: str | None = None
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    trainable: str = DEFAULT_TRAINABLE
    smoke: dict[str, Any] = Field(default_factory=dict)
    # The most trials the plan may hold; a guard, not part of what the sweep computes.
    max_trials: int = Field(default=MAX_TRIALS, ge=1)
    # `matched`: scratch trains for the pretraining plus the finetuning budget.
    scratch_budget: Literal[SCRATCH_BUDGETS] = "pretrain"
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: int | list[int]) -> int | list[int]:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"seeds={value}: give a count >= 1 or a list of seeds")
        if isinstance(value, list):
            if not value:
                raise ValueError("seeds is an empty list")
            if len(set(value)) != len(value):
                raise ValueError(f"seeds repeat: {repeated_values(value)}")
        return value

    @model_validator(mode="after")
    def _json_options(self) -> Spec:
        """Options end up in trial keys (canonical JSON): finite numbers, plain values only."""
        sections: list[tuple[str, Any]] = [("dataset.options", self.dataset.options)]
        sections += [
            (f"factors.backbones[{i}].options", b.options)
            for i, b in enumerate(self.factors.backbones)
        ]
        sections.append(("factors.dataset_options", self.factors.dataset_options))
        sections.append(("smoke", self.smoke))
        for where, value in sections:
            try:
                canonical_json(json.loads(json.dumps(value, default=str)))
            except ValueError as err:
                raise PydanticCustomError(
                    "not_json",
                    "{where}: values must be finite numbers, strings, lists or mappings ({err})",
                    {"where": where, "err": str(err)},
                ) from None
        return self

    @field_validator("pack")
    @classmethod
    def _pack(cls, value: str | int) -> str | int:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"pack={value}: give 'auto' or a count >= 1")
        return value

    @field_validator("trainable")
    @classmethod
    def _trainable(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", value):
            raise ValueError(f"trainable {value!r} is not 'module:function'")
        return value

    @model_validator(mode="after")
    def _replicates_fit(self) -> Spec:
        r = self.replicates
        if r is not None and r.max is None and r.initial > len(self._listed_seeds()):
            raise PydanticCustomError(
                "spec_rule",
                "replicates.initial={initial} exceeds the {n} seeds; give replicates.max or more seeds",
                {"initial": r.initial, "n": len(self._listed_seeds())},
            )
        if r is not None and "best_level" in r.stop_when and len(self.seed_list()) <= r.initial:
            raise PydanticCustomError(
                "spec_rule",
                "replicates.stop_when has best_level, which races levels over rounds, but "
                "initial={initial} already takes all {n} seeds (fixed seeds only); give "
                "replicates.max above initial",
                {"initial": r.initial, "n": len(self.seed_list())},
            )
        return self

    @model_validator(mode="after")
    def _crossed_factors(self) -> Spec:
        """The new factors agree with the rest of the spec (one rule per line)."""
        crossed = self.factors.dataset_options
        problems = [
            f"factors.dataset_options.{name}: also set in dataset.options; give it in one place"
            for name in crossed
            if name in self.dataset.options
        ]
        for field in ("size", "block"):
            value = getattr(self.analysis, field)
            if value is not None and value not in crossed:
                problems.append(
                    f"analysis.{field}: {value!r} is not a crossed dataset option; accepted: "
                    f"{', '.join(sorted(crossed)) or 'none (factors.dataset_options is empty)'}"
                )
        if self.analysis.size is not None and self.analysis.size == self.analysis.block:
            problems.append(f"analysis.block: {self.analysis.block!r} is the size axis too")
        if self.factors.finetune_modes and "mode" in self.finetune.model_fields_set:
            problems.append(
                "finetune.mode: set together with factors.finetune_modes; give the modes in one "
                "place"
            )
        if self.replicates is not None and self.variant_factors():
            problems.append(
                f"replicates: adaptive replicates compare cells of arm x level x fraction x "
                f"backbone, which would pool the crossed {', '.join(self.variant_factors())}; "
                "use fixed seeds"
            )
        units = (self.pretrain.budget[0], self.finetune.budget[0])
        budgets = {self.scratch_budget} | {
            a.budget for a in self.factors.hierarchies if a.budget is not None
        }
        if "matched" in budgets and units[0] != units[1]:
            problems.append(
                f"scratch_budget: matched adds the pretraining and finetuning budgets, but "
                f"pretrain uses {units[0]} and finetune {units[1]}; give both in one unit"
            )
        if problems:
            raise PydanticCustomError("spec_rule", "; ".join(problems))
        return self

    # ---- derived views ----------------------------------------------------
    def variant_factors(self) -> list[str]:
        """The crossed factors beyond arm x level x fraction x backbone (finetune mode, options)."""
        names = ["finetune_mode"] if self.factors.finetune_modes else []
        return names + [f"dataset.{name}" for name in self.factors.dataset_options]

    def _listed_seeds(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def seed_list(self) -> list[int]:
        """The replicate seeds (a count n means 0..n-1).

        With `replicates`, the `max` seeds a cell may get: the listed seeds,
        then the following integers.
        """
        seeds = self._listed_seeds()
        if self.replicates is None or self.replicates.max is None:
            return seeds
        n = self.replicates.max
        return seeds[:n] + list(range(max(seeds) + 1, max(seeds) + 1 + n - len(seeds)))

    def design(self) -> Design | None:
        """The adaptive-replicates design (`sequential.Design`), or None for fixed seeds."""
        r = self.replicates
        if r is None:
            return None
        return Design.from_dict(
            {**r.model_dump(), "max": len(self.seed_list()), "stop_when": tuple(r.stop_when)}
        )

    def resolved_storage_path(self, cwd: Path | None = None) -> Path:
        """Absolute storage path (default `granularity_runs/<name>` under the working dir)."""
        base = Path(cwd or Path.cwd())
        path = (
            Path(self.storage_path) if self.storage_path else Path("granularity_runs") / self.name
        )
        return (path if path.is_absolute() else base / path).resolve()

    def slots(self) -> int:
        """How many Ray trials run at once: max_concurrent, else what the CPUs/GPUs allow."""
        if self.max_concurrent:
            return self.max_concurrent
        import os

        cpus = self.num_cpus or os.cpu_count() or 1
        return max(1, int(cpus // self.resources.per_trial["cpu"]))

    def spec_hash(self) -> str:
        """Hash of the validated spec (everything, smoke settings and the max_trials guard excluded)."""
        payload = self.model_dump(mode="json", exclude={"smoke", "max_trials"})
        return canonical_hash(payload)
