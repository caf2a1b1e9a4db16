"""The stacked block network: exact cost (parameters = sum(p.numel()), FLOPs = a forward-hook counter), shapes for
every layer kind and any (C, N, input size, channels, classes)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from test_blocks import blocks
from test_cost import count_madds

from nat_gym.block_network import BlockModule, BlockNetwork
from nat_gym.blocks import Block, named
from nat_gym.blocks.cost import block_cost, network_cost
from nat_gym.errors import ConfigError

SHAPES = [
    {"C": 8, "N": 1, "input_size": 8, "in_channels": 1, "num_classes": 10},
    {"C": 5, "N": 2, "input_size": 7, "in_channels": 3, "num_classes": 4},  # odd sizes: 7 -> 4 -> 2
    {"C": 3, "N": 1, "input_size": 1, "in_channels": 2, "num_classes": 2},
]


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", named.names())
@pytest.mark.parametrize("shape", SHAPES)
def test_named_blocks_cost_equals_the_built_network(name, shape):
    block = named.get(name)
    torch.manual_seed(0)
    net = BlockNetwork(block, **shape).eval()
    cost = network_cost(block, **shape)
    assert n_params(net) == cost.params == net.cost().params
    x = torch.randn(2, shape["in_channels"], shape["input_size"], shape["input_size"])
    assert count_madds(net, x) == cost.madds
    assert net(x).shape == (2, shape["num_classes"])


@settings(max_examples=40, deadline=None)
@given(blocks(max_layers=10))
def test_random_blocks_cost_and_shapes(block):
    shape = SHAPES[1]
    net = BlockNetwork(block, **shape).eval()
    assert n_params(net) == network_cost(block, **shape).params
    x = torch.randn(2, shape["in_channels"], shape["input_size"], shape["input_size"])
    assert count_madds(net, x) == network_cost(block, **shape).madds
    module = BlockModule(block, 6)
    y = module(torch.randn(3, 6, 5, 5))
    assert y.shape == (3, 6, 5, 5)  # C -> C at the same size, whatever the block
    assert n_params(module) == block_cost(block, 6, 5).params == module.cost(5).params


def test_block_cost_formulas():
    C, H = 4, 3
    hw = H * H
    assert block_cost(Block.parse("conv5:0"), C, H) == block_cost(Block.parse("conv5:0"), C, H, H)
    assert block_cost(Block.parse("conv5:0"), C, H).madds == 25 * C * C * hw
    assert block_cost(Block.parse("max3:0"), C, H).madds == 9 * C * hw
    assert block_cost(Block.parse("identity:0,add:1:0"), C, H).madds == 0
    cat = block_cost(Block.parse("identity:0,concat:1:0"), C, H)
    assert cat.params == 2 * C * C + 2 * C and cat.madds == 2 * C * C * hw
    leaves = block_cost(Block.parse("max1:0,avg1:0"), C, H)  # two leaves: concat and project 2C -> C
    assert leaves.params == 2 * C * C + 2 * C and leaves.madds == 2 * C * hw + 2 * C * C * hw
    assert block_cost(Block(), C, H).params == 0


def test_backward_through_every_kind():
    block = Block.parse("conv1:0,conv3:1,conv5:0,max1:2,max3:3,avg1:4,avg3:5,identity:6,add:8:7,concat:9:1")
    net = BlockNetwork(block, C=4, N=1, input_size=8, in_channels=1, num_classes=3)
    loss = net(torch.randn(4, 1, 8, 8)).logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("field", ["C", "N", "input_size", "in_channels", "num_classes"])
def test_bad_shapes_name_the_field(field):
    shape = {**SHAPES[0], field: 0}
    with pytest.raises(ConfigError, match=f"^{field}:"):
        BlockNetwork(named.get("ResNet"), **shape)
    with pytest.raises(ConfigError, match=f"^{field}:"):
        network_cost(named.get("ResNet"), **shape)
