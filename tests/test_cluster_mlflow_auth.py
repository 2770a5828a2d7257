"""The tracking server with MLflow's basic-auth app, as docs/CLUSTER.md starts it (slow).

`mlflow server --app-name basic-auth` on 127.0.0.1: a request without
credentials is refused (401); a sweep whose driver has
MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD logs as usual; wrong
credentials end the run at start with one line (exit 2), not a traceback
and not an offline run.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from servers import mlflow_server
from sweeps_fake import write_fake_spec

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
PASSWORD = "granularity-test-admin-pw"


def status_of(url: str, auth: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(f"{url}/api/2.0/mlflow/experiments/search?max_results=5")
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # a busy machine
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_basic_auth_server_refuses_strangers_and_serves_the_sweep(tmp_path):
    if os.environ.get("CI") != "1":
        pytest.importorskip("flask_wtf")  # mlflow[auth]; part of the test extra
    ini = tmp_path / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{tmp_path / 'basic_auth.db'}\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    env = {
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORD,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "granularity-test-csrf-key",  # required by the auth app
    }
    with mlflow_server(
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        tmp_path / "artifacts",
        workers=1,
        app_name="basic-auth",
        env=env,
    ) as server:
        assert status_of(server.url) == 401
        assert status_of(server.url, ("admin", "wrong")) == 401
        assert status_of(server.url, ("admin", PASSWORD)) == 200
        path = write_fake_spec(tmp_path, "auth", tracking_uri=server.url, seeds=1)
        base = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)]))
        command = [sys.executable, "-m", "sweeps.commands", "run", str(path)]
        wrong = dict(base, MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD="nope")
        refused = subprocess.run(command, env=wrong, capture_output=True, text=True, timeout=300)
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert "refused the credentials" in refused.stderr and "Traceback" not in refused.stderr
        assert not (tmp_path / "store" / "results").exists()  # refused before any trial
        right = dict(base, MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=PASSWORD)
        done = subprocess.run(command, env=right, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]

        os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = (
            "admin",
            PASSWORD,
        )
        try:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=server.url)
            experiment = client.get_experiment_by_name("auth")
            runs = client.search_runs([experiment.experiment_id], max_results=100)
        finally:
            del os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]
        trials = [r for r in runs if r.data.tags.get("granularity.role") == "trial"]
        assert len(trials) == 5 and {r.info.status for r in trials} == {"FINISHED"}
