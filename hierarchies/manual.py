"""Manual hierarchies: a dataset's own taxonomy read from its official files or a user's file.

Formats:
- ``inat2021``: an iNaturalist 2021 annotation JSON (train.json, train_mini.json,
  val.json), or the dataset's root folder holding one; its ``categories`` carry
  kingdom, phylum, class, order, family, genus, specific_epithet and supercategory.
- ``cifar100``: the python-version folder (``meta`` with fine/coarse label
  names; the coarse class of each fine class is read from ``train``, or
  ``test`` when ``train`` is absent, because ``meta`` does not hold it).
- ``csv``: one row per leaf, a header naming the levels, columns coarse -> fine;
  the last column names the leaf.
- ``json``: the Hierarchy JSON written by ``Hierarchy.save``.
"""

from __future__ import annotations

import csv
import json
import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from hierarchies.core import Hierarchy, HierarchyError

ManualFormat = Literal["auto", "inat2021", "cifar100", "csv", "json"]
MANUAL_FORMATS = ("auto", "inat2021", "cifar100", "csv", "json")

# The iNaturalist taxonomy ranks, coarse -> fine ("species" = genus + specific_epithet).
INAT2021_TAXONOMY = ("kingdom", "phylum", "class", "order", "family", "genus", "species")
# Default levels: the 11 supercategories (the paper's target) sit between kingdom and
# class. They are not nested with phylum (phylum Arthropoda spans Insects, Arachnids
# and Animalia; supercategory Animalia spans many phyla), so phylum is left out of the
# default chain; ask for `levels=INAT2021_TAXONOMY` to get the paper's seven ranks.
INAT2021_LEVELS = ("kingdom", "supercategory", "class", "order", "family", "genus", "species")
_INAT_FIELDS = ("kingdom", "phylum", "class", "order", "family", "genus", "specific_epithet")


def _from_keys(
    leaf_names: list[str],
    level_names: Sequence[str],
    keys_per_level: Sequence[Sequence[object]],
    *,
    display: Sequence[Sequence[str]],
    kind: str,
    meta: dict,
) -> Hierarchy:
    """Build a Hierarchy where a node is identified by a hashable key per leaf (first-seen order)."""
    levels, node_names = [], []
    for keys, names in zip(keys_per_level, display, strict=True):
        ids: dict[object, int] = {}
        mapping = np.empty(len(leaf_names), dtype=np.int64)
        level_node_names: list[str] = []
        for leaf, (key, name) in enumerate(zip(keys, names, strict=True)):
            if key not in ids:
                ids[key] = len(ids)
                level_node_names.append(name)
            mapping[leaf] = ids[key]
        levels.append(mapping)
        node_names.append(level_node_names)
    return Hierarchy(
        leaf_names=leaf_names,
        level_names=list(level_names),
        levels=levels,
        node_names=node_names,
        kind=kind,
        meta=meta,
    )


# ---- iNaturalist 2021 -------------------------------------------------------------
# The official annotation files, any of which holds the full category list.
INAT2021_ANNOTATIONS = ("train.json", "train_mini.json", "val.json")


def inat2021_annotation_file(path: str | os.PathLike) -> Path:
    """`path` itself, or for a dataset root folder the first official annotation file in it."""
    path = Path(path)
    if not path.is_dir():
        return path
    for name in INAT2021_ANNOTATIONS:
        if (path / name).is_file():
            return path / name
    raise FileNotFoundError(
        f"iNaturalist 2021 root {str(path)!r} holds none of {', '.join(INAT2021_ANNOTATIONS)}"
    )


def load_inat2021(path: str | os.PathLike, *, levels: Sequence[str] = INAT2021_LEVELS) -> Hierarchy:
    """The taxonomy of an iNaturalist 2021 annotation JSON, leaves in category-id order.

    `levels` picks and orders the ranks (coarse -> fine) from INAT2021_TAXONOMY
    and "supercategory". A taxon is identified by its full path from the kingdom,
    so a genus name used in two families is two nodes.
    """
    path = inat2021_annotation_file(path)
    data = _read_json(path)
    categories = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(categories, list) or not categories:
        raise HierarchyError(
            f"{str(path)!r} is not an iNaturalist 2021 annotation file: no 'categories' list"
        )
    allowed = (*INAT2021_TAXONOMY, "supercategory")
    unknown = [level for level in levels if level not in allowed]
    if unknown:
        raise HierarchyError(f"unknown iNaturalist level {unknown[0]!r}; accepted: {list(allowed)}")
    required = ("id", "name", "supercategory", *_INAT_FIELDS)
    for position, category in enumerate(categories):
        missing = [f for f in required if not isinstance(category, dict) or f not in category]
        if missing:
            raise HierarchyError(
                f"{str(path)!r}: category #{position} lacks the field {missing[0]!r} "
                f"(an iNaturalist 2021 category has {list(required)})"
            )
    categories = sorted(categories, key=lambda c: int(c["id"]))
    ranks = [[str(c[f]) for f in _INAT_FIELDS] for c in categories]
    keys, display = [], []
    for level in levels:
        if level == "supercategory":
            keys.append([str(c["supercategory"]) for c in categories])
            display.append(keys[-1])
            continue
        depth = INAT2021_TAXONOMY.index(level) + 1
        keys.append([tuple(r[:depth]) for r in ranks])
        display.append([f"{r[5]} {r[6]}" if level == "species" else r[depth - 1] for r in ranks])
    try:
        return _from_keys(
            [str(c["name"]) for c in categories],
            levels,
            keys,
            display=display,
            kind="manual",
            meta={
                "source": str(path),
                "format": "inat2021",
                **_inat_counts(data, [int(c["id"]) for c in categories]),
            },
        )
    except HierarchyError as err:
        raise HierarchyError(
            f"{str(path)!r}: the levels {list(levels)} do not nest ({err}); "
            f"choose levels that do, e.g. levels={list(INAT2021_TAXONOMY)}"
        ) from err


def _inat_counts(data: dict, category_ids: list[int]) -> dict:
    """{"leaf_example_counts": [...]} from the file's annotations, or {} when it has none."""
    annotations = data.get("annotations")
    if not isinstance(annotations, list) or not annotations:
        return {}
    position = {cid: i for i, cid in enumerate(category_ids)}
    counts = np.zeros(len(category_ids), dtype=np.int64)
    for annotation in annotations:
        cid = annotation.get("category_id") if isinstance(annotation, dict) else None
        if cid not in position:
            raise HierarchyError(f"an annotation refers to unknown category_id {cid!r}")
        counts[position[cid]] += 1
    return {"leaf_example_counts": counts.tolist()}


# ---- CIFAR-100 --------------------------------------------------------------------
def read_cifar_pickle(path: Path) -> dict:
    """A CIFAR-100 python pickle as a dict with str keys (HierarchyError naming a bad file)."""
    try:
        with path.open("rb") as handle:
            # The official files were pickled by Python 2: latin1 keeps byte strings intact.
            data = pickle.load(handle, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise HierarchyError(f"{str(path)!r} is not a CIFAR-100 python pickle ({err})") from err
    if not isinstance(data, dict):
        raise HierarchyError(f"{str(path)!r} is not a CIFAR-100 python pickle (not a dict)")

    def text(value):
        return value.decode("utf-8") if isinstance(value, bytes) else value

    return {text(k): v for k, v in data.items()}


def load_cifar100(path: str | os.PathLike) -> Hierarchy:
    """CIFAR-100's 20 coarse / 100 fine classes from the python-version folder (or its `meta`)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    meta_path = folder / "meta"
    if not meta_path.is_file():
        raise FileNotFoundError(f"CIFAR-100 'meta' file not found at {str(meta_path)!r}")
    meta = read_cifar_pickle(meta_path)
    for field in ("fine_label_names", "coarse_label_names"):
        if field not in meta:
            raise HierarchyError(f"{str(meta_path)!r} lacks {field!r}; is it CIFAR-100's meta?")
    fine_names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta["fine_label_names"]]
    coarse_names = [
        n.decode() if isinstance(n, bytes) else str(n) for n in meta["coarse_label_names"]
    ]
    split_path = next((folder / s for s in ("train", "test") if (folder / s).is_file()), None)
    if split_path is None:
        raise FileNotFoundError(
            f"CIFAR-100 'train' (or 'test') not found in {str(folder)!r}: the coarse class of "
            "each fine class is read from its fine_labels/coarse_labels"
        )
    split = read_cifar_pickle(split_path)
    if "fine_labels" not in split or "coarse_labels" not in split:
        raise HierarchyError(f"{str(split_path)!r} lacks 'fine_labels'/'coarse_labels'")
    fine = np.asarray(split["fine_labels"], dtype=np.int64)
    coarse = np.asarray(split["coarse_labels"], dtype=np.int64)
    if fine.shape != coarse.shape or fine.size == 0:
        raise HierarchyError(f"{str(split_path)!r}: fine_labels and coarse_labels differ in length")
    coarse_of_fine = np.full(len(fine_names), -1, dtype=np.int64)
    for f, c in np.unique(np.stack([fine, coarse], axis=1), axis=0):
        if not 0 <= f < len(fine_names) or not 0 <= c < len(coarse_names):
            raise HierarchyError(f"{str(split_path)!r}: label ({f}, {c}) is outside the meta names")
        if coarse_of_fine[f] not in (-1, c):
            raise HierarchyError(
                f"{str(split_path)!r}: fine class {fine_names[f]!r} appears under two coarse "
                f"classes ({coarse_names[coarse_of_fine[f]]!r} and {coarse_names[c]!r})"
            )
        coarse_of_fine[f] = c
    if (coarse_of_fine < 0).any():
        missing = fine_names[int(np.argmax(coarse_of_fine < 0))]
        raise HierarchyError(f"{str(split_path)!r} has no example of fine class {missing!r}")
    return Hierarchy(
        leaf_names=fine_names,
        level_names=["coarse", "fine"],
        levels=[coarse_of_fine, np.arange(len(fine_names))],
        node_names=[coarse_names, fine_names],
        kind="manual",
        meta={
            "source": str(folder),
            "format": "cifar100",
            "leaf_example_counts": np.bincount(fine, minlength=len(fine_names)).tolist(),
            "leaf_example_counts_split": split_path.name,
        },
    )


# ---- user CSV / JSON ----------------------------------------------------------------
def load_csv(path: str | os.PathLike) -> Hierarchy:
    """A user CSV: header = level names (coarse -> fine), one row per leaf, last column = leaf.

    A node is identified by its name within its level; a name that appears
    under two different coarser nodes is an error naming the leaf.
    """
    path = Path(path)
    try:
        with path.open(newline="") as handle:
            rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except UnicodeDecodeError as err:
        raise HierarchyError(f"{str(path)!r} is not a text CSV file ({err})") from err
    if len(rows) < 2:
        raise HierarchyError(f"{str(path)!r}: a hierarchy CSV needs a header and one row per leaf")
    header = [cell.strip() for cell in rows[0]]
    if any(not name for name in header):
        raise HierarchyError(f"{str(path)!r}: the header has an empty level name: {header}")
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header) or any(not cell.strip() for cell in row):
            raise HierarchyError(
                f"{str(path)!r} line {line}: expected {len(header)} non-empty cells "
                f"({header}), got {row}"
            )
    cells = [[cell.strip() for cell in row] for row in rows[1:]]
    leaf_names = [row[-1] for row in cells]
    if len(set(leaf_names)) != len(leaf_names):
        dup = next(n for i, n in enumerate(leaf_names) if n in leaf_names[:i])
        raise HierarchyError(f"{str(path)!r}: leaf {dup!r} appears in two rows")
    # A node is its name at that level: the same name under two parents is a mistake
    # worth an error (Hierarchy validation names the leaf), not a silent second node.
    names = [[row[i] for row in cells] for i in range(len(header))]
    try:
        return _from_keys(
            leaf_names, header, names, display=names, kind="manual", meta={"source": str(path)}
        )
    except HierarchyError as err:
        raise HierarchyError(f"{str(path)!r}: {err}") from err


def _read_json(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"hierarchy source {str(path)!r} does not exist")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise HierarchyError(f"{str(path)!r} is not valid JSON: {err}") from err


def detect_format(path: str | os.PathLike) -> str:
    """Guess a manual source's format from its name and, for JSON, its top-level keys."""
    path = Path(path)
    if path.is_dir() and any((path / name).is_file() for name in INAT2021_ANNOTATIONS):
        return "inat2021"
    if path.is_dir() or path.name in ("meta", "train", "test"):
        return "cifar100"
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix == ".json":
        data = _read_json(path)
        if isinstance(data, dict) and "categories" in data:
            return "inat2021"
        return "json"
    raise HierarchyError(
        f"cannot tell the format of {str(path)!r}; pass format= one of {list(MANUAL_FORMATS[1:])}"
    )


def manual_hierarchy(
    *,
    path: str | os.PathLike,
    format: ManualFormat = "auto",
    levels: Sequence[str] | None = None,
) -> Hierarchy:
    """A dataset's own taxonomy from `path` in `format` (see the module docstring).

    `levels` applies to inat2021 only (default INAT2021_LEVELS).
    """
    if format not in MANUAL_FORMATS:
        raise HierarchyError(f"unknown manual format {format!r}; accepted: {list(MANUAL_FORMATS)}")
    if not Path(path).exists():
        raise FileNotFoundError(f"hierarchy source {str(path)!r} does not exist")
    fmt = detect_format(path) if format == "auto" else format
    if levels is not None and fmt != "inat2021":
        raise HierarchyError(f"levels= applies to the inat2021 format only, not {fmt!r}")
    if fmt == "inat2021":
        return load_inat2021(path, levels=levels or INAT2021_LEVELS)
    if fmt == "cifar100":
        return load_cifar100(path)
    if fmt == "csv":
        return load_csv(path)
    hierarchy = Hierarchy.load(path)
    return hierarchy
