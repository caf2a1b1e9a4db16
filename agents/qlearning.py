"""Tabular Q-learning of BlockQNN (Zhong et al., CVPR 2018 section 3.2; MetaQNN, Baker et al., ICLR 2017).

- **States** are NSC layers: the last layer added, ``(index, type, kernel, pred1, pred2)``, with :data:`START` =
  ``(0, 0, 0, 0, 0)`` for the empty block. At a state of index ``i`` the actions are ``0 .. num_actions(i) - 1`` of
  :mod:`nat_gym.blocks.nsc` (0 = terminal).
- **Q table** (:class:`QTable`): a lazily filled dict; an unvisited ``(state, action)`` is worth ``init`` (0.5).
- **Update** (:func:`q_update`), in reverse order along a trajectory ``(s_0, a_0), ..., (s_{T-1}, a_{T-1})`` that
  ended with reward ``r_T``::

      Q(s_{T-1}, a_{T-1}) <- (1 - lr) Q + lr * r_T
      Q(s_t, a_t)         <- (1 - lr) Q + lr * (r_t + discount * max_a' Q(s_{t+1}, a'))

  with the shaped intermediate reward ``r_t = r_T / T`` (``shaping=True``, the papers' choice, so that stopping
  early is not favoured) or 0. The papers: lr 0.01, discount 1.
- **Epsilon schedule** (:data:`PAPER_SCHEDULE`, one iteration = 64 sampled blocks): epsilon 1.0 for 95 iterations,
  0.9 / 0.8 / 0.7 for 7 each, 0.6 ... 0.2 for 10 each, 0.1 for 12: 178 iterations, 11,392 blocks.
  :func:`scaled_schedule` keeps these proportions for a smaller budget of iterations.
- **Exploration** (:meth:`QTable.act`): with probability epsilon a uniformly random valid action, else the greedy
  one (ties broken uniformly at random).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from nat_gym.blocks import action_to_layer, num_actions
from nat_gym.errors import ConfigError

__all__ = [
    "State",
    "START",
    "PAPER_SCHEDULE",
    "scaled_schedule",
    "epsilon_at",
    "QTable",
    "trajectory_states",
    "q_update",
]

State = tuple[int, int, int, int, int]
"""An NSC layer ``(index, type, kernel, pred1, pred2)``: the last layer added."""

START: State = (0, 0, 0, 0, 0)
"""The start state: the block input, no layer yet."""

PAPER_SCHEDULE: tuple[tuple[float, int], ...] = (
    (1.0, 95), (0.9, 7), (0.8, 7), (0.7, 7), (0.6, 10), (0.5, 10), (0.4, 10), (0.3, 10), (0.2, 10), (0.1, 12),
)  # fmt: skip
"""``(epsilon, iterations)`` of the papers: 178 iterations of 64 blocks."""


def scaled_schedule(iterations: int, schedule: Sequence[tuple[float, int]] = PAPER_SCHEDULE) -> tuple[tuple[float, int], ...]:
    """``schedule`` stretched to ``iterations`` in all, keeping its proportions.

    Each phase gets ``n_i * iterations / sum(n)`` iterations, at least 1: the floors first, then the iterations left
    go one each to the phases with the largest remainders (the earlier phase first on ties). E.g. 24 iterations:
    ``(1.0, 13), (0.9, 1), (0.8, 1), (0.7, 1), (0.6, 2), (0.5, 1), (0.4, 1), (0.3, 1), (0.2, 1), (0.1, 2)``.

    Raises:
        ConfigError: ``iterations`` is smaller than the number of phases.
    """
    phases = len(schedule)
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < phases:
        raise ConfigError(f"iterations: expected an integer >= {phases} (one per epsilon phase), got {iterations!r}")
    total = sum(n for _, n in schedule)
    quotas = [n * iterations / total for _, n in schedule]
    counts = [max(1, math.floor(q)) for q in quotas]
    while sum(counts) > iterations:  # the minimum of 1 per phase took too many: shrink the phase most above quota
        i = max((i for i in range(phases) if counts[i] > 1), key=lambda i: (counts[i] - quotas[i], -i))
        counts[i] -= 1
    left = iterations - sum(counts)
    for i in sorted(range(phases), key=lambda i: (counts[i] - quotas[i], i))[:left]:
        counts[i] += 1
    return tuple((eps, c) for (eps, _), c in zip(schedule, counts))


def epsilon_at(schedule: Sequence[tuple[float, int]], iteration: int) -> float:
    """Epsilon of iteration ``iteration`` (0-based); the last phase's after the end of the schedule."""
    for eps, n in schedule:
        if iteration < n:
            return float(eps)
        iteration -= n
    return float(schedule[-1][0])


class QTable:
    """Tabular ``Q(state, action)``, lazily filled: unvisited pairs are worth ``init``.

    Attributes:
        values: ``{state: {action: Q}}`` of the visited pairs.
    """

    def __init__(self, init: float = 0.5) -> None:
        if not math.isfinite(init):
            raise ConfigError(f"q_init: expected a finite number, got {init!r}")
        self.init = float(init)
        self.values: dict[State, dict[int, float]] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self.values.values())

    def get(self, state: State, action: int) -> float:
        return self.values.get(state, {}).get(action, self.init)

    def set(self, state: State, action: int, value: float) -> None:
        self.values.setdefault(state, {})[action] = float(value)

    def max(self, state: State, num_valid: int) -> float:
        """``max_a Q(state, a)`` over the actions ``0 .. num_valid - 1``."""
        seen = self.values.get(state, {})
        best = max((v for a, v in seen.items() if a < num_valid), default=-math.inf)
        unvisited = sum(1 for a in seen if a < num_valid) < num_valid
        return max(best, self.init) if unvisited else best

    def greedy(self, state: State, num_valid: int, rng: np.random.Generator) -> int:
        """An action of maximal Q among ``0 .. num_valid - 1`` (uniformly among ties)."""
        q = np.full(num_valid, self.init)
        for a, v in self.values.get(state, {}).items():
            if a < num_valid:
                q[a] = v
        return int(rng.choice(np.flatnonzero(q == q.max())))

    def act(self, state: State, num_valid: int, epsilon: float, rng: np.random.Generator) -> int:
        """Epsilon-greedy: a uniform valid action with probability ``epsilon``, else :meth:`greedy`."""
        if rng.random() < epsilon:
            return int(rng.integers(num_valid))
        return self.greedy(state, num_valid, rng)

    def state_dict(self) -> dict:
        return {"init": self.init, "values": {s: dict(v) for s, v in self.values.items()}}

    def load_state_dict(self, data: dict) -> None:
        self.init = float(data["init"])
        self.values = {tuple(s): {int(a): float(q) for a, q in v.items()} for s, v in data["values"].items()}


def trajectory_states(actions: Sequence[int]) -> list[State]:
    """The states ``s_0 .. s_T`` visited by a trajectory of actions from :data:`START` (``s_{t+1}`` is the layer
    ``a_t`` adds; the terminal leaves no layer, so a trajectory ending with it has ``T`` states)."""
    states = [START]
    for t, a in enumerate(actions):
        layer = action_to_layer(t, int(a))
        if layer is None:
            if t != len(actions) - 1:
                raise ConfigError(f"actions: the terminal (0) at step {t} must be the last action")
            break
        states.append(tuple(layer))  # type: ignore[arg-type]
    return states


def q_update(q: QTable, actions: Sequence[int], reward: float, *, lr: float = 0.01, discount: float = 1.0,
             shaping: bool = True) -> None:  # fmt: skip
    """Apply the Q-learning update to one trajectory (see the module docstring), last transition first.

    Args:
        q: the table (updated in place).
        actions: ``a_0 .. a_{T-1}`` (the last is the terminal 0, or the layer that reached the index cap).
        reward: ``r_T``, the reward of the finished block.
        lr: learning rate alpha. discount: gamma. shaping: give intermediate transitions ``r_T / T``.
    """
    T = len(actions)
    if T == 0:
        raise ConfigError("actions: a trajectory has at least one action (the terminal)")
    states = trajectory_states(actions)
    step_reward = reward / T if shaping else 0.0
    a_last = int(actions[-1])
    s_last = states[T - 1]
    q.set(s_last, a_last, (1 - lr) * q.get(s_last, a_last) + lr * reward)
    for t in range(T - 2, -1, -1):
        s, a, nxt = states[t], int(actions[t]), states[t + 1]
        target = step_reward + discount * q.max(nxt, num_actions(nxt[0]))
        q.set(s, a, (1 - lr) * q.get(s, a) + lr * target)
