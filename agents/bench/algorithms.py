"""The algorithms of the *amortised* protocol: train on sampled inputs for a budget, then transform test inputs.

:data:`AMORTISED` is the registry, one :class:`AmortisedSpec` per algorithm: the module and the name of a factory
``make(env, seed, hyperparams) -> AmortisedAgent`` and of a loader ``load(path, task) -> TransformPolicy`` (for the
trained policies that the per-instance protocol samples best-of-K; ``task``: the per-instance task set). An
:class:`AmortisedAgent`:

- ``learn(until)``: train in ``env`` until ``until`` reward evaluations are spent in all (the env's evaluator is a
  :class:`~nat_gym.budget.BudgetedEvaluator`; at the budget it raises :class:`~nat_gym.budget.BudgetExhausted`);
- ``actions(genotypes, deterministic=..., rng=...)``: transform inputs zero-shot (``[B, 2E]`` op indices);
- ``save(path)``: write the trained policy (``None`` for the floors, which have nothing to save).

Adding an algorithm is one entry here and one small adapter. The SB3 baselines of ``nat-gym train``
(:mod:`agents.bench.sb3_agents`) train with the trainer's own run (:class:`~agents.sb3.trainer.SB3Run`) in the
budgeted training env the protocol hands over; NATEdge-v0 agents transform a test input by playing its edge-by-edge
episode.

Training env (:func:`train_env_id`): ``nat-gym bench --env`` picks it for the algorithms that can train in it;
without ``--env`` an algorithm trains in the task set's env if it can, else in its own (``dqn``: NATEdge-v0, whose
action is ``Discrete``). Results are always scored on the task set's env.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from agents.search.policy_search import TransformPolicy
from nat_gym import rules as rule_sets
from nat_gym.envs.tasks import TaskSet
from nat_gym.errors import ConfigError, dataclass_from_dict
from nat_gym.genotype import Genotype

__all__ = ["AMORTISED", "AmortisedSpec", "AmortisedAgent", "make_agent", "check_hyperparams", "check_policy_file",
           "load_policy", "train_env_id", "NATAgent", "NATDefaultsAgent", "FloorAgent"]  # fmt: skip


class AmortisedAgent(TransformPolicy, Protocol):
    def learn(self, until: int) -> None: ...

    def save(self, path: Path) -> Path | None: ...


@dataclass(frozen=True)
class AmortisedSpec:
    """One amortised algorithm: ``module.factory(env, seed, hyperparams)`` makes the agent; ``module.loader(path,
    task)`` (if any) loads a saved policy for task set ``task``; ``trains``: whether it spends the training budget;
    ``envs``: the environments it can train in (``nat-gym bench --env``)."""

    module: str
    factory: str
    help: str
    trains: bool = True
    loader: str | None = None
    envs: tuple[str, ...] = ("NATCell-v0",)


AMORTISED: dict[str, AmortisedSpec] = {
    "nat": AmortisedSpec("agents.bench.algorithms", "NATAgent", "NAT/NAT++ REINFORCE on the GCN policy (Algorithm 1's "
                         "policy step; frozen supernet; the papers' n = 1, no keep prior)", loader="load_nat_policy"),
    "nat-defaults": AmortisedSpec("agents.bench.algorithms", "NATDefaultsAgent", "nat with the defaults of nat-gym "
                                  "train --algo nat (n = 4, keep prior 3)", loader="load_nat_policy"),
    "random-valid": AmortisedSpec("agents.bench.algorithms", "RandomValidAgent",
                                  "floor: a uniformly random valid transformation (no training)", trains=False,
                                  envs=("NATCell-v0", "NATEdge-v0")),
    "identity": AmortisedSpec("agents.bench.algorithms", "IdentityAgent",
                              "floor: no change (reward 0, no training)", trains=False, envs=("NATCell-v0", "NATEdge-v0")),
    "maskable_ppo": AmortisedSpec("agents.bench.sb3_agents", "MaskablePPOAgent", "sb3-contrib MaskablePPO (nat-gym "
                                  "train --algo maskable_ppo, GCN extractor)", loader="load_sb3_policy",
                                  envs=("NATCell-v0", "NATEdge-v0")),
    "ppo": AmortisedSpec("agents.bench.sb3_agents", "PPOAgent", "SB3 PPO, no masks (nat-gym train --algo ppo, GCN "
                         "extractor)", loader="load_sb3_policy", envs=("NATCell-v0", "NATEdge-v0")),
    "a2c": AmortisedSpec("agents.bench.sb3_agents", "A2CAgent", "SB3 A2C, no masks (nat-gym train --algo a2c, GCN "
                         "extractor)", loader="load_sb3_policy", envs=("NATCell-v0", "NATEdge-v0")),
    "dqn": AmortisedSpec("agents.bench.sb3_agents", "DQNAgent", "SB3 DQN, no masks (nat-gym train --algo dqn, GCN "
                         "extractor; trains in NATEdge-v0)", loader="load_sb3_policy", envs=("NATEdge-v0",)),
}  # fmt: skip
"""Amortised algorithms by name (``nat-gym bench --protocol amortised --algos ...``)."""


def make_agent(name: str, env: gym.Env, seed: int, hyperparams: dict[str, Any]) -> AmortisedAgent:
    spec = AMORTISED[name]
    return getattr(importlib.import_module(spec.module), spec.factory)(env, seed, hyperparams)


def check_hyperparams(name: str, hyperparams: dict[str, Any], task: TaskSet, env_id: str) -> None:
    """Check algorithm ``name``'s hyper-parameters before any run (a job checks them again when it makes its agent):
    keys, types and ranges; an SB3 baseline builds its model once on task set ``task``'s env ``env_id`` (the env it
    trains in) with a constant reward, so that a value its constructor rejects (``learning_rate=abc``) is found
    too. Only what fails during training itself surfaces when the job runs.

    Raises:
        ConfigError: a key the bench fixes, an unknown key, or a value of the wrong type or range.
    """
    spec = AMORTISED[name]
    try:
        getattr(importlib.import_module(spec.module), spec.factory).check_hyperparams(dict(hyperparams), task, env_id)
    except ConfigError as e:  # name the flag and the algorithm where the message does not
        said = str(e)
        raise ConfigError(said if said.startswith("hyperparams") else f"hyperparams: {name}: {said}") from None


def train_env_id(name: str, requested: str | None, task_env_id: str) -> str:
    """The env algorithm ``name`` trains in (module docstring): ``requested`` (``--env``) if given, else the task
    set's env if the algorithm can train in it, else the algorithm's own.

    Raises:
        ConfigError: ``requested`` is an env the algorithm cannot train in.
    """
    envs = AMORTISED[name].envs
    if requested is None:
        return task_env_id if task_env_id in envs else envs[0]
    if requested not in envs:
        raise ConfigError(f"env: {name} trains in {' or '.join(envs)}, not {requested}")
    return requested


def check_policy_file(name: str, path: str | Path) -> Path:
    """``path``, where algorithm ``name``'s trained policy should be.

    Raises:
        ConfigError: ``name`` saves no policy, or there is no file at ``path`` (the message says how to get one).
    """
    spec = AMORTISED.get(name)
    if spec is None or spec.loader is None:
        raise ConfigError(f"algo: {name!r} saves no policy; policies: {[k for k, v in AMORTISED.items() if v.loader]}")
    path = Path(path)
    if not path.is_file():
        inside = path.parent / "policies"  # --policies named a benchmark's --out, not its policies folder
        if (inside / path.name).is_file():
            raise ConfigError(f"policies: no policy {str(path)!r}; that benchmark saved its policies in "
                              f"{str(inside)!r}: --policies {inside}")  # fmt: skip
        raise ConfigError(
            f"policies: no policy {str(path)!r}; run the amortised protocol first (nat-gym bench --protocol amortised "
            f"--algos {name} with the same --out and seeds) or point --policies at the policies folder of a "
            f"benchmark that did (its OUT/policies)"
        )
    return path


def load_policy(name: str, path: str | Path, task: TaskSet) -> TransformPolicy:
    """The trained policy that algorithm ``name`` saved at ``path``, for the inputs of task set ``task``.

    Raises:
        ConfigError: ``name`` saves no policy, there is no file at ``path`` (:func:`check_policy_file`), it is
            another algorithm's policy, or it does not fit ``task``.
    """
    path = check_policy_file(name, path)
    spec = AMORTISED[name]
    policy = getattr(importlib.import_module(spec.module), spec.loader)(path, task)
    trained = getattr(policy, "algo", name)  # the SB3 loader serves four algorithms: the file says which one it holds
    if trained != name:
        raise ConfigError(f"policies: {str(path)!r} holds a {trained} policy, not a {name} one; point --policies at "
                          f"the folder where the amortised {name} runs saved theirs")  # fmt: skip
    return policy


# ====================================================================================================== floors
class FloorAgent:
    """The floors: they spend no evaluations and save nothing."""

    def __init__(self, env: gym.Env, seed: int, hyperparams: dict[str, Any]) -> None:
        self.check_hyperparams(hyperparams)
        self.rules = env.unwrapped.rules

    @classmethod
    def check_hyperparams(cls, hyperparams: dict[str, Any], task: TaskSet | None = None, env_id: str = "") -> None:
        if hyperparams:
            raise ConfigError(f"hyperparams: {cls.__name__} has none, got {sorted(hyperparams)}")

    def learn(self, until: int) -> None:
        return None

    def save(self, path: Path) -> Path | None:
        return None


class RandomValidAgent(FloorAgent):
    """Every edge picks uniformly among the ops its rules allow."""

    def actions(self, genotypes: Sequence[Genotype], *, deterministic: bool, rng: np.random.Generator) -> np.ndarray:
        from nat_gym.sampling import random_valid_action

        return np.array([random_valid_action(self.rules, g, rng) for g in genotypes], dtype=np.int64)


class IdentityAgent(FloorAgent):
    """Keep every op (reward 0 by definition)."""

    def actions(self, genotypes: Sequence[Genotype], *, deterministic: bool, rng: np.random.Generator) -> np.ndarray:
        return np.array([self.rules.op_indices(g) for g in genotypes], dtype=np.int64)


# ====================================================================================================== NAT
class GCNTransformPolicy:
    """A :class:`~agents.gcn_policy.GCNPolicy` as a :class:`TransformPolicy` (sampling seeded from ``rng``)."""

    def __init__(self, policy, rules: rule_sets.TransitionRules) -> None:
        self.policy = policy
        self.rules = rules

    def actions(self, genotypes: Sequence[Genotype], *, deterministic: bool, rng: np.random.Generator) -> np.ndarray:
        import torch

        from nat_gym.envs.observation import encode

        obs = [encode(g, self.rules) for g in genotypes]
        batch = {k: np.stack([o[k] for o in obs]) for k in obs[0]}
        gen = torch.Generator(device=self.policy.device).manual_seed(int(rng.integers(2**63 - 1)))
        was_training = self.policy.training
        self.policy.eval()
        with torch.no_grad():
            actions, _, _ = self.policy.act(batch, deterministic=deterministic, generator=gen)
        self.policy.train(was_training)
        return actions.cpu().numpy().astype(np.int64)


BENCH_NAT_DEFAULTS: dict[str, Any] = {"reward_images": None, "train_supernet": False, "eval_inputs": 0,
                                      "progress": False, "threads": 1, "device": "cpu", "epochs": 10**9}  # fmt: skip
"""NAT trainer arguments the bench fixes: the pinned reward (whole validation split), the frozen pinned supernet,
no held-out report (it would spend evaluations), one thread, CPU, and no epoch limit (the budget ends training)."""


class NATAgent(GCNTransformPolicy):
    """NAT's policy step of Algorithm 1 (:class:`~agents.nat_trainer.NATTrainer`, REINFORCE with a moving-average
    baseline) on the frozen pinned supernet; hyper-parameters are :class:`~agents.nat_trainer.NATTrainerArgs`
    fields (defaults: the paper's, ``m = n = 1`` and no keep prior: :data:`~agents.nat_trainer.PAPER_SETTINGS` under
    the hyper-parameters given)."""

    name = "nat"
    paper = True
    """Start from the papers' settings (:data:`~agents.nat_trainer.PAPER_SETTINGS`); else from nat-gym's defaults."""

    def __init__(self, env: gym.Env, seed: int, hyperparams: dict[str, Any]) -> None:
        from agents.nat_trainer import NATTrainer

        base = env.unwrapped
        self.trainer = NATTrainer(self.trainer_args(hyperparams, seed, base.rules.name, base.steps), env=env, log=False)
        self.budget = base.evaluator
        super().__init__(self.trainer.policy, base.rules)

    @classmethod
    def trainer_args(cls, hyperparams: dict[str, Any], seed: int, rules: str, steps: int) -> Any:
        """The :class:`~agents.nat_trainer.NATTrainerArgs` of a run: the papers' settings (``nat``) or nat-gym's
        defaults (``nat-defaults``), :data:`BENCH_NAT_DEFAULTS`, ``hyperparams``, and the seed, rules and steps of
        the run. Raises :class:`ConfigError` for a key the bench fixes, an unknown key, a wrong type or range."""
        from agents.nat_trainer import PAPER_SETTINGS, NATTrainerArgs

        pinned = {"seed", "rules", "steps", "out", "dataset", "data_root", "data_seed", "supernet", "cost_weight"}
        fixed = sorted(set(hyperparams) & (set(BENCH_NAT_DEFAULTS) | pinned))  # the env's, else ignored by the trainer
        if fixed:
            raise ConfigError(f"hyperparams: {fixed} are fixed by the bench (pinned task set, --supernet, "
                              "--cost-weight, seed from --seeds)")  # fmt: skip
        start = PAPER_SETTINGS if cls.paper else {}
        return dataclass_from_dict(NATTrainerArgs, {**start, **BENCH_NAT_DEFAULTS, **hyperparams, "seed": seed,
                                                    "rules": rules, "steps": steps, "out": ""},
                                   f"hyperparams: {cls.name}", check_types=True)  # fmt: skip

    @classmethod
    def check_hyperparams(cls, hyperparams: dict[str, Any], task: TaskSet, env_id: str = "") -> None:
        cls.trainer_args(hyperparams, 0, task.rules, task.steps)

    def learn(self, until: int) -> None:
        while self.budget.used < until:
            self.trainer.train_epoch()  # raises BudgetExhausted at the budget

    def save(self, path: Path) -> Path | None:
        return self.trainer.save(path)


class NATDefaultsAgent(NATAgent):
    """NAT as ``nat-gym train --algo nat`` runs it by default (:class:`~agents.nat_trainer.NATTrainerArgs`'
    defaults: ``n = 4`` sampled transformations per input and a learned keep prior of 3), everything else as
    :class:`NATAgent`."""

    name = "nat-defaults"
    paper = False


def load_nat_policy(path: str | Path, task: TaskSet) -> TransformPolicy:
    """The NAT policy (:func:`agents.nat_trainer.load_policy`) as a :class:`GCNTransformPolicy` on task set
    ``task``'s rules (which must be the ones it trained with)."""
    from agents.nat_trainer import load_policy as load_gcn

    rules = rule_sets.get(task.rules)
    policy, args = load_gcn(path)
    if rule_sets.get(args.rules) != rules:
        raise ConfigError(f"policies: {str(path)!r} was trained with rules {args.rules!r}, the task set has {rules.name!r}")
    return GCNTransformPolicy(policy, rules)
