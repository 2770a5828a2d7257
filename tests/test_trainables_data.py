"""Datasets: the registry contract for every dataset, loaders on generated fixtures, subsets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import trainables_fixtures as fixtures

from trainables import create_dataset, list_datasets, subset_indices, train_val_indices
from trainables.data import Dataset
from trainables.synthetic import images_to_patches


def _imagefolder(tmp: Path) -> dict:
    root, hierarchy = fixtures.write_imagefolder(tmp / "folder")
    return {"root": str(root), "hierarchy": str(hierarchy), "image_size": 16}


# One options factory per registered dataset: a dataset added to the registry
# without an entry here fails test_every_dataset_has_a_fixture by name.
DATASET_OPTIONS: dict[str, Callable[[Path], dict]] = {
    "synthetic": lambda tmp: {"train_per_leaf": 6, "test_per_leaf": 3},
    "digits": lambda tmp: {},
    "cifar100": lambda tmp: {"root": str(fixtures.write_cifar100(tmp / "cifar"))},
    "inat2021": lambda tmp: {"root": str(fixtures.write_inat2021(tmp / "inat")), "image_size": 16},
    "imagefolder": _imagefolder,
    "imagenet21k": lambda tmp: {
        "root": str(fixtures.write_imagenet21k(tmp / "in21k")),
        "image_size": 16,
        "test_fraction": 0.5,
    },
    "fashion_mnist": lambda tmp: {
        "root": str(fixtures.write_fashion_mnist(tmp / "fmnist")),
        "cache_dir": str(tmp / "fmnist-cache"),
    },
    # Real fonts (installed by .ci/run); a tiny render into the temp dir.
    "glyphs": lambda tmp: {
        "radicals": 3,
        "chars_per_radical": 2,
        "fonts": ["ukai", "uming"],
        "test_fonts": ["wqy-zenhei"],
        "image_size": 16,
        "embedding": "pixels",
        "cache_dir": str(tmp / "glyph-cache"),
    },
}
FILE_ROOTED = ["cifar100", "inat2021", "imagefolder", "imagenet21k", "fashion_mnist"]


def build(name: str, tmp_path: Path) -> Dataset:
    if name == "imagenet21k":
        pytest.importorskip("nltk")
        from hierarchies.wordnet import find_wordnet

        try:
            find_wordnet()
        except Exception as err:  # no WordNet corpus on this machine
            pytest.skip(f"WordNet not available: {err}")
    if name == "glyphs":
        from trainables import glyphs

        fixtures.require_system_files(
            glyphs.UNICODE_DIR / "CJKRadicals.txt", package=glyphs.UNICODE_PACKAGE
        )
        for font in ("ukai", "uming", "wqy-zenhei"):
            source = glyphs.FONTS[font]
            fixtures.require_system_files(glyphs.FONT_DIR / source.file, package=source.package)
    return create_dataset(name, **DATASET_OPTIONS[name](tmp_path))


def test_every_dataset_has_a_fixture():
    assert sorted(DATASET_OPTIONS) == list_datasets()


@pytest.mark.parametrize("name", list_datasets())
def test_dataset_contract(name, tmp_path):
    ds = build(name, tmp_path)
    h = ds.hierarchy
    assert ds.name == name
    assert ds.default_target in h.level_names
    assert ds.train_leaf.dtype == np.int64 and len(ds.train_leaf) > 0
    assert ds.train_leaf.min() >= 0 and ds.train_leaf.max() < h.num_leaves
    assert len(ds.test) > 0 and ds.test.leaf.max() < h.num_leaves
    # Pretraining labels of any level come straight from the hierarchy.
    assert h.labels(ds.default_target, ds.train_leaf).max() < h.num_classes(ds.default_target)
    emb = ds.class_embeddings()
    assert emb.shape[0] == h.num_leaves and emb.ndim == 2 and np.isfinite(emb).all()
    c, height, width = ds.input_shape
    assert height % ds.patch_size == 0
    if ds.train.in_memory:
        x = ds.batch_transform(ds.train.inputs[:4], True)
        assert tuple(x.shape[1:]) == (c, height, width) and x.dtype == torch.float32


@pytest.mark.parametrize("name", FILE_ROOTED)
def test_missing_root_names_it(name, tmp_path):
    missing = tmp_path / "nowhere"
    options = {"root": str(missing)}
    if name == "imagefolder":
        options["hierarchy"] = str(tmp_path / "h.csv")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        create_dataset(name, **options)


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(RuntimeError, match=r"Unknown dataset \(mnist\); known: .*synthetic"):
        create_dataset("mnist")


def test_cifar100_loader_reads_the_pickles(tmp_path):
    ds = build("cifar100", tmp_path)
    assert ds.hierarchy.level_sizes() == [20, 100]
    assert ds.default_target == "coarse"
    assert ds.train.inputs.dtype == torch.uint8 and ds.train.inputs.shape == (200, 3, 32, 32)
    assert np.bincount(ds.train_leaf).tolist() == [2] * 100


def test_inat2021_loader_maps_images_to_species(tmp_path):
    ds = build("inat2021", tmp_path)
    assert ds.default_target == "supercategory"
    assert ds.hierarchy.num_classes("supercategory") == 2
    assert len(ds.train) == 12 and len(ds.test) == 8
    # Each image file sits in its species' folder.
    for path, leaf in zip(ds.train.files, ds.train.leaf, strict=True):
        assert Path(path).parent.name.startswith(f"{leaf:05d}_")


def test_imagefolder_loader_follows_the_hierarchy_file(tmp_path):
    ds = build("imagefolder", tmp_path)
    assert ds.hierarchy.level_names == ["group", "class"]
    for path, leaf in zip(ds.train.files, ds.train.leaf, strict=True):
        assert Path(path).parent.name == ds.hierarchy.leaf_names[leaf]
    x, _ = ds_first_item(ds)
    assert tuple(x.shape) == ds.input_shape


def test_file_batches_ship_uint8_and_normalise_like_torchvision(tmp_path):
    """Workers decode to uint8; Batches normalises on the device: ToTensor + Normalize's floats."""
    from PIL import Image
    from torchvision import transforms as T

    from trainables.engine import Batches, resolve_runtime
    from trainables.image_datasets import IMAGENET_MEAN, IMAGENET_STD

    ds = build("imagefolder", tmp_path)
    assert ds.file_transforms["eval"](Image.open(ds.train.files[0]).convert("RGB")).dtype == (
        torch.uint8
    )
    index = np.arange(len(ds.train))
    batches = Batches(ds, ds.train, index, ds.train.leaf, resolve_runtime("cpu", 0))
    x, y = next(batches.iterate(len(index), train=False))
    size = ds.input_shape[1]
    reference = T.Compose(
        [
            T.Resize(int(round(size * 256 / 224))),
            T.CenterCrop(size),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    for i in (0, len(index) - 1):
        with Image.open(ds.train.files[i]) as img:
            expected = reference(img.convert("RGB"))
        assert x.dtype == torch.float32
        assert torch.allclose(x[i], expected, atol=1e-5)
    assert torch.equal(y, torch.as_tensor(ds.train.leaf))


def ds_first_item(ds: Dataset):
    from PIL import Image

    with Image.open(ds.train.files[0]) as img:
        return ds.file_transforms["train"](img.convert("RGB")), ds.train.leaf[0]


# ---- synthetic ------------------------------------------------------------------
def test_synthetic_is_seeded():
    big = create_dataset("synthetic", train_per_leaf=1000, test_per_leaf=10, seed=3)
    assert len(big.train) == 32_000
    again = create_dataset("synthetic", train_per_leaf=1000, test_per_leaf=10, seed=3)
    assert torch.equal(big.train.inputs, again.train.inputs)
    other = create_dataset("synthetic", train_per_leaf=1000, test_per_leaf=10, seed=4)
    assert not torch.equal(big.train.inputs, other.train.inputs)


def test_synthetic_hard_examples_lack_the_coarse_feature():
    ds = create_dataset("synthetic", train_per_leaf=4, test_per_leaf=50, noise=0.0)
    patches = images_to_patches(ds.test.inputs, ds.patch_size)  # (N, P, d)
    coarse = ds.hierarchy.labels("superclass", ds.test.leaf)
    # With no noise, a patch carrying a coarse feature is orthogonal to every
    # other feature, so the coarse class's mean direction identifies it.
    easy, hard = ds.test.groups["easy"], ds.test.groups["hard"]
    assert easy.sum() == hard.sum() == 50 * 32
    direction = patches[torch.as_tensor(easy & (coarse == 0))].sum(1).mean(0)
    strongest = patches @ direction / direction.norm()
    assert strongest[torch.as_tensor(easy & (coarse == 0))].max(1).values.min() > 1.0
    assert strongest[torch.as_tensor(hard & (coarse == 0))].max(1).values.max() < 0.5


def test_synthetic_extra_levels_split_leaves_at_random():
    ds = create_dataset("synthetic", extra_levels=[4, 4], train_per_leaf=32, test_per_leaf=2)
    h = ds.hierarchy
    assert h.level_names == ["superclass", "class", "subclass", "extra1", "extra2"]
    assert h.level_sizes() == [4, 8, 32, 128, 512]
    # Evenly dealt: every finest leaf gets 32 / 16 = 2 training examples.
    assert np.bincount(ds.train_leaf, minlength=512).tolist() == [2] * 512
    # The true data do not depend on the extra levels.
    plain = create_dataset("synthetic", train_per_leaf=32, test_per_leaf=2)
    assert torch.equal(plain.train.inputs, ds.train.inputs)


def test_synthetic_rejects_bad_settings():
    with pytest.raises(ValueError, match="feature_patches"):
        create_dataset("synthetic", feature_patches=[10, 5, 5])
    with pytest.raises(ValueError, match="dim"):
        create_dataset("synthetic", dim=60)


# ---- subsets ----------------------------------------------------------------------
def test_subsets_are_nested_stratified_and_seeded():
    leaf = np.repeat(np.arange(20), 30)
    small, large = subset_indices(leaf, 0.1, seed=7), subset_indices(leaf, 0.3, seed=7)
    assert set(small) <= set(large)
    assert np.bincount(leaf[small], minlength=20).tolist() == [3] * 20
    assert np.array_equal(small, subset_indices(leaf, 0.1, seed=7))
    assert not np.array_equal(small, subset_indices(leaf, 0.1, seed=8))
    assert len(subset_indices(leaf, 1.0, seed=7)) == len(leaf)


def test_subsets_of_tiny_leaves_keep_the_fraction_overall():
    leaf = np.repeat(np.arange(500), 2)  # 2 examples per leaf (extra synthetic levels)
    chosen = subset_indices(leaf, 0.25, seed=0)
    assert 200 <= len(chosen) <= 300
    assert set(chosen) <= set(subset_indices(leaf, 0.5, seed=0))


def test_validation_is_carved_from_train_and_disjoint():
    leaf = np.repeat(np.arange(10), 20)
    pool, val = train_val_indices(leaf, 0.1, seed=0)
    assert len(np.intersect1d(pool, val)) == 0 and len(pool) + len(val) == len(leaf)
    assert np.bincount(leaf[val], minlength=10).tolist() == [2] * 10
    single = np.arange(5)  # one example per leaf: it stays in training
    assert len(train_val_indices(single, 0.5, seed=0)[1]) == 0
