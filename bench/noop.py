"""A no-op trainable and its dataset, for bench/bench_scale.py (orchestration cost alone).

`train` does no work: it returns a target_error (and the metrics a trial
reports), so a sweep of it measures the driver, Ray and MLflow per trial.
"""

from __future__ import annotations

import numpy as np

from hierarchies import Hierarchy


class NoopDataset:
    """Four levels over 16 leaves (2 -> 4 -> 8 -> 16); the plan needs only the hierarchy."""

    name = "noop"
    default_target = "coarse"

    def __init__(self) -> None:
        leaves = np.arange(16)
        self.hierarchy = Hierarchy(
            leaf_names=[f"leaf{i}" for i in leaves],
            level_names=["coarse", "mid", "fine", "leaf"],
            levels=[leaves // 8, leaves // 4, leaves // 2, leaves],
        )
        self.train_leaf = np.repeat(leaves, 10)

    def class_embeddings(self) -> np.ndarray:
        rng = np.random.default_rng(0)
        return rng.standard_normal((16, 8)) + (np.arange(16) // 8)[:, None] * 3.0


def noop_dataset(**options: object) -> NoopDataset:
    """The dataset as a `module:function` name."""
    return NoopDataset()


def train(config: dict, report) -> dict:  # noqa: ANN001 (the trainable signature)
    """No work: one finetune epoch reported, then the final metrics."""
    if report is not None:
        report({"finetune/loss": 0.5, "finetune/error": 0.4}, 0)
    return {
        "target_error": 0.1 + 0.001 * config["seed"],
        "num_train": 160 * config["data_fraction"],
        "num_classes": 2,
        "time/pretrain_s": 0.0,
        "time/finetune_s": 0.0,
        "pretrain_reused": 0.0,
    }
