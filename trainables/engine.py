"""Training and evaluation loops shared by the trial's stages.

Batches come from `Batches`: slices of an in-memory tensor already on the
device (no DataLoader overhead: the synthetic trials are tiny), or image
files decoded by `trainables.decode` (in process for small sets, else by
persistent workers with pinned memory). Every epoch's shuffle and
augmentation are seeded by (seed, stage, epoch), so a resumed epoch sees the
same batches as an uninterrupted run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from trainables.data import Dataset, Split
from trainables.distributed import Shard, sum_across
from trainables.errors import TrialError


@dataclass
class Runtime:
    """Where and how tensors run: device, bf16 autocast on GPU, channels_last."""

    device: torch.device
    num_workers: int = 0

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self):
        # bf16 autocast on GPU only; CPU runs the same code in float32.
        if self.cuda:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def seed(self, seed: int) -> None:
        """Seed torch's global RNGs: the CPU one, and CUDA's where this runtime uses it.

        Same effect as torch.manual_seed here, without its cost on CPU: that
        also queues a seed for CUDA, XPU and MTIA while they are not
        initialised, formatting a stack trace each time (~1 ms a call, 6% of a
        quickstart trial, which seeds every epoch).
        """
        torch.default_generator.manual_seed(seed)
        if self.cuda:
            torch.cuda.manual_seed_all(seed)

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.cuda and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def resolve_runtime(device: str = "auto", num_workers: int | None = None) -> Runtime:
    """`auto` picks CUDA when present. Turns on cudnn.benchmark there."""
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise TrialError(f"device {device!r} is not one of auto | cpu | cuda")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrialError(f"device {device!r} requested but CUDA is not available")
        torch.backends.cudnn.benchmark = True
    if num_workers is None:
        num_workers = min(8, os.cpu_count() or 1)
    return Runtime(torch.device(device), num_workers)


def stage_seed(seed: int, stage: str, epoch: int) -> int:
    """A seed for one epoch of one stage, stable across processes."""
    return (int(seed) * 1_000_003 + sum(map(ord, stage)) * 7919 + epoch) % (2**31)


class Batches:
    """Batches of (input, label) for given example indices of a split.

    In memory: the subset's inputs live on the device. Files:
    `trainables.decode.file_batches` decodes them with the dataset's file
    transforms (uint8 for the folder datasets; each example's augmentation
    seeded by the pass's seed and its position) and each batch is copied to
    the device. Either
    way `transform(x, train)` (the dataset's batch_transform) then runs per
    batch on the device.
    """

    def __init__(
        self,
        dataset: Dataset,
        split: Split,
        indices: np.ndarray,
        labels: np.ndarray,
        runtime: Runtime,
    ) -> None:
        self.runtime = runtime
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64)).to(runtime.device)
        indices = np.asarray(indices, dtype=np.int64)
        self.inputs: torch.Tensor | None = None
        self.transform = dataset.batch_transform
        self.files: list[str] | None = None
        self.file_transforms = dataset.file_transforms or {}
        self.input_shape = tuple(dataset.input_shape)
        if split.in_memory:
            # Keep this subset on the device once; epochs only index it.
            self.inputs = split.inputs[torch.as_tensor(indices)].to(runtime.device)
        else:
            self.files = [split.files[i] for i in indices]

    @classmethod
    def from_tensors(cls, inputs: torch.Tensor, labels: torch.Tensor, runtime: Runtime) -> Batches:
        """Batches over ready model inputs (e.g. precomputed features for a linear probe)."""
        batches = cls.__new__(cls)
        batches.runtime, batches.inputs, batches.labels = runtime, inputs, labels
        batches.transform = lambda x, train: x
        batches.files, batches.file_transforms = None, {}
        batches.input_shape = tuple(inputs.shape[1:])
        return batches

    def __len__(self) -> int:
        return len(self.labels)

    def num_batches(self, batch_size: int) -> int:
        """Global batches in one pass (an epoch)."""
        return math.ceil(len(self) / batch_size)

    def iterate(
        self,
        batch_size: int,
        *,
        train: bool,
        seed: int | None = None,
        shard: Shard | None = None,
        window: tuple[int, int] | None = None,
    ) -> Iterator:
        """Yield (inputs, labels); shuffled by `seed` when given; `train` turns on augmentation.

        With a `shard` of several ranks, `batch_size` is the global batch: every
        rank draws the same order and yields its slice of each global batch
        (`global_batches`), so the ranks together see exactly the batches one
        process would. `window=(first, count)`: only those global batches of
        the pass (a step budget ends, or resumes, inside an epoch).
        """
        n = len(self.labels)
        if n == 0:
            return
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        order = torch.randperm(n, generator=generator) if generator else torch.arange(n)
        if self.inputs is not None:
            order = order.to(self.runtime.device)  # indexing stays on the device
            for take in _window(global_batches(order, batch_size, shard or Shard()), window):
                yield (
                    self.runtime.to_input(self.transform(self.inputs[take], train)),
                    self.labels[take],
                )
            return
        from trainables.decode import file_batches

        decoded = file_batches(
            self.files or [],
            self.file_transforms,
            _window(global_batches(order, batch_size, shard or Shard()), window),
            train=train,
            seed=seed,
            num_workers=self.runtime.num_workers,
            pin_memory=self.runtime.cuda,
            input_shape=self.input_shape,
        )
        for x, position in decoded:
            # non_blocking: a blocking copy would make every step wait for the GPU.
            x = x.to(self.runtime.device, non_blocking=True)
            position = position.to(self.runtime.device, non_blocking=True)
            yield self.runtime.to_input(self.transform(x, train)), self.labels[position]


def _window(batches: list[torch.Tensor], window: tuple[int, int] | None) -> list[torch.Tensor]:
    return batches if window is None else batches[window[0] : window[0] + window[1]]


def global_batches(order: torch.Tensor, batch_size: int, shard: Shard) -> list[torch.Tensor]:
    """This rank's example indices of each global batch of `order` (the whole batch for one rank).

    Consecutive, balanced slices (`tensor_split`): with the batch divisible by
    the world size every rank gets batch/world examples. The role of a
    DistributedSampler, but per global batch, so the global batch (and with
    it the learning rate) means what it means for one process.
    """
    out = []
    for start in range(0, len(order), batch_size):
        take = order[start : start + batch_size]
        out.append(torch.tensor_split(take, shard.world)[shard.rank] if shard.parallel else take)
    return out


def make_optimizer(params, settings: dict) -> torch.optim.Optimizer:
    """SGD (with momentum), Adam or AdamW from a stage's settings."""
    name = settings.get("optimizer", "sgd").lower()
    lr, wd = float(settings["lr"]), float(settings.get("weight_decay", 0.0))
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=float(settings.get("momentum", 0.9)), weight_decay=wd
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    raise TrialError(f"optimizer {name!r} is not one of sgd | adam | adamw")


def set_epoch_lr(optimizer: torch.optim.Optimizer, settings: dict, epoch: int) -> None:
    """Cosine decay over the stage's epochs (per epoch, so a resume gets the same lr)."""
    set_lr(optimizer, settings, epoch, int(settings["epochs"]))


def set_lr(optimizer: torch.optim.Optimizer, settings: dict, position: int, total: int) -> None:
    """The stage's lr at `position` of `total` (epochs, or steps under a step budget)."""
    lr = float(settings["lr"])
    if settings.get("schedule", "cosine") == "cosine" and total > 1:
        lr = lr * 0.5 * (1 + math.cos(math.pi * position / total))
    for group in optimizer.param_groups:
        group["lr"] = lr


def train_epoch(
    model: nn.Module,
    batches: Batches,
    optimizer: torch.optim.Optimizer,
    runtime: Runtime,
    *,
    batch_size: int,
    seed: int,
    where: str,
    check_every: int = 50,
    shard: Shard | None = None,
    window: tuple[int, int] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> tuple[float, float]:
    """One epoch of SGD; returns (mean loss, error). Raises TrialError on a non-finite loss.

    No step waits for the GPU: loss and error sums stay on the device (a
    NaN/inf loss makes the loss sum non-finite, so the sum is also the flag).
    Every `check_every` steps the flag is copied to pinned host memory without
    blocking and read once that copy has landed, so a diverged epoch stops
    within a few checks; the epoch's end reads both sums (the one sync).

    Data-parallel (`shard` of several ranks, `model` under DDP): each rank
    trains on its slice of every global batch, its loss scaled so that DDP's
    gradient mean is the global batch's mean gradient; the returned loss and
    error are over all ranks' examples. A non-finite loss is checked on the
    all-reduced sums at the epoch's end only (a rank stopping alone mid-epoch
    would leave the others waiting in DDP's all-reduce).

    `window=(first, count)`: train on those global batches of the epoch only;
    `on_step(i)` runs before the i-th step of the window (a per-step lr).
    """
    shard = shard or Shard()
    model.train()
    total_loss = torch.zeros((), device=runtime.device)
    wrong = torch.zeros((), device=runtime.device, dtype=torch.long)
    finite = _FiniteWatch(runtime)
    count = 0
    n = len(batches) if shard.parallel else 0  # the global batch lengths (parallel only)
    first = window[0] if window else 0
    # `window` only when set: wrappers of Batches (bench/bench_gpu.py's timer) take the old API.
    extra = {"window": window} if window is not None else {}
    passes = batches.iterate(batch_size, train=True, seed=seed, shard=shard, **extra)
    for step, (x, y) in enumerate(passes):
        if on_step is not None:
            on_step(step)
        with runtime.autocast():
            logits = model(x)
            if shard.parallel:
                global_len = min(batch_size, n - (first + step) * batch_size)
                losses = nn.functional.cross_entropy(logits.float(), y, reduction="sum")
                loss = losses * (shard.world / global_len)
            else:
                loss = nn.functional.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += (losses if shard.parallel else loss * len(y)).detach()
        wrong += (logits.argmax(1) != y).sum()
        count += len(y)
        if not shard.parallel and step % check_every == 0 and not finite.poll(total_loss):
            raise TrialError(f"non-finite loss in {where}, by batch {step}")
    if shard.parallel:
        total, wrong_all, count_all = sum_across(
            [total_loss, wrong, torch.tensor(float(count), device=runtime.device)], shard
        )
        mean_loss = float(total) / max(float(count_all), 1.0)
        error = float(wrong_all) / max(float(count_all), 1.0)
    else:
        mean_loss, error = total_loss.item() / max(count, 1), wrong.item() / max(count, 1)
    if not math.isfinite(mean_loss):
        raise TrialError(f"non-finite loss ({mean_loss}) in {where}")
    return mean_loss, error


class _FiniteWatch:
    """Asks whether a device scalar is finite without making the host wait for the GPU.

    On CPU the answer is immediate. On CUDA `poll` starts a non-blocking copy
    of isfinite(value) to pinned memory and answers from the previous copy
    once its event has completed (True while none has landed yet).
    """

    def __init__(self, runtime: Runtime) -> None:
        self.cuda = runtime.cuda
        self.host = torch.ones((), dtype=torch.bool, pin_memory=self.cuda)
        self.event: torch.cuda.Event | None = None

    def poll(self, value: torch.Tensor) -> bool:
        if not self.cuda:
            return bool(torch.isfinite(value))
        if self.event is not None:
            if not self.event.query():
                return True  # the last copy is still queued: ask again next time
            if not bool(self.host):
                return False
        self.host.copy_(torch.isfinite(value), non_blocking=True)
        self.event = torch.cuda.Event()
        self.event.record()
        return True


@torch.no_grad()
def predict(
    model: Callable[[torch.Tensor], torch.Tensor],
    batches: Batches,
    runtime: Runtime,
    batch_size: int,
) -> torch.Tensor:
    """argmax predictions (on CPU) for every example of `batches`, in order."""
    if isinstance(model, nn.Module):
        model.eval()
    out = []
    for x, _ in batches.iterate(batch_size, train=False):
        with runtime.autocast():
            out.append(model(x).argmax(1))  # stays on the device: one copy at the end
    return torch.cat(out).cpu() if out else torch.zeros(0, dtype=torch.long)


def error_rate(
    predictions: torch.Tensor, labels: torch.Tensor, mask: np.ndarray | None = None
) -> float:
    """Top-1 error, optionally on the examples where `mask` is true (nan when none)."""
    wrong = predictions != labels.cpu()
    if mask is not None:
        wrong = wrong[torch.as_tensor(mask)]
    return float(wrong.float().mean()) if len(wrong) else float("nan")


@torch.no_grad()
def extract_features(
    model, batches: Batches, runtime: Runtime, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Body features (float32, on the device) and labels of every example, in order."""
    model.eval()
    feats, labels = [], []
    for x, y in batches.iterate(batch_size, train=False):
        with runtime.autocast():
            feats.append(model.features(x).float())
        labels.append(y)
    if not feats:
        return torch.zeros(0, model.num_features, device=runtime.device), batches.labels[:0]
    return torch.cat(feats), torch.cat(labels)
