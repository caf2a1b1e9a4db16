"""Stable-Baselines3 baselines on nat-gym: ``nat-gym train --algo maskable_ppo|ppo|a2c|dqn``.

One run = one SB3 algorithm on ``NATCell-v0`` or ``NATEdge-v0`` (DQN: ``NATEdge-v0`` only), with the RL Zoo style
defaults of ``agents/hyperparams/<algo>.yml`` (:mod:`agents.sb3.hyperparams`) and either SB3's flattening policy
(``--policy mlp``) or the GCN features extractor (``--policy gcn``, :class:`~agents.sb3.extractor.GCNExtractor`).
MaskablePPO reads the env's ``action_masks()``; PPO, A2C and DQN do not (a masked-out op leaves its edge as it
is, the env's ``invalid_action="keep"``; ``invalid_edges`` in the metrics counts them).

Budgets: ``n_timesteps`` environment steps and, optionally, ``evaluations`` reward evaluations (distinct
architectures the training envs scored, :mod:`nat_gym.budget`); the run stops at whichever comes first.

Outputs in ``args.out``, the same as ``--algo nat``'s:

- ``metrics.csv``: one row every ``log_every`` timesteps (at the next rollout start): ``timesteps``,
  ``episodes``, ``evaluations``, the mean ``reward`` / ``madds_saving`` / ``invalid_edges`` of the episodes since
  the previous row, SB3's latest ``train/...`` values, and every ``eval_every`` timesteps (and at the end) the
  held-out report on ``eval_inputs`` fixed inputs (``eval_reward``, ``eval_reward_argmax``, ...);
- TensorBoard events (SB3's own scalars and the rows, ``run/...``), ``learning_curves.png``;
- ``checkpoint.pt`` (atomic; every ``checkpoint_every`` timesteps at a rollout start, and at the end): the
  arguments, the resolved hyper-parameters, the SB3 model, DQN's replay buffer, the pickled training envs (their
  state, RNG and evaluation counts), the RNG states and the history; ``model.zip``: the model in SB3's own format
  (``MaskablePPO.load("model.zip")``);
- ``summary.json``: budgets used, the last row, and ``"heldout"``: the reward on ``heldout_inputs`` fresh inputs,
  argmax (``deterministic=True``) and sampled, next to the random-valid and identity floors
  (:func:`agents.heldout.heldout_report`, as ``scripts/evidence.py`` scores).

**Resume** (``--resume``): the model, replay buffer, envs, RNG states and counters come back from the checkpoint
and ``learn(reset_num_timesteps=False)`` continues to the same total budget. Checkpoints are taken at rollout
starts (after an update, before new steps), so a run resumed from any checkpoint ends with the same weights as an
uninterrupted one (tested for PPO and DQN, on CPU); the wall-clock columns differ.

Usage::

    nat-gym train --algo maskable_ppo --env NATCell-v0 --policy gcn --evaluations 2000
    from agents.sb3.trainer import SB3Args, train
    model, history = train(SB3Args(algo="ppo", n_timesteps=2048))
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import json
import math
import pickle
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter, Logger, TensorBoardOutputFormat
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

import nat_gym  # noqa: F401  (registers the envs)
from agents.heldout import fresh_inputs, heldout_report, rollout_alphas, score
from agents.run_log import run_checkpoint
from agents.sb3.callbacks import StopOnEvaluations, evaluations_of, vec_env_counters
from agents.sb3.extractor import GCNExtractor
from agents.sb3.hyperparams import (
    check_hyperparams,
    env_argument_names,
    load_hyperparams,
    parse_assignments,
    policy_kwargs_value,
)
from nat_gym.errors import CheckpointError, ConfigError, NatGymError, check_int
from nat_gym.genotype import Genotype
from nat_gym.metrics_log import MetricsLog

__all__ = [
    "ALGORITHMS",
    "ENV_IDS",
    "POLICIES",
    "CHECKPOINT_FORMAT",
    "SB3Args",
    "SB3Run",
    "algorithm_class",
    "train",
    "result_text",
    "load_model",
    "model_transform",
]

ALGORITHMS: dict[str, tuple[str, str]] = {
    "maskable_ppo": ("sb3_contrib", "MaskablePPO"),
    "ppo": ("stable_baselines3", "PPO"),
    "a2c": ("stable_baselines3", "A2C"),
    "dqn": ("stable_baselines3", "DQN"),
}
"""``--algo`` name -> (module, class) of the SB3 / sb3-contrib algorithm."""
ENV_IDS: tuple[str, ...] = ("NATCell-v0", "NATEdge-v0")
"""The envs the SB3 algorithms run on (DQN: ``NATEdge-v0`` only, its action is ``Discrete``)."""
POLICIES: tuple[str, ...] = ("gcn", "mlp")
"""``--policy``: the GCN features extractor, or SB3's ``MultiInputPolicy`` flattening every key."""
_MASKED = ("maskable_ppo",)
_DISCRETE_ONLY = ("dqn",)
CHECKPOINT_FORMAT = "nat-gym-sb3"
CHECKPOINT_VERSION = 1
_RUN_ONLY_FIELDS = ("n_timesteps", "evaluations", "out", "progress", "device", "threads", "checkpoint_every",
                    "log_every", "eval_every", "heldout_inputs")  # fmt: skip
"""Arguments that may change when a run is resumed (budgets, logging, where it runs)."""


# ====================================================================================================== arguments
@dataclass
class SB3Args:
    """Every knob of an SB3 run (the ``nat-gym train`` flags of ``--algo maskable_ppo``, ``ppo``, ``a2c``, ``dqn``)."""

    algo: str = "maskable_ppo"
    """The SB3 algorithm: maskable_ppo, ppo, a2c or dqn (set by --algo)."""
    env: str = "NATCell-v0"
    """Environment: NATCell-v0 (one step transforms every edge) or NATEdge-v0 (one edge per step; the only one
    dqn runs on)."""
    policy: str = "gcn"
    """Features of the observation: gcn (agents.sb3.GCNExtractor: per-edge and per-cell GCN embeddings) or mlp
    (SB3's MultiInputPolicy: every key flattened)."""
    seed: int = 0
    """Seed of everything random: policy initialisation, input architectures, sampled transformations, data order."""
    n_timesteps: int | None = None
    """Budget in environment steps; none = n_timesteps of agents/hyperparams/ALGO.yml. It also sets SB3's
    schedules (e.g. DQN's exploration)."""
    evaluations: int | None = None
    """Budget in reward evaluations (distinct architectures the training env scored, inputs included): the run
    stops at whichever budget it reaches first; none = timesteps only."""
    hyperparams: tuple[str, ...] = ()
    """KEY=VALUE overrides of agents/hyperparams/ALGO.yml (e.g. n_steps=64 learning_rate=1e-3
    policy_kwargs='dict(net_arch=[32])'); values are Python literals or YAML."""
    env_kwargs: tuple[str, ...] = ()
    """KEY=VALUE arguments of gym.make (e.g. rules=nat reward_images=64 supernet=PATH.pt)."""
    device: str = "auto"
    """auto (CUDA when available), cpu or cuda."""
    threads: int | None = 1
    """torch CPU threads; none = torch's choice. The digits supernet and the GCN are tiny: one thread is as fast as
    two for the supernet epochs and several times faster for the policy updates (no thread oversubscription)."""
    out: str = "runs/{algo}-{env}"
    """Output folder ({algo} and {env} are replaced): checkpoint.pt, model.zip, metrics.csv, TensorBoard events,
    learning_curves.png, summary.json."""
    checkpoint_every: int = 4096
    """Timesteps between checkpoints (taken at the next rollout start; the end is always saved)."""
    log_every: int = 256
    """Timesteps between rows of metrics.csv (at the next rollout start)."""
    eval_every: int = 4096
    """Timesteps between held-out reports on eval_inputs fixed inputs (the end always reports)."""
    eval_inputs: int = 16
    """Fixed random input architectures (seed eval_seed) of the periodic held-out report; 0 = no report."""
    eval_seed: int = 12345
    """Seed of the held-out input architectures and of their sampled transformations."""
    heldout_inputs: int = 200
    """Fresh input architectures of the final held-out report in summary.json (as scripts/evidence.py scores)."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        self.hyperparams = tuple(self.hyperparams)
        self.env_kwargs = tuple(self.env_kwargs)
        if self.algo not in ALGORITHMS:
            raise ConfigError(f"algo: expected one of {list(ALGORITHMS)}, got {self.algo!r}")
        if self.env not in ENV_IDS:
            raise ConfigError(f"env: expected one of {list(ENV_IDS)}, got {self.env!r}")
        if self.algo in _DISCRETE_ONLY and self.env != "NATEdge-v0":
            raise ConfigError(
                f"env: --algo {self.algo} needs a Discrete action space; use --env NATEdge-v0 ({self.env} has a "
                "MultiDiscrete action: every edge at once)"
            )
        if self.policy not in POLICIES:
            raise ConfigError(f"policy: expected one of {list(POLICIES)}, got {self.policy!r}")
        for name, low in (("checkpoint_every", 1), ("log_every", 1), ("eval_every", 1), ("eval_inputs", 0),
                          ("heldout_inputs", 0)):  # fmt: skip
            check_int(name, getattr(self, name), low)
        for name in ("n_timesteps", "evaluations", "threads"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name}: expected a positive integer or None, got {value!r}")
        self.out = self.out.replace("{algo}", self.algo).replace("{env}", self.env)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SB3Args:
        """Arguments from :func:`dataclasses.asdict` output (as stored in checkpoints); unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def algorithm_class(algo: str) -> type[BaseAlgorithm]:
    """The SB3 class of ``--algo`` (``MaskablePPO``, ``PPO``, ``A2C`` or ``DQN``)."""
    if algo not in ALGORITHMS:
        raise ConfigError(f"algo: expected one of {list(ALGORITHMS)}, got {algo!r}")
    module, name = ALGORITHMS[algo]
    return getattr(importlib.import_module(module), name)


# ====================================================================================================== helpers
@contextlib.contextmanager
def kept_random_state() -> Iterator[None]:
    """Put the global random streams SB3 seeds (Python's, numpy's, torch's) back as they were after the block."""
    py, npy = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


@contextlib.contextmanager
def _isolated_rng(seed: int, model: BaseAlgorithm) -> Iterator[None]:
    """Seed every random stream SB3 uses (Python, numpy, torch, the model's action space) with ``seed`` and put
    them back afterwards: held-out reports never change the training run."""
    space = model.action_space.np_random.bit_generator.state
    with kept_random_state():
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            model.action_space.np_random.bit_generator.state = space


def _blob(data: bytes) -> torch.Tensor:
    """Bytes as a uint8 tensor: ``torch.save`` stores it as is (plain bytes would be pickled with protocol 2, which
    inflates them by half)."""
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def _bytes(blob: torch.Tensor) -> bytes:
    return blob.numpy().tobytes()


class _TensorBoard(TensorBoardOutputFormat):
    """SB3's TensorBoard output, opened with ``purge_step``: a resumed run drops the events a crashed run wrote
    after its last checkpoint."""

    def __init__(self, folder: str, purge_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=folder, purge_step=purge_step)
        self._is_closed = False


class _Latest(KVWriter):
    """Keeps the values of SB3's last logger dump (e.g. ``train/loss``) for the metrics rows."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        self.values.update({k: float(v) for k, v in key_values.items() if isinstance(v, (int, float, np.number))})

    def close(self) -> None:
        pass


class _Hooks(BaseCallback):
    """Forwards SB3's callback events to the run."""

    def __init__(self, run: SB3Run) -> None:
        super().__init__()
        self.run = run

    def _on_rollout_start(self) -> None:
        self.run.on_rollout_start()

    def _on_step(self) -> bool:
        self.run.on_step(self.locals)
        return True


# ====================================================================================================== run
class SB3Run:
    """One SB3 training run (see the module docstring): build or resume, :meth:`learn`, outputs.

    Args:
        args: an :class:`SB3Args`.
        make_env: builds one training env (default: ``gym.make(args.env, **env_kwargs)``); e.g. an env over a
            :class:`~nat_gym.evaluator.CallableEvaluator` to train against your own reward.

    Attributes:
        model (BaseAlgorithm), vec_env (DummyVecEnv), counters (the envs' evaluation counters), hyperparams (the
        resolved constructor arguments), n_timesteps, history (one dict per metrics row).
    """

    def __init__(self, args: SB3Args, *, make_env: Callable[[], gym.Env] | None = None) -> None:
        self.args = args
        if args.threads:
            torch.set_num_threads(args.threads)
        self.algo_class = algorithm_class(args.algo)
        hp = load_hyperparams(args.algo, args.env)
        hp.update(parse_assignments(args.hyperparams, "hyperparams"))
        check_hyperparams(hp, self.algo_class, args.algo)
        yaml_steps = hp.pop("n_timesteps", None)
        steps = yaml_steps if args.n_timesteps is None else args.n_timesteps
        if steps is None:
            raise ConfigError(f"n_timesteps: not in agents/hyperparams/{args.algo}.yml; pass --n-timesteps")
        self.n_timesteps = int(steps)
        self.policy = hp.pop("policy", "MultiInputPolicy")
        self.n_envs = hp.pop("n_envs", 1)
        check_int("hyperparams: n_envs", self.n_envs, 1)
        self.policy_kwargs = policy_kwargs_value(hp.pop("policy_kwargs", None))
        if args.policy == "gcn":
            self.policy_kwargs.setdefault("features_extractor_class", GCNExtractor)
        self.hyperparams = hp
        self.env_kwargs = parse_assignments(args.env_kwargs, "env_kwargs")
        allowed = env_argument_names(args.env)
        unknown = sorted(set(self.env_kwargs) - set(allowed))
        if unknown:
            raise ConfigError(f"env_kwargs: unknown keys {unknown} for {args.env}; allowed: {allowed}")
        self.make_env = make_env or (lambda: gym.make(args.env, **self.env_kwargs))
        self.out = Path(args.out)
        self.model: BaseAlgorithm | None = None
        self.history: list[dict[str, float]] = []
        self.marks = {"row": 0, "checkpoint": 0, "eval": 0}  # timesteps of the last row, checkpoint, report
        self.pending: dict[str, list[float]] = {}  # per-episode values since the last row
        self.episodes = 0
        self._elapsed = 0.0
        self._start = 0.0
        self._latest = _Latest()
        self._tensorboard: _TensorBoard | None = None
        self._metrics: MetricsLog | None = None
        self._bar = None
        self._heldout_inputs: list[Genotype] = []
        self.summary: dict[str, Any] = {}

    # -------------------------------------------------------------------------------------------- build / resume
    def build(self) -> None:
        """A fresh model on fresh envs."""
        vec_env = DummyVecEnv([lambda: Monitor(self.make_env()) for _ in range(self.n_envs)])
        try:
            self.model = self.algo_class(self.policy, vec_env, seed=self.args.seed, device=self.args.device,
                                         verbose=0, policy_kwargs=self.policy_kwargs, **self.hyperparams)  # fmt: skip
        except NatGymError:
            raise
        except (AssertionError, ValueError, TypeError, RuntimeError) as e:  # SB3 and torch check values this way
            vec_env.close()
            raise ConfigError(f"hyperparams: {self.algo_class.__name__} rejects them ({type(e).__name__}: {e}); "
                              f"check the values of --hyperparams") from None  # fmt: skip
        self._attach()

    def _attach(self) -> None:
        self.vec_env = self.model.get_env()
        self.counters = vec_env_counters(self.vec_env)
        base = self.vec_env.envs[0].unwrapped
        # the held-out episodes run in a copy of env 0 that scores with the uncounted evaluator
        self.eval_env = copy.deepcopy(base, memo={id(base.evaluator): self.counters[0].evaluator})
        self._heldout_inputs = fresh_inputs(base.rules, base.steps, self.args.eval_inputs, self.args.eval_seed)

    @property
    def evaluations(self) -> int:
        """Reward evaluations of the training envs so far."""
        return evaluations_of(self.counters)

    def resume(self, path: str | Path | None = None) -> bool:
        """Continue from a checkpoint (default ``out/checkpoint.pt``) if it exists; returns whether it did.

        Raises:
            CheckpointError: the file is not an SB3 run checkpoint.
            ConfigError: an argument other than the budgets, logging and device differs from the checkpoint's.
        """
        from nat_gym.supernet.checkpoint import read_checkpoint

        path = Path(path) if path else self.out / "checkpoint.pt"
        if not path.is_file():
            return False
        payload = read_checkpoint(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION,
                                  "an SB3 run checkpoint (nat-gym train --algo maskable_ppo|ppo|a2c|dqn)")  # fmt: skip
        saved = SB3Args.from_dict(payload["args"])
        differ = [f.name for f in fields(SB3Args)
                  if f.name not in _RUN_ONLY_FIELDS and getattr(saved, f.name) != getattr(self.args, f.name)]  # fmt: skip
        if differ:
            desc = "; ".join(f"{n}: checkpoint {getattr(saved, n)!r}, now {getattr(self.args, n)!r}" for n in differ)
            raise ConfigError(
                f"resume: {str(path)!r} was saved with other arguments ({desc}); a resumed run keeps its "
                "configuration: pass the same values or choose another --out"
            )
        envs = pickle.loads(_bytes(payload["envs"]))
        vec_env = DummyVecEnv([lambda env=env: env for env in envs])
        # force_reset=False keeps the saved last observation, which matches the restored envs
        self.model = self.algo_class.load(io.BytesIO(_bytes(payload["model"])), env=vec_env, device=self.args.device,
                                          force_reset=False)  # fmt: skip
        if payload["replay_buffer"] is not None:
            self.model.load_replay_buffer(io.BytesIO(_bytes(payload["replay_buffer"])))
        rng = payload["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if rng.get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.model.action_space.np_random.bit_generator.state = rng["action_space"]
        self.history = list(payload["history"])
        self.marks = dict(payload["marks"])
        self.pending = {k: list(v) for k, v in payload["pending"].items()}
        self.episodes = int(payload["episodes"])
        self._elapsed = float(payload["elapsed"])
        self._attach()
        return True

    # -------------------------------------------------------------------------------------------- learning
    def done(self) -> bool:
        """Whether a budget is spent."""
        budget = self.args.evaluations
        return self.model.num_timesteps >= self.n_timesteps or (budget is not None and self.evaluations >= budget)

    def learn(self) -> list[dict[str, float]]:
        """Train until a budget is spent (continuing from the model's counters), write every output; returns the
        history."""
        from tqdm.auto import tqdm

        a, model = self.args, self.model
        self.out.mkdir(parents=True, exist_ok=True)
        resumed = model.num_timesteps > 0
        self._metrics = MetricsLog(self.out, "run", start_epoch=model.num_timesteps, config=asdict(a), x="timesteps")
        self._tensorboard = _TensorBoard(str(self.out), purge_step=model.num_timesteps + 1 if resumed else None)
        model.set_logger(Logger(str(self.out), [self._tensorboard, self._latest]))
        by_evaluations = a.evaluations is not None
        self._bar = tqdm(total=a.evaluations if by_evaluations else self.n_timesteps,
                         initial=self.evaluations if by_evaluations else model.num_timesteps,
                         desc=a.algo, unit="eval" if by_evaluations else "step", disable=not a.progress,
                         dynamic_ncols=True)  # fmt: skip
        callbacks: list[BaseCallback] = [_Hooks(self)]
        if by_evaluations:
            callbacks.append(StopOnEvaluations(a.evaluations))
        self._start = time.perf_counter()
        try:
            if not self.done():
                model.learn(total_timesteps=self.n_timesteps - model.num_timesteps, callback=callbacks,
                            reset_num_timesteps=not resumed, log_interval=1)  # fmt: skip
            if not self.history or self.history[-1]["timesteps"] < model.num_timesteps:
                self._row(final=True)
            self.save()
            self._finish()
        finally:
            self._bar.close()
            self._tensorboard.close()
            self._metrics.close()
        return self.history

    def on_step(self, locals_: dict[str, Any]) -> None:
        """After every vector-env step: per-episode statistics of the episodes that ended, the progress bar."""
        for done, info in zip(locals_["dones"], locals_["infos"]):
            if not done:
                continue
            self.episodes += 1
            episode = {"reward": info["episode"]["r"], "episode_length": info["episode"]["l"]}
            for key in ("madds_saving", "invalid_edges", "acc_before", "acc_after"):
                if key in info:
                    episode[key] = info[key]
            for key, value in episode.items():
                self.pending.setdefault(key, []).append(float(value))
        self._bar.update((self.evaluations if self.args.evaluations else self.model.num_timesteps) - self._bar.n)

    def on_rollout_start(self) -> None:
        """Before SB3 collects new steps (the model just took its update): metrics row, then checkpoint, when due."""
        t = self.model.num_timesteps
        if t == 0:
            return
        if t - self.marks["row"] >= self.args.log_every:
            self._row()
        if t - self.marks["checkpoint"] >= self.args.checkpoint_every:
            self.save()

    # -------------------------------------------------------------------------------------------- held-out
    def transform(self, betas: list[Genotype], deterministic: bool, seed: int | None = None) -> list[Genotype]:
        """What the current model makes of each input (:func:`agents.heldout.rollout_alphas` in the evaluation
        env, whose scores count in no budget), with every random stream isolated (seed ``seed``, default
        ``eval_seed``, below 2**32)."""
        return model_transform(self.model, self.args.algo, self.eval_env, betas, deterministic,
                               self.args.eval_seed if seed is None else seed)  # fmt: skip

    def evaluate_heldout(self) -> dict[str, float]:
        """Mean reward (sampled and argmax) on the ``eval_inputs`` fixed inputs, on the whole validation split: the
        same columns as ``--algo nat``'s report."""
        betas = self._heldout_inputs
        if not betas:
            return {}
        evaluator, cost_config = self.counters[0].evaluator, self.eval_env.cost_config
        rewards, savings = score(evaluator, cost_config, betas, self.transform(betas, False))
        argmax, _ = score(evaluator, cost_config, betas, self.transform(betas, True))
        return {
            "eval_acc_before": float(np.mean(evaluator.evaluate(betas))),
            "eval_reward": float(rewards.mean()),
            "eval_reward_argmax": float(argmax.mean()),
            "eval_madds_saving": float(savings.mean()),
        }

    # -------------------------------------------------------------------------------------------- outputs
    def _row(self, final: bool = False) -> None:
        t = self.model.num_timesteps
        row: dict[str, float] = {"timesteps": float(t), "episodes": float(self.episodes),
                                 "evaluations": float(self.evaluations),
                                 "evaluation_requests": float(sum(c.requested for c in self.counters))}  # fmt: skip
        for key in ("reward", "madds_saving", "invalid_edges", "acc_before", "acc_after", "episode_length"):
            values = self.pending.get(key, [])
            row[key] = float(np.mean(values)) if values else math.nan
        self.pending = {}
        row.update({k: v for k, v in {**self._latest.values, **self.model.logger.name_to_value}.items()
                    if k.startswith("train/") and isinstance(v, (int, float))})  # fmt: skip
        due = t - self.marks["eval"] >= self.args.eval_every
        if due or final:  # a final row reports without moving the schedule: a resumed run keeps it
            row.update(self.evaluate_heldout())
            self.marks["eval"] = t if due else self.marks["eval"]
        row["time"] = self._elapsed + time.perf_counter() - self._start
        self.marks["row"] = t
        self.history.append(row)
        self._metrics.write(self.history, {k: v for k, v in row.items() if not k.startswith("train/")})  # SB3 logs those
        self._bar.set_postfix({k: f"{row[k]:+.4f}" for k in ("reward", "eval_reward") if not math.isnan(row.get(k, math.nan))})

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run (see the module docstring)."""
        model = io.BytesIO()
        self.model.save(model)
        replay = None
        if getattr(self.model, "replay_buffer", None) is not None:
            buffer = io.BytesIO()
            self.model.save_replay_buffer(buffer)
            replay = buffer.getvalue()
        return {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "args": asdict(self.args),
            "hyperparams": {"policy": self.policy, "n_envs": self.n_envs, "n_timesteps": self.n_timesteps,
                            "policy_kwargs": repr(self.policy_kwargs), **self.hyperparams},  # fmt: skip
            "env_kwargs": dict(self.env_kwargs),
            "model": _blob(model.getvalue()),
            "replay_buffer": None if replay is None else _blob(replay),
            "envs": _blob(self._pickled_envs()),
            "rng": {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
                "action_space": self.model.action_space.np_random.bit_generator.state,
            },
            "history": list(self.history),
            "marks": dict(self.marks),
            "pending": {k: list(v) for k, v in self.pending.items()},
            "episodes": self.episodes,
            "timesteps": self.model.num_timesteps,
            "evaluations": self.evaluations,
            "elapsed": self._elapsed + time.perf_counter() - self._start,
        }

    def _pickled_envs(self) -> bytes:
        """The training envs (wrappers, state, RNG, evaluator with its supernet, evaluation counts), with the
        evaluators' caches emptied first: they are only a speed-up (scores are deterministic), and the cached
        activations alone would weigh tens of MB."""
        for counter in self.counters:
            clear = getattr(counter.evaluator, "clear_cache", None)
            if clear is not None:
                clear()
        return pickle.dumps(self.vec_env.envs, protocol=pickle.HIGHEST_PROTOCOL)

    def save(self, path: str | Path | None = None) -> Path:
        """Write the checkpoint atomically (default ``out/checkpoint.pt``)."""
        from nat_gym.supernet.checkpoint import atomic_save

        self.marks["checkpoint"] = self.model.num_timesteps
        return atomic_save(self.state_dict(), Path(path) if path else self.out / "checkpoint.pt")

    def _finish(self) -> None:
        from nat_gym.plotting import plot_learning_curves

        model_zip = self.out / "model.zip"
        tmp = self.out / ".model.zip.tmp"
        self.model.save(tmp)  # SB3 appends no suffix to a path that has one
        tmp.replace(model_zip)
        wanted = ["reward", "eval_reward", "eval_reward_argmax", "madds_saving", "eval_madds_saving", "invalid_edges",
                  "train/loss", "train/entropy_loss", "evaluations"]  # fmt: skip
        columns = [c for c in wanted if any(not math.isnan(r.get(c, math.nan)) for r in self.history)]
        plot_learning_curves(self.out / "metrics.csv", self.out / "learning_curves.png", x="timesteps", y=columns,
                             title=f"{self.algo_class.__name__} ({self.args.policy}) on {self.args.env}")  # fmt: skip
        base = self.eval_env
        heldout: dict[str, Any] = {}
        if self.args.heldout_inputs:
            betas = fresh_inputs(base.rules, base.steps, self.args.heldout_inputs)
            heldout = heldout_report(self.counters[0].evaluator, base.cost_config, base.rules, betas, self.transform)
        budget = self.args.evaluations
        summary = {
            "algo": self.args.algo, "env": self.args.env, "policy": self.args.policy,
            "timesteps": self.model.num_timesteps, "episodes": self.episodes, "evaluations": self.evaluations,
            "evaluation_requests": sum(c.requested for c in self.counters),
            "stopped_by": "evaluations" if budget is not None and self.evaluations >= budget else "timesteps",
            "seconds": self.history[-1]["time"], "last": self.history[-1], "heldout": heldout,
            "checkpoint": str(self.out / "checkpoint.pt"), "model": str(model_zip), "args": asdict(self.args),
            "hyperparams": {"policy": self.policy, "n_timesteps": self.n_timesteps,
                            "policy_kwargs": repr(self.policy_kwargs), **self.hyperparams},
        }  # fmt: skip
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
        self.summary = summary


# ====================================================================================================== entry points
def train(
    args: SB3Args, *, resume: bool = False, make_env: Callable[[], gym.Env] | None = None
) -> tuple[BaseAlgorithm, list[dict[str, float]]]:
    """Run (or, with ``resume``, continue) an SB3 run; returns ``(model, history)``.

    Raises:
        ConfigError: ``resume`` but ``args.out`` holds no checkpoint (nothing to resume), or not ``resume`` but it
            holds one (a run is never overwritten). Both are checked before any work starts.
    """
    ckpt = run_checkpoint(args.out, resume)
    run = SB3Run(args, make_env=make_env)
    if resume:
        run.resume(ckpt)
        print(f"{args.algo}: resumed {ckpt} at {run.model.num_timesteps} timesteps, {run.evaluations} evaluations")
    else:
        run.build()
    run.learn()
    print(result_text(args.algo, run.summary))
    return run.model, run.history


def result_text(algo: str, summary: dict[str, Any]) -> str:
    """The result of a run in one line: the held-out rewards of ``summary.json`` next to the two floors."""
    h = summary.get("heldout")
    if not h:
        return f"{algo}: no held-out report (heldout_inputs=0)"
    return (f"{algo}: held-out reward acc(alpha) - acc(beta) on {h['inputs']} fresh inputs after "
            f"{summary['evaluations']} evaluations: argmax {h['argmax']['reward']:+.4f}, sampled "
            f"{h['sampled']['reward']:+.4f}; floors: random valid {h['random_valid']['reward']:+.4f}, identity "
            f"{h['identity']['reward']:+.4f}; MAdds saving {h['argmax']['madds_saving']:.1%} argmax vs "
            f"{h['random_valid']['madds_saving']:.1%} random valid")  # fmt: skip


def model_transform(model: BaseAlgorithm, algo: str, env: gym.Env, betas: list[Genotype], deterministic: bool,
                    seed: int) -> list[Genotype]:  # fmt: skip
    """What ``model`` (of SB3 algorithm ``algo``) makes of each input: one episode per input in ``env`` (the env it
    was trained in, or one with the same observation and action spaces; :func:`agents.heldout.rollout_alphas`),
    actions from ``model.predict`` (``deterministic=True``: the most likely action; else sampled, DQN: SB3's
    epsilon-greedy), MaskablePPO given the env's ``action_masks()``. Every random stream is seeded with ``seed``
    (below 2**32) and put back afterwards (:func:`_isolated_rng`), so the result depends on ``seed`` only."""
    masked = algo in _MASKED

    def act(obs: dict[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
        action, _ = model.predict(obs, deterministic=deterministic, **({"action_masks": mask} if masked else {}))
        return action

    with _isolated_rng(seed, model):
        return rollout_alphas(env, act, betas)


def load_model(path: str | Path, device: str = "auto") -> tuple[BaseAlgorithm, SB3Args]:
    """The trained model of a run checkpoint (``OUT/checkpoint.pt``) and its arguments (no env attached)."""
    from nat_gym.supernet.checkpoint import read_checkpoint

    if Path(path).suffix == ".zip":
        raise CheckpointError(f"checkpoint: {str(path)!r} is SB3's own model file; give the run's checkpoint.pt "
                              f"next to it, or load the zip with the algorithm's class, e.g. MaskablePPO.load(path)")
    payload = read_checkpoint(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION,
                              "an SB3 run checkpoint (nat-gym train --algo maskable_ppo|ppo|a2c|dqn)")  # fmt: skip
    args = SB3Args.from_dict(payload["args"])
    try:
        model = algorithm_class(args.algo).load(io.BytesIO(_bytes(payload["model"])), device=device)
    except Exception as e:  # SB3 raises many types for a model it cannot rebuild
        raise CheckpointError(f"checkpoint: the model of {str(path)!r} cannot be loaded ({type(e).__name__}: {e})") from None
    return model, args
