"""Benchmark NATCell-v0 on the default configuration and print ratios measured in this one run.

Every ratio compares two arms timed alternately in this run (``_report.alternate``: the order of the arms flips
every round; the ratio is the median over rounds of the two arms' times in the same round), one CPU thread per pass.

(a) uncached ``env.step`` (one new architecture to evaluate; ``beta`` was scored at reset): median ms, against the
    same env whose evaluator runs the plain baseline supernet (``_plain_supernet.py``: the same function, written
    the straightforward way) with the same weights, on the same architectures and images;
(b) cached steps/s (every episode resets to the same ``beta`` with ``options={"genotype": beta}`` and takes the same
    action: every evaluation is a cache hit, and so are the env's memos of transitions, observations and costs;
    NATCell's episodes last one step, so this loop resets on every step) and its ratio to CartPole-v1's steps/s
    measured by the same loop; also the same loop with the env's memos emptied before every step (only the
    accuracies cached: what a step into a state never seen before costs besides the supernet). The three loops
    alternate too, each about ``--seconds / --rounds`` per round;
(c) evaluating 64 genotypes in one batched call vs 64 single calls (fresh result caches, activation caches warm),
    the median over ``--rounds`` alternated runs; the batched call's choice between threads and one thread carries
    over from run to run (as in a long run) and the chunks scored each way are printed; also the grouped
    single-pass batching (the GPU path) forced on this device.

Usage: ``python scripts/bench_env.py [--rules nat++] [--steps 200] [--rounds 5] [--threads 1]`` (first use trains the
default supernet, a few minutes, then caches it).
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np
import torch
from _plain_supernet import PlainSupernet, copy_weights, plain_evaluator
from _report import alternate, median_ms, ratio, ratio_range, report

import nat_gym  # noqa: F401  (registers NATCell-v0)
from nat_gym.evaluator import ParallelChoice, SupernetEvaluator
from nat_gym.sampling import random_genotype


def masked_random_action(mask: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    rows = mask.reshape(-1, k)
    return np.array([rng.choice(np.flatnonzero(r)) for r in rows])


def rl_loop(env: gym.Env, action_fn, n: int, reset_kwargs: dict) -> None:
    """``n`` steps of the plain RL loop: step, and reset when the episode ends (the env was reset before)."""
    for _ in range(n):
        _, _, terminated, truncated, _ = env.step(action_fn())
        if terminated or truncated:
            env.reset(**reset_kwargs)


def loop_steps(env: gym.Env, action_fn, seconds: float, reset_kwargs: dict) -> int:
    """How many steps of :func:`rl_loop` take about ``seconds`` (a short calibration run)."""
    env.reset(**reset_kwargs)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        rl_loop(env, action_fn, 10, reset_kwargs)
        n += 10
    return n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rules", default="nat++", help="rule set of the environment (default: nat++)")
    p.add_argument("--steps", type=int, default=200, help="uncached steps to time (default: 200)")
    p.add_argument("--seconds", type=float, default=3.0,
                   help="duration of each steps/s loop, over all rounds (default: 3)")
    p.add_argument("--rounds", type=int, default=5,
                   help="alternated rounds of each comparison; the median ratio counts (default: 5)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads outside the evaluators' own setting (default: 1, as the evaluators)")
    p.add_argument("--supernet", default=None,
                   help="supernet checkpoint to score with (default: the default digits supernet of the rule set)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args()
    for name in ("steps", "rounds", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name}: expected an integer >= 1, got {getattr(args, name)}")
    torch.set_num_threads(args.threads)
    env = gym.make("NATCell-v0", rules=args.rules, supernet=args.supernet)
    base = env.unwrapped
    k = base.rules.num_ops
    rng = np.random.default_rng(0)
    ev = base.evaluator

    # (a) uncached steps, nat-gym vs the plain baseline supernet (same weights, images and architectures)
    plain = copy_weights(PlainSupernet(ev.supernet.config).to(ev.device), ev.supernet)  # the same device
    plain_env = gym.make("NATCell-v0", rules=args.rules, evaluator=plain_evaluator(plain, ev.split, ev.batch_size))
    envs = {"nat_gym": env, "plain": plain_env}
    actions: dict[int, np.ndarray] = {}

    def reset(name: str, i: int) -> None:
        envs[name].reset(seed=10_000 + i)  # scores beta (untimed): the step evaluates one new architecture
        if i not in actions:
            actions[i] = masked_random_action(envs[name].unwrapped.action_masks(), k, np.random.default_rng(i))

    per_round = max(1, args.steps // args.rounds)
    steps = alternate({name: lambda i, name=name: envs[name].step(actions[i]) for name in envs}, args.rounds,
                      per_round, prepare={name: lambda i, name=name: reset(name, i) for name in envs})  # fmt: skip
    step_ms = median_ms(steps["nat_gym"])

    # (b) cached steps/s vs CartPole, the three loops alternated: each arm runs about seconds / rounds per round
    _, info = env.reset(seed=0)
    fixed = masked_random_action(base.action_masks(), k, rng)
    replay = {"options": {"genotype": info["genotype"]}}  # every episode replays the same state and action: each
    # score is a cache hit

    def forget_memos():
        base._transitions.clear()
        base._view.cache_clear()
        return fixed

    cart = gym.make("CartPole-v1")
    loops = {"nat_gym": (env, lambda: fixed, replay), "scores_only": (env, forget_memos, replay),
             "cartpole": (cart, lambda: 1, {"seed": 0})}  # fmt: skip
    counts = {name: loop_steps(*loop[:2], args.seconds / args.rounds, loop[2]) for name, loop in loops.items()}
    loop_times = alternate({name: lambda i, name=name: rl_loop(loops[name][0], loops[name][1], counts[name],
                                                               loops[name][2]) for name in loops},
                           args.rounds, prepare={name: lambda i, name=name: loops[name][0].reset(**loops[name][2])
                                                 for name in loops})  # fmt: skip
    sps = {name: counts[name] / statistics.median(loop_times[name]) for name in loops}
    per_step = {name: [t / counts[name] for t in loop_times[name]] for name in loops}

    # (c) batched vs single evaluation of 64 genotypes
    sample_ops = [o for o in base.rules.ops if o != "null"]
    genos = [random_genotype(rng, base.steps, sample_ops) for _ in range(64)]
    warm = [random_genotype(rng, base.steps, sample_ops) for _ in range(32)]
    choice = ParallelChoice()  # the batched evaluators' measured choice, kept from run to run as in a long run
    evaluators: dict[str, SupernetEvaluator] = {}
    results: dict[str, np.ndarray] = {}

    def fresh(name: str, **kwargs) -> None:
        """A new evaluator (empty result cache) whose activation cache is warm, as in a run's steady state."""
        evaluator = SupernetEvaluator(ev.supernet, ev.split, batch_size=ev.batch_size, device=ev.device, **kwargs)
        if name == "batched":
            evaluator.parallel_choice = choice
        evaluator.evaluate(warm)
        evaluators[name] = evaluator

    def score(name: str) -> None:
        evaluator = evaluators[name]
        results[name] = (np.concatenate([evaluator.evaluate([g]) for g in genos]) if name == "single"
                         else evaluator.evaluate(genos))  # fmt: skip

    batching = alternate({name: lambda i, name=name: score(name) for name in ("single", "batched", "grouped16")},
                         args.rounds, prepare={
                             "single": lambda i: fresh("single"), "batched": lambda i: fresh("batched"),
                             "grouped16": lambda i: fresh("grouped16", grouped=True, max_archs_per_pass=16)})  # fmt: skip
    assert all(np.allclose(results["single"], results[name]) for name in results), "batched and single disagree"

    figures = {
        "threads": torch.get_num_threads(),
        "reward_images": base.evaluator.num_images,
        "rounds": args.rounds,
        "uncached_step_median_ms": round(step_ms, 2),
        "uncached_step_plain_ms": round(median_ms(steps["plain"]), 2),
        "uncached_step_speedup_vs_plain": round(ratio(steps, "plain", "nat_gym"), 2),
        "uncached_step_speedup_range": ratio_range(steps, "plain", "nat_gym"),
        "cached_steps_per_s": round(sps["nat_gym"]),
        "cartpole_steps_per_s": round(sps["cartpole"]),
        "cached_vs_cartpole": round(ratio(per_step, "cartpole", "nat_gym"), 3),
        "cached_vs_cartpole_range": ratio_range(per_step, "cartpole", "nat_gym"),
        "scores_only_cached_steps_per_s": round(sps["scores_only"]),
        "scores_only_vs_cartpole": round(ratio(per_step, "cartpole", "scores_only"), 3),
        "eval_64_single_s": round(median_ms(batching["single"]) / 1e3, 3),
        "eval_64_batched_s": round(median_ms(batching["batched"]) / 1e3, 3),
        "batched_vs_single": round(ratio(batching, "single", "batched"), 2),
        "batched_vs_single_range": ratio_range(batching, "single", "batched"),
        "batched_chunks_parallel": choice.chunks["parallel"],
        "batched_chunks_one_thread": choice.chunks["sequential"],
        "eval_64_grouped16_s": round(median_ms(batching["grouped16"]) / 1e3, 3),
        "grouped_vs_single": round(ratio(batching, "single", "grouped16"), 2),
    }
    report(figures, args.json)


if __name__ == "__main__":
    main()
