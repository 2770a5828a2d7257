"""Cell-level runs: the sweep's answers, with error bars, as MLflow runs the UI can compare.

MLflow's compare and chart views work on runs. A cell (hierarchy arm, level,
data fraction, backbone) is the unit a sweep's claims are about, so
`granularity analyze` writes one run per cell under the sweep's parent run
(tag `granularity.role=cell`): params `hierarchy`, `level_name`,
`num_classes`, `data_fraction`, `backbone`, and metrics `<metric>_mean`,
`<metric>_ci_low`, `<metric>_ci_high` (95% t interval over seeds), `n_seeds`,
`num_classes`, and the same for `target_error_easy` / `_hard` where present.
A second analysis updates the same runs (found by the tag
`granularity.cell_key`); it never creates a second run for a cell.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from analysis import stats
from contracts import CELL_KEY, PARENT, ROLE, ROLE_CELL

CELL_COLUMNS = ("hierarchy", "level_name", "num_classes", "data_fraction", "backbone")
EXTRA_METRICS = ("target_error_easy", "target_error_hard")


def cell_table(df: pd.DataFrame, metric: str, *, alpha: float = 0.05) -> pd.DataFrame:
    """One row per cell: its keys, and mean / CI / n of `metric` (and easy / hard) over seeds."""
    keys = [c for c in CELL_COLUMNS if c in df]
    rows = []
    for values, group in df.groupby(keys, dropna=False, sort=True):
        row = dict(zip(keys, values, strict=True))
        for name in (metric, *EXTRA_METRICS):
            if name not in group or group[name].notna().sum() == 0:
                continue
            ci = stats.mean_ci(group[name].to_numpy(dtype=float), alpha)
            row.update(
                {
                    f"{name}_mean": ci.mean,
                    f"{name}_ci_low": ci.low,
                    f"{name}_ci_high": ci.high,
                }
            )
            if name == metric:
                row["n_seeds"] = ci.n
        rows.append(row)
    return pd.DataFrame(rows)


def cell_key(row: pd.Series | dict) -> str:
    """`<hierarchy>/<level_name>/f<fraction>/<backbone>`: a trial's run name without the seed."""
    return (
        f"{row['hierarchy']}/{row['level_name']}/f{float(row['data_fraction']):g}/{row['backbone']}"
    )


def log_cell_runs(
    cells: pd.DataFrame, *, tracking_uri: str, experiment_id: str, parent_run_id: str
) -> int:
    """Create or update one FINISHED run per cell under `parent_run_id`; returns how many."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    existing = {
        run.data.tags.get(CELL_KEY): run
        for run in client.search_runs(
            [experiment_id], f"tags.`{ROLE}` = '{ROLE_CELL}'", max_results=50000
        )
    }
    now = int(time.time() * 1000)
    for _, row in cells.iterrows():
        key = cell_key(row)
        run = existing.get(key)
        if run is None:
            run = client.create_run(
                experiment_id,
                run_name=f"cell/{key}",
                tags={ROLE: ROLE_CELL, PARENT: parent_run_id, CELL_KEY: key},
            )
            params = [Param(c, str(row[c])) for c in CELL_COLUMNS if c in row]
        else:
            params = []  # params are written once; the cell's keys do not change
        metrics = [
            Metric(name, float(value), now, 0)
            for name, value in row.items()
            if name not in ("hierarchy", "level_name", "data_fraction", "backbone")
            and isinstance(value, int | float | np.floating | np.integer)
            and np.isfinite(value)
        ]
        client.log_batch(run.info.run_id, metrics=metrics, params=params)
        if run.info.status != "FINISHED":
            client.set_terminated(run.info.run_id, status="FINISHED")
    return len(cells)
