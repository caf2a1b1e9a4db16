"""Local search (hill climbing with restarts), the simple baseline that White et al. found hard to beat ("Exploring
the loss landscape in neural architecture search", UAI 2021; NASLib's ``LocalSearch``).

From the current transformation, score its neighbours (every transformation that differs on one edge) in random
order; with ``first_improvement`` move to the first one that is better, otherwise to the best of all of them once
every neighbour is scored. At a local optimum (no neighbour better) restart from a uniformly random valid
transformation. The first climb starts from the input itself (``start="identity"``: the identity transformation,
whose score is free) or from a random transformation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.search.base import Objective, neighbours, random_action
from nat_gym.errors import ConfigError

__all__ = ["LocalSearchArgs", "search"]


@dataclass
class LocalSearchArgs:
    """Hyper-parameters of local search."""

    first_improvement: bool = True
    """Move to the first better neighbour (True) or to the best neighbour after scoring all of them (False)."""
    start: str = "identity"
    """Where the first climb starts: identity (the input itself) or random."""

    def __post_init__(self) -> None:
        if self.start not in ("identity", "random"):
            raise ConfigError(f"start: expected 'identity' or 'random', got {self.start!r}")


def search(objective: Objective, rng: np.random.Generator, args: LocalSearchArgs) -> None:
    """Climb and restart until the budget is spent."""
    current = np.array(objective.identity) if args.start == "identity" else random_action(objective, rng)
    value = objective.score(current)
    while True:
        moves = neighbours(objective, current)
        order = rng.permutation(len(moves))
        best, best_value = None, value
        for k in order:
            v = objective.score(moves[k])
            if v > best_value:
                best, best_value = moves[k], v
                if args.first_improvement:
                    break
        if best is None:  # a local optimum: restart
            current = random_action(objective, rng)
            value = objective.score(current)
        else:
            current, value = best, best_value
