"""Time the NAT policy update against the same update with the plain baseline supernet as reward oracle, in one run.

One update (Algorithm 1's REINFORCE step on the frozen default digits supernet) samples ``m`` input architectures
and ``n`` transformations of each, runs the GCN once over all of them, scores the ``m * (n + 1)`` architectures on a
64-image minibatch (every input is new, so nothing is cached) and takes one Adam step. Two arms, timed alternately
(``_report.alternate``: the order flips every round; the ratio is the median over rounds of the two arms' times in
the same round), one CPU thread each:

- ``nat_gym``: the trainer as it runs (``SupernetEvaluator``: activation cache, batched scoring);
- ``plain``: the same trainer, the same GCN policy, the same inputs, samples and minibatches, but the reward oracle
  is the plain baseline supernet (``_plain_supernet.py``, the same weights) scoring one architecture at a time.

Only the evaluation path differs, so the ratio isolates it; the GCN's forward, backward and Adam step cost the same
in both arms and dilute it. Printed: ms per sampled transformation of each arm, for the paper's ``m = n = 1`` and for
a batched update, and the ratios.

Usage: ``python scripts/bench_policy.py [--updates 60] [--rounds 5] [--m 8 --n 4] [--supernet CKPT]``.
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import torch
from _plain_supernet import PlainSupernet, copy_weights, plain_evaluator
from _report import alternate, median_ms, ratio, ratio_range, report

from agents.nat_trainer import NATTrainer, NATTrainerArgs


def trainers(m: int, n: int, variant: str, supernet: str | None) -> dict[str, NATTrainer]:
    """The two arms: the same arguments and seed (same policy initialisation, inputs and samples)."""
    args = NATTrainerArgs(m=m, n=n, train_supernet=False, reward_images=64, eval_inputs=0, progress=False,
                          variant=variant, epochs=1, supernet=supernet)  # fmt: skip
    ours = NATTrainer(args, log=False)
    ev = ours.evaluator
    plain = copy_weights(PlainSupernet(ev.supernet.config).to(ev.device), ev.supernet)  # the same device
    env = gym.make("NATCell-v0", rules=args.rules, steps=args.steps,
                   evaluator=plain_evaluator(plain, ev.split, ev.batch_size))  # fmt: skip
    return {"nat_gym": ours, "plain": NATTrainer(args, env=env, log=False)}


def ms_per_sample(m: int, n: int, updates: int, rounds: int, variant: str, supernet: str | None) -> dict:
    arms = trainers(m, n, variant, supernet)
    per_round = max(1, updates // rounds)
    times = alternate({name: lambda i, t=t: t.policy_update() for name, t in arms.items()}, rounds, per_round)
    return {
        "nat_gym": median_ms(times["nat_gym"]) / (m * n),
        "plain": median_ms(times["plain"]) / (m * n),
        "speedup": ratio(times, "plain", "nat_gym"),
        "range": ratio_range(times, "plain", "nat_gym"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--updates", type=int, default=60, help="timed updates per arm at m = n = 1 (default: 60)")
    p.add_argument("--rounds", type=int, default=5, help="alternated rounds per setting (default: 5)")
    p.add_argument("--m", type=int, default=8, help="inputs per batched update (default: 8)")
    p.add_argument("--n", type=int, default=4, help="samples per input in the batched update (default: 4)")
    p.add_argument("--variant", default="fixed", help="GCN variant (default: fixed)")
    p.add_argument("--supernet", default=None,
                   help="supernet checkpoint to score with (default: the default digits supernet)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args()
    for name in ("updates", "rounds", "m", "n"):
        if getattr(args, name) < 1:
            p.error(f"--{name}: expected an integer >= 1, got {getattr(args, name)}")
    torch.set_num_threads(1)
    single = ms_per_sample(1, 1, args.updates, args.rounds, args.variant, args.supernet)
    batched_updates = max(args.updates // (args.m * args.n) * 4, args.rounds)
    batched = ms_per_sample(args.m, args.n, batched_updates, args.rounds, args.variant, args.supernet)
    mn = f"m{args.m}_n{args.n}"
    figures = {
        "rounds": args.rounds,
        "ms_per_sample_m1_n1": round(single["nat_gym"], 2),
        "plain_ms_per_sample_m1_n1": round(single["plain"], 2),
        "speedup_m1_n1_vs_plain": round(single["speedup"], 2),
        "speedup_m1_n1_range": single["range"],
        f"ms_per_sample_{mn}": round(batched["nat_gym"], 2),
        f"plain_ms_per_sample_{mn}": round(batched["plain"], 2),
        f"speedup_{mn}_vs_plain": round(batched["speedup"], 2),
        f"speedup_{mn}_range": batched["range"],
    }
    report(figures, args.json)


if __name__ == "__main__":
    from nat_gym.cli import ignore_library_warnings

    ignore_library_warnings()  # torch_geometric's import warning, as the nat-gym command does
    main()
