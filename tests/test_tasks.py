"""Task sets: pinned inputs (digests), disjointness of training and test inputs, the pins of an environment, and
the evaluation budget (:mod:`nat_gym.budget`)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import nat_gym  # noqa: F401  (registers NATCell-v0)
from nat_gym import genotypes as named
from nat_gym import rules as rule_sets
from nat_gym.budget import BudgetedEvaluator, BudgetExhausted
from nat_gym.envs import tasks
from nat_gym.envs.nat_cell import NATCellEnv
from nat_gym.errors import ConfigError
from nat_gym.evaluator import CallableEvaluator
from nat_gym.sampling import random_genotype
from nat_gym.supernet.checkpoint import content_hash, save_checkpoint
from nat_gym.supernet.config import SupernetConfig
from nat_gym.supernet.model import Supernet


def _skips(g) -> float:
    return sum(o == "skip_connect" for o in g.ops) / len(g.ops)


# ------------------------------------------------------------------------------------------------- pinning
def test_registered_task_sets_match_their_pinned_digests():
    assert {"digits/test-200-v0", "digits/named-v0"} <= set(tasks.names())
    for name in tasks.names():
        t = tasks.get(name)  # raises if the inputs drifted from the pinned digest
        assert t.inputs_digest() == t.digest
        assert len(set(t.inputs)) == len(t.inputs) == len(t.input_names)
    test = tasks.get("digits/test-200-v0")
    assert len(test) == 200 and all("null" not in g.ops and g.steps == 4 for g in test.inputs)
    assert tasks.get("digits/named-v0").input_names == ("DARTS_V1", "DARTS_V2", "VGG", "ResBlock", "MobileNetV2",
                                                         "R1", "R2", "R3", "R4", "R5")  # fmt: skip


def test_changed_inputs_are_refused():
    t = tasks.get("digits/named-v0")
    moved = dataclasses.replace(t, build=lambda: (("DARTS_V2",), (named.get("DARTS_V2"),)))
    with pytest.raises(ConfigError, match="digest"):
        tasks.get(moved)
    with pytest.raises(ConfigError, match="unknown"):
        tasks.get("digits/nope-v0")


def test_task_set_from_a_file(tmp_path):
    path = tmp_path / "inputs.json"
    path.write_text(json.dumps({"inputs": {"mine": str(named.get("VGG")), "darts": "DARTS_V2"}}))
    t = tasks.get(str(path))
    assert t.name == f"file:{path}" and t.input_names == ("mine", "darts")
    assert t.inputs == (named.get("VGG"), named.get("DARTS_V2"))
    assert tasks.get(t.name).digest == t.digest
    path.write_text(json.dumps({"inputs": ["DARTS_V1"], "oops": 1}))
    with pytest.raises(ConfigError, match="unknown keys"):
        tasks.get(str(path))


# ------------------------------------------------------------------------------------------------- disjointness
def test_test_sets_are_disjoint_and_reserved():
    a, b = (set(tasks.get(n).inputs) for n in ("digits/test-200-v0", "digits/named-v0"))
    assert not a & b
    assert tasks.reserved_inputs("NATCell-v0") == frozenset(a | b)


def test_training_inputs_never_coincide_with_a_test_input():
    env = NATCellEnv("nat++", evaluator=CallableEvaluator(_skips))
    first = env.reset(seed=0)[1]["genotype"]
    wrapped = tasks.ExcludeInputs(NATCellEnv("nat++", evaluator=CallableEvaluator(_skips)), excluded=[first])
    again = wrapped.reset(seed=0)[1]["genotype"]
    assert again != first and wrapped.resampled == 1
    assert wrapped.reset(seed=0)[1]["genotype"] == again  # still reproducible
    with pytest.raises(ConfigError, match="test input"):
        wrapped.reset(options={"genotype": first})
    assert wrapped.action_masks().shape == (16 * 13,)
    # with the default exclusion (every registered test input), seeded resets never return one
    guarded = tasks.ExcludeInputs(NATCellEnv("nat++", evaluator=CallableEvaluator(_skips)))
    reserved = tasks.reserved_inputs()
    assert all(guarded.reset(seed=s)[1]["genotype"] not in reserved for s in range(50))


# ------------------------------------------------------------------------------------------------- pins
def test_pin_names_the_supernet_by_content(tmp_path):
    torch.manual_seed(0)
    cfg = SupernetConfig(C=4, layers=3, ops=rule_sets.get("nat++").ops, num_classes=10, in_channels=1)
    net = Supernet(cfg)
    path = save_checkpoint(tmp_path / "a.pt", net)
    task = tasks.get("digits/named-v0")
    env = task.make_env(supernet=str(path), cost_weight=0.5, device="cpu")
    pin = task.pin(env)
    assert pin["supernet"] == content_hash(net) and pin["cost_weight"] == 0.5 and pin["rules"] == "nat++"
    assert pin["task_digest"] == task.digest and pin["env_version"].startswith("NATCell-v0 nat-gym ")
    with torch.no_grad():
        next(net.parameters()).add_(1e-6)
    assert content_hash(net) != pin["supernet"]
    with pytest.raises(ConfigError, match="pinned"):
        task.make_env(supernet=str(path), rules="nat")


# ------------------------------------------------------------------------------------------------- budget
def test_budget_counts_new_scores_once_and_stops_exactly():
    calls = []
    base = CallableEvaluator(lambda g: calls.append(g) or _skips(g))
    rng = np.random.default_rng(0)
    gs = [random_genotype(rng) for _ in range(6)]
    ev = BudgetedEvaluator(base, budget=4, free=[gs[0]])
    ev.evaluate([gs[0], gs[1], gs[1]])  # the free one and a repeat cost nothing
    assert ev.used == 1 and ev.requested == 3
    ev.evaluate([gs[1], gs[2]])
    assert ev.used == 2 and ev.seen(gs[2]) and not ev.seen(gs[3])
    with pytest.raises(BudgetExhausted) as e:
        ev.evaluate([gs[3], gs[4], gs[5]])  # two fit, the third would exceed
    assert e.value.used == ev.used == 4 == ev.budget and ev.remaining == 0
    assert gs[5] not in calls and gs[4] in calls
    ev.evaluate([gs[2], gs[4]])  # scored ones stay free after the budget
    with pytest.raises(BudgetExhausted):
        ev.evaluate([gs[5]])
    counting = BudgetedEvaluator(base)
    counting.evaluate(gs + gs)
    assert counting.used == 6 and counting.remaining is None
    with pytest.raises(ConfigError, match="budget"):
        BudgetedEvaluator(base, budget=-1)
