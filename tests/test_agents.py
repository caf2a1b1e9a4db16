"""The NAT trainer (Algorithm 1), the transform step and their commands, with tiny budgets."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import nat_gym  # noqa: F401
from agents.nat_trainer import NATTrainerArgs, load_policy, train
from agents.transform import transform
from nat_gym import genotypes as named
from nat_gym import rules as rule_sets
from nat_gym.cost import network_cost
from nat_gym.errors import CheckpointError
from nat_gym.evaluator import CallableEvaluator
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


def test_training_writes_logs_and_never_takes_invalid_edges(tmp_path, tiny_checkpoint):
    policy, history = train(_args(tmp_path, tiny_checkpoint))
    assert len(history) == 2
    run = tmp_path / "run"
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert len(rows) == 2 and all(float(r["invalid_edges"]) == 0 for r in rows)
    assert all(np.isfinite(float(r["reward"])) for r in rows)
    assert (run / "checkpoint.pt").is_file() and (run / "learning_curves.png").is_file()
    loaded, args = load_policy(run / "checkpoint.pt")
    assert args.variant == "fixed"
    for a, b in zip(policy.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a.cpu(), b)


def test_resume_reproduces_the_uninterrupted_run(tmp_path, tiny_checkpoint):
    full, _ = train(_args(tmp_path / "a", tiny_checkpoint, epochs=3))
    train(_args(tmp_path / "b", tiny_checkpoint, epochs=1))
    resumed, history = train(_args(tmp_path / "b", tiny_checkpoint, epochs=3), resume=True)
    assert len(history) == 3
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_resume_with_another_structure_is_a_clear_error(tmp_path, tiny_checkpoint):
    train(_args(tmp_path, tiny_checkpoint, epochs=1))
    with pytest.raises(CheckpointError, match="variant"):
        train(_args(tmp_path, tiny_checkpoint, epochs=2, variant="faithful"), resume=True)


def test_training_improves_reward_over_the_untrained_policy():
    """Against a reward we control (the fraction of edges that become skip_connect), 40 REINFORCE updates raise
    the mean reward of the policy above that of the same policy before training, on a fixed seed."""

    def skip_fraction(g):
        return sum(op == "skip_connect" for op in g.ops) / len(g.ops)

    env = gym.make("NATCell-v0", evaluator=CallableEvaluator(skip_fraction))
    args = NATTrainerArgs(epochs=40, train_supernet=False, policy_updates_per_epoch=1, m=4, n=2, lr=3e-3,
                          eval_inputs=32, progress=False, **TINY)  # fmt: skip
    from agents.nat_trainer import NATTrainer

    trainer = NATTrainer(args, env=env, log=False)
    before = trainer.evaluate_heldout()
    trainer.train()
    after = trainer.evaluate_heldout()
    assert after["eval_reward"] > before["eval_reward"] + 0.05, (before, after)


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


def test_train_and_transform_commands_end_to_end(tmp_path, tiny_checkpoint):
    env = dict(os.environ, NAT_GYM_CACHE=str(tmp_path / "cache"))
    run, out = tmp_path / "run", tmp_path / "transform"
    train_cmd = [str(NAT_GYM), "train", "--algo", "nat", "--epochs", "1", "--supernet", str(tiny_checkpoint),
                 "--reward-images", "120", "--out", str(run), "--no-progress", "--eval-inputs", "2",
                 "--op-embed-dim", "8", "--lift-dim", "16", "--hidden-dim", "8"]  # fmt: skip
    done = subprocess.run(train_cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (run / "checkpoint.pt").is_file() and (run / "metrics.csv").is_file()
    cmd = [str(NAT_GYM), "transform", "--arch", "DARTS_V2", "--policy", str(run / "checkpoint.pt"),
           "--supernet", str(tiny_checkpoint), "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "edges changed" in done.stdout
    report = json.loads((out / "transform.json").read_text())
    assert set(report) >= {"input", "output", "candidates"}
    assert (out / "transform.png").read_bytes()[:4] == b"\x89PNG"
    bad = subprocess.run([str(NAT_GYM), "transform", "--arch", "NOPE", "--policy", str(run / "checkpoint.pt")],
                         capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "NOPE" in bad.stderr and "Traceback" not in bad.stderr
