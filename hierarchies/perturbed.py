"""Perturbed hierarchies: a fraction p of the leaves placed at random, the rest where they were.

Rule: draw a seeded order of the leaves. The first k = round(p * n_leaves)
form the moved set (the moved set for a smaller p is inside the one for a
larger p). The moved leaves are shuffled among their own places in the
reference tree by a uniformly random permutation, grown one leaf at a time
(Feller's coupling: the new leaf either keeps its place, with probability
1/(size of the moved set), or is spliced into the permutation's cycle after a
random earlier leaf), so raising p by one leaf changes where at most two
leaves sit: alignment falls along one path as p grows instead of being redrawn
at every p.

Only which leaf sits where changes, never the tree, so every level keeps the
reference's node counts and leaves per node, and nestedness holds. p = 0
reproduces the reference's partitions; p = 1 is a uniformly random placement
of every leaf, i.e. a `random` hierarchy. In between, a node holds about a
fraction 1 - p of its own leaves, so alignment with the reference's levels
(H(target | level) up, purity and NMI down) moves from the reference's value
to the random hierarchy's as p grows.

`leaf_level`: move a fraction p of that level's classes instead of leaves
(each class stays whole; every finer level is the reference's:
hierarchies/leaf_level.py).
"""

from __future__ import annotations

import numpy as np

from hierarchies.core import Hierarchy, HierarchyError
from hierarchies.leaf_level import derive_over_level
from hierarchies.random_tree import permute_leaves


def random_permutation_path(n: int, k: int, *, seed: int) -> np.ndarray:
    """`place[x]`: the leaf whose place leaf x takes, after shuffling the first k of a seeded order.

    The same seed gives one growing path: the result for k+1 differs from the
    one for k in at most two leaves, and for k = n it is a uniform permutation.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    # Draw all choices up front so the path does not depend on k.
    choices = (rng.random(n) * (np.arange(n) + 1)).astype(np.int64)
    place = np.arange(n)
    for t in range(k):
        new, j = order[t], choices[t]
        if j < t:  # splice `new` into the cycle after order[j]; j == t keeps its place
            earlier = order[j]
            place[new], place[earlier] = place[earlier], new
    return place


def perturbed_hierarchy(
    *, reference: Hierarchy, p: float, seed: int = 0, leaf_level: int | str | None = None
) -> Hierarchy:
    """`reference` with a fraction `p` (0..1) of its leaves placed at random (rule above).

    >>> ref = Hierarchy(["a", "b", "c", "d"], ["coarse", "leaf"],
    ...                 [np.array([0, 0, 1, 1]), np.arange(4)])
    >>> perturbed_hierarchy(reference=ref, p=0.0).levels[0].tolist()
    [0, 0, 1, 1]
    """
    if not isinstance(reference, Hierarchy):
        raise TypeError(f"reference must be a Hierarchy, got {type(reference).__name__}")
    if not 0.0 <= float(p) <= 1.0:
        raise HierarchyError(f"perturbation fraction p={p} is outside [0, 1]")

    def derive(tree: Hierarchy) -> Hierarchy:
        n = tree.num_leaves
        place = random_permutation_path(n, int(round(float(p) * n)), seed=seed)
        return permute_leaves(
            tree,
            place,
            kind="perturbed",
            meta={
                "reference": tree.content_hash(),
                "p": float(p),
                "seed": int(seed),
                "leaves_moved": int((place != np.arange(n)).sum()),
            },
        )

    return derive_over_level(reference, leaf_level, derive)
