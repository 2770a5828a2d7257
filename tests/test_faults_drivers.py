"""Two drivers started on one sweep at the same moment: exactly one runs (slow).

Both are `granularity run` processes on one Ray cluster, started back to
back. One takes the sweep's driver lock and runs every trial once; the other
exits 2 at once with one line saying another driver holds the sweep,
before it starts Ray or touches MLflow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import sweeps_fake
from sweeps_fake import write_fake_spec

from sweeps.ledger.mlflow_store import Tracker
from sweeps.spec import load_spec

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def test_two_drivers_at_once_exactly_one_runs(tmp_path, ray_address):
    path = write_fake_spec(
        tmp_path,
        "twins",
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        options={"sleep": 1.0},  # the winner holds the sweep for ~20 s
        seeds=2,
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)]))
    command = [sys.executable, "-m", "sweeps.commands", "run", str(path), "--address", ray_address]
    drivers = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [d.communicate(timeout=600) for d in drivers]
    codes = [d.returncode for d in drivers]
    assert sorted(codes) == [0, 2], (codes, [err[-2000:] for _, err in outputs])
    _, loser_err = outputs[codes.index(2)]
    assert "another `granularity run` is driving this sweep" in loser_err
    assert "Traceback" not in loser_err and len(loser_err.strip().splitlines()) == 1

    log = tmp_path / "store" / sweeps_fake.CALLS_FILE
    calls = Counter(json.loads(line)["trial_key"] for line in log.read_text().splitlines())
    tracker = Tracker(load_spec(path), create=False)
    runs = tracker.client.search_runs([tracker.experiment_id], max_results=100)
    trials = [r for r in runs if r.data.tags.get("granularity.role") == "trial"]
    keys = [r.data.tags["granularity.trial_key"] for r in trials]
    assert len(keys) == len(set(keys)) == 10 and {r.info.status for r in trials} == {"FINISHED"}
    assert set(calls) == set(keys) and set(calls.values()) == {1}  # each trial ran once
    parents = [r for r in runs if r.data.tags.get("granularity.role") == "sweep"]
    assert len(parents) == 1
