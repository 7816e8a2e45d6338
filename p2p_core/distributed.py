"""Several processes, one model: torch.distributed as torchrun sets it up, and nothing home-made.

``torchrun --nproc_per_node N -m p2p_core fit ...`` starts N copies of the command; each calls
:func:`init` and learns its rank from the environment torchrun sets. gloo carries CPU tensors, nccl CUDA ones.
A single process (no torchrun) is world size 1 and every function here is a no-op.
"""

from __future__ import annotations

import datetime
import os
import sys
from typing import Any

import attrs
import torch
import torch.distributed as dist

from p2p_core.errors import ConfigError

LAUNCHED_BY_TORCHRUN = "LOCAL_RANK"


@attrs.frozen
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return LAUNCHED_BY_TORCHRUN in os.environ


def init(*, device: torch.device, timeout_s: float) -> Context:
    """Join the process group torchrun prepared; collectives fail after ``timeout_s`` instead of hanging."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Context()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return Context(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", 0)))


def device_for(context: Context, device: torch.device) -> torch.device:
    """Each process drives its own GPU (its local rank); on CPU they share the machine."""
    if device.type == "cuda" and context.active:
        torch.cuda.set_device(context.local_rank)
        return torch.device("cuda", context.local_rank)
    return device


def broadcast(context: Context, value: Any) -> Any:
    """Rank 0's ``value`` on every rank (e.g. a run name made from the time)."""
    if not context.active:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_rank(context: Context, flag: bool) -> bool:
    """True on every rank when it is true on any (so all ranks stop at the same step)."""
    if not context.active:
        return flag
    tensor = torch.tensor([int(flag)], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def barrier(context: Context) -> None:
    if context.active:
        dist.barrier()


def shutdown() -> None:
    """Leave the group together: a rank tearing down while rank 0 still writes its checkpoint can abort."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def relaunch_with_torchrun(nproc: int, argv: list[str]) -> None:
    """``p2p fit --trainer.nproc N``: run the same command under torchrun, N processes on this machine."""
    if nproc < 1:
        raise ConfigError(f"--trainer.nproc must be >= 1, got {nproc}")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               "-m", "p2p_core", *argv]
    os.execv(sys.executable, command)
