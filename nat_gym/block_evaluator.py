r"""BlockQNN's reward oracle: early-stop training of the stacked block, corrected for FLOPs and density.

**Early stop** (BlockQNN, CVPR 2018 section 3.3): each sampled block is stacked into a :class:`~nat_gym.block_network.
BlockNetwork`, trained for a short :class:`EarlyStopRecipe` (the papers: 12 epochs of Adam, lr 0.001 times 0.2 every
5 epochs, batch 256 (?), on CIFAR-100) on the ``train`` split and scored on the ``valid`` split, held-out
*training* images; the ``test`` split is never touched. :func:`early_stop_train` is one such evaluation, a pure
function of ``(block, recipe, dataset)`` (the seed is in the recipe) that a worker process can run.

**Reward** (TPAMI 2019, the refined reward; :func:`block_reward`):

.. math::

    r = \mathrm{acc} - \mu \log\frac{\max(\mathrm{FLOPs}, C H W)}{\mathrm{FLOPs}_\mathrm{ref}}
        - \rho \log(\mathrm{density})

with the block's FLOPs (multiply-adds, :func:`nat_gym.blocks.cost.block_cost`) at the first stage's shape
``(C, H, W)``, normalised by the reference block's (``ResNet`` by default) so the term is comparable with accuracy,
and the density of :attr:`Block.density <nat_gym.blocks.nsc.Block.density>`. Both logs are guarded: a block of
identities and adds (or no layer at all) has no multiply-add, so FLOPs count at least one per output element
(``C H W``, the cost of touching the output once; a 1x1 pool costs that much); the density is at least 0.5 by construction (the implicit output
node and its edges). The accuracy is a fraction in [0, 1]; the papers' balance scalars mu = 1 and rho = 8 (?) are
read as weights of an accuracy in percent, so nat-gym's defaults are mu = 0.01 and rho = 0.08 (see
:class:`RewardConfig`); with mu = 1 a ten-fold FLOPs ratio (2.3) would outweigh any accuracy difference.

**Evaluators** share one protocol, ``evaluate(blocks) -> rewards`` (plus :meth:`BlockEvaluator.measure` for the
per-block accuracy, parameters, FLOPs and density): :class:`EarlyStopEvaluator` trains, :class:`CallableBlockEvaluator`
wraps a user's ``fn(block) -> accuracy``. Both deduplicate a batch by canonical block, keep an in-memory cache, and the
early-stop evaluator consults a persistent :class:`~nat_gym.eval_cache.EvalCache` keyed by (canonical block digest,
recipe, dataset) before training and writes each result to it as soon as it is finished.

**Where the trainings run** (``EarlyStopEvaluator(executor=...)``): in this process (``workers=1``), in a pool of
``workers`` local processes (``"process"``), or on a pool of ``workers`` Ray actors, local or on a cluster
(``"ray"``, :class:`nat_gym.distributed.RayPool`: results as they finish, a killed worker's block retried on another,
a time limit per block: ``timeout``, which local processes have not, so it is an error with them). ``"auto"``
(the default) picks Ray when a cluster address is given (``address`` or ``RAY_ADDRESS``), else local processes.
Either way the cache is written here, in the caller's process, by completed trainings only, and the results are the
same.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from functools import lru_cache, partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from nat_gym.block_network import BlockNetwork
from nat_gym.blocks import named
from nat_gym.blocks.cost import block_cost, check_stack_args, network_cost
from nat_gym.blocks.nsc import Block
from nat_gym.data import DATASETS, DatasetSplits, Split, load_dataset
from nat_gym.errors import ConfigError, dataclass_from_dict
from nat_gym.eval_cache import EvalCache
from nat_gym.supernet.default import cache_dir
from nat_gym.supernet.train import resolve_device, torch_threads

__all__ = [
    "EarlyStopRecipe",
    "PAPER_RECIPE",
    "DIGITS_RECIPE",
    "DatasetSpec",
    "RewardConfig",
    "BlockMeasurement",
    "BlockEvaluator",
    "BlockEvaluatorBase",
    "EarlyStopEvaluator",
    "CallableBlockEvaluator",
    "early_stop_train",
    "block_reward",
    "default_cache_path",
    "CACHE_KIND",
    "EXECUTORS",
]

CACHE_KIND = "blockqnn-early-stop/1"
"""The ``kind`` of the persistent cache's rows (part of every key: a new training procedure gets a new kind)."""

EXECUTORS: tuple[str, ...] = ("auto", "process", "ray")
"""Where :class:`EarlyStopEvaluator` trains blocks (see the module docstring)."""


# ============================================================================================================ recipe
@dataclass(frozen=True)
class EarlyStopRecipe:
    """The network shape and the short training that scores a block (part of every cache key).

    Attributes:
        C: the stem's width (stages ``C, 2C, 4C``). N: blocks per stage.
        epochs: passes over the ``train`` split.
        batch_size: images per Adam step (the last, smaller batch of an epoch is used too).
        lr: Adam's learning rate, multiplied by ``lr_decay`` every ``lr_step`` epochs.
        weight_decay: Adam's (L2) weight decay.
        seed: seeds the initial weights and the data order: the same recipe trains a block the same way.
    """

    C: int = 32
    N: int = 4
    epochs: int = 12
    batch_size: int = 256
    lr: float = 1e-3
    lr_decay: float = 0.2
    lr_step: int = 5
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("C", "N", "epochs", "batch_size", "lr_step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"recipe.{name}: expected an integer >= 1, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ConfigError(f"recipe.seed: expected an integer >= 0, got {self.seed!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"recipe.lr: expected a positive learning rate, got {self.lr!r}")
        if not (isinstance(self.lr_decay, (int, float)) and 0 < self.lr_decay <= 1):
            raise ConfigError(f"recipe.lr_decay: expected a factor in (0, 1], got {self.lr_decay!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ConfigError(f"recipe.weight_decay: expected a number >= 0, got {self.weight_decay!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EarlyStopRecipe:
        return dataclass_from_dict(cls, data, "recipe")


PAPER_RECIPE = EarlyStopRecipe()
"""The papers' early stop on CIFAR (12 epochs, Adam 0.001 x 0.2 every 5 epochs, batch 256 (?)), at the shape of a
public re-implementation (32-filter stem, N = 4)."""

DIGITS_RECIPE = EarlyStopRecipe(C=8, N=1, epochs=4, batch_size=128, lr=0.01, lr_decay=0.2, lr_step=3)
"""The digits default, scaled down to fit a whole search in 30 minutes on 2 CPU cores (README: seconds per block)."""


@dataclass(frozen=True)
class DatasetSpec:
    """Which images score blocks (part of every cache key, except ``root``, which only says where the files are).

    Attributes:
        name: one of :data:`nat_gym.data.DATASETS`. seed: seed of the train / valid / test split.
        options: dataset keyword arguments as sorted ``(name, value)`` pairs (see :func:`nat_gym.data.load_dataset`).
        root: folder of the CIFAR files.
    """

    name: str = "digits"
    seed: int = 0
    options: tuple[tuple[str, Any], ...] = ()
    root: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.name not in DATASETS:
            raise ConfigError(f"dataset: {self.name!r} is not known; allowed: {', '.join(DATASETS)}")
        object.__setattr__(self, "options", tuple(sorted(dict(self.options).items())))

    def load(self) -> DatasetSplits:
        """The dataset (loaded once per process)."""
        return _load(self)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed, "options": dict(self.options)}


@lru_cache(maxsize=4)
def _load(spec: DatasetSpec) -> DatasetSplits:
    return load_dataset(spec.name, root=spec.root, seed=spec.seed, **dict(spec.options))


def default_cache_path() -> Path:
    """The persistent evaluation cache used when none is given: ``<cache dir>/blockqnn-evaluations.sqlite`` (the
    cache dir is ``$NAT_GYM_CACHE`` or ``~/.cache/nat-gym``)."""
    return cache_dir() / "blockqnn-evaluations.sqlite"


# ============================================================================================================ training
def early_stop_train(block: Block, recipe: EarlyStopRecipe, dataset: DatasetSpec,
                     device: str | torch.device = "cpu", *, report_test: bool = False) -> dict[str, float]:  # fmt: skip
    """Train ``block``'s stacked network by ``recipe`` on ``dataset.train`` and score it on ``dataset.valid``.

    A pure function of its arguments (weights and data order come from ``recipe.seed``; global RNG states are left
    as they were), safe to run in a worker process. Runs with the caller's torch thread setting.

    Args:
        report_test: also score the test split (``"test_accuracy"``), for a final report of blocks already chosen;
            the evaluators never ask for it, so no choice ever sees the test split.

    Returns:
        ``{"accuracy": fraction of valid images classified right, "train_loss": mean loss of the last epoch,
        "seconds": wall time, "cpu_seconds": CPU time of this process}`` (and ``"test_accuracy"``).
    """
    start, cpu = time.perf_counter(), time.process_time()
    dev = resolve_device(device)
    data = dataset.load()
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(recipe.seed)
        net = BlockNetwork(block, recipe.C, recipe.N, data.image_size, data.in_channels, data.num_classes)
    net = net.to(dev, memory_format=torch.channels_last)  # 1.5x faster on a CPU for these small convolutions
    opt = torch.optim.Adam(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    schedule = torch.optim.lr_scheduler.StepLR(opt, step_size=recipe.lr_step, gamma=recipe.lr_decay)
    order = torch.Generator().manual_seed(recipe.seed)
    train_x = data.train.x.to(dev).contiguous(memory_format=torch.channels_last)
    train_y = data.train.y.to(dev)
    loss_sum, steps = 0.0, 0
    net.train()
    for _ in range(recipe.epochs):
        loss_sum, steps = 0.0, 0
        perm = torch.randperm(len(train_y), generator=order).to(dev)
        for i in range(0, len(perm), recipe.batch_size):
            idx = perm[i : i + recipe.batch_size]
            loss = F.cross_entropy(net(train_x[idx]), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum, steps = loss_sum + float(loss.detach()), steps + 1
        schedule.step()
    net.eval()
    out = {"accuracy": _accuracy(net, data.valid, dev), "train_loss": loss_sum / max(steps, 1)}
    if report_test:
        out["test_accuracy"] = _accuracy(net, data.test, dev)
    return {**out, "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu}


@torch.no_grad()
def _accuracy(net: torch.nn.Module, split: Split, dev: torch.device) -> float:
    correct = 0
    for x, y in split.batches(1024):
        logits = net(x.to(dev).contiguous(memory_format=torch.channels_last))
        correct += int((logits.argmax(1) == y.to(dev)).sum())
    return correct / len(split)


def _watch_parent(parent: int) -> None:
    """Worker initializer: end this worker when the process that started it is gone (e.g. killed), instead of
    lingering as an orphan."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="nat-gym-parent-watch", daemon=True).start()


def _train_in_worker(block: Block, recipe: EarlyStopRecipe, dataset: DatasetSpec, device: str,
                     threads: int | None) -> dict[str, float]:  # fmt: skip
    """:func:`early_stop_train` with ``threads`` torch threads, in a worker process."""
    with torch_threads(threads):
        return early_stop_train(block, recipe, dataset, device)


def _early_stop_trainer(recipe: EarlyStopRecipe, dataset: DatasetSpec, device: str,
                        threads: int | None) -> Callable[[Block], dict[str, float]]:  # fmt: skip
    """What each Ray worker builds once: the dataset loaded, then ``block -> result`` (:func:`_train_in_worker`)."""
    dataset.load()
    return partial(_train_in_worker, recipe=recipe, dataset=dataset, device=device, threads=threads)


# ============================================================================================================ reward
@dataclass(frozen=True)
class RewardConfig:
    """The refined reward's balance scalars and reference (see the module docstring).

    Attributes:
        mu: weight of ``log(FLOPs / FLOPs_ref)``. The papers' 1 (?) on an accuracy in percent; 0.01 here.
        rho: weight of ``log(density)``. The papers' 8 (?) on an accuracy in percent; 0.08 here.
        reference: the named block (or compact string) whose FLOPs normalise the FLOPs term.
    """

    mu: float = 0.01
    rho: float = 0.08
    reference: str = "ResNet"

    def __post_init__(self) -> None:
        for name in ("mu", "rho"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise ConfigError(f"reward.{name}: expected a finite number, got {value!r}")
        named.resolve(self.reference)  # a BlockError naming the block if unknown

    def reference_block(self) -> Block:
        return named.resolve(self.reference)


def block_reward(accuracy: float, flops: float, density: float, *, flops_ref: float, flops_floor: float,
                 mu: float, rho: float) -> float:  # fmt: skip
    """``accuracy - mu * log(max(flops, flops_floor) / flops_ref) - rho * log(density)``.

    Raises:
        ConfigError: ``flops_ref``, ``flops_floor`` or ``density`` is not positive, or ``flops`` is negative.
    """
    if not (flops_ref > 0 and flops_floor > 0):
        raise ConfigError(f"flops_ref and flops_floor must be positive, got {flops_ref!r} and {flops_floor!r}")
    if not density > 0:
        raise ConfigError(f"density: expected a positive density, got {density!r}")
    if flops < 0:
        raise ConfigError(f"flops: expected a count >= 0, got {flops!r}")
    return float(accuracy - mu * math.log(max(flops, flops_floor) / flops_ref) - rho * math.log(density))


class BlockMeasurement(NamedTuple):
    """What an evaluator reports for one block.

    Attributes:
        block: the block as given. reward: :func:`block_reward`. accuracy: early-stop accuracy on the valid split.
        params, flops: of the stacked network (one image). block_flops: of one block at the first stage's shape
        (the reward's FLOPs). density: :attr:`Block.density`. seconds: training time (0 when served by a cache).
        source: ``"trained"``, ``"memory"`` (this evaluator already had it) or ``"cache"`` (the persistent cache).
    """

    block: Block
    reward: float
    accuracy: float
    params: int
    flops: int
    block_flops: int
    density: float
    seconds: float
    source: str

    def info(self) -> dict[str, Any]:
        """The fields as a dict (the block as its compact string)."""
        out = self._asdict()
        out["block"] = str(self.block)
        return out


# ============================================================================================================ evaluators
@runtime_checkable
class BlockEvaluator(Protocol):
    """Anything that scores blocks: ``evaluate(blocks) -> rewards`` and ``measure(blocks) -> measurements``.

    ``shape`` is the stacked network's ``{"C", "N", "input_size", "in_channels", "num_classes"}`` (the cost figures
    an environment reports between evaluations). A wrapper (e.g. a pool of remote workers) implements these three.
    """

    @property
    def shape(self) -> dict[str, int]: ...

    def measure(self, blocks: Sequence[Block]) -> list[BlockMeasurement]: ...

    def evaluate(self, blocks: Sequence[Block]) -> np.ndarray: ...


class BlockEvaluatorBase:
    """Base of the block evaluators: the reward, the cost figures, batch deduplication and the in-memory cache.

    Subclasses implement :meth:`_accuracies` (accuracy and seconds of distinct canonical blocks). The network whose
    params / FLOPs are reported has the shape ``(C, N, input_size, in_channels, num_classes)``; the reward's FLOPs
    are one block's at ``(C, input_size, input_size)``.

    Attributes:
        requested: blocks passed to :meth:`measure`. trained: blocks actually evaluated. memory_hits, cache_hits:
        blocks served by the in-memory / persistent cache.
    """

    def __init__(self, *, C: int, N: int, input_size: int, in_channels: int, num_classes: int,
                 reward: RewardConfig | None = None) -> None:  # fmt: skip
        check_stack_args(C, N, input_size, in_channels, num_classes)
        self.shape: dict[str, int] = {"C": C, "N": N, "input_size": input_size, "in_channels": in_channels, "num_classes": num_classes}
        self.reward_config = reward or RewardConfig()
        self.flops_ref = block_cost(self.reward_config.reference_block(), C, input_size).madds
        self.flops_floor = C * input_size * input_size
        self._memory: dict[Block, tuple[float, float]] = {}
        self.requested = self.trained = self.memory_hits = self.cache_hits = 0

    @property
    def version(self) -> str:
        """Identifies what the accuracies mean (subclasses: the recipe and dataset)."""
        return "block-evaluator"

    @property
    def cache_info(self) -> dict[str, float]:
        """Counts of this evaluator's lookups and ``hit_rate`` = 1 - trained / requested."""
        rate = 1.0 - self.trained / self.requested if self.requested else 0.0
        return {"requested": self.requested, "trained": self.trained, "memory_hits": self.memory_hits,
                "cache_hits": self.cache_hits, "hit_rate": rate}  # fmt: skip

    def reward(self, block: Block, accuracy: float) -> float:
        """The refined reward of ``block`` at ``accuracy``."""
        cfg = self.reward_config
        flops = block_cost(block, self.shape["C"], self.shape["input_size"]).madds
        return block_reward(accuracy, flops, block.density, flops_ref=self.flops_ref, flops_floor=self.flops_floor,
                            mu=cfg.mu, rho=cfg.rho)  # fmt: skip

    def measure(self, blocks: Sequence[Block]) -> list[BlockMeasurement]:
        """Accuracy, reward and costs of each block (equal blocks are evaluated once)."""
        if isinstance(blocks, Block):
            raise ConfigError("blocks: expected a list of blocks, got a single Block (wrap it in a list)")
        blocks = list(blocks)
        for i, b in enumerate(blocks):
            if not isinstance(b, Block):
                raise ConfigError(f"blocks[{i}]: expected a Block, got {type(b).__name__}")
        self.requested += len(blocks)
        sources: dict[Block, str] = {}
        todo = []
        for b in dict.fromkeys(blocks):  # distinct canonical blocks, in first-seen order
            if b in self._memory:
                sources[b] = "memory"
            else:
                todo.append(b)
        if todo:
            for b, (acc, seconds, source) in self._accuracies(todo).items():
                self._memory[b] = (acc, seconds)
                sources[b] = source
        seen: set[Block] = set()
        out = []
        for b in blocks:
            acc, seconds = self._memory[b]
            source = sources[b] if b not in seen else "memory"
            seen.add(b)
            self.memory_hits += source == "memory"
            out.append(self._measurement(b, acc, seconds if source == "trained" else 0.0, source))
        return out

    def evaluate(self, blocks: Sequence[Block]) -> np.ndarray:
        """The reward of each block (:meth:`measure` for the rest)."""
        return np.array([m.reward for m in self.measure(blocks)], dtype=np.float64)

    def _measurement(self, block: Block, accuracy: float, seconds: float, source: str) -> BlockMeasurement:
        s = self.shape
        net = network_cost(block, **s)
        one = block_cost(block, s["C"], s["input_size"])
        return BlockMeasurement(block, self.reward(block, accuracy), float(accuracy), net.params, net.madds,
                                one.madds, block.density, float(seconds), source)  # fmt: skip

    def _accuracies(self, blocks: list[Block]) -> dict[Block, tuple[float, float, str]]:
        raise NotImplementedError


class CallableBlockEvaluator(BlockEvaluatorBase):
    """Wrap ``fn(block) -> accuracy`` (a user's proxy, or a fast stand-in in tests) as a block evaluator with the
    same reward, costs and in-memory cache. ``fn`` must return a finite number."""

    def __init__(self, fn: Callable[[Block], float], *, C: int = 8, N: int = 1, input_size: int = 8,
                 in_channels: int = 1, num_classes: int = 10, reward: RewardConfig | None = None,
                 version: str = "callable") -> None:  # fmt: skip
        if not callable(fn):
            raise ConfigError(f"fn: expected a callable, got {type(fn).__name__}")
        super().__init__(C=C, N=N, input_size=input_size, in_channels=in_channels, num_classes=num_classes,
                         reward=reward)  # fmt: skip
        self.fn, self._version = fn, version

    @property
    def version(self) -> str:
        return self._version

    def _accuracies(self, blocks: list[Block]) -> dict[Block, tuple[float, float, str]]:
        out = {}
        for b in blocks:
            start = time.perf_counter()
            acc = float(self.fn(b))
            if not math.isfinite(acc):
                raise ConfigError(f"fn: returned a non-finite accuracy {acc!r} for block {b}")
            out[b] = (acc, time.perf_counter() - start, "trained")
            self.trained += 1
        return out


class EarlyStopEvaluator(BlockEvaluatorBase):
    """Early-stop training of each block (see the module docstring), with a persistent cache.

    Args:
        dataset: a :class:`DatasetSpec` or a dataset name (``"digits"``, ``"cifar100"``, ...).
        recipe: the :class:`EarlyStopRecipe` (default: :data:`DIGITS_RECIPE` on digits and fake data,
            :data:`PAPER_RECIPE` otherwise).
        reward: the :class:`RewardConfig`.
        cache: an :class:`~nat_gym.eval_cache.EvalCache`, a path to one, ``"default"`` (:func:`default_cache_path`)
            or ``None`` (in-memory only).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        workers: processes (or Ray actors) that train the blocks of one :meth:`measure` call in parallel (1: in
            this process, unless on Ray). Each result is written to the cache as soon as it arrives; the results do
            not depend on the order.
        executor: ``"auto"``, ``"process"`` or ``"ray"`` (see the module docstring). ``"ray"`` without Ray
            installed says so once and uses local processes.
        address: a Ray cluster to train on (``HOST:PORT``; ``None``: ``RAY_ADDRESS`` if set, else a local Ray).
        timeout: seconds one block's training may take before its worker is killed and it is retried; Ray only
            (a :class:`~nat_gym.errors.ConfigError` when the trainings run on local processes).
        max_retries: Ray only: retries of a block whose worker died or timed out
            (:class:`~nat_gym.errors.WorkerLost` / :class:`~nat_gym.errors.EvaluationTimeout` after that).
        threads: torch CPU threads per training (1: the tiny networks gain nothing from more, and a busy machine
            makes threads spin against each other).
        progress: show a progress bar over the blocks a call trains.

    Raises:
        ConfigError: an argument out of range (the message names it).
    """

    def __init__(self, dataset: DatasetSpec | str = "digits", recipe: EarlyStopRecipe | None = None, *,
                 reward: RewardConfig | None = None, cache: EvalCache | str | os.PathLike | None = "default",
                 device: str = "cpu", workers: int = 1, threads: int | None = 1, progress: bool = False,
                 executor: str = "auto", address: str | None = None, timeout: float | None = None,
                 max_retries: int = 2) -> None:  # fmt: skip
        self.executor = _resolve_executor(executor, address, timeout)
        self.dataset = dataset if isinstance(dataset, DatasetSpec) else DatasetSpec(dataset)
        if recipe is None:
            recipe = DIGITS_RECIPE if self.dataset.name in ("digits", "fake") else PAPER_RECIPE
        if not isinstance(recipe, EarlyStopRecipe):
            raise ConfigError(f"recipe: expected an EarlyStopRecipe, got {type(recipe).__name__}")
        self.recipe = recipe
        data = self.dataset.load()
        super().__init__(C=recipe.C, N=recipe.N, input_size=data.image_size, in_channels=data.in_channels,
                         num_classes=data.num_classes, reward=reward)  # fmt: skip
        if cache == "default":
            cache = default_cache_path()
        self.cache = cache if cache is None or isinstance(cache, EvalCache) else EvalCache(cache)
        self.device = str(resolve_device(device))
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers: expected an integer >= 1, got {workers!r}")
        self.workers, self.threads, self.progress = workers, threads, progress
        self.address, self.timeout, self.max_retries = address, timeout, max_retries
        self._pool: ProcessPoolExecutor | None = None
        self._ray_pool: Any = None
        text = json.dumps({"kind": CACHE_KIND, "recipe": recipe.to_dict(), "dataset": self.dataset.to_dict()},
                          sort_keys=True)  # fmt: skip
        self._version = hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def version(self) -> str:
        """A digest of the recipe and the dataset (with the block digest, the persistent cache key)."""
        return self._version

    def key(self, block: Block) -> str:
        """The persistent cache key of ``block``: its canonical digest with :attr:`version`."""
        return f"{self._version}:{block.digest()}"

    def close(self) -> None:
        """Stop the worker processes or Ray actors (a later call starts them again)."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
        if self._ray_pool is not None:
            self._ray_pool.close()
            self._ray_pool = None

    @property
    def ray_pool(self) -> Any:
        """The :class:`~nat_gym.distributed.RayPool` that trains the blocks (``executor="ray"``; started on first
        use)."""
        if self.executor != "ray":
            raise ConfigError(f"ray_pool: this evaluator trains with executor={self.executor!r}, not 'ray'")
        if self._ray_pool is None:
            from nat_gym.distributed import RayPool

            factory = partial(_early_stop_trainer, self.recipe, self.dataset, self.device, self.threads)
            self._ray_pool = RayPool(factory, workers=self.workers, address=self.address, timeout=self.timeout,
                                     max_retries=self.max_retries)  # fmt: skip
        return self._ray_pool

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    def _accuracies(self, blocks: list[Block]) -> dict[Block, tuple[float, float, str]]:
        out: dict[Block, tuple[float, float, str]] = {}
        if self.cache is not None:
            found = self.cache.get_many(self.key(b) for b in blocks)
            for b in blocks:
                record = found.get(self.key(b))
                if record is not None:
                    out[b] = (float(record["accuracy"]), float(record["seconds"]), "cache")
                    self.cache_hits += 1
        todo = [b for b in blocks if b not in out]
        if not todo:
            return out
        from tqdm.auto import tqdm

        with tqdm(total=len(todo), desc="early stop", unit="block", disable=not self.progress, leave=False) as bar:
            for b, result in self._train(todo):
                self._store(b, result)
                out[b] = (result["accuracy"], result["seconds"], "trained")
                self.trained += 1
                bar.update(1)
        return out

    def _train(self, blocks: list[Block]) -> Iterator[tuple[Block, dict[str, float]]]:
        """Yield ``(block, result)`` as trainings finish (in any order when ``workers > 1`` or on Ray)."""
        if self.executor == "ray":
            yield from self.ray_pool.imap_unordered(blocks)
            return
        if self.workers == 1 or len(blocks) == 1:
            with torch_threads(self.threads):
                for b in blocks:
                    yield b, early_stop_train(b, self.recipe, self.dataset, self.device)
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"), initializer=_watch_parent,
                                             initargs=(os.getpid(),))  # fmt: skip
        args = (self.recipe, self.dataset, self.device, self.threads)
        pending: dict[Future, Block] = {self._pool.submit(_train_in_worker, b, *args): b for b in blocks}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield pending.pop(fut), fut.result()
        finally:
            for fut in pending:
                fut.cancel()

    def _store(self, block: Block, result: dict[str, float]) -> None:
        if self.cache is not None:
            self.cache.put(self.key(block), result, kind=CACHE_KIND, subject=str(block.canonical()),
                           recipe=self.recipe.to_dict(), dataset=self.dataset.to_dict())  # fmt: skip


def _resolve_executor(executor: str, address: str | None, timeout: float | None = None) -> str:
    """``"process"`` or ``"ray"`` for the ``executor``, ``address`` and ``timeout`` arguments (see the module
    docstring)."""
    if executor not in EXECUTORS:
        raise ConfigError(f"executor: expected one of {list(EXECUTORS)}, got {executor!r}")
    given = executor
    if executor == "auto":
        executor = "ray" if address or os.environ.get("RAY_ADDRESS") else "process"
    if executor == "process" and address:
        raise ConfigError(f"address: {address!r} is a Ray cluster's address, which executor='process' (this "
                          "machine's processes) cannot reach; executors that take an address: 'ray', 'auto'")  # fmt: skip
    if executor == "process" and timeout is not None:
        where = "executor='process'" if given == "process" else "executor='auto' without a cluster address"
        raise ConfigError(f"timeout: a time limit per block (--eval-timeout {timeout:g}) needs executor='ray' "
                          f"(--executor ray); {where} trains on this machine's processes, which run every training "
                          "to its end")  # fmt: skip
    if executor == "ray":
        from nat_gym.distributed import ray_evaluator

        if not ray_evaluator.ray_available():
            warnings.warn(ray_evaluator.RAY_MISSING, RuntimeWarning, stacklevel=3)
            return "process"
        ray_evaluator.check_cluster(address)  # now, not when the first blocks are sampled and Ray starts
    return executor
