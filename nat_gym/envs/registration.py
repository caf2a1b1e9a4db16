"""The one place where nat-gym's environment ids are registered with Gymnasium."""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

__all__ = ["ENV_IDS"]

ENV_IDS: tuple[str, ...] = ("NATCell-v0", "NATEdge-v0", "BlockQNN-v0")

if "NATCell-v0" not in registry:
    register(
        id="NATCell-v0",
        entry_point="nat_gym.envs.nat_cell:NATCellEnv",
        max_episode_steps=None,
    )

if "NATEdge-v0" not in registry:
    register(
        id="NATEdge-v0",
        entry_point="nat_gym.envs.nat_edge:NATEdgeEnv",
        max_episode_steps=None,
    )

if "BlockQNN-v0" not in registry:
    register(
        id="BlockQNN-v0",
        entry_point="nat_gym.envs.blockqnn:BlockQNNEnv",
        max_episode_steps=None,
    )
