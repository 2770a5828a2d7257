"""Crossed factors as the analysis's axes: which trials one analysis fits, and how it pairs them.

A sweep may cross, beyond hierarchy x level x data fraction x backbone, the finetuning protocol
(MLflow param ``finetune.mode``) and dataset options (params ``dataset.<option>``, string
values). The estimators group by (hierarchy, level, data_fraction, backbone) and pair by
``seed``; fed every trial at once they would pool linear and full trials, or different folds, as
replicates of one cell. This module turns the crossed columns into views the estimators read
unchanged:

- the ``size`` option (``analysis: {size: OPTION}``): its values (numbers) become the
  ``data_fraction`` column, the size axis, labelled with the option's name;
- the ``block`` option: a blocking factor. The pooled view replaces ``seed`` by one replicate
  unit per (block value, seed), so every pairing is within a block and a seed; one more view per
  block value holds that block's trials alone;
- every other crossed column splits the analysis: one view per value (combination), labelled
  (e.g. "finetune mode: full"). Scratch trials (no finetuning) join every mode's view.

No crossed column and no config: one view holding the trials unchanged (the report as before).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from analysis.estimators import BaselineGain
from analysis.hard_examples import HardMode, derive_hard_examples, resolve_mode
from analysis.trial_table import is_scratch
from contracts import ANALYSIS_CONFIG

MODE = "finetune.mode"  # the finetuning protocol's MLflow param
OPTION_PREFIX = "dataset."  # a crossed dataset option's MLflow param: dataset.<option>
SIZE_COLUMN = "data_fraction"  # the estimators' size axis
DEFAULT_SIZE_LABEL = "data fraction"


@dataclass(frozen=True)
class AnalysisConfig:
    """Which crossed dataset option is the size axis and which a block (None: neither)."""

    size: str | None = None
    block: str | None = None


@dataclass(frozen=True)
class View:
    """The trials one full analysis fits, and what the report calls it.

    ``label``: "" for the whole sweep, else e.g. "finetune mode: full; block seed=1";
    ``slug``: a folder name for its figures ("" for the whole sweep); ``size_label``: the size
    axis' name in the report; ``block``: the block column of a view pooled over blocks.
    """

    label: str
    slug: str
    df: pd.DataFrame
    size_label: str = DEFAULT_SIZE_LABEL
    block: str | None = None


def config_of(
    sweep_tags: Mapping[str, str], *, size: str | None = None, block: str | None = None
) -> AnalysisConfig:
    """The analysis config: the parent run's ``granularity.analysis`` tag, each entry
    overridden by a flag that is given (``granularity analyze --size/--block``)."""
    raw = sweep_tags.get(ANALYSIS_CONFIG)
    tagged: dict = {}
    if raw:
        try:
            tagged = json.loads(raw)
        except json.JSONDecodeError as err:
            raise ValueError(f"Tag {ANALYSIS_CONFIG} is not JSON ({raw!r}): {err}") from None
        if not isinstance(tagged, dict):
            raise ValueError(f"Tag {ANALYSIS_CONFIG} is not a JSON object: {raw!r}")
    return AnalysisConfig(
        size=size if size is not None else tagged.get("size"),
        block=block if block is not None else tagged.get("block"),
    )


def crossed_options(df: pd.DataFrame) -> list[str]:
    """The crossed dataset options (``dataset.<option>`` columns), by option name."""
    return sorted(c.removeprefix(OPTION_PREFIX) for c in df.columns if c.startswith(OPTION_PREFIX))


def check_config(df: pd.DataFrame, config: AnalysisConfig) -> None:
    """Raise ValueError naming a ``size``/``block`` that is not a crossed option of the trials."""
    known = crossed_options(df)
    for name in ("size", "block"):
        value = getattr(config, name)
        if value is not None and value not in known:
            raise ValueError(
                f"--{name} {value!r} is not a crossed dataset option of this sweep; accepted: "
                f"{', '.join(known) or 'none (the sweep crosses no dataset option)'}"
            )
    if config.size is not None and config.size == config.block:
        raise ValueError(f"--block {config.block!r} is the size axis too; name another option")


def _with_size(df: pd.DataFrame, option: str) -> pd.DataFrame:
    """``df`` with the option's values (numbers) as the size axis (``data_fraction``)."""
    column = OPTION_PREFIX + option
    values = pd.to_numeric(df[column], errors="coerce")
    bad = sorted(set(df.loc[values.isna() | (values <= 0), column].astype(str)))
    if bad:
        raise ValueError(
            f"--size {option!r}: values {bad} are not positive numbers; the size axis needs them"
        )
    if SIZE_COLUMN in df and df[SIZE_COLUMN].nunique() > 1:
        raise ValueError(
            f"--size {option!r}: the sweep crosses data fractions too "
            f"({sorted(df[SIZE_COLUMN].unique())}); one size axis at a time"
        )
    return df.assign(**{SIZE_COLUMN: values.astype(float)})


def _split_columns(df: pd.DataFrame, config: AnalysisConfig) -> list[str]:
    """The crossed columns that split the analysis: the mode among finetuned trials, and every
    dataset option that is neither the size nor the block, where they take two or more values."""
    tuned = df[~is_scratch(df)]
    columns = [MODE] if MODE in df and tuned[MODE].nunique() > 1 else []
    named = {config.size, config.block}
    for option in crossed_options(df):
        if option not in named and df[OPTION_PREFIX + option].nunique() > 1:
            columns.append(OPTION_PREFIX + option)
    return columns


def _name(column: str) -> str:
    return "finetune mode" if column == MODE else column.removeprefix(OPTION_PREFIX)


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", label).strip("_")


def _sorted_values(series: pd.Series) -> list:
    """A column's values in order: numerically where they all are numbers ("2" before "10")."""
    values = list(series.dropna().unique())
    numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
    if numbers.notna().all():
        return [v for _, v in sorted(zip(numbers, values, strict=True))]
    return sorted(values, key=str)


def _blocked(df: pd.DataFrame, column: str) -> pd.DataFrame:
    """``df`` with one replicate unit per (block value, seed) as its ``seed``: the estimators then
    pair trials within a block and a seed, never across blocks."""
    units = df[[column, "seed"]].astype(str).agg("\x1f".join, axis=1)
    codes = {u: i for i, u in enumerate(sorted(units.unique()))}
    return df.assign(replicate_seed=df["seed"], seed=units.map(codes).astype(int))


def across_modes(
    df: pd.DataFrame, config: AnalysisConfig
) -> tuple[pd.DataFrame, str | None, list[str]]:
    """The trials for an analysis that reads every finetuning mode at once (analysis.protocol):
    ``df`` with the size option as the size axis, the block's column (None without a block)
    and the other split columns (the mode left out), which such an analysis keeps apart."""
    check_config(df, config)
    if config.size is not None:
        df = _with_size(df, config.size)
    block = None if config.block is None else OPTION_PREFIX + config.block
    return df, block, [c for c in _split_columns(df, config) if c != MODE]


def views(df: pd.DataFrame, config: AnalysisConfig) -> list[View]:
    """The analyses a sweep's finished trials make: one per split value (combination), each
    pooled over blocks and then per block; a single unlabelled view of ``df`` unchanged when
    nothing is crossed and nothing configured."""
    check_config(df, config)
    size_label = DEFAULT_SIZE_LABEL if config.size is None else config.size
    if config.size is not None:
        df = _with_size(df, config.size)
    split = _split_columns(df, config)
    scratch = is_scratch(df)
    out: list[View] = []
    for combo in itertools.product(*(_sorted_values(df.loc[~scratch, c]) for c in split)):
        keep = pd.Series(True, index=df.index)
        for column, value in zip(split, combo, strict=True):
            # Scratch trials have no finetuning: they are every mode's baseline.
            match = df[column].astype(str) == str(value)
            keep &= match | scratch if column == MODE else match
        part = df[keep]
        label = "; ".join(f"{_name(c)}: {v}" for c, v in zip(split, combo, strict=True))
        if config.block is None:
            out.append(View(label, _slug(label), part, size_label))
            continue
        column = OPTION_PREFIX + config.block
        pooled = f"{label}; " if label else ""
        out.append(
            View(
                f"{pooled}pooled over the blocks of {config.block} (replicate unit: block x seed)",
                _slug(f"{label} pooled"),
                _blocked(part, column).reset_index(drop=True),
                size_label,
                column,
            )
        )
        for value in _sorted_values(part[column]):
            one = f"{pooled}block {config.block}={value}"
            out.append(
                View(
                    one, _slug(one), part[part[column] == value].reset_index(drop=True), size_label
                )
            )
    if len(out) == 1 and not out[0].label:
        return out
    return [v for v in out if len(v.df)]


def hard_examples_within_blocks(
    view: View, mode: HardMode, metric: str
) -> tuple[pd.DataFrame, str] | None:
    """A pooled view's trials with hard examples derived block by block, and the note saying so;
    None when the view is not pooled over blocks or the hard split is the dataset's own.

    Hard examples from other seeds' models (the reference family, the target level) must come
    from the same block: another fold has other test examples, so its models' mistakes say
    nothing about this fold's. Pooled, the other "seeds" would include other blocks.
    """
    if view.block is None or resolve_mode(view.df, mode) == "dataset":
        return None
    parts, notes = [], []
    for _, part in view.df.groupby(view.block, sort=True):
        rows, _ = BaselineGain(metric=metric).target_level_rows(part)
        derived, note = derive_hard_examples(part, rows, mode=mode)
        parts.append(derived)
        notes.append(note)
    name = view.block.removeprefix(OPTION_PREFIX)
    notes = list(dict.fromkeys(notes))  # the same sentence once
    return pd.concat(parts).loc[view.df.index], f"within each {name} block: " + "; ".join(notes)
