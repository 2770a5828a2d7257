"""The `synthetic` dataset: the paper's patch data model extended to a label tree.

Every node of a label tree (e.g. 2 superclasses -> 8 classes -> 32 subclasses)
owns one vector of an orthonormal dictionary in R^d. An example of true leaf
l is P patches (each a d-vector): `feature_patches[i]` patches carry the
feature of l's ancestor at level i with strength `feature_strength[i]`
(coarse features in more patches and stronger, fine ones rarer and weaker),
every patch carries Gaussian noise of norm ~`noise`, and the remaining
patches are noise only. `easy` examples carry the coarse (level 0) feature;
`hard` examples lack it (strength `hard_strength`, default 0) and keep the
finer ones. The train split has `hard_fraction` hard examples (default 0, as
in the theory); the test split has `test_per_leaf` easy and `test_per_leaf`
hard examples per true leaf.

`extra_levels=[4, 4]` splits each true leaf at random into 4, then each of
those into 4 again: labels with no feature behind them (granularity "too
fine"). The manual hierarchy is the true tree plus these extra levels; its
leaves are the finest nodes.

Patches render as image tiles: a patch of d = t*t values is a t x t tile, and
P = g*g tiles form a (1, g*t, g*t) image, so the `twolayer` backbone's
patch-wise first layer is a conv with kernel = stride = t, and any timm CNN
takes the same images.

See docs/THEORY.md for the calibrated defaults and what they show.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from hierarchies import Hierarchy
from trainables.data import Dataset, Split, mean_input_embeddings, register_dataset


def _check_square(value: int, what: str) -> int:
    side = math.isqrt(value)
    if side * side != value:
        raise ValueError(f"{what} must be a perfect square to render as tiles, got {value}")
    return side


def images_to_patches(images: torch.Tensor, tile: int) -> torch.Tensor:
    """(N, 1, g*t, g*t) images -> (N, g*g, t*t) patches (inverse of the rendering)."""
    n, _, height, _ = images.shape
    grid = height // tile
    x = images.reshape(n, grid, tile, grid, tile).permute(0, 1, 3, 2, 4)
    return x.reshape(n, grid * grid, tile * tile)


def _patches_to_images(patches: torch.Tensor, tile: int) -> torch.Tensor:
    n, num_patches, _ = patches.shape
    grid = math.isqrt(num_patches)
    x = patches.reshape(n, grid, grid, tile, tile).permute(0, 1, 3, 2, 4)
    return x.reshape(n, 1, grid * tile, grid * tile).contiguous()


def _tree(branching: Sequence[int]) -> list[np.ndarray]:
    """Per level, true leaf -> node id, for a complete tree with this branching."""
    num_leaves = int(np.prod(branching))
    leaves = np.arange(num_leaves)
    return [
        leaves // (num_leaves // int(np.prod(branching[: i + 1]))) for i in range(len(branching))
    ]


def _generate(
    true_leaf: np.ndarray,
    hard: np.ndarray,
    *,
    tree: list[np.ndarray],
    features: list[np.ndarray],
    num_patches: int,
    dim: int,
    feature_patches: Sequence[int],
    feature_strength: Sequence[float],
    hard_strength: float,
    noise: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """(N, P, d) float32 patches for examples of the given true leaves."""
    n = len(true_leaf)
    # Isotropic noise scaled so each patch's noise has norm ~ `noise`.
    x = rng.standard_normal((n, num_patches, dim), dtype=np.float32) * (noise / math.sqrt(dim))
    # Distinct random patch positions per example; level i takes the next
    # feature_patches[i] of them.
    positions = np.argsort(rng.random((n, num_patches)), axis=1)
    rows = np.arange(n)[:, None]
    start = 0
    for i, (count, strength) in enumerate(zip(feature_patches, feature_strength, strict=True)):
        if count == 0:
            continue
        amplitude = np.full(n, strength, dtype=np.float32)
        if i == 0:
            amplitude[hard] = hard_strength
        vectors = features[i][tree[i][true_leaf]] * amplitude[:, None]  # (n, d)
        slots = positions[:, start : start + count]
        x[rows, slots] += vectors[:, None, :]
        start += count
    return x


@register_dataset
def synthetic(
    *,
    branching: Sequence[int] = (4, 2, 4),
    level_names: Sequence[str] = ("superclass", "class", "subclass"),
    extra_levels: Sequence[int] = (),
    train_per_leaf: int = 40,
    test_per_leaf: int = 20,
    num_patches: int = 16,
    dim: int = 64,
    feature_patches: Sequence[int] = (6, 2, 1),
    feature_strength: Sequence[float] = (2.0, 1.0, 1.0),
    noise: float = 0.75,
    hard_fraction: float = 0.0,
    hard_strength: float = 0.0,
    seed: int = 0,
) -> Dataset:
    """The synthetic label-tree patch data (see the module docstring).

    `seed` fixes the data itself (dictionary, examples, extra-level splits);
    a trial's own seed picks its subset and initialisation.
    """
    branching = [int(b) for b in branching]
    extra_levels = [int(b) for b in extra_levels]
    depth = len(branching)
    if len(level_names) != depth:
        raise ValueError(f"level_names {list(level_names)} must name the {depth} true levels")
    for name, values in (
        ("feature_patches", feature_patches),
        ("feature_strength", feature_strength),
    ):
        if len(values) != depth:
            raise ValueError(f"{name} needs one value per true level ({depth}), got {list(values)}")
    if any(b < 1 for b in branching + extra_levels):
        raise ValueError(f"branching factors must be >= 1, got {branching} + {extra_levels}")
    if sum(feature_patches) > num_patches:
        raise ValueError(
            f"feature_patches {list(feature_patches)} need {sum(feature_patches)} patches, "
            f"more than num_patches={num_patches}"
        )
    if not 0.0 <= hard_fraction <= 1.0:
        raise ValueError(f"hard_fraction must be in [0, 1], got {hard_fraction}")
    tile = _check_square(dim, "dim")
    _check_square(num_patches, "num_patches")
    tree = _tree(branching)
    num_nodes = [int(np.prod(branching[: i + 1])) for i in range(depth)]
    if sum(num_nodes) > dim:
        raise ValueError(f"dim={dim} is too small for {sum(num_nodes)} orthonormal node features")

    rng = np.random.default_rng(seed)
    # An orthonormal dictionary: one row per tree node, split by level.
    basis = np.linalg.qr(rng.standard_normal((dim, dim)))[0].T.astype(np.float32)
    offsets = np.cumsum([0] + num_nodes)
    features = [basis[offsets[i] : offsets[i + 1]] for i in range(depth)]
    generate = dict(
        tree=tree,
        features=features,
        num_patches=num_patches,
        dim=dim,
        feature_patches=feature_patches,
        feature_strength=feature_strength,
        hard_strength=hard_strength,
        noise=noise,
        rng=rng,
    )
    num_true = num_nodes[-1]
    split_factor = int(np.prod(extra_levels)) if extra_levels else 1

    def make_split(per_leaf: int, hard_per_leaf: int) -> tuple[Split, np.ndarray]:
        true_leaf = np.repeat(np.arange(num_true), per_leaf + hard_per_leaf)
        hard = np.tile(np.r_[np.zeros(per_leaf, bool), np.ones(hard_per_leaf, bool)], num_true)
        patches = _generate(true_leaf, hard, **generate)
        # Extra levels: within each true leaf, deal examples evenly at random
        # over its split_factor sub-leaves.
        sub = np.concatenate(
            [rng.permutation(per_leaf + hard_per_leaf) % split_factor for _ in range(num_true)]
        )
        leaf = true_leaf * split_factor + sub
        images = _patches_to_images(torch.from_numpy(patches), tile)
        groups = {"easy": ~hard, "hard": hard} if hard_per_leaf else {}
        return Split(leaf=leaf, inputs=images, groups=groups), hard

    n_hard_train = int(round(hard_fraction * train_per_leaf))
    train, _ = make_split(train_per_leaf - n_hard_train, n_hard_train)
    train.groups = {}
    test, _ = make_split(test_per_leaf, test_per_leaf)

    # Manual hierarchy over the finest leaves: true levels then extra levels.
    num_leaves = num_true * split_factor
    leaves = np.arange(num_leaves)
    levels = [level[leaves // split_factor] for level in tree]
    names = list(level_names)
    for j in range(len(extra_levels)):
        levels.append(leaves // int(np.prod(extra_levels[j + 1 :])))
        names.append(f"extra{j + 1}")
    node_names = [
        [f"{name}{k}" for k in range(int(level.max()) + 1)]
        for name, level in zip(names, levels, strict=True)
    ]
    hierarchy = Hierarchy(
        leaf_names=list(node_names[-1]),
        level_names=names,
        levels=levels,
        node_names=node_names,
        kind="manual",
        meta={"dataset": "synthetic"},
    )

    def embed() -> np.ndarray:
        # Mean patch per leaf: position-invariant, so it recovers the tree.
        patches = images_to_patches(train.inputs, tile).mean(dim=1)
        return mean_input_embeddings(patches, train.leaf, num_leaves)

    side = math.isqrt(num_patches) * tile
    return Dataset(
        name="synthetic",
        hierarchy=hierarchy,
        default_target=names[0],
        train=train,
        test=test,
        input_shape=(1, side, side),
        patch_size=tile,
        embed=embed,
        meta={"true_levels": depth, "num_true_leaves": num_true},
        # The true leaves are the coherent classes; the extra levels are random splits.
        leaf_level=names[depth - 1],
    )
