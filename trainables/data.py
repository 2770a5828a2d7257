"""The Dataset object, the dataset registry, and seeded nested data subsets.

A dataset is a train split and a test split over the leaf classes of its
manual hierarchy. A split either holds its inputs in memory as one tensor
(synthetic, digits, cifar100: batches are slices) or as image files decoded by
DataLoader workers (inat2021, imagefolder, imagenet21k).

Example:
    >>> ds = create_dataset("synthetic", train_per_leaf=8, test_per_leaf=4)
    >>> ds.hierarchy.level_names
    ['superclass', 'class', 'subclass']
    >>> sorted(ds.test.groups)
    ['easy', 'hard']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contracts import Registry, cache_root  # noqa: F401 (cache_root: re-exported)
from hierarchies import Hierarchy

BatchTransform = Callable[[torch.Tensor, bool], torch.Tensor]


@dataclass
class Split:
    """One split: a leaf id per example plus either an input tensor or image files.

    `groups` holds boolean masks over the split's examples for sub-populations
    that get their own error (the synthetic test split's `easy` and `hard`).
    """

    leaf: np.ndarray
    inputs: torch.Tensor | None = None
    files: list[str] | None = None
    groups: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.leaf = np.asarray(self.leaf, dtype=np.int64)
        if (self.inputs is None) == (self.files is None):
            raise ValueError("a Split holds exactly one of `inputs` (a tensor) or `files`")
        size = len(self.inputs) if self.inputs is not None else len(self.files or [])
        if size != len(self.leaf):
            raise ValueError(f"split has {size} inputs but {len(self.leaf)} leaf labels")

    def __len__(self) -> int:
        return len(self.leaf)

    @property
    def in_memory(self) -> bool:
        return self.inputs is not None


def _identity_transform(batch: torch.Tensor, train: bool) -> torch.Tensor:
    return batch.float()


@dataclass
class Dataset:
    """What a trial needs from a dataset (see docs/ARCHITECTURE.md, trainables).

    Attributes:
        name: registry name.
        hierarchy: the manual hierarchy over the leaf classes.
        default_target: the level name a sweep targets unless told otherwise.
        train, test: the splits.
        input_shape: (channels, height, width) of a model input.
        patch_size: the tile side a patch-wise backbone (`twolayer`) should use.
        batch_transform: turns a batch (uint8 or float; stored in memory, or
            decoded from files by `file_transforms`) into model input on the
            device; `train=True` may augment.
        file_transforms: for file splits, torchvision transforms
            `{"train": ..., "eval": ...}` applied by DataLoader workers.
        embed: per-leaf embedding function behind `class_embeddings()`.
        leaf_level: the level of `hierarchy` whose classes are coherent (a
            species, a character): the derived hierarchy kinds move its classes
            whole and keep every finer level (hierarchies/leaf_level.py). None:
            the leaves themselves are coherent classes.
        val: a validation split of its own (e.g. held-out renders of the
            training fonts). None: a trial carves its validation examples from
            the train split (`train_val_indices`, the config's `val_fraction`).
    """

    name: str
    hierarchy: Hierarchy
    default_target: str
    train: Split
    test: Split
    input_shape: tuple[int, int, int]
    patch_size: int
    batch_transform: BatchTransform = _identity_transform
    file_transforms: dict[str, Callable] | None = None
    embed: Callable[[], np.ndarray] | None = None
    meta: dict = field(default_factory=dict)
    leaf_level: str | None = None
    val: Split | None = None

    def __post_init__(self) -> None:
        if self.leaf_level is not None and self.leaf_level not in self.hierarchy.level_names:
            raise ValueError(
                f"leaf_level {self.leaf_level!r} is not a level of the dataset's hierarchy "
                f"({self.hierarchy.level_names})"
            )

    @property
    def train_leaf(self) -> np.ndarray:
        """Leaf id per training example (the contract's `train_leaf`)."""
        return self.train.leaf

    @property
    def num_leaves(self) -> int:
        return self.hierarchy.num_leaves

    def class_embeddings(self) -> np.ndarray:
        """A cheap embedding per leaf class, shape [n_leaves, d] (for cluster hierarchies)."""
        if self.embed is not None:
            return self.embed()
        if not self.train.in_memory:
            raise NotImplementedError(f"dataset {self.name!r} has no class embedding")
        return mean_input_embeddings(self.train.inputs, self.train.leaf, self.num_leaves)


def cached_array(path: Path, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """The array saved at `path`, else `compute()` saved there atomically (a damaged file is redone)."""
    import io

    from fileio import write_atomic

    if path.exists():
        try:
            return np.load(path)
        except (OSError, ValueError):
            pass
    array = np.asarray(compute())
    buffer = io.BytesIO()
    np.save(buffer, array)
    write_atomic(path, buffer.getvalue())
    return array


def mean_input_embeddings(inputs: torch.Tensor, leaf: np.ndarray, num_leaves: int) -> np.ndarray:
    """Per-leaf mean of the flattened inputs: the simplest class embedding."""
    flat = inputs.reshape(len(inputs), -1).double()
    index = torch.as_tensor(leaf, dtype=torch.long)
    sums = torch.zeros(num_leaves, flat.shape[1], dtype=torch.float64).index_add_(0, index, flat)
    counts = torch.bincount(index, minlength=num_leaves).clamp(min=1).unsqueeze(1)
    return (sums / counts).float().numpy()


# ---- registry (timm style: contracts.Registry) -------------------------------
# The builders register themselves when `trainables/__init__.py` imports their
# modules (the dataset builder list is there: this module imports none of them,
# they import it for the decorator, so no import circle).
_DATASETS = Registry("dataset")


def register_dataset(fn: Callable[..., Dataset]) -> Callable[..., Dataset]:
    """Decorator: register a dataset builder under its function name."""
    return _DATASETS.register(fn.__name__)(fn)


def list_datasets() -> list[str]:
    """Names `create_dataset` accepts."""
    return _DATASETS.names()


def is_dataset(name: str) -> bool:
    return _DATASETS.has(name)


def dataset_options(name: str) -> list[str] | None:
    """The keyword options dataset `name` takes, sorted; None when it takes any (`**options`).

    Raises RuntimeError for an unknown name (the message lists the known ones).
    """
    import inspect

    parameters = inspect.signature(_DATASETS.get(name)).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sorted(p.name for p in parameters if p.kind in kinds)


# Per dataset, a check of its options that builds nothing (types, ranges, names);
# `validate_dataset_options` falls back to the builder's signature.
OptionCheck = Callable[[Mapping[str, Any]], None]
_OPTION_CHECKS: dict[str, OptionCheck] = {}


def register_option_check(name: str) -> Callable[[OptionCheck], OptionCheck]:
    """Decorator: `fn(options)` checks dataset `name`'s options, raising ValueError."""

    def decorate(fn: OptionCheck) -> OptionCheck:
        _OPTION_CHECKS[name] = fn
        return fn

    return decorate


def validate_dataset_options(name: str, options: Mapping[str, Any]) -> None:
    """Check dataset `name`'s options without building it (no file is read or written).

    Every dataset: an option its builder does not take is a ValueError naming
    it and the accepted ones (`dataset_options`). A dataset with a registered
    check (glyphs) also gets its types and ranges checked, in one line naming
    the option and the accepted values. Unknown `name`: RuntimeError as `create_dataset`.
    """
    accepted = dataset_options(name)
    check = _OPTION_CHECKS.get(name)
    if check is not None:
        check(options)
        return
    unknown = sorted(set(options) - set(accepted or options))
    if unknown:
        raise ValueError(
            f"unknown {name} option {unknown[0]!r}; accepted: {', '.join(accepted or [])}"
        )


def create_dataset(name: str, **options) -> Dataset:
    """Build dataset `name` with its keyword options.

    Raises:
        RuntimeError: unknown name (the message lists the known ones).
        FileNotFoundError: a data root that does not exist (named in the message).
        TypeError: an option the builder does not take.
    """
    return _DATASETS.create(name, **options)


# ---- subsets ----------------------------------------------------------------
def _per_leaf_permutations(
    leaf: np.ndarray, seed: int, salt: int
) -> list[tuple[np.ndarray, float]]:
    """For each leaf present: its example indices in a seeded random order, and a seeded uniform."""
    leaf = np.asarray(leaf, dtype=np.int64)
    order = np.argsort(leaf, kind="stable")
    bounds = np.flatnonzero(np.diff(leaf[order])) + 1
    groups = np.split(order, bounds) if len(order) else []
    rng = np.random.default_rng([int(seed), salt])
    return [(rng.permutation(group), float(rng.random())) for group in groups]


def _stratified_count(fraction: float, n: int, u: float) -> int:
    # floor(f*n + u) with u ~ U[0,1) per leaf: exact in expectation even for
    # leaves of 2-3 examples (extra synthetic levels), and monotone in f, so
    # subsets are nested.
    return int(np.floor(fraction * n + u))


def subset_indices(train_leaf: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A stratified, seeded, nested subset of example indices, sorted.

    Each leaf keeps floor(fraction * count + u) examples (u uniform, fixed per
    leaf by `seed`): the first ones of a per-leaf permutation fixed by `seed`,
    so for one seed the 10% subset lies inside the 30% subset.

    >>> leaf = np.repeat(np.arange(3), 10)
    >>> small, large = subset_indices(leaf, 0.1, 0), subset_indices(leaf, 0.3, 0)
    >>> len(small), len(large), set(small) <= set(large)
    (3, 9, True)
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"data fraction must be in (0, 1], got {fraction}")
    keep = [
        perm[: _stratified_count(fraction, len(perm), u)]
        for perm, u in _per_leaf_permutations(train_leaf, seed, salt=1)
    ]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def train_val_indices(
    train_leaf: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split the training split into (pool, validation) index arrays, stratified by leaf.

    Validation is carved from training data, never from the test split. It does
    not depend on the data fraction (the same validation set for every size),
    and a leaf never gives up its last example.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    pool, val = [], []
    for perm, u in _per_leaf_permutations(train_leaf, seed, salt=2):
        n_val = min(_stratified_count(val_fraction, len(perm), u), len(perm) - 1)
        val.append(perm[:n_val])
        pool.append(perm[n_val:])
    if not pool:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    return np.sort(np.concatenate(pool)), np.sort(np.concatenate(val))
