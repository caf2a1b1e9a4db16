"""Bayesian optimisation through Optuna (a kept library; no hand-written surrogate).

Each edge is one categorical parameter over the ops its rules allow (named ``edge<i>``); Optuna's sampler proposes a
transformation (``study.ask``), the objective scores it, and ``study.tell`` reports the reward. ``sampler="tpe"``:
the Tree-structured Parzen Estimator (Bergstra et al. 2011; ``optuna.samplers.TPESampler``, multivariate, with
``startup_trials`` random trials first); ``sampler="gp"``: Optuna's Gaussian-process sampler
(``optuna.samplers.GPSampler``). A proposal that was scored before costs nothing and is told its known reward.

Needs the ``bench`` extra (``pip install -e ".[bench]"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.search.base import Objective
from nat_gym.errors import ConfigError

__all__ = ["BayesOptArgs", "search"]


@dataclass
class BayesOptArgs:
    """Hyper-parameters of Bayesian optimisation."""

    sampler: str = "tpe"
    """Optuna sampler: tpe (TPESampler, multivariate) or gp (GPSampler)."""
    startup_trials: int = 10
    """Random trials before the surrogate model proposes (Optuna's n_startup_trials)."""

    def __post_init__(self) -> None:
        if self.sampler not in ("tpe", "gp"):
            raise ConfigError(f"sampler: expected 'tpe' or 'gp', got {self.sampler!r}")
        if self.startup_trials < 1:
            raise ConfigError(f"startup_trials: expected an integer >= 1, got {self.startup_trials!r}")


def search(objective: Objective, rng: np.random.Generator, args: BayesOptArgs) -> None:
    """Ask Optuna for transformations until the budget is spent."""
    try:
        import optuna
    except ImportError:  # pragma: no cover - the bench extra is installed in CI
        raise ConfigError("algorithm bayesopt needs optuna: pip install -e '.[bench]'") from None

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seed = int(rng.integers(2**31 - 1))
    if args.sampler == "tpe":
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=args.startup_trials, multivariate=True)
    else:
        sampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=args.startup_trials)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    space = {f"edge{i}": optuna.distributions.CategoricalDistribution([int(op) for op in c])
             for i, c in enumerate(objective.choices)}  # fmt: skip
    while True:
        trial = study.ask(space)
        action = [trial.params[f"edge{i}"] for i in range(objective.num_edges)]
        try:
            value = objective.score(action)
        except BaseException:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        study.tell(trial, value)
