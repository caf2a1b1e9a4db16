"""``NATEdge-v0``: the NAT MDP of ``NATCell-v0`` decided edge by edge (one ``Discrete`` action per edge)."""

from __future__ import annotations

from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from nat_gym.envs.nat_cell import NATCellEnv
from nat_gym.envs.observation import EDGE_KEY, edge_observation_space, edge_one_hot
from nat_gym.errors import ConfigError
from nat_gym.genotype import Genotype

__all__ = ["NATEdgeEnv"]

RewardMode = Literal["final", "shaped"]


class NATEdgeEnv(NATCellEnv):
    """The transformation of ``NATCell-v0`` chosen one edge at a time: ``Discrete(K)`` actions with a ``[K]`` mask.

    ## Description
    The MDP, rules, evaluator, rewards, options and ``info`` of :class:`~nat_gym.envs.nat_cell.NATCellEnv` (its
    docstring holds what is not repeated here), with the joint action split into ``2E`` decisions: at step ``t``
    the agent picks the new op of flat edge ``t`` (the normal cell's ``E`` edges, then the reduction cell's, each
    sorted by destination node, as in ``NATCell-v0``'s action). After ``2E`` steps the architecture ``beta`` has
    become ``alpha = rules.apply(beta, [a_0, ..., a_2E-1])``, exactly what ``NATCell-v0.step([a_0, ...])``
    reaches, with the same reward (``tests/test_edge_env.py`` checks it for random joint actions under every
    option). DQN and the libraries that mask a single categorical action (RLlib, TorchRL) need this form.

    ## Action Space
    ``Discrete(K)``, ``K = len(rules.ops)``: the new op (index into ``env.unwrapped.rules.ops``) of the edge being
    decided. :meth:`action_masks` (``[K]`` booleans, sb3-contrib's convention) holds its valid targets: the row of
    that edge's op *in beta* (the transformation is of ``beta``; the op of an undecided edge is still beta's).
    ``info["action_mask"]`` carries it too. A masked-out op never crashes: ``invalid_action="keep"`` leaves that
    edge as it is in ``beta``, ``"raise"`` raises a ``TransitionError`` (the state does not change),
    ``"penalize"`` keeps it and subtracts ``invalid_penalty / 2E`` from the reward.

    ## Observation Space
    The ``NATCell-v0`` observation (:func:`~nat_gym.envs.observation.encode`) of the partly transformed genotype
    :attr:`current_genotype` (edges ``< t`` hold their chosen ops, the others beta's), plus ``"edge"``: a ``[2, E]``
    int8 one-hot of the edge being decided (:func:`~nat_gym.envs.observation.edge_observation_space`).
    ``obs["action_mask"][t // E, t % E]`` equals :meth:`action_masks`; ``decode(obs, rules)`` gives
    :attr:`current_genotype`; ``to_pyg_batch(obs)`` adds the one-hot as the edge attribute ``edge_decide``.

    ## Rewards
    ``reward="final"`` (default): 0 on the first ``2E - 1`` steps, then the reward ``NATCell-v0`` gives for the
    whole transformation (accuracy gain, plus the ``cost_weight`` term, minus the ``penalize`` term). One network
    evaluation per episode, as ``NATCell-v0``.
    ``reward="shaped"``: the same total spread over the steps: step ``t`` earns the gain of the edge it decided,
    ``phi(g_t+1) - phi(g_t)`` with ``phi(g) = acc(g) - cost_weight * MAdds(g) / MAdds(beta)`` (``g_t`` the partly
    transformed genotype before step ``t``), minus ``invalid_penalty / 2E`` for an invalid edge under
    ``"penalize"``; the sum over the episode telescopes to the final reward (up to float rounding). BlockQNN's
    ``r_T / T`` on every step cannot be given online (``r_T`` depends on the later actions): a Q-learning agent
    that wants it applies it to its replay buffer with ``reward="final"``. Shaping scores up to ``2E`` new
    (partly transformed) architectures per transformation instead of one.

    ## Episode End
    ``2E`` steps per transformation, ``max_transforms`` transformations (default 1): ``2E * max_transforms``
    steps. After the last step of a transformation the state is ``alpha`` with edge 0 to decide (the terminal
    observation, or the start of the next transformation, on a fresh reward minibatch). No truncation.

    ## Arguments
    ``reward`` (``"final"`` or ``"shaped"``, see Rewards) and every argument of ``NATCellEnv`` (``rules``,
    ``evaluator``, ``supernet``, ``dataset``, ``steps``, ``reward_images``, ``cost_weight``, ``max_transforms``,
    ``invalid_action``, ``invalid_penalty``, ``cost_config``, ``device``, ``render_mode``...).

    ## Info
    Every step: ``edge`` (the flat edge just decided), ``genotype`` (:attr:`current_genotype` after the step),
    ``invalid_edges`` (invalid decisions so far in this transformation) and ``action_mask`` (``[K]``, the next
    decision's). With ``reward="shaped"`` also ``acc`` (the accuracy of ``genotype``) and, with an integer
    ``reward_images``, ``reward_batch``. The last step of a transformation adds every key of a ``NATCell-v0``
    step (``genotype_before`` = beta, ``genotype_after`` = alpha, accuracies, params, MAdds, ``madds_saving``,
    ``invalid_edges`` of the whole transformation). ``reset`` returns ``NATCell-v0``'s reset info with the ``[K]``
    ``action_mask``. As in ``NATCell-v0``, no value is ever ``None``.
    """

    env_id = "NATEdge-v0"

    def __init__(self, rules: Any = "nat++", *, reward: RewardMode = "final", **kwargs: Any) -> None:
        if reward not in ("final", "shaped"):
            raise ConfigError(f"reward: expected 'final' or 'shaped', got {reward!r}")
        super().__init__(rules, **kwargs)
        self.reward_mode: RewardMode = reward
        self.observation_space = edge_observation_space(self.steps, self.rules.num_ops)
        self.action_space = spaces.Discrete(self.rules.num_ops)
        self._edge = 0
        self._ops = np.zeros(2 * self._edges, dtype=np.int64)  # the chosen op of every edge (beta's if undecided)
        self._invalid = 0
        self._current: Genotype | None = None

    # --------------------------------------------------------------------------------------------------- API
    @property
    def edge(self) -> int:
        """The flat index (``0 .. 2E-1``: normal edges, then reduction edges) of the edge being decided."""
        return self._edge

    @property
    def current_genotype(self) -> Genotype:
        """The partly transformed genotype: ``beta`` with the ops chosen so far (what the observation shows)."""
        if self._current is None:
            raise gym.error.ResetNeeded("call reset() before using the environment")
        return self._current

    def action_masks(self) -> np.ndarray:
        """Boolean mask ``[K]`` of the valid new ops of the edge being decided (its row in ``beta``'s mask)."""
        k = self.rules.num_ops
        return self._view(self.genotype).flat_mask[self._edge * k : (self._edge + 1) * k].copy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        _, info = super().reset(seed=seed, options=options)
        self._begin(self.genotype)
        info["action_mask"] = self.action_masks()
        return self._observation(), info

    def step(self, action):
        beta, t = self.genotype, self._edge
        op = self._op_index(action)
        valid = bool(self._view(beta).flat_mask[t * self.rules.num_ops + op])
        if not valid and self.invalid_action == "raise":
            ops = self._ops.copy()
            ops[t] = op
            self.rules.apply(beta, ops, invalid="raise")  # a TransitionError naming edge t; nothing changed
        if valid:
            self._ops[t] = op
        else:
            self._invalid += 1
        before = self._current
        after = self._transition(beta, self._ops)[0]
        self._current, self._edge = after, t + 1
        reward, info = 0.0, {}
        if self.reward_mode == "shaped":
            reward, acc = self._edge_gain(beta, before, after, valid)
            info["acc"] = acc
            if self._batch is not None:
                info["reward_batch"] = self._batch
        terminated = False
        if self._edge == 2 * self._edges:  # the transformation is complete: NATCell-v0's step
            total, info_t = self._score(beta, after, self._invalid)
            info.update(info_t)
            if self.reward_mode == "final":
                reward = total
            terminated = self._advance(after)
            self._last = info
            self._begin(after)
        else:
            info["invalid_edges"] = self._invalid
            self._last = {"genotype_before": beta, "genotype_after": after}
        info.update(edge=t, genotype=after, action_mask=self.action_masks())
        return self._observation(), float(reward), terminated, False, info

    # --------------------------------------------------------------------------------------------------- helpers
    def _begin(self, beta: Genotype) -> None:
        """Start transforming ``beta`` (its op indices pass the rule check of ``self._view``)."""
        self._ops = self.rules.op_indices(beta)
        self._edge, self._invalid, self._current = 0, 0, beta

    def _observation(self) -> dict[str, np.ndarray]:
        obs = self._view(self._current).observation()
        obs[EDGE_KEY] = edge_one_hot(self._edge, self.steps)
        return obs

    def _op_index(self, action: Any) -> int:
        a = np.asarray(action)
        k = self.rules.num_ops
        if a.size != 1 or a.dtype.kind not in "iu" or not 0 <= int(a.reshape(())) < k:
            raise ConfigError(
                f"action: expected one integer op index in 0..{k - 1} (the new op of edge {self._edge}), got {action!r}"
            )
        return int(a.reshape(()))

    def _edge_gain(self, beta: Genotype, before: Genotype, after: Genotype, valid: bool) -> tuple[float, float]:
        """``(shaped reward, acc(after))`` of one decision: ``phi(after) - phi(before)`` (see Rewards)."""
        acc_b, acc_a = (float(v) for v in self.evaluator.evaluate([before, after], self._batch))
        m0 = self._view(beta).cost.madds
        gain = acc_a - acc_b
        if m0:
            gain += self.cost_weight * (self._view(before).cost.madds - self._view(after).cost.madds) / m0
        if not valid and self.invalid_action == "penalize":
            gain -= self.invalid_penalty / (2 * self._edges)
        return gain, acc_a
