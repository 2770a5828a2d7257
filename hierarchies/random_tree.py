"""Random hierarchies: the reference's tree with its leaves shuffled (the paper's control).

Rule: draw a seeded permutation `perm` of the leaves and let leaf x take the
place of leaf perm[x] in the reference tree: ``level_i'[x] = level_i[perm[x]]``.
The tree's shape is unchanged, so every level keeps exactly the reference's
number of nodes (and the reference's leaves-per-node profile), nestedness holds
by construction, and which leaves share a node is random. The leaf level stays
the identity partition, so it is the same label function as the reference's.

`leaf_level`: shuffle the classes of that level instead of the leaves (each
class stays whole; every finer level is the reference's: hierarchies/leaf_level.py).
"""

from __future__ import annotations

import numpy as np

from hierarchies.core import Hierarchy
from hierarchies.leaf_level import derive_over_level


def permute_leaves(
    reference: Hierarchy, permutation: np.ndarray, *, kind: str, meta: dict
) -> Hierarchy:
    """The reference tree with leaf x placed where leaf permutation[x] was."""
    permutation = np.asarray(permutation, dtype=np.int64)
    if sorted(permutation.tolist()) != list(range(reference.num_leaves)):
        raise ValueError(f"not a permutation of {reference.num_leaves} leaves")
    return reference.with_levels(
        [level[permutation] for level in reference.levels], kind=kind, meta=meta
    )


def random_hierarchy(
    *, reference: Hierarchy, seed: int = 0, leaf_level: int | str | None = None
) -> Hierarchy:
    """A random tree with `reference`'s level sizes (leaves, or `leaf_level` classes, shuffled).

    >>> ref = Hierarchy(["a", "b", "c", "d"], ["coarse", "leaf"],
    ...                 [np.array([0, 0, 1, 1]), np.arange(4)])
    >>> random_hierarchy(reference=ref, seed=1).level_sizes()
    [2, 4]
    """
    if not isinstance(reference, Hierarchy):
        raise TypeError(f"reference must be a Hierarchy, got {type(reference).__name__}")

    def derive(tree: Hierarchy) -> Hierarchy:
        permutation = np.random.default_rng(seed).permutation(tree.num_leaves)
        return permute_leaves(
            tree,
            permutation,
            kind="random",
            meta={"reference": tree.content_hash(), "seed": int(seed)},
        )

    return derive_over_level(reference, leaf_level, derive)
