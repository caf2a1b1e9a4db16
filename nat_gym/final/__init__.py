"""Final training from scratch (the DARTS protocol): ``nat-gym train-final``.

Submodules: :mod:`~nat_gym.final.config` (arguments and presets, torch-free), :mod:`~nat_gym.final.model` (the
network of an architecture and its cost), :mod:`~nat_gym.final.augment`, :mod:`~nat_gym.final.distributed` (DDP
under torchrun), :mod:`~nat_gym.final.train` (:class:`FinalTrainer`, checkpoints), :mod:`~nat_gym.final.stats`
(confidence intervals and verdicts over seeds), :mod:`~nat_gym.final.cli`.
"""

from __future__ import annotations

from typing import Any

from nat_gym.final.config import DARTS_CIFAR10, DIGITS, PRESETS, FinalTrainConfig

__all__ = ["FinalTrainConfig", "FinalTrainer", "PRESETS", "DIGITS", "DARTS_CIFAR10", "load_final_checkpoint",
           "model_from_checkpoint"]  # fmt: skip


def __getattr__(name: str) -> Any:  # the trainer needs torch: load it on first use
    if name in ("FinalTrainer", "load_final_checkpoint", "model_from_checkpoint"):
        from nat_gym.final import train

        return getattr(train, name)
    raise AttributeError(f"module 'nat_gym.final' has no attribute {name!r}")
