"""The per-instance search problem shared by every search algorithm: transform one architecture within a budget.

An :class:`Objective` holds one input architecture ``beta`` and an environment (``NATCell-v0``) whose evaluator is a
:class:`~nat_gym.budget.BudgetedEvaluator` with ``beta`` free. Algorithms propose *actions* (one op index per edge,
normal edges then reduction edges, each allowed by the rules: :attr:`Objective.choices`), and
:meth:`Objective.score` returns the environment's reward ``acc(alpha) - acc(beta) (+ cost_weight * MAdds saving)``
through ``env.reset(options={"genotype": beta})`` and ``env.step(action)``, the public API.

Budget accounting (the same for every algorithm, :mod:`nat_gym.budget`): a reward evaluation is a *new* candidate
architecture scored; asking again for a candidate already scored in this search is free. ``beta`` itself (the
identity transformation) is free and is the initial incumbent, with reward 0 (plus nothing: its MAdds saving is 0).
The call that spends the last evaluation raises :class:`~nat_gym.budget.BudgetExhausted` once the candidate is
recorded, so every search stops at exactly ``budget`` evaluations, unless an algorithm keeps re-asking known
candidates: after ``max_requests`` requests (default ``20 * budget + 1000``) :class:`Stalled` ends the search
with fewer evaluations, and the result says so.

:attr:`Objective.trace` records the best transformation found so far at each checkpoint (a number of evaluations),
with the wall-clock seconds spent by then.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from nat_gym.budget import BudgetedEvaluator, BudgetExhausted
from nat_gym.errors import ConfigError
from nat_gym.genotype import Genotype

__all__ = ["Objective", "Candidate", "Snapshot", "Stalled", "random_action", "mutate", "neighbours"]


class Stalled(BudgetExhausted):
    """The search asked for ``max_requests`` candidates without spending its budget (it keeps re-asking)."""


@dataclass(frozen=True)
class Candidate:
    """A scored transformation: ``action`` (op index per edge) turns the input into ``genotype``."""

    action: tuple[int, ...]
    genotype: Genotype
    reward: float
    acc: float
    madds_saving: float
    evaluation: int  # evaluations spent when it was found (0: the identity)


@dataclass(frozen=True)
class Snapshot:
    """The incumbent at a checkpoint: ``evaluations`` spent, ``seconds`` of wall-clock since the search began."""

    checkpoint: int
    evaluations: int
    seconds: float
    best: Candidate


class Objective:
    """One per-instance search (see the module docstring).

    Args:
        env: a ``NATCell-v0`` whose evaluator is a :class:`BudgetedEvaluator` (``free`` holding ``start``).
        start: the input architecture ``beta``.
        checkpoints: evaluation counts at which :attr:`trace` records the incumbent (the budget is always one).
        max_requests: the stall limit (module docstring).

    Attributes:
        choices: for each edge, the allowed op indices (``[2E]`` arrays). ``identity``: the action that keeps
            every op. ``best``: the incumbent :class:`Candidate`. ``trace``: list of :class:`Snapshot`.
        acc_start: the input's accuracy. ``requests``: candidates asked for (repeats included).
    """

    def __init__(self, env: gym.Env, start: Genotype, *, checkpoints: Sequence[int] = (),
                 max_requests: int | None = None) -> None:  # fmt: skip
        base = env.unwrapped
        self.budgeted = base.evaluator
        if not isinstance(self.budgeted, BudgetedEvaluator) or self.budgeted.budget is None:
            raise ConfigError("env: its evaluator must be a BudgetedEvaluator with a budget")
        if start not in self.budgeted.free:
            raise ConfigError("start: the input architecture must be free in the env's BudgetedEvaluator")
        self.env = env
        self.start = start
        self.budget = int(self.budgeted.budget)
        self.max_requests = 20 * self.budget + 1000 if max_requests is None else int(max_requests)
        _, info = env.reset(options={"genotype": start})
        self.acc_start = float(info["acc"])
        k = base.rules.num_ops
        mask = np.asarray(info["action_mask"], dtype=bool).reshape(-1, k)
        self.choices = [np.flatnonzero(row) for row in mask]
        self.identity = tuple(int(i) for i in base.rules.op_indices(start))
        self.best = Candidate(self.identity, start, 0.0, self.acc_start, 0.0, 0)
        self.checkpoints = sorted({int(c) for c in checkpoints if 0 < c < self.budget} | {self.budget})
        self.trace: list[Snapshot] = []
        self.requests = 0
        self._scores: dict[tuple[int, ...], float] = {self.identity: 0.0}
        self._start_time = time.perf_counter()
        self.stop_reason = ""

    # ------------------------------------------------------------------------------------------------- scoring
    @property
    def used(self) -> int:
        """Evaluations spent."""
        return self.budgeted.used

    @property
    def num_edges(self) -> int:
        return len(self.choices)

    def seen(self, action: Sequence[int]) -> bool:
        """Whether ``action`` was scored already (asking again is free)."""
        return tuple(int(a) for a in action) in self._scores

    def score(self, action: Sequence[int] | np.ndarray) -> float:
        """The reward of ``action`` (one allowed op index per edge).

        Raises:
            ConfigError: an op the rules do not allow on that edge (searches propose allowed ops only).
            BudgetExhausted: after recording the candidate that spent the last evaluation.
            Stalled: the request limit is reached.
        """
        key = tuple(int(a) for a in action)
        self.requests += 1
        if self.requests > self.max_requests:
            self._finish("stalled")
            raise Stalled(self.used, self.budget)
        if key in self._scores:
            return self._scores[key]
        if len(key) != self.num_edges or any(a not in c for a, c in zip(key, self.choices)):
            raise ConfigError(f"action: every edge needs one of its allowed op indices {self.choices}, got {key}")
        self.env.reset(options={"genotype": self.start, "score": False})
        _, reward, _, _, info = self.env.step(np.asarray(key, dtype=np.int64))  # may raise BudgetExhausted
        self._scores[key] = reward
        if reward > self.best.reward:
            self.best = Candidate(key, info["genotype_after"], reward, info["acc_after"], info["madds_saving"], self.used)
        self._record()
        if self.used >= self.budget:
            self._finish("budget")
            raise BudgetExhausted(self.used, self.budget)
        return reward

    def _record(self) -> None:
        while len(self.trace) < len(self.checkpoints) and self.used >= self.checkpoints[len(self.trace)]:
            self._snap(self.checkpoints[len(self.trace)])

    def _snap(self, checkpoint: int) -> None:
        self.trace.append(Snapshot(checkpoint, self.used, time.perf_counter() - self._start_time, self.best))

    def _finish(self, reason: str) -> None:
        """Fill the checkpoints the search did not reach with its final incumbent."""
        if not self.stop_reason:
            self.stop_reason = reason
        while len(self.trace) < len(self.checkpoints):
            self._snap(self.checkpoints[len(self.trace)])

    def finish(self, reason: str = "returned") -> list[Snapshot]:
        """End the search (idempotent) and return the trace, one snapshot per checkpoint."""
        self._finish(reason)
        return self.trace


# ====================================================================================================== moves
def random_action(objective: Objective, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random valid transformation: every edge picks uniformly among its allowed ops."""
    return np.array([c[rng.integers(len(c))] for c in objective.choices], dtype=np.int64)


def mutate(objective: Objective, action: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """``action`` with one random edge (among those with a choice) set to another of its allowed ops."""
    out = np.array(action, dtype=np.int64)
    edges = [i for i, c in enumerate(objective.choices) if len(c) > 1]
    i = edges[rng.integers(len(edges))]
    others = objective.choices[i][objective.choices[i] != out[i]]
    out[i] = others[rng.integers(len(others))]
    return out


def neighbours(objective: Objective, action: Sequence[int]) -> list[np.ndarray]:
    """Every action that differs from ``action`` on exactly one edge (in edge order, then op order)."""
    out = []
    for i, choices in enumerate(objective.choices):
        for op in choices:
            if op != action[i]:
                nb = np.array(action, dtype=np.int64)
                nb[i] = op
                out.append(nb)
    return out
