"""Training the NAT / NAT++ transformer policy: Algorithm 1 of the papers, in one readable file (CleanRL style).

The policy :math:`\\pi(\\alpha \\mid \\beta)` (:class:`~agents.gcn_policy.GCNPolicy`) learns to transform an input
architecture ``beta`` into ``alpha`` (every edge's op becomes an op the transition rules allow). The reward is the
shared-weight accuracy gain ``acc(alpha) - acc(beta)`` on one validation minibatch, and the objective is

    max  E_beta E_alpha~pi(.|beta) [R(alpha | beta)] + lambda * (H_normal + H_reduce),   lambda = 0.003 per cell

optimised with REINFORCE and a moving-average baseline. Each epoch (Algorithm 1):

1. **supernet epoch**: one pass over the dataset's ``train`` split training the shared weights ``w`` by uniform
   sampling of input architectures (``beta`` only; ``alpha`` never trains ``w``). Skipped with
   ``train_supernet=False`` (frozen supernet). Its architectures and data order come from a stream of their own
   (:func:`supernet_seed`), never the one a supernet pretrained with the same seed was trained on.
2. **policy epoch**: one policy update per validation minibatch (``policy_updates_per_epoch``). An update samples
   ``m`` input architectures (``env.reset`` with a seed from the trainer's RNG), runs the GCN *once* over the
   ``m * n`` observations (each input repeated ``n`` times) to sample ``m * n`` transformations, scores all of them
   with *one* batched supernet call (the environment's evaluator cache is pre-filled), then reads the rewards through
   ``env.step`` (cache hits), and takes one Adam step on
   ``loss = -mean((R - b) * log pi(alpha|beta)) - entropy_coef * mean(H_normal + H_reduce)``.
3. **held-out report**: the mean reward of the policy on ``eval_inputs`` fixed random architectures, scored on the
   whole validation split (sampled and argmax transformations). The last report also scores the two floors that
   reward is read against, on the same inputs and images: random valid transformations (every edge an op the rules
   allow, uniformly; ``eval_reward_random``) and the identity (``eval_reward_identity``, 0 by construction).

The paper's settings are the defaults but two (README, "Why the paper's policy stays below the identity"): one input
per minibatch of 64 images (``m = 1``), Adam lr 3e-4, betas (0.5, 0.999), weight decay 5e-4, baseline decay 0.99,
entropy coefficient 0.003; supernet SGD lr 0.01 (cosine to 0.001), momentum 0.9, weight decay 3e-4, batch 64,
gradient clipping 5. Not the paper's: ``n = 4`` transformations per input (the paper: 1) and a keep prior of 3
(:class:`~agents.gcn_policy.GCNPolicy`'s ``keep_prior``; the paper: none, 0). With both, trained policies beat the
identity on fresh inputs; with the paper's, they stay below it. :data:`PAPER_SETTINGS` (``--n 1 --keep-prior 0``)
restores the paper's.

Outputs in ``args.out``: ``metrics.csv`` (one row per epoch; the floors in the last row), TensorBoard events,
``learning_curves.png`` (the floors as horizontal lines on the held-out reward panels), ``checkpoint.pt`` (written
atomically; everything needed to resume *exactly*: an interrupted run resumed with :meth:`NATTrainer.resume` ends
with the same policy weights as an uninterrupted one) and ``summary.json`` (``final``: the last held-out rewards,
``floors``: random valid and identity). :func:`train` ends by printing :func:`result_text`.

Usage::

    nat-gym train --algo nat                     # the digits default (the default supernet is cached on first use)
    python scripts/train.py --epochs 5 --out runs/quick
    from agents.nat_trainer import NATTrainerArgs, train
    policy, history = train(NATTrainerArgs(epochs=5))
"""

from __future__ import annotations

import csv
import json
import math
import random
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import nat_gym  # noqa: F401  (registers NATCell-v0)
from agents.gcn_policy import VARIANTS, GCNPolicy
from agents.heldout import fresh_inputs, gcn_transform, heldout_report
from agents.run_log import run_checkpoint
from nat_gym import rules as rule_sets
from nat_gym.envs.observation import OBS_KEYS, encode
from nat_gym.errors import CheckpointError, ConfigError, check_int
from nat_gym.genotype import Genotype
from nat_gym.sampling import random_valid_action

__all__ = [
    "NATTrainerArgs",
    "NATTrainer",
    "STRUCTURAL_FIELDS",
    "PAPER_SETTINGS",
    "supernet_seed",
    "CHECKPOINT_FORMAT",
    "train",
    "result_text",
    "load_policy",
    "load_trainer_checkpoint",
    "supernet_from_checkpoint",
    "make_env",
    "main",
]

CHECKPOINT_FORMAT = "nat-gym-nat-trainer"
CHECKPOINT_VERSION = 1
PAPER_SETTINGS: dict[str, Any] = {"n": 1, "keep_prior": 0.0}
"""The papers' values of the :class:`NATTrainerArgs` defaults nat-gym changed (README, "Why the paper's policy stays
below the identity"): ``NATTrainerArgs(**PAPER_SETTINGS)`` trains the papers' policy, ``--n 1 --keep-prior 0``."""
STRUCTURAL_FIELDS: tuple[str, ...] = ("variant", "rules", "steps", "op_embed_dim", "lift_dim", "hidden_dim",
                                      "keep_prior")
"""Arguments that fix the shapes of the policy (and the meaning of its outputs): a checkpoint saved with other
values cannot be loaded (:class:`~nat_gym.errors.CheckpointError` naming the field)."""

_RUN_ONLY_FIELDS = ("epochs", "out", "progress", "device", "threads", "checkpoint_every", "eval_every",
                    "heldout_inputs")
"""Arguments that may change when a run is resumed without making it a different run."""


# ====================================================================================================== arguments
@dataclass
class NATTrainerArgs:
    """Every knob of a NAT training run (the ``nat-gym train --algo nat`` flags; ``--help`` shows these texts)."""

    seed: int = 0
    """Seed of everything random: policy initialisation, input architectures, sampled transformations, data order."""
    rules: str = "nat++"
    """Transition rules (the action masks): nat++ (NAT++, 13 ops), nat (NAT O/S/N), nat++ext or nat-ext."""
    dataset: str = "digits"
    """Images of the supernet and of the reward: digits (embedded), cifar10, cifar100 or fake."""
    data_root: str | None = None
    """Folder holding the CIFAR files (ignored for digits)."""
    data_seed: int = 0
    """Seed of the train / valid / test split of the dataset."""
    steps: int = 4
    """Intermediate nodes per cell of the input architectures."""
    variant: str = "fixed"
    """GCN variant: fixed (self-loops, normalised adjacency, the edge's own op in the head) or faithful (the reference
    design, whose logits never see the edge's own op)."""
    epochs: int = 360
    """Epochs of Algorithm 1 (each: one supernet epoch, then one policy epoch; on digits 1.1-1.6 s on 2 CPU cores,
    so the default run takes 7-10 minutes). The papers: 100 (NAT), 200 (NAT++) on CIFAR-10."""
    m: int = 1
    """Input architectures per policy update (the paper: 1)."""
    n: int = 4
    """Sampled transformations per input architecture (the paper: 1; 4 lowers the variance of the policy gradient:
    README). One update scores m * (n + 1) architectures in one batched supernet pass."""
    policy_updates_per_epoch: int | None = None
    """Policy updates per epoch; none = one per validation minibatch of reward_images images, as the paper."""
    lr: float = 3e-4
    """Adam learning rate of the policy."""
    betas: tuple[float, float] = (0.5, 0.999)
    """Adam betas of the policy."""
    weight_decay: float = 5e-4
    """Adam weight decay of the policy."""
    entropy_coef: float = 0.003
    """Entropy bonus per cell: the objective adds entropy_coef * (H_normal + H_reduce)."""
    baseline_decay: float = 0.99
    """Decay of the moving-average reward baseline."""
    reward_images: int | None = 64
    """Images per reward minibatch (64 as the paper; each reset draws one minibatch); none = the whole validation
    split (deterministic rewards, one policy update per epoch by default)."""
    cost_weight: float = 0.0
    """Weight of the relative MAdds saving added to the reward (0 = the papers' reward; the rules keep cost down)."""
    train_supernet: bool = True
    """Alternate supernet epochs with policy epochs (Algorithm 1); --no-train-supernet keeps it frozen."""
    supernet: str | None = None
    """Supernet checkpoint to start from; none = the default supernet of the dataset (trained once and cached)."""
    supernet_lr: float = 0.01
    """SGD learning rate of the supernet epochs (cosine decay to supernet_lr_min over the run)."""
    supernet_lr_min: float = 0.001
    """Final SGD learning rate of the supernet."""
    supernet_momentum: float = 0.9
    """SGD momentum of the supernet."""
    supernet_weight_decay: float = 3e-4
    """SGD weight decay of the supernet."""
    supernet_batch_size: int = 64
    """Images per supernet SGD step (one random architecture per step)."""
    supernet_grad_clip: float = 5.0
    """Gradient-norm clipping of the supernet."""
    op_embed_dim: int = 100
    """GCN op-embedding width (reference: 100)."""
    lift_dim: int = 1024
    """GCN lifted node-feature width (reference: 1024)."""
    hidden_dim: int = 100
    """GCN hidden width (reference: 100)."""
    keep_prior: float = 3.0
    """Initial learned logit added to every edge's current op: each edge starts by keeping its op with probability
    e^b / (e^b + valid - 1), 80% on average for b = 3 (0 = the papers' policy, whose masked softmax starts near
    uniform over the valid targets, far from the identity; checkpoints saved before this field existed load as 0)."""
    device: str = "auto"
    """auto (CUDA when available), cpu or cuda."""
    threads: int | None = 1
    """torch CPU threads; none = torch's choice. The digits supernet and the GCN are tiny: one thread is as fast as
    two for the supernet epochs and several times faster for the policy updates (no thread oversubscription)."""
    out: str = "runs/nat"
    """Output folder: checkpoint.pt, metrics.csv, TensorBoard events, learning_curves.png, summary.json."""
    checkpoint_every: int = 10
    """Epochs between checkpoints (the last epoch is always saved)."""
    eval_inputs: int = 16
    """Fixed random input architectures (seed eval_seed) on which the policy's mean reward is reported after every
    epoch, scored on the whole validation split; 0 = no report."""
    eval_every: int = 10
    """Epochs between held-out reports (the last epoch always reports): each one scores 3 * eval_inputs
    architectures on the whole validation split with fresh supernet weights, the costliest part of an epoch."""
    eval_seed: int = 12345
    """Seed of the held-out input architectures and of their sampled transformations."""
    heldout_inputs: int = 200
    """Fresh input architectures of the final held-out report in summary.json (as scripts/evidence.py scores)."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        """Check every field; a bad value raises :class:`ConfigError` whose message starts with the field's name."""
        try:  # lists from JSON / argparse
            self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        except (TypeError, ValueError):  # a number or a word where two numbers belong
            raise ConfigError(f"betas: expected two numbers in [0, 1), got {self.betas!r}") from None
        if self.variant not in VARIANTS:
            raise ConfigError(f"variant: expected one of {list(VARIANTS)}, got {self.variant!r}")
        rule_sets.get(self.rules)  # raises for an unknown rule set
        for name, low in (("seed", 0), ("data_seed", 0), ("eval_seed", 0), ("epochs", 1), ("m", 1), ("n", 1),
                          ("steps", 1), ("op_embed_dim", 1), ("lift_dim", 1), ("hidden_dim", 1),
                          ("supernet_batch_size", 1), ("checkpoint_every", 1), ("eval_inputs", 0),
                          ("eval_every", 1), ("heldout_inputs", 0)):  # fmt: skip
            check_int(name, getattr(self, name), low)
        for name in ("policy_updates_per_epoch", "reward_images", "threads"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name}: expected a positive integer or None, got {value!r}")
        for name, low, high, what in (
            ("lr", 0.0, None, "a finite learning rate > 0"), ("supernet_lr", 0.0, None, "a finite learning rate > 0"),
            ("supernet_grad_clip", 0.0, None, "a finite gradient-norm bound > 0"),
            ("weight_decay", 0.0, "=", "a finite number >= 0"), ("entropy_coef", 0.0, "=", "a finite number >= 0"),
            ("cost_weight", 0.0, "=", "a finite number >= 0"),
            ("supernet_weight_decay", 0.0, "=", "a finite number >= 0"),
            ("supernet_lr_min", 0.0, "=", "a finite number >= 0"), ("baseline_decay", 0.0, 1.0, "a number in [0, 1)"),
            ("supernet_momentum", 0.0, 1.0, "a number in [0, 1)"), ("keep_prior", 0.0, "=", "a finite number >= 0"),
        ):  # fmt: skip
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if ok and high is None:
                ok = value > low
            elif ok:
                ok = value >= low and (high == "=" or value < high)
            if not ok:
                raise ConfigError(f"{name}: expected {what}, got {value!r}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"betas: expected two numbers in [0, 1), got {self.betas!r}")
        if self.supernet_lr_min > self.supernet_lr:
            raise ConfigError(f"supernet_lr_min: expected at most supernet_lr = {self.supernet_lr!r}, got "
                              f"{self.supernet_lr_min!r}")  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NATTrainerArgs:
        """Arguments from :func:`dataclasses.asdict` output (as stored in checkpoints); unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        # a checkpoint saved before the keep prior existed holds the papers' policy, without it
        return cls(**{"keep_prior": 0.0, **{k: v for k, v in data.items() if k in known}})


# ====================================================================================================== helpers
def make_env(args: NATTrainerArgs) -> gym.Env:
    """The training environment: ``NATCell-v0`` over the supernet and dataset of ``args``."""
    return gym.make(
        "NATCell-v0", rules=args.rules, supernet=args.supernet, dataset=args.dataset, data_root=args.data_root,
        data_seed=args.data_seed, steps=args.steps, reward_images=args.reward_images, cost_weight=args.cost_weight,
        device=args.device,
    )  # fmt: skip


def _stack(observations: Sequence[dict[str, np.ndarray]], repeat: int = 1) -> dict[str, np.ndarray]:
    """``[B * repeat, ...]`` arrays: observation ``i`` occupies rows ``i * repeat .. (i + 1) * repeat - 1``."""
    return {k: np.repeat(np.stack([o[k] for o in observations]), repeat, axis=0) for k in OBS_KEYS}


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def supernet_seed(seed: int) -> int:
    """The seed of the supernet epochs' (architecture, minibatch) stream in a run seeded ``seed``: derived from it,
    but never equal to a small seed such as the default supernet's (0).

    A :class:`~nat_gym.supernet.train.SupernetTrainer` draws epoch ``e`` from ``default_rng([seed, e])``. With the
    run's own seed, a seed-0 run replayed, epoch by epoch, the very (architecture, minibatch) pairs the default
    digits supernet was pretrained on, so the logged ``supernet_loss`` followed how well the supernet fitted those:
    it dipped to 0.10 and "drifted up" to 0.15 by epoch 300 (with frozen weights it dips just the same), while the
    loss of fixed architectures on the whole train split fell throughout; on a stream of its own the logged loss
    falls steadily and random architectures end 1.3 points more accurate (``scripts/supernet_drift.py``; README).
    """
    return int(np.random.SeedSequence([seed, 0x4E4154]).generate_state(1)[0])


def _build_policy(args: NATTrainerArgs, num_ops: int) -> GCNPolicy:
    return GCNPolicy(num_ops, args.variant, op_embed_dim=args.op_embed_dim, lift_dim=args.lift_dim,
                     hidden_dim=args.hidden_dim, keep_prior=args.keep_prior)  # fmt: skip


def _resolve_device(device: str) -> torch.device:
    from nat_gym.supernet.train import resolve_device

    return resolve_device(device)


# ====================================================================================================== trainer
class NATTrainer:
    """Algorithm 1: alternate supernet epochs and REINFORCE policy epochs (see the module docstring).

    Args:
        args: a :class:`NATTrainerArgs`.
        env: the environment to train in (default: :func:`make_env`). Any ``NATCell-v0`` works, e.g. one made with
            ``evaluator=CallableEvaluator(fn)`` to train against your own reward; the supernet epochs need a
            :class:`~nat_gym.evaluator.SupernetEvaluator` (use ``train_supernet=False`` otherwise).
        log: write ``metrics.csv``, TensorBoard events, checkpoints and the PNG into ``args.out``.

    Attributes:
        policy (GCNPolicy), optimizer (Adam), env, evaluator (the env's), rules, baseline (float or None before the
        first update), epoch (epochs done), updates (policy updates done), history (one dict per epoch).
    """

    def __init__(self, args: NATTrainerArgs, *, env: gym.Env | None = None, log: bool = True) -> None:
        self.args = args
        if args.threads:
            torch.set_num_threads(args.threads)
        self.device = _resolve_device(args.device)
        random.seed(args.seed)
        torch.manual_seed(args.seed)
        self.rng = np.random.default_rng(args.seed)  # input architectures (reset seeds)
        self.generator = torch.Generator(device=self.device).manual_seed(args.seed)  # sampled transformations

        self.env = env if env is not None else make_env(args)
        base = self.env.unwrapped
        self.rules = base.rules
        if self.rules != rule_sets.get(args.rules):
            raise ConfigError(f"env: its rule set is {self.rules.name!r} but args.rules is {args.rules!r}")
        if base.steps != args.steps:
            raise ConfigError(f"env: it has steps={base.steps} but args.steps is {args.steps}")
        self.evaluator = base.evaluator
        self.supernet = getattr(self.evaluator, "supernet", None)

        self.policy = _build_policy(args, self.rules.num_ops).to(self.device)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=args.lr, betas=tuple(args.betas),
                                          weight_decay=args.weight_decay)  # fmt: skip
        self.supernet_trainer = None
        if args.train_supernet:
            if self.supernet is None:
                raise ConfigError(
                    f"train_supernet: the environment's evaluator ({type(self.evaluator).__name__}) has no supernet "
                    "to train; pass train_supernet=False to train the policy against a fixed reward"
                )
            self.supernet_trainer = self._make_supernet_trainer()

        self.baseline: float | None = None
        self.epoch = 0
        self.updates = 0
        self.history: list[dict[str, float]] = []
        self._elapsed = 0.0  # seconds of training before this process (resumed runs)
        self.out = Path(args.out)
        self.log = log
        self._writer = None
        self._eval_inputs = fresh_inputs(self.rules, args.steps, args.eval_inputs, args.eval_seed)
        self.timing = {"update_seconds": 0.0, "updates": 0, "samples": 0}

    def _make_supernet_trainer(self):
        from nat_gym.data import load_dataset
        from nat_gym.supernet.config import SupernetTrainConfig
        from nat_gym.supernet.train import SupernetTrainer

        a = self.args
        data = load_dataset(a.dataset, root=a.data_root, seed=a.data_seed)
        config = SupernetTrainConfig(
            epochs=max(a.epochs, 1), batch_size=a.supernet_batch_size, lr=a.supernet_lr, lr_min=a.supernet_lr_min,
            momentum=a.supernet_momentum, weight_decay=a.supernet_weight_decay, grad_clip=a.supernet_grad_clip,
            seed=supernet_seed(a.seed), eval_archs=0,
        )  # fmt: skip
        return SupernetTrainer(self.supernet, data, config, device=self.device)

    # -------------------------------------------------------------------------------------------- one update
    def policy_update(self) -> dict[str, float]:
        """One REINFORCE update on ``m`` input architectures with ``n`` sampled transformations each."""
        a, env = self.args, self.env
        start = time.perf_counter()
        # 1. m input architectures: the environment samples beta from the reset seed (and its reward minibatch);
        #    unscored here, so that step 3 scores the inputs and their transformations in one batched call
        seeds = [int(s) for s in self.rng.integers(2**31 - 1, size=a.m)]
        observations, betas, batches = [], [], []
        for s in seeds:
            obs, info = env.reset(seed=s, options={"score": False})
            observations.append(obs)
            betas.append(info["genotype"])
            batches.append(info.get("reward_batch"))  # absent: scored on the whole validation split
        # 2. one GCN pass over the m * n observations samples every transformation
        actions, log_prob, entropy = self.policy.act(_stack(observations, a.n), generator=self.generator)
        actions_np = actions.cpu().numpy()
        # 3. one batched supernet pass per reward minibatch (one in all when m = 1) fills the evaluator's cache
        todo: dict[Any, list[Genotype]] = defaultdict(list)
        for i, beta in enumerate(betas):
            todo[batches[i]].append(beta)
            for j in range(a.n):
                todo[batches[i]].append(self.rules.apply_indices(beta, actions_np[i * a.n + j])[0])
        for batch, genotypes in todo.items():
            self.evaluator.evaluate(genotypes, batch)
        # 4. the rewards, through the environment's API (cache hits)
        rewards, infos = [], []
        for k in range(a.m * a.n):
            env.reset(seed=seeds[k // a.n])
            _, reward, _, _, info = env.step(actions_np[k])
            rewards.append(reward)
            infos.append(info)
        # 5. REINFORCE with a moving-average baseline (updated first, as ENAS / NAT do), entropy bonus per cell
        r = torch.tensor(rewards, dtype=torch.float32, device=self.device)
        mean_r = float(r.mean())
        d = a.baseline_decay
        self.baseline = mean_r if self.baseline is None else d * self.baseline + (1 - d) * mean_r
        advantage = r - self.baseline
        loss = -(advantage * log_prob).mean() - a.entropy_coef * entropy.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.updates += 1
        seconds = time.perf_counter() - start
        self.timing["update_seconds"] += seconds
        self.timing["updates"] += 1
        self.timing["samples"] += a.m * a.n
        stats = {
            "reward": mean_r,
            "acc_before": _mean([i["acc_before"] for i in infos]),
            "acc_after": _mean([i["acc_after"] for i in infos]),
            "entropy": float(entropy.detach().mean()),
            "loss": float(loss.detach()),
            "madds_saving": _mean([i["madds_saving"] for i in infos]),
            "params_saving": _mean([(i["params_before"] - i["params_after"]) / i["params_before"]
                                    if i["params_before"] else 0.0 for i in infos]),  # fmt: skip
            "invalid_edges": float(sum(i["invalid_edges"] for i in infos)),
            "baseline": self.baseline,
        }
        if self._writer is not None:
            for key in ("reward", "baseline", "entropy", "loss"):
                self._writer.add_scalar(f"update/{key}", stats[key], self.updates)
        return stats

    # -------------------------------------------------------------------------------------------- held-out report
    @torch.no_grad()
    def evaluate_heldout(self) -> dict[str, float]:
        """Mean reward of the policy (sampled and argmax) on the fixed held-out input architectures, scored on the
        whole validation split. Uses its own fixed-seed generator: it never touches the training RNG streams."""
        betas = self._eval_inputs
        if not betas:
            return {}
        obs = _stack([encode(g, self.rules) for g in betas])
        gen = torch.Generator(device=self.device).manual_seed(self.args.eval_seed)
        sampled, _, _ = self.policy.act(obs, generator=gen)
        argmax, _, _ = self.policy.act(obs, deterministic=True)
        alphas_s = [self.rules.apply_indices(g, act)[0] for g, act in zip(betas, sampled.cpu().numpy())]
        alphas_a = [self.rules.apply_indices(g, act)[0] for g, act in zip(betas, argmax.cpu().numpy())]
        acc_before, ((reward_s, saving_s), (reward_a, _)) = self._score_heldout(alphas_s, alphas_a)
        return {"eval_acc_before": acc_before, "eval_reward": reward_s, "eval_reward_argmax": reward_a,
                "eval_madds_saving": saving_s}  # fmt: skip

    @torch.no_grad()
    def heldout_floors(self) -> dict[str, float]:
        """The floors of the held-out reward, on the same inputs, images and weights as :meth:`evaluate_heldout`:
        random valid transformations (each edge an op the rules allow, uniformly; seeded by ``eval_seed``) and the
        identity (``alpha = beta``, reward 0). Returns ``eval_reward_random``, ``eval_madds_saving_random`` and
        ``eval_reward_identity`` (empty without held-out inputs)."""
        betas = self._eval_inputs
        if not betas:
            return {}
        rng = np.random.default_rng(self.args.eval_seed)
        randoms = [self.rules.apply_indices(b, random_valid_action(self.rules, b, rng))[0] for b in betas]
        identities = [self.rules.apply_indices(b, self.rules.op_indices(b))[0] for b in betas]
        _, ((reward_r, saving_r), (reward_i, _)) = self._score_heldout(randoms, identities)
        return {"eval_reward_random": reward_r, "eval_madds_saving_random": saving_r, "eval_reward_identity": reward_i}

    def _score_heldout(self, *alphas: list[Genotype]) -> tuple[float, list[tuple[float, float]]]:
        """Score the held-out inputs and each list of their transformations in one batched call on the whole
        validation split: the inputs' mean accuracy and, per list, (mean reward, mean relative MAdds saving)."""
        betas, cost = self._eval_inputs, self._cost
        acc = self.evaluator.evaluate(list(betas) + [a for group in alphas for a in group], None)
        k = len(betas)
        before, scores = acc[:k], []
        for i, group in enumerate(alphas, start=1):
            saving = np.mean([(cost(b).madds - cost(a).madds) / cost(b).madds for b, a in zip(betas, group)])
            scores.append((float((acc[i * k : (i + 1) * k] - before).mean()), float(saving)))
        return float(before.mean()), scores

    def _cost(self, genotype: Genotype):
        from nat_gym.cost import network_cost

        return network_cost(genotype, **self.env.unwrapped.cost_config)

    # -------------------------------------------------------------------------------------------- epochs
    def num_policy_updates(self) -> int:
        """Policy updates per epoch: ``policy_updates_per_epoch`` or one per validation minibatch."""
        return self.args.policy_updates_per_epoch or int(self.evaluator.num_batches)

    def train_epoch(self) -> dict[str, float]:
        """One epoch of Algorithm 1: a supernet epoch (unless frozen), a policy epoch, the held-out report."""
        start = time.perf_counter()
        row: dict[str, float] = {"epoch": float(self.epoch + 1)}
        if self.supernet_trainer is not None:
            sn = self.supernet_trainer.train_epoch()
            row.update(supernet_lr=sn["lr"], supernet_loss=sn["train_loss"], supernet_acc=sn["train_acc"])
        else:
            row.update(supernet_lr=math.nan, supernet_loss=math.nan, supernet_acc=math.nan)
        supernet_seconds = time.perf_counter() - start
        self.policy.train()
        stats = [self.policy_update() for _ in range(self.num_policy_updates())]
        for key in stats[0]:
            row[key] = float(np.sum([s[key] for s in stats])) if key == "invalid_edges" else _mean([s[key] for s in stats])
        row["baseline"] = float(self.baseline) if self.baseline is not None else math.nan
        policy_seconds = time.perf_counter() - start - supernet_seconds
        self.epoch += 1
        if self.epoch % self.args.eval_every == 0 or self.epoch == self.args.epochs:
            row.update(self.evaluate_heldout())
        if self.epoch == self.args.epochs:
            row.update(self.heldout_floors())
        row["updates"] = float(self.updates)
        row["supernet_seconds"] = supernet_seconds
        row["policy_seconds"] = policy_seconds
        row["epoch_seconds"] = time.perf_counter() - start
        return row

    def train(self, until_epoch: int | None = None, *, callback: Callable[[dict[str, float]], None] | None = None):
        """Train until epoch ``until_epoch`` (default ``args.epochs``), continuing from :attr:`epoch`; returns the
        history. Stopping early (``until_epoch < args.epochs``) and resuming later gives the same run."""
        from tqdm.auto import tqdm

        target = self.args.epochs if until_epoch is None else min(until_epoch, self.args.epochs)
        if self.log:
            self._open_writer()
        bar = tqdm(total=self.args.epochs, initial=self.epoch, desc="nat", unit="epoch",
                   disable=not self.args.progress, dynamic_ncols=True)  # fmt: skip
        start = time.perf_counter()
        try:
            while self.epoch < target:
                row = self.train_epoch()
                row["time"] = self._elapsed + time.perf_counter() - start
                self.history.append(row)
                if self.log:
                    self._log(row)
                bar.update(1)
                bar.set_postfix({k: f"{row[k]:+.4f}" for k in ("reward", "baseline", "eval_reward") if k in row})
                if callback is not None:
                    callback(row)
                if self.log and (self.epoch % self.args.checkpoint_every == 0 or self.epoch == target):
                    self.save()
        finally:
            bar.close()
            self._elapsed += time.perf_counter() - start
            if self._writer is not None:
                self._writer.flush()
        if self.log and self.epoch >= self.args.epochs and self.history:
            self._finish()
        return self.history

    # -------------------------------------------------------------------------------------------- logging
    def _open_writer(self) -> None:
        if self._writer is not None:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.out.mkdir(parents=True, exist_ok=True)
        # purge_step drops events a crashed run wrote after its last checkpoint
        self._writer = SummaryWriter(str(self.out), purge_step=self.epoch + 1 if self.epoch else None)
        if not self.epoch:
            self._writer.add_text("args", json.dumps(asdict(self.args), indent=1))

    def _log(self, row: dict[str, float]) -> None:
        # the whole CSV is rewritten from the history: a resumed run never duplicates rows
        columns = list(self.history[0])
        for r in self.history[1:]:
            columns += [k for k in r if k not in columns]
        path = self.out / "metrics.csv"
        tmp = path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns, restval="")
            w.writeheader()
            w.writerows(self.history)
        tmp.replace(path)
        for k, v in row.items():
            if k != "epoch" and not (isinstance(v, float) and math.isnan(v)):
                self._writer.add_scalar(f"nat/{k}", v, int(row["epoch"]))

    def _finish(self) -> None:
        from nat_gym.plotting import plot_learning_curves

        wanted = ["reward", "baseline", "eval_reward", "eval_reward_argmax", "entropy", "madds_saving",
                  "supernet_loss", "supernet_acc", "eval_acc_before"]  # fmt: skip
        columns = [c for c in wanted if any(not math.isnan(r.get(c, math.nan)) for r in self.history)]
        last = self.history[-1]
        floors = {label: last[key] for label, key in (("random valid", "eval_reward_random"),
                                                      ("identity", "eval_reward_identity")) if key in last}  # fmt: skip
        plot_learning_curves(self.out / "metrics.csv", self.out / "learning_curves.png", x="epoch", y=columns,
                             title=f"NAT ({self.args.rules}, {self.args.variant} GCN) on {self.args.dataset}",
                             reference_lines={"eval_reward": floors, "eval_reward_argmax": floors})  # fmt: skip
        heldout: dict[str, Any] = {}
        if self.args.heldout_inputs:
            betas = fresh_inputs(self.rules, self.args.steps, self.args.heldout_inputs)
            transform = gcn_transform(self.policy.eval(), self.rules, self.args.eval_seed)
            heldout = heldout_report(self.evaluator, self.env.unwrapped.cost_config, self.rules, betas, transform)
        summary = {
            "epochs": self.epoch, "updates": self.updates, "seconds": self._elapsed,
            "ms_per_update": 1e3 * self.timing["update_seconds"] / max(self.timing["updates"], 1),
            "final": {k: last[k] for k in ("eval_reward", "eval_reward_argmax", "eval_madds_saving") if k in last},
            "floors": {k: last[k] for k in ("eval_reward_random", "eval_reward_identity", "eval_madds_saving_random")
                       if k in last},
            "eval_inputs": len(self._eval_inputs), "heldout": heldout,
            "last": last, "checkpoint": str(self.out / "checkpoint.pt"), "args": asdict(self.args),
        }  # fmt: skip
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))

    # -------------------------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run exactly."""
        payload: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "args": asdict(self.args),
            "num_ops": self.rules.num_ops,
            "rules_ops": list(self.rules.ops),
            "policy": self.policy.state_dict(),
            "policy_optimizer": self.optimizer.state_dict(),
            "baseline": self.baseline,
            "epoch": self.epoch,
            "updates": self.updates,
            "history": list(self.history),
            "elapsed": self._elapsed,
            "rng": {
                "python": random.getstate(),
                "numpy": self.rng.bit_generator.state,
                "torch": torch.get_rng_state(),
                "generator": self.generator.get_state(),
            },
            "supernet": None,
        }
        if self.supernet is not None:
            payload["supernet"] = {
                "config": self.supernet.config.to_dict(),
                "state_dict": self.supernet.state_dict(),
                "trained": self.supernet_trainer is not None,
                "optimizer": self.supernet_trainer.optimizer.state_dict() if self.supernet_trainer else None,
                "epoch": self.supernet_trainer.epoch if self.supernet_trainer else 0,
            }
        return payload

    def save(self, path: str | Path | None = None) -> Path:
        """Write the checkpoint atomically (default: ``out/checkpoint.pt``)."""
        from nat_gym.supernet.checkpoint import atomic_save

        return atomic_save(self.state_dict(), Path(path) if path else self.out / "checkpoint.pt")

    def resume(self, path: str | Path | None = None) -> bool:
        """Continue from a checkpoint (default: ``out/checkpoint.pt``) if it exists; returns whether it did.

        Raises:
            CheckpointError: the file is not a trainer checkpoint, or was saved with other structural arguments
                (:data:`STRUCTURAL_FIELDS`) or another supernet configuration.
        """
        from nat_gym.supernet.checkpoint import load_optimizer_state

        path = Path(path) if path else self.out / "checkpoint.pt"
        if not path.is_file():
            return False
        payload = load_trainer_checkpoint(path)
        saved = NATTrainerArgs.from_dict(payload["args"])
        _check_structure(saved, self.args, path)
        others = [f.name for f in fields(NATTrainerArgs) if f.name not in STRUCTURAL_FIELDS + _RUN_ONLY_FIELDS
                  and getattr(saved, f.name) != getattr(self.args, f.name)]  # fmt: skip
        if others:
            warnings.warn(
                f"resume: {', '.join(others)} differ from the checkpoint's values; the run continues with the new "
                "ones (it will not reproduce the original run)",
                stacklevel=2,
            )
        self.policy.load_state_dict(payload["policy"])
        optimizer_state = _with_new_parameters(payload["policy_optimizer"], payload["policy"], self.policy)
        load_optimizer_state(self.optimizer, optimizer_state)  # lr, betas, weight decay: these args' values
        sn = payload.get("supernet")
        if self.supernet_trainer is not None:
            if not sn or not sn.get("trained"):
                raise CheckpointError(
                    f"checkpoint: {str(path)!r} holds no trained supernet (it was saved with train_supernet=False); "
                    "resume with train_supernet=False (--no-train-supernet)"
                )
            _check_supernet_config(self.supernet.config, sn["config"], path)
            self.supernet.load_state_dict(sn["state_dict"])
            self.supernet.bump_version()  # the evaluator's caches must not serve results of the old weights
            load_optimizer_state(self.supernet_trainer.optimizer, sn["optimizer"])
            self.supernet_trainer.epoch = int(sn["epoch"])
        self.baseline = payload["baseline"]
        self.epoch = int(payload["epoch"])
        self.updates = int(payload["updates"])
        self.history = list(payload["history"])
        self._elapsed = float(payload.get("elapsed", 0.0))
        rng = payload["rng"]
        random.setstate(rng["python"])
        self.rng.bit_generator.state = rng["numpy"]
        torch.set_rng_state(rng["torch"])
        self.generator.set_state(rng["generator"])
        return True


def _check_structure(saved: NATTrainerArgs, current: NATTrainerArgs, path: Path) -> None:
    for name in STRUCTURAL_FIELDS:
        a, b = getattr(saved, name), getattr(current, name)
        if name == "rules":
            a, b = rule_sets.get(a).name, rule_sets.get(b).name
        if a != b:
            raise CheckpointError(
                f"checkpoint: {str(path)!r} was saved with {name}={a!r} but this run has {name}={b!r}; "
                f"{name} fixes the policy's structure, so use --{name.replace('_', '-')} {a} or another --out"
            )


def _check_supernet_config(config, saved: dict[str, Any], path: Path) -> None:
    from nat_gym.supernet.config import SupernetConfig

    diff = config.diff(SupernetConfig.from_dict(saved))
    if diff:
        desc = "; ".join(f"supernet.{k}: this run has {a!r}, the checkpoint has {b!r}" for k, (a, b) in diff.items())
        raise CheckpointError(f"checkpoint: {str(path)!r} was saved with another supernet ({desc})")


# ====================================================================================================== loading
def _with_new_parameters(optimizer_state: dict[str, Any], policy_state: Mapping[str, Any],
                         policy: GCNPolicy) -> dict[str, Any]:  # fmt: skip
    """The optimizer state of a checkpoint whose policy predates parameters the policy has gained since (the fixed
    GCN's ``non_output_embed``, registered last): those join the parameter group without state, as Adam's fresh
    parameters do. Other checkpoints are returned as they are."""
    missing = [name for name, _ in policy.named_parameters() if name not in policy_state]
    groups = optimizer_state.get("param_groups", [])
    if not missing or len(groups) != 1:
        return optimizer_state
    ids = list(groups[0]["params"])
    start = max(ids, default=-1) + 1
    group = {**groups[0], "params": ids + list(range(start, start + len(missing)))}
    return {**optimizer_state, "param_groups": [group]}


def load_trainer_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate a trainer checkpoint (a dict; see :meth:`NATTrainer.state_dict`)."""
    from nat_gym.supernet.checkpoint import read_checkpoint

    what = "a NAT trainer checkpoint (nat-gym train --algo nat writes OUT/checkpoint.pt)"
    return read_checkpoint(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, what)


def load_policy(path: str | Path, device: str | torch.device = "cpu") -> tuple[GCNPolicy, NATTrainerArgs]:
    """The trained policy of a trainer checkpoint and the arguments it was trained with.

    Returns:
        ``(policy, args)``: the :class:`GCNPolicy` (eval mode, on ``device``) and its :class:`NATTrainerArgs`.
    """
    payload = load_trainer_checkpoint(path)
    args = NATTrainerArgs.from_dict(payload["args"])
    num_ops = rule_sets.get(args.rules).num_ops
    policy = _build_policy(args, num_ops)
    try:
        policy.load_state_dict(payload["policy"])
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint: the policy weights of {str(path)!r} do not fit ({e})") from None
    return policy.to(_resolve_device(str(device)) if isinstance(device, str) else device).eval(), args


def supernet_from_checkpoint(path: str | Path):
    """The supernet stored in a trainer checkpoint (its weights at the end of the run), or ``None``."""
    from nat_gym.supernet.config import SupernetConfig
    from nat_gym.supernet.model import Supernet

    sn = load_trainer_checkpoint(path).get("supernet")
    if not sn:
        return None
    supernet = Supernet(SupernetConfig.from_dict(sn["config"]))
    supernet.load_state_dict(sn["state_dict"])
    supernet.bump_version(f"nat-trainer:{Path(path).name}")
    return supernet


# ====================================================================================================== entry points
def train(args: NATTrainerArgs, *, resume: bool = False, env: gym.Env | None = None,
          log: bool = True) -> tuple[GCNPolicy, list[dict[str, float]]]:  # fmt: skip
    """Run (or, with ``resume``, continue) a NAT training run; returns ``(policy, history)``. At the end it prints the
    final held-out rewards next to the random-valid and identity floors (:func:`result_text`).

    Raises:
        ConfigError: ``resume`` but ``args.out`` holds no checkpoint (nothing to resume), or not ``resume`` but it
            holds one (a run is never overwritten). Both are checked before any work starts.
    """
    ckpt = run_checkpoint(args.out, resume, log=log)
    trainer = NATTrainer(args, env=env, log=log)
    if resume:
        trainer.resume(ckpt)
        print(f"nat: resumed {ckpt} at epoch {trainer.epoch}")
    trainer.train()
    print(result_text(trainer.history))
    return trainer.policy, trainer.history


def result_text(history: Sequence[dict[str, float]]) -> str:
    """The result of a run in one line: the last held-out rewards of the policy (sampled and argmax) next to the
    random-valid and identity floors measured on the same inputs (a reward above the random floor beats random
    valid transformations; above 0, the inputs themselves)."""
    rows = [r for r in history if not math.isnan(r.get("eval_reward", math.nan))]
    if not rows:
        return "nat: no held-out report (eval_inputs=0), so no result to compare with the floors"
    r = rows[-1]
    text = (f"nat: held-out reward acc(alpha) - acc(beta) at epoch {int(r['epoch'])}: policy {r['eval_reward']:+.4f} "
            f"sampled, {r['eval_reward_argmax']:+.4f} argmax")  # fmt: skip
    if "eval_reward_random" in r:
        text += (f"; floors: random valid {r['eval_reward_random']:+.4f}, identity {r['eval_reward_identity']:+.4f}; "
                 f"MAdds saving {r['eval_madds_saving']:.1%} sampled vs {r['eval_madds_saving_random']:.1%} "
                 "random valid")  # fmt: skip
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """``python scripts/train.py [flags]``: the same as ``nat-gym train --algo nat [flags]``."""
    import sys

    from agents.cli import main as cli_main

    return cli_main(["train", "--algo", "nat", *(sys.argv[1:] if argv is None else argv)])
