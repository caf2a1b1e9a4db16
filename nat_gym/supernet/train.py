"""Uniform-sampling training of the supernet (NAT.md section 5).

Each SGD step samples one input architecture uniformly (two predecessors and two non-null ops per node) and trains
the weights of that single path on one minibatch. SGD with the paper's settings (lr 0.01, momentum 0.9, weight decay
3e-4), gradient clipping at 5, cosine learning-rate decay over the run. Randomness is derived from ``seed`` and the
epoch, so a run resumed from a checkpoint continues exactly as the uninterrupted run would.

**Several processes** (``nat-gym train-supernet --nproc N``, or ``torchrun --nproc-per-node N -m nat_gym.cli
train-supernet ...``; the process group of :mod:`nat_gym.final.distributed`: gloo on the CPU, NCCL on CUDA): the
model is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`. ``batch_size`` stays global: each of the
``W`` processes takes its ``batch_size / W`` share of every minibatch, and **samples its own architecture** per step
(seeded by ``seed``, the epoch and its rank). DDP averages the gradients over the processes, so each process's path
gets ``1/W`` of its gradient and a weight on ``k`` of the ``W`` paths moves by ``k/W`` of their mean gradient: the
Monte-Carlo gradient of the expected loss over uniformly sampled architectures with ``W`` samples per step, which is
what uniform sampling optimises (dividing by ``k`` instead would over-weight rarely sampled ops). Each process runs
only its path, so DDP is told ``find_unused_parameters=True`` (it then marks the other weights ready instead of
waiting for their gradients); the clipping and the optimiser step then cover the union of the ``W`` paths (every
process can draw every process's architecture from the seeds, so all step the same weights: no momentum or weight
decay reaches a weight no path used, as in one process). Rank 0 scores, logs and writes the checkpoint, in the same
format as one process.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nat_gym.data import DatasetSplits, Split
from nat_gym.errors import ConfigError
from nat_gym.genotype import Genotype
from nat_gym.sampling import random_genotype
from nat_gym.supernet.checkpoint import load_checkpoint, load_optimizer_state, save_checkpoint
from nat_gym.supernet.config import SupernetTrainConfig
from nat_gym.supernet.model import Supernet

__all__ = ["SupernetTrainer", "resolve_device", "torch_threads", "evaluate_random_architectures"]


@contextmanager
def torch_threads(n: int | None, device: torch.device | None = None):
    """Run the block with ``n`` intra-op CPU threads (restored afterwards); ``None`` or a CUDA device: unchanged.

    nat-gym's supernets are made of many tiny convolutions: one thread runs them about as fast as two on an idle
    2-core machine, and an order of magnitude faster on a busy one, where OpenMP threads spin waiting for each other
    (a supernet epoch took 1.4 s with one thread and 13 s with two while other jobs ran).
    """
    if n is None or (device is not None and device.type != "cpu"):
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU; ``"cpu"``, ``"cuda"`` and ``"cuda:N"`` are checked.

    Raises:
        ConfigError: naming ``device``: another device type (``mps``, ``xpu``, ...: nat-gym runs on CPUs and CUDA),
            CUDA asked for where there is none, or a GPU index this machine does not have.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {device!r} requested but CUDA is not available here; use 'auto' or 'cpu'")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device: {device!r} requested but this machine has {torch.cuda.device_count()} GPU(s); "
                          f"use 'cuda' or an index below {torch.cuda.device_count()}")  # fmt: skip
    return dev


@contextmanager
def _optimizing_only(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter]):
    """Let ``optimizer`` (one parameter group) see only ``params`` during the block: its ``step`` then loops over
    those instead of every parameter of the model; its state (momentum buffers) stays keyed by the same tensors."""
    (group,) = optimizer.param_groups
    everything = group["params"]
    group["params"] = params
    try:
        yield
    finally:
        group["params"] = everything


class SupernetTrainer:
    """Trains a :class:`Supernet` by uniform architecture sampling, with logs and resumable checkpoints.

    Args:
        supernet: the model (moved to ``device``).
        data: the dataset splits; ``data.train`` trains the weights, ``data.valid`` scores random architectures.
        config: a :class:`SupernetTrainConfig`.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        checkpoint: where to write checkpoints (atomically); ``None`` for none.
        log_dir: where to write ``metrics.csv`` and TensorBoard events; ``None`` for none.
        threads: intra-op CPU threads while training (see :func:`torch_threads`); ``None`` leaves torch's setting.
    """

    def __init__(
        self,
        supernet: Supernet,
        data: DatasetSplits,
        config: SupernetTrainConfig | None = None,
        *,
        device: str | torch.device = "auto",
        checkpoint: str | os.PathLike | None = None,
        log_dir: str | os.PathLike | None = None,
        threads: int | None = 1,
    ) -> None:
        from nat_gym.final import distributed  # (it imports this module)

        self.config = config or SupernetTrainConfig()
        self.threads = threads
        self.ctx = distributed.setup(device)  # one process unless started by torchrun
        if self.config.batch_size % self.ctx.world_size:
            raise ConfigError(f"batch_size: {self.config.batch_size} does not split evenly over "
                              f"{self.ctx.world_size} processes")  # fmt: skip
        self.device = self.ctx.device
        self.supernet = supernet.to(self.device)
        cfg = supernet.config
        if (data.in_channels, data.num_classes) != (cfg.in_channels, cfg.num_classes):
            raise ConfigError(
                f"data: {data.name} has {data.in_channels} channels and {data.num_classes} classes, but the supernet "
                f"expects in_channels={cfg.in_channels}, num_classes={cfg.num_classes}"
            )
        self.data = data
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.log_dir = Path(log_dir) if log_dir and self.ctx.is_main else None  # rank 0 logs
        c = self.config
        self.optimizer = torch.optim.SGD(
            supernet.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay
        )
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self._sample_ops = [o for o in cfg.ops if o != "null"]
        self._grad_params: list[torch.nn.Parameter] = []  # the parameters the last training step gave gradients
        self._writer = None
        self._model: torch.nn.Module = supernet  # what the training steps call: DDP over several processes
        if self.ctx.distributed:
            import warnings

            from torch.nn.parallel import DistributedDataParallel

            # a depthwise weight [C, 1, k, k] has two equally valid stride layouts; DDP warns that its gradient is
            # copied instead of viewed (harmless, and once per process)
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")

            self._model = DistributedDataParallel(supernet, device_ids=[self.device] if self.device.type == "cuda"
                                                  else None, find_unused_parameters=True)  # fmt: skip

    # ------------------------------------------------------------------------------------------------- state
    def lr_at(self, epoch: int) -> float:
        c = self.config
        return c.lr_min + 0.5 * (c.lr - c.lr_min) * (1 + math.cos(math.pi * epoch / c.epochs))

    def resume(self, path: str | os.PathLike | None = None) -> bool:
        """Load the checkpoint (default: ``self.checkpoint``) if it exists; returns whether it did."""
        path = Path(path) if path else self.checkpoint
        if path is None or not path.is_file():
            return False
        _, payload = load_checkpoint(path, self.supernet, map_location=self.device)
        if payload.get("optimizer"):
            load_optimizer_state(self.optimizer, payload["optimizer"])  # momentum, weight decay: this run's config
        self.epoch = int(payload.get("epoch", 0))
        self.history = list(payload.get("history", []))
        return True

    def save(self, path: str | os.PathLike | None = None) -> Path:
        path = Path(path) if path else self.checkpoint
        if path is None:
            raise ConfigError("checkpoint: no checkpoint path was given")
        return save_checkpoint(
            path, self.supernet, optimizer=self.optimizer, epoch=self.epoch, history=self.history,
            train_config=asdict(self.config),
        )  # fmt: skip

    # ------------------------------------------------------------------------------------------------- training
    def train_epoch(self) -> dict[str, float]:
        """One pass over the training split, one random architecture per minibatch."""
        with torch_threads(self.threads, self.device):
            return self._train_epoch()

    def steps(self, epoch: int, world_size: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[Genotype]]]:
        """The minibatches and architectures of ``epoch``: ``(x, y, genotypes)`` per step, the whole minibatch and
        one architecture per process (process ``r`` trains ``genotypes[r]`` on ``x[r::world_size]``). A function of
        ``(seed, epoch, world_size)`` only, so every process knows every process's architecture."""
        c = self.config
        rng = np.random.default_rng([c.seed, epoch])
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        # one process: the architectures continue the same stream (runs of earlier versions reproduce exactly)
        rngs = [rng] if world_size == 1 else [np.random.default_rng([c.seed, epoch, r]) for r in range(world_size)]
        for x, y in self.data.train.batches(c.batch_size, shuffle=True, generator=gen, drop_last=True):
            yield x, y, [random_genotype(r, self.supernet.config.steps, self._sample_ops) for r in rngs]

    def _train_epoch(self) -> dict[str, float]:
        from nat_gym.final import distributed

        c, net, epoch, ctx = self.config, self.supernet, self.epoch, self.ctx
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(epoch)
        net.train()
        # running sums stay on the device: no host synchronisation per step on CUDA (float64: the same sums as
        # Python floats would give)
        total_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        seen = 0
        self.optimizer.zero_grad(set_to_none=True)  # from here on, only the last step's paths hold gradients
        self._grad_params = []
        for x, y, genotypes in self.steps(epoch, ctx.world_size):
            x, y = x[ctx.rank :: ctx.world_size], y[ctx.rank :: ctx.world_size]
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            loss, logits = self.train_step(x, y, genotypes[ctx.rank], step_genotypes=genotypes)
            total_loss += loss.double() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
        self.epoch += 1
        total, right, seen = distributed.all_sum(ctx, [float(total_loss), float(correct), float(seen)])
        row = {"epoch": float(self.epoch), "lr": self.lr_at(epoch), "train_loss": total / max(seen, 1),
               "train_acc": right / max(seen, 1)}  # fmt: skip
        if c.eval_archs > 0 and ctx.is_main:
            accs = evaluate_random_architectures(net, self.data.valid, c.eval_archs, seed=c.seed + 1)
            row.update(valid_acc_mean=float(accs.mean()), valid_acc_std=float(accs.std()))
        return row

    def train_step(self, x: torch.Tensor, y: torch.Tensor, genotype: Genotype, *,
                   step_genotypes: list[Genotype] | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """One SGD step on the path of ``genotype`` with the minibatch ``(x, y)``; returns the detached loss and
        logits. (:meth:`train_epoch` calls it once per minibatch.) Several processes: ``step_genotypes`` holds
        every process's architecture of this step (this one's is ``genotype``); see the module docstring.

        The same maths as ``zero_grad(); loss.backward(); clip_grad_norm_(net.parameters()); optimizer.step()``
        over the whole supernet (equal weights and optimiser state, bit for bit: ``tests/test_supernet.py``), but
        only the sampled path's parameters are visited, as only they have gradients: the previous step's gradients
        are cleared, the norm is clipped over the path and the optimiser steps over the path (SGD skips parameters
        without gradient anyway: no momentum or weight decay reaches them).

        Shapes:
            - x: ``[B, in_channels, H, W]``; y: ``[B]`` class indices
            - returns: loss ``[]``, logits ``[B, num_classes]``
        """
        net, clip = self.supernet, self.config.grad_clip
        logits = self._model(x, genotype)
        loss = F.cross_entropy(logits, y)
        for p in self._grad_params:  # zero_grad(set_to_none=True) of the only parameters that have gradients
            p.grad = None
        params = self._grad_params = net.path_parameters(*(step_genotypes or [genotype]))
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(params, clip)
        with _optimizing_only(self.optimizer, params):
            self.optimizer.step()
        net.bump_version()
        return loss.detach(), logits.detach()

    def train(self, *, progress: bool = True, callback: Callable[[dict[str, float]], None] | None = None):
        """Train until ``config.epochs`` (continuing from the current epoch); returns the history."""
        from tqdm.auto import tqdm

        c = self.config
        bar = tqdm(total=c.epochs, initial=self.epoch, desc="supernet", unit="epoch",
                   disable=not progress or not self.ctx.is_main, dynamic_ncols=True)  # fmt: skip
        start = time.perf_counter()
        try:
            while self.epoch < c.epochs:
                row = self.train_epoch()
                row["seconds"] = time.perf_counter() - start
                self.history.append(row)
                self._log(row)
                bar.update(1)
                bar.set_postfix({k: f"{v:.3f}" for k, v in row.items() if k in ("train_loss", "train_acc",
                                                                                  "valid_acc_mean")})  # fmt: skip
                if callback is not None:
                    callback(row)
                if self.checkpoint and self.ctx.is_main and (self.epoch % c.checkpoint_every == 0
                                                             or self.epoch == c.epochs):  # fmt: skip
                    self.save()
        finally:
            bar.close()
            if self._writer is not None:
                self._writer.flush()
        return self.history

    def _log(self, row: dict[str, float]) -> None:
        if self.log_dir is None:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        path = self.log_dir / "metrics.csv"
        new = not path.exists()
        with path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.log_dir))
            self._writer.add_text("config", json.dumps(asdict(self.config)))
        for k, v in row.items():
            if k != "epoch":
                self._writer.add_scalar(f"supernet/{k}", v, int(row["epoch"]))


@torch.no_grad()
def evaluate_random_architectures(
    supernet: Supernet, split: Split, n: int, *, seed: int = 0, batch_size: int | None = None
) -> np.ndarray:
    """Shared-weight accuracy of ``n`` random architectures (as the MDP samples them) on ``split``."""
    rng = np.random.default_rng(seed)
    ops = [o for o in supernet.config.ops if o != "null"]
    device = next(supernet.parameters()).device
    x, y = split.x.to(device), split.y.to(device)
    bs = batch_size or len(y)
    accs = []
    for _ in range(n):
        g = random_genotype(rng, supernet.config.steps, ops)
        correct = 0
        for i in range(0, len(y), bs):
            correct += int((supernet(x[i : i + bs], g).argmax(-1) == y[i : i + bs]).sum())
        accs.append(correct / len(y))
    return np.asarray(accs)
