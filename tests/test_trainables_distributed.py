"""Data-parallel trials (torch.distributed, gloo on CPU; no Ray): 2 ranks = 1 process.

The claim checked: with the same global batch B (B/2 per rank, the same seeded
order), two ranks under DDP compute the losses one process computes, epoch
by epoch, within TOLERANCE. Exact in real arithmetic (the loss scaling in
`engine.train_epoch` makes DDP's gradient mean the global batch's mean
gradient, a short last batch included); floats differ only in summation order.
The backbone is `twolayer`, which has no BatchNorm (per-rank BatchNorm
statistics on CPU would differ from one process's; GPU runs use SyncBatchNorm).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import torch
import torch.multiprocessing as tmp_mp
import trainables_fixtures as fixtures
from filelock import FileLock

from trainables import train
from trainables.checkpoints import PretrainStore
from trainables.distributed import Shard
from trainables.engine import global_batches

# Relative tolerance on every per-epoch loss and error: float32 sums in another order.
TOLERANCE = 1e-4
HOLD_S = 3.0  # seconds the test holds the pretraining's lock after starting the ranks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, configs: list[dict], out: str) -> None:
    import torch.distributed as dist

    from trainables import trial

    trial.CLAIM_POLL_S = 0.2  # rank 0 waits on the store's lock in short rounds (see below)

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        runs = []
        for config in configs:
            seen: list = []
            result = train(config, lambda metrics, step, seen=seen: seen.append([step, metrics]))
            runs.append({"reports": seen, "result": result})
        Path(out, f"rank{rank}.json").write_text(json.dumps(runs))
    finally:
        dist.destroy_process_group()


def run_ranks(world: int, configs: list[dict], out: Path) -> list[list[dict]]:
    """`train(config)` for each config on `world` gloo ranks; per rank, what each run reported and returned.

    One process group for all configs: spawning processes that import torch is
    most of this test's time.
    """
    out.mkdir(parents=True, exist_ok=True)
    # Another trial holds the pretraining's lock while the ranks start: rank 0
    # waits for it in rounds that every rank meets (never one long collective).
    lock = FileLock(str(PretrainStore(configs[0]["pretrain_store"]).path("p0")) + ".lock")
    lock.acquire()
    context = tmp_mp.start_processes(
        _rank_main,
        args=(world, _free_port(), configs, str(out)),
        nprocs=world,
        join=False,
        start_method="spawn",
    )
    time.sleep(HOLD_S)
    lock.release()
    while not context.join():
        pass
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(world)]


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= TOLERANCE * max(1.0, abs(a), abs(b))


MODES = ("linear", "full")


def test_two_ranks_give_the_losses_of_one_process(tmp_path):
    # 540 training examples, B=128: the last batch has 28 -> 14 per rank (a short batch).
    configs = [
        fixtures.trial_config(
            tmp_path,
            pretrain={"epochs": 3, "lr": 0.2, "batch_size": 128},
            finetune={"mode": mode, "epochs": 2, "lr": 0.05, "batch_size": 128},
            pretrain_store=str(tmp_path / "store"),
            checkpoint_dir=str(tmp_path / f"ckpt-{mode}"),
            trial_key=f"t-{mode}",
        )
        for mode in MODES
    ]
    singles = []
    for config in configs:
        seen: list = []
        one = dict(config, pretrain_store=str(tmp_path / "store1"), checkpoint_dir=None)
        result = train(one, lambda metrics, step, seen=seen: seen.append([step, metrics]))
        singles.append({"reports": seen, "result": result})
    ranks = run_ranks(2, configs, tmp_path / "out")
    for mode, single, rank0, rank1 in zip(MODES, singles, *ranks, strict=True):
        # Rank 0 alone reports; both ranks return the same final metrics.
        assert rank1["reports"] == [], mode
        seen, reports = single["reports"], rank0["reports"]
        assert [s for s, _ in reports] == [s for s, _ in seen], mode
        for (_, one), (_, two) in zip(seen, reports, strict=True):
            assert one.keys() == two.keys()
            for key in one:
                if key.endswith("/loss"):
                    assert _close(one[key], two[key]), (mode, key, one[key], two[key])
                else:  # errors: only a near-tie logit could flip a prediction
                    assert abs(one[key] - two[key]) <= 2 / 540, (mode, key, one[key], two[key])
        for key in ("target_error", "val_error", "finetune/loss", "pretrain/loss"):
            assert rank0["result"][key] == rank1["result"][key], (mode, key)
            assert abs(single["result"][key] - rank0["result"][key]) <= 2e-3 + TOLERANCE, key
        assert (tmp_path / f"ckpt-{mode}" / "pretrain.pt").is_file() == (mode == "linear")
    # The second config reused the first's pretraining (same pretrain_key), as one process does.
    assert [r["result"]["pretrain_reused"] for r in ranks[0]] == [0.0, 1.0]
    assert [r["result"]["pretrain_reused"] for r in ranks[1]] == [0.0, 1.0]
    assert sorted(p.name for p in (tmp_path / "store").glob("*.pt")) == ["p0.pt"]


def test_global_batches_split_each_batch_between_ranks():
    order = torch.randperm(11, generator=torch.Generator().manual_seed(0))
    one = global_batches(order, 4, Shard())
    parts = [global_batches(order, 4, Shard(r, 3)) for r in range(3)]
    assert [len(b) for b in one] == [4, 4, 3]
    for i, batch in enumerate(one):
        # Each global batch is the ranks' slices, in rank order, with nothing lost.
        assert torch.equal(torch.cat([p[i] for p in parts]), batch)
        assert max(len(p[i]) for p in parts) - min(len(p[i]) for p in parts) <= 1
