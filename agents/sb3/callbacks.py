"""SB3 callbacks for budgets counted in reward evaluations (:mod:`agents.budget`).

:class:`StopOnEvaluations` ends ``model.learn(...)`` once the training envs have scored a number of architectures,
so that algorithms that spend evaluations at different rates (a ``NATCell-v0`` step scores one transformation, a
``NATEdge-v0`` episode of ``2E`` steps scores one) can be stopped at the same budget::

    model.learn(total_timesteps=10**9, callback=StopOnEvaluations(2000))
"""

from __future__ import annotations

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from agents.budget import CountingEvaluator, count_evaluations
from nat_gym.errors import ConfigError

__all__ = ["vec_env_counters", "evaluations_of", "StopOnEvaluations"]


def vec_env_counters(vec_env: VecEnv) -> list[CountingEvaluator]:
    """The evaluation counters of the envs of an in-process vector env (``DummyVecEnv``, possibly wrapped in
    ``VecEnvWrapper``s); installs one in every env that has none (:func:`~agents.budget.count_evaluations`).

    Raises:
        ConfigError: If the envs live in other processes (``SubprocVecEnv``): their counters cannot be read here.
    """
    while not hasattr(vec_env, "envs") and hasattr(vec_env, "venv"):
        vec_env = vec_env.venv
    envs = getattr(vec_env, "envs", None)
    if envs is None:
        raise ConfigError(
            f"vec_env: {type(vec_env).__name__} keeps its envs in other processes; counting evaluations needs "
            "in-process envs (DummyVecEnv)"
        )
    return [count_evaluations(env) for env in envs]


def evaluations_of(counters: list[CountingEvaluator]) -> int:
    """Reward evaluations of all the envs together."""
    return sum(c.evaluations for c in counters)


class StopOnEvaluations(BaseCallback):
    """Stop training once the training envs have scored ``max_evaluations`` architectures.

    The check runs after every vector-env step, so a run stops at the first step that reaches the budget: it
    overshoots by at most the evaluations of one step (a transformation and the next input per env).

    Args:
        max_evaluations (int): the budget in reward evaluations (:class:`~agents.budget.CountingEvaluator`).
        verbose (int): SB3's verbosity.
    """

    def __init__(self, max_evaluations: int, verbose: int = 0) -> None:
        super().__init__(verbose)
        if isinstance(max_evaluations, bool) or not isinstance(max_evaluations, int) or max_evaluations < 1:
            raise ConfigError(f"max_evaluations: expected a positive integer, got {max_evaluations!r}")
        self.max_evaluations = max_evaluations
        self.counters: list[CountingEvaluator] = []

    def _init_callback(self) -> None:
        self.counters = vec_env_counters(self.training_env)

    @property
    def evaluations(self) -> int:
        return evaluations_of(self.counters)

    def _on_step(self) -> bool:
        return self.evaluations < self.max_evaluations
