"""Statistics of benchmark results with ``rliable`` (Agarwal et al., "Deep RL at the edge of the statistical precipice",
NeurIPS 2021): interquartile mean (IQM), mean and optimality gap with 95% stratified-bootstrap confidence intervals,
probability of improvement, performance profiles.

What a *run*, a *task* and a *score* are:

- per-instance protocol: a task is one input architecture, a run is one seed; the score of a run on a task is the
  *normalised score* of the best transformation found, ``reward / best known reward`` of that input (1: the best
  any entry found in these results; 0: the identity), because the inputs' rewards differ by an order of magnitude
  (a cell full of ``null`` edges gains 40 points, DARTS a few) and rliable's aggregates assume comparable tasks,
  as Atari's human-normalised scores are. The optimality gap is rliable's with ``gamma = 1``: the mean shortfall of
  the normalised score from the best known. A ``[seeds, inputs]`` matrix;
- amortised protocol: the task is the test set, a run is one seed (one trained policy); its score is its mean
  reward over the test inputs (a ``[seeds, 1]`` matrix), as an RL agent's score is its mean return over evaluation
  episodes. The optimality gap is the mean shortfall from the best reward any entry reached on each input (rliable's
  with ``gamma = 0`` on ``reward - best``), in accuracy points. Performance profiles use the single rewards per
  test input.

An *entry* is an algorithm and a mode (``"nat (best-of-8)"``; per-instance: the algorithm). The best known reward
of an input depends on the entries compared: adding one that finds better transformations lowers the others'
normalised scores. Bootstraps are seeded: the same rows give the same intervals.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nat_gym.errors import ConfigError

__all__ = ["Entry", "ProtocolStats", "entries", "protocol_stats", "entry_label"]

_STAT_SEED = 0


def _rliable():
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from rliable import library, metrics
    except ImportError:  # pragma: no cover - the bench extra is installed in CI
        raise ConfigError("nat-gym bench statistics need rliable: pip install -e '.[bench]'") from None
    return library, metrics


def entry_label(algo: str, mode: str) -> str:
    return algo if mode == "best" else f"{algo} ({mode})"


@dataclass
class Entry:
    """One algorithm and mode of one protocol, with its matrices at every checkpoint.

    Attributes:
        rewards: checkpoint -> ``[seeds, inputs]`` rewards. ``savings``: the same for the MAdds saving.
        evaluations, seconds: checkpoint -> ``[seeds]`` evaluations spent and wall-clock seconds (amortised: of the
            run's training; per-instance: of one input's search, averaged over the inputs).
    """

    label: str
    algo: str
    mode: str
    seeds: list[int]
    rewards: dict[int, np.ndarray]
    savings: dict[int, np.ndarray]
    evaluations: dict[int, np.ndarray]
    seconds: dict[int, np.ndarray]
    stops: list[str]


def entries(rows: Sequence[dict[str, Any]], protocol: str) -> tuple[list[Entry], list[str]]:
    """The entries of one protocol and the input names (tasks), from result rows.

    Raises:
        ConfigError: rows of different pins (task set, env, rules, supernet, cost weight) or budgets, or runs that
            do not cover the same inputs and checkpoints.
    """
    from agents.bench.results import PIN_COLUMNS, pin_key

    rows = [r for r in rows if r["protocol"] == protocol]
    if not rows:
        raise ConfigError(f"results: no rows of protocol {protocol!r}")
    pins = {pin_key(r) for r in rows}
    if len(pins) > 1:
        a, b = sorted(pins, key=str)[:2]
        diff = [f"{c}: {x!r} vs {y!r}" for c, x, y in zip(PIN_COLUMNS, a, b) if x != y]
        raise ConfigError(f"results: {protocol} rows of different pins cannot be compared ({'; '.join(diff)})")
    budgets = sorted({r["budget"] for r in rows})
    if len(budgets) > 1:
        raise ConfigError(f"results: {protocol} rows of different budgets ({', '.join(map(str, budgets))} reward "
                          "evaluations) cannot be compared")  # fmt: skip
    names = {r["instance"]: r["instance_name"] for r in rows}
    inputs = [names[i] for i in sorted(names)]
    marks = sorted({r["checkpoint"] for r in rows})
    grouped: dict[tuple[str, str], dict[tuple[int, int, int], dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        grouped[(r["algo"], r["mode"])][(r["seed"], r["checkpoint"], r["instance"])] = r
    out = []
    for (algo, mode), cells in sorted(grouped.items()):
        seeds = sorted({k[0] for k in cells})
        need = len(seeds) * len(marks) * len(inputs)
        if len(cells) != need:
            raise ConfigError(f"results: {entry_label(algo, mode)} has {len(cells)} rows where its seeds x checkpoints "
                              f"x inputs need {need}: unfinished or mixed runs")  # fmt: skip
        e = Entry(entry_label(algo, mode), algo, mode, seeds, {}, {}, {}, {}, [])
        for c in marks:
            grid = [[cells[(s, c, i)] for i in range(len(inputs))] for s in seeds]
            e.rewards[c] = np.array([[r["reward"] for r in row] for row in grid])
            e.savings[c] = np.array([[r["madds_saving"] for r in row] for row in grid])
            e.evaluations[c] = np.array([np.mean([r["evaluations"] for r in row]) for row in grid])
            e.seconds[c] = np.array([np.mean([r["seconds"] for r in row]) for row in grid])
        e.stops = sorted({cells[(s, marks[-1], i)]["stop"] for s in seeds for i in range(len(inputs))})
        out.append(e)
    return out, inputs


@dataclass
class ProtocolStats:
    """The statistics of one protocol at its final checkpoint (``budget``), plus learning curves.

    Attributes:
        score_name: what the aggregates are computed on (``"normalised score"`` or ``"reward"``);
            ``score_scale``: the factor that displays it (1, or 100 for accuracy points).
        point, ci: entry -> ``{"iqm", "mean", "gap", "reward", "saving"}`` point estimates and ``(low, high)`` 95%
            CIs (``iqm``, ``mean``, ``gap`` of the score; ``reward`` the mean reward, ``saving`` the mean MAdds
            saving).
        winner: the entry with the highest IQM score. ``poi``: entry -> (P(winner > entry), low, high).
        curves: entry -> list of ``(checkpoint, mean evaluations, mean seconds, iqm, low, high)``.
        profile_taus, profiles: score thresholds and entry -> ``(fraction of runs > tau, low, high)`` arrays.
        per_input: entry -> mean reward per input over seeds (final checkpoint).
        best_known: the best reward of any entry per input, at any checkpoint.
    """

    protocol: str
    budget: int
    inputs: list[str]
    entries: list[Entry]
    score_name: str
    score_scale: float
    point: dict[str, dict[str, float]]
    ci: dict[str, dict[str, tuple[float, float]]]
    winner: str
    poi: dict[str, tuple[float, float, float]]
    curves: dict[str, list[tuple[float, ...]]]
    profile_taus: np.ndarray
    profiles: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    per_input: dict[str, np.ndarray]
    best_known: np.ndarray


def normalised(rewards: np.ndarray, best: np.ndarray) -> np.ndarray:
    """``reward / best known reward`` per input (1: as good as the best any entry found; 0: the identity); an input
    on which nothing beat the identity scores 1 for everyone."""
    positive = best > 0
    return np.where(positive, rewards / np.where(positive, best, 1.0), 1.0)


def protocol_stats(rows: Sequence[dict[str, Any]], protocol: str, *, reps: int = 1000) -> ProtocolStats:
    """Every statistic of ``protocol`` (see the module docstring and :class:`ProtocolStats`)."""
    library, metrics = _rliable()
    found, inputs = entries(rows, protocol)
    final = max(found[0].rewards)
    best = np.max([e.rewards[c].max(axis=0) for e in found for c in e.rewards], axis=0)  # [inputs]
    if protocol == "per-instance":
        score_name, scale, gamma = "normalised score", 1.0, 1.0

        def score(m: np.ndarray) -> np.ndarray:  # [seeds, inputs]: one task per input
            return normalised(m, best)

        def per_run(m: np.ndarray) -> np.ndarray:
            return m
    else:
        score_name, scale, gamma = "reward", 100.0, 0.0

        def score(m: np.ndarray) -> np.ndarray:  # [seeds, 1]: the test set is the task
            return m.mean(axis=1, keepdims=True)

        per_run = score

    def estimates(scores: dict[str, np.ndarray], func) -> tuple[dict, dict]:
        # rliable's stratified bootstraps draw their indices from numpy's global generator (not from their
        # random_state argument): seed it for each estimate and restore it afterwards
        saved = np.random.get_state()
        np.random.seed(_STAT_SEED)
        try:
            return library.get_interval_estimates(scores, func, reps=reps)
        finally:
            np.random.set_state(saved)

    def aggregate(s: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(s), metrics.aggregate_mean(s)])

    scores = {e.label: score(e.rewards[final]) for e in found}
    # optimality gap: per-instance, 1 - normalised score (gamma = 1); amortised, the shortfall from the best reward
    # per input (gamma = 0 on reward - best)
    gap_scores = scores if gamma else {e.label: score(e.rewards[final] - best) for e in found}
    pe, ci = estimates(scores, aggregate)
    gpe, gci = estimates(gap_scores, lambda s: np.array([metrics.aggregate_optimality_gap(s, gamma=gamma)]))
    mean = lambda s: np.array([metrics.aggregate_mean(s)])  # noqa: E731
    rpe, rci = estimates({e.label: per_run(e.rewards[final]) for e in found}, mean)
    spe, sci = estimates({e.label: per_run(e.savings[final]) for e in found}, mean)
    point, interval = {}, {}
    for label in scores:
        point[label] = {"iqm": float(pe[label][0]), "mean": float(pe[label][1]), "gap": float(gpe[label][0]),
                        "reward": float(rpe[label][0]), "saving": float(spe[label][0])}  # fmt: skip
        interval[label] = {"iqm": tuple(ci[label][:, 0]), "mean": tuple(ci[label][:, 1]),
                           "gap": tuple(gci[label][:, 0]), "reward": tuple(rci[label][:, 0]),
                           "saving": tuple(sci[label][:, 0])}  # fmt: skip
    winner = max(point, key=lambda k: (point[k]["iqm"], point[k]["mean"]))
    pairs = {k: (scores[winner], scores[k]) for k in scores if k != winner}
    ppe, pci = estimates(pairs, metrics.probability_of_improvement) if pairs else ({}, {})
    poi = {k: (float(np.ravel(ppe[k])[0]), *map(float, np.ravel(pci[k]))) for k in pairs}

    curves = {}
    for e in found:
        marks = sorted(e.rewards)
        cpe, cci = estimates({str(c): score(e.rewards[c]) for c in marks}, lambda s: np.array([metrics.aggregate_iqm(s)]))
        curves[e.label] = [(float(c), float(e.evaluations[c].mean()), float(e.seconds[c].mean()),
                            float(cpe[str(c)][0]), float(cci[str(c)][0, 0]), float(cci[str(c)][1, 0]))
                           for c in marks]  # fmt: skip

    # performance profiles over single runs: normalised scores per (seed, input), or single rewards per test input
    runs = {e.label: normalised(e.rewards[final], best) if gamma else e.rewards[final] for e in found}
    every = np.concatenate([m.ravel() for m in runs.values()])
    taus = np.linspace(every.min(), every.max(), 41)
    ppe2, pci2 = estimates(runs, lambda s: library.score_distributions(s, taus))
    profiles = {k: (np.asarray(ppe2[k]), np.asarray(pci2[k][0]), np.asarray(pci2[k][1])) for k in ppe2}
    per_input = {e.label: e.rewards[final].mean(axis=0) for e in found}
    return ProtocolStats(protocol, final, inputs, found, score_name, scale, point, interval, winner, poi, curves,
                         taus, profiles, per_input, best)  # fmt: skip
