"""Per-epoch metrics of a resumable run: ``metrics.csv`` and TensorBoard events that never hold rows twice.

The CSV is rewritten (atomically) from the whole history at every epoch, so a run resumed from a checkpoint drops
the rows a crash left after that checkpoint; TensorBoard's ``purge_step`` does the same for the event files.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["MetricsLog"]


class MetricsLog:
    """Writes ``out/metrics.csv`` and TensorBoard scalars ``tag/<column>`` (x axis: the ``x`` column).

    Args:
        out: the output folder (created).
        tag: TensorBoard scalar prefix.
        start_epoch: the value of ``x`` the run (re)starts from; events after it are purged.
        config: written once as TensorBoard text (``config``) when the run starts from 0.
        x: the column that is the TensorBoard step (``"epoch"``; SB3 runs: ``"timesteps"``).
    """

    def __init__(self, out: str | os.PathLike, tag: str, *, start_epoch: int = 0,
                 config: Mapping[str, Any] | None = None, x: str = "epoch") -> None:  # fmt: skip
        from torch.utils.tensorboard import SummaryWriter

        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.tag = tag
        self.x = x
        self.csv_path = self.out / "metrics.csv"
        self._writer = SummaryWriter(str(self.out), purge_step=start_epoch + 1 if start_epoch else None)
        if not start_epoch and config is not None:
            self._writer.add_text("config", json.dumps(dict(config), indent=1, default=str))

    def write(self, history: Sequence[Mapping[str, float]], row: Mapping[str, float]) -> None:
        """Rewrite the CSV from ``history`` (rows may add columns) and log ``row``'s numbers to TensorBoard."""
        columns: list[str] = []
        for r in history:
            columns += [k for k in r if k not in columns]
        tmp = self.csv_path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns, restval="")
            w.writeheader()
            w.writerows(history)
        tmp.replace(self.csv_path)
        step = int(row[self.x])
        for k, v in row.items():
            if k != self.x and not (isinstance(v, float) and math.isnan(v)):
                self._writer.add_scalar(f"{self.tag}/{k}", v, step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
