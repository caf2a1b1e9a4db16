"""The reward oracle: SupernetEvaluator (batched == single, deterministic, cached, minibatches) and
CallableEvaluator."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from nat_gym import genotypes as named
from nat_gym.data import Split
from nat_gym.errors import ConfigError
from nat_gym.evaluator import CallableEvaluator, Evaluator, ParallelChoice, SupernetEvaluator
from nat_gym.ops import NAT_PLUS_PLUS_OPS
from nat_gym.sampling import random_genotype
from nat_gym.supernet.checkpoint import load_checkpoint, save_checkpoint
from nat_gym.supernet.config import SupernetTrainConfig
from nat_gym.supernet.train import SupernetTrainer

SAMPLE_OPS = [o for o in NAT_PLUS_PLUS_OPS if o != "null"]


def _genotypes(n: int, seed: int = 0, concat: str = "all") -> list:
    rng = np.random.default_rng(seed)
    return [random_genotype(rng, 4, SAMPLE_OPS, concat=concat) for _ in range(n)]


def _manual_accuracy(net, x, y, g) -> float:
    with torch.no_grad():
        return float((net(x, g).argmax(-1) == y).float().mean())


# ------------------------------------------------------------------------------------------------- SupernetEvaluator
@pytest.mark.parametrize("grouped, workers", [(True, 1), (False, 2), (False, 1)],
                         ids=["grouped-passes", "parallel-workers", "one-worker"])  # fmt: skip
def test_batched_and_single_agree(shared_tiny_supernet, fake_data, grouped, workers):
    net = shared_tiny_supernet
    gs = _genotypes(16) + _genotypes(4, seed=1, concat="loose_end")
    batched = SupernetEvaluator(net, fake_data.valid, device="cpu", max_archs_per_pass=8, workers=workers,
                                grouped=grouped)  # fmt: skip
    single = SupernetEvaluator(net, fake_data.valid, device="cpu", max_archs_per_pass=1, workers=1,
                               activation_cache=False)  # fmt: skip
    a = batched.evaluate(gs)
    b = np.concatenate([single.evaluate([g]) for g in gs])
    assert a.shape == (20,) and a.dtype == np.float64
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)
    assert ((a >= 0) & (a <= 1)).all() and len(set(a.tolist())) > 1
    assert batched.cache_info["evaluations"] == single.cache_info["evaluations"] == 20
    if workers > 1:  # 3 chunks of 8: the first two are scored each way, so both ways agree with single passes
        assert min(batched.parallel_choice.chunks.values()) >= 1


def test_accuracy_is_that_of_the_supernet(shared_tiny_supernet, fake_data):
    net = shared_tiny_supernet
    g = named.get("DARTS_V2")
    ev = SupernetEvaluator(net, fake_data.valid, device="cpu")
    expected = _manual_accuracy(net, fake_data.valid.x, fake_data.valid.y, g)
    assert ev.evaluate([g])[0] == pytest.approx(expected, abs=1e-9)


def test_deterministic_across_instances(shared_tiny_supernet, fake_data):
    net = shared_tiny_supernet
    gs = _genotypes(6, seed=3)
    one = SupernetEvaluator(net, fake_data.valid, device="cpu").evaluate(gs)
    two = SupernetEvaluator(net, fake_data.valid, device="cpu").evaluate(list(reversed(gs)))
    np.testing.assert_array_equal(one, two[::-1])


def test_cache_hits_do_not_run_the_supernet(shared_tiny_supernet, fake_data):
    net = shared_tiny_supernet
    gs = _genotypes(5, seed=4)
    ev = SupernetEvaluator(net, fake_data.valid, device="cpu")
    first = ev.evaluate(gs)
    info = ev.cache_info
    assert info["evaluations"] == 5 and info["size"] == 5
    again = ev.evaluate(gs + gs[:2])
    np.testing.assert_array_equal(again, np.concatenate([first, first[:2]]))
    assert ev.cache_info["evaluations"] == 5
    assert ev.cache_info["hits"] >= 7
    # duplicates inside one call are run once
    ev2 = SupernetEvaluator(net, fake_data.valid, device="cpu")
    dup = ev2.evaluate([gs[0], gs[0], gs[1], gs[0]])
    assert ev2.cache_info["evaluations"] == 2
    assert dup[0] == dup[1] == dup[3] == first[0] and dup[2] == first[1]


def test_weight_change_invalidates(tiny_supernet, fake_data):
    gs = _genotypes(3, seed=5)
    ev = SupernetEvaluator(tiny_supernet, fake_data.valid, device="cpu")
    before = ev.evaluate(gs)
    v = ev.version
    with torch.no_grad():
        for p in tiny_supernet.parameters():
            p.mul_(-1.5)
    tiny_supernet.bump_version()
    assert ev.version != v
    after = ev.evaluate(gs)
    assert ev.cache_info["evaluations"] == 6
    expected = [_manual_accuracy(tiny_supernet, fake_data.valid.x, fake_data.valid.y, g) for g in gs]
    np.testing.assert_allclose(after, expected, atol=1e-9)
    assert before.shape == after.shape


def test_minibatches(shared_tiny_supernet, fake_data):
    net = shared_tiny_supernet
    split = fake_data.valid  # 32 images -> minibatches of 10, 10, 10, 2
    ev = SupernetEvaluator(net, split, batch_size=10, device="cpu")
    assert ev.num_batches == 4 and ev.num_images == 32
    gs = _genotypes(3, seed=6)
    per_batch = []
    for k in range(4):
        acc = ev.evaluate(gs, batch=k)
        sl = slice(10 * k, 10 * k + 10)
        expected = [_manual_accuracy(net, split.x[sl], split.y[sl], g) for g in gs]
        np.testing.assert_allclose(acc, expected, atol=1e-9)
        per_batch.append(acc)
    evaluations = ev.cache_info["evaluations"]
    whole = ev.evaluate(gs, batch=None)
    assert ev.cache_info["evaluations"] == evaluations  # the per-batch results are reused
    sizes = np.array([10, 10, 10, 2])
    np.testing.assert_allclose(whole, (np.stack(per_batch) * sizes[:, None]).sum(0) / 32, atol=1e-12)
    assert ev.evaluate(gs, batch=np.int64(2)).tolist() == per_batch[2].tolist()


def test_accuracies_are_exact_fractions(shared_tiny_supernet, fake_data):
    """An accuracy is a count over the minibatch size: exact in float64 (not a float32 mean), so sums of
    accuracies times sizes are integers and rewards carry no float32 rounding noise."""
    net = shared_tiny_supernet
    ev = SupernetEvaluator(net, fake_data.valid, batch_size=10, device="cpu")  # sizes 10, 10, 10, 2
    gs = _genotypes(12, seed=12)
    for k in range(ev.num_batches):
        size = 2 if k == 3 else 10
        acc = ev.evaluate(gs, batch=k)
        expected = [
            int(
                (
                    net(fake_data.valid.x[10 * k : 10 * k + 10], g).argmax(-1)
                    == fake_data.valid.y[10 * k : 10 * k + 10]
                ).sum()
            )
            / size
            for g in gs
        ]
        assert acc.tolist() == expected
    whole = ev.evaluate(gs)
    np.testing.assert_allclose(whole * 32, np.round(whole * 32), rtol=0, atol=1e-9)


def test_batch_size_larger_than_split_is_one_batch(shared_tiny_supernet, fake_data):
    net = shared_tiny_supernet
    ev = SupernetEvaluator(net, fake_data.valid, batch_size=1000, device="cpu")
    assert ev.num_batches == 1 and ev.batch_size == len(fake_data.valid)


@pytest.mark.parametrize("batch", [-1, 4, 1.0, True, "0", [0]])
def test_bad_batch_raises(shared_tiny_supernet, fake_data, batch):
    net = shared_tiny_supernet
    ev = SupernetEvaluator(net, fake_data.valid, batch_size=10, device="cpu")
    with pytest.raises(ConfigError, match="batch"):
        ev.evaluate([named.get("DARTS_V2")], batch=batch)


def test_bad_inputs_raise(shared_tiny_supernet, fake_data):
    net = shared_tiny_supernet
    ev = SupernetEvaluator(net, fake_data.valid, device="cpu")
    g = named.get("DARTS_V2")
    with pytest.raises(ConfigError, match="single Genotype"):
        ev.evaluate(g)
    with pytest.raises(ConfigError, match=r"genotypes\[1\]"):
        ev.evaluate([g, "DARTS_V2"])
    empty = Split(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.int64))
    with pytest.raises(ConfigError, match="empty"):
        SupernetEvaluator(net, empty, device="cpu")
    with pytest.raises(ConfigError, match="batch_size"):
        SupernetEvaluator(net, fake_data.valid, batch_size=0, device="cpu")
    with pytest.raises(ConfigError, match="max_archs_per_pass"):
        SupernetEvaluator(net, fake_data.valid, max_archs_per_pass=0, device="cpu")
    assert ev.evaluate([]).shape == (0,)


def test_evaluation_leaves_training_mode_and_grad_alone(tiny_supernet, fake_data):
    ev = SupernetEvaluator(tiny_supernet, fake_data.valid, device="cpu")
    tiny_supernet.train()
    ev.evaluate(_genotypes(2))
    assert tiny_supernet.training and torch.is_grad_enabled()
    assert all(p.grad is None for p in tiny_supernet.parameters())


def test_stale_cache_after_reloading_and_retraining(tiny_supernet, fake_data, tmp_path):
    """Loading the same checkpoint twice and training differently must not hit results cached for other weights
    (the supernet's version repeats: see test_supernet.test_version_never_repeats_for_different_weights)."""
    path = save_checkpoint(tmp_path / "a.pt", tiny_supernet)
    ev = SupernetEvaluator(tiny_supernet, fake_data.valid, device="cpu")
    gs = _genotypes(4, seed=8)
    for seed in (0, 1):
        load_checkpoint(path, tiny_supernet)
        SupernetTrainer(tiny_supernet, fake_data, SupernetTrainConfig(epochs=1, batch_size=32, seed=seed),
                        device="cpu").train_epoch()  # fmt: skip
        runs = ev.cache_info["evaluations"]
        ev.evaluate(gs)
        assert ev.cache_info["evaluations"] == runs + 4, "results of other weights were served from the cache"


def test_supernet_evaluator_is_an_evaluator(shared_tiny_supernet, fake_data):
    net = shared_tiny_supernet
    ev = SupernetEvaluator(net, fake_data.valid, device="cpu")
    assert isinstance(ev, Evaluator)
    assert ev.num_batches == 1 and isinstance(ev.version, str)
    ev.evaluate(_genotypes(2))
    ev.clear_cache()
    assert ev.cache_info["size"] == 0


# ------------------------------------------------------------------------------------------------- parallel or not
def test_parallel_choice_takes_the_faster_way_and_notices_a_change():
    choice = ParallelChoice(explore_every=4)
    assert choice.pick() == "parallel"
    choice.record("parallel", 3.0)  # contended cores: threads are slow
    assert choice.pick() == "sequential"
    choice.record("sequential", 1.0)
    picks = []
    for _ in range(8):
        mode = choice.pick()
        picks.append(mode)
        choice.record(mode, 3.0 if mode == "parallel" else 1.0)
    assert picks.count("parallel") == 2 and picks.count("sequential") == 6  # every 4th chunk explores
    for _ in range(12):  # the other processes end: threads become twice as fast as one
        mode = choice.pick()
        choice.record(mode, 0.5 if mode == "parallel" else 1.0)
    assert choice.seconds["parallel"] < choice.seconds["sequential"]
    assert [choice.pick() for _ in range(3)] == ["parallel"] * 3
    for bad in ({"explore_every": 1}, {"smoothing": 0.0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            ParallelChoice(**bad)


def test_evaluator_falls_back_to_one_thread_when_threads_are_slower(shared_tiny_supernet, fake_data, monkeypatch):
    """Contention simulated: the parallel way takes an extra 0.5 s per chunk. The evaluator measures that and
    scores the rest of the list, and later lists, one architecture after the other."""
    ev = SupernetEvaluator(shared_tiny_supernet, fake_data.valid, device="cpu", workers=2)
    parallel = ev._parallel

    def contended(*args):
        time.sleep(0.5)
        return parallel(*args)

    monkeypatch.setattr(ev, "_parallel", contended)
    gs = _genotypes(48, seed=5)
    accs = ev.evaluate(gs[:40])
    assert ev.parallel_choice.chunks == {"parallel": 1, "sequential": 4}
    ev.evaluate(gs[40:])
    assert ev.parallel_choice.chunks == {"parallel": 1, "sequential": 5}
    single = SupernetEvaluator(shared_tiny_supernet, fake_data.valid, device="cpu", workers=1)
    np.testing.assert_array_equal(accs, single.evaluate(gs[:40]))
    assert single.parallel_choice.chunks == {"parallel": 0, "sequential": 0}  # one worker: nothing to choose


# ------------------------------------------------------------------------------------------------- CallableEvaluator
def _skip_fraction(g) -> float:
    return sum(o == "skip_connect" for o in g.ops) / len(g.ops)


def test_callable_evaluator_wraps_and_caches():
    calls = []

    def fn(g):
        calls.append(g)
        return _skip_fraction(g)

    ev = CallableEvaluator(fn)
    assert isinstance(ev, Evaluator) and ev.num_batches == 1
    gs = _genotypes(3, seed=9)
    out = ev.evaluate(gs)
    np.testing.assert_array_equal(out, [_skip_fraction(g) for g in gs])
    assert len(calls) == 3
    np.testing.assert_array_equal(ev.evaluate(gs[::-1]), out[::-1])
    assert len(calls) == 3
    v = ev.version
    ev.bump_version()
    assert ev.version != v
    ev.evaluate(gs[:1])
    assert len(calls) == 4


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_callable_evaluator_rejects_non_finite(bad):
    ev = CallableEvaluator(lambda g: bad)
    with pytest.raises(ConfigError, match="non-finite"):
        ev.evaluate([named.get("DARTS_V2")])


def test_callable_evaluator_passes_the_batch():
    seen = []

    def fn(g, batch):
        seen.append(batch)
        return 0.1 * (batch or 0)

    ev = CallableEvaluator(fn, takes_batch=True, num_batches=3)
    g = named.get("DARTS_V2")
    assert ev.num_batches == 3
    assert ev.evaluate([g], 2)[0] == pytest.approx(0.2)
    assert ev.evaluate([g], batch=None)[0] == 0.0
    ev.evaluate([g], 2)
    assert seen == [2, None]


def test_callable_evaluator_bad_inputs():
    with pytest.raises(ConfigError, match="callable"):
        CallableEvaluator(42)
    with pytest.raises(ConfigError, match="num_batches"):
        CallableEvaluator(_skip_fraction, num_batches=0)
    with pytest.raises(ConfigError, match="single Genotype"):
        CallableEvaluator(_skip_fraction).evaluate(named.get("DARTS_V2"))


def test_non_evaluators_are_not_evaluators():
    assert not isinstance(object(), Evaluator)
    assert not isinstance(_skip_fraction, Evaluator)
