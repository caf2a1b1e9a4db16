"""The reward oracle: ``evaluate(genotypes, batch) -> accuracies``, batched, cached and deterministic.

:class:`Evaluator` is the protocol the environment talks to. Two implementations:

- :class:`SupernetEvaluator`: shared-weight accuracy from a :class:`~nat_gym.supernet.Supernet` on a fixed image
  split. The split is cut into fixed minibatches (``batch_size``; by default one batch holding the whole split);
  ``batch=k`` scores on minibatch ``k`` and ``batch=None`` on all of them (the mean over minibatches, weighted by
  size). A list of architectures is scored on CUDA ``max_archs_per_pass`` at a time in one grouped pass of the
  supernet (each architecture's BN statistics stay separate, so batched and single results agree); on the CPU by
  single-path passes, run by several threads in parallel or one after the other, whichever is measured to be
  faster on this machine right now (:class:`ParallelChoice`). Results are cached by
  ``(genotype digest, supernet version, batch)``; values that do not depend on the architecture (stem, first
  preprocessing, ops applied to them) are cached per minibatch too. The supernet runs in inference mode but with
  batch statistics (the paper's reward): same weights + same images = same accuracy, bit for bit.
- :class:`CallableEvaluator`: wraps any ``fn(genotype) -> float`` (a user's own proxy), with the same cache.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from nat_gym import heap
from nat_gym.data import Split
from nat_gym.errors import ConfigError
from nat_gym.genotype import Genotype
from nat_gym.supernet.model import Supernet
from nat_gym.supernet.train import resolve_device, torch_threads

__all__ = ["Evaluator", "SupernetEvaluator", "CallableEvaluator", "BatchKey", "ParallelChoice"]

BatchKey = int | None


@runtime_checkable
class Evaluator(Protocol):
    """Anything that scores genotypes. ``batch`` selects the validation minibatch (``None``: all of them)."""

    @property
    def version(self) -> str: ...

    @property
    def num_batches(self) -> int: ...

    def evaluate(self, genotypes: Sequence[Genotype], batch: BatchKey = None) -> np.ndarray: ...


class _ResultCache:
    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[tuple, float] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple) -> float | None:
        value = self._data.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
            self._data.move_to_end(key)
        return value

    def put(self, key: tuple, value: float) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()


class ParallelChoice:
    """Chooses, chunk by chunk, how a list of architectures is scored on the CPU: by the worker threads in parallel
    or one after the other in the calling thread, whichever has the lower measured seconds per architecture.

    Threads are not always faster: on a 2-core machine loaded by other processes, two threads scored 64
    architectures at 0.73x the speed of one thread (they contend for the cores and for the GIL), while on an idle
    one they reach 1.5-1.9x. So the choice is measured, not assumed: each way's seconds per architecture is an
    exponential moving average (``smoothing``: the weight of the newest chunk) over the chunks it scored; a way
    never measured is tried first; and every ``explore_every``-th chunk goes the slower way, so that a change of
    load (other processes taking or freeing cores) is noticed.

    Attributes:
        seconds: ``{"parallel": s, "sequential": s}``, the current estimates of seconds per architecture (``None``
            before the first measurement).
        chunks: ``{"parallel": n, "sequential": n}``, chunks scored each way.
    """

    MODES = ("parallel", "sequential")

    def __init__(self, explore_every: int = 16, smoothing: float = 0.5) -> None:
        if explore_every < 2:
            raise ConfigError(f"explore_every: expected an integer >= 2, got {explore_every!r}")
        if not 0.0 < smoothing <= 1.0:
            raise ConfigError(f"smoothing: expected a number in (0, 1], got {smoothing!r}")
        self.explore_every, self.smoothing = explore_every, smoothing
        self.seconds: dict[str, float | None] = dict.fromkeys(self.MODES)
        self.chunks: dict[str, int] = dict.fromkeys(self.MODES, 0)

    def pick(self) -> str:
        """The way to score the next chunk: ``"parallel"`` or ``"sequential"``."""
        for mode in self.MODES:
            if self.seconds[mode] is None:
                return mode
        fast, slow = sorted(self.MODES, key=lambda m: self.seconds[m])
        return slow if (sum(self.chunks.values()) + 1) % self.explore_every == 0 else fast

    def record(self, mode: str, seconds_per_arch: float) -> None:
        """Record that a chunk scored ``mode``'s way took ``seconds_per_arch`` per architecture."""
        old = self.seconds[mode]
        a = self.smoothing
        self.seconds[mode] = seconds_per_arch if old is None else (1 - a) * old + a * seconds_per_arch
        self.chunks[mode] += 1


class SupernetEvaluator:
    """Shared-weight accuracy of genotypes on a fixed split (see the module docstring).

    Args:
        supernet: the weight-sharing supernet (moved to ``device``).
        split: the images that score architectures (the policy's validation split: held-out *training* data).
        batch_size: images per minibatch; ``None`` = the whole split as one batch.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        max_archs_per_pass: architectures stacked in one supernet pass.
        cache_size: results kept (LRU).
        activation_cache: reuse architecture-independent activations across calls (memory: a few tensors per
            minibatch; at most ``activation_batches`` minibatches are kept).
        threads: intra-op CPU threads while scoring (:func:`~nat_gym.supernet.train.torch_threads`; ``None``: leave
            torch's setting).
        workers: on the CPU, a list of architectures is scored by up to this many threads in parallel, one
            single-path pass each, in chunks of ``4 * workers``; :class:`ParallelChoice` falls back to one thread
            whenever that is measured to be faster (other processes loading the cores). Default: the CPU cores this
            process may use (``os.sched_getaffinity``); 1 = one thread.
        grouped: score ``max_archs_per_pass`` architectures in one grouped pass (architectures grouped by op per
            edge). Default: on CUDA only. Measured on 2 CPU cores, the grouped pass is *slower* per architecture
            than single passes (0.5x: the gathers and scatters cost more than the saved call overhead, and the
            stacked activations overflow the L2 cache); it exists for GPUs, where it has not been measured yet.
    """

    def __init__(
        self,
        supernet: Supernet,
        split: Split,
        *,
        batch_size: int | None = None,
        device: str | torch.device = "auto",
        max_archs_per_pass: int = 8,
        cache_size: int = 200_000,
        activation_cache: bool = True,
        activation_batches: int = 4,
        threads: int | None = 1,
        workers: int | None = None,
        grouped: bool | None = None,
    ) -> None:
        if len(split) == 0:
            raise ConfigError("split: the evaluation split is empty")
        bs = len(split) if batch_size is None else int(batch_size)
        if not 1 <= bs:
            raise ConfigError(f"batch_size: expected a positive number of images or None, got {batch_size!r}")
        if max_archs_per_pass < 1:
            raise ConfigError(f"max_archs_per_pass: expected >= 1, got {max_archs_per_pass!r}")
        self.device = resolve_device(device)
        self.supernet = supernet.to(self.device)
        self.split = split
        self.batch_size = min(bs, len(split))
        self.max_archs_per_pass = int(max_archs_per_pass)
        x, y = split.x.to(self.device), split.y.to(self.device)
        self._batches = [(x[i : i + self.batch_size], y[i : i + self.batch_size]) for i in range(0, len(y), self.batch_size)]
        self._sizes = [len(yb) for _, yb in self._batches]
        self._cache = _ResultCache(cache_size)
        self._use_activation_cache = activation_cache
        self._activations: OrderedDict[tuple, dict] = OrderedDict()
        self._activation_batches = activation_batches
        self.threads = threads
        if workers is not None and workers < 1:
            raise ConfigError(f"workers: expected >= 1 or None, got {workers!r}")
        self.grouped = self.device.type != "cpu" if grouped is None else bool(grouped)
        self.workers = 1 if self.device.type != "cpu" else (workers or _usable_cores())
        self.parallel_choice = ParallelChoice()
        self._pool: ThreadPoolExecutor | None = None
        self.evaluations = 0  # architectures x minibatches actually run through the supernet

    def __getstate__(self) -> dict[str, Any]:
        # pickling and deep copies (an env sent to a Ray worker or a subprocess) carry no worker threads: the copy
        # starts its own pool when it first needs one
        state = self.__dict__.copy()
        state["_pool"] = None
        return state

    # ------------------------------------------------------------------------------------------------- protocol
    @property
    def version(self) -> str:
        return self.supernet.version

    @property
    def num_batches(self) -> int:
        return len(self._batches)

    @property
    def num_images(self) -> int:
        return sum(self._sizes)

    @property
    def cache_info(self) -> dict[str, int]:
        return {"hits": self._cache.hits, "misses": self._cache.misses, "size": len(self._cache),
                "evaluations": self.evaluations}  # fmt: skip

    def clear_cache(self) -> None:
        self._cache.clear()
        self._activations.clear()

    def evaluate(self, genotypes: Sequence[Genotype], batch: BatchKey = None) -> np.ndarray:
        """Accuracy in [0, 1] of each genotype on minibatch ``batch`` (``None``: on the whole split)."""
        if isinstance(genotypes, Genotype):
            raise ConfigError("genotypes: expected a list of genotypes, got a single Genotype (wrap it in a list)")
        if batch is not None:
            return self._accuracies(genotypes, self._check_batch(batch))
        if len(self._sizes) == 1:
            return self._accuracies(genotypes, 0)
        correct = np.zeros(len(genotypes))
        for b, size in enumerate(self._sizes):
            correct += self._accuracies(genotypes, b) * size
        return correct / sum(self._sizes)

    def _check_batch(self, batch: BatchKey) -> int:
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or not 0 <= batch < self.num_batches:
            raise ConfigError(f"batch: expected None or an integer in 0..{self.num_batches - 1}, got {batch!r}")
        return int(batch)

    def _accuracies(self, genotypes: Sequence[Genotype], b: int) -> np.ndarray:
        version = self.version
        out = np.empty(len(genotypes))
        todo: dict[Genotype, list[int]] = {}
        for i, g in enumerate(genotypes):
            if not isinstance(g, Genotype):
                raise ConfigError(f"genotypes[{i}]: expected a Genotype, got {type(g).__name__}")
            hit = self._cache.get((g, version, b))
            if hit is None:
                todo.setdefault(g, []).append(i)
            else:
                out[i] = hit
        if todo:
            unique = list(todo)
            accs = self._run(unique, b)
            heap.architectures_scored(len(unique))  # hands freed activations back to the OS now and then
            for g, acc in zip(unique, accs):
                self._cache.put((g, version, b), float(acc))
                out[todo[g]] = acc
        return out

    def _run(self, genotypes: list[Genotype], b: int) -> np.ndarray:
        cache = self._activation_dict(b) if self._use_activation_cache else None
        accs = []
        if self.grouped:
            with torch_threads(self.threads, self.device):
                accs = [self._score(genotypes[i : i + self.max_archs_per_pass], b, cache)
                        for i in range(0, len(genotypes), self.max_archs_per_pass)]  # fmt: skip
        elif self.workers == 1 or len(genotypes) == 1:
            accs = [self._sequential(genotypes, b, cache)]
        else:
            step = 4 * self.workers
            for i in range(0, len(genotypes), step):
                chunk = genotypes[i : i + step]
                mode = self.parallel_choice.pick()
                start = time.perf_counter()
                accs.append(self._parallel(chunk, b, cache) if mode == "parallel" else self._sequential(chunk, b, cache))
                self.parallel_choice.record(mode, (time.perf_counter() - start) / len(chunk))
        self.evaluations += len(genotypes)
        return np.concatenate(accs).astype(np.float64)

    def _sequential(self, genotypes: list[Genotype], b: int, cache: dict | None) -> np.ndarray:
        """One single-path pass per architecture, one after the other in this thread."""
        with torch_threads(self.threads, self.device):
            return np.concatenate([self._score([g], b, cache) for g in genotypes])

    def _parallel(self, genotypes: list[Genotype], b: int, cache: dict | None) -> np.ndarray:
        """One single-path pass per architecture, ``workers`` threads in parallel, one intra-op thread each."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="nat-gym-eval")
        with torch_threads(1, self.device):
            return np.concatenate(list(self._pool.map(lambda g: self._score([g], b, cache, single_thread=True),
                                                      genotypes)))  # fmt: skip

    @torch.no_grad()  # grad mode is per thread: set here, where the workers run
    def _score(self, genotypes: list[Genotype], b: int, cache: dict | None, single_thread: bool = False) -> np.ndarray:
        if single_thread:  # OpenMP's thread count is per calling thread: pin each worker to one
            torch.set_num_threads(1)
        x, y = self._batches[b]
        # the supernet's BN always normalises with batch statistics: no train()/eval() switch needed
        logits = self.supernet.forward_many(x, genotypes, cache=cache)
        return (logits.argmax(-1) == y).sum(1).cpu().numpy() / len(y)  # exact fractions

    def _activation_dict(self, b: int) -> dict:
        key = (self.version, b)
        if key not in self._activations:
            # a new weight version makes every stored activation stale
            for k in [k for k in self._activations if k[0] != self.version]:
                del self._activations[k]
            self._activations[key] = {}
            while len(self._activations) > self._activation_batches:
                self._activations.popitem(last=False)
        self._activations.move_to_end(key)
        return self._activations[key]


def _usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


class CallableEvaluator:
    """Wrap ``fn(genotype) -> float`` (or ``fn(genotype, batch) -> float`` with ``takes_batch=True``) as an
    :class:`Evaluator`, with a result cache. Bump ``version`` (:meth:`bump_version`) if the proxy changes."""

    def __init__(
        self,
        fn: Callable[..., float],
        *,
        num_batches: int = 1,
        takes_batch: bool = False,
        version: str = "callable",
        cache_size: int = 200_000,
    ) -> None:
        if not callable(fn):
            raise ConfigError(f"fn: expected a callable, got {type(fn).__name__}")
        if num_batches < 1:
            raise ConfigError(f"num_batches: expected >= 1, got {num_batches!r}")
        self.fn, self.takes_batch = fn, takes_batch
        self._num_batches = int(num_batches)
        self._version, self._step = version, 0
        self._cache = _ResultCache(cache_size)

    @property
    def version(self) -> str:
        return f"{self._version}:{self._step}"

    def bump_version(self) -> None:
        self._step += 1

    @property
    def num_batches(self) -> int:
        return self._num_batches

    def evaluate(self, genotypes: Sequence[Genotype], batch: BatchKey = None) -> np.ndarray:
        if isinstance(genotypes, Genotype):
            raise ConfigError("genotypes: expected a list of genotypes, got a single Genotype (wrap it in a list)")
        out = np.empty(len(genotypes))
        for i, g in enumerate(genotypes):
            key = (g, self.version, batch)
            value = self._cache.get(key)
            if value is None:
                value = float(self.fn(g, batch) if self.takes_batch else self.fn(g))
                if not np.isfinite(value):
                    raise ConfigError(f"fn: returned a non-finite score {value!r} for genotype {g}")
                self._cache.put(key, value)
            out[i] = value
        return out
