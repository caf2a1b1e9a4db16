"""Tests for agents.transform (deriving architectures with a NAT policy) and an end-to-end CLI smoke test."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium as gym
import pytest
import torch

import nat_gym  # noqa: F401  (registers NATCell-v0)
from agents.gcn_policy import GCNPolicy
from agents.transform import DARTS_CIFAR, cost_guard_mask, transform, write_outputs
from nat_gym import genotypes
from nat_gym import rules as rule_sets
from nat_gym.cost import network_cost
from nat_gym.errors import ConfigError
from nat_gym.genotype import Genotype

RULES = rule_sets.get("nat++")
SMALL = {"op_embed_dim": 8, "lift_dim": 16, "hidden_dim": 8}


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from nat_gym.supernet.checkpoint import save_checkpoint
    from nat_gym.supernet.config import SupernetConfig
    from nat_gym.supernet.model import Supernet

    torch.manual_seed(0)
    net = Supernet(SupernetConfig(C=4, layers=3, ops=RULES.ops, num_classes=10, in_channels=1))
    return str(save_checkpoint(tmp_path_factory.mktemp("supernet") / "tiny.pt", net))


@pytest.fixture(scope="module")
def env(tiny_ckpt):
    return gym.make("NATCell-v0", rules="nat++", supernet=tiny_ckpt, reward_images=None, device="cpu")


@pytest.fixture
def policy():
    torch.manual_seed(0)
    return GCNPolicy(RULES.num_ops, "fixed", **SMALL)


def shapes(env) -> dict[str, dict[str, int]]:
    return {"supernet": dict(env.unwrapped.cost_config), "darts_cifar": dict(DARTS_CIFAR)}


def assert_not_costlier(before: Genotype, after: Genotype, env) -> None:
    for shape in shapes(env).values():
        b, a = network_cost(before, **shape), network_cost(after, **shape)
        assert a.params <= b.params and a.madds <= b.madds, (shape, b, a)


# --------------------------------------------------------------------------------------------------------- transform
def test_transform_darts_v2(env, policy):
    darts = genotypes.get("DARTS_V2")
    res = transform("DARTS_V2", policy, env, samples=10, seed=0)
    assert res.input == darts and len(res.candidates) == 10 and len(res.accuracies) == 10
    for cand in res.candidates:
        assert RULES.validate_transformation(darts, cand) == []
        assert_not_costlier(darts, cand, env)  # DARTS_V2 has no null edge, so no exception applies
    assert res.best == res.candidates[res.best_index]
    assert res.best_accuracy == max(res.accuracies)
    assert set(res.costs) == {"supernet", "darts_cifar"}
    assert res.costs["darts_cifar"]["input"]["params"] == network_cost(darts).params
    assert res.num_images == 360 and 0 <= res.input_accuracy <= 1
    assert res.null_to_skip == []
    text = res.report()
    assert "edges changed" in text and "MAdds" in text and "accuracy" in text
    # seeded sampling: the same seed gives the same candidates
    assert transform(darts, policy, env, samples=10, seed=0).candidates == res.candidates


def test_argmax_is_deterministic(env, policy):
    a = transform("DARTS_V2", policy, env, argmax=True, seed=0)
    b = transform("DARTS_V2", policy, env, argmax=True, seed=123)
    assert len(a.candidates) == 1 and a.mode == "argmax"
    assert a.best == b.best and a.accuracies == b.accuracies


def test_cost_guard_and_null_to_skip(env, policy):
    """A policy that wants skip everywhere: the reduction cell's stride-2 pool -> skip (a factorized reduce, C^2
    weights) is masked out by the cost guard; null -> skip stays allowed and is reported."""
    with torch.no_grad():
        policy.head.bias.zero_()
        policy.head.bias[RULES.index("skip_connect")] = 50.0
    darts = genotypes.get("DARTS_V2")
    mask, removed = cost_guard_mask(darts, RULES, shapes(env))
    assert removed > 0
    skip = RULES.index("skip_connect")
    k = len(darts.normal.edges)
    for i, e in enumerate(darts.edges):
        if i >= k and e.src < 2 and e.op == "max_pool_3x3":
            assert not mask[i, skip], e
        if i < k and e.op.startswith("sep_conv"):
            assert mask[i, skip], e
    res = transform(darts, policy, env, argmax=True)
    assert_not_costlier(darts, res.best, env)
    assert res.guarded_targets == removed
    # a genotype with null edges: null -> skip is chosen and reported
    g = darts.with_ops(["null" if i in (0, 1) else op for i, op in enumerate(darts.ops)])
    res = transform(g, policy, env, argmax=True)
    assert res.best.normal.edges[0].op == "skip_connect" and len(res.null_to_skip) == 2
    assert "null -> skip_connect" in res.report()


def test_clear_errors(env, policy):
    with pytest.raises(ConfigError, match="steps"):  # ENAS: 5 nodes per cell, the supernet has 4
        transform("ENAS", policy, env)
    with pytest.raises(ConfigError, match="nat\\+\\+ext"):  # NASNet: sep_conv_7x7 etc.
        transform("NASNet", policy, env)
    with pytest.raises(ConfigError, match="samples"):
        transform("DARTS_V2", policy, env, samples=0)
    with pytest.raises(ConfigError, match="op outputs"):
        transform("DARTS_V2", GCNPolicy(5, **SMALL), env)


def test_write_outputs(env, policy, tmp_path):
    res = transform("DARTS_V2", policy, env, samples=3)
    paths = write_outputs(res, tmp_path / "t")
    data = json.loads(paths["json"].read_text())
    assert Genotype.from_dict(data["output"]) == res.best
    assert data["accuracies"] == res.accuracies and len(data["candidates"]) == 3
    assert paths["png"].stat().st_size > 1000


# --------------------------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_cli_train_then_transform(tiny_ckpt, tmp_path):
    run, tout = tmp_path / "run", tmp_path / "transform"
    cli = [sys.executable, "-m", "agents.cli"]
    train = subprocess.run(
        cli + ["train", "--algo", "nat", "--epochs", "1", "--supernet", tiny_ckpt, "--out", str(run),
               "--op-embed-dim", "8", "--lift-dim", "16", "--hidden-dim", "8", "--no-progress", "--eval-inputs", "2",
               "--policy-updates-per-epoch", "2", "--device", "cpu"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    assert (run / "checkpoint.pt").is_file() and (run / "metrics.csv").is_file()
    assert (run / "learning_curves.png").is_file()
    res = subprocess.run(
        cli + ["transform", "--arch", "DARTS_V2", "--policy", str(run / "checkpoint.pt"), "--samples", "3",
               "--out", str(tout), "--device", "cpu"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "edges changed" in res.stdout and "darts_cifar" in res.stdout
    data = json.loads((tout / "transform.json").read_text())
    assert data["arch"] == "DARTS_V2" and len(data["accuracies"]) == 3
    assert (tout / "transform.png").is_file()
    bad = subprocess.run(cli + ["transform", "--arch", "ENAS", "--policy", str(run / "checkpoint.pt"), "--out", ""],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "steps" in bad.stderr
