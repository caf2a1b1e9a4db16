r"""The observation (and action) contract of ``NATCell-v0``.

A state of the NAT MDP is a genotype: a normal cell and a reduction cell with the same number ``S`` of intermediate
nodes (``steps``). Every cell has ``N = S + 2`` nodes (0 and 1 are the inputs, ``2 .. S + 1`` the intermediate nodes)
and ``E = 2S`` edges. ``K`` is the number of ops of the rule set's vocabulary (:attr:`TransitionRules.ops`).

Observation
-----------
A :class:`gymnasium.spaces.Dict` of fixed-shape arrays (no ``spaces.Graph``, so Stable-Baselines3's
``MultiInputPolicy`` accepts it). Along the leading axis, index ``0`` is the normal cell and ``1`` the reduction cell::

    "ops":         Box(0, 1,   (2, E, K), float32)  one-hot of each edge's current op (column = index in rules.ops)
    "edges":       Box(0, N-1, (2, E, 2), int64)    (src, dst) of each edge
    "adjacency":   Box(0, 2,   (2, N, N), float32)  A[c, dst, src] = number of edges src -> dst (duplicates add up)
    "concat":      Box(0, 1,   (2, N),    int8)     1 = node feeds the cell output (it is in Cell.concat)
    "action_mask": Box(0, 1,   (2, E, K), int8)     1 = the rule set allows this target for this edge's current op

``"concat"`` holds the cell outputs: a fully-concat cell (DARTS) flags every intermediate node, a loose-end cell
(ENAS) only the nodes no edge consumes; input nodes 0 and 1 are never flagged. Two genotypes with the same edges
and different outputs (e.g. ENAS and its fully-concat twin: different costs and rewards) thus have different
observations, and :func:`decode` recovers every genotype exactly: ``decode(encode(g, rules), rules) == g``.

Edge order
----------
Within a cell, edges are sorted by destination node (:attr:`nat_gym.genotype.Cell.edges`), so edges ``2j`` and
``2j + 1`` are the two inputs of node ``j + 2``. Flattened, the edges are those of the normal cell then those of the
reduction cell (:attr:`nat_gym.genotype.Genotype.edges`): flat edge ``i`` is ``obs[...][i // E, i % E]``.

Actions
-------
``MultiDiscrete([K] * 2E)`` (:func:`action_space`): ``action[i]`` is the new op index (into ``rules.ops``) of flat
edge ``i`` (normal edges, then reduce edges). The action is valid iff ``action_mask.reshape(2E, K)[i, action[i]]``
for every ``i``. :func:`flat_action_mask` gives the mask in the convention of sb3-contrib's ``MaskablePPO`` for a
``MultiDiscrete`` space: the per-dimension masks concatenated, ``[2E * K]`` booleans.

Graph view
----------
:func:`to_pyg_batch` turns one or a batch of observations into a :class:`torch_geometric.data.Batch` of ``2B``
graphs (observation 0 normal, observation 0 reduce, observation 1 normal, ...), one node per cell node and one edge
per cell edge, messages flowing ``src -> dst``, with the output flags as a node attribute (``node_concat``);
:func:`encode` and :func:`decode` convert between genotypes and observations. Encodings of other envs built on the same
states (more keys, e.g. which edge is being decided) extend :func:`encode`'s dict and space rather than replace them.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

if TYPE_CHECKING:  # imported by to_pyg_batch: an env never needs torch_geometric (~90 MB per process, measured)
    from torch_geometric.data import Batch

from nat_gym.errors import ConfigError, GenotypeError
from nat_gym.genotype import MAX_STEPS, Cell, Genotype
from nat_gym.rules import TransitionRules

__all__ = [
    "OBS_KEYS",
    "observation_space",
    "action_space",
    "encode",
    "decode",
    "to_pyg_batch",
    "flat_action_mask",
    "edge_observation_space",
    "edge_one_hot",
]

OBS_KEYS: tuple[str, ...] = ("ops", "edges", "adjacency", "concat", "action_mask")
"""The keys of an observation."""
EDGE_KEY = "edge"
"""The key ``NATEdge-v0`` adds to an observation: a one-hot ``[2, E]`` int8 of the edge being decided."""


def _check_sizes(steps: Any, num_ops: Any) -> tuple[int, int]:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= MAX_STEPS:
        raise ConfigError(
            f"steps: expected an integer in 1..{MAX_STEPS} (intermediate nodes per cell), got {steps!r}"
        )
    if isinstance(num_ops, bool) or not isinstance(num_ops, (int, np.integer)) or num_ops < 1:
        raise ConfigError(
            f"num_ops: expected a positive integer (the size of the op vocabulary), got {num_ops!r}"
        )
    return int(steps), int(num_ops)


def observation_space(steps: int, num_ops: int) -> spaces.Dict:
    """The observation space of a NAT environment with ``steps`` intermediate nodes per cell and ``num_ops`` ops.

    Args:
        steps (int): Intermediate nodes per cell, ``S`` (``E = 2S`` edges and ``N = S + 2`` nodes per cell).
        num_ops (int): Size ``K`` of the rule set's op vocabulary.

    Returns:
        gymnasium.spaces.Dict: the spaces of ``"ops"``, ``"edges"``, ``"adjacency"``, ``"concat"`` and
        ``"action_mask"``.

    Raises:
        ConfigError: If ``steps`` is not in ``1..MAX_STEPS`` or ``num_ops`` is not positive.

    Shapes:
        - **ops:** :math:`[2, E, K]` float32; **edges:** :math:`[2, E, 2]` int64;
          **adjacency:** :math:`[2, N, N]` float32; **concat:** :math:`[2, N]` int8;
          **action_mask:** :math:`[2, E, K]` int8
    """
    steps, k = _check_sizes(steps, num_ops)
    e, n = 2 * steps, steps + 2
    return spaces.Dict(
        {
            "ops": spaces.Box(0.0, 1.0, (2, e, k), np.float32),
            "edges": spaces.Box(0, n - 1, (2, e, 2), np.int64),
            "adjacency": spaces.Box(0.0, 2.0, (2, n, n), np.float32),
            "concat": spaces.Box(0, 1, (2, n), np.int8),
            "action_mask": spaces.Box(0, 1, (2, e, k), np.int8),
        }
    )


def edge_observation_space(steps: int, num_ops: int) -> spaces.Dict:
    """The observation space of ``NATEdge-v0``: :func:`observation_space` plus ``"edge"``, ``Box(0, 1, (2, E),
    int8)``, the one-hot of the edge being decided (:func:`edge_one_hot`; all zeros never occurs).

    A one-hot rather than an index: Stable-Baselines3's ``MultiInputPolicy`` flattens it like the other boxes, and
    a graph network reads it as one more per-edge feature (:func:`to_pyg_batch`'s ``edge_decide``), aligned with
    ``"ops"`` and ``"action_mask"``: the row of the decided edge is ``obs["action_mask"][edge // E, edge % E]``.

    Shapes:
        - **edge:** :math:`[2, E]` int8, the other keys as in :func:`observation_space`
    """
    space = observation_space(steps, num_ops)
    e = 2 * int(steps)
    return spaces.Dict({**space.spaces, EDGE_KEY: spaces.Box(0, 1, (2, e), np.int8)})


def edge_one_hot(edge: int, steps: int) -> np.ndarray:
    """``[2, E]`` int8 with a single 1 at flat edge ``edge`` (row ``edge // E``, column ``edge % E``)."""
    e = 2 * int(steps)
    if not 0 <= edge < 2 * e:
        raise ConfigError(f"edge: expected a flat edge index in 0..{2 * e - 1}, got {edge!r}")
    out = np.zeros(2 * e, dtype=np.int8)
    out[edge] = 1
    return out.reshape(2, e)


def action_space(steps: int, num_ops: int) -> spaces.MultiDiscrete:
    """``MultiDiscrete([K] * 2E)``: one new op index per edge, normal edges then reduce edges."""
    steps, k = _check_sizes(steps, num_ops)
    return spaces.MultiDiscrete(np.full(4 * steps, k, dtype=np.int64))


# ------------------------------------------------------------------------------------------------------- encode
class _RulesCache:
    """Per rule set: op -> column, the identity (one-hot rows) and the int8 transition table."""

    __slots__ = ("rules", "index", "eye", "table")

    def __init__(self, rules: TransitionRules) -> None:
        self.rules = rules  # keeps the object alive, so its id() cannot be reused while cached
        self.index = {op: i for i, op in enumerate(rules.ops)}
        k = len(rules.ops)
        self.eye = np.eye(k, dtype=np.float32)
        self.table = np.ascontiguousarray(rules.table, dtype=np.int8)


_RULES_CACHE: dict[int, _RulesCache] = {}


def _rules_cache(rules: TransitionRules) -> _RulesCache:
    c = _RULES_CACHE.get(id(rules))
    if c is None or c.rules is not rules:
        if not isinstance(rules, TransitionRules):
            raise ConfigError(
                f"rules: expected a TransitionRules (see nat_gym.rules.get), got {type(rules).__name__}"
            )
        if len(_RULES_CACHE) > 64:
            _RULES_CACHE.clear()
        c = _RULES_CACHE[id(rules)] = _RulesCache(rules)
    return c


def encode(genotype: Genotype, rules: TransitionRules, steps: int | None = None) -> dict[str, np.ndarray]:
    """The observation of ``genotype`` under ``rules`` (see the module docstring for the contract).

    Args:
        genotype (Genotype): The state.
        rules (TransitionRules): Gives the op vocabulary (one-hot columns) and the action mask.
        steps (int, optional): If given, the number of intermediate nodes the environment expects; a genotype with
            another number raises. (default: :obj:`None`, any)

    Returns:
        dict: fresh arrays ``"ops"``, ``"edges"``, ``"adjacency"``, ``"concat"``, ``"action_mask"``, members of
        ``observation_space(genotype.steps, rules.num_ops)``.

    Raises:
        GenotypeError: If ``genotype`` is not a :class:`Genotype` or has the wrong number of steps;
            :class:`~nat_gym.errors.InvalidOpError` (a :class:`GenotypeError`) if one of its ops is outside the
            rule set's vocabulary.
    """
    if not isinstance(genotype, Genotype):
        raise GenotypeError(f"genotype: expected a nat_gym Genotype, got {type(genotype).__name__}")
    s = genotype.steps
    if steps is not None and s != steps:
        raise GenotypeError(
            f"genotype: it has {s} intermediate nodes per cell but the environment expects steps={steps}"
        )
    c = _rules_cache(rules)
    edges = genotype.normal.edges + genotype.reduce.edges
    index = c.index
    try:
        idx = np.array([index[e[0]] for e in edges], dtype=np.intp)
    except KeyError:
        idx = rules.op_indices(genotype)  # raises InvalidOpError naming the edge (or resolves an alias)
    e, n, k = 2 * s, s + 2, c.eye.shape[0]
    pairs = np.array([(ed[1], ed[2]) for ed in edges], dtype=np.int64)  # [2E, 2]
    flat = pairs[:, 1] * n + pairs[:, 0]
    flat[e:] += n * n
    adjacency = np.bincount(flat, minlength=2 * n * n).astype(np.float32).reshape(2, n, n)
    concat = np.zeros((2, n), dtype=np.int8)
    concat[0, list(genotype.normal.concat)] = 1
    concat[1, list(genotype.reduce.concat)] = 1
    return {
        "ops": c.eye[idx].reshape(2, e, k),
        "edges": pairs.reshape(2, e, 2),
        "adjacency": adjacency,
        "concat": concat,
        "action_mask": c.table[idx].reshape(2, e, k),
    }


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _get(obs: Mapping[str, Any], key: str) -> Any:
    if not isinstance(obs, Mapping):
        raise ConfigError(f"obs: expected a mapping with keys {list(OBS_KEYS)}, got {type(obs).__name__}")
    try:
        return obs[key]
    except KeyError:
        raise ConfigError(f"obs: missing key {key!r}; an observation has keys {list(OBS_KEYS)}") from None


def decode(
    obs: Mapping[str, Any],
    rules: TransitionRules,
    concat: tuple[Sequence[int] | str, Sequence[int] | str] | None = None,
) -> Genotype:
    """The genotype of a single observation: the inverse of :func:`encode`, ``decode(encode(g, rules), rules) == g``.

    Args:
        obs (Mapping): One observation (``"ops"``, ``"edges"`` and ``"concat"`` are read), numpy arrays or tensors.
        rules (TransitionRules): The rule set whose vocabulary indexes the one-hot columns.
        concat (tuple, optional): Deprecated (observations carry the cell outputs in ``"concat"`` now; it will be
            removed). If given, ``(normal_concat, reduce_concat)``, each a list of nodes, ``"all"`` or
            ``"loose_end"``, replaces the observation's outputs (then ``"concat"`` need not be in ``obs``), with a
            :class:`DeprecationWarning`. (default: :obj:`None`: the outputs flagged in ``obs["concat"]``)

    Returns:
        Genotype: The decoded genotype.

    Raises:
        ConfigError: If a key is missing, the arrays have the wrong shapes (e.g. a batched observation) or ``K``
            differs from the vocabulary size.
        GenotypeError: If a row of ``"ops"`` is not one-hot, ``"concat"`` is not 0/1 or flags no intermediate node
            or an input node, or the edges do not form valid cells.
    """
    c = _rules_cache(rules)
    ops = _numpy(_get(obs, "ops"))
    edges = _numpy(_get(obs, "edges"))
    k = c.eye.shape[0]
    if ops.ndim != 3 or ops.shape[0] != 2 or ops.shape[2] != k or ops.shape[1] % 2:
        raise ConfigError(
            f"obs['ops']: expected one observation of shape [2, E, {k}] (K = {k} ops of rule set {rules.name!r}), "
            f"got {list(ops.shape)}"
        )
    e = ops.shape[1]
    n = e // 2 + 2
    if edges.shape != (2, e, 2):
        raise ConfigError(f"obs['edges']: expected shape [2, {e}, 2], got {list(edges.shape)}")
    if not (np.all((ops == 0) | (ops == 1)) and np.all(ops.sum(axis=-1) == 1)):
        raise GenotypeError("obs['ops']: every edge's row must be one-hot (exactly one 1, zeros elsewhere)")
    if np.issubdtype(edges.dtype, np.floating):
        if not np.all(edges == np.round(edges)):
            raise GenotypeError("obs['edges']: node indices must be integers")
    edges = edges.astype(np.int64)
    idx = ops.argmax(axis=-1)
    if concat is None:
        flags = _numpy(_get(obs, "concat"))
        if flags.shape != (2, n):
            raise ConfigError(f"obs['concat']: expected shape [2, {n}] (N = E/2 + 2 nodes), got {list(flags.shape)}")
        if not np.all((flags == 0) | (flags == 1)):
            raise GenotypeError("obs['concat']: expected 0/1 flags (1 = the node feeds the cell output)")
        concat = tuple([int(i) for i in np.flatnonzero(row)] for row in flags)
    else:
        warnings.warn(
            "decode(concat=...) is deprecated: observations carry the cell outputs in obs['concat'], which decode "
            "reads when concat is not given",
            DeprecationWarning,
            stacklevel=2,
        )
        if isinstance(concat, str) or not isinstance(concat, Sequence) or len(concat) != 2:
            raise ConfigError(f"concat: expected a pair (normal_concat, reduce_concat), got {concat!r}")
    names = rules.ops
    cells = []
    for ci, cname in enumerate(("normal", "reduce")):
        triples = [(names[int(o)], int(s), int(d)) for o, (s, d) in zip(idx[ci], edges[ci], strict=True)]
        cells.append(Cell(triples, concat[ci], name=cname))
    return Genotype(cells[0], cells[1])


def flat_action_mask(obs: Mapping[str, Any]) -> np.ndarray:
    """The action mask in sb3-contrib's ``MaskablePPO`` convention for ``MultiDiscrete([K] * 2E)``.

    Args:
        obs (Mapping): One observation or a batch (``"action_mask"`` is read; numpy or tensor).

    Returns:
        numpy.ndarray: bool ``[2E * K]`` (``[B, 2E * K]`` for a batch): the per-edge masks concatenated, normal
        edges then reduce edges, i.e. ``action_mask.reshape(-1) != 0``.
    """
    m = _numpy(_get(obs, "action_mask"))
    if m.ndim == 3:
        return m.reshape(-1) != 0
    if m.ndim == 4:
        return m.reshape(m.shape[0], -1) != 0
    raise ConfigError(f"obs['action_mask']: expected shape [2, E, K] or [B, 2, E, K], got {list(m.shape)}")


# --------------------------------------------------------------------------------------------------- to_pyg_batch
@lru_cache(maxsize=32)
def _static_parts(g: int, n: int, e: int, c: int, device: torch.device) -> dict[str, Any]:
    """Tensors that depend only on the batch layout. Cached: callers hand out clones of the per-node / per-graph
    tensors; the slicing tensors are only ever read (by ``Batch.get_example``)."""
    ar = torch.arange(g + 1)
    return {
        "offsets": (torch.arange(g, device=device) * n).view(g, 1, 1),
        "node_id": torch.arange(n, device=device).repeat(g),
        "batch": torch.arange(g, device=device).repeat_interleave(n),
        "ptr": torch.arange(g + 1, device=device) * n,
        "cell": torch.arange(c, device=device).repeat(g // c),
        "slice": {
            "edge_index": ar * e,
            "edge_op": ar * e,
            "edge_mask": ar * e,
            "cell": ar.clone(),
            "node_id": ar * n,
            "node_concat": ar * n,
            "edge_decide": ar * e,
        },
        "inc": {
            "edge_index": torch.arange(g) * n,
            "edge_op": torch.zeros(g, dtype=torch.long),
            "edge_mask": torch.zeros(g, dtype=torch.long),
            "cell": torch.zeros(g, dtype=torch.long),
            "node_id": torch.zeros(g, dtype=torch.long),
            "node_concat": torch.zeros(g, dtype=torch.long),
            "edge_decide": torch.zeros(g, dtype=torch.long),
        },
    }


_GRAPH_KEYS = ("edge_index", "edge_op", "edge_mask", "cell", "node_id", "node_concat")  # always in a batch
_BATCH_CLS: type | None = None


def _new_batch(**attrs: Any) -> Batch:
    """``Batch(**attrs)`` of ``Data`` graphs. ``Batch``'s metaclass rebuilds a helper class and inspects a
    signature on every call (~100 µs); we resolve the ``DataBatch`` class once and instantiate it as that
    metaclass itself finally does (``type.__call__``)."""
    global _BATCH_CLS
    if _BATCH_CLS is None:
        from torch_geometric.data import Batch, Data

        _BATCH_CLS = type(Batch(_base_cls=Data))
    return type.__call__(_BATCH_CLS, **attrs)


def _tensor(value: Any, device: torch.device | None) -> Tensor:
    if isinstance(value, Tensor):
        return value if device is None else value.to(device, non_blocking=True)
    return torch.as_tensor(np.asarray(value), device=device)


def to_pyg_batch(obs: Mapping[str, np.ndarray | Tensor], device: torch.device | str | None = None) -> Batch:
    r"""A :class:`torch_geometric.data.Batch` of cell graphs from one observation or a batch of them.

    Graph ``2b + c`` is cell ``c`` (0 normal, 1 reduce) of observation ``b``. Each graph has ``N`` nodes (the cell's
    nodes) and ``E`` edges in the observation's edge order, with the attributes

    - ``edge_index`` :math:`[2, E]` long: row 0 = src, row 1 = dst (messages flow src -> dst);
    - ``edge_op`` :math:`[E]` long: the current op of each edge (argmax of the one-hot);
    - ``edge_mask`` :math:`[E, K]` bool: the valid targets of each edge;
    - ``node_id`` :math:`[N]` long: ``0 .. N-1`` (0 and 1 are the input nodes);
    - ``node_concat`` :math:`[N]` bool: the node feeds the cell output (``obs["concat"]``);
    - ``edge_decide`` :math:`[E]` bool, only for ``NATEdge-v0`` observations (with ``"edge"``): the edge whose
      new op the current step decides;
    - ``cell`` (graph attribute) long: 0 normal, 1 reduce.

    The batch is built directly (offsets added to ``edge_index``, no Python loop over graphs) and carries
    ``batch``, ``ptr``, ``num_graphs`` and the slicing information of :meth:`Batch.from_data_list`, so
    ``get_example`` / ``to_data_list`` / indexing work. Arrays may be numpy arrays or tensors of any numeric dtype
    (Stable-Baselines3 hands over float tensors), on any device.

    Args:
        obs (Mapping): ``"ops"``, ``"edges"``, ``"concat"`` and ``"action_mask"`` (``"adjacency"`` is ignored:
            ``edges`` holds the same information, duplicates included), and ``"edge"`` when present.
        device (torch.device or str, optional): Where to put the batch. (default: :obj:`None`: the device of the
            ``"ops"`` tensor, CPU for numpy input)

    Returns:
        torch_geometric.data.Batch: ``2B`` graphs (``B = 1`` for a single observation).

    Raises:
        ConfigError: If a key is missing or the shapes are inconsistent.

    Shapes:
        - **input:** ops :math:`[2, E, K]` or :math:`[B, 2, E, K]`; edges :math:`[(B,) 2, E, 2]`;
          concat :math:`[(B,) 2, N]`; action_mask :math:`[(B,) 2, E, K]`
        - **output:** ``edge_index`` :math:`[2, 2BE]`, ``edge_op`` :math:`[2BE]`, ``edge_mask`` :math:`[2BE, K]`,
          ``node_id``/``node_concat``/``batch`` :math:`[2BN]`, ``cell`` :math:`[2B]`, ``ptr`` :math:`[2B + 1]`,
          ``edge_decide`` :math:`[2BE]` (input ``edge`` :math:`[(B,) 2, E]`)
    """
    raw_ops = _get(obs, "ops")
    if device is None and isinstance(raw_ops, Tensor):
        device = raw_ops.device
    device = torch.device(device) if device is not None else torch.device("cpu")
    ops = _tensor(raw_ops, device)
    edges = _tensor(_get(obs, "edges"), device)
    mask = _tensor(_get(obs, "action_mask"), device)
    concat = _tensor(_get(obs, "concat"), device)
    if ops.dim() == 3:
        ops, edges, mask, concat = ops.unsqueeze(0), edges.unsqueeze(0), mask.unsqueeze(0), concat.unsqueeze(0)
    if ops.dim() != 4 or ops.shape[1] != 2 or ops.shape[2] < 2 or ops.shape[2] % 2:
        raise ConfigError(
            f"obs['ops']: expected shape [2, E, K] or [B, 2, E, K] with E even, got {list(ops.shape)}"
        )
    b, c, e, k = ops.shape
    if tuple(edges.shape) != (b, c, e, 2):
        raise ConfigError(
            f"obs['edges']: expected shape {[b, c, e, 2]} to match obs['ops'], got {list(edges.shape)}"
        )
    if tuple(mask.shape) != (b, c, e, k):
        raise ConfigError(
            f"obs['action_mask']: expected shape {[b, c, e, k]} to match obs['ops'], got {list(mask.shape)}"
        )
    g, n = b * c, e // 2 + 2
    if tuple(concat.shape) != (b, c, n):
        raise ConfigError(
            f"obs['concat']: expected shape {[b, c, n]} to match obs['ops'] (N = E/2 + 2 nodes), got "
            f"{list(concat.shape)}"
        )
    st = _static_parts(g, n, e, c, device)
    edge_index = (edges.reshape(g, e, 2).long() + st["offsets"]).reshape(g * e, 2).t().contiguous()
    batch = _new_batch(
        edge_index=edge_index,
        edge_op=ops.reshape(g * e, k).argmax(dim=-1),
        edge_mask=mask.reshape(g * e, k) != 0,
        cell=st["cell"].clone(),
        node_id=st["node_id"].clone(),
        node_concat=concat.reshape(g * n) != 0,
        num_nodes=g * n,
    )
    keys = _GRAPH_KEYS
    if EDGE_KEY in obs:
        decide = _tensor(obs[EDGE_KEY], device)
        if decide.dim() == 2:
            decide = decide.unsqueeze(0)
        if tuple(decide.shape) != (b, c, e):
            raise ConfigError(f"obs['edge']: expected shape {[b, c, e]} to match obs['ops'], got {list(decide.shape)}")
        batch.edge_decide = decide.reshape(g * e) != 0
        keys = (*keys, "edge_decide")
    batch.batch = st["batch"].clone()
    batch.ptr = st["ptr"].clone()
    batch._num_graphs = g
    batch._slice_dict = {key: st["slice"][key] for key in keys}
    batch._inc_dict = {key: st["inc"][key] for key in keys}
    return batch
