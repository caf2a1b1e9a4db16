"""The metrics CSV of a training run, shared by every ``nat-gym train`` algorithm."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["write_rows_csv"]


def write_rows_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``rows`` (one dict per row) as a CSV file, atomically (a temporary file, then a rename).

    The columns are the keys in the order they first appear; a row without a column leaves its cell empty. Runs
    rewrite the whole file from their history on every row, so a resumed run never duplicates rows.
    """
    path = Path(path)
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path
