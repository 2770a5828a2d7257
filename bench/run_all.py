"""Every performance figure in one table, each with its target: sweep, scale, anchor, trials, images, analysis, GPU.

    python bench/run_all.py                      # everything (quickstart sweep ~3 min on 2 cores)
    python bench/run_all.py --skip-sweep         # skip the quickstart sweep
    python bench/run_all.py --skip-sweep --skip-analysis --trial-epochs 1   # a quick look

Parts, each from its own bench module (run any alone for more detail):

- sweep (bench/bench_sweep.py): the quickstart's wall time, its overhead ratio
  (wall / (sum of trial times / parallel slots); the limit is 1.0, the target
  <= 1.15), and pretrainings executed against pretrained trials;
- scale (bench/bench_scale.py): a no-op trainable swept over `--scale-trials`
  trials: trials/s end to end (target >= 200), driver CPU per trial, peak
  memory (target < 2 GB at 100,000); `granularity validate` of a
  `--validate-trials` plan (target < 10 s at 100,000);
- anchor (bench/bench_anchor.py): the same trials as plain Ray Tune (one Tune
  trial per config, MLflowLoggerCallback, no shared pretraining) against
  `granularity run`, side by side with their ratio;
- trials (bench/bench_trial.py): pretraining examples/s of twolayer and
  resnet18 on CPU, through `trainables.train`;
- images (bench/bench_image_trials.py): the fixed cost per small image-file
  trial in a pack (files minus the same trial on preloaded tensors; target
  <= 2 s on CPU) and the JPEG loader's images/s in process and via workers;
- analysis (bench/bench_analysis.py): load (sql reader) + fit (all
  estimators) of `--analysis-runs` runs (default 100,000; target < 10 s);
- GPU (bench/bench_gpu.py): with CUDA here, the trainable vs plain timm loop
  and the JPEG loader on resnet50 / vit_base_patch16_224; without, a line
  pointing at bench/gpu.sh.

The sub-benches' own output streams by as progress; the table comes last.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

Row = tuple[str, str, str]  # (figure, value, note)
ANALYSIS_TARGET_RUNS = 100_000  # target: load + fit of 100,000 runs in under 10 s


class _Tee(io.TextIOBase):
    """Writes to the terminal and keeps a copy (the sub-benches print their figures)."""

    def __init__(self, stream) -> None:
        self.stream, self.kept = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.stream.write(text)
        self.stream.flush()
        return self.kept.write(text)


def run_printing(main: Callable[..., object], argv: list[str]) -> str:
    """Call a bench's `main` with `argv` (as its argument when it takes one, else as sys.argv),
    echoing and returning what it printed; restores the cwd and sys.argv."""
    cwd, saved_argv = os.getcwd(), sys.argv
    sys.argv = [getattr(main, "__module__", "bench"), *argv]
    tee = _Tee(sys.stdout)
    try:
        with contextlib.redirect_stdout(tee):
            main(argv) if inspect.signature(main).parameters else main()
    finally:
        os.chdir(cwd)
        sys.argv = saved_argv
    return tee.kept.getvalue()


def number(pattern: str, text: str) -> float | None:
    """The first number captured by `pattern` in `text` (None when the line is missing)."""
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else None


def fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}{unit}"


# ---- parts --------------------------------------------------------------------------
def sweep_rows(spec: str | None, overrides: list[str]) -> list[Row]:
    """The quickstart (or `spec`) from scratch via bench_sweep.main; parsed from its printout."""
    import bench_sweep

    argv = ([spec] if spec else []) + overrides
    text = run_printing(bench_sweep.main, argv)
    wall = number(r"^wall time:\s+([\d.]+) s", text)
    ratio = number(r"^overhead ratio:\s+([\d.]+)", text)
    executed = number(r"^pretrainings executed:\s+(\d+)", text)
    pretrained = number(r"of (\d+) pretrained trials", text)
    distinct = number(r"\((\d+) distinct pretrain keys\)", text)
    startup = number(r"^  start to first trial:\s+([\d.]+) s", text)
    busy = number(r"^  trials:\s+[\d.]+ s\s+\(slots busy (\d+)%\)", text)
    waited = number(r"\((\d+)% of their wall time", text)
    sharing = number(r"^shared pretraining:\s+([+-]?[\d.]+)%", text)
    name = Path(spec).stem if spec else "quickstart"
    return [
        (f"{name} wall time", fmt(wall, " s"), "target <= 180 s on 2 cores"),
        (
            f"{name} overhead ratio",
            fmt(ratio, "", 2),
            "wall / (trial time / slots); target <= 1.15",
        ),
        (
            f"{name} start to first trial",
            fmt(startup, " s"),
            f"then slots busy {fmt(busy, '%', 0)}; trials waited for a core "
            f"{fmt(waited, '%', 0)} of their time",
        ),
        (
            "pretrainings executed / pretrained trials",
            f"{fmt(executed, '', 0)} / {fmt(pretrained, '', 0)}",
            f"{fmt(distinct, '', 0)} distinct pretrain keys",
        ),
        (
            "shared pretraining, compute beyond once each",
            fmt(sharing, "%"),
            "target within 10% of pretrainings + finetunes run once each",
        ),
    ]


def scale_rows(trials: int, validate_trials: int) -> list[Row]:
    """The no-op sweep (orchestration alone) and `validate` of a large plan, via bench_scale."""
    import bench_scale

    rows: list[Row] = []
    if trials:
        text = run_printing(bench_scale.main, ["--trials", str(trials)])
        n = number(r"^no-op sweep: (\d+) trials", text)
        rows += [
            (
                f"no-op sweep throughput ({fmt(n, '', 0)} trials)",
                fmt(number(r"^throughput:\s+([\d.]+)", text), " trials/s"),
                "target >= 200 trials/s end to end on 2 cores",
            ),
            (
                "driver CPU per trial",
                fmt(number(r"^driver CPU per trial:\s+([\d.]+)", text), " ms", 2),
                "was ~40-55 ms earlier",
            ),
            (
                "driver peak memory",
                fmt(number(r"^driver peak memory:\s+([\d.]+)", text), " MB", 0),
                "target < 2 GB at 100,000 trials",
            ),
        ]
    if validate_trials:
        text = run_printing(
            bench_scale.main, ["--trials", "0", "--validate-trials", str(validate_trials)]
        )
        n = number(r"^validate (\d+) trials", text)
        rows.append(
            (
                f"granularity validate ({fmt(n, '', 0)} trials)",
                fmt(number(r": ([\d.]+) s$", text), " s"),
                "target < 10 s at 100,000 trials",
            )
        )
        rows.append(
            (
                "validate peak memory (the plan alone)",
                fmt(number(r"^validate peak memory:\s+([\d.]+)", text), " MB", 0),
                "a lower bound for the driver at that size",
            )
        )
    return rows


def anchor_rows(argv: list[str]) -> list[Row]:
    """Plain Ray Tune (a Tune trial per config, MLflowLoggerCallback) against `granularity run`."""
    import bench_anchor

    figures = bench_anchor.main(argv)
    what = " ".join(argv) or "quickstart " + " ".join(bench_anchor.DEFAULT_OVERRIDES)
    return [
        (f"anchor: granularity run ({figures['trials']} trials)", fmt(figures["ours"], " s"), what),
        (
            "anchor: plain Ray Tune, same trials",
            fmt(figures["anchor"], " s"),
            "MLflowLoggerCallback",
        ),
        (
            "anchor: Ray Tune / granularity",
            fmt(figures["ratio"], "x"),
            "was 16x at seeds=2",
        ),
    ]


def trial_rows(epochs: int, train_per_leaf: int, backbones: list[str]) -> list[Row]:
    """Pretraining examples/s on CPU per backbone, via bench_trial.bench (whole trials)."""
    import bench_trial

    from trainables.trial import load_dataset

    args = argparse.Namespace(
        epochs=epochs, train_per_leaf=train_per_leaf, batch_size=256, threads=0, compile=False
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "h.json")
        options = {"train_per_leaf": train_per_leaf, "test_per_leaf": 10}
        load_dataset("synthetic", options).hierarchy.save(path)
        for backbone in backbones:
            result = bench_trial.bench(backbone, "cpu", args, path)
            print(f"trial {backbone} cpu: {result}", flush=True)
            rows.append(
                (
                    f"trial throughput {backbone} (cpu)",
                    fmt(result["examples_per_s"], " examples/s", 0),
                    f"pretraining, synthetic 1x32x32, {int(result['num_train'])} examples, "
                    f"{result['trial_s']:.1f} s per trial",
                )
            )
    return rows


def image_trial_rows(argv: list[str]) -> list[Row]:
    """Fixed cost per small image-file trial and the JPEG loader's rate, via bench_image_trials."""
    import bench_image_trials

    figures = bench_image_trials.main(argv)
    rows = [
        (
            "image-file trial fixed cost",
            fmt(figures["fixed_s"], " s", 2),
            f"median, files minus preloaded; {figures['files_s']:.2f} s per trial on files; "
            f"target <= {bench_image_trials.TARGET_FIXED_S:.0f} s on CPU "
            f"(load {figures['load_average']})",
        )
    ]
    for key, rates in figures.items():
        if key.startswith("loader_"):
            (first, warm), (_, size, path) = rates, key.split("_", 2)
            rows.append(
                (
                    f"image loader {size} JPEGs, {path.replace('_', ' ')}",
                    fmt(warm, " images/s", 0),
                    f"warm passes (first {fmt(first, '', 0)}); target: not below before",
                )
            )
    return rows


def analysis_rows(runs: int) -> list[Row]:
    """Load + fit time of `runs` trial runs, via bench_analysis.main (search reader skipped)."""
    import bench_analysis

    text = run_printing(bench_analysis.main, ["--runs", str(runs), "--skip-search"])
    load = number(r"^load\s+\d+ runs, sql reader:\s+([\d.]+) s", text)
    fit = number(r"^analyse \(all estimators\):\s+([\d.]+) s", text)
    total = load + fit if load is not None and fit is not None else None
    target = "target < 10 s at 100,000 runs"
    if runs == ANALYSIS_TARGET_RUNS and total is not None:
        target += ": met" if total < 10 else ": missed"
    elif runs != ANALYSIS_TARGET_RUNS:
        target += " (--analysis-runs 100000 to check it)"
    return [
        (f"analysis load ({runs:,} runs, sql)", fmt(load, " s", 2), ""),
        ("analysis fit (all estimators)", fmt(fit, " s", 2), ""),
        ("analysis load + fit", fmt(total, " s", 2), f"{runs:,} runs; {target}"),
    ]


def gpu_rows(compile_: bool) -> list[Row]:
    """With CUDA: bench_gpu's measurement and verdicts. Without: where the GPU script is."""
    import torch

    if not torch.cuda.is_available():
        return [("GPU throughput", "no CUDA here", "run `bash bench/gpu.sh` on a GPU machine")]
    import bench_gpu

    rows = bench_gpu.measure(bench_gpu.gpu_setup(compile=compile_))
    table = [
        (f"GPU {r.model} {r.path}", fmt(r.images_per_s, " images/s", 0), f"batch {r.batch_size}")
        for r in rows
    ]
    verdicts = bench_gpu.summarize(rows)[1 + len(rows) :]
    return table + [("GPU verdict", "", line) for line in verdicts]


# ---- entry point ----------------------------------------------------------------------
def print_table(rows: list[Row]) -> None:
    width = max(len(f) for f, _, _ in rows)
    vwidth = max(len(v) for _, v, _ in rows)
    print(f"\n{'figure':<{width}}  {'value':>{vwidth}}  note")
    for figure, value, note in rows:
        print(f"{figure:<{width}}  {value:>{vwidth}}  {note}".rstrip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-sweep", action="store_true", help="skip the quickstart sweep")
    parser.add_argument("--skip-trials", action="store_true", help="skip the CPU trial throughput")
    parser.add_argument("--skip-analysis", action="store_true", help="skip the analysis figures")
    parser.add_argument("--skip-gpu", action="store_true", help="skip the GPU figures")
    parser.add_argument("--spec", default=None, help="sweep spec (default sweeps/quickstart.yaml)")
    parser.add_argument("--override", action="append", default=[], help="dotted spec override")
    parser.add_argument("--trial-epochs", type=int, default=2)
    parser.add_argument("--train-per-leaf", type=int, default=100)
    parser.add_argument("--backbones", default="twolayer,resnet18")
    parser.add_argument(
        "--analysis-runs",
        "--runs",
        type=int,
        default=ANALYSIS_TARGET_RUNS,
        help="trial runs the analysis part loads and fits (default: the target's 100,000; "
        "writing the store takes ~1 min)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile in the GPU part")
    parser.add_argument("--skip-scale", action="store_true", help="skip the no-op sweep + validate")
    parser.add_argument(
        "--skip-images", action="store_true", help="skip the image-file trial fixed cost"
    )
    parser.add_argument("--images", default="", help="bench_image_trials.py arguments")
    parser.add_argument("--skip-anchor", action="store_true", help="skip the plain Ray Tune anchor")
    parser.add_argument("--scale-trials", type=int, default=10_000, help="no-op sweep size")
    parser.add_argument("--validate-trials", type=int, default=100_000)
    parser.add_argument(
        "--anchor", default="", help="bench_anchor.py arguments (default: its quickstart subset)"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    parts: list[tuple[str, bool, Callable[[], list[Row]]]] = [
        ("sweep", args.skip_sweep, lambda: sweep_rows(args.spec, args.override)),
        (
            "trials",
            args.skip_trials,
            lambda: trial_rows(args.trial_epochs, args.train_per_leaf, args.backbones.split(",")),
        ),
        ("images", args.skip_images, lambda: image_trial_rows(args.images.split())),
        ("scale", args.skip_scale, lambda: scale_rows(args.scale_trials, args.validate_trials)),
        ("anchor", args.skip_anchor, lambda: anchor_rows(args.anchor.split())),
        ("analysis", args.skip_analysis, lambda: analysis_rows(args.analysis_runs)),
        ("gpu", args.skip_gpu, lambda: gpu_rows(args.compile)),
    ]
    rows: list[Row] = []
    failed = False
    for name, skip, run in parts:
        if skip:
            rows.append((f"{name}", "skipped", f"(--skip-{name})"))
            continue
        print(f"==== {name}", flush=True)
        start = time.perf_counter()
        try:
            rows.extend(run())
        except Exception as err:  # one broken part must not hide the others' figures
            failed = True
            rows.append((f"{name}", "FAILED", f"{type(err).__name__}: {err}"[:160]))
        print(f"==== {name}: {time.perf_counter() - start:.1f} s", flush=True)
    print_table(rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
