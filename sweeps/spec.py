"""The sweep spec: a YAML file validated by a pydantic schema, plus dotted overrides.

Every problem is reported with its field path, the bad value and what is
accepted, all at once, as one `SpecError` (a ValueError) with a line per problem.

Over ~350 lines on purpose: the schema, its error text (`_problems`) and the
dotted overrides (`apply_overrides`) all walk the same pydantic models; split
into modules they would import each other.

Example:
    >>> spec = parse_spec({"name": "demo", "dataset": {"name": "synthetic"},
    ...                    "target": "superclass"}, overrides=["seeds=2"])
    >>> spec.seed_list()
    [0, 1]
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from contracts import (
    ARM_KINDS,
    CHECKPOINT_EVERY_S,
    FEATURE_NORMS,
    FINETUNE_DEFAULTS,
    FINETUNE_MODES,
    OPTIMIZERS,
    SCHEDULES,
    STAGE_DEFAULTS,
    arm,
)
from sequential import RULES, SPENDING, Design
from sweeps import bounded_yaml

LEVEL_KEYWORDS = ("all", "finer", "target_and_finer")
# More trials than this are refused before the plan is expanded (a seed count
# with a few zeros too many would take minutes to expand, then swamp MLflow);
# `--max-trials N` (the spec's `max_trials`) lifts it.
MAX_TRIALS = 20_000
DEFAULT_TRAINABLE = "trainables:train"


class SpecError(ValueError):
    """A sweep spec (or an override of it) is invalid; one line per problem."""

    def __init__(self, problems: Sequence[str], *, source: str = "spec") -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:  # the common case: one line
            super().__init__(f"invalid {source}: {self.problems[0]}")
            return
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid {source} ({len(self.problems)} problem(s)):\n{lines}")


def _admits_bool(annotation: Any) -> bool:
    if annotation is bool or annotation is Any:
        return True
    if get_origin(annotation) is dict or annotation is dict:
        return True  # free-form mappings (options, smoke)
    return any(_admits_bool(arg) for arg in get_args(annotation) if get_origin(arg) is not list)


class _Strict(BaseModel):
    """A spec section: unknown keys are errors (reported with the accepted ones).

    Numbers are finite (no .nan / .inf) and a YAML boolean is never taken for a
    number (`seeds: true` is an error, not 1).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bools_for_numbers(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name, value in data.items():
            info = cls.model_fields.get(name) if isinstance(name, str) else None
            if info is None or _admits_bool(info.annotation):
                continue
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                if isinstance(item, bool):
                    where = f"{name}[{i}]" if isinstance(value, list) else name
                    raise PydanticCustomError(
                        "not_bool",
                        "{where}: got the boolean {value}, expected a number or a name",
                        {"where": where, "value": str(item).lower()},
                    )
        return data


class DatasetSpec(_Strict):
    """`create_dataset(name, **options)` of trainables."""

    name: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)


class ArmSpec(_Strict):
    """One hierarchy arm: where the pretraining labels come from.

    `manual` is the dataset's own taxonomy (or `path` to a hierarchy file);
    `random`, `cluster_within`, `cluster_global` and `perturbed` are derived from
    it; `scratch` is the no-pretraining baseline. `p` (perturbed only) is the
    fraction of leaves reassigned; a list gives one arm per value.
    """

    kind: Literal[ARM_KINDS]  # the arms table of contracts.py
    label: str | None = None
    p: list[float] | None = None
    path: str | None = None
    format: str = "auto"
    embeddings: str | None = None

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
        for option in ("p", "path", "embeddings"):
            if getattr(self, option) is not None and option not in arm(self.kind).options:
                owners = " or ".join(repr(a) for a in ARM_KINDS if option in arm(a).options)
                raise ValueError(f"{option} applies only to kind {owners}, not {self.kind!r}")
        return self


class BackboneSpec(_Strict):
    """`create_backbone(name, num_classes, **options)` of trainables."""

    name: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)


LevelItem = Union[int, str]  # noqa: UP007 (pydantic reads it at runtime)


class FactorsSpec(_Strict):
    """What is crossed: arms x levels x data fractions x backbones (x seeds)."""

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
            repeated = _repeats(value)
            if repeated:
                raise ValueError(f"levels repeat: {repeated}")
        return value

    data_fractions: list[float] = Field(default_factory=lambda: [1.0], min_length=1)
    backbones: list[BackboneSpec] = Field(
        default_factory=lambda: [BackboneSpec(name="twolayer")], min_length=1
    )

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
            raise ValueError(f"data fractions repeat: {_repeats(value)}")
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
        repeated = _repeats(labels)
        if repeated:
            raise ValueError(
                f"hierarchy arms repeat the label(s) {repeated}; give each a distinct `label`"
            )
        return value


class StageSpec(_Strict):
    """Optimisation settings of one stage (pretraining); defaults: contracts.STAGE_DEFAULTS."""

    epochs: int = Field(default=STAGE_DEFAULTS["epochs"], ge=0)
    lr: float = Field(default=STAGE_DEFAULTS["lr"], gt=0)
    batch_size: int = Field(default=STAGE_DEFAULTS["batch_size"], ge=1)
    weight_decay: float = Field(default=STAGE_DEFAULTS["weight_decay"], ge=0)
    optimizer: Literal[OPTIMIZERS] = STAGE_DEFAULTS["optimizer"]
    momentum: float = Field(default=STAGE_DEFAULTS["momentum"], ge=0, lt=1)
    schedule: Literal[SCHEDULES] = STAGE_DEFAULTS["schedule"]


class FinetuneSpec(StageSpec):
    """Finetuning settings: a stage plus `mode` (linear probe or full network).

    `feature_norm` scales the linear probe's frozen features (see trainables/trial.py).
    Defaults: contracts.FINETUNE_DEFAULTS.
    """

    epochs: int = Field(default=FINETUNE_DEFAULTS["epochs"], ge=0)
    mode: Literal[FINETUNE_MODES] = FINETUNE_DEFAULTS["mode"]
    feature_norm: Literal[FEATURE_NORMS] = FINETUNE_DEFAULTS["feature_norm"]


class SearchParam(_Strict):
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


class ReferenceCell(_Strict):
    """The cell tuned when `scope` is `reference_cell`; unset fields take the first value."""

    hierarchy: str | None = None
    level: LevelItem | None = None
    data_fraction: float | None = None
    backbone: str | None = None


class SearchSpec(_Strict):
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
                or key in ("optimizer", "mode", "schedule", "feature_norm")
            ):
                raise ValueError(
                    f"cannot tune {name!r}; tunable: pretrain.<x> or finetune.<x> for x in "
                    "lr, weight_decay, momentum, epochs, batch_size"
                )
        return value


class ResourcesSpec(_Strict):
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


class ReplicatesSpec(_Strict):
    """Adaptive replicates (`sequential.Design`): rounds of seeds until the sweep's questions settle.

    Round 1 runs `initial` seeds of every cell; each later round adds `step`
    seeds, only to the cells of comparisons (or half-width rules) still open,
    up to `max` seeds (default: the spec's `seeds` count). `stop_when` names
    the rules: `gain` (over scratch and the target level), `hierarchy` (kind
    pairs at matched class counts), `u_test` (each arm's curve shape),
    `half_width` (a cell's interval narrower than +-`half_width`). A
    comparison also settles when `margin` > 0 and its interval lies inside
    +-margin. Intervals spend `alpha` over the rounds (`spending`, Lan-DeMets).
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


# Tracking URIs a sweep accepts: MLflow's tracking stores less the file store
# (MLflow 3 refuses it for new features). Whether the store opens is checked
# before a run writes anything (sweeps/tracking_uri.py).
SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
SERVER_SCHEMES = ("http", "https", "databricks")
ACCEPTED = (
    "sqlite:///<file>, postgresql://, mysql://, mssql:// (each optionally +driver), "
    "http(s)://<host>, databricks"
)


def tracking_scheme(uri: str) -> str:
    """`sqlite`, `postgresql`, `http` ... of a tracking URI (a driver suffix dropped; "" for a path)."""
    if "://" not in uri:
        return "databricks" if uri == "databricks" else ""
    return uri.split("://", 1)[0].split("+", 1)[0].lower()


def uri_problem(uri: str) -> str | None:
    """Why `uri` cannot be a sweep's tracking URI (None: it can); the text names what is accepted."""
    scheme = tracking_scheme(uri)
    if uri.strip() != uri or not uri:
        return f"{uri!r} is empty or has surrounding spaces; accepted: {ACCEPTED}"
    if scheme not in SQL_SCHEMES + SERVER_SCHEMES:
        what = f"scheme {scheme!r}" if scheme else "a plain path (MLflow's file store)"
        if scheme == "file":
            what = "MLflow's file store (file://)"
        return f"{uri!r} is {what}, which sweeps do not use; accepted: {ACCEPTED}"
    if scheme == "sqlite":
        if not uri.startswith("sqlite:///") or len(uri) == len("sqlite:///"):
            return (
                f"{uri!r} names no database file (in-memory SQLite is lost when the driver "
                "ends); give sqlite:///relative/path.db or sqlite:////absolute/path.db"
            )
    elif scheme in ("http", "https") and not urlsplit(uri).hostname:
        return f"{uri!r} has no host; e.g. http://127.0.0.1:5000"
    return None


class TrackingSpec(_Strict):
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


class Spec(_Strict):
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

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: int | list[int]) -> int | list[int]:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"seeds={value}: give a count >= 1 or a list of seeds")
        if isinstance(value, list):
            if not value:
                raise ValueError("seeds is an empty list")
            if len(set(value)) != len(value):
                raise ValueError(f"seeds repeat: {_repeats(value)}")
        return value

    @model_validator(mode="after")
    def _json_options(self) -> Spec:
        """Options end up in trial keys (canonical JSON): finite numbers, plain values only."""
        sections: list[tuple[str, Any]] = [("dataset.options", self.dataset.options)]
        sections += [
            (f"factors.backbones[{i}].options", b.options)
            for i, b in enumerate(self.factors.backbones)
        ]
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
        return self

    # ---- derived views ----------------------------------------------------
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


def _repeats(values: Sequence[Any]) -> list[Any]:
    """The values that occur more than once, in first-seen order."""
    seen: list[Any] = []
    out: list[Any] = []
    for v in values:
        if v in seen and v not in out:
            out.append(v)
        seen.append(v)
    return out


def arm_labels(arm: ArmSpec) -> list[str]:
    """Arm labels an ArmSpec expands to (one per p for perturbed)."""
    if arm.kind == "perturbed":
        base = arm.label or "perturbed"
        return [f"{base}_p{p:g}" for p in arm.p or []]
    return [arm.label or arm.kind]


def canonical_json(payload: Any) -> str:
    """JSON with sorted keys and no whitespace: equal content, equal text."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)


def canonical_hash(payload: Any, length: int = 16) -> str:
    """sha256 (hex, first `length` characters) of `canonical_json(payload)`."""
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:length]


# ---- errors -----------------------------------------------------------------
def _path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "literal[", "list[", "int", "str")) or part in (
            "tagged-union",
        ):
            continue  # pydantic's union-branch markers are noise to a user
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _problems(err: ValidationError) -> list[str]:
    problems: dict[str, str] = {}
    for item in err.errors(include_url=False):
        path = _path(item["loc"])
        msg = item["msg"].removeprefix("Value error, ")
        if item["type"] == "missing":
            text = f"{path}: required field is missing"
        elif item["type"] in ("not_bool", "not_json", "spec_rule"):
            where = path if path != "(top level)" else ""
            text = f"{where}.{msg}" if where and not msg.startswith(where) else msg
        elif item["type"] == "extra_forbidden":
            model = _model_for_loc(item["loc"][:-1])
            accepted = ", ".join(sorted(model.model_fields)) if model else "see the docs"
            where = _path(item["loc"][:-1])
            text = f"{path}: unknown key {item['loc'][-1]!r} under {where} (accepted: {accepted})"
        elif repr(item.get("input")) in msg:  # the message names the value already
            text = f"{path}: {msg}"
        else:
            text = f"{path}: {msg} (got {item.get('input')!r})"
        # A union reports each branch; keep one line per field path.
        problems.setdefault(path, text)
    return list(problems.values())


def _model_for_loc(loc: Sequence[Any]) -> type[BaseModel] | None:
    """The spec section (model class) at a pydantic error location."""
    model: type[BaseModel] | None = Spec
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        if part not in model.model_fields:
            continue  # a union-branch marker
        model = _submodel(model.model_fields[part].annotation)
    return model


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


# ---- overrides ----------------------------------------------------------------
def _model_at(model: type[BaseModel], key: str) -> tuple[type[BaseModel] | None, bool]:
    """(sub-model class behind field `key`, whether that field is a free-form dict)."""
    annotation = model.model_fields[key].annotation
    candidates = [annotation, *get_args(annotation)]
    for cand in candidates:
        if isinstance(cand, type) and issubclass(cand, BaseModel):
            return cand, False
    free = any(get_origin(c) is dict or c is dict for c in candidates)
    return None, free


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply `a.b=value` overrides (value parsed as YAML) to a raw spec dict.

    Unknown keys raise SpecError naming the key and what is accepted there.
    Keys inside free-form mappings (`dataset.options.x`, `smoke.x`) are accepted.
    """
    raw = json.loads(json.dumps(raw))  # a deep copy we may mutate
    problems = []
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(f"override {item!r}: expected key=value, e.g. pretrain.epochs=2")
            continue
        try:
            value = bounded_yaml.safe_load(text, f"override {key!r}") if text.strip() else ""
        except bounded_yaml.YamlLimitError as err:
            problems.append(str(err))
            continue
        except yaml.YAMLError as err:
            problems.append(f"override {item!r}: value is not valid YAML ({err})")
            continue
        parts = key.split(".")
        model: type[BaseModel] | None = Spec
        node = raw
        ok = True
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if model is not None:
                if part not in model.model_fields:
                    where = ".".join(parts[:depth]) or "the top level"
                    accepted = ", ".join(sorted(model.model_fields))
                    problems.append(
                        f"override {item!r}: unknown key {part!r} under {where} "
                        f"(accepted: {accepted})"
                    )
                    ok = False
                    break
                sub, free = _model_at(model, part)
                if not last and sub is None and not free:
                    problems.append(
                        f"override {item!r}: {'.'.join(parts[: depth + 1])} is a single value, "
                        "it has no sub-keys"
                    )
                    ok = False
                    break
                model = sub
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
        if not ok:
            continue
    if problems:
        raise SpecError(problems, source="overrides")
    return raw


# ---- entry points ------------------------------------------------------------
def parse_spec(
    raw: Any, *, overrides: Sequence[str] = (), smoke: bool = False, source: str = "spec"
) -> Spec:
    """Validate a raw (YAML-loaded) spec after applying `smoke` settings then `overrides`.

    Without `smoke`, the `smoke:` block is checked all the same (its keys as
    overrides are, then the spec it would make), so a typo there is an error
    on every run, not only on the first `--smoke` one.
    """
    if not isinstance(raw, dict):
        raise SpecError([f"(top level): expected a mapping of fields, got {type(raw).__name__}"])
    smoke_block = raw.get("smoke") or {}
    if not isinstance(smoke_block, dict):
        raise SpecError([f"smoke: expected a mapping of dotted overrides, got {smoke_block!r}"])
    smoke_items = [f"{k}={json.dumps(v)}" for k, v in smoke_block.items()]
    smoked = _smoke_errors(lambda: apply_overrides(raw, smoke_items), source)
    spec = _validate(apply_overrides(smoked if smoke else raw, overrides), source)
    if smoke_items and not smoke:
        _smoke_errors(lambda: _validate(apply_overrides(smoked, overrides), source), source)
    return spec


def _validate(raw: dict[str, Any], source: str) -> Spec:
    try:
        return Spec.model_validate(raw)
    except ValidationError as err:
        raise SpecError(_problems(err), source=source) from None


def _smoke_errors(check: Callable[[], Any], source: str) -> Any:
    """`check()`, its spec errors re-raised as the smoke block's."""
    try:
        return check()
    except SpecError as err:
        raise SpecError([f"smoke: {p}" for p in err.problems], source=source) from None


def shipped_specs() -> dict[str, Path]:
    """The specs installed with the package (sweeps/*.yaml), by name: `quickstart`, `glyphs` ..."""
    from importlib.resources import files

    folder = files("sweeps")
    return {
        entry.name.removesuffix(".yaml"): Path(str(entry))
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml")
    }


def resolve_spec_path(path: str | Path) -> Path:
    """A spec file: `path` itself, else the shipped spec of that name (`granularity run quickstart`)."""
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    name = str(path).removesuffix(".yaml")
    shipped = shipped_specs()
    if "/" not in name and name in shipped:
        return shipped[name]
    raise FileNotFoundError(
        f"spec file {str(path)!r} does not exist, and no shipped spec has that name "
        f"(shipped: {', '.join(sorted(shipped))})"
    )


def load_spec(path: str | Path, overrides: Sequence[str] = (), *, smoke: bool = False) -> Spec:
    """Read a YAML spec (safe_load) and validate it; SpecError lists every problem.

    `path` is a file, or the name of a shipped spec (`quickstart`, `glyphs` ...).
    """
    path = resolve_spec_path(path)
    try:
        bounded_yaml.check_size(path.stat().st_size, f"spec file {path}")
        raw = bounded_yaml.safe_load(path.read_text(), f"spec file {path}")
    except bounded_yaml.YamlLimitError as err:
        raise SpecError([str(err)], source=f"spec {path}") from None
    except yaml.YAMLError as err:
        raise SpecError([f"{path}: not valid YAML: {err}"], source=f"spec {path}") from None
    return parse_spec(raw, overrides=overrides, smoke=smoke, source=f"spec {path}")
