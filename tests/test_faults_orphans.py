"""A killed driver's workers still running when the next driver starts (the SIGKILL flake's cause).

A SIGKILLed driver's Ray workers live on until Ray notices the driver is
gone: 0.3-1.1 s in 3 kills measured on a lightly loaded machine, but a job
marked finished up to ~2 min late was measured at load 9-26. Until then such
a worker goes on with its pack (up to its next report to the dead driver):
it writes result files, history and the trainable's own files into the
sweep's storage. Before the fencing in sweeps/lock.py, a driver started
meanwhile could sync before the old worker's in-flight result existed, run
that trial a second time, and return while the old worker was still writing
(the SIGKILL test's clean-up once found the results folder being written).

Here the old worker is made explicit, so the window does not depend on Ray's
timing: a process running `run_pack` for the dead driver's invocation, with
its events going nowhere, as a worker whose driver died. The new
`granularity run` must wait for its in-flight trial, stop it from starting
another, run everything else once, and return with nothing left writing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from sweeps_fake import calls, snapshot, write_fake_spec

from fileio import read_json
from sweeps import commands
from sweeps.ledger.mlflow_store import Tracker
from sweeps.ledger.records import read_results, result_path
from sweeps.lock import OWNER_FILE, claim_sweep
from sweeps.plan import build_plan
from sweeps.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

ORPHAN = """
import json, sys
import sweeps_fake
from sweeps.packs import run_pack
items, storage = json.loads(open(sys.argv[1]).read()), sys.argv[2]
counts = run_pack(items, trainable=sweeps_fake.train, emit=lambda events: None,
                  storage=storage, retries=0, invocation="dead-driver")
print(json.dumps(counts))
"""


def test_new_driver_waits_for_a_dead_drivers_worker_and_fences_it(tmp_path, ray_address, capsys):
    control, hold = tmp_path / "control.json", tmp_path / "hold"
    # The orphan's first trial waits at each epoch while `hold` exists: it is
    # in flight until the new driver has claimed the sweep, whatever the load.
    control.write_text(json.dumps({"sleep": 0.05, "hold": str(hold)}))
    hold.touch()
    path = write_fake_spec(
        tmp_path,
        "orphans",
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        options={"control": str(control)},
        pretrain={"epochs": 3},
        seeds=1,
        pack=5,  # one Ray trial: the new driver's work is start-up, the wait and one pack
    )
    spec = load_spec(path)
    store = spec.resolved_storage_path()
    plan = build_plan(spec, write=True)
    # The items as the executor sends them: a pack of 4 trials.
    pack = [{"config": t.config, "meta": t.meta()} for t in plan.trials[:4]]
    (tmp_path / "pack.json").write_text(json.dumps(pack))
    first = pack[0]["config"]["trial_key"]

    claim_sweep(store, "dead-driver")  # what the killed driver had written
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)]))
    orphan = subprocess.Popen(
        [sys.executable, "-c", ORPHAN, str(tmp_path / "pack.json"), str(store)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not calls(store) and orphan.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert calls(store) == {first: 1}, orphan.poll() is not None and orphan.communicate()
        control.write_text(json.dumps({"sleep": 0.05}))  # trials started from now on run free

        in_flight_at_claim: list[bool] = []

        def release_once_claimed() -> None:
            while (read_json(store / OWNER_FILE) or {}).get("invocation") == "dead-driver":
                time.sleep(0.05)
            in_flight_at_claim.append(not result_path(store, first).exists())
            # Held until the new driver's own pack has started a trial, or for 6 s:
            # a driver that did not wait would have synced and launched by then.
            claimed = time.monotonic()
            while calls(store) == {first: 1} and time.monotonic() - claimed < 6.0:
                time.sleep(0.05)
            hold.unlink(missing_ok=True)

        releaser = threading.Thread(target=release_once_claimed, daemon=True)
        releaser.start()
        assert commands.main(["run", str(path)]) == 0, capsys.readouterr()
        releaser.join(timeout=5)
        assert in_flight_at_claim == [True], "the new driver never claimed the sweep"
        returned = snapshot(store)
        # The orphan finished its in-flight trial, saw the newer driver and started
        # no other trial of its pack; the driver waited for it.
        assert orphan.poll() is not None, "the run returned while the dead driver's worker ran"
        out, err = orphan.communicate()
        assert orphan.returncode == 0, err
        assert json.loads(out) == {"finished": 1, "failed": 0, "skipped": 0}
    finally:  # a failure above must not leave the old worker waiting for ever
        hold.unlink(missing_ok=True)
        if orphan.poll() is None:
            orphan.kill()
    # Every trial ran exactly once, the orphan's included: the new driver found
    # its result on disk instead of running it again.
    called = calls(store)
    assert set(called) == {t.trial_key for t in plan.trials} and set(called.values()) == {1}
    assert set(read_results(store)) == set(called)
    assert "1 result(s) synced from storage" in capsys.readouterr().out  # the orphan's, once
    time.sleep(2.0)
    assert snapshot(store) == returned, "files under the store changed after the run returned"

    tracker = Tracker(spec, create=False)
    runs = tracker.client.search_runs([tracker.experiment_id], max_results=1000)
    trials = [r for r in runs if r.data.tags.get("granularity.role") == "trial"]
    keys = [r.data.tags["granularity.trial_key"] for r in trials]
    assert sorted(keys) == sorted(called) and {r.info.status for r in trials} == {"FINISHED"}
