"""BlockQNN's search: tabular Q-learning over the block MDP, 64 blocks per iteration evaluated together (CleanRL style).

Each iteration (Zhong et al., CVPR 2018 section 3; TPAMI 2019):

1. **sample** ``blocks_per_iteration`` blocks with epsilon-greedy Q (epsilon from the schedule: the papers' 178
   iterations, :func:`~agents.qlearning.scaled_schedule` of them for a smaller budget, or ``random``: epsilon 1
   throughout, i.e. random search over valid layers), stepping ``BlockQNN-v0`` with deferred evaluation;
2. **evaluate** them in one batched ``evaluator.measure`` call (early-stop training, a persistent SQLite cache, and
   ``workers`` local processes or Ray workers, on this machine or a cluster (``executor``, ``address``): the
   papers' distributed asynchronous evaluation; the results come back in the order of the blocks, whatever the
   order in which they finish);
3. **replay**: append every ``(trajectory, reward)`` to the replay memory (in sampling order), then draw
   ``replay_batch`` entries uniformly (with replacement) and apply :func:`~agents.qlearning.q_update` to each.

Outputs in ``args.out``: ``metrics.csv`` (one row per iteration), TensorBoard events, ``learning_curves.png``,
``checkpoint.pt`` (atomic, with the arguments inside; ``--resume`` continues exactly: finished evaluations come back
from the SQLite cache), ``summary.json`` and the ``top_k`` best blocks found (``top_blocks.json`` and
``top_blocks.png``).

Usage::

    nat-gym train --algo blockqnn                  # the digits default (README: its time on 2 cores)
    nat-gym train --algo blockqnn --workers 32 --address HEAD:6379   # the blocks trained on a Ray cluster
    from agents.blockqnn_trainer import BlockQNNArgs, train
    trainer = train(BlockQNNArgs(iterations=12, blocks_per_iteration=16))
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import nat_gym  # noqa: F401  (registers BlockQNN-v0)
from agents.qlearning import PAPER_SCHEDULE, START, QTable, epsilon_at, q_update, scaled_schedule
from agents.run_log import add_scalars, open_writer, run_checkpoint, write_history_csv
from nat_gym.block_evaluator import (
    EXECUTORS,
    BlockMeasurement,
    DatasetSpec,
    EarlyStopEvaluator,
    EarlyStopRecipe,
    RewardConfig,
)
from nat_gym.errors import CheckpointError, ConfigError, check_int

__all__ = ["BlockQNNArgs", "BlockQNNTrainer", "SCHEDULES", "CHECKPOINT_FORMAT", "make_env", "train",
           "load_trainer_checkpoint", "result_text"]  # fmt: skip

CHECKPOINT_FORMAT = "nat-gym-blockqnn-trainer"
CHECKPOINT_VERSION = 1
SCHEDULES: tuple[str, ...] = ("scaled", "paper", "random")
"""Epsilon schedules: ``scaled`` (the papers' proportions over ``iterations``), ``paper`` (178 iterations) and
``random`` (epsilon 1 for ``iterations``: random search)."""

_RUN_ONLY_FIELDS = ("out", "progress", "device", "threads", "workers", "executor", "address", "eval_timeout",
                    "checkpoint_every", "cache", "top_k")  # fmt: skip
"""Arguments that may change when a run is resumed without making it a different run."""


# ====================================================================================================== arguments
@dataclass
class BlockQNNArgs:
    """Every knob of a BlockQNN search (the ``nat-gym train --algo blockqnn`` flags; ``--help`` shows these texts)."""

    seed: int = 0
    """Seed of the agent: epsilon-greedy choices and replay sampling (the block trainings are seeded by train_seed)."""
    schedule: str = "scaled"
    """Epsilon schedule: scaled (the papers' phases stretched to --iterations), paper (178 iterations of 1.0 ... 0.1)
    or random (epsilon 1 throughout: random search over valid layers, the baseline)."""
    iterations: int = 24
    """Iterations of the scaled (at least 10: one per epsilon phase) and random schedules (ignored by paper, which
    has 178)."""
    blocks_per_iteration: int = 64
    """Blocks sampled per iteration and evaluated in one batch (the papers: 64)."""
    replay_batch: int = 64
    """Replay-memory entries drawn uniformly (with replacement) and learnt from after each iteration (the papers:
    64)."""
    max_index: int = 10
    """Most layers per block (the MDP's index cap). The papers: 23 (?); 10 for the digits default (public
    re-implementations use 10 or 11): uniform exploration mostly reaches the cap, and evaluation time grows with it."""
    q_init: float = 0.5
    """Initial Q value of every (state, action) (the papers (?) and MetaQNN: 0.5)."""
    q_lr: float = 0.01
    """Q-learning rate alpha (the papers: 0.01)."""
    discount: float = 1.0
    """Discount gamma (the papers: 1)."""
    shaping: bool = True
    """Reward shaping: intermediate transitions get r_T / T (the papers); --no-shaping gives them 0."""
    mu: float = 0.01
    """Weight of the FLOPs term mu * log(FLOPs / FLOPs_ref) of the reward (the papers' 1 (?) for accuracy in %)."""
    rho: float = 0.08
    """Weight of the density term rho * log(density) of the reward (the papers' 8 (?) for accuracy in %)."""
    dataset: str = "digits"
    """Images the blocks are trained (train split) and scored (valid split) on: digits (embedded), cifar10, cifar100
    or fake. The test split is never used."""
    data_root: str | None = None
    """Folder holding the CIFAR files (ignored for digits)."""
    data_seed: int = 0
    """Seed of the train / valid / test split of the dataset."""
    channels: int = 8
    """Early stop: the stacked network's stem width C (stages C, 2C, 4C). The papers' CIFAR search: 32 (?)."""
    blocks_per_stage: int = 1
    """Early stop: blocks N per stage. The papers' CIFAR search: 4 (?)."""
    train_epochs: int = 4
    """Early stop: training epochs per block (the papers: 12)."""
    train_batch_size: int = 128
    """Early stop: images per Adam step (the papers: 256 (?))."""
    train_lr: float = 0.01
    """Early stop: Adam learning rate (the papers: 0.001)."""
    train_lr_decay: float = 0.2
    """Early stop: factor of the step decay of the learning rate (the papers: 0.2)."""
    train_lr_step: int = 3
    """Early stop: epochs between learning-rate decays (the papers: 5)."""
    train_weight_decay: float = 0.0
    """Early stop: Adam weight decay."""
    train_seed: int = 0
    """Early stop: seed of the initial weights and data order (part of the cache key: every run that shares it
    shares the evaluations)."""
    cache: str | None = "default"
    """Persistent evaluation cache (SQLite): default (~/.cache/nat-gym/blockqnn-evaluations.sqlite or
    $NAT_GYM_CACHE), a file path, or none."""
    workers: int = 2
    """Processes (or Ray workers) that train the blocks of an iteration in parallel (1 = in this process, unless on
    Ray)."""
    executor: str = "auto"
    """Where the blocks train: process (local worker processes), ray (Ray workers: a local Ray, or the cluster of
    --address / RAY_ADDRESS; a killed worker's block is retried on another) or auto (ray when a cluster address is
    given, else process). The Q-learning updates are the same whichever is used."""
    address: str | None = None
    """A Ray cluster to train the blocks on (HOST:PORT of its head, as ray start prints it); none: RAY_ADDRESS if set,
    else this machine."""
    eval_timeout: float | None = None
    """Seconds one block's training may take before its worker is killed and the block retried (twice, then the run
    stops with an error; finished evaluations stay in the cache); needs --executor ray (or auto with a cluster
    address): local processes have no time limit, so with them it is an error; none = no limit."""
    device: str = "auto"
    """auto (CUDA when available), cpu or cuda."""
    threads: int | None = 1
    """torch CPU threads per block training; none = torch's choice."""
    top_k: int = 5
    """Best blocks (by reward) listed in summary.json and drawn in top_blocks.png."""
    out: str = "runs/blockqnn"
    """Output folder: checkpoint.pt, metrics.csv, TensorBoard events, learning_curves.png, summary.json,
    top_blocks.json, top_blocks.png."""
    checkpoint_every: int = 1
    """Iterations between checkpoints (the last iteration is always saved)."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule: expected one of {list(SCHEDULES)}, got {self.schedule!r}")
        if self.schedule == "scaled":
            scaled_schedule(self.iterations)  # one iteration per epsilon phase at least (a ConfigError that says so)
        for name, low in (("iterations", 1), ("blocks_per_iteration", 1), ("replay_batch", 0), ("max_index", 1),
                          ("top_k", 1), ("workers", 1), ("checkpoint_every", 1)):  # fmt: skip
            check_int(name, getattr(self, name), low)
        if self.executor not in EXECUTORS:
            raise ConfigError(f"executor: expected one of {list(EXECUTORS)}, got {self.executor!r}")
        if self.eval_timeout is not None and not self.eval_timeout > 0:
            raise ConfigError(f"eval_timeout: expected a positive number of seconds or none, got {self.eval_timeout!r}")
        if not 0 < self.q_lr <= 1:
            raise ConfigError(f"q_lr: expected a learning rate in (0, 1], got {self.q_lr!r}")
        if not 0 <= self.discount <= 1:
            raise ConfigError(f"discount: expected a number in [0, 1], got {self.discount!r}")
        self.recipe()  # validates the early-stop fields
        RewardConfig(self.mu, self.rho)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlockQNNArgs:
        """Arguments from :func:`dataclasses.asdict` output (as stored in checkpoints); unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def recipe(self) -> EarlyStopRecipe:
        """The early-stop recipe these arguments describe."""
        return EarlyStopRecipe(C=self.channels, N=self.blocks_per_stage, epochs=self.train_epochs,
                               batch_size=self.train_batch_size, lr=self.train_lr, lr_decay=self.train_lr_decay,
                               lr_step=self.train_lr_step, weight_decay=self.train_weight_decay,
                               seed=self.train_seed)  # fmt: skip

    def epsilon_schedule(self) -> tuple[tuple[float, int], ...]:
        """``(epsilon, iterations)`` phases of the run."""
        if self.schedule == "paper":
            return PAPER_SCHEDULE
        if self.schedule == "random":
            return ((1.0, self.iterations),)
        return scaled_schedule(self.iterations)


def make_env(args: BlockQNNArgs) -> gym.Env:
    """``BlockQNN-v0`` with the early-stop evaluator, dataset and cache of ``args``."""
    cache = None if args.cache in (None, "none") else args.cache
    evaluator = EarlyStopEvaluator(DatasetSpec(args.dataset, args.data_seed, root=args.data_root), args.recipe(),
                                   reward=RewardConfig(args.mu, args.rho), cache=cache, device=args.device,
                                   workers=args.workers, threads=args.threads, executor=args.executor,
                                   address=args.address, timeout=args.eval_timeout)  # fmt: skip
    return gym.make("BlockQNN-v0", max_index=args.max_index, evaluator=evaluator)


# ====================================================================================================== trainer
class BlockQNNTrainer:
    """The BlockQNN search loop (see the module docstring).

    Args:
        args: a :class:`BlockQNNArgs`.
        env: a ``BlockQNN-v0`` (default: :func:`make_env`); its evaluator scores the blocks, e.g. a
            :class:`~nat_gym.block_evaluator.CallableBlockEvaluator` to search against your own proxy.
        log: write the outputs into ``args.out``.

    Attributes:
        q (QTable), replay (list of ``(actions, reward)``), iteration (iterations done), history (one dict per
        iteration), blocks (every distinct block evaluated: ``digest -> record``), schedule, env, evaluator.
    """

    def __init__(self, args: BlockQNNArgs, *, env: gym.Env | None = None, log: bool = True) -> None:
        self.args = args
        self.env = env if env is not None else make_env(args)
        base = self.env.unwrapped
        if base.max_index != args.max_index:
            raise ConfigError(f"env: it has max_index={base.max_index} but args.max_index is {args.max_index}")
        self.evaluator = base.evaluator
        self.schedule = args.epsilon_schedule()
        self.total_iterations = sum(n for _, n in self.schedule)
        self.rng = np.random.default_rng(args.seed)
        self.q = QTable(args.q_init)
        self.replay: list[tuple[tuple[int, ...], float]] = []
        self.blocks: dict[str, dict[str, Any]] = {}
        self.iteration = 0
        self.history: list[dict[str, float]] = []
        self.out, self.log = Path(args.out), log
        self._writer = None
        self._elapsed = 0.0  # seconds of search before the current train() call (resumed runs)
        self._running_since: float | None = None

    # -------------------------------------------------------------------------------------------- one iteration
    def sample(self, epsilon: float) -> tuple[list[int], Any]:
        """One epsilon-greedy trajectory through the environment (evaluation deferred); ``(actions, block)``."""
        _, info = self.env.reset(options={"evaluate": False})
        state, actions = START, []
        while True:
            a = self.q.act(state, int(info["action_mask"].sum()), epsilon, self.rng)
            _, _, terminated, _, info = self.env.step(a)
            actions.append(a)
            if terminated:
                return actions, info["block"]
            state = tuple(info["layer"])

    def train_iteration(self) -> dict[str, float]:
        """Sample a batch of blocks, evaluate them together, learn from the replay memory; returns the metrics row."""
        a = self.args
        start = time.perf_counter()
        epsilon = epsilon_at(self.schedule, self.iteration)
        samples = [self.sample(epsilon) for _ in range(a.blocks_per_iteration)]
        sampled = time.perf_counter()
        before = _counts(self.evaluator)
        measured = self.evaluator.measure([block for _, block in samples])
        evaluated = time.perf_counter()
        after = _counts(self.evaluator)
        known = len(self.blocks)
        for (actions, _), m in zip(samples, measured):  # sampling order, whatever the completion order
            self.replay.append((tuple(actions), m.reward))
            self._record(m)
        for i in self.rng.integers(len(self.replay), size=a.replay_batch):
            actions, reward = self.replay[int(i)]
            q_update(self.q, actions, reward, lr=a.q_lr, discount=a.discount, shaping=a.shaping)
        self.iteration += 1
        rewards = np.array([m.reward for m in measured])
        trained = after["trained"] - before["trained"]
        train_seconds = float(sum(m.seconds for m in measured if m.source == "trained"))
        best = max(self.blocks.values(), key=lambda r: r["reward"])
        return {
            "iteration": float(self.iteration), "epsilon": epsilon, "blocks": float(len(samples)),
            "mean_reward": float(rewards.mean()), "max_reward": float(rewards.max()),
            "mean_accuracy": float(np.mean([m.accuracy for m in measured])),
            "mean_layers": float(np.mean([len(m.block) for m in measured])),
            "mean_flops": float(np.mean([m.flops for m in measured])),
            "mean_density": float(np.mean([m.density for m in measured])),
            "best_reward": float(best["reward"]), "best_accuracy": float(best["accuracy"]),
            "trained": float(trained), "cache_hits": float(after["cache_hits"] - before["cache_hits"]),
            "memory_hits": float(after["memory_hits"] - before["memory_hits"]),
            "hit_rate": 1.0 - trained / len(samples), "new_blocks": float(len(self.blocks) - known),
            "distinct_blocks": float(len(self.blocks)),
            "q_entries": float(len(self.q)), "sample_seconds": sampled - start, "eval_seconds": evaluated - sampled,
            "train_seconds": train_seconds, "seconds_per_trained_block": (evaluated - sampled) / trained if trained else math.nan,
            "iteration_seconds": time.perf_counter() - start,
        }  # fmt: skip

    def _record(self, m: BlockMeasurement) -> None:
        key = m.block.digest()
        if key not in self.blocks:
            info = m.info()
            info["block"] = str(m.block.canonical())
            info["count"] = 0
            for k in ("seconds", "source"):
                info.pop(k)
            self.blocks[key] = info
        self.blocks[key]["count"] += 1

    def top_blocks(self, k: int | None = None) -> list[dict[str, Any]]:
        """The ``k`` (default ``args.top_k``) distinct blocks with the highest reward so far, best first."""
        ranked = sorted(self.blocks.values(), key=lambda r: (-r["reward"], r["block"]))
        return ranked[: k or self.args.top_k]

    # -------------------------------------------------------------------------------------------- the loop
    def train(self, until_iteration: int | None = None) -> list[dict[str, float]]:
        """Run until iteration ``until_iteration`` (default: the end of the schedule), continuing from
        :attr:`iteration`; returns the history. Stopping early and resuming later gives the same run."""
        from tqdm.auto import tqdm

        target = self.total_iterations if until_iteration is None else min(until_iteration, self.total_iterations)
        if self.log and self._writer is None:
            self._writer = open_writer(self.out, self.iteration, asdict(self.args))
        bar = tqdm(total=self.total_iterations, initial=self.iteration, desc="blockqnn", unit="iter",
                   disable=not self.args.progress, dynamic_ncols=True)  # fmt: skip
        self._running_since = time.perf_counter()
        try:
            while self.iteration < target:
                row = self.train_iteration()
                row["time"] = self.elapsed
                self.history.append(row)
                bar.update(1)
                bar.set_postfix({"eps": f"{row['epsilon']:.1f}", "reward": f"{row['mean_reward']:.4f}",
                                 "best": f"{row['best_reward']:.4f}", "hit": f"{row['hit_rate']:.0%}"})  # fmt: skip
                if self.log:
                    write_history_csv(self.history, self.out / "metrics.csv")
                    add_scalars(self._writer, "blockqnn", row, self.iteration, skip=("iteration",))
                    if self.iteration % self.args.checkpoint_every == 0 or self.iteration == target:
                        self.save()
        finally:
            bar.close()
            self._elapsed, self._running_since = self.elapsed, None
            if self._writer is not None:
                self._writer.flush()
        if self.log and self.iteration >= self.total_iterations and self.history:
            self._finish()
        return self.history

    @property
    def elapsed(self) -> float:
        """Seconds of search so far, resumed runs included."""
        return self._elapsed + (time.perf_counter() - self._running_since if self._running_since else 0.0)

    # -------------------------------------------------------------------------------------------- outputs
    def summary(self) -> dict[str, Any]:
        """Totals of the run so far (what ``summary.json`` holds)."""
        sampled = sum(r["blocks"] for r in self.history)
        trained = sum(r["trained"] for r in self.history)
        eval_seconds = sum(r["eval_seconds"] for r in self.history)
        last = self.history[-max(1, len(self.history) // 10):]  # the last tenth of the run
        return {
            "iterations": self.iteration, "blocks_sampled": int(sampled), "blocks_trained": int(trained),
            "distinct_blocks": len(self.blocks), "cache_hit_rate": (sampled - trained) / sampled if sampled else 0.0,
            "seconds": self.elapsed, "eval_seconds": eval_seconds,
            "seconds_per_trained_block": eval_seconds / trained if trained else None,
            "mean_reward_last_iterations": float(np.mean([r["mean_reward"] for r in last])) if last else None,
            "last_iterations": len(last), "top_blocks": self.top_blocks(),
            "schedule": [list(p) for p in self.schedule], "args": asdict(self.args),
        }  # fmt: skip

    def _finish(self) -> None:
        from nat_gym.blocks import Block
        from nat_gym.blocks.plotting import save_block_png
        from nat_gym.plotting import plot_learning_curves

        a = self.args
        columns = ["mean_reward", "best_reward", "epsilon", "mean_accuracy", "mean_layers", "hit_rate"]
        plot_learning_curves(self.out / "metrics.csv", self.out / "learning_curves.png", x="iteration", y=columns,
                             title=f"BlockQNN ({a.schedule} schedule) on {a.dataset}")  # fmt: skip
        summary = self.summary()
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
        top = summary["top_blocks"]
        (self.out / "top_blocks.json").write_text(json.dumps(top, indent=2, default=float))
        titles = [f"#{i + 1}: reward {r['reward']:.4f}, acc {r['accuracy']:.3f}" for i, r in enumerate(top)]
        save_block_png(self.out / "top_blocks.png", [Block.parse(r["block"]) for r in top], titles)
        print(result_text(summary))

    # -------------------------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run exactly."""
        return {
            "format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, "args": asdict(self.args),
            "q": self.q.state_dict(), "replay": list(self.replay), "blocks": dict(self.blocks),
            "iteration": self.iteration, "history": list(self.history), "elapsed": self.elapsed,
            "rng": self.rng.bit_generator.state,
        }  # fmt: skip

    def save(self, path: str | Path | None = None) -> Path:
        """Write the checkpoint atomically (default: ``out/checkpoint.pt``)."""
        from nat_gym.supernet.checkpoint import atomic_save

        return atomic_save(self.state_dict(), Path(path) if path else self.out / "checkpoint.pt")

    def resume(self, path: str | Path | None = None) -> bool:
        """Continue from a checkpoint (default: ``out/checkpoint.pt``) if it exists; returns whether it did.

        Raises:
            CheckpointError: the file is not a BlockQNN checkpoint, or was saved with other arguments than the
                run-only ones (``out``, ``progress``, ``device``, ``threads``, ``workers``, ``checkpoint_every``,
                ``cache``, ``top_k``).
        """
        path = Path(path) if path else self.out / "checkpoint.pt"
        if not path.is_file():
            return False
        payload = load_trainer_checkpoint(path)
        saved = BlockQNNArgs.from_dict(payload["args"])
        diff = [f.name for f in fields(BlockQNNArgs) if f.name not in _RUN_ONLY_FIELDS
                and getattr(saved, f.name) != getattr(self.args, f.name)]  # fmt: skip
        if diff:
            desc = ", ".join(f"{n}={getattr(saved, n)!r} (this run: {getattr(self.args, n)!r})" for n in diff)
            raise CheckpointError(f"checkpoint: {str(path)!r} was saved with {desc}; resume with the same values "
                                  "or choose another --out")  # fmt: skip
        self.q.load_state_dict(payload["q"])
        self.replay = [(tuple(a), float(r)) for a, r in payload["replay"]]
        self.blocks = dict(payload["blocks"])
        self.iteration = int(payload["iteration"])
        self.history = list(payload["history"])
        self._elapsed = float(payload["elapsed"])
        self.rng.bit_generator.state = payload["rng"]
        return True


def _counts(evaluator: Any) -> dict[str, float]:
    info = getattr(evaluator, "cache_info", None) or {}
    return {k: float(info.get(k, 0)) for k in ("trained", "cache_hits", "memory_hits")}


# ====================================================================================================== entry points
def load_trainer_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate a BlockQNN checkpoint (a dict; see :meth:`BlockQNNTrainer.state_dict`)."""
    from nat_gym.supernet.checkpoint import read_checkpoint

    what = "a BlockQNN checkpoint (nat-gym train --algo blockqnn writes OUT/checkpoint.pt)"
    return read_checkpoint(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, what)


def result_text(summary: dict[str, Any]) -> str:
    """The result of a search in one line: the best block found (reward and early-stop accuracy), the mean reward of
    the last iterations, and how many blocks were sampled and trained (the rest came from the cache)."""
    head = f"blockqnn: {summary['iterations']} iterations, {summary['blocks_sampled']} blocks sampled, " \
           f"{summary['blocks_trained']} trained (cache hit rate {summary['cache_hit_rate']:.1%})"
    top = summary.get("top_blocks") or []
    if not top:
        return head
    best = top[0]
    return (f"{head}; best block {best['block']}: reward {best['reward']:.4f}, early-stop accuracy "
            f"{best['accuracy']:.3f}; mean reward of the last {summary['last_iterations']} iterations "
            f"{summary['mean_reward_last_iterations']:.4f}")


def train(args: BlockQNNArgs, *, resume: bool = False, env: gym.Env | None = None,
          log: bool = True) -> BlockQNNTrainer:  # fmt: skip
    """Run (or, with ``resume``, continue) a BlockQNN search; returns the trainer (``.history``, ``.top_blocks()``,
    ``.summary()``).

    Raises:
        ConfigError: ``resume`` but ``args.out`` holds no checkpoint (nothing to resume), or not ``resume`` but it
            holds one (a run is never overwritten). Both are checked before any work starts.
    """
    ckpt = run_checkpoint(args.out, resume, log=log)
    trainer = BlockQNNTrainer(args, env=env, log=log)
    if resume and trainer.resume():
        print(f"blockqnn: resumed {ckpt} at iteration {trainer.iteration}")
    try:
        trainer.train()
    finally:  # stop the worker processes / give the Ray workers' CPUs back
        close = getattr(trainer.evaluator, "close", None)
        if env is None and close is not None:
            close()
    return trainer
