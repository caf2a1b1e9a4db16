"""Result rows of ``nat-gym bench``: one CSV row per (protocol, algo, seed, evaluation checkpoint, input, mode).

Every row carries what is needed to re-score it (``nat-gym validate``): the input (``start``) and the resulting
(``result``) genotypes in the compact string form (:meth:`~nat_gym.genotype.Genotype.parse` reads them back), the
task set and its digest, the input's index, the rules and their digest, the supernet's content hash, the env id and
version, and the cost weight. Floats are written with ``repr`` (they read back bit for bit), so re-scoring a
deterministic reward must reproduce it exactly.

Columns (:data:`COLUMNS`):

- ``protocol`` (``amortised`` / ``per-instance``), ``task_set``, ``algo``, ``seed``, ``budget`` (reward evaluations
  allowed), ``checkpoint`` (the evaluation count this row reports at), ``evaluations`` (spent by then),
  ``seconds`` (wall-clock of the algorithm by then: training, or search), ``stop`` (why the run ended: ``budget``,
  ``stalled``, ``returned``; empty before the end);
- ``mode``: ``argmax`` (one transformation: the policy's most likely one; one random draw for ``random-valid``),
  ``best-of-K`` (``K`` sampled transformations, the best by reward) or ``best`` (per-instance: the incumbent);
- ``instance`` (index in the task set), ``instance_name``, ``start``, ``result``, ``acc_before``, ``acc_after``,
  ``reward``, ``madds_saving`` (relative, at the env's cost shape);
- pins: ``env_id``, ``env_version``, ``rules``, ``rules_digest``, ``supernet``, ``task_digest``, ``cost_weight``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from nat_gym.errors import ConfigError

__all__ = ["COLUMNS", "PIN_COLUMNS", "write_rows", "read_rows", "atomic_write_text", "pin_key"]

PIN_COLUMNS: tuple[str, ...] = ("task_set", "task_digest", "env_id", "env_version", "rules", "rules_digest",
                                "supernet", "cost_weight")  # fmt: skip
"""The columns that must agree for results to be compared (``nat-gym bench --report`` refuses to mix them)."""

COLUMNS: tuple[str, ...] = (
    "protocol", "task_set", "algo", "seed", "budget", "checkpoint", "evaluations", "seconds", "stop", "mode",
    "instance", "instance_name", "start", "result", "acc_before", "acc_after", "reward", "madds_saving",
    "env_id", "env_version", "rules", "rules_digest", "supernet", "task_digest", "cost_weight",
)  # fmt: skip

_INT = ("seed", "budget", "checkpoint", "evaluations", "instance")
_FLOAT = ("seconds", "acc_before", "acc_after", "reward", "madds_saving", "cost_weight")


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`~nat_gym.supernet.checkpoint.atomic_write`)."""
    from nat_gym.supernet.checkpoint import atomic_write

    return atomic_write(path, lambda f: f.write(text.encode()))


def _cell(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def write_rows(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write rows (dicts with every column of :data:`COLUMNS`) as CSV, atomically."""
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for k, row in enumerate(rows):
        missing = [c for c in COLUMNS if c not in row]
        if missing:
            raise ConfigError(f"rows[{k}]: missing columns {missing}")
        w.writerow([_cell(row[c]) for c in COLUMNS])
    return atomic_write_text(path, buf.getvalue())


def read_rows(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """Rows of one or more result CSVs, typed (ints, floats; strings otherwise).

    Raises:
        ConfigError: a file is missing, or lacks a column of :data:`COLUMNS`, or a number does not parse.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out = []
    for p in map(Path, paths):
        if not p.is_file():
            raise ConfigError(f"results: no such CSV file {str(p)!r}")
        with p.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ConfigError(f"results: {str(p)!r} is not a nat-gym bench CSV (missing columns {missing})")
            for line, row in enumerate(reader, start=2):
                try:
                    for c in _INT:
                        row[c] = int(row[c])
                    for c in _FLOAT:
                        row[c] = float(row[c])
                except ValueError as e:
                    raise ConfigError(f"results: {str(p)!r} line {line}: {e}") from None
                row["_source"] = f"{p}:{line}"
                out.append(row)
    return out


def pin_key(row: Mapping[str, Any]) -> tuple:
    """The values of :data:`PIN_COLUMNS` of a row."""
    return tuple(row[c] for c in PIN_COLUMNS)
