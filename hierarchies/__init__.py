"""Label hierarchies, their granularity levels, and alignment metrics."""

from __future__ import annotations

from hierarchies.alignment import alignment_metrics, conditional_entropy_bits, examples_per_class
from hierarchies.core import Hierarchy, HierarchyError, canonical_labels, label_function_hash
from hierarchies.registry import (
    build_hierarchy,
    create_hierarchy,
    is_hierarchy_kind,
    list_hierarchy_kinds,
    register_hierarchy,
)

__all__ = [
    "Hierarchy",
    "HierarchyError",
    "alignment_metrics",
    "build_hierarchy",
    "canonical_labels",
    "conditional_entropy_bits",
    "create_hierarchy",
    "examples_per_class",
    "is_hierarchy_kind",
    "label_function_hash",
    "list_hierarchy_kinds",
    "register_hierarchy",
]
