"""Cell runs: `granularity analyze` puts each cell's mean and CI over seeds in MLflow, once."""

from __future__ import annotations

import json

import numpy as np
from mlflow.tracking import MlflowClient

from analysis.cells import CELLS_VIEW, RUN_COLOR, SHARED_VIEW, TRIALS_VIEW, cell_table
from analysis.cli import view_lines
from analysis.load import load_runs
from analysis.report import write_report
from testing.simulate import simulate_sweep, u_curve, write_sweep


def test_cell_runs_hold_each_cells_mean_and_interval_are_updated_in_place_and_charted(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    df = simulate_sweep(
        curve=u_curve(),
        kinds={"manual": 0.0, "random": 0.02},
        data_fractions=(0.25, 1.0),
        seeds=4,
        random_state=0,
    )
    parent = write_sweep(df, "sweep", uri, bulk=True, artifact_location=str(tmp_path / "art"))
    write_report("sweep", uri, tmp_path / "report", n_boot=100)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("sweep").experiment_id
    cells = client.search_runs([experiment], "tags.`granularity.role` = 'cell'")
    trials = load_runs("sweep", uri)
    expected = cell_table(trials, "target_error")
    assert (
        len(cells)
        == len(expected)
        == trials.groupby(["hierarchy", "level_name", "data_fraction"]).ngroups
    )
    for run in cells:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent
        m, p = run.data.metrics, run.data.params
        group = trials[
            (trials["hierarchy"] == p["hierarchy"])
            & (trials["level_name"] == p["level_name"])
            & (trials["data_fraction"] == float(p["data_fraction"]))
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
    # Each cell run is coloured by its hierarchy; the UI views are experiment tags.
    experiment = client.get_experiment(experiment)
    color_of = {}
    for run in cells:
        color_of.setdefault(run.data.params["hierarchy"], set()).add(run.data.tags[RUN_COLOR])
    assert all(len(c) == 1 for c in color_of.values())
    assert len(set().union(*color_of.values())) == len(color_of) == trials["hierarchy"].nunique()

    views = {k: json.loads(experiment.tags[SHARED_VIEW + k]) for k in (TRIALS_VIEW, CELLS_VIEW)}
    assert views[TRIALS_VIEW]["searchFilter"] == "tags.`granularity.role` = 'trial'"
    assert "metrics.`target_error`" in views[TRIALS_VIEW]["selectedColumns"]
    assert "params.`level_name`" in views[TRIALS_VIEW]["selectedColumns"]
    cells_view = views[CELLS_VIEW]
    assert cells_view["searchFilter"] == "tags.`granularity.role` = 'cell'"
    # One chart per data fraction, each of a metric only that fraction's cells hold, on log2 x.
    charts = cells_view["compareRunCharts"]
    fractions = sorted(trials["data_fraction"].unique())
    assert [c["yaxis"]["key"] for c in charts] == [f"target_error_mean_f{f:g}" for f in fractions]
    for chart, fraction in zip(charts, fractions, strict=True):
        assert chart["type"] == "SCATTER" and chart["xaxis"]["key"] == "log2_num_classes"
        assert chart["metricSectionId"] == cells_view["compareRunSections"][0]["uuid"]
        holders = [r for r in cells if chart["yaxis"]["key"] in r.data.metrics]
        assert holders and all(float(r.data.params["data_fraction"]) == fraction for r in holders)
    run = cells[0]
    assert np.isclose(
        run.data.metrics["log2_num_classes"], np.log2(run.data.metrics["num_classes"])
    )
    assert all(len(json.dumps(v)) < 5000 for v in views.values())  # MLflow's tag-value limit
    lines = "\n".join(view_lines("sweep", uri))
    assert f"#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning" in lines
    assert (
        "viewStateShareKey=granularity-cells" in lines and "mlflow ui --backend-store-uri" in lines
    )
