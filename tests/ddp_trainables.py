"""Trainables for the data-parallel sweep tests: the real trial, plus a worker that dies once.

`train_and_log` runs `trainables.train` and appends every epoch rank 0 reports
to `<storage>/epochs.log` with its process id, so a test can see whether a
restarted worker group resumed mid-stage or started over. `train_killing_rank1`
does the same, and on rank 1 kills its process (os._exit, as a lost node
would) once the trial's first pretraining checkpoint exists, the first time only.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import torch.distributed as dist

from trainables import train

EPOCHS_LOG = "epochs.log"
KILLED = "killed-rank1"


def _storage(config: dict) -> Path:
    return Path(config["pretrain_store"]).parent


def train_and_log(config: dict, report) -> dict:
    log = _storage(config) / EPOCHS_LOG

    def logged(metrics: dict, step: int) -> None:
        stage = next(iter(metrics)).split("/")[0]
        with open(log, "a") as handle:
            handle.write(json.dumps({"pid": os.getpid(), "stage": stage, "step": step}) + "\n")
        report(metrics, step)

    return train(config, logged if report is not None else None)


def _kill_after_checkpoint(checkpoint: Path, marker: Path) -> None:
    while not checkpoint.exists():
        time.sleep(0.01)
    marker.touch()
    os._exit(1)


def train_killing_rank1(config: dict, report) -> dict:
    marker = _storage(config) / KILLED
    if dist.get_rank() == 1 and not marker.exists():
        checkpoint = Path(config["checkpoint_dir"]) / "pretrain.pt"
        threading.Thread(
            target=_kill_after_checkpoint, args=(checkpoint, marker), daemon=True
        ).start()
    return train_and_log(config, report)
