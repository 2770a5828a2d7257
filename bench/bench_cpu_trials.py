"""CPU speed of a `test_resnet` glyph trial: the trainable against a plain PyTorch loop, and knobs.

    python bench/bench_cpu_trials.py                      # ~20 min on 2 busy cores
    python bench/bench_cpu_trials.py --quick --check-seeds 0   # a quarter of the data, ~3 min
    python bench/bench_cpu_trials.py --rounds 5           # more rounds where the load drifts

The data: the shipped glyph sweep's (40 radicals x 8 characters x 9 training
fonts, 1 render, 32 px: 2,880 images), pretraining at the `character` level
(320 classes) with the shipped settings (SGD 0.1, momentum 0.9, batch 64).
Prints pretraining examples/s side by side:

- `trainable`: whole trials through `trainables.train` (the pretraining
  stage's time from its `time/pretrain_s`: data slicing, seeded shuffles,
  the finiteness watch and the per-epoch validation pass included);
- `plain`: the same model, data, batch and optimizer in a bare loop
  (forward, loss, backward, step; no validation);
- the plain loop with one knob changed: channels_last, batch size; then,
  measured once, torch threads and torch.compile (steady state; its compile
  time printed apart).

Every configuration runs once per round, in a rotated order, and the table
gives the median over rounds: on shared cores the load moves throughput by 2x
within minutes, so a single pass in a fixed order compares the load, not the
code (a first version of this bench did, and showed the trainable 2.9x
slower than the plain loop; interleaved, they are within 10%).

Then, for the knob that helps the trainable (channels_last on CPU, applied
by patching the trainable's runtime here, since trainables/engine.py only
does it on CUDA), whole trials at several seeds with and without it: speed
and test error per seed, so "faster with results unchanged within noise" is
shown rather than assumed. The machine's load average is printed: on shared
cores the figures move with it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator

import torch
from torch import nn

from trainables import create_dataset, train
from trainables.backbones import create_backbone
from trainables.engine import Runtime


def glyph_options(quick: bool) -> dict:
    """The dataset options of the benchmark (the shipped sweep's, or a quarter of it)."""
    return {
        "radicals": 10 if quick else 40,
        "chars_per_radical": 8,
        "renders_per_font": 1,
        "image_size": 32,
        "embedding": "pixels",
    }


def plain_loop(
    data: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    threads: int,
    channels_last: bool = False,
    compile_model: bool = False,
    seed: int = 0,
) -> tuple[float, float]:
    """(examples/s of the timed epochs, seconds of the untimed first epoch) of a bare loop.

    The first epoch is a warm-up (allocator, oneDNN primitives, compilation)
    and is timed apart.
    """
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = create_backbone("test_resnet", int(labels.max()) + 1, in_chans=1, input_size=32)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_model: Callable[[torch.Tensor], torch.Tensor] = (
        torch.compile(model) if compile_model else model
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x_all = data.float().div_(127.5).sub_(1.0)
    if channels_last:
        x_all = x_all.contiguous(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(seed)

    def epoch() -> None:
        model.train()
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(order), batch_size):
            take = order[start : start + batch_size]
            loss = nn.functional.cross_entropy(step_model(x_all[take]), labels[take])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    t0 = time.perf_counter()
    epoch()
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(epochs):
        epoch()
    return epochs * len(labels) / (time.perf_counter() - t0), warm


@contextlib.contextmanager
def channels_last_on_cpu() -> Iterator[None]:
    """The trainable with channels_last on CPU too (as trainables/engine.py does on CUDA)."""
    original_to_input = Runtime.to_input
    original_create = create_backbone

    def to_input(self: Runtime, x: torch.Tensor) -> torch.Tensor:
        x = original_to_input(self, x)
        return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x

    def create(*args, **kwargs):
        return original_create(*args, **kwargs).to(memory_format=torch.channels_last)

    import trainables.trial as trial_module

    Runtime.to_input = to_input  # type: ignore[method-assign]
    trial_module.create_backbone = create
    try:
        yield
    finally:
        Runtime.to_input = original_to_input  # type: ignore[method-assign]
        trial_module.create_backbone = original_create


def trial_config(args: argparse.Namespace, seed: int, epochs: int) -> dict:
    """A glyph trial as the shipped sweep runs it: pretrain at `character`, probe on `radical`."""
    return {
        "dataset": "glyphs",
        "dataset_options": glyph_options(args.quick),
        "target": "radical",
        "level": "character",
        "hierarchy_path": args.hierarchy_path,
        "backbone": "test_resnet",
        "seed": seed,
        "device": "cpu",
        "num_threads": args.threads,
        "pretrain": {
            "epochs": epochs,
            "lr": 0.1,
            "batch_size": 64,
            "optimizer": "sgd",
            "momentum": 0.9,
            "weight_decay": 1e-4,
        },
        "finetune": {
            "mode": "linear",
            "epochs": 10,
            "lr": 0.05,
            "batch_size": 128,
            "feature_norm": "standardize",
        },
    }


def trainable_rate(result: dict, epochs: int) -> float:
    """Pretraining examples/s of one trial's result."""
    return float(result["num_train"]) * epochs / float(result["time/pretrain_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 radicals, 1 epoch")
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every configuration")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the baseline")
    parser.add_argument(
        "--check-seeds", type=int, default=3, help="seeds of the with/without result check"
    )
    parser.add_argument("--check-epochs", type=int, default=8, help="pretraining epochs there")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="glyphs-bench-") as tmp:
        run(args, tmp)


def run(args: argparse.Namespace, tmp: str) -> None:
    """The benchmark, with the manual hierarchy written under `tmp`."""
    epochs = args.epochs or (1 if args.quick else 2)
    cores = os.cpu_count() or 1
    print(f"# CPU: {cores} cores, load average {os.getloadavg()[0]:.2f}; torch {torch.__version__}")
    ds = create_dataset("glyphs", **glyph_options(args.quick))
    char_level = ds.hierarchy.level_index("character")
    data = ds.train.inputs
    labels = torch.as_tensor(ds.hierarchy.mapping(char_level)[ds.train.leaf])
    args.hierarchy_path = os.path.join(tmp, "manual.json")
    ds.hierarchy.save(args.hierarchy_path)
    print(f"# data: {len(labels)} images 32 px, {int(labels.max()) + 1} classes; {epochs} epochs")

    train(trial_config(args, 0, 1), None)  # warm-up: renders, caches, oneDNN

    def trainable(patched: bool) -> tuple[float, str]:
        with channels_last_on_cpu() if patched else contextlib.nullcontext():
            return trainable_rate(train(trial_config(args, 0, epochs), None), epochs), ""

    def plain(**knobs) -> tuple[float, str]:
        settings = {"epochs": epochs, "batch_size": 64, "threads": args.threads, **knobs}
        rate, warm = plain_loop(data, labels, **settings)
        return rate, f"first epoch {warm:.1f} s"

    # Rounds, each measuring every configuration (in a rotated order): on shared
    # cores the load drifts by 2x within minutes, so only same-round ratios and
    # medians over rounds mean anything.
    configs: list[tuple[str, Callable[[], tuple[float, str]]]] = [
        (f"trainable, {args.threads} thread(s), batch 64", lambda: trainable(False)),
        ("trainable + channels_last (patched)", lambda: trainable(True)),
        (f"plain loop, {args.threads} thread(s), batch 64", lambda: plain()),
        ("plain + channels_last", lambda: plain(channels_last=True)),
        ("plain, batch 32", lambda: plain(batch_size=32)),
        ("plain, batch 128", lambda: plain(batch_size=128)),
        ("plain, batch 256", lambda: plain(batch_size=256)),
        ("plain, batch 128 + channels_last", lambda: plain(batch_size=128, channels_last=True)),
    ]
    rates: dict[str, list[float]] = {label: [] for label, _ in configs}
    notes: dict[str, str] = {}
    for r in range(args.rounds):
        shift = r % len(configs)
        for label, measure in configs[shift:] + configs[:shift]:
            rate, notes[label] = measure()
            rates[label].append(rate)
        print(f"# round {r + 1}/{args.rounds} done, load average {os.getloadavg()[0]:.2f}")
    # Measured once: compilation takes minutes, and 2 threads on 2 busy cores crawls.
    once: list[tuple[str, float, str]] = []
    for threads in sorted({2, cores} - {args.threads}):
        rate, warm = plain_loop(data, labels, epochs=1, batch_size=64, threads=threads)
        once.append((f"plain, {threads} threads (once)", rate, f"first epoch {warm:.1f} s"))
    try:
        rate, warm = plain_loop(
            data, labels, epochs=epochs, batch_size=64, threads=args.threads, compile_model=True
        )
        once.append(("plain + torch.compile (once, steady)", rate, f"compile epoch {warm:.1f} s"))
    except Exception as error:  # inductor needs a C++ compiler: report, do not fail the bench
        once.append(("plain + torch.compile", float("nan"), f"failed: {type(error).__name__}"))
    base = statistics.median(rates[configs[0][0]])
    print(f"\n{'configuration':<42} {'ex/s median':>11} {'min-max':>11} {'vs trainable':>13}  note")
    for label, _ in configs:
        values = rates[label]
        spread = f"{min(values):.0f}-{max(values):.0f}"
        median = statistics.median(values)
        print(f"{label:<42} {median:>11.0f} {spread:>11} {median / base:>12.2f}x  {notes[label]}")
    for label, rate, note in once:
        print(f"{label:<42} {rate:>11.0f} {'':>11} {rate / base:>12.2f}x  {note}")

    if args.check_seeds <= 0:
        return
    print(f"\n# result check: {args.check_seeds} seeds x {args.check_epochs} pretraining epochs")
    header = ("seed", "error (base)", "error (ch_last)", "ex/s base", "ex/s ch_last")
    print("{:>4} {:>13} {:>16} {:>10} {:>13}".format(*header))
    errors: dict[str, list[float]] = {"base": [], "channels_last": []}
    rates: dict[str, list[float]] = {"base": [], "channels_last": []}
    for seed in range(args.check_seeds):
        for name in ("base", "channels_last"):
            patched = (
                channels_last_on_cpu() if name == "channels_last" else contextlib.nullcontext()
            )
            with patched:
                result = train(trial_config(args, seed, args.check_epochs), None)
            errors[name].append(float(result["target_error"]))
            rates[name].append(trainable_rate(result, args.check_epochs))
        print(
            f"{seed:>4} {errors['base'][-1]:>13.4f} {errors['channels_last'][-1]:>16.4f} "
            f"{rates['base'][-1]:>10.0f} {rates['channels_last'][-1]:>13.0f}"
        )
    diffs = [b - a for a, b in zip(errors["base"], errors["channels_last"], strict=True)]
    spread = statistics.stdev(errors["base"]) if len(errors["base"]) > 1 else float("nan")
    print(
        f"mean error {statistics.mean(errors['base']):.4f} (base) vs "
        f"{statistics.mean(errors['channels_last']):.4f} (channels_last); paired difference "
        f"{statistics.mean(diffs):+.4f}, seed-to-seed SD of the base {spread:.4f}; "
        f"speed-up {statistics.mean(rates['channels_last']) / statistics.mean(rates['base']):.2f}x"
    )


if __name__ == "__main__":
    main()
