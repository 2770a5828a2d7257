"""`granularity validate --estimate`: the probe's timings, the cost model, and the command."""

from __future__ import annotations

import itertools

import pytest
from sweeps_fake import FakeDataset

from sweeps import estimate as est
from sweeps.cli import main
from sweeps.packing import make_packs
from sweeps.plan import build_plan
from sweeps.spec import parse_spec


def spec_of(tmp_path, **extra):
    raw = {
        "name": "estimate",
        "dataset": {"name": "sweeps_fake:fake_dataset"},
        "target": "coarse",
        "factors": {
            "hierarchies": ["manual", "random", "scratch"],
            "levels": "target_and_finer",
            "data_fractions": [0.5, 1.0],
        },
        "seeds": 2,
        "pretrain": {"epochs": 4},
        "finetune": {"epochs": 3},
        "max_concurrent": 2,
        "storage_path": str(tmp_path / "store"),
    }
    raw.update(extra)
    return parse_spec(raw)


class Clock:
    """A fake `time.perf_counter` the fake trainable advances: timings without waiting."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_probe_times_one_epoch_of_each_stage_and_the_fixed_rest(tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(est.time, "perf_counter", clock)
    seen = {}

    calls = []

    def trainable(config, report):  # set-up 3 s (+ 5 s the first time), epochs 2 s and 0.5 s
        seen.update(config)
        calls.append(config["checkpoint_dir"])
        clock.now += 3.0 + (5.0 if len(calls) == 1 else 0.0)
        for step in range(config["pretrain"]["epochs"]):
            clock.now += 2.0
            report({"pretrain/loss": 1.0}, step)
        for step in range(config["finetune"]["epochs"]):
            clock.now += 0.5
            report({"finetune/loss": 1.0, "finetune/error": 0.5}, step)
        clock.now += 1.0  # final evaluation
        return {"target_error": 0.5}

    spec = spec_of(tmp_path)
    plan = build_plan(spec, dataset=FakeDataset(), write=False)
    probes = est.probes_for(plan, plan.trials, trainable)
    (probe,) = probes.values()
    assert (probe.pretrain_epoch_s, probe.finetune_epoch_s) == (2.0, 0.5)
    assert probe.fixed_s == pytest.approx(4.0) and probe.first_s == pytest.approx(5.0)
    assert probe.wall_s == pytest.approx(9.0 + 14.0) and len(set(calls)) == 2
    # The probe is a short pretraining trial at the smallest fraction, in a temporary folder.
    assert seen["hierarchy"] != "scratch" and seen["data_fraction"] == 0.5
    assert seen["pretrain"]["epochs"] == seen["finetune"]["epochs"] == est.PROBE_EPOCHS
    assert seen["num_threads"] == 1  # a Ray worker's threads, not this process's default
    assert not str(seen["checkpoint_dir"]).startswith(str(plan.storage))
    assert not (tmp_path / "store").exists()  # nothing of the sweep is written


def test_pretrainings_are_counted_once_and_wall_time_follows_the_slots(tmp_path):
    spec = spec_of(tmp_path)
    plan = build_plan(spec, dataset=FakeDataset(), write=False)
    probe = est.Probe("fake", 0.5, pretrain_epoch_s=2.0, finetune_epoch_s=0.5, fixed_s=1.0,
                      first_s=3.0, wall_s=0)  # fmt: skip
    probes = {est.probe_kind(plan.trials[0]): probe}
    got = est.estimate(spec, plan, trainable=None, probes=probes)

    # By hand: every trial pays its fixed cost and finetuning (scratch: the pretrain budget on
    # the target); each distinct pretraining is paid once.
    scale = lambda t: t.config["data_fraction"] / 0.5  # noqa: E731
    by_hand = 0.0
    for t in plan.trials:
        if t.is_scratch:
            by_hand += 1.0 + 4 * 2.0 * scale(t)
        else:
            by_hand += 1.0 + 3 * 0.5 * scale(t)
    groups = {t.pretrain_key: t for t in plan.trials if not t.is_scratch}
    by_hand += sum(4 * 2.0 * scale(t) for t in groups.values())
    packs = make_packs(plan.trials, slots=2, pack=spec.pack)
    per_pack = est.PACK_LAUNCH_S + 3.0  # a Ray trial's launch and its first trial's set-up
    assert got.compute_s == pytest.approx(by_hand + per_pack * len(packs))
    assert got.pretrainings == plan.num_pretrainings() < len(plan.trials) - 2 * 2
    assert (got.unit, got.slots, got.packs) == ("CPU", 2, len(packs))
    # Two slots: the wall time is at least half the work, at most all of it.
    work = got.compute_s
    assert work / 2 <= got.wall_s - est.SWEEP_START_S <= work
    assert "CPU-hours" in got.text() and "2 slot(s)" in got.text()

    gpu = spec_of(tmp_path, resources={"cpu": 1, "gpu": 0.5})
    on_gpu = est.estimate(gpu, plan, trainable=None, probes=probes)
    assert on_gpu.unit == "GPU" and on_gpu.compute_s == pytest.approx(0.5 * work)


@pytest.mark.parametrize("slots", [1, 2, 3])
def test_makespan_is_list_scheduling(slots):
    durations = [5.0, 4.0, 3.0, 3.0, 1.0]
    assert est.makespan(durations, 1) == sum(durations)
    best = min(  # any assignment is at least as long as the optimum; list scheduling is within 2x
        max(sum(d for d, s in zip(durations, a, strict=True) if s == k) for k in range(slots))
        for a in itertools.product(range(slots), repeat=len(durations))
    )
    assert best <= est.makespan(durations, slots) <= 2 * best


def test_validate_estimate_probes_the_real_trainable(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["validate", "quickstart", "--smoke", "--estimate", "factors.hierarchies=[manual]",
                 "factors.levels=[superclass]", f"storage_path={tmp_path / 'runs'}"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    line = next(x for x in out.splitlines() if x.strip().startswith("estimate:"))
    assert "1 trials, 1 pretrainings" in line and "CPU-hours" in line
    assert "probe synthetic" in out and "twolayer / cpu" in out
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()
