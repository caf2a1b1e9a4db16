"""Exact analytic cost model: parameters and multiply-adds of ops, cells and the DARTS stand-alone network.

Pure arithmetic on the genotype (no torch module is built), memoised, so it can run inside ``env.step``.
The figures equal what the torch modules of :mod:`nat_gym.ops` and :mod:`nat_gym.network` hold and compute
(``tests/test_cost.py`` checks both against the built modules with a forward-hook counter).

Counting conventions
--------------------
**Parameters** are exactly ``sum(p.numel() for p in module.parameters())`` of the module that
:func:`nat_gym.ops.build_op` or :class:`nat_gym.network.Network` builds: conv weights (no conv has a bias), BN affine
weight and bias (``2 C`` when ``affine``, 0 otherwise; running statistics are buffers, not parameters) and the
classifier's weight and bias. ``affine`` applies to the cells (their preprocessing and their ops); the stem and the
auxiliary head always use affine BN, as in DARTS.

**MAdds** (multiply-adds, one per weight use):

- convolution: ``kh * kw * C_in / groups * C_out * H_out * W_out`` (depthwise convs: ``kh * kw * C * H_out * W_out``);
- linear: ``in * out``;
- pooling (max or average, the global average pool included): ``kh * kw * C * H_out * W_out`` (global pool:
  ``C * H * W``);
- identity, ``null``, BN, ReLU, node sums and concatenation: 0. NAT.md's per-op table counts 0.1M for a 128-channel
  32x32 ``skip_connect`` (one operation per element); we count the identity as free.

These are the true multiply-adds of the built network (``madds="true"``, the default). ``madds="paper"`` reproduces
the convention of the NAT / NAT++ papers' MAdds columns, whose counting hook (i) counts every stride-2 convolution at
its *input* resolution, as if it had stride 1 (``kh * kw * C_in / groups * C_out * H_in * W_in``; for the second conv
of a factorized reduce the input is the map shifted by one pixel, ``(H - 1) x (W - 1)`` for even sizes, as a hook on
the module sees it) and (ii) ignores pooling, the global average pool included. Stride-1 convolutions, linear layers
and the free ops are counted as above. Use it to compare with the published tables; use the default otherwise (for
DARTS_V2 at C=36, 20 layers, 32x32: 529.6M true, 543.3M in the papers' convention; see the README for the figure the
issue quoted).

**Per-op tables.** The NAT++ paper's per-op table (128 channels in and out, 32x32, stride 1) counts no BN
parameters: it equals :func:`op_cost` with ``affine=False`` (with the default ``affine=True`` each conv op has ``2C``
BN parameters more); ``nat-gym info --per-op -C 128`` prints it.

**Shapes.** An op at stride ``s`` maps an ``H x W`` input to ``ceil(H / s) x ceil(W / s)``. Factorized convolutions
count their intermediate map exactly: ``conv_1xk_kx1`` runs a ``1 x k`` conv with stride ``(1, s)`` (output
``H x W_out``) then a ``k x 1`` conv with stride ``(s, 1)``; ``conv_kx1_1xk`` the reverse. ``sep_conv_k`` is two
(depthwise ``k x k``, pointwise, BN) blocks, only the first strided; ``dil_conv_k`` one block (dilation changes no
count). A stride-2 ``skip_connect`` is a factorized reduce (``C^2`` weights + BN, ``C^2 * H_out * W_out`` MAdds).
2x2 pools at stride 2 are counted with ``ceil(H / 2)`` outputs (ceil mode: the only shape that can be summed with the
other edges of the node when ``H`` is odd).

**Network** (:func:`network_cost`): stem (3x3 conv ``in_channels -> 3C`` + BN) + the cells + global average pool +
linear classifier. In a reduction cell the edges out of the input nodes have stride 2 and the edges between
intermediate nodes run at the reduced size. A cell's preprocessing of input 0 is a factorized reduce when the previous cell reduced (its MAdds
depend only on its output size, the cell's input size) and a 1x1 ReLU-conv-BN otherwise. The auxiliary head (DARTS
``AuxiliaryHeadCIFAR``, after the cell at layer ``2 * layers // 3``) is counted apart in ``aux_params`` /
``aux_madds``, only with ``auxiliary=True``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from nat_gym.errors import ConfigError
from nat_gym.genotype import Cell, Genotype
from nat_gym.ops import op_spec

__all__ = [
    "MADDS_CONVENTIONS",
    "Cost",
    "NetworkCost",
    "op_cost",
    "cell_cost",
    "network_cost",
    "relative_madds_saving",
    "check_network_args",
    "check_madds",
    "aux_head_input_size",
    "check_aux_head_input",
    "reduction_layers",
]


@dataclass(frozen=True)
class Cost:
    """Parameters and multiply-adds of a module (exact integers)."""

    params: int = 0
    madds: int = 0

    def __add__(self, other: Cost) -> Cost:
        if not isinstance(other, Cost):
            return NotImplemented
        return Cost(self.params + other.params, self.madds + other.madds)

    def __radd__(self, other: Any) -> Cost:  # lets sum() start from 0
        if other == 0:
            return self
        return NotImplemented

    @property
    def params_m(self) -> float:
        """Parameters in millions."""
        return self.params / 1e6

    @property
    def madds_m(self) -> float:
        """MAdds in millions."""
        return self.madds / 1e6


@dataclass(frozen=True)
class NetworkCost:
    """Cost of a stand-alone network; the auxiliary head (training only) is counted apart."""

    params: int
    madds: int
    aux_params: int = 0
    aux_madds: int = 0

    @property
    def params_m(self) -> float:
        """Parameters in millions, auxiliary head excluded."""
        return self.params / 1e6

    @property
    def madds_m(self) -> float:
        """MAdds in millions, auxiliary head excluded."""
        return self.madds / 1e6

    @property
    def total_params(self) -> int:
        """Parameters with the auxiliary head."""
        return self.params + self.aux_params

    @property
    def total_madds(self) -> int:
        """MAdds with the auxiliary head (a training-mode forward)."""
        return self.madds + self.aux_madds


MADDS_CONVENTIONS: tuple[str, ...] = ("true", "paper")
"""How MAdds are counted: ``"true"`` (the multiply-adds of the built network) or ``"paper"`` (the NAT / NAT++
papers' hook: stride-2 convolutions at their input resolution, pooling ignored); see the module docstring."""

# ------------------------------------------------------------------------------------------------ validation


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_madds(madds: Any) -> str:
    """Validate a MAdds convention name (one of :data:`MADDS_CONVENTIONS`)."""
    if madds not in MADDS_CONVENTIONS:
        raise ConfigError(f"madds: expected one of {', '.join(map(repr, MADDS_CONVENTIONS))}, got {madds!r}")
    return madds


def _check_int(name: str, value: Any, low: int, allowed: str | None = None) -> None:
    if not _is_int(value) or value < low:
        raise ConfigError(f"{name}: expected an integer >= {low}{allowed or ''}, got {value!r}")


def _hw(size: Any, name: str = "size", low: int = 1) -> tuple[int, int]:
    """Normalise an ``int`` or ``(H, W)`` size, checking each side is an integer >= ``low``."""
    if _is_int(size):
        h = w = size
    elif isinstance(size, (tuple, list)) and len(size) == 2 and all(_is_int(s) for s in size):
        h, w = size
    else:
        raise ConfigError(f"{name}: expected an integer or an (H, W) pair of integers >= {low}, got {size!r}")
    if h < low or w < low:
        raise ConfigError(f"{name}: expected an integer or an (H, W) pair of integers >= {low}, got {size!r}")
    return int(h), int(w)


def _down(hw: tuple[int, int], stride: int) -> tuple[int, int]:
    return (-(-hw[0] // stride), -(-hw[1] // stride))


def reduction_layers(layers: int) -> tuple[int, int]:
    """The indices of the two reduction cells: ``layers // 3`` and ``2 * layers // 3``."""
    return (layers // 3, 2 * layers // 3)


def check_network_args(C: Any = 36, layers: Any = 20, num_classes: Any = 10, input_size: Any = 32,
                       in_channels: Any = 3) -> tuple[int, int]:  # fmt: skip
    """Validate the network configuration (raise :class:`ConfigError` naming the field); return ``(H, W)``."""
    _check_int("C", C, 1, " (initial channels)")
    _check_int(
        "layers", layers, 3, " (the reduction cells at layers // 3 and 2 * layers // 3 must be distinct)"
    )
    _check_int("num_classes", num_classes, 2)
    _check_int("in_channels", in_channels, 1)
    return _hw(input_size, "input_size", 4)


def aux_head_input_size(input_size: Any) -> tuple[int, int]:
    """Spatial size of the auxiliary head's input (after both reductions) for an ``input_size`` image."""
    return _down(_down(_hw(input_size, "input_size"), 2), 2)


def check_aux_head_input(hw: tuple[int, int], input_hw: tuple[int, int] | None = None) -> None:
    """Raise :class:`ConfigError` unless ``hw``, the auxiliary head's input size, gives it 1x1 maps before its
    classifier: AvgPool2d(5, stride=3) then a 2x2 conv need 8..10 pixels a side (8x8 for 32x32 images)."""
    if not all(8 <= s <= 10 for s in hw):
        given = f"input_size={input_hw[0]}x{input_hw[1]} gives " if input_hw is not None else "got "
        raise ConfigError(
            f"input_size: the auxiliary head needs 8x8 (up to 10x10) feature maps after the two reductions, "
            f"but {given}{hw[0]}x{hw[1]}; use inputs of 29..40 pixels a side (e.g. 32) or auxiliary=False (no --auxiliary)"
        )


# ------------------------------------------------------------------------------------------------ ops


def _bn(c: int, affine: bool) -> int:
    return 2 * c if affine else 0


def _factorized_reduce(c_in: int, c_out: int, h: int, w: int, affine: bool, paper: bool) -> Cost:
    """ReLU, two 1x1 stride-2 convs (``c_out // 2`` and the rest of the channels; the second on the input shifted by
    one pixel) and BN, on an ``h x w`` input."""
    ho, wo = _down((h, w), 2)
    if not paper:
        return Cost(c_in * c_out + _bn(c_out, affine), c_in * c_out * ho * wo)
    shifted = h * w if h % 2 or w % 2 else (h - 1) * (w - 1)  # odd sizes are padded first (op_modules)
    madds = c_in * (c_out // 2) * h * w + c_in * (c_out - c_out // 2) * shifted
    return Cost(c_in * c_out + _bn(c_out, affine), madds)


@lru_cache(maxsize=8192)
def _op_cost(op: str, C: int, h: int, w: int, stride: int, affine: bool, madds: str = "true") -> Cost:
    spec = op_spec(op)
    kind, k = spec.kind, spec.kernel
    ho, wo = _down((h, w), stride)
    out = ho * wo
    paper = madds == "paper"
    at = h * w if paper and stride == 2 else out  # where a (possibly) strided conv is counted
    if kind == "null":
        return Cost(0, 0)
    if kind == "skip":
        return Cost(0, 0) if stride == 1 else _factorized_reduce(C, C, h, w, affine, paper)
    if kind in ("max_pool", "avg_pool"):
        return Cost(0, 0 if paper else k * k * C * out)
    if kind == "conv":
        return Cost(k * k * C * C + _bn(C, affine), k * k * C * C * at)
    if kind == "fac_conv":
        mid = h * wo if spec.first_axis == "w" else ho * w  # output of the first conv, input of the second
        first, second = (h * w, mid) if paper and stride == 2 else (mid, out)
        return Cost(2 * k * C * C + _bn(C, affine), k * C * C * (first + second))
    if kind == "sep_conv":
        block = Cost(k * k * C + C * C + _bn(C, affine), (k * k * C + C * C) * out)
        return Cost(block.params, k * k * C * at + C * C * out) + block
    if kind == "dil_conv":
        return Cost(k * k * C + C * C + _bn(C, affine), k * k * C * at + C * C * out)
    raise AssertionError(f"unhandled op kind {kind}")  # pragma: no cover


def op_cost(op: str, C: int, size: int | tuple[int, int] = 32, stride: int = 1, affine: bool = True,
            madds: str = "true") -> Cost:  # fmt: skip
    """Cost of op ``op`` mapping ``C`` channels to ``C`` channels on an input of ``size`` (``int`` or ``(H, W)``).

    The output is ``ceil(size / stride)``; ``madds`` is ``"true"`` or ``"paper"`` (:data:`MADDS_CONVENTIONS`); see
    the module docstring for the conventions.
    """
    _check_int("C", C, 1)
    if stride not in (1, 2) or not _is_int(stride):
        raise ConfigError(f"stride: expected 1 or 2, got {stride!r}")
    h, w = _hw(size)
    return _op_cost(op, C, h, w, stride, bool(affine), check_madds(madds))


# ------------------------------------------------------------------------------------------------ cells


def _relu_conv_bn(c_in: int, c_out: int, out: int, affine: bool) -> Cost:
    return Cost(c_in * c_out + _bn(c_out, affine), c_in * c_out * out)


@lru_cache(maxsize=8192)
def _cell_cost(cell: Cell, C_pp: int, C_p: int, C: int, h: int, w: int, reduction: bool, reduction_prev: bool,
               affine: bool, hw_pp: tuple[int, int] | None = None, madds: str = "true") -> Cost:  # fmt: skip
    # preprocessing: both outputs are at the input resolution (h, w) of node 1; a factorized reduce on the cell two
    # back (at hw_pp, twice the resolution, possibly odd) also outputs ceil(H / 2) = h rows: its true MAdds depend
    # only on that, the papers' convention counts it at its input size hw_pp
    if reduction_prev:
        hp, wp = hw_pp if hw_pp is not None else (2 * h, 2 * w)
        total = _factorized_reduce(C_pp, C, hp, wp, affine, madds == "paper")
    else:
        total = _relu_conv_bn(C_pp, C, h * w, affine)
    total = total + _relu_conv_bn(C_p, C, h * w, affine)
    # in a reduction cell the edges out of nodes 0 and 1 have stride 2; the others run at the reduced size
    oh, ow = _down((h, w), 2) if reduction else (h, w)
    for e in cell.edges:
        if e.src < 2:
            total = total + _op_cost(e.op, C, h, w, 2 if reduction else 1, affine, madds)
        else:
            total = total + _op_cost(e.op, C, oh, ow, 1, affine, madds)
    return total


def cell_cost(cell: Cell, C_pp: int, C_p: int, C: int, size: int | tuple[int, int], reduction: bool,
              reduction_prev: bool, affine: bool = True, *, size_pp: int | tuple[int, int] | None = None,
              madds: str = "true") -> Cost:  # fmt: skip
    """Cost of one cell of the stand-alone network.

    Args:
        cell: the cell (a :class:`~nat_gym.genotype.Cell`).
        C_pp, C_p: channels of the cell's inputs 0 (two back) and 1 (previous cell).
        C: the cell's channels (each op maps ``C`` to ``C``; the output has ``len(cell.concat) * C``).
        size: spatial size of input 1 (the previous cell's output); the output is ``ceil(size / 2)`` if
            ``reduction`` else ``size``.
        reduction: the edges leaving nodes 0 and 1 have stride 2 (the other edges run at the reduced size).
        reduction_prev: the previous cell reduced, so input 0 is preprocessed by a factorized reduce.
        affine: learned affine BN in the cell.
        size_pp: spatial size of input 0 when ``reduction_prev`` (default ``2 * size``); only the papers' MAdds
            convention depends on it.
        madds: ``"true"`` or ``"paper"`` (:data:`MADDS_CONVENTIONS`).
    """
    for name, v in (("C_pp", C_pp), ("C_p", C_p), ("C", C)):
        _check_int(name, v, 1)
    h, w = _hw(size)
    hw_pp = _hw(size_pp, "size_pp") if size_pp is not None and reduction_prev else None
    return _cell_cost(cell, C_pp, C_p, C, h, w, bool(reduction), bool(reduction_prev), bool(affine), hw_pp,
                      check_madds(madds))  # fmt: skip


# ------------------------------------------------------------------------------------------------ network


def _aux_cost(C_aux: int, hw: tuple[int, int], num_classes: int, paper: bool = False) -> Cost:
    ph, pw = (hw[0] - 5) // 3 + 1, (hw[1] - 5) // 3 + 1  # AvgPool2d(5, stride=3, padding=0)
    oh, ow = ph - 1, pw - 1  # Conv2d(128, 768, 2)
    pool = Cost(0, 0 if paper else 25 * C_aux * ph * pw)
    conv1 = Cost(C_aux * 128 + 2 * 128, C_aux * 128 * ph * pw)
    conv2 = Cost(4 * 128 * 768 + 2 * 768, 4 * 128 * 768 * oh * ow)
    fc = Cost(768 * num_classes + num_classes, 768 * num_classes)
    return pool + conv1 + conv2 + fc


@lru_cache(maxsize=4096)
def _network_cost(genotype: Genotype, C: int, layers: int, num_classes: int, hw: tuple[int, int], in_channels: int,
                  auxiliary: bool, affine: bool, madds: str = "true") -> NetworkCost:  # fmt: skip
    h, w = hw
    paper = madds == "paper"
    stem = 3 * C
    total = Cost(9 * in_channels * stem + 2 * stem, 9 * in_channels * stem * h * w)
    C_pp, C_p, C_cur = stem, stem, C
    size = size_pp = hw
    reduction_prev = False
    aux = Cost(0, 0)
    red = reduction_layers(layers)
    for i in range(layers):
        reduction = i in red
        if reduction:
            C_cur *= 2
        cell = genotype.reduce if reduction else genotype.normal
        total = total + _cell_cost(
            cell, C_pp, C_p, C_cur, size[0], size[1], reduction, reduction_prev, affine, size_pp, madds
        )
        size_pp = size
        if reduction:
            size = _down(size, 2)
        reduction_prev = reduction
        C_pp, C_p = C_p, len(cell.concat) * C_cur
        if i == red[1] and auxiliary:
            check_aux_head_input(size, hw)
            aux = _aux_cost(C_p, size, num_classes, paper)
    total = total + Cost(0, 0 if paper else C_p * size[0] * size[1])  # global average pool
    total = total + Cost(C_p * num_classes + num_classes, C_p * num_classes)  # classifier
    return NetworkCost(total.params, total.madds, aux.params, aux.madds)


def network_cost(genotype: Genotype, C: int = 36, layers: int = 20, num_classes: int = 10,
                 input_size: int | tuple[int, int] = 32, in_channels: int = 3, auxiliary: bool = False,
                 affine: bool = True, madds: str = "true") -> NetworkCost:  # fmt: skip
    """Parameters and MAdds of the DARTS CIFAR stand-alone network of ``genotype`` (one image, inference).

    ``params``/``madds`` exclude the auxiliary head; ``aux_params``/``aux_madds`` are its cost when ``auxiliary``
    (0 otherwise). ``madds``: ``"true"`` (default: the built network's multiply-adds) or ``"paper"`` (the NAT /
    NAT++ papers' convention: stride-2 convs at their input resolution, pooling ignored; see the module docstring).
    Raises :class:`ConfigError` for a bad configuration, or with ``auxiliary`` when the head's input is not 8x8 (up
    to 10x10). Memoised: a repeated call costs a dictionary lookup.
    """
    if not isinstance(genotype, Genotype):
        raise ConfigError(f"genotype: expected a nat_gym Genotype, got {type(genotype).__name__}")
    hw = check_network_args(C, layers, num_classes, input_size, in_channels)
    return _network_cost(genotype, C, layers, num_classes, hw, in_channels, bool(auxiliary), bool(affine),
                         check_madds(madds))  # fmt: skip


def relative_madds_saving(before: Genotype, after: Genotype, **network_kwargs: Any) -> float:
    """``(madds(before) - madds(after)) / madds(before)`` for the networks of the two genotypes (auxiliary head
    excluded); ``network_kwargs`` go to :func:`network_cost`. Positive when ``after`` is cheaper."""
    network_kwargs.pop("auxiliary", None)
    m_before = network_cost(before, **network_kwargs).madds
    m_after = network_cost(after, **network_kwargs).madds
    return (m_before - m_after) / m_before
