"""Shared builders for the hierarchies tests: a reference tree, and one fixture factory per kind.

A factory takes (tmp_path, seed) and returns a Case: the hierarchy, its expected
level sizes, and the target (leaf -> target class, and the index of the level
from which on finer levels are "finer than the target").
Every kind in `list_hierarchy_kinds()` needs an entry in KIND_CASES, or the
registry-parametrized tests fail for it by name.
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from hierarchies import Hierarchy, build_hierarchy

LEVELS = ["superclass", "class", "subclass", "leaf"]
TARGET = "class"


def reference_paths(seed: int = 0) -> list[tuple[str, str, str, str]]:
    """(superclass, class, subclass, leaf) names of an uneven tree: 5 / 33 / 92 / 284 nodes."""
    rng = np.random.default_rng(seed)
    paths = []
    for s in range(5):
        for c in range(rng.integers(2, 8)):
            for u in range(rng.integers(1, 6)):
                for leaf in range(rng.integers(1, 6)):
                    paths.append((f"s{s}", f"s{s}c{c}", f"s{s}c{c}u{u}", f"s{s}c{c}u{u}l{leaf}"))
    return paths


def reference_hierarchy() -> Hierarchy:
    """The reference tree as a Hierarchy, built directly (not through a loader)."""
    paths = reference_paths()
    levels, names = [], []
    for depth in range(len(LEVELS)):
        ids: dict[str, int] = {}
        levels.append(np.array([ids.setdefault(p[depth], len(ids)) for p in paths]))
        names.append(list(ids))
    return Hierarchy(
        leaf_names=[p[-1] for p in paths], level_names=LEVELS, levels=levels, node_names=names
    )


REFERENCE_SIZES = [5, 33, 92, 284]


def write_reference_csv(path: Path) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(LEVELS)
        writer.writerows(reference_paths())
    return path


def leaf_embeddings(num_leaves: int, *, seed: int = 0, dim: int = 8) -> np.ndarray:
    """Embeddings unrelated to the tree (so a global clustering is not aligned by accident)."""
    return np.random.default_rng(1000 + seed).normal(size=(num_leaves, dim))


# imagenet1k under the WordNet depth-cut rule (measured; see docs/HIERARCHIES.md).
IMAGENET1K_SIZES = [
    2,
    5,
    8,
    14,
    32,
    76,
    193,
    328,
    467,
    582,
    679,
    750,
    819,
    877,
    918,
    977,
    999,
    1000,
]
IMAGENET1K_BALANCED_SIZES = [16, 19, 33, 78, 100, 178, 316, 563, 1000]


@contextlib.contextmanager
def isolated_cache(root: Path) -> Iterator[Path]:
    """Point the WordNet/hierarchy cache at `root` (a new folder: a fresh machine's state)."""
    previous = os.environ.get("GRANULARITY_CACHE")
    os.environ["GRANULARITY_CACHE"] = str(root)
    try:
        yield root
    finally:
        if previous is None:
            os.environ.pop("GRANULARITY_CACHE", None)
        else:
            os.environ["GRANULARITY_CACHE"] = previous


_SESSION_CACHE: list[Path] = []


def session_cache() -> Path:
    """One cache folder for the whole test process, so WordNet is converted and opened once."""
    if not _SESSION_CACHE:
        _SESSION_CACHE.append(Path(tempfile.mkdtemp(prefix="granularity-test-cache-")))
        atexit.register(shutil.rmtree, _SESSION_CACHE[0], True)
    return _SESSION_CACHE[0]


class Case(NamedTuple):
    hierarchy: Hierarchy
    sizes: list[int]
    target: np.ndarray
    target_index: int


def _reference_case(hierarchy: Hierarchy) -> Case:
    ref = reference_hierarchy()
    return Case(hierarchy, REFERENCE_SIZES, ref.mapping(TARGET), LEVELS.index(TARGET))


def _manual(tmp_path: Path, seed: int):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = write_reference_csv(tmp_path / "reference.csv")
    return _reference_case(build_hierarchy("manual", path=path))


def _wordnet(tmp_path: Path, seed: int):
    h = build_hierarchy("wordnet", synsets="imagenet1k")
    return Case(h, IMAGENET1K_SIZES, h.mapping("depth04"), h.level_index("depth04"))


def _wordnet_balanced(tmp_path: Path, seed: int):
    h = build_hierarchy("wordnet", synsets="imagenet1k", rule="balanced")
    return Case(h, IMAGENET1K_BALANCED_SIZES, h.mapping("top33"), h.level_index("top33"))


def _random(tmp_path: Path, seed: int):
    return _reference_case(build_hierarchy("random", reference=reference_hierarchy(), seed=seed))


def _cluster_within(tmp_path: Path, seed: int):
    ref = reference_hierarchy()
    h = build_hierarchy(
        "cluster",
        reference=ref,
        embeddings=leaf_embeddings(ref.num_leaves, seed=seed),
        mode="within",
        target_level=TARGET,
        seed=seed,
    )
    return _reference_case(h)


def _cluster_global(tmp_path: Path, seed: int):
    ref = reference_hierarchy()
    h = build_hierarchy(
        "cluster",
        reference=ref,
        embeddings=leaf_embeddings(ref.num_leaves, seed=seed),
        mode="global",
        target_level=TARGET,
        seed=seed,
    )
    return _reference_case(h)


def _perturbed(tmp_path: Path, seed: int):
    h = build_hierarchy("perturbed", reference=reference_hierarchy(), p=0.4, seed=seed)
    return _reference_case(h)


Factory = Callable[[Path, int], Case]
# kind -> {case name: factory}; `aligned` says whether H(target | level) = 0 at every level
# finer than the target by construction.
KIND_CASES: dict[str, dict[str, tuple[Factory, bool]]] = {
    "manual": {"csv": (_manual, True)},
    "wordnet": {
        "imagenet1k": (_wordnet, True),
        "imagenet1k-balanced": (_wordnet_balanced, True),
    },
    "random": {"random": (_random, False)},
    "cluster": {"within": (_cluster_within, True), "global": (_cluster_global, False)},
    "perturbed": {"p0.4": (_perturbed, False)},
}
