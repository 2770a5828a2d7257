"""Results as data: a sweep's trial runs to one file and back, so a report needs no MLflow.

The file (``granularity export EXPERIMENT --out runs.jsonl.gz``) is gzipped JSON lines:

- line 1, the header: ``{"format": "granularity-export", "version": 1, "experiment": ...,
  "sweep_tags": {...}, "columns": [...], "dtypes": {...}}`` (the parent run's ``granularity.*``
  tags carry e.g. the adaptive design; ``dtypes`` restores every column's pandas dtype);
- then one JSON object per trial run, of every status, in load order: the cell's columns
  (``contracts.CELL_TABLE_COLUMNS``: ``hierarchy``, ``level_name``, ``num_classes``,
  ``data_fraction``, ``backbone``), the other trial params (``contracts.TRIAL_PARAMS``: ``level``,
  ``seed``...), every metric under its MLflow name (``target_error``, ``pretrain/val_error``,
  ``align/nmi``...), the contract tags (``trial_key``, ``label_fn``...) and the per-example
  correctness ``test_correct`` (``"<n>:" + base64(np.packbits(correct))``; decode it with
  ``analysis.hard_examples.decode_correct``). A missing value is ``null``.

Why JSON lines and not parquet: the standard library writes it, any tool reads it, and the bytes
depend only on the runs (gzip's timestamp is fixed to 0), so a committed export diffs cleanly.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.load import ALL_STATUSES, Sweep, check_statuses, load_sweep

FORMAT = "granularity-export"
VERSION = 1
SUFFIXES = (".jsonl.gz", ".jsonl")


class ExportFormatError(ValueError):
    """A file that is not a granularity export this version reads."""


def _check_suffix(path: Path) -> None:
    if not path.name.endswith(SUFFIXES):
        raise ValueError(f"Export file name {str(path)!r} must end in one of {', '.join(SUFFIXES)}")


def _plain(value: object) -> object:
    """A cell as JSON holds it: numpy scalars to Python, missing (NaN, NA, None) to null."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def write_export(sweep: Sweep, path: str | Path) -> Path:
    """Write ``sweep`` to ``path`` (``.jsonl.gz``, or ``.jsonl`` uncompressed); returns the path.

    Example:
        >>> from analysis.load import load_sweep
        >>> write_export(load_sweep("quickstart"), "runs.jsonl.gz")  # doctest: +SKIP
    """
    path = Path(path)
    _check_suffix(path)
    runs = sweep.runs
    header = {
        "format": FORMAT,
        "version": VERSION,
        "experiment": sweep.experiment,
        "sweep_tags": dict(sweep.sweep_tags),
        "columns": [str(c) for c in runs.columns],
        "dtypes": {str(c): str(t) for c, t in runs.dtypes.items()},
    }
    lines = [json.dumps(header)]
    columns = [str(c) for c in runs.columns]
    for row in runs.itertuples(index=False, name=None):
        lines.append(json.dumps(dict(zip(columns, map(_plain, row), strict=True))))
    data = ("\n".join(lines) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gz"):
        # mtime=0 and no file name in the gzip header: the same runs give the same bytes.
        with open(path, "wb") as raw, gzip.GzipFile("", "wb", 9, raw, mtime=0) as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def export_sweep(experiment: str, tracking_uri: str, out: str | Path) -> Path:
    """Read a sweep from MLflow and write it to ``out`` (what ``granularity export`` runs)."""
    out = Path(out)
    _check_suffix(out)  # before reading MLflow: a bad name costs nothing
    return write_export(load_sweep(experiment, tracking_uri), out)


def read_export(path: str | Path) -> Sweep:
    """The Sweep a file written by ``write_export`` holds, with every column's dtype restored.

    Raises FileNotFoundError for a missing file and ExportFormatError (a ValueError) for a file
    that is not an export.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No export file at {str(path)!r}")
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            header = json.loads(f.readline())
            rows = [json.loads(line) for line in f if line.strip()]
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ExportFormatError(f"{str(path)!r} is not a granularity export: {err}") from err
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ExportFormatError(
            f"{str(path)!r} is not a granularity export (its first line has no "
            f'"format": "{FORMAT}"; write one with `granularity export`)'
        )
    if header.get("version") != VERSION:
        raise ExportFormatError(
            f"{str(path)!r} is export version {header.get('version')!r}; this version reads "
            f"{VERSION}"
        )
    columns: list[str] = header["columns"]
    runs = pd.DataFrame(
        {c: pd.Series([r.get(c) for r in rows], dtype=object) for c in columns},
        columns=columns,
    )
    for column, dtype in header["dtypes"].items():
        # Each cell is a Python value or None; astype turns None into the dtype's missing value.
        runs[column] = runs[column].astype(dtype)
    return Sweep(
        experiment=str(header["experiment"]), runs=runs, sweep_tags=dict(header["sweep_tags"])
    )


def load_export(path: str | Path, *, statuses: Sequence[str] = ("FINISHED",)) -> pd.DataFrame:
    """One row per trial run of an export whose status is in ``statuses`` (default: finished):
    the rows ``analysis.load_runs`` gives for the sweep in MLflow (a column all missing in
    those rows keeps the dtype it had among all the sweep's runs).

    Example:
        >>> df = load_export("docs/quickstart/runs.jsonl.gz")  # doctest: +SKIP
        >>> df.groupby(["hierarchy", "num_classes"]).target_error.mean()  # doctest: +SKIP
    """
    check_statuses(statuses)
    runs = read_export(path).runs
    if tuple(statuses) == ALL_STATUSES:
        return runs
    return runs[runs["status"].isin(list(statuses))].reset_index(drop=True)
