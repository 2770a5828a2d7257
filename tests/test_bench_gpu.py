"""The GPU bench's CPU path runs end to end and prints every row with a number; its verdicts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import bench_gpu  # noqa: E402

PATHS = (
    "plain timm loop (on device)",
    "trainable loop (on device)",
    "loader alone, 0 workers",
    "trainable loop + loader (0 workers)",
    "plain timm loop (repeat)",
)


def test_cpu_smoke_prints_a_table_row_with_a_rate_for_every_path():
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_gpu.py"), "--cpu-smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    table = done.stdout[done.stdout.index("model ") :]
    for model in ("resnet18", "vit_tiny_patch16_224"):
        for path in PATHS:
            row = re.search(
                rf"^{re.escape(model)}\s+{re.escape(path)}\s+4\s+([\d.]+)\s+([\d.]+)$",
                table,
                re.MULTILINE,
            )
            assert row, f"no row for {model} / {path} in:\n{table}"
            assert float(row.group(1)) > 0
        assert re.search(rf"^{model}: trainable/plain = [\d.]+ \(target", table, re.MULTILINE)
        assert re.search(rf"^{model}: loader (not|IS) the bottleneck", table, re.MULTILINE)


def rows(fed: float) -> list[bench_gpu.Row]:
    return [
        bench_gpu.Row("m", "plain timm loop (on device)", 8, 1000.0, 1.0),
        bench_gpu.Row("m", "trainable loop (on device)", 8, 950.0, 1.0),
        bench_gpu.Row("m", "trainable loop + loader (8 workers)", 8, fed, 1.0),
        bench_gpu.Row("m", "plain timm loop (repeat)", 8, 1000.0, 1.0),
    ]


def test_summary_says_whether_the_loader_is_the_bottleneck_and_by_how_much():
    fast = "\n".join(bench_gpu.summarize(rows(fed=940.0)))
    assert "trainable/plain = 0.95 (target >= 0.90: met" in fast
    assert "m: loader not the bottleneck" in fast
    slow = "\n".join(bench_gpu.summarize(rows(fed=475.0)))
    assert (
        "loader IS the bottleneck: loader-fed runs at 0.50 of the on-device rate (2.0x slower)"
        in slow
    )


def test_summary_flags_a_trainable_slower_than_the_target():
    slow = rows(fed=800.0)
    slow[1].images_per_s = 800.0
    assert "trainable/plain = 0.80 (target >= 0.90: MISSED" in "\n".join(bench_gpu.summarize(slow))
