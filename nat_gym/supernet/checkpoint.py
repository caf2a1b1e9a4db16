"""Supernet checkpoints: written atomically (temp file + fsync + rename), with their configuration inside.

A checkpoint is a ``torch.save`` dict::

    {"format": "nat-gym-supernet", "format_version": 1, "config": SupernetConfig.to_dict(),
     "train_config": {...}, "state_dict": ..., "optimizer": ..., "epoch": int, "history": [...],
     "version_tag": str}

Loading into a supernet of another configuration is a :class:`~nat_gym.errors.CheckpointError` that lists the
fields that differ.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch

from nat_gym.errors import CheckpointError
from nat_gym.supernet.model import Supernet, SupernetConfig

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "atomic_write",
    "atomic_save",
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint",
    "content_hash",
    "load_optimizer_state",
]

FORMAT = "nat-gym-supernet"
FORMAT_VERSION = 1


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write(file)`` on a temporary file next to ``path``, then fsync and rename it to ``path``: a crash
    mid-write leaves the previous file intact. The file gets the permissions of any file the user creates
    (``0o666`` minus the umask), not ``mkstemp``'s owner-only ``0o600``: a run folder or a shared cache stays
    readable to whoever may read the logs next to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> None:
    """Resume ``optimizer`` from ``state`` (an ``optimizer.state_dict()``) but keep the settings it was built with.

    The per-parameter state (momentum buffers, Adam's moments and step counts) comes from the checkpoint; the
    hyperparameters of every parameter group (``lr``, ``momentum``, ``betas``, ``weight_decay``, ...) stay those of
    ``optimizer``, i.e. of the resumed run's configuration. ``load_state_dict`` alone restores the saved settings
    too, so a flag changed on ``--resume`` (e.g. ``--lr``) was recorded in the new checkpoint but never applied.
    """
    settings = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, kept in zip(optimizer.param_groups, settings):
        group.update(kept)


def save_checkpoint(
    path: str | os.PathLike,
    supernet: Supernet,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    epoch: int = 0,
    history: list[dict[str, float]] | None = None,
    train_config: dict[str, Any] | None = None,
) -> Path:
    """Write a supernet checkpoint atomically; returns the path."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": supernet.config.to_dict(),
        "train_config": dict(train_config or {}),
        "state_dict": supernet.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": int(epoch),
        "history": list(history or []),
        "version_tag": supernet.version,
    }
    return atomic_save(payload, path)


def read_checkpoint(
    path: str | os.PathLike, fmt: str = FORMAT, version: int = FORMAT_VERSION, what: str = "a nat-gym supernet checkpoint"
) -> dict[str, Any]:
    """Read and validate a checkpoint file of format ``fmt`` (no model is built); ``what`` names it in errors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint: no such file {str(path)!r}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for corrupt files
        raise CheckpointError(f"checkpoint: cannot read {str(path)!r} ({type(e).__name__}: {e})") from None
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise CheckpointError(f"checkpoint: {str(path)!r} is not {what}")
    if payload.get("format_version") != version:
        raise CheckpointError(
            f"checkpoint: format_version {payload.get('format_version')!r} of {str(path)!r} is not supported; "
            f"expected {version}"
        )
    return payload


def load_checkpoint(
    path: str | os.PathLike, supernet: Supernet | None = None, map_location: str | torch.device = "cpu"
) -> tuple[Supernet, dict[str, Any]]:
    """Load a checkpoint into ``supernet`` (checked against its config) or into a new supernet built from the
    checkpoint's config. Returns ``(supernet, payload)``."""
    payload = read_checkpoint(path)
    try:
        cfg = SupernetConfig.from_dict(payload["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint: {str(path)!r} has an invalid config ({e})") from None
    if supernet is None:
        supernet = Supernet(cfg)
    elif supernet.config != cfg:
        diff = supernet.config.diff(cfg)
        desc = "; ".join(f"{k}: supernet has {a!r}, checkpoint has {b!r}" for k, (a, b) in diff.items())
        raise CheckpointError(f"checkpoint: {str(path)!r} was saved from a differently configured supernet ({desc})")
    state = {k: v.to(map_location) for k, v in payload["state_dict"].items()}
    try:
        supernet.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint: weights of {str(path)!r} do not fit the supernet ({e})") from None
    supernet.bump_version(str(payload.get("version_tag", Path(path).name)))
    return supernet, payload


def content_hash(supernet: Supernet) -> str:
    """A digest of the supernet's configuration and weights (the first 16 hex digits of a SHA-256): equal for equal
    weights whatever file or process they came from, different as soon as one weight differs. Benchmark results
    record it, so that results scored with different supernets are never mixed."""
    h = hashlib.sha256(json.dumps(supernet.config.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(supernet.state_dict().items()):
        t = tensor.detach().cpu()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.flatten().numpy().tobytes())  # flatten copies strided (channels-last) tensors into row order
    return h.hexdigest()[:16]
