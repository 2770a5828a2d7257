"""Hard examples on real data: the test examples a reference family that is not an arm gets wrong.

The synthetic data knows which test examples are hard (they lack the common
feature) and logs `target_error_hard` itself. Real images have no such label.
Each trial logs its per-test-example correctness (tag `granularity.test_correct`,
written by `trainables.trial.encode_correct`: `"<n>:" + base64(np.packbits(correct))`).

Reference definition (mode ``reference``, what ``auto`` uses): difficulty comes
from a **reference family that is not a pretraining arm** (the scratch models),
so no arm is favoured by sharing a pipeline with the definition. At one fixed
size (the reference family's largest data fraction) and cross-fitted: for seed
s, an example's difficulty is the share of the **other** seeds' reference
models that get it wrong; the hard set is a fixed quantile of the test set
(``quantile``, default the hardest 20%; ties broken by a fixed random order), and
the same set scores every arm of seed s at every data fraction. Without such a
family the hard set is "not available": no arm stands in for it.

``target_level`` (only on request) is the old definition: the other seeds'
target-level models' majority mistakes. It is biased: errors shared within the
target-level family make every other family look better on its hard set.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:  # pandas is imported where used: the CLI's parser reads HARD_MODES
    import pandas as pd

from contracts import CELL_TABLE_COLUMNS, TEST_CORRECT

HardMode = Literal["auto", "dataset", "reference", "target_level"]
HARD_MODES = ("auto", "dataset", "reference", "target_level")
GROUP_KEYS = ("backbone", "data_fraction")
REFERENCE_KIND = "scratch"
HARD_QUANTILE = 0.2


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
    """`auto`: the dataset's own hard split when it logged one, else the reference family's."""
    if mode not in HARD_MODES:
        raise ValueError(f"hard-examples mode {mode!r} is not one of {' | '.join(HARD_MODES)}")
    if mode != "auto":
        return mode
    if _has(df, "target_error_hard"):
        return "dataset"
    return "reference" if _has(df, TEST_CORRECT) else "dataset"


def _score(out: pd.DataFrame, idx: object, correct: np.ndarray, hard: np.ndarray) -> None:
    """Write one trial's hard / easy error and hard fraction."""
    out.at[idx, "hard_fraction"] = float(hard.mean())
    if hard.any():
        out.at[idx, "target_error_hard"] = float(1.0 - correct[hard].mean())
    if (~hard).any():
        out.at[idx, "target_error_easy"] = float(1.0 - correct[~hard].mean())


def reference_hard_examples(
    df: pd.DataFrame,
    *,
    reference_kind: str = REFERENCE_KIND,
    quantile: float = HARD_QUANTILE,
) -> tuple[pd.DataFrame, str]:
    """`df` with easy / hard errors on the reference family's hardest ``quantile`` of the test set.

    See the module docstring. Per backbone: the reference rows at their largest
    data fraction define, for each seed s, the difficulty from the other seeds;
    every row of seed s (every arm, every fraction) is scored on that set.
    """
    import pandas as pd

    if not 0 < quantile < 1:
        raise ValueError(f"hard-example quantile must be in (0, 1), got {quantile}")
    ref_all = df[df["hierarchy"] == reference_kind] if "hierarchy" in df else df.iloc[0:0]
    if not _has(df, TEST_CORRECT) or not _has(ref_all, TEST_CORRECT):
        return df, (
            f"hard examples not available: no reference family that is not an arm "
            f"(`{reference_kind}` trials with `test_correct`)"
        )
    out = df.copy()
    for col in ("target_error_easy", "target_error_hard", "hard_fraction"):
        out[col] = np.nan
    vectors = {i: decode_correct(v) for i, v in out[TEST_CORRECT].items()}
    backbones = out["backbone"] if "backbone" in out else pd.Series("all", index=out.index)
    sizes, done = set(), 0
    for backbone in backbones.dropna().unique():
        ref = ref_all[backbones.loc[ref_all.index] == backbone]
        if "data_fraction" in ref and ref["data_fraction"].notna().any():
            ref = ref[ref["data_fraction"] == ref["data_fraction"].max()]
        wrong = {
            int(seed): ~vectors[i] for i, seed in ref["seed"].items() if vectors.get(i) is not None
        }
        lengths = {len(v) for v in wrong.values()}
        if len(wrong) < 2 or len(lengths) != 1:
            continue
        n = lengths.pop()
        count = max(1, int(round(quantile * n)))
        tiebreak = np.random.default_rng(0).random(n)  # a fixed order among equal difficulty
        for idx in out.index[(backbones == backbone).to_numpy()]:
            correct, seed = vectors.get(idx), out.at[idx, "seed"]
            if correct is None or len(correct) != n or pd.isna(seed):
                continue
            others = [w for s, w in wrong.items() if s != int(seed)]
            if not others:
                continue
            difficulty = np.mean(others, axis=0)
            hard = np.zeros(n, dtype=bool)
            hard[np.lexsort((tiebreak, -difficulty))[:count]] = True
            _score(out, idx, correct, hard)
        sizes.add((count, n))
        done += 1
    if not done:
        return df, (
            f"hard examples not available: fewer than 2 seeds of the reference family "
            f"(`{reference_kind}`) logged `test_correct` with one test-set size"
        )
    size = "; ".join(f"{c} of {n} test examples" for c, n in sorted(sizes))
    note = (
        f"hard examples (real data): for seed s, the hardest {quantile:.0%} of the test set "
        f"({size}) by the share of the other seeds' `{reference_kind}` models (the reference "
        "family, not a "
        "pretraining arm; largest data fraction) that get each example wrong; the same set "
        "scores every arm of seed s at every data fraction"
    )
    return out, note


def derive_hard_examples(
    df: pd.DataFrame, target_rows: pd.DataFrame, *, mode: HardMode = "auto"
) -> tuple[pd.DataFrame, str]:
    """`df` with `target_error_easy` / `target_error_hard` / `hard_fraction` per `mode`.

    Args:
        df: one row per finished trial (analysis.load), with `test_correct`.
        target_rows: the rows of the target-level arm (BaselineGain.target_level_rows);
            read only by the "target_level" mode.
        mode: "dataset" leaves `df` alone; "reference" defines hard examples from
            the scratch family (reference_hard_examples); "target_level" from the
            target-level arm (biased, on request only); "auto" picks (resolve_mode).

    Returns the table and a sentence for the report saying which definition holds.
    """
    import pandas as pd

    mode = resolve_mode(df, mode)
    if mode == "reference":
        return reference_hard_examples(df)
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
            _score(out, idx, correct, np.mean(others, axis=0) > 0.5)  # most other seeds
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
    keys = [k for k in CELL_TABLE_COLUMNS if k in df]
    cols = [
        c
        for c in ("target_error", "target_error_easy", "target_error_hard", "hard_fraction")
        if c in df
    ]
    table = df.groupby(keys, dropna=False)[cols].mean()
    table["n"] = df.groupby(keys, dropna=False)["target_error_hard"].count()
    order = [k for k in ("data_fraction", "hierarchy", "num_classes") if k in keys]
    return table.reset_index().sort_values(order).reset_index(drop=True)
