"""Everything Ray: start or join a cluster, run packs of trials with Ray Tune.

The only module of the project that imports ray, so Ray's API churn touches
one file. One Ray trial runs one pack (`sweeps.packs.run_pack`); the worker's
events come back to the driver through `tune.report` and a Tune `Callback`,
which hands them to the driver's handlers (the driver is the single MLflow
writer). Ray-level failures (a crashed worker) are retried by Tune's
`FailureConfig`; a retried pack skips the logical trials it already finished.

Data-parallel trials (`resources.workers` > 1): the Ray Tune trial is a small
driver that launches a Ray Train `TorchTrainer` (Train V2, the documented way
to run Train inside Tune): `workers` Train workers, each with `cpu` / `gpu`
of its own, placed by Ray across nodes, each running the same pack under the
process group Train sets up (gloo on CPU, NCCL on GPU; `trainables` sees it
through torch.distributed only). Rank 0's events go through a Ray queue to
the Tune trial, which reports them as a packed trial does. A worker that dies
fails the group; Train's `FailureConfig(max_failures=retries)` restarts it,
and the pack skips finished trials and resumes the current one from its
checkpoint on the sweep's (shared) storage, so a trial keeps its one MLflow run.

Over ~350 lines on purpose: this is all of the project's Ray surface (the
session, Tune, Train), kept in one module so that Ray's API churn touches one file.

Longer than 400 lines because it is the only module that imports ray (tests/test_imports.py,
ONLY_IN), so every Ray and Tune call lives here.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Ray and Tune read these at import or Tuner time; set before importing ray.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no CSV/JSON/TBX per trial
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # Ctrl-C stops the driver at once
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")  # TorchTrainer inside Tune trials
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# A local Ray started by `ray_session` listens on 127.0.0.1 only. Ray binds its
# gRPC servers (GCS, raylet, workers, agents) to loopback only when the node's
# IP is 127.0.0.1, and ray.init takes the machine's routable IP instead (it
# even rewrites `_node_ip_address="127.0.0.1"`) unless this switch, meant for
# single-node Ray on Windows and macOS, is off. Ray reads it once, at import;
# it is removed again so that processes started later (`ray start --address`
# in a test, say) keep Ray's default. Set it to 1 to expose a local Ray.
_LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_switch_was_set = _LOOPBACK_SWITCH in os.environ
os.environ.setdefault(_LOOPBACK_SWITCH, "0")

import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.progress_reporter import TrialProgressCallback  # noqa: E402

from sweeps.ledger.records import Event, event_from_json  # noqa: E402

if not _switch_was_set:
    del os.environ[_LOOPBACK_SWITCH]

EVENTS_KEY = "granularity_events"
DRIVER_MEMORY = 256 * 2**20  # bytes a data-parallel trial's Tune process books (it trains nothing)
# A local Ray prestarts one idle worker per CPU when the driver connects. Tune's
# trial actors never use them (Tune gives its actors a runtime env of their own,
# so Ray starts new processes), and on a small machine their start-up takes CPU
# from the driver's set-up and the trials' imports.
LOCAL_SYSTEM_CONFIG = {"prestart_worker_first_driver": False, "enable_worker_prestart": False}


@contextmanager
def ray_session(
    *, address: str | None = None, num_cpus: int | None = None, verbose: bool = False
) -> Iterator[dict[str, Any]]:
    """Use the running Ray, join `address` (or RAY_ADDRESS), or start a local one.

    A Ray started here is shut down on exit; one that was already running (a
    test session's, say) is left alone. Yields the cluster's address and resources.
    """
    started = False
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": verbose,
            "logging_level": "INFO" if verbose else "ERROR",
            "configure_logging": True,
        }
        if address:
            check_reachable(address)
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, _system_config=LOCAL_SYSTEM_CONFIG, **kwargs)
        started = True
    try:
        yield {
            "address": ray.get_runtime_context().gcs_address,
            "resources": dict(ray.cluster_resources()),
        }
    finally:
        if started:
            ray.shutdown()


def check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Raise ConnectionError naming `address` when nothing listens there.

    ray.init retries an unreachable GCS address for minutes; a driver given a
    wrong --address (or RAY_ADDRESS) should say so in seconds. `auto` and
    `ray://` client addresses are left to Ray.
    """
    host, sep, port = address.rpartition(":")
    if address == "auto" or "://" in address or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise ConnectionError(
            f"no Ray cluster answers at {address} ({err}); start one (`ray start --head`) "
            "or fix --address / RAY_ADDRESS"
        ) from None


class BackgroundSession:
    """A `ray_session` opened on a helper thread, so the driver's own set-up runs meanwhile.

    Starting a local Ray takes seconds, mostly waiting for its daemons; the
    driver creates the MLflow store in that time. The thread lives until
    `close`: the daemons are started with PR_SET_PDEATHSIG, which Linux ties
    to the thread that spawned them, so they would die with a thread that
    returned.
    """

    def __init__(
        self, *, address: str | None = None, num_cpus: int | None = None, verbose: bool = False
    ) -> None:
        self._kwargs = {"address": address, "num_cpus": num_cpus, "verbose": verbose}
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._info: dict[str, Any] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._hold, name="granularity-ray", daemon=True)
        self._thread.start()

    def _hold(self) -> None:
        try:
            with ray_session(**self._kwargs) as info:
                self._info = info
                self._ready.set()
                self._stop.wait()
        except BaseException as err:  # noqa: BLE001 (re-raised in the driver's thread by wait)
            self._error = err
        finally:
            self._ready.set()

    def wait(self) -> dict[str, Any]:
        """Block until Ray is up; its address and resources (or the error that stopped it)."""
        self._ready.wait()
        if self._error is not None:
            raise self._error
        assert self._info is not None
        return self._info

    def close(self) -> None:
        """Shut down the Ray started here (a Ray that was running already is left alone)."""
        self._stop.set()
        self._thread.join()


def _pack_trainable(
    config: dict[str, Any],
    packs: Sequence[Sequence[dict[str, Any]]] | None = None,
    train_fn: Callable[..., dict] | None = None,
    storage: str = "",
    retries: int = 0,
    invocation: str = "",
) -> None:
    """A Ray Tune function trainable: run pack number `config["pack"]`."""
    from sweeps.packs import run_pack

    def emit(events: list[dict[str, Any]]) -> None:
        tune.report({EVENTS_KEY: json.dumps(events)})

    run_pack(
        packs[config["pack"]],
        trainable=train_fn,
        emit=emit,
        storage=storage,
        retries=retries,
        invocation=invocation,
    )


def _data_parallel_trainable(
    config: dict[str, Any],
    packs: Sequence[Sequence[dict[str, Any]]] | None = None,
    train_fn: Callable[..., dict] | None = None,
    storage: str = "",
    retries: int = 0,
    invocation: str = "",
    workers: int = 2,
    per_worker: dict[str, float] | None = None,
) -> None:
    """A Ray Tune function trainable: run pack `config["pack"]` data-parallel under Ray Train.

    Holds almost nothing itself; the TorchTrainer asks Ray for its workers.
    `trainer.fit()` runs on a helper thread while this one relays rank 0's
    event batches from the queue to `tune.report`.
    """
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Empty, Queue

    per_worker = dict(per_worker or {"cpu": 1.0, "gpu": 0.0})
    use_gpu = per_worker.get("gpu", 0) > 0
    events = Queue(actor_options={"num_cpus": 0})
    index = int(config["pack"])
    run_name = f"{tune.get_context().get_trial_name()}-train"
    trainer = TorchTrainer(
        _data_parallel_worker,
        train_loop_config={
            "items": list(packs[index]),
            "train_fn": train_fn,
            "storage": storage,
            "invocation": invocation,
            "events": events,
            "use_gpu": use_gpu,
        },
        scaling_config=ScalingConfig(
            num_workers=workers,
            use_gpu=use_gpu,
            resources_per_worker={"CPU": per_worker["cpu"], **({"GPU": 1} if use_gpu else {})},
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=str(Path(storage) / "ray" / "train"),
            failure_config=FailureConfig(max_failures=retries),
        ),
    )
    failure: list[BaseException] = []

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as err:  # noqa: BLE001 (re-raised below, in Tune's thread)
            failure.append(err)

    thread = threading.Thread(target=fit, name="granularity-train-fit", daemon=True)
    thread.start()
    while True:
        running = thread.is_alive()  # read before the queue: a batch put at the end is seen
        try:
            batch = events.get(timeout=0.5)
        except Empty:
            if not running:
                break
            continue
        tune.report({EVENTS_KEY: json.dumps(batch)})
    thread.join()
    if failure:
        raise failure[0]
    # Train's own run folder (its state, no checkpoint: trials keep theirs) is
    # kept only when the trial failed, as Tune's is.
    shutil.rmtree(Path(storage) / "ray" / "train" / run_name, ignore_errors=True)


def _data_parallel_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: the pack's trials under torch.distributed; rank 0 writes and reports."""
    import ray.train
    import ray.train.torch

    from sweeps.packs import run_pack

    rank = ray.train.get_context().get_world_rank()
    device = str(ray.train.torch.get_device()) if loop_config["use_gpu"] else "cpu"
    items = [
        {**item, "config": {**item["config"], "device": device}} for item in loop_config["items"]
    ]
    events = loop_config["events"]
    run_pack(
        items,
        trainable=loop_config["train_fn"],
        emit=events.put,
        storage=loop_config["storage"],
        retries=0,
        invocation=loop_config["invocation"],
        writes=rank == 0,
        raise_errors=True,
    )


class _Forward(tune.Callback):
    """Driver-side: hand each pack's events and errors to the orchestrator."""

    def __init__(
        self,
        on_events: Callable[[list[Event]], None],
        on_pack_error: Callable[[int, str], None],
        on_tick: Callable[[int], None],
    ) -> None:
        self.on_events = on_events
        self.on_pack_error = on_pack_error
        self.on_tick = on_tick
        self.errors = 0

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks into the experiment state; the handlers
        # (MLflow client, open streams) stay in this driver process.
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.on_events = lambda events: None
        self.on_pack_error = lambda index, message: None
        self.on_tick = lambda running: None
        self.errors = 0

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:  # noqa: ANN001
        payload = result.get(EVENTS_KEY)
        if payload:
            self.on_events([event_from_json(e) for e in json.loads(payload)])

    def on_trial_error(self, iteration, trials, trial, **info) -> None:  # noqa: ANN001
        message = ""
        try:
            message = trial.get_error() or ""
        except Exception:  # noqa: BLE001 (the error text is best effort)
            message = ""
        self.errors += 1
        lines = [line for line in str(message).strip().splitlines() if line.strip()]
        self.on_pack_error(int(trial.config["pack"]), lines[-1] if lines else "Ray trial failed")

    def on_step_end(self, iteration, trials, **info) -> None:  # noqa: ANN001
        running = sum(1 for t in trials if t.status == "RUNNING")
        self.on_tick(running)


PROJECT_PACKAGES = ("trainables", "sweeps", "hierarchies", "analysis", "testing", "contracts", "sequential")


def ship_by_value(fn: Callable[..., Any]) -> None:
    """Pickle a trainable from a loose module (a script, a test helper) by value.

    Workers import installed packages themselves; a module that lives only on
    the driver's sys.path would fail to import there, so its code travels.
    """
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    if module is None or module.__name__ == "__main__":
        return
    top = module.__name__.split(".")[0]
    path = getattr(module, "__file__", None) or ""
    if top in PROJECT_PACKAGES or "site-packages" in path or "dist-packages" in path:
        return
    ray.cloudpickle.register_pickle_by_value(module)


class _Silent(TrialProgressCallback):
    """Takes the place of Tune's per-trial printing (the driver prints its own line)."""

    def _print(self, msg: str) -> None:
        pass


def run_packs(
    packs: Sequence[Sequence[dict[str, Any]]],
    *,
    trainable: Callable[..., dict],
    storage: Path,
    name: str,
    resources: dict[str, float],
    max_concurrent: int,
    retries: int,
    invocation: str,
    on_events: Callable[[list[Event]], None],
    on_pack_error: Callable[[int, str], None],
    on_tick: Callable[[int], None],
    verbose: bool = False,
    workers: int = 1,
) -> None:
    """Run every pack as one Ray Tune trial; call the handlers from the driver's Tune loop.

    Must run inside `ray_session`. `resources` is `{"cpu": c, "gpu": g}` per
    Ray trial (fractional gpu allowed); `retries` is Tune's max_failures.
    With `workers` > 1 the resources are per Ray Train worker of a
    data-parallel trial, and `retries` is Train's max_failures instead (Tune
    does not retry on top: that would multiply the attempts).
    """
    if not packs:
        return
    ship_by_value(trainable)
    common = {
        "packs": [list(p) for p in packs],
        "train_fn": trainable,
        "storage": str(storage),
        "retries": retries,
        "invocation": invocation,
    }
    if workers > 1:
        fn = tune.with_parameters(
            _data_parallel_trainable, workers=workers, per_worker=dict(resources), **common
        )
        # The Tune trial only waits on its TorchTrainer, which asks for the workers'
        # resources itself; no CPU, so it never takes a core a worker needs (Ray
        # refuses an empty request: it books the memory it does use).
        fn = tune.with_resources(fn, {"cpu": 0, "memory": DRIVER_MEMORY})
        tune_retries = 0
    else:
        fn = tune.with_parameters(_pack_trainable, **common)
        fn = tune.with_resources(fn, {k: v for k, v in resources.items() if v})
        tune_retries = retries
    # Ray's new output engine prints its header even when silent; the legacy one
    # with a silenced progress callback prints nothing. --verbose gets Ray's table.
    os.environ["RAY_AIR_NEW_OUTPUT"] = "1" if verbose else "0"
    forward = _Forward(on_events, on_pack_error, on_tick)
    callbacks: list[tune.Callback] = [forward]
    if not verbose:
        callbacks.append(_Silent())
        # Failures reach the user through the driver's summary and `status`.
        logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    tuner = tune.Tuner(
        fn,
        param_space={"pack": tune.grid_search(list(range(len(packs))))},
        tune_config=tune.TuneConfig(
            num_samples=1, max_concurrent_trials=max_concurrent, reuse_actors=True
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(storage / "ray"),
            failure_config=tune.FailureConfig(max_failures=tune_retries),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=callbacks,
            verbose=2 if verbose else 0,
            log_to_file=False,
        ),
    )
    tuner.fit()
    if not forward.errors:
        # Tune's own experiment state is not used to resume (result files and
        # MLflow are); keep it only when a pack failed, for its error files.
        shutil.rmtree(storage / "ray" / name, ignore_errors=True)
