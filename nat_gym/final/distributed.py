"""DistributedDataParallel plumbing for the final training: one process per device, started by ``torchrun``.

``torchrun --nproc-per-node N -m nat_gym.cli train-final ...`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``;
:func:`setup` then joins the process group (NCCL on CUDA, gloo on the CPU) and picks ``cuda:LOCAL_RANK``. Without
those variables everything here is a no-op for a single process.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from nat_gym.errors import ConfigError
from nat_gym.supernet.train import resolve_device

__all__ = ["DistContext", "setup", "all_sum", "broadcast_buffers", "barrier", "has_unused_parameters"]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size`` processes, on ``device``; ``owns_group`` when
    :func:`setup` created the process group (and :meth:`close` destroys it)."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints, logs and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            # every rank leaves together: a gloo peer that tears its connections down while another rank is still
            # finishing can abort the other process ("terminate called without an active exception", seen 1 in 4
            # runs of the 2-process test on a loaded machine)
            dist.barrier()
            dist.destroy_process_group()


def setup(device: str | torch.device = "auto") -> DistContext:
    """Join the ``torchrun`` process group if there is one; returns this process's :class:`DistContext`.

    ``device``: ``"auto"`` (``cuda:LOCAL_RANK`` when CUDA is available, else the CPU), ``"cpu"``, ``"cuda"``
    (made ``cuda:LOCAL_RANK`` under torchrun) or ``"cuda:N"``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = resolve_device(device)
    if world <= 1:
        return DistContext(device=dev)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        if dev.index is None or str(device) in ("auto", "cuda"):
            dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    owns = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        owns = True
    if dist.get_world_size() != world:
        raise ConfigError(f"WORLD_SIZE: {world} but the process group has {dist.get_world_size()} processes")
    return DistContext(dist.get_rank(), world, dev, owns)


def all_sum(ctx: DistContext, values: list[float]) -> list[float]:
    """Element-wise sum of ``values`` over all processes (float64; the values themselves on one process)."""
    if not ctx.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_buffers(ctx: DistContext, module: nn.Module) -> None:
    """Give every process rank 0's buffers (BN running statistics), so that all evaluate the saved network."""
    if ctx.distributed:
        for b in module.buffers():
            dist.broadcast(b, 0)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def has_unused_parameters(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether a training-mode forward of (a copy of) ``module`` on ``x`` leaves some parameter without a gradient:
    DDP must then be told ``find_unused_parameters=True`` (a cell input that no edge reads, for instance)."""
    probe = copy.deepcopy(module).train()
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        out = probe(x)
        outs = out if isinstance(out, tuple) else (out,)
        sum(o.float().sum() for o in outs).backward()
    return any(p.requires_grad and p.grad is None for p in probe.parameters())
