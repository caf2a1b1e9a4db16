r"""The graph network of the NAT policy, without its head: embeds every node and every edge of a batch of cells.

NAT (Guo et al., NeurIPS 2019) and NAT++ (TPAMI 2021) encode one cell at a time as a graph whose nodes are the
cell's nodes (two inputs and the intermediate nodes) and whose directed edges are the cell's edges; the normal and
the reduction cell go through the same network (shared weights). :class:`CellEncoder` is that network:

- node features: an input node (``node_id`` 0 or 1) gets a learned embedding; an intermediate node gets the
  concatenation of the op embeddings of its two incoming edges (edges ``2j`` and ``2j + 1`` of its cell feed node
  ``j + 2``); a linear layer lifts both kinds to ``lift_dim``;
- ``"fixed"`` variant only: a learned vector, zero at initialisation, is added to the lifted features of the
  intermediate nodes that do *not* feed the cell output (``node_concat``), so a loose-end cell and its
  fully-concat twin get different embeddings;
- two graph convolutions: :math:`H = A' \, \mathrm{ReLU}(A' X W_1) W_2`, with :math:`A'` the raw adjacency
  :math:`A[dst, src]` (``"faithful"``: no self-loops, no normalisation, as the reference code) or
  :math:`\hat D^{-1/2} (A + I) \hat D^{-1/2}` (``"fixed"``: ``GCNConv``'s defaults).

Two users: :class:`agents.gcn_policy.GCNPolicy` (the paper's policy: this network plus a per-edge BMSoftmax head)
and :class:`agents.sb3.extractor.GCNExtractor` (the same network as a Stable-Baselines3 features extractor).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.data import Batch
from torch_geometric.nn import GCNConv

from nat_gym.errors import ConfigError

__all__ = ["CellEncoder", "VARIANTS"]

VARIANTS: tuple[str, ...] = ("faithful", "fixed")
"""The encoder variants: the reference design and the fixed one (see the module docstring)."""


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


class CellEncoder(nn.Module):
    r"""A two-layer GCN over cell graphs: node embeddings and per-edge embeddings of every cell of a batch.

    Args:
        num_ops (int): ``K``, the size of the rule set's op vocabulary (``rules.num_ops``).
        variant (str, optional): ``"faithful"`` (raw adjacency, no self-loops, blind to the cell outputs) or
            ``"fixed"`` (self-loops, normalised adjacency, cell outputs). See the module docstring.
            (default: ``"fixed"``)
        op_embed_dim (int, optional): Width ``D`` of the op embedding. (default: :obj:`100`)
        lift_dim (int, optional): Width of the lifted node features. (default: :obj:`1024`)
        hidden_dim (int, optional): Width ``H`` of the graph convolutions' output. (default: :obj:`100`)

    Raises:
        ConfigError: For a non-positive size or an unknown variant.

    Shapes:
        - **input:** a :class:`~torch_geometric.data.Batch` from :func:`~nat_gym.envs.observation.to_pyg_batch`:
          ``edge_index`` :math:`[2, M]`, ``edge_op`` :math:`[M]`, ``node_id`` and ``node_concat`` :math:`[V]`
        - **output:** :meth:`embed` (and :meth:`forward`): node embeddings :math:`[V, H]` and op embeddings :math:`[M, D]`;
          :meth:`edge_features`: :math:`[M, H + D]`
    """

    def __init__(
        self,
        num_ops: int,
        variant: Literal["faithful", "fixed"] = "fixed",
        op_embed_dim: int = 100,
        lift_dim: int = 1024,
        hidden_dim: int = 100,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ConfigError(f"variant: expected one of {list(VARIANTS)}, got {variant!r}")
        self.num_ops = _positive("num_ops", num_ops)
        self.variant: str = variant
        self.op_embed_dim = _positive("op_embed_dim", op_embed_dim)
        self.lift_dim = _positive("lift_dim", lift_dim)
        self.hidden_dim = _positive("hidden_dim", hidden_dim)
        d = self.op_embed_dim
        self.op_embed = nn.Embedding(self.num_ops, d)
        self.input_embed = nn.Embedding(2, 2 * d)  # nodes 0 and 1, same width as an intermediate node's feature
        self.lift = nn.Linear(2 * d, self.lift_dim)
        conv_kw: dict[str, Any] = {"normalize": False, "add_self_loops": False} if variant == "faithful" else {}
        self.conv1 = GCNConv(self.lift_dim, self.hidden_dim, **conv_kw)
        self.conv2 = GCNConv(self.hidden_dim, self.hidden_dim, **conv_kw)
        if variant == "fixed":
            # zero at initialisation: the initial network is the same as without it
            self.non_output_embed = nn.Embedding(1, self.lift_dim, _weight=torch.zeros(1, self.lift_dim))

    @property
    def edge_dim(self) -> int:
        """Width of :meth:`edge_features`: ``hidden_dim + op_embed_dim``."""
        return self.hidden_dim + self.op_embed_dim

    @property
    def device(self) -> torch.device:
        return self.op_embed.weight.device

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        # fixed networks saved before they read the cell outputs lack the (then implicitly zero) offset
        key = prefix + "non_output_embed.weight"
        if self.variant == "fixed" and key not in state_dict and prefix + "lift.weight" in state_dict:
            state_dict[key] = torch.zeros_like(self.non_output_embed.weight)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def embed(self, batch: Batch) -> tuple[Tensor, Tensor]:
        r"""Node embeddings after the two graph convolutions, and the op embedding of every edge.

        Requires each graph's edges to be sorted by destination with each intermediate node's two incoming edges
        consecutive (edges ``2j, 2j + 1`` feed node ``j + 2``), as :func:`to_pyg_batch` produces them.

        Args:
            batch (torch_geometric.data.Batch): Cell graphs with ``edge_index``, ``edge_op``, ``node_id`` and
                (fixed variant) ``node_concat``. The graphs may have different numbers of edges.

        Raises:
            ConfigError: If the batch holds an odd number of edges or (fixed variant) lacks ``node_concat``.

        Returns:
            tuple: ``(h, emb)``: node embeddings and per-edge op embeddings, in the batch's node and edge order.

        Shapes:
            - **input:** ``edge_index`` :math:`[2, M]`, ``edge_op`` :math:`[M]`, ``node_id`` :math:`[V]`
            - **output:** ``h`` :math:`[V, H]`, ``emb`` :math:`[M, D]`
        """
        edge_index, edge_op, node_id = batch.edge_index, batch.edge_op, batch.node_id
        if edge_op.numel() % 2:
            raise ConfigError(
                f"batch: {edge_op.numel()} edges; every intermediate node needs exactly two inputs"
            )
        emb = self.op_embed(edge_op)  # [M, D]
        pair_dst = edge_index[1, 0::2]  # [M / 2]: the intermediate node fed by edges 2m, 2m + 1
        x = self.input_embed(node_id.clamp(max=1))  # [V, 2D]; rows of intermediate nodes are replaced below
        x = x.index_copy(0, pair_dst, emb.reshape(-1, 2 * self.op_embed_dim))
        x = self.lift(x)  # [V, lift]
        if self.variant == "fixed":
            node_concat = getattr(batch, "node_concat", None)
            if node_concat is None:
                raise ConfigError(
                    "batch.node_concat: missing; the fixed network reads the cell outputs (build the batch with "
                    "nat_gym.envs.observation.to_pyg_batch)"
                )
            non_output = (node_id >= 2) & (node_concat == 0)  # intermediate nodes that do not feed the output
            x = x + non_output.unsqueeze(-1).to(x.dtype) * self.non_output_embed.weight[0]
        h = torch.relu(self.conv1(x, edge_index))
        return self.conv2(h, edge_index), emb  # [V, H], [M, D]

    def forward(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """:meth:`embed` (subclasses with a head override ``forward`` and call :meth:`embed`)."""
        return self.embed(batch)

    def edge_features(self, batch: Batch) -> tuple[Tensor, Tensor]:
        r"""Per-edge features ``[h[dst], emb(op)]`` (the embedding of the node the edge feeds, and of the edge's own
        current op: what the fixed NAT head reads), and the node embeddings.

        Returns:
            tuple: ``(edge_features, h)``.

        Shapes:
            - **output:** ``edge_features`` :math:`[M, H + D]`, ``h`` :math:`[V, H]`
        """
        h, emb = self.embed(batch)
        return torch.cat([h[batch.edge_index[1]], emb], dim=-1), h
