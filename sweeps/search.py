"""Optuna search for continuous settings (the spec's `search:` block).

Before the crossed trials run, the driver tunes the listed settings
(`pretrain.lr`, `finetune.weight_decay`, ...) on validation error
(`val_error` of the trainable's result): once on a reference cell
(`scope: reference_cell`, every cell then uses the chosen values) or once per
cell (`scope: per_cell`). Optuna asks in batches of `parallel` (default: the
sweep's slots); each batch runs on Ray like any trial (`execute`, so Ray stays
in ray_backend). Search trials are MLflow child runs tagged
`granularity.role=search`; the chosen values are parent-run params
`search.<setting>` (or `search.<cell>.<setting>` per cell). The study lives in
`<storage>/optuna.db`, so a rerun resumes it and then reuses its best values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from contracts import ROLE_SEARCH, SCRATCH, SEARCH_CELL, SEARCH_PARAM_PREFIX, Cell
from sweeps.errors import SweepError
from sweeps.plan import with_settings
from sweeps.spec import SearchSpec, Spec, SpecError
from sweeps.trials import Plan, Trial


def reference_cell(search: SearchSpec, plan: Plan) -> Cell:
    """The cell the reference-scope search tunes (unset fields: the first non-scratch cell's)."""
    ref = search.reference
    candidates = [c for c in plan.cells() if c.hierarchy != SCRATCH] or plan.cells()
    level_name = None
    if ref.level is not None:
        names = [t.config["level_name"] for t in plan.trials if t.config["level_name"]]
        if isinstance(ref.level, int) or str(ref.level).lstrip("-").isdigit():
            by_index = {t.config["level"]: t.config["level_name"] for t in plan.trials}
            level_name = by_index.get(int(ref.level))
        elif ref.level in names:
            level_name = ref.level
        if level_name is None:
            raise SpecError([f"search.reference.level: no trial has level {ref.level!r}"])
    for cell in candidates:
        if (
            (ref.hierarchy is None or cell.hierarchy == ref.hierarchy)
            and (level_name is None or cell.level_name == level_name)
            and (ref.data_fraction is None or cell.data_fraction == ref.data_fraction)
            and (ref.backbone is None or cell.backbone == ref.backbone)
        ):
            return cell
    raise SpecError(
        [
            f"search.reference: no cell matches {ref.model_dump(exclude_none=True)}; cells are "
            f"{[c.key for c in candidates][:10]}"
        ]
    )


def search_cells(spec: Spec, plan: Plan) -> list[Cell]:
    """The cells to tune (one for reference scope)."""
    assert spec.search is not None
    if spec.search.scope == "reference_cell":
        return [reference_cell(spec.search, plan)]
    return plan.cells()


def _base_trial(plan: Plan, cell: Cell, seed: int) -> Trial:
    trials = [t for t in plan.trials if t.cell == cell]
    for trial in trials:
        if trial.config["seed"] == seed:
            return trial
    return trials[0]


def param_name(cell: Cell | None, setting: str) -> str:
    prefix = SEARCH_PARAM_PREFIX
    return f"{prefix}{setting}" if cell is None else f"{prefix}{cell.key}.{setting}"


def tuned_from_params(spec: Spec, plan: Plan, params: dict[str, str]) -> dict[Any, dict[str, Any]]:
    """Rebuild `tuned` for `build_plan` from the parent run's params (for validate/status)."""
    if spec.search is None:
        return {}
    out: dict[Any, dict[str, Any]] = {}
    scopes: Sequence[Cell | None] = (
        [None] if spec.search.scope == "reference_cell" else search_cells(spec, plan)
    )
    for cell in scopes:
        values = {}
        for setting, rng in spec.search.parameters.items():
            text = params.get(param_name(cell, setting))
            if text is not None:
                values[setting] = int(float(text)) if rng.type == "int" else float(text)
        if len(values) == len(spec.search.parameters):
            out["*" if cell is None else cell] = values
    return out


def run_search(
    spec: Spec,
    plan: Plan,
    tracker: Any,
    execute: Callable[[Sequence[Trial], dict[str, dict], str, str | int], Any],
    storage: Path,
) -> dict[Any, dict[str, Any]]:
    """Tune the search block's settings; log and return `tuned` for `build_plan`."""
    import optuna

    search = spec.search
    assert search is not None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = f"sqlite:///{storage / 'optuna.db'}"
    tuned: dict[Any, dict[str, Any]] = {}
    for cell in search_cells(spec, plan):
        base = _base_trial(plan, cell, search.seed)
        study = optuna.create_study(
            study_name=f"{spec.name}:{cell.key}",
            storage=db,
            load_if_exists=True,
            direction="minimize",
            sampler=optuna.samplers.TPESampler(seed=search.seed),
        )
        for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(stale.number, state=optuna.trial.TrialState.FAIL)
        while True:
            done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
            failed = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)))
            remaining = search.n_trials - done
            if remaining <= 0 or failed >= 2 * search.n_trials:
                break
            parallel = search.parallel or getattr(execute, "slots", None) or spec.slots()
            asked = [study.ask() for _ in range(min(parallel, remaining))]
            trials = []
            for optuna_trial in asked:
                values = {
                    name: (
                        optuna_trial.suggest_int(name, int(r.low), int(r.high), log=r.log)
                        if r.type == "int"
                        else optuna_trial.suggest_float(name, r.low, r.high, log=r.log)
                    )
                    for name, r in search.parameters.items()
                }
                trials.append(with_settings(base, values, storage, role=ROLE_SEARCH))
            metas = {
                t.trial_key: t.meta(ROLE_SEARCH, extra_tags={SEARCH_CELL: cell.key}) for t in trials
            }
            unique = list({t.trial_key: t for t in trials}.values())
            ledger = execute(unique, metas, f"{spec.name}-search", 1)
            for optuna_trial, trial in zip(asked, trials, strict=True):
                result = ledger.results.get(trial.trial_key)
                value = None if result is None else result.get(search.metric)
                if value is None or value != value:  # missing or NaN
                    study.tell(optuna_trial, state=optuna.trial.TrialState.FAIL)
                else:
                    study.tell(optuna_trial, value)
        try:
            best = study.best_params
        except ValueError:
            raise SweepError(
                f"search on cell {cell.key} has no successful trial; see the search runs "
                "(tag granularity.role=search) for the failures"
            ) from None
        scope_cell = None if search.scope == "reference_cell" else cell
        tracker.log_parent_params({param_name(scope_cell, k): v for k, v in best.items()})
        tuned["*" if scope_cell is None else cell] = dict(best)
    return tuned
