"""The DARTS CIFAR stand-alone network built from genotypes: shapes, auxiliary head, drop-path, errors."""

from __future__ import annotations

import pytest
import torch

from nat_gym import genotypes
from nat_gym.errors import ConfigError
from nat_gym.genotype import Cell, Genotype
from nat_gym.network import Network, NetworkCell, count_parameters, drop_path

SHAPE_NAMES = [
    "DARTS_V2",
    "ENAS",
    "NAONet",
    "NASNet",
    "AmoebaNet",
    "PNASNet",
    "VGG",
    "ResBlock",
    "MobileNetV2",
]


@pytest.mark.parametrize("name", SHAPE_NAMES)
def test_forward_shapes(name):
    torch.manual_seed(0)
    g = genotypes.get(name)
    net = Network(g, C=4, layers=5, num_classes=10).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 32, 32))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 10)
    assert torch.isfinite(out).all()


def test_darts_v2_small_inputs_one_channel():
    g = genotypes.get("DARTS_V2")
    net = Network(g, C=8, layers=5, num_classes=7, in_channels=1).eval()
    with torch.no_grad():
        assert net(torch.randn(3, 1, 8, 8)).shape == (3, 7)
        assert net(torch.randn(1, 1, 32, 32)).shape == (1, 7)
        assert net(torch.randn(1, 1, 9, 13)).shape == (1, 7)  # odd, non-square sizes


def test_cell_channels_and_loose_ends():
    enas = genotypes.get("ENAS")
    assert enas.reduce.concat == (2, 3, 6)  # loose-end output
    net = Network(enas, C=4, layers=5)
    mult = [c.multiplier for c in net.cells]
    assert mult == [5, 3, 5, 3, 5]
    assert [c.reduction for c in net.cells] == [False, True, False, True, False]
    assert net.classifier.in_features == 5 * 16


def test_reduction_cell_halves_resolution():
    g = genotypes.get("NASNet")
    cell = NetworkCell(g.reduce, 12, 20, 8, reduction=True, reduction_prev=False).eval()
    with torch.no_grad():
        out = cell(torch.randn(2, 12, 8, 8), torch.randn(2, 20, 8, 8))
    assert out.shape == (2, len(g.reduce.concat) * 8, 4, 4)
    cell = NetworkCell(g.normal, 12, 20, 8, reduction=False, reduction_prev=True).eval()
    with torch.no_grad():
        out = cell(torch.randn(2, 12, 7, 7), torch.randn(2, 20, 4, 4))  # FactorizedReduce: 7 -> 4
    assert out.shape == (2, len(g.normal.concat) * 8, 4, 4)


@pytest.mark.parametrize("name", ["DARTS_V2", "ENAS"])
def test_auxiliary_head(name):
    torch.manual_seed(0)
    g = genotypes.get(name)
    net = Network(g, C=4, layers=6, num_classes=5, auxiliary=True, input_size=32)
    names = [n for n, _ in net.named_parameters() if "auxiliary" in n]
    assert names and all(n.startswith("auxiliary_head.") for n in names)
    assert count_parameters(net, exclude_auxiliary=False) > count_parameters(net) == net.count_parameters()
    net.train()
    logits, aux = net(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 5) and aux.shape == (2, 5)
    (logits.sum() + 0.4 * aux.sum()).backward()
    assert net.auxiliary_head.classifier.weight.grad is not None
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 32, 32))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 5)


def test_auxiliary_head_needs_8x8_maps():
    g = genotypes.get("DARTS_V2")
    with pytest.raises(ConfigError, match="^input_size:"):
        Network(g, C=4, layers=5, auxiliary=True, input_size=16)
    net = Network(g, C=4, layers=5, auxiliary=True).train()  # no input_size: checked at forward
    with pytest.raises(ConfigError, match="^input_size:.*4x4"):
        net(torch.randn(2, 3, 16, 16))
    net.eval()
    assert net(torch.randn(1, 3, 16, 16)).shape == (1, 10)  # the head is unused in eval mode
    Network(g, C=4, layers=5, auxiliary=False, input_size=16)  # no head, no constraint


def test_drop_path_runs_and_trains():
    torch.manual_seed(0)
    g = genotypes.get("DARTS_V2")
    net = Network(g, C=4, layers=5, auxiliary=True, drop_path_prob=0.3).train()
    logits, aux = net(torch.randn(4, 3, 32, 32))
    (logits.pow(2).mean() + aux.pow(2).mean()).backward()
    assert all(p.grad is not None for n, p in net.named_parameters() if n.startswith("stem"))
    net.drop_path_prob = 0.0  # a plain attribute, changed per epoch in DARTS training
    net.eval()
    x = torch.randn(2, 3, 32, 32)
    net.drop_path_prob = 0.5
    with torch.no_grad():
        assert torch.equal(net(x), net(x))  # no drop-path in eval mode


def test_drop_path_function():
    torch.manual_seed(0)
    x = torch.ones(2000, 1, 2, 2)
    y = drop_path(x, 0.5)
    assert set(y.unique().tolist()) <= {0.0, 2.0}
    assert abs(y.mean().item() - 1.0) < 0.1
    assert (y[:, 0, 0, 0] == y[:, 0, 1, 1]).all()  # whole samples
    assert drop_path(x, 0.0) is x


def test_drop_path_skips_identity_ops():
    cell_skip = Cell([("skip_connect", 0, 2), ("skip_connect", 1, 2)], "all")
    cell_conv = Cell([("conv_3x3", 0, 2), ("skip_connect", 1, 2)], "all")
    s0, s1 = torch.randn(8, 4, 6, 6), torch.randn(8, 4, 6, 6)
    for cell, dropped in ((cell_skip, False), (cell_conv, True)):
        torch.manual_seed(0)
        m = NetworkCell(cell, 4, 4, 4, reduction=False, reduction_prev=False).train()
        with torch.no_grad():
            a, b = m(s0, s1, 0.0), m(s0, s1, 0.9)
        assert torch.equal(a, b) is not dropped


def test_null_ops_and_single_output():
    g = Genotype([("null", 0, 2), ("null", 1, 2), ("skip_connect", 2, 3), ("null", 0, 3)],
                 [("null", 0, 2), ("skip_connect", 1, 2), ("max_pool_3x3", 2, 3), ("null", 1, 3)], "loose_end",
                 "loose_end")  # fmt: skip
    net = Network(g, C=4, layers=3).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 3, 12, 12)).shape == (2, 10)


def test_network_argument_errors():
    g = genotypes.get("DARTS_V2")
    for kwargs, field in (
        (dict(C=0), "C"), (dict(layers=2), "layers"), (dict(num_classes=1), "num_classes"),
        (dict(in_channels=0), "in_channels"), (dict(drop_path_prob=1.0), "drop_path_prob"),
        (dict(drop_path_prob=-0.1), "drop_path_prob"), (dict(input_size=2), "input_size"),
    ):  # fmt: skip
        with pytest.raises(ConfigError, match=rf"^{field}:"):
            Network(g, **kwargs)
    with pytest.raises(ConfigError, match="^genotype:"):
        Network("DARTS_V2")  # type: ignore[arg-type]


def test_cost_method():
    g = genotypes.get("DARTS_V2")
    net = Network(g, C=4, layers=5, in_channels=1, input_size=8)
    assert net.cost().params == count_parameters(net)
    assert net.cost(32).params == net.cost().params and net.cost(32).madds > net.cost().madds


def test_naonet_odd_reduction_input():
    net = Network(genotypes.get("NAONet"), C=4, layers=5).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 30, 30)).shape == (1, 10)  # 30 -> 15: the second reduction sees 15x15
