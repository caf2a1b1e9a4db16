"""BlockQNN's Network Structure Code (NSC): layers, blocks and the action code of the block MDP.

A **block** (Zhong et al., "Practical Block-wise Neural Network Architecture Generation", CVPR 2018, section 3.1;
TPAMI 2019) is a DAG of layers. Each layer is a 5-tuple ``(index, type, kernel, pred1, pred2)``; index 0 is the
block input and layer ``i`` may read any earlier index:

====  ==============  =======  ========================  ==========================
type  layer           kernel   pred1                     pred2
====  ==============  =======  ========================  ==========================
1     convolution     1, 3, 5  any earlier index         0
2     max pooling     1, 3     any earlier index         0
3     average pooling 1, 3     any earlier index         0
4     identity        0        any earlier index         0
5     elementwise add 0        earlier index             a different earlier index
6     concat          0        earlier index             a different earlier index
7     terminal        0        0                         0
====  ==============  =======  ========================  ==========================

A convolution is a pre-activation cell (ReLU, conv, BN); pools have stride 1 and same padding. Every layer outputs
``C`` channels: a concat is followed by a 1x1 projection to ``C``. Layers that no other layer reads (the *leaves*)
are concatenated into the block output (projected to ``C`` when there are several), so a block maps ``C -> C``
channels at the same resolution. A block with no layer is the identity.

:class:`Block` is an immutable value: validated on construction (a :class:`~nat_gym.errors.BlockError` naming the
field, the value and what is allowed), with add/concat pairs stored as ``pred1 > pred2`` (they are symmetric), and
compared / hashed by its canonical form (:meth:`Block.canonical`: the same graph numbered by
:func:`~nat_gym.blocks.canonical.canonical_order`), so a block and any renumbering of it are equal.

Formats:

- layers: ``Block([(1, 1, 3, 0, 0), (2, 1, 3, 1, 0), (3, 5, 0, 2, 0)])`` (a trailing terminal layer is dropped);
- the compact string ``str(block)``, one ``kind:pred1[:pred2]`` per layer: ``conv3:0,conv3:1,add:2:0`` (``empty``
  for the block without layers); kinds: ``conv1 conv3 conv5 max1 max3 avg1 avg3 identity add concat``;
- JSON / dict: ``{"layers": [[1, 1, 3, 0, 0], ...]}``; :meth:`Block.parse` also reads a list of NSC tuples such as
  ``[(1,1,3,0,0),(2,7,0,0,0)]``.

**Action code** (the block MDP, :mod:`nat_gym.envs.blockqnn`): at step ``t`` the agent adds layer ``t + 1`` or stops.
Predecessors exist for indices ``0..t``, so there are ``8 (t + 1)`` single-input layers (8 type/kernel kinds times
``t + 1`` predecessors), ``t (t + 1)`` add/concat layers (``t (t + 1) / 2`` unordered pairs each) and the terminal:
:func:`num_actions` ``= 8 (t + 1) + t (t + 1) + 1`` (9 at ``t = 0``, 691 at ``t = 22``). Actions are numbered so that
the actions valid at step ``t`` are exactly ``0 .. num_actions(t) - 1``: ``0`` is the terminal, then for each
predecessor ``p = 0, 1, ...`` the 8 single-input kinds reading ``p`` followed by ``add(p, q)`` and ``concat(p, q)``
for ``q = 0 .. p - 1``.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import numbers
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

from nat_gym.blocks.canonical import canonical_order
from nat_gym.errors import BlockError

__all__ = [
    "CONV",
    "MAX_POOL",
    "AVG_POOL",
    "IDENTITY",
    "ADD",
    "CONCAT",
    "TERMINAL",
    "LAYER_TYPES",
    "KERNELS",
    "KINDS",
    "SINGLE_INPUT_KINDS",
    "MAX_LAYERS",
    "DEFAULT_MAX_INDEX",
    "Layer",
    "Block",
    "num_actions",
    "action_to_layer",
    "layer_to_action",
]

CONV, MAX_POOL, AVG_POOL, IDENTITY, ADD, CONCAT, TERMINAL = 1, 2, 3, 4, 5, 6, 7

LAYER_TYPES: dict[int, str] = {
    CONV: "convolution", MAX_POOL: "max pooling", AVG_POOL: "average pooling", IDENTITY: "identity",
    ADD: "elementwise add", CONCAT: "concat", TERMINAL: "terminal",
}  # fmt: skip
"""NSC type id -> name."""

KERNELS: dict[int, tuple[int, ...]] = {
    CONV: (1, 3, 5), MAX_POOL: (1, 3), AVG_POOL: (1, 3), IDENTITY: (0,), ADD: (0,), CONCAT: (0,), TERMINAL: (0,),
}  # fmt: skip
"""The kernels each type allows (0: the type has no kernel)."""

KINDS: dict[str, tuple[int, int]] = {
    "conv1": (CONV, 1), "conv3": (CONV, 3), "conv5": (CONV, 5), "max1": (MAX_POOL, 1), "max3": (MAX_POOL, 3),
    "avg1": (AVG_POOL, 1), "avg3": (AVG_POOL, 3), "identity": (IDENTITY, 0), "add": (ADD, 0), "concat": (CONCAT, 0),
}  # fmt: skip
"""Short name of each layer kind -> ``(type, kernel)``: the names of the compact string form."""

_KIND_NAMES: dict[tuple[int, int], str] = {v: k for k, v in KINDS.items()}

SINGLE_INPUT_KINDS: tuple[tuple[int, int], ...] = tuple(v for v in KINDS.values() if v[0] not in (ADD, CONCAT))
"""The 8 ``(type, kernel)`` kinds of single-input layers, in action order."""

MAX_LAYERS = 64
"""Largest number of layers a :class:`Block` may hold (the MDP's index cap is at most this)."""

DEFAULT_MAX_INDEX = 23
"""The papers' maximum layer index per block (?): 23 layers, 691 actions at the last step."""


class Layer(NamedTuple):
    """One NSC layer: ``(index, type, kernel, pred1, pred2)`` (see the module docstring)."""

    index: int
    type: int
    kernel: int
    pred1: int
    pred2: int

    @property
    def kind(self) -> str:
        """Short name: ``conv3``, ``max1``, ``identity``, ``add`` ... (``terminal`` for the terminal layer)."""
        return "terminal" if self.type == TERMINAL else _KIND_NAMES[(self.type, self.kernel)]

    @property
    def binary(self) -> bool:
        """Whether the layer reads two inputs (add, concat)."""
        return self.type in (ADD, CONCAT)

    @property
    def inputs(self) -> tuple[int, ...]:
        """The indices the layer reads."""
        return (self.pred1, self.pred2) if self.binary else (self.pred1,)

    def __str__(self) -> str:
        return f"{self.kind}:" + ":".join(map(str, self.inputs))


def _as_int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise BlockError(f"{field}: expected an integer, got {value!r}")
    return int(value)


def _check_layer(raw: Any, position: int) -> Layer:
    """Validate one layer at ``position`` (0-based) and return it with add/concat pairs ordered."""
    field = f"layers[{position}]"
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence) or len(raw) != 5:
        raise BlockError(f"{field}: expected an NSC 5-tuple (index, type, kernel, pred1, pred2), got {raw!r}")
    index, kind, kernel, pred1, pred2 = (_as_int(v, f"{field}.{n}") for v, n in zip(raw, Layer._fields))
    if index != position + 1:
        raise BlockError(f"{field}.index: expected {position + 1} (layers are numbered 1, 2, ... in order), got {index}")
    if kind not in LAYER_TYPES:
        raise BlockError(f"{field}.type: {kind} is not an NSC type; allowed: 1..7 ({', '.join(LAYER_TYPES.values())})")
    if kernel not in KERNELS[kind]:
        allowed = ", ".join(map(str, KERNELS[kind]))
        raise BlockError(f"{field}.kernel: {kernel} is not allowed for {LAYER_TYPES[kind]}; allowed: {allowed}")
    if kind == TERMINAL:
        if pred1 or pred2:
            raise BlockError(f"{field}: a terminal layer has pred1 = pred2 = 0, got {pred1}, {pred2}")
        return Layer(index, kind, kernel, 0, 0)
    if not 0 <= pred1 < index:
        raise BlockError(f"{field}.pred1: {pred1} is not an earlier index; allowed: 0..{index - 1}")
    if kind in (ADD, CONCAT):
        if not 0 <= pred2 < index:
            raise BlockError(f"{field}.pred2: {pred2} is not an earlier index; allowed: 0..{index - 1}")
        if pred1 == pred2:
            raise BlockError(f"{field}: {LAYER_TYPES[kind]} needs two different predecessors, got {pred1} twice")
        pred1, pred2 = max(pred1, pred2), min(pred1, pred2)  # symmetric: stored as pred1 > pred2
    elif pred2 != 0:
        raise BlockError(f"{field}.pred2: {LAYER_TYPES[kind]} reads one input, so pred2 must be 0, got {pred2}")
    return Layer(index, kind, kernel, pred1, pred2)


@dataclass(frozen=True, init=False, eq=False)
class Block:
    """An immutable BlockQNN block: a tuple of NSC :class:`Layer` s (see the module docstring).

    Args:
        layers: NSC 5-tuples ``(index, type, kernel, pred1, pred2)`` numbered ``1, 2, ...``; a final terminal layer
            is accepted and dropped.

    Raises:
        BlockError: a malformed layer (the message names ``layers[i].field``), a terminal before the end, or more
            than :data:`MAX_LAYERS` layers.

    Equality and hashing use the canonical form: two numberings of the same DAG are equal.
    """

    layers: tuple[Layer, ...]

    def __init__(self, layers: Iterable[Sequence[int]] = ()) -> None:
        if isinstance(layers, (str, bytes)) or not isinstance(layers, Iterable):
            raise BlockError(f"layers: expected a list of NSC 5-tuples, got {layers!r}")
        raw = list(layers)
        checked = [_check_layer(r, i) for i, r in enumerate(raw)]
        for i, layer in enumerate(checked):
            if layer.type == TERMINAL and i != len(checked) - 1:
                raise BlockError(f"layers[{i}]: a terminal layer may only come last (the block ends there)")
        if checked and checked[-1].type == TERMINAL:
            checked.pop()
        if len(checked) > MAX_LAYERS:
            raise BlockError(f"layers: {len(checked)} layers; at most {MAX_LAYERS} are allowed")
        object.__setattr__(self, "layers", tuple(checked))

    @classmethod
    def _trusted(cls, layers: tuple[Layer, ...]) -> Block:
        block = object.__new__(cls)
        object.__setattr__(block, "layers", layers)
        return block

    # ------------------------------------------------------------------------------------------------ structure
    def __len__(self) -> int:
        return len(self.layers)

    @cached_property
    def consumers(self) -> tuple[tuple[int, ...], ...]:
        """For each index ``0..len(self)``, the layers that read it."""
        out: list[list[int]] = [[] for _ in range(len(self.layers) + 1)]
        for layer in self.layers:
            for p in layer.inputs:
                out[p].append(layer.index)
        return tuple(tuple(c) for c in out)

    @property
    def leaves(self) -> tuple[int, ...]:
        """Indices no layer reads, concatenated into the block output (``(0,)`` for the empty block)."""
        if not self.layers:
            return (0,)
        return tuple(i for i in range(1, len(self.layers) + 1) if not self.consumers[i])

    @cached_property
    def depths(self) -> tuple[int, ...]:
        """For each index ``0..len(self)``, the longest path from the input to it, in layers (0 for the input)."""
        d = [0] * (len(self.layers) + 1)
        for layer in self.layers:
            d[layer.index] = 1 + max(d[p] for p in layer.inputs)
        return tuple(d)

    @property
    def num_edges(self) -> int:
        """Edges of the block DAG with its implicit output node: one per layer input, one per leaf."""
        return sum(len(layer.inputs) for layer in self.layers) + len(self.leaves)

    @property
    def num_nodes(self) -> int:
        """Nodes of the block DAG: the input, the layers and the implicit output node."""
        return len(self.layers) + 2

    @property
    def density(self) -> float:
        """Edges / nodes of the DAG, counting the implicit output node and the leaf -> output edges (BlockQNN's
        density; 0.5 for the empty block, 1.0 for a ResNet-like block, always > 0)."""
        return self.num_edges / self.num_nodes

    def append(self, layer: Sequence[int]) -> Block:
        """This block with one more layer (validated; its index must be ``len(self) + 1``)."""
        new = _check_layer(layer, len(self.layers))
        if new.type == TERMINAL:
            raise BlockError("layer: a terminal layer ends the block; it is not appended")
        if len(self.layers) >= MAX_LAYERS:
            raise BlockError(f"layer: the block already has {MAX_LAYERS} layers, the most allowed")
        return Block._trusted((*self.layers, new))

    # ------------------------------------------------------------------------------------------------ canonical
    @cached_property
    def _canonical_layers(self) -> tuple[Layer, ...]:
        labels = [(0, 0)] + [(layer.type, layer.kernel) for layer in self.layers]
        preds = [()] + [layer.inputs for layer in self.layers]
        order = canonical_order(labels, preds)
        new = {v: k for k, v in enumerate(order)}
        out = []
        for k, v in enumerate(order[1:], start=1):
            layer = self.layers[v - 1]
            ins = sorted((new[p] for p in layer.inputs), reverse=True)
            out.append(Layer(k, layer.type, layer.kernel, ins[0], ins[1] if layer.binary else 0))
        return tuple(out)

    def canonical(self) -> Block:
        """The same block in canonical numbering: equal for every renumbering of the DAG (see
        :mod:`nat_gym.blocks.canonical`). Leaves stay where they are: they form the block output."""
        return Block._trusted(self._canonical_layers)

    def is_canonical(self) -> bool:
        return self.layers == self._canonical_layers

    def digest(self) -> str:
        """A stable hex digest of the canonical form (the same in every process; keys the evaluation cache)."""
        return hashlib.sha256(_format(self._canonical_layers).encode()).hexdigest()[:32]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Block):
            return NotImplemented
        return self is other or (len(self.layers) == len(other.layers) and
                                 self._canonical_layers == other._canonical_layers)  # fmt: skip

    def __hash__(self) -> int:
        return hash(self._canonical_layers)

    # ------------------------------------------------------------------------------------------------ formats
    def __str__(self) -> str:
        return _format(self.layers)

    def __repr__(self) -> str:
        return f"Block.parse({str(self)!r})"

    def to_nsc(self, terminal: bool = False) -> list[tuple[int, int, int, int, int]]:
        """The layers as NSC 5-tuples (with a final terminal layer if ``terminal``)."""
        out = [tuple(layer) for layer in self.layers]
        if terminal:
            out.append((len(self.layers) + 1, TERMINAL, 0, 0, 0))
        return out  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [list(layer) for layer in self.layers]}

    @classmethod
    def from_dict(cls, data: Any) -> Block:
        if not isinstance(data, dict) or set(data) != {"layers"}:
            raise BlockError(f"block: expected a dict with the single key 'layers', got {data!r}")
        return cls(data["layers"])

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> Block:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, TypeError, RecursionError) as e:
            raise BlockError(f"block: not valid JSON ({e})") from None
        return cls.from_dict(data)

    @classmethod
    def parse(cls, text: str) -> Block:
        """A block from its compact string (``conv3:0,conv3:1,add:2:0``, ``empty``), JSON, or a list of NSC tuples
        (``[(1,1,3,0,0),(2,7,0,0,0)]``). Raises :class:`~nat_gym.errors.BlockError` for anything else."""
        if not isinstance(text, str):
            raise BlockError(f"block: expected a string, got {type(text).__name__}")
        s = text.strip()
        if s.startswith("{"):
            return cls.from_json(s)
        if s.startswith(("[", "(")):
            try:
                value = ast.literal_eval(s)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                raise BlockError(f"block: cannot read {text!r} as a list of NSC 5-tuples") from None
            if isinstance(value, tuple) and len(value) == 5 and all(isinstance(v, int) for v in value):
                value = [value]  # one layer written without the outer list
            return cls(value)
        if s in ("", "empty"):
            return cls()
        layers = []
        for i, part in enumerate(s.split(",")):
            m = re.fullmatch(r"\s*([a-z0-9]+)((?::\s*-?\d+\s*)+)", part)
            if m is None:
                raise BlockError(
                    f"block: layer {i + 1} {part!r} is not 'kind:pred1' or 'kind:pred1:pred2' "
                    f"(kinds: {', '.join(KINDS)})"
                )
            kind = m.group(1)
            if kind not in KINDS:
                raise BlockError(f"block: layer {i + 1} has kind {kind!r}; allowed: {', '.join(KINDS)}")
            preds = [int(p) for p in m.group(2).split(":")[1:]]
            t, k = KINDS[kind]
            want = 2 if t in (ADD, CONCAT) else 1
            if len(preds) != want:
                raise BlockError(f"block: layer {i + 1} ({kind}) needs {want} predecessor(s), got {len(preds)}")
            layers.append((i + 1, t, k, preds[0], preds[1] if want == 2 else 0))
        return cls(layers)

    def pretty(self) -> str:
        """One line per layer: index, kind, inputs; the output line lists the concatenated leaves."""
        lines = [f"{layer.index:>3}  {layer.kind:<8} <- {', '.join(map(str, layer.inputs))}" for layer in self.layers]
        lines.append(f"out  concat   <- {', '.join(map(str, self.leaves))}")
        return "\n".join(lines)


def _format(layers: Sequence[Layer]) -> str:
    return ",".join(map(str, layers)) if layers else "empty"


# ========================================================================================================= actions
def num_actions(t: int) -> int:
    """Number of actions at step ``t`` (adding layer ``t + 1``): ``8 (t + 1) + t (t + 1) + 1``."""
    if isinstance(t, bool) or not isinstance(t, numbers.Integral) or t < 0:
        raise BlockError(f"t: expected a step >= 0, got {t!r}")
    return 8 * (t + 1) + t * (t + 1) + 1


def _group_start(p: int) -> int:
    """First action reading predecessor ``p`` (its single-input kinds, then add/concat pairs with ``q < p``)."""
    return 1 + 8 * p + p * (p - 1)


def action_to_layer(t: int, action: int) -> Layer | None:
    """The layer that ``action`` adds at step ``t`` (index ``t + 1``), or ``None`` for the terminal.

    Raises:
        BlockError: ``action`` is not in ``0 .. num_actions(t) - 1``.
    """
    n = num_actions(t)
    if isinstance(action, bool) or not isinstance(action, numbers.Integral) or not 0 <= action < n:
        raise BlockError(f"action: {action!r} is not valid at step {t}; allowed: 0..{n - 1}")
    a = int(action)
    if a == 0:
        return None
    p = (math.isqrt(4 * a + 45) - 7) // 2  # the largest p with _group_start(p) = p^2 + 7p + 1 <= a
    offset = a - _group_start(p)
    if offset < 8:
        kind, kernel = SINGLE_INPUT_KINDS[offset]
        return Layer(t + 1, kind, kernel, p, 0)
    q, which = divmod(offset - 8, 2)
    return Layer(t + 1, CONCAT if which else ADD, 0, p, q)


def layer_to_action(layer: Sequence[int] | None) -> int:
    """The action index of a layer (``None`` or a terminal layer: 0); inverse of :func:`action_to_layer`."""
    if layer is None:
        return 0
    if isinstance(layer, (str, bytes)) or not isinstance(layer, Sequence) or len(layer) != 5:
        raise BlockError(f"layer: expected an NSC 5-tuple (index, type, kernel, pred1, pred2), got {layer!r}")
    index = _as_int(layer[0], "layer.index")
    if index < 1:
        raise BlockError(f"layer.index: expected an index >= 1, got {index}")
    checked = _check_layer(layer, index - 1)
    if checked.type == TERMINAL:
        return 0
    if checked.binary:
        return _group_start(checked.pred1) + 8 + 2 * checked.pred2 + (checked.type == CONCAT)
    return _group_start(checked.pred1) + SINGLE_INPUT_KINDS.index((checked.type, checked.kernel))
