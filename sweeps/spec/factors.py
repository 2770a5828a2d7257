"""What a sweep crosses: the dataset, the hierarchy arms, levels, data fractions, backbones."""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from contracts import ARM_KINDS, FINETUNE_MODES, SCRATCH, SCRATCH_BUDGETS, arm
from sweeps.spec.canonical import canonical_json
from sweeps.spec.strict import StrictSection, repeated_values

LEVEL_KEYWORDS = ("all", "finer", "target_and_finer")
LevelItem = Union[int, str]  # noqa: UP007 (pydantic reads it at runtime)


class DatasetSpec(StrictSection):
    """`create_dataset(name, **options)` of trainables."""

    name: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)


class ArmSpec(StrictSection):
    """One hierarchy arm: where the pretraining labels come from.

    `manual` is the dataset's own taxonomy (or `path` to a hierarchy file);
    `random`, `cluster_within`, `cluster_global` and `perturbed` are derived from
    it; `scratch` is the no-pretraining baseline. `p` (perturbed only) is the
    fraction of leaves reassigned; a list gives one arm per value.
    `leaf_level` (derived kinds): the level whose classes are shuffled, moved or
    clustered whole, every finer level kept as the manual one's; default: the
    dataset's coherent leaf level (`Dataset.leaf_level`; the leaves when it
    declares none).
    `budget` (scratch only): this scratch arm's budget, overriding the spec's
    `scratch_budget`, so that one sweep holds the plain and the compute-matched
    scratch baselines (give the second its own `label`).
    """

    kind: Literal[ARM_KINDS]  # the arms table of contracts.py
    label: str | None = None
    p: list[float] | None = None
    path: str | None = None
    format: str = "auto"
    embeddings: str | None = None
    leaf_level: LevelItem | None = None
    budget: Literal[SCRATCH_BUDGETS] | None = None

    @field_validator("p", mode="before")
    @classmethod
    def _p_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, int | float) else value

    @field_validator("p")
    @classmethod
    def _p_range(cls, value: list[float] | None) -> list[float] | None:
        for p in value or []:
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"p={p} is outside [0, 1]")
        return value

    @model_validator(mode="after")
    def _kind_options(self) -> ArmSpec:
        if "p" in arm(self.kind).options and not self.p:
            raise ValueError(f"a {self.kind} arm needs p (a fraction in [0, 1] or a list of them)")
        for option in ("p", "path", "embeddings", "leaf_level"):
            if getattr(self, option) is not None and option not in arm(self.kind).options:
                owners = " or ".join(repr(a) for a in ARM_KINDS if option in arm(a).options)
                raise ValueError(f"{option} applies only to kind {owners}, not {self.kind!r}")
        if self.budget is not None and self.kind != SCRATCH:
            raise ValueError(f"budget applies only to kind 'scratch', not {self.kind!r}")
        return self


class BackboneSpec(StrictSection):
    """`create_backbone(name, num_classes, **options)` of trainables."""

    name: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)


class FactorsSpec(StrictSection):
    """What is crossed: arms x levels x data fractions x backbones (x seeds).

    Optional further factors: `finetune_modes` (linear probe and / or full
    finetuning from the same pretraining) and `dataset_options` (`{option:
    [values]}`: each value its own data, e.g. `fold: [0, 1, 2]`).
    """

    hierarchies: list[ArmSpec] = Field(
        default_factory=lambda: [ArmSpec(kind="manual")], min_length=1
    )
    levels: Literal["all", "finer", "target_and_finer"] | list[LevelItem] = "all"

    @field_validator("levels")
    @classmethod
    def _levels_listed(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise ValueError(
                    "levels is an empty list; give level names or indices, or one of "
                    + ", ".join(LEVEL_KEYWORDS)
                )
            repeated = repeated_values(value)
            if repeated:
                raise ValueError(f"levels repeat: {repeated}")
        return value

    data_fractions: list[float] = Field(default_factory=lambda: [1.0], min_length=1)
    backbones: list[BackboneSpec] = Field(
        default_factory=lambda: [BackboneSpec(name="twolayer")], min_length=1
    )

    finetune_modes: list[Literal[FINETUNE_MODES]] | None = Field(default=None, min_length=1)
    dataset_options: dict[str, list[Any]] = Field(default_factory=dict)

    @field_validator("finetune_modes")
    @classmethod
    def _unique_modes(cls, value: list[str] | None) -> list[str] | None:
        repeated = repeated_values(value or [])
        if repeated:
            raise ValueError(f"finetune_modes repeat: {repeated}")
        return value

    @field_validator("dataset_options", mode="before")
    @classmethod
    def _option_lists(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v if isinstance(v, list) else [v] for k, v in value.items()}
        return value

    @field_validator("dataset_options")
    @classmethod
    def _option_values(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for name, values in value.items():
            if not values:
                raise ValueError(f"dataset_options.{name} is an empty list; give its values")
            repeated = repeated_values([canonical_json(v) for v in values])
            if repeated:
                raise ValueError(f"dataset_options.{name} repeats the value(s) {repeated}")
        return value

    @field_validator("hierarchies", mode="before")
    @classmethod
    def _arms(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"kind": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("backbones", mode="before")
    @classmethod
    def _backbones(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("levels", mode="before")
    @classmethod
    def _levels(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in LEVEL_KEYWORDS:
            return [value]
        if isinstance(value, int) and not isinstance(value, bool):
            return [value]
        return value

    @field_validator("data_fractions", mode="before")
    @classmethod
    def _fractions_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, int | float) else value

    @field_validator("data_fractions")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        for f in value:
            if not 0.0 < f <= 1.0:
                raise ValueError(f"data fraction {f} is outside (0, 1]")
        if len(set(value)) != len(value):
            raise ValueError(f"data fractions repeat: {repeated_values(value)}")
        return value

    @field_validator("backbones")
    @classmethod
    def _unique_backbones(cls, value: list[BackboneSpec]) -> list[BackboneSpec]:
        keys = [canonical_json(b.model_dump(mode="json")) for b in value]
        repeated = sorted({value[i].name for i, k in enumerate(keys) if keys.count(k) > 1})
        if repeated:
            raise ValueError(f"backbones repeat: {repeated} (same name and options twice)")
        return value

    @field_validator("hierarchies")
    @classmethod
    def _unique_arms(cls, value: list[ArmSpec]) -> list[ArmSpec]:
        labels = [label for arm in value for label in arm_labels(arm)]
        repeated = repeated_values(labels)
        if repeated:
            raise ValueError(
                f"hierarchy arms repeat the label(s) {repeated}; give each a distinct `label`"
            )
        return value


def arm_labels(arm: ArmSpec) -> list[str]:
    """Arm labels an ArmSpec expands to (one per p for perturbed)."""
    if arm.kind == "perturbed":
        base = arm.label or "perturbed"
        return [f"{base}_p{p:g}" for p in arm.p or []]
    return [arm.label or arm.kind]
