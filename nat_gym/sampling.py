"""Random genotypes: the input architectures ``beta`` of the NAT MDP and of supernet training (NAT.md section 5).

For each intermediate node, two predecessors are picked uniformly (with replacement) among the earlier nodes, and two
ops uniformly from the op list without ``null``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nat_gym.errors import ConfigError
from nat_gym.genotype import Cell, Genotype
from nat_gym.ops import check_vocabulary

__all__ = ["random_cell", "random_genotype"]


def random_cell(rng: np.random.Generator, steps: int, ops: Sequence[str], concat: str = "all") -> Cell:
    """A random cell: 2 uniform predecessors (with replacement) and 2 uniform ops per intermediate node."""
    candidates = [o for o in check_vocabulary(ops) if o != "null"]
    if not candidates:
        raise ConfigError("ops: at least one op other than 'null' is needed to sample architectures")
    if not 1 <= steps:
        raise ConfigError(f"steps: expected a positive number of intermediate nodes, got {steps!r}")
    edges = []
    for node in range(2, steps + 2):
        for _ in range(2):
            edges.append((candidates[int(rng.integers(len(candidates)))], int(rng.integers(node)), node))
    return Cell(edges, concat)


def random_genotype(
    rng: np.random.Generator | int | None, steps: int = 4, ops: Sequence[str] | None = None, concat: str = "all"
) -> Genotype:
    """A random genotype (normal then reduce cell) drawn as the NAT papers draw input architectures.

    Args:
        rng: a numpy Generator (or a seed).
        steps: intermediate nodes per cell.
        ops: the op list (``null`` is excluded from sampling); NAT++'s 13 ops by default.
        concat: ``"all"`` (fully-concat) or ``"loose_end"``.
    """
    from nat_gym.ops import NAT_PLUS_PLUS_OPS

    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    ops = NAT_PLUS_PLUS_OPS if ops is None else ops
    return Genotype(random_cell(rng, steps, ops, concat), random_cell(rng, steps, ops, concat))
