"""Evidence for the NAT policy on the digits default: does a trained transformer beat random valid transformations,
and the identity?

For each seed and GCN variant it trains the NAT policy (``nat-gym train --algo nat`` with the given settings) on the
default digits supernet, then scores it on ``--inputs`` fresh input architectures and on the registered 4-step
genotypes:

- ``sampled``: one transformation sampled from pi(.|beta); ``argmax``: the most likely one;
- ``best-of-10``: what ``nat-gym transform`` derives (the papers' protocol): 10 candidates sampled under the cost
  guard, the one of best shared-weight accuracy on the validation split kept;
- ``random``: a uniformly random *valid* transformation (every edge picks uniformly among its allowed ops), and the
  best of 10 of them chosen the same way;
- ``identity``: no change (reward 0, saving 0 by definition: the floor a useful policy must beat).

Reward = acc(alpha) - acc(beta) on the whole validation split (360 held-out *training* images; the test split is never
used) with the shared weights; saving = relative MAdds saving of the stand-alone network at the supernet's shape;
changed = the fraction of edges whose op changed. The supernet stays frozen so that many runs fit in minutes on 2
CPU cores (``--set train_supernet=true`` alternates supernet epochs as in Algorithm 1).

Training uses the trainer's defaults (keep prior 3, ``n = 4``) but for 150 epochs, 64-image rewards and the frozen
supernet. ``--set KEY=VALUE`` (repeatable) overrides any :class:`~agents.nat_trainer.NATTrainerArgs` field (values
are read as JSON, e.g. ``--set entropy_coef=0 --set reward_images=null``): one ablation arm per call; ``--set n=1
--set keep_prior=0`` trains the papers' policy (:data:`~agents.nat_trainer.PAPER_SETTINGS`). ``--resume`` scores the
finished runs already in ``--out`` (and continues unfinished ones) instead of refusing to overwrite them.

Usage: ``python scripts/evidence.py [--seeds 0 1 2 3 4 5] [--epochs 150] [--set KEY=VALUE ...] [--out DIR] [--resume]``;
prints a Markdown table and writes ``evidence.json``. A bad argument (a ``--set`` value, a missing supernet) is one
line, ``evidence.py: error: ...``, and exit code 2, before any work starts.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from agents.gcn_policy import VARIANTS
from agents.heldout import RANDOM_SEED, fresh_inputs, gcn_transform, score
from agents.nat_trainer import NATTrainerArgs, make_env, train
from agents.run_log import run_checkpoint
from agents.transform import transform
from nat_gym import genotypes as named
from nat_gym.cli_args import int_at_least
from nat_gym.cost import network_cost
from nat_gym.errors import ConfigError, NatGymError
from nat_gym.evaluator import SupernetEvaluator
from nat_gym.sampling import random_valid_action

NAMED = ("DARTS_V1", "DARTS_V2", "VGG", "ResBlock", "MobileNetV2", "R1", "R2", "R3", "R4", "R5")
MODES = ("sampled", "argmax", "best-of-10")


def random_partial_action(rules, genotype, rng: np.random.Generator, rate: float) -> np.ndarray:
    """Each edge changes with probability ``rate`` (to one of its *other* allowed ops, uniformly) and keeps its op
    otherwise: the random floor of a policy that changes that fraction of the edges."""
    action = rules.op_indices(genotype).astype(np.int64)
    for e, row in enumerate(rules.mask(genotype)):
        others = np.flatnonzero(row)
        others = others[others != action[e]]
        if len(others) and rng.random() < rate:
            action[e] = rng.choice(others)
    return action


def summary(env, betas, alphas) -> dict[str, float]:
    """Mean reward and relative MAdds saving (:func:`agents.heldout.score`) and the fraction of changed edges."""
    rewards, savings = score(env.unwrapped.evaluator, env.unwrapped.cost_config, betas, alphas)
    changed = [np.mean([x != y for x, y in zip(b.ops, a.ops)]) for b, a in zip(betas, alphas)]
    return {"reward": float(rewards.mean()), "saving": float(savings.mean()), "changed": float(np.mean(changed))}


def best_of(env, candidates, evaluator=None, batch=None) -> object:
    """The candidate of best shared-weight accuracy (ties: fewer MAdds, then the first; :func:`agents.transform.transform`
    breaks a tie of MAdds by parameters before order), by default on the env's whole validation split."""
    acc = (evaluator or env.unwrapped.evaluator).evaluate(candidates, batch)
    madds = [network_cost(c, **env.unwrapped.cost_config).madds for c in candidates]
    return candidates[min(range(len(candidates)), key=lambda i: (-acc[i], madds[i], i))]


def held_out_best_of(env, halves, betas, candidate_lists) -> float:
    """Mean reward of the best candidate chosen on the first half of the validation split and scored on the
    second half: best-of-10 without the optimism of choosing and scoring on the same images."""
    picks = [best_of(env, cands, halves, 0) for cands in candidate_lists]
    return float((halves.evaluate(picks, 1) - halves.evaluate(betas, 1)).mean())


def policy_alphas(policy, env, betas, mode: str, seed: int) -> list:
    """One transformation per input (:func:`agents.heldout.gcn_transform`); for ``best-of-10`` the
    :class:`~agents.transform.TransformResult` of each (:func:`agents.transform.transform`)."""
    if mode == "best-of-10":
        return [transform(b, policy, env, samples=10, seed=seed) for b in betas]
    return gcn_transform(policy, env.unwrapped.rules, seed)(betas, mode == "argmax")


def parse_overrides(items: list[str]) -> dict:
    """``--set KEY=VALUE`` items as ``{KEY: value}`` (values read as JSON, else kept as strings).

    Raises:
        ConfigError: an item that is not ``KEY=VALUE`` with ``KEY`` a :class:`NATTrainerArgs` field.
    """
    known = [f.name for f in fields(NATTrainerArgs)]
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise ConfigError(f"--set: expected KEY=VALUE with KEY a NATTrainerArgs field ({', '.join(known)}), "
                              f"got {item!r}")  # fmt: skip
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def trainer_args(**settings) -> NATTrainerArgs:
    """``NATTrainerArgs(**settings)``; a value out of range (from ``--set``) is a :class:`ConfigError` naming
    ``--set`` and the field."""
    try:
        return NATTrainerArgs(**settings)
    except ConfigError as e:
        raise ConfigError(f"--set {e}") from None


def run_args(args: argparse.Namespace, overrides: dict, variant: str, seed: int) -> NATTrainerArgs:
    """The :class:`NATTrainerArgs` of one training run, in ``--out/<variant>-seed<seed>``."""
    return trainer_args(**{"epochs": args.epochs, "reward_images": 64, "train_supernet": False, "eval_inputs": 0,
                           "heldout_inputs": 0, **overrides, "seed": seed, "variant": variant,
                           "out": str(Path(args.out) / f"{variant}-seed{seed}"), "progress": False,
                           "supernet": args.supernet})  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int_at_least(0), nargs="+", default=[0, 1, 2, 3, 4, 5],
                   help="training seeds (default: 0 1 2 3 4 5)")  # fmt: skip
    p.add_argument("--variants", nargs="*", default=["fixed", "faithful"], choices=[*VARIANTS, "none"],
                   help=f"GCN variants, some of {' '.join(VARIANTS)} (default: both); none (alone) = no policy, only "
                        "the floors")  # fmt: skip
    p.add_argument("--random-rates", type=float, nargs="*", default=[0.1, 0.3, 0.6],
                   help="also score random valid changes of this fraction of the edges (default: 0.1 0.3 0.6): the "
                        "floor of a policy that changes as many edges")  # fmt: skip
    p.add_argument("--epochs", type=int_at_least(1), default=150, help="policy epochs per run (default: 150)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a NATTrainerArgs field for every run (repeatable), e.g. entropy_coef=0")
    p.add_argument("--supernet", default=None, help="supernet checkpoint (default: the cached digits default)")
    p.add_argument("--inputs", type=int_at_least(1), default=200,
                   help="fresh input architectures to score (default: 200)")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES, help="how the policy is scored")
    p.add_argument("--no-named", action="store_true", help="skip the registered genotypes")
    p.add_argument("--out", default="runs/evidence", help="output folder (default: runs/evidence)")
    p.add_argument("--resume", action="store_true",
                   help="continue the runs whose checkpoint is already in --out (a finished run trains nothing and "
                        "is only scored) instead of refusing to overwrite them")  # fmt: skip
    args = p.parse_args(argv)
    if "none" in args.variants:
        if args.variants != ["none"]:
            p.error(f"argument --variants: none means no policy, so it comes alone; got {' '.join(args.variants)}")
        args.variants = []
    if args.supernet is not None and not Path(args.supernet).is_file():
        p.error(f"argument --supernet: no such file {args.supernet!r} (a checkpoint of nat-gym train-supernet; omit "
                "the flag for the cached digits default)")
    try:
        run(args)
    except NatGymError as e:  # a bad --set value, a missing supernet, a run that exists without --resume
        p.error(" ".join(str(e).split()))
    return 0


def run(args: argparse.Namespace) -> None:
    """Score the floors, train and score every (variant, seed) run, print the table (see the module docstring)."""
    overrides = parse_overrides(args.overrides)  # every argument is checked before any work starts
    base = trainer_args(**{**overrides, "reward_images": None, "supernet": args.supernet})
    runs = {(v, s): run_args(args, overrides, v, s) for v in args.variants for s in args.seeds}
    resume = {key: args.resume and (Path(r.out) / "checkpoint.pt").is_file() for key, r in runs.items()}
    for key, r in runs.items():
        run_checkpoint(r.out, resume[key])  # a finished run is never overwritten
    torch.set_num_threads(1)
    base_env = make_env(base)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rules = base_env.unwrapped.rules
    steps = base_env.unwrapped.steps
    full = base_env.unwrapped.evaluator
    halves = SupernetEvaluator(full.supernet, full.split, batch_size=(len(full.split) + 1) // 2)
    sets = {"fresh": fresh_inputs(rules, steps, args.inputs)}
    if not args.no_named:
        sets["named"] = [named.get(n) for n in NAMED]

    results: dict[str, dict] = {}
    rand_rng = np.random.default_rng(RANDOM_SEED)
    for label, betas in sets.items():
        results[f"identity/{label}"] = {"reward": 0.0, "saving": 0.0, "changed": 0.0}
        draws = [[rules.apply_indices(b, random_valid_action(rules, b, rand_rng))[0] for _ in range(10)]
                 for b in betas]  # fmt: skip
        results[f"random/{label}"] = summary(base_env, betas, [d[0] for d in draws])
        results[f"random best-of-10/{label}"] = {**summary(base_env, betas, [best_of(base_env, d) for d in draws]),
                                                 "held_out": held_out_best_of(base_env, halves, betas, draws)}
        for rate in args.random_rates:
            alphas = [rules.apply_indices(b, random_partial_action(rules, b, rand_rng, rate))[0] for b in betas]
            results[f"random, {rate:.0%} of edges/{label}"] = summary(base_env, betas, alphas)

    for variant in args.variants:
        for seed in args.seeds:
            start = time.perf_counter()
            policy, history = train(runs[variant, seed], resume=resume[variant, seed])
            seconds = history[-1]["time"] if resume[variant, seed] and history else time.perf_counter() - start
            policy.eval()
            for label, betas in sets.items():
                for mode in args.modes:
                    alphas = policy_alphas(policy, base_env, betas, mode, seed)
                    r = {"train_seconds": seconds}
                    if mode == "best-of-10":
                        r["held_out"] = held_out_best_of(base_env, halves, betas, [t.candidates for t in alphas])
                        alphas = [t.best for t in alphas]
                    results[f"{variant} {mode}/seed{seed}/{label}"] = {**summary(base_env, betas, alphas), **r}
            line = ", ".join(f"{m} {results[f'{variant} {m}/seed{seed}/fresh']['reward']:+.4f}" for m in args.modes)
            print(f"{variant} seed {seed}: trained in {seconds:.0f} s; reward on fresh inputs: {line}", flush=True)
            save(out, args, overrides, results)  # after every run: a long evidence run loses nothing
    save(out, args, overrides, results)
    print(table(results, args, list(sets)))


def save(out: Path, args, overrides: dict, results: dict) -> None:
    payload = json.dumps({"args": vars(args), "settings": overrides, "results": results}, indent=2)
    tmp = out / "evidence.json.tmp"
    tmp.write_text(payload)
    tmp.replace(out / "evidence.json")


def table(results: dict, args, labels: list[str]) -> str:
    """The Markdown table of ``results``: one row per policy, mean and per-seed figures per input set."""
    head = "| policy | " + " | ".join(
        f"reward, {label} (mean; per seed) | chosen on half, scored on the other | MAdds saving | edges changed"
        for label in labels) + " |"  # fmt: skip
    lines = ["", head, "|---|" + "---|---|---|---|" * len(labels)]

    def cells(rows: list[dict]) -> str:
        mean = np.mean([r["reward"] for r in rows])
        per_seed = "; " + " / ".join(f"{r['reward']:+.3f}" for r in rows) if len(rows) > 1 else ""
        held = f"{np.mean([r['held_out'] for r in rows]):+.4f}" if "held_out" in rows[0] else "-"
        return (f"{mean:+.4f}{per_seed} | {held} | {np.mean([r['saving'] for r in rows]):.1%} | "
                f"{np.mean([r['changed'] for r in rows]):.0%}")  # fmt: skip

    for key in ("identity", "random", "random best-of-10", *(f"random, {r:.0%} of edges" for r in args.random_rates)):
        lines.append(f"| {key} | " + " | ".join(cells([results[f"{key}/{lb}"]]) for lb in labels) + " |")
    for variant in args.variants:
        for mode in args.modes:
            row = [cells([results[f"{variant} {mode}/seed{s}/{lb}"] for s in args.seeds]) for lb in labels]
            lines.append(f"| {variant} {mode} | " + " | ".join(row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    from nat_gym.cli import ignore_library_warnings

    ignore_library_warnings()  # torch_geometric's import warning, as the nat-gym command does
    raise SystemExit(main())
