"""Tiny datasets in their official on-disk layouts, written into a temp dir (nothing downloads)."""

from __future__ import annotations

import csv
import gzip
import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image


def _write_image(path: Path, rng: np.random.Generator, size: int = 12) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)


def write_cifar100(root: Path, per_class: int = 2) -> Path:
    """CIFAR-100 python-version pickles: 4 coarse x 2 fine... padded to 100 fine / 20 coarse names."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    fine_names = [f"fine{i}" for i in range(100)]
    coarse_names = [f"coarse{i}" for i in range(20)]
    coarse_of_fine = np.arange(100) // 5
    with (root / "meta").open("wb") as handle:
        pickle.dump({"fine_label_names": fine_names, "coarse_label_names": coarse_names}, handle)
    for split, n in (("train", per_class), ("test", 1)):
        fine = np.repeat(np.arange(100), n)
        data = {
            b"data": rng.integers(0, 255, (len(fine), 3072), dtype=np.uint8),
            b"fine_labels": fine.tolist(),
            b"coarse_labels": coarse_of_fine[fine].tolist(),
        }
        with (root / split).open("wb") as handle:
            pickle.dump(data, handle)
    return root


INAT_TAXA = [
    # (supercategory, kingdom, phylum, class, order, family, genus, epithet)
    ("Birds", "Animalia", "Chordata", "Aves", "Passeriformes", "Corvidae", "Corvus", "corax"),
    ("Birds", "Animalia", "Chordata", "Aves", "Passeriformes", "Corvidae", "Pica", "pica"),
    (
        "Plants",
        "Plantae",
        "Tracheophyta",
        "Magnoliopsida",
        "Fagales",
        "Fagaceae",
        "Quercus",
        "robur",
    ),
    ("Plants", "Plantae", "Tracheophyta", "Magnoliopsida", "Rosales", "Rosaceae", "Rosa", "canina"),
]


def write_inat2021(root: Path, per_class: int = 3) -> Path:
    """train_mini.json / val.json + image folders, as in the official release."""
    rng = np.random.default_rng(1)
    fields = ("kingdom", "phylum", "class", "order", "family", "genus", "specific_epithet")
    categories = []
    for cid, taxa in enumerate(INAT_TAXA):
        cat = {
            "id": cid,
            "name": f"{taxa[6]} {taxa[7]}",
            "supercategory": taxa[0],
            "image_dir_name": f"{cid:05d}_{taxa[6]}_{taxa[7]}",
        }
        cat.update(dict(zip(fields, taxa[1:], strict=True)))
        categories.append(cat)
    image_id = 0
    for split, n in (("train_mini", per_class), ("val", 2)):
        images, annotations = [], []
        for cat in categories:
            for k in range(n):
                name = f"{split}/{cat['image_dir_name']}/{k}.jpg"
                _write_image(root / name, rng)
                images.append({"id": image_id, "file_name": name, "width": 12, "height": 12})
                annotations.append({"id": image_id, "image_id": image_id, "category_id": cat["id"]})
                image_id += 1
        (root / f"{split}.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": categories})
        )
    return root


def write_imagefolder(root: Path, per_class: int = 3) -> tuple[Path, Path]:
    """root/train/<class>/*.png, root/val/<class>/*.png and a CSV hierarchy (group -> class)."""
    rng = np.random.default_rng(2)
    classes = {"cat": "animal", "dog": "animal", "oak": "plant", "fern": "plant"}
    for split, n in (("train", per_class), ("val", 1)):
        for name in classes:
            for k in range(n):
                _write_image(root / split / name / f"{k}.png", rng)
    hierarchy = root / "hierarchy.csv"
    with hierarchy.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["group", "class"])
        for name, group in classes.items():
            writer.writerow([group, name])
    return root, hierarchy


IMAGENET_WNIDS = ["n02084071", "n02121808", "n01503061", "n12992868"]  # dog, cat, bird, fungus


def write_imagenet21k(root: Path, per_class: int = 2) -> Path:
    rng = np.random.default_rng(3)
    for wnid in IMAGENET_WNIDS:
        for k in range(per_class):
            _write_image(root / "train" / wnid / f"{wnid}_{k}.JPEG", rng)
    return root


# ---- a small synthetic trial ----------------------------------------------------
SMALL = {"train_per_leaf": 12, "test_per_leaf": 6}


def write_fashion_mnist(root: Path, per_class: int = 3, test_per_class: int = 2) -> Path:
    """Fashion-MNIST's four gzipped IDX files (the layout `dataset-fashion-mnist` installs)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", per_class), ("t10k", test_per_class)):
        labels = np.repeat(np.arange(10, dtype=np.uint8), n)
        images = rng.integers(0, 255, (len(labels), 28, 28), dtype=np.uint8)
        with gzip.open(root / f"{prefix}-images-idx3-ubyte.gz", "wb") as handle:
            handle.write(struct.pack(">IIII", 2051, len(labels), 28, 28) + images.tobytes())
        with gzip.open(root / f"{prefix}-labels-idx1-ubyte.gz", "wb") as handle:
            handle.write(struct.pack(">II", 2049, len(labels)) + labels.tobytes())
    return root


def require_system_files(*paths: str | os.PathLike, package: str) -> None:
    """Skip (or, under CI, fail) a test whose Debian package is not installed.

    `.ci/run` installs every package the tests read, so in CI a missing one is
    an error, never a silent skip.
    """
    import pytest

    missing = [str(p) for p in paths if not Path(p).exists()]
    if not missing:
        return
    message = f"{missing[0]} is missing: apt-get install {package}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def hierarchy_file(tmp_path: Path, options: dict = SMALL) -> str:
    """The synthetic dataset's manual hierarchy, saved as JSON in `tmp_path`."""
    from trainables.trial import load_dataset

    path = tmp_path / "manual.json"
    load_dataset("synthetic", options).hierarchy.save(path)
    return str(path)


def trial_config(tmp_path: Path, **overrides) -> dict:
    """A complete trial config (twolayer on SMALL synthetic data, CPU, one thread)."""
    cfg = {
        "dataset": "synthetic",
        "dataset_options": SMALL,
        "target": "superclass",
        "hierarchy": "manual",
        "hierarchy_path": hierarchy_file(tmp_path),
        "level": 2,
        "level_name": "subclass",
        "data_fraction": 1.0,
        "backbone": "twolayer",
        "backbone_options": {},
        "seed": 0,
        "pretrain": {"epochs": 3, "lr": 0.2, "batch_size": 128},
        "finetune": {"mode": "linear", "epochs": 2, "lr": 0.05, "batch_size": 128},
        "device": "cpu",
        "num_threads": 1,
        "trial_key": "t0",
        "pretrain_key": "p0",
        "checkpoint_dir": None,
        "checkpoint_every_s": 0,  # a checkpoint after every epoch
        "pretrain_store": None,
    }
    cfg.update(overrides)
    return cfg
