"""Fixed cost per image-file trial: a pack of small imagefolder trials against the same trials on preloaded tensors.

    python bench/bench_image_trials.py                      # 10 trials, 60 JPEGs, resnet18 at 64 px, 1 epoch
    python bench/bench_image_trials.py --image-size 224 --trials 30   # the target's setting (slow on 2 cores)
    python bench/bench_image_trials.py --profile            # plus where the files pack's time goes

What it runs (CPU, in this process, nothing downloads):

writes `--images` JPEGs (320x240, 16 classes in 4 groups, plus 16 test
images) and runs one pack through `sweeps.packs.run_pack`, as a sweep's
worker does, of two trials per seed 0..n-1 (resnet18 pretrained 1 epoch on
the classes, linear probe 1 epoch on the groups, one torch thread):

- on files: the imagefolder dataset over the JPEGs;
- preloaded: the same images decoded once up front (eval transform) and held
  in memory as uint8 tensors: the same model passes with the same batch
  shapes, without files, decoding or loaders.

The fixed cost of a trial is its wall time on files minus that of the
preloaded trial of its seed (run right after it): everything the file path
adds (loader and worker start-up, decoding, moving images between
processes). Decoding is real work, so this bounds the start-up part from
above. The summary is the median over seeds (a burst of load elsewhere moves
one pair, not the median). The target is <= 2 s per trial on CPU,
with the loader's throughput unchanged or better: `--loader-sizes` prints
that throughput (images/s per pass, first and warm passes, in process and
through workers).

The machine's load average is printed with the figures: on a shared machine
they move with it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_gpu import write_imagefolder

from trainables import is_dataset, register_dataset, train
from trainables.data import Dataset, Split
from trainables.engine import Batches, resolve_runtime
from trainables.trial import load_dataset

TARGET_FIXED_S = 2.0


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def worker_starts() -> int | None:
    """Worker processes started by trainables.decode's pools (None before that module existed)."""
    try:
        from trainables.decode import worker_starts as starts
    except ImportError:
        return None
    return starts()


def bench_preloaded_images(*, root: str, hierarchy: str, image_size: int) -> Dataset:
    """The imagefolder dataset at `root`, every image decoded once (eval transform) into memory."""
    files = load_dataset(
        "imagefolder", {"root": root, "hierarchy": hierarchy, "image_size": image_size}
    )
    from PIL import Image

    def preload(split: Split) -> Split:
        images = []
        for path in split.files or []:
            with Image.open(path) as img:
                images.append(files.file_transforms["eval"](img.convert("RGB")))
        return Split(leaf=split.leaf, inputs=torch.stack(images))

    return Dataset(
        name="bench_preloaded_images",
        hierarchy=files.hierarchy,
        default_target=files.default_target,
        train=preload(files.train),
        test=preload(files.test),
        input_shape=files.input_shape,
        patch_size=files.patch_size,
        batch_transform=files.batch_transform,
    )


def trial_config(dataset: str, options: dict, hierarchy_path: str, seed: int, args) -> dict:
    return {
        "dataset": dataset,
        "dataset_options": options,
        "target": "group",
        "hierarchy_path": hierarchy_path,
        "level": "class",
        "backbone": args.backbone,
        "seed": seed,
        "device": "cpu",
        "pretrain": {"epochs": args.epochs, "lr": 0.05, "batch_size": args.batch_size},
        "finetune": {"mode": "linear", "epochs": 1, "batch_size": args.batch_size},
        "trial_key": f"{dataset}-{seed}",
        # One thread: on a shared machine two threads' spin-waits made trial
        # times swing 10x (the same trial 0.5 s, then 5 s).
        "num_threads": args.threads,
        "num_workers": args.workers,
    }


def run_pack_walls(configs: list[dict], storage: Path) -> list[float]:
    """Each trial's wall time (s) as `run_pack` records it, in order."""
    from sweeps.packs import run_pack

    finals: dict[str, float] = {}

    def emit(events: list[dict]) -> None:
        for event in events:
            if event["event"] == "final":
                finals[event["trial_key"]] = float(event["wall_s"])
            elif event["event"] == "failed":
                raise RuntimeError(f"trial {event['trial_key']} failed: {event['reason']}")

    storage.mkdir(parents=True, exist_ok=True)
    run_pack(
        [{"config": c, "meta": {}} for c in configs],
        trainable=train,
        emit=emit,
        storage=storage,
        retries=0,
        invocation="bench",
    )
    return [finals[c["trial_key"]] for c in configs]


def bench_pack(root: Path, args) -> dict:
    """One pack alternating file and preloaded trials of each seed; per-trial walls and starts.

    Alternating puts the two trials of a seed next to each other in time, so
    a burst of load from elsewhere on the machine hits both alike.
    """
    options = {"root": str(root), "hierarchy": str(root / "h.csv"), "image_size": args.image_size}
    hierarchy_path = str(root / "h.json")
    if not is_dataset("bench_preloaded_images"):
        register_dataset(bench_preloaded_images)
    load_dataset("imagefolder", options).hierarchy.save(hierarchy_path)
    # Warm-up (not timed): torch's first-use costs (allocator, kernels) would
    # otherwise land on the first trial.
    train(trial_config("bench_preloaded_images", options, hierarchy_path, 10_000, args), None)
    configs = [
        trial_config(name, options, hierarchy_path, seed, args)
        for seed in range(args.trials)
        for name in ("imagefolder", "bench_preloaded_images")
    ]
    starts_before = worker_starts()
    profiler = None
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.005)
    with profiler or contextlib.nullcontext():
        walls = run_pack_walls(configs, root / "storage")
    starts_after = worker_starts()
    return {
        "files": walls[0::2],
        "preloaded": walls[1::2],
        "worker_starts": None if starts_after is None else starts_after - (starts_before or 0),
        "profile": profiler.output_text(unicode=False, color=False) if profiler else None,
    }


def loader_rates(root: Path, sizes: list[int], workers: int, passes: int) -> list[tuple]:
    """(size, path, first-pass images/s, warm-pass images/s) per set size and decoding path."""
    from contextlib import ExitStack

    rows = []
    for size in sizes:
        folder = root / f"loader{size}"
        ds = write_imagefolder(folder, size, (320, 240), 224)
        for path, count in (("in process", 0), (f"{workers} workers", workers)):
            with ExitStack() as stack:
                stack.enter_context(_forced_workers(count > 0))
                runtime = resolve_runtime("cpu", count)
                batches = Batches(ds, ds.train, np.arange(len(ds.train)), ds.train.leaf, runtime)
                rates = []
                for p in range(passes):
                    start = time.perf_counter()
                    seen = sum(len(y) for _, y in batches.iterate(64, train=True, seed=p))
                    rates.append(seen / (time.perf_counter() - start))
            warm = statistics.mean(rates[1:]) if passes > 1 else None
            rows.append((size, path, rates[0], warm))
    return rows


@contextlib.contextmanager
def _forced_workers(on: bool):
    """With `on`, every set goes through the worker pool (trainables.decode's threshold at 0)."""
    try:
        import trainables.decode as decode
    except ImportError:  # before trainables.decode: every set went through workers
        yield
        return
    saved = decode.IN_PROCESS_MAX_FILES
    if on:
        decode.IN_PROCESS_MAX_FILES = 0
    decode.DECODED.clear()  # a first pass is a cold one
    try:
        yield
    finally:
        decode.IN_PROCESS_MAX_FILES = saved


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--images", type=int, default=60, help="training JPEGs (plus 16 test)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per trial")
    parser.add_argument(
        "--workers", type=int, default=min(8, os.cpu_count() or 1), help="num_workers of the trials"
    )
    parser.add_argument(
        "--loader-sizes", default="60,512", help="set sizes for the loader throughput ('' skips)"
    )
    parser.add_argument("--passes", type=int, default=3, help="passes per loader measurement")
    parser.add_argument("--profile", action="store_true", help="pyinstrument of the files pack")
    parser.add_argument(
        "--in-process-max",
        type=int,
        default=None,
        help="trainables.decode.IN_PROCESS_MAX_FILES for the pack (0: every set through workers)",
    )
    args = parser.parse_args(argv)
    if args.in_process_max is not None:
        import trainables.decode as decode

        decode.IN_PROCESS_MAX_FILES = args.in_process_max
    print(
        f"{args.trials} trials, {args.images} JPEGs 320x240 -> {args.image_size} px, "
        f"{args.backbone}, {args.epochs} pretrain epoch(s) + linear probe, "
        f"torch threads {args.threads}, {args.workers} workers, load average {load_average()}",
        flush=True,
    )
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench_image_trials_") as tmp:
        root = Path(tmp)
        write_imagefolder(root / "set", args.images, (320, 240), args.image_size)
        pack = bench_pack(root / "set", args)
        print(f"{'trial':>5} {'files s':>8} {'preloaded s':>11} {'fixed s':>8}")
        fixed = []
        for i, (f, m) in enumerate(zip(pack["files"], pack["preloaded"], strict=True)):
            fixed.append(f - m)
            print(f"{i:>5} {f:>8.2f} {m:>11.2f} {f - m:>8.2f}")
        figures["fixed_s"] = statistics.median(fixed)
        figures["files_s"] = statistics.median(pack["files"])
        figures["preloaded_s"] = statistics.median(pack["preloaded"])
        print(
            f"per trial (medians): wall {figures['files_s']:.2f} s on files, "
            f"compute {figures['preloaded_s']:.2f} s (preloaded)"
        )
        print(
            f"fixed cost per trial: {figures['fixed_s']:.2f} s median "
            f"(first trial {fixed[0]:.2f} s, mean {statistics.mean(fixed):.2f} s); "
            f"target <= {TARGET_FIXED_S:.0f} s; load average {load_average()}"
        )
        starts = pack["worker_starts"]
        figures["worker_starts"] = starts
        print(
            "DataLoader worker processes started by the pack: "
            + ("not counted (no trainables.decode)" if starts is None else str(starts))
        )
        if pack["profile"]:
            print(pack["profile"])
        sizes = [int(s) for s in args.loader_sizes.split(",") if s]
        for size, path, first, warm in loader_rates(root, sizes, args.workers, args.passes):
            warm_text = "n/a" if warm is None else f"{warm:.0f}"
            print(
                f"loader {size:>5} JPEGs, {path:>10}: first pass {first:>6.0f} images/s, "
                f"warm passes {warm_text:>6} images/s (320x240 -> 224, train transform)"
            )
            figures[f"loader_{size}_{'in_process' if path == 'in process' else 'workers'}"] = (
                first,
                warm,
            )
    figures["load_average"] = load_average()
    print(f"load average {figures['load_average']}")
    return figures


if __name__ == "__main__":
    main()
