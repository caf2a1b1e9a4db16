"""The network that stacks a BlockQNN block: a plain ``nn.Module`` any trainer can train.

:class:`BlockNetwork` ``(block, C, N, input_size, in_channels, num_classes)`` is BlockQNN's CIFAR stacking (CVPR 2018
Fig. 4): stem, ``N`` blocks per stage over three stages, a stride-2 transition (2x2 max pool, 1x1 projection that
doubles the width) between stages, global average pooling and a linear classifier. :class:`BlockModule` is one block
at width ``C``: every layer keeps ``C`` channels and the size (same padding, stride 1), a concat is projected back
to ``C`` by a 1x1 ReLU-conv-BN, and the leaves are concatenated and projected the same way, so shapes always agree on
add and concat. :mod:`nat_gym.blocks.cost` gives the exact parameter and FLOPs counts without building anything.
"""

from __future__ import annotations

import torch
from torch import nn

from nat_gym.blocks.cost import block_cost, check_stack_args, network_cost, stage_shapes
from nat_gym.blocks.nsc import ADD, AVG_POOL, CONCAT, CONV, MAX_POOL, Block
from nat_gym.cost import Cost
from nat_gym.op_modules import ReLUConvBN

__all__ = ["BlockModule", "BlockNetwork"]


def _layer_module(layer_type: int, kernel: int, C: int) -> nn.Module:
    if layer_type == CONV:
        return ReLUConvBN(C, C, kernel, 1, kernel // 2)
    if layer_type == MAX_POOL:
        return nn.MaxPool2d(kernel, stride=1, padding=kernel // 2)
    if layer_type == AVG_POOL:
        return nn.AvgPool2d(kernel, stride=1, padding=kernel // 2, count_include_pad=False)
    if layer_type == CONCAT:
        return ReLUConvBN(2 * C, C, 1, 1, 0)
    return nn.Identity()  # identity and add (the sum needs no module)


class BlockModule(nn.Module):
    """One block at width ``C``: ``[B, C, H, W] -> [B, C, H, W]`` (see the module docstring).

    Args:
        block: the :class:`~nat_gym.blocks.nsc.Block`.
        C: channels of the input, of every layer and of the output.

    Shapes:
        - **input:** :math:`[B, C, H, W]`; **output:** :math:`[B, C, H, W]`
    """

    def __init__(self, block: Block, C: int) -> None:
        super().__init__()
        self.block, self.C = block, C
        for layer in block.layers:  # named after the NSC index: layer1, layer2, ...
            self.add_module(f"layer{layer.index}", _layer_module(layer.type, layer.kernel, C))
        self._plan = tuple((layer.type, layer.inputs) for layer in block.layers)
        self._leaves = block.leaves
        self.output = ReLUConvBN(len(self._leaves) * C, C, 1, 1, 0) if len(self._leaves) > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [x]
        for i, (kind, inputs) in enumerate(self._plan, start=1):
            module = self._modules[f"layer{i}"]
            if kind == ADD:
                states.append(states[inputs[0]] + states[inputs[1]])
            elif kind == CONCAT:
                states.append(module(torch.cat([states[inputs[0]], states[inputs[1]]], dim=1)))
            else:
                states.append(module(states[inputs[0]]))
        if self.output is None:
            return states[self._leaves[0]]
        return self.output(torch.cat([states[i] for i in self._leaves], dim=1))

    def cost(self, H: int, W: int | None = None) -> Cost:
        """Exact parameters and FLOPs on ``H x W`` maps (:func:`nat_gym.blocks.cost.block_cost`)."""
        return block_cost(self.block, self.C, H, W)


class BlockNetwork(nn.Module):
    """The stacked network of a block (BlockQNN's CIFAR layout; see the module docstring).

    Args:
        block: the block stacked ``N`` times per stage.
        C: the stem's width; the three stages have ``C``, ``2C`` and ``4C`` channels.
        N: blocks per stage.
        input_size: image height and width (the network accepts any size; this one is used by :meth:`cost`).
        in_channels: image channels. num_classes: classifier outputs.

    Raises:
        ConfigError: an argument out of range (the message names it).

    Shapes:
        - **input:** :math:`[B, \\text{in\\_channels}, H, W]`; **output:** logits :math:`[B, \\text{num\\_classes}]`
    """

    def __init__(self, block: Block, C: int = 32, N: int = 4, input_size: int = 32, in_channels: int = 3,
                 num_classes: int = 10) -> None:  # fmt: skip
        super().__init__()
        check_stack_args(C, N, input_size, in_channels, num_classes)
        self.block, self.C, self.N = block, C, N
        self.input_size, self.in_channels, self.num_classes = input_size, in_channels, num_classes
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        stages: list[nn.Module] = []
        prev = C
        for s, (width, _) in enumerate(stage_shapes(C, input_size)):
            if s:
                stages.append(nn.Sequential(nn.MaxPool2d(2, stride=2, ceil_mode=True), ReLUConvBN(prev, width, 1, 1, 0)))
            # the empty block is the identity
            stages.extend(BlockModule(block, width) if block.layers else nn.Identity() for _ in range(N))
            prev = width
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.head(self.stages(self.stem(x))), 1))

    def cost(self) -> Cost:
        """Exact parameters and FLOPs of one forward pass of one ``input_size`` image
        (:func:`nat_gym.blocks.cost.network_cost`)."""
        return network_cost(self.block, C=self.C, N=self.N, input_size=self.input_size, in_channels=self.in_channels,
                            num_classes=self.num_classes)  # fmt: skip
