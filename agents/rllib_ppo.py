"""RLlib's PPO on ``NATEdge-v0`` with action masking (the optional extra ``rllib``; issue 12 item 5).

RLlib (new API stack) masks actions with its example module ``ActionMaskingTorchRLModule``
(``ray.rllib.examples.rl_modules.classes.action_masking_rlm``): the env's observation is
``{"observations": <flat Box>, "action_mask": <mask>}``, the default PPO networks read ``"observations"`` and the
module adds ``log(action_mask)`` to the logits, so a forbidden op is never sampled. nat-gym's
:class:`~nat_gym.wrappers.ActionMaskObservation` gives exactly that form; ``NATEdge-v0`` (one op per step,
``Discrete(K)``) suits RLlib's single categorical. Everything else is RLlib's own PPO.

The extra ``rllib`` (``ray[rllib]==2.60.0``) downgrades Gymnasium to 1.2.2: install it in an environment of its own,
never beside the core (``.ci/run`` does so and runs this module's test and the env checks there).

Usage::

    from agents.rllib_ppo import ppo_config
    algo = ppo_config({"rules": "nat++"}).build_algo()   # NATEdge-v0 on the default digits supernet
    for _ in range(10):
        print(algo.train()["env_runners"]["episode_return_mean"])
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from nat_gym.wrappers import ActionMaskObservation

__all__ = ["ENV_NAME", "make_masked_env", "ppo_config"]

ENV_NAME = "nat-gym/NATEdge-v0-action-mask"
"""The name :func:`ppo_config` registers with RLlib."""


def make_masked_env(env_config: dict[str, Any] | None = None) -> gym.Env:
    """``ActionMaskObservation(gym.make("NATEdge-v0", **env_config))``: the env RLlib's workers build."""
    import nat_gym  # noqa: F401  (registers the envs)

    return ActionMaskObservation(gym.make("NATEdge-v0", **dict(env_config or {})))


def ppo_config(env_config: dict[str, Any] | None = None, *, train_batch_size: int = 4000, minibatch_size: int = 128,
               num_epochs: int = 10, lr: float = 3e-4, hiddens: tuple[int, ...] = (256, 256),
               num_env_runners: int = 0, seed: int | None = 0) -> Any:  # fmt: skip
    """An RLlib ``PPOConfig`` training on ``NATEdge-v0`` with action masking.

    Args:
        env_config: keyword arguments of ``gym.make("NATEdge-v0", ...)`` (``rules``, ``supernet``, ``evaluator``,
            ``reward``, ...).
        train_batch_size, minibatch_size, num_epochs, lr: PPO's (RLlib's names; its defaults but the batch).
        hiddens: the policy and value heads' hidden layers (RLlib's ``head_fcnet_hiddens``).
        num_env_runners: RLlib's remote env workers (0: the env steps in the learner's process).
        seed: RLlib's ``debugging(seed=...)``.

    Returns:
        A ``ray.rllib.algorithms.ppo.PPOConfig``; ``.build_algo()`` gives the algorithm.

    Raises:
        ImportError: RLlib is not installed (``pip install 'nat-gym[rllib]'`` in an environment of its own).
    """
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from ray.rllib.examples.rl_modules.classes.action_masking_rlm import ActionMaskingTorchRLModule
    from ray.tune.registry import register_env

    register_env(ENV_NAME, make_masked_env)
    return (
        PPOConfig()
        .environment(ENV_NAME, env_config=dict(env_config or {}))
        .env_runners(num_env_runners=num_env_runners)
        .rl_module(rl_module_spec=RLModuleSpec(module_class=ActionMaskingTorchRLModule,
                                               model_config={"head_fcnet_hiddens": list(hiddens)}))  # fmt: skip
        .training(train_batch_size_per_learner=train_batch_size, minibatch_size=minibatch_size,
                  num_epochs=num_epochs, lr=lr)  # fmt: skip
        .debugging(seed=seed)
    )
