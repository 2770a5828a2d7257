"""Loading trial runs from an MLflow store written as the contract says (parent + children)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.load import ExperimentNotFoundError, find_sweep_run, load_runs
from testing.simulate import simulate_sweep, write_sweep


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A small SQLite store: 1 parent, 14 finished trials (one with a NaN metric), 1 failed."""
    tmp_path = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    df = simulate_sweep(
        num_classes=(2, 10, 50),
        kinds={"manual": 0.0, "random": 0.02},
        seeds=2,
        scratch_error=0.3,
        random_state=0,
    )
    df["status"] = "FINISHED"
    df.loc[1, "status"] = "FAILED"
    df.loc[2, "target_error"] = np.nan
    parent = write_sweep(df, "tiny", uri, artifact_location=str(tmp_path / "artifacts"))
    return uri, df, parent


def test_sql_and_search_readers_give_identical_frames(store):
    uri, _, _ = store
    sql = load_runs("tiny", uri, method="sql")
    search = load_runs("tiny", uri, method="search")
    pd.testing.assert_frame_equal(sql, search)
    pd.testing.assert_frame_equal(load_runs("tiny", uri), sql)  # auto picks sql for sqlite


def test_one_tidy_row_per_finished_trial_with_typed_params_metrics_and_tags(store):
    uri, df, parent = store
    runs = load_runs("tiny", uri)
    finished = df[df["status"] == "FINISHED"]
    assert len(runs) == len(finished)
    assert set(runs["trial_key"]) == set(finished["trial_key"])
    assert (runs["parent_run_id"] == parent).all() and (runs["status"] == "FINISHED").all()
    for col in ("level", "num_classes", "data_fraction", "num_train", "seed"):
        assert pd.api.types.is_numeric_dtype(runs[col]), col
    assert runs["target_error"].isna().sum() == 1  # logged NaN comes back as NaN
    merged = runs.merge(finished, on="trial_key", suffixes=("", "_truth"))
    np.testing.assert_allclose(merged["target_error"], merged["target_error_truth"], equal_nan=True)
    assert (merged["num_classes"] == merged["num_classes_truth"]).all()
    assert (merged["label_fn"] == merged["label_fn_truth"]).all()
    assert {"pretrain_key", "spec_hash", "run_id", "align/nmi"} <= set(runs.columns)


def test_other_statuses_can_be_counted(store):
    uri, _, _ = store
    every = load_runs("tiny", uri, statuses=("FINISHED", "FAILED"), method="sql")
    assert every["status"].value_counts().to_dict()["FAILED"] == 1
    searched = load_runs("tiny", uri, statuses=("FINISHED", "FAILED"), method="search")
    pd.testing.assert_frame_equal(every, searched)


def test_bulk_writer_and_client_writer_load_the_same(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/m.db"
    df = simulate_sweep(num_classes=(2, 10), seeds=2, random_state=1)
    write_sweep(df, "api", uri)
    write_sweep(df, "bulk", uri, bulk=True)
    drop = ["run_id", "parent_run_id", "start_time", "end_time"]
    a = load_runs("api", uri).drop(columns=drop).sort_values("trial_key").reset_index(drop=True)
    b = load_runs("bulk", uri).drop(columns=drop).sort_values("trial_key").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_parent_sweep_run_is_found(store):
    uri, _, parent = store
    assert find_sweep_run("tiny", uri) == parent


def test_unknown_experiment_and_missing_store_are_clear_errors(store, tmp_path):
    uri, _, _ = store
    with pytest.raises(
        ExperimentNotFoundError, match=r"Unknown experiment \(nope\).*known: .*tiny"
    ):
        load_runs("nope", uri)
    with pytest.raises(FileNotFoundError, match="No MLflow store"):
        load_runs("tiny", f"sqlite:///{tmp_path}/absent.db")
    with pytest.raises(ValueError, match="Unknown run status"):
        load_runs("tiny", uri, statuses=("DONE",))
