r"""The NAT policy: a graph convolutional network over a cell, with BMSoftmax outputs.

NAT (Guo et al., NeurIPS 2019) and NAT++ (TPAMI 2021) encode one cell at a time as a graph and sample every edge's
new op independently from a :func:`~agents.bmsoftmax.bmsoftmax` over the ``K`` ops, masked by the transition
rules, so the joint log-probability and entropy of an action are sums over the ``2E`` edges of both cells. The
graph network (op and input embeddings, lift, two graph convolutions, shared by both cells) is
:class:`~agents.cell_encoder.CellEncoder`; :class:`GCNPolicy` adds the head.

Two variants (``variant=``):

``"faithful"``
    The reference design: adjacency :math:`A[dst, src]` (directed, duplicates add up), **no** self-loops, no
    normalisation, :math:`H_1 = \mathrm{ReLU}(A X W_1)`, :math:`H_2 = A H_1 W_2`, and a linear head per intermediate
    node mapping :math:`H_2[j]` to the ``2K`` logits of both incoming edges of node ``j``. Its flaw: an edge's logits
    are computed at its destination from the features of the destination's predecessors (up to two hops back), never
    from the destination itself, so they never see the edge's own op; for the DARTS normal cell (every node fed by
    nodes 0, 1 or 2, whose features hold no ops) the logits do not depend on the ops at all.
``"fixed"`` (default)
    Self-loops and the symmetric normalisation :math:`\hat D^{-1/2} (A + I) \hat D^{-1/2}` (``GCNConv``'s defaults),
    and a per-edge head whose input is :math:`[H_2[dst], \mathrm{emb}(op)]`, the edge's own current op included.
    It also sees the cell's outputs (``node_concat``): a learned vector, zero at initialisation, is added to the
    lifted features of the intermediate nodes that do *not* feed the cell output, so a loose-end cell and its
    fully-concat twin, which differ in cost and accuracy, get different logits. A fully-concat cell has no such
    node: on fully-concat inputs (the env's random inputs) the vector gets no gradient and the policy computes
    and learns exactly what it did without it. The paper's design (``"faithful"``) does not see the outputs.

Keep prior (``keep_prior=``, both variants; not in the papers): a learned logit per op, initialised to
``keep_prior``, added to the logit of every edge's *current* op. With the reference initialisation
(``keep_prior=0``: no such logit) the masked softmax starts near uniform over the valid targets, so the identity
(keep every op, reward exactly 0) has probability :math:`\prod_e 1/|\mathrm{valid}_e|` (about :math:`10^{-12}` for a
random 4-step genotype under NAT++: 32 edges with 6.2 valid targets on average); with ``keep_prior=b`` an edge with
``v`` valid targets starts by keeping its op with probability :math:`e^b / (e^b + v - 1)` (``b = 3``: 80% on
average), so REINFORCE starts next to the identity and learns which ops to change.

A batch may mix cells of different sizes for :meth:`GCNPolicy.forward` (per-edge logits); the distributions
(:meth:`GCNPolicy.distribution`, :meth:`~GCNPolicy.act`, :meth:`~GCNPolicy.evaluate_actions`) have one row of
``2E`` edges per observation and so need all cells of a batch to have the same number of edges.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.data import Batch
from torch_geometric.data.data import BaseData

from agents.bmsoftmax import MaskedCategorical
from agents.cell_encoder import VARIANTS, CellEncoder
from nat_gym.envs.observation import to_pyg_batch
from nat_gym.errors import ConfigError

__all__ = ["GCNPolicy", "VARIANTS"]

Obs = Mapping[str, "np.ndarray | Tensor"]


class GCNPolicy(CellEncoder):
    r"""The NAT transformer policy :math:`\pi(\alpha \mid \beta)`: a two-layer GCN over each cell of the input
    architecture :math:`\beta` (:class:`~agents.cell_encoder.CellEncoder`, whose parameters it holds under the same
    names), giving for every edge a masked categorical distribution over the ``K`` ops.

    Args:
        num_ops (int): ``K``, the size of the rule set's op vocabulary (``rules.num_ops``).
        variant (str, optional): ``"faithful"`` (the reference design, with its flaw) or ``"fixed"`` (self-loops,
            normalised adjacency, the edge's own op in the head). See the module docstring. (default: ``"fixed"``)
        op_embed_dim (int, optional): Width of the op embedding. (default: :obj:`100`)
        lift_dim (int, optional): Width of the lifted node features. (default: :obj:`1024`)
        hidden_dim (int, optional): Width of the graph convolutions' output. (default: :obj:`100`)
        keep_prior (float, optional): Initial value of the learned per-op logit added to every edge's current op
            (see the module docstring); ``0`` = the reference design, without that logit. (default: :obj:`0.0`)

    Raises:
        ConfigError: For a non-positive size, an unknown variant or a non-finite or negative ``keep_prior``.

    Shapes:
        - **input:** a :class:`~torch_geometric.data.Batch` of :math:`G` cell graphs from
          :func:`~nat_gym.envs.observation.to_pyg_batch` (``edge_index`` :math:`[2, GE]`, ``edge_op``
          :math:`[GE]`, ``edge_mask`` :math:`[GE, K]`, ``node_id`` and ``node_concat`` :math:`[GN]`), or an
          observation dict
          (single: :math:`[2, E, K]` ...; batched: :math:`[B, 2, E, K]` ..., :math:`G = 2B`)
        - **output:** :meth:`forward`: logits :math:`[GE, K]`; :meth:`act`: actions :math:`[B, 2E]`,
          log-probabilities and entropies :math:`[B]`
    """

    def __init__(
        self,
        num_ops: int,
        variant: Literal["faithful", "fixed"] = "fixed",
        op_embed_dim: int = 100,
        lift_dim: int = 1024,
        hidden_dim: int = 100,
        keep_prior: float = 0.0,
    ) -> None:
        super().__init__(num_ops, variant, op_embed_dim=op_embed_dim, lift_dim=lift_dim, hidden_dim=hidden_dim)
        if isinstance(keep_prior, bool) or not isinstance(keep_prior, (int, float)) or not 0 <= keep_prior < math.inf:
            raise ConfigError(f"keep_prior: expected a finite number >= 0, got {keep_prior!r}")
        self.keep_prior = float(keep_prior)
        if variant == "faithful":
            self.head = nn.Linear(self.hidden_dim, 2 * self.num_ops)  # both incoming edges of a node
        else:
            self.head = nn.Linear(self.edge_dim, self.num_ops)  # one edge: [H2[dst], emb(own op)]
            # the output offset was added to the policy after the head: registered last, so the parameters of
            # older policies keep their order (e.g. in Adam's saved state)
            self._modules["non_output_embed"] = self._modules.pop("non_output_embed")
        # [K]: added to the logit of each edge's current op (a parameter of the policy itself: listed first)
        self.keep_logit: nn.Parameter | None = None
        if self.keep_prior:
            self.keep_logit = nn.Parameter(torch.full((self.num_ops,), self.keep_prior))

    def extra_repr(self) -> str:
        return f"num_ops={self.num_ops}, variant={self.variant!r}, keep_prior={self.keep_prior}"

    # ---------------------------------------------------------------------------------------------------- forward
    def forward(self, batch: Batch) -> Tensor:
        r"""Unmasked logits of every edge of every graph.

        Requires each graph's edges to be sorted by destination with each intermediate node's two incoming edges
        consecutive (edges ``2j, 2j + 1`` feed node ``j + 2``), as :func:`to_pyg_batch` produces them.

        Args:
            batch (torch_geometric.data.Batch): Cell graphs with ``edge_index``, ``edge_op``, ``node_id``,
                ``node_concat`` (read by the fixed variant) and ``edge_mask`` (only checked for its width here). The
                graphs may have different numbers of edges.

        Raises:
            ConfigError: If the batch holds an odd number of edges, the mask's width is not ``num_ops``, or (fixed
                variant) ``node_concat`` is missing.

        Returns:
            torch.Tensor: The logits, in edge order (graph 0's edges, graph 1's, ...).

        Shapes:
            - **input:** ``edge_index`` :math:`[2, M]`, ``edge_op`` :math:`[M]`, ``node_id`` :math:`[V]`
            - **output:** :math:`[M, K]`
        """
        mask = getattr(batch, "edge_mask", None)
        if mask is not None and mask.shape[-1] != self.num_ops:
            raise ConfigError(
                f"batch.edge_mask: {mask.shape[-1]} ops per edge but the policy was built with num_ops={self.num_ops}"
            )
        if self.variant == "faithful":
            h, _ = self.embed(batch)  # [V, hidden]
            pair_dst = batch.edge_index[1, 0::2]  # [M / 2]: the intermediate node fed by edges 2m, 2m + 1
            logits = self.head(h[pair_dst]).reshape(-1, self.num_ops)  # [M/2, 2K] -> [M, K]
        else:
            logits = self.head(self.edge_features(batch)[0])  # [M, K]
        if self.keep_logit is None:
            return logits
        own = batch.edge_op.unsqueeze(-1)  # [M, 1]
        return logits.scatter_add(1, own, self.keep_logit[own])

    # --------------------------------------------------------------------------------------------- distributions
    def to_batch(self, obs_or_batch: Obs | Batch) -> Batch:
        """A prebuilt :class:`Batch` (returned as is) or an observation dict (converted on the policy's device)."""
        if isinstance(obs_or_batch, BaseData):
            return obs_or_batch
        if isinstance(obs_or_batch, Mapping):
            return to_pyg_batch(obs_or_batch, device=self.device)
        raise ConfigError(
            f"obs: expected an observation dict or a torch_geometric Batch, got {type(obs_or_batch).__name__}"
        )

    def distribution(self, obs_or_batch: Obs | Batch) -> MaskedCategorical:
        r"""The masked per-edge distributions of one or a batch of observations.

        Args:
            obs_or_batch: An observation dict (single or batched) or a :class:`Batch` of ``2B`` cell graphs
                (normal, reduce, normal, ...; all with the same number of edges).

        Returns:
            MaskedCategorical: batch shape :math:`[B, 2E]` (normal edges then reduce edges), masked by
            ``edge_mask`` (BMSoftmax: a masked op has probability exactly 0). An empty batch (``B = 0``) gives
            an empty distribution (:math:`[0, 2E]` for an observation dict, :math:`[0, 0]` for an empty
            :class:`Batch`, whose ``E`` is unknown).

        Raises:
            ConfigError: If the batch does not hold pairs of cells, or its cells have different numbers of edges
                (e.g. 4-step and 5-step genotypes in one batch: batch them separately).

        Shapes:
            - **output:** logits and mask :math:`[B, 2E, K]`
        """
        batch = self.to_batch(obs_or_batch)
        g = batch.num_graphs
        if g == 0:
            e = 0
            if isinstance(obs_or_batch, Mapping):
                ops = obs_or_batch["ops"]
                e = ops.shape[-2] if len(ops.shape) == 4 else 0
            empty = torch.zeros(0, 2 * e, self.num_ops, device=self.device)
            return MaskedCategorical(empty, empty.bool())
        if g % 2:
            raise ConfigError(f"batch: {g} graphs; expected pairs of (normal, reduce) cells")
        edges_per_graph = torch.bincount(batch.batch[batch.edge_index[1]], minlength=g)
        if bool((edges_per_graph != edges_per_graph[0]).any()):
            sizes = sorted(set(edges_per_graph.tolist()))
            raise ConfigError(
                f"batch: its cells have different numbers of edges ({sizes}); a distribution has one row of 2E "
                "edges per observation, so batch genotypes with the same number of steps together (forward() "
                "gives per-edge logits for mixed batches)"
            )
        logits = self(batch)
        b = g // 2
        shape = (b, logits.shape[0] // b, self.num_ops)
        return MaskedCategorical(logits.reshape(shape), batch.edge_mask.reshape(shape))

    def act(
        self, obs: Obs | Batch, *, deterministic: bool = False, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        r"""Sample (or take the most likely) new op of every edge.

        Args:
            obs: An observation dict (single or batched) or a :class:`Batch`.
            deterministic (bool, optional): Take the argmax of the masked probabilities. (default: :obj:`False`)
            generator (torch.Generator, optional): Randomness for sampling (on the policy's device).

        Returns:
            tuple: ``(actions, log_prob, entropy)``; ``actions[b, i]`` is the op index of flat edge ``i``
            (the ``MultiDiscrete`` action of the environment); ``log_prob`` and ``entropy`` are sums over the
            edges and carry gradients.

        Shapes:
            - **output:** actions :math:`[B, 2E]` long, log_prob :math:`[B]`, entropy :math:`[B]`
              (:math:`B = 1` for a single observation)
        """
        dist = self.distribution(obs)
        actions = dist.mode() if deterministic else dist.sample(generator=generator)
        return actions, dist.log_prob(actions).sum(-1), dist.entropy().sum(-1)

    def evaluate_actions(self, obs: Obs | Batch, actions: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
        r"""Joint log-probability and entropy of given actions.

        Args:
            obs: An observation dict (single or batched) or a :class:`Batch`.
            actions: Op indices, :math:`[B, 2E]` (or :math:`[2E]` for a single observation).

        Returns:
            tuple: ``(log_prob, entropy)``, sums over the edges (``-inf`` log-probability for a masked action).

        Shapes:
            - **input:** actions :math:`[B, 2E]`
            - **output:** log_prob :math:`[B]`, entropy :math:`[B]`
        """
        dist = self.distribution(obs)
        actions = torch.as_tensor(actions, device=self.device)
        if actions.dim() == 1:
            actions = actions.unsqueeze(0)
        if tuple(actions.shape) != tuple(dist.batch_shape):
            raise ConfigError(
                f"actions: expected shape {list(dist.batch_shape)} (one op per edge), got {list(actions.shape)}"
            )
        return dist.log_prob(actions).sum(-1), dist.entropy().sum(-1)
