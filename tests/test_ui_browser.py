"""The MLflow UI as a user sees it: the quickstart's sweep browsed in headless Chromium.

Runs the quickstart spec (its smoke settings) with the real trainable, serves
its SQLite store with `mlflow server` on 127.0.0.1, and reads the rendered
pages: the experiment's runs table must count every trial run under the sweep,
and a trial's own page must show its name and trial_key.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from servers import mlflow_server

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)"),
]


def render(url: str, *, screenshot: Path | None = None) -> str:
    """The DOM of `url` after its scripts ran (Chromium's virtual time lets the SPA load)."""
    base = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--virtual-time-budget=20000",
        "--window-size=1400,900",
    ]  # fmt: skip
    if screenshot is not None:
        subprocess.run([*base, f"--screenshot={screenshot}", url], capture_output=True, timeout=120)
    result = subprocess.run(
        [*base, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True
    )
    return result.stdout


def test_quickstart_sweep_is_browsable_in_the_mlflow_ui(tmp_path: Path) -> None:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "sweeps.cli", "run", str(ROOT / "sweeps" / "quickstart.yaml"),
         "--smoke", f"storage_path={tmp_path / 'runs'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]

    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("quickstart")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    trials = [r for r in runs if r.data.tags.get("granularity.role") == "trial"]
    sweep = [r for r in runs if r.data.tags.get("granularity.role") == "sweep"]
    assert len(sweep) == 1 and len(trials) >= 10

    with mlflow_server(store, tmp_path / "artifacts-served") as server:
        url = server.url
        shot = tmp_path / "mlflow-ui.png"
        page = render(f"{url}/#/experiments/{experiment.experiment_id}/runs", screenshot=shot)
        counted = re.search(r"<strong>(\d+)</strong>\s*matching runs", page)
        assert counted, "the runs table did not render"
        assert int(counted.group(1)) == len(runs)
        assert sweep[0].info.run_name in page

        trial = trials[0]
        trial_page = render(
            f"{url}/#/experiments/{experiment.experiment_id}/runs/{trial.info.run_id}"
        )
        assert trial.info.run_name in trial_page
        assert trial.data.tags["granularity.trial_key"] in trial_page

    assert shot.exists() and shot.stat().st_size > 10_000
    if os.environ.get("GRANULARITY_SAVE_SCREENSHOT"):
        shutil.copy(shot, ROOT / "docs" / "mlflow-ui.png")
