"""The Ray-backed evaluator (issue 12 items 1-3) on a local Ray with 2 CPUs: asynchronous results tagged with their
architecture and equal to the serial ones, a worker killed by its pid mid-evaluation retried with nothing lost, the
persistent cache holding exactly the completed evaluations, a time limit per evaluation, the serial fallback, and
BlockQNN searching with Ray workers exactly as serially."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from nat_gym.block_evaluator import DatasetSpec, EarlyStopEvaluator, EarlyStopRecipe
from nat_gym.blocks import Block, named
from nat_gym.errors import ConfigError, EvaluationTimeout, WorkerLost
from nat_gym.eval_cache import EvalCache
from nat_gym.evaluator import CallableEvaluator
from nat_gym.sampling import random_genotype

ray = pytest.importorskip("ray")

from nat_gym.distributed import RAY_MISSING, RayEvaluator, RayPool  # noqa: E402
from nat_gym.distributed import ray_evaluator as ray_evaluator_module  # noqa: E402

pytestmark = pytest.mark.slow
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module

FAKE = DatasetSpec("fake", 0, (("n_train", 64), ("n_valid", 32), ("n_test", 16)))
TINY = EarlyStopRecipe(C=2, N=1, epochs=1, batch_size=32, lr=0.01)
# long enough (about a second per block on a loaded machine) to kill a worker while it trains
SLOWER = DatasetSpec("fake", 0, (("n_train", 1024), ("n_valid", 32), ("n_test", 16)))
BLOCKS = [named.get("ResNet"), Block.parse("max3:0,avg1:1"), Block.parse("identity:0,add:1:0"), Block(),
          Block.parse("conv1:0,conv3:0,concat:2:1"), named.get("ResNet")]  # fmt: skip


@pytest.fixture(autouse=True)
def _ray(local_ray):
    """Every test here runs on the session's local Ray with 2 CPUs."""


def test_the_sessions_ray_streams_nothing_into_later_tests_stderr():
    """The session's Ray outlives its modules: what its processes print (here a task's stderr; on CI the raylet's
    "over 95% full" disk warning) must not reach this process's ``sys.stderr``, where a later test that captures it
    asserts that a command printed nothing (CI failed so, in tests/test_hints.py)."""
    import contextlib
    import io

    @ray.remote
    def shout() -> int:
        print("a worker's line", file=sys.stderr, flush=True)
        return os.getpid()

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        ray.get(shout.remote())
        time.sleep(2.0)  # Ray's log monitor forwards a worker's output within about a second
    assert "a worker's line" not in err.getvalue()


def _proxy(genotype) -> float:
    return sum(map(ord, str(genotype))) / 1000.0


def _kill_when_busy(pool_of, after: float = 0.3) -> tuple[threading.Thread, dict]:
    """A thread that SIGKILLs the first worker found evaluating an item for ``after`` seconds; ``killed`` holds the
    pid and the item."""
    killed: dict = {}

    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pool = pool_of()
            busy = pool.in_flight() if pool is not None else {}
            if busy:
                time.sleep(after)
                still = [(pid, item) for pid, item in pool.in_flight().items() if busy.get(pid) == item]
                if still:  # the same evaluation on the same worker for `after` seconds: mid-task
                    pid, item = still[0]
                    os.kill(pid, signal.SIGKILL)
                    killed.update(pid=pid, item=item)
                    return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread, killed


def test_async_results_are_tagged_and_equal_the_serial_evaluator():
    rng = np.random.default_rng(0)
    genotypes = [random_genotype(rng, 4, ["sep_conv_3x3", "max_pool_3x3", "skip_connect"]) for _ in range(12)]
    genotypes.append(genotypes[0])  # a duplicate: evaluated once, reported for both
    serial = CallableEvaluator(_proxy).evaluate(genotypes)
    ev = RayEvaluator(partial(CallableEvaluator, _proxy), workers=2)
    try:
        assert ev.version == "callable:0" and ev.num_batches == 1
        tagged = list(ev.as_completed(genotypes))
        assert sorted(str(g) for g, _ in tagged) == sorted({str(g) for g in genotypes})
        assert all(value == _proxy(g) for g, value in tagged)  # each value belongs to its architecture
        np.testing.assert_array_equal(ev.evaluate(genotypes), serial)
        assert len(set(ev.pool.pids())) == 2
    finally:
        ev.close()


def test_block_evaluator_on_ray_equals_serial_and_caches_each_block_once(tmp_path):
    serial = EarlyStopEvaluator(FAKE, TINY, cache=None).measure(BLOCKS)
    ev = EarlyStopEvaluator(FAKE, TINY, cache=tmp_path / "c.sqlite", executor="ray", workers=2)
    try:
        out = ev.measure(BLOCKS)
    finally:
        ev.close()
    assert [m.accuracy for m in out] == [m.accuracy for m in serial]
    assert [m.reward for m in out] == [m.reward for m in serial]
    assert len(EvalCache(tmp_path / "c.sqlite")) == len(set(BLOCKS)) == 5


def test_killed_worker_is_retried_and_nothing_is_lost(tmp_path):
    serial = EarlyStopEvaluator(SLOWER, TINY, cache=None).measure(BLOCKS)
    ev = EarlyStopEvaluator(SLOWER, TINY, cache=tmp_path / "c.sqlite", executor="ray", workers=2)
    try:
        thread, killed = _kill_when_busy(lambda: ev._ray_pool)
        out = ev.measure(BLOCKS)
        thread.join()
        pool = ev.ray_pool
        assert killed and killed["pid"] not in pool.pids()  # the killed worker was replaced
        assert pool.retried >= 1 and pool.replaced >= 1
    finally:
        ev.close()
    assert [m.accuracy for m in out] == [m.accuracy for m in serial]
    rows = EvalCache(tmp_path / "c.sqlite").rows()
    assert sorted(r["subject"] for r in rows) == sorted({str(b.canonical()) for b in BLOCKS})


def test_cache_holds_exactly_the_completed_evaluations_when_retries_run_out(tmp_path):
    ev = EarlyStopEvaluator(SLOWER, TINY, cache=tmp_path / "c.sqlite", executor="ray", workers=2, max_retries=0)
    try:
        thread, killed = _kill_when_busy(lambda: ev._ray_pool)
        with pytest.raises(WorkerLost, match="max_retries=0"):
            ev.measure(BLOCKS)
        thread.join()
        cache = EvalCache(tmp_path / "c.sqlite")
        subjects = {r["subject"] for r in cache.rows()}
        assert len(subjects) == len(cache) == ev.ray_pool.completed  # every completed training, nothing else
        assert str(killed["item"].canonical()) not in subjects
        # the pool is usable afterwards: no dead or busy actor left behind
        assert ev.measure([killed["item"]])[0].source == "trained"
        assert len(cache) == len(subjects) + 1
    finally:
        ev.close()


def test_timeout_per_evaluation_kills_and_reports_the_item():
    def factory():
        class Sleepy:
            def evaluate(self, xs):
                time.sleep(xs[0])
                return [float(xs[0])]

        return Sleepy()

    ev = RayEvaluator(factory, workers=2, timeout=2.0, max_retries=1)
    try:
        start = time.monotonic()
        with pytest.raises(EvaluationTimeout, match=r"evaluation of 60.*2 attempt"):
            ev.evaluate([0.0, 60.0, 0.1])
        assert time.monotonic() - start < 30  # never waits for the 60-second evaluation
        assert ev.pool.retried == 1 and ev.pool.replaced == 2
        np.testing.assert_array_equal(ev.evaluate([0.2, 0.0]), [0.2, 0.0])  # fresh workers took over
    finally:
        ev.close()


def test_errors_of_the_evaluation_itself_are_raised_not_retried():
    ev = RayEvaluator(partial(CallableEvaluator, lambda g: float("nan")), workers=1)
    try:
        rng = np.random.default_rng(1)
        with pytest.raises(ConfigError, match="non-finite") as err:
            ev.evaluate([random_genotype(rng, 2, ["skip_connect"])])
        assert ev.pool.retried == 0
        # nat-gym's own error, one line as in a process (Ray's RayTaskError carried the worker's traceback)
        assert type(err.value) is ConfigError and "ray::" not in str(err.value) and "\n" not in str(err.value)
    finally:
        ev.close()


def test_arguments_and_serial_fallback(monkeypatch, tmp_path):
    for bad, match in (({"workers": 0}, "workers"), ({"timeout": -1}, "timeout"), ({"max_retries": -1}, "retries")):
        with pytest.raises(ConfigError, match=match):
            RayPool(_proxy, **bad)
    with pytest.raises(ConfigError, match="executor"):
        EarlyStopEvaluator(FAKE, TINY, cache=None, executor="threads")
    with pytest.raises(ConfigError, match="address"):
        EarlyStopEvaluator(FAKE, TINY, cache=None, executor="process", address="10.0.0.1:6379")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert EarlyStopEvaluator(FAKE, TINY, cache=None).executor == "process"
    monkeypatch.setattr(ray_evaluator_module, "ray_available", lambda: False)
    with pytest.warns(RuntimeWarning, match="Ray is not installed"):
        ev = RayEvaluator(partial(CallableEvaluator, _proxy), workers=2)
    rng = np.random.default_rng(2)
    g = random_genotype(rng, 2, ["skip_connect", "max_pool_3x3"])
    assert ev.pool is None and ev.evaluate([g, g]).tolist() == [_proxy(g)] * 2
    with pytest.warns(RuntimeWarning, match="Ray is not installed") as record:
        assert EarlyStopEvaluator(FAKE, TINY, cache=None, executor="ray", workers=2).executor == "process"
    assert len(record) == 1 and str(record[0].message) == RAY_MISSING
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        EarlyStopEvaluator(FAKE, TINY, cache=None, workers=2)  # no Ray asked for: no message
    assert Path(tmp_path).exists()


def test_cluster_addresses_are_checked_and_never_hang(closed_port):
    """A malformed address is one ConfigError naming it and the forms Ray takes; a HOST:PORT or ray://HOST:PORT where
    nothing listens is one within CONNECT_TIMEOUT (``ray.init`` retried the GCS for minutes, the Ray client for 30 s);
    an error of ``ray.init`` itself (the Ray client's, at a port that accepts connections but is no Ray client
    server) is one too, without Ray's warning. In a fresh process (connect() would use this module's Ray, already
    up), under a time limit: a hang fails the test."""
    import socket

    script = textwrap.dedent("""
        import sys
        from nat_gym.distributed import connect
        from nat_gym.errors import ConfigError
        for address in sys.argv[1:]:
            try:
                connect(address)
                print("joined", address)
            except ConfigError as e:
                print(e)
    """)  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S="1", RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S="1")  # 3 tries of 1 s
    where = f"127.0.0.1:{closed_port}"
    with socket.socket() as mute:  # accepts connections (the kernel's backlog), never answers
        mute.bind(("127.0.0.1", 0))
        mute.listen()
        silent = f"127.0.0.1:{mute.getsockname()[1]}"
        run = subprocess.run([sys.executable, "-c", script, "garbage", "head:6379x", where, f"ray://{where}",
                              f"ray://{silent}"], env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    forms = "expected HOST:PORT (the head's address, as `ray start --head` prints it), auto, local or ray://HOST:PORT"
    unreachable = "within 10 s (Connection refused); start one with `ray start --head`, or drop --address to run on " \
                  "this machine"  # fmt: skip
    assert run.stdout.splitlines() == [
        f"address: {forms}, got 'garbage'", f"address: {forms}, got 'head:6379x'",
        f"address: cannot reach a Ray cluster at '{where}' {unreachable}",
        f"address: cannot reach a Ray cluster at 'ray://{where}' {unreachable}",
        f"address: cannot join the Ray cluster at 'ray://{silent}': ray client connection timeout",
    ], run.stderr  # fmt: skip
    assert "Ray Client connection timed out" not in run.stderr  # Ray's warning for what the error says


def test_blockqnn_with_ray_workers_learns_what_the_serial_search_learns(tmp_path):
    """``nat-gym train --algo blockqnn --executor ray --workers 2`` against ``--workers 1``: the same Q-table, replay
    memory and metrics (blocks finish in any order on the workers; the replay order is the sampling order)."""
    from agents.blockqnn_trainer import load_trainer_checkpoint
    from agents.cli import main as cli_main

    flags = ["--dataset", "fake", "--channels", "2", "--train-epochs", "1", "--train-batch-size", "64",
             "--iterations", "10", "--blocks-per-iteration", "6", "--replay-batch", "6", "--max-index", "3",
             "--device", "cpu", "--no-progress"]  # fmt: skip
    for name, extra in (("serial", ["--workers", "1"]), ("ray", ["--workers", "2", "--executor", "ray"])):
        assert cli_main(["train", "--algo", "blockqnn", *flags, *extra, "--out", str(tmp_path / name),
                         "--cache", str(tmp_path / f"{name}.sqlite")]) == 0  # fmt: skip
    serial, on_ray = (load_trainer_checkpoint(tmp_path / n / "checkpoint.pt") for n in ("serial", "ray"))
    assert on_ray["q"] == serial["q"] and on_ray["replay"] == serial["replay"]
    assert on_ray["blocks"] == serial["blocks"]
    process = {"time", "sample_seconds", "eval_seconds", "train_seconds", "seconds_per_trained_block",
               "iteration_seconds"}  # fmt: skip
    assert [{k: v for k, v in r.items() if k not in process} for r in on_ray["history"]] == [
        {k: v for k, v in r.items() if k not in process} for r in serial["history"]]  # fmt: skip
    assert on_ray["args"]["executor"] == "ray"
    assert len(EvalCache(tmp_path / "ray.sqlite")) == len(EvalCache(tmp_path / "serial.sqlite"))
