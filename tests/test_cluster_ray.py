"""Cluster mode on one machine (slow): two Ray nodes, a node killed mid-trial, `ray job submit`.

- A sweep on a two-node cluster (`ray.cluster_utils.Cluster`: a head and a
  worker node, 1 CPU each) runs its trials on both nodes; killing the worker
  node mid-trial gets that trial retried on the head node, resuming from its
  checkpoint, and it still has exactly one MLflow run.
- `ray start --head` + `ray job submit --address http://127.0.0.1:<port> --
  granularity run SPEC` runs a sweep as a Ray job. The project is an installed
  package here (pip install -e .), so the job's driver and workers import it;
  the test helpers travel with `--runtime-env-json` env_vars (PYTHONPATH).

Every Ray process here is started by the test, bound to 127.0.0.1 on free
ports with its own temp dir, and killed by PID at the end (never `ray stop`,
which would stop every Ray on the machine).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import sweeps_fake
import yaml
from servers import free_port

from sweeps.ledger.mlflow_store import Tracker
from sweeps.ledger.records import read_results
from sweeps.spec import load_spec, parse_spec

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
NODES_LOG = "nodes.log"


def node_aware_train(config: dict, report) -> dict:
    """The fake trainable, slowed down, checkpointing each epoch and logging its Ray node.

    Appends `trial_key node_id start_epoch` to <storage>/nodes.log at each start;
    resumes from <checkpoint_dir>/progress.json (the epochs already done).
    """
    import ray

    storage = Path(config["pretrain_store"]).parent
    checkpoint = Path(config["checkpoint_dir"])
    checkpoint.mkdir(parents=True, exist_ok=True)
    progress = checkpoint / "progress.json"
    start = json.loads(progress.read_text())["epochs"] if progress.exists() else 0
    node = ray.get_runtime_context().get_node_id()
    with open(storage / NODES_LOG, "a") as handle:
        handle.write(f"{config['trial_key']} {node} {start}\n")
    epochs = int(config["pretrain"]["epochs"])
    for epoch in range(start, epochs):
        time.sleep(float(config["dataset_options"].get("sleep", 0.3)))
        report({"pretrain/loss": 1.0 / (epoch + 1), "pretrain/error": 0.5}, epoch)
        tmp = progress.with_suffix(".tmp")
        tmp.write_text(json.dumps({"epochs": epoch + 1}))
        os.replace(tmp, progress)
    config = {**config, "pretrain": {**config["pretrain"], "epochs": 0}}
    return sweeps_fake.train(config, report)


def starts(storage: Path) -> list[tuple[str, str, int]]:
    log = storage / NODES_LOG
    if not log.exists():
        return []
    return [
        (key, node, int(epoch))
        for key, node, epoch in (line.split() for line in log.read_text().splitlines())
    ]


def spec_dict(tmp: Path, name: str, **extra) -> dict:
    raw = {
        "name": name,
        "dataset": {"name": "sweeps_fake:fake_dataset", "options": {"sleep": 0.4}},
        "trainable": "test_cluster_ray:node_aware_train",
        "target": "coarse",
        "factors": {"hierarchies": ["manual", "random"], "levels": ["mid", "leaf"]},
        "seeds": 1,
        "pretrain": {"epochs": 8},
        "finetune": {"epochs": 1},
        "retries": 2,
        "pack": 1,
        "storage_path": str(tmp / "store"),
        "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}"},
    }
    raw.update(extra)
    return raw


def trial_runs(spec) -> list:
    tracker = Tracker(spec, create=False)
    runs = tracker.client.search_runs([tracker.experiment_id], max_results=1000)
    return [r for r in runs if r.data.tags.get("granularity.role") == "trial"]


@pytest.fixture
def two_node_cluster():
    from ray.cluster_utils import Cluster

    from sweeps.ray_backend import ship_by_value

    ship_by_value(sweeps_fake.train)
    temp = Path(tempfile.mkdtemp(prefix="gr-", dir="/tmp"))  # short: unix socket paths
    common = {"num_cpus": 1, "temp_dir": str(temp)}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            **common,
            "gcs_server_port": free_port(),
            "include_dashboard": False,
        },
    )
    worker = cluster.add_node(**common)
    cluster.wait_for_nodes()
    try:
        yield cluster, worker
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def test_trials_spread_over_two_nodes_and_survive_losing_one(tmp_path, two_node_cluster):
    from sweeps.runner import run_sweep

    cluster, worker = two_node_cluster
    spec = parse_spec(spec_dict(tmp_path, "two-nodes"))
    storage = spec.resolved_storage_path()
    worker_id = worker.node_id
    killed: dict[str, object] = {}

    def kill_worker_mid_trial() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            on_worker = [s for s in starts(storage) if s[1] == worker_id]
            for key, _, _ in on_worker:
                progress = storage / "trials" / key / "progress.json"
                done = json.loads(progress.read_text())["epochs"] if progress.exists() else 0
                if 2 <= done < 6:
                    killed.update(key=key, epochs_done=done)
                    cluster.remove_node(worker, allow_graceful=False)
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_worker_mid_trial, daemon=True)
    killer.start()
    summary, plan = run_sweep(spec, address=cluster.address)
    killer.join(timeout=10)
    assert killed, "the worker node was never killed mid-trial"
    assert summary.ok, summary.text(plan)

    log = starts(storage)
    nodes = {node for _, node, _ in log}
    assert worker_id in nodes and len(nodes) == 2, "trials did not spread over both nodes"
    retried = [s for s in log if s[0] == killed["key"]]
    # Started on the worker, then again on the head, from its checkpoint (not epoch 0).
    assert retried[0][1] == worker_id and retried[0][2] == 0
    assert retried[-1][1] != worker_id and retried[-1][2] >= killed["epochs_done"]

    runs = trial_runs(spec)
    keys = [r.data.tags["granularity.trial_key"] for r in runs]
    assert len(keys) == len(set(keys)) == len(plan.trials) == 4
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert set(read_results(storage)) == set(keys)
    tracker = Tracker(spec, create=False)
    run = next(r for r in runs if r.data.tags["granularity.trial_key"] == killed["key"])
    steps = sorted(
        m.step for m in tracker.client.get_metric_history(run.info.run_id, "pretrain/loss")
    )
    assert steps[-1] == 7 and set(steps) == set(range(8))


def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # up, and asking for Ray's auth token
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}")
        time.sleep(0.5)
    raise TimeoutError(url)


@pytest.fixture
def ray_head():
    """`ray start --head --block` on 127.0.0.1 (free ports); killed by process group at the end."""
    temp = Path(tempfile.mkdtemp(prefix="gr-", dir="/tmp"))
    dashboard = free_port()
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [
            shutil.which("ray") or "ray",
            "start",
            "--head",
            "--block",
            "--port",
            str(free_port()),
            "--dashboard-host",
            "127.0.0.1",
            "--dashboard-port",
            str(dashboard),
            "--include-dashboard",
            "true",
            "--num-cpus",
            "2",
            "--temp-dir",
            str(temp),
            "--disable-usage-stats",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{dashboard}"
        _wait_http(f"{url}/api/version", 120, proc)
        yield url
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=5)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        os.killpg(proc.pid, signal.SIGKILL) if _group_alive(proc.pid) else None
        _kill_leftovers(temp)
        shutil.rmtree(temp, ignore_errors=True)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _kill_leftovers(temp: Path) -> None:
    """Ray processes of this head (their command lines name its temp dir), by PID."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    for line in out.splitlines():
        pid, _, args = line.strip().partition(" ")
        if str(temp) in args and int(pid) != os.getpid():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_ray_job_submit_runs_a_sweep(tmp_path, ray_head):
    spec_path = tmp_path / "job.yaml"
    raw = spec_dict(
        tmp_path,
        "job",
        trainable="sweeps_fake:train",
        dataset={"name": "sweeps_fake:fake_dataset", "options": {}},
        pretrain={"epochs": 2},
        pack="auto",
    )
    spec_path.write_text(yaml.safe_dump(raw))
    runtime_env = {
        "env_vars": {
            "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)]),
            "RAY_USAGE_STATS_ENABLED": "0",
        }
    }
    # Ray 2.5x+ heads require a token by default (~/.ray/auth_token on this machine).
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token")
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(
        [
            shutil.which("ray") or "ray",
            "job",
            "submit",
            "--address",
            ray_head,
            "--runtime-env-json",
            json.dumps(runtime_env),
            "--",
            "granularity",
            "run",
            str(spec_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "succeeded" in output and "4 trials planned" in output
    spec = load_spec(spec_path)
    runs = trial_runs(spec)
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    assert sys.executable  # the job ran with the head's Python (same environment here)
