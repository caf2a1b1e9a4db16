"""The default supernet of an embedded dataset: loaded from the user cache folder, or trained once and cached.

The cache folder is ``$NAT_GYM_CACHE`` if set, else ``~/.cache/nat-gym``. A cached file is named after a digest of
everything that determines it (supernet config, training config, dataset and its split seed), so changing any of
them trains a new one instead of silently reusing a stale file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, replace
from pathlib import Path

from filelock import FileLock, Timeout

from nat_gym.data import DatasetSplits, load_dataset
from nat_gym.supernet.checkpoint import FORMAT_VERSION, load_checkpoint
from nat_gym.supernet.config import DEFAULT_TRAIN_CONFIG, SupernetConfig, SupernetTrainConfig
from nat_gym.supernet.model import Supernet
from nat_gym.supernet.train import SupernetTrainer

__all__ = ["DEFAULT_TRAIN_CONFIG", "cache_dir", "default_supernet_path", "load_or_train"]

def cache_dir() -> Path:
    """``$NAT_GYM_CACHE``, else ``~/.cache/nat-gym``."""
    return Path(os.environ.get("NAT_GYM_CACHE", Path.home() / ".cache" / "nat-gym"))


def default_supernet_path(
    config: SupernetConfig, train_config: SupernetTrainConfig, dataset: str = "digits", data_seed: int = 0
) -> Path:
    """Where the default supernet for these settings is cached."""
    key = json.dumps(
        {"config": config.to_dict(), "train": asdict(train_config), "dataset": dataset, "data_seed": data_seed,
         "format": FORMAT_VERSION},  # fmt: skip
        sort_keys=True,
    )
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    return cache_dir() / f"supernet-{dataset}-{digest}.pt"


def load_or_train(
    config: SupernetConfig,
    *,
    data: DatasetSplits | None = None,
    dataset: str = "digits",
    data_seed: int = 0,
    train_config: SupernetTrainConfig | None = None,
    path: str | os.PathLike | None = None,
    device: str = "auto",
    progress: bool = True,
) -> Supernet:
    """The cached supernet for these settings; trained (resumably) and cached the first time.

    Processes that ask at the same time (the workers of a vector env, each making its env) share one training: a
    file lock next to the cached file lets the first one train while the others wait, then load what it cached.
    """
    train_config = train_config or replace(DEFAULT_TRAIN_CONFIG)
    target = Path(path) if path else default_supernet_path(config, train_config, dataset, data_seed)
    supernet = _load_trained(target, train_config)
    if supernet is not None:
        return supernet
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(f"{target}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"nat-gym: another process is training the default {dataset} supernet; waiting for it ({target})")
        lock.acquire()
    try:
        supernet = _load_trained(target, train_config)  # trained by the process that held the lock
        if supernet is not None:
            return supernet
        data = data or load_dataset(dataset, seed=data_seed)
        supernet = Supernet(config)
        partial = target.with_suffix(".partial.pt")
        trainer = SupernetTrainer(supernet, data, train_config, device=device, checkpoint=partial)
        if trainer.resume():
            print(f"nat-gym: resuming the default supernet from epoch {trainer.epoch} ({partial})")
        else:
            print(f"nat-gym: training the default {dataset} supernet once; it will be cached at {target}")
        trainer.train(progress=progress)
        trainer.save(target)
        partial.unlink(missing_ok=True)
        return supernet
    finally:
        lock.release()


def _load_trained(target: Path, train_config: SupernetTrainConfig) -> Supernet | None:
    """The supernet cached at ``target`` if it exists and finished ``train_config.epochs`` epochs."""
    if target.is_file():
        supernet, payload = load_checkpoint(target)
        if int(payload.get("epoch", 0)) >= train_config.epochs:
            return supernet
    return None
