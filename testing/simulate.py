"""Sweep tables with a known truth, and writing them to an MLflow store as the contract says.

Used by the tests (does the analysis find what was planted?) and by
bench/bench_analysis.py (10,000 runs). Nothing here trains a model. The bulk
writer goes through the driver's own (`sweeps.ledger.mlflow_sql.insert_runs`),
so a simulated store has the rows a real one has.
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from contracts import (
    NUM_TRAIN,
    PARENT,
    ROLE,
    ROLE_SWEEP,
    ROLE_TRIAL,
    RUN_NAME,
    SPEC_HASH,
    TAG_PREFIX,
    TRIAL_PARAMS,
)

# Default granularity grid (number of classes per level), log-spaced like a taxonomy.
DEFAULT_NUM_CLASSES = (2, 5, 10, 20, 50, 100, 200, 500)


def u_curve(
    optimum: float = 40.0, curvature: float = 0.01, floor: float = 0.2, size_exponent: float = 0.0
) -> Callable:
    """Mean error ``floor + curvature * (log k - log k*)^2`` as a function of (k, fraction, kind).

    ``log k* = log optimum + size_exponent * log(data_fraction)``: a positive
    exponent plants an optimum that is coarser with less data.
    """

    def curve(num_classes: np.ndarray, data_fraction: float, kind: str) -> np.ndarray:
        log_opt = math.log(optimum) + size_exponent * math.log(data_fraction)
        return floor + curvature * (np.log(num_classes) - log_opt) ** 2

    return curve


def monotone_curve(drop: float = 0.15, floor: float = 0.2, scale: float = 20.0) -> Callable:
    """Mean error falling with log classes and flattening (no U): ``floor + drop * exp(-k/scale)``."""

    def curve(num_classes: np.ndarray, data_fraction: float, kind: str) -> np.ndarray:
        return floor + drop * np.exp(-np.asarray(num_classes, float) / scale)

    return curve


def _key(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


def simulate_sweep(
    *,
    curve: Callable | None = None,
    num_classes: Sequence[int] = DEFAULT_NUM_CLASSES,
    kinds: Mapping[str, float] | None = None,
    alignment: Mapping[str, float] | None = None,
    align_effect: float = 0.0,
    data_fractions: Sequence[float] = (1.0,),
    seeds: int = 5,
    noise: float = 0.01,
    seed_sd: float = 0.01,
    scratch_error: float | None = 0.3,
    num_train_full: int = 10_000,
    target_classes: int = 2,
    backbone: str = "twolayer",
    random_state: int | None = 0,
) -> pd.DataFrame:
    """A tidy trial table (as ``load_runs`` returns) drawn around a known mean curve.

    ``error = curve(k, fraction, kind) + kinds[kind] - align_effect * nmi + seed
    effect + noise``; the seed effect (sd ``seed_sd``) is shared by every arm of a
    seed, as in a paired design. ``alignment[kind]`` is the kind's NMI with the
    target at every level (default 1 - offset); cond_entropy = 1 - nmi and
    purity = (1 + nmi) / 2. The manual hierarchy's level with ``target_classes``
    classes is the target level. ``scratch_error`` adds a ``scratch`` arm (None:
    none). ``target_error_hard`` gets twice the granularity effect, easy half.
    """
    rng = np.random.default_rng(random_state)
    curve = curve or u_curve()
    kinds = dict(kinds or {"manual": 0.0})
    alignment = dict(alignment or {})
    k = np.asarray(num_classes, dtype=float)
    rows = []
    seed_effect = rng.normal(0.0, seed_sd, size=seeds)
    target_level = int(np.argmin(np.abs(k - target_classes)))
    for f in data_fractions:
        num_train = int(round(num_train_full * f))
        for kind, offset in kinds.items():
            nmi = float(alignment.get(kind, max(0.0, 1.0 - 10 * offset)))
            mean = np.asarray(curve(k, f, kind), dtype=float) + offset - align_effect * nmi
            for s in range(seeds):
                err = mean + seed_effect[s] + rng.normal(0.0, noise, size=k.size)
                for lvl, (kc, e) in enumerate(zip(k, err, strict=True)):
                    label_fn = _key(kind, lvl)
                    rows.append(
                        {
                            "hierarchy": kind,
                            "level": lvl,
                            "level_name": "target" if lvl == target_level else f"level{lvl}",
                            "num_classes": kc,
                            "data_fraction": f,
                            "num_train": num_train,
                            "seed": s,
                            "label_fn": label_fn,
                            "pretrain_key": _key(label_fn, f, s, backbone),
                            "target_error": e,
                            "target_error_easy": e
                            - 0.5 * (e - mean[target_level] - seed_effect[s]),
                            "target_error_hard": e + (e - mean[target_level] - seed_effect[s]),
                            "align/nmi": nmi,
                            "align/cond_entropy": 1.0 - nmi,
                            "align/purity": (1.0 + nmi) / 2.0,
                        }
                    )
        if scratch_error is not None:
            for s in range(seeds):
                e = scratch_error + seed_effect[s] + rng.normal(0.0, noise)
                rows.append(
                    {
                        "hierarchy": "scratch",
                        "level": -1,
                        "level_name": "scratch",
                        "num_classes": float(target_classes),
                        "data_fraction": f,
                        "num_train": num_train,
                        "seed": s,
                        "label_fn": "scratch",
                        "pretrain_key": "",
                        "target_error": e,
                        "target_error_easy": e,
                        "target_error_hard": e,
                    }
                )
    df = pd.DataFrame(rows)
    df["dataset"], df["target"], df["backbone"] = "synthetic", "target", backbone
    df["trial_key"] = [
        _key(r.hierarchy, r.level, r.data_fraction, r.seed, i)
        for i, r in enumerate(df.itertuples())
    ]
    return df


# ---------------------------------------------------------------- writing to MLflow
# The trial params a simulated table has columns for (the writer's list), and num_train.
PARAM_COLUMNS = (*TRIAL_PARAMS, NUM_TRAIN)
TAG_COLUMNS = ("trial_key", "pretrain_key", "label_fn")
NON_METRICS = set(PARAM_COLUMNS) | set(TAG_COLUMNS) | {"status", "run_id"}


def _trial_tags(row: Mapping[str, object], parent_id: str, spec_hash: str) -> dict[str, str]:
    """A trial run's tags as the contract has them."""
    tags = {ROLE: ROLE_TRIAL, PARENT: parent_id, SPEC_HASH: spec_hash}
    tags.update({f"{TAG_PREFIX}{c}": str(row[c]) for c in TAG_COLUMNS if c in row})
    return tags


def _metric_values(row: Mapping[str, object], columns: Sequence[str]) -> dict[str, float]:
    """A row's metrics to log; a missing value is left out, and so is a NaN alignment metric."""
    return {
        m: float(row[m])
        for m in columns
        if row[m] is not None
        and not (isinstance(row[m], float) and math.isnan(row[m]) and m.startswith("align/"))
    }


def _param_str(value: object) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _create_parent(
    client, experiment: str, spec_hash: str, artifact_location: str | None
) -> tuple[str, str]:
    exp = client.get_experiment_by_name(experiment)
    experiment_id = (
        exp.experiment_id if exp else client.create_experiment(experiment, artifact_location)
    )
    parent = client.create_run(
        experiment_id,
        tags={ROLE: ROLE_SWEEP, SPEC_HASH: spec_hash, RUN_NAME: experiment},
    )
    return experiment_id, parent.info.run_id


def write_sweep(
    df: pd.DataFrame,
    experiment: str,
    tracking_uri: str,
    *,
    bulk: bool = False,
    spec_hash: str = "simulated",
    artifact_location: str | None = None,
) -> str:
    """Log ``df`` as a sweep: one parent run and one child run per row; returns the parent id.

    ``bulk=False`` goes through ``MlflowClient`` (create_run, log_batch,
    set_terminated), exactly as a sweep would; ``bulk=True`` inserts the same
    rows with a few executemany statements into MLflow's SQL tables (SQL stores
    only; 10,000 runs in seconds). A ``status`` column (default FINISHED) sets
    each run's final status. Columns other than params and tags are metrics.
    ``artifact_location`` is used when the experiment is created (default: MLflow's).
    """
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment_id, parent_id = _create_parent(client, experiment, spec_hash, artifact_location)
    metric_cols = [c for c in df.columns if c not in NON_METRICS]
    params = [c for c in PARAM_COLUMNS if c in df]
    now = int(time.time() * 1000)
    records = df.to_dict("records")
    if not bulk:
        for r in records:
            run = client.create_run(experiment_id, tags=_trial_tags(r, parent_id, spec_hash))
            client.log_batch(
                run.info.run_id,
                metrics=[Metric(m, v, now, 0) for m, v in _metric_values(r, metric_cols).items()],
                params=[Param(p, _param_str(r[p])) for p in params],
            )
            client.set_terminated(run.info.run_id, status=r.get("status", "FINISHED"))
        client.set_terminated(parent_id)
        return parent_id

    from sweeps.ledger.mlflow_sql import NewRun, insert_runs, sql_store

    store = sql_store(client)
    if store is None:
        raise ValueError(f"bulk=True needs a SQL tracking store, not {tracking_uri!r}")
    artifact_root = client.get_experiment(experiment_id).artifact_location
    runs = []
    for i, r in enumerate(records):
        rid = uuid.uuid4().hex
        runs.append(
            NewRun(
                run_id=rid,
                experiment_id=experiment_id,
                name=f"trial-{i}",
                status=r.get("status", "FINISHED"),
                start_time=now + i,
                end_time=now + i + 1,
                artifact_uri=f"{artifact_root}/{rid}/artifacts",
                tags=_trial_tags(r, parent_id, spec_hash),
                params={p: _param_str(r[p]) for p in params},
                points=[(m, 0, v) for m, v in _metric_values(r, metric_cols).items()],
                user_id="bench",
            )
        )
    insert_runs(store, runs)
    client.set_terminated(parent_id)
    return parent_id
