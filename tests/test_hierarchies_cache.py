"""Derived hierarchies are cached on disk by what determines them, and the cache changes no plan."""

from __future__ import annotations

from pathlib import Path

import pytest
from hierarchy_fixtures import TARGET, leaf_embeddings, reference_hierarchy

from hierarchies import build_hierarchy
from hierarchies.cache import cache_key, cached_build


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GRANULARITY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "hierarchies"


def _counting_build(kwargs: dict, calls: list[int]):
    def build():
        calls.append(1)
        return build_hierarchy("cluster", **kwargs)

    return build


def _cluster_kwargs(seed: int = 1, shift: float = 0.0) -> dict:
    ref = reference_hierarchy()
    return {
        "reference": ref,
        "embeddings": leaf_embeddings(ref.num_leaves, seed=0) + shift,
        "mode": "within",
        "target_level": TARGET,
        "seed": seed,
    }


def test_second_build_is_read_from_the_cache_and_equal(cache: Path) -> None:
    kwargs, calls = _cluster_kwargs(), []
    first = cached_build("cluster", kwargs, _counting_build(kwargs, calls))
    second = cached_build("cluster", kwargs, _counting_build(kwargs, calls))
    assert calls == [1]
    assert second.content_hash() == first.content_hash()
    assert len(list(cache.glob("*.json"))) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 2},
        {"shift": 1e-9},  # embeddings differ in their last bits
    ],
)
def test_any_input_change_is_another_entry(change: dict) -> None:
    assert cache_key("cluster", _cluster_kwargs()) != cache_key(
        "cluster", _cluster_kwargs(**change)
    )


def test_a_corrupt_cache_file_is_rebuilt(cache: Path) -> None:
    kwargs, calls = _cluster_kwargs(), []
    first = cached_build("cluster", kwargs, _counting_build(kwargs, calls))
    (path,) = cache.glob("*.json")
    path.write_text('{"format": "granularity.hierarchy/1", "levels": [')  # half a file
    again = cached_build("cluster", kwargs, _counting_build(kwargs, calls))
    assert calls == [1, 1] and again.content_hash() == first.content_hash()


def test_a_plan_is_the_same_with_a_cold_and_a_warm_cache(cache: Path, tmp_path: Path) -> None:
    from sweeps.plan import build_plan
    from sweeps.spec import load_spec

    spec = load_spec(Path(__file__).parents[1] / "sweeps" / "quickstart.yaml", ["seeds=2"])
    cold = build_plan(spec, write=False, storage=tmp_path / "s")
    assert list(cache.glob("*.json"))  # the cluster arms were stored
    warm = build_plan(spec, write=False, storage=tmp_path / "s")
    assert [t.trial_key for t in warm.trials] == [t.trial_key for t in cold.trials]
    assert [t.config for t in warm.trials] == [t.config for t in cold.trials]
