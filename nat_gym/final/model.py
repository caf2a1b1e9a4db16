"""The network a final training run trains, with its exact cost and a record that rebuilds it from a checkpoint.

Today an architecture is a cell genotype (:class:`~nat_gym.genotype.Genotype`), built as the DARTS stand-alone
network :class:`~nat_gym.network.Network` and costed by :func:`nat_gym.cost.network_cost`. The trainer only needs
what :class:`FinalModel` holds: an ``nn.Module`` whose ``forward(x)`` returns logits (or ``(logits, aux_logits)`` in
training mode when it has an auxiliary head), optionally a float attribute ``drop_path_prob``, its cost, and a
JSON-ready ``arch`` record. Another search space (e.g. BlockQNN blocks) plugs in as one more ``kind`` in
:func:`resolve_arch`, :func:`build_model` and :func:`arch_from_record`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nat_gym import genotypes
from nat_gym.cost import NetworkCost
from nat_gym.errors import CheckpointError
from nat_gym.final.config import FinalTrainConfig
from nat_gym.genotype import Genotype
from nat_gym.network import Network

__all__ = ["FinalModel", "resolve_arch", "build_model", "arch_record", "arch_from_record"]


@dataclass(frozen=True)
class FinalModel:
    """A network to train from scratch.

    Attributes:
        module: the ``nn.Module`` (on the CPU, freshly initialised).
        cost: params and MAdds of one inference (auxiliary head apart), from the analytic cost model.
        arch: JSON-ready record of the architecture (:func:`arch_record`).
    """

    module: nn.Module
    cost: NetworkCost
    arch: dict[str, Any]


def resolve_arch(arch: str | os.PathLike | Genotype) -> Genotype:
    """An architecture from what a user typed: a registered name, a JSON file or string, or a genotype value
    (:func:`nat_gym.genotypes.resolve`)."""
    return genotypes.resolve(arch)


def arch_record(arch: Genotype, name: str | None = None) -> dict[str, Any]:
    """``{"kind": "genotype", "name", "string", "genotype"}``: what :func:`arch_from_record` reads back."""
    return {"kind": "genotype", "name": name or str(arch), "string": str(arch), "genotype": arch.to_dict()}


def arch_from_record(record: dict[str, Any]) -> Genotype:
    """The architecture of a checkpoint's ``arch`` record."""
    if not isinstance(record, dict) or record.get("kind") != "genotype":
        raise CheckpointError(f"checkpoint: arch record of unknown kind {record.get('kind')!r}; expected 'genotype'")
    return Genotype.from_dict(record["genotype"])


def build_model(arch: Genotype, config: FinalTrainConfig, *, num_classes: int, in_channels: int,
                image_size: int, name: str | None = None) -> FinalModel:  # fmt: skip
    """Build the network of ``arch`` for ``config`` (channels, layers, auxiliary head if ``auxiliary_weight > 0``),
    initialised from ``torch.manual_seed(config.seed)`` without touching the caller's random state.

    Raises:
        ConfigError: a bad network configuration, or an auxiliary head on images it cannot read (it needs 8-10
            pixel maps after the two reductions: 29-40 pixel images).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        net = Network(arch, C=config.channels, layers=config.layers, num_classes=num_classes,
                      in_channels=in_channels, auxiliary=config.auxiliary_weight > 0, input_size=image_size)  # fmt: skip
    return FinalModel(net, net.cost(image_size), arch_record(arch, name))
