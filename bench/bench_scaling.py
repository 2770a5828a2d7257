"""Data-parallel scaling of the trainable loop: 1 GPU against all GPUs of the machine.

    python bench/bench_scaling.py               # on a GPU machine (bench/gpu.sh runs it)
    python bench/bench_scaling.py --cpu-smoke   # 1 vs 2 CPU processes (gloo), tiny model

The loop is the trials' own (`trainables.engine.train_epoch` over in-memory
uint8 images, the model from `create_backbone`, `trainables.distributed.wrap`
for DDP); the process group is set up here with torch.multiprocessing, where a
sweep has Ray Train set it up (same NCCL / gloo group, same code after it).
Weak scaling: each GPU takes `per_gpu` images a step, so the global batch is
`per_gpu x world`. Figures are images/s over `steps` steps after `warmup`,
read on rank 0 between device synchronisations (DDP's all-reduce keeps the
ranks in step). Efficiency = rate(N) / (N x rate(1)).

With one GPU there is no multi-GPU figure; the line then gives the one-GPU
rate and the same loop under DDP with a group of one (DDP's own overhead:
gradient buckets, the all-reduce call).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from bench_gpu import NUM_CLASSES, SGD, TimedBatches, in_memory_dataset, progress

from trainables import create_backbone
from trainables.distributed import current_shard, wrap
from trainables.engine import Batches, Runtime, make_optimizer, train_epoch


@dataclass(frozen=True)
class Setup:
    model: str = "resnet50"
    per_gpu: int = 256
    image_size: int = 224
    warmup: int = 5
    steps: int = 15
    cuda: bool = True
    world: int = 0  # 0: every GPU of the machine (2 processes on CPU)


def cpu_smoke_setup(**changes) -> Setup:
    smoke = Setup(
        model="resnet18", per_gpu=4, image_size=32, warmup=1, steps=2, cuda=False, world=2
    )
    return replace(smoke, **changes)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _measure(setup: Setup, device: torch.device, force_ddp: bool) -> float:
    """Images/s of the whole group (this rank's count x world), timed on this rank."""
    shard = current_shard()
    runtime = Runtime(device, 0)
    torch.manual_seed(0)
    model = create_backbone(setup.model, NUM_CLASSES, in_chans=3, input_size=setup.image_size).to(
        device
    )
    if runtime.cuda:
        model = model.to(memory_format=torch.channels_last)
    if shard.parallel:
        step_model = wrap(model, device, shard)
    elif force_ddp:
        step_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if runtime.cuda else None
        )
    else:
        step_model = model
    global_batch = setup.per_gpu * shard.world
    n = global_batch * (setup.warmup + setup.steps + 1)
    generator = torch.Generator(device=device).manual_seed(0)  # the same images on every rank
    size = (n, 3, setup.image_size, setup.image_size)
    images = torch.randint(0, 256, size, dtype=torch.uint8, device=device, generator=generator)
    leaf = np.arange(n) % 100
    dataset = in_memory_dataset(images, leaf)
    batches = Batches(dataset, dataset.train, np.arange(n), leaf, runtime)
    del images  # Batches holds its own copy
    timed = TimedBatches(batches, setup.warmup, setup.warmup + setup.steps, device)
    optimizer = make_optimizer(model.parameters(), SGD)
    train_epoch(
        step_model,
        timed,
        optimizer,
        runtime,
        batch_size=global_batch,
        seed=0,
        where="bench",
        shard=shard,
    )
    return timed.rate * shard.world


def _rank_main(rank: int, world: int, port: int, setup: dict, out: str) -> None:
    import torch.distributed as dist

    s = Setup(**setup)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if s.cuda:
        device = torch.device(f"cuda:{rank}")
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    else:
        device = torch.device("cpu")
        torch.set_num_threads(1)
    dist.init_process_group("nccl" if s.cuda else "gloo", rank=rank, world_size=world)
    try:
        rates = {"plain": _measure(s, device, force_ddp=False)}
        if world == 1:
            rates["ddp"] = _measure(s, device, force_ddp=True)
        if rank == 0:
            Path(out).write_text(json.dumps(rates))
    finally:
        dist.destroy_process_group()


def run_group(setup: Setup, world: int) -> dict[str, float]:
    """Spawn `world` ranks; rank 0's rates ("plain", and "ddp" for a group of one)."""
    import torch.multiprocessing as tmp_mp

    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "rates.json")
        tmp_mp.start_processes(
            _rank_main,
            args=(world, _free_port(), asdict(setup), out),
            nprocs=world,
            join=True,
            start_method="spawn",
        )
        return json.loads(Path(out).read_text())


def scaling_line(
    setup: Setup, one: dict[str, float], many: dict[str, float] | None, world: int
) -> str:
    """The summary line: 1 vs N rates and the efficiency (or the DDP overhead with one GPU)."""
    unit, units = ("GPU", "GPUs") if setup.cuda else ("CPU process", "CPU processes")
    head = f"scaling {setup.model} ({setup.per_gpu} images per {unit} per step): "
    if many is None:
        return (
            head + f"1 {unit} {one['plain']:.0f} img/s; under DDP (group of 1) "
            f"{one['ddp']:.0f} img/s ({one['ddp'] / one['plain']:.2f} of it); "
            f"this machine has 1 {unit}: no multi-{unit} figure"
        )
    efficiency = many["plain"] / (world * one["plain"])
    return (
        head + f"1 {unit} {one['plain']:.0f} img/s, {world} {units} {many['plain']:.0f} img/s, "
        f"speed-up {many['plain'] / one['plain']:.2f}x, efficiency {efficiency:.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="1 vs 2 CPU processes, tiny")
    parser.add_argument("--model", default=None, help="backbone (default resnet50)")
    parser.add_argument("--per-gpu", type=int, default=None, help="images per GPU per step")
    parser.add_argument("--steps", type=int, default=None, help="timed steps")
    args, _ = parser.parse_known_args(argv)  # gpu.sh passes its own flags (--compile) too
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    changes = {
        k: v
        for k, v in {"model": args.model, "per_gpu": args.per_gpu, "steps": args.steps}.items()
        if v is not None
    }
    if args.cpu_smoke:
        setup = cpu_smoke_setup(**changes)
    elif torch.cuda.is_available():
        setup = replace(Setup(**changes), world=torch.cuda.device_count())
    else:
        print("no CUDA device: run with --cpu-smoke here, or bench/gpu.sh on a GPU machine")
        return 2
    world = setup.world
    progress(f"scaling: {setup.model}, {world} {'GPU(s)' if setup.cuda else 'CPU processes'}")
    one = run_group(setup, 1)
    progress(f"scaling: 1 -> {one}")
    many = run_group(setup, world) if world > 1 else None
    if many is not None:
        progress(f"scaling: {world} -> {many}")
    print(scaling_line(setup, one, many, world), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
