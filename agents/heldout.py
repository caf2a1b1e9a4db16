"""Held-out scoring of a trained agent: its mean reward on fixed fresh input architectures, next to two floors.

Every ``nat-gym train`` algorithm ends with the same report (``summary.json``'s ``"heldout"``), and
``scripts/evidence.py`` scores its policies the same way:

- **inputs**: ``n`` fresh random architectures (:func:`fresh_inputs`: the env's input distribution, drawn from
  their own seed, never the training stream; 200 from seed 123456 by default);
- **reward**: ``acc(alpha) - acc(beta)`` on the whole validation split with the evaluator's current weights (the
  deterministic reward, whatever minibatch size the training rewards used), and the relative MAdds saving of the
  stand-alone network (:func:`score`);
- **modes**: ``argmax`` (the most likely transformation: ``deterministic=True`` for SB3) and ``sampled`` (one
  transformation sampled per input, from a fixed seed);
- **floors**: ``random_valid`` (every edge picks uniformly among the ops the rules allow it,
  :func:`nat_gym.sampling.random_valid_action`, seed 7) and
  ``identity`` (no change: reward 0, saving 0). A useful agent beats both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from nat_gym.cost import network_cost
from nat_gym.evaluator import Evaluator
from nat_gym.genotype import Genotype
from nat_gym.rules import TransitionRules
from nat_gym.sampling import random_genotype, random_valid_action

__all__ = [
    "FRESH_INPUTS",
    "FRESH_SEED",
    "RANDOM_SEED",
    "fresh_inputs",
    "score",
    "rollout_alphas",
    "gcn_transform",
    "heldout_report",
]

FRESH_INPUTS = 200
"""Fresh input architectures of the final held-out report."""
FRESH_SEED = 123_456
"""Seed of the fresh input architectures (the same in ``scripts/evidence.py``)."""
RANDOM_SEED = 7
"""Seed of the random-valid floor."""

Transform = Callable[[Sequence[Genotype], bool], list[Genotype]]
"""``transform(betas, deterministic) -> alphas``: what an agent makes of each input."""


def fresh_inputs(rules: TransitionRules, steps: int = 4, n: int = FRESH_INPUTS, seed: int = FRESH_SEED) -> list[Genotype]:
    """``n`` random input architectures drawn as the env draws them (ops without ``null``) from their own seed."""
    rng = np.random.default_rng(seed)
    ops = [o for o in rules.ops if o != "null"]
    return [random_genotype(rng, steps, ops) for _ in range(n)]


def score(
    evaluator: Evaluator, cost_config: Mapping[str, Any], betas: Sequence[Genotype], alphas: Sequence[Genotype]
) -> tuple[np.ndarray, np.ndarray]:
    """Rewards ``acc(alpha) - acc(beta)`` on the whole validation split and relative MAdds savings.

    Args:
        evaluator: scores the genotypes (``batch=None``: every validation image).
        cost_config: the stand-alone network's shape (``env.unwrapped.cost_config``).
        betas, alphas: inputs and their transformations, in the same order.

    Shapes:
        - **output:** rewards :math:`[n]`, savings :math:`[n]`
    """
    acc_b, acc_a = evaluator.evaluate(list(betas)), evaluator.evaluate(list(alphas))
    mb = np.array([network_cost(b, **cost_config).madds for b in betas], dtype=float)
    ma = np.array([network_cost(a, **cost_config).madds for a in alphas], dtype=float)
    return acc_a - acc_b, (mb - ma) / mb


def rollout_alphas(
    env: gym.Env, act: Callable[[Any, np.ndarray], Any], betas: Sequence[Genotype]
) -> list[Genotype]:
    """The architecture an agent makes of each input, by playing one episode per input in ``env``.

    Works for any nat-gym env (``NATCell-v0``: one step; ``NATEdge-v0``: one step per edge) and any agent:
    ``act(observation, action_mask) -> action``. Inputs are not scored at ``reset``; the episode's last
    ``info["genotype_after"]`` is the result.
    """
    base = env.unwrapped
    alphas = []
    for beta in betas:
        obs, _ = env.reset(options={"genotype": beta, "score": False})
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(act(obs, base.action_masks()))
            done = terminated or truncated
        alphas.append(info["genotype_after"])
    return alphas


def gcn_transform(policy: Any, rules: TransitionRules, seed: int) -> Transform:
    """The :data:`Transform` of a NAT :class:`~agents.gcn_policy.GCNPolicy`: one batched pass over all inputs;
    sampled transformations come from a generator seeded with ``seed`` (on the policy's device)."""
    import torch

    from nat_gym.envs.observation import encode

    @torch.no_grad()
    def transform(betas: Sequence[Genotype], deterministic: bool) -> list[Genotype]:
        encoded = [encode(b, rules) for b in betas]
        obs = {k: np.stack([o[k] for o in encoded]) for k in encoded[0]}
        gen = torch.Generator(device=policy.device).manual_seed(seed)
        actions, _, _ = policy.act(obs, deterministic=deterministic, generator=gen)
        return [rules.apply(b, a.tolist(), invalid="raise") for b, a in zip(betas, actions.cpu().numpy())]

    return transform


def heldout_report(
    evaluator: Evaluator,
    cost_config: Mapping[str, Any],
    rules: TransitionRules,
    betas: Sequence[Genotype],
    transform: Transform,
) -> dict[str, Any]:
    """Mean reward and MAdds saving of an agent (argmax and sampled) and of the two floors on ``betas``.

    Returns:
        dict: ``{"inputs": n, "argmax": {"reward", "madds_saving"}, "sampled": {...}, "random_valid": {...},
        "identity": {...}}``.
    """
    out: dict[str, Any] = {"inputs": len(betas)}
    rng = np.random.default_rng(RANDOM_SEED)
    candidates = {
        "argmax": transform(betas, True),
        "sampled": transform(betas, False),
        "random_valid": [rules.apply_indices(b, random_valid_action(rules, b, rng))[0] for b in betas],
    }
    for name, alphas in candidates.items():
        rewards, savings = score(evaluator, cost_config, betas, alphas)
        out[name] = {"reward": float(rewards.mean()), "madds_saving": float(savings.mean())}
    out["identity"] = {"reward": 0.0, "madds_saving": 0.0}
    return out
