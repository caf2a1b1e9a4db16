"""The SB3 baselines of ``nat-gym train`` as entries of ``nat-gym bench`` (:mod:`agents.bench.algorithms`).

Amortised: each is trained by the trainer's own run (:class:`~agents.sb3.trainer.SB3Run`) in the budgeted training
env the protocol hands over (:func:`~agents.bench.protocols.run_amortised`); at the budget the env's
:class:`~nat_gym.budget.BudgetedEvaluator` raises :class:`~nat_gym.budget.BudgetExhausted` out of SB3's ``learn``.
Per-instance: :func:`load_sb3_policy` loads the policy an amortised run saved, and the protocol samples it best-of-K
(:mod:`agents.search.policy_search`), as it samples NAT's.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.sb3.trainer import SB3Args, SB3Run, kept_random_state, load_model, model_transform
from nat_gym.envs.tasks import TaskSet
from nat_gym.errors import ConfigError
from nat_gym.evaluator import CallableEvaluator
from nat_gym.genotype import Genotype
from nat_gym.supernet.train import torch_threads

__all__ = ["BENCH_SB3_DEFAULTS", "SB3TransformPolicy", "SB3Agent", "MaskablePPOAgent", "PPOAgent", "A2CAgent",
           "DQNAgent", "load_sb3_policy"]  # fmt: skip

BENCH_SB3_DEFAULTS: dict[str, Any] = {"device": "cpu", "threads": 1, "progress": False, "eval_inputs": 0,
                                      "heldout_inputs": 0}  # fmt: skip
"""SB3 trainer arguments the bench fixes: CPU, one thread, no held-out reports (they are the bench's job)."""


class BenchRun(SB3Run):
    """An :class:`~agents.sb3.trainer.SB3Run` that writes no resumable checkpoint of its own (an unfinished bench job
    is rerun whole): only :meth:`SB3Agent.save` saves, so the shared evaluator's score cache, which a checkpoint
    empties, stays warm across the evaluation checkpoints."""

    def save(self, path: str | Path | None = None) -> Path | None:
        return None if path is None else super().save(path)


class SB3TransformPolicy:
    """A trained SB3 model as a :class:`~agents.search.policy_search.TransformPolicy`: ``actions`` plays each
    input's episode in ``env`` with ``model.predict`` (:func:`~agents.sb3.trainer.model_transform`:
    ``deterministic=True`` for argmax, sampled otherwise, every random stream seeded from ``rng``), one step in
    NATCell-v0, one per edge in NATEdge-v0, and returns the transformations' op indices, ``[B, 2E]`` int64."""

    def __init__(self, model: Any, algo: str, env: gym.Env) -> None:
        self.model, self.algo, self.env = model, algo, env
        self.rules = env.unwrapped.rules

    def actions(self, genotypes: Sequence[Genotype], *, deterministic: bool, rng: np.random.Generator) -> np.ndarray:
        alphas = model_transform(self.model, self.algo, self.env, list(genotypes), deterministic,
                                 seed=int(rng.integers(2**32)))  # fmt: skip
        return np.array([self.rules.op_indices(a) for a in alphas], dtype=np.int64)


class SB3Agent(SB3TransformPolicy):
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
        self._logs = tempfile.TemporaryDirectory(prefix=f"nat-gym-bench-{self.algo}-")
        self.run = self._run(hyperparams, seed, env.unwrapped.spec.id, self._logs.name, make_env=lambda: env)
        self.run.build()
        # the test-time episodes run in the run's evaluation env (its scores count in no budget)
        super().__init__(self.run.model, self.algo, self.run.eval_env)

    @classmethod
    def _run(cls, hyperparams: dict[str, Any], seed: int, env_id: str, out: str,
             make_env: Callable[[], gym.Env] | None = None) -> BenchRun:  # fmt: skip
        """The run (not built: no env, no model) of ``hyperparams``: ``policy`` and the YAML's keys, resolved and
        checked by :class:`~agents.sb3.trainer.SB3Run`."""
        hp = dict(hyperparams)
        fixed = sorted(set(hp) & (set(BENCH_SB3_DEFAULTS) | {"seed", "env", "evaluations", "out", "n_envs"}))
        if fixed:
            raise ConfigError(f"hyperparams: {fixed} are fixed by the bench (one budgeted env, seed from --seeds)")
        args = SB3Args(algo=cls.algo, env=env_id, policy=hp.pop("policy", "gcn"), seed=seed,
                       hyperparams=tuple(f"{k}={v!r}" for k, v in hp.items()), out=out,
                       **BENCH_SB3_DEFAULTS)  # fmt: skip
        run = BenchRun(args, make_env=make_env)
        if run.n_envs != 1:
            raise ConfigError(f"hyperparams: n_envs: the bench trains in one budgeted env, the YAML has {run.n_envs}")
        return run

    @classmethod
    def check_hyperparams(cls, hyperparams: dict[str, Any], task: TaskSet, env_id: str) -> None:
        """Build the model once on task set ``task``'s env ``env_id`` with a constant reward (nothing is scored, no
        supernet is loaded), so that the values SB3's constructor rejects surface too; this process's threads and
        global random streams are kept (the run sets the one, SB3 seeds the others)."""
        env = task.make_env(env_id=env_id, evaluator=CallableEvaluator(lambda g: 0.0, version="rollout-only"))
        try:
            with torch_threads(torch.get_num_threads()), kept_random_state():
                cls._run(hyperparams, 0, env_id, "", make_env=lambda: env).build()
        finally:
            env.close()

    def learn(self, until: int) -> None:
        self.run.args.evaluations = until
        self.run.learn()  # BudgetExhausted at the budget

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


def load_sb3_policy(path: str | Path, task: TaskSet) -> SB3TransformPolicy:
    """The policy an amortised SB3 entry saved at ``path`` (an :class:`~agents.sb3.trainer.SB3Run` checkpoint), on
    CPU, playing its episodes in task set ``task``'s environment of the kind it trained in (``NATCell-v0`` or
    ``NATEdge-v0``). That env scores nothing (a constant evaluator): the episodes only produce the transformations,
    which the per-instance protocol scores on the pinned env.

    Raises:
        CheckpointError: ``path`` is not an SB3 run checkpoint.
        ConfigError: the model's observation or action space is not the task set's (other rules or cell size).
    """
    model, args = load_model(path, device="cpu")
    env = task.make_env(env_id=args.env, evaluator=CallableEvaluator(lambda g: 0.0, version="rollout-only"))
    if (model.observation_space, model.action_space) != (env.observation_space, env.action_space):
        raise ConfigError(f"policies: {str(path)!r} was trained on {_cells(model.observation_space)}; task set "
                          f"{task.name} has {_cells(env.observation_space)} ({args.env}, {task.steps} steps, rules "
                          f"{task.rules})")  # fmt: skip
    return SB3TransformPolicy(model, args.algo, env)


def _cells(space: gym.spaces.Space) -> str:
    """What an observation space says of its cells: edges per cell and candidate ops (the ``edges`` and ``ops``
    keys of :func:`nat_gym.envs.observation.encode`), else the space itself."""
    try:
        _, edges, ops = space["ops"].shape
    except (KeyError, TypeError, ValueError):
        return str(space)
    return f"cells of {edges} edges and {ops} candidate ops"
