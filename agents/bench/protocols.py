"""The two protocols of ``nat-gym bench``, both at an equal budget of reward evaluations (:mod:`nat_gym.budget`).

*Amortised* (the NAT setting, :func:`run_amortised`): an algorithm trains on inputs sampled by the environment
(never a test input: :class:`~nat_gym.envs.tasks.ExcludeInputs`) until it has spent ``budget`` reward evaluations,
counted by a :class:`~nat_gym.budget.BudgetedEvaluator` in its training env (every new (architecture, minibatch)
score, inputs and transformations alike). At ``checkpoints`` evenly spaced evaluation counts it transforms every
test input zero-shot: ``argmax`` (one transformation) and ``best-of-K`` (``K`` sampled transformations, the best by
reward). These test-time scores are the measurement, not training, and are not counted.

*Per-instance* (:func:`run_per_instance`): for each input of the task set, a search algorithm
(:mod:`agents.search`) or a trained policy sampling best-of-K looks for the best transformation of that one
architecture within ``budget`` evaluations (the input's own score is free); at each checkpoint the best found so far
is reported.

Rewards always come from the environment's ``reset``/``step``, so the rows hold exactly what ``nat-gym validate``
recomputes. Wall-clock: every amortised run and every per-instance search starts with an empty score cache, so no
run profits from scores another run computed. Seeds: the random generator of a run is derived from ``(seed, input
index)`` or ``(seed, checkpoint)`` only, so results do not depend on the order in which runs execute or on ``--jobs``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agents.bench.algorithms import AMORTISED, load_policy, make_agent, train_env_id
from agents.bench.results import PIN_COLUMNS
from nat_gym.budget import BudgetedEvaluator, BudgetExhausted
from nat_gym.envs.tasks import ExcludeInputs, TaskSet, reserved_inputs
from nat_gym.errors import ConfigError, dataclass_from_dict
from nat_gym.genotype import Genotype

__all__ = ["PROTOCOLS", "Context", "checkpoints", "run_amortised", "run_per_instance", "per_instance_algos",
           "per_instance_args"]

PROTOCOLS: tuple[str, ...] = ("amortised", "per-instance")


def per_instance_algos() -> dict[str, str]:
    """Per-instance algorithms: the searches of :mod:`agents.search` and, for each amortised algorithm that saves
    a policy, best-of-K sampling of that trained policy."""
    from agents.search import SEARCHES

    out = {k: v.help for k, v in SEARCHES.items()}
    out.update({k: f"best-of-K samples of the {k} policy trained in the amortised protocol (same seed)"
                for k, v in AMORTISED.items() if v.loader})  # fmt: skip
    return out


def per_instance_args(algo: str, hyperparams: dict[str, Any] | None = None) -> Any:
    """The arguments dataclass of per-instance algorithm ``algo`` with ``hyperparams`` as overrides: a search's
    (:mod:`agents.search`) or, for a trained policy, :class:`~agents.search.policy_search.PolicySearchArgs`.

    Raises:
        ConfigError: ``algo`` is no per-instance algorithm, a key is not one of its fields (the message names the
            allowed ones), a value is not of its field's type (``bool``, ``int``, ``float``, ``str``), or it is out
            of range.
    """
    from agents.search import SEARCHES
    from agents.search import load as load_search
    from agents.search.policy_search import PolicySearchArgs

    if algo in SEARCHES:
        args_cls = load_search(algo)[1]
    elif algo in AMORTISED and AMORTISED[algo].loader:
        args_cls = PolicySearchArgs
    else:
        raise ConfigError(f"algos: unknown per-instance algorithm {algo!r}; known: {', '.join(per_instance_algos())}")
    return dataclass_from_dict(args_cls, hyperparams or {}, f"hyperparams: per-instance {algo}", check_types=True)


def checkpoints(budget: int, count: int) -> list[int]:
    """``count`` evaluation counts evenly spaced up to ``budget`` (the last one is the budget)."""
    count = max(1, min(count, budget)) if budget else 1
    return sorted({int(round(budget * (j + 1) / count)) for j in range(count)})


@dataclass
class Context:
    """What every run of one process shares: the task set, its pinned environment and evaluator.

    Args:
        task: the task set. ``env``: its pinned environment (the task set's env id), which scores every result
            (``env.unwrapped.evaluator`` is the base evaluator). ``pin``: ``task.pin(env)``.
        policies: the folder of trained policies (per-instance policy sampling).
        train_env_id: ``--env``, the environment amortised agents train in (``None``: each algorithm's default,
            :func:`~agents.bench.algorithms.train_env_id`). It shares the pinned rules, reward and evaluator.
    """

    task: TaskSet
    env: gym.Env
    pin: dict[str, Any]
    policies: Path | None = None
    reserved: frozenset[Genotype] = field(default_factory=frozenset)
    train_env_id: str | None = None

    @classmethod
    def create(cls, task: TaskSet, *, supernet: str | None = None, cost_weight: float = 0.0, env_id: str | None = None,
               device: str = "cpu", eval_workers: int | None = None, policies: str | Path | None = None) -> Context:  # fmt: skip
        env = task.make_env(supernet=supernet, cost_weight=cost_weight, device=device)
        if eval_workers is not None and hasattr(env.unwrapped.evaluator, "workers"):
            env.unwrapped.evaluator.workers = int(eval_workers)
        return cls(task, env, task.pin(env), Path(policies) if policies else None, reserved_inputs(task.env_id),
                   env_id)  # fmt: skip

    @property
    def evaluator(self):
        return self.env.unwrapped.evaluator

    def cold_cache(self) -> None:
        """Empty the evaluator's score cache, so that a run's wall-clock never profits from another run's scores."""
        clear = getattr(self.evaluator, "clear_cache", None)
        if clear is not None:
            clear()

    def budget_env(self, budget: int, free: Sequence[Genotype] = (), env_id: str | None = None) -> gym.Env:
        """A fresh pinned environment (the task set's, or ``env_id``) whose evaluator counts this run's
        evaluations."""
        base = self.env.unwrapped
        return self.task.make_env(evaluator=BudgetedEvaluator(self.evaluator, budget, free=free),
                                  cost_weight=base.cost_weight, cost_config=base.cost_config, env_id=env_id)  # fmt: skip

    def rewards(self, starts: Sequence[Genotype], actions: np.ndarray) -> list[dict[str, Any]]:
        """Score ``actions[i]`` on ``starts[i]`` through the environment (one batched evaluator call first)."""
        base = self.env.unwrapped
        alphas = [base.rules.apply_indices(g, a)[0] for g, a in zip(starts, actions)]
        self.evaluator.evaluate(list(dict.fromkeys(list(starts) + alphas)))  # fills the cache (evaluator's threads)
        out = []
        for g, a in zip(starts, actions):
            self.env.reset(options={"genotype": g})
            _, reward, _, _, info = self.env.step(np.asarray(a, dtype=np.int64))
            out.append({"start": g, "result": info["genotype_after"], "acc_before": info["acc_before"],
                        "acc_after": info["acc_after"], "reward": reward, "madds_saving": info["madds_saving"]})  # fmt: skip
        return out

    def row(self, **fields: Any) -> dict[str, Any]:
        """A result row (:mod:`agents.bench.results`): ``fields`` with the genotypes as strings, and the pins."""
        return {**fields, "start": str(fields["start"]), "result": str(fields["result"]),
                **{k: self.pin[k] for k in PIN_COLUMNS}}


# ====================================================================================================== amortised
def run_amortised(ctx: Context, algo: str, seed: int, *, budget: int, num_checkpoints: int = 4, samples: int = 8,
                  hyperparams: dict[str, Any] | None = None, save_policy: Path | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Train ``algo`` for ``budget`` evaluations and transform every test input at each checkpoint (module
    docstring). Returns the rows; ``save_policy`` writes the trained policy there (if the algorithm has one)."""
    if algo not in AMORTISED:
        raise ConfigError(f"algos: unknown amortised algorithm {algo!r}; known: {', '.join(AMORTISED)}")
    trains = AMORTISED[algo].trains
    env_id = train_env_id(algo, ctx.train_env_id, ctx.task.env_id)
    ctx.cold_cache()
    env = ExcludeInputs(ctx.budget_env(budget, env_id=env_id), ctx.reserved)
    agent = make_agent(algo, env, seed, dict(hyperparams or {}))
    spent = env.unwrapped.evaluator
    rows, seconds, stop = [], 0.0, "" if trains else "no-training"
    results: dict[str, list[dict[str, Any]]] = {}
    for c in checkpoints(budget, num_checkpoints):
        if trains and not stop:
            t0 = time.perf_counter()
            try:
                agent.learn(c)
            except BudgetExhausted:
                stop = "budget"
            seconds += time.perf_counter() - t0
        last = c == budget
        if last and not stop:
            stop = "budget" if spent.used >= budget else "returned"
        if trains or not results:  # a floor's transformations do not change: scored once, reported at each
            results = _transform_test_inputs(ctx, agent, np.random.default_rng([seed, 1, c if trains else 0]), samples)
        for mode, scored in results.items():
            for i, r in enumerate(scored):
                rows.append(ctx.row(protocol="amortised", task_set=ctx.task.name, algo=algo, seed=seed, budget=budget,
                                    checkpoint=c, evaluations=spent.used, seconds=seconds,
                                    stop=stop if last else "", mode=mode, instance=i,
                                    instance_name=ctx.task.input_names[i], **r))  # fmt: skip
    if save_policy is not None:
        agent.save(save_policy)
    return rows


def _transform_test_inputs(ctx: Context, agent, rng: np.random.Generator, samples: int) -> dict[str, list[dict]]:
    """Mode -> one scored transformation per test input: ``argmax`` and the best of ``samples`` sampled ones."""
    starts = list(ctx.task.inputs)
    results = {"argmax": ctx.rewards(starts, agent.actions(starts, deterministic=True, rng=rng))}
    if samples > 0:
        repeated = [g for g in starts for _ in range(samples)]
        scored = ctx.rewards(repeated, agent.actions(repeated, deterministic=False, rng=rng))
        results[f"best-of-{samples}"] = [max(scored[i * samples : (i + 1) * samples], key=lambda r: r["reward"])
                                         for i in range(len(starts))]  # fmt: skip
    return results


# ====================================================================================================== per-instance
def run_per_instance(ctx: Context, algo: str, seed: int, *, budget: int, num_checkpoints: int = 10,
                     hyperparams: dict[str, Any] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Search every input of the task set with ``algo`` (module docstring); returns the rows."""
    from agents.search import SEARCHES
    from agents.search import load as load_search
    from agents.search.base import Objective

    args = per_instance_args(algo, hyperparams)
    if algo in SEARCHES:
        search = load_search(algo)[0]
        extra: tuple = ()
    else:
        from agents.search.policy_search import search

        if ctx.policies is None:
            raise ConfigError(f"algos: {algo} samples a trained policy; give --policies (or run the amortised protocol)")
        extra = (load_policy(algo, ctx.policies / f"{algo}-seed{seed}.pt", ctx.task),)
    rows = []
    marks = checkpoints(budget, num_checkpoints)
    for i, (name, start) in enumerate(zip(ctx.task.input_names, ctx.task.inputs)):
        ctx.cold_cache()
        objective = Objective(ctx.budget_env(budget, free=[start]), start, checkpoints=marks)
        try:
            search(objective, np.random.default_rng([seed, 0, i]), args, *extra)
        except BudgetExhausted:
            pass
        for snap in objective.finish():
            best = snap.best
            rows.append(ctx.row(protocol="per-instance", task_set=ctx.task.name, algo=algo, seed=seed, budget=budget,
                                checkpoint=snap.checkpoint, evaluations=snap.evaluations, seconds=snap.seconds,
                                stop=objective.stop_reason if snap.checkpoint == budget else "", mode="best",
                                instance=i, instance_name=name, start=start, result=best.genotype,
                                acc_before=objective.acc_start, acc_after=best.acc, reward=best.reward,
                                madds_saving=best.madds_saving))  # fmt: skip
    return rows
