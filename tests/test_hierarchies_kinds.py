"""Every registered hierarchy kind: nestedness, exact sizes, seeding, JSON round trip, hashes,
alignment with the target; plus the registry itself and the perturbed dial."""

from __future__ import annotations

import numpy as np
import pytest
from hierarchy_fixtures import (
    KIND_CASES,
    LEVELS,
    REFERENCE_SIZES,
    TARGET,
    isolated_cache,
    leaf_embeddings,
    reference_hierarchy,
    session_cache,
)

from hierarchies import (
    Hierarchy,
    alignment_metrics,
    build_hierarchy,
    is_hierarchy_kind,
    list_hierarchy_kinds,
)
from hierarchies.registry import register_hierarchy

CASES = [
    pytest.param(kind, case, id=f"{kind}-{case}")
    for kind in list_hierarchy_kinds()
    for case in KIND_CASES.get(kind, {None: None})
]


@pytest.fixture(scope="module", autouse=True)
def shared_cache():
    with isolated_cache(session_cache()):
        yield


_BUILT: dict[tuple[str, str, int], object] = {}


def build(kind, case, tmp_path, seed=0, *, reuse=True):
    """The case's hierarchy; built once per module unless `reuse=False` (seeding tests)."""
    assert kind in KIND_CASES and case is not None, (
        f"hierarchy kind {kind!r} has no fixture factory: add one to "
        "tests/hierarchy_fixtures.py KIND_CASES"
    )
    factory, _ = KIND_CASES[kind][case]
    if not reuse:
        return factory(tmp_path, seed)
    if (kind, case, seed) not in _BUILT:
        _BUILT[kind, case, seed] = factory(tmp_path, seed)
    return _BUILT[kind, case, seed]


def is_nested(h: Hierarchy) -> bool:
    for coarse, fine in zip(h.levels, h.levels[1:], strict=False):
        pairs = np.unique(np.stack([fine, coarse], axis=1), axis=0)
        if np.unique(pairs[:, 0]).size != pairs.shape[0]:
            return False
    return True


@pytest.mark.parametrize(("kind", "case"), CASES)
def test_levels_nest_and_have_the_expected_sizes(kind, case, tmp_path):
    built = build(kind, case, tmp_path)
    assert is_nested(built.hierarchy)
    assert built.hierarchy.level_sizes() == built.sizes


@pytest.mark.parametrize(("kind", "case"), CASES)
def test_same_seed_same_hierarchy(kind, case, tmp_path):
    first = build(kind, case, tmp_path / "a", seed=3, reuse=False)
    second = build(kind, case, tmp_path / "b", seed=3, reuse=False)
    assert first.hierarchy.content_hash() == second.hierarchy.content_hash()
    for a, b in zip(first.hierarchy.levels, second.hierarchy.levels, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("kind", "case"), CASES)
def test_json_round_trip_keeps_structure_and_hash(kind, case, tmp_path):
    h = build(kind, case, tmp_path).hierarchy
    loaded = Hierarchy.load(h.save(tmp_path / "h.json"))
    assert loaded.content_hash() == h.content_hash()
    assert loaded.level_names == h.level_names
    assert loaded.leaf_names == h.leaf_names
    assert [level.tolist() for level in loaded.levels] == [level.tolist() for level in h.levels]
    assert loaded.kind == h.kind


@pytest.mark.parametrize(("kind", "case"), CASES)
def test_leaf_level_is_one_label_function_across_kinds(kind, case, tmp_path):
    # Every kind's finest level is the leaves themselves: the same pretraining.
    h = build(kind, case, tmp_path).hierarchy
    assert h.label_function_hash(-1) == Hierarchy(
        leaf_names=h.leaf_names, level_names=["leaf"], levels=[np.arange(h.num_leaves)]
    ).label_function_hash(0)


@pytest.mark.parametrize(("kind", "case"), CASES)
def test_alignment_with_target_at_finer_levels(kind, case, tmp_path):
    built = build(kind, case, tmp_path)
    h, aligned = built.hierarchy, KIND_CASES[kind][case][1]
    leaves = np.arange(h.num_leaves)
    finer = range(built.target_index + 1, h.num_levels)
    entropies = [
        alignment_metrics(h.labels(i, leaves), built.target[leaves])["cond_entropy"] for i in finer
    ]
    if aligned:
        assert entropies == pytest.approx([0.0] * len(entropies), abs=1e-9)
    else:
        # The leaf level is aligned for every kind; the levels between are not.
        assert max(entropies[:-1]) > 0.1


def test_content_hash_is_stable_across_versions():
    # A fixed literal: a change here changes every stored trial key.
    h = Hierarchy(
        leaf_names=["cat", "dog", "oak"],
        level_names=["kingdom", "species"],
        levels=[np.array([0, 0, 1]), np.array([0, 1, 2])],
        node_names=[["animal", "plant"], ["cat", "dog", "oak"]],
    )
    assert h.content_hash() == "fc843cd7930d8ec7"
    assert h.label_function_hash("kingdom") == "85526ba79728a470"


def test_content_hash_ignores_meta_and_label_hash_ignores_numbering():
    ref = reference_hierarchy()
    other = Hierarchy(
        leaf_names=ref.leaf_names,
        level_names=ref.level_names,
        levels=ref.levels,
        node_names=ref.node_names,
        meta={"note": "x"},
    )
    assert other.content_hash() == ref.content_hash()
    relabelled = ref.with_levels([level.max() - level for level in ref.levels], kind="manual")
    assert relabelled.label_function_hash(TARGET) == ref.label_function_hash(TARGET)


def test_registry_lists_every_kind_and_rejects_unknown_ones():
    assert set(list_hierarchy_kinds()) >= {"manual", "wordnet", "random", "cluster", "perturbed"}
    assert set(list_hierarchy_kinds()) <= set(KIND_CASES), "a kind without a fixture factory"
    assert is_hierarchy_kind("random") and not is_hierarchy_kind("nope")
    with pytest.raises(RuntimeError, match=r"Unknown hierarchy kind \(nope\); known: cluster"):
        build_hierarchy("nope")
    with pytest.raises(RuntimeError, match="already registered"):
        register_hierarchy("random")(lambda **kw: None)


def test_different_seeds_give_different_random_hierarchies():
    ref = reference_hierarchy()
    a = build_hierarchy("random", reference=ref, seed=0)
    b = build_hierarchy("random", reference=ref, seed=1)
    assert a.label_function_hash("subclass") != b.label_function_hash("subclass")


def test_cluster_within_copies_target_and_coarser_levels():
    ref = reference_hierarchy()
    h = build_hierarchy(
        "cluster",
        reference=ref,
        embeddings=leaf_embeddings(ref.num_leaves),
        mode="within",
        target_level=TARGET,
    )
    for name in LEVELS[: LEVELS.index(TARGET) + 1]:
        assert h.label_function_hash(name) == ref.label_function_hash(name)
    assert h.label_function_hash("subclass") != ref.label_function_hash("subclass")


def test_cluster_follows_the_embeddings():
    # Embeddings that are the reference's subclasses (plus noise) must be recovered exactly.
    ref = reference_hierarchy()
    centers = np.random.default_rng(0).normal(size=(REFERENCE_SIZES[2], 16)) * 10
    x = centers[ref.mapping("subclass")] + np.random.default_rng(1).normal(
        size=(ref.num_leaves, 16)
    )
    for mode in ("within", "global"):
        h = build_hierarchy(
            "cluster", reference=ref, embeddings=x, mode=mode, target_level=TARGET, seed=0
        )
        assert h.label_function_hash("subclass") == ref.label_function_hash("subclass"), mode


def test_cluster_rejects_bad_embeddings_and_modes():
    ref = reference_hierarchy()
    with pytest.raises(ValueError, match=r"shape \(n_leaves=284, d\)"):
        build_hierarchy("cluster", reference=ref, embeddings=np.zeros((3, 2)), target_level=0)
    with pytest.raises(ValueError, match="unknown cluster mode 'both'"):
        build_hierarchy(
            "cluster", reference=ref, embeddings=np.zeros((284, 2)), mode="both", target_level=0
        )


def test_cluster_keeps_sizes_with_duplicate_embeddings():
    # Identical points make kMeans leave clusters empty; the level sizes must still be exact.
    ref = reference_hierarchy()
    h = build_hierarchy(
        "cluster", reference=ref, embeddings=np.zeros((ref.num_leaves, 4)), mode="global"
    )
    assert h.level_sizes() == REFERENCE_SIZES


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_perturbed_alignment_falls_monotonically_in_p(seed):
    ref = reference_hierarchy()
    target = ref.mapping(TARGET)
    grid = [0.0, 0.25, 0.5, 0.75, 1.0]
    metrics = [
        alignment_metrics(
            build_hierarchy("perturbed", reference=ref, p=p, seed=seed).mapping("subclass"), target
        )
        for p in grid
    ]
    entropy = [m["cond_entropy"] for m in metrics]
    nmi = [m["nmi"] for m in metrics]
    assert entropy[0] == pytest.approx(0.0, abs=1e-12)
    assert all(b > a for a, b in zip(entropy, entropy[1:], strict=False)), entropy
    assert all(b < a for a, b in zip(nmi, nmi[1:], strict=False)), nmi


def test_perturbed_path_is_nested_in_p_and_rejects_bad_p():
    ref = reference_hierarchy()
    n = ref.num_leaves
    low = build_hierarchy("perturbed", reference=ref, p=57 / n, seed=5)
    high = build_hierarchy("perturbed", reference=ref, p=58 / n, seed=5)
    # One more leaf in the moved set changes where at most two leaves sit.
    assert (low.mapping("leaf") != high.mapping("leaf")).sum() <= 2
    assert build_hierarchy("perturbed", reference=ref, p=0.0).label_function_hash(
        "subclass"
    ) == ref.label_function_hash("subclass")
    with pytest.raises(ValueError, match=r"p=1.5 is outside \[0, 1\]"):
        build_hierarchy("perturbed", reference=ref, p=1.5)
