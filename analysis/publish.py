"""Publishing a written report to MLflow: its files on the sweep's run, cell runs, UI views."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.cells import cell_table, log_cell_runs, write_views
from analysis.fit import ALPHA
from contracts import ANALYSIS_ARTIFACTS


def publish(
    out: Path,
    df: pd.DataFrame,
    *,
    tracking_uri: str,
    parent_run_id: str,
    metric: str,
) -> None:
    """Log ``out``'s files to the parent run (folder ``analysis``), one summary run per cell of
    ``df``'s trials under it, and the experiment's shared views (analysis/cells.py)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    client.log_artifacts(parent_run_id, str(out), artifact_path=ANALYSIS_ARTIFACTS)
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    log_cell_runs(
        cell_table(df, metric, alpha=ALPHA),
        tracking_uri=tracking_uri,
        experiment_id=experiment_id,
        parent_run_id=parent_run_id,
    )
    fractions = sorted(float(f) for f in df["data_fraction"].dropna().unique())
    write_views(
        tracking_uri=tracking_uri, experiment_id=experiment_id, metric=metric, fractions=fractions
    )
