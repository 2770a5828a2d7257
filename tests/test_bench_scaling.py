"""The scaling bench: its CPU path (1 vs 2 gloo processes) prints the scaling line; its wording."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import bench_scaling  # noqa: E402


@pytest.mark.slow
def test_cpu_smoke_prints_the_scaling_line_with_rates():
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_scaling.py"), "--cpu-smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    line = re.search(
        r"^scaling resnet18 \(4 images per CPU process per step\): 1 CPU process ([\d.]+) img/s, "
        r"2 CPU processes ([\d.]+) img/s, speed-up ([\d.]+)x, efficiency ([\d.]+)$",
        done.stdout,
        re.MULTILINE,
    )
    assert line, done.stdout
    one, two, speedup, efficiency = map(float, line.groups())
    assert one > 0 and two > 0
    assert abs(speedup - 2 * efficiency) <= 0.02


def test_scaling_line_gives_efficiency_or_the_ddp_overhead_on_one_gpu():
    setup = bench_scaling.Setup()
    many = bench_scaling.scaling_line(setup, {"plain": 1000.0, "ddp": 990.0}, {"plain": 7200.0}, 8)
    assert many.endswith("1 GPU 1000 img/s, 8 GPUs 7200 img/s, speed-up 7.20x, efficiency 0.90")
    one = bench_scaling.scaling_line(setup, {"plain": 1000.0, "ddp": 950.0}, None, 1)
    assert "under DDP (group of 1) 950 img/s (0.95 of it)" in one
    assert one.endswith("this machine has 1 GPU: no multi-GPU figure")
