"""A fresh SQLite MLflow store is created all or nothing.

MLflow builds a new SQLite store one DDL statement at a time over ~3 s; a
driver killed in that window (a user's Ctrl-C, a SIGKILL, a pre-empted node)
used to leave a file no later run could open ("table logged_models already
exists"), and two drivers creating one store raced. What a user would notice
now: the next run just works, and a store that is truly unreadable is named.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sweeps_fake import write_fake_spec

from sweeps.ledger.mlflow_store import Tracker
from sweeps.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
CREATE = (
    "import sys; from sweeps.ledger.mlflow_sql import create_sqlite_store; create_sqlite_store(sys.argv[1])"
)


def start_creator(db: Path, cache: Path | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if cache is not None:  # an empty cache: the creator builds MLflow's schema itself
        env["GRANULARITY_CACHE"] = str(cache)
    return subprocess.Popen(
        [sys.executable, "-c", CREATE, f"sqlite:///{db}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def private_copies(db: Path) -> list[Path]:
    return list(db.parent.glob(f".{db.name}.creating-*"))


def cached_stores(cache: Path) -> list[Path]:
    return list((cache / "mlflow").glob("empty-*.db"))


def cache_copies(cache: Path) -> list[Path]:
    return list((cache / "mlflow").glob(".empty-*.creating-*"))


def open_tracker(tmp_path: Path, db: Path) -> Tracker:
    spec = load_spec(write_fake_spec(tmp_path, "store-check", tracking_uri=f"sqlite:///{db}"))
    return Tracker(spec)


def test_a_creator_killed_while_building_the_schema_leaves_no_store(tmp_path, monkeypatch):
    db, cache = tmp_path / "mlflow.db", tmp_path / "cache"
    rng = random.Random(3)
    for _ in range(3):
        creator = start_creator(db, cache)
        deadline = time.monotonic() + 60
        while not cache_copies(cache) and creator.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.0))
        building = creator.poll() is None
        creator.kill()
        _, err = creator.communicate(timeout=30)
        assert building, f"the creator ended before the kill: {err.decode()[-2000:]}"
        assert not db.exists()  # never a half-built store under the store's name
        assert not cached_stores(cache)  # nor a half-built empty store in the cache
    assert cache_copies(cache)  # the killed creators' copies are left behind...
    monkeypatch.setenv("GRANULARITY_CACHE", str(cache))
    tracker = open_tracker(tmp_path, db)
    assert tracker.experiment_id is not None
    assert not private_copies(db) and not cache_copies(cache)  # ...until the next creator
    assert [e.name for e in tracker.client.search_experiments() if e.name == "store-check"]
    assert len(cached_stores(cache)) == 1


def test_new_stores_are_copies_of_one_cached_empty_store(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("GRANULARITY_CACHE", str(cache))
    first, second = tmp_path / "a" / "mlflow.db", tmp_path / "b" / "mlflow.db"
    open_tracker(tmp_path, first)
    [cached] = cached_stores(cache)
    built = cached.stat().st_mtime_ns
    tracker = open_tracker(tmp_path, second)
    assert cached_stores(cache) == [cached] and cached.stat().st_mtime_ns == built  # reused
    assert [e.name for e in tracker.client.search_experiments()] == ["store-check", "Default"]
    # The copy is a store of its own: the cached file holds no experiment of any sweep.
    import sqlite3

    with sqlite3.connect(cached) as conn:
        assert conn.execute("select count(*) from experiments").fetchone() == (0,)


def test_drivers_creating_one_store_at_once_all_get_it(tmp_path):
    db = tmp_path / "deep" / "mlflow.db"  # a missing folder is made
    creators = [start_creator(db) for _ in range(3)]
    for creator in creators:
        _, err = creator.communicate(timeout=120)
        assert creator.returncode == 0, err.decode()[-2000:]
    assert db.exists() and not private_copies(db)
    assert open_tracker(tmp_path, db).experiment_id is not None


def test_an_unreadable_store_is_named(tmp_path):
    db = tmp_path / "mlflow.db"
    db.write_text("not a database, but a file someone left here\n" * 100)
    with pytest.raises(RuntimeError, match=f"cannot open the SQLite store {db}.*delete it"):
        open_tracker(tmp_path, db)


@pytest.mark.parametrize("damage", ["schema page", "header"])
def test_a_corrupted_store_is_refused_by_the_cli_naming_it(tmp_path, capsys, damage):
    from sweeps import commands

    db = tmp_path / "mlflow.db"
    open_tracker(tmp_path, db)  # a real MLflow store, then damaged
    data = bytearray(db.read_bytes())
    start = 100 if damage == "schema page" else 0  # page 1 holds the schema after the header
    data[start : start + 3000] = random.Random(1).randbytes(3000)
    db.write_bytes(bytes(data))
    spec = write_fake_spec(tmp_path, "corrupt", tracking_uri=f"sqlite:///{db}")
    capsys.readouterr()  # MLflow's own log lines from creating the store
    for command in ("run", "validate", "status"):
        assert commands.main([command, str(spec)]) == 2
        err = capsys.readouterr().err
        assert f"the SQLite store {db} is not a readable SQLite database" in err, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "store").exists()  # nothing created


def test_a_store_whose_writer_was_killed_mid_transaction_is_not_called_corrupted(tmp_path):
    """A SIGKILLed driver can leave a hot journal; a read-only check cannot roll it back."""
    from sweeps.ledger.tracking_uri import check_store

    db = tmp_path / "mlflow.db"
    open_tracker(tmp_path, db)  # a real MLflow store
    writer = subprocess.Popen(
        [sys.executable, "-c", (
            "import sqlite3, sys, time\n"
            f"db = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
            "db.execute('pragma cache_size=10')  # spill pages into the file mid-transaction\n"
            "db.execute('begin immediate')\n"
            "db.execute('create table filler (x)')\n"
            "for i in range(30000): db.execute('insert into filler values (?)', ('x' * 100,))\n"
            "print('ready', flush=True)\n"
            "time.sleep(120)\n"
        )],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert writer.stdout.readline().strip() == "ready"
    writer.kill()
    writer.wait(timeout=30)
    assert Path(f"{db}-journal").stat().st_size > 0  # the transaction's journal is hot
    check_store(f"sqlite:///{db}")  # no error: SQLite rolls it back on the next read-write open
    assert open_tracker(tmp_path, db).experiment_id is not None
