"""The weight-sharing supernet: model, uniform-sampling training, checkpoints, and the default digits supernet.

Submodules: :mod:`~nat_gym.supernet.config` (configs, torch-free), :mod:`~nat_gym.supernet.model`,
:mod:`~nat_gym.supernet.train`, :mod:`~nat_gym.supernet.checkpoint`, :mod:`~nat_gym.supernet.default`.
"""

from __future__ import annotations

from typing import Any

from nat_gym.supernet.config import DEFAULT_TRAIN_CONFIG, SupernetConfig, SupernetTrainConfig

__all__ = ["Supernet", "SupernetConfig", "SupernetTrainConfig", "DEFAULT_TRAIN_CONFIG", "GroupBatchNorm2d"]


def __getattr__(name: str) -> Any:  # the model needs torch: load it on first use
    if name in ("Supernet", "GroupBatchNorm2d"):
        from nat_gym.supernet import model

        return getattr(model, name)
    raise AttributeError(f"module 'nat_gym.supernet' has no attribute {name!r}")
