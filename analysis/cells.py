"""Cell-level runs: the sweep's answers, with error bars, as MLflow runs the UI can compare.

MLflow's compare and chart views work on runs. A cell (hierarchy arm, level,
data fraction, backbone) is the unit a sweep's claims are about, so
`granularity analyze` writes one run per cell under the sweep's parent run
(tag `granularity.role=cell`): params `hierarchy`, `level_name`,
`num_classes`, `data_fraction`, `backbone`, and metrics `<metric>_mean`,
`<metric>_ci_low`, `<metric>_ci_high` (95% t interval over seeds), `n_seeds`,
`num_classes`, `log2_num_classes`, `<metric>_mean_f<fraction>` (the mean again, under a name
only the cells of that data fraction have: a chart of it shows one fraction), and the same
for `target_error_easy` / `_hard` where present.
A second analysis updates the same runs (found by the tag
`granularity.cell_key`); it never creates a second run for a cell. Each cell
run carries MLflow's run colour tag, one colour per hierarchy arm, so a chart
of cells reads per hierarchy.

The views. MLflow 3.17 keeps a runs page's columns, charts and filter in the
browser (localStorage), not on the server, so nothing can make them the
default for every visitor; what it does read from the server is a *shared
view*: an experiment tag `mlflow.sharedViewState.<key>` holding the page state
as JSON, applied when the address carries `viewStateShareKey=<key>` (what its
"Share" button writes). `write_views` stores two: `granularity-trials` (the
trial runs with the factor and error columns) and `granularity-cells` (the cell
runs, charted: one chart per data fraction of target_error_mean against
log2(num_classes), one colour per hierarchy; MLflow's scatter chart has neither a log axis
nor error bars, so the axis is the logged `log2_num_classes` and the interval is in the
cells' `_ci_low` / `_ci_high` columns beside it). `view_address` gives the
address of each.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis import stats
from contracts import (
    CELL_COLUMNS,
    CELL_KEY,
    CELL_TABLE_COLUMNS,
    PARENT,
    ROLE,
    ROLE_CELL,
    ROLE_TRIAL,
    TARGET_ERROR,
    Cell,
)

EXTRA_METRICS = ("target_error_easy", "target_error_hard")
RUN_COLOR = "mlflow.runColor"  # MLflow's tag for a run's colour in its charts
SHARED_VIEW = "mlflow.sharedViewState."  # MLflow's experiment-tag prefix of a shared view
TRIALS_VIEW, CELLS_VIEW = "granularity-trials", "granularity-cells"
# One colour per hierarchy arm, in the order the cells sort (tab10, distinct on white).
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip


def cell_table(df: pd.DataFrame, metric: str, *, alpha: float = 0.05) -> pd.DataFrame:
    """One row per cell: its keys, and mean / CI / n of `metric` (and easy / hard) over seeds."""
    keys = [c for c in CELL_TABLE_COLUMNS if c in df]
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
                if "data_fraction" in row:
                    row[fraction_metric(metric, row["data_fraction"])] = ci.mean
        if "num_classes" in row:
            row["log2_num_classes"] = float(np.log2(float(row["num_classes"])))
        rows.append(row)
    return pd.DataFrame(rows)


def fraction_metric(metric: str, data_fraction: float) -> str:
    """The name under which a cell of ``data_fraction`` logs its mean ``metric`` a second time."""
    return f"{metric}_mean_f{float(data_fraction):g}"


def cell_key(row: pd.Series | dict) -> str:
    """`<hierarchy>/<level_name>/f<fraction>/<backbone>`: a trial's run name without the seed."""
    return Cell.of(row).key


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
    colors = hierarchy_colors(cells)
    for _, row in cells.iterrows():
        key = cell_key(row)
        run = existing.get(key)
        color = colors.get(row.get("hierarchy"), PALETTE[0])
        if run is None:
            run = client.create_run(
                experiment_id,
                run_name=f"cell/{key}",
                tags={ROLE: ROLE_CELL, PARENT: parent_run_id, CELL_KEY: key, RUN_COLOR: color},
            )
            params = [Param(c, str(row[c])) for c in CELL_TABLE_COLUMNS if c in row]
        else:
            params = []  # params are written once; the cell's keys do not change
        metrics = [
            Metric(name, float(value), now, 0)
            for name, value in row.items()
            if name not in CELL_COLUMNS
            and isinstance(value, int | float | np.floating | np.integer)
            and np.isfinite(value)
        ]
        client.log_batch(run.info.run_id, metrics=metrics, params=params)
        if run.info.status != "FINISHED":
            client.set_terminated(run.info.run_id, status="FINISHED")
        if run.data.tags.get(RUN_COLOR, color) != color:  # a new arm can shift the order
            client.set_tag(run.info.run_id, RUN_COLOR, color)
    return len(cells)


def hierarchy_colors(cells: pd.DataFrame) -> dict[str, str]:
    """Hierarchy arm -> its colour in MLflow's charts (the palette in sorted arm order)."""
    arms = sorted(str(h) for h in cells["hierarchy"].dropna().unique()) if len(cells) else []
    return {arm: PALETTE[i % len(PALETTE)] for i, arm in enumerate(arms)}


def _columns(params: tuple[str, ...], metrics: tuple[str, ...]) -> list[str]:
    # MLflow's column ids: `<params|metrics|tags|attributes>.`<key>`` (its makeCanonicalSortKey)
    return [f"params.`{p}`" for p in params] + [f"metrics.`{m}`" for m in metrics]


def view_states(metric: str = TARGET_ERROR, fractions: Sequence[float] = ()) -> dict[str, dict]:
    """The two shared views' page states, as MLflow 3.17's runs page persists them.

    The fields are MLflow's (`EXPERIMENT_PAGE_UI_STATE_FIELDS` plus the search
    facets); a field left out takes MLflow's default. A shared view cannot
    expand the parent run (MLflow drops `runsExpanded` from it), so the runs
    are sorted by name: any order but creation time lists child runs flat, as
    rows and chart points. Every run is shown, not MLflow's default first ten. The cells view
    has one chart per data fraction in ``fractions`` (one over all cells when none are given).
    """
    common = {
        "orderByKey": "tags.`mlflow.runName`",
        "orderByAsc": True,
        "runsHiddenMode": "SHOW_ALL",
        "hideEmptyCharts": True,
        "useGroupedValuesInCharts": False,
    }
    split = tuple(f"{metric}{s}" for s in ("_easy", "_hard"))
    trials = {
        **common,
        "searchFilter": f"tags.`{ROLE}` = '{ROLE_TRIAL}'",
        "selectedColumns": _columns(
            (*CELL_TABLE_COLUMNS, "seed"),
            (metric, *split),
        ),
    }
    stats_of = lambda name: (f"{name}_mean", f"{name}_ci_low", f"{name}_ci_high")  # noqa: E731
    section = "granularity-cells-section"
    charts = [
        _cells_chart(section, f"{metric}_mean", "all cells")
        if fraction is None
        else _cells_chart(
            section, fraction_metric(metric, fraction), f"data fraction {float(fraction):g}"
        )
        for fraction in (sorted(fractions) or [None])
    ]
    cells = {
        **common,
        "searchFilter": f"tags.`{ROLE}` = '{ROLE_CELL}'",
        "selectedColumns": _columns(
            CELL_COLUMNS,
            ("num_classes", *stats_of(metric), "n_seeds"),
        ),
        "compareRunCharts": charts,
        "compareRunSections": [
            {
                "uuid": section,
                "name": "granularity: cells",
                "display": True,
                "isReordered": False,
                "deleted": False,
                "isGenerated": False,
                "columns": min(len(charts), 2),  # fractions side by side
                "cardHeight": 520,
            }
        ],
        # Sections MLflow adds for the other metrics go below this one.
        "isAccordionReordered": True,
    }
    return {TRIALS_VIEW: trials, CELLS_VIEW: cells}


def _cells_chart(section: str, y_key: str, title: str) -> dict:
    """A scatter chart of the cell runs' ``y_key`` against log2(classes), one colour per arm."""
    return {
        "uuid": f"granularity-cells-chart-{y_key}",
        "type": "SCATTER",
        "displayName": f"{title}: {y_key} against log2(num_classes), one colour per hierarchy",
        "xaxis": {"key": "log2_num_classes", "type": "METRIC"},
        "yaxis": {"key": y_key, "type": "METRIC"},
        "runsCountToCompare": 1000,
        "metricSectionId": section,
        "deleted": False,
        "isGenerated": False,
    }


def write_views(
    *,
    tracking_uri: str,
    experiment_id: str,
    metric: str = TARGET_ERROR,
    fractions: Sequence[float] = (),
) -> list[str]:
    """Store the shared views as experiment tags (replacing older ones); returns their keys."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    states = view_states(metric, fractions)
    for key, state in states.items():
        client.set_experiment_tag(experiment_id, SHARED_VIEW + key, json.dumps(state))
    return list(states)


def view_address(experiment_id: str, key: str, base: str = "http://127.0.0.1:5000") -> str:
    """The MLflow UI address of a shared view (model-training view; cells open as charts)."""
    mode = "CHART" if key == CELLS_VIEW else "TABLE"
    return (
        f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
        f"&compareRunsMode={mode}&viewStateShareKey={key}"
    )
