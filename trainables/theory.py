"""The theory check: coarse vs fine pretraining on the synthetic data with `twolayer`.

The paper's theorems, measured: pretraining on coarse (superclass) labels
reaches ~0 training loss yet leaves the hard-example target error near
chance; pretraining on fine (subclass) labels, then a linear probe on the
superclass target, gives low error on easy and hard examples. Run:

    python -m trainables.theory            # 5 seeds, ~10-20 s on 2 CPU cores
    python -m trainables.theory --seeds 3  # quicker
    python -m trainables.theory --sweep    # the level sweep (U-shape) table of docs/THEORY.md

It prints per-seed and mean errors and the paired (fine - coarse) hard-error
difference with a 95% t interval, and exits 1 when a target fails:
coarse hard error >= 0.30, fine hard error <= 0.10, easy error <= 0.05 for
both, and the interval excludes 0. Settings and figures: docs/THEORY.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from trainables.trial import load_dataset, train

# The calibrated setting (docs/THEORY.md): dataset defaults, twolayer with
# small init, a linear probe on standardised features.
DATASET_OPTIONS: dict = {}
PRETRAIN = {"epochs": 30, "lr": 0.2, "batch_size": 128, "optimizer": "sgd", "momentum": 0.9}
FINETUNE = {
    "mode": "linear",
    "epochs": 10,
    "lr": 0.05,
    "batch_size": 128,
    "feature_norm": "standardize",
}
COARSE, FINE = "superclass", "subclass"
TARGETS = {"coarse_hard_min": 0.30, "fine_hard_max": 0.10, "easy_max": 0.05}


@dataclass
class TheoryResult:
    """Per-seed errors of both arms and the verdict."""

    seeds: list[int]
    coarse: list[dict[str, float]]
    fine: list[dict[str, float]]

    def hard_difference_ci(self) -> tuple[float, float, float]:
        """Mean and 95% t interval of the paired (fine - coarse) hard-error difference."""
        diff = np.array(
            [
                f["target_error_hard"] - c["target_error_hard"]
                for c, f in zip(self.coarse, self.fine, strict=True)
            ]
        )
        mean = float(diff.mean())
        if len(diff) < 2:
            return mean, float("nan"), float("nan")
        half = float(stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff)))
        return mean, mean - half, mean + half

    def mean(self, arm: str, key: str) -> float:
        return float(np.mean([r[key] for r in getattr(self, arm)]))

    def failures(self) -> list[str]:
        """The targets that do not hold (empty when the check passes)."""
        out = []
        if self.mean("coarse", "target_error_hard") < TARGETS["coarse_hard_min"]:
            out.append(
                f"coarse hard error {self.mean('coarse', 'target_error_hard'):.3f} < "
                f"{TARGETS['coarse_hard_min']}"
            )
        if self.mean("fine", "target_error_hard") > TARGETS["fine_hard_max"]:
            out.append(
                f"fine hard error {self.mean('fine', 'target_error_hard'):.3f} > "
                f"{TARGETS['fine_hard_max']}"
            )
        for arm in ("coarse", "fine"):
            if self.mean(arm, "target_error_easy") > TARGETS["easy_max"]:
                out.append(
                    f"{arm} easy error {self.mean(arm, 'target_error_easy'):.3f} > "
                    f"{TARGETS['easy_max']}"
                )
        _, low, high = self.hard_difference_ci()
        if not (high < 0 or low > 0):
            out.append(
                f"95% interval of the hard-error difference [{low:.3f}, {high:.3f}] contains 0"
            )
        return out


def run_theory_check(seeds: int = 5, dataset_options: dict | None = None) -> TheoryResult:
    """Train both arms for seeds 0..seeds-1 and collect their final metrics."""
    options = dict(DATASET_OPTIONS if dataset_options is None else dataset_options)
    dataset = load_dataset("synthetic", options)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "manual.json")
        dataset.hierarchy.save(path)
        arms: dict[str, list[dict[str, float]]] = {"coarse": [], "fine": []}
        for seed in range(seeds):
            for arm, level in (("coarse", COARSE), ("fine", FINE)):
                config = {
                    "dataset": "synthetic",
                    "dataset_options": options,
                    "target": COARSE,
                    "hierarchy": "manual",
                    "hierarchy_path": path,
                    "level": level,
                    "level_name": level,
                    "backbone": "twolayer",
                    "seed": seed,
                    "pretrain": PRETRAIN,
                    "finetune": FINETUNE,
                    "device": "cpu",
                    "num_threads": 1,  # tiny matmuls: threads only add overhead
                }
                arms[arm].append(train(config, None))
    return TheoryResult(list(range(seeds)), arms["coarse"], arms["fine"])


# The sweep setting of docs/THEORY.md: two random levels below the true leaves.
SWEEP_OPTIONS: dict = {"extra_levels": [4, 4]}
SWEEP_PRETRAIN = {**PRETRAIN, "epochs": 10}
SWEEP_FINETUNE = {**FINETUNE, "epochs": 5}


def level_sweep(
    seeds: int = 5,
    data_fraction: float = 1.0,
    dataset_options: dict | None = None,
    pretrain: dict | None = None,
) -> dict[str, dict[str, float]]:
    """Mean target error (and hard error) per manual level, superclass target, linear probe."""
    options = dict(SWEEP_OPTIONS if dataset_options is None else dataset_options)
    dataset = load_dataset("synthetic", options)
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "manual.json")
        dataset.hierarchy.save(path)
        for level in dataset.hierarchy.level_names:
            runs = [
                train(
                    {
                        "dataset": "synthetic",
                        "dataset_options": options,
                        "target": COARSE,
                        "hierarchy_path": path,
                        "level": level,
                        "seed": seed,
                        "data_fraction": data_fraction,
                        "backbone": "twolayer",
                        "pretrain": pretrain or SWEEP_PRETRAIN,
                        "finetune": SWEEP_FINETUNE,
                        "device": "cpu",
                        "num_threads": 1,
                    },
                    None,
                )
                for seed in range(seeds)
            ]
            out[level] = {
                key: float(np.mean([r[key] for r in runs]))
                for key in ("target_error", "target_error_hard", "num_classes")
            }
    return out


def format_result(result: TheoryResult) -> str:
    """A table of per-seed and mean errors plus the paired difference."""
    lines = ["seed  coarse: pre_loss  easy   hard  |  fine: pre_loss  easy   hard"]
    for seed, c, f in zip(result.seeds, result.coarse, result.fine, strict=True):
        lines.append(
            f"{seed:>4}  {c['pretrain/loss']:>15.4f} {c['target_error_easy']:.3f}  "
            f"{c['target_error_hard']:.3f}  | {f['pretrain/loss']:>14.4f} "
            f"{f['target_error_easy']:.3f}  {f['target_error_hard']:.3f}"
        )
    lines.append(
        f"mean  {result.mean('coarse', 'pretrain/loss'):>15.4f} "
        f"{result.mean('coarse', 'target_error_easy'):.3f}  "
        f"{result.mean('coarse', 'target_error_hard'):.3f}  | "
        f"{result.mean('fine', 'pretrain/loss'):>14.4f} "
        f"{result.mean('fine', 'target_error_easy'):.3f}  "
        f"{result.mean('fine', 'target_error_hard'):.3f}"
    )
    mean, low, high = result.hard_difference_ci()
    lines.append(
        f"hard error, fine - coarse (paired): {mean:+.3f}, 95% CI [{low:+.3f}, {high:+.3f}]"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="replicates (default 5)")
    parser.add_argument("--sweep", action="store_true", help="print the level sweep instead")
    parser.add_argument("--fraction", type=float, default=1.0, help="data fraction (--sweep)")
    args = parser.parse_args(argv)
    if args.sweep:
        for level, row in level_sweep(args.seeds, args.fraction).items():
            print(
                f"{level:>10} ({int(row['num_classes']):>3} classes): target error "
                f"{row['target_error']:.3f}  hard {row['target_error_hard']:.3f}"
            )
        return 0
    result = run_theory_check(args.seeds)
    print(format_result(result))
    failures = result.failures()
    print("theory check:", "PASS" if not failures else "FAIL: " + "; ".join(failures))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
