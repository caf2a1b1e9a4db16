"""Random genotypes: the input architectures ``beta`` of the NAT MDP and of supernet training (NAT.md section 5).

For each intermediate node, two predecessors are picked uniformly (with replacement) among the earlier nodes, and two
ops uniformly from the op list without ``null``. :func:`random_valid_action` draws the baseline transformation a
policy is compared with: every edge becomes an op the rules allow, uniformly at random.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from nat_gym.errors import ConfigError
from nat_gym.genotype import MAX_STEPS, Cell, Edge, Genotype
from nat_gym.ops import check_vocabulary
from nat_gym.rules import TransitionRules

__all__ = ["random_cell", "random_genotype", "random_valid_action"]


@lru_cache(maxsize=64)
def _candidates(ops: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(o for o in check_vocabulary(ops) if o != "null")


def random_cell(rng: np.random.Generator, steps: int, ops: Sequence[str], concat: str = "all") -> Cell:
    """A random cell: 2 uniform predecessors (with replacement) and 2 uniform ops per intermediate node."""
    candidates = _candidates(tuple(ops))
    if not candidates:
        raise ConfigError("ops: at least one op other than 'null' is needed to sample architectures")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise ConfigError(f"steps: expected an integer in 1..{MAX_STEPS}, got {steps!r}")
    dst = np.repeat(np.arange(2, steps + 2), 2)
    src = (rng.random(2 * steps) * dst).astype(np.int64)  # uniform in 0..dst-1
    op = rng.integers(len(candidates), size=2 * steps)
    edges = tuple(Edge(candidates[o], int(s), int(d)) for o, s, d in zip(op, src, dst))
    cell = Cell._trusted(edges, tuple(range(2, steps + 2)))  # valid by construction
    return cell if concat == "all" else Cell(edges, concat)


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
    return Genotype._trusted(random_cell(rng, steps, ops, concat), random_cell(rng, steps, ops, concat))


def random_valid_action(rules: TransitionRules, genotype: Genotype, rng: np.random.Generator | int | None) -> np.ndarray:
    """A uniformly random valid transformation of ``genotype``: for each edge (normal, then reduce), one of the ops
    ``rules`` allows it to become, drawn uniformly and independently.

    Returns:
        ``[E]`` int64 op indices into ``rules.ops`` (an action of ``NATCell-v0``; ``rules.apply_indices`` applies it).
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return np.array([rng.choice(np.flatnonzero(row)) for row in rules.mask(genotype)], dtype=np.int64)
