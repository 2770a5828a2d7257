"""A fast fake trainable and dataset for the sweeps tests (no torch, milliseconds per trial).

Behaviour is steered by the trial config's `dataset_options` (which the fake
dataset ignores), or by the JSON file named by its `control` option (so a test
can change behaviour without changing trial keys): `sleep` seconds per epoch,
`fail` = arm labels that always raise, `flaky` = arm labels that raise on
their first attempt only (a marker file in the trial's checkpoint_dir
remembers the attempt), `offsets` (arm label -> added target error) and
`noise` (sd of a per-trial error draw), `crash` = arm labels whose first trial in the sweep kills
the worker process, `hold` = a path: every epoch waits while that file exists.
Pretrainings are shared through marker files in the pretrain_store, so
`pretrain_reused` is reported as the real trainable would.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np

from hierarchies import Hierarchy

CALLS_FILE = "fake_calls.log"


class FakeDataset:
    """Four levels over 16 leaves (2 -> 4 -> 8 -> 16), with random class embeddings."""

    name = "fake"
    default_target = "coarse"

    def __init__(self) -> None:
        leaves = np.arange(16)
        self.hierarchy = Hierarchy(
            leaf_names=[f"leaf{i}" for i in leaves],
            level_names=["coarse", "mid", "fine", "leaf"],
            levels=[leaves // 8, leaves // 4, leaves // 2, leaves],
        )
        self.train_leaf = np.repeat(leaves, 10)

    def class_embeddings(self) -> np.ndarray:
        rng = np.random.default_rng(0)
        return rng.standard_normal((16, 8)) + (np.arange(16) // 8)[:, None] * 3.0


def train(config: dict, report) -> dict:
    """Pretend to pretrain then finetune; log every call to <storage>/fake_calls.log."""
    options = dict(config["dataset_options"])
    if options.get("control") and Path(options["control"]).exists():
        options.update(json.loads(Path(options["control"]).read_text()))
    storage = Path(config["pretrain_store"]).parent
    with open(storage / CALLS_FILE, "a") as handle:
        handle.write(json.dumps({"trial_key": config["trial_key"], "t": time.time()}) + "\n")
    checkpoint = Path(config["checkpoint_dir"])
    checkpoint.mkdir(parents=True, exist_ok=True)
    if config["hierarchy"] in options.get("fail", []):
        raise RuntimeError(f"boom in arm {config['hierarchy']}")
    crashed = storage / "crashed"  # once per sweep
    if config["hierarchy"] in options.get("crash", []) and not crashed.exists():
        crashed.touch()
        os._exit(1)  # the whole worker process dies: Ray retries the pack
    if config["hierarchy"] in options.get("flaky", []) and not (checkpoint / "attempted").exists():
        (checkpoint / "attempted").touch()
        raise RuntimeError("flaky first attempt")
    sleep = float(options.get("sleep", 0.0))
    hold = Path(options["hold"]) if options.get("hold") else None

    def epoch_wait() -> None:
        while hold is not None and hold.exists():
            time.sleep(0.05)
        time.sleep(sleep)

    store = Path(config["pretrain_store"]) / config["pretrain_key"]
    reused = config["level"] is None or store.exists()
    for epoch in range(0 if reused else config["pretrain"]["epochs"]):
        epoch_wait()
        report({"pretrain/loss": 1.0 / (epoch + 1), "pretrain/error": 0.5}, epoch)
    if config["level"] is not None:
        store.parent.mkdir(parents=True, exist_ok=True)
        store.touch()
    for epoch in range(config["finetune"]["epochs"]):
        epoch_wait()
        report({"finetune/loss": 1.0 / (epoch + 1), "finetune/error": 0.4}, epoch)
    lr = config["pretrain"]["lr"]
    # `offsets`: arm label -> added error; `noise`: sd of a per-trial draw (keyed by the trial).
    error = 0.1 + 0.01 * config["seed"] + options.get("offsets", {}).get(config["hierarchy"], 0.0)
    if options.get("noise"):
        rng = np.random.default_rng(int(config["trial_key"][:12], 16))
        error += float(rng.normal(0.0, options["noise"]))
    return {
        "target_error": error,
        "val_error": abs(np.log10(lr) + 2.0),  # best at lr = 0.01
        "align/nmi": 0.5,
        "num_train": 160 * config["data_fraction"],
        "num_classes": 2,
        "time/pretrain_s": sleep,
        "time/finetune_s": sleep,
        "pretrain_reused": float(reused and config["level"] is not None),
    }


def call_log(storage: Path) -> list[dict]:
    """Every call `train` logged under `storage`: {"trial_key", "t"} in call order."""
    log = storage / CALLS_FILE
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def calls(storage: Path) -> Counter:
    """How many times `train` was called per trial_key."""
    return Counter(call["trial_key"] for call in call_log(storage))


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder`: (size, mtime_ns), to tell whether anything is still written."""
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()
    }


def fake_dataset(**options) -> FakeDataset:
    """The fake dataset as a `module:function` dataset name (options steer `train`)."""
    return FakeDataset()


def write_fake_spec(
    folder: Path, name: str, *, tracking_uri: str, options: dict | None = None, **fields
) -> Path:
    """A small spec over the fake dataset and trainable, written to `folder/<name>.yaml`.

    Defaults: manual/random/scratch x mid/leaf x 2 seeds, 2+2 epochs, 1 retry,
    storage in `folder/store`; `fields` replace top-level keys.
    """
    import yaml

    raw = {
        "name": name,
        "dataset": {"name": "sweeps_fake:fake_dataset", "options": options or {}},
        "trainable": "sweeps_fake:train",
        "target": "coarse",
        "factors": {"hierarchies": ["manual", "random", "scratch"], "levels": ["mid", "leaf"]},
        "seeds": 2,
        "pretrain": {"epochs": 2},
        "finetune": {"epochs": 2},
        "retries": 1,
        "storage_path": str(folder / "store"),
        "tracking": {"uri": tracking_uri},
        **fields,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path
