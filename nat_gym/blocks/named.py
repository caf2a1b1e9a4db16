"""Named blocks: hand-designed blocks written in the NSC, the anchors a search is compared with.

``get("ResNet")`` returns a :class:`~nat_gym.blocks.nsc.Block`; ``names()`` lists them (lookup is
case-insensitive); :func:`resolve` also reads the compact string, JSON or NSC-tuple forms and JSON files.

- ``ResNet``: the pre-activation residual block (He et al. 2016): two 3x3 convolutions added to the input. It is the
  reference of the FLOPs term of the reward (:mod:`nat_gym.block_evaluator`).
- ``Inception``: an Inception-like block (Szegedy et al. 2015): four branches (1x1; 1x1 -> 3x3; 1x1 -> 5x5;
  3x3 max pool -> 1x1) whose outputs are concatenated (the leaves) and projected to ``C``.
- ``VGG``: two 3x3 convolutions in a chain (no shortcut).
- ``DenseNet``: a DenseNet-like block (Huang et al. 2017): each 3x3 convolution reads the concatenation of
  everything before it.
- ``Empty``: no layer (the block is the identity; the network is its stem, transitions and classifier).

The best blocks the BlockQNN papers draw (CVPR 2018 Fig. 6, TPAMI Fig. 8) are not included: the figures cannot be
read reliably enough (kernel sizes and several edges are ambiguous in the published images) to write them as NSC.
"""

from __future__ import annotations

import os
from pathlib import Path

from nat_gym.blocks.nsc import Block
from nat_gym.errors import BlockError

__all__ = ["NAMED_BLOCKS", "names", "get", "resolve"]

NAMED_BLOCKS: dict[str, str] = {
    "ResNet": "conv3:0,conv3:1,add:2:0",
    "Inception": "conv1:0,conv1:0,conv3:2,conv1:0,conv5:4,max3:0,conv1:6",
    "VGG": "conv3:0,conv3:1",
    "DenseNet": "conv3:0,concat:1:0,conv3:2,concat:3:2",
    "Empty": "empty",
}
"""Name -> compact string of each named block."""


def names() -> tuple[str, ...]:
    """The registered names."""
    return tuple(NAMED_BLOCKS)


def get(name: str) -> Block:
    """The block registered as ``name`` (case-insensitive)."""
    folded = {k.lower(): k for k in NAMED_BLOCKS}
    if not isinstance(name, str) or name.lower() not in folded:
        raise BlockError(f"name: unknown block {name!r}; registered: {', '.join(NAMED_BLOCKS)}")
    return Block.parse(NAMED_BLOCKS[folded[name.lower()]])


def resolve(block: str | os.PathLike | Block) -> Block:
    """A block from what a user typed: a :class:`Block`, a registered name, a JSON file, or any form
    :meth:`Block.parse` reads."""
    if isinstance(block, Block):
        return block
    text = os.fspath(block)
    if text.endswith(".json"):
        path = Path(text)
        if not path.is_file():
            raise BlockError(f"block: no such block file {text!r}")
        return Block.from_json(path.read_text())
    if text.lower() in {k.lower() for k in NAMED_BLOCKS}:
        return get(text)
    return Block.parse(text)
