"""RLlib's PPO with action masking on ``NATEdge-v0`` through ``ActionMaskObservation`` (issue 12 item 5), at a tiny
budget. Runs where the extra ``rllib`` is installed: an environment of its own (it downgrades Gymnasium to 1.2.2);
``.ci/run`` makes one and runs this file there, with the env checks."""

from __future__ import annotations

import math

import pytest

from nat_gym.evaluator import CallableEvaluator

pytest.importorskip("ray.rllib.algorithms.ppo", exc_type=ImportError)


def _proxy(genotype) -> float:
    """A stand-in accuracy: the fraction of skip connections in the normal cell."""
    return sum(e.op == "skip_connect" for e in genotype.normal.edges) / len(genotype.normal.edges)


@pytest.mark.slow
def test_ppo_with_action_masking_trains_and_never_takes_a_forbidden_op():
    import ray

    from agents.rllib_ppo import ppo_config

    env_config = {"rules": "nat++", "evaluator": CallableEvaluator(_proxy), "invalid_action": "raise"}
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning", ignore_reinit_error=True)
    try:
        algo = ppo_config(env_config, train_batch_size=64, minibatch_size=32, num_epochs=1,
                          hiddens=(16,)).build_algo()  # fmt: skip
        results = [algo.train() for _ in range(2)]  # a forbidden op would raise TransitionError in the env
        algo.stop()
    finally:
        ray.shutdown()
    runners = results[-1]["env_runners"]
    assert runners["num_env_steps_sampled_lifetime"] >= 128
    assert math.isfinite(runners["episode_return_mean"])
    assert results[-1]["learners"]["default_policy"]["num_module_steps_trained"] > 0
