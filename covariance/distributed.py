"""torchrun support: who am I, which shard is mine, and one all-reduce SUM at the end.

Outside torchrun (no WORLD_SIZE in the environment) everything degrades to a single process.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Rank:
    index: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.index == 0

    def shard(self, items: list) -> list:
        """Deterministic round-robin share of `items` for this rank."""
        return items[self.index :: self.world]


def current_rank() -> Rank:
    """Join the process group torchrun prepared (gloo on CPU, NCCL on GPU) if there is one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Rank()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":  # one GPU per rank; "cuda" then means this rank's device
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
        # Left to the interpreter's teardown, gloo's threads were sometimes destroyed while
        # joinable: a rank that had finished its share aborted ("terminate called without an
        # active exception", exit -6) and torchrun failed the whole run.
        atexit.register(_leave_process_group)
    return Rank(dist.get_rank(), dist.get_world_size())


def _leave_process_group() -> None:
    if dist.is_initialized():  # a caller may have left it already
        dist.destroy_process_group()


def all_reduce_sum(tensors: list[torch.Tensor], rank: Rank) -> list[torch.Tensor]:
    """Sum each tensor across ranks (in place when distributed); identity for one process."""
    if rank.world <= 1:
        return tensors
    device = torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")
    reduced = []
    for tensor in tensors:
        moved = tensor.to(device)
        dist.all_reduce(moved, op=dist.ReduceOp.SUM)
        reduced.append(moved.to(tensor.device))
    return reduced


def barrier(rank: Rank) -> None:
    if rank.world > 1:
        dist.barrier()
