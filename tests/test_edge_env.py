"""``NATEdge-v0``: the NATCell-v0 MDP edge by edge. API checkers, masks, observations, the equivalence with
``NATCell-v0`` (same ``alpha``, same total reward for any joint action under every option), invalid actions, copies,
the graph view and MaskablePPO. Supernet-backed envs use a tiny random-init supernet (``test_env._supernet``)."""

from __future__ import annotations

import copy
import math
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_env import RULE_NAMES, _assert_loggable, _assert_same, _skip_fraction, _supernet

import nat_gym  # noqa: F401  (registers the envs)
from nat_gym.envs.nat_cell import NATCellEnv
from nat_gym.envs.nat_edge import NATEdgeEnv
from nat_gym.envs.observation import decode, edge_observation_space, edge_one_hot, encode, to_pyg_batch
from nat_gym.errors import ConfigError, TransitionError
from nat_gym.evaluator import CallableEvaluator

E2, K = 16, 13  # flat edges (2E) and NAT++ ops of a 4-step genotype


def _fast(cls=NATEdgeEnv, rules: str = "nat++", **kwargs):
    return cls(rules, evaluator=CallableEvaluator(_skip_fraction), **kwargs)


def _make(env_id: str = "NATEdge-v0", rules: str = "nat++", **kwargs):
    return gym.make(env_id, rules=rules, supernet=_supernet(rules), dataset="digits", device="cpu", **kwargs)


def _masked_op(env, rng: np.random.Generator) -> int:
    return int(rng.choice(np.flatnonzero(env.unwrapped.action_masks())))


# ------------------------------------------------------------------------------------------------- API checkers
@pytest.mark.parametrize("rules", RULE_NAMES)
@pytest.mark.parametrize("reward", ["final", "shaped"])
def test_gymnasium_and_sb3_env_checkers(rules, reward):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = _make(rules=rules, reward=reward, reward_images=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gym_check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env.unwrapped, skip_render_check=True)


def test_make_spaces_and_first_observation():
    env = _make()
    assert env.spec.id == "NATEdge-v0"
    u = env.unwrapped
    assert isinstance(u, NATEdgeEnv) and env.action_space == gym.spaces.Discrete(K)
    assert env.observation_space == edge_observation_space(4, K)
    obs, info = env.reset(seed=0, options={"genotype": "DARTS_V2"})
    assert env.observation_space.contains(obs) and u.edge == 0
    np.testing.assert_array_equal(obs["edge"], edge_one_hot(0, 4))
    mask = u.action_masks()
    assert mask.shape == (K,) and mask.dtype == bool
    np.testing.assert_array_equal(mask, info["action_mask"])
    np.testing.assert_array_equal(mask, u.rules.mask(u.genotype)[0])
    assert 0.0 <= info["acc"] <= 1.0 and info["genotype"] == u.genotype == u.current_genotype


def test_unmasked_random_actions_raise_nothing():
    """2,000 unmasked random actions ("keep": an invalid op leaves the edge as in beta)."""
    env = _fast(max_transforms=2)
    env.action_space.seed(0)
    env.reset(seed=0)
    invalid, episodes = 0, 0
    for i in range(2000):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert not truncated and math.isfinite(reward) and env.observation_space.contains(obs)
        assert info["edge"] == i % E2
        if info["edge"] == E2 - 1:
            invalid += info["invalid_edges"]
            assert env.rules.validate_transformation(info["genotype_before"], info["genotype_after"]) == []
        if terminated:
            episodes += 1
            env.reset()
    assert episodes == 2000 // (2 * E2) and invalid > 0


# ------------------------------------------------------------------------------------------------- equivalence
def _edge_episode(env, seed, actions: np.ndarray, options=None):
    """Reset with ``seed`` and feed one op per step; every step's ``(obs, reward, terminated, info)``."""
    obs, info = env.reset(seed=seed, options=options)
    out = [(obs, 0.0, False, info)]
    for a in actions.reshape(-1):
        obs, reward, terminated, _, info = env.step(a)
        out.append((obs, reward, terminated, info))
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**16),
    reward=st.sampled_from(["final", "shaped"]),
    invalid_action=st.sampled_from(["keep", "penalize"]),
    cost_weight=st.sampled_from([0.0, 0.7]),
    max_transforms=st.sampled_from([1, 2]),
    supernet=st.booleans(),
    masked=st.floats(0.0, 1.0),
)
def test_edge_by_edge_reaches_natcell_alpha_and_total_reward(
    seed, reward, invalid_action, cost_weight, max_transforms, supernet, masked
):
    """For any joint action (valid edges with probability ``masked``, otherwise any op), NATEdge-v0 fed its
    components reaches NATCell-v0's alpha and total reward, transformation after transformation, with the
    same minibatches (``reward_images=64`` on the supernet) and NATCell's info at the end of each transformation;
    the mask of step ``t`` is NATCell's mask row of edge ``t``."""
    kwargs = {"invalid_action": invalid_action, "cost_weight": cost_weight, "max_transforms": max_transforms}
    if supernet:
        cell, edge = _make("NATCell-v0", reward_images=64, **kwargs), _make(reward=reward, reward_images=64, **kwargs)
    else:
        cell, edge = _fast(NATCellEnv, **kwargs), _fast(reward=reward, **kwargs)
    rng = np.random.default_rng(seed)
    _, cell_info = cell.reset(seed=seed)
    _, edge_info = edge.reset(seed=seed)
    assert cell_info.keys() == edge_info.keys() and cell_info["genotype"] == edge_info["genotype"]
    for _ in range(max_transforms):
        rows = cell.unwrapped.action_masks().reshape(E2, K)
        joint = np.array([rng.choice(np.flatnonzero(r)) if rng.random() < masked else rng.integers(K) for r in rows])
        _, cell_reward, cell_done, _, cell_info = cell.step(joint)
        total = 0.0
        for t in range(E2):
            np.testing.assert_array_equal(edge.unwrapped.action_masks(), rows[t])
            _, r, edge_done, _, info = edge.step(joint[t])
            total += r
            if reward == "final" and t < E2 - 1:
                assert r == 0.0
            assert edge_done == (cell_done and t == E2 - 1)
        assert info["genotype"] == info["genotype_after"] == cell_info["genotype_after"] == cell.unwrapped.genotype
        if reward == "final":
            assert total == cell_reward
        else:
            assert total == pytest.approx(cell_reward, abs=1e-9)
        for key, value in cell_info.items():
            if key != "action_mask":
                assert info[key] == value, key
        np.testing.assert_array_equal(info["action_mask"], cell_info["action_mask"][:K])


def test_invalid_action_raise_matches_natcell():
    """``invalid_action="raise"``: valid joint actions give NATCell's result; an invalid op raises at its edge (the
    state does not change) where NATCell raises for the joint action."""
    cell, edge = _fast(NATCellEnv, invalid_action="raise"), _fast(invalid_action="raise")
    rng = np.random.default_rng(0)
    for seed in range(5):
        cell.reset(seed=seed)
        edge.reset(seed=seed)
        rows = cell.action_masks().reshape(E2, K)
        joint = np.array([rng.choice(np.flatnonzero(r)) for r in rows])
        bad = next(t for t in range(seed, E2) if not rows[t].all())
        wrong = joint.copy()
        wrong[bad] = np.flatnonzero(~rows[bad])[0]
        with pytest.raises(TransitionError, match=f"new_ops\\[{bad}\\]"):
            cell.step(wrong)
        for t in range(bad):
            edge.step(joint[t])
        obs = edge.unwrapped._observation()
        with pytest.raises(TransitionError, match=f"new_ops\\[{bad}\\]"):
            edge.step(wrong[bad])
        assert edge.edge == bad
        _assert_same(edge.unwrapped._observation(), obs)
        for t in range(bad, E2):
            _, r, done, _, info = edge.step(joint[t])
        _, cell_reward, _, _, cell_info = cell.step(joint)
        assert done and r == cell_reward and info["genotype_after"] == cell_info["genotype_after"]


# ------------------------------------------------------------------------------------------------- observations
@pytest.mark.parametrize("reward", ["final", "shaped"])
def test_observation_info_and_render_follow_the_partial_transformation(reward):
    env = _fast(reward=reward, reward_images=None, render_mode="ansi")
    rng = np.random.default_rng(3)
    obs, info = env.reset(seed=3)
    beta, e, chosen = env.genotype, E2 // 2, []
    for t in range(E2):
        assert decode(obs, env.rules) == env.current_genotype
        np.testing.assert_array_equal(obs["edge"], edge_one_hot(t, 4))
        np.testing.assert_array_equal(obs["action_mask"][t // e, t % e] != 0, env.action_masks())
        op = _masked_op(env, rng)
        chosen.append(env.rules.ops[op])
        obs, _, _, _, info = env.step(op)
        assert info["edge"] == t and info["genotype"].ops == (*chosen, *beta.ops[t + 1 :])
        if t < E2 - 1:
            assert info["genotype"] == env.current_genotype and info["invalid_edges"] == 0
            assert "edges changed" in env.render()
        if reward == "shaped":
            assert info["acc"] == _skip_fraction(info["genotype"])
        _assert_loggable(info)
    assert env.genotype == info["genotype_after"] == env.current_genotype and env.edge == 0
    assert "accuracy" in env.render()
    assert encode(info["genotype_after"], env.rules)["ops"].tolist() == obs["ops"].tolist()


def test_info_values_are_loggable_under_every_option():
    for kwargs in ({"reward": "shaped", "reward_images": 64, "invalid_action": "penalize", "cost_weight": 0.5},
                   {"max_transforms": 2, "invalid_action": "raise"}):  # fmt: skip
        env = _make(**kwargs)
        rng = np.random.default_rng(1)
        for options in (None, {"score": False}, {"genotype": "VGG"}):
            _, info = env.reset(seed=0, options=options)
            _assert_loggable(info)
            terminated = False
            while not terminated:
                op = env.action_space.sample() if kwargs["invalid_action"] != "raise" else _masked_op(env, rng)
                _, reward, terminated, _, info = env.step(op)
                _assert_loggable(info)
                assert isinstance(reward, float)


def test_to_pyg_batch_marks_the_decided_edge():
    env = _fast()
    obs0, _ = env.reset(seed=0)
    obs1, *_ = env.step(_masked_op(env, np.random.default_rng(0)))
    for t, obs in enumerate((obs0, obs1)):
        graphs = to_pyg_batch(obs)
        assert graphs.edge_decide.dtype == torch.bool and graphs.edge_decide.shape == (E2,)
        assert graphs.edge_decide.nonzero().flatten().tolist() == [t]
    batched = {k: np.stack([obs0[k], obs1[k]]) for k in obs0}
    graphs = to_pyg_batch(batched)
    assert graphs.edge_decide.nonzero().flatten().tolist() == [0, E2 + 1]  # observation 1: graph 2, its edge 1
    assert graphs.get_example(2).edge_decide.nonzero().flatten().tolist() == [1]
    assert not hasattr(to_pyg_batch({k: v for k, v in obs0.items() if k != "edge"}), "edge_decide")
    with pytest.raises(ConfigError, match="edge"):
        to_pyg_batch({**obs0, "edge": obs0["edge"][:, :3]})


# ------------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("action", [13, -1, 2.0, np.array([1, 2]), True, "conv_3x3"])
def test_bad_actions_raise(action):
    env = _fast()
    env.reset(seed=0)
    with pytest.raises(ConfigError, match="action"):
        env.step(action)
    assert env.edge == 0


def test_accepted_action_forms():
    env = _fast()
    env.reset(seed=0, options={"genotype": "DARTS_V2"})
    op = int(np.flatnonzero(env.action_masks())[0])
    for t, a in enumerate([op, np.int32(op), np.array(op), np.array([op], dtype=np.uint8)]):
        env.step(a)
        assert env.edge == t + 1


def test_bad_arguments_raise():
    with pytest.raises(ConfigError, match="reward"):
        _fast(reward="dense")
    with pytest.raises(ConfigError, match="invalid_action"):
        _fast(invalid_action="ignore")
    with pytest.raises(gym.error.ResetNeeded):
        _fast().step(0)
    with pytest.raises(gym.error.ResetNeeded):
        _fast().current_genotype  # noqa: B018


# ------------------------------------------------------------------------------------------------- copies
@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_envs_pickle_and_deepcopy_mid_episode(how):
    """A copy taken in the middle of a transformation continues it exactly as the original does; a ``gym.make``
    env round-trips too."""
    env = _make(reward="shaped", reward_images=64, max_transforms=2)
    rng = np.random.default_rng(0)
    env.reset(seed=3)
    for _ in range(5):
        env.step(_masked_op(env, rng))
    twin = pickle.loads(pickle.dumps(env)) if how == "pickle" else copy.deepcopy(env)
    a, b = env.unwrapped, twin.unwrapped
    assert a.evaluator is not b.evaluator and a._ops is not b._ops and b._view.__wrapped__.__self__ is b
    assert (b.edge, b.genotype, b.current_genotype) == (a.edge, a.genotype, a.current_genotype)
    env.action_space.seed(1)
    actions = [env.action_space.sample() for _ in range(40)]
    copied = [twin.step(x) for x in actions]
    assert a.edge == 5
    original = [env.step(x) for x in actions]
    for x, y in zip(copied, original):
        for u, v in zip(x, y):
            _assert_same(u, v)


# ------------------------------------------------------------------------------------------------- SB3
def test_maskable_ppo_takes_only_valid_actions():
    from sb3_contrib import MaskablePPO

    env = _fast(max_transforms=1)
    seen = []
    step = env.step
    env.step = lambda a: (seen.append(bool(env.action_masks()[int(a)])), step(a))[1]
    model = MaskablePPO("MultiInputPolicy", env, n_steps=64, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=128)
    assert len(seen) >= 128 and all(seen)
