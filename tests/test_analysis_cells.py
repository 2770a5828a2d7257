"""Cell runs: `granularity analyze` puts each cell's mean and CI over seeds in MLflow, once."""

from __future__ import annotations

import numpy as np
from mlflow.tracking import MlflowClient

from analysis.cells import cell_table
from analysis.load import load_runs
from analysis.report import write_report
from analysis.simulate import simulate_sweep, u_curve, write_sweep


def test_cell_runs_hold_each_cells_mean_and_interval_and_are_updated_in_place(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    df = simulate_sweep(
        curve=u_curve(), kinds={"manual": 0.0, "random": 0.02}, seeds=4, random_state=0
    )
    parent = write_sweep(df, "sweep", uri, bulk=True, artifact_location=str(tmp_path / "art"))
    write_report("sweep", uri, tmp_path / "report", n_boot=100)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("sweep").experiment_id
    cells = client.search_runs([experiment], "tags.`granularity.role` = 'cell'")
    trials = load_runs("sweep", uri)
    expected = cell_table(trials, "target_error")
    assert len(cells) == len(expected) == trials.groupby(["hierarchy", "level_name"]).ngroups
    for run in cells:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent
        m, p = run.data.metrics, run.data.params
        group = trials[
            (trials["hierarchy"] == p["hierarchy"]) & (trials["level_name"] == p["level_name"])
        ]["target_error"]
        assert np.isclose(m["target_error_mean"], group.mean())
        assert m["target_error_ci_low"] < m["target_error_mean"] < m["target_error_ci_high"]
        assert m["n_seeds"] == 4 and m["num_classes"] == float(p["num_classes"])
    # A second analysis updates the same runs, it adds none; the trial analysis ignores them.
    write_report("sweep", uri, tmp_path / "report", n_boot=100)
    again = client.search_runs([experiment], "tags.`granularity.role` = 'cell'")
    assert {r.info.run_id for r in again} == {r.info.run_id for r in cells}
    assert len(load_runs("sweep", uri)) == len(trials)
    html = (tmp_path / "report" / "report.html").read_text()
    assert "<table>" in html and "data:image/png;base64," in html and "## " not in html
    logged = {a.path for a in client.list_artifacts(parent, "analysis")}
    assert "analysis/report.html" in logged
