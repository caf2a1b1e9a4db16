"""``BlockQNN-v0``: Gymnasium / SB3 checks, the action count and masks, invalid actions, the episode end, rewards
(shaped and deferred), info, rendering, MaskablePPO and DQN. A ``CallableBlockEvaluator`` stands in for training
except in one test of the default evaluator."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env

import nat_gym  # noqa: F401  (registers BlockQNN-v0)
from nat_gym.block_evaluator import CallableBlockEvaluator, EarlyStopEvaluator
from nat_gym.blocks import Block, action_to_layer, layer_to_action, num_actions
from nat_gym.blocks.cost import network_cost
from nat_gym.envs.blockqnn import BlockQNNEnv
from nat_gym.errors import BlockError, ConfigError


def proxy(block: Block) -> float:
    """A deterministic stand-in for the early-stop accuracy: more convolutions, more accuracy."""
    return 0.5 + 0.04 * sum(layer.type == 1 for layer in block.layers) - 0.01 * len(block)


def make(**kwargs) -> BlockQNNEnv:
    return BlockQNNEnv(evaluator=CallableBlockEvaluator(proxy), **kwargs)


def test_registered_and_checkers_pass():
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make("BlockQNN-v0", evaluator=CallableBlockEvaluator(proxy), max_index=6)
    assert isinstance(env.unwrapped, BlockQNNEnv)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the checkers warn about every contract problem ...
        # ... and recommend 1-D observations; MultiInputPolicy flattens the 2-D ones (the style of NATCell-v0)
        warnings.filterwarnings("ignore", message=".*unconventional shape.*")
        gym_check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env.unwrapped, skip_render_check=True)


def test_action_space_and_masks_follow_the_papers_count():
    env = make()
    assert env.max_index == 23 and env.action_space.n == 691
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for t in range(env.max_index):
        mask = env.action_masks()
        assert mask.sum() == num_actions(t) == 8 * (t + 1) + t * (t + 1) + 1
        valid = np.flatnonzero(mask)
        assert valid.tolist() == list(range(num_actions(t)))
        for a in range(env.action_space.n):  # masks never allow an invalid layer, and allow every valid one
            if mask[a]:
                layer = action_to_layer(t, a)
                assert layer is None or env.block.append(layer)
            else:
                with pytest.raises(BlockError):
                    action_to_layer(t, a)
        obs, _, terminated, _, info = env.step(int(rng.integers(1, num_actions(t))))
        assert np.array_equal(obs["action_mask"].astype(bool), info["action_mask"])
        assert obs["num_layers"][0] == t + 1 and env.observation_space.contains(obs)
    assert terminated and len(info["block"]) == env.max_index  # the index cap ends the episode


def test_observation_encodes_the_block():
    env = make(max_index=5)
    obs, _ = env.reset()
    assert obs["kinds"].sum() == 0 and obs["adjacency"].sum() == 0 and obs["num_layers"][0] == 0
    for layer in Block.parse("max1:0,conv3:1,add:2:0").layers:
        obs, *_ = env.step(layer_to_action(layer))
    block = env.block
    assert str(block) == "max1:0,conv3:1,add:2:0"
    assert obs["kinds"][:3].argmax(1).tolist() == [3, 1, 8] and obs["kinds"][3:].sum() == 0
    assert obs["preds"][:3].tolist() == [[0, 0], [1, 0], [2, 0]]
    assert obs["adjacency"][3, [0, 2]].tolist() == [1.0, 1.0] and obs["adjacency"].sum() == 4


def test_two_thousand_unmasked_random_actions_never_crash():
    for mode in ("terminal", "penalize"):
        env = make(max_index=8, invalid_action=mode)
        env.action_space.seed(0)
        env.reset(seed=0)
        invalid = 0
        for _ in range(2000):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            assert np.isfinite(reward) and env.observation_space.contains(obs) and not truncated
            invalid += info["invalid_action"]
            if terminated:
                env.reset()
        assert invalid > 100


def test_invalid_action_modes():
    env = make(max_index=4)
    env.reset()
    _, reward, terminated, _, info = env.step(30)  # in the action space (45) but not valid at step 0: stops, as the terminal would
    assert terminated and info["invalid_action"] and info["block"] == Block()
    assert reward == pytest.approx(env.evaluator.evaluate([Block()])[0])
    pen = make(max_index=4, invalid_action="penalize", invalid_penalty=0.25)
    pen.reset()
    assert pen.step(30)[1] == pytest.approx(reward - 0.25)
    strict = make(max_index=4, invalid_action="raise")
    strict.reset()
    with pytest.raises(ConfigError, match="not valid at step 0"):
        strict.step(30)
    with pytest.raises(ConfigError, match="action"):
        strict.step(10_000)  # outside the action space
    with pytest.raises(ConfigError, match="action"):
        strict.step(1.5)
    env.reset()
    env.step(0)
    with pytest.raises(gym.error.ResetNeeded):
        env.step(0)


def test_reward_at_the_end_shaped_and_deferred():
    env = make(max_index=6)
    env.reset()
    assert [layer_to_action(layer) for layer in Block.parse("conv3:0,conv3:1").layers] == [2, 10]
    rewards = [env.step(a)[1] for a in (2, 10)]
    _, final, terminated, _, info = env.step(0)
    assert rewards == [0.0, 0.0] and terminated
    r_T = env.evaluator.evaluate([Block.parse("conv3:0,conv3:1")])[0]
    assert final == pytest.approx(r_T) and info["block_reward"] == pytest.approx(r_T)
    assert info["accuracy"] == pytest.approx(proxy(info["block"])) and info["source"] in ("trained", "memory")
    shaped = make(max_index=6, reward_shaping=True)
    shaped.reset()
    shaped.step(2)
    shaped.step(10)
    T = 3  # two layers and the terminal
    assert shaped.step(0)[1] == pytest.approx(r_T + (T - 1) * r_T / T)
    calls = []
    deferred = BlockQNNEnv(evaluator=CallableBlockEvaluator(lambda b: calls.append(b) or 0.5), max_index=6)
    deferred.reset(options={"evaluate": False})
    _, reward, terminated, _, info = deferred.step(0)
    assert terminated and reward == 0.0 and "accuracy" not in info and calls == []
    with pytest.raises(ConfigError, match="options"):
        deferred.reset(options={"genotype": "x"})
    for bad in ("false", "no", 0, None):  # a string would have switched shaping on
        with pytest.raises(ConfigError, match="reward_shaping: expected True or False"):
            make(reward_shaping=bad)


def test_info_costs_and_render():
    env = make(max_index=4, render_mode="ansi")
    _, info = env.reset()
    assert info["params"] == network_cost(Block(), **env.evaluator.shape).params
    env.step(2)
    _, _, _, _, info = env.step(0)
    cost = network_cost(Block.parse("conv3:0"), **env.evaluator.shape)
    assert (info["params"], info["flops"], info["density"]) == (cost.params, cost.madds, 2 / 3)
    text = env.render()
    assert "conv3" in text and "reward" in text
    image = make(max_index=4, render_mode="rgb_array")
    image.reset()
    image.step(2)
    frame = image.render()
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8
    with pytest.raises(ConfigError, match="render_mode"):
        make(render_mode="human")
    with pytest.raises(ConfigError, match="max_index"):
        make(max_index=0)
    with pytest.raises(ConfigError, match="evaluator"):
        BlockQNNEnv(evaluator=object())
    with pytest.raises(ConfigError, match="evaluator"):
        BlockQNNEnv(evaluator=CallableBlockEvaluator(proxy), mu=1.0)


def test_default_evaluator_trains_on_digits():
    env = gym.make("BlockQNN-v0", max_index=3)
    assert isinstance(env.unwrapped.evaluator, EarlyStopEvaluator)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(0)  # the empty block: its stacked network is trained briefly
    assert terminated and 0.0 <= info["accuracy"] <= 1.0 and np.isfinite(reward)


def test_maskable_ppo_and_dqn_run():
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import DQN

    env = make(max_index=4)
    model = MaskablePPO("MultiInputPolicy", env, n_steps=32, batch_size=16, n_epochs=1, seed=0, device="cpu")
    model.learn(64)
    obs, _ = env.reset()
    action, _ = model.predict(obs, action_masks=env.action_masks())
    assert env.action_masks()[int(action)]
    dqn = DQN("MultiInputPolicy", make(max_index=4), learning_starts=16, buffer_size=200, seed=0, device="cpu")
    dqn.learn(64)  # no masks: invalid actions stop the block
