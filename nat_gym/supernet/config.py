"""Configurations of the supernet and of its training (torch-free, so command-line parsing stays fast)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from nat_gym.errors import ConfigError, check_int, dataclass_from_dict
from nat_gym.ops import NAT_PLUS_PLUS_OPS, check_vocabulary

__all__ = ["SupernetConfig", "SupernetTrainConfig", "DEFAULT_TRAIN_CONFIG"]


@dataclass(frozen=True)
class SupernetConfig:
    """Everything that fixes the shape of a supernet's weights.

    Args:
        C: initial channels.
        layers: number of cells (reductions at ``layers // 3`` and ``2 * layers // 3``).
        steps: intermediate nodes per cell (genotypes with fewer steps also run).
        ops: the op vocabulary (every op on every edge slot).
        num_classes: classifier outputs.
        in_channels: image channels.
        stem_multiplier: the stem has ``stem_multiplier * C`` channels.
    """

    C: int = 8
    layers: int = 5
    steps: int = 4
    ops: tuple[str, ...] = NAT_PLUS_PLUS_OPS
    num_classes: int = 10
    in_channels: int = 1
    stem_multiplier: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", check_vocabulary(self.ops))
        for name, low in (("C", 1), ("layers", 3), ("steps", 1), ("num_classes", 2), ("in_channels", 1),
                          ("stem_multiplier", 1)):  # fmt: skip
            check_int(name, getattr(self, name), low)

    @property
    def reduction_layers(self) -> tuple[int, int]:
        return (self.layers // 3, 2 * self.layers // 3)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ops"] = list(self.ops)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SupernetConfig:
        d = dict(data)
        if "ops" in d:
            d["ops"] = tuple(d["ops"])
        return dataclass_from_dict(cls, d, "supernet config")

    def diff(self, other: SupernetConfig) -> dict[str, tuple[Any, Any]]:
        """Fields that differ: ``{name: (self's, other's)}``."""
        return {f.name: (getattr(self, f.name), getattr(other, f.name)) for f in fields(self)
                if getattr(self, f.name) != getattr(other, f.name)}  # fmt: skip


@dataclass
class SupernetTrainConfig:
    """Arguments of a supernet training run.

    Args:
        epochs: passes over the training split.
        batch_size: images per SGD step (one sampled architecture per step).
        lr: initial learning rate (cosine decay to ``lr_min``).
        lr_min: final learning rate.
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        grad_clip: gradient-norm clipping.
        seed: seeds the architecture sampling and the data order.
        eval_archs: random architectures scored on the validation split after each epoch (0 = never).
        checkpoint_every: epochs between checkpoints (the last epoch is always saved).
    """

    epochs: int = 60
    batch_size: int = 64
    lr: float = 0.01
    lr_min: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    seed: int = 0
    eval_archs: int = 0
    checkpoint_every: int = 10

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name}: expected a positive integer, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr: expected a positive learning rate, got {self.lr!r}")


DEFAULT_TRAIN_CONFIG = SupernetTrainConfig(epochs=250, lr=0.05, checkpoint_every=10)
"""Training of the default digits supernet (a few minutes on 2 CPU cores; see the README for its accuracy)."""
