"""Image-file batches (trainables.decode): the same batches on every path, workers started once, a bounded cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trainables_fixtures as fixtures

import trainables.decode as decode
from trainables import train
from trainables.distributed import Shard
from trainables.engine import Batches, resolve_runtime
from trainables.trial import load_dataset


@pytest.fixture
def folder(tmp_path):
    """The imagefolder fixture (4 classes x 4 images, 16 px) and its saved manual hierarchy."""
    root, hierarchy = fixtures.write_imagefolder(tmp_path / "folder", per_class=4)
    options = {"root": str(root), "hierarchy": str(hierarchy), "image_size": 16}
    path = tmp_path / "h.json"
    load_dataset("imagefolder", options).hierarchy.save(path)
    return options, str(path)


@pytest.fixture
def through_workers(monkeypatch):
    """Every set goes through the worker pool (the small-set threshold at 0), from a fresh pool."""
    decode.close_pool()
    monkeypatch.setattr(decode, "IN_PROCESS_MAX_FILES", 0)
    yield
    decode.close_pool()


@pytest.fixture
def cold_cache(monkeypatch):
    monkeypatch.setattr(decode, "DECODED", decode.DecodedCache())


def image_config(tmp_path, folder, seed=0, **overrides):
    options, path = folder
    return fixtures.trial_config(
        tmp_path,
        dataset="imagefolder",
        dataset_options=options,
        target="group",
        hierarchy_path=path,
        level="class",
        seed=seed,
        pretrain={"epochs": 2, "batch_size": 4},
        finetune={"epochs": 1},
        **overrides,
    )


def outcome(result: dict) -> dict:
    return {k: v for k, v in result.items() if not k.startswith("time/")}


def file_batches(folder, workers: int) -> Batches:
    ds = load_dataset("imagefolder", folder[0])
    return Batches(
        ds, ds.train, np.arange(len(ds.train)), ds.train.leaf, resolve_runtime("cpu", workers)
    )


def passes(batches: Batches, **options) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(batches.iterate(5, **options))


def assert_same(a, b) -> None:
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


# ---- the same batches whatever decodes them -------------------------------------------
def test_a_trial_gives_the_same_result_in_process_cached_and_through_workers(
    tmp_path, folder, cold_cache, monkeypatch
):
    in_process = outcome(train(image_config(tmp_path, folder, num_workers=0), None))
    assert decode.DECODED.misses > 0 and len(decode.DECODED) == decode.DECODED.misses
    misses = decode.DECODED.misses
    cached = outcome(train(image_config(tmp_path, folder, num_workers=2), None))
    assert decode.DECODED.misses == misses  # every image came from the cache
    decode.close_pool()
    monkeypatch.setattr(decode, "IN_PROCESS_MAX_FILES", 0)
    workers = outcome(train(image_config(tmp_path, folder, num_workers=2), None))
    one_worker = outcome(train(image_config(tmp_path, folder, num_workers=1), None))
    decode.close_pool()
    assert in_process == cached == workers == one_worker
    other_seed = outcome(train(image_config(tmp_path, folder, seed=1, num_workers=0), None))
    assert other_seed["pretrain/loss"] != in_process["pretrain/loss"]


def test_augmented_passes_depend_on_the_seed_only(folder, through_workers):
    pool = passes(file_batches(folder, 2), train=True, seed=7)
    rng_state = torch.get_rng_state()
    decode.DECODED.clear()
    in_process = passes(file_batches(folder, 0), train=True, seed=7)
    assert torch.equal(torch.get_rng_state(), rng_state)  # a pass leaves the global RNG alone
    assert_same(pool, in_process)
    again = passes(file_batches(folder, 0), train=True, seed=7)  # now from the cache
    assert_same(again, in_process)
    other = passes(file_batches(folder, 0), train=True, seed=8)
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(other, in_process, strict=True))


@pytest.mark.parametrize("workers", [0, 2])
def test_data_parallel_ranks_decode_the_one_process_batches(folder, through_workers, workers):
    batches = file_batches(folder, workers)
    whole = passes(batches, train=True, seed=3)
    ranks = [passes(batches, train=True, seed=3, shard=Shard(r, 2)) for r in range(2)]
    for (x, y), (x0, y0), (x1, y1) in zip(whole, *ranks, strict=True):
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)


# ---- workers: started once, recovered after a failure -----------------------------------
def test_a_pack_of_image_trials_starts_its_workers_once(tmp_path, folder, through_workers):
    from sweeps.packs import run_pack

    items = [
        {"config": image_config(tmp_path, folder, seed=s, num_workers=2, trial_key=f"t{s}")}
        for s in range(3)
    ]
    before = decode.worker_starts()
    events: list[dict] = []
    counts = run_pack(
        items, trainable=train, emit=events.extend, storage=tmp_path, retries=0, invocation="a"
    )
    assert counts["finished"] == 3
    # Each trial makes 8 passes (2 epochs x train + val, probe features x 3, ...);
    # two worker processes served all of them.
    assert decode.worker_starts() - before == 2


def test_a_failed_pass_leaves_the_next_one_fresh_workers(folder, through_workers, tmp_path):
    batches = file_batches(folder, 2)
    batches.files = [*batches.files[:-1], str(tmp_path / "missing.png")]
    with pytest.raises(FileNotFoundError, match="missing.png"):
        passes(batches, train=False)
    before = decode.worker_starts()
    assert len(passes(file_batches(folder, 2), train=False)) == 4  # 16 images in batches of 5
    assert decode.worker_starts() - before == 2


def test_a_pass_resumed_after_a_later_one_started_is_refused(folder, through_workers):
    batches = file_batches(folder, 2)
    first = batches.iterate(5, train=False)
    next(first)
    assert len(passes(batches, train=False)) == 4  # 16 images in batches of 5
    with pytest.raises(RuntimeError, match="later pass started"):
        next(first)


# ---- the decoded-image cache ----------------------------------------------------------
def test_the_cache_keeps_within_its_bound_least_recently_used_out(folder):
    files = load_dataset("imagefolder", folder[0]).train.files[:5]
    one = decode.DecodedCache().image(files[0])
    size = np.asarray(one).nbytes
    cache = decode.DecodedCache(max_bytes=int(2.5 * size))
    for path in files:
        cache.image(path)
    assert len(cache) == 2 and cache.nbytes <= cache.max_bytes
    cache.image(files[-1])
    assert cache.hits == 1
    cache.image(files[0])  # evicted long ago: decoded again
    assert (cache.hits, cache.misses) == (1, 6)
    assert np.array_equal(np.asarray(cache.image(files[0])), np.asarray(one))


def test_the_cache_skips_an_image_over_its_bound_and_sees_a_rewritten_file(tmp_path):
    from PIL import Image

    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    small = decode.DecodedCache(max_bytes=10)
    small.image(str(path))
    assert len(small) == 0 and small.nbytes == 0
    cache = decode.DecodedCache()
    cache.image(str(path))
    Image.fromarray(np.full((4, 6, 3), 255, np.uint8)).save(path)
    assert np.asarray(cache.image(str(path))).shape == (4, 6, 3)
    assert cache.misses == 2
    with pytest.raises(ValueError, match="max_bytes=-1"):
        decode.DecodedCache(max_bytes=-1)
