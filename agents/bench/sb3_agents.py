"""The SB3 baselines of ``nat-gym train`` as amortised entries of ``nat-gym bench`` (:mod:`agents.bench.algorithms`).

Each is trained by the trainer's own run (:class:`~agents.sb3.trainer.SB3Run`) in the budgeted training env the
protocol hands over (:func:`~agents.bench.protocols.run_amortised`); at the budget the env's
:class:`~nat_gym.budget.BudgetedEvaluator` raises :class:`~nat_gym.budget.BudgetExhausted` out of SB3's ``learn``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agents.sb3.trainer import SB3Args, SB3Run
from nat_gym.errors import ConfigError
from nat_gym.genotype import Genotype

__all__ = ["BENCH_SB3_DEFAULTS", "SB3Agent", "MaskablePPOAgent", "PPOAgent", "A2CAgent", "DQNAgent"]

BENCH_SB3_DEFAULTS: dict[str, Any] = {"device": "cpu", "threads": 1, "progress": False, "eval_inputs": 0,
                                      "heldout_inputs": 0}  # fmt: skip
"""SB3 trainer arguments the bench fixes: CPU, one thread, no held-out reports (they are the bench's job)."""


class BenchRun(SB3Run):
    """An :class:`~agents.sb3.trainer.SB3Run` that writes no resumable checkpoint of its own (an unfinished bench job
    is rerun whole): only :meth:`SB3Agent.save` saves, so the shared evaluator's score cache, which a checkpoint
    empties, stays warm across the evaluation checkpoints."""

    def save(self, path: str | Path | None = None) -> Path | None:
        return None if path is None else super().save(path)


class SB3Agent:
    """An SB3 baseline of ``nat-gym train`` trained by the trainer's own run (:class:`~agents.sb3.trainer.SB3Run`:
    the defaults of ``agents/hyperparams/ALGO.yml`` for the training env, the GCN extractor) in the budgeted env.

    ``learn(until)`` runs :meth:`SB3Run.learn <agents.sb3.trainer.SB3Run.learn>` with ``evaluations=until``; the
    run also ends at the YAML's ``n_timesteps`` (the schedules depend on it; the stop column then says
    ``returned``). ``actions`` plays each test input's episode with ``model.predict`` (:meth:`SB3Run.transform
    <agents.sb3.trainer.SB3Run.transform>`: ``deterministic=True`` for argmax, sampled otherwise, random streams
    seeded from ``rng``), one step in NATCell-v0, one per edge in NATEdge-v0, and returns the transformation's op
    indices. Hyper-parameters: ``policy`` (``gcn`` or ``mlp``) and the YAML's keys (e.g. ``n_steps``,
    ``n_timesteps``, ``policy_kwargs``). The run's logs (metrics.csv, TensorBoard) live in a temporary folder;
    ``save`` writes its checkpoint (:func:`agents.sb3.trainer.load_model` reads it).
    """

    algo = ""

    def __init__(self, env: gym.Env, seed: int, hyperparams: dict[str, Any]) -> None:
        hp = dict(hyperparams)
        fixed = sorted(set(hp) & (set(BENCH_SB3_DEFAULTS) | {"seed", "env", "evaluations", "out", "n_envs"}))
        if fixed:
            raise ConfigError(f"hyperparams: {fixed} are fixed by the bench (one budgeted env, seed from --seeds)")
        base = env.unwrapped
        self._logs = tempfile.TemporaryDirectory(prefix=f"nat-gym-bench-{self.algo}-")
        args = SB3Args(algo=self.algo, env=base.spec.id, policy=hp.pop("policy", "gcn"), seed=seed,
                       hyperparams=tuple(f"{k}={v!r}" for k, v in hp.items()), out=self._logs.name,
                       **BENCH_SB3_DEFAULTS)  # fmt: skip
        self.run = BenchRun(args, make_env=lambda: env)
        if self.run.n_envs != 1:
            raise ConfigError(f"hyperparams: n_envs: the bench trains in one budgeted env, the YAML has {self.run.n_envs}")
        self.run.build()
        self.rules = base.rules

    def learn(self, until: int) -> None:
        self.run.args.evaluations = until
        self.run.learn()  # BudgetExhausted at the budget

    def actions(self, genotypes: Sequence[Genotype], *, deterministic: bool, rng: np.random.Generator) -> np.ndarray:
        alphas = self.run.transform(list(genotypes), deterministic, seed=int(rng.integers(2**32)))
        return np.array([self.rules.op_indices(a) for a in alphas], dtype=np.int64)

    def save(self, path: Path) -> Path | None:
        return self.run.save(path)


class MaskablePPOAgent(SB3Agent):
    algo = "maskable_ppo"


class PPOAgent(SB3Agent):
    algo = "ppo"


class A2CAgent(SB3Agent):
    algo = "a2c"


class DQNAgent(SB3Agent):
    algo = "dqn"
