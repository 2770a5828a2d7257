"""Derived kinds over a coherent leaf level: classes move whole, finer levels stay as they were."""

from __future__ import annotations

import numpy as np
import pytest

from hierarchies import Hierarchy, HierarchyError
from hierarchies.cluster import cluster_hierarchy
from hierarchies.leaf_level import coarse_view
from hierarchies.perturbed import perturbed_hierarchy
from hierarchies.random_tree import random_hierarchy

RADICALS, CHARACTERS_PER_RADICAL, FONTS = 6, 4, 5


def glyph_tree() -> Hierarchy:
    """radical -> character -> glyph (character x font): a glyph is one drawing, not a class."""
    n_chars = RADICALS * CHARACTERS_PER_RADICAL
    glyphs = np.arange(n_chars * FONTS)
    character = glyphs // FONTS
    return Hierarchy(
        leaf_names=[f"c{c}_f{g % FONTS}" for g, c in zip(glyphs, character, strict=True)],
        level_names=["radical", "character", "glyph"],
        levels=[character // CHARACTERS_PER_RADICAL, character, glyphs],
    )


def embeddings(h: Hierarchy) -> np.ndarray:
    rng = np.random.default_rng(3)
    centre = rng.standard_normal((RADICALS, 8)) * 4
    return centre[h.levels[0]] + rng.standard_normal((h.num_leaves, 8))


DERIVED = {
    "random": lambda h, seed: random_hierarchy(reference=h, seed=seed, leaf_level="character"),
    "perturbed": lambda h, seed: perturbed_hierarchy(
        reference=h, p=0.5, seed=seed, leaf_level="character"
    ),
    "cluster_within": lambda h, seed: cluster_hierarchy(
        reference=h,
        embeddings=embeddings(h),
        mode="within",
        target_level=0,
        seed=seed,
        leaf_level="character",
    ),
    "cluster_global": lambda h, seed: cluster_hierarchy(
        reference=h,
        embeddings=embeddings(h),
        mode="global",
        target_level=0,
        seed=seed,
        leaf_level="character",
    ),
}


@pytest.mark.parametrize("kind", sorted(DERIVED))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_character_stays_whole_at_every_coarser_level(kind, seed):
    ref = glyph_tree()
    derived = DERIVED[kind](ref, seed)
    character = ref.mapping("character")
    for level in range(ref.level_index("character") + 1):
        nodes = derived.levels[level]
        for c in np.unique(character):
            assert len(np.unique(nodes[character == c])) == 1, (kind, level, c)
    assert derived.level_sizes() == ref.level_sizes()  # the tree's shape is kept
    assert derived.meta["leaf_level"] == "character"


@pytest.mark.parametrize("seed", [0, 1])
def test_finer_levels_are_one_label_function_in_every_kind(seed):
    ref = glyph_tree()
    kinds = {"manual": ref, **{k: make(ref, seed) for k, make in DERIVED.items()}}
    for level in ("character", "glyph"):
        hashes = {k: h.label_function_hash(level) for k, h in kinds.items()}
        assert len(set(hashes.values())) == 1, (level, hashes)
    # Above the leaf level the random tree really is another grouping of the characters.
    assert kinds["random"].label_function_hash("radical") != ref.label_function_hash("radical")


def test_without_a_leaf_level_random_permutes_single_glyphs():
    """The old control: glyphs of one character land in different radicals (label noise)."""
    ref = glyph_tree()
    old = random_hierarchy(reference=ref, seed=0)
    character = ref.mapping("character")
    split = [len(np.unique(old.levels[0][character == c])) for c in np.unique(character)]
    assert max(split) > 1
    assert old.label_function_hash("character") != ref.label_function_hash("character")


def test_the_finest_level_as_leaf_level_is_the_whole_tree():
    ref = glyph_tree()
    for seed in (0, 4):
        whole = random_hierarchy(reference=ref, seed=seed)
        named = random_hierarchy(reference=ref, seed=seed, leaf_level="glyph")
        assert named.content_hash() == whole.content_hash()


def test_coarse_view_has_one_leaf_per_class():
    cut, node_of = coarse_view(glyph_tree(), "character")
    assert cut.num_leaves == RADICALS * CHARACTERS_PER_RADICAL
    assert cut.level_names == ["radical", "character"]
    assert node_of.tolist() == (np.arange(cut.num_leaves * FONTS) // FONTS).tolist()


def test_a_leaf_level_that_is_no_level_is_refused():
    with pytest.raises(HierarchyError, match="unknown level 'stroke'"):
        random_hierarchy(reference=glyph_tree(), leaf_level="stroke")


def test_cluster_within_needs_the_leaf_level_at_or_below_the_target():
    ref = glyph_tree()
    with pytest.raises(HierarchyError, match="at or below the target"):
        cluster_hierarchy(
            reference=ref,
            embeddings=embeddings(ref),
            mode="within",
            target_level="character",
            leaf_level="radical",
        )
