"""Final training from scratch (the DARTS protocol, NAT.md section 5): :class:`FinalTrainer`.

One run trains the stand-alone network of an architecture on the ``train`` split with SGD (momentum, weight decay,
cosine learning rate per epoch), gradient clipping, drop-path ramped linearly from 0 to ``drop_path_prob``, an
auxiliary head weighted ``auxiliary_weight``, and random crop / flip / cutout (:mod:`nat_gym.final.augment`). After
every ``eval_every`` epochs it reports loss and accuracy on the ``valid`` split (held out from the training data);
the ``test`` split is measured **once**, after the last epoch, and never used for any choice.

Reproducible and exactly resumable: the data order, augmentation and drop-path masks of epoch ``e`` are drawn from
generators seeded by ``(seed, e)`` (and the process's rank), so a run interrupted after a checkpoint and resumed
ends bit for bit where the uninterrupted run does (on the CPU; CUDA kernels may be non-deterministic).

GPU path (untested on hardware so far, see the README): bf16 autocast (fp16 with a ``GradScaler`` where bf16 is
unsupported), channels-last tensors, optional ``torch.compile``, and DistributedDataParallel under ``torchrun``
(:mod:`nat_gym.final.distributed`; gloo on the CPU). ``batch_size`` is global: each of ``W`` processes takes
``batch_size / W`` images of the same shuffled batch.

Outputs in ``out``: ``checkpoint.pt`` (atomic; config, architecture, cost, weights, optimizer, scheduler, scaler,
history and, once measured, the test result), ``metrics.csv``, TensorBoard events, ``learning_curves.png`` and
``result.json``.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nat_gym.data import DatasetSplits, Split, load_dataset
from nat_gym.errors import CheckpointError, ConfigError
from nat_gym.final import distributed
from nat_gym.final.augment import augment_batch
from nat_gym.final.config import FinalTrainConfig
from nat_gym.final.model import FinalModel, arch_from_record, build_model
from nat_gym.genotype import Genotype
from nat_gym.supernet.checkpoint import atomic_save, read_checkpoint
from nat_gym.supernet.train import torch_threads

__all__ = ["FinalTrainer", "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "load_data", "load_final_checkpoint",
           "model_from_checkpoint", "resolve_precision"]  # fmt: skip

CHECKPOINT_FORMAT = "nat-gym-final"
CHECKPOINT_VERSION = 1
_CURVES = ("train_loss", "valid_loss", "train_acc", "valid_acc", "lr", "drop_path_prob")


def load_data(config: FinalTrainConfig, download: bool = False) -> DatasetSplits:
    """The dataset of ``config`` (:func:`nat_gym.data.load_dataset`); CIFAR is downloaded into ``data_root`` only
    with ``download=True``."""
    kwargs: dict[str, Any] = {}
    if config.dataset == "digits":
        kwargs["image_size"] = config.image_size or 8
    elif config.dataset == "fake" and config.image_size:
        kwargs["image_size"] = config.image_size
    elif config.dataset.startswith("cifar"):
        if config.image_size not in (None, 32):
            raise ConfigError(f"image_size: CIFAR images are 32x32, got {config.image_size}")
        kwargs["train_fraction"] = config.train_fraction
    return load_dataset(config.dataset, root=config.data_root, download=download, seed=config.data_seed, **kwargs)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device`` (None: fp32, no autocast)."""
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (numpy's SeedSequence: well mixed, order-sensitive)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


class FinalTrainer:
    """Trains one architecture from scratch; see the module docstring for the protocol.

    Args:
        arch: the architecture (a :class:`~nat_gym.genotype.Genotype`; see :func:`nat_gym.final.model.resolve_arch`).
        config: a :class:`FinalTrainConfig` (default: the digits preset).
        out: output folder (checkpoint, logs, PNG, result); ``None`` writes nothing.
        data: the dataset; default :func:`load_data` of ``config``.
        name: the architecture's name in logs and results (default: its compact string).
        progress: show a progress bar (on rank 0).

    Raises:
        ConfigError: the batch does not split evenly over the processes, or a bad network configuration.
    """

    def __init__(self, arch: Genotype, config: FinalTrainConfig | None = None, *,
                 out: str | os.PathLike | None = None, data: DatasetSplits | None = None, name: str | None = None,
                 progress: bool = True) -> None:  # fmt: skip
        self.config = c = config or FinalTrainConfig()
        self.ctx = distributed.setup(c.device)
        self.device = self.ctx.device
        if c.batch_size % self.ctx.world_size:
            raise ConfigError(f"batch_size: {c.batch_size} does not split evenly over {self.ctx.world_size} processes")
        self.data = data if data is not None else load_data(c)
        built: FinalModel = build_model(arch, c, num_classes=self.data.num_classes, in_channels=self.data.in_channels,
                                        image_size=self.data.image_size, name=name)  # fmt: skip
        self.arch, self.cost = built.arch, built.cost
        self.channels_last = c.channels_last
        self.model = built.module.to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.amp_dtype = resolve_precision(c.precision, self.device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=c.lr, momentum=c.momentum,
                                         weight_decay=c.weight_decay)  # fmt: skip
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=c.epochs, eta_min=c.lr_min)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.out = Path(out) if out is not None else None
        self.progress = progress
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self.result: dict[str, Any] | None = None
        self.elapsed = 0.0
        self._log = None
        self._bar = None
        self._train_xy = (self.data.train.x.to(self.device), self.data.train.y.to(self.device))
        self._forward = self._wrap(self.model)

    # ------------------------------------------------------------------------------------------------ set-up
    def _wrap(self, model: nn.Module) -> nn.Module:
        """The module the training steps call: DDP under torchrun, compiled with ``compile``."""
        wrapped = model
        if self.ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            probe = self._batch(self._train_xy[0][:2])
            unused = distributed.has_unused_parameters(model, probe)
            wrapped = DistributedDataParallel(model, device_ids=[self.device] if self.device.type == "cuda" else None,
                                              find_unused_parameters=unused)  # fmt: skip
        if self.config.compile:
            wrapped = torch.compile(wrapped)
        return wrapped

    def _batch(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @property
    def steps_per_epoch(self) -> int:
        """SGD steps per epoch (the last incomplete batch is dropped)."""
        return len(self.data.train) // self.config.batch_size

    # ------------------------------------------------------------------------------------------------ training
    def train_epoch(self) -> dict[str, float]:
        """One pass over the training split; returns the epoch's row of metrics (validation included when due)."""
        with torch_threads(self.config.threads, self.device):
            return self._train_epoch()

    def _train_epoch(self) -> dict[str, float]:
        c, ctx, epoch = self.config, self.ctx, self.epoch
        if self.steps_per_epoch < 1:
            raise ConfigError(f"batch_size: {c.batch_size} exceeds the {len(self.data.train)} training images")
        drop = c.drop_path_prob * epoch / c.epochs
        if hasattr(self.model, "drop_path_prob"):
            self.model.drop_path_prob = drop
        lr = float(self.optimizer.param_groups[0]["lr"])
        x_all, y_all = self._train_xy
        order = torch.randperm(len(y_all), generator=torch.Generator().manual_seed(_seed(c.seed, epoch, 0)))
        order = order.to(self.device)
        aug_gen = torch.Generator().manual_seed(_seed(c.seed, epoch, 1, ctx.rank))
        per_rank = c.batch_size // ctx.world_size
        self.model.train()
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        seen = 0
        start = time.perf_counter()
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # drop-path draws from the global generator
            torch.manual_seed(_seed(c.seed, epoch, 2, ctx.rank))
            for step in range(self.steps_per_epoch):
                lo = step * c.batch_size + ctx.rank * per_rank
                idx = order[lo : lo + per_rank]
                x = augment_batch(x_all[idx], crop_padding=c.crop_padding, hflip=c.hflip, cutout=c.cutout,
                                  generator=aug_gen)  # fmt: skip
                y = y_all[idx]
                with self._autocast():
                    out = self._forward(self._batch(x))
                    logits, aux = out if isinstance(out, tuple) else (out, None)
                    loss = F.cross_entropy(logits, y)
                    total = loss if aux is None else loss + c.auxiliary_weight * F.cross_entropy(aux, y)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(total).backward()
                if c.grad_clip > 0:
                    self.scaler.unscale_(self.optimizer)
                    nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                loss_sum += loss.detach().double() * len(y)
                correct += (logits.detach().argmax(1) == y).sum()
                seen += len(y)
                if self._bar is not None:
                    self._bar.update(1)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the kernels are asynchronous: time them, not their launch
        train_seconds = time.perf_counter() - start
        self.scheduler.step()
        self.epoch += 1
        loss_total, correct_total, seen_total = distributed.all_sum(ctx, [float(loss_sum), float(correct), seen])
        row = {"epoch": float(self.epoch), "lr": lr, "drop_path_prob": drop, "train_loss": loss_total / seen_total,
               "train_acc": correct_total / seen_total, "images_per_s": seen_total / train_seconds}  # fmt: skip
        if self.epoch % c.eval_every == 0 or self.epoch == c.epochs:
            valid = self._evaluate(self.data.valid)
            row.update(valid_loss=valid["loss"], valid_acc=valid["acc"])
        return row

    def train(self, until_epoch: int | None = None, *,
              callback: Callable[[dict[str, float]], None] | None = None) -> list[dict[str, float]]:  # fmt: skip
        """Train until epoch ``until_epoch`` (default ``config.epochs``), continuing from :attr:`epoch`; returns
        the history. ``callback(row)`` runs after each epoch's checkpoint. Stopping early and resuming later gives
        the same run."""
        from tqdm.auto import tqdm

        c = self.config
        target = c.epochs if until_epoch is None else min(until_epoch, c.epochs)
        if self.out is not None and self.ctx.is_main and self._log is None:
            from nat_gym.metrics_log import MetricsLog

            self._log = MetricsLog(self.out, "final", start_epoch=self.epoch, config=self._describe())
        self._bar = tqdm(total=c.epochs * self.steps_per_epoch, initial=self.epoch * self.steps_per_epoch,
                         desc=f"train-final {self.arch['name']}"[:40], unit="step", dynamic_ncols=True,
                         disable=not (self.progress and self.ctx.is_main))  # fmt: skip
        try:
            while self.epoch < target:
                start = time.perf_counter()
                row = self.train_epoch()
                self.elapsed += time.perf_counter() - start
                row["seconds"] = self.elapsed
                self.history.append(row)
                if self._log is not None:
                    self._log.write(self.history, row)
                self._bar.set_postfix({"epoch": self.epoch, **{k: f"{row[k]:.4f}" for k in ("train_acc", "valid_acc")
                                                               if k in row}})  # fmt: skip
                if self.out is not None and (self.epoch % c.checkpoint_every == 0 or self.epoch == target):
                    self.save()
                if callback is not None:
                    callback(row)
        finally:
            self._bar.close()
            self._bar = None
        return self.history

    # ------------------------------------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def _evaluate(self, split: Split) -> dict[str, float]:
        """Mean loss and accuracy of the (eval-mode) network on ``split``, sharded over the processes."""
        ctx = self.ctx
        distributed.broadcast_buffers(ctx, self.model)
        self.model.eval()
        x_all, y_all = split.x[ctx.rank :: ctx.world_size], split.y[ctx.rank :: ctx.world_size]
        loss_sum, correct = 0.0, 0
        bs = self.config.eval_batch_size
        for i in range(0, len(y_all), bs):
            x, y = x_all[i : i + bs].to(self.device), y_all[i : i + bs].to(self.device)
            with self._autocast():
                logits = self.model(self._batch(x))
            loss_sum += float(F.cross_entropy(logits.float(), y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
        loss_sum, correct, n = distributed.all_sum(ctx, [loss_sum, correct, len(y_all)])
        return {"loss": loss_sum / n, "acc": correct / n, "images": int(n)}

    def test(self) -> dict[str, Any]:
        """Measure the test split once, after the last epoch, and write the result (``result.json``, checkpoint).
        Later calls (and resumed finished runs) return the stored result without looking at the test set again.

        Raises:
            ConfigError: training is not finished.
        """
        if self.result is not None:
            return self.result
        if self.epoch < self.config.epochs:
            raise ConfigError(f"test: the run is at epoch {self.epoch} of {self.config.epochs}; the test split is "
                              "measured once, after the last epoch")  # fmt: skip
        with torch_threads(self.config.threads, self.device):
            test = self._evaluate(self.data.test)
        last = self.history[-1] if self.history else {}
        self.result = {
            "arch": self.arch["name"], "arch_string": self.arch["string"], "dataset": self.config.dataset,
            "test_acc": test["acc"], "test_loss": test["loss"], "test_images": test["images"],
            "valid_acc": last.get("valid_acc"), "train_acc": last.get("train_acc"), "epochs": self.epoch,
            "params": self.cost.params, "madds": self.cost.madds, "aux_params": self.cost.aux_params,
            "aux_madds": self.cost.aux_madds, "seconds": self.elapsed, "world_size": self.ctx.world_size,
            "config": self.config.to_dict(),
        }  # fmt: skip
        if self.out is not None:
            self.save()
            self.write_outputs()
        return self.result

    def run(self, *, resume: bool = False) -> dict[str, Any]:
        """Resume (if asked and a checkpoint exists), train to the end, test once; returns the result."""
        if resume:
            self.resume()
        self.train()
        return self.test()

    # ------------------------------------------------------------------------------------------------ outputs
    def _describe(self) -> dict[str, Any]:
        return {"arch": self.arch, "config": self.config.to_dict(), "params": self.cost.params,
                "madds": self.cost.madds, "world_size": self.ctx.world_size}  # fmt: skip

    def write_outputs(self) -> None:
        """``result.json`` and ``learning_curves.png`` (rank 0)."""
        if self.out is None or not self.ctx.is_main:
            return
        from nat_gym.plotting import plot_learning_curves

        if self.result is not None:
            tmp = self.out / ".result.json.tmp"
            tmp.write_text(json.dumps(self.result, indent=2))
            tmp.replace(self.out / "result.json")
        csv_path = self.out / "metrics.csv"
        if csv_path.exists():
            columns = [k for k in _CURVES if any(k in r for r in self.history)
                       and not (k == "drop_path_prob" and self.config.drop_path_prob == 0)]  # fmt: skip
            plot_learning_curves(csv_path, self.out / "learning_curves.png", x="epoch", y=columns,
                                 title=f"{self.arch['name']} on {self.config.dataset}")  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run exactly (see :func:`load_final_checkpoint`)."""
        return {
            "format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, "config": self.config.to_dict(),
            "arch": self.arch, "cost": {"params": self.cost.params, "madds": self.cost.madds,
                                        "aux_params": self.cost.aux_params, "aux_madds": self.cost.aux_madds},
            "data": {"name": self.data.name, "num_classes": self.data.num_classes,
                     "in_channels": self.data.in_channels, "image_size": self.data.image_size},
            "state_dict": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "epoch": self.epoch,
            "history": list(self.history), "elapsed": self.elapsed, "result": self.result,
            "world_size": self.ctx.world_size,
        }  # fmt: skip

    def save(self, path: str | os.PathLike | None = None) -> Path | None:
        """Write the checkpoint atomically (rank 0; default ``out/checkpoint.pt``); the other ranks wait."""
        path = Path(path) if path is not None else (self.out / "checkpoint.pt" if self.out is not None else None)
        if path is None:
            raise ConfigError("checkpoint: no output folder or path was given")
        distributed.broadcast_buffers(self.ctx, self.model)
        if self.ctx.is_main:
            atomic_save(self.state_dict(), path)
        distributed.barrier(self.ctx)
        return path

    def resume(self, path: str | os.PathLike | None = None) -> bool:
        """Continue from a checkpoint (default ``out/checkpoint.pt``) if it exists; returns whether it did.

        Raises:
            CheckpointError: the file is not a final-training checkpoint, or it was saved for another architecture
                or with other settings than :attr:`FinalTrainConfig.RUN_ONLY` (the message names them).
        """
        path = Path(path) if path is not None else (self.out / "checkpoint.pt" if self.out is not None else None)
        if path is None or not path.is_file():
            return False
        payload = load_final_checkpoint(path)
        saved = FinalTrainConfig.from_dict(payload["config"])
        differ = [f.name for f in fields(FinalTrainConfig) if f.name not in FinalTrainConfig.RUN_ONLY
                  and getattr(saved, f.name) != getattr(self.config, f.name)]  # fmt: skip
        if differ:
            desc = ", ".join(f"{k}={getattr(saved, k)!r} (this run: {getattr(self.config, k)!r})" for k in differ)
            raise CheckpointError(f"checkpoint: {str(path)!r} was saved with {desc}; resume with the same values or "
                                  "choose another output folder")  # fmt: skip
        if arch_from_record(payload["arch"]) != arch_from_record(self.arch):
            raise CheckpointError(f"checkpoint: {str(path)!r} trains {payload['arch']['string']}, not "
                                  f"{self.arch['string']}")  # fmt: skip
        if int(payload.get("world_size", 1)) != self.ctx.world_size:
            warnings.warn(f"resume: the checkpoint was written by {payload.get('world_size')} processes and this run "
                          f"has {self.ctx.world_size}; it continues, but will not reproduce the original run",
                          stacklevel=2)  # fmt: skip
        self.model.load_state_dict(payload["state_dict"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        self.epoch = int(payload["epoch"])
        self.history = list(payload["history"])
        self.elapsed = float(payload.get("elapsed", 0.0))
        self.result = payload.get("result")
        return True

    def close(self) -> None:
        """Close the logs and leave the process group if this trainer joined it."""
        if self._log is not None:
            self._log.close()
            self._log = None
        self.ctx.close()


# ====================================================================================================== loading
def load_final_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a final-training checkpoint (a dict; see :meth:`FinalTrainer.state_dict`)."""
    return read_checkpoint(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION,
                           "a final-training checkpoint (nat-gym train-final writes OUT/checkpoint.pt)")  # fmt: skip


def model_from_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """The trained network of a checkpoint (CPU, eval mode) and the checkpoint's payload."""
    payload = load_final_checkpoint(path)
    config = FinalTrainConfig.from_dict(payload["config"])
    d = payload["data"]
    built = build_model(arch_from_record(payload["arch"]), config, num_classes=d["num_classes"],
                        in_channels=d["in_channels"], image_size=d["image_size"], name=payload["arch"]["name"])  # fmt: skip
    built.module.load_state_dict(payload["state_dict"])
    return built.module.eval(), payload
