"""Label hierarchies, their granularity levels, and alignment metrics."""

from __future__ import annotations

from hierarchies.alignment import alignment_metrics, conditional_entropy_bits, examples_per_class
from hierarchies.core import Hierarchy, HierarchyError, canonical_labels, label_function_hash

__all__ = [
    "Hierarchy",
    "HierarchyError",
    "alignment_metrics",
    "canonical_labels",
    "conditional_entropy_bits",
    "examples_per_class",
    "label_function_hash",
]
