"""Deriving a transformed architecture with a trained NAT policy (``nat-gym transform``).

As the papers derive their results: sample ``samples`` (default 10) candidate transformations ``alpha`` of the input
architecture ``beta`` from :math:`\\pi(\\cdot \\mid \\beta)` (or take the most likely one, ``argmax=True``, the
ablation), and keep the candidate with the best shared-weight accuracy on held-out *training* data: the environment
evaluator's validation split. The test split is never looked at (the NAT++ reference code selected on the test set).

Guarantees on every candidate:

- it is valid under the transition rules (same graph, every edge's new op an allowed target);
- it never costs more than the input, in parameters and MAdds, at the supernet's shape and at the DARTS CIFAR shape
  (C=36, 20 layers, 32x32x3, 10 classes), except where an edge goes ``null -> skip_connect`` (the rules allow it and
  it is not free; it is reported). The rules alone do not ensure this everywhere: in a reduction cell a stride-2
  ``skip_connect`` is a factorized reduce with ``C^2`` weights, so ``pool -> skip`` adds parameters there. The policy
  therefore samples under a *cost guard*: its BMSoftmax mask is the rules' mask minus the targets that would raise
  that edge's cost at either shape (costs add up over edges, so the whole network cannot cost more either).
  :attr:`TransformResult.guarded_targets` counts the (edge, op) pairs the guard removed.

The policy (a GCN) works with any number of intermediate nodes per cell; the supernet does not: a genotype needs a
supernet with at least its ``steps`` and every op it uses (see :func:`check_transformable`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.gcn_policy import GCNPolicy
from nat_gym import genotypes as named
from nat_gym import rules as rule_sets
from nat_gym.cost import network_cost
from nat_gym.envs.observation import encode
from nat_gym.errors import ConfigError, GenotypeError, NatGymError
from nat_gym.genotype import Genotype
from nat_gym.rules import TransitionRules
from nat_gym.supernet.cli import train_command

__all__ = ["DARTS_CIFAR", "TransformResult", "transform", "cost_guard_mask", "check_transformable", "write_outputs"]

DARTS_CIFAR: dict[str, int] = {"C": 36, "layers": 20, "input_size": 32, "in_channels": 3, "num_classes": 10}
"""The stand-alone network of the DARTS CIFAR-10 protocol (NAT.md section 5), where costs are reported."""


# ====================================================================================================== result
@dataclass
class TransformResult:
    """The outcome of :func:`transform`.

    Attributes:
        input: the input architecture ``beta``.
        best: the selected transformation (the candidate of highest accuracy; ties: fewer MAdds, then fewer params).
        candidates: every candidate, in sampling order (one for ``argmax``).
        accuracies: shared-weight accuracy of each candidate on the evaluator's validation split.
        log_probs: log-probability of each candidate under the (cost-guarded) policy.
        input_accuracy: the input's accuracy on the same images.
        best_index: index of ``best`` in ``candidates``.
        mode: ``"sample"`` or ``"argmax"``.
        seed: the sampling seed.
        rules: the rule set's name.
        costs: per shape (``"supernet"`` when known, ``"darts_cifar"``): ``{"config", "input", "best",
            "candidates"}`` with ``{"params", "madds"}`` entries.
        null_to_skip: the edges of ``best`` that went ``null -> skip_connect`` (the one allowed cost increase).
        guarded_targets: (edge, op) pairs the rules allow but the cost guard removed.
        num_images: validation images the accuracies were measured on.
        input_name: the input's name when it was given as a registered name (``"DARTS_V2"``) or a file
            (``"arch.json"``); ``None`` for a genotype object or string.
    """

    input: Genotype
    best: Genotype
    candidates: list[Genotype]
    accuracies: list[float]
    log_probs: list[float]
    input_accuracy: float
    best_index: int
    mode: str
    seed: int
    rules: str
    costs: dict[str, dict[str, Any]] = field(default_factory=dict)
    null_to_skip: list[str] = field(default_factory=list)
    guarded_targets: int = 0
    num_images: int | None = None
    input_name: str | None = None

    @property
    def best_accuracy(self) -> float:
        return self.accuracies[self.best_index]

    def saving(self, shape: str = "darts_cifar") -> tuple[float, float]:
        """Relative ``(params, MAdds)`` saving of ``best`` over the input at ``shape`` (positive = cheaper)."""
        c = self.costs[shape]
        return tuple(1 - c["best"][k] / c["input"][k] if c["input"][k] else 0.0 for k in ("params", "madds"))

    def title(self) -> str:
        """One line for pictures: the input's name, the params / MAdds saving (DARTS CIFAR shape) and the accuracy."""
        params, madds = self.saving()
        cfg = self.costs["darts_cifar"]["config"]
        return (f"{self.input_name or 'input'} \u2192 NAT ({self.rules}): params {-params:+.1%}, MAdds {-madds:+.1%} "
                f"(C={cfg['C']}, {cfg['layers']} layers, {cfg['input_size']}x{cfg['input_size']}); accuracy "
                f"{self.input_accuracy:.3f} \u2192 {self.best_accuracy:.3f}")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: genotypes as dicts (plus their compact strings)."""
        return {
            "input": self.input.to_dict(),
            "input_string": str(self.input),
            "output": self.best.to_dict(),
            "output_string": str(self.best),
            "mode": self.mode,
            "seed": self.seed,
            "rules": self.rules,
            "best_index": self.best_index,
            "input_accuracy": self.input_accuracy,
            "output_accuracy": self.best_accuracy,
            "accuracy_images": self.num_images,
            "accuracy_split": "valid (held-out training data)",
            "candidates": [g.to_dict() for g in self.candidates],
            "candidate_strings": [str(g) for g in self.candidates],
            "accuracies": list(self.accuracies),
            "log_probs": list(self.log_probs),
            "costs": self.costs,
            "null_to_skip": list(self.null_to_skip),
            "guarded_targets": self.guarded_targets,
            "input_name": self.input_name,
        }

    def report(self) -> str:
        """Human-readable: the before/after diff, params/MAdds at each shape and the accuracy."""
        how = "argmax of the policy" if self.mode == "argmax" else (
            f"best of {len(self.candidates)} sampled candidates (seed {self.seed}): candidate {self.best_index}")
        lines = [f"transformation ({self.rules} rules, {how})", self.input.diff(self.best), ""]
        for name, c in self.costs.items():
            cfg = c["config"]
            title = (f"{name} network (C={cfg['C']}, {cfg['layers']} layers, {cfg['input_size']}x{cfg['input_size']}"
                     f"x{cfg['in_channels']}, {cfg['num_classes']} classes)")  # fmt: skip
            b, a = c["input"], c["best"]
            lines.append(title)
            lines.append(f"  params: {_fmt(b['params'])} -> {_fmt(a['params'])} ({_pct(b['params'], a['params'])})")
            lines.append(f"  MAdds:  {_fmt(b['madds'])} -> {_fmt(a['madds'])} ({_pct(b['madds'], a['madds'])})")
        images = f" on {self.num_images} validation images" if self.num_images else ""
        lines.append(
            f"supernet accuracy{images} (held-out training data): {self.input_accuracy:.4f} -> "
            f"{self.best_accuracy:.4f} ({self.best_accuracy - self.input_accuracy:+.4f})"
        )
        if len(self.candidates) > 1:
            lines.append("candidate accuracies: " + " ".join(f"{a:.4f}" for a in self.accuracies))
        if self.null_to_skip:
            lines.append("note: null -> skip_connect (allowed by the rules, not free) on " + "; ".join(self.null_to_skip))
        if self.guarded_targets:
            lines.append(f"cost guard: {self.guarded_targets} rule-allowed (edge, op) targets that would raise the "
                         "cost were masked out")  # fmt: skip
        return "\n".join(lines)


def _fmt(v: int) -> str:
    return f"{v / 1e6:.3f}M" if v >= 1e5 else f"{v:,}"


def _pct(before: int, after: int) -> str:
    return f"{100 * (after - before) / before:+.1f}%" if before else "n/a"


# ====================================================================================================== checks
def check_transformable(genotype: Genotype, rules: TransitionRules, supernet: Any = None,
                        policy: GCNPolicy | None = None) -> None:  # fmt: skip
    """Raise a :class:`ConfigError` that says what to do when ``genotype`` cannot be transformed with this rule set,
    supernet and policy (ops outside the vocabulary, more steps than the supernet holds). Each hint is a command
    that works as written (``tests/test_hints.py`` follows them)."""
    if policy is not None and policy.num_ops != rules.num_ops:
        fits = [r for r in rule_sets.names() if rule_sets.get(r).num_ops == policy.num_ops]
        raise ConfigError(
            f"policy: it has {policy.num_ops} op outputs but rule set {rules.name!r} has {rules.num_ops} ops; "
            f"use the rule set the policy was trained with (rules=..., one of {fits or 'your own rule sets'})"
        )
    outside = sorted({o for o in genotype.ops if o not in rules.ops})
    if outside:
        cover = rule_sets.covering(genotype.ops, rules)
        if cover is None:  # pragma: no cover - every op nat-gym knows is in nat-ext / nat++ext
            raise ConfigError(f"genotype: it uses {outside}, which no shipped rule set holds")
        out = f"runs/nat-{cover.name}-{genotype.steps}steps"
        raise ConfigError(
            f"genotype: it uses {outside}, outside the op vocabulary of rule set {rules.name!r} that this policy "
            f"was trained with. Train a policy on rule set {cover.name!r}, whose default supernet holds those ops "
            f"and {genotype.steps} steps: `nat-gym train --algo nat --rules {cover.name} --steps {genotype.steps} "
            f"--out {out}`, then `nat-gym transform --policy {out}/checkpoint.pt --arch ...`"
        )
    if supernet is None:
        return
    cfg = supernet.config
    command, path = train_command(rules.name, max(genotype.steps, cfg.steps))
    train_supernet = f"`{command}`, then pass --supernet {path}"
    if genotype.steps > cfg.steps:
        raise ConfigError(
            f"genotype: it has {genotype.steps} intermediate nodes per cell but the supernet has steps={cfg.steps}. "
            "The policy itself works with any number of steps; the supernet that scores the candidates does not. "
            f"Train one with {genotype.steps} steps: {train_supernet}; or train the policy with --steps "
            f"{genotype.steps} (its default supernet then has {genotype.steps} steps)"
        )
    missing = sorted({o for o in genotype.ops if o not in cfg.ops})
    if missing:
        raise ConfigError(
            f"genotype: it uses {missing}, which the supernet's op vocabulary lacks; train a supernet with the ops "
            f"of rule set {rules.name!r}: {train_supernet}"
        )


def cost_guard_mask(genotype: Genotype, rules: TransitionRules,
                    shapes: Mapping[str, Mapping[str, int]]) -> tuple[np.ndarray, int]:  # fmt: skip
    """The rules' ``[2E, K]`` mask minus every target that would raise that edge's cost (params or MAdds) at any of
    ``shapes`` (keyword arguments of :func:`~nat_gym.cost.network_cost`). The edge's own op and ``null ->
    skip_connect`` are always kept. Returns ``(mask, number of removed targets)``.

    An edge's cost depends only on its own op (and the cell's channels, stride and size), so a genotype whose every
    edge passes this test costs at most the input's network at each shape.
    """
    mask = rules.mask(genotype).copy()
    base_ops = list(genotype.ops)
    ref = {name: network_cost(genotype, **shape) for name, shape in shapes.items()}
    removed = 0
    for i, op in enumerate(base_ops):
        for k in np.flatnonzero(mask[i]):
            target = rules.ops[k]
            if target == op or (op == "null" and target == "skip_connect"):
                continue
            ops = list(base_ops)
            ops[i] = target
            alt = genotype.with_ops(ops)
            for name, shape in shapes.items():
                c = network_cost(alt, **shape)
                if c.params > ref[name].params or c.madds > ref[name].madds:
                    mask[i, k] = False
                    removed += 1
                    break
        if not mask[i].any():  # a custom rule set without the identity: leave the row to the rules
            mask[i] = rules.mask(genotype)[i]
    return mask, removed


# ====================================================================================================== transform
def _evaluator_and_shape(env_or_evaluator: Any, rules: TransitionRules | str | None):
    import gymnasium as gym

    if isinstance(env_or_evaluator, gym.Env):
        base = env_or_evaluator.unwrapped
        r = rule_sets.get(rules) if rules is not None else base.rules
        return base.evaluator, r, dict(base.cost_config)
    evaluator = env_or_evaluator
    if not hasattr(evaluator, "evaluate"):
        raise ConfigError(
            f"env_or_evaluator: expected a NATCell environment or an Evaluator, got {type(evaluator).__name__}"
        )
    r = rule_sets.get(rules if rules is not None else "nat++")
    shape = None
    supernet, split = getattr(evaluator, "supernet", None), getattr(evaluator, "split", None)
    if supernet is not None and split is not None:
        cfg = supernet.config
        shape = {"C": cfg.C, "layers": cfg.layers, "num_classes": cfg.num_classes, "in_channels": cfg.in_channels,
                 "input_size": int(split.x.shape[-1])}  # fmt: skip
    return evaluator, r, shape


def transform(
    genotype: Genotype | str,
    policy: GCNPolicy,
    env_or_evaluator: Any,
    *,
    samples: int = 10,
    argmax: bool = False,
    seed: int = 0,
    rules: TransitionRules | str | None = None,
) -> TransformResult:
    """Transform ``genotype`` with ``policy``; keep the candidate of best shared-weight validation accuracy.

    Args:
        genotype: a :class:`Genotype`, a registered name (``"DARTS_V2"``), a JSON file or the compact string.
        policy: a trained :class:`GCNPolicy` (see :func:`agents.nat_trainer.load_policy`).
        env_or_evaluator: a ``NATCell-v0`` environment (its evaluator, rules and cost shape are used) or any
            :class:`~nat_gym.evaluator.Evaluator` (then give ``rules``; default ``"nat++"``).
        samples: candidates sampled from the policy (the papers: 10). Ignored with ``argmax``.
        argmax: take the most likely op of every edge instead (one candidate; deterministic).
        seed: seeds the sampling.
        rules: override the rule set (it must be the one the policy was trained with).

    Raises:
        ConfigError: the genotype cannot be scored or transformed here (see :func:`check_transformable`), or
            ``samples < 1``.
    """
    g = named.resolve(genotype)
    input_name = None if isinstance(genotype, Genotype) else _input_name(str(genotype))
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ConfigError(f"samples: expected a positive integer, got {samples!r}")
    evaluator, r, shape = _evaluator_and_shape(env_or_evaluator, rules)
    check_transformable(g, r, getattr(evaluator, "supernet", None), policy)
    shapes = {"supernet": shape} if shape else {}
    shapes["darts_cifar"] = dict(DARTS_CIFAR)

    # the policy, under the cost-guarded mask
    mask, guarded = cost_guard_mask(g, r, shapes)
    obs = encode(g, r)
    obs["action_mask"] = mask.reshape(obs["action_mask"].shape).astype(np.int8)
    count = 1 if argmax else samples
    batch = {k: np.repeat(v[None], count, axis=0) for k, v in obs.items()}
    device = policy.device
    was_training = policy.training
    policy.eval()
    try:
        with torch.no_grad():
            gen = torch.Generator(device=device).manual_seed(int(seed))
            actions, log_prob, _ = policy.act(batch, deterministic=argmax, generator=gen)
    finally:
        policy.train(was_training)
    candidates = [r.apply(g, a, invalid="raise") for a in actions.cpu().numpy()]
    for c in candidates:
        if r.validate_transformation(g, c):  # pragma: no cover - the masks make this impossible
            raise AssertionError(f"invalid transformation sampled: {c}")

    # accuracy on the whole validation split (held-out training data, never the test split)
    acc = evaluator.evaluate([g, *candidates], None)
    input_acc, cand_acc = float(acc[0]), [float(a) for a in acc[1:]]

    costs: dict[str, dict[str, Any]] = {}
    for name, s in shapes.items():
        c_in = network_cost(g, **s)
        c_cand = [network_cost(c, **s) for c in candidates]
        costs[name] = {"config": dict(s), "input": {"params": c_in.params, "madds": c_in.madds},
                       "candidates": [{"params": c.params, "madds": c.madds} for c in c_cand]}  # fmt: skip
    key_shape = "supernet" if "supernet" in costs else "darts_cifar"
    order = sorted(
        range(len(candidates)),
        key=lambda i: (-cand_acc[i], costs[key_shape]["candidates"][i]["madds"],
                       costs[key_shape]["candidates"][i]["params"], i),
    )  # fmt: skip
    best_index = order[0]
    best = candidates[best_index]
    for c in costs.values():
        c["best"] = c["candidates"][best_index]

    null_to_skip = []
    k = len(g.normal.edges)
    for i, (a, b) in enumerate(zip(g.edges, best.edges)):
        if a.op == "null" and b.op == "skip_connect":
            null_to_skip.append(f"{'normal' if i < k else 'reduce'} edge {a.src}->{a.dst}")
    # the guarantee (beyond null -> skip): never costlier at any shape
    reverted = best.with_ops([a.op if (a.op == "null" and b.op == "skip_connect") else b.op
                              for a, b in zip(g.edges, best.edges)])  # fmt: skip
    for name, s in shapes.items():
        cb, ci = network_cost(reverted, **s), network_cost(g, **s)
        if cb.params > ci.params or cb.madds > ci.madds:  # pragma: no cover - the cost guard makes this impossible
            raise AssertionError(f"the transformation costs more than its input at the {name} shape")
    return TransformResult(
        input=g, best=best, candidates=candidates, accuracies=cand_acc,
        log_probs=[float(v) for v in log_prob.cpu()], input_accuracy=input_acc, best_index=best_index,
        mode="argmax" if argmax else "sample", seed=int(seed), rules=r.name, costs=costs, null_to_skip=null_to_skip,
        guarded_targets=guarded, num_images=getattr(evaluator, "num_images", None),
        input_name=input_name,
    )  # fmt: skip


def _input_name(text: str) -> str | None:
    """The registered spelling of a name (``"darts_v2"`` -> ``"DARTS_V2"``), a file's name, or ``None``."""
    try:
        named.get(text)
    except GenotypeError:
        return Path(text).name if text.endswith(".json") or ("Genotype(" not in text and os.sep in text) else None
    return next(n for n in named.names() if n.lower() == text.lower())


def write_outputs(result: TransformResult, out: str | Path, *, extra: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write ``transform.json`` (input, output, candidates, accuracies, costs) and ``transform.png`` (both cells,
    before and after, changed edges highlighted) into the folder ``out``; returns their paths."""
    from nat_gym.plotting import save_genotype_png

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    payload = result.to_dict()
    if extra:
        payload.update(extra)
    json_path = out / "transform.json"
    json_path.write_text(json.dumps(payload, indent=2))
    png_path = save_genotype_png(out / "transform.png", result.input, result.best, title=result.title())
    return {"json": json_path, "png": Path(png_path)}


# ====================================================================================================== command line
def run_cli(ns: Any) -> int:
    """``nat-gym transform``: load the policy (and the supernet it was trained with), transform, write outputs."""
    import gymnasium as gym

    import nat_gym  # noqa: F401  (registers NATCell-v0)
    from agents.nat_trainer import load_policy, supernet_from_checkpoint
    from nat_gym.cli_args import check_out_folder

    check_out_folder(ns.out)
    policy, targs = load_policy(ns.policy, device=ns.device)
    rules = rule_sets.get(targs.rules)
    g = named.resolve(ns.arch)
    supernet = _load_supernet(ns.supernet) if ns.supernet else supernet_from_checkpoint(ns.policy)
    if supernet is None and targs.supernet:
        supernet = _load_supernet(targs.supernet)
    check_transformable(g, rules, supernet, policy)
    steps = supernet.config.steps if supernet is not None else targs.steps
    if supernet is None and g.steps > steps:
        check_transformable(g, rules, _StepsOnly(steps, rules.ops), policy)
    try:
        env = gym.make("NATCell-v0", rules=rules, supernet=supernet, dataset=targs.dataset, data_root=targs.data_root,
                       data_seed=targs.data_seed, steps=steps, reward_images=None, device=ns.device)  # fmt: skip
    except NatGymError as e:
        raise ConfigError(f"cannot build the scoring environment for {ns.arch}: {e}") from None
    result = transform(ns.arch, policy, env, samples=ns.samples, argmax=ns.argmax, seed=ns.seed)
    print(result.report())
    if ns.out:
        paths = write_outputs(result, ns.out, extra={"arch": ns.arch, "policy": str(ns.policy),
                                                     "supernet": str(ns.supernet) if ns.supernet else "policy checkpoint"})
        print(f"wrote {paths['json']} and {paths['png']}")
    if ns.json:
        print(json.dumps(result.to_dict(), indent=2))
    return 0


class _StepsOnly:
    """Stands for a supernet in :func:`check_transformable` when only its steps and ops are known."""

    def __init__(self, steps: int, ops: tuple[str, ...]) -> None:
        from types import SimpleNamespace

        self.config = SimpleNamespace(steps=steps, ops=ops)


def _load_supernet(path: str | Path):
    """A supernet checkpoint (``nat-gym train-supernet``) or the supernet inside a trainer checkpoint."""
    from agents.nat_trainer import load_trainer_checkpoint, supernet_from_checkpoint
    from nat_gym.errors import CheckpointError
    from nat_gym.supernet.checkpoint import load_checkpoint

    try:
        supernet, _ = load_checkpoint(path)
        return supernet
    except CheckpointError as error:
        try:
            load_trainer_checkpoint(path)
        except CheckpointError:
            raise error from None
    supernet = supernet_from_checkpoint(path)
    if supernet is None:
        raise ConfigError(f"supernet: the trainer checkpoint {str(path)!r} holds no supernet")
    return supernet
