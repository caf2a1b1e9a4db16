r"""The observation and action contract of ``BlockQNN-v0``.

A state of the block MDP is the block built so far: its layers ``1 .. n`` (``n <= L``, the index cap
``max_index``). ``K = 10`` layer kinds (:data:`KIND_NAMES`: ``conv1 conv3 conv5 max1 max3 avg1 avg3 identity add
concat``); ``A = num_actions(L - 1)`` actions, the largest action set (:func:`nat_gym.blocks.nsc.num_actions`).

Observation
-----------
A :class:`gymnasium.spaces.Dict` of fixed-shape arrays, the style of ``NATCell-v0`` (no ``spaces.Graph``, so
Stable-Baselines3's ``MultiInputPolicy`` takes it as is). Rows of layers not added yet are zero::

    "kinds":       Box(0, 1,   (L, K), float32)      one-hot of layer i+1's kind
    "preds":       Box(0, L-1, (L, 2), int64)        (pred1, pred2) of layer i+1 (pred2 = 0 for one input)
    "adjacency":   Box(0, 1,   (L+1, L+1), float32)  A[dst, src] = 1 if layer dst reads index src (0 = the input)
    "num_layers":  Box(0, L,   (1,), int64)          n, the layers added so far (the step)
    "action_mask": Box(0, 1,   (A,), int8)           1 = the action is valid now (:func:`action_mask`)

Actions
-------
``Discrete(A)``: the action code of :mod:`nat_gym.blocks.nsc` (0 = terminal, then the layers in a fixed order).
At step ``t = n`` exactly the actions ``0 .. num_actions(t) - 1`` are valid: every predecessor they name exists,
single-input layers have ``pred2 = 0`` and add/concat read two different indices. At the cap (``n = L``) the episode
has ended; :func:`action_mask` then allows only the terminal.
"""

from __future__ import annotations

import numbers

import numpy as np
from gymnasium import spaces

from nat_gym.blocks.nsc import KINDS, MAX_LAYERS, Block, num_actions
from nat_gym.errors import ConfigError

__all__ = ["OBS_KEYS", "KIND_NAMES", "check_max_index", "observation_space", "action_space", "action_mask", "encode"]

OBS_KEYS: tuple[str, ...] = ("kinds", "preds", "adjacency", "num_layers", "action_mask")
"""The keys of an observation."""

KIND_NAMES: tuple[str, ...] = tuple(KINDS)
"""Column order of ``"kinds"``."""

_KIND_COLUMN = {v: i for i, v in enumerate(KINDS.values())}


def check_max_index(max_index: object) -> int:
    """``max_index`` as an int; :class:`~nat_gym.errors.ConfigError` unless it is in ``1 .. MAX_LAYERS``."""
    if isinstance(max_index, bool) or not isinstance(max_index, numbers.Integral) or not 1 <= max_index <= MAX_LAYERS:
        raise ConfigError(f"max_index: expected an integer in 1..{MAX_LAYERS} (the most layers a block has), got {max_index!r}")
    return int(max_index)


def observation_space(max_index: int) -> spaces.Dict:
    """The observation space for blocks of at most ``max_index`` layers.

    Shapes:
        - **kinds:** :math:`[L, K]` float32; **preds:** :math:`[L, 2]` int64; **adjacency:** :math:`[L+1, L+1]`
          float32; **num_layers:** :math:`[1]` int64; **action_mask:** :math:`[A]` int8
    """
    L = check_max_index(max_index)
    return spaces.Dict(
        {
            "kinds": spaces.Box(0.0, 1.0, (L, len(KIND_NAMES)), np.float32),
            "preds": spaces.Box(0, max(L - 1, 0), (L, 2), np.int64),
            "adjacency": spaces.Box(0.0, 1.0, (L + 1, L + 1), np.float32),
            "num_layers": spaces.Box(0, L, (1,), np.int64),
            "action_mask": spaces.Box(0, 1, (num_actions(L - 1),), np.int8),
        }
    )


def action_space(max_index: int) -> spaces.Discrete:
    """``Discrete(num_actions(max_index - 1))``: the largest action set of the episode."""
    return spaces.Discrete(num_actions(check_max_index(max_index) - 1))


def action_mask(num_layers: int, max_index: int) -> np.ndarray:
    """Boolean ``[A]``: the actions valid when the block has ``num_layers`` layers (only the terminal at the cap)."""
    L = check_max_index(max_index)
    if not 0 <= num_layers <= L:
        raise ConfigError(f"num_layers: expected 0..{L}, got {num_layers!r}")
    mask = np.zeros(num_actions(L - 1), dtype=bool)
    mask[: num_actions(num_layers) if num_layers < L else 1] = True
    return mask


def encode(block: Block, max_index: int) -> dict[str, np.ndarray]:
    """The observation of ``block`` (see the module docstring).

    Raises:
        ConfigError: the block has more than ``max_index`` layers.
    """
    L = check_max_index(max_index)
    n = len(block.layers)
    if n > L:
        raise ConfigError(f"block: it has {n} layers, more than max_index={L}")
    kinds = np.zeros((L, len(KIND_NAMES)), dtype=np.float32)
    preds = np.zeros((L, 2), dtype=np.int64)
    adjacency = np.zeros((L + 1, L + 1), dtype=np.float32)
    for layer in block.layers:
        kinds[layer.index - 1, _KIND_COLUMN[(layer.type, layer.kernel)]] = 1.0
        preds[layer.index - 1] = (layer.pred1, layer.pred2)
        adjacency[layer.index, list(layer.inputs)] = 1.0
    return {"kinds": kinds, "preds": preds, "adjacency": adjacency, "num_layers": np.array([n], dtype=np.int64),
            "action_mask": action_mask(n, L).astype(np.int8)}  # fmt: skip
