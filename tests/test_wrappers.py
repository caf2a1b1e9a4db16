"""``nat_gym.wrappers.ActionMaskObservation``: the ``{"observations", "action_mask"}`` convention (RLlib, TorchRL) on
both envs, its documented flat layout, and one real client: TorchRL's ``GymWrapper`` + ``ActionMask`` transform
collecting masked random steps (skipped without the ``torchrl`` extra)."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from test_env import _skip_fraction

from nat_gym.envs.nat_cell import NATCellEnv
from nat_gym.envs.nat_edge import NATEdgeEnv
from nat_gym.envs.observation import decode, to_pyg_batch
from nat_gym.errors import ConfigError
from nat_gym.evaluator import CallableEvaluator
from nat_gym.wrappers import ActionMaskObservation

E2, K = 16, 13


class _Last(gym.ObservationWrapper):
    """Passes the inner observation on and keeps a copy of the last one."""

    def observation(self, observation):
        self.last = {k: v.copy() for k, v in observation.items()}
        return observation


def _wrapped(cls, flat_mask: bool = True, **kwargs) -> ActionMaskObservation:
    return ActionMaskObservation(_Last(cls("nat++", evaluator=CallableEvaluator(_skip_fraction), **kwargs)), flat_mask)


def _steps(env: ActionMaskObservation, n: int, rng: np.random.Generator) -> list[tuple[dict, dict]]:
    """``(inner observation, wrapped observation)`` after a reset and each of ``n`` masked random steps (and the
    resets that follow terminal steps)."""
    obs, _ = env.reset(seed=0)
    out = [(env.env.last, obs)]
    for _ in range(n):
        mask = env.unwrapped.action_masks().reshape(-1, K)
        action = np.array([rng.choice(np.flatnonzero(row)) for row in mask])
        obs, _, terminated, _, _ = env.step(action if len(action) > 1 else action[0])
        out.append((env.env.last, obs))
        if terminated:
            obs, _ = env.reset()
            out.append((env.env.last, obs))
    return out


@pytest.mark.parametrize("cls, flat_mask, mask_shape, dim", [
    (NATEdgeEnv, True, (K,), 548), (NATCellEnv, True, (E2 * K,), 532), (NATCellEnv, False, (E2, K), 532)])  # fmt: skip
def test_observations_are_the_flattened_dict_and_the_mask_is_action_masks(cls, flat_mask, mask_shape, dim):
    env = _wrapped(cls, flat_mask, max_transforms=2)
    record = _steps(env, 40, np.random.default_rng(0))
    space = env.observation_space
    assert space["observations"].shape == (dim,) and space["observations"].dtype == np.float32
    assert space["action_mask"].shape == mask_shape and space["action_mask"].dtype == np.bool_
    for inner, obs in record:
        assert space.contains(obs)
        np.testing.assert_array_equal(obs["observations"], gym.spaces.flatten(env.inner_space, inner))
        back = env.unflatten(obs["observations"])
        reference = gym.spaces.unflatten(env.inner_space, obs["observations"])
        for key in env.inner_space:
            np.testing.assert_array_equal(back[key], inner[key])
            np.testing.assert_array_equal(reference[key], inner[key])
            assert back[key].dtype == inner[key].dtype
    # the mask of the last observation is the env's own, in the documented shape
    np.testing.assert_array_equal(obs["action_mask"], env.unwrapped.action_masks().reshape(mask_shape))
    assert decode(env.unflatten(obs["observations"]), env.unwrapped.rules) == (
        env.unwrapped.current_genotype if cls is NATEdgeEnv else env.unwrapped.genotype)  # fmt: skip


def test_unflatten_batches_of_arrays_and_tensors():
    env = _wrapped(NATEdgeEnv)
    record = _steps(env, 20, np.random.default_rng(1))[:21]
    flat = np.stack([obs["observations"] for _, obs in record]).reshape(3, 7, -1)
    inner = [i for i, _ in record]
    batch = env.unflatten(flat)
    tensors = env.unflatten(torch.as_tensor(flat))
    for key in env.inner_space:
        stacked = np.stack([i[key] for i in inner]).reshape(3, 7, *env.inner_space[key].shape)
        np.testing.assert_array_equal(batch[key], stacked)
        np.testing.assert_array_equal(tensors[key].numpy(), stacked.astype(np.float32))
    graphs = to_pyg_batch({k: v.reshape(21, *v.shape[2:]) for k, v in tensors.items()})
    assert graphs.num_graphs == 42 and int(graphs.edge_decide.sum()) == 21
    with pytest.raises(ConfigError, match="observations"):
        env.unflatten(flat[..., :-1])


def test_gymnasium_checker_passes_on_the_wrapped_envs():
    for env in (_wrapped(NATEdgeEnv), _wrapped(NATCellEnv), _wrapped(NATCellEnv, flat_mask=False)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gym_check_env(env, skip_render_check=True)


def test_bad_envs_raise():
    with pytest.raises(ConfigError, match="Dict"):
        ActionMaskObservation(gym.make("CartPole-v1"))


# ------------------------------------------------------------------------------------------------- TorchRL
@pytest.mark.parametrize("cls, flat_mask, categorical", [(NATEdgeEnv, True, False), (NATCellEnv, False, True)])
def test_torchrl_action_mask_transform_collects_only_valid_actions(cls, flat_mask, categorical):
    """TorchRL's GymWrapper (GymEnv's base, for an env already made and wrapped) + its ActionMask transform: a
    random-policy rollout of 300 steps samples from the masked action spec; every taken action is valid."""
    pytest.importorskip("torchrl")
    from torchrl.envs import GymWrapper, TransformedEnv
    from torchrl.envs.transforms import ActionMask

    inner = cls("nat++", evaluator=CallableEvaluator(_skip_fraction))
    valid: list[bool] = []
    step = inner.step

    def checked_step(action):
        mask = inner.action_masks().reshape(-1, K)
        valid.append(bool(mask[np.arange(len(mask)), np.asarray(action).reshape(-1)].all()))
        return step(action)

    inner.step = checked_step
    env = TransformedEnv(GymWrapper(ActionMaskObservation(inner, flat_mask), categorical_action_encoding=categorical),
                         ActionMask())  # fmt: skip
    env.set_seed(0)
    rollout = env.rollout(300, break_when_any_done=False)
    assert rollout.batch_size == torch.Size([300]) and len(valid) == 300 and all(valid)
    mask, action = rollout["action_mask"], rollout["action"]
    taken = mask.gather(-1, action.unsqueeze(-1)) if categorical else (mask & action.bool()).any(-1)
    assert taken.all() and (~mask).any()  # the masks did forbid something
    if cls is NATEdgeEnv:
        assert int(rollout["next", "done"].sum()) == 300 // E2
