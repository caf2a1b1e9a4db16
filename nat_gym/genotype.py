"""Cells and genotypes: immutable, hashable values with conversions and validation.

A **cell** is a DAG with two input nodes (0: output of the cell two back, 1: output of the previous cell) and ``steps``
intermediate nodes numbered ``2 .. steps + 1``. Every intermediate node has exactly two incoming edges ``(op, from, to)``
with ``from < to``; its value is the sum of the two edge outputs. ``concat`` lists the intermediate nodes concatenated
into the cell output: all of them (*fully-concat*, DARTS) or the nodes no edge consumes (*loose-end*, ENAS).

A **genotype** is a normal cell and a reduction cell with the same number of steps.

Formats:

- triples (canonical): ``Cell(edges=[("sep_conv_3x3", 0, 2), ...], concat=[2, 3, 4, 5])``;
- the DARTS pair format: ``normal=[("sep_conv_3x3", 0), ...]``, entry ``k`` on node ``k // 2 + 2``
  (:meth:`Genotype.from_darts`, :meth:`Genotype.to_darts`). :meth:`Genotype.from_darts` also reads the
  ``Genotype(...)`` strings of the DARTS and NAT/NAT++ reference ``genotypes.py`` files: ``(op, from)`` pairs (DARTS),
  ``(op, from, to)`` triples (NAT, NAT++) or pairs grouped per node (pt.darts, AutoDL), keyword
  (``normal=..., normal_concat=...``) or positional fields in DARTS's order ``(normal, normal_concat, reduce,
  reduce_concat)``, concats as lists or ``range(a, b)``, with or without a ``NAME = `` in front;
- JSON / dict: ``{"normal": {"edges": [[op, from, to], ...], "concat": [...]}, "reduce": {...}}``;
- a compact string, ``str(genotype)``, that :meth:`Genotype.parse` reads back::

      normal=sep_conv_3x3:0:2,sep_conv_3x3:1:2,...;concat=2,3,4,5|reduce=max_pool_3x3:0:2,...;concat=2,3,4,5

Edges are kept sorted by destination node (stable), so two spellings of the same cell compare equal. Every malformed
input raises :class:`~nat_gym.errors.GenotypeError` (or its subclass :class:`~nat_gym.errors.InvalidOpError`), a
``ValueError`` whose message names the field, the value and what is allowed.
"""

from __future__ import annotations

import ast
import hashlib
import json
import numbers
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from nat_gym.errors import GenotypeError, InvalidOpError
from nat_gym.ops import canonical_op

__all__ = ["Edge", "Cell", "Genotype", "DartsGenotype", "MAX_STEPS"]

MAX_STEPS = 8
"""Largest number of intermediate nodes accepted in a cell."""

_DARTS_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")
_MAX_TEXT = 100_000  # characters of a Genotype(...) string; longer strings are refused before parsing


class Edge(NamedTuple):
    """One edge of a cell: ``op`` applied to node ``src``, summed into node ``dst``."""

    op: str
    src: int
    dst: int


class DartsGenotype(NamedTuple):
    """The DARTS pair format (field names as in DARTS's ``genotypes.py``)."""

    normal: list[tuple[str, int]]
    normal_concat: list[int]
    reduce: list[tuple[str, int]]
    reduce_concat: list[int]


def _as_int(value: Any, field: str) -> int:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise GenotypeError(f"{field}: expected an integer node index, got {value!r}")
    return value


def _parse_edge(raw: Any, field: str) -> Edge:
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence) or len(raw) != 3:
        raise GenotypeError(f"{field}: expected an (op, from, to) triple, got {raw!r}")
    op, src, dst = raw
    try:
        op = canonical_op(op)
    except InvalidOpError as e:
        raise InvalidOpError(f"{field}: {e}") from None
    return Edge(op, _as_int(src, f"{field}.from"), _as_int(dst, f"{field}.to"))


@dataclass(frozen=True, init=False)
class Cell:
    """An immutable cell. Construct with ``Cell(edges, concat)``; ``concat`` may also be ``"all"`` (every
    intermediate node) or ``"loose_end"`` (the nodes no edge consumes).

    Attributes:
        edges: the ``(op, from, to)`` triples sorted by destination node.
        concat: the intermediate nodes concatenated into the output, sorted.
    """

    edges: tuple[Edge, ...]
    concat: tuple[int, ...]

    def __init__(self, edges: Iterable[Sequence[Any]], concat: Iterable[int] | str = "all", *, name: str = "cell"):
        if isinstance(edges, (str, bytes)) or not isinstance(edges, Iterable):
            raise GenotypeError(f"{name}.edges: expected a list of (op, from, to) triples, got {edges!r}")
        parsed = [_parse_edge(e, f"{name}.edges[{i}]") for i, e in enumerate(edges)]
        if not parsed:
            raise GenotypeError(f"{name}.edges: the cell is empty; a cell needs 2 incoming edges per intermediate node")
        if len(parsed) % 2:
            raise GenotypeError(
                f"{name}.edges: {len(parsed)} edges given; a cell has exactly 2 edges per intermediate node"
            )
        steps = len(parsed) // 2
        if steps > MAX_STEPS:
            raise GenotypeError(f"{name}.edges: {steps} intermediate nodes; at most {MAX_STEPS} are allowed")
        last = steps + 1
        for i, e in enumerate(parsed):
            if not 2 <= e.dst <= last:
                raise GenotypeError(
                    f"{name}.edges[{i}].to: node {e.dst} is not an intermediate node; allowed: 2..{last} "
                    f"for a cell of {len(parsed)} edges"
                )
            if not 0 <= e.src < e.dst:
                raise GenotypeError(
                    f"{name}.edges[{i}].from: {e.src} must satisfy 0 <= from < to = {e.dst} (edges go forward)"
                )
        counts = {n: 0 for n in range(2, last + 1)}
        for e in parsed:
            counts[e.dst] += 1
        bad = {n: c for n, c in counts.items() if c != 2}
        if bad:
            desc = ", ".join(f"node {n} has {c}" for n, c in bad.items())
            raise GenotypeError(f"{name}.edges: every intermediate node needs exactly 2 inputs; {desc}")
        ordered = tuple(sorted(parsed, key=lambda e: e.dst))
        object.__setattr__(self, "edges", ordered)
        object.__setattr__(self, "concat", self._resolve_concat(concat, name))

    def _resolve_concat(self, concat: Iterable[int] | str, name: str) -> tuple[int, ...]:
        nodes = range(2, self.steps + 2)
        if isinstance(concat, str):
            if concat == "all":
                return tuple(nodes)
            if concat == "loose_end":
                return self.loose_ends()
            raise GenotypeError(f"{name}.concat: expected a list of nodes, 'all' or 'loose_end', got {concat!r}")
        if not isinstance(concat, Iterable):
            raise GenotypeError(f"{name}.concat: expected a list of nodes, 'all' or 'loose_end', got {concat!r}")
        values = [_as_int(c, f"{name}.concat") for c in concat]
        if not values:
            raise GenotypeError(f"{name}.concat: empty; at least one intermediate node must form the output")
        for c in values:
            if c not in nodes:
                raise GenotypeError(f"{name}.concat: node {c} out of range; allowed: 2..{self.steps + 1}")
        if len(set(values)) != len(values):
            raise GenotypeError(f"{name}.concat: duplicate nodes in {values}")
        return tuple(sorted(values))

    # ---------------------------------------------------------------------------------------------- derived
    @property
    def steps(self) -> int:
        """Number of intermediate nodes."""
        return len(self.edges) // 2

    @property
    def num_nodes(self) -> int:
        """Number of nodes, inputs included (``steps + 2``)."""
        return self.steps + 2

    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(e.op for e in self.edges)

    def loose_ends(self) -> tuple[int, ...]:
        """Intermediate nodes that no edge consumes."""
        used = {e.src for e in self.edges}
        return tuple(n for n in range(2, self.steps + 2) if n not in used)

    @property
    def output_mode(self) -> str:
        """``"fully_concat"``, ``"loose_end"`` or ``"custom"``."""
        if self.concat == tuple(range(2, self.steps + 2)):
            return "fully_concat"
        if self.concat == self.loose_ends():
            return "loose_end"
        return "custom"

    def with_ops(self, ops: Sequence[str]) -> Cell:
        """The same graph with new ops (one per edge, in edge order)."""
        if len(ops) != len(self.edges):
            raise GenotypeError(f"ops: expected {len(self.edges)} ops (one per edge), got {len(ops)}")
        edges = []
        for i, (o, e) in enumerate(zip(ops, self.edges)):
            try:
                o = canonical_op(o)
            except InvalidOpError as err:
                raise InvalidOpError(f"ops[{i}]: {err}") from None
            edges.append(Edge(o, e.src, e.dst))
        return Cell._trusted(tuple(edges), self.concat)  # the graph is unchanged: no need to validate it again

    @classmethod
    def _trusted(cls, edges: tuple[Edge, ...], concat: tuple[int, ...]) -> Cell:
        """Build a cell from parts known to be valid and canonical (sorted ``Edge`` tuples, canonical op names)."""
        cell = object.__new__(cls)
        object.__setattr__(cell, "edges", edges)
        object.__setattr__(cell, "concat", concat)
        return cell

    def __hash__(self) -> int:
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash((self.edges, self.concat))
            object.__setattr__(self, "_hash", h)
        return h

    def __getstate__(self) -> dict[str, Any]:
        return _without_hash(self)

    def pretty(self, title: str = "cell") -> str:
        """Human-readable lines: ``node 2 = sep_conv_3x3(0) + skip_connect(1)``."""
        lines = [f"{title} ({self.steps} steps, output = concat of nodes {list(self.concat)}):"]
        for node in range(2, self.steps + 2):
            a, b = [e for e in self.edges if e.dst == node]
            lines.append(f"  node {node} = {a.op}({a.src}) + {b.op}({b.src})")
        return "\n".join(lines)

    # ---------------------------------------------------------------------------------------------- formats
    def to_pairs(self) -> list[tuple[str, int]]:
        return [(e.op, e.src) for e in self.edges]

    @classmethod
    def from_pairs(cls, pairs: Iterable[Sequence[Any]], concat: Iterable[int] | str = "all", *, name: str = "cell"):
        """A cell from DARTS's ``(op, from)`` pairs (entry ``k`` on node ``k // 2 + 2``), from the ``(op, from, to)``
        triples of the NAT / NAT++ reference files, or from pairs grouped per node (``[[(op, from), (op, from)],
        ...]``, entry ``k`` holding the inputs of node ``k + 2``, as pt.darts and AutoDL write them); one format for
        the whole list."""
        if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Iterable):
            raise GenotypeError(f"{name}: expected a list of (op, from) pairs or (op, from, to) triples, got {pairs!r}")
        entries = list(pairs)
        if entries and all(_is_tuple_like(g) and g and all(_is_tuple_like(p) for p in g) for g in entries):
            grouped = [(p, k) for k, group in enumerate(entries) for p in group]
            for p, k in grouped:
                if len(p) != 2:
                    raise GenotypeError(f"{name}[{k}]: expected a group of (op, from) pairs for node {k + 2}, got {p!r}")
            return cls([(p[0], p[1], k + 2) for p, k in grouped], concat, name=name)
        width = len(entries[0]) if entries and _is_tuple_like(entries[0]) and len(entries[0]) == 3 else 2
        triples = []
        for k, p in enumerate(entries):
            if not _is_tuple_like(p) or len(p) != width:
                what = "an (op, from, to) triple like entry 0" if width == 3 else "an (op, from) pair"
                raise GenotypeError(
                    f"{name}[{k}]: expected {what} (DARTS writes (op, from) pairs, NAT (op, from, to) triples; one "
                    f"format per cell), got {p!r}"
                )
            triples.append(tuple(p) if width == 3 else (p[0], p[1], k // 2 + 2))
        return cls(triples, concat, name=name)

    def to_dict(self) -> dict[str, Any]:
        return {"edges": [list(e) for e in self.edges], "concat": list(self.concat)}

    @classmethod
    def from_dict(cls, data: Any, *, name: str = "cell") -> Cell:
        if not isinstance(data, Mapping):
            raise GenotypeError(f"{name}: expected a mapping with 'edges' and 'concat', got {type(data).__name__}")
        unknown = set(data) - {"edges", "concat"}
        if unknown or "edges" not in data:
            raise GenotypeError(
                f"{name}: expected keys 'edges' (required) and 'concat'; got {sorted(map(str, data))}"
            )
        return cls(data["edges"], data.get("concat", "all"), name=name)

    def __str__(self) -> str:
        edges = ",".join(f"{e.op}:{e.src}:{e.dst}" for e in self.edges)
        return f"{edges};concat={','.join(map(str, self.concat))}"

    @classmethod
    def parse(cls, text: str, *, name: str = "cell") -> Cell:
        if not isinstance(text, str):
            raise GenotypeError(f"{name}: expected a string, got {type(text).__name__}")
        body, sep, concat = text.strip().partition(";concat=")
        if not sep:
            raise GenotypeError(f"{name}: expected 'op:from:to,...;concat=n,...', got {text!r}")
        triples = []
        for i, item in enumerate(body.split(",")):
            parts = item.strip().split(":")
            if len(parts) != 3:
                raise GenotypeError(f"{name}.edges[{i}]: expected 'op:from:to', got {item!r}")
            triples.append((parts[0], _parse_int(parts[1], f"{name}.edges[{i}].from"),
                            _parse_int(parts[2], f"{name}.edges[{i}].to")))  # fmt: skip
        nodes = [_parse_int(c, f"{name}.concat") for c in concat.split(",")] if concat.strip() else []
        return cls(triples, nodes, name=name)


def _is_tuple_like(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _parse_int(text: str, field: str) -> int:
    text = text.strip()
    if not re.fullmatch(r"[+-]?\d{1,6}", text):
        raise GenotypeError(f"{field}: expected an integer, got {text!r}")
    return int(text)


@dataclass(frozen=True, init=False)
class Genotype:
    """A normal cell and a reduction cell with the same number of steps: the state of the NAT MDP.

    Genotypes are values: hashable, comparable, serialisable (``str``, JSON, DARTS pairs). :meth:`digest` gives a
    hash that is stable across processes, for caches on disk.
    """

    normal: Cell
    reduce: Cell

    def __init__(self, normal: Cell | Mapping | Iterable, reduce: Cell | Mapping | Iterable,
                 normal_concat: Iterable[int] | str = "all", reduce_concat: Iterable[int] | str = "all"):  # fmt: skip
        n = _coerce_cell(normal, normal_concat, "normal")
        r = _coerce_cell(reduce, reduce_concat, "reduce")
        if n.steps != r.steps:
            raise GenotypeError(
                f"reduce: the reduction cell has {r.steps} intermediate nodes but the normal cell has {n.steps}; "
                "both cells of a genotype must have the same number of steps"
            )
        object.__setattr__(self, "normal", n)
        object.__setattr__(self, "reduce", r)

    @property
    def steps(self) -> int:
        return self.normal.steps

    @property
    def cells(self) -> tuple[Cell, Cell]:
        return (self.normal, self.reduce)

    @property
    def edges(self) -> tuple[Edge, ...]:
        """Edges of the normal cell, then of the reduction cell (the order of actions and masks)."""
        return self.normal.edges + self.reduce.edges

    @property
    def ops(self) -> tuple[str, ...]:
        return self.normal.ops + self.reduce.ops

    @property
    def num_edges(self) -> int:
        return len(self.normal.edges) + len(self.reduce.edges)

    def with_ops(self, ops: Sequence[str]) -> Genotype:
        """Same graphs, new ops: ``ops`` lists the normal cell's edges then the reduction cell's."""
        if isinstance(ops, str) or len(ops) != self.num_edges:
            raise GenotypeError(f"ops: expected {self.num_edges} ops (normal then reduce edges), got {ops!r}")
        k = len(self.normal.edges)
        return Genotype._trusted(self.normal.with_ops(ops[:k]), self.reduce.with_ops(ops[k:]))

    def _with_canonical_ops(self, ops: Sequence[str]) -> Genotype:
        """:meth:`with_ops` for canonical op names (no checks; for the rules' fast path)."""
        k = len(self.normal.edges)
        n = tuple(Edge(o, e.src, e.dst) for o, e in zip(ops[:k], self.normal.edges))
        r = tuple(Edge(o, e.src, e.dst) for o, e in zip(ops[k:], self.reduce.edges))
        return Genotype._trusted(Cell._trusted(n, self.normal.concat), Cell._trusted(r, self.reduce.concat))

    @classmethod
    def _trusted(cls, normal: Cell, reduce: Cell) -> Genotype:
        """Build a genotype from two valid cells with the same number of steps (no checks)."""
        g = object.__new__(cls)
        object.__setattr__(g, "normal", normal)
        object.__setattr__(g, "reduce", reduce)
        return g

    def __hash__(self) -> int:
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash((self.normal, self.reduce))
            object.__setattr__(self, "_hash", h)
        return h

    def __getstate__(self) -> dict[str, Any]:
        return _without_hash(self)

    def digest(self) -> str:
        """A stable hex digest of the genotype (same in every process)."""
        return hashlib.sha1(str(self).encode()).hexdigest()[:16]

    def pretty(self) -> str:
        """Both cells as readable text."""
        return self.normal.pretty("normal cell") + "\n" + self.reduce.pretty("reduction cell")

    def diff(self, other: Genotype) -> str:
        """Text diff of two genotypes with the same graph: one line per edge, ``*`` where the op changed."""
        if [(e.src, e.dst) for e in self.edges] != [(e.src, e.dst) for e in other.edges]:
            return f"--- before\n{self.pretty()}\n+++ after\n{other.pretty()}"
        lines, k = [], len(self.normal.edges)
        width = max(len(e.op) for e in self.edges)
        for i, (a, b) in enumerate(zip(self.edges, other.edges)):
            if i in (0, k):
                lines.append("normal cell:" if i == 0 else "reduction cell:")
            mark = "*" if a.op != b.op else " "
            arrow = f"-> {b.op}" if a.op != b.op else ""
            lines.append(f" {mark} {a.src}->{a.dst}  {a.op:<{width}} {arrow}".rstrip())
        changed = sum(a.op != b.op for a, b in zip(self.edges, other.edges))
        lines.append(f"{changed} of {len(self.edges)} edges changed")
        return "\n".join(lines)

    # ------------------------------------------------------------------------------------------- formats
    def __str__(self) -> str:
        return f"normal={self.normal}|reduce={self.reduce}"

    def __repr__(self) -> str:
        return f"Genotype.parse({str(self)!r})"

    @classmethod
    def parse(cls, text: str) -> Genotype:
        """Read the compact string form written by ``str()``."""
        if not isinstance(text, str):
            raise GenotypeError(f"genotype: expected a string, got {type(text).__name__}")
        m = re.fullmatch(r"\s*normal=(.*)\|reduce=(.*)\s*", text, flags=re.S)
        if not m:
            raise GenotypeError(f"genotype: expected 'normal=...|reduce=...', got {text[:80]!r}")
        return cls(Cell.parse(m.group(1), name="normal"), Cell.parse(m.group(2), name="reduce"))

    def to_dict(self) -> dict[str, Any]:
        return {"normal": self.normal.to_dict(), "reduce": self.reduce.to_dict()}

    @classmethod
    def from_dict(cls, data: Any) -> Genotype:
        if not isinstance(data, Mapping):
            raise GenotypeError(f"genotype: expected a mapping with 'normal' and 'reduce', got {type(data).__name__}")
        if {"normal_concat", "reduce_concat"} & set(data):
            return cls.from_darts(data)
        missing = {"normal", "reduce"} - set(data)
        if missing:
            raise GenotypeError(f"genotype: missing key(s) {sorted(missing)}; expected 'normal' and 'reduce'")
        return cls(Cell.from_dict(data["normal"], name="normal"), Cell.from_dict(data["reduce"], name="reduce"))

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> Genotype:
        try:
            data = json.loads(text)
        except (TypeError, ValueError, RecursionError) as e:  # ValueError covers JSONDecodeError, UnicodeDecodeError
            raise GenotypeError(f"genotype: not valid JSON ({type(e).__name__}: {str(e)[:100]})") from None
        return cls.from_dict(data)

    def to_darts(self) -> DartsGenotype:
        """The DARTS pair format (``null`` is written as DARTS's ``none``)."""

        def pairs(cell: Cell) -> list[tuple[str, int]]:
            return [("none" if op == "null" else op, src) for op, src in cell.to_pairs()]

        return DartsGenotype(pairs(self.normal), list(self.normal.concat), pairs(self.reduce), list(self.reduce.concat))

    @classmethod
    def from_darts(cls, obj: Any) -> Genotype:
        """Read the DARTS format: a ``DartsGenotype``/DARTS ``Genotype`` namedtuple, a mapping with the keys
        ``normal, normal_concat, reduce, reduce_concat``, or the ``"Genotype(...)"`` string of a DARTS or NAT /
        NAT++ ``genotypes.py`` file. Cells are ``(op, from)`` pairs (DARTS), ``(op, from, to)`` triples (NAT,
        NAT++) or pairs grouped per node (pt.darts, AutoDL; see :meth:`Cell.from_pairs`); concats are lists or
        ``range`` objects (``range(a, b)`` in a string). In a string the fields may be keywords or positional in DARTS's order (``normal, normal_concat, reduce, reduce_concat``), and a
        ``NAME = `` prefix is ignored, so a line copied from those files reads as it is::

            Genotype.from_darts("NATv2_DARTS = Genotype(normal=[('sep_conv_3x3', 0, 2), ...], "
                                "normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=range(2, 6))")

        Raises:
            GenotypeError: anything else; for an unreadable string the message names the accepted forms.
        """
        if isinstance(obj, str):
            obj = _parse_darts_repr(obj)
        if hasattr(obj, "_asdict"):
            obj = obj._asdict()
        if not isinstance(obj, Mapping):
            raise GenotypeError(f"genotype: expected the DARTS / NAT Genotype format, got {type(obj).__name__}")
        missing = {"normal", "reduce"} - set(obj)
        if missing:
            raise GenotypeError(f"genotype: missing DARTS field(s) {sorted(missing)}")
        normal = Cell.from_pairs(obj["normal"], _concat_arg(obj.get("normal_concat", "all")), name="normal")
        reduce = Cell.from_pairs(obj["reduce"], _concat_arg(obj.get("reduce_concat", "all")), name="reduce")
        return cls(normal, reduce)


def _without_hash(value: Cell | Genotype) -> dict[str, Any]:
    """Pickled state without the memoised hash: string hashes differ between processes (``PYTHONHASHSEED``), so a
    hash computed in one would make an unpickled value miss every dict and set of another."""
    return {k: v for k, v in value.__dict__.items() if k != "_hash"}


def _concat_arg(value: Any) -> Any:
    return list(value) if isinstance(value, range) else value


def _coerce_cell(value: Any, concat: Iterable[int] | str, name: str) -> Cell:
    if isinstance(value, Cell):
        return value
    if isinstance(value, Mapping):
        return Cell.from_dict(value, name=name)
    return Cell(value, concat, name=name)


def _darts_repr_error(text: str, why: str) -> GenotypeError:
    return GenotypeError(
        f"genotype: cannot read {text[:60]!r}{'...' if len(text) > 60 else ''} as a DARTS / NAT Genotype(...) string "
        f"({why}); expected e.g. \"Genotype(normal=[('sep_conv_3x3', 0, 2), ...], normal_concat=range(2, 6), "
        f"reduce=[...], reduce_concat=[2, 3, 4, 5])\" with (op, from) pairs, (op, from, to) triples or per-node "
        f"groups of (op, from) pairs"
    )


def _parse_darts_repr(text: str) -> dict[str, Any]:
    """The fields of a ``Genotype(...)`` string (keywords or positional, optional ``NAME =`` prefix), read from its
    syntax tree: only string / number literals, lists, tuples and ``range(...)`` are accepted (nothing is run)."""
    if len(text) > _MAX_TEXT:
        raise _darts_repr_error(text, f"longer than {_MAX_TEXT:,} characters")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. SyntaxWarning for an invalid escape inside a string literal
            tree = ast.parse(text.strip(), mode="exec")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
        raise _darts_repr_error(text, f"not Python syntax: {type(e).__name__}") from None
    stmt = tree.body[0] if len(tree.body) == 1 else None
    call = stmt.value if isinstance(stmt, (ast.Expr, ast.Assign, ast.AnnAssign)) else None  # NAME: T = Genotype(...)
    func = getattr(call, "func", None)
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    if not isinstance(call, ast.Call) or not name.endswith("Genotype"):
        raise _darts_repr_error(text, "not a single Genotype(...) call")
    if len(call.args) > len(_DARTS_FIELDS):
        raise _darts_repr_error(text, f"{len(call.args)} positional fields; DARTS has {len(_DARTS_FIELDS)}")
    fields: dict[str, Any] = {}
    for field, node in zip(_DARTS_FIELDS, call.args):
        fields[field] = _literal(node, field, text)
    for kw in call.keywords:
        if kw.arg is None or kw.arg not in _DARTS_FIELDS:
            raise _darts_repr_error(text, f"unknown field {kw.arg or '**'!r}; fields: {', '.join(_DARTS_FIELDS)}")
        if kw.arg in fields:
            raise _darts_repr_error(text, f"field {kw.arg!r} given twice")
        fields[kw.arg] = _literal(kw.value, kw.arg, text)
    return fields


def _literal(node: ast.AST, field: str, text: str, depth: int = 0) -> Any:
    """A literal of a Genotype(...) string: str, int, float, list, tuple, ``-n`` or ``range(...)``."""
    if depth > 4:
        raise _darts_repr_error(text, f"{field}: nested too deeply")
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float)):
        return node.value
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant)
            and isinstance(node.operand.value, (int, float))):  # fmt: skip
        return -node.operand.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e, field, text, depth + 1) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range" and not node.keywords:
        bounds = [_literal(a, field, text, depth + 1) for a in node.args]
        if not 1 <= len(bounds) <= 3 or not all(isinstance(b, int) and abs(b) <= 10**6 for b in bounds):
            raise _darts_repr_error(text, f"{field}: range() needs 1 to 3 small integers")
        nodes = range(*bounds) if bounds[-1] != 0 or len(bounds) < 3 else None
        if nodes is None or len(nodes) > MAX_STEPS:
            raise _darts_repr_error(text, f"{field}: range{tuple(bounds)} is not a list of at most {MAX_STEPS} nodes")
        return list(nodes)
    raise _darts_repr_error(text, f"{field}: {type(node).__name__} is not a literal list, tuple, number or range")
