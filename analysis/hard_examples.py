"""Hard examples on real data: test examples the target-level-pretrained models get wrong.

The synthetic data knows which test examples are hard (they lack the common
feature) and logs `target_error_hard` itself. Real images have no such label,
so hard examples are defined by the model the theory says misses them: the one
pretrained on the target's own (coarse) labels. Each trial logs its
per-test-example correctness (tag `granularity.test_correct`, written by
`trainables.trial.encode_correct`: `"<n>:" + base64(np.packbits(correct))`).

Cross-fitted definition (so no arm is scored on its own mistakes): for seed s,
a test example is *hard* when the target-level models of the **other** seeds
(same data fraction and backbone) get it wrong in most of them (more than half); every
arm of seed s, the target-level arm included, is then scored on those
examples. Scoring the target-level model of seed s on its own mistakes would
give it a hard error of exactly 1 and every other arm an advantage from
regression to the mean alone.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:  # pandas is imported where used: the CLI's parser reads HARD_MODES
    import pandas as pd

from contracts import TEST_CORRECT

HardMode = Literal["auto", "dataset", "target_level"]
HARD_MODES = ("auto", "dataset", "target_level")
GROUP_KEYS = ("backbone", "data_fraction")


def decode_correct(value: object) -> np.ndarray | None:
    """The boolean correctness vector of a `test_correct` tag; None when absent or malformed."""
    if not isinstance(value, str) or ":" not in value:
        return None
    count, _, payload = value.partition(":")
    try:
        n = int(count)
        bits = np.unpackbits(np.frombuffer(base64.b64decode(payload), dtype=np.uint8))
    except ValueError:
        return None
    return bits[:n].astype(bool) if len(bits) >= n else None


def _has(df: pd.DataFrame, column: str) -> bool:
    return column in df and df[column].notna().any()


def resolve_mode(df: pd.DataFrame, mode: HardMode) -> HardMode:
    """`auto`: the dataset's own hard split when it logged one, else the target-level definition."""
    if mode not in HARD_MODES:
        raise ValueError(f"hard-examples mode {mode!r} is not one of {' | '.join(HARD_MODES)}")
    if mode != "auto":
        return mode
    if _has(df, "target_error_hard"):
        return "dataset"
    return "target_level" if _has(df, TEST_CORRECT) else "dataset"


def derive_hard_examples(
    df: pd.DataFrame, target_rows: pd.DataFrame, *, mode: HardMode = "auto"
) -> tuple[pd.DataFrame, str]:
    """`df` with `target_error_easy` / `target_error_hard` / `hard_fraction` from the target level.

    Args:
        df: one row per finished trial (analysis.load), with `test_correct`.
        target_rows: the rows of the target-level arm (BaselineGain.target_level_rows).
        mode: "dataset" leaves `df` alone; "target_level" replaces the columns;
            "auto" picks (resolve_mode).

    Returns the table and a sentence for the report saying which definition holds.
    """
    import pandas as pd

    mode = resolve_mode(df, mode)
    if mode == "dataset":
        note = (
            "hard examples are the dataset's own hard split (`target_error_hard` logged by the trial)"
            if _has(df, "target_error_hard")
            else "no hard examples: the dataset logs no hard split and the trials no `test_correct`"
        )
        return df, note
    if not _has(df, TEST_CORRECT):
        return df, "hard examples not derivable: the trials logged no `test_correct`"
    out = df.copy()
    vectors = {i: decode_correct(v) for i, v in out[TEST_CORRECT].items()}
    for col in ("target_error_easy", "target_error_hard", "hard_fraction"):
        out[col] = np.nan
    keys = [k for k in GROUP_KEYS if k in out]
    groups_done, seeds_min = 0, None
    for key, ref in target_rows.groupby(keys, dropna=False) if keys else [((), target_rows)]:
        ref_by_seed = {
            int(seed): vectors.get(idx)
            for idx, seed in ref["seed"].items()
            if vectors.get(idx) is not None
        }
        if len(ref_by_seed) < 2:
            continue
        sizes = {len(v) for v in ref_by_seed.values()}
        if len(sizes) != 1:
            continue
        members = out.index
        if keys:
            key = key if isinstance(key, tuple) else (key,)
            mask = np.ones(len(out), dtype=bool)
            for k, v in zip(keys, key, strict=True):
                mask &= (out[k] == v).to_numpy()
            members = out.index[mask]
        wrong = {s: ~v for s, v in ref_by_seed.items()}
        for idx in members:
            correct, seed = vectors.get(idx), out.at[idx, "seed"]
            if correct is None or len(correct) not in sizes or pd.isna(seed):
                continue
            others = [w for s, w in wrong.items() if s != int(seed)]
            if not others:
                continue
            hard = np.mean(others, axis=0) > 0.5  # a majority of the other seeds
            out.at[idx, "hard_fraction"] = float(hard.mean())
            if hard.any():
                out.at[idx, "target_error_hard"] = float(1.0 - correct[hard].mean())
            if (~hard).any():
                out.at[idx, "target_error_easy"] = float(1.0 - correct[~hard].mean())
        groups_done += 1
        seeds_min = len(ref_by_seed) if seeds_min is None else min(seeds_min, len(ref_by_seed))
    if not groups_done:
        return df, (
            "hard examples not derivable: fewer than 2 seeds of the target-level arm logged "
            "`test_correct` in every (backbone, data fraction)"
        )
    note = (
        "hard examples (real data): for seed s, the test examples that most of the other seeds' "
        f"target-level models ({seeds_min - 1} or more seeds, same data fraction and backbone) get "
        "wrong; every arm of seed s, the target level included, is scored on them, so no arm is "
        "scored on its own mistakes"
    )
    return out, note


def easy_hard_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean easy / hard error (and hard fraction) per arm, level and data fraction, over seeds."""
    import pandas as pd

    if not _has(df, "target_error_hard"):
        return pd.DataFrame()
    keys = [
        k
        for k in ("hierarchy", "level_name", "num_classes", "data_fraction", "backbone")
        if k in df
    ]
    cols = [
        c
        for c in ("target_error", "target_error_easy", "target_error_hard", "hard_fraction")
        if c in df
    ]
    table = df.groupby(keys, dropna=False)[cols].mean()
    table["n"] = df.groupby(keys, dropna=False)["target_error_hard"].count()
    order = [k for k in ("data_fraction", "hierarchy", "num_classes") if k in keys]
    return table.reset_index().sort_values(order).reset_index(drop=True)
