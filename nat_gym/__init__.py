"""nat-gym: the Neural Architecture Transformer (NAT / NAT++) as a reinforcement-learning benchmark.

Floors (see the design card): search space (``ops``, ``genotype``, ``genotypes``, ``rules``, ``cost``), measurement
(``data``, ``supernet``, ``evaluator``), environments (``envs``). Importing ``nat_gym`` registers the Gymnasium ids
(``NATCell-v0``, ``NATEdge-v0``); the torch-heavy modules load lazily.
"""

from __future__ import annotations

from nat_gym import errors, genotypes, ops, rules
from nat_gym.genotype import Cell, Edge, Genotype
from nat_gym.rules import TransitionRules

__version__ = "0.1.0"

__all__ = [
    "Cell",
    "Edge",
    "Genotype",
    "TransitionRules",
    "cost",
    "errors",
    "genotypes",
    "ops",
    "rules",
    "__version__",
]


def __getattr__(name: str):
    # `cost` imports nothing heavy but is resolved lazily too so `import nat_gym` stays cheap and cycle-free.
    if name in ("cost", "network", "data", "evaluator", "supernet", "envs"):
        import importlib

        return importlib.import_module(f"nat_gym.{name}")
    raise AttributeError(f"module 'nat_gym' has no attribute {name!r}")


# register the environments (entry points are strings: nothing heavy is imported here)
from nat_gym.envs import registration as _registration  # noqa: E402,F401
