"""DDPNAS-style dynamic distribution pruning (Zheng et al., "Dynamic distribution pruning for efficient network
architecture search", 2019), adapted to transformations of one architecture.

Every edge has a categorical distribution over the ops its rules allow that are still *remaining*. An epoch samples
as many transformations as the widest edge has remaining ops, each edge taking its remaining ops in a random order
(cycled where it has fewer), so every remaining op of every edge is tried at least once per epoch. Every
``epochs_per_prune`` epochs the distribution of each edge is updated from the rewards,
``theta = mean over epochs of softmax(temperature * mean reward of the op's samples) + decay * theta``, and the op
with the lowest ``theta`` is pruned from every edge that still has a choice. When one op remains on every edge the
remaining transformation is scored, and the search restarts from uniform distributions while budget is left
(the best transformation found so far is kept by the objective).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from agents.search.base import Objective
from nat_gym.errors import ConfigError

__all__ = ["DDPNASArgs", "search"]


@dataclass
class DDPNASArgs:
    """Hyper-parameters of dynamic distribution pruning."""

    epochs_per_prune: int = 2
    """Sampling epochs between two prunings (DDPNAS's 'steps')."""
    temperature: float = 100.0
    """Scale of the mean rewards inside the softmax (DDPNAS: 100, accuracies as fractions)."""
    decay: float = 0.5
    """Weight of the previous distribution in the update (DDPNAS's score decay)."""

    def __post_init__(self) -> None:
        if self.epochs_per_prune < 1:
            raise ConfigError(f"epochs_per_prune: expected an integer >= 1, got {self.epochs_per_prune!r}")
        if not self.temperature > 0 or not 0 <= self.decay:
            raise ConfigError(f"temperature, decay: expected > 0 and >= 0, got {self.temperature!r}, {self.decay!r}")


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _epoch(objective: Objective, remaining: list[list[int]], rng: np.random.Generator) -> list[dict[int, list[float]]]:
    width = max(len(r) for r in remaining)
    columns = []
    for ops in remaining:
        rounds = math.ceil(width / len(ops))
        columns.append(np.concatenate([rng.permutation(ops) for _ in range(rounds)])[:width])
    samples = np.stack(columns, axis=1)
    rewards: list[dict[int, list[float]]] = [defaultdict(list) for _ in remaining]
    for action in samples:
        r = objective.score(action)
        for i, op in enumerate(action):
            rewards[i][int(op)].append(r)
    return rewards


def search(objective: Objective, rng: np.random.Generator, args: DDPNASArgs) -> None:
    """Sample, update, prune; restart after each convergence; until the budget is spent."""
    while True:
        remaining = [[int(o) for o in c] for c in objective.choices]
        theta = [np.zeros(len(r)) for r in remaining]
        while any(len(r) > 1 for r in remaining):
            epochs = [_epoch(objective, remaining, rng) for _ in range(args.epochs_per_prune)]
            for i, ops in enumerate(remaining):
                if len(ops) == 1:
                    continue
                expectation = np.mean(
                    [_softmax(args.temperature * np.array([np.mean(e[i][op]) for op in ops])) for e in epochs], axis=0
                )
                theta[i] = expectation + args.decay * theta[i]
                worst = int(np.argmin(theta[i]))
                del ops[worst]
                theta[i] = np.delete(theta[i], worst)
        objective.score([r[0] for r in remaining])
