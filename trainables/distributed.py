"""Data-parallel training through torch.distributed: who this process is, and the few collectives.

A trial is data-parallel when a process group is up when `train` starts (Ray
Train's TorchTrainer sets one up per worker: gloo on CPU, NCCL on GPU; any
launcher that calls `init_process_group` works the same). Nothing here
imports Ray. Without a process group, or with one process, every function is
the one-process behaviour: rank 0 of 1, no wrapping, no communication.

What "data-parallel" means for a trial (the contract the tests check):
- `batch_size` is the global batch: each global batch (the same seeded order
  on every rank) is split into `world` consecutive slices, one per rank;
- each rank's loss is its sum over its slice times `world / global batch
  length`, so DDP's gradient mean equals the one-process batch-mean gradient
  exactly (the learning rate means the same), also for a short last batch;
- BatchNorm statistics are per rank on CPU (gloo has no SyncBatchNorm); on
  GPU BatchNorm layers become SyncBatchNorm, so they see the global batch;
- rank 0 alone reports, writes checkpoints and the pretrain store; every
  rank loads them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import distributed as dist
from torch import nn


@dataclass(frozen=True)
class Shard:
    """This process's place in the data-parallel group."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world > 1


def current_shard() -> Shard:
    """Rank and world size of the process group, or rank 0 of 1 when there is none."""
    if dist.is_available() and dist.is_initialized():
        return Shard(dist.get_rank(), dist.get_world_size())
    return Shard()


def wrap(model: nn.Module, device: torch.device, shard: Shard) -> nn.Module:
    """`model` under DistributedDataParallel when the group has several ranks, else itself.

    DDP broadcasts rank 0's parameters at construction, so every rank starts equal.
    """
    if not shard.parallel:
        return model
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return nn.parallel.DistributedDataParallel(model, device_ids=[device])
    return nn.parallel.DistributedDataParallel(model)


def sum_across(values: list[torch.Tensor], shard: Shard) -> list[torch.Tensor]:
    """Element-wise sums over the ranks (float64, on the tensors' device); one call."""
    if not shard.parallel:
        return values
    device = values[0].device
    packed = torch.stack([v.detach().to(torch.float64).reshape(()) for v in values]).to(device)
    dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    return list(packed.unbind())


def broadcast_flag(flag: bool, shard: Shard) -> bool:
    """Rank 0's `flag` on every rank (e.g. "the pretrain store has this key")."""
    if not shard.parallel:
        return flag
    box = [bool(flag)]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def barrier(shard: Shard) -> None:
    """Wait for every rank (e.g. until rank 0 has written a file the others read)."""
    if shard.parallel:
        dist.barrier()
