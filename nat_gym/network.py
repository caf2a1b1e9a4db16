"""The DARTS CIFAR stand-alone network built from a genotype (the structure of DARTS's ``NetworkCIFAR``).

Stem (3x3 conv to ``3 C`` channels + BN), ``layers`` cells with reductions (channels doubled, stride-2 edges out of
the input nodes) at layers ``layers // 3`` and ``2 * layers // 3``, global average pooling and a linear classifier.
With ``auxiliary=True`` an auxiliary classifier (DARTS ``AuxiliaryHeadCIFAR``) reads the output of the second
reduction cell in training mode; its parameters are named ``auxiliary_head.*``. ``affine`` is the BN flag of the
cells (stem and auxiliary head always use affine BN). :mod:`nat_gym.cost` gives the exact parameter and MAdds counts
of this network without building it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nat_gym.cost import NetworkCost, check_aux_head_input, check_network_args, network_cost, reduction_layers
from nat_gym.errors import ConfigError
from nat_gym.genotype import Cell, Genotype
from nat_gym.op_modules import FactorizedReduce, Identity, ReLUConvBN
from nat_gym.ops import build_op

__all__ = ["Network", "NetworkCell", "AuxiliaryHeadCIFAR", "drop_path", "count_parameters"]


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples with probability ``drop_prob`` and rescale the rest by ``1 / (1 - drop_prob)`` (DARTS)."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    # a comparison, not ``bernoulli_(keep)``: torch.compile then keeps ``drop_prob`` symbolic (no recompilation
    # each time a training loop changes it)
    mask = (torch.rand(x.size(0), 1, 1, 1, device=x.device) < keep).to(x.dtype)
    return x / keep * mask


class NetworkCell(nn.Module):
    """One cell: preprocess both inputs to ``C`` channels, run one op per edge, sum per node, concat ``concat``."""

    def __init__(self, cell: Cell, C_pp: int, C_p: int, C: int, reduction: bool, reduction_prev: bool,
                 affine: bool = True) -> None:  # fmt: skip
        super().__init__()
        self.reduction = reduction
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(C_pp, C, affine=affine)
        else:
            self.preprocess0 = ReLUConvBN(C_pp, C, 1, 1, 0, affine=affine)
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, affine=affine)
        self._ops = nn.ModuleList(
            build_op(e.op, C, 2 if reduction and e.src < 2 else 1, affine=affine) for e in cell.edges
        )
        self._edges = tuple((e.src, e.dst) for e in cell.edges)
        self._steps = cell.steps
        self._concat = tuple(cell.concat)
        self.multiplier = len(cell.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states: list[Any] = [self.preprocess0(s0), self.preprocess1(s1)] + [None] * self._steps
        for op, (src, dst) in zip(self._ops, self._edges, strict=True):
            h = op(states[src])
            if self.training and drop_prob > 0.0 and not isinstance(op, Identity):
                h = drop_path(h, drop_prob)
            states[dst] = h if states[dst] is None else states[dst] + h
        return torch.cat([states[i] for i in self._concat], dim=1)


class AuxiliaryHeadCIFAR(nn.Module):
    """DARTS's auxiliary classifier; expects 8x8 input maps (up to 10x10)."""

    def __init__(self, C: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=False),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_aux_head_input((x.shape[-2], x.shape[-1]))
        x = self.features(x)
        return self.classifier(x.view(x.size(0), -1))


class Network(nn.Module):
    """DARTS ``NetworkCIFAR`` for ``genotype``.

    Args:
        genotype: the normal and reduction cells.
        C: initial channels (the stem outputs ``3 C``; doubled at each reduction).
        layers: number of cells (>= 3); reductions at ``layers // 3`` and ``2 * layers // 3``.
        num_classes: classifier outputs.
        in_channels: image channels.
        auxiliary: build the auxiliary head (used in training mode only).
        drop_path_prob: DARTS drop-path probability on the non-identity ops, in training mode; a plain attribute,
            so a training loop can change it per epoch.
        affine: learned affine BN in the cells.
        input_size: optional image size (``int`` or ``(H, W)``) to check the auxiliary head at construction (it is
            checked at forward anyway) and to default :meth:`cost`.

    ``forward`` returns the logits, or ``(logits, aux_logits)`` in training mode with ``auxiliary=True``.
    """

    def __init__(self, genotype: Genotype, C: int = 36, layers: int = 20, num_classes: int = 10,
                 in_channels: int = 3, auxiliary: bool = False, drop_path_prob: float = 0.0, affine: bool = True,
                 input_size: int | tuple[int, int] | None = None) -> None:  # fmt: skip
        super().__init__()
        if not isinstance(genotype, Genotype):
            raise ConfigError(f"genotype: expected a nat_gym Genotype, got {type(genotype).__name__}")
        check_network_args(C, layers, num_classes, 32 if input_size is None else input_size, in_channels)
        if (
            isinstance(drop_path_prob, bool)
            or not isinstance(drop_path_prob, (int, float))
            or not (0.0 <= drop_path_prob < 1.0)
        ):
            raise ConfigError(f"drop_path_prob: expected a probability in [0, 1), got {drop_path_prob!r}")
        if auxiliary and input_size is not None:
            network_cost(
                genotype, C, layers, num_classes, input_size, in_channels, auxiliary=True
            )  # validates
        self.genotype = genotype
        self.C, self.layers, self.num_classes, self.in_channels = C, layers, num_classes, in_channels
        self.auxiliary, self.affine, self.input_size = bool(auxiliary), bool(affine), input_size
        self.drop_path_prob = float(drop_path_prob)

        c_stem = 3 * C
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem)
        )
        C_pp, C_p, C_cur = c_stem, c_stem, C
        self._aux_layer = reduction_layers(layers)[1]
        reduction_prev = False
        cells = []
        C_aux = C_p
        for i in range(layers):
            reduction = i in reduction_layers(layers)
            if reduction:
                C_cur *= 2
            cell = NetworkCell(genotype.reduce if reduction else genotype.normal, C_pp, C_p, C_cur, reduction,
                               reduction_prev, affine=affine)  # fmt: skip
            cells.append(cell)
            reduction_prev = reduction
            C_pp, C_p = C_p, cell.multiplier * C_cur
            if i == self._aux_layer:
                C_aux = C_p
        self.cells = nn.ModuleList(cells)
        if self.auxiliary:
            self.auxiliary_head = AuxiliaryHeadCIFAR(C_aux, num_classes)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        logits_aux = None
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self._aux_layer and self.auxiliary and self.training:
                logits_aux = self.auxiliary_head(s1)
        out = self.global_pooling(s1)
        logits = self.classifier(out.flatten(1))
        if logits_aux is not None:
            return logits, logits_aux
        return logits

    def count_parameters(self, exclude_auxiliary: bool = True) -> int:
        """Number of parameters, without the auxiliary head by default."""
        return count_parameters(self, exclude_auxiliary)

    def cost(self, input_size: int | tuple[int, int] | None = None) -> NetworkCost:
        """The analytic cost (:func:`nat_gym.cost.network_cost`) of this network on ``input_size`` images
        (default: the construction ``input_size``, else 32)."""
        size = (
            input_size if input_size is not None else (self.input_size if self.input_size is not None else 32)
        )
        if isinstance(size, list):
            size = tuple(size)
        return network_cost(self.genotype, self.C, self.layers, self.num_classes, size, self.in_channels,
                            self.auxiliary, self.affine)  # fmt: skip


def count_parameters(module: nn.Module, exclude_auxiliary: bool = True) -> int:
    """``sum(p.numel())`` over ``module``'s parameters, skipping those named ``auxiliary*`` if asked."""
    return sum(
        p.numel()
        for name, p in module.named_parameters()
        if not (exclude_auxiliary and name.startswith("auxiliary"))
    )
