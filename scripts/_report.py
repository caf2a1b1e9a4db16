"""Printing and saving the figures of a benchmark script, and timing arms alternately (shared by the scripts in this
folder)."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch


def report(figures: Mapping[str, Any], json_path: str | None = None, float_digits: int | None = None) -> None:
    """Print ``figures`` one per line, names right-aligned; also write them to ``json_path`` as JSON if given.

    ``float_digits`` formats floats with that many decimals in the printout (the JSON keeps full precision)."""
    width = max(map(len, figures), default=0)
    for key, value in figures.items():
        shown = f"{value:.{float_digits}f}" if float_digits is not None and isinstance(value, float) else value
        print(f"{key:>{width}}: {shown}")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(dict(figures), f, indent=2)


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()  # CUDA kernels run asynchronously: a timing must wait for them


def alternate(arms: Mapping[str, Callable[[int], object]], rounds: int, per_round: int = 1, warmup: int = 1,
              prepare: Mapping[str, Callable[[int], object]] | None = None) -> dict[str, list[float]]:  # fmt: skip
    """Time the ``arms`` alternately: seconds per call of each arm, one figure per round.

    In round ``r`` every arm is called with the unit indices ``r * per_round .. (r + 1) * per_round - 1`` (so each
    arm does the same work: the same architectures, the same images), the arms one after the other, in an order
    that reverses every round (A B, B A, A B, ...), so a change in the machine's load hits all arms alike.
    ``prepare[name](i)``, if given, runs untimed before each call of arm ``name`` on unit ``i``. ``warmup`` extra
    rounds run first and are not counted.
    """
    names = list(arms)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            seconds = 0.0
            for i in range(r * per_round, (r + 1) * per_round):
                if prepare and name in prepare:
                    prepare[name](i)
                _sync()
                start = time.perf_counter()
                arms[name](i)
                _sync()
                seconds += time.perf_counter() - start
            if r >= warmup:
                times[name].append(seconds / per_round)
    return times


def ratio(times: Mapping[str, list[float]], baseline: str, arm: str) -> float:
    """Median over rounds of ``baseline``'s time / ``arm``'s time in the same round (> 1: ``arm`` is faster)."""
    return statistics.median(b / a for b, a in zip(times[baseline], times[arm]))


def ratio_range(times: Mapping[str, list[float]], baseline: str, arm: str) -> str:
    """The lowest and highest of the per-round ratios of :func:`ratio`, as ``"low-high"``."""
    ratios = [b / a for b, a in zip(times[baseline], times[arm])]
    return f"{min(ratios):.2f}-{max(ratios):.2f}"


def median_ms(times: list[float]) -> float:
    return 1e3 * statistics.median(times)
