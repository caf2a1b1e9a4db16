r"""A Stable-Baselines3 features extractor that reads the nat-gym observation as two cell graphs.

SB3's stock ``MultiInputPolicy`` flattens every key of the observation; :class:`GCNExtractor` instead embeds both
cells with the graph network of the NAT policy (:class:`~agents.cell_encoder.CellEncoder`, shared by the normal and
the reduction cell) and hands the policy and value heads the per-edge embeddings in the observation's fixed edge
order, so that SB3's action head (one block of ``K`` logits per edge for ``NATCell-v0``) can tell the edges apart.
Use it with any SB3 or sb3-contrib algorithm whose policy takes a features extractor (MaskablePPO, PPO, A2C, DQN)::

    from agents.sb3 import GCNExtractor
    model = MaskablePPO("MultiInputPolicy", env, policy_kwargs={"features_extractor_class": GCNExtractor,
                                                               "features_extractor_kwargs": {"hidden_dim": 64}})

Features of one observation (concatenated, in this order):

1. every edge's ``[h[dst], emb(op)]`` (:meth:`CellEncoder.edge_features`), normal edges then reduction edges,
   each cell's edges sorted by destination (the order of ``MultiDiscrete`` actions): :math:`2E \times (H + D)`;
2. each cell's mean node embedding (normal, then reduction): :math:`2H`;
3. ``NATEdge-v0`` only (the observation has ``"edge"``, the one-hot of the edge being decided): the features of
   that edge again, :math:`H + D`, so that the heads see which edge the action is for without having to find the
   one-hot among the flattened features.
"""

from __future__ import annotations

from typing import Literal

import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import Tensor
from torch_geometric.nn import global_mean_pool

from agents.cell_encoder import CellEncoder
from nat_gym.envs.observation import EDGE_KEY, OBS_KEYS, to_pyg_batch
from nat_gym.errors import ConfigError

__all__ = ["GCNExtractor"]


class GCNExtractor(BaseFeaturesExtractor):
    r"""Per-edge and per-cell GCN embeddings of a nat-gym observation, for SB3 policies.

    Args:
        observation_space (gymnasium.spaces.Dict): The env's observation space (``NATCell-v0``'s keys, plus
            ``"edge"`` for ``NATEdge-v0``); ``E`` and ``K`` are read from ``"ops"``.
        variant (str, optional): Graph-network variant, ``"fixed"`` or ``"faithful"``
            (:class:`~agents.cell_encoder.CellEncoder`). (default: ``"fixed"``)
        op_embed_dim (int, optional): ``D``, width of the op embedding. (default: :obj:`32`)
        lift_dim (int, optional): Width of the lifted node features. (default: :obj:`128`)
        hidden_dim (int, optional): ``H``, width of the node embeddings. (default: :obj:`64`)

    Raises:
        ConfigError: If the space is not a nat-gym observation space.

    Shapes:
        - **input:** SB3's preprocessed observation: float tensors ``ops`` :math:`[B, 2, E, K]`, ``edges``
          :math:`[B, 2, E, 2]`, ``concat`` :math:`[B, 2, N]`, ``action_mask`` :math:`[B, 2, E, K]` (``adjacency``
          is not read), and ``edge`` :math:`[B, 2, E]` for ``NATEdge-v0``
        - **output:** :math:`[B, F]` with :math:`F = 2E(H + D) + 2H` (``NATCell-v0``) or
          :math:`F = (2E + 1)(H + D) + 2H` (``NATEdge-v0``): :attr:`features_dim`
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        variant: Literal["faithful", "fixed"] = "fixed",
        op_embed_dim: int = 32,
        lift_dim: int = 128,
        hidden_dim: int = 64,
    ) -> None:
        keys = set(getattr(observation_space, "spaces", {}))
        if not isinstance(observation_space, spaces.Dict) or not set(OBS_KEYS) <= keys:
            raise ConfigError(
                f"observation_space: expected the Dict space of a nat-gym env (keys {list(OBS_KEYS)}), got "
                f"{observation_space}"
            )
        _, edges, num_ops = observation_space["ops"].shape
        encoder = CellEncoder(num_ops, variant, op_embed_dim=op_embed_dim, lift_dim=lift_dim, hidden_dim=hidden_dim)
        self.decides_edge = EDGE_KEY in keys
        per_edge = encoder.edge_dim
        features_dim = 2 * edges * per_edge + 2 * encoder.hidden_dim + (per_edge if self.decides_edge else 0)
        super().__init__(observation_space, features_dim)
        self.encoder = encoder
        self.num_edges = 2 * edges

    def forward(self, observations: dict[str, Tensor]) -> Tensor:
        """The features of a batch of observations (see the class docstring for their layout)."""
        batch = to_pyg_batch(observations)
        edge_features, h = self.encoder.edge_features(batch)  # [B * 2E, H + D], [B * 2N, H]
        b = batch.num_graphs // 2
        per_edge = edge_features.reshape(b, self.num_edges, -1)  # [B, 2E, H + D]
        cells = global_mean_pool(h, batch.batch, size=batch.num_graphs).reshape(b, -1)  # [B, 2H]
        parts = [per_edge.flatten(1), cells]
        if self.decides_edge:
            one_hot = observations[EDGE_KEY].reshape(b, self.num_edges, 1).to(per_edge.dtype)  # [B, 2E, 1]
            parts.append((one_hot * per_edge).sum(1))  # [B, H + D]: the edge being decided
        return torch.cat(parts, dim=1)
