"""Comparing final-training results over seeds: Student-t confidence intervals and a three-way verdict.

:func:`mean_ci` is the t-interval of a mean (``scipy.stats.t``); :func:`compare` is Welch's t-interval of the
difference of two means (``scipy.stats.ttest_ind(..., equal_var=False).confidence_interval``), from which the verdict
follows: ``better`` when the whole interval lies above 0, ``worse`` when it lies below, ``equal within CI`` when it
contains 0. With a single seed on either side no interval exists (``n/a``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Interval", "Comparison", "mean_ci", "compare"]


@dataclass(frozen=True)
class Interval:
    """The mean of ``n`` values with its ``confidence`` t-interval ``[low, high]`` (NaN for ``n < 2``)."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float = 0.95

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


@dataclass(frozen=True)
class Comparison:
    """``b - a``: the difference of means, Welch's t-interval of it, and the verdict for ``b`` against ``a``."""

    diff: float
    low: float
    high: float
    verdict: str


def _values(values: Sequence[float], field: str) -> np.ndarray:
    from nat_gym.errors import ConfigError

    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size == 0 or not np.isfinite(v).all():
        raise ConfigError(f"{field}: expected a non-empty list of finite numbers, got {values!r}")
    return v


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean and Student-t interval of ``values`` (one value: the interval is NaN)."""
    from scipy import stats

    v = _values(values, "values")
    mean = float(v.mean())
    if v.size < 2:
        return Interval(mean, math.nan, math.nan, 1, confidence)
    sem = float(v.std(ddof=1) / math.sqrt(v.size))
    if sem == 0:
        return Interval(mean, mean, mean, int(v.size), confidence)
    low, high = stats.t.interval(confidence, v.size - 1, loc=mean, scale=sem)
    return Interval(mean, float(low), float(high), int(v.size), confidence)


def compare(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Comparison:
    """Is ``b`` (e.g. a transformed architecture's accuracies over seeds) better than ``a`` (the original's)?

    Welch's t-interval of ``mean(b) - mean(a)``; verdict ``better`` / ``worse`` when it excludes 0 on that side,
    ``equal within CI`` when it contains 0, ``n/a`` with fewer than 2 values on a side.
    """
    from scipy import stats

    va, vb = _values(a, "a"), _values(b, "b")
    diff = float(vb.mean() - va.mean())
    if va.size < 2 or vb.size < 2:
        return Comparison(diff, math.nan, math.nan, "n/a")
    if va.std() == 0 and vb.std() == 0:  # Welch's interval is undefined; the difference is exact
        low = high = diff
    else:
        with warnings.catch_warnings():  # scipy warns on (nearly) identical values in one group: harmless here
            warnings.simplefilter("ignore", RuntimeWarning)
            ci = stats.ttest_ind(vb, va, equal_var=False).confidence_interval(confidence)
        low, high = float(ci.low), float(ci.high)
    verdict = "better" if low > 0 else "worse" if high < 0 else "equal within CI"
    return Comparison(diff, low, high, verdict)
