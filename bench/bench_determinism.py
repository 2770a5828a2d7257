"""What differs between runs of one trial: repeats at one thread count, and 1 vs 2 torch threads.

    python bench/bench_determinism.py
    python bench/bench_determinism.py --backbones twolayer,test_resnet,resnet18 --threads 1,2,4

Runs the same trial (synthetic data, seed 0, pretrain -> linear probe)
through `trainables.train` twice per torch thread count and prints, per
backbone: whether repeats at one thread count are bit-identical, and between
thread counts the largest difference of the target error, of any final
metric and of any per-epoch curve point, and how many test predictions flip.
A CPU's float sums depend on how a kernel splits them over threads, so
thread counts may differ in the last bits, which training can amplify; the
README's "Determinism" paragraph quotes these figures.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from analysis.hard_examples import decode_correct
from trainables import train
from trainables.trial import load_dataset

TIMING = ("wall", "_s", "per_s", "time")


def trial(backbone: str, threads: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """One trial's final metrics, per-epoch curve and test outcomes at `threads` torch threads."""
    cfg = {
        "dataset": "synthetic",
        "dataset_options": {"train_per_leaf": args.train_per_leaf, "test_per_leaf": 10},
        "target": "superclass",
        "hierarchy_path": str(tmp / "h.json"),
        "level": "subclass",
        "backbone": backbone,
        "seed": 0,
        "pretrain": {"epochs": args.epochs, "lr": 0.2 if backbone == "twolayer" else 0.05},
        "finetune": {"mode": "linear", "epochs": 2},
        "device": "cpu",
        "num_threads": threads,
    }
    curve: list[tuple[int, dict]] = []
    result = train(cfg, lambda metrics, step: curve.append((step, dict(metrics))))
    return {
        "metrics": {
            k: v
            for k, v in result.items()
            if isinstance(v, float) and not any(t in k for t in TIMING)
        },
        "curve": curve,
        "correct": decode_correct(result["test_correct"]) if "test_correct" in result else None,
    }


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    """Largest differences between two runs of a trial."""
    metric = max(
        (abs(a["metrics"][k] - b["metrics"][k]) for k in a["metrics"] if k in b["metrics"]),
        default=0.0,
    )
    points = [
        abs(ma[k] - mb[k])
        for (_, ma), (_, mb) in zip(a["curve"], b["curve"], strict=True)
        for k in ma
        if k in mb and not any(t in k for t in TIMING) and math.isfinite(ma[k] - mb[k])
    ]
    flips = (
        int(np.sum(a["correct"] != b["correct"]))
        if a["correct"] is not None and b["correct"] is not None
        else -1
    )
    return {
        "target_error": abs(a["metrics"]["target_error"] - b["metrics"]["target_error"]),
        "metric": metric,
        "curve": max(points, default=0.0),
        "flips": flips,
        "tests": len(a["correct"]) if a["correct"] is not None else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="twolayer,test_resnet")
    parser.add_argument("--threads", default="1,2", help="torch CPU thread counts to compare")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-per-leaf", type=int, default=50)
    args = parser.parse_args()
    counts = [int(n) for n in args.threads.split(",")]
    print(
        f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()} kernels; "
        f"synthetic, {args.train_per_leaf} per leaf, {args.epochs} pretrain epochs"
    )
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        options = {"train_per_leaf": args.train_per_leaf, "test_per_leaf": 10}
        load_dataset("synthetic", options).hierarchy.save(str(tmp / "h.json"))
        for backbone in args.backbones.split(","):
            runs = {n: [trial(backbone, n, args, tmp) for _ in range(2)] for n in counts}
            for n in counts:
                d = compare(*runs[n])
                same = d["metric"] == 0 and d["curve"] == 0 and d["flips"] == 0
                print(
                    f"{backbone:>12} {n} thread(s), repeat: "
                    + ("bit-identical" if same else f"DIFFERS {d}")
                )
            base = counts[0]
            for n in counts[1:]:
                d = compare(runs[base][0], runs[n][0])
                print(
                    f"{backbone:>12} {base} vs {n} threads: |d target_error| {d['target_error']:.2e}"
                    f", max |d metric| {d['metric']:.2e}, max |d curve point| {d['curve']:.2e}, "
                    f"{d['flips']} of {d['tests']} test predictions flip"
                )


if __name__ == "__main__":
    main()
