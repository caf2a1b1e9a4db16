"""Evaluation budgets: count the reward evaluations an algorithm spends and stop it at a fixed number.

A *reward evaluation* is one new score: an architecture (on one reward minibatch) whose accuracy the run had not
asked for before. Repeated requests for an architecture the run already scored are free, whether they hit the
evaluator's cache or not, so the count does not depend on how an algorithm batches its calls (the NAT trainer scores
inputs and samples in one call, then reads the rewards through ``env.step``; an SB3 agent only steps) nor on what
other runs left in a shared cache. This is how ``nat-gym bench`` gives every algorithm the same budget.

:class:`BudgetedEvaluator` wraps any :class:`~nat_gym.evaluator.Evaluator`; give it to the environment
(``gym.make("NATCell-v0", evaluator=BudgetedEvaluator(base, budget=1000))``) and every path that scores through the
environment is counted. The call that would exceed the budget scores the new architectures that still fit, then
raises :class:`BudgetExhausted`; so a run stops with exactly ``budget`` evaluations spent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from nat_gym.errors import ConfigError, NatGymError
from nat_gym.genotype import Genotype

if TYPE_CHECKING:  # nat_gym.evaluator imports torch; this module stays light (the CLI's parser imports it)
    from nat_gym.evaluator import BatchKey, Evaluator

__all__ = ["BudgetExhausted", "BudgetedEvaluator"]


class BudgetExhausted(NatGymError):
    """Raised by :class:`BudgetedEvaluator` when a call needs more new evaluations than the budget has left.

    Attributes:
        used: evaluations spent when it was raised (equal to the budget).
    """

    def __init__(self, used: int, budget: int) -> None:
        super().__init__(f"evaluation budget spent: {used} of {budget} reward evaluations")
        self.used = used
        self.budget = budget


class BudgetedEvaluator:
    """An :class:`~nat_gym.evaluator.Evaluator` that counts new scores and stops at ``budget`` (module docstring).

    Args:
        evaluator: the evaluator that does the scoring (its cache is used as usual).
        budget: the number of new ``(genotype, batch)`` scores allowed; ``None`` counts without a limit.
        free: genotypes whose scores never count (e.g. the input architecture of a per-instance search, whose score
            every algorithm is given).

    Attributes:
        used: new scores so far. ``requested``: architectures requested in all (repeats included).
    """

    def __init__(self, evaluator: Evaluator, budget: int | None = None, *, free: Iterable[Genotype] = ()) -> None:
        from nat_gym.evaluator import Evaluator

        if not isinstance(evaluator, Evaluator):
            raise ConfigError(f"evaluator: {type(evaluator).__name__} does not implement the Evaluator protocol")
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 0):
            raise ConfigError(f"budget: expected an integer >= 0 or None, got {budget!r}")
        self.evaluator = evaluator
        self.budget = budget
        self.free = frozenset(free)
        self.used = 0
        self.requested = 0
        self._seen: set[tuple[Genotype, BatchKey]] = set()

    @property
    def version(self) -> str:
        return self.evaluator.version

    @property
    def num_batches(self) -> int:
        return self.evaluator.num_batches

    @property
    def remaining(self) -> int | None:
        """Evaluations left (``None`` without a budget)."""
        return None if self.budget is None else self.budget - self.used

    def evaluate(self, genotypes: Sequence[Genotype], batch: BatchKey = None) -> np.ndarray:
        """Scores of ``genotypes`` (as the wrapped evaluator's); raises :class:`BudgetExhausted` after scoring the
        new ones that fit when the call needs more new scores than are left."""
        if isinstance(genotypes, Genotype):
            raise ConfigError("genotypes: expected a list of genotypes, got a single Genotype (wrap it in a list)")
        genotypes = list(genotypes)
        self.requested += len(genotypes)
        new = list(dict.fromkeys((g, batch) for g in genotypes if g not in self.free and (g, batch) not in self._seen))
        left = self.remaining
        if left is not None and len(new) > left:
            fits = new[:left]
            if fits:  # spend the rest of the budget on the first new architectures of the call
                self.evaluator.evaluate([g for g, _ in fits], batch)
                self._seen.update(fits)
                self.used += len(fits)
            raise BudgetExhausted(self.used, self.budget)
        scores = self.evaluator.evaluate(genotypes, batch)
        self._seen.update(new)
        self.used += len(new)
        return scores

    def seen(self, genotype: Genotype, batch: BatchKey = None) -> bool:
        """Whether scoring ``genotype`` on ``batch`` would be free (already scored in this run, or free)."""
        return genotype in self.free or (genotype, batch) in self._seen
