"""Transition rules: which op each op may be transformed into (the action masks of the NAT MDP).

Rules are data. A :class:`TransitionRules` holds an op vocabulary (the ``K`` columns of every mask) and, for each
source op, the set of allowed target ops. It gives the boolean mask row of an op, the ``[edges, K]`` mask of a whole
genotype (normal edges, then reduce edges), and :meth:`TransitionRules.apply`, which transforms a genotype and rejects
invalid transitions with a clear error.

Shipped rule sets (:func:`get` by name):

``"nat"`` (:data:`NAT`)
    NAT (NeurIPS 2019): ops fall in three classes, O (every real op), S (skip) and N (null). O -> {same O, S, N},
    S -> {S, N}, N -> {N, S}. Vocabulary: the union of NAT's two op lists (11 ops).
``"nat-ext"`` (:data:`NAT_EXTENDED`)
    The same O/S/N rule over every op nat-gym knows (so NAT's NAONet transformation can be checked).
``"nat++"`` (:data:`NAT_PLUS_PLUS`)
    NAT++ (TPAMI 2021): the published table over 13 ops (``resources/transitions.json``), equal to the two-level rule
    of :func:`two_level_rule`.
``"nat++ext"`` (:data:`NAT_PLUS_PLUS_EXTENDED`)
    Our extension of the two-level rule to NASNet / AmoebaNet / PNASNet / NAONet ops. No published rule covers them;
    the choices:

    - type order ``conv -> fac_conv -> sep_conv -> dil_conv -> pooling`` (any forward jump; max and avg pooling
      interchange; the two orders of a factorized conv interchange). ``fac_conv`` (``conv_1x3_3x1``,
      ``conv_1x7_7x1``, ``conv_7x1_1x7``: ``2kC^2`` weights) sits between the full conv (``k^2 C^2``) and the
      separable conv (``2(k^2 C + C^2)``), which is where its cost lies;
    - kernel order ``7 -> 5 -> 3 -> 2 -> 1`` (same or smaller; a factorized conv's kernel is its long side), so a
      2x2 pool may only become a 2x2 pool, skip or null (NAONet's published ``avg_pool_2x2 -> avg_pool_3x3`` grows
      the kernel and is not allowed).
    - cost: every allowed transition except ``null -> skip`` keeps params and MAdds at most the source's at stride 1
      for ``C >= 9`` (``conv_1x7_7x1 -> sep_conv_7x7`` is the binding pair: ``14C^2`` vs ``2C^2 + 98C``); NAT++'s own
      table holds for ``C >= 3``. At stride 2 a skip is a factorized reduce (``C^2`` weights), so ``pool -> skip``
      adds weights there, as in the papers. ``tests/test_rules.py`` checks all of this.

Users define their own rule set with :meth:`TransitionRules.from_dict` (``"same"`` stands for the source op and
``"*"`` for every op not listed).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from typing import Any, Literal

import numpy as np

from nat_gym.errors import InvalidOpError, TransitionError
from nat_gym.genotype import Genotype
from nat_gym.ops import EXTENDED_OPS, NAT_OPS, OPS, check_vocabulary, op_spec

__all__ = [
    "TransitionRules",
    "NAT",
    "NAT_EXTENDED",
    "NAT_PLUS_PLUS",
    "NAT_PLUS_PLUS_EXTENDED",
    "RULE_SETS",
    "get",
    "names",
    "covering",
    "osn_rule",
    "two_level_rule",
    "TYPE_ORDER",
]

TYPE_ORDER: dict[str, int] = {"conv": 0, "fac_conv": 1, "sep_conv": 2, "dil_conv": 3, "max_pool": 4, "avg_pool": 4}
"""Rank of each op type in the two-level rule: a transition may only move to a rank >= the source's."""

_FREE = ("skip_connect", "null")


@dataclass(frozen=True, eq=False)
class TransitionRules:
    """A rule set: an op vocabulary and the allowed targets of each op.

    Args:
        name: a short name (``"nat++"``).
        ops: the vocabulary, in column order of the masks.
        allowed: for each op of the vocabulary, the ops it may become (a subset of the vocabulary, non-empty).
        description: one line for ``nat-gym rules``.
    """

    name: str
    ops: tuple[str, ...]
    allowed: Mapping[str, frozenset[str]] = field(repr=False)
    description: str = ""

    def __post_init__(self) -> None:
        vocab = check_vocabulary(self.ops)
        object.__setattr__(self, "ops", vocab)
        fixed: dict[str, frozenset[str]] = {}
        for src in vocab:
            if src not in self.allowed:
                raise TransitionError(f"allowed: no entry for op {src!r} of the vocabulary of rule set {self.name!r}")
            targets = frozenset(self.allowed[src])
            extra = sorted(targets - set(vocab))
            if extra:
                raise TransitionError(
                    f"allowed[{src!r}]: targets {extra} are not in the vocabulary of {self.name!r}: {list(vocab)}"
                )
            if not targets:
                raise TransitionError(f"allowed[{src!r}]: an op needs at least one allowed target")
            fixed[src] = targets
        unknown = sorted(set(self.allowed) - set(vocab))
        if unknown:
            raise TransitionError(f"allowed: sources {unknown} are not in the vocabulary {list(vocab)}")
        object.__setattr__(self, "allowed", fixed)

    # ------------------------------------------------------------------------------------------------- lookups
    @property
    def num_ops(self) -> int:
        """``K``, the number of columns of a mask."""
        return len(self.ops)

    @cached_property
    def _index(self) -> dict[str, int]:
        return {o: i for i, o in enumerate(self.ops)}

    @cached_property
    def table(self) -> np.ndarray:
        """The ``[K, K]`` boolean matrix: ``table[i, j]`` iff ``ops[i] -> ops[j]`` is allowed (read-only)."""
        t = np.zeros((self.num_ops, self.num_ops), dtype=bool)
        for src, targets in self.allowed.items():
            for dst in targets:
                t[self._index[src], self._index[dst]] = True
        t.setflags(write=False)
        return t

    def index(self, op: str) -> int:
        """Column of ``op`` in the masks."""
        try:
            return self._index[op]
        except (KeyError, TypeError):  # TypeError: unhashable input; op_spec below names it
            pass
        canon = op_spec(op).name  # raises InvalidOpError for unknown names
        if canon not in self._index:
            raise InvalidOpError(f"op: {op!r} is not in the vocabulary of rule set {self.name!r}: {list(self.ops)}")
        return self._index[canon]

    def targets(self, op: str) -> tuple[str, ...]:
        """The allowed targets of ``op``, in vocabulary order."""
        row = self.table[self.index(op)]
        return tuple(o for o, ok in zip(self.ops, row) if ok)

    def is_allowed(self, src: str, dst: str) -> bool:
        return bool(self.table[self.index(src), self.index(dst)])

    def mask_row(self, op: str) -> np.ndarray:
        """Boolean ``[K]`` mask of the targets of ``op``."""
        return self.table[self.index(op)].copy()

    def op_indices(self, genotype: Genotype) -> np.ndarray:
        """``[E]`` int64 column index of every edge's op (normal edges, then reduce edges)."""
        index = self._index
        try:
            return np.array([index[e.op] for e in genotype.edges], dtype=np.int64)
        except KeyError:
            pass
        out = np.empty(genotype.num_edges, dtype=np.int64)
        for i, e in enumerate(genotype.edges):
            try:
                out[i] = self.index(e.op)
            except InvalidOpError:
                cell, k = _edge_name(genotype, i)
                raise InvalidOpError(
                    f"{cell}.edges[{k}]: op {e.op!r} (edge {e.src}->{e.dst}) is not in the vocabulary of rule set "
                    f"{self.name!r}: {list(self.ops)}"
                ) from None
        return out

    def mask(self, genotype: Genotype) -> np.ndarray:
        """Boolean ``[E, K]`` mask of a genotype: row ``i`` = allowed targets of edge ``i``'s op."""
        return self.table[self.op_indices(genotype)]

    def check(self, genotype: Genotype) -> None:
        """Raise :class:`InvalidOpError` if an op of ``genotype`` is outside the vocabulary."""
        self.op_indices(genotype)

    # ------------------------------------------------------------------------------------------------- apply
    def _target_names(self, genotype: Genotype, new_ops: Sequence[str | int] | np.ndarray) -> list[str]:
        if isinstance(new_ops, np.ndarray) and new_ops.ndim != 1:
            raise TransitionError(f"new_ops: expected a 1-D array of {genotype.num_edges} ops, got shape {new_ops.shape}")
        if isinstance(new_ops, str) or not hasattr(new_ops, "__len__") or len(new_ops) != genotype.num_edges:
            raise TransitionError(
                f"new_ops: expected {genotype.num_edges} ops (normal edges, then reduce edges), got "
                f"{new_ops if isinstance(new_ops, str) else len(new_ops)!r}"
            )
        names = []
        for i, o in enumerate(new_ops):
            if isinstance(o, (int, np.integer)) and not isinstance(o, bool):
                if not 0 <= int(o) < self.num_ops:
                    raise TransitionError(f"new_ops[{i}]: index {int(o)} out of range; allowed: 0..{self.num_ops - 1}")
                names.append(self.ops[int(o)])
            else:
                names.append(self.ops[self.index(o)])
        return names

    def invalid_edges(self, genotype: Genotype, new_ops: Sequence[str | int] | np.ndarray) -> list[int]:
        """Indices of the edges whose requested transition is not allowed."""
        src = self.op_indices(genotype)
        names = self._target_names(genotype, new_ops)
        return [i for i, (s, d) in enumerate(zip(src, names)) if not self.table[s, self._index[d]]]

    def apply(
        self,
        genotype: Genotype,
        new_ops: Sequence[str | int] | np.ndarray,
        invalid: Literal["raise", "keep"] = "raise",
    ) -> Genotype:
        """Transform every edge of ``genotype`` into ``new_ops`` (op names or column indices, one per edge).

        Args:
            invalid: ``"raise"`` (default) rejects a transition the rules forbid with :class:`TransitionError`;
                ``"keep"`` leaves such an edge's op unchanged.
        """
        if invalid not in ("raise", "keep"):
            raise TransitionError(f"invalid: expected 'raise' or 'keep', got {invalid!r}")
        names = self._target_names(genotype, new_ops)
        bad = self.invalid_edges(genotype, names)
        if bad and invalid == "raise":
            i = bad[0]
            cell, k = _edge_name(genotype, i)
            e = genotype.edges[i]
            raise TransitionError(
                f"new_ops[{i}] ({cell}.edges[{k}], edge {e.src}->{e.dst}): {e.op!r} -> {names[i]!r} is not allowed by "
                f"rule set {self.name!r}; allowed targets: {list(self.targets(e.op))}"
                + (f" ({len(bad)} invalid edges in all)" if len(bad) > 1 else "")
            )
        for i in bad:
            names[i] = genotype.edges[i].op
        return genotype.with_ops(names)

    def apply_indices(self, genotype: Genotype, new_ops: np.ndarray) -> tuple[Genotype, np.ndarray]:
        """Fast path of ``apply(..., invalid="keep")`` for an ``[E]`` integer array of column indices (the env's
        action). Returns the transformed genotype and the ``[E]`` boolean array of invalid (kept) edges."""
        new_ops = np.asarray(new_ops)
        if new_ops.shape != (genotype.num_edges,) or not np.issubdtype(new_ops.dtype, np.integer):
            raise TransitionError(f"new_ops: expected {genotype.num_edges} integer op indices, got {new_ops!r}")
        if new_ops.size and (new_ops.min() < 0 or new_ops.max() >= self.num_ops):
            raise TransitionError(f"new_ops: op indices must lie in 0..{self.num_ops - 1}, got {new_ops.tolist()}")
        src = self.op_indices(genotype)
        invalid = ~self.table[src, new_ops]
        final = np.where(invalid, src, new_ops)
        ops = self.ops
        return genotype._with_canonical_ops([ops[i] for i in final]), invalid

    def validate_transformation(self, source: Genotype, target: Genotype) -> list[int]:
        """Edges where ``target`` is not a valid transformation of ``source`` (same graph required)."""
        same_graph = [(e.src, e.dst) for e in source.edges] == [(e.src, e.dst) for e in target.edges]
        concats = (source.normal.concat, source.reduce.concat) != (target.normal.concat, target.reduce.concat)
        if not same_graph or concats:
            raise TransitionError("target: a transformation keeps the graph; the edges or concat differ from source")
        return self.invalid_edges(source, target.ops)

    # ------------------------------------------------------------------------------------------------- formats
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], name: str | None = None) -> TransitionRules:
        """Build a rule set from ``{"ops": [...], "allowed": {src: [targets]}}``.

        In ``allowed``, the target ``"same"`` stands for the source op itself and the key ``"*"`` gives the targets
        of every op without an entry of its own (so NAT is
        ``{"*": ["same", "skip_connect", "null"], "skip_connect": [...], "null": [...]}``).
        """
        if not isinstance(data, Mapping) or "ops" not in data or "allowed" not in data:
            raise TransitionError("rules: expected a mapping with keys 'ops' (a list) and 'allowed' (a mapping)")
        ops = check_vocabulary(data["ops"])
        raw = data["allowed"]
        if not isinstance(raw, Mapping):
            raise TransitionError(f"allowed: expected a mapping from op to a list of ops, got {type(raw).__name__}")
        default = raw.get("*")
        allowed: dict[str, frozenset[str]] = {}
        for src in ops:
            entry = next((raw[k] for k in raw if k != "*" and _canon(k) == src), default)
            if entry is None:
                raise TransitionError(f"allowed: no entry for op {src!r} and no '*' default")
            if isinstance(entry, str) or not isinstance(entry, Iterable):
                raise TransitionError(f"allowed[{src!r}]: expected a list of op names, got {entry!r}")
            allowed[src] = frozenset(src if t == "same" else _canon(t) for t in entry)
        unknown = [k for k in raw if k != "*" and _canon(k) not in ops]
        if unknown:
            raise TransitionError(f"allowed: sources {unknown} are not in ops {list(ops)}")
        return cls(name or str(data.get("name", "custom")), ops, allowed, str(data.get("description", "")))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "ops": list(self.ops),
            "allowed": {src: list(self.targets(src)) for src in self.ops},
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TransitionRules):
            return NotImplemented
        return self.ops == other.ops and dict(self.allowed) == dict(other.allowed)

    def __hash__(self) -> int:
        return hash((self.ops, tuple(sorted(self.allowed.items(), key=lambda kv: kv[0]))))

    def format_table(self) -> str:
        """The transition table as text: one row per source op, ``x`` for an allowed target."""
        short = [_short(o) for o in self.ops]
        width = max(len(o) for o in self.ops)
        head = " " * (width + 2) + " ".join(f"{s:>5}" for s in short)
        rows = [f"{self.name}: {self.description}".rstrip(": "), head]
        for o, row in zip(self.ops, self.table):
            cells = " ".join(f"{'x' if ok else '.':>5}" for ok in row)
            rows.append(f"{o:<{width}}  {cells}   ({int(row.sum())} targets)")
        return "\n".join(rows)


def _canon(op: str) -> str:
    return op_spec(op).name


def _short(op: str) -> str:
    s = op_spec(op)
    if s.kind in ("skip", "null"):
        return s.kind
    prefix = {"conv": "c", "fac_conv": "f", "sep_conv": "s", "dil_conv": "d", "max_pool": "mp", "avg_pool": "ap"}
    suffix = "" if s.kind != "fac_conv" else s.first_axis
    return f"{prefix[s.kind]}{s.kernel}{suffix}"


def _edge_name(genotype: Genotype, i: int) -> tuple[str, int]:
    k = len(genotype.normal.edges)
    return ("normal", i) if i < k else ("reduce", i - k)


# ---------------------------------------------------------------------------------------------------- rule makers
def osn_rule(ops: Iterable[str]) -> dict[str, frozenset[str]]:
    """NAT's O/S/N rule over ``ops``: O -> {same, skip, null}, skip -> {skip, null}, null -> {null, skip}."""
    vocab = check_vocabulary(ops)
    return {o: frozenset({o, *(f for f in _FREE if f in vocab)}) for o in vocab}


def two_level_rule(ops: Iterable[str]) -> dict[str, frozenset[str]]:
    """NAT++'s two-level rule over ``ops``: a target is allowed iff its type is the same or later in
    :data:`TYPE_ORDER` and its kernel is the same or smaller; skip and null are always allowed; skip and null may
    only become skip or null."""
    vocab = check_vocabulary(ops)
    free = frozenset(f for f in _FREE if f in vocab)
    out: dict[str, frozenset[str]] = {}
    for src in vocab:
        s = OPS[src]
        if s.kind in ("skip", "null"):
            out[src] = free
            continue
        out[src] = free | {
            t for t in vocab
            if OPS[t].kind in TYPE_ORDER
            and TYPE_ORDER[OPS[t].kind] >= TYPE_ORDER[s.kind]
            and OPS[t].kernel <= s.kernel
        }  # fmt: skip
    return out


def _published_nat_plus_plus() -> TransitionRules:
    data = json.loads(resources.files("nat_gym").joinpath("resources/transitions.json").read_text())["nat++"]
    return TransitionRules(
        "nat++",
        tuple(data["ops"]),
        {k: frozenset(v) for k, v in data["allowed"].items()},
        "NAT++ two-level rule (published table, 13 ops)",
    )


NAT = TransitionRules("nat", NAT_OPS, osn_rule(NAT_OPS), "NAT O/S/N rule over NAT's two op lists (11 ops)")
NAT_EXTENDED = TransitionRules(
    "nat-ext", EXTENDED_OPS, osn_rule(EXTENDED_OPS),
    "NAT O/S/N rule over every op nat-gym knows",
)  # fmt: skip
NAT_PLUS_PLUS = _published_nat_plus_plus()
NAT_PLUS_PLUS_EXTENDED = TransitionRules(
    "nat++ext", EXTENDED_OPS, two_level_rule(EXTENDED_OPS),
    "NAT++ two-level rule extended to 7x7, factorized convs and 2x2 pools (ours, see nat_gym.rules)",
)  # fmt: skip

RULE_SETS: dict[str, TransitionRules] = {r.name: r for r in (NAT, NAT_EXTENDED, NAT_PLUS_PLUS, NAT_PLUS_PLUS_EXTENDED)}
_ALIASES = {"natpp": "nat++", "nat_plus_plus": "nat++", "nat++-ext": "nat++ext", "natppext": "nat++ext",
            "natext": "nat-ext"}  # fmt: skip


def names() -> tuple[str, ...]:
    return tuple(RULE_SETS)


def get(rules: str | TransitionRules | Mapping[str, Any]) -> TransitionRules:
    """A rule set by name (``"nat"``, ``"nat-ext"``, ``"nat++"``, ``"nat++ext"``), a :class:`TransitionRules`
    (returned as is) or a dict for :meth:`TransitionRules.from_dict`."""
    if isinstance(rules, TransitionRules):
        return rules
    if isinstance(rules, Mapping):
        return TransitionRules.from_dict(rules)
    key = _ALIASES.get(str(rules).lower(), str(rules).lower())
    if key not in RULE_SETS:
        raise TransitionError(f"rules: unknown rule set {rules!r}; allowed: {', '.join(RULE_SETS)}")
    return RULE_SETS[key]


def covering(ops: Iterable[str], like: str | TransitionRules) -> TransitionRules | None:
    """The rule set for a genotype that uses ``ops``: ``like`` itself when its vocabulary holds them all, else the
    shipped rule set that holds them and extends ``like`` (agrees with it on ``like``'s own ops: ``nat -> nat-ext``,
    ``nat++ -> nat++ext``), else any shipped rule set that holds them; ``None`` when none does. Error messages use it
    to say which ``rules=`` to pass."""
    like = get(like)
    needed = {_canon(o) for o in ops}
    if needed <= set(like.ops):
        return like
    holding = [r for r in RULE_SETS.values() if needed <= set(r.ops)]
    for r in holding:
        if set(like.ops) <= set(r.ops) and all(r.allowed[o] & set(like.ops) == like.allowed[o] for o in like.ops):
            return r
    return holding[0] if holding else None
