"""The Hierarchy object: a tree over leaf classes cut into granularity levels.

A hierarchy is stored as one integer array per level mapping leaf id -> node id
at that level. Level 0 is the coarsest; the last level is the finest (usually
the leaves themselves). Every level must be a coarsening of the next finer one:
two leaves in the same node at level i+1 share a node at level i.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fileio import write_atomic


class HierarchyError(ValueError):
    """A hierarchy (or a file claimed to hold one) is malformed."""


def canonical_labels(mapping: np.ndarray) -> np.ndarray:
    """Renumber node ids by first appearance, so equal partitions compare equal."""
    mapping = np.asarray(mapping, dtype=np.int64)
    _, first_index, inverse = np.unique(mapping, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first_index))
    return order[inverse].astype(np.int64)


def label_function_hash(mapping: np.ndarray) -> str:
    """Identity of a label function (leaf -> label), independent of node numbering.

    Two hierarchy kinds that induce the same partition of the leaves (every
    kind's leaf level, say) hash the same, so they share one pretraining.
    """
    canon = canonical_labels(mapping)
    return hashlib.sha256(canon.astype("<i8").tobytes()).hexdigest()[:16]


@dataclass
class Hierarchy:
    """A tree over `leaf_names`, cut into levels (coarsest first).

    Example:
        >>> h = Hierarchy(
        ...     leaf_names=["cat", "dog", "oak"],
        ...     level_names=["kingdom", "species"],
        ...     levels=[np.array([0, 0, 1]), np.array([0, 1, 2])],
        ...     node_names=[["animal", "plant"], ["cat", "dog", "oak"]],
        ... )
        >>> h.level_sizes()
        [2, 3]
        >>> h.labels("kingdom", np.array([2, 0])).tolist()
        [1, 0]
    """

    leaf_names: list[str]
    level_names: list[str]
    levels: list[np.ndarray]
    node_names: list[list[str]] | None = None
    kind: str = "manual"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.levels = [np.asarray(level, dtype=np.int64) for level in self.levels]
        if self.node_names is None:
            self.node_names = [
                [f"{name}_{i}" for i in range(int(level.max()) + 1 if level.size else 0)]
                for name, level in zip(self.level_names, self.levels, strict=True)
            ]
        self.validate()

    # ---- structure -------------------------------------------------------
    @property
    def num_leaves(self) -> int:
        return len(self.leaf_names)

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    def level_sizes(self) -> list[int]:
        """Number of distinct nodes at each level, coarsest first."""
        return [int(np.unique(level).size) for level in self.levels]

    def level_index(self, level: int | str) -> int:
        """Resolve a level given by name or (possibly negative) index."""
        if isinstance(level, str):
            if level in self.level_names:
                return self.level_names.index(level)
            if level.lstrip("-").isdigit():
                level = int(level)
            else:
                raise HierarchyError(
                    f"unknown level {level!r}; levels are {self.level_names} "
                    f"(or an index 0..{self.num_levels - 1})"
                )
        index = int(level)
        if index < 0:
            index += self.num_levels
        if not 0 <= index < self.num_levels:
            raise HierarchyError(
                f"level {level} is out of range; this hierarchy has levels 0..{self.num_levels - 1} "
                f"({self.level_names})"
            )
        return index

    def mapping(self, level: int | str) -> np.ndarray:
        """leaf id -> node id at `level`."""
        return self.levels[self.level_index(level)]

    def labels(self, level: int | str, leaf_labels: np.ndarray) -> np.ndarray:
        """Per-example labels at `level` for examples whose leaf classes are `leaf_labels`."""
        return self.mapping(level)[np.asarray(leaf_labels, dtype=np.int64)]

    def num_classes(self, level: int | str) -> int:
        return self.level_sizes()[self.level_index(level)]

    def label_function_hash(self, level: int | str) -> str:
        return label_function_hash(self.mapping(level))

    def validate(self) -> None:
        """Raise HierarchyError naming the first problem found."""
        n = len(self.leaf_names)
        if not self.levels:
            raise HierarchyError("a hierarchy needs at least one level")
        if len(self.level_names) != len(self.levels):
            raise HierarchyError(
                f"{len(self.level_names)} level names for {len(self.levels)} levels"
            )
        if len(set(self.level_names)) != len(self.level_names):
            raise HierarchyError(f"level names must be unique, got {self.level_names}")
        for name, level in zip(self.level_names, self.levels, strict=True):
            if level.shape != (n,):
                raise HierarchyError(
                    f"level {name!r} maps {level.shape[0] if level.ndim else 0} leaves, expected {n}"
                )
            if n and level.min() < 0:
                raise HierarchyError(f"level {name!r} has a negative node id")
        for i in range(len(self.levels) - 1):
            coarse, fine = self.levels[i], self.levels[i + 1]
            # Each fine node must sit inside exactly one coarse node.
            pairs = np.unique(np.stack([fine, coarse], axis=1), axis=0)
            fine_ids, counts = np.unique(pairs[:, 0], return_counts=True)
            if (counts > 1).any():
                bad_node = int(fine_ids[np.argmax(counts > 1)])
                leaves = np.flatnonzero(fine == bad_node)
                spans = sorted({int(c) for c in coarse[leaves]})
                leaf = int(next(lf for lf in leaves if coarse[lf] != coarse[leaves[0]]))
                raise HierarchyError(
                    f"level {self.level_names[i]!r} is not a coarsening of "
                    f"{self.level_names[i + 1]!r}: leaf {leaf} ({self.leaf_names[leaf]!r}) is in "
                    f"node {bad_node} at the finer level, whose leaves span coarse nodes {spans}"
                )
        if self.node_names is not None:
            if len(self.node_names) != len(self.levels):
                raise HierarchyError("node_names needs one list per level")
            for name, names, level in zip(
                self.level_names, self.node_names, self.levels, strict=True
            ):
                if level.size and len(names) <= int(level.max()):
                    raise HierarchyError(
                        f"level {name!r} uses node id {int(level.max())} but names only "
                        f"{len(names)} nodes"
                    )

    # ---- identity and persistence ---------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": "granularity.hierarchy/1",
            "kind": self.kind,
            "leaf_names": list(self.leaf_names),
            "level_names": list(self.level_names),
            "levels": [level.tolist() for level in self.levels],
            "node_names": [list(names) for names in self.node_names or []],
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Hierarchy:
        if not isinstance(data, dict) or data.get("format") != "granularity.hierarchy/1":
            raise HierarchyError(
                "not a granularity hierarchy: expected a JSON object with "
                "format='granularity.hierarchy/1'"
            )
        try:
            return cls(
                leaf_names=list(data["leaf_names"]),
                level_names=list(data["level_names"]),
                levels=[np.asarray(level, dtype=np.int64) for level in data["levels"]],
                node_names=[list(n) for n in data["node_names"]] or None,
                kind=data.get("kind", "manual"),
                meta=dict(data.get("meta", {})),
            )
        except KeyError as err:
            raise HierarchyError(f"hierarchy JSON lacks the field {err.args[0]!r}") from err

    def content_hash(self) -> str:
        """sha256 over the structure (leaves, levels, names), not over `meta`."""
        payload = {k: v for k, v in self.to_dict().items() if k != "meta"}
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def save(self, path: str | os.PathLike) -> Path:
        """Write JSON atomically: a reader never sees a half-written file."""
        return write_atomic(path, json.dumps(self.to_dict()).encode())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Hierarchy:
        path = Path(path)
        if not path.is_file():
            raise HierarchyError(f"hierarchy file {str(path)!r} does not exist")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise HierarchyError(f"{str(path)!r} is not valid JSON: {err}") from err
        return cls.from_dict(data)

    # ---- derived hierarchies --------------------------------------------
    def with_levels(
        self,
        levels: Sequence[np.ndarray],
        *,
        kind: str,
        level_names: Sequence[str] | None = None,
        meta: dict | None = None,
    ) -> Hierarchy:
        """A hierarchy over the same leaves with other level mappings."""
        return Hierarchy(
            leaf_names=list(self.leaf_names),
            level_names=list(level_names or self.level_names),
            levels=[np.asarray(level) for level in levels],
            node_names=None,
            kind=kind,
            meta=dict(meta or {}),
        )
