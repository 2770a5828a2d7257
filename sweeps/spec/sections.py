"""The spec's settings sections: stages, search, resources, replicates, tracking."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from contracts import (
    FEATURE_NORMS,
    FINETUNE_DEFAULTS,
    FINETUNE_MODES,
    OPTIMIZERS,
    SCHEDULES,
    SELECTIONS,
    STAGE_DEFAULTS,
)
from sequential import RULES, SPENDING
from sweeps.spec.factors import LevelItem
from sweeps.spec.strict import StrictSection
from sweeps.spec.uris import uri_problem


class StageSpec(StrictSection):
    """Optimisation settings of one stage (pretraining); defaults: contracts.STAGE_DEFAULTS.

    The budget is `epochs` (passes over the training subset) or `steps` (SGD
    steps, the same at every data size), not both. `selection: best_val` ends
    the stage with the weights of its lowest validation error (where the trial
    has a validation split), `last` with the final ones.
    """

    epochs: int = Field(default=STAGE_DEFAULTS["epochs"], ge=0)
    steps: int | None = Field(default=None, ge=1)
    selection: Literal[SELECTIONS] = "last"
    lr: float = Field(default=STAGE_DEFAULTS["lr"], gt=0)
    batch_size: int = Field(default=STAGE_DEFAULTS["batch_size"], ge=1)
    weight_decay: float = Field(default=STAGE_DEFAULTS["weight_decay"], ge=0)
    optimizer: Literal[OPTIMIZERS] = STAGE_DEFAULTS["optimizer"]
    momentum: float = Field(default=STAGE_DEFAULTS["momentum"], ge=0, lt=1)
    schedule: Literal[SCHEDULES] = STAGE_DEFAULTS["schedule"]

    @model_validator(mode="after")
    def _one_budget(self) -> StageSpec:
        if self.steps is not None and "epochs" in self.model_fields_set:
            raise PydanticCustomError(
                "spec_rule",
                "steps: {steps} given with epochs={epochs}; a stage's budget is epochs or "
                "steps, not both",
                {"steps": self.steps, "epochs": self.epochs},
            )
        return self

    def trial_settings(self) -> dict[str, Any]:
        """The stage's settings as a trial config holds them (keys of absent options left out).

        `steps` and `selection` appear only when set, so a spec without them
        keeps its trial keys; with `steps`, `epochs` is left out (unused).
        """
        out = self.model_dump()
        if self.steps is None:
            del out["steps"]
        else:
            del out["epochs"]
        if self.selection == "last":
            del out["selection"]
        return out

    @property
    def budget(self) -> tuple[str, int]:
        """("steps", n) or ("epochs", n)."""
        return ("steps", self.steps) if self.steps is not None else ("epochs", self.epochs)


class FinetuneSpec(StageSpec):
    """Finetuning settings: a stage plus `mode` (linear probe or full network).

    `feature_norm` scales the linear probe's frozen features (see trainables/trial.py).
    Defaults: contracts.FINETUNE_DEFAULTS.
    """

    epochs: int = Field(default=FINETUNE_DEFAULTS["epochs"], ge=0)
    mode: Literal[FINETUNE_MODES] = FINETUNE_DEFAULTS["mode"]
    feature_norm: Literal[FEATURE_NORMS] = FINETUNE_DEFAULTS["feature_norm"]


class SearchParam(StrictSection):
    """A continuous (or integer) range Optuna samples from."""

    low: float
    high: float
    log: bool = False
    type: Literal["float", "int"] = "float"

    @model_validator(mode="after")
    def _range(self) -> SearchParam:
        if not self.low < self.high:
            raise ValueError(f"low={self.low} must be below high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got low={self.low}")
        return self


class ReferenceCell(StrictSection):
    """The cell tuned when `scope` is `reference_cell`; unset fields take the first value."""

    hierarchy: str | None = None
    level: LevelItem | None = None
    data_fraction: float | None = None
    backbone: str | None = None


class SearchSpec(StrictSection):
    """Optuna search for continuous settings on validation error."""

    parameters: dict[str, SearchParam] = Field(min_length=1)
    n_trials: int = Field(default=10, ge=1)
    metric: Literal["val_error"] = "val_error"
    scope: Literal["reference_cell", "per_cell"] = "reference_cell"
    reference: ReferenceCell = Field(default_factory=ReferenceCell)
    seed: int = 0
    parallel: int | None = Field(default=None, ge=1)

    @field_validator("parameters")
    @classmethod
    def _tunable(cls, value: dict[str, SearchParam]) -> dict[str, SearchParam]:
        for name in value:
            stage, _, key = name.partition(".")
            fields = {"pretrain": StageSpec, "finetune": FinetuneSpec}.get(stage)
            if (
                fields is None
                or key not in fields.model_fields
                or key in ("optimizer", "mode", "schedule", "feature_norm", "selection")
            ):
                raise ValueError(
                    f"cannot tune {name!r}; tunable: pretrain.<x> or finetune.<x> for x in "
                    "lr, weight_decay, momentum, epochs, steps, batch_size"
                )
        return value


class ResourcesSpec(StrictSection):
    """Per-trial resources; a fractional gpu packs several trials on one GPU.

    `workers` > 1: each trial runs data-parallel (DDP) on that many Ray Train
    workers, placed by Ray across nodes, and `cpu` / `gpu` are per worker:
    one process per GPU, so `gpu` is 0 (gloo on CPU) or 1 (NCCL).
    """

    workers: int = Field(default=1, ge=1)
    cpu: float = Field(default=1.0, gt=0)
    gpu: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _one_gpu_per_worker(self) -> ResourcesSpec:
        if self.workers > 1 and self.gpu not in (0, 1):
            raise ValueError(
                f"resources.gpu={self.gpu:g} with workers={self.workers}: a data-parallel "
                "worker takes gpu 0 (CPU, gloo) or 1 (one GPU per worker); for more GPUs "
                "per trial raise workers"
            )
        return self

    @property
    def per_trial(self) -> dict[str, float]:
        """What one trial holds in all: `{"cpu": ..., "gpu": ...}` over its workers."""
        return {"cpu": self.cpu * self.workers, "gpu": self.gpu * self.workers}


class ReplicatesSpec(StrictSection):
    """Adaptive replicates (`sequential.Design`): rounds of seeds until the sweep's questions settle.

    Round 1 runs `initial` seeds of every cell; each later round adds `step`
    seeds, only to the cells of comparisons (or half-width rules) still open,
    up to `max` seeds (default: the spec's `seeds` count). `stop_when` names
    the rules: `gain` (over scratch and the target level), `hierarchy` (kind
    pairs at matched class counts), `u_test` (each arm's curve shape),
    `half_width` (a cell's interval narrower than +-`half_width`), `best_level`
    (per kind, fraction and backbone, a race of the levels: racing.py). A
    comparison also settles when `margin` > 0 and its interval lies inside
    +-margin; in a race, a level leaves once shown within `margin` (error
    units, default 0: only levels decided worse leave) of the reference.
    Intervals spend `alpha` over the rounds (`spending`, Lan-DeMets).
    """

    initial: int = Field(default=3, ge=2)
    step: int = Field(default=2, ge=1)
    max: int | None = Field(default=None, ge=2)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    spending: Literal[SPENDING] = "obrien_fleming"
    stop_when: list[Literal[RULES]] = Field(
        default_factory=lambda: ["gain", "hierarchy", "u_test"], min_length=1
    )
    half_width: float | None = Field(default=None, gt=0)
    margin: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> ReplicatesSpec:
        if self.max is not None and self.max < self.initial:
            raise ValueError(f"max={self.max} is below initial={self.initial}")
        if "half_width" in self.stop_when and self.half_width is None:
            raise ValueError("stop_when has half_width: give half_width (error units, e.g. 0.01)")
        return self


class TrackingSpec(StrictSection):
    """Where MLflow lives. Relative sqlite paths are taken from the working directory."""

    uri: str = "sqlite:///mlflow.db"
    artifact_location: str | None = None

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        problem = uri_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class AnalysisSpec(StrictSection):
    """How `granularity analyze` reads crossed dataset options (keys of `factors.dataset_options`).

    `size`: the option that is the data-size axis (e.g. `renders_per_font`);
    `block`: the option that is a blocking factor (e.g. `fold`), pooled as a
    block and reported per block.
    """

    size: str | None = None
    block: str | None = None

    def config(self) -> dict[str, str]:
        """The set entries, as the analysis config takes them (`{"size": ..., "block": ...}`)."""
        return {k: v for k, v in self.model_dump().items() if v is not None}
