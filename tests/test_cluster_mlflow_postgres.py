"""An MLflow tracking server over PostgreSQL (slow): 8 concurrent trials, and the server lost mid-sweep.

Both servers are started here on 127.0.0.1 (tests/servers.py): a throwaway
PostgreSQL cluster and `mlflow server --backend-store-uri postgresql+psycopg2://...
--artifacts-destination <dir>`.

- 8 trials at once (resources.cpu 0.25 on a 2-CPU local Ray, pack 1): every
  trial_key has exactly one FINISHED run with all its final metrics, every
  per-epoch point once, its config.json artifact; the server log shows no
  lock or database errors.
- The tracking server killed mid-sweep: the sweep goes on, exits 1 saying
  how many results are pending sync; the results are in the sweep's storage;
  with the server back (same address), `granularity sync` writes them, once;
  a second sync and a rerun write and run nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sweeps_fake
from servers import free_port, mlflow_server, postgres_available, postgres_server
from sweeps_fake import write_fake_spec

from sweeps import commands
from sweeps.ledger.mlflow_store import Tracker
from sweeps.ledger.records import read_results
from sweeps.spec import load_spec

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not postgres_available(), reason="PostgreSQL binaries not installed"),
]

TIMES_LOG = "times.log"


def timed_train(config: dict, report) -> dict:
    """tests/sweeps_fake.py's trainable, logging `trial_key start end` (to measure concurrency)."""
    started = time.time()
    result = sweeps_fake.train(config, report)
    storage = Path(config["pretrain_store"]).parent
    with open(storage / TIMES_LOG, "a") as handle:
        handle.write(f"{config['trial_key']} {started} {time.time()}\n")
    return result


def max_overlap(storage: Path) -> int:
    spans = [
        tuple(map(float, line.split()[1:]))
        for line in (storage / TIMES_LOG).read_text().splitlines()
    ]
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    best = current = 0
    for _, step in edges:
        current += step
        best = max(best, current)
    return best


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    # Not under pytest's tmp dir: that is private to root, and PostgreSQL runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="granularity-pg-"))
    root.chmod(0o755)
    try:
        with postgres_server(root / "cluster") as uri:
            yield uri
    finally:
        shutil.rmtree(root, ignore_errors=True)


def write_spec(tmp_path: Path, name: str, uri: str, **extra) -> Path:
    fields = {
        "trainable": "test_cluster_mlflow_postgres:timed_train",
        "seeds": 4,
        "pretrain": {"epochs": 3},
        "pack": 1,
        "resources": {"cpu": 0.25},
        **extra,
    }
    return write_fake_spec(tmp_path, name, tracking_uri=uri, **fields)


def check_complete(spec_path: Path, storage: Path) -> int:
    """Every stored result is one FINISHED run with all of it, once; returns the runs checked."""
    spec = load_spec(spec_path)
    tracker = Tracker(spec, create=False)
    runs = tracker.client.search_runs([tracker.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("granularity.role") == "sweep"]
    trials = [r for r in runs if r.data.tags.get("granularity.role") == "trial"]
    assert len(parents) == 1
    parent_artifacts = {f.path for f in tracker.client.list_artifacts(parents[0].info.run_id)}
    assert {"hierarchies", "specs"} <= parent_artifacts
    keys = [r.data.tags["granularity.trial_key"] for r in trials]
    stored = read_results(storage)
    assert len(keys) == len(set(keys)) == len(stored)
    for run in trials:
        record = stored[run.data.tags["granularity.trial_key"]]
        assert run.info.status == "FINISHED"
        assert set(record["result"]) <= set(run.data.metrics)
        for name in {n for _, values in record["history"] for n in values}:
            steps = [m.step for m in tracker.client.get_metric_history(run.info.run_id, name)]
            assert sorted(steps) == sorted(s for s, v in record["history"] if name in v), name
        assert [f.path for f in tracker.client.list_artifacts(run.info.run_id)] == ["config.json"]
        with tempfile.TemporaryDirectory() as tmp:
            local = tracker.client.download_artifacts(run.info.run_id, "config.json", tmp)
            config = json.loads(Path(local).read_text())
        assert config["trial_key"] == run.data.tags["granularity.trial_key"]
    return len(trials)


def test_eight_concurrent_trials_log_everything_to_postgres(
    tmp_path, postgres, ray_address, capsys
):
    with mlflow_server(postgres, tmp_path / "artifacts") as server:
        url = server.url
        path = write_spec(tmp_path, "pg-eight", url, options={"sleep": 0.4})
        assert load_spec(path).slots() == 8
        assert commands.main(["run", str(path)]) == 0
        captured = capsys.readouterr()
        assert "20 finished, 0 failed" in captured.out
        assert "MLflow write failed" not in captured.err
        assert check_complete(path, tmp_path / "store") == 20
        overlap = max_overlap(tmp_path / "store")
        print(
            f"8 slots: at most {overlap} trials ran at once; 20 runs checked", file=sys.__stderr__
        )
        assert overlap >= 6  # trials really ran side by side
        server_log = next(tmp_path.glob("mlflow-server-*.log")).read_text()
        assert not re.search(
            r"deadlock|could not obtain lock|OperationalError|IntegrityError", server_log
        )
        # A rerun against the server finds everything done.
        assert commands.main(["run", str(path)]) == 0
        assert "20 already done, 0 run now" in capsys.readouterr().out


def test_server_lost_mid_sweep_loses_nothing_and_duplicates_nothing(
    tmp_path, postgres, ray_address, capsys
):
    port = free_port()
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    url = f"http://127.0.0.1:{port}"
    path = write_spec(
        tmp_path, "pg-outage", url, options={"sleep": 0.3}, seeds=3, resources={"cpu": 0.5}
    )
    storage = tmp_path / "store"
    killed_after: list[int] = []

    with mlflow_server(postgres, artifacts, port=port, workers=1) as server:

        def kill_when_two_finished() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and len(read_results(storage)) < 2:
                time.sleep(0.05)
            killed_after.append(len(read_results(storage)))
            os.killpg(server.proc.pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_when_two_finished, daemon=True)
        killer.start()
        code = commands.main(["run", str(path)])
        killer.join(timeout=10)
    captured = capsys.readouterr()
    assert killed_after and killed_after[0] < 15, "the server was not killed mid-sweep"
    assert code == 1, captured.out
    assert "15 finished, 0 failed" in captured.out
    pending = int(re.search(r"(\d+) trial result\(s\) pending sync", captured.out).group(1))
    assert pending >= 15 - killed_after[0] - 2
    assert len(read_results(storage)) == 15  # nothing lost

    with mlflow_server(postgres, artifacts, port=port, workers=1):
        assert commands.main(["sync", str(path)]) == 0
        out = capsys.readouterr().out
        written = int(re.search(r"(\d+) trial\(s\) written", out).group(1))
        print(
            f"server killed after {killed_after[0]} results; {pending} pending; {written} synced",
            file=sys.__stderr__,
        )
        assert written >= pending
        assert check_complete(path, storage) == 15
        assert commands.main(["sync", str(path)]) == 0
        assert "0 trial(s) written" in capsys.readouterr().out
        calls = (storage / sweeps_fake.CALLS_FILE).read_text().count("\n")
        assert commands.main(["run", str(path)]) == 0
        assert "15 already done, 0 run now" in capsys.readouterr().out
        assert (storage / sweeps_fake.CALLS_FILE).read_text().count("\n") == calls
