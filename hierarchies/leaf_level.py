"""Derived kinds over a chosen leaf level: built on the tree cut there, finer levels kept.

The paper's random hierarchy permutes coherent leaf classes (species), never
single images; a dataset whose manual leaves are finer than its coherent
classes (synthetic: the featureless `extra` splits; glyphs: one drawing per
character and font) names its coherent level, and the derived kinds (`random`,
`perturbed`, `cluster`) move whole classes of that level:

- `coarse_view(reference, leaf_level)`: the reference cut at `leaf_level`, a
  hierarchy whose leaves are that level's classes (levels 0..leaf_level), plus
  each leaf's class there.
- `derive_over_level(reference, leaf_level, derive)`: `derive` builds a
  hierarchy over the cut tree; its levels are mapped back to the leaves, and
  every level finer than `leaf_level` is the reference's own, so those levels
  are one label function in every kind (shared pretraining still dedups them).

`leaf_level` None (or the finest level when it is the identity on the leaves)
is the whole tree: `derive(reference)` unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hierarchies.core import Hierarchy, canonical_labels


def coarse_view(reference: Hierarchy, leaf_level: int | str) -> tuple[Hierarchy, np.ndarray]:
    """(the reference cut at `leaf_level`, leaf -> its class there as a leaf id of the cut tree).

    >>> ref = Hierarchy(["a", "b", "c", "d"], ["coarse", "mid", "leaf"],
    ...                 [np.array([0, 0, 1, 1]), np.array([0, 0, 1, 2]), np.arange(4)])
    >>> cut, node_of = coarse_view(ref, "mid")
    >>> cut.level_names, cut.leaf_names, node_of.tolist()
    (['coarse', 'mid'], ['mid_0', 'mid_1', 'mid_2'], [0, 0, 1, 2])
    """
    index = reference.level_index(leaf_level)
    node_of = canonical_labels(reference.levels[index])
    _, first = np.unique(node_of, return_index=True)  # one leaf standing for each class
    names = reference.node_names[index] if reference.node_names else None
    original = reference.levels[index][first]
    leaf_names = [names[i] if names else f"node_{i}" for i in original.tolist()]
    cut = Hierarchy(
        leaf_names=leaf_names,
        level_names=list(reference.level_names[: index + 1]),
        levels=[reference.levels[i][first] for i in range(index + 1)],
        kind=reference.kind,
    )
    return cut, node_of


def is_whole_tree(reference: Hierarchy, leaf_level: int | str | None) -> bool:
    """Whether `leaf_level` leaves nothing out: None, or a finest level that is the leaves."""
    if leaf_level is None:
        return True
    index = reference.level_index(leaf_level)
    finest = reference.levels[index]
    return index == reference.num_levels - 1 and len(np.unique(finest)) == reference.num_leaves


def derive_over_level(
    reference: Hierarchy,
    leaf_level: int | str | None,
    derive: Callable[[Hierarchy], Hierarchy],
) -> Hierarchy:
    """`derive` applied to the tree cut at `leaf_level`; finer levels stay the reference's."""
    if is_whole_tree(reference, leaf_level):
        return derive(reference)
    assert leaf_level is not None
    index = reference.level_index(leaf_level)
    cut, node_of = coarse_view(reference, index)
    derived = derive(cut)
    levels = [derived.levels[i][node_of] for i in range(index + 1)]
    levels += [level.copy() for level in reference.levels[index + 1 :]]
    meta = {
        **derived.meta,
        "reference": reference.content_hash(),
        "leaf_level": reference.level_names[index],
    }
    return reference.with_levels(levels, kind=derived.kind, meta=meta)


def per_class_embeddings(embeddings: np.ndarray, node_of: np.ndarray) -> np.ndarray:
    """The mean leaf embedding of each class (`node_of`: leaf -> class id 0..k-1)."""
    k = int(node_of.max()) + 1 if len(node_of) else 0
    sums = np.zeros((k, embeddings.shape[1]))
    np.add.at(sums, node_of, embeddings)
    return sums / np.bincount(node_of, minlength=k)[:, None]
