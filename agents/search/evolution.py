"""Regularised evolution (Real et al., "Regularized evolution for image classifier architecture search", AAAI 2019).

A population of ``population_size`` transformations starts from uniformly random valid ones. Each cycle samples
``sample_size`` members uniformly, mutates the best of them (one edge changes to another op its rules allow),
scores the child, appends it and removes the *oldest* member (the ageing that regularises). The identity (the input
itself) is the initial incumbent but not a member.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from agents.search.base import Objective, mutate, random_action
from nat_gym.errors import ConfigError

__all__ = ["EvolutionArgs", "search"]


@dataclass
class EvolutionArgs:
    """Hyper-parameters of regularised evolution."""

    population_size: int = 20
    """Members of the population (the paper: 100 at budgets of thousands; 20 suits budgets of a few hundred)."""
    sample_size: int = 5
    """Members sampled per tournament (the paper: 25 of 100)."""

    def __post_init__(self) -> None:
        if self.population_size < 2 or not 1 <= self.sample_size <= self.population_size:
            raise ConfigError(
                f"population_size, sample_size: expected population_size >= 2 and 1 <= sample_size <= "
                f"population_size, got {self.population_size}, {self.sample_size}"
            )


def search(objective: Objective, rng: np.random.Generator, args: EvolutionArgs) -> None:
    """Run regularised evolution until the budget is spent."""
    population: deque[tuple[np.ndarray, float]] = deque()
    while len(population) < args.population_size:
        action = random_action(objective, rng)
        population.append((action, objective.score(action)))
    while True:
        picks = rng.choice(len(population), size=args.sample_size, replace=False)
        parent = max((population[i] for i in picks), key=lambda m: m[1])[0]
        child = mutate(objective, parent, rng)
        population.append((child, objective.score(child)))
        population.popleft()
