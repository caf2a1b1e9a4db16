"""A trained transformer policy searching one architecture: score best-of-K of its samples.

The policy (any :class:`TransformPolicy`, e.g. the NAT GCN trained in the amortised protocol) first proposes its
most likely transformation (``argmax_first``), then samples transformations of the input in chunks of ``chunk``;
the objective keeps the best. Repeated samples cost nothing; a policy so sure of itself that it stops proposing new
transformations ends the search early (:class:`~agents.search.base.Stalled`; the result records it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from agents.search.base import Objective
from nat_gym.errors import ConfigError, check_int
from nat_gym.genotype import Genotype

__all__ = ["PolicySearchArgs", "TransformPolicy", "search"]


class TransformPolicy(Protocol):
    """Anything that transforms architectures: ``actions(genotypes, deterministic=..., rng=...)`` returns one
    action (op index per edge) per genotype, ``[B, 2E]`` integers."""

    def actions(self, genotypes: Sequence[Genotype], *, deterministic: bool,
                rng: np.random.Generator) -> np.ndarray: ...  # fmt: skip


@dataclass
class PolicySearchArgs:
    """Hyper-parameters of best-of-K policy sampling."""

    argmax_first: bool = True
    """Score the policy's most likely transformation first."""
    chunk: int = 32
    """Transformations sampled per policy call (>= 1)."""

    def __post_init__(self) -> None:
        if not isinstance(self.argmax_first, bool):
            raise ConfigError(f"argmax_first: expected true or false, got {self.argmax_first!r}")
        check_int("chunk", self.chunk, 1)


def search(objective: Objective, rng: np.random.Generator, args: PolicySearchArgs, policy: TransformPolicy) -> None:
    """Score the policy's transformations of the input until the budget is spent."""
    if args.argmax_first:
        objective.score(policy.actions([objective.start], deterministic=True, rng=rng)[0])
    while True:
        for action in policy.actions([objective.start] * args.chunk, deterministic=False, rng=rng):
            objective.score(action)
