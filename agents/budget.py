"""Budgets counted in reward evaluations: how many architectures an agent had scored.

Environment steps are not a fair unit across algorithms and envs: a ``NATCell-v0`` step scores a new architecture,
while ``NATEdge-v0`` takes ``2E`` steps per architecture, and a policy that repeats itself hits the evaluator's cache.
A :class:`CountingEvaluator` wraps an env's evaluator (:func:`count_evaluations`) and counts the **reward
evaluations**: the distinct ``(genotype, reward minibatch, evaluator version)`` triples the env asked to score
(input architectures scored at ``reset`` included, cache hits of the same triple not counted again), which is what
scoring costs. ``requests`` counts every genotype passed, repeats included.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from nat_gym.errors import ConfigError
from nat_gym.evaluator import BatchKey, Evaluator
from nat_gym.genotype import Genotype

__all__ = ["CountingEvaluator", "count_evaluations"]


class CountingEvaluator:
    """An :class:`~nat_gym.evaluator.Evaluator` that passes every call to ``inner`` and counts what was scored.

    Args:
        inner: the evaluator that scores (its other attributes, e.g. ``supernet``, are reachable through this one).

    Attributes:
        inner: the wrapped evaluator (score with it directly to leave the counts alone, e.g. held-out reports).
        requests (int): genotypes passed to :meth:`evaluate`, repeats included.
    """

    def __init__(self, inner: Evaluator) -> None:
        if not isinstance(inner, Evaluator):
            raise ConfigError(f"inner: {type(inner).__name__} does not implement the Evaluator protocol")
        self.inner = inner
        self.requests = 0
        self._scored: set[tuple[Genotype, str, BatchKey]] = set()

    @property
    def evaluations(self) -> int:
        """Distinct ``(genotype, minibatch, evaluator version)`` triples scored through this evaluator."""
        return len(self._scored)

    @property
    def version(self) -> str:
        return self.inner.version

    @property
    def num_batches(self) -> int:
        return self.inner.num_batches

    def evaluate(self, genotypes: Sequence[Genotype], batch: BatchKey = None) -> np.ndarray:
        values = self.inner.evaluate(genotypes, batch)  # validates the arguments first
        version = self.inner.version
        key = None if batch is None else int(batch)
        self._scored.update((g, version, key) for g in genotypes)
        self.requests += len(genotypes)
        return values

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "inner":  # not set yet (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.inner, name)


def count_evaluations(env: gym.Env) -> CountingEvaluator:
    """Make ``env`` (a ``NATCell-v0`` / ``NATEdge-v0``, wrapped or not) score through a :class:`CountingEvaluator`
    and return it; an env that already counts keeps its counter. The env is changed in place: its
    ``unwrapped.evaluator`` becomes the counter (pickled with the env, so a restored env keeps its counts)."""
    base = env.unwrapped
    evaluator = getattr(base, "evaluator", None)
    if evaluator is None:
        raise ConfigError(f"env: {type(base).__name__} has no evaluator to count (expected a nat-gym env)")
    if not isinstance(evaluator, CountingEvaluator):
        evaluator = base.evaluator = CountingEvaluator(evaluator)
    return evaluator
