"""Tests for agents.sb3.extractor (the GCN features extractor) and agents.cell_encoder, and learning with SB3."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.utils import obs_as_tensor

import nat_gym  # noqa: F401  (registers the envs)
from agents.cell_encoder import CellEncoder
from agents.gcn_policy import GCNPolicy
from agents.heldout import fresh_inputs, rollout_alphas
from agents.sb3 import GCNExtractor
from nat_gym import genotypes, rules
from nat_gym.envs.observation import encode, observation_space, to_pyg_batch
from nat_gym.errors import ConfigError
from nat_gym.evaluator import CallableEvaluator

RULES = rules.get("nat++")
K = RULES.num_ops
SMALL = {"op_embed_dim": 4, "lift_dim": 16, "hidden_dim": 8}


def stack(observations):
    return {k: np.stack([o[k] for o in observations]) for k in observations[0]}


def sb3_view(obs, space):
    """What an SB3 policy hands its features extractor: float tensors with a batch axis."""
    return preprocess_obs(obs_as_tensor(obs, torch.device("cpu")), space)


def extractor(space=None, seed=0, **kw) -> GCNExtractor:
    torch.manual_seed(seed)
    return GCNExtractor(space or observation_space(4, K), **{**SMALL, **kw})


# ---------------------------------------------------------------------------------------------------- encoder
def test_policy_and_extractor_share_the_encoder():
    policy = GCNPolicy(K, "fixed", **SMALL)
    assert isinstance(policy, CellEncoder)
    torch.manual_seed(0)
    encoder = CellEncoder(K, "fixed", **SMALL)
    torch.manual_seed(0)
    same = GCNPolicy(K, "fixed", **SMALL)
    batch = to_pyg_batch(encode(genotypes.get("DARTS_V2"), RULES))
    features, _ = encoder.edge_features(batch)
    assert features.shape == (16, encoder.edge_dim) == (16, 8 + 4)
    # the policy's head reads exactly the encoder's per-edge features
    assert torch.allclose(same(batch), same.head(features))
    h, emb = encoder(batch)
    assert h.shape == (12, 8) and emb.shape == (16, 4)


def test_encoder_rejects_bad_config():
    with pytest.raises(ConfigError, match="variant"):
        CellEncoder(K, "nope")
    with pytest.raises(ConfigError, match="hidden_dim"):
        CellEncoder(K, hidden_dim=0)


# ---------------------------------------------------------------------------------------------------- extractor
def test_features_layout_natcell():
    space = observation_space(4, K)
    ex = extractor(space)
    d = 8 + 4
    assert ex.features_dim == 16 * d + 2 * 8
    obs = stack([encode(g, RULES) for g in fresh_inputs(RULES, 4, 3, seed=1)])
    features = ex(sb3_view(obs, space))
    assert features.shape == (3, ex.features_dim) and torch.isfinite(features).all()
    # block i of the per-edge part is edge i's [h[dst], emb(op)] (normal edges, then reduction edges)
    edge_features, h = ex.encoder.edge_features(to_pyg_batch(obs))
    assert torch.allclose(features[:, : 16 * d], edge_features.reshape(3, 16 * d))
    pooled = h.reshape(3, 2, 6, 8).mean(2).reshape(3, 16)
    assert torch.allclose(features[:, 16 * d :], pooled)


def test_features_of_a_batch_equal_single_observations():
    space = observation_space(4, K)
    ex = extractor(space)
    singles = [encode(g, RULES) for g in fresh_inputs(RULES, 4, 4, seed=2)]
    batched = ex(sb3_view(stack(singles), space))
    for i, o in enumerate(singles):
        one = ex(sb3_view(stack([o]), space))
        assert torch.allclose(batched[i : i + 1], one, atol=1e-6)


def test_changing_one_edge_changes_its_block():
    """Per-edge information survives: the op of edge 5 is visible in edge 5's block of the features."""
    space = observation_space(4, K)
    ex = extractor(space)
    g = genotypes.get("DARTS_V2")
    ops = RULES.op_indices(g)
    valid = np.flatnonzero(RULES.mask(g)[5])
    other = next(int(o) for o in valid if o != ops[5])
    changed = RULES.apply_indices(g, np.where(np.arange(16) == 5, other, ops))[0]
    a, b = (ex(sb3_view(stack([encode(x, RULES)]), space))[0] for x in (g, changed))
    d = ex.encoder.edge_dim
    block = slice(5 * d + 8, 6 * d)  # the op-embedding half of edge 5's block
    assert not torch.allclose(a[block], b[block])


def test_features_natedge_add_the_decided_edge():
    env = gym.make("NATEdge-v0", evaluator=CallableEvaluator(lambda g: 0.5))
    space = env.observation_space
    ex = extractor(space)
    d = ex.encoder.edge_dim
    assert ex.features_dim == 17 * d + 2 * 8
    obs, _ = env.reset(seed=0)
    observations = [obs]
    for _ in range(3):  # edges 1..3 to decide next
        obs, *_ = env.step(int(np.flatnonzero(env.unwrapped.action_masks())[0]))
        observations.append(obs)
    features = ex(sb3_view(stack(observations), space))
    per_edge = features[:, : 16 * d].reshape(4, 16, d)
    for t in range(4):
        assert torch.allclose(features[t, -d:], per_edge[t, t])  # the last block is the edge of step t


def test_rejects_a_foreign_space():
    with pytest.raises(ConfigError, match="observation_space"):
        GCNExtractor(gym.spaces.Box(0, 1, (4,)))


# ---------------------------------------------------------------------------------------------------- learning
def _skip_fraction(genotype) -> float:
    return sum(op == "skip_connect" for op in genotype.ops) / len(genotype.ops)


def _greedy_skip_fraction(model, env, betas, masked: bool) -> float:
    """Mean skip fraction of the transformations the deterministic policy makes of ``betas``."""

    def act(obs, mask):
        return model.predict(obs, deterministic=True, **({"action_masks": mask} if masked else {}))[0]

    return float(np.mean([_skip_fraction(a) for a in rollout_alphas(env, act, betas)]))


LEARNING = {
    # algo: (env id, env kwargs, constructor kwargs, timesteps)
    "maskable_ppo": ("NATCell-v0", {}, {"n_steps": 32, "batch_size": 32, "n_epochs": 10, "learning_rate": 3e-3}, 384),
    "ppo": ("NATCell-v0", {}, {"n_steps": 32, "batch_size": 32, "n_epochs": 10, "learning_rate": 3e-3}, 384),
    "a2c": ("NATCell-v0", {}, {"n_steps": 8, "learning_rate": 3e-3, "normalize_advantage": True}, 384),
    # one edge per step, each step rewarded with its own edge's gain: a bandit per edge (gamma 0)
    "dqn": ("NATEdge-v0", {"reward": "shaped"}, {"learning_starts": 200, "buffer_size": 2000, "batch_size": 32,
            "train_freq": 2, "target_update_interval": 100, "exploration_fraction": 0.5, "learning_rate": 1e-3,
            "gamma": 0.0}, 1600),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("algo", list(LEARNING))
def test_extractor_learns_with_each_algorithm(algo):
    """A reward we control (the fraction of skip edges): within a few hundred steps with the GCN features, the
    training episodes' reward rises, and the greedy policy turns clearly more edges into skips than the inputs have."""
    from agents.sb3.trainer import algorithm_class

    env_id, env_kwargs, hp, steps = LEARNING[algo]
    env = gym.make(env_id, evaluator=CallableEvaluator(_skip_fraction), **env_kwargs)
    probe = gym.make(env_id, evaluator=CallableEvaluator(_skip_fraction), **env_kwargs).unwrapped
    policy_kwargs = {"features_extractor_class": GCNExtractor, "features_extractor_kwargs": SMALL, "net_arch": [32]}
    model = algorithm_class(algo)("MultiInputPolicy", env, policy_kwargs=policy_kwargs, seed=0, device="cpu", **hp)
    model.learn(steps)
    returns = model.get_env().envs[0].get_episode_rewards()  # SB3's Monitor: one total reward per episode
    quarter = len(returns) // 4
    assert quarter >= 8 and np.mean(returns[-quarter:]) > np.mean(returns[:quarter]) + 0.1, returns
    betas = fresh_inputs(RULES, 4, 16, seed=3)
    greedy = _greedy_skip_fraction(model, probe, betas, masked=algo == "maskable_ppo")
    assert greedy > np.mean([_skip_fraction(b) for b in betas]) + 0.4, greedy
