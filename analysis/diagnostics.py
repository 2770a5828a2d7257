"""Pretraining diagnostics: per level, the train and validation error at the end of pretraining.

A fine level that transfers worse either learned its labels and they do not help, or did not
learn them in the pretraining budget. The trial logs the last pretraining epoch's
``pretrain/error`` (training batches, while training) and ``pretrain/val_error`` (the held-out
validation split of the pretraining labels; NaN when the dataset has none), so the two cases
can be told apart: "did not converge" shows as a high training error.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.stats import mean_ci
from analysis.trial_table import is_scratch

TRAIN = "pretrain/error"
VALIDATION = "pretrain/val_error"
LEVEL_KEYS = ("hierarchy", "level", "level_name", "num_classes", "data_fraction", "backbone")
COLUMNS = [
    *LEVEL_KEYS,
    "n",
    "train_error",
    "train_ci_low",
    "train_ci_high",
    "val_error",
    "val_ci_low",
    "val_ci_high",
]


def pretraining_table(df: pd.DataFrame, *, alpha: float = 0.05) -> pd.DataFrame:
    """One row per pretraining arm (kind, level, size, backbone): mean train and validation error
    at the end of pretraining over seeds, each with a t interval (``1 - alpha``).

    The scratch arms have no pretraining and is left out; an empty frame (with the columns) when
    the trials logged no ``pretrain/error``.

    Example:
        >>> import analysis
        >>> pretraining_table(analysis.load_export("runs.jsonl.gz"))  # doctest: +SKIP
    """
    if TRAIN not in df or df[TRAIN].notna().sum() == 0:
        return pd.DataFrame(columns=COLUMNS)
    arms = df[~is_scratch(df) & df[TRAIN].notna()]
    keys = [k for k in LEVEL_KEYS if k in arms]
    if VALIDATION not in arms:
        arms = arms.assign(**{VALIDATION: np.nan})
    # One value per seed: a pretraining shared by trials (same key) must not count twice.
    per_seed = arms.groupby([*keys, "seed"], dropna=False)[[TRAIN, VALIDATION]].mean()
    rows = []
    for cell, g in per_seed.groupby(level=list(range(len(keys))), dropna=False, sort=True):
        train, val = mean_ci(g[TRAIN].to_numpy(), alpha), mean_ci(g[VALIDATION].to_numpy(), alpha)
        rows.append(
            (*cell, train.n, train.mean, train.low, train.high, val.mean, val.low, val.high)
        )
    return pd.DataFrame(rows, columns=[*keys, *COLUMNS[len(LEVEL_KEYS) :]])
