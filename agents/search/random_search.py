"""Random search over valid transformations: score uniformly random valid transformations, keep the best.

The baseline every search method must beat (Li & Talwalkar, "Random search and reproducibility for NAS", UAI 2019;
NASLib's ``RandomSearch``). Each edge picks uniformly among the ops its rules allow; a transformation already scored
is drawn again at no cost (the budget counts new candidates only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.search.base import Objective, random_action

__all__ = ["RandomSearchArgs", "search"]


@dataclass
class RandomSearchArgs:
    """Random search has no hyper-parameters."""


def search(objective: Objective, rng: np.random.Generator, args: RandomSearchArgs) -> None:
    """Score random valid transformations until the budget is spent."""
    while True:
        objective.score(random_action(objective, rng))
