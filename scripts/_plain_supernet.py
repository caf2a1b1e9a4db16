"""The plain baseline of the benchmarks: a single-path supernet written the straightforward way.

This is the supernet a user would write from the DARTS / NAT reference code: one ``nn.Module`` per (cell, edge, op)
built by the DARTS op factory (:func:`nat_gym.ops.build_op`: ``nn.Conv2d``, ``nn.MaxPool2d`` / ``nn.AvgPool2d``,
``nn.BatchNorm2d(affine=False)``), NCHW tensors, BN modules in train mode (batch statistics, running statistics
updated as usual), no activation caches, and a plain Python loop over the nodes of the sampled cell. It computes the
same function as :class:`nat_gym.supernet.Supernet` of the same :class:`~nat_gym.supernet.config.SupernetConfig`
(same parameter names; :func:`copy_weights` copies a nat-gym supernet's weights in, and the benchmarks check that
the logits then agree), so a timing ratio between the two measures only how they compute it.

The authors' NAT++ code cannot ship with nat-gym; this baseline stands in for it in every benchmark ratio.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nat_gym.data import Split
from nat_gym.evaluator import CallableEvaluator
from nat_gym.genotype import Cell, Genotype
from nat_gym.op_modules import FactorizedReduce, ReLUConvBN
from nat_gym.ops import build_op, op_spec
from nat_gym.supernet.config import SupernetConfig
from nat_gym.supernet.model import Supernet


def _edge_op(op: str, c: int, stride: int) -> nn.Module:
    module = build_op(op, c, stride, affine=False)
    if op_spec(op).is_pool:  # nat-gym's supernet normalises every pool's output (DARTS's search network does)
        module = nn.Sequential(module, nn.BatchNorm2d(c, affine=False))
    return module


class PlainCell(nn.Module):
    def __init__(self, cfg: SupernetConfig, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool):
        super().__init__()
        self.reduction, self.steps = reduction, cfg.steps
        self.preprocess0 = FactorizedReduce(c_pp, c, False) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0, False)
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0, affine=False)
        self.edges = nn.ModuleDict()
        for dst in range(2, cfg.steps + 2):
            for src in range(dst):
                stride = 2 if reduction and src < 2 else 1
                self.edges[f"{src}_{dst}"] = nn.ModuleDict({op: _edge_op(op, c, stride) for op in cfg.ops})

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, cell: Cell) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for dst in range(2, self.steps + 2):
            inputs = [self.edges[f"{e.src}_{dst}"][e.op](states[e.src]) for e in cell.edges if e.dst == dst]
            # a node the genotype does not have (it has fewer steps than the supernet) is zeros
            states.append(sum(inputs[1:], inputs[0]) if inputs else torch.zeros_like(states[2]))
        return torch.cat([s if n in cell.concat else torch.zeros_like(s) for n, s in enumerate(states) if n >= 2], 1)


class PlainSupernet(nn.Module):
    """The plain single-path supernet (see the module docstring).

    Shapes:
        - x: ``[B, in_channels, H, W]``
        - output: logits ``[B, num_classes]``
    """

    def __init__(self, config: SupernetConfig) -> None:
        super().__init__()
        cfg = self.config = config
        c_stem = cfg.stem_multiplier * cfg.C
        self.stem = nn.Sequential(nn.Conv2d(cfg.in_channels, c_stem, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c_stem, affine=False))  # fmt: skip
        c_pp, c_p, c = c_stem, c_stem, cfg.C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(cfg.layers):
            reduction = i in cfg.reduction_layers
            c = 2 * c if reduction else c
            self.cells.append(PlainCell(cfg, c_pp, c_p, c, reduction, reduction_prev))
            reduction_prev = reduction
            c_pp, c_p = c_p, cfg.steps * c
        self.classifier = nn.Linear(c_p, cfg.num_classes)

    def forward(self, x: torch.Tensor, genotype: Genotype) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, genotype.reduce if cell.reduction else genotype.normal)
        return self.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))


def copy_weights(plain: PlainSupernet, supernet: Supernet) -> PlainSupernet:
    """Copy ``supernet``'s weights into ``plain`` (the parameter names are the same); returns ``plain``."""
    ours = dict(supernet.named_parameters())
    theirs = dict(plain.named_parameters())
    if ours.keys() != theirs.keys():
        raise ValueError(f"supernet: parameter names differ: {sorted(ours.keys() ^ theirs.keys())[:5]}")
    with torch.no_grad():
        for name, p in theirs.items():
            p.copy_(ours[name])
    return plain


def plain_train_step(net: PlainSupernet, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                     genotype: Genotype, grad_clip: float = 5.0) -> torch.Tensor:  # fmt: skip
    """One SGD step on one sampled architecture, written as the reference code writes it; returns the loss.

    ``net`` must be in train mode: the caller switches it once. The search loops of DARTS (``train``) and NAT
    (``update_w``) call ``model.train()`` before every step, which walks the supernet's 4,500 modules (20-35 ms on
    digits, a fifth of a step); the baseline leaves that out, so a ratio against it measures the step alone
    (``bench_supernet.py --reference-dir`` times the authors' switch separately)."""
    optimizer.zero_grad()
    loss = F.cross_entropy(net(x, genotype), y)
    loss.backward()
    nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
    optimizer.step()
    return loss.detach()


def plain_evaluator(net: PlainSupernet, split: Split, batch_size: int | None = None) -> CallableEvaluator:
    """A reward oracle over the plain supernet with the minibatches of a :class:`~nat_gym.evaluator.SupernetEvaluator`
    (consecutive slices of ``batch_size`` images; ``None``: the whole split) on the device of ``net``: accuracy under
    ``torch.no_grad``, with the BN modules in train mode (batch statistics, as the papers' reward)."""
    bs = len(split) if batch_size is None else min(batch_size, len(split))
    device = next(net.parameters()).device
    batches = [(split.x[i : i + bs].to(device), split.y[i : i + bs].to(device)) for i in range(0, len(split), bs)]

    @torch.no_grad()
    def accuracy(genotype: Genotype, batch: int | None) -> float:
        chosen: Sequence = batches if batch is None else [batches[batch]]
        correct = sum(int((net(x, genotype).argmax(1) == y).sum()) for x, y in chosen)
        return correct / sum(len(y) for _, y in chosen)

    net.train()
    return CallableEvaluator(accuracy, num_batches=len(batches), takes_batch=True, version="plain-supernet")
