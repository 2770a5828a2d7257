"""What crosses package lines, in one place: MLflow names, the run name, stage defaults, arms.

Every package may import this module (docs/ARCHITECTURE.md, "Imports"); it
imports nothing of the project and nothing outside the standard library, so
it costs nothing to read and can close no import circle. What lives here:

- the MLflow contract (sweeps writes it, analysis reads it): tag, param and
  metric names, the roles of runs;
- the cell (`Cell`): the unit seeds replicate, with its key, its trials' run
  names and its columns (plan, search, status, sequential and analysis use it);
- the trial config's stage defaults: trainables fills absent keys with them,
  and the spec's fields default to them (so sweeps need not import torch to
  know them);
- the table of hierarchy arms a sweep can cross (`ARMS`): what the spec
  accepts, what the plan builds from each, and how analysis orders them;
- `Registry`, the one helper behind the three registries (datasets,
  hierarchy kinds, backbones): the same verbs and the same error everywhere.

Example:
    >>> Cell("manual", "subclass", 0.5, "twolayer").run_name(seed=0)
    'manual/subclass/f0.5/twolayer/s0'
    >>> arm("cluster_within").builder
    'cluster'
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

# ---- MLflow: tags -------------------------------------------------------------------
TAG_PREFIX = "granularity."
ROLE = "granularity.role"  # sweep | trial | search | cell
ROLE_SWEEP = "sweep"
ROLE_TRIAL = "trial"
ROLE_SEARCH = "search"
ROLE_CELL = "cell"  # a cell's summary over seeds, written by `granularity analyze`
TRIAL_KEY = "granularity.trial_key"
PRETRAIN_KEY = "granularity.pretrain_key"
LABEL_FN = "granularity.label_fn"
SPEC_HASH = "granularity.spec_hash"
SWEEP = "granularity.sweep"  # the parent run's sweep name
FAILURE = "granularity.failure"  # reason of a FAILED run
ATTEMPTS = "granularity.attempts"
# `granularity.retry.<attempt>`: why that attempt of a trial failed (and was retried).
RETRY = "granularity.retry"
HIERARCHY_HASH = "granularity.hierarchy_hash"
CODE_VERSION = (
    "granularity.code_version"  # hash of the code that ran a trial (sweeps/code_version.py)
)
SEARCH_CELL = "granularity.search_cell"
ROUND = "granularity.round"  # adaptive replicates: the round (1, 2, ...) that added a trial's seed
REPLICATES = "granularity.replicates"  # parent run: the adaptive design (canonical JSON)
# Parent run: the spec's `analysis` block (canonical JSON, e.g.
# {"block":"fold","size":"renders_per_font"}): which crossed dataset option (trial param
# `dataset.<option>`) is the size axis, which a block.
ANALYSIS_CONFIG = "granularity.analysis"
CELL_KEY = "granularity.cell_key"  # a cell run's `<hierarchy>/<level>/f<fraction>/<backbone>`
PARENT = "mlflow.parentRunId"
# Experiment tag: which view the MLflow UI opens (3.x); a sweep is model training.
EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
RUN_NAME = "mlflow.runName"
# A trial's string outputs become tags `granularity.<name>`; this one is the
# per-test-example correctness that hard examples on real data are built from
# (written by trainables.trial.encode_correct, read by analysis.hard_examples).
TEST_CORRECT = "test_correct"
# Trial tags analysis turns into columns (without the prefix).
TRIAL_TAGS = (
    "trial_key",
    "pretrain_key",
    "label_fn",
    "spec_hash",
    "failure",
    "attempts",
    "round",
    "code_version",
    TEST_CORRECT,
)

# ---- MLflow: params -----------------------------------------------------------------
# Flat, stable names a trial run carries, in this order (plus `hierarchy_p`, `dataset.<option>`,
# `pretrain.*` and `finetune.*`): `Trial.params()` writes them, testing/simulate.py fakes them.
TRIAL_PARAMS = (
    "dataset",
    "dataset_options",
    "target",
    "hierarchy",
    "hierarchy_kind",
    "level",
    "level_name",
    "num_classes",
    "data_fraction",
    "backbone",
    "backbone_options",
    "seed",
)
HIERARCHY_P = "hierarchy_p"  # perturbed arms only
NUM_TRAIN = "num_train"  # a final metric that is also logged as a param
# Params the contract defines as numbers; every other param stays a string.
NUMERIC_PARAMS = ("level", "num_classes", "data_fraction", "num_train", "seed")
STAGES = ("pretrain", "finetune")
SEARCH_PARAM_PREFIX = "search."  # parent-run params of the values a search chose

# ---- MLflow: metrics ----------------------------------------------------------------
TARGET_ERROR = "target_error"
VAL_ERROR = "val_error"
ALIGNMENT_METRICS = ("align/cond_entropy", "align/nmi", "align/purity", "align/ami", "align/ari")
EPOCH_METRICS = tuple(f"{s}/{m}" for s in STAGES for m in ("loss", "error", "val_error"))
PRETRAIN_REUSED = "pretrain_reused"

# ---- artifacts ----------------------------------------------------------------------
CONFIG_ARTIFACT = "config.json"  # a trial run's resolved config
HIERARCHIES_ARTIFACTS = "hierarchies"  # parent run: <content_hash>.json
SPECS_ARTIFACTS = "specs"  # parent run: <spec_hash>.json
ANALYSIS_ARTIFACTS = "analysis"  # parent run: the report (the one thing analysis writes)

# The scratch baseline: its arm label, level name and label function.
SCRATCH = "scratch"
SCRATCH_LEVEL = -1


class Cell(NamedTuple):
    """The unit seeds replicate: one hierarchy arm x level x data fraction x backbone.

    >>> cell = Cell.of({"hierarchy": "random", "level_name": None, "data_fraction": 0.25,
    ...                 "backbone": "resnet18", "seed": 3})
    >>> cell.key, cell.run_name(3)
    ('random/scratch/f0.25/resnet18', 'random/scratch/f0.25/resnet18/s3')
    """

    hierarchy: str
    level_name: str  # the scratch baseline's is SCRATCH
    data_fraction: float
    backbone: str

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Cell:
        """The cell of a trial config, a table row or a run's params (no level name: scratch)."""
        return cls(
            str(row["hierarchy"]),
            str(row["level_name"] or SCRATCH),
            float(row["data_fraction"]),
            str(row["backbone"]),
        )

    @property
    def key(self) -> str:
        """`<arm>/<level_name>/f<fraction>/<backbone>`: the cell run's key, a search param's scope."""
        return f"{self.hierarchy}/{self.level_name}/f{self.data_fraction:g}/{self.backbone}"

    def run_name(self, seed: int) -> str:
        """A trial run's name: `<cell key>/s<seed>`."""
        return f"{self.key}/s{seed}"


CELL_COLUMNS = Cell._fields  # the cell's columns in trial tables (analysis) and status
# A cell's row in analysis tables: the cell, with its level's size beside its level name.
CELL_TABLE_COLUMNS = (*CELL_COLUMNS[:2], "num_classes", *CELL_COLUMNS[2:])


# ---- the trial config's stage defaults (trainables' contract) -----------------------
def _frozen(values: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(values)


STAGE_DEFAULTS: Mapping[str, Any] = _frozen(
    {
        "epochs": 20,
        "lr": 0.05,
        "batch_size": 128,
        "weight_decay": 0.0,
        "optimizer": "sgd",
        "momentum": 0.9,
        "schedule": "cosine",
    }
)
FINETUNE_DEFAULTS: Mapping[str, Any] = _frozen(
    {
        **STAGE_DEFAULTS,
        "mode": "linear",
        "epochs": 10,
        # Linear probe input scaling. "standardize" (per-feature mean/std of the
        # training features, like MAE's affine-free BatchNorm probe) lets rare
        # fine-feature detectors compete with the frequent coarse one, which a
        # probe trained on easy examples otherwise leans on alone; "scalar"
        # divides all features by their RMS; "none" leaves them as they are.
        "feature_norm": "standardize",
    }
)
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "constant")
FINETUNE_MODES = ("linear", "full")
# Which weights a stage ends with: its last, or those of its lowest validation error.
SELECTIONS = ("last", "best_val")
# The scratch arm's budget: the pretraining's, or pretraining plus finetuning (compute-matched).
SCRATCH_BUDGETS = ("pretrain", "matched")
FEATURE_NORMS = ("scalar", "standardize", "none")
# Seconds of training between epoch checkpoints (0: after every epoch). A crash
# loses at most this much of a stage; a short trial is not slowed down by a
# checkpoint per epoch (15% of a quickstart trial's time when it was).
CHECKPOINT_EVERY_S = 60.0


# ---- hierarchy arms -----------------------------------------------------------------
@dataclass(frozen=True)
class Arm:
    """One kind of hierarchy arm a sweep can cross.

    Attributes:
        name: the spec's `kind:` (and the arm's default label).
        builder: the `hierarchies` registry kind that builds its hierarchy;
            None for `scratch` (no pretraining). `manual` without a `path` is
            the dataset's own hierarchy, built by nobody.
        inputs: builder keyword arguments the plan supplies, from `reference`
            (the manual hierarchy), `seed` (the hierarchy seed), `p`,
            `embeddings`, `target_level`, `path`, `format`, `leaf_level` (the
            level whose classes a derived kind moves whole).
        fixed: builder keyword arguments that are constants of the arm.
        options: arm fields of the spec that only this kind accepts.
    """

    name: str
    builder: str | None
    inputs: tuple[str, ...] = ()
    fixed: Mapping[str, Any] = field(default_factory=dict)
    options: tuple[str, ...] = ()


ARMS: tuple[Arm, ...] = (
    Arm("manual", "manual", inputs=("path", "format"), options=("path",)),
    Arm("random", "random", inputs=("reference", "seed", "leaf_level"), options=("leaf_level",)),
    Arm(
        "cluster_within",
        "cluster",
        inputs=("reference", "embeddings", "target_level", "seed", "leaf_level"),
        fixed={"mode": "within"},
        options=("embeddings", "leaf_level"),
    ),
    Arm(
        "cluster_global",
        "cluster",
        inputs=("reference", "embeddings", "target_level", "seed", "leaf_level"),
        fixed={"mode": "global"},
        options=("embeddings", "leaf_level"),
    ),
    Arm(
        "perturbed",
        "perturbed",
        inputs=("reference", "p", "seed", "leaf_level"),
        options=("p", "leaf_level"),
    ),
    Arm(SCRATCH, None),
)
ARM_KINDS = tuple(a.name for a in ARMS)
# The paper's ordering at matched class counts: earlier kinds are expected to beat later ones.
EXPECTED_ORDER = ("manual", "cluster_within", "cluster_global", "random")


def kind_order(kinds: Iterable[str]) -> list[str]:
    """The distinct hierarchy kinds, those of `EXPECTED_ORDER` first in its order, then by name.

    >>> kind_order(["random", "perturbed", "manual", "random"])
    ['manual', 'random', 'perturbed']
    """
    distinct = set(kinds)
    return [k for k in EXPECTED_ORDER if k in distinct] + sorted(distinct - set(EXPECTED_ORDER))


# Pairs the report gives a verdict on: (the aligned arm, its control).
VERDICT_PAIRS = (("manual", "random"), ("cluster_within", "cluster_global"))


def arm(name: str) -> Arm:
    """The table entry of arm kind `name`; ValueError naming the known ones."""
    for entry in ARMS:
        if entry.name == name:
            return entry
    raise ValueError(f"unknown hierarchy arm kind {name!r}; known: {', '.join(ARM_KINDS)}")


# ---- registries ---------------------------------------------------------------------
class Registry:
    """Named builders of one kind (datasets, hierarchy kinds, backbones), timm's verbs.

    Each package wraps one in its own `create_*`, `list_*`, `is_*` and
    `register_*`; an unknown name is `RuntimeError("Unknown <what> (<name>);
    known: ...")`, which the `granularity` CLI prints as one line.

    Args:
        what: the kind of thing, as the error message names it ("dataset").
        load: imports the modules whose builders register themselves on
            import; called before every lookup (a no-op once they are loaded).

    Example:
        >>> colours = Registry("colour")
        >>> _ = colours.register("red")(lambda: "#f00")
        >>> colours.create("red"), colours.names(), colours.has("blue")
        ('#f00', ['red'], False)
    """

    def __init__(self, what: str, *, load: Callable[[], object] | None = None) -> None:
        self.what = what
        self._load = load
        self._builders: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register `fn` under `name`; a second builder for a name is an error."""

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            if self._builders.get(name, fn) is not fn:
                raise RuntimeError(f"{self.what} ({name}) is already registered")
            self._builders[name] = fn
            return fn

        return decorate

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._loaded()
        return sorted(self._builders)

    def has(self, name: str) -> bool:
        self._loaded()
        return name in self._builders

    def get(self, name: str) -> Callable[..., Any]:
        """The builder of `name`; RuntimeError naming the known ones when there is none."""
        if not self.has(name):
            raise RuntimeError(f"Unknown {self.what} ({name}); known: {', '.join(self.names())}")
        return self._builders[name]

    def create(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Build `name` from the arguments its builder takes."""
        return self.get(name)(*args, **kwargs)

    def _loaded(self) -> None:
        if self._load is not None:
            self._load()


def cache_root() -> Path:
    """Where the packages cache what they derive (dataset renders, unpacked IDX files, MLflow's empty store).

    `$GRANULARITY_CACHE`, else `$XDG_CACHE_HOME/granularity`, else `~/.cache/granularity`.
    """
    base = os.environ.get("GRANULARITY_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "granularity"
    )
    return Path(base)
