"""A sweep's cost before launch (`granularity validate SPEC --estimate`): probe, then add up.

One short probe per distinct (dataset, backbone, device) of the plan: a trial
of that kind run twice in this process with 2 pretraining and 2 finetuning
epochs at the plan's smallest data fraction, in a temporary folder (nothing of
the sweep is written). In the second run the time between a stage's two epoch
reports is one epoch of that stage, and the rest of its wall time is a trial's
fixed cost (the model, the final evaluation); what the first run took more is
a worker process's first trial of that kind (imports, building the dataset,
which a process keeps for its later trials), paid once per Ray trial.

A trial then costs its fixed cost plus `epochs x epoch time x (its data
fraction / the probe's)` per stage, its pretraining counted only for the first
trial of its pretrain group (the plan knows which trials share one; a scratch
trial trains for `pretrain.epochs` on the target and finetunes nothing, or for
both budgets under `scratch_budget: matched`). A stage with a `steps` budget
costs `steps x (epoch time / the probe's steps per epoch)`, whatever the data
fraction. A full finetuning is probed apart from a linear probe.
Compute is the sum over trials times the devices each holds (`resources.gpu`
when positive, else `resources.cpu`): GPU- or CPU-hours. Wall time packs the
trials as `run` does (`packing.make_packs`) and hands the packs, longest
first, to `spec.slots()` slots as they free, plus the sweep's start (Ray,
MLflow) and each Ray trial's launch and first trial. The model ignores contention between
slots (memory bandwidth, a shared GPU) and an Optuna `search:` block.
"""

from __future__ import annotations

import heapq
import json
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeps.packing import make_packs
from sweeps.spec import Spec
from sweeps.trials import Plan, Trial

PROBE_EPOCHS = 2  # two epoch reports per stage: their gap is one epoch, free of set-up
# A probe of a trial whose stages both run step budgets trains on about this many
# examples: a step costs the same whatever the data size, and two epochs of a large
# set (56,320 renders of the glyph size sweep) timed what the steps never run (a 47-
# minute probe on a busy machine).
PROBE_STEP_EXAMPLES = 4096
# Measured on the quickstart smoke (2 cores): driver start to the first Ray trial
# (Ray, the MLflow store and parent run, the plan) and one Ray trial's launch.
SWEEP_START_S = 12.0
PACK_LAUNCH_S = 1.5


@dataclass(frozen=True)
class Probe:
    """What one probe measured for a (dataset, backbone, device)."""

    kind: str  # "<dataset> / <backbone> / <device>"
    data_fraction: float
    pretrain_epoch_s: float
    finetune_epoch_s: float
    fixed_s: float  # a trial's cost outside its epochs
    first_s: float  # what a process's first trial of this kind costs more (dataset, imports)
    wall_s: float  # the probe's own wall time (both runs)
    num_train: float = 0.0  # the probe's training examples (steps per epoch, for step budgets)


@dataclass(frozen=True)
class Estimate:
    """The predicted cost of the trials still to run."""

    trials: int
    pretrainings: int
    compute_s: float  # device-seconds: trial seconds x devices per trial
    unit: str  # "CPU" or "GPU"
    wall_s: float
    slots: int
    packs: int
    probes: list[Probe]

    def text(self) -> str:
        lines = [
            f"  estimate: {self.trials} trials, {self.pretrainings} pretrainings: "
            f"{self.compute_s / 3600:.2f} {self.unit}-hours; "
            f"wall {_duration(self.wall_s)} on {self.slots} slot(s) ({self.packs} Ray trials)"
        ]
        for p in self.probes:
            lines.append(
                f"    probe {p.kind} (fraction {p.data_fraction:g}, {_duration(p.wall_s)}): "
                f"pretrain epoch {p.pretrain_epoch_s:.3g} s, finetune epoch "
                f"{p.finetune_epoch_s:.3g} s, fixed {p.fixed_s:.3g} s per trial, "
                f"{p.first_s:.3g} s more for a worker's first"
            )
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def probe_kind(trial: Trial) -> str:
    """What a trial's epoch time depends on besides its data fraction and epochs."""
    c = trial.config
    dataset = c["dataset"] + (
        json.dumps(c["dataset_options"], sort_keys=True) if c["dataset_options"] else ""
    )
    backbone = c["backbone"] + (
        json.dumps(c["backbone_options"], sort_keys=True) if c["backbone_options"] else ""
    )
    full = " / full finetuning" if c["finetune"].get("mode") == "full" else ""
    return f"{dataset} / {backbone} / {c['device']}{full}"


def run_probe(
    trial: Trial, hierarchy: Any, trainable: Callable[..., Any], *, threads: int = 1
) -> Probe:
    """Run `trial` shortened to PROBE_EPOCHS per stage twice, each in a temporary folder.

    `threads`: torch's CPU threads when the config does not set them, as in a
    Ray worker (Ray sets OMP_NUM_THREADS to the trial's `resources.cpu`); this
    process's default would oversubscribe a busy machine and time that instead.
    """
    fraction = probe_fraction(trial)
    cold, _, _ = _timed_run(trial, hierarchy, trainable, threads, fraction)  # imports, the dataset
    warm, epoch, num_train = _timed_run(trial, hierarchy, trainable, threads, fraction)
    fixed = warm - sum(e * PROBE_EPOCHS for e in epoch.values())
    return Probe(
        probe_kind(trial),
        fraction,
        epoch["pretrain"],
        epoch["finetune"],
        max(fixed, 0.0),
        max(cold - warm, 0.0),
        cold + warm,
        num_train,
    )


def probe_fraction(trial: Trial) -> float:
    """The data fraction a probe of `trial` trains on: the trial's own, or, when both its stages
    run step budgets on more than PROBE_STEP_EXAMPLES examples, the fraction holding about that
    many (`_stage_seconds` prices a step from the probe's epoch time and its own example count,
    so the fraction cancels out)."""
    c = trial.config
    fraction = float(c["data_fraction"])
    if c["pretrain"].get("steps") is None or c["finetune"].get("steps") is None:
        return fraction
    from trainables.trial import load_dataset  # memoised: the probe's trial reuses it

    try:
        examples = len(load_dataset(c["dataset"], c["dataset_options"]).train) * fraction
    except Exception:  # noqa: BLE001 (a dataset the project cannot build: the trial's trainable may)
        return fraction
    return fraction if examples <= PROBE_STEP_EXAMPLES else fraction * PROBE_STEP_EXAMPLES / examples


def _timed_run(
    trial: Trial,
    hierarchy: Any,
    trainable: Callable[..., Any],
    threads: int,
    fraction: float | None = None,
) -> tuple[float, dict[str, float], float]:
    """(wall time, one epoch's time per stage, training examples) of `trial` with PROBE_EPOCHS
    per stage, at data fraction `fraction` (default: the trial's)."""
    with tempfile.TemporaryDirectory(prefix="granularity-probe-") as tmp:
        config = json.loads(json.dumps(trial.config))
        if fraction is not None:
            config["data_fraction"] = fraction
        for stage in ("pretrain", "finetune"):
            config[stage]["epochs"] = PROBE_EPOCHS
            config[stage].pop("steps", None)  # the probe times epochs, whatever the budget
            config[stage].pop("selection", None)
        config.pop("scratch_budget", None)
        config["checkpoint_dir"] = str(Path(tmp) / "trial")
        config["pretrain_store"] = str(Path(tmp) / "pretrained")
        config["checkpoint_every_s"] = 10**9  # no epoch checkpoints: a sweep's are rarer still
        config["num_threads"] = config.get("num_threads") or threads
        if hierarchy is not None:
            config["hierarchy_path"] = str(Path(tmp) / "hierarchy.json")
            hierarchy.save(config["hierarchy_path"])
        stamps: dict[str, list[float]] = {"pretrain": [], "finetune": []}

        def report(metrics: dict[str, float], step: int) -> None:
            for stage, times in stamps.items():
                if any(name.startswith(f"{stage}/") for name in metrics):
                    times.append(time.perf_counter())

        start = time.perf_counter()
        result = trainable(config, report)
        wall = time.perf_counter() - start
    num_train = float((result or {}).get("num_train", 0.0) or 0.0)
    # A stage that did not report twice (none in this trial) costs nothing per epoch.
    epoch = {s: (t[-1] - t[-2]) if len(t) >= 2 else 0.0 for s, t in stamps.items()}
    return wall, epoch, num_train


def probes_for(
    plan: Plan, trials: Sequence[Trial], trainable: Callable[..., Any], *, threads: int = 1
) -> dict[str, Probe]:
    """One probe per distinct (dataset, backbone, device), on a pretraining trial of that kind
    at the smallest data fraction (the shortest one that times both stages)."""
    chosen: dict[str, Trial] = {}
    for trial in trials:
        kind = probe_kind(trial)
        best = chosen.get(kind)
        rank = (trial.is_scratch, trial.config["data_fraction"])
        if best is None or rank < (best.is_scratch, best.config["data_fraction"]):
            chosen[kind] = trial
    return {
        kind: run_probe(t, plan.hierarchies.get(t.hierarchy_hash), trainable, threads=threads)
        for kind, t in chosen.items()
    }


def trial_seconds(trial: Trial, probe: Probe, *, pretrains: bool) -> float:
    """A trial's predicted wall time on one slot (its pretraining only when `pretrains`)."""
    c = trial.config
    scale = c["data_fraction"] / probe.data_fraction
    pre = _stage_seconds(c["pretrain"], probe.pretrain_epoch_s, scale, probe)
    fin = _stage_seconds(c["finetune"], probe.finetune_epoch_s, scale, probe)
    if trial.is_scratch:  # trains the whole model on the target with the pretrain budget
        matched = c.get("scratch_budget") == "matched"
        # Under `matched` it also trains for the finetuning's budget, at the pretraining's cost.
        extra = _stage_seconds(c["finetune"], probe.pretrain_epoch_s, scale, probe)
        return probe.fixed_s + pre + (extra if matched else 0.0)
    return probe.fixed_s + (pre if pretrains else 0.0) + fin


def _stage_seconds(settings: dict, epoch_s: float, scale: float, probe: Probe) -> float:
    """A stage's seconds: epochs x the epoch time at its fraction, or steps x the step time."""
    if settings.get("steps") is None:
        return int(settings["epochs"]) * epoch_s * scale
    per_epoch = max(1, math.ceil(probe.num_train / int(settings["batch_size"])))
    return int(settings["steps"]) * epoch_s / per_epoch


def estimate(
    spec: Spec,
    plan: Plan,
    trainable: Callable[..., Any],
    *,
    trials: Sequence[Trial] | None = None,
    probes: dict[str, Probe] | None = None,
) -> Estimate:
    """Predict compute and wall time of `trials` (default: the whole plan) as `run` would run them."""
    trials = list(plan.trials if trials is None else trials)
    threads = max(1, int(spec.resources.cpu))
    probes = probes if probes is not None else probes_for(plan, trials, trainable, threads=threads)
    packs = make_packs(trials, slots=spec.slots(), pack=spec.pack)
    pretrained: set[str] = set()
    pack_s: list[float] = []
    for pack in packs:
        total = PACK_LAUNCH_S
        for kind in {probe_kind(t) for t in pack}:
            total += probes[kind].first_s
        for trial in pack:
            first = not trial.is_scratch and trial.pretrain_key not in pretrained
            pretrained.add(trial.pretrain_key)
            total += trial_seconds(trial, probes[probe_kind(trial)], pretrains=first)
        pack_s.append(total)
    gpu = spec.resources.gpu
    devices, unit = (gpu, "GPU") if gpu > 0 else (spec.resources.cpu, "CPU")
    busy = sum(pack_s)
    return Estimate(
        trials=len(trials),
        pretrainings=len({t.pretrain_key for t in trials if not t.is_scratch}),
        compute_s=busy * devices,
        unit=unit,
        wall_s=SWEEP_START_S + makespan(pack_s, spec.slots()),
        slots=spec.slots(),
        packs=len(packs),
        probes=list(probes.values()),
    )


def makespan(durations: Sequence[float], slots: int) -> float:
    """When the last of `durations` ends if each, in order, starts on the first free slot."""
    free = [0.0] * max(1, min(slots, len(durations) or 1))
    for d in durations:
        heapq.heappush(free, heapq.heappop(free) + d)
    return max(free)
