r"""Asynchronous evaluation on Ray: a pool of actors, each holding an evaluator built by a factory.

BlockQNN (Zhong et al., CVPR 2018 section 4.1, "distributed asynchronous framework") has a master (the agent), a
controller and many compute nodes that train blocks in parallel and return accuracies as they finish. nat-gym builds
that on Ray (https://docs.ray.io, core API: actors, ``ray.wait``) rather than on code of its own:

- :class:`RayPool` starts ``workers`` Ray actors; each calls ``factory()`` once (an evaluator, a training function,
  a user's callable: anything picklable that builds the thing to call) and then runs one item at a time.
  :meth:`RayPool.imap_unordered` submits many items and yields ``(item, result)`` as they finish, in any order, each
  tagged with the item it belongs to (``ray.wait`` on the pending results).
- :class:`RayEvaluator` is nat-gym's evaluator protocol on top of it (``evaluate(items) -> values`` in the order of
  ``items``, plus :meth:`RayEvaluator.as_completed`) for any evaluator factory: a
  :class:`~nat_gym.evaluator.SupernetEvaluator` or :class:`~nat_gym.evaluator.CallableEvaluator` over genotypes, a
  block evaluator, a user's object. The block early-stop evaluator
  (:class:`~nat_gym.block_evaluator.EarlyStopEvaluator` with ``executor="ray"``) uses :class:`RayPool` directly and
  keeps its persistent cache in the driver.

**Where Ray runs** (:func:`connect`): an explicit ``address`` (``nat-gym ... --address HOST:PORT``) or the
``RAY_ADDRESS`` environment variable joins that cluster, in the order Ray documents for ``ray.init`` ("Starting
Ray": ``RAY_ADDRESS``, then the address passed, then the latest ``ray start`` instance of this machine); without
either, a local Ray with this machine's cores (``num_cpus`` to use fewer). If Ray is already initialised in this
process, that session is used as it is. A cluster address is checked first (:func:`check_cluster`, no Ray needed):
its form (``HOST:PORT``, ``auto``, ``local`` or ``ray://HOST:PORT``), then, for ``HOST:PORT`` and
``ray://HOST:PORT``, that something accepts a connection there within :data:`CONNECT_TIMEOUT` seconds (``ray.init``
would retry an unreachable GCS for minutes, the Ray client for 30 s); a :class:`~nat_gym.errors.ConfigError` names
``address`` or ``RAY_ADDRESS``, and so does an error of ``ray.init`` itself.

**Faults**: each actor runs one evaluation at a time, so the driver always knows which item is where.

- A worker that dies mid-evaluation (killed process, out of memory, lost node) surfaces as a ``RayActorError`` on
  its result: the actor is replaced by a fresh one and the item goes back to the front of the queue, to the next
  free worker; after ``max_retries`` retries of the same item, :class:`~nat_gym.errors.WorkerLost` is raised.
- ``timeout`` seconds per evaluation (measured from when the item was handed to its worker, or from when a
  replacement worker was up, so that a worker's start-up never counts): past it the worker is
  killed (``ray.kill``), replaced, and the item retried the same way; then :class:`~nat_gym.errors.
  EvaluationTimeout`.
- A dead actor never blocks the pool: it is replaced as soon as its death is seen, and a consumer that stops
  reading (an exception, ``break``) kills the workers still busy for it, so the next call starts from idle ones.
- An exception raised by the evaluation itself (bad input, a bug) is not a fault: it is re-raised as it is (Ray's
  ``RayTaskError`` is also an instance of the original exception's class); nat-gym's own errors
  (:class:`~nat_gym.errors.NatGymError`, e.g. a :class:`~nat_gym.errors.ConfigError`) are re-raised as the original
  exception, whose message is one line (Ray's adds the worker's traceback).

Nothing is lost or double-counted: only completed evaluations are yielded, and callers that keep a persistent cache
write it from what is yielded (in the driver), so a retried item is written once, when it completes.

**Serial fallback**: when Ray is not installed, :class:`RayEvaluator` says so once (a ``RuntimeWarning``,
:data:`RAY_MISSING`) and evaluates in this process with one ``factory()`` object.

Example::

    from nat_gym.distributed import RayEvaluator
    from nat_gym.evaluator import CallableEvaluator
    ev = RayEvaluator(lambda: CallableEvaluator(my_accuracy), workers=4)   # local Ray, 4 actors
    rewards = ev.evaluate(genotypes)                                       # in the order of genotypes
    for genotype, value in ev.as_completed(genotypes): ...                 # as they finish
"""

from __future__ import annotations

import collections
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from nat_gym.errors import ConfigError, EvaluationError, EvaluationTimeout, NatGymError, WorkerLost

__all__ = ["RAY_MISSING", "CONNECT_TIMEOUT", "RayPool", "RayEvaluator", "Job", "check_cluster", "connect",
           "ray_available", "call", "evaluate_one"]  # fmt: skip

RAY_MISSING = ("Ray is not installed (pip install 'nat-gym[ray]'), so evaluation runs on this machine without it; "
               "install the extra to evaluate on a pool of Ray workers or a cluster")  # fmt: skip
"""The one message given when Ray was asked for and is not installed."""


def ray_available() -> bool:
    """Whether the ``ray`` package can be imported."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


CONNECT_TIMEOUT = 10.0
"""Seconds :func:`check_cluster` waits for a cluster's ``HOST:PORT`` (GCS or Ray client server) to accept a TCP
connection."""

_FORMS = "HOST:PORT (the head's address, as `ray start --head` prints it), auto, local or ray://HOST:PORT"


def _host_port(address: str, name: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``HOST:PORT`` or ``ray://HOST[:PORT]`` address (the Ray client's port defaults to
    10001), ``None`` for ``auto`` and ``local``; a :class:`ConfigError` naming ``name`` for anything else."""
    if address in ("auto", "local"):
        return None
    client = address.startswith("ray://")
    rest = address[len("ray://") :] if client else address
    host, sep, port = rest.rpartition(":")
    if client and not sep:  # ray://HOST: the Ray client's default port
        host, port = rest, "10001"
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # [IPv6]:PORT
    valid = host and not any(c in host for c in "/[] \t") and port.isdigit() and 0 < int(port) < 65536
    if not valid:
        raise ConfigError(f"{name}: expected {_FORMS}, got {address!r}")
    return host, int(port)


def check_cluster(address: str | None = None, *, timeout: float = CONNECT_TIMEOUT) -> tuple[str, str] | None:
    """Check the Ray cluster that ``ray.init(address=address)`` would join, without Ray: its address has one of the
    forms Ray takes and, for ``HOST:PORT`` and ``ray://HOST:PORT``, something there accepts a TCP connection within
    ``timeout`` seconds.

    Args:
        address: as for :func:`connect`; ``None`` or ``"auto"`` read ``RAY_ADDRESS`` first, as ``ray.init`` does.
        timeout: seconds to wait for the connection.

    Returns:
        ``(where, address)``: the address that will be joined and where it came from (``"address"`` or
        ``"RAY_ADDRESS"``); ``None`` when no cluster is named (a local Ray starts).

    Raises:
        ConfigError: naming ``address`` or ``RAY_ADDRESS``: a malformed address, or nothing accepts a connection at
            its ``HOST:PORT`` (or the Ray client's) in time.
    """
    env = os.environ.get("RAY_ADDRESS")
    if env and address in (None, "auto"):
        where, address = "RAY_ADDRESS", env
    elif address:
        where = "address"
    else:
        return None
    target = _host_port(address, where)
    if target is not None:
        try:
            socket.create_connection(target, timeout=timeout).close()
        except OSError as err:
            raise ConfigError(f"{where}: cannot reach a Ray cluster at {address!r} within {timeout:g} s "
                              f"({err.strerror or type(err).__name__}); start one with `ray start --head`, or "
                              f"{'drop --address' if where == 'address' else 'unset RAY_ADDRESS'} to run on this "
                              "machine") from None  # fmt: skip
    return where, address


def connect(address: str | None = None, *, num_cpus: int | None = None) -> bool:
    """Start or join Ray (see the module docstring); returns whether this call started it (then the caller may
    ``ray.shutdown()`` it when done).

    Args:
        address: a cluster's ``HOST:PORT`` (or ``"auto"``, ``"local"``, ``"ray://HOST:10001"``); ``None``:
            ``RAY_ADDRESS`` if set, else a local Ray.
        num_cpus: CPUs of a local Ray (default: all of this machine's); ignored when joining a cluster.

    Raises:
        ImportError: Ray is not installed.
        ConfigError: the cluster's address is malformed or nothing answers there (:func:`check_cluster`), or
            ``ray.init`` cannot join it (Ray's message); it names ``address`` or ``RAY_ADDRESS``.
    """
    import ray

    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"include_dashboard": False, "logging_level": "warning"}
    cluster = check_cluster(address)
    if cluster is None:
        ray.init(num_cpus=num_cpus, **options)
        return True
    where, joined = cluster
    with warnings.catch_warnings(record=True) as said:  # Ray's warnings are given once it has joined, else dropped
        warnings.simplefilter("always")
        try:
            ray.init(address=address, **options)
        except (ValueError, ConnectionError, TimeoutError) as err:  # Ray's errors for a cluster it cannot join
            raise ConfigError(f"{where}: cannot join the Ray cluster at {joined!r}: {err}") from None
    for w in said:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return True


def call(target: Any, item: Any) -> Any:
    """``target(item)``: how a :class:`RayPool` runs an item by default."""
    return target(item)


class Job(NamedTuple):
    """One item of a batched evaluator, with the ``batch`` argument of its ``evaluate`` (``None``: none)."""

    item: Any
    batch: Any = None

    def __str__(self) -> str:
        return str(self.item) if self.batch is None else f"{self.item} (batch {self.batch!r})"


def evaluate_one(target: Any, job: Job) -> float:
    """``target.evaluate([item])[0]`` (``target.evaluate([item], batch)[0]`` when ``batch`` is not ``None``) as a
    float: one item through nat-gym's batched evaluator protocol."""
    item, batch = job
    values = target.evaluate([item]) if batch is None else target.evaluate([item], batch)
    return float(np.asarray(values)[0])


class _Worker:
    """The actor: builds its target once, then runs items one at a time."""

    def __init__(self, factory: Callable[[], Any], runner: Callable[[Any, Any], Any]) -> None:
        self.target = factory()
        self.runner = runner

    def pid(self) -> int:
        return os.getpid()

    def run(self, item: Any) -> Any:
        return self.runner(self.target, item)


@dataclass
class _Task:
    item: Any
    slot: int
    attempt: int
    started: float | None  # when its time limit started counting: None while its (new) worker starts up


class RayPool:
    """``workers`` Ray actors running ``runner(factory(), item)`` for many items, results as they finish.

    Args:
        factory: builds the thing each worker calls (called once per actor, on the worker; must be picklable:
            a class, a ``functools.partial``, a top-level function, a lambda (Ray pickles with cloudpickle)).
        workers: actors (default: the CPUs of the Ray cluster divided by ``cpus_per_worker``).
        runner: ``runner(target, item) -> result`` (default :func:`call`, i.e. ``target(item)``; :func:`evaluate_one`
            for a batched evaluator).
        address, num_cpus: where Ray runs (:func:`connect`).
        cpus_per_worker: CPUs Ray reserves per actor (1: one block training per core).
        timeout: seconds one evaluation may take before its worker is killed and the item retried (``None``: no
            limit).
        max_retries: retries of an item whose worker died or timed out, before the error is raised.

    Attributes:
        retried: items resubmitted after a fault. replaced: actors replaced. completed: items yielded.

    Raises:
        ConfigError: an argument out of range, or a cluster address that is malformed or unreachable
            (:func:`connect`). ImportError: Ray is not installed.
    """

    def __init__(self, factory: Callable[[], Any], *, workers: int | None = None,
                 runner: Callable[[Any, Any], Any] = call, address: str | None = None, num_cpus: int | None = None,
                 cpus_per_worker: float = 1, timeout: float | None = None, max_retries: int = 2) -> None:  # fmt: skip
        if not callable(factory):
            raise ConfigError(f"factory: expected a callable that builds the evaluator, got {type(factory).__name__}")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ConfigError(f"workers: expected an integer >= 1, got {workers!r}")
        if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ConfigError(f"timeout: expected a positive number of seconds or None, got {timeout!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigError(f"max_retries: expected an integer >= 0, got {max_retries!r}")
        if not cpus_per_worker > 0:
            raise ConfigError(f"cpus_per_worker: expected a positive number, got {cpus_per_worker!r}")
        import ray

        self._owns_ray = connect(address, num_cpus=num_cpus)
        cpus = float(ray.cluster_resources().get("CPU", 1))
        if workers is None:
            workers = max(1, int(cpus // cpus_per_worker))
        elif workers * cpus_per_worker > cpus and self._owns_ray:
            ray.shutdown()
            raise ConfigError(f"workers: {workers} workers x {cpus_per_worker} CPU do not fit the local Ray's "
                              f"{cpus:g} CPUs: at most {int(cpus // cpus_per_worker)} fit, more on a cluster (address)")
        elif workers * cpus_per_worker > cpus:
            warnings.warn(f"workers: {workers} workers x {cpus_per_worker} CPU but the Ray cluster has {cpus:g} CPUs; "
                          "the extra workers wait until the cluster grows", RuntimeWarning, stacklevel=2)  # fmt: skip
        self.workers, self.timeout, self.max_retries = workers, timeout, max_retries
        self._actor_class = ray.remote(num_cpus=cpus_per_worker, max_restarts=0)(_Worker)
        self._factory, self._runner = factory, runner
        self._actors = [self._spawn() for _ in range(workers)]
        self._pids: list[Any] = [a.pid.remote() for a in self._actors]
        self._up = [True] * workers  # once pids() below returns
        try:
            self.pids()  # the workers are up and built their evaluators (a factory's error is raised here, once)
        except ray.exceptions.RayActorError as err:
            self.close()
            raise EvaluationError(f"factory: the workers could not build what they evaluate with: {err}") from None
        self._running: dict[Any, _Task] = {}  # ObjectRef -> task
        self.retried = self.replaced = self.completed = 0

    def _spawn(self) -> Any:
        return self._actor_class.remote(self._factory, self._runner)

    def _replace(self, slot: int, *, kill: bool) -> None:
        import ray

        if kill:
            ray.kill(self._actors[slot], no_restart=True)
        self._actors[slot] = self._spawn()
        self._pids[slot] = self._actors[slot].pid.remote()
        self._up[slot] = False
        self.replaced += 1

    def pids(self) -> list[int]:
        """The process id of each worker (waits for the workers to start)."""
        import ray

        return [int(p) for p in ray.get(list(self._pids))]

    def in_flight(self) -> dict[int, Any]:
        """``{worker pid: item it is evaluating}`` right now."""
        pids = self.pids()
        return {pids[t.slot]: t.item for t in list(self._running.values())}

    def imap_unordered(self, items: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        """Evaluate every item; yield ``(item, result)`` as each finishes (any order; one per item, duplicates
        included). See the module docstring for faults and time limits.

        Raises:
            WorkerLost, EvaluationTimeout: an item failed ``max_retries + 1`` times.
        """
        import ray

        if not self._actors:
            raise ConfigError("pool: this RayPool was closed; make a new one")
        queue: collections.deque[tuple[Any, int]] = collections.deque((item, 0) for item in items)
        idle = [s for s in range(len(self._actors)) if s not in {t.slot for t in self._running.values()}]
        try:
            while queue or self._running:
                while queue and idle:
                    item, attempt = queue.popleft()
                    slot = idle.pop(0)
                    started = time.monotonic() if self._up[slot] else None
                    self._running[self._actors[slot].run.remote(item)] = _Task(item, slot, attempt, started)
                ready, _ = ray.wait(list(self._running), num_returns=1, timeout=self._poll())
                for ref in ready:
                    task = self._running.pop(ref)
                    try:
                        result = ray.get(ref)
                    except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                            ray.exceptions.OutOfMemoryError, ray.exceptions.ObjectLostError) as err:  # fmt: skip
                        self._replace(task.slot, kill=False)
                        idle.append(task.slot)
                        self._retry(queue, task, WorkerLost, f"its worker died ({type(err).__name__})")
                        continue
                    except ray.exceptions.RayTaskError as err:  # nat-gym's own errors read as they do in a process
                        if isinstance(err.cause, NatGymError):
                            raise err.cause from None
                        raise
                    idle.append(task.slot)
                    self.completed += 1
                    yield task.item, result
                if self.timeout is not None:
                    now = time.monotonic()
                    for ref, task in list(self._running.items()):
                        if task.started is None:  # a replacement worker: the clock starts once it is up
                            if ray.wait([self._pids[task.slot]], timeout=0)[0]:
                                self._up[task.slot], task.started = True, now
                            continue
                        if now - task.started > self.timeout:
                            del self._running[ref]
                            self._replace(task.slot, kill=True)
                            idle.append(task.slot)
                            self._retry(queue, task, EvaluationTimeout, f"it ran past timeout={self.timeout:g} s")
        finally:
            for task in list(self._running.values()):  # abandoned (an error, or the consumer stopped reading)
                self._replace(task.slot, kill=True)
            self._running.clear()

    def _poll(self) -> float | None:
        if self.timeout is None or not self._running:
            return None
        if any(t.started is None for t in self._running.values()):
            return 0.2  # look again soon whether a new worker is up
        oldest = min(t.started for t in self._running.values())
        return max(0.0, oldest + self.timeout - time.monotonic()) + 0.01

    def _retry(self, queue: collections.deque, task: _Task, error: type[Exception], why: str) -> None:
        if task.attempt >= self.max_retries:
            raise error(f"evaluation of {str(task.item)}: {why} on {task.attempt + 1} attempt(s) (max_retries="
                        f"{self.max_retries}); completed evaluations are kept")  # fmt: skip
        self.retried += 1
        queue.appendleft((task.item, task.attempt + 1))

    def close(self) -> None:
        """Stop the workers (and Ray, if this pool started it)."""
        try:
            import ray
        except ImportError:  # interpreter shutdown
            return
        if not ray.is_initialized():
            return
        for actor in self._actors:
            ray.kill(actor, no_restart=True)
        self._actors, self._running = [], {}
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RayEvaluator:
    """nat-gym's evaluator protocol (``evaluate(items) -> values``) over a :class:`RayPool` of ``factory()``
    evaluators; serially in this process when Ray is not installed (one ``RuntimeWarning``).

    Equal items are evaluated once per call; results are those of the wrapped evaluator, whatever the worker and
    the order of completion (the evaluators are deterministic). ``version`` and ``num_batches`` are the wrapped
    evaluator's when it has them (read from one local ``factory()`` object, built on first use).

    Args:
        factory: builds the evaluator (an object with ``evaluate(list) -> values``), once per worker.
        workers, address, num_cpus, cpus_per_worker, timeout, max_retries: see :class:`RayPool`.

    Shapes:
        - :meth:`evaluate`: ``N`` items -> ``[N]`` float64
    """

    def __init__(self, factory: Callable[[], Any], *, workers: int | None = None, address: str | None = None,
                 num_cpus: int | None = None, cpus_per_worker: float = 1, timeout: float | None = None,
                 max_retries: int = 2) -> None:  # fmt: skip
        self.factory = factory
        self.pool: RayPool | None = None
        self._local: Any = None
        if ray_available():
            self.pool = RayPool(factory, workers=workers, runner=evaluate_one, address=address, num_cpus=num_cpus,
                                cpus_per_worker=cpus_per_worker, timeout=timeout, max_retries=max_retries)  # fmt: skip
        else:
            warnings.warn(RAY_MISSING, RuntimeWarning, stacklevel=2)

    @property
    def local(self) -> Any:
        """One evaluator built in this process (the serial fallback; ``version`` and ``num_batches``)."""
        if self._local is None:
            self._local = self.factory()
        return self._local

    @property
    def version(self) -> str:
        return str(getattr(self.local, "version", "ray-evaluator"))

    @property
    def num_batches(self) -> int:
        return int(getattr(self.local, "num_batches", 1))

    def as_completed(self, items: Iterable[Any], batch: Any = None) -> Iterator[tuple[Any, float]]:
        """Yield ``(item, value)`` for each distinct item as its evaluation finishes (any order); ``batch`` is
        passed on to the wrapped ``evaluate`` when given (e.g. the supernet evaluator's minibatch)."""
        jobs = [Job(item, batch) for item in dict.fromkeys(items)]
        if self.pool is None:
            for job in jobs:
                yield job[0], evaluate_one(self.local, job)
            return
        for (item, _), value in self.pool.imap_unordered(jobs):
            yield item, value

    def evaluate(self, items: Sequence[Any], batch: Any = None) -> np.ndarray:
        """The value of each item, in the order of ``items``."""
        items = list(items)
        values = dict(self.as_completed(items, batch))
        return np.array([values[item] for item in items], dtype=np.float64)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
