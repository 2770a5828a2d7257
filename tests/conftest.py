"""Fixtures shared by the test modules: a local Ray per module and a driver to kill.

Helpers that are plain functions (the fake trainable, the database servers)
stay in their modules (`sweeps_fake.py`, `servers.py`); what needs pytest's
set-up and tear-down lives here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def ray_address(request: pytest.FixtureRequest) -> Iterator[str]:
    """A local 2-CPU Ray for one test module; yields its address.

    Module-scoped, not session-scoped: some slow modules start clusters of their
    own in this process (test_cluster_ray.py), which a Ray left running would
    block. A module's `SHIP_BY_VALUE` lists extra trainables from tests/ whose
    code must travel to the workers (they lack tests/ on their path); the fake
    trainable always travels.
    """
    import sweeps_fake

    from sweeps.ray_backend import ray_session, ship_by_value

    for fn in (sweeps_fake.train, *getattr(request.module, "SHIP_BY_VALUE", ())):
        ship_by_value(fn)
    with ray_session(num_cpus=2) as info:
        yield info["address"]


def _count_results(store: Path) -> int:
    from sweeps.ledger.records import read_results

    return len(read_results(store))


@pytest.fixture
def kill_driver() -> Callable[..., int]:
    """Start `granularity run SPEC --address ADDRESS` in a process, kill it once results exist.

    Returns `kill(spec, address, after=N, signum=SIGKILL, timeout_s=90) -> exit code`:
    the driver is signalled when `after` result files are under its storage
    (`<spec dir>/store`), when it exits by itself, or after `timeout_s`.
    """

    def kill(
        spec: Path,
        address: str,
        *,
        after: int,
        signum: int = signal.SIGKILL,
        timeout_s: float = 90.0,
    ) -> int:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)]))
        driver = subprocess.Popen(
            [sys.executable, "-m", "sweeps.commands", "run", str(spec), "--address", address],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        store = spec.parent / "store"
        deadline = time.monotonic() + timeout_s
        try:
            while (
                _count_results(store) < after
                and time.monotonic() < deadline
                and driver.poll() is None
            ):
                time.sleep(0.05)
            driver.send_signal(signum)
            return driver.wait(timeout=60)
        finally:
            if driver.poll() is None:  # a failure above never leaves the driver running
                driver.kill()
                driver.wait()

    return kill
