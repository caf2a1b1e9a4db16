"""Operations of the search space: one registry of op names with their metadata, and the torch module factory
(the module classes live in :mod:`nat_gym.op_modules`; torch is imported only when a module is built).

Every op maps ``C`` channels to ``C`` channels (the DARTS convention); ``stride`` is 2 only on the edges that leave the
input nodes of a reduction cell. The definitions follow NAT.md section 1 (the DARTS stand-alone network):

- ``conv_k``: ReLU, k x k conv, BN.
- ``conv_1xk_kx1`` / ``conv_kx1_1xk``: ReLU, 1 x k conv, k x 1 conv, BN (factorized convolutions, NAONet / NASNet).
- ``sep_conv_k``: (ReLU, depthwise k x k, pointwise 1 x 1, BN) twice; only the first depthwise conv has the stride.
- ``dil_conv_k``: ReLU, depthwise k x k with dilation 2, pointwise 1 x 1, BN.
- ``max_pool_k`` / ``avg_pool_k``: padding ``k // 2`` (average excludes padding); 2 x 2 pools pad right/bottom by
  replication at stride 1 and need no padding at stride 2.
- ``skip_connect``: identity at stride 1; at stride 2 a factorized reduce (two 1 x 1 stride-2 convs, concatenated, BN).
- ``null``: zeros (subsampled at stride 2).

``affine`` is the BN flag: the stand-alone network uses learned affine BN, the supernet uses ``affine=False``
(NAT.md section 5).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from nat_gym.errors import InvalidOpError

if TYPE_CHECKING:  # torch loads only when a module is built
    from torch import nn

__all__ = [
    "OpKind",
    "OpSpec",
    "OPS",
    "ALIASES",
    "NAT_FULLY_CONCAT_OPS",
    "NAT_LOOSE_END_OPS",
    "NAT_OPS",
    "NAT_PLUS_PLUS_OPS",
    "EXTENDED_OPS",
    "canonical_op",
    "op_spec",
    "build_op",
]

OpKind = Literal["conv", "fac_conv", "sep_conv", "dil_conv", "max_pool", "avg_pool", "skip", "null"]


@dataclass(frozen=True)
class OpSpec:
    """Metadata of one operation.

    Attributes:
        name: the canonical op name, e.g. ``"sep_conv_3x3"``.
        kind: the op's type (``conv``, ``fac_conv``, ``sep_conv``, ``dil_conv``, ``max_pool``, ``avg_pool``,
            ``skip``, ``null``).
        kernel: the kernel size (the long side for factorized convs); 0 for skip and null.
        first_axis: for factorized convs, which 1-D conv comes first: ``"w"`` (1 x k first) or ``"h"`` (k x 1 first).
    """

    name: str
    kind: OpKind
    kernel: int = 0
    first_axis: Literal["w", "h", ""] = ""

    @property
    def is_pool(self) -> bool:
        return self.kind in ("max_pool", "avg_pool")

    @property
    def has_params(self) -> bool:
        """Whether the op has weights at stride 1 (a stride-2 skip has weights too: the factorized reduce)."""
        return self.kind in ("conv", "fac_conv", "sep_conv", "dil_conv")


def _specs() -> dict[str, OpSpec]:
    specs = [
        OpSpec("null", "null"),
        OpSpec("skip_connect", "skip"),
        OpSpec("max_pool_2x2", "max_pool", 2),
        OpSpec("max_pool_3x3", "max_pool", 3),
        OpSpec("max_pool_5x5", "max_pool", 5),
        OpSpec("avg_pool_2x2", "avg_pool", 2),
        OpSpec("avg_pool_3x3", "avg_pool", 3),
        OpSpec("avg_pool_5x5", "avg_pool", 5),
        OpSpec("sep_conv_3x3", "sep_conv", 3),
        OpSpec("sep_conv_5x5", "sep_conv", 5),
        OpSpec("sep_conv_7x7", "sep_conv", 7),
        OpSpec("dil_conv_3x3", "dil_conv", 3),
        OpSpec("dil_conv_5x5", "dil_conv", 5),
        OpSpec("conv_1x1", "conv", 1),
        OpSpec("conv_3x3", "conv", 3),
        OpSpec("conv_5x5", "conv", 5),
        OpSpec("conv_1x3_3x1", "fac_conv", 3, "w"),
        OpSpec("conv_1x7_7x1", "fac_conv", 7, "w"),
        OpSpec("conv_7x1_1x7", "fac_conv", 7, "h"),
    ]
    return {s.name: s for s in specs}


OPS: dict[str, OpSpec] = _specs()
"""Every op nat-gym knows, by canonical name."""

ALIASES: dict[str, str] = {"none": "null", "identity": "skip_connect", "zero": "null"}
"""Other spellings accepted on input (DARTS writes ``none`` for ``null``)."""

NAT_FULLY_CONCAT_OPS: tuple[str, ...] = (
    "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
    "dil_conv_3x3", "dil_conv_5x5", "conv_3x3", "null",
)  # fmt: skip
"""NAT's op list for fully-concat cells (DARTS space)."""

NAT_LOOSE_END_OPS: tuple[str, ...] = (
    "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
    "conv_1x1", "conv_3x3", "conv_5x5", "null",
)  # fmt: skip
"""NAT's op list for loose-end cells (ENAS space)."""

NAT_PLUS_PLUS_OPS: tuple[str, ...] = (
    "max_pool_3x3", "max_pool_5x5", "avg_pool_3x3", "avg_pool_5x5", "skip_connect", "sep_conv_3x3",
    "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5", "conv_1x1", "conv_3x3", "conv_5x5", "null",
)  # fmt: skip
"""NAT++'s 13 ops, in the order of the published table (``transitions.json``)."""

NAT_OPS: tuple[str, ...] = tuple(dict.fromkeys(NAT_FULLY_CONCAT_OPS[:-1] + NAT_LOOSE_END_OPS))
"""The union of NAT's two lists (11 ops, ``null`` last): the vocabulary of the NAT rule set."""

EXTENDED_OPS: tuple[str, ...] = NAT_PLUS_PLUS_OPS[:-1] + (
    "max_pool_2x2", "avg_pool_2x2", "sep_conv_7x7", "conv_1x3_3x1", "conv_1x7_7x1", "conv_7x1_1x7", "null",
)  # fmt: skip
"""NAT++'s ops plus those of NASNet, AmoebaNet, PNASNet and NAONet (19 ops, ``null`` last)."""


def canonical_op(name: str) -> str:
    """Return the canonical name of ``name`` (resolving aliases); raise :class:`InvalidOpError` if unknown."""
    if not isinstance(name, str):
        raise InvalidOpError(f"op: expected a string, got {type(name).__name__} {name!r}")
    name = ALIASES.get(name, name)
    if name not in OPS:
        raise InvalidOpError(f"op: unknown operation {name!r}; allowed: {', '.join(sorted(OPS))}")
    return name


def op_spec(name: str) -> OpSpec:
    """Metadata of the op ``name`` (aliases accepted)."""
    return OPS[canonical_op(name)]


def check_vocabulary(ops: Iterable[str]) -> tuple[str, ...]:
    """Validate an op vocabulary: canonical names, no duplicates, non-empty."""
    vocab = tuple(canonical_op(o) for o in ops)
    if not vocab:
        raise InvalidOpError("ops: the op vocabulary is empty")
    if len(set(vocab)) != len(vocab):
        dup = sorted({o for o in vocab if vocab.count(o) > 1})
        raise InvalidOpError(f"ops: duplicate ops in the vocabulary: {dup}")
    return vocab


def build_op(name: str, c: int, stride: int = 1, affine: bool = True) -> nn.Module:
    """Build the torch module of op ``name`` mapping ``c`` channels to ``c`` channels.

    Args:
        name: an op name from :data:`OPS` (aliases accepted).
        c: channels in and out.
        stride: 1, or 2 on the input edges of a reduction cell.
        affine: learned affine BN (stand-alone network) or not (supernet).
    """
    from nat_gym.op_modules import (
        DilConv,
        FacConv,
        FactorizedReduce,
        Identity,
        Pool,
        ReLUConvBN,
        SepConv,
        Zero,
    )

    spec = op_spec(name)
    if stride not in (1, 2):
        raise InvalidOpError(f"stride: expected 1 or 2, got {stride!r}")
    if c < 1:
        raise InvalidOpError(f"C: expected a positive channel count, got {c!r}")
    k = spec.kernel
    if spec.kind == "null":
        return Zero(stride)
    if spec.kind == "skip":
        return Identity() if stride == 1 else FactorizedReduce(c, c, affine=affine)
    if spec.is_pool:
        return Pool(spec.kind, k, stride)
    if spec.kind == "conv":
        return ReLUConvBN(c, c, k, stride, k // 2, affine=affine)
    if spec.kind == "fac_conv":
        return FacConv(c, k, stride, spec.first_axis, affine=affine)
    if spec.kind == "sep_conv":
        return SepConv(c, c, k, stride, affine=affine)
    if spec.kind == "dil_conv":
        return DilConv(c, c, k, stride, 2, affine=affine)
    raise AssertionError(f"unhandled op kind {spec.kind}")  # pragma: no cover
