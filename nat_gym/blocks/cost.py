"""Exact parameters and FLOPs of a block and of the network that stacks it (pure arithmetic, no torch).

The figures equal what :class:`nat_gym.block_network.BlockNetwork` holds (``sum(p.numel())``) and computes (a
forward-hook counter in ``tests/test_blocks_network.py``). FLOPs are counted as **multiply-adds**, the convention of
:mod:`nat_gym.cost` (and of the FLOPs tables of NAS papers): one per weight use for convolutions and linear layers,
one per window element for pooling; identity, BN, ReLU, additions and concatenation count 0. BN is affine (2 ``C``
parameters); convolutions have no bias; the classifier has one.

**Block** at width ``C`` and size ``H x W`` (every layer keeps both):

- convolution ``k``: ReLU, ``k x k`` conv ``C -> C`` (same padding), BN: ``k^2 C^2 + 2C`` parameters,
  ``k^2 C^2 H W`` FLOPs;
- max / average pooling ``k`` (stride 1, same padding): ``k^2 C H W`` FLOPs;
- identity, add: free; concat: a 1x1 projection ``2C -> C`` (ReLU, conv, BN): ``2 C^2 + 2C``, ``2 C^2 H W``;
- the output: the ``L`` leaves concatenated and, when ``L > 1``, projected ``L C -> C`` the same way
  (``L C^2 + 2C``, ``L C^2 H W``).

**Network** (BlockQNN's CIFAR stacking, CVPR 2018 Fig. 4): stem (3x3 conv ``in_channels -> C``, BN), then three
stages of ``N`` blocks at widths ``C, 2C, 4C``; before stages 2 and 3 a transition halves the size and doubles the
width: 2x2 max pool with stride 2 (``ceil(H / 2)`` rows), then a 1x1 projection (ReLU, conv ``C_s -> 2 C_s``, BN);
then ReLU, global average pooling (``4C H_3 W_3`` FLOPs) and a linear classifier (``4C * classes`` weights + biases).
"""

from __future__ import annotations

import numbers
from typing import Any

from nat_gym.blocks.nsc import AVG_POOL, CONCAT, CONV, MAX_POOL, Block
from nat_gym.cost import Cost
from nat_gym.errors import ConfigError

__all__ = ["STAGES", "block_cost", "network_cost", "check_stack_args", "stage_shapes"]

STAGES = 3
"""Stages of the stacked network (two stride-2 transitions between them)."""


def _projection(c_in: int, c_out: int, hw: int) -> Cost:
    """ReLU, 1x1 conv, BN."""
    return Cost(c_in * c_out + 2 * c_out, c_in * c_out * hw)


def block_cost(block: Block, C: int, H: int, W: int | None = None) -> Cost:
    """Parameters and FLOPs (multiply-adds) of one block at width ``C`` on ``H x W`` maps (``W`` defaults to ``H``).

    Raises:
        ConfigError: ``C``, ``H`` or ``W`` is not a positive integer.
    """
    W = H if W is None else W
    for name, value in (("C", C), ("H", H), ("W", W)):
        _check_positive(name, value)
    hw = H * W
    total = Cost()
    for layer in block.layers:
        k = layer.kernel
        if layer.type == CONV:
            total += Cost(k * k * C * C + 2 * C, k * k * C * C * hw)
        elif layer.type in (MAX_POOL, AVG_POOL):
            total += Cost(0, k * k * C * hw)
        elif layer.type == CONCAT:
            total += _projection(2 * C, C, hw)  # identity and add are free
    leaves = len(block.leaves)
    if block.layers and leaves > 1:
        total += _projection(leaves * C, C, hw)
    return total


def stage_shapes(C: int, input_size: int) -> list[tuple[int, int]]:
    """``(width, size)`` of each stage: ``(C * 2^s, ceil(input_size / 2^s))``."""
    out, size = [], input_size
    for s in range(STAGES):
        out.append((C << s, size))
        size = -(-size // 2)
    return out


def check_stack_args(C: Any, N: Any, input_size: Any, in_channels: Any, num_classes: Any) -> None:
    """Raise :class:`~nat_gym.errors.ConfigError` naming the first argument that is not a positive integer
    (``num_classes`` must be >= 2)."""
    for name, value in (("C", C), ("N", N), ("input_size", input_size), ("in_channels", in_channels)):
        _check_positive(name, value)
    _check_positive("num_classes", num_classes, 2)


def network_cost(block: Block, *, C: int = 32, N: int = 4, input_size: int = 32, in_channels: int = 3,
                 num_classes: int = 10) -> Cost:  # fmt: skip
    """Parameters and FLOPs of the stacked network (see the module docstring) for one forward pass of one image.

    Args:
        block: the block stacked ``N`` times per stage.
        C: the stem's width (stage widths ``C, 2C, 4C``). N: blocks per stage.
        input_size: image height and width. in_channels: image channels. num_classes: classifier outputs.

    Raises:
        ConfigError: an argument out of range (the message names it).
    """
    check_stack_args(C, N, input_size, in_channels, num_classes)
    shapes = stage_shapes(C, input_size)
    total = Cost(9 * in_channels * C + 2 * C, 9 * in_channels * C * input_size**2)
    for s, (width, size) in enumerate(shapes):
        if s:
            prev = shapes[s - 1][0]
            total += Cost(0, 4 * prev * size * size) + _projection(prev, width, size * size)
        one = block_cost(block, width, size)
        total += Cost(N * one.params, N * one.madds)
    width, size = shapes[-1]
    total += Cost(width * num_classes + num_classes, width * size * size + width * num_classes)
    return total


def _check_positive(name: str, value: Any, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ConfigError(f"{name}: expected an integer >= {low}, got {value!r}")
