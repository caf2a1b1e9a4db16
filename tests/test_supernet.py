"""The weight-sharing supernet: single-path and batched forward, per-architecture BN, fast pools, gradients on the
sampled path only, uniform-sampling training (loss, determinism, resume), checkpoints and the default supernet."""

from __future__ import annotations

import io
import json
import os
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nat_gym import genotypes as named
from nat_gym import rules as rule_sets
from nat_gym.errors import CheckpointError, ConfigError, InvalidOpError
from nat_gym.genotype import Genotype
from nat_gym.op_modules import Pool
from nat_gym.ops import EXTENDED_OPS, NAT_PLUS_PLUS_OPS, op_spec
from nat_gym.sampling import random_genotype
from nat_gym.supernet import default as default_mod
from nat_gym.supernet.checkpoint import atomic_save, load_checkpoint, read_checkpoint, save_checkpoint
from nat_gym.supernet.config import SupernetConfig, SupernetTrainConfig
from nat_gym.supernet.model import (
    GroupBatchNorm2d,
    ShiftedWindowPool,
    Supernet,
    _bn_groups,
    grouped_batch_norm,
)
from nat_gym.supernet.train import SupernetTrainer, evaluate_random_architectures, resolve_device

SAMPLE_OPS = [o for o in NAT_PLUS_PLUS_OPS if o != "null"]
TOL = {"atol": 1e-5, "rtol": 1e-5}


def _images(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def _net(seed: int = 0, **overrides) -> Supernet:
    torch.manual_seed(seed)
    return Supernet(SupernetConfig(**{"C": 4, "layers": 3, "steps": 4, **overrides}))


def _train_config(**overrides) -> SupernetTrainConfig:
    base = {"epochs": 4, "batch_size": 32, "lr": 0.05, "seed": 3, "checkpoint_every": 2}
    return SupernetTrainConfig(**{**base, **overrides})


def _with_nulls(g: Genotype, edges: list[int]) -> Genotype:
    ops = list(g.ops)
    for i in edges:
        ops[i] = "null"
    return g.with_ops(ops)


def _mixed_genotypes() -> list[Genotype]:
    """8 genotypes: fully-concat and loose-end ones, a duplicate, ones sharing most edges with another, nulls."""
    rng = np.random.default_rng(7)
    g0 = random_genotype(rng, 4, SAMPLE_OPS)
    g1 = random_genotype(rng, 4, SAMPLE_OPS)
    le0 = random_genotype(rng, 4, SAMPLE_OPS, concat="loose_end")
    le1 = random_genotype(rng, 4, SAMPLE_OPS, concat="loose_end")
    shared = g0.with_ops(["sep_conv_3x3" if i in (1, 5, 9) else o for i, o in enumerate(g0.ops)])
    nulls = _with_nulls(g1, [0, 1, 10, 11])  # node 2 of both cells gets only null inputs
    assert shared != g0 and all(o == "null" for o in nulls.ops[:2])
    return [g0, le0, g1, g0, shared, le1, nulls, random_genotype(rng, 4, SAMPLE_OPS)]


# ------------------------------------------------------------------------------------------------- forward
def test_forward_shapes_single_and_many(shared_tiny_supernet):
    net = shared_tiny_supernet
    x = _images(5)
    gs = [random_genotype(np.random.default_rng(i), 4, SAMPLE_OPS) for i in range(3)]
    out = net(x, gs[0])
    assert out.shape == (5, 10) and torch.isfinite(out).all()
    many = net.forward_many(x, gs)
    assert many.shape == (3, 5, 10) and torch.isfinite(many).all()


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_genotypes_with_fewer_steps_run(shared_tiny_supernet, steps):
    net = shared_tiny_supernet
    g = random_genotype(np.random.default_rng(steps), steps, SAMPLE_OPS)
    out = net(_images(), g)
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    mixed = net.forward_many(_images(), [g, random_genotype(np.random.default_rng(9), 4, SAMPLE_OPS)])
    torch.testing.assert_close(mixed[0], out, **TOL)


def test_op_outside_vocabulary_is_a_clear_error():
    net = _net(ops=rule_sets.get("nat").ops)  # NAT's 11 ops: no max_pool_5x5
    g = named.get("DARTS_V2")
    ops = list(g.ops)
    ops[3] = "max_pool_5x5"
    with pytest.raises(InvalidOpError, match="max_pool_5x5"):
        net(_images(), g.with_ops(ops))
    with pytest.raises(InvalidOpError, match="normal.edges\\[3\\]"):
        net.forward_many(_images(), [g, g.with_ops(ops)])


def test_too_many_steps_is_a_clear_error(shared_tiny_supernet):
    net = shared_tiny_supernet
    g = named.get("ENAS")  # 5 steps, ops inside NAT++'s vocabulary
    assert g.steps == 5
    with pytest.raises(ConfigError, match="steps"):
        net(_images(), g)


def test_empty_genotype_list_raises(shared_tiny_supernet):
    net = shared_tiny_supernet
    with pytest.raises(ConfigError):
        net.forward_many(_images(), [])


# ------------------------------------------------------------------------------------------------- batched == single
def test_batched_equals_single(shared_tiny_supernet):
    net = shared_tiny_supernet
    x = _images(6)
    gs = _mixed_genotypes()
    single = torch.stack([net(x, g) for g in gs])
    batched = net.forward_many(x, gs)
    assert batched.shape == single.shape == (8, 6, 10)
    torch.testing.assert_close(batched, single, **TOL)
    torch.testing.assert_close(batched[0], batched[3], **TOL)  # the duplicate


def test_batched_equals_single_with_activation_cache(shared_tiny_supernet):
    net = shared_tiny_supernet
    x = _images(6)
    gs = _mixed_genotypes()
    single = torch.stack([net(x, g) for g in gs])
    cache: dict = {}
    with torch.no_grad():
        first = net.forward_many(x, gs[:4], cache=cache)
        assert cache, "the activation cache should hold the architecture-independent activations"
        second = net.forward_many(x, gs, cache=cache)
        third = net.forward_many(x, gs[4:], cache=cache)
    torch.testing.assert_close(first, single[:4], **TOL)
    torch.testing.assert_close(second, single, **TOL)
    torch.testing.assert_close(third, single[4:], **TOL)


def test_activation_cache_with_grad_enabled_raises(shared_tiny_supernet):
    net = shared_tiny_supernet
    g = named.get("DARTS_V2")
    assert torch.is_grad_enabled()
    with pytest.raises(ConfigError, match="cache"):
        net.forward_many(_images(), [g], cache={})


def test_bn_uses_batch_statistics_per_architecture(shared_tiny_supernet):
    net = shared_tiny_supernet
    x = _images(6)
    rng = np.random.default_rng(11)
    g = random_genotype(rng, 4, SAMPLE_OPS)
    alone = net(x, g)
    for k in (1, 3, 6):
        others = [random_genotype(rng, 4, SAMPLE_OPS) for _ in range(k)]
        for batch in ([g, *others], [*others, g]):
            out = net.forward_many(x, batch)
            torch.testing.assert_close(out[batch.index(g)], alone, **TOL)


def test_group_batch_norm_normalises_each_group_separately():
    bn = GroupBatchNorm2d(3)
    a = torch.randn(4, 3, 5, 5)
    b = 10 + 5 * torch.randn(4, 3, 5, 5)
    with _bn_groups(2):
        both = bn(torch.cat([a, b]))
    torch.testing.assert_close(both[:4], bn(a), **TOL)
    torch.testing.assert_close(both[4:], bn(b), **TOL)
    torch.testing.assert_close(bn(a), F.batch_norm(a, None, None, training=True), **TOL)


@pytest.mark.parametrize("shift", [0.0, 10.0, 100.0])
@pytest.mark.parametrize("groups", [1, 3])
def test_grouped_batch_norm_equals_native_per_group(groups, shift):
    x = shift + torch.randn(groups * 4, 5, 6, 6, generator=torch.Generator().manual_seed(groups))
    x = x.contiguous(memory_format=torch.channels_last)
    out = grouped_batch_norm(x, groups)
    assert out.is_contiguous(memory_format=torch.channels_last)
    ref = torch.cat([F.batch_norm(c, None, None, training=True) for c in x.split(4)])
    tol = {"atol": 1e-5 + 1e-6 * shift**2, "rtol": 1e-4}
    torch.testing.assert_close(out, ref, **tol)
    with torch.no_grad(), _bn_groups(groups):  # the supernet's inference path (grouped_batch_norm when groups > 1)
        torch.testing.assert_close(GroupBatchNorm2d(5)(x), ref, **tol)


def test_batch_norm_does_not_depend_on_train_or_eval_mode(shared_tiny_supernet):
    net = shared_tiny_supernet
    x, g = _images(), named.get("DARTS_V2")
    try:
        train_out = net.train()(x, g)
        eval_out = net.eval()(x, g)
    finally:
        net.train()
    torch.testing.assert_close(train_out, eval_out, **TOL)


# ------------------------------------------------------------------------------------------------- pools
POOL_OPS = [o for o in EXTENDED_OPS if op_spec(o).is_pool]


@pytest.mark.parametrize("op", POOL_OPS)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(7, 7), (8, 8), (5, 6), (1, 1), (2, 3)])
def test_shifted_window_pool_equals_pool(op, stride, size):
    spec = op_spec(op)
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(sum(size) + stride))
    ref = Pool(spec.kind, spec.kernel, stride)(x)
    pool = ShiftedWindowPool(spec.kind, spec.kernel, stride)
    for out in (pool.shifted(x), pool(x)):  # the slices, and whichever way the pool picks
        assert out.shape == ref.shape == (2, 3, -(-size[0] // stride), -(-size[1] // stride))
        torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)
    # under autograd the built-in pool runs; its gradient is the slices' gradient (no ties in random inputs)
    xs, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    grad = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))
    pool.shifted(xs).backward(grad)
    pool(xb).backward(grad)
    torch.testing.assert_close(xb.grad, xs.grad, atol=1e-6, rtol=1e-6)


def test_shifted_window_pool_picks_by_direction_and_map_size():
    pool = ShiftedWindowPool("max_pool", 3, 1)
    big, small = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4)
    assert pool.shifted_is_faster(big) and not pool.shifted_is_faster(small)
    assert not pool.shifted_is_faster(big.clone().requires_grad_())  # backward: the built-in pool
    with torch.no_grad():
        assert pool.shifted_is_faster(big.clone().requires_grad_())
    avg, avg_s2 = ShiftedWindowPool("avg_pool", 3, 1), ShiftedWindowPool("avg_pool", 3, 2)
    assert avg.shifted_is_faster(big) and not avg.shifted_is_faster(torch.randn(2, 80, 8, 8))  # many channels
    assert not avg_s2.shifted_is_faster(big) and avg_s2.shifted_is_faster(torch.randn(2, 4, 32, 32))


def test_pool_ops_cover_every_kind_and_kernel():
    assert {(op_spec(o).kind, op_spec(o).kernel) for o in POOL_OPS} == {
        (k, s) for k in ("max_pool", "avg_pool") for s in (2, 3, 5)
    }


# ------------------------------------------------------------------------------------------------- gradients
def _path_modules(net: Supernet, g: Genotype) -> set[tuple[int, str, str]]:
    out = set()
    for layer, cell in enumerate(net.cells):
        c = g.reduce if cell.reduction else g.normal
        for e in c.edges:
            out.add((layer, f"{e.src}_{e.dst}", e.op))
    return out


def test_training_step_touches_only_the_sampled_path(tiny_supernet):
    net = tiny_supernet.train()
    g = named.get("DARTS_V2")
    path = _path_modules(net, g)
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=3e-4)
    y = torch.arange(4) % 10
    loss = F.cross_entropy(net(_images(), g), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    on_path_with_params = 0
    for layer, cell in enumerate(net.cells):
        for slot, ops in cell.edges.items():
            for op, module in ops.items():
                params = list(module.parameters())
                if (layer, slot, op) in path:
                    on_path_with_params += bool(params)
                    assert all(p.grad is not None for p in params), (layer, slot, op)
                else:
                    assert all(p.grad is None for p in params), (layer, slot, op)
    assert on_path_with_params > 0
    for name in ("stem.0.weight", "classifier.weight"):
        assert dict(net.named_parameters())[name].grad is not None
    opt.step()
    for name, p in net.named_parameters():
        if p.grad is None:
            assert torch.equal(p, before[name]), f"{name} changed although it is off the sampled path"
    assert any(not torch.equal(p, before[n]) for n, p in net.named_parameters())


def test_path_parameters_are_those_a_training_step_gives_gradients(tiny_supernet):
    net = tiny_supernet
    order = {p: i for i, p in enumerate(net.parameters())}
    for g in [named.get("DARTS_V2"), *_mixed_genotypes()]:
        net.zero_grad(set_to_none=True)
        F.cross_entropy(net(_images(), g), torch.arange(4) % 10).backward()
        path = net.path_parameters(g)
        with_grad = [p for p in net.parameters() if p.grad is not None]
        assert [order[p] for p in path] == sorted(order[p] for p in path)  # in parameters() order, no duplicates
        assert len(set(path)) == len(path) and set(with_grad) <= set(path)
        # what the path holds beyond them: modules whose output no edge reads (e.g. preprocess0 when no edge
        # leaves node 0)
        assert all(p.grad is None for p in set(path) - set(with_grad))
    assert all(p.dtype == torch.float64 for p in net.to(torch.float64).path_parameters(g))  # rebuilt after .to()


def test_cell_concat_hands_on_channels_last_gradients(shared_tiny_supernet):
    from nat_gym.supernet.model import _ChannelsLastCat

    parts = [torch.randn(2, c, 3, 3).contiguous(memory_format=torch.channels_last).requires_grad_() for c in (2, 3)]
    grad = torch.randn(2, 5, 3, 3)
    _ChannelsLastCat.apply(*parts).backward(grad)
    expected = grad.split([2, 3], dim=1)
    for p, e in zip(parts, expected):
        assert p.grad.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(p.grad, e)


# ------------------------------------------------------------------------------------------------- training
def test_train_step_equals_the_full_supernet_loop(fake_data):
    """SupernetTrainer visits only the sampled path's parameters (clearing, clipping, SGD): the weights and the
    momentum buffers after two epochs are bit for bit those of the plain loop over all parameters."""
    cfg = _train_config(epochs=2, grad_clip=0.5)  # a small clip, so that clipping happens
    fast = _net(4)
    trainer = SupernetTrainer(fast, fake_data, cfg, device="cpu")
    trainer.train(progress=False)

    ref = _net(4)
    opt = torch.optim.SGD(ref.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    clipped = 0
    for epoch in range(cfg.epochs):
        for group in opt.param_groups:
            group["lr"] = trainer.lr_at(epoch)
        rng = np.random.default_rng([cfg.seed, epoch])
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        for x, y in fake_data.train.batches(cfg.batch_size, shuffle=True, generator=gen, drop_last=True):
            g = random_genotype(rng, 4, SAMPLE_OPS)
            loss = F.cross_entropy(ref(x, g), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            clipped += float(torch.nn.utils.clip_grad_norm_(ref.parameters(), cfg.grad_clip)) > cfg.grad_clip
            opt.step()
    assert clipped > 0
    a, b = fast.state_dict(), ref.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    sa, sb = trainer.optimizer.state_dict(), opt.state_dict()
    assert sa["state"].keys() == sb["state"].keys() and len(sa["state"]) < len(list(ref.parameters()))
    assert all(torch.equal(sa["state"][k]["momentum_buffer"], sb["state"][k]["momentum_buffer"]) for k in sa["state"])
    assert sa["param_groups"] == sb["param_groups"]  # every parameter is back in the optimiser's group
    grads = [{n: p.grad for n, p in net.named_parameters() if p.grad is not None} for net in (fast, ref)]
    assert grads[0].keys() == grads[1].keys() and all(torch.equal(grads[0][k], grads[1][k]) for k in grads[0])


def _loss_on(net: Supernet, split, gs: list[Genotype]) -> float:
    with torch.no_grad():
        logits = net.forward_many(split.x, gs)
        return float(np.mean([F.cross_entropy(lg, split.y).item() for lg in logits]))


def test_trainer_lowers_the_training_loss(fake_data):
    net = _net(1)
    gs = [random_genotype(np.random.default_rng(100 + i), 4, SAMPLE_OPS) for i in range(4)]
    start = _loss_on(net, fake_data.train, gs)
    trainer = SupernetTrainer(net, fake_data, _train_config(epochs=6, batch_size=16), device="cpu")
    history = trainer.train(progress=False)
    assert [int(r["epoch"]) for r in history] == list(range(1, 7))
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert _loss_on(net, fake_data.train, gs) < start
    assert trainer.epoch == 6


def test_trainer_is_deterministic(fake_data):
    states = []
    for seed in (3, 3, 4):
        net = _net(5)
        SupernetTrainer(net, fake_data, _train_config(epochs=2, seed=seed), device="cpu").train(
            progress=False
        )
        states.append(net.state_dict())
    same, other = states[1], states[2]
    assert states[0].keys() == same.keys()
    assert all(torch.equal(states[0][k], same[k]) for k in same)
    assert any(not torch.equal(states[0][k], other[k]) for k in other)  # another seed: other weights


class _Crash(Exception):
    pass


def test_resume_matches_an_uninterrupted_run(fake_data, tmp_path):
    cfg = _train_config(epochs=4, checkpoint_every=2)
    full = _net(2)
    SupernetTrainer(full, fake_data, cfg, device="cpu").train(progress=False)

    ckpt = tmp_path / "run" / "supernet.pt"

    def crash_after_epoch_3(row):
        if row["epoch"] == 3:
            raise _Crash

    first = SupernetTrainer(_net(2), fake_data, cfg, device="cpu", checkpoint=ckpt)
    with pytest.raises(_Crash):
        first.train(progress=False, callback=crash_after_epoch_3)
    assert read_checkpoint(ckpt)["epoch"] == 2  # the last checkpoint; epoch 3's work is lost

    resumed_net = _net(99)  # a different init: everything must come from the checkpoint
    second = SupernetTrainer(resumed_net, fake_data, cfg, device="cpu", checkpoint=ckpt)
    assert second.resume()
    assert second.epoch == 2 and len(second.history) == 2
    second.train(progress=False)
    assert second.epoch == 4 and [int(r["epoch"]) for r in second.history] == [1, 2, 3, 4]
    a, b = full.state_dict(), resumed_net.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert read_checkpoint(ckpt)["epoch"] == 4


def test_resume_keeps_the_momentum_and_weight_decay_of_this_run(fake_data, tmp_path):
    """``train-supernet --resume --momentum 0.5``: the momentum buffers come from the checkpoint, the settings from
    this run's config (``load_state_dict`` alone silently restored the saved ones)."""
    ckpt = tmp_path / "supernet.pt"
    first = SupernetTrainer(_net(), fake_data, _train_config(epochs=1), device="cpu", checkpoint=ckpt)
    first.train(progress=False)
    second = SupernetTrainer(_net(), fake_data, _train_config(epochs=2, momentum=0.5, weight_decay=1e-4), device="cpu",
                             checkpoint=ckpt)  # fmt: skip
    assert second.resume()
    (group,) = second.optimizer.param_groups
    assert (group["momentum"], group["weight_decay"]) == (0.5, 1e-4)
    assert len(second.optimizer.state) == len(first.optimizer.state) > 0


def test_resume_without_checkpoint_returns_false(fake_data, tmp_path):
    trainer = SupernetTrainer(
        _net(), fake_data, _train_config(), device="cpu", checkpoint=tmp_path / "none.pt"
    )
    assert trainer.resume() is False and trainer.epoch == 0
    assert SupernetTrainer(_net(), fake_data, _train_config(), device="cpu").resume() is False


def test_trainer_rejects_mismatched_data(fake_data):
    with pytest.raises(ConfigError, match="in_channels"):
        SupernetTrainer(_net(in_channels=3), fake_data, _train_config(), device="cpu")


def test_trainer_writes_logs(fake_data, tmp_path):
    trainer = SupernetTrainer(_net(), fake_data, _train_config(epochs=1, eval_archs=2), device="cpu",
                              log_dir=tmp_path / "logs")  # fmt: skip
    history = trainer.train(progress=False)
    assert 0.0 <= history[0]["valid_acc_mean"] <= 1.0
    text = (tmp_path / "logs" / "metrics.csv").read_text()
    assert text.splitlines()[0].startswith("epoch,") and len(text.splitlines()) == 2


def test_evaluate_random_architectures(shared_tiny_supernet, fake_data):
    net = shared_tiny_supernet
    accs = evaluate_random_architectures(net, fake_data.valid, 3, seed=0)
    again = evaluate_random_architectures(net, fake_data.valid, 3, seed=0)
    assert accs.shape == (3,) and ((accs >= 0) & (accs <= 1)).all()
    np.testing.assert_array_equal(accs, again)


def test_version_changes_after_each_optimiser_step(fake_data):
    net = _net()
    trainer = SupernetTrainer(net, fake_data, _train_config(epochs=1), device="cpu")
    seen = []
    step = trainer.optimizer.step

    def recording_step(*args, **kwargs):
        seen.append(net.version)  # the version before this step (= after the previous one)
        return step(*args, **kwargs)

    trainer.optimizer.step = recording_step
    trainer.train_epoch()
    seen.append(net.version)
    assert len(seen) == len(fake_data.train) // 32 + 1
    assert len(set(seen)) == len(seen), seen


# ------------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip(shared_tiny_supernet, tmp_path):
    net = shared_tiny_supernet
    x, g = _images(), named.get("DARTS_V2")
    path = save_checkpoint(tmp_path / "a.pt", net, epoch=3, history=[{"epoch": 1.0}])
    expected = net(x, g)
    loaded, payload = load_checkpoint(path)
    assert loaded.config == net.config and payload["epoch"] == 3
    assert torch.equal(loaded(x, g), expected)
    into = _net(42)
    assert not torch.equal(into(x, g), expected)
    same, _ = load_checkpoint(path, into)
    assert same is into and torch.equal(into(x, g), expected)


def test_checkpoint_into_differently_configured_supernet(shared_tiny_supernet, tmp_path):
    net = shared_tiny_supernet
    path = save_checkpoint(tmp_path / "a.pt", net)
    with pytest.raises(CheckpointError, match=r"\bC\b"):
        load_checkpoint(path, _net(C=6))
    with pytest.raises(CheckpointError, match="ops") as err:
        load_checkpoint(path, _net(ops=rule_sets.get("nat").ops, layers=4))
    assert "layers" in str(err.value)


def test_corrupt_and_foreign_files_raise_checkpoint_error(shared_tiny_supernet, tmp_path):
    net = shared_tiny_supernet
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(2000))
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": net.state_dict()}, foreign)
    with pytest.raises(CheckpointError, match="not a nat-gym"):
        load_checkpoint(foreign)
    torch.save([1, 2, 3], foreign)
    with pytest.raises(CheckpointError, match="not a nat-gym"):
        read_checkpoint(foreign)
    good = save_checkpoint(tmp_path / "good.pt", net)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "missing.pt")
    payload = read_checkpoint(good)
    payload["format_version"] = 99
    torch.save(payload, foreign)
    with pytest.raises(CheckpointError, match="format_version"):
        load_checkpoint(foreign)


@pytest.mark.parametrize("crash", [RuntimeError, KeyboardInterrupt])
def test_killed_write_leaves_previous_checkpoint_loadable(shared_tiny_supernet, tmp_path, monkeypatch, crash):
    net = shared_tiny_supernet
    x, g = _images(), named.get("DARTS_V2")
    path = save_checkpoint(tmp_path / "ckpt.pt", net, epoch=1)
    expected = net(x, g)
    real_save = torch.save

    def half_write_then_die(obj, f, *args, **kwargs):
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        raise crash("simulated crash in the middle of torch.save")

    other = _net(8)
    monkeypatch.setattr(torch, "save", half_write_then_die)
    with pytest.raises(crash):
        save_checkpoint(path, other, epoch=2)
    with pytest.raises(crash):
        atomic_save({"anything": 1}, path)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # no temp files left behind
    loaded, payload = load_checkpoint(path)
    assert payload["epoch"] == 1
    assert torch.equal(loaded(x, g), expected)


def test_atomic_save_creates_folders_and_replaces(tmp_path):
    path = tmp_path / "a" / "b" / "obj.pt"
    atomic_save({"v": 1}, path)
    atomic_save({"v": 2}, path)
    assert torch.load(path, weights_only=False) == {"v": 2}
    assert [p.name for p in path.parent.iterdir()] == ["obj.pt"]


def test_atomic_save_honours_the_umask(tmp_path):
    """A checkpoint (or the cached default supernet) is as readable as the logs beside it: 0o644 under umask 022,
    not mkstemp's owner-only 0o600 (issue 8 review: others sharing a run folder or a cache could not read it)."""
    import os
    import stat

    previous = os.umask(0o022)
    try:
        path = atomic_save({"v": 1}, tmp_path / "obj.pt")
        (tmp_path / "log.txt").write_text("x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE((tmp_path / "log.txt").stat().st_mode) == 0o644


def test_version_changes_after_loading(shared_tiny_supernet, tmp_path):
    source = shared_tiny_supernet
    path = save_checkpoint(tmp_path / "a.pt", source)
    net = _net(3)
    v0 = net.version
    load_checkpoint(path, net)
    assert net.version not in (v0, source.version)
    fresh, _ = load_checkpoint(path)
    assert fresh.version not in (v0, source.version)


def test_version_never_repeats_for_different_weights(fake_data, tmp_path):
    """A version names one set of weights: loading the same checkpoint again and training differently must not
    reproduce a version seen before with other weights (evaluators key their caches on it)."""
    net = _net()
    path = save_checkpoint(tmp_path / "a.pt", net)
    seen: dict[str, dict[str, torch.Tensor]] = {}

    def record():
        state = {k: v.clone() for k, v in net.state_dict().items()}
        if net.version in seen:
            old = seen[net.version]
            assert all(torch.equal(old[k], state[k]) for k in state), f"version {net.version} reused"
        seen[net.version] = state

    for seed in (0, 1):
        load_checkpoint(path, net)
        record()
        trainer = SupernetTrainer(net, fake_data, _train_config(epochs=1, seed=seed), device="cpu")
        trainer.train_epoch()
        record()


# ------------------------------------------------------------------------------------------------- default supernet
def test_load_or_train_trains_once_then_loads_from_cache(fake_data, monkeypatch, nat_gym_cache):
    cfg = SupernetConfig(C=4, layers=3, steps=2, num_classes=10, in_channels=1)
    tcfg = SupernetTrainConfig(epochs=1, batch_size=32)
    torch.manual_seed(0)
    first = default_mod.load_or_train(cfg, data=fake_data, dataset="fake", train_config=tcfg, device="cpu",
                                      progress=False)  # fmt: skip
    path = default_mod.default_supernet_path(cfg, tcfg, "fake", 0)
    assert path.parent == nat_gym_cache and path.is_file()
    left = sorted(p.name for p in nat_gym_cache.iterdir())
    assert left == [path.name, f"{path.name}.lock"]  # no .partial left; the lock file that serialises training stays

    def must_not_train(self, *args, **kwargs):
        raise AssertionError("load_or_train trained again instead of loading the cached supernet")

    monkeypatch.setattr(SupernetTrainer, "train", must_not_train)
    second = default_mod.load_or_train(cfg, data=fake_data, dataset="fake", train_config=tcfg, device="cpu",
                                       progress=False)  # fmt: skip
    a, b = first.state_dict(), second.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # another training config is another cache entry: it would train
    with pytest.raises(AssertionError, match="trained again"):
        default_mod.load_or_train(cfg, data=fake_data, dataset="fake", train_config=replace(tcfg, epochs=2),
                                  device="cpu", progress=False)  # fmt: skip


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("NAT_GYM_CACHE", str(tmp_path / "c"))
    assert default_mod.cache_dir() == tmp_path / "c"
    cfg = SupernetConfig(C=4, layers=3)
    p1 = default_mod.default_supernet_path(cfg, SupernetTrainConfig(epochs=1))
    p2 = default_mod.default_supernet_path(cfg, SupernetTrainConfig(epochs=2))
    p3 = default_mod.default_supernet_path(replace(cfg, C=5), SupernetTrainConfig(epochs=1))
    assert len({p1, p2, p3}) == 3 and all(p.parent == tmp_path / "c" for p in (p1, p2, p3))


# ------------------------------------------------------------------------------------------------- devices, configs
def test_resolve_device():
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match="CUDA"):
            resolve_device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ConfigError, match="device"):
        resolve_device("tpu-please")


def test_config_validation_and_round_trip():
    cfg = SupernetConfig(C=4, layers=3, ops=rule_sets.get("nat").ops)
    assert SupernetConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.diff(replace(cfg, C=5)) == {"C": (4, 5)}
    for bad in ({"C": 0}, {"layers": 2}, {"steps": True}, {"num_classes": 1}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            SupernetConfig(**bad)
    with pytest.raises(InvalidOpError):
        SupernetConfig(ops=("sep_conv_3x3", "warp_drive"))
    with pytest.raises(ConfigError, match="unknown keys"):
        SupernetConfig.from_dict({"C": 4, "width": 3})
    for bad in ({"epochs": 0}, {"batch_size": 0}, {"lr": 0.0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            SupernetTrainConfig(**bad)
    with pytest.raises(ConfigError, match="either"):
        Supernet(cfg, C=4)


def test_train_supernet_command_writes_logs_and_resumes(tmp_path, capsys):
    from nat_gym.cli import main

    out = tmp_path / "sn"

    def command(epochs: int) -> list[str]:
        return ["train-supernet", "--dataset", "fake", "--channels", "4", "--layers", "3", "--epochs", str(epochs),
                "--eval-archs", "2", "--final-archs", "3", "--out", str(out), "--no-progress"]  # fmt: skip

    argv = command(2)
    assert main(argv) == 0
    for name in ("supernet.pt", "metrics.csv", "learning_curves.png", "summary.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["random_archs"] == 3 and 0 <= summary["valid_acc_random_mean"] <= 1
    with pytest.raises(SystemExit) as exit_info:  # argparse rejects it, in one line
        main([*argv, "--final-archs", "0"])
    assert exit_info.value.code == 2
    assert "--final-archs" in capsys.readouterr().err
    assert main(argv) == 2  # an existing run is never overwritten silently
    assert "--resume" in capsys.readouterr().err
    assert main([*command(4), "--resume"]) == 0
    _, payload = load_checkpoint(out / "supernet.pt")
    assert payload["epoch"] == 4
