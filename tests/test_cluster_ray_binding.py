"""The local Ray of `granularity run` listens on 127.0.0.1 only (slow: a sweep on a fresh Ray).

Runs the CLI on the fake spec (no --address, so the driver starts its own
Ray) and, while its trials run, lists every listening TCP socket of the
driver and its descendants (GCS, raylet, agents, Tune's worker processes)
from /proc. Ray 2.60 binds them to all interfaces unless the node's IP is
127.0.0.1 (see sweeps/ray_backend.py); this test fails if any is on
0.0.0.0, `::` or a routable address.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sweeps_fake import write_fake_spec

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def descendants(root: int) -> dict[int, str]:
    """`root` and every process below it: pid -> command name."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended meanwhile
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :]
        names[int(entry.name)] = name
        children.setdefault(int(rest.split()[1]), []).append(int(entry.name))
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        found[pid] = names.get(pid, "?")
        todo.extend(children.get(pid, []))
    return found


def listening_sockets() -> dict[int, str]:
    """Every listening TCP socket of the machine: inode -> local address."""
    sockets = {}
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            hex_ip, hex_port = fields[1].split(":")
            assert len(hex_ip) == width
            # The kernel prints each 32-bit word of the address in host (little-endian) order.
            raw = b"".join(bytes.fromhex(hex_ip[i : i + 8])[::-1] for i in range(0, width, 8))
            sockets[int(fields[9])] = f"{ipaddress.ip_address(raw)}:{int(hex_port, 16)}"
    return sockets


def sockets_of(pids: dict[int, str]) -> set[tuple[str, str]]:
    """(process name, local address) of each listening socket the processes hold."""
    listening = listening_sockets()
    held = set()
    for pid, name in pids.items():
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:  # ended, or an fd closed while listed
            continue
        for link in links:
            if link.startswith("socket:[") and int(link[8:-1]) in listening:
                held.add((name, listening[int(link[8:-1])]))
    return held


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.rpartition(":")[0])
    mapped = getattr(ip, "ipv4_mapped", None)  # [::ffff:127.0.0.1]: a v6 socket on v4 loopback
    return (mapped or ip).is_loopback


def test_local_ray_of_a_sweep_listens_on_loopback_only(tmp_path):
    path = write_fake_spec(
        tmp_path,
        "binding",
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        options={"sleep": 0.5},
        seeds=1,
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)]))
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)  # the project's default, not the caller's
    log = tmp_path / "driver.log"
    seen: set[tuple[str, str]] = set()
    with log.open("w") as out:
        driver = subprocess.Popen(
            [sys.executable, "-m", "sweeps.commands", "run", str(path)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            # Sampled until the driver ends: worker processes come and go with the trials.
            while driver.poll() is None:
                seen |= sockets_of(descendants(driver.pid))
                time.sleep(0.3)
        finally:
            driver.kill()
            driver.wait(timeout=60)
    assert driver.returncode == 0, log.read_text()[-3000:]
    names = {name for name, _ in seen}
    # The sample did see Ray's daemons and a worker, so an empty list cannot pass.
    assert {"gcs_server", "raylet"} <= names, seen
    assert any(name.startswith("ray::") for name in names), seen
    exposed = sorted((name, address) for name, address in seen if not is_loopback(address))
    assert not exposed, f"listening beyond loopback: {exposed}"
