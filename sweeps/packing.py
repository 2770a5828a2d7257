"""Packing (driver side): split trials into packs, one Ray trial each, pretrain groups together."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _group_cost(trials: Sequence[Any]) -> float:
    """Rough relative cost of a pretrain group: one pretraining plus each finetune."""
    first = trials[0].config
    scale = max(first["data_fraction"], 0.01)
    pretrain = 0.0 if trials[0].is_scratch else _stage_cost(first["pretrain"], scale, 0)
    return pretrain + sum(_stage_cost(t.config["finetune"], scale, 1) for t in trials)


def _stage_cost(settings: dict, scale: float, least: int) -> float:
    """Epochs times the data fraction, or a step budget (the same at every fraction)."""
    if settings.get("steps") is not None:
        return float(settings["steps"])
    return scale * max(settings["epochs"], least)


def make_packs(trials: Sequence[Any], *, slots: int, pack: str | int) -> list[list[Any]]:
    """Split trials into packs (lists run in order by one Ray trial each).

    Trials sharing a `pretrain_key` stay together, so one pretraining serves
    them without two packs racing for it. `pack: N` caps a pack at N trials
    (a bigger pretrain group is split; its first chunk is scheduled first).
    `pack: auto` makes about 4 packs per parallel slot, balanced by estimated
    cost (longest first), which keeps Ray's per-trial launch cost small for
    short trials; for long trials (GPU specs) set `pack: 1`.
    """
    groups: dict[str, list[Any]] = {}
    for trial in trials:
        groups.setdefault(trial.pretrain_key, []).append(trial)
    if not groups:
        return []
    if pack == "auto":
        num_packs = min(len(groups), max(1, slots) * 4)
        bins: list[list[Any]] = [[] for _ in range(num_packs)]
        loads = [0.0] * num_packs
        for group in sorted(groups.values(), key=_group_cost, reverse=True):
            i = loads.index(min(loads))
            bins[i].extend(group)
            loads[i] += _group_cost(group)
        order = sorted(range(num_packs), key=lambda i: -loads[i])
        return [bins[i] for i in order if bins[i]]
    cap = int(pack)
    first_chunks: list[list[Any]] = []
    later_chunks: list[list[Any]] = []
    for group in groups.values():
        chunks = [group[i : i + cap] for i in range(0, len(group), cap)]
        first_chunks.append(chunks[0])
        later_chunks.extend(chunks[1:])
    packs: list[list[Any]] = []
    for chunks in (first_chunks, later_chunks):
        # First fit decreasing, by trial count, within each phase.
        phase: list[list[Any]] = []
        for chunk in sorted(chunks, key=len, reverse=True):
            for bin_ in phase:
                if len(bin_) + len(chunk) <= cap:
                    bin_.extend(chunk)
                    break
            else:
                phase.append(list(chunk))
        packs.extend(phase)
    return packs
