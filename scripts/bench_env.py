"""Benchmark NATCell-v0 on the default configuration and print ratios measured in this one run.

(a) uncached ``env.step`` (one new architecture to evaluate; ``beta`` was scored at reset): median ms;
(b) cached steps/s (every episode resets to the same ``beta`` with ``options={"genotype": beta}`` and takes the same
    action: every evaluation is a cache hit, and so are the env's memos of transitions, observations and costs;
    NATCell's episodes last one step, so this loop resets on every step) and its ratio to CartPole-v1's steps/s
    measured by the same loop; also the same loop with the env's memos emptied before every step (only the
    accuracies cached: what a step into a state never seen before costs besides the supernet);
(c) evaluating 64 genotypes in one batched call vs 64 single calls (fresh evaluators: no result cache, activation
    cache warm), as a ratio of the best of ``--repeats`` alternated timings; also the grouped single-pass batching (the
    GPU path) forced on this device.

Usage: ``python scripts/bench_env.py [--rules nat++] [--steps 200] [--repeats 3] [--threads N]`` (first use trains the
default supernet, a few minutes, then caches it).
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np
import torch
from _report import report

import nat_gym  # noqa: F401  (registers NATCell-v0)
from nat_gym.evaluator import SupernetEvaluator
from nat_gym.sampling import random_genotype


def masked_random_action(mask: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    rows = mask.reshape(-1, k)
    return np.array([rng.choice(np.flatnonzero(r)) for r in rows])


def loop_steps_per_second(env: gym.Env, action_fn, seconds: float, reset_kwargs: dict) -> float:
    """Steps per second of the plain RL loop: step, and reset when the episode ends."""
    env.reset(**reset_kwargs)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(action_fn())
        n += 1
        if terminated or truncated:
            env.reset(**reset_kwargs)
    return n / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rules", default="nat++", help="rule set of the environment (default: nat++)")
    p.add_argument("--steps", type=int, default=200, help="uncached steps to time (default: 200)")
    p.add_argument("--seconds", type=float, default=3.0, help="duration of each steps/s loop (default: 3)")
    p.add_argument("--repeats", type=int, default=3, help="timings of (c), alternated; the best counts (default: 3)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--supernet", default=None,
                   help="supernet checkpoint to score with (default: the default digits supernet of the rule set)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    env = gym.make("NATCell-v0", rules=args.rules, supernet=args.supernet)
    base = env.unwrapped
    k = base.rules.num_ops
    rng = np.random.default_rng(0)

    # (a) uncached steps
    times = []
    for i in range(args.steps):
        env.reset(seed=10_000 + i)
        action = masked_random_action(base.action_masks(), k, rng)
        t = time.perf_counter()
        env.step(action)
        times.append(time.perf_counter() - t)
    step_ms = statistics.median(times) * 1e3

    # (b) cached steps/s vs CartPole
    _, info = env.reset(seed=0)
    fixed = masked_random_action(base.action_masks(), k, rng)
    # every episode replays the same state (reset to beta) and action: each score is a cache hit
    nat_sps = loop_steps_per_second(env, lambda: fixed, args.seconds, {"options": {"genotype": info["genotype"]}})

    def forget_memos():
        base._transitions.clear()
        base._view.cache_clear()
        return fixed

    memo_free_sps = loop_steps_per_second(env, forget_memos, args.seconds, {"options": {"genotype": info["genotype"]}})
    cart = gym.make("CartPole-v1")
    cart_sps = loop_steps_per_second(cart, lambda: 1, args.seconds, {"seed": 0})

    # (c) batched vs single evaluation of 64 genotypes
    ev = base.evaluator
    sample_ops = [o for o in base.rules.ops if o != "null"]
    genos = [random_genotype(rng, base.steps, sample_ops) for _ in range(64)]
    warm = [random_genotype(rng, base.steps, sample_ops) for _ in range(32)]

    def fresh(**kwargs) -> SupernetEvaluator:
        """A new evaluator (empty result cache) whose activation cache is warm, as in a run's steady state."""
        evaluator = SupernetEvaluator(ev.supernet, ev.split, batch_size=ev.batch_size, device=ev.device, **kwargs)
        evaluator.evaluate(warm)
        return evaluator

    def timed(evaluator: SupernetEvaluator, one_at_a_time: bool) -> tuple[float, np.ndarray]:
        t = time.perf_counter()
        if one_at_a_time:
            accs = np.concatenate([evaluator.evaluate([g]) for g in genos])
        else:
            accs = evaluator.evaluate(genos)
        return time.perf_counter() - t, accs

    # alternate the two, best of `--repeats` each (the usual guard against other load on a shared machine)
    single_s = batched_s = float("inf")
    for _ in range(args.repeats):
        seconds, single = timed(fresh(), one_at_a_time=True)
        single_s = min(single_s, seconds)
        seconds, batched = timed(fresh(), one_at_a_time=False)  # CPU: parallel workers; CUDA: grouped passes
        batched_s = min(batched_s, seconds)
    grouped_s, grouped = timed(fresh(workers=1, max_archs_per_pass=16), one_at_a_time=False)
    assert np.allclose(single, batched) and np.allclose(single, grouped), "batched and single evaluation disagree"

    figures = {
        "threads": torch.get_num_threads(),
        "reward_images": base.evaluator.num_images,
        "uncached_step_median_ms": round(step_ms, 2),
        "cached_steps_per_s": round(nat_sps),
        "cartpole_steps_per_s": round(cart_sps),
        "cached_vs_cartpole": round(nat_sps / cart_sps, 3),
        "scores_only_cached_steps_per_s": round(memo_free_sps),
        "scores_only_vs_cartpole": round(memo_free_sps / cart_sps, 3),
        "eval_64_single_s": round(single_s, 3),
        "eval_64_batched_s": round(batched_s, 3),
        "batched_vs_single": round(single_s / batched_s, 2),
        "eval_64_grouped16_s": round(grouped_s, 3),
        "grouped_vs_single": round(single_s / grouped_s, 2),
    }
    report(figures, args.json)


if __name__ == "__main__":
    main()
