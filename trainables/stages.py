"""A training stage's loop: budget segments, validation, checkpoint/resume, best-val selection.

`run_stage` trains one stage (pretrain, finetune, scratch) for its budget
(trainables/budget.py) on top of `engine.train_epoch`'s steps; `linear_probe`
is the linear finetune over frozen, standardised features. trainables/trial.py
composes them into pretrain -> finetune -> evaluate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from trainables.backbones import Classifier
from trainables.budget import stage_budget
from trainables.checkpoints import load_checkpoint, save_atomic
from trainables.distributed import Shard, wrap
from trainables.engine import (
    Batches,
    Runtime,
    error_rate,
    extract_features,
    make_optimizer,
    predict,
    stage_seed,
)

Report = Callable[[dict[str, float], int], None]


def eval_batch_size(train_batch_size: int) -> int:
    """Evaluation needs no activations kept for backward: larger batches, capped for big models."""
    return max(train_batch_size, min(4 * train_batch_size, 1024))


def run_stage(
    stage: str,
    model: nn.Module,
    params,
    train_batches: Batches,
    val_batches: Batches,
    settings: dict,
    runtime: Runtime,
    *,
    seed: int,
    ckpt_path: Path | None,
    report: Report | None,
    metric_prefix: str,
    checkpoint_every_s: float,
    shard: Shard,
) -> dict[str, float]:
    """Train `params` of `model` for the stage's budget (trainables/budget.py), resuming if saved.

    Checkpoints after a segment (an epoch, or a slice of a step budget) once
    `checkpoint_every_s` seconds have passed since the stage's start or last
    checkpoint (before `report`; a resumed stage reports the segments after
    its checkpoint again, which the history keeps once). `selection: best_val`
    ends with the weights of the lowest validation error (kept, and
    checkpointed, with the metrics of that segment). Returns the final (or
    selected) segment's metrics plus the stage's time. Data-parallel: `model`
    is under DDP; rank 0 writes the checkpoint, every rank resumes from it.
    """
    optimizer = make_optimizer(params, settings)
    budget = stage_budget(settings, len(train_batches))
    select_best = settings.get("selection", "last") == "best_val" and len(val_batches) > 0
    start, elapsed, last, best = 0, 0.0, {}, None
    saved = load_checkpoint(ckpt_path) if ckpt_path else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        start, elapsed, last = int(saved["epoch"]), float(saved["elapsed_s"]), dict(saved["last"])
        best = saved.get("best")
    bs = int(settings["batch_size"])
    last_saved = time.perf_counter()
    for segment in range(start, budget.segments):
        t0 = time.perf_counter()
        # Seed torch's global RNG too: dropout / drop-path in timm models.
        runtime.seed(stage_seed(seed, stage + "/global", segment))
        loss, err = budget.train(
            segment,
            model,
            train_batches,
            optimizer,
            runtime,
            settings,
            stage=stage,
            seed=seed,
            shard=shard,
        )
        val_err = (
            error_rate(
                predict(model, val_batches, runtime, eval_batch_size(bs)), val_batches.labels
            )
            if len(val_batches)
            else float("nan")
        )
        elapsed += time.perf_counter() - t0
        last = {
            f"{metric_prefix}/loss": loss,
            f"{metric_prefix}/error": err,
            f"{metric_prefix}/val_error": val_err,
        }
        if select_best and (best is None or val_err < best["last"][f"{metric_prefix}/val_error"]):
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best = {"model": state, "last": dict(last), "segment": segment}
        due = time.perf_counter() - last_saved >= checkpoint_every_s
        if ckpt_path is not None and shard.main and due:
            last_saved = time.perf_counter()
            save_atomic(
                {
                    "epoch": segment + 1,
                    "elapsed_s": elapsed,
                    "last": last,
                    "best": best,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                },
                ckpt_path,
            )
        if report is not None:
            report(dict(last), segment)
    if best is not None:
        model.load_state_dict(best["model"])
        last = {**best["last"], f"{metric_prefix}/best_segment": float(best["segment"])}
    if settings.get("steps") is not None:
        last[f"{metric_prefix}/steps"] = float(budget.total_steps)
    return {**last, "time_s": elapsed}


class _Standardized(nn.Module):
    """Linear head over features standardised with fixed training statistics."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.linear = nn.Linear(len(mean), num_classes)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.linear((f - self.mean) / self.std)


def linear_probe(
    model: Classifier,
    num_classes: int,
    batches: dict[str, Batches],
    settings: dict,
    runtime: Runtime,
    *,
    seed: int,
    ckpt_path: Path | None,
    report: Report | None,
    checkpoint_every_s: float,
    shard: Shard,
) -> tuple[dict[str, float], Callable[[str], torch.Tensor]]:
    """Train a linear head on frozen features; returns stage metrics and a predictor by split name."""
    bs = int(settings["batch_size"])
    feats = {
        k: extract_features(model, b, runtime, eval_batch_size(bs)) for k, b in batches.items()
    }
    train_f = feats["train"][0]
    mean, std = torch.zeros(train_f.shape[1]), torch.ones(train_f.shape[1])
    norm = settings.get("feature_norm", "standardize")
    if norm == "standardize" and len(train_f) > 1:
        mean, std = train_f.mean(0), train_f.std(0).clamp(min=1e-6)
    elif norm == "scalar" and len(train_f):
        std = std * train_f.pow(2).mean().sqrt().clamp(min=1e-6).cpu()
    runtime.seed(stage_seed(seed, "probe/init", 0))
    head = _Standardized(mean.to(runtime.device), std.to(runtime.device), num_classes).to(
        runtime.device
    )
    fb = {k: Batches.from_tensors(f, y, runtime) for k, (f, y) in feats.items()}
    metrics = run_stage(
        "finetune",
        wrap(head, runtime.device, shard),  # every rank holds all features; each trains its slice
        head.parameters(),
        fb["train"],
        fb["val"],
        settings,
        runtime,
        seed=seed,
        ckpt_path=ckpt_path,
        checkpoint_every_s=checkpoint_every_s,
        report=report,
        metric_prefix="finetune",
        shard=shard,
    )

    def predictor(split_name: str) -> torch.Tensor:
        return predict(head, fb[split_name], runtime, eval_batch_size(bs))

    return metrics, predictor
