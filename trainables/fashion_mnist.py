"""Fashion-MNIST from the IDX files Debian's `dataset-fashion-mnist` installs, with a coarse grouping.

The files (`train-images-idx3-ubyte.gz` ...) are read with torchvision's IDX
reader (`torchvision.datasets.mnist.read_image_file` / `read_label_file`),
after decompressing them once into a cache folder; nothing downloads.

Hierarchy (target `category`, 4 classes; our grouping by where an item is
worn, since Fashion-MNIST publishes no coarse labels; a dress is grouped with
trousers as the garment that reaches below the waist):

    tops      T-shirt/top, Pullover, Coat, Shirt  (upper-body garments)
    bottoms   Trouser, Dress                      (garments reaching below the waist)
    footwear  Sandal, Sneaker, Ankle boot
    bags      Bag

The fine level is the 10 official classes. `styles_per_class=k` adds a finer
level `style` (10k leaves): each class's training images split by kMeans on
their pixels into k visual sub-types (high and low sneakers, say), a test
image taking its nearest style centre within its class. No label beyond the
official class is used, so the level is finer than any label Fashion-MNIST
has, like the paper's "too fine" extreme.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from hierarchies import Hierarchy
from trainables.data import Dataset, Split, cache_root, register_dataset, subset_indices

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
CATEGORIES = ["tops", "bottoms", "footwear", "bags"]
CATEGORY_OF_CLASS = np.array([0, 1, 0, 1, 0, 2, 0, 2, 3, 2], dtype=np.int64)
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _idx_file(root: Path, name: str, cache: Path) -> Path:
    """The uncompressed IDX file `name` (torchvision's reader takes plain files)."""
    plain = root / name
    if plain.exists():
        return plain
    packed = root / f"{name}.gz"
    if not packed.exists():
        raise FileNotFoundError(
            f"Fashion-MNIST file {str(packed)!r} does not exist: install the Debian package "
            f"with `apt-get install {FASHION_MNIST_PACKAGE}`, or pass root= a folder with the "
            "IDX files (the dataset never downloads)"
        )
    target = cache / name
    if not target.exists() or target.stat().st_mtime < packed.stat().st_mtime:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        with gzip.open(packed, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(tmp, target)
    return target


def _fashion_batch_transform(batch: torch.Tensor, train: bool) -> torch.Tensor:
    # Fashion-MNIST's pixel mean and std (0.286, 0.353).
    x = batch.float().div_(255.0).sub_(0.286).div_(0.353)
    if train:  # a random horizontal flip per batch half: garments are left-right symmetric
        n = x.shape[0]
        flip = torch.rand(n, device=x.device) < 0.5
        x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    return x


def style_leaves(
    train_x: torch.Tensor,
    train_class: np.ndarray,
    test_x: torch.Tensor,
    test_class: np.ndarray,
    k: int,
    *,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Leaf = class * k + style: kMeans (k) on each class's 14x14 training thumbnails; test
    images go to the nearest centre of their own class."""
    from sklearn.cluster import KMeans

    def thumbs(x: torch.Tensor) -> np.ndarray:
        return torch.nn.functional.avg_pool2d(x.float() / 255.0, 2).flatten(1).numpy()

    train_t, test_t = thumbs(train_x), thumbs(test_x)
    train_leaf = np.empty(len(train_class), dtype=np.int64)
    test_leaf = np.empty(len(test_class), dtype=np.int64)
    for c in range(10):
        members = np.flatnonzero(train_class == c)
        if len(members) < k:
            raise ValueError(
                f"class {CLASSES[c]!r} has {len(members)} training images, fewer than styles_per_class={k}"
            )
        model = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(train_t[members])
        train_leaf[members] = c * k + model.labels_
        tests = np.flatnonzero(test_class == c)
        if len(tests):
            test_leaf[tests] = c * k + model.predict(test_t[tests])
    return train_leaf, test_leaf


@register_dataset
def fashion_mnist(
    *,
    root: str = FASHION_MNIST_ROOT,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    styles_per_class: int = 0,
    cache_dir: str | None = None,
) -> Dataset:
    """Fashion-MNIST (28x28 grey); hierarchy category (4) -> class (10) [-> style]; target `category`.

    `train_per_class` / `test_per_class` keep a fixed stratified subset (seed 0)
    of each split, to size a CPU sweep; None keeps all 60,000 / 10,000.
    """
    from torchvision.datasets.mnist import read_image_file, read_label_file

    folder = Path(root)
    cache = Path(cache_dir) if cache_dir else cache_root() / "fashion_mnist"

    def split(name: str, per_class: int | None) -> tuple[torch.Tensor, np.ndarray]:
        images_file, labels_file = FILES[name]
        images = read_image_file(str(_idx_file(folder, images_file, cache)))
        labels = (
            read_label_file(str(_idx_file(folder, labels_file, cache))).numpy().astype(np.int64)
        )
        if per_class is not None:
            counts = np.bincount(labels, minlength=10)
            fraction = min(1.0, int(per_class) / max(1, int(counts.min())))
            keep = subset_indices(labels, fraction, seed=0)
            images, labels = images[torch.as_tensor(keep)], labels[keep]
        return images.unsqueeze(1).contiguous(), labels

    train_x, train_class = split("train", train_per_class)
    test_x, test_class = split("test", test_per_class)
    k = int(styles_per_class)
    if k < 0:
        raise ValueError(f"styles_per_class={styles_per_class} must be >= 0")
    if k:
        train_leaf, test_leaf = style_leaves(train_x, train_class, test_x, test_class, k)
        hierarchy = Hierarchy(
            leaf_names=[f"{c}/style{j}" for c in CLASSES for j in range(k)],
            level_names=["category", "class", "style"],
            levels=[
                np.repeat(CATEGORY_OF_CLASS, k),
                np.repeat(np.arange(10), k),
                np.arange(10 * k),
            ],
            node_names=[
                list(CATEGORIES),
                list(CLASSES),
                [f"{c}/style{j}" for c in CLASSES for j in range(k)],
            ],
            meta={"dataset": "fashion_mnist", "styles_per_class": k},
        )
    else:
        train_leaf, test_leaf = train_class, test_class
        hierarchy = Hierarchy(
            leaf_names=list(CLASSES),
            level_names=["category", "class"],
            levels=[CATEGORY_OF_CLASS.copy(), np.arange(10)],
            node_names=[list(CATEGORIES), list(CLASSES)],
            meta={"dataset": "fashion_mnist"},
        )
    return Dataset(
        name="fashion_mnist",
        hierarchy=hierarchy,
        default_target="category",
        train=Split(leaf=train_leaf, inputs=train_x),
        test=Split(leaf=test_leaf, inputs=test_x),
        input_shape=(1, 28, 28),
        patch_size=7,
        batch_transform=_fashion_batch_transform,
    )
