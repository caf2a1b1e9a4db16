"""Tests for agents.nat_trainer (Algorithm 1) and the ``train`` flags of agents.cli, with tiny budgets."""

from __future__ import annotations

import csv
import dataclasses
import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import nat_gym  # noqa: F401  (registers NATCell-v0)
from agents.cli import ALGOS, algo_fields
from agents.gcn_policy import GCNPolicy
from agents.nat_trainer import (
    STRUCTURAL_FIELDS,
    NATTrainer,
    NATTrainerArgs,
    load_policy,
    supernet_from_checkpoint,
    supernet_seed,
    train,
)
from nat_gym import rules as rule_sets
from nat_gym.cli import build_parser  # loads agents.cli:register through the entry point
from nat_gym.envs.observation import encode
from nat_gym.errors import CheckpointError, ConfigError
from nat_gym.evaluator import CallableEvaluator
from nat_gym.sampling import random_genotype

SMALL = {"op_embed_dim": 8, "lift_dim": 16, "hidden_dim": 8}


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def tiny_args(ckpt: str, out, **kw) -> NATTrainerArgs:
    base = dict(supernet=ckpt, epochs=2, out=str(out), progress=False, eval_inputs=2, eval_every=1,
                checkpoint_every=1, heldout_inputs=4, device="cpu", **SMALL)  # fmt: skip
    base.update(kw)
    return NATTrainerArgs(**base)


def read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------------------------------------- runs
def test_train_writes_logs_and_checkpoint(tiny_ckpt, tmp_path):
    out = tmp_path / "run"
    policy, history = train(tiny_args(tiny_ckpt, out))
    assert len(history) == 2
    rows = read_csv(out / "metrics.csv")
    assert [float(r["epoch"]) for r in rows] == [1.0, 2.0]
    for col in ("supernet_loss", "supernet_acc", "reward", "baseline", "entropy", "madds_saving", "invalid_edges",
                "eval_reward", "time"):  # fmt: skip
        assert col in rows[0], col
    assert all(float(r["invalid_edges"]) == 0 for r in rows)
    assert all(np.isfinite(float(r["reward"])) and -1 <= float(r["reward"]) <= 1 for r in rows)
    # six validation minibatches of 64 digits -> six policy updates per epoch (one per minibatch, as the paper)
    assert float(rows[-1]["updates"]) == 12
    for name in ("learning_curves.png", "summary.json", "checkpoint.pt"):
        assert (out / name).is_file(), name
    assert list(out.glob("events.out.tfevents.*"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["updates"] == 12
    heldout = summary["heldout"]  # agents.heldout: fresh inputs, argmax and sampled, next to the two floors
    assert heldout["inputs"] == 4 and set(heldout) == {"inputs", "argmax", "sampled", "random_valid", "identity"}
    assert heldout["identity"] == {"reward": 0.0, "madds_saving": 0.0}

    loaded, args = load_policy(out / "checkpoint.pt")
    assert isinstance(loaded, GCNPolicy) and args == tiny_args(tiny_ckpt, out)
    for (k, a), b in zip(policy.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a.cpu(), b), k
    supernet = supernet_from_checkpoint(out / "checkpoint.pt")
    assert supernet is not None and supernet.config.C == 4

    with pytest.raises(ConfigError, match="--resume"):  # an existing run is never overwritten silently
        train(tiny_args(tiny_ckpt, out))


def test_resume_reproduces_the_uninterrupted_run(tiny_ckpt, tmp_path):
    full = NATTrainer(tiny_args(tiny_ckpt, tmp_path / "full", epochs=3, eval_inputs=0), log=True)
    full.train()

    args = tiny_args(tiny_ckpt, tmp_path / "cut", epochs=3, eval_inputs=0)
    first = NATTrainer(args)
    first.train(until_epoch=1)  # "interrupted" after epoch 1 (its checkpoint is on disk)
    del first
    second = NATTrainer(args)
    assert second.resume() and second.epoch == 1
    second.train()

    assert second.epoch == full.epoch == 3 and second.updates == full.updates
    for (k, a), b in zip(full.policy.state_dict().items(), second.policy.state_dict().values()):
        assert torch.equal(a, b), k
    for (k, a), b in zip(full.supernet.state_dict().items(), second.supernet.state_dict().values()):
        assert torch.equal(a, b), k
    assert [r["reward"] for r in full.history] == [r["reward"] for r in second.history]
    assert full.baseline == second.baseline
    assert len(read_csv(tmp_path / "cut" / "metrics.csv")) == 3  # rewritten, not duplicated


def test_resume_of_a_run_saved_before_the_policy_read_the_cell_outputs(tiny_ckpt, tmp_path):
    """A fixed-GCN checkpoint written before the policy had ``non_output_embed`` (no such weight, one parameter
    fewer in Adam's state) resumes: the new weight starts at zero, without optimizer state."""
    args = tiny_args(tiny_ckpt, tmp_path / "old", epochs=2, eval_inputs=0)
    first = NATTrainer(args)
    first.train(until_epoch=1)
    path = tmp_path / "old" / "checkpoint.pt"
    payload = torch.load(path, weights_only=False)
    del payload["policy"]["non_output_embed.weight"]
    group = payload["policy_optimizer"]["param_groups"][0]
    last = group["params"].pop()
    payload["policy_optimizer"]["state"].pop(last, None)
    torch.save(payload, path)
    second = NATTrainer(args)
    assert second.resume() and second.epoch == 1
    assert torch.equal(second.policy.non_output_embed.weight, torch.zeros_like(second.policy.non_output_embed.weight))
    for (k, a), b in zip(first.policy.state_dict().items(), second.policy.state_dict().values()):
        assert k == "non_output_embed.weight" or torch.equal(a, b), k
    second.train()
    assert second.epoch == 2


@pytest.mark.parametrize(
    "change", [{"variant": "faithful"}, {"hidden_dim": 12}, {"rules": "nat"}, {"steps": 3}]
)
def test_resume_with_other_structure_names_the_field(tiny_ckpt, tmp_path, change):
    args = tiny_args(tiny_ckpt, tmp_path / "run", epochs=1, eval_inputs=0, policy_updates_per_epoch=1)
    NATTrainer(args).save()
    other = NATTrainer(dataclasses.replace(args, **change))
    (name,) = change
    assert name in STRUCTURAL_FIELDS
    with pytest.raises(CheckpointError, match=name):
        other.resume()


def test_keep_prior_reaches_the_policy_and_its_checkpoint(tiny_ckpt, tmp_path):
    args = tiny_args(tiny_ckpt, tmp_path / "keep", epochs=1, eval_inputs=0, policy_updates_per_epoch=1,
                     train_supernet=False, keep_prior=2.5)  # fmt: skip
    trainer = NATTrainer(args)
    assert trainer.policy.keep_prior == 2.5 and trainer.policy.keep_logit is not None
    trainer.train()
    policy, saved = load_policy(tmp_path / "keep" / "checkpoint.pt")
    assert saved.keep_prior == 2.5
    torch.testing.assert_close(policy.keep_logit, trainer.policy.keep_logit)
    with pytest.raises(CheckpointError, match="keep_prior"):
        NATTrainer(dataclasses.replace(args, keep_prior=0.0)).resume()


def test_checkpoint_saved_before_the_keep_prior_loads_as_the_papers_policy(tiny_ckpt, tmp_path):
    """The default keep prior is 3, but a checkpoint whose arguments predate the field holds a policy without one:
    it loads and resumes as ``keep_prior=0``, and a run with the new default refuses to resume it."""
    args = tiny_args(tiny_ckpt, tmp_path / "old", epochs=2, eval_inputs=0, train_supernet=False, keep_prior=0.0)
    assert NATTrainerArgs().keep_prior == 3.0 and NATTrainerArgs().n == 4  # the defaults (README)
    first = NATTrainer(args)
    first.train(until_epoch=1)
    path = tmp_path / "old" / "checkpoint.pt"
    payload = torch.load(path, weights_only=False)
    del payload["args"]["keep_prior"]
    torch.save(payload, path)
    policy, saved = load_policy(path)
    assert saved.keep_prior == 0.0 and policy.keep_logit is None
    second = NATTrainer(args)
    assert second.resume() and second.epoch == 1
    with pytest.raises(CheckpointError, match="keep_prior"):
        NATTrainer(dataclasses.replace(args, keep_prior=3.0)).resume()


def test_supernet_trajectory_does_not_depend_on_the_policy(tiny_ckpt, tmp_path):
    """The policy never trains the supernet and the supernet epochs draw from their own seeded streams: runs whose
    policies differ (other sizes, more inputs and samples per update, other rewards seen) train the same weights."""
    runs = []
    for k, policy_side in enumerate([{}, {"m": 2, "n": 3, "lr": 1e-2, "keep_prior": 3.0, "hidden_dim": 12}]):
        args = tiny_args(tiny_ckpt, tmp_path / str(k), epochs=2, eval_inputs=2, policy_updates_per_epoch=2,
                         **policy_side)  # fmt: skip
        trainer = NATTrainer(args, log=False)
        trainer.train()
        runs.append(trainer)
    a, b = runs
    assert [r["reward"] for r in a.history] != [r["reward"] for r in b.history]  # the policies did differ
    assert [r["supernet_loss"] for r in a.history] == [r["supernet_loss"] for r in b.history]
    for (k, x), y in zip(a.supernet.state_dict().items(), b.supernet.state_dict().values()):
        assert torch.equal(x, y), k


def test_supernet_epochs_never_replay_a_pretraining_stream(tiny_ckpt, tmp_path):
    """A seed-s run draws its supernet architectures and minibatches from a stream of its own, not from the
    ``[s, epoch]`` streams a supernet pretrained with seed s used (the default digits supernet: seed 0)."""
    from nat_gym.supernet.config import DEFAULT_TRAIN_CONFIG

    seeds = {s: NATTrainer(tiny_args(tiny_ckpt, tmp_path / str(s), seed=s), log=False).supernet_trainer.config.seed
             for s in range(3)}  # fmt: skip
    assert seeds[0] != DEFAULT_TRAIN_CONFIG.seed and all(v not in range(1000) for v in seeds.values())
    assert len(set(seeds.values())) == 3 and seeds[0] == supernet_seed(0)


def test_resume_of_missing_checkpoint_is_false(tiny_ckpt, tmp_path):
    trainer = NATTrainer(tiny_args(tiny_ckpt, tmp_path / "none", eval_inputs=0))
    assert trainer.resume() is False and trainer.epoch == 0


def test_frozen_supernet_runs_and_keeps_weights(tiny_ckpt, tmp_path):
    args = tiny_args(tiny_ckpt, tmp_path / "frozen", epochs=1, train_supernet=False, eval_inputs=0,
                     policy_updates_per_epoch=2, m=2, n=3)  # fmt: skip
    trainer = NATTrainer(args, log=False)
    before = {k: v.clone() for k, v in trainer.supernet.state_dict().items()}
    trainer.train()
    assert all(torch.equal(before[k], v) for k, v in trainer.supernet.state_dict().items())
    assert trainer.updates == 2 and trainer.timing["samples"] == 12
    assert np.isnan(trainer.history[0]["supernet_loss"])


# --------------------------------------------------------------------------------------------------------- learning
def _skip_fraction(genotype) -> float:
    return sum(op == "skip_connect" for op in genotype.ops) / len(genotype.ops)


def _mean_reward(policy: GCNPolicy, rules, betas, seed: int) -> float:
    obs = [encode(b, rules) for b in betas]
    batch = {k: np.stack([o[k] for o in obs]) for k in obs[0]}
    with torch.no_grad():
        actions, _, _ = policy.act(batch, generator=torch.Generator().manual_seed(seed))
    return float(np.mean([_skip_fraction(rules.apply(b, a)) - _skip_fraction(b) for b, a in zip(betas, actions.numpy())]))


def test_training_improves_reward_over_the_untrained_policy(tmp_path):
    """A reward we control (fraction of skip edges): a few dozen updates beat the initial policy on a fixed seed."""
    rules = rule_sets.get("nat++")
    env = gym.make("NATCell-v0", evaluator=CallableEvaluator(_skip_fraction), rules="nat++")
    args = NATTrainerArgs(epochs=4, policy_updates_per_epoch=10, m=2, n=4, lr=3e-3, train_supernet=False,
                          eval_inputs=0, progress=False, out=str(tmp_path / "toy"), device="cpu", **SMALL)  # fmt: skip
    trainer = NATTrainer(args, env=env, log=False)
    rng = np.random.default_rng(99)
    betas = [random_genotype(rng, 4, [o for o in rules.ops if o != "null"]) for _ in range(64)]
    untrained = _mean_reward(trainer.policy, rules, betas, seed=1)
    trainer.train()
    trained = _mean_reward(trainer.policy, rules, betas, seed=1)
    assert trainer.updates == 40
    assert trained > untrained + 0.05, (untrained, trained)
    assert trainer.history[-1]["reward"] > trainer.history[0]["reward"]
    assert all(r["invalid_edges"] == 0 for r in trainer.history)


def test_supernet_training_needs_a_supernet(tmp_path):
    env = gym.make("NATCell-v0", evaluator=CallableEvaluator(_skip_fraction))
    with pytest.raises(ConfigError, match="train_supernet"):
        NATTrainer(NATTrainerArgs(out=str(tmp_path), device="cpu", **SMALL), env=env)


def test_args_are_validated():
    with pytest.raises(ConfigError, match="variant"):
        NATTrainerArgs(variant="nope")
    with pytest.raises(ConfigError, match="m"):
        NATTrainerArgs(m=0)
    with pytest.raises(ConfigError, match="betas"):
        NATTrainerArgs(betas=(0.5,))
    with pytest.raises(ValueError, match="rules"):
        NATTrainerArgs(rules="nope")


# --------------------------------------------------------------------------------------------------------- cli
def test_every_field_is_a_documented_flag(capsys):
    spec = ALGOS["nat"]
    parsed = {f.name: f for f in algo_fields(spec)}
    real = {f.name: f for f in dataclasses.fields(NATTrainerArgs)}
    assert list(parsed) == list(real)
    for name, f in real.items():
        assert parsed[name].default == f.default, name
        assert parsed[name].doc, f"field {name} has no docstring"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = capsys.readouterr().out
    for name in real:
        assert "--" + name.replace("_", "-") in text, name


def test_flags_map_to_args():
    ns = build_parser().parse_args(["train", "--epochs", "3", "--reward-images", "none", "--no-train-supernet",
                                    "--betas", "0.9", "0.99", "--variant", "faithful", "--m", "2"])  # fmt: skip
    assert ns.algo == "nat" and not ns.resume
    assert (ns.epochs, ns.reward_images, ns.train_supernet, ns.betas, ns.variant, ns.m) == (
        3, None, False, [0.9, 0.99], "faithful", 2)
    assert not hasattr(ns, "lr")  # untouched flags keep the dataclass defaults
    args = NATTrainerArgs(**{k: getattr(ns, k) for k in ("epochs", "betas")})
    assert args.betas == (0.9, 0.99)


def test_resume_applies_changed_optimizer_settings(tiny_ckpt, tmp_path):
    """Issue 8 review: resuming with another --lr / --weight-decay / --betas / --supernet-momentum warned "the run
    continues with the new ones" and stored them in the checkpoint's args, but the optimizers' load_state_dict
    brought back the saved settings, so the run went on with the old ones. The state (Adam moments, momentum
    buffers) comes from the checkpoint; the settings from the resumed run's arguments."""
    out = tmp_path / "run"
    first = NATTrainer(tiny_args(tiny_ckpt, out, epochs=2, eval_inputs=0))
    first.train(until_epoch=1)
    changed = tiny_args(tiny_ckpt, out, epochs=2, eval_inputs=0, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.0,
                        supernet_momentum=0.5, supernet_weight_decay=1e-4)  # fmt: skip
    second = NATTrainer(changed)
    with pytest.warns(UserWarning, match="continues with the new ones"):
        assert second.resume()
    (policy_group,) = second.optimizer.param_groups
    assert (policy_group["lr"], policy_group["betas"], policy_group["weight_decay"]) == (1e-3, (0.9, 0.99), 0.0)
    (sn_group,) = second.supernet_trainer.optimizer.param_groups
    assert (sn_group["momentum"], sn_group["weight_decay"]) == (0.5, 1e-4)
    saved = first.optimizer.state_dict()["state"]
    for i, state in second.optimizer.state_dict()["state"].items():  # the moments are the checkpoint's
        assert torch.equal(state["exp_avg"], saved[i]["exp_avg"])
