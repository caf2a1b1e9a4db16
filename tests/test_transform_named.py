"""The transform step on several named cells and through the command line (the trainer itself: test_nat_trainer.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import pytest
import torch

import nat_gym  # noqa: F401
from agents.nat_trainer import NATTrainerArgs, load_policy, train
from agents.transform import transform
from nat_gym import genotypes as named
from nat_gym import rules as rule_sets
from nat_gym.cost import network_cost
from nat_gym.supernet.checkpoint import save_checkpoint
from nat_gym.supernet.config import SupernetConfig
from nat_gym.supernet.model import Supernet

NAT_GYM = Path(sys.executable).parent / "nat-gym"
TINY = {"op_embed_dim": 8, "lift_dim": 16, "hidden_dim": 8}


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny random-init NAT++ supernet for digits, saved as a checkpoint the env can load."""
    torch.manual_seed(0)
    net = Supernet(SupernetConfig(C=4, layers=3, ops=rule_sets.get("nat++").ops, num_classes=10, in_channels=1))
    return save_checkpoint(tmp_path_factory.mktemp("sn") / "tiny.pt", net)


def _args(tmp_path: Path, ckpt: Path, **kw) -> NATTrainerArgs:
    base = dict(epochs=2, supernet=str(ckpt), reward_images=120, out=str(tmp_path / "run"), progress=False,
                eval_inputs=4, **TINY)  # fmt: skip
    base.update(kw)
    return NATTrainerArgs(**base)


def _cheaper_or_null_to_skip(before, after, cfg) -> bool:
    if network_cost(after, **cfg).madds <= network_cost(before, **cfg).madds:
        return True
    return any(a.op == "null" and b.op == "skip_connect" for a, b in zip(before.edges, after.edges))


def test_transform_is_valid_cheaper_and_keeps_the_best_candidate(tmp_path, tiny_checkpoint):
    train(_args(tmp_path, tiny_checkpoint, epochs=1))
    policy, args = load_policy(tmp_path / "run" / "checkpoint.pt")
    env = gym.make("NATCell-v0", supernet=str(tiny_checkpoint))
    rules, cfg = env.unwrapped.rules, env.unwrapped.cost_config
    for name in ("DARTS_V2", "VGG", "ResBlock", "MobileNetV2", "R3"):
        result = transform(name, policy, env, samples=10, seed=1)
        beta = named.get(name)
        assert result.accuracies[result.candidates.index(result.best)] == max(result.accuracies)
        for cand in result.candidates:
            assert rules.validate_transformation(beta, cand) == []
            assert _cheaper_or_null_to_skip(beta, cand, cfg), (name, cand)
    one = transform("DARTS_V2", policy, env, argmax=True)
    two = transform("DARTS_V2", policy, env, argmax=True)
    assert one.best == two.best and len(one.candidates) == 1
