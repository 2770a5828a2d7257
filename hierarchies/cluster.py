"""Cluster hierarchies: kMeans on per-leaf embeddings, with the reference's level sizes.

Construction (bottom-up, so every level nests in the next finer one): within a
group of leaves, the finest level is kMeans on the leaf embeddings into as many
clusters as the reference has nodes there; each coarser level is kMeans on the
previous level's cluster centroids (weighted by cluster size) into the
reference's count for that level. A level as fine as the leaves is the
identity, so every kind's leaf level is the same label function.

- ``mode="within"``: the groups are the reference's target-level classes. The
  target level and every coarser one are copied from the reference; at each
  finer level, target class c gets exactly as many clusters as the reference
  has nodes inside c there. Each cluster lies inside one target class, so
  H(target | level) = 0 at every finer level, and every level has the
  reference's size.
- ``mode="global"``: one group, all leaves; every level (target and coarser
  included) is clustered with the reference's size, ignoring the target.

`leaf_level`: cluster that level's classes (each class's embedding is the
mean of its leaves') instead of the leaves; every finer level is the
reference's (hierarchies/leaf_level.py). `within` needs the target at or
above `leaf_level`.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np

from hierarchies.core import Hierarchy, HierarchyError
from hierarchies.leaf_level import (
    coarse_view,
    derive_over_level,
    is_whole_tree,
    per_class_embeddings,
)

ClusterMode = Literal["within", "global"]


def kmeans_exact(
    points: np.ndarray, k: int, *, seed: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """kMeans labels with exactly `k` non-empty clusters (0..k-1), 1 <= k <= len(points).

    kMeans can leave clusters empty when points coincide; those are refilled by
    splitting the largest cluster, so level sizes are always exact.
    """
    n = len(points)
    if not 1 <= k <= n:
        raise HierarchyError(f"cannot make {k} clusters from {n} points")
    if k == n:
        return np.arange(n, dtype=np.int64)
    if k == 1:
        return np.zeros(n, dtype=np.int64)
    from sklearn.cluster import KMeans  # here, not at import: see hierarchies/alignment.py
    from sklearn.exceptions import ConvergenceWarning

    model = KMeans(n_clusters=k, n_init=3, random_state=seed)
    with warnings.catch_warnings():
        # Fewer distinct points than k: handled below by splitting clusters.
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = model.fit_predict(points, sample_weight=weights).astype(np.int64)
    _, labels = np.unique(labels, return_inverse=True)
    labels = labels.astype(np.int64)
    next_id = int(labels.max()) + 1
    while next_id < k:
        counts = np.bincount(labels)
        largest = int(np.argmax(counts))
        members = np.flatnonzero(labels == largest)
        labels[members[-1]] = next_id
        next_id += 1
    return labels


def _agglomerate(
    embeddings: np.ndarray, sizes_fine_to_coarse: list[int], *, seed: int
) -> list[np.ndarray]:
    """Bottom-up nested clustering of one group: one labels array per size, finest first."""
    points = embeddings
    weights = np.ones(len(points))
    leaf_to_node = np.arange(len(points), dtype=np.int64)
    out = []
    for k in sizes_fine_to_coarse:
        node_labels = kmeans_exact(points, k, seed=seed, weights=weights)
        leaf_to_node = node_labels[leaf_to_node]
        out.append(leaf_to_node.copy())
        # Centroids of the new clusters (weighted by how many leaves each holds).
        totals = np.zeros((k, points.shape[1]))
        np.add.at(totals, node_labels, points * weights[:, None])
        new_weights = np.bincount(node_labels, weights=weights, minlength=k)
        points = totals / new_weights[:, None]
        weights = new_weights
    return out


def cluster_hierarchy(
    *,
    reference: Hierarchy,
    embeddings: np.ndarray,
    mode: ClusterMode = "within",
    target_level: int | str = 0,
    seed: int = 0,
    leaf_level: int | str | None = None,
) -> Hierarchy:
    """A kMeans hierarchy over `reference`'s leaves (or `leaf_level`'s classes), its level sizes.

    `embeddings`: one row per leaf (e.g. CLIP text embeddings of class names,
    or the mean image embedding of each class). Rule in the module docstring.
    """
    if not isinstance(reference, Hierarchy):
        raise TypeError(f"reference must be a Hierarchy, got {type(reference).__name__}")
    if mode not in ("within", "global"):
        raise HierarchyError(f"unknown cluster mode {mode!r}; accepted: 'within', 'global'")
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if embeddings.ndim != 2 or embeddings.shape[0] != reference.num_leaves:
        raise HierarchyError(
            f"embeddings must have shape (n_leaves={reference.num_leaves}, d), "
            f"got {embeddings.shape}"
        )
    if not np.isfinite(embeddings).all():
        raise HierarchyError("embeddings contain NaN or inf")
    target = reference.level_index(target_level)
    if is_whole_tree(reference, leaf_level):
        return _cluster_tree(reference, embeddings, mode, target, seed)
    cut_index = reference.level_index(leaf_level)
    if mode == "within" and target > cut_index:
        raise HierarchyError(
            f"leaf_level {reference.level_names[cut_index]!r} is coarser than the target level "
            f"{reference.level_names[target]!r}; cluster_within clusters inside target classes, "
            "so give a leaf_level at or below the target"
        )
    _, node_of = coarse_view(reference, cut_index)
    class_embeddings = per_class_embeddings(embeddings, node_of)
    return derive_over_level(
        reference, cut_index, lambda cut: _cluster_tree(cut, class_embeddings, mode, target, seed)
    )


def _cluster_tree(
    reference: Hierarchy, embeddings: np.ndarray, mode: ClusterMode, target: int, seed: int
) -> Hierarchy:
    """The kMeans hierarchy over `reference`'s leaves (target: a level index)."""
    n_levels = reference.num_levels
    levels: list[np.ndarray] = [np.zeros(0)] * n_levels
    if mode == "global":
        groups = [np.arange(reference.num_leaves)]
        first_clustered = 0
    else:
        target_map = reference.levels[target]
        groups = [np.flatnonzero(target_map == c) for c in np.unique(target_map)]
        first_clustered = target + 1
        for i in range(first_clustered):
            levels[i] = reference.levels[i].copy()
    offsets = np.zeros(n_levels, dtype=np.int64)
    for i in range(first_clustered, n_levels):
        levels[i] = np.empty(reference.num_leaves, dtype=np.int64)
    for group_number, leaves in enumerate(groups):
        clustered = range(first_clustered, n_levels)
        # The reference's node count inside this group at each clustered level, finest first.
        sizes = [int(np.unique(reference.levels[i][leaves]).size) for i in reversed(clustered)]
        group_seed = int(np.random.default_rng([seed, group_number]).integers(2**31))
        for i, labels in zip(
            reversed(clustered),
            _agglomerate(embeddings[leaves], sizes, seed=group_seed),
            strict=True,
        ):
            levels[i][leaves] = labels + offsets[i]
            offsets[i] += int(labels.max()) + 1
    return reference.with_levels(
        levels,
        kind=f"cluster_{mode}",
        meta={
            "reference": reference.content_hash(),
            "mode": mode,
            "target_level": reference.level_names[target],
            "seed": int(seed),
        },
    )
