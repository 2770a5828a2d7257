"""The MLflow UI as a user sees it: the quickstart's sweep browsed in headless Chromium.

Runs the quickstart spec (its smoke settings, 2 seeds so cells have intervals)
with the real trainable, analyses it, serves the SQLite store with `mlflow
server` on 127.0.0.1 and drives Debian's Chromium through chromedriver
(selenium) to the two addresses `granularity analyze` prints. It reads what is
on screen: the model-training view (not the GenAI overview) with the trial rows
and their factor and error columns; the cell runs, one row each, and a scatter
chart of the cells' target_error_mean against num_classes with one point per
cell and one colour per hierarchy; a trial's own page.

`GRANULARITY_UPDATE_SCREENSHOT=1 python -m pytest -m slow tests/test_ui_browser.py`
also copies the cells view's screenshot to docs/mlflow-ui.png.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from servers import mlflow_server

from analysis.cells import CELLS_VIEW, TRIALS_VIEW, hierarchy_colors, view_address

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
# A first visit opens MLflow's assistant panel over a third of the page; a user
# closes it once, and MLflow remembers that under this key (its useLocalStorage).
ASSISTANT_SEEN = "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1"

pytestmark = pytest.mark.slow


def _require_browser() -> None:
    missing = [n for n, p in (("chromium", CHROMIUM), ("chromium-driver", CHROMEDRIVER)) if not p]
    if missing:
        message = f"needs Debian's {' and '.join(missing)} (.ci/run installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def browser() -> Iterator:
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1600,1100", "--disable-background-networking"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(what: str, probe: Callable[[], object], timeout_s: float = 120) -> object:
    """Poll `probe` until it returns something truthy (the SPA renders in its own time)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"the MLflow UI did not show {what} within {timeout_s:.0f} s")
        time.sleep(1)


def granularity(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "sweeps.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def test_the_sweep_opens_as_trials_and_charted_cells_in_the_mlflow_ui(tmp_path, browser) -> None:
    granularity("run", "quickstart", "--smoke", "seeds=2", f"storage_path={tmp_path / 'runs'}",
                cwd=tmp_path)  # fmt: skip
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    analyzed = granularity("analyze", "quickstart", "--tracking-uri", store, "--out", "report",
                           cwd=tmp_path).stdout  # fmt: skip

    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("quickstart").experiment_id
    runs = client.search_runs([experiment], max_results=5000)
    role = lambda r: r.data.tags.get("granularity.role")  # noqa: E731
    trials = [r for r in runs if role(r) == "trial"]
    cells = [r for r in runs if role(r) == "cell"]
    assert len(trials) >= 40 and 10 <= len(cells) < len(trials)
    # The addresses analyze prints are the ones a user opens.
    assert view_address(experiment, CELLS_VIEW) in analyzed
    assert view_address(experiment, TRIALS_VIEW) in analyzed

    # One worker and a long start: a loaded CI machine starts it slowly, its workers time out.
    with mlflow_server(store, tmp_path / "artifacts-served", workers=1, timeout_s=300) as server:
        browser.get(server.url + "/")
        browser.execute_script(f"localStorage.setItem('{ASSISTANT_SEEN}', 'true')")
        text = lambda: browser.find_element("tag name", "body").text  # noqa: E731

        # Trials: the model-training runs table, every trial a row, with its factors and errors.
        browser.get(view_address(experiment, TRIALS_VIEW, server.url))
        columns = ("hierarchy", "level_name", "num_classes", "data_fraction", "seed",
                   "target_error", "target_error_ha")  # fmt: skip
        first = sorted(r.info.run_name for r in trials)[0]
        # The count renders before the rows and their columns (seconds apart on a busy machine).
        wait_for(
            "the trials table with its rows and columns",
            lambda: (
                f"{len(trials)} matching runs" in (page := text())
                and first in page
                and all(column in page for column in columns)
            ),
        )
        page = text()
        assert "Model training" in page and "Overview" not in page  # not the GenAI landing page
        for column in columns:
            assert column in page, f"column {column} not shown"
        assert first in page

        # Cells: one row per cell, and the chart, one point per cell, one colour per hierarchy.
        browser.get(view_address(experiment, CELLS_VIEW, server.url))
        points = "document.querySelectorAll('.scatterlayer .point')"
        wait_for(
            "the cells' scatter chart",
            lambda: browser.execute_script(f"return {points}.length") == len(cells),
        )
        page = text()
        assert f"{len(cells)} matching runs" in page and "granularity: cells" in page
        assert "target_error_mean" in page and "num_classes" in page
        assert sorted(r.info.run_name for r in cells)[0] in page
        fills = browser.execute_script(f"return Array.from({points}).map(p => p.style.fill)")
        hierarchies = {r.data.params["hierarchy"] for r in cells}
        assert len(set(fills)) == len(hierarchies)
        expected = {_rgb(c) for c in hierarchy_colors_of(cells).values()}
        assert set(fills) == expected
        time.sleep(2)  # let plotly finish its transition before the picture
        shot = tmp_path / "mlflow-ui.png"
        browser.save_screenshot(str(shot))

        # A trial's own page shows its name and key.
        trial = trials[0]
        browser.get(f"{server.url}/#/experiments/{experiment}/runs/{trial.info.run_id}")
        key = trial.data.tags["granularity.trial_key"]
        wait_for("the trial's page", lambda: key in browser.page_source)
        assert trial.info.run_name in browser.page_source

    assert shot.stat().st_size > 20_000
    if os.environ.get("GRANULARITY_UPDATE_SCREENSHOT"):
        shutil.copy(shot, ROOT / "docs" / "mlflow-ui.png")


def hierarchy_colors_of(cells: list) -> dict[str, str]:
    import pandas as pd

    return hierarchy_colors(
        pd.DataFrame({"hierarchy": [r.data.params["hierarchy"] for r in cells]})
    )


def _rgb(hex_color: str) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"
