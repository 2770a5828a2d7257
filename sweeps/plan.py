"""Expand a validated spec into fully resolved trials with their keys.

One trial = one cell (hierarchy arm, level, data fraction, backbone) x one
replicate seed, x the optional crossed factors (`factors.finetune_modes`:
the finetuning protocol from one shared pretraining; `factors.dataset_options`:
each value its own data; the scratch arm is not crossed with finetune modes,
it has no finetuning). Derived arms move whole classes of their `leaf_level`
(default: the dataset's `leaf_level`, else its leaves). Its config is the
plain dict of docs/ARCHITECTURE.md that `trainables.train` takes; its
`trial_key` and `pretrain_key` are in `sweeps.trials` (with the Trial and Plan objects); the
arms' hierarchies come from `sweeps.arms`.

Longer than 400 lines because the checks of datasets, backbones and crossed factors read the
same resolved spec as the expansion they guard.
"""

from __future__ import annotations

import itertools
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from contracts import SCRATCH, Cell, arm
from sweeps.arms import ArmHierarchies, HierarchyBuilder, HierarchyFiles
from sweeps.code_version import code_version
from sweeps.spec import Spec, SpecError, arm_labels
from sweeps.trials import Plan, Trial, pretrain_key_of, trial_key_of


def load_dataset(spec: Spec, crossed: Mapping[str, Any] | None = None) -> Any:
    """The spec's dataset (its manual hierarchy and class embeddings, for the plan).

    A registry name goes to `trainables.create_dataset(name, **options)`; a
    `module:function` name (for a custom trainable) calls that function with the options.
    `crossed`: values of the crossed `factors.dataset_options` (None: the first of each).
    """
    check_dataset_options(spec)
    if crossed is None:
        crossed = {k: values[0] for k, values in spec.factors.dataset_options.items()}
    name, options = spec.dataset.name, {**spec.dataset.options, **crossed}
    try:
        if ":" in name:
            import importlib

            module_name, _, attr = name.partition(":")
            return getattr(importlib.import_module(module_name), attr)(**options)
        from trainables import create_dataset

        return create_dataset(name, **options)
    except FileNotFoundError as err:  # a missing data root (or a file under it)
        where = next(
            (f"dataset.options.{k}" for k in ("root", "path", "data_root") if k in options),
            "dataset.options",
        )
        raise SpecError([f"{where}: {err}"]) from None
    except (RuntimeError, TypeError, ImportError, AttributeError, ValueError, OSError) as err:
        raise SpecError([f"dataset: {name!r} with options {options}: {err}"]) from None


def check_backbones(spec: Spec) -> None:
    """Unknown backbone names and bad backbone options are spec errors, found before anything runs.

    Only for the project's own trainable (a custom trainable has its own names).
    """
    from sweeps.spec import DEFAULT_TRAINABLE

    if spec.trainable != DEFAULT_TRAINABLE:
        return
    from trainables import list_backbones, validate_backbone_options

    known = set(list_backbones())
    problems = []
    for i, backbone in enumerate(spec.factors.backbones):
        if backbone.name not in known:
            import timm

            if not timm.is_model(backbone.name):
                problems.append(
                    f"factors.backbones[{i}].name: unknown backbone {backbone.name!r}; known: "
                    f"{', '.join(sorted(known))} or any timm model name"
                )
                continue
        try:  # types and ranges, before anything is built
            validate_backbone_options(backbone.name, backbone.options)
        except ValueError as err:
            problems.append(f"factors.backbones[{i}].options: {err}")
    if problems:
        raise SpecError(problems)


def check_dataset_options(spec: Spec) -> None:
    """Dataset options the dataset does not take, or of a bad type or range: spec errors.

    Found before anything is built or runs: every combination of the crossed
    options goes through the dataset's own check (`validate_dataset_options`).
    """
    if ":" in spec.dataset.name:
        return
    _check_crossed_names(spec)
    from trainables import validate_dataset_options

    crossed = spec.factors.dataset_options
    for combo in option_combinations(spec):
        try:
            validate_dataset_options(spec.dataset.name, {**spec.dataset.options, **combo})
        except ValueError as err:
            # Name the field the bad option was given in (crossed, or fixed).
            named = [k for k in crossed if re.search(rf"\b{re.escape(k)}\b", str(err))]
            where = f"factors.dataset_options.{named[0]}" if named else "dataset.options"
            raise SpecError([f"{where}: {err}"]) from None
        except RuntimeError as err:
            raise SpecError([f"dataset.name: {err}"]) from None


def _check_crossed_names(spec: Spec) -> None:
    """A crossed dataset option the dataset does not take is a spec error."""
    crossed = spec.factors.dataset_options
    if not crossed:
        return
    from trainables.data import dataset_options

    try:
        accepted = dataset_options(spec.dataset.name)
    except RuntimeError as err:
        raise SpecError([f"dataset.name: {err}"]) from None
    if accepted is None:
        return
    problems = [
        f"factors.dataset_options.{name}: dataset {spec.dataset.name!r} has no option "
        f"{name!r}; accepted: {', '.join(accepted)}"
        for name in crossed
        if name not in accepted
    ]
    if problems:
        raise SpecError(problems)


def option_combinations(spec: Spec) -> list[dict[str, Any]]:
    """Every combination of the crossed dataset options' values ([{}] when none is crossed)."""
    names = list(spec.factors.dataset_options)
    values = [spec.factors.dataset_options[n] for n in names]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]


def leaf_levels(spec: Spec, dataset: Any) -> dict[int, str | None]:
    """Each derived arm's leaf level (by arm index): its own, else the dataset's; checked.

    None: the arm works on the leaves (the dataset declares no coherent level).
    """
    manual = dataset.hierarchy
    default = getattr(dataset, "leaf_level", None)
    out: dict[int, str | None] = {}
    problems = []
    for i, arm_spec in enumerate(spec.factors.hierarchies):
        if "leaf_level" not in arm(arm_spec.kind).inputs:
            continue
        chosen = arm_spec.leaf_level if arm_spec.leaf_level is not None else default
        if chosen is None:
            out[i] = None
            continue
        try:
            out[i] = manual.level_names[manual.level_index(chosen)]
        except ValueError as err:
            problems.append(f"factors.hierarchies[{i}].leaf_level: {err}")
    if problems:
        raise SpecError(problems)
    return out


def _level_names(spec: Spec, manual: Any, target_index: int) -> list[str]:
    """Level names selected by `factors.levels`, resolved on the manual hierarchy."""
    levels = spec.factors.levels
    names = list(manual.level_names)
    if levels == "all":
        return names
    if levels == "finer":
        return names[target_index + 1 :]
    if levels == "target_and_finer":
        return names[target_index:]
    problems, chosen = [], []
    for i, item in enumerate(levels):
        try:
            name = names[manual.level_index(item)]
        except ValueError as err:
            problems.append(f"factors.levels[{i}]: {err}")
            continue
        if name in chosen:
            problems.append(
                f"factors.levels[{i}]: {item!r} repeats level {name!r} "
                f"(listed as {levels[chosen.index(name)]!r} before)"
            )
        chosen.append(name)
    if problems:
        raise SpecError(problems)
    return chosen


def build_plan(
    spec: Spec,
    *,
    dataset: Any | None = None,
    builder: HierarchyBuilder | None = None,
    tuned: Mapping[Any, Mapping[str, Any]] | None = None,
    write: bool = True,
    storage: Path | None = None,
    on_checked: Callable[[], None] | None = None,
) -> Plan:
    """Expand `spec` into trials.

    Args:
        dataset: the spec's dataset (built with `load_dataset` when None).
        builder: `build_hierarchy(kind, **kwargs)` (hierarchies' registry when None).
        tuned: values chosen by the search: `{"*": {...}}` for every cell or
            `{cell: {...}}` per cell, keys like `pretrain.lr`.
        write: save hierarchies under `<storage>/hierarchies/` (False: plan only).
        storage: the storage directory (the spec's resolved one when None).
        on_checked: called once the spec's backbones, dataset, levels and plan
            size are checked, before the arms' hierarchies are built (the
            driver starts Ray there, while kMeans runs).
    """
    check_backbones(spec)
    check_dataset_options(spec)
    dataset = dataset if dataset is not None else load_dataset(spec)
    storage = storage or spec.resolved_storage_path()
    target_index = _target_index(spec, dataset.hierarchy)
    wanted = _level_names(spec, dataset.hierarchy, target_index)
    check_plan_size(spec, len(wanted))
    check_race(spec, wanted)
    leaf_levels(spec, dataset)
    combos = option_combinations(spec)
    # Each combination of crossed options is its own data (and may have its own leaves).
    datasets = [dataset] + [load_dataset(spec, combo) for combo in combos[1:]]
    if on_checked is not None:
        on_checked()
    files = HierarchyFiles(storage, write)
    trials: list[Trial] = []
    notes: list[str] = []
    for combo, data in zip(combos, datasets, strict=True):
        index = _target_index(spec, data.hierarchy)
        arms = ArmHierarchies(spec, data, index, builder, leaf_levels(spec, data))
        more, said = _expand(spec, arms, files, wanted, index, storage, tuned, combo)
        trials += more
        notes += said
    _refuse_repeats(trials)
    target = dataset.hierarchy.level_names[target_index]
    return Plan(
        spec, trials, files.hierarchies, files.paths, target, storage, list(dict.fromkeys(notes))
    )


def count_trials(spec: Spec, levels: int) -> int:
    """Trials the plan will hold at most (arms lacking a level skip it), counted without expanding."""
    factors = spec.factors
    modes = len(factors.finetune_modes or [None])
    cells = sum(
        len(arm_labels(a)) * (1 if a.kind == SCRATCH else levels * modes)
        for a in factors.hierarchies
    )
    seeds = spec.seeds if isinstance(spec.seeds, int) else len(spec.seeds)
    combos = len(option_combinations(spec))
    return cells * len(factors.backbones) * len(factors.data_fractions) * seeds * combos


def check_plan_size(spec: Spec, levels: int) -> None:
    """SpecError before expanding a plan of more than `spec.max_trials` trials."""
    n = count_trials(spec, levels)
    if n > spec.max_trials:
        seeds = spec.seeds if isinstance(spec.seeds, int) else len(spec.seeds)
        raise SpecError(
            [
                f"the plan holds {n:,} trials (arms x {levels} level(s) x crossed factors x "
                f"{len(spec.factors.backbones)} backbone(s) x {len(spec.factors.data_fractions)} "
                f"fraction(s) x {seeds:,} seed(s)), above the cap of {spec.max_trials:,}; lower a "
                f"factor, or lift the cap with --max-trials {n} (or max_trials: in the spec)"
            ]
        )


def check_race(spec: Spec, levels: Sequence[str]) -> None:
    """SpecError when `best_level` races a group of one level (nothing to choose between)."""
    r = spec.replicates
    if r is not None and "best_level" in r.stop_when and len(levels) < 2:
        raise SpecError(
            [
                f"replicates.stop_when: best_level races the levels of each kind, but the plan "
                f"has one level ({', '.join(levels)}); give factors.levels two or more levels, "
                "or drop best_level"
            ]
        )


def _target_index(spec: Spec, manual: Any) -> int:
    """The target level's index in the manual hierarchy; a spec error when it has none."""
    try:
        return manual.level_index(spec.target)
    except ValueError as err:
        raise SpecError([f"target: {err}"]) from None


def _expand(
    spec: Spec,
    arms: ArmHierarchies,
    files: HierarchyFiles,
    wanted: list[str],
    target_index: int,
    storage: Path,
    tuned: Mapping[Any, Mapping[str, Any]] | None,
    crossed: Mapping[str, Any],
) -> tuple[list[Trial], list[str]]:
    """Cross arms x backbones x data fractions x seeds x levels x finetune modes for one
    combination of crossed dataset options; notes on levels an arm lacks."""
    base = {
        "dataset": spec.dataset.name,
        "dataset_options": {**spec.dataset.options, **crossed},
        "target": arms.manual.level_names[target_index],
        # Dumped once, not per trial (each trial's config is a deep copy: see _finalise).
        "pretrain": spec.pretrain.trial_settings(),
        "finetune": spec.finetune.trial_settings(),
        "device": spec.device,
        "checkpoint_every_s": spec.checkpoint_every_s,
        # Not in the trial key, but in the pretrain key (sweeps/code_version.py).
        "code_version": code_version(spec),
    }
    option_labels = tuple((f"dataset.{k}", v) for k, v in crossed.items())
    modes: list[str | None] = list(spec.factors.finetune_modes or [None])
    bases: dict[str | None, dict[str, Any]] = {
        mode: base if mode is None else {**base, "finetune": {**base["finetune"], "mode": mode}}
        for mode in modes
    }

    def scratch_base(arm_spec: Any) -> dict[str, Any]:
        """The scratch arm's base config: its own `budget`, else the spec's `scratch_budget`."""
        budget = arm_spec.budget or spec.scratch_budget
        if budget == "pretrain":  # absent at the default: old trial keys stay
            return base
        return {**base, "scratch_budget": budget}

    facts: dict[tuple[int, int], tuple[str, Path, str, int]] = {}

    def describe(h: Any, level: int) -> tuple[str, Path, str, int]:
        """(content hash, file, label-function hash, classes) of a hierarchy's level, once each.

        A plan crosses one hierarchy with every fraction, backbone and level;
        hashing it (a JSON dump of the whole tree) per trial cost most of a
        100,000-trial plan's time. Keyed by object: the arms' cache keeps
        each hierarchy alive while the plan is built.
        """
        memo = (id(h), level)
        if memo not in facts:
            digest, path = files.register(h)
            facts[memo] = (digest, path, h.label_function_hash(level), h.num_classes(level))
        return facts[memo]

    trials: list[Trial] = []
    notes: list[str] = []
    seeds = spec.seed_list()
    for arm_index, arm_spec in enumerate(spec.factors.hierarchies):
        ps: list[float | None] = list(arm_spec.p) if arm_spec.p else [None]
        for label, p in zip(arm_labels(arm_spec), ps, strict=True):
            for backbone in spec.factors.backbones:
                for fraction in spec.factors.data_fractions:
                    for seed in seeds:
                        if arm_spec.kind == SCRATCH:
                            levels: list[tuple[int | None, str | None]] = [(None, None)]
                            h = None
                        else:
                            h = arms.get(arm_spec, arm_index, p, seed)
                            levels = [
                                (i, name) for i, name in enumerate(h.level_names) if name in wanted
                            ]
                            missing = [n for n in wanted if n not in h.level_names]
                            if missing and seed == seeds[0]:
                                notes.append(
                                    f"arm {label!r} has no level(s) {missing}; those cells are skipped"
                                )
                        for (level, level_name), mode in itertools.product(
                            levels, [None] if h is None else modes
                        ):
                            variant = option_labels
                            if mode is not None:
                                variant = (("finetune_mode", mode), *option_labels)
                            trials.append(
                                _make_trial(
                                    spec,
                                    scratch_base(arm_spec) if h is None else bases[mode],
                                    label,
                                    arm_spec.kind,
                                    p,
                                    h,
                                    level,
                                    level_name,
                                    fraction,
                                    backbone,
                                    seed,
                                    storage,
                                    tuned,
                                    describe,
                                    arms.manual,
                                    target_index,
                                    variant,
                                )
                            )
    return trials, list(dict.fromkeys(notes))


def _refuse_repeats(trials: list[Trial]) -> None:
    """Two trials with one key would share one run: a spec error."""
    keys = Counter(t.trial_key for t in trials)
    dup = [k for k, n in keys.items() if n > 1]
    if dup:
        raise SpecError(
            [f"factors: {len(dup)} trials repeat (same config twice); remove the repeat"]
        )


def _make_trial(
    spec: Spec,
    base: dict[str, Any],
    label: str,
    kind: str,
    p: float | None,
    h: Any,
    level: int | None,
    level_name: str | None,
    fraction: float,
    backbone: Any,
    seed: int,
    storage: Path,
    tuned: Mapping[Cell | str, Mapping[str, Any]] | None,
    describe: Callable[[Any, int], tuple[str, Path, str, int]],
    manual: Any,
    target_index: int,
    variant: tuple[tuple[str, Any], ...] = (),
) -> Trial:
    if h is not None:
        digest, path, label_fn, num_classes = describe(h, level)
    else:
        digest, path, label_fn = None, None, SCRATCH
        num_classes = manual.num_classes(target_index)
    config: dict[str, Any] = {
        **base,
        "hierarchy": label,
        "hierarchy_path": str(path) if path else None,
        "level": level,
        "level_name": level_name,
        "data_fraction": fraction,
        "backbone": backbone.name,
        "backbone_options": dict(backbone.options),
        "seed": seed,
    }
    values: dict[str, Any] = {}
    # A search tunes per Cell (sweeps/search.py): its values for this trial's cell, over "*"'s.
    for scope in ("*", Cell(label, level_name or SCRATCH, fraction, backbone.name)):
        values.update((tuned or {}).get(scope, {}))
    return _finalise(
        config, values, storage, Trial(config, kind, num_classes, label_fn, digest, p, variant)
    )


def _finalise(
    config: dict[str, Any],
    values: Mapping[str, Any],
    storage: Path,
    trial: Trial,
    role: str = "trial",
) -> Trial:
    config = _copy(config)  # trials share `base`'s dicts; each gets its own
    for dotted, value in values.items():
        stage, _, key = dotted.partition(".")
        config[stage][key] = value
    config["trial_key"] = trial_key_of(config, trial.hierarchy_hash, role)
    config["pretrain_key"] = pretrain_key_of(config, trial.label_fn)
    folder = str(storage)  # str joins: pathlib per trial was a tenth of a large plan's time
    config["checkpoint_dir"] = f"{folder}{os.sep}trials{os.sep}{config['trial_key']}"
    config["pretrain_store"] = f"{folder}{os.sep}pretrained"
    return Trial(
        config,
        trial.arm_kind,
        trial.num_classes,
        trial.label_fn,
        trial.hierarchy_hash,
        trial.p,
        trial.variant,
    )


def _copy(value: Any) -> Any:
    """A deep copy of JSON-like data (dicts, lists, scalars), tuples as lists, as JSON would."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    return value


def with_settings(
    trial: Trial, values: Mapping[str, Any], storage: Path, *, role: str = "trial"
) -> Trial:
    """A copy of `trial` with dotted settings (`pretrain.lr`) replaced and its keys recomputed."""
    return _finalise(trial.config, values, storage, trial, role)
