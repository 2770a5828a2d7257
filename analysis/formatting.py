"""How the report writes numbers, intervals and p-values in prose and tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def fmt(value: object, digits: int = 4) -> str:
    """A number as the report prints it: 4 significant digits, "–" for missing, yes/no for bools."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.{digits}g}"
    return str(value)


def fmt_ci(mean: float, low: float, high: float) -> str:
    """``mean [low, high]``, or the mean and why there is no interval."""
    if not np.isfinite(low):
        return f"{fmt(mean)} (no CI: single seed)"
    return f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"


def fmt_p(p: float) -> str:
    """A p-value as ``p=0.012`` (``p<1e-4`` below that, ``p=–`` when undefined)."""
    return "p=–" if not np.isfinite(p) else (f"p={p:.2g}" if p >= 1e-4 else "p<1e-4")


DATA_FRACTION = "data fraction"  # the size axis' name unless a dataset option is (variants)


def fmt_size(label: str, value: object) -> str:
    """A point of the size axis in prose: ``fraction 0.25``, or the option's name and value
    (``renders_per_font 16``) when a crossed dataset option is the size axis."""
    return f"{'fraction' if label == DATA_FRACTION else label} {fmt(value)}"
