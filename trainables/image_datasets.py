"""Real-image datasets: digits (bundled), cifar100 (pickles), and folder datasets (inat2021,
imagefolder, imagenet21k) decoded by DataLoader workers.

Nothing downloads: every loader reads a local root and raises FileNotFoundError
naming it when it is missing, before any training. The manual hierarchies come
from `hierarchies.build_hierarchy` (the dataset's own files or a WordNet cut).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from hierarchies import Hierarchy
from trainables.data import Dataset, Split, register_dataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    return path


def _stratified_holdout(leaf: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean mask of a seeded stratified holdout (for datasets without an official test split)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(leaf), dtype=bool)
    for value in np.unique(leaf):
        members = rng.permutation(np.flatnonzero(leaf == value))
        mask[members[: int(round(fraction * len(members)))]] = True
    return mask


# ---- digits -------------------------------------------------------------------
DIGIT_PARITY = np.arange(10) % 2


@register_dataset
def digits(*, test_fraction: float = 0.25, split_seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 digits; hierarchy parity (even/odd) -> digit; target parity."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    leaf = np.asarray(bunch.target, dtype=np.int64)
    test = _stratified_holdout(leaf, test_fraction, split_seed)
    hierarchy = Hierarchy(
        leaf_names=[str(d) for d in range(10)],
        level_names=["parity", "digit"],
        levels=[DIGIT_PARITY, np.arange(10)],
        node_names=[["even", "odd"], [str(d) for d in range(10)]],
        meta={"dataset": "digits"},
    )
    return Dataset(
        name="digits",
        hierarchy=hierarchy,
        default_target="parity",
        train=Split(leaf=leaf[~test], inputs=images[~test]),
        test=Split(leaf=leaf[test], inputs=images[test]),
        input_shape=(1, 8, 8),
        patch_size=2,
    )


# ---- cifar100 -----------------------------------------------------------------
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


@lru_cache(maxsize=16)
def _channel_stats(
    mean: tuple[float, ...], std: tuple[float, ...], device: str
) -> tuple[torch.Tensor, torch.Tensor]:
    # Made once per device: building them per batch (torch.tensor(..., device=cuda))
    # is a blocking host->device copy, i.e. a GPU sync every step.
    shape = (1, len(mean), 1, 1)
    return (
        torch.tensor(mean, device=device).view(shape),
        torch.tensor(std, device=device).view(shape),
    )


def normalize_uint8(
    batch: torch.Tensor,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> torch.Tensor:
    """uint8 NCHW -> float (x / 255 - mean) / std on the batch's device, without a host sync."""
    mean_t, std_t = _channel_stats(tuple(mean), tuple(std), str(batch.device))
    return (batch.float().div_(255.0) - mean_t) / std_t


def _cifar_batch_transform(batch: torch.Tensor, train: bool) -> torch.Tensor:
    """uint8 NCHW -> normalised float on the batch's device; train: pad-4 random crop + flip."""
    x = normalize_uint8(batch, CIFAR100_MEAN, CIFAR100_STD)
    if train:
        n = x.shape[0]
        padded = torch.nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
        dx, dy = torch.randint(0, 9, (2,)).tolist()  # one offset per batch: cheap, still varied
        x = padded[:, :, dy : dy + 32, dx : dx + 32]
        flip = torch.rand(n, device=x.device) < 0.5
        x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    return x


@register_dataset
def cifar100(*, root: str) -> Dataset:
    """CIFAR-100 from the python-version folder (`train`, `test`, `meta`); target coarse (20)."""
    from hierarchies.manual import read_cifar_pickle
    from hierarchies.registry import build_hierarchy

    folder = _require(Path(root), "CIFAR-100 root")
    for name in ("train", "test", "meta"):
        _require(folder / name, "CIFAR-100 file")
    hierarchy = build_hierarchy("manual", path=str(folder), format="cifar100")

    def split(name: str) -> Split:
        data = read_cifar_pickle(folder / name)
        images = torch.as_tensor(np.asarray(data["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        return Split(leaf=np.asarray(data["fine_labels"], dtype=np.int64), inputs=images)

    return Dataset(
        name="cifar100",
        hierarchy=hierarchy,
        default_target="coarse",
        train=split("train"),
        test=split("test"),
        input_shape=(3, 32, 32),
        patch_size=8,
        batch_transform=_cifar_batch_transform,
    )


# ---- folder datasets ------------------------------------------------------------
def image_transforms(image_size: int) -> dict:
    """torchvision transforms for folder datasets: random-resized-crop + flip / resize + center crop.

    They end in uint8 CHW tensors: workers skip the float conversion and
    normalisation (about an eighth of their time per image) and ship, pin and
    copy a quarter of the bytes; `imagenet_batch_transform` normalises the
    batch on the device.
    """
    from torchvision import transforms as T

    return {
        "train": T.Compose(
            [T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), T.PILToTensor()]
        ),
        "eval": T.Compose(
            [
                T.Resize(int(round(image_size * 256 / 224))),
                T.CenterCrop(image_size),
                T.PILToTensor(),
            ]
        ),
    }


def imagenet_batch_transform(batch: torch.Tensor, train: bool) -> torch.Tensor:
    """uint8 batches from `image_transforms` -> float normalised by the ImageNet statistics."""
    return normalize_uint8(batch, IMAGENET_MEAN, IMAGENET_STD)


def _thumbnail_embeddings(
    split: Split, num_leaves: int, per_leaf: int = 8, side: int = 8
) -> np.ndarray:
    """Per leaf, the mean side x side RGB thumbnail of up to `per_leaf` of its training images."""
    from PIL import Image

    out = np.zeros((num_leaves, 3 * side * side), dtype=np.float32)
    for leaf in range(num_leaves):
        members = np.flatnonzero(split.leaf == leaf)[:per_leaf]
        thumbs = []
        for i in members:
            with Image.open(split.files[i]) as img:
                thumbs.append(np.asarray(img.convert("RGB").resize((side, side)), np.float32) / 255)
        if thumbs:
            out[leaf] = np.mean(thumbs, axis=0).transpose(2, 0, 1).reshape(-1)
    return out


def _list_class_folders(folder: Path) -> dict[str, list[str]]:
    """{class folder name: sorted image paths} under `folder`."""
    classes = {}
    for entry in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(str(f) for f in entry.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
        classes[entry.name] = files
    return classes


def _folder_split(classes: dict[str, list[str]], leaf_index: dict[str, int], where: Path) -> Split:
    unknown = sorted(set(classes) - set(leaf_index))
    if unknown:
        raise ValueError(
            f"class folders {unknown[:5]} under {str(where)!r} are not leaves of the hierarchy"
        )
    files = [f for name in classes for f in classes[name]]
    leaf = [leaf_index[name] for name in classes for _ in classes[name]]
    return Split(leaf=np.asarray(leaf, dtype=np.int64), files=files)


def _folder_dataset(
    name: str,
    root: Path,
    hierarchy: Hierarchy,
    *,
    train_dir: str,
    test_dir: str,
    test_fraction: float,
    image_size: int,
    default_target: str,
) -> Dataset:
    train_root = _require(root / train_dir, f"{name} train folder")
    leaf_index = {leaf: i for i, leaf in enumerate(hierarchy.leaf_names)}
    train = _folder_split(_list_class_folders(train_root), leaf_index, train_root)
    if (root / test_dir).is_dir():
        test = _folder_split(_list_class_folders(root / test_dir), leaf_index, root / test_dir)
    else:
        # No official test split: hold out a fixed stratified part of train.
        mask = _stratified_holdout(train.leaf, test_fraction)
        files = np.asarray(train.files, dtype=object)
        test = Split(leaf=train.leaf[mask], files=list(files[mask]))
        train = Split(leaf=train.leaf[~mask], files=list(files[~mask]))
    return Dataset(
        name=name,
        hierarchy=hierarchy,
        default_target=default_target,
        train=train,
        test=test,
        input_shape=(3, image_size, image_size),
        patch_size=max(1, image_size // 8),
        file_transforms=image_transforms(image_size),
        batch_transform=imagenet_batch_transform,
        embed=lambda: _thumbnail_embeddings(train, hierarchy.num_leaves),
    )


@register_dataset
def imagefolder(
    *,
    root: str,
    hierarchy: str,
    train_dir: str = "train",
    test_dir: str = "val",
    test_fraction: float = 0.1,
    image_size: int = 224,
    target: str | None = None,
) -> Dataset:
    """Class folders under root/train (and root/val) plus a hierarchy file (CSV or Hierarchy JSON).

    The hierarchy's leaf names are the class folder names. Without a test
    folder, a stratified `test_fraction` of train is held out (fixed seed).
    """
    from hierarchies.registry import build_hierarchy

    root_path = _require(Path(root), "imagefolder root")
    tree = build_hierarchy("manual", path=str(_require(Path(hierarchy), "hierarchy file")))
    return _folder_dataset(
        "imagefolder",
        root_path,
        tree,
        train_dir=train_dir,
        test_dir=test_dir,
        test_fraction=test_fraction,
        image_size=image_size,
        default_target=target or tree.level_names[0],
    )


@register_dataset
def imagenet21k(
    *,
    root: str,
    train_dir: str = "train",
    test_dir: str = "val",
    test_fraction: float = 0.02,
    image_size: int = 224,
    target: str | None = None,
) -> Dataset:
    """wnid folders under root/train (and root/val); the WordNet depth cut gives the hierarchy.

    Default target: the coarsest WordNet level (pass `target=` for another).
    """
    from hierarchies.registry import build_hierarchy

    root_path = _require(Path(root), "imagenet21k root")
    wnids = sorted(
        p.name
        for p in _require(root_path / train_dir, "imagenet21k train folder").iterdir()
        if p.is_dir()
    )
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("\n".join(wnids) + "\n")
    try:
        tree = build_hierarchy("wordnet", synsets=handle.name)
    finally:
        os.unlink(handle.name)
    return _folder_dataset(
        "imagenet21k",
        root_path,
        tree,
        train_dir=train_dir,
        test_dir=test_dir,
        test_fraction=test_fraction,
        image_size=image_size,
        default_target=target or tree.level_names[0],
    )


@register_dataset
def inat2021(
    *,
    root: str,
    split: str = "train_mini",
    test_split: str = "val",
    levels: Sequence[str] | None = None,
    image_size: int = 224,
) -> Dataset:
    """iNaturalist 2021 from its official JSON files + image folders under `root`; target supercategory.

    `split` (the training split) is "train_mini" (50 per species) or "train"; `test_split`
    "val". File names in the JSON are relative to `root`.
    """
    import json

    from hierarchies.registry import build_hierarchy

    root_path = _require(Path(root), "iNaturalist 2021 root")
    train_json = _require(root_path / f"{split}.json", "iNaturalist 2021 annotation file")
    test_json = _require(root_path / f"{test_split}.json", "iNaturalist 2021 annotation file")
    options = {"levels": list(levels)} if levels else {}
    tree = build_hierarchy("manual", path=str(train_json), format="inat2021", **options)
    # Leaves are in category-id order (the loader's contract).
    with train_json.open() as handle:
        category_ids = sorted(int(c["id"]) for c in json.load(handle)["categories"])
    position = {cid: i for i, cid in enumerate(category_ids)}

    def read_split(path: Path) -> Split:
        with path.open() as handle:
            data = json.load(handle)
        file_of = {img["id"]: str(root_path / img["file_name"]) for img in data["images"]}
        pairs = sorted((a["image_id"], a["category_id"]) for a in data["annotations"])
        return Split(
            leaf=np.asarray([position[c] for _, c in pairs], dtype=np.int64),
            files=[file_of[i] for i, _ in pairs],
        )

    train, test = read_split(train_json), read_split(test_json)
    return Dataset(
        name="inat2021",
        hierarchy=tree,
        default_target="supercategory"
        if "supercategory" in tree.level_names
        else tree.level_names[0],
        train=train,
        test=test,
        input_shape=(3, image_size, image_size),
        patch_size=max(1, image_size // 8),
        file_transforms=image_transforms(image_size),
        batch_transform=imagenet_batch_transform,
        embed=lambda: _thumbnail_embeddings(train, tree.num_leaves),
    )
