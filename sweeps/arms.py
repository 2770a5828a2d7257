"""Each hierarchy arm's hierarchy, built from the arms table (contracts.ARMS) and saved by content hash.

Derived hierarchies (random, cluster, perturbed) are built in the driver from
the dataset's manual hierarchy with the registry kind and keyword arguments
the arm's table entry names; they are saved under
`<storage>/hierarchies/<content_hash>.json`. Their seed is the replicate seed
by default (`hierarchy_seed: replicate`), so replicate s of a random arm uses
its own random tree and the error bars cover the draw of the tree as well as
data and init; an integer `hierarchy_seed` fixes one tree for all replicates.
A derived arm moves the classes of its leaf level whole (`leaf_levels`, resolved
by the plan: the arm's `leaf_level`, else the dataset's).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from contracts import arm
from sweeps.spec import ArmSpec, Spec, SpecError

HierarchyBuilder = Callable[..., Any]


def _default_builder() -> HierarchyBuilder:
    from hierarchies.registry import build_hierarchy

    return build_hierarchy


class ArmHierarchies:
    """Each arm's hierarchy for a replicate seed, built once (the arms table says how)."""

    def __init__(
        self,
        spec: Spec,
        dataset: Any,
        target_index: int,
        builder: HierarchyBuilder | None,
        leaf_levels: dict[int, str | None] | None = None,
    ) -> None:
        self.spec = spec
        self.leaf_levels = leaf_levels or {}
        self.dataset = dataset
        self.manual = dataset.hierarchy
        self.target_index = target_index
        self.builder = builder
        self.cache: dict[tuple, Any] = {}
        self.embeddings_cache: dict[str | None, np.ndarray] = {}

    def get(self, arm_spec: ArmSpec, index: int, p: float | None, seed: int) -> Any:
        """Build an arm's hierarchy; a bad file or option is a spec error naming the arm's field."""
        from hierarchies import HierarchyError

        field = "path" if arm_spec.path else "embeddings" if arm_spec.embeddings else "kind"
        if arm_spec.leaf_level is not None:
            field = "leaf_level"
        try:
            return self._cached(arm_spec, p, seed, self.leaf_levels.get(index))
        except (HierarchyError, FileNotFoundError, OSError, ValueError) as err:
            raise SpecError([f"factors.hierarchies[{index}].{field}: {err}"]) from None

    def _cached(self, arm_spec: ArmSpec, p: float | None, seed: int, leaf: str | None) -> Any:
        hseed = seed if self.spec.hierarchy_seed == "replicate" else int(self.spec.hierarchy_seed)
        if arm_spec.kind == "manual":
            ident: tuple = ("manual", arm_spec.path, arm_spec.format)
        else:
            ident = (arm_spec.kind, p, arm_spec.embeddings, hseed, leaf)
        if ident not in self.cache:
            self.cache[ident] = self._build(arm_spec, p, hseed, leaf)
        return self.cache[ident]

    def _build(self, arm_spec: ArmSpec, p: float | None, hseed: int, leaf: str | None) -> Any:
        if arm_spec.kind == "manual" and arm_spec.path is None:
            return self.manual  # the dataset's own taxonomy
        entry = arm(arm_spec.kind)
        inputs = {
            "reference": lambda: self.manual,
            "seed": lambda: hseed,
            "p": lambda: p,
            "embeddings": lambda: self._embeddings(arm_spec),
            "target_level": lambda: self.target_index,
            "path": lambda: arm_spec.path,
            "format": lambda: arm_spec.format,
            "leaf_level": lambda: leaf,
        }
        kwargs = {name: inputs[name]() for name in entry.inputs}
        if self.builder is not None or "path" in kwargs:  # a test's builder; a file as it is now
            builder = self.builder or _default_builder()
            return builder(entry.builder, **kwargs, **entry.fixed)
        from hierarchies.cache import cached_build

        everything = {**kwargs, **entry.fixed}
        return cached_build(
            entry.builder, everything, lambda: _default_builder()(entry.builder, **everything)
        )

    def _embeddings(self, arm_spec: ArmSpec) -> np.ndarray:
        if arm_spec.embeddings not in self.embeddings_cache:
            if arm_spec.embeddings:
                self.embeddings_cache[arm_spec.embeddings] = np.load(arm_spec.embeddings)
            else:
                self.embeddings_cache[None] = np.asarray(self.dataset.class_embeddings())
        return self.embeddings_cache[arm_spec.embeddings]


class HierarchyFiles:
    """The plan's hierarchies by content hash, saved as `<storage>/hierarchies/<hash>.json`."""

    def __init__(self, storage: Path, write: bool) -> None:
        self.storage = storage
        self.write = write
        self.hierarchies: dict[str, Any] = {}
        self.paths: dict[str, Path] = {}

    def register(self, h: Any) -> tuple[str, Path]:
        digest = h.content_hash()
        if digest not in self.hierarchies:
            self.hierarchies[digest] = h
            self.paths[digest] = self.storage / "hierarchies" / f"{digest}.json"
            if self.write and not self.paths[digest].exists():
                h.save(self.paths[digest])
        return digest, self.paths[digest]
