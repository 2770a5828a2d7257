"""Ray starts in one place: sweeps/runner.py's RayStart decides when, and the executor receives it."""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import pytest

from sweeps import runner
from sweeps.ledger.records import result_path

ROOT = Path(__file__).resolve().parent.parent


class _Session:
    def __init__(self, **kwargs: object) -> None:
        self.kwargs, self.closed = kwargs, False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def started(monkeypatch) -> list[_Session]:
    from sweeps import ray_backend

    sessions: list[_Session] = []

    def fake(**kwargs: object) -> _Session:
        sessions.append(_Session(**kwargs))
        return sessions[-1]

    monkeypatch.setattr(ray_backend, "BackgroundSession", fake)
    return sessions


def _plan(*keys: str) -> SimpleNamespace:
    return SimpleNamespace(trials=[SimpleNamespace(trial_key=k) for k in keys])


def _spec(search: object = None) -> SimpleNamespace:
    return SimpleNamespace(search=search, num_cpus=2)


def test_a_fresh_sweep_starts_ray_before_the_plan_and_only_once(tmp_path, started):
    ray = runner.RayStart(_spec(), tmp_path, "auto", False)
    ray.early()
    ray.early(_plan("a"))
    assert ray.session() is started[0]
    assert len(started) == 1 and started[0].kwargs == {
        "address": "auto",
        "num_cpus": 2,
        "verbose": False,
    }
    ray.close()
    ray.close()
    assert started[0].closed


def test_a_sweep_with_results_starts_ray_only_when_a_trial_lacks_one(tmp_path, started):
    result_path(tmp_path, "a").parent.mkdir(parents=True)
    result_path(tmp_path, "a").write_text("{}")
    ray = runner.RayStart(_spec(), tmp_path, None, False)
    ray.early()
    ray.early(_plan("a"))
    assert started == []
    ray.early(_plan("a", "b"))
    assert len(started) == 1


def test_a_search_starts_ray_early_although_every_trial_has_a_result(tmp_path, started):
    result_path(tmp_path, "a").parent.mkdir(parents=True)
    result_path(tmp_path, "a").write_text("{}")
    ray = runner.RayStart(_spec(search={"trials": 2}), tmp_path, None, False)
    ray.early()
    assert len(started) == 1


def test_a_done_sweep_starts_ray_on_the_executors_first_need(tmp_path, started):
    result_path(tmp_path, "a").parent.mkdir(parents=True)
    result_path(tmp_path, "a").write_text("{}")
    ray = runner.RayStart(_spec(), tmp_path, None, False)
    ray.early(_plan("a"))
    assert started == []
    assert ray.session() is started[0]


def test_only_the_runner_starts_a_ray_session():
    starters = []
    for path in sorted((ROOT / "sweeps").rglob("*.py")):
        if path.name == "ray_backend.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
                if name in ("BackgroundSession", "ray_session"):
                    starters.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert len(starters) == 1 and starters[0].startswith("sweeps/runner.py:"), starters
