"""GPU training throughput: the project's trainable loop against a plain timm loop, and the JPEG loader.

    bash bench/gpu.sh                           # on a GPU machine (H100: about 2 min, < 8 min)
    python bench/bench_gpu.py                   # the same, without the shell wrapper
    python bench/bench_gpu.py --compile         # torch.compile both loops (adds ~1 min per compile)
    python bench/bench_gpu.py --cpu-smoke       # tiny CPU path: resnet18 / vit_tiny, 64 px, a few steps

For each model (resnet50 and vit_base_patch16_224 at 224 px; bf16 autocast and
channels_last on GPU, float32 on CPU, exactly as `trainables.engine.Runtime`
does), it measures images/s of:

1. the plain timm loop: `timm.create_model`, `torch.optim.SGD`, autocast,
   channels_last, on uint8 images already on the device (normalised per batch);
2. the trainable loop: `trainables.engine.train_epoch` over `Batches` of the
   same kind of in-memory images (the path cifar100 / synthetic trials take),
   with the model from `create_backbone` and the optimizer from `make_optimizer`;
3. the loader alone: `Batches` over JPEG files the bench writes (the
   imagefolder dataset: DataLoader workers decode + random-resized-crop to
   uint8, pinned memory, copy to the device, normalise there), at the trial's
   default worker count and at all cores;
4. the trainable loop fed by that loader (the path inat2021 / imagefolder /
   imagenet21k trials take).

Every figure is a fixed number of steps after warm-up steps (cudnn autotune,
compile), with the device synchronized before the clock starts and stops.
The plain loop runs twice (before and after the others): the gap between its
two figures is the noise floor for the trainable/plain ratio (target >= 0.90).
The last lines say whether the loader is the bottleneck, and by how much.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hierarchies import Hierarchy
from trainables import create_backbone, create_dataset
from trainables.data import Dataset, Split
from trainables.engine import (
    Batches,
    Runtime,
    make_optimizer,
    resolve_runtime,
    train_epoch,
)
from trainables.image_datasets import imagenet_batch_transform, normalize_uint8

NUM_CLASSES = 1000  # an ImageNet-sized head; the labels only use the first few
SGD = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0}
TARGET_RATIO = 0.90  # the trainable within 10% of the plain loop


@dataclass(frozen=True)
class Setup:
    """What to measure: models with their batch sizes, image size, step counts, JPEG pool."""

    device: str = "cuda"
    models: tuple[tuple[str, int], ...] = (("resnet50", 256), ("vit_base_patch16_224", 256))
    image_size: int = 224
    warmup: int = 10  # cudnn autotune + allocator + (with --compile) compilation
    steps: int = 30
    # Loader figures: W workers each decode a whole batch, so batches arrive in
    # waves of W; the clock runs from the last batch of the first wave (worker
    # start-up and the prefetch burst behind it) over `loader_waves` more waves.
    loader_waves: int = 3
    jpeg_size: tuple[int, int] = (500, 375)  # width, height of the written JPEGs
    loader_workers: tuple[int, ...] = field(default_factory=tuple)  # () = trial default + all cores
    fed_workers: int | None = None  # workers feeding the trainable loop; None = the trial default
    compile: bool = False

    def workers(self, default: int) -> tuple[int, ...]:
        """Loader worker counts to measure: the given ones, else the trial default and all cores."""
        return self.loader_workers or tuple(sorted({default, os.cpu_count() or 1}))

    def loader_batches(self, workers: int) -> tuple[int, int]:
        """(batch index where the clock starts, where it stops) for a loader with `workers`."""
        wave = max(1, workers)
        return wave - 1, wave * (1 + self.loader_waves) - 1

    def num_jpegs(self, default_workers: int) -> int:
        fed = default_workers if self.fed_workers is None else self.fed_workers
        most = max((*self.workers(default_workers), fed))
        return max(bs for _, bs in self.models) * (self.loader_batches(most)[1] + 1)


def gpu_setup(**changes) -> Setup:
    """The H100 / H200 measurement: about 2-3 minutes eager; `compile=True` adds 4 compiles."""
    return replace(Setup(), **changes)


def cpu_smoke_setup(**changes) -> Setup:
    """A few seconds on 2 CPU cores: the same code paths on tiny models and images."""
    smoke = Setup(
        device="cpu",
        models=(("resnet18", 4), ("vit_tiny_patch16_224", 4)),
        image_size=64,
        warmup=1,
        steps=2,
        loader_waves=2,
        jpeg_size=(80, 60),
        loader_workers=(0,),
        fed_workers=0,  # forking workers would cost more than the smoke's steps
    )
    return replace(smoke, **changes)


@dataclass
class Row:
    """One measured figure."""

    model: str
    path: str
    batch_size: int
    images_per_s: float
    seconds: float


# ---- helpers -------------------------------------------------------------------------
_START = time.perf_counter()


def progress(message: str) -> None:
    """A timestamped progress line (stderr-free, flushed: the device tool shows the tail)."""
    print(f"[{time.perf_counter() - _START:6.1f} s] {message}", flush=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class TimedBatches:
    """Wraps `Batches`: times batches [start, stop) of one pass, synchronizing at both ends.

    `train_epoch` only calls `iterate`, so the project's loop runs unchanged.
    The clock starts when batch `start` is handed out (every earlier step has
    finished on the device) and stops when batch `stop` is handed out (every
    step before it has finished): it covers the compute of batches start..stop-1
    and the arrival of batches start+1..stop, so `stop - start` batches either
    way. The pass needs at least stop + 1 batches.
    """

    def __init__(self, batches: Batches, start: int, stop: int, device: torch.device) -> None:
        if not 0 <= start < stop:
            raise ValueError(f"need 0 <= start < stop, got {start}, {stop}")
        self.batches, self.start, self.stop, self.device = batches, start, stop, device
        self.images, self.seconds = 0, float("nan")

    def __len__(self) -> int:
        return len(self.batches)

    def iterate(
        self, batch_size: int, *, train: bool, seed: int | None = None, shard=None
    ) -> Iterator:
        clock = None
        batches = self.batches.iterate(batch_size, train=train, seed=seed, shard=shard)
        for i, (x, y) in enumerate(batches):
            if i == self.start:
                synchronize(self.device)
                clock = time.perf_counter()
            elif i == self.stop and clock is not None:
                synchronize(self.device)
                self.seconds = time.perf_counter() - clock
            if self.start <= i < self.stop:
                self.images += len(y)
            yield x, y
        if self.seconds != self.seconds:  # nan: the pass was shorter than stop + 1 batches
            raise RuntimeError(f"timed pass ended before batch {self.stop}")

    @property
    def rate(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def _timm_model(name: str, image_size: int) -> nn.Module:
    import timm

    try:  # models with a fixed input size (ViT) must be told ours, as create_backbone does
        return timm.create_model(
            name, pretrained=False, num_classes=NUM_CLASSES, img_size=image_size
        )
    except TypeError:
        return timm.create_model(name, pretrained=False, num_classes=NUM_CLASSES)


def _maybe_compile(model: nn.Module, setup: Setup) -> nn.Module:
    return torch.compile(model) if setup.compile else model


# ---- the three loops ----------------------------------------------------------------
class PlainTimmLoop:
    """The reference: a textbook timm training loop on uint8 images already on the device.

    Built once per model and timed twice (the repeat is the noise floor), so
    `--compile` compiles it once.
    """

    def __init__(self, name: str, setup: Setup, device: torch.device) -> None:
        torch.manual_seed(0)
        self.name, self.setup, self.device = name, setup, device
        self.model = _timm_model(name, setup.image_size).to(device)
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.step_model = _maybe_compile(self.model, setup)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=SGD["lr"], momentum=SGD["momentum"]
        )

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        x = normalize_uint8(images)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(self.device):
            loss = nn.functional.cross_entropy(self.step_model(x).float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def run(self, batch_size: int, images: torch.Tensor, labels: torch.Tensor) -> Row:
        """`warmup` steps, then `steps` timed ones, cycling over the batches of `images`."""
        self.model.train()
        batches = len(images) // batch_size

        def step(i: int) -> None:
            take = slice((i % batches) * batch_size, (i % batches + 1) * batch_size)
            self.step(images[take], labels[take])

        for i in range(self.setup.warmup):
            step(i)
        synchronize(self.device)
        start = time.perf_counter()
        for i in range(self.setup.steps):
            step(self.setup.warmup + i)
        synchronize(self.device)
        seconds = time.perf_counter() - start
        return Row(self.name, "", batch_size, self.setup.steps * batch_size / seconds, seconds)


def _trainable_model(name: str, setup: Setup, runtime: Runtime) -> tuple[nn.Module, nn.Module]:
    """(model, what train_epoch calls): built the way `trainables.trial` builds it."""
    torch.manual_seed(0)
    model = create_backbone(name, NUM_CLASSES, in_chans=3, input_size=setup.image_size)
    model = model.to(runtime.device)
    if runtime.cuda:
        model = model.to(memory_format=torch.channels_last)
    return model, _maybe_compile(model, setup)


def trainable_loop(
    name: str,
    batch_size: int,
    model: tuple[nn.Module, nn.Module],
    batches: Batches,
    runtime: Runtime,
    window: tuple[int, int],
) -> Row:
    """`train_epoch` for one epoch over `batches`, timed over the batches in `window`."""
    module, step_model = model
    optimizer = make_optimizer(module.parameters(), SGD)
    timed = TimedBatches(batches, *window, runtime.device)
    train_epoch(step_model, timed, optimizer, runtime, batch_size=batch_size, seed=0, where="bench")
    return Row(name, "", batch_size, timed.rate, timed.seconds)


def loader_alone(
    name: str, batch_size: int, batches: Batches, runtime: Runtime, window: tuple[int, int]
) -> Row:
    """Batches of decoded JPEGs delivered to the device, no model: the loader's ceiling."""
    timed = TimedBatches(batches, *window, runtime.device)
    for _ in timed.iterate(batch_size, train=True, seed=0):
        pass
    return Row(name, "", batch_size, timed.rate, timed.seconds)


# ---- data -----------------------------------------------------------------------------
def _single_level_hierarchy(num_leaves: int) -> Hierarchy:
    names = [f"c{i}" for i in range(num_leaves)]
    return Hierarchy(
        leaf_names=names, level_names=["class"], levels=[np.arange(num_leaves)], node_names=[names]
    )


def in_memory_dataset(images: torch.Tensor, leaf: np.ndarray) -> Dataset:
    """A Dataset whose splits hold `images` (uint8, on the device), normalised per batch."""
    split = Split(leaf=leaf, inputs=images)
    return Dataset(
        name="bench",
        hierarchy=_single_level_hierarchy(int(leaf.max()) + 1),
        default_target="class",
        train=split,
        test=split,
        input_shape=tuple(images.shape[1:]),
        patch_size=16,
        batch_transform=imagenet_batch_transform,
    )


def _write_jpegs(job: tuple[str, int, int, int, int]) -> None:
    """Smooth colour fields plus noise: decode costs like a photo, unlike pure noise."""
    from PIL import Image

    folder, start, count, width, height = job
    rng = np.random.default_rng(start)
    for i in range(start, start + count):
        coarse = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR))
        noisy = smooth.astype(np.int16) + rng.integers(-12, 13, smooth.shape, dtype=np.int16)
        image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
        image.save(Path(folder) / f"c{i % 16}" / f"{i}.jpg", quality=90)


def write_imagefolder(root: Path, count: int, size: tuple[int, int], image_size: int) -> Dataset:
    """`count` JPEGs in 16 class folders under root/train (one per class in root/val)."""
    for split in ("train", "val"):
        for c in range(16):
            (root / split / f"c{c}").mkdir(parents=True, exist_ok=True)
    procs = max(1, min(16, os.cpu_count() or 1))
    chunk = -(-count // procs)
    jobs = [(str(root / "train"), s, min(chunk, count - s), *size) for s in range(0, count, chunk)]
    jobs.append((str(root / "val"), count, 16, *size))
    if count < 256:  # a pool costs more than it saves
        for job in jobs:
            _write_jpegs(job)
    else:
        with mp.get_context("fork").Pool(procs) as pool:
            pool.map(_write_jpegs, jobs)
    (root / "h.csv").write_text("group,class\n" + "".join(f"g{c % 4},c{c}\n" for c in range(16)))
    return create_dataset(
        "imagefolder", root=str(root), hierarchy=str(root / "h.csv"), image_size=image_size
    )


# ---- the measurement ------------------------------------------------------------------
def measure(setup: Setup, emit: Callable[[Row], None] | None = None) -> list[Row]:
    """Run every figure of `setup`; returns the rows (each also handed to `emit` as it lands)."""
    device = torch.device(setup.device)
    runtime = resolve_runtime(setup.device)  # cudnn.benchmark on GPU, as a trial has it
    default_workers = runtime.num_workers
    fed_workers = default_workers if setup.fed_workers is None else setup.fed_workers
    rows: list[Row] = []

    def add(row: Row, path: str) -> None:
        row.path = path
        rows.append(row)
        progress(f"{row.model:<22} {path:<42} {row.images_per_s:10.1f} images/s")
        if emit:
            emit(row)

    def file_batches(count: int, workers: int) -> tuple[Batches, Runtime]:
        index = np.arange(count)
        file_runtime = Runtime(device, workers)
        return Batches(
            files, files.train, index, files.train.leaf[index], file_runtime
        ), file_runtime

    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        count = setup.num_jpegs(default_workers)
        progress(f"writing {count} JPEGs {setup.jpeg_size[0]}x{setup.jpeg_size[1]}")
        files = write_imagefolder(Path(tmp), count, setup.jpeg_size, setup.image_size)
        for name, bs in setup.models:
            # One batch past the window: the clock stops when that batch is handed out.
            n = bs * (setup.warmup + setup.steps + 1)
            shape = (n, 3, setup.image_size, setup.image_size)
            generator = torch.Generator(device).manual_seed(0)
            images = torch.randint(
                0, 256, shape, dtype=torch.uint8, generator=generator, device=device
            )
            leaf = np.arange(n) % 16
            labels = torch.as_tensor(leaf, device=device)

            progress(f"{name}: plain timm loop, {setup.warmup} + {setup.steps} steps")
            plain = PlainTimmLoop(name, setup, device)
            add(plain.run(bs, images, labels), "plain timm loop (on device)")
            free_memory()

            progress(f"{name}: trainable loop (train_epoch over in-memory Batches)")
            model = _trainable_model(name, setup, runtime)
            data = in_memory_dataset(images, leaf)
            batches = Batches(data, data.train, np.arange(n), leaf, runtime)
            window = (setup.warmup, setup.warmup + setup.steps)
            add(
                trainable_loop(name, bs, model, batches, runtime, window),
                "trainable loop (on device)",
            )
            del batches, data
            free_memory()

            for workers in setup.workers(default_workers):
                window = setup.loader_batches(workers)
                loader, file_runtime = file_batches(bs * (window[1] + 1), workers)
                progress(f"{name}: loader alone, {workers} workers, {len(loader)} JPEGs")
                tag = " (trial default)" if workers == default_workers else ""
                add(
                    loader_alone(name, bs, loader, file_runtime, window),
                    f"loader alone, {workers} workers{tag}",
                )
            window = setup.loader_batches(fed_workers)
            loader, fed_runtime = file_batches(bs * (window[1] + 1), fed_workers)
            progress(f"{name}: trainable loop fed by the loader, {fed_workers} workers")
            add(
                trainable_loop(name, bs, model, loader, fed_runtime, window),
                f"trainable loop + loader ({fed_workers} workers)",
            )
            del model, loader
            free_memory()

            progress(f"{name}: plain timm loop again (noise floor)")
            add(plain.run(bs, images, labels), "plain timm loop (repeat)")
            del plain, images, labels
            free_memory()
    return rows


def summarize(rows: list[Row]) -> list[str]:
    """The table plus one verdict line per model: trainable/plain and the loader's share."""
    lines = [f"{'model':<22} {'path':<42} {'batch':>5} {'images/s':>10} {'vs plain':>9}"]
    verdicts = []
    for model in dict.fromkeys(r.model for r in rows):
        mine = [r for r in rows if r.model == model]
        by_path = {r.path: r for r in mine}
        plain = [r.images_per_s for r in mine if r.path.startswith("plain")]
        reference = float(np.mean(plain)) if plain else float("nan")
        for r in mine:
            lines.append(
                f"{r.model:<22} {r.path:<42} {r.batch_size:>5} {r.images_per_s:>10.1f} "
                f"{r.images_per_s / reference:>9.2f}"
            )
        trainable = by_path.get("trainable loop (on device)")
        fed = next((r for r in mine if r.path.startswith("trainable loop + loader")), None)
        if trainable and plain:
            ratio = trainable.images_per_s / reference
            spread = (max(plain) - min(plain)) / reference
            if ratio >= TARGET_RATIO:
                outcome = "met"
            elif 1 - ratio <= spread:
                outcome = "missed, but within the plain loop's spread: rerun with more --steps"
            else:
                outcome = "MISSED"
            verdicts.append(
                f"{model}: trainable/plain = {ratio:.2f} (target >= {TARGET_RATIO:.2f}: "
                f"{outcome}; plain run-to-run spread {spread:.1%})"
            )
        if trainable and fed:
            share = fed.images_per_s / trainable.images_per_s
            if share >= TARGET_RATIO:
                verdicts.append(
                    f"{model}: loader not the bottleneck (loader-fed = {share:.2f} of on-device)"
                )
            else:
                verdicts.append(
                    f"{model}: loader IS the bottleneck: loader-fed runs at {share:.2f} of the "
                    f"on-device rate ({trainable.images_per_s / fed.images_per_s:.1f}x slower)"
                )
    return lines + verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny CPU run (a test runs it)")
    parser.add_argument("--compile", action="store_true", help="torch.compile both loops")
    parser.add_argument(
        "--models",
        default=None,
        help="name:batch,... (default resnet50:256,vit_base_patch16_224:256)",
    )
    parser.add_argument("--steps", type=int, default=None, help="timed steps per figure")
    parser.add_argument(
        "--workers", default=None, help="loader worker counts, e.g. 8,16 (default: trial's, all)"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    changes: dict = {"compile": args.compile}
    if args.models:
        changes["models"] = tuple(
            (name, int(bs)) for name, bs in (m.split(":") for m in args.models.split(","))
        )
    if args.steps:
        changes["steps"] = args.steps
    if args.workers:
        changes["loader_workers"] = tuple(int(w) for w in args.workers.split(","))
    if args.cpu_smoke:
        setup = cpu_smoke_setup(**changes)
        torch.set_num_threads(1)  # tiny steps: a second thread only adds contention
    elif torch.cuda.is_available():
        setup = gpu_setup(**changes)
    else:
        print("no CUDA device: run with --cpu-smoke here, or bench/gpu.sh on a GPU machine")
        return 2
    where = torch.cuda.get_device_name() if setup.device == "cuda" else "cpu"
    progress(
        f"device {where}, torch {torch.__version__}, {os.cpu_count()} CPU cores, "
        f"image {setup.image_size} px, {'bf16 autocast + channels_last' if setup.device == 'cuda' else 'float32'}"
        f"{', torch.compile' if setup.compile else ''}"
    )
    rows = measure(setup)
    print("\n".join(summarize(rows)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
