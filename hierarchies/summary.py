"""The level table of a hierarchy: classes, examples per class, alignment with a target.

Alignment is computed per example when the leaves' example counts are known
(``meta["leaf_example_counts"]``, or passed in), otherwise one example per leaf.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hierarchies.alignment import alignment_metrics, examples_per_class
from hierarchies.core import Hierarchy, HierarchyError


def leaf_example_counts(hierarchy: Hierarchy) -> np.ndarray | None:
    """Examples per leaf class recorded by the loader, or None when unknown."""
    counts = hierarchy.meta.get("leaf_example_counts")
    if counts is None:
        return None
    counts = np.asarray(counts, dtype=np.int64)
    if counts.shape != (hierarchy.num_leaves,):
        raise HierarchyError(
            f"meta leaf_example_counts has {counts.shape[0]} entries for {hierarchy.num_leaves} leaves"
        )
    return counts


def level_table(
    hierarchy: Hierarchy,
    *,
    target: np.ndarray | None = None,
    leaf_counts: np.ndarray | None = None,
) -> list[dict]:
    """One row per level: name, classes, examples per class (where known), alignment with target.

    `target` is a leaf -> target class array (e.g. ``reference.mapping("superclass")``).
    """
    if leaf_counts is None:
        leaf_counts = leaf_example_counts(hierarchy)
    example_leaves = None
    if leaf_counts is not None:
        example_leaves = np.repeat(np.arange(hierarchy.num_leaves), leaf_counts)
    leaves = example_leaves if example_leaves is not None else np.arange(hierarchy.num_leaves)
    if target is not None:
        target = np.asarray(target, dtype=np.int64)
        if target.shape != (hierarchy.num_leaves,):
            raise HierarchyError(
                f"target maps {target.shape[0]} leaves, the hierarchy has {hierarchy.num_leaves}"
            )
    rows = []
    for index, (name, size) in enumerate(
        zip(hierarchy.level_names, hierarchy.level_sizes(), strict=True)
    ):
        labels = hierarchy.labels(index, leaves)
        row: dict = {"level": index, "name": name, "classes": size}
        if example_leaves is not None:
            per_class = examples_per_class(labels)
            row["examples_per_class"] = per_class["mean"]
            row["min_examples"] = int(per_class["min"])
        if target is not None:
            row.update(alignment_metrics(labels, target[leaves]))
        rows.append(row)
    return rows


def format_table(rows: Sequence[dict]) -> str:
    """Rows as an aligned plain-text table (floats with 3 decimals, counts as integers)."""
    if not rows:
        return ""
    columns = list(rows[0])
    header = {
        "examples_per_class": "ex/class",
        "min_examples": "min ex",
        "cond_entropy": "H(tgt|lvl)",
    }

    def cell(value) -> str:
        if isinstance(value, float):
            # A metric that rounds to zero from below prints as 0.000, not -0.000.
            value = round(value, 1 if value >= 100 else 3) + 0.0
            return f"{value:.1f}" if value >= 100 else f"{value:.3f}"
        return str(value)

    table = [[header.get(c, c) for c in columns]] + [
        [cell(r.get(c, "")) for c in columns] for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    lines = []
    for line in table:
        parts = [
            text.ljust(width) if i == 1 else text.rjust(width)
            for i, (text, width) in enumerate(zip(line, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)
