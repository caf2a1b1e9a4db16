"""``BlockQNN-v0``: block-wise network generation (BlockQNN, CVPR 2018 / TPAMI 2019) as a Gymnasium environment."""

from __future__ import annotations

from typing import Any, Literal

import gymnasium as gym
import numpy as np

from nat_gym.blocks.cost import network_cost
from nat_gym.blocks.nsc import DEFAULT_MAX_INDEX, Block, Layer, action_to_layer, num_actions
from nat_gym.envs.block_observation import (
    action_mask,
    action_space,
    check_max_index,
    encode,
    observation_space,
)
from nat_gym.errors import ConfigError

__all__ = ["BlockQNNEnv"]

InvalidAction = Literal["terminal", "penalize", "raise"]


class BlockQNNEnv(gym.Env):
    """Build a network block layer by layer; the reward is the early-stop accuracy of the stacked block, corrected
    for FLOPs and density (BlockQNN, Zhong et al., CVPR 2018 and TPAMI 2019).

    ## Description
    A block is a DAG of layers written in the Network Structure Code (:mod:`nat_gym.blocks.nsc`): each layer is a
    convolution (1/3/5), a max or average pooling (1/3), an identity, an elementwise add or a concat of earlier
    layers; layers nobody reads are concatenated into the output. Each step adds one layer, or stops. The finished
    block is stacked into a network (:class:`~nat_gym.block_network.BlockNetwork`), trained briefly and scored on
    held-out training images (:mod:`nat_gym.block_evaluator`).

    ## Action Space
    ``Discrete(A)`` with ``A = 8 L + (L - 1) L + 1`` (the action set at the last step, ``L = max_index``; 691 for
    the default 23). Action 0 is the terminal; the others are layer codes (:func:`nat_gym.blocks.nsc.action_to_layer`).
    At step ``t`` the valid actions are ``0 .. 8 (t + 1) + t (t + 1)``: :meth:`action_masks` (sb3-contrib's
    ``MaskablePPO`` convention) and ``info["action_mask"]``. An action outside the mask is handled by
    ``invalid_action``: ``"terminal"`` (default: it stops the block, as the terminal would; ``info["invalid_action"]``
    is True), ``"penalize"`` (the same, minus ``invalid_penalty``) or ``"raise"`` (a ``ConfigError``).

    ## Observation Space
    A ``Dict`` of fixed-shape arrays (:mod:`nat_gym.envs.block_observation`): ``kinds`` (L, 10) one-hot layer kinds,
    ``preds`` (L, 2), ``adjacency`` (L + 1, L + 1), ``num_layers`` (1,) and ``action_mask`` (A,).

    ## Rewards
    0 until the episode ends; then ``r_T = acc - mu log(max(FLOPs, CHW) / FLOPs_ref) - rho log(density)`` of the
    block (:func:`nat_gym.block_evaluator.block_reward`). With ``reward_shaping=True`` the final reward also carries
    the ``T - 1`` shaped rewards ``r_T / T`` the papers give the intermediate transitions (known only now, so
    delivered at the end: the episode's return equals the shaped return).

    ## Starting State
    The empty block (the start state of the papers). ``reset(options={"evaluate": False})`` leaves the finished
    block unevaluated (final reward 0, no ``"accuracy"`` in ``info``): a caller that evaluates many blocks in one
    batched ``evaluator.evaluate`` call uses it.

    ## Episode End
    Terminates at the terminal action (or an invalid one, see Action Space) or when the block reaches
    ``max_index`` layers. There is no truncation.

    ## Arguments
    - ``max_index`` (23, the papers' cap (?)): the most layers a block may have.
    - ``evaluator``: any :class:`~nat_gym.block_evaluator.BlockEvaluator`; default: an
      :class:`~nat_gym.block_evaluator.EarlyStopEvaluator` on ``dataset`` with ``recipe``, ``mu``, ``rho``,
      ``cache`` (the persistent SQLite cache: ``"default"``, a path, or None), ``workers`` and ``device``.
    - ``dataset`` (``"digits"``), ``data_seed``: the images. ``reward_shaping``, ``invalid_action``,
      ``invalid_penalty``: see above. ``render_mode``: ``"ansi"`` or ``"rgb_array"``.

    ## Info
    Every step: ``block`` (the :class:`~nat_gym.blocks.nsc.Block` so far), ``layer`` (the layer added, None for the
    terminal), ``num_layers``, ``params`` / ``flops`` (of the stacked network) and ``density`` of the block so far,
    ``invalid_action`` and ``action_mask``. At the end, when evaluated: ``accuracy``, ``block_reward`` (``r_T``),
    ``block_flops``, ``source`` (trained / memory / cache) and ``seconds``.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 1}

    def __init__(
        self,
        *,
        max_index: int = DEFAULT_MAX_INDEX,
        evaluator: Any = None,
        dataset: str = "digits",
        data_seed: int = 0,
        recipe: Any = None,
        mu: float | None = None,
        rho: float | None = None,
        cache: Any = "default",
        workers: int = 1,
        device: str = "cpu",
        reward_shaping: bool = False,
        invalid_action: InvalidAction = "terminal",
        invalid_penalty: float = 1.0,
        render_mode: str | None = None,
    ) -> None:
        super().__init__()
        from nat_gym.block_evaluator import BlockEvaluator

        self.max_index = check_max_index(max_index)
        if invalid_action not in ("terminal", "penalize", "raise"):
            raise ConfigError(f"invalid_action: expected 'terminal', 'penalize' or 'raise', got {invalid_action!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(f"render_mode: expected one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        if evaluator is None:
            evaluator = _default_evaluator(dataset, data_seed, recipe, mu, rho, cache, workers, device)
        elif any(v is not None for v in (recipe, mu, rho)):
            raise ConfigError("evaluator: give either an evaluator or recipe / mu / rho, not both")
        if not isinstance(evaluator, BlockEvaluator):
            raise ConfigError(f"evaluator: {type(evaluator).__name__} does not implement the BlockEvaluator protocol")
        self.evaluator = evaluator
        if not isinstance(reward_shaping, (bool, np.bool_)):  # bool("false") would be True
            raise ConfigError(f"reward_shaping: expected True or False, got {reward_shaping!r}")
        self.reward_shaping = bool(reward_shaping)
        self.invalid_action = invalid_action
        self.invalid_penalty = float(invalid_penalty)
        self.render_mode = render_mode
        self.observation_space = observation_space(self.max_index)
        self.action_space = action_space(self.max_index)
        self._block: Block | None = None
        self._evaluate = True
        self._done = False
        self._last: dict[str, Any] = {}

    # --------------------------------------------------------------------------------------------------- API
    @property
    def block(self) -> Block:
        """The block built so far."""
        if self._block is None:
            raise gym.error.ResetNeeded("call reset() before using the environment")
        return self._block

    def action_masks(self) -> np.ndarray:
        """Boolean ``[A]`` mask of the valid actions (sb3-contrib's ``MaskablePPO`` convention)."""
        return action_mask(len(self.block), self.max_index)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = sorted(set(options) - {"evaluate"})
        if unknown:
            raise ConfigError(f"options: unknown keys {unknown}; allowed: ['evaluate']")
        evaluate = options.get("evaluate", True)
        if not isinstance(evaluate, (bool, np.bool_)):
            raise ConfigError(f"options['evaluate']: expected True or False, got {evaluate!r}")
        self._block, self._evaluate, self._done = Block(), bool(evaluate), False
        info = self._info(None, False)
        self._last = info
        return encode(self._block, self.max_index), info

    def step(self, action):
        block = self.block
        if self._done:
            raise gym.error.ResetNeeded("the episode has ended; call reset()")
        a = _as_action(action, int(self.action_space.n))
        t = len(block)
        invalid = a >= num_actions(t)
        if invalid and self.invalid_action == "raise":
            raise ConfigError(f"action: {a} is not valid at step {t}; allowed: 0..{num_actions(t) - 1}")
        layer = None if invalid else action_to_layer(t, a)
        if layer is not None:
            block = block.append(layer)
            self._block = block
        terminated = layer is None or len(block) >= self.max_index
        info = self._info(layer, bool(invalid))
        reward = 0.0
        if terminated:
            self._done = True
            if self._evaluate:
                m = self.evaluator.measure([block])[0]
                info.update(accuracy=m.accuracy, block_reward=m.reward, block_flops=m.block_flops, source=m.source,
                            seconds=m.seconds)  # fmt: skip
                reward = m.reward
                if self.reward_shaping:
                    T = len(block) + (layer is None)  # transitions: one per layer, plus the terminal action if taken
                    reward += (T - 1) * m.reward / T
            if invalid and self.invalid_action == "penalize":
                reward -= self.invalid_penalty
        self._last = info
        return encode(block, self.max_index), float(reward), terminated, False, info

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='ansi' or 'rgb_array' to make()")
            return None
        block, last = self.block, self._last
        if self.render_mode == "ansi":
            head = f"accuracy {last['accuracy']:.4f}, reward {last['block_reward']:+.4f}\n" if "accuracy" in last else ""
            return head + block.pretty() + "\n"
        from nat_gym.blocks.plotting import block_image

        return block_image(block)

    # --------------------------------------------------------------------------------------------------- helpers
    def _info(self, layer: Layer | None, invalid: bool) -> dict[str, Any]:
        block = self.block
        cost = network_cost(block, **self.evaluator.shape)
        return {"block": block, "layer": layer, "num_layers": len(block), "params": cost.params, "flops": cost.madds,
                "density": block.density, "invalid_action": invalid,
                "action_mask": action_mask(len(block), self.max_index)}  # fmt: skip


def _as_action(action: Any, n: int) -> int:
    value = np.asarray(action)
    if value.shape != () or value.dtype.kind not in "iu" or not 0 <= int(value) < n:
        raise ConfigError(f"action: expected an integer in 0..{n - 1}, got {action!r}")
    return int(value)


def _default_evaluator(dataset, data_seed, recipe, mu, rho, cache, workers, device):
    """The EarlyStopEvaluator the env uses when the user gives no evaluator."""
    from nat_gym.block_evaluator import DatasetSpec, EarlyStopEvaluator, RewardConfig

    defaults = RewardConfig()
    reward = RewardConfig(mu=defaults.mu if mu is None else mu, rho=defaults.rho if rho is None else rho)
    return EarlyStopEvaluator(DatasetSpec(dataset, data_seed), recipe, reward=reward, cache=cache, workers=workers,
                              device=device)  # fmt: skip
