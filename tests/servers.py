"""Throwaway servers for tests: a PostgreSQL cluster and an MLflow tracking server.

Both bind 127.0.0.1 on a free port, live in a temp folder and are stopped by the
caller (the fixtures in conftest.py do it). PostgreSQL refuses to run as root,
so when the tests run as root the cluster is owned by the `postgres` user.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for version_dir in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        candidate = version_dir / name
        if candidate.exists():
            return str(candidate)
    return None


def postgres_available() -> bool:
    return all(_pg_bin(name) for name in ("initdb", "pg_ctl", "psql"))


def _as_pg_user(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@contextlib.contextmanager
def postgres_server(root: Path) -> Iterator[str]:
    """A fresh PostgreSQL cluster under `root`; yields a SQLAlchemy URI to database `mlflow`."""
    root.mkdir(parents=True, exist_ok=True)
    data, sockets = root / "pgdata", root / "pgsock"
    sockets.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = free_port()
    run = lambda cmd: subprocess.run(_as_pg_user(cmd), check=True, capture_output=True)  # noqa: E731
    run([_pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"])
    run(
        [
            _pg_bin("pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(root / "pg.log"),
            "start",
            "-o",
            f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off",
        ]
    )
    try:
        run(
            [
                _pg_bin("psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "-c",
                "CREATE DATABASE mlflow",
            ]
        )
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(
            _as_pg_user([_pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )


@dataclass
class Server:
    """A running `mlflow server`: its URL and process (a test may kill it mid-sweep)."""

    url: str
    proc: subprocess.Popen


@contextlib.contextmanager
def mlflow_server(
    backend_uri: str,
    artifact_root: Path,
    *,
    port: int | None = None,
    workers: int = 2,
    timeout_s: float = 90,
    app_name: str | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """`mlflow server` on 127.0.0.1 over `backend_uri` (on `port`, else a free one).

    A fixed port lets a test bring the server back at the same address.
    `app_name="basic-auth"` starts MLflow's authentication app (its settings in `env`).
    """
    port = port or free_port()
    artifact_root.mkdir(parents=True, exist_ok=True)
    log_path = artifact_root.parent / f"mlflow-server-{port}.log"
    log = open(log_path, "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server",
            "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", backend_uri,
            "--artifacts-destination", str(artifact_root),
            "--workers", str(workers),
            *(["--app-name", app_name] if app_name else []),
        ],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise RuntimeError(
                    f"mlflow server did not start on {url}:\n{log_path.read_text()[-2000:]}"
                )
            time.sleep(0.5)
        yield Server(url, proc)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        log.close()
