"""Search baselines (:mod:`agents.search`) and the equal-budget accounting of both protocols: every algorithm's run
stops at exactly the budget of reward evaluations, counted the same way (a new architecture scored; repeats free)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import nat_gym  # noqa: F401  (registers NATCell-v0)
from agents.search import SEARCHES
from agents.search import load as load_search
from agents.search.base import Objective, Stalled
from nat_gym import genotypes as named
from nat_gym.budget import BudgetedEvaluator, BudgetExhausted
from nat_gym.errors import ConfigError
from nat_gym.evaluator import CallableEvaluator
from nat_gym.genotype import Genotype

pytest.importorskip("optuna")


def _skips(g) -> float:
    """A separable reward: the fraction of skip_connect edges (its optimum: every edge that may, becomes a skip)."""
    return sum(o == "skip_connect" for o in g.ops) / len(g.ops)


def _objective(budget: int, start: str = "DARTS_V2", checkpoints=(), **kwargs) -> Objective:
    beta = named.get(start)
    calls = []

    def fn(g):
        calls.append(g)
        return _skips(g)

    ev = BudgetedEvaluator(CallableEvaluator(fn), budget, free=[beta])
    obj = Objective(gym.make("NATCell-v0", evaluator=ev), beta, checkpoints=checkpoints, **kwargs)
    obj.calls = calls  # type: ignore[attr-defined]
    return obj


def _optimum(obj: Objective) -> float:
    skip = obj.env.unwrapped.rules.index("skip_connect")
    can = sum(skip in c for c in obj.choices)
    return can / obj.num_edges - _skips(obj.start)


@pytest.mark.parametrize("algo", sorted(SEARCHES))
def test_every_search_stops_at_exactly_the_budget(algo):
    search, args_cls = load_search(algo)
    obj = _objective(40, checkpoints=(10, 20, 30))
    with pytest.raises(BudgetExhausted):
        search(obj, np.random.default_rng(0), args_cls())
    trace = obj.finish()
    assert obj.used == 40 and obj.stop_reason == "budget"
    assert len(set(obj.calls)) == len(obj.calls) == 41  # 40 new candidates and the free input, each scored once
    assert [s.checkpoint for s in trace] == [s.evaluations for s in trace] == [10, 20, 30, 40]
    rewards = [s.best.reward for s in trace]
    assert rewards == sorted(rewards) and rewards[-1] > 0  # incumbents never get worse; all beat the identity
    best = trace[-1].best
    assert obj.env.unwrapped.rules.validate_transformation(obj.start, best.genotype) == []
    assert best.reward == pytest.approx(_skips(best.genotype) - _skips(obj.start))
    # the same seed, the same search
    again = _objective(40)
    with pytest.raises(BudgetExhausted):
        search(again, np.random.default_rng(0), args_cls())
    assert again.best.genotype == best.genotype


@pytest.mark.parametrize("algo", ["local-search", "evolution", "ddpnas", "bayesopt"])
def test_model_based_and_local_searches_beat_random_search_on_a_separable_reward(algo):
    results = {}
    for name in ("random", algo):
        search, args_cls = load_search(name)
        obj = _objective(300)
        with pytest.raises(BudgetExhausted):
            search(obj, np.random.default_rng(1), args_cls())
        results[name] = obj.best.reward
    assert results[algo] > results["random"]
    if algo == "local-search":  # hill climbing solves a separable reward exactly
        assert results[algo] == pytest.approx(_optimum(obj))


def test_a_search_that_keeps_asking_the_same_candidate_stalls():
    obj = _objective(10, max_requests=25)
    action = obj.identity
    with pytest.raises(Stalled):
        while True:
            obj.score(action)
    assert obj.used == 0 and obj.stop_reason == "stalled" and len(obj.finish()) == 1
    bad = list(obj.identity)
    conv = obj.env.unwrapped.rules.index("conv_5x5")  # no sep_conv may become a full conv
    bad[0] = conv
    with pytest.raises(ConfigError, match="allowed"):
        _objective(10).score(bad)


def test_algorithm_arguments_are_checked():
    with pytest.raises(ConfigError, match="population_size"):
        load_search("evolution")[1](population_size=4, sample_size=5)
    with pytest.raises(ConfigError, match="sampler"):
        load_search("bayesopt")[1](sampler="cmaes")
    with pytest.raises(ConfigError, match="start"):
        load_search("local-search")[1](start="middle")


def test_amortised_algorithms_spend_exactly_the_budget(tmp_path):
    """The NAT trainer (which scores inputs and samples in one batched call, then steps) spends exactly the budget;
    the floors spend nothing."""
    from agents.bench.algorithms import make_agent
    from nat_gym.envs.tasks import ExcludeInputs

    for budget in (7, 12):
        ev = BudgetedEvaluator(CallableEvaluator(_skips), budget)
        env = ExcludeInputs(gym.make("NATCell-v0", evaluator=ev))
        agent = make_agent("nat", env, 0, {"lift_dim": 16, "hidden_dim": 8, "op_embed_dim": 8})
        agent.learn(budget // 2)
        assert budget // 2 <= ev.used <= budget // 2 + 1  # one update scores an input and its transformation
        try:  # an update that would overshoot the budget raises after spending what was left
            agent.learn(budget)
        except BudgetExhausted:
            assert budget % 2  # with an even budget the updates (two new scores each) end exactly on it
        assert ev.used == budget
    floor = make_agent("random-valid", env, 0, {})
    floor.learn(budget)
    assert ev.used == budget  # the floor spent nothing more
    with pytest.raises(ConfigError, match="fixed by the bench"):
        make_agent("nat", env, 0, {"reward_images": 64})


def test_amortised_protocol_rows_and_training_envs():
    """run_amortised on a cheap reward: the NAT run ends at exactly the budget; the floors spend nothing and may train
    in NATEdge-v0 too; NAT only trains in NATCell-v0."""
    from agents.bench.protocols import Context, run_amortised
    from nat_gym.envs import tasks

    task = tasks.get("digits/named-v0")
    env = task.make_env(evaluator=CallableEvaluator(_skips))
    ctx = Context(task, env, task.pin(env), reserved=tasks.reserved_inputs(), train_env_id="NATCell-v0")
    small = {"lift_dim": 16, "hidden_dim": 8, "op_embed_dim": 8}
    rows = run_amortised(ctx, "nat", 0, budget=9, num_checkpoints=3, samples=2, hyperparams=small)
    assert len(rows) == 3 * 2 * len(task)  # checkpoints x modes x inputs
    assert sorted({(r["checkpoint"], r["evaluations"]) for r in rows}) == [(3, 4), (6, 6), (9, 9)]
    assert {r["stop"] for r in rows if r["checkpoint"] == 9} == {"budget"}
    for r in rows:  # every row's reward is the env's reward of its transformation
        start, result = Genotype.parse(r["start"]), Genotype.parse(r["result"])
        assert r["reward"] == pytest.approx(_skips(result) - _skips(start))
        assert env.unwrapped.rules.validate_transformation(start, result) == []
    ctx.train_env_id = "NATEdge-v0"
    floor = run_amortised(ctx, "random-valid", 0, budget=9, num_checkpoints=3, samples=0)
    assert {(r["evaluations"], r["stop"]) for r in floor if r["checkpoint"] == 9} == {(0, "no-training")}
    with pytest.raises(ConfigError, match="nat trains in NATCell-v0"):
        run_amortised(ctx, "nat", 0, budget=9)
