"""``nat-gym validate``: re-score benchmark rows on a fresh environment and flag what does not hold.

For every row (:mod:`agents.bench.results`) it checks, on an environment made from the row's pinned task set:

- the task set still has the row's digest, and the row's ``start`` is input ``instance`` of it; the row's env id
  and version, rules and rules digest are the ones the task set pins today;
- ``result`` is a transformation of ``start`` that the rules allow (same graph, every edge's new op allowed);
- ``acc_before``, ``acc_after``, ``reward`` and ``madds_saving``, recomputed through ``env.reset``/``env.step``,
  equal the row's within ``tolerance`` (default 0: rewards on the whole validation split are deterministic, and the
  rows store floats exactly);
- ``evaluations`` does not exceed ``budget``.

The supernet must be the one the rows name (content hash): the default supernet of the task set's dataset, or the
checkpoint given with ``supernet=``; another one is an error, not a finding, because nothing could be compared.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.bench.results import read_rows
from nat_gym.errors import ConfigError, NatGymError
from nat_gym.genotype import Genotype

__all__ = ["Finding", "validate_rows", "validate_path"]

_SCORED = ("acc_before", "acc_after", "reward", "madds_saving")


@dataclass(frozen=True)
class Finding:
    """A row that does not hold: where it is (``file:line``), which run, and what is wrong."""

    source: str
    algo: str
    seed: int
    instance: int
    problem: str

    def __str__(self) -> str:
        return f"{self.source}: {self.algo} seed {self.seed} input {self.instance}: {self.problem}"


def validate_rows(rows: Sequence[dict[str, Any]], *, supernet: str | None = None, tolerance: float = 0.0,
                  progress: bool = False) -> list[Finding]:  # fmt: skip
    """Findings for ``rows`` (empty: every row holds). See the module docstring.

    Raises:
        ConfigError: the rows name a supernet other than the one loaded, or an unknown task set.
    """
    from tqdm.auto import tqdm

    from nat_gym.envs import tasks
    from nat_gym.envs.tasks import supernet_id

    findings: list[Finding] = []
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["task_set"], r["cost_weight"], r["supernet"])].append(r)
    bar = tqdm(total=len(rows), desc="validate", unit="row", disable=not progress, dynamic_ncols=True)
    for (task_name, cost_weight, sid), group in groups.items():
        task = tasks.get(task_name)
        env = task.make_env(supernet=supernet, cost_weight=cost_weight, device="cpu")  # its env id: checked below
        have = supernet_id(env.unwrapped.evaluator)
        if have != sid:
            raise ConfigError(
                f"supernet: the rows of {task_name} were scored with supernet {sid} but this one is {have}; pass "
                "--supernet with the checkpoint the benchmark used"
            )
        pin = task.pin(env)
        rules = env.unwrapped.rules
        todo: list[tuple[dict[str, Any], Genotype, Genotype]] = []

        def flag(row: dict[str, Any], problem: str) -> None:
            findings.append(Finding(row.get("_source", "?"), row["algo"], row["seed"], row["instance"], problem))

        for r in group:
            for col in ("task_digest", "env_id", "env_version", "rules", "rules_digest"):
                if r[col] != pin[col]:
                    flag(r, f"{col} {r[col]!r} differs from the pinned {pin[col]!r}")
            if r["evaluations"] > r["budget"]:
                flag(r, f"evaluations {r['evaluations']} exceed the budget {r['budget']}")
            try:
                start, result = Genotype.parse(r["start"]), Genotype.parse(r["result"])
            except NatGymError as e:
                flag(r, f"unreadable genotype ({e})")
                continue
            if not 0 <= r["instance"] < len(task) or task.inputs[r["instance"]] != start:
                flag(r, f"start is not input {r['instance']} of task set {task_name}")
            try:
                bad = rules.validate_transformation(start, result)
            except NatGymError as e:
                flag(r, f"invalid transition: {e}")
                continue
            if bad:
                moves = ", ".join(f"edge {i}: {start.ops[i]} -> {result.ops[i]}" for i in bad)
                flag(r, f"invalid transition under rules {rules.name!r}: {moves}")
                continue
            todo.append((r, start, result))
        bar.update(len(group) - len(todo))
        env.unwrapped.evaluator.evaluate(list(dict.fromkeys(g for _, s, a in todo for g in (s, a))))  # batched
        for r, start, result in todo:
            env.reset(options={"genotype": start})
            _, reward, _, _, info = env.step(np.asarray(rules.op_indices(result), dtype=np.int64))
            now = {"acc_before": info["acc_before"], "acc_after": info["acc_after"], "reward": reward,
                   "madds_saving": info["madds_saving"]}  # fmt: skip
            for col in _SCORED:
                if not abs(float(now[col]) - r[col]) <= tolerance:
                    flag(r, f"{col} {r[col]!r} but re-scored {float(now[col])!r} (tolerance {tolerance:g})")
            bar.update(1)
    bar.close()
    return findings


def validate_path(path: str | Path, *, supernet: str | None = None, tolerance: float = 0.0, sample: int | None = None,
                  seed: int = 0, progress: bool = False) -> tuple[int, list[Finding]]:  # fmt: skip
    """Validate a results CSV, or the ``results.csv`` of a benchmark folder; ``sample`` checks that many random rows
    (seeded). Returns ``(rows checked, findings)``.

    Raises:
        ConfigError: the file is missing, is no results CSV or holds no rows, or as :func:`validate_rows`."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.csv"
    rows = read_rows(path)
    if not rows:  # nothing to re-score is no result that holds
        raise ConfigError(f"results: {str(path)!r} holds no rows")
    if sample is not None and sample < len(rows):
        rng = np.random.default_rng(seed)
        rows = [rows[i] for i in sorted(rng.choice(len(rows), size=sample, replace=False))]
    return len(rows), validate_rows(rows, supernet=supernet, tolerance=tolerance, progress=progress)
