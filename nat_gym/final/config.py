"""Arguments of a final (from-scratch) training run, and the two presets: the digits default and the DARTS protocol.

Torch-free, so the ``nat-gym`` parser stays fast. Every field is a ``nat-gym train-final`` flag
(``--field-name``); ``--preset`` picks the defaults of the unset ones.

The DARTS protocol (DARTS, Liu et al. 2019, section 3.3 / appendix A.2; NAT.md section 5), :data:`DARTS_CIFAR10`:
CIFAR-10, 36 initial channels, 20 cells, 600 epochs, batch 96, SGD lr 0.025 with cosine decay to 0, momentum 0.9,
weight decay 3e-4, drop-path 0.2 (ramped linearly from 0 over the run), auxiliary head weighted 0.4, cutout 16,
random crop with 4-pixel padding and horizontal flips, gradient clipping at 5. :data:`DIGITS` scales it to the 8x8
images of scikit-learn's digits and 2 CPU cores (see the README for how the size was chosen).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import Any

from nat_gym.errors import ConfigError, check_int, dataclass_from_dict

__all__ = ["FinalTrainConfig", "PRESETS", "DIGITS", "DARTS_CIFAR10", "PRECISIONS"]

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
"""``precision`` values: ``auto`` is bf16 autocast on CUDA (fp16 + gradient scaling where bf16 is unsupported) and
fp32 on the CPU."""


@dataclass(frozen=True)
class FinalTrainConfig:
    """Every knob of a final training run; the defaults are the digits preset (:data:`DIGITS`).

    Data, network, the DARTS protocol items, and how the run executes. Fields that do not change the trained
    network (:attr:`RUN_ONLY`) may differ when a run is resumed.
    """

    # data
    dataset: str = "digits"
    data_root: str | None = None
    data_seed: int = 0
    image_size: int | None = None
    train_fraction: float = 0.9
    # network
    channels: int = 8
    layers: int = 5
    # the DARTS protocol
    epochs: int = 20
    batch_size: int = 96
    lr: float = 0.025
    lr_min: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    drop_path_prob: float = 0.0
    auxiliary_weight: float = 0.0
    cutout: int = 2
    crop_padding: int = 0
    hflip: bool = False
    # execution
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    compile: bool = False
    threads: int | None = 1
    eval_batch_size: int = 500
    eval_every: int = 1
    checkpoint_every: int = 1

    RUN_ONLY = ("device", "threads", "eval_batch_size", "eval_every", "checkpoint_every", "compile",
                "data_root")  # fmt: skip
    """Fields that may change on ``--resume``; any other difference is a :class:`~nat_gym.errors.CheckpointError`
    (``epochs`` included: the cosine schedule depends on it)."""

    HELP = {
        "dataset": "digits (embedded), cifar10, cifar100 or fake",
        "data_root": "folder holding CIFAR's extracted files (ignored for digits and fake)",
        "data_seed": "seed of the train / valid / test split",
        "image_size": "digits only: 8 (native), 16 or 32 (bilinear upsampling; the auxiliary head needs 29-40 "
        "pixels); none = 8",
        "train_fraction": "CIFAR only: the share of the 50,000 training images trained on; the rest is the "
        "validation split that the per-epoch report uses (DARTS trained on all 50,000 and reported the test set "
        "every epoch; we never look at the test set before the end)",
        "channels": "initial channels C (the stem has 3C; doubled at each reduction)",
        "layers": "cells (reductions at layers//3 and 2*layers//3)",
        "epochs": "training epochs",
        "batch_size": "images per SGD step, over all processes (DDP splits it evenly)",
        "lr": "initial SGD learning rate (cosine decay per epoch to lr_min)",
        "lr_min": "final learning rate of the cosine schedule (at most lr)",
        "momentum": "SGD momentum, in [0, 1)",
        "weight_decay": "SGD weight decay",
        "grad_clip": "gradient-norm clipping (0 = none)",
        "drop_path_prob": "drop-path probability, ramped linearly from 0 at the first epoch (DARTS); it zeroes whole "
        "samples in cells whose nodes have a single non-null input (VGG, MobileNetV2), which then fail to train",
        "auxiliary_weight": "weight of the auxiliary head's loss (0 = no head); the head reads 8x8 maps after the "
        "second reduction, so it needs 29-40 pixel images",
        "cutout": "side of the cutout square in pixels (0 = none)",
        "crop_padding": "random crop after zero-padding by this many pixels (0 = none)",
        "hflip": "random horizontal flips (CIFAR yes; digits no: digits are not mirror-symmetric)",
        "seed": "seed of the initialisation, data order, augmentation and drop-path",
        "device": "auto (CUDA when available), cpu, cuda or cuda:N (torchrun: cuda:LOCAL_RANK)",
        "precision": "auto (bf16 autocast on CUDA, fp32 on the CPU), fp32, bf16 or fp16 (with gradient scaling)",
        "channels_last": "channels-last memory format (faster on CUDA, and 1.5-1.9x on the CPU: "
        "scripts/bench_final.py)",
        "compile": "torch.compile the network (one compilation per mode; CUDA)",
        "threads": "intra-op CPU threads (none = torch's choice)",
        "eval_batch_size": "images per evaluation batch",
        "eval_every": "epochs between validation reports (the last epoch always reports)",
        "checkpoint_every": "epochs between checkpoints (the last epoch is always saved)",
    }
    """One line per field: the ``--help`` text of its flag."""

    def __post_init__(self) -> None:
        # ``dataset`` is checked by nat_gym.data.load_dataset (importing it here would import torch)
        for name, low in (("channels", 1), ("layers", 3), ("epochs", 1), ("batch_size", 2), ("eval_batch_size", 1),
                          ("eval_every", 1), ("checkpoint_every", 1), ("cutout", 0), ("crop_padding", 0),
                          ("data_seed", 0), ("seed", 0)):  # fmt: skip
            check_int(name, getattr(self, name), low)
        for name in ("image_size", "threads"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), 1)
        for name, low, high in (("drop_path_prob", 0.0, 1.0), ("train_fraction", 0.0, 1.0)):
            value = getattr(self, name)
            if not _is_number(value) or not (low <= value < high) or (name == "train_fraction" and value == 0):
                raise ConfigError(f"{name}: expected a number in [{low}, {high}), got {value!r}")
        for name in ("lr", "lr_min", "weight_decay", "grad_clip", "auxiliary_weight"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise ConfigError(f"{name}: expected a finite number >= 0, got {value!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr: expected a positive learning rate, got {self.lr!r}")
        if self.lr_min > self.lr:
            raise ConfigError(f"lr_min: expected at most lr = {self.lr!r}, got {self.lr_min!r}")
        if not _is_number(self.momentum) or not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum: expected a number in [0, 1), got {self.momentum!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision: expected one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("hflip", "channels_last", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}: expected true or false, got {getattr(self, name)!r}")

    def replace(self, **changes: Any) -> FinalTrainConfig:
        """A copy with ``changes`` (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinalTrainConfig:
        """The config of :meth:`to_dict` (as stored in checkpoints); unknown keys are an error."""
        return dataclass_from_dict(cls, data, "config")


def _is_number(value: Any) -> bool:
    """A finite int or float (``nan`` and ``inf`` are not: they pass every ``<`` / ``>=`` check unnoticed)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


DIGITS = FinalTrainConfig()
"""The default: digits 8x8, scaled to 2 CPU cores (README: how the size and budget were chosen)."""

DARTS_CIFAR10 = FinalTrainConfig(
    dataset="cifar10", channels=36, layers=20, epochs=600, batch_size=96, lr=0.025, lr_min=0.0, momentum=0.9,
    weight_decay=3e-4, grad_clip=5.0, drop_path_prob=0.2, auxiliary_weight=0.4, cutout=16, crop_padding=4, hflip=True,
)  # fmt: skip
"""The DARTS CIFAR-10 protocol (NAT.md section 5); DARTS_V2 has 3.35M parameters here, auxiliary head excluded."""

PRESETS: dict[str, FinalTrainConfig] = {"digits": DIGITS, "darts-cifar10": DARTS_CIFAR10}
"""``--preset`` name -> the defaults of a run."""
