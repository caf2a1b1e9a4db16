"""Mask conventions of other RL libraries, as Gymnasium wrappers.

nat-gym's envs give their action masks in three ways: the method ``env.unwrapped.action_masks()`` (sb3-contrib's
``MaskablePPO``), ``info["action_mask"]`` (CleanRL-style loops) and the observation's ``"action_mask"`` key (a
graph network's per-edge feature). Libraries that read the mask from the observation and encode the rest with their
default networks (RLlib's action-masking RLModule, TorchRL's ``ActionMask`` transform) want
``{"observations": <flat Box>, "action_mask": <mask>}``: :class:`ActionMaskObservation` gives that form.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from nat_gym.errors import ConfigError

__all__ = ["ActionMaskObservation"]


class ActionMaskObservation(gym.ObservationWrapper):
    """Observations ``{"observations": flat float32 Box, "action_mask": bool Box}`` (RLlib / TorchRL convention).

    ``"observations"`` is ``gymnasium.spaces.flatten(env.observation_space, obs)`` as float32: the inner
    observation's keys in the order of its ``Dict`` space (sorted: ``action_mask``, ``adjacency``, ``concat``,
    [``edge``,] ``edges``, ``ops``), each flattened in C order; every value is a small integer or 0/1, exact in
    float32. RLlib's default encoders accept a flat ``Box`` where they reject nat-gym's ``Dict``
    (``No default encoder config for obs space=Dict(...)``). :attr:`layout` names each key's slice and shape, and
    :meth:`unflatten` gives the ``Dict`` back (for one observation, a batch, numpy arrays or torch tensors), so
    ``decode`` and ``to_pyg_batch`` still apply.

    ``"action_mask"`` is ``env.unwrapped.action_masks()``, booleans (TorchRL's ``ActionMask`` accepts only
    booleans; RLlib's example module takes ``log(mask)``, defined on them):

    - ``NATEdge-v0`` (``Discrete(K)``): ``[K]``, the mask of the one categorical action: RLlib's
      ``ActionMaskingTorchRLModule`` and TorchRL's ``ActionMask`` use it as is.
    - ``NATCell-v0`` (``MultiDiscrete([K] * 2E)``): ``flat_mask=True`` (default) gives ``[2E * K]``, the
      per-edge masks concatenated: the layout of RLlib's ``MultiCategorical`` logits (concatenated per
      sub-action, so the example module's ``logits + log(mask)`` masks them) and of sb3-contrib.
      ``flat_mask=False`` gives ``[2E, K]``: TorchRL turns a ``MultiDiscrete`` of equal sizes into ``2E`` stacked
      ``Categorical(K)``, whose ``ActionMask`` wants one row per edge.

    Args:
        env: a nat-gym env (``NATCell-v0``, ``NATEdge-v0``), possibly wrapped; its unwrapped env must have
            ``action_masks()`` and a ``Dict`` observation space.
        flat_mask (bool): see above; ignored for ``Discrete`` actions. (default: :obj:`True`)

    Raises:
        ConfigError: If the env has no ``Dict`` observation space or no ``action_masks()``.

    Shapes:
        - **observations:** :math:`[D]` float32, ``D = sum of the inner keys' sizes`` (NATCell-v0, 4 steps,
          NAT++: 532; NATEdge-v0: 548)
        - **action_mask:** :math:`[K]` (NATEdge-v0), :math:`[2E \\cdot K]` or :math:`[2E, K]` (NATCell-v0)
    """

    def __init__(self, env: gym.Env, flat_mask: bool = True) -> None:
        super().__init__(env)
        inner = env.observation_space
        if not isinstance(inner, spaces.Dict):
            raise ConfigError(f"env: expected a Dict observation space (a nat-gym env), got {inner}")
        if not callable(getattr(env.unwrapped, "action_masks", None)):
            raise ConfigError(f"env: {type(env.unwrapped).__name__} has no action_masks() method (a nat-gym env has)")
        self.inner_space: spaces.Dict = inner
        flat = spaces.flatten_space(inner)
        self.layout: dict[str, tuple[slice, tuple[int, ...], np.dtype]] = {}
        """``key -> (slice of "observations", shape, dtype)`` of each inner observation key."""
        start = 0
        for key, space in inner.spaces.items():
            size = spaces.flatdim(space)
            self.layout[key] = (slice(start, start + size), space.shape, space.dtype)
            start += size
        mask_shape = self._mask_shape(env.action_space, flat_mask)
        self.observation_space = spaces.Dict(
            {
                "observations": spaces.Box(flat.low.astype(np.float32), flat.high.astype(np.float32), dtype=np.float32),
                "action_mask": spaces.Box(0, 1, mask_shape, np.bool_),
            }
        )
        self._mask_shape_out = mask_shape

    @staticmethod
    def _mask_shape(action_space: spaces.Space, flat_mask: bool) -> tuple[int, ...]:
        if isinstance(action_space, spaces.Discrete):
            return (int(action_space.n),)
        if isinstance(action_space, spaces.MultiDiscrete) and action_space.nvec.ndim == 1:
            nvec = action_space.nvec
            if flat_mask:
                return (int(nvec.sum()),)
            if len(set(nvec.tolist())) != 1:
                raise ConfigError("flat_mask: False needs a MultiDiscrete whose sub-actions have one size")
            return (len(nvec), int(nvec[0]))
        raise ConfigError(f"env: expected a Discrete or 1-d MultiDiscrete action space, got {action_space}")

    def observation(self, observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {
            "observations": spaces.flatten(self.inner_space, observation).astype(np.float32),
            "action_mask": self.env.unwrapped.action_masks().reshape(self._mask_shape_out),
        }

    def unflatten(self, observations: Any) -> dict[str, Any]:
        """The inner ``Dict`` observation from ``"observations"``: ``[D]`` or ``[..., D]``, numpy or torch.

        Each key gets its space's shape after the leading batch dimensions and its dtype (numpy input); tensors
        keep float32 (cast as needed). For one numpy observation this equals ``gymnasium.spaces.unflatten``.

        Raises:
            ConfigError: If the last dimension is not ``D``.
        """
        d = self.observation_space["observations"].shape[0]
        if observations.shape[-1] != d:
            raise ConfigError(f"observations: expected a last dimension of {d}, got shape {tuple(observations.shape)}")
        lead = tuple(observations.shape[:-1])
        out = {}
        for key, (sl, shape, dtype) in self.layout.items():
            part = observations[..., sl].reshape(*lead, *shape)
            out[key] = part.astype(dtype) if isinstance(part, np.ndarray) else part
        return out
