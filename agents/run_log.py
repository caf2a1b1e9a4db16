"""Run outputs shared by the agents' trainers: the metrics CSV (rewritten atomically from the whole history, so a
resumed run never duplicates rows) and TensorBoard events (a resumed run drops the events a killed run wrote after its
last checkpoint)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["run_checkpoint", "write_history_csv", "open_writer", "add_scalars"]


def run_checkpoint(out: str | Path, resume: bool, *, log: bool = True) -> Path:
    """``out/checkpoint.pt``, after the checks every trainer makes before any work starts.

    Raises:
        ConfigError: ``resume`` but ``out`` holds no checkpoint (nothing to resume), or not ``resume`` but it holds
            one and ``log`` (a run is never overwritten).
    """
    from nat_gym.errors import ConfigError

    ckpt = Path(out) / "checkpoint.pt"
    if resume and not ckpt.is_file():
        raise ConfigError(f"out: nothing to resume, {ckpt} does not exist; check --out or drop --resume")
    if log and ckpt.exists() and not resume:
        raise ConfigError(f"out: {ckpt} exists; pass --resume to continue that run or choose another --out")
    return ckpt


def write_history_csv(history: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write ``history`` (one dict per row) to ``path`` atomically; the header is the union of the rows' keys in
    first-seen order (a key missing from a row is an empty cell)."""
    path = Path(path)
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, restval="")
        w.writeheader()
        w.writerows(history)
    tmp.replace(path)
    return path


def open_writer(out: str | Path, done: int, config: Mapping[str, Any]) -> Any:
    """A TensorBoard ``SummaryWriter`` in ``out`` for a run that has ``done`` steps (epochs, iterations) behind it:
    events after step ``done`` are purged (``purge_step``), and a new run (``done == 0``) records ``config``."""
    from torch.utils.tensorboard import SummaryWriter

    Path(out).mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(str(out), purge_step=done + 1 if done else None)
    if not done:
        writer.add_text("args", json.dumps(dict(config), indent=1, default=str))
    return writer


def add_scalars(writer: Any, prefix: str, row: Mapping[str, Any], step: int, skip: Sequence[str] = ()) -> None:
    """``writer.add_scalar(f"{prefix}/{key}", value, step)`` for every finite number of ``row`` not in ``skip``."""
    for key, value in row.items():
        if key in skip or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            writer.add_scalar(f"{prefix}/{key}", value, step)
