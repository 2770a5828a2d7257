"""A stage's training budget: epochs, or a number of SGD steps, cut into segments.

A segment is what the stage does between two evaluations (validation error,
checkpoint, report). Under `epochs` a segment is one epoch, with the lr set
per epoch (cosine over the epochs). Under `steps` (the same number of SGD
steps at every data size) the steps run through seeded epochs back to back,
the last one cut short, with the lr set per step (cosine over the steps); they
are cut into at most `MAX_SEGMENTS` segments, at least one per epoch when the
budget is a few epochs, so evaluation costs little however small the data.
An epoch's shuffle is seeded by (seed, stage, epoch) either way, so a stage
resumed at a segment boundary sees the batches an uninterrupted one would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn, optim

from trainables.distributed import Shard
from trainables.engine import Batches, Runtime, set_epoch_lr, set_lr, stage_seed, train_epoch

MAX_SEGMENTS = 20


@dataclass(frozen=True)
class Budget:
    """The segments of one stage over a training set of `per_epoch` batches.

    `bounds` (steps only): segment k runs steps bounds[k] .. bounds[k+1]-1.
    """

    epochs: int
    per_epoch: int
    bounds: tuple[int, ...] | None = None

    @property
    def segments(self) -> int:
        return self.epochs if self.bounds is None else len(self.bounds) - 1

    @property
    def total_steps(self) -> int:
        return self.epochs * self.per_epoch if self.bounds is None else self.bounds[-1]

    def train(
        self,
        k: int,
        model: nn.Module,
        batches: Batches,
        optimizer: optim.Optimizer,
        runtime: Runtime,
        settings: dict,
        *,
        stage: str,
        seed: int,
        shard: Shard,
    ) -> tuple[float, float]:
        """Train segment k; (mean loss, error) over its steps."""
        bs = int(settings["batch_size"])
        if self.bounds is None:
            set_epoch_lr(optimizer, settings, k)
            return train_epoch(
                model,
                batches,
                optimizer,
                runtime,
                batch_size=bs,
                seed=stage_seed(seed, stage, k),
                where=f"{stage} epoch {k}",
                shard=shard,
            )
        step, end = self.bounds[k], self.bounds[k + 1]
        loss_sum, error_sum = 0.0, 0.0
        while step < end:
            epoch, first = divmod(step, self.per_epoch)
            count = min(self.per_epoch - first, end - step)
            start = step

            def per_step(i: int, start: int = start) -> None:
                set_lr(optimizer, settings, start + i, self.total_steps)

            loss, error = train_epoch(
                model,
                batches,
                optimizer,
                runtime,
                batch_size=bs,
                seed=stage_seed(seed, stage, epoch),
                where=f"{stage} step {start}",
                shard=shard,
                window=(first, count),
                on_step=per_step,
            )
            loss_sum, error_sum = loss_sum + loss * count, error_sum + error * count
            step += count
        return loss_sum / (end - self.bounds[k]), error_sum / (end - self.bounds[k])


def stage_budget(settings: dict, num_examples: int) -> Budget:
    """The budget of a stage's settings (`steps` when set, else `epochs`) over `num_examples`."""
    per_epoch = math.ceil(num_examples / int(settings["batch_size"]))
    steps = settings.get("steps")
    if steps is None or per_epoch == 0:
        epochs = int(settings.get("epochs") or 0) if steps is None else 0
        return Budget(epochs, per_epoch)
    steps = int(steps)
    segments = min(MAX_SEGMENTS, math.ceil(steps / per_epoch))
    bounds = tuple(round(steps * k / segments) for k in range(segments + 1))
    return Budget(0, per_epoch, bounds)
