"""Training throughput of the trial's loops: examples/s for twolayer and resnet18 on synthetic data.

    python bench/bench_trial.py                 # CPU, and GPU when present
    python bench/bench_trial.py --epochs 3 --train-per-leaf 200

Measures whole trials (pretrain + linear probe) through `trainables.train`, so
it includes what a sweep pays per trial: data slicing, checkpoint-free
epochs, validation and evaluation passes. Prints one line per
(device, backbone): pretraining examples/s and seconds per trial.

`--loader` also measures the image-file path (JPEG decode + random resized
crop 224; with 0 workers in process, else through trainables.decode's worker
pool, pinned memory on GPU), the rate a GPU trial on inat2021 / imagefolder
can at most consume. bench/bench_image_trials.py measures the fixed cost of
small image-file trials.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from trainables import train
from trainables.trial import load_dataset


def bench(backbone: str, device: str, args: argparse.Namespace, hierarchy_path: str) -> dict:
    options = {"train_per_leaf": args.train_per_leaf, "test_per_leaf": 10}
    cfg = {
        "dataset": "synthetic",
        "dataset_options": options,
        "target": "superclass",
        "hierarchy_path": hierarchy_path,
        "level": "subclass",
        "backbone": backbone,
        "seed": 0,
        "pretrain": {
            "epochs": args.epochs,
            "lr": 0.05 if backbone != "twolayer" else 0.2,
            "batch_size": args.batch_size,
        },
        "finetune": {"mode": "linear", "epochs": 2, "batch_size": args.batch_size},
        "device": device,
        "compile": args.compile and device == "cuda",
    }
    if device == "cpu" and args.threads:
        cfg["num_threads"] = args.threads
    warm = {**cfg, "pretrain": {**cfg["pretrain"], "epochs": 1}}
    train(warm, None)  # warm-up: allocator, cudnn autotune, compile
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = train(cfg, None)
    wall = time.perf_counter() - start
    seen = result["num_train"] * args.epochs
    return {
        "examples_per_s": seen / max(result["time/pretrain_s"], 1e-9),
        "trial_s": wall,
        "num_train": result["num_train"],
    }


def bench_loader(num_images: int, workers: list[int]) -> None:
    """Images/s through the trial's file path for generated 320x240 JPEGs."""
    import numpy as np
    from PIL import Image

    from trainables import create_dataset
    from trainables.engine import Batches, resolve_runtime

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(num_images):
            folder = root / "train" / f"c{i % 8}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)
        (root / "h.csv").write_text("group,class\n" + "".join(f"g{c % 2},c{c}\n" for c in range(8)))
        ds = create_dataset("imagefolder", root=str(root), hierarchy=str(root / "h.csv"))
        for n in workers:
            runtime = resolve_runtime("auto", n)
            batches = Batches(ds, ds.train, np.arange(len(ds.train)), ds.train.leaf, runtime)
            start = time.perf_counter()
            seen = sum(len(y) for _, y in batches.iterate(64, train=True, seed=0))
            rate = seen / (time.perf_counter() - start)
            print(f"{'loader':>24} {n:>2} workers: {rate:>10.0f} images/s (JPEG 320x240 -> 224)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-per-leaf", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch default)"
    )
    parser.add_argument("--backbones", default="twolayer,resnet18")
    parser.add_argument("--compile", action="store_true", help="torch.compile on GPU")
    parser.add_argument("--loader", action="store_true", help="also time the image-file loader")
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "h.json")
        load_dataset(
            "synthetic", {"train_per_leaf": args.train_per_leaf, "test_per_leaf": 10}
        ).hierarchy.save(path)
        print(
            f"synthetic 1x32x32, {args.train_per_leaf} per leaf, batch {args.batch_size}, "
            f"{args.epochs} pretrain epochs, torch threads {torch.get_num_threads()}"
        )
        for device in devices:
            name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
            for backbone in args.backbones.split(","):
                r = bench(backbone, device, args, path)
                print(
                    f"{name:>24} {backbone:>10}: {r['examples_per_s']:>10.0f} examples/s pretraining, "
                    f"{r['trial_s']:.2f} s per trial ({int(r['num_train'])} train examples)"
                )
    if args.loader:
        bench_loader(512, sorted({0, min(8, os.cpu_count() or 1)}))


if __name__ == "__main__":
    main()
