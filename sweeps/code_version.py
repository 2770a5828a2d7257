"""The code version of a sweep's trials: one short hash of what decides a trial's result.

Trial keys hash the config only, so a fixed bug in the training code would
otherwise leave every old result "done". The code version is recorded with
each trial (its config's `code_version`, the MLflow tag `granularity.code_version`)
and is part of every pretrain key; `granularity run` reruns the trials whose
recorded version differs from the current one (`--reuse-stale` keeps them).

What goes in, and why:

- the content of the project's packages a trial runs: `trainables`,
  `hierarchies` and `contracts.py` (the stage defaults). `sweeps` (the
  orchestration) and `analysis` (reads results) are left out: editing a
  progress line must not make a finished sweep stale;
- the trainable's own module, and the dataset's module for a
  `module:function` dataset (a user's code outside the project);
- the installed versions of torch and timm (kernels and model definitions);
- the dataset's data files, as names and sizes under the `root`/`path`/`data_root`
  option (content hashes of a large image set would cost minutes per run;
  a new release of a dataset changes names or sizes).

Files are hashed once per process and re-hashed only when their mtime or size
changes, so a driver pays for the hash once, never per trial.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sweeps.ledger.records import read_json, read_results, result_path
from sweeps.spec import Spec
from sweeps.trials import Plan, Trial

# Project code a trial's result depends on (packages and single modules).
PROJECT_CODE = ("trainables", "hierarchies", "contracts")
LIBRARIES = ("torch", "timm")
DATA_OPTIONS = ("root", "path", "data_root")
MAX_DATA_FILES = 100_000  # a listing bound (about a second of stats): a larger root is named by its first files

STALE_DIR = "stale"  # under results/: the records of trials set aside to rerun

_file_cache: dict[str, tuple[int, int, str]] = {}  # path -> (mtime_ns, size, sha256)


def file_digest(path: Path) -> str:
    """sha256 of a file's content, cached by (mtime, size)."""
    stat = path.stat()
    key = str(path)
    cached = _file_cache.get(key)
    if cached is not None and cached[:2] == (stat.st_mtime_ns, stat.st_size):
        return cached[2]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    _file_cache[key] = (stat.st_mtime_ns, stat.st_size, digest)
    return digest


def module_files(module: str) -> list[Path]:
    """The source files of a module, or of every module of a package (none if not found).

    Found without importing the module itself (a package's parents are imported).
    """
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return []
    if found is None:
        return []
    if found.submodule_search_locations:
        return sorted(
            p
            for folder in found.submodule_search_locations
            for p in Path(folder).rglob("*.py")
            if "__pycache__" not in p.parts
        )
    return [Path(found.origin)] if found.origin and found.origin.endswith(".py") else []


def _library_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _data_listing(options: Mapping[str, Any]) -> list[str]:
    """`name size` of each file under the dataset's data option(s), in sorted walk order."""
    out = []
    for option in DATA_OPTIONS:
        value = options.get(option)
        if not isinstance(value, str) or not value:
            continue
        root = Path(value).expanduser()
        if root.is_file():
            out.append(f"{option}: {root.name} {root.stat().st_size}")
        elif root.is_dir():
            out.extend(f"{option}: {line}" for line in _listing(root))
    return out


def _listing(root: Path) -> list[str]:
    """Files under `root` with sizes, the first MAX_DATA_FILES in sorted order.

    The walk is sorted so a bounded listing is the same on every call. Not
    cached: a file rewritten in place changes no folder's mtime. A stat per
    file costs about a second per 100,000 files on a local disk.
    """
    files: list[str] = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder, name)
            try:
                files.append(f"{path.relative_to(root)} {path.stat().st_size}")
            except OSError:
                continue
            if len(files) >= MAX_DATA_FILES:
                break
        if len(files) >= MAX_DATA_FILES:
            break
    return files


def _modules_of(spec: Spec) -> list[str]:
    """Project code plus the modules of the spec's trainable and custom dataset."""
    modules = list(PROJECT_CODE)
    for reference in (spec.trainable, spec.dataset.name):
        if ":" in reference:
            modules.append(reference.partition(":")[0])
    return list(dict.fromkeys(modules))


def code_version(spec: Spec) -> str:
    """A 12-hex-digit hash of the code, libraries and data files that decide `spec`'s results."""
    return version_of(_modules_of(spec), spec.dataset.options)


def version_of(modules: Iterable[str], data_options: Mapping[str, Any]) -> str:
    """The hash `code_version` computes, from module names and dataset options."""
    lines = []
    for module in modules:
        files = module_files(module)
        # A package's files by their path inside it, so a moved checkout keeps its version.
        base = files[0].parent if len(files) == 1 else _common_parent(files)
        lines.extend(f"{module}/{p.relative_to(base)} {file_digest(p)}" for p in files)
        if not files:
            lines.append(f"{module} missing")
    lines.extend(f"{name}=={_library_version(name)}" for name in LIBRARIES)
    lines.extend(_data_listing(data_options))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:12]


def _common_parent(files: list[Path]) -> Path:
    return Path(os.path.commonpath([str(p.parent) for p in files])) if files else Path(".")


def recorded_version(record: Mapping[str, Any]) -> str | None:
    """The code version a result record ran with (None: recorded before versions were)."""
    config = record.get("config") or {}
    return config.get("code_version")


def stale_trials(plan: Plan, storage: Path) -> dict[str, str | None]:
    """trial_key -> recorded code version, for the plan's results made by other code.

    A result recorded before code versions were is stale too: nothing says
    which code made it. A trial set aside by `retire` stays stale until its
    rerun writes a new result (its old MLflow run still says FINISHED). A
    trial MLflow has FINISHED but storage has no record of cannot be judged
    and is kept.
    """
    results = read_results(storage)
    retired = storage / "results" / STALE_DIR
    out = {}
    for trial in plan.trials:
        key = trial.trial_key
        record = results.get(key)
        if record is None and retired.is_dir():
            record = read_json(retired / result_path(storage, key).name)
        if record is not None:
            recorded = recorded_version(record)
            if recorded != trial.config.get("code_version"):
                out[key] = recorded
    return out


def stale_line(stale: Mapping[str, str | None], current: str, *, reuse: bool) -> str:
    """One line on the stale trials: how many, which versions, and what `run` does with them."""
    versions = Counter(v or "unrecorded" for v in stale.values())
    made = ", ".join(f"{n} by {v}" for v, n in versions.most_common(3))
    what = "kept (--reuse-stale)" if reuse else "run reruns them (--reuse-stale keeps them)"
    return (
        f"{len(stale)} done trial(s) are stale: made by other code ({made}; current code "
        f"version {current}); {what}"
    )


def retire(storage: Path, trials: Iterable[Trial]) -> None:
    """Set stale trials aside so they run afresh: result file to `results/stale/`, checkpoints gone.

    The old result stays readable there (and its MLflow run stays, older than the rerun's).
    """
    stale_dir = storage / "results" / STALE_DIR
    for trial in trials:
        result = result_path(storage, trial.trial_key)
        if result.exists():
            stale_dir.mkdir(parents=True, exist_ok=True)
            os.replace(result, stale_dir / result.name)
        # The trial's checkpoints and history would make the rerun resume the old one.
        if trial.config.get("checkpoint_dir"):
            shutil.rmtree(trial.config["checkpoint_dir"], ignore_errors=True)
