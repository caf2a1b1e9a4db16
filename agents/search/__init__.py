"""Search baselines for one architecture at a time (the *per-instance* protocol of ``nat-gym bench``).

Each algorithm is a module with an arguments dataclass and ``search(objective, rng, args)``, and works on the public
API through :class:`~agents.search.base.Objective` (``NATCell-v0``'s ``reset``/``step`` and its evaluator, with the
budget counted in reward evaluations). :data:`SEARCHES` is the registry: one entry per algorithm.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

__all__ = ["SEARCHES", "SearchSpec", "load"]


@dataclass(frozen=True)
class SearchSpec:
    """One search algorithm: ``module`` holds ``args_class`` (its hyper-parameters) and ``search``."""

    module: str
    args_class: str
    help: str


SEARCHES: dict[str, SearchSpec] = {
    "random": SearchSpec("agents.search.random_search", "RandomSearchArgs", "random search over valid transformations"),
    "evolution": SearchSpec("agents.search.evolution", "EvolutionArgs", "regularised evolution (Real et al. 2019)"),
    "local-search": SearchSpec("agents.search.local_search", "LocalSearchArgs",
                               "hill climbing over one-edge changes with random restarts (White et al. 2021)"),
    "bayesopt": SearchSpec("agents.search.bayesopt", "BayesOptArgs", "Bayesian optimisation: Optuna's TPE sampler"),
    "ddpnas": SearchSpec("agents.search.ddpnas", "DDPNASArgs",
                         "DDPNAS-style dynamic distribution pruning (Zheng et al. 2019)"),
}  # fmt: skip
"""Per-instance search algorithms by name (``nat-gym bench --protocol per-instance --algos ...``)."""


def load(name: str) -> tuple[Any, type]:
    """``(search function, arguments dataclass)`` of a registered algorithm."""
    spec = SEARCHES[name]
    module = importlib.import_module(spec.module)
    return module.search, getattr(module, spec.args_class)
