"""BlockQNN's reward oracle: the guarded reward, deterministic early-stop training that never touches the test split,
the evaluators' deduplication and caches, and the SQLite cache under a killed process and two concurrent ones."""

from __future__ import annotations

import json
import math
import os
import runpy
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import nat_gym.block_evaluator as be
from nat_gym.block_evaluator import (
    CallableBlockEvaluator,
    DatasetSpec,
    EarlyStopEvaluator,
    EarlyStopRecipe,
    RewardConfig,
    block_reward,
    early_stop_train,
)
from nat_gym.blocks import Block, named
from nat_gym.blocks.cost import block_cost
from nat_gym.data import DatasetSplits, Split
from nat_gym.errors import BlockError, ConfigError
from nat_gym.eval_cache import EvalCache

ROOT = Path(__file__).resolve().parents[1]
FAKE = DatasetSpec("fake", 0, (("n_train", 64), ("n_valid", 32), ("n_test", 16)))
TINY = EarlyStopRecipe(C=2, N=1, epochs=1, batch_size=32, lr=0.01)
BLOCKS = [named.get("ResNet"), Block.parse("max3:0,avg1:1"), Block.parse("identity:0,add:1:0"), Block(),
          Block.parse("conv1:0,conv3:0,concat:2:1")]  # fmt: skip


# ------------------------------------------------------------------------------------------------ reward
def test_reward_hand_computed():
    r = block_reward(0.9, 200, 2.0, flops_ref=100, flops_floor=10, mu=0.01, rho=0.08)
    assert r == pytest.approx(0.9 - 0.01 * math.log(2) - 0.08 * math.log(2))
    # no multiply-add at all (pools of kernel 1, identities, adds): the floor, not log(0)
    r0 = block_reward(0.5, 0, 0.5, flops_ref=100, flops_floor=10, mu=1.0, rho=8.0)
    assert r0 == pytest.approx(0.5 - math.log(0.1) - 8 * math.log(0.5))
    for bad in ({"flops_ref": 0}, {"flops_floor": 0}):
        with pytest.raises(ConfigError):
            block_reward(0.5, 1, 1.0, **{"flops_ref": 1, "flops_floor": 1, "mu": 1, "rho": 1, **bad})
    with pytest.raises(ConfigError, match="density"):
        block_reward(0.5, 1, 0.0, flops_ref=1, flops_floor=1, mu=1, rho=1)


def test_evaluator_reward_uses_block_flops_against_the_reference():
    ev = CallableBlockEvaluator(lambda b: 0.75, C=8, input_size=8)
    ref = block_cost(named.get("ResNet"), 8, 8).madds
    assert ev.flops_ref == ref and ev.flops_floor == 8 * 8 * 8
    for m in ev.measure(BLOCKS):
        assert math.isfinite(m.reward) and m.accuracy == 0.75
        expected = 0.75 - 0.01 * math.log(max(m.block_flops, 512) / ref) - 0.08 * math.log(m.block.density)
        assert m.reward == pytest.approx(expected)
    assert ev.measure([named.get("ResNet")])[0].reward == pytest.approx(0.75)  # the reference at density 1
    with pytest.raises(BlockError):
        RewardConfig(reference="NoSuchBlock")


def test_measure_deduplicates_equal_blocks():
    calls = []
    ev = CallableBlockEvaluator(lambda b: calls.append(b) or 0.5)
    a, b = Block.parse("conv3:0,conv5:0"), Block.parse("conv5:0,conv3:0")  # equal: renumbered
    out = ev.measure([a, b, a, Block()])
    assert len(calls) == 2 and [m.source for m in out] == ["trained", "memory", "memory", "trained"]
    assert ev.measure([a])[0].source == "memory"
    assert ev.cache_info["trained"] == 2 and ev.cache_info["hit_rate"] == pytest.approx(1 - 2 / 5)
    np.testing.assert_array_equal(ev.evaluate([a, Block()]), [out[0].reward, out[3].reward])
    with pytest.raises(ConfigError, match="single Block"):
        ev.measure(a)
    with pytest.raises(ConfigError, match=r"blocks\[0\]"):
        ev.measure(["conv3:0"])
    with pytest.raises(ConfigError, match="non-finite"):
        CallableBlockEvaluator(lambda b: math.nan).measure([a])


# ------------------------------------------------------------------------------------------------ early stop
def test_early_stop_is_deterministic_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    first = early_stop_train(named.get("ResNet"), TINY, FAKE)
    assert torch.equal(torch.get_rng_state(), state)
    second = early_stop_train(named.get("ResNet"), TINY, FAKE)
    assert first["accuracy"] == second["accuracy"] and first["train_loss"] == second["train_loss"]
    assert 0.0 <= first["accuracy"] <= 1.0 and first["seconds"] > 0
    other = early_stop_train(named.get("ResNet"), replace(TINY, seed=1), FAKE)
    assert other["train_loss"] != first["train_loss"]  # the seed is part of the recipe


FINGERPRINT = textwrap.dedent(
    """
    import hashlib, json
    import torch
    import nat_gym.block_evaluator as be
    from nat_gym.blocks import Block

    SPEC, BLOCK = be.DatasetSpec("digits"), Block.parse("conv3:0,max3:0,concat:2:1")
    RECIPE = be.EarlyStopRecipe(C=4, N=1, epochs=2, batch_size=64, lr=0.01, lr_step=1, seed=3)

    def fingerprint():
        '''A longer training's numbers and trained weights (as the evidence script calls it), and the search
        evaluator's cache key and accuracy.'''
        nets = []

        class Recorded(be.BlockNetwork):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                nets.append(self)

        be.BlockNetwork = Recorded
        try:
            out = be.early_stop_train(BLOCK, RECIPE, SPEC, report_test=True)
        finally:
            be.BlockNetwork = Recorded.__base__
        weights = hashlib.sha256()
        for name, value in nets[0].state_dict().items():
            weights.update(name.encode() + value.contiguous().numpy().tobytes())
        evaluator = be.EarlyStopEvaluator(SPEC, RECIPE, cache=None)
        m = evaluator.measure([BLOCK])[0]
        return {"train": [out["accuracy"], out["test_accuracy"], out["train_loss"]], "weights": weights.hexdigest(),
                "evaluator": [evaluator.key(BLOCK), m.accuracy, m.reward]}

    if __name__ == "__main__":
        torch.set_num_threads(1)
        print(json.dumps(fingerprint()))
    """
)


@pytest.mark.slow
def test_early_stop_is_bit_identical_between_invocations(tmp_path):
    """The README's promise "seeds that reproduce": the same recipe (seed included) gives the same trained weights,
    accuracies and loss in a fresh process (another hash seed) as in this one after an unrelated training and other
    draws from the global RNGs; so does the search evaluator, under the same cache key. (One CPU thread in both: a
    different thread count sums in another order and trains other weights.)"""
    script = tmp_path / "fingerprint.py"
    script.write_text(FINGERPRINT)
    env = {**os.environ, "PYTHONHASHSEED": "1"}
    proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    fresh = json.loads(proc.stdout.strip().splitlines()[-1])

    torch.manual_seed(123)
    np.random.seed(123)
    early_stop_train(named.get("ResNet"), replace(TINY, seed=7), FAKE)  # state an earlier training could leave
    torch.rand(3)
    here = runpy.run_path(str(script))["fingerprint"]()
    assert here == fresh
    assert 0.0 < fresh["train"][0] <= 1.0 and fresh["evaluator"][1] == fresh["train"][0]


def test_early_stop_never_reads_the_test_split(monkeypatch):
    """Poison the test images: training and scoring would turn NaN if they were ever read."""
    data = FAKE.load()
    poisoned = DatasetSplits(data.name, data.train, data.valid, Split(torch.full_like(data.test.x, math.nan),
                             data.test.y), data.num_classes, data.in_channels, data.image_size)  # fmt: skip
    clean = early_stop_train(named.get("ResNet"), TINY, FAKE)
    monkeypatch.setattr(be, "_load", lambda spec: poisoned)
    dirty = early_stop_train(named.get("ResNet"), TINY, FAKE)
    assert dirty["accuracy"] == clean["accuracy"] and math.isfinite(dirty["train_loss"])
    assert "test_accuracy" not in dirty  # only a final report asks for it
    twin = DatasetSplits(data.name, data.train, data.valid, data.valid, data.num_classes, data.in_channels,
                         data.image_size)  # fmt: skip
    monkeypatch.setattr(be, "_load", lambda spec: twin)
    report = early_stop_train(named.get("ResNet"), TINY, FAKE, report_test=True)
    assert report["test_accuracy"] == report["accuracy"] == clean["accuracy"]


def test_recipe_and_dataset_validation():
    with pytest.raises(ConfigError, match="recipe.epochs"):
        EarlyStopRecipe(epochs=0)
    with pytest.raises(ConfigError, match="recipe.lr"):
        EarlyStopRecipe(lr=-1.0)
    with pytest.raises(ConfigError, match="dataset"):
        DatasetSpec("mnist")
    with pytest.raises(ConfigError, match="unknown keys"):
        EarlyStopRecipe.from_dict({"epochs": 1, "momentum": 0.9})
    assert EarlyStopRecipe.from_dict(TINY.to_dict()) == TINY


# ------------------------------------------------------------------------------------------------ persistent cache
def test_cache_is_persistent_and_keyed_by_recipe_and_dataset(tmp_path):
    path = tmp_path / "cache.sqlite"
    first = EarlyStopEvaluator(FAKE, TINY, cache=path)
    accs = [m.accuracy for m in first.measure(BLOCKS)]
    assert first.trained == len(BLOCKS) and len(EvalCache(path)) == len(BLOCKS)
    second = EarlyStopEvaluator(FAKE, TINY, cache=str(path))  # another run: nothing is trained again
    again = second.measure(list(reversed(BLOCKS)))
    assert second.trained == 0 and second.cache_hits == len(BLOCKS)
    assert [m.accuracy for m in reversed(again)] == accs and {m.source for m in again} == {"cache"}
    other = EarlyStopEvaluator(FAKE, replace(TINY, epochs=2), cache=path)
    other.measure(BLOCKS[:1])
    assert other.trained == 1 and len(EvalCache(path)) == len(BLOCKS) + 1
    row = EvalCache(path).rows(be.CACHE_KIND)[0]
    assert row["recipe"] == TINY.to_dict() and row["dataset"] == FAKE.to_dict()
    assert Block.parse(row["subject"]) == BLOCKS[0]


def test_eval_cache_basics(tmp_path):
    cache = EvalCache(tmp_path / "c" / "x.sqlite")
    assert cache.put("k", {"accuracy": 0.5}) is True
    assert cache.put("k", {"accuracy": 0.9}) is False  # the first record is kept
    assert cache.get("k") == {"accuracy": 0.5} and cache.get("missing") is None
    assert "k" in cache and len(cache) == 1
    import pickle

    clone = pickle.loads(pickle.dumps(cache))  # a worker process gets its own connection
    assert clone.get("k") == {"accuracy": 0.5}
    with pytest.raises(ConfigError, match="folder"):
        EvalCache(tmp_path)


def test_eval_cache_that_cannot_be_opened_is_a_config_error(tmp_path):
    """A file in the way, a file that is not a database or a read-only folder: one ConfigError naming the cache (they
    were raw FileExistsError / sqlite3.DatabaseError / OperationalError tracebacks)."""
    (tmp_path / "file").write_text("")
    (tmp_path / "text.sqlite").write_text("not a database " * 100)
    bad = [tmp_path / "file" / "x.sqlite", tmp_path / "text.sqlite"]
    if os.geteuid() != 0:  # root writes anywhere
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o555)
        bad.append(tmp_path / "ro" / "x.sqlite")
    for path in bad:
        with pytest.raises(ConfigError, match=r"^cache: cannot use .*--cache none\)$"):
            EvalCache(path)


@pytest.mark.slow
def test_workers_give_the_same_results(tmp_path):
    serial = EarlyStopEvaluator(FAKE, TINY, cache=None).measure(BLOCKS)
    pooled = EarlyStopEvaluator(FAKE, TINY, cache=tmp_path / "c.sqlite", workers=2)
    try:
        out = pooled.measure(BLOCKS)
    finally:
        pooled.close()
    assert [m.accuracy for m in out] == [m.accuracy for m in serial]
    assert len(EvalCache(tmp_path / "c.sqlite")) == len(BLOCKS)


WORKER = textwrap.dedent(
    """
    import itertools, json, sys
    from nat_gym.block_evaluator import DatasetSpec, EarlyStopEvaluator, EarlyStopRecipe
    from nat_gym.blocks import Block, action_to_layer

    cache, count, order = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    blocks = []
    for actions in itertools.product(range(1, 9), range(1, 19), range(1, 31)):  # distinct 3-layer blocks
        b = Block([action_to_layer(t, a) for t, a in enumerate(actions)])
        if b not in blocks:
            blocks.append(b)
        if len(blocks) == count:
            break
    if order == "reverse":
        blocks.reverse()
    spec = DatasetSpec("fake", 0, (("n_train", 64), ("n_valid", 32), ("n_test", 16)))
    ev = EarlyStopEvaluator(spec, EarlyStopRecipe(C=2, N=1, epochs=1, batch_size=32, lr=0.01), cache=cache)
    out = {}
    for b in blocks:  # one at a time: rows appear while the process runs
        out[str(b.canonical())] = ev.measure([b])[0].accuracy
    print(json.dumps(out))
    """
)


def _start(tmp_path: Path, cache: Path, count: int, order: str = "forward") -> subprocess.Popen:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    return subprocess.Popen([sys.executable, str(script), str(cache), str(count), order], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _rows(cache: Path) -> int:
    if not cache.exists():
        return 0
    try:
        with sqlite3.connect(cache, timeout=30) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0])
    except sqlite3.OperationalError:  # the schema is not created yet
        return 0


def _integrity(cache: Path) -> str:
    with sqlite3.connect(cache) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


@pytest.mark.slow
def test_cache_survives_a_killed_process(tmp_path):
    cache = tmp_path / "cache.sqlite"
    proc = _start(tmp_path, cache, 400)
    deadline = time.monotonic() + 240
    while _rows(cache) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.kill()  # SIGKILL mid-run: no cleanup code runs
    proc.wait()
    stored = _rows(cache)
    assert 3 <= stored < 400, proc.stderr.read()[-2000:]
    assert _integrity(cache) == "ok"
    rows = EvalCache(cache).rows()
    assert len(rows) == stored
    # a second run never trains a finished block again, and gets the same numbers back
    ev = EarlyStopEvaluator(FAKE, TINY, cache=cache)
    got = ev.measure([Block.parse(r["subject"]) for r in rows])
    assert ev.trained == 0 and [m.accuracy for m in got] == [r["record"]["accuracy"] for r in rows]
    fresh = early_stop_train(Block.parse(rows[0]["subject"]), TINY, FAKE)
    assert fresh["accuracy"] == rows[0]["record"]["accuracy"]


@pytest.mark.slow
def test_two_processes_share_the_cache(tmp_path):
    cache = tmp_path / "cache.sqlite"
    procs = [_start(tmp_path, cache, 16, order) for order in ("forward", "reverse")]
    outs = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-2000:]
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    assert outs[0] == outs[1] and len(outs[0]) == 16  # both processes see the same accuracy for every block
    assert _integrity(cache) == "ok"
    rows = EvalCache(cache).rows()
    assert len(rows) == 16 and len({r["key"] for r in rows}) == 16
    assert {r["subject"]: r["record"]["accuracy"] for r in rows} == outs[0]
