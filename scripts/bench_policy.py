"""Time per sampled transformation of a NAT policy update on the digits default (frozen default supernet).

One update samples ``m`` input architectures and ``n`` transformations of each, runs the GCN once over all of them,
scores the ``m * (n + 1)`` architectures (every input is new, so nothing is cached) and takes one Adam step. The
authors' code needs 98 ms per policy step (one input, one sample, two evaluations) at 8 channels, 5 cells, 8x8
inputs and 64 images on these CPUs (the issue's figure); this prints our ms per sampled transformation for the
paper's m = n = 1 and for a batched update, and the ratios to that reference.

Usage: ``python scripts/bench_policy.py [--updates 60] [--m 8 --n 4]``.
"""

from __future__ import annotations

import argparse

from _report import report

from agents.nat_trainer import NATTrainer, NATTrainerArgs

REFERENCE_MS = 98.0


def ms_per_sample(m: int, n: int, updates: int, variant: str) -> float:
    args = NATTrainerArgs(m=m, n=n, train_supernet=False, reward_images=64, eval_inputs=0, progress=False,
                          variant=variant, epochs=1)  # fmt: skip
    trainer = NATTrainer(args, log=False)
    trainer.policy_update()  # warm-up (lazy inits, activation cache of each minibatch)
    trainer.timing.update(update_seconds=0.0, updates=0, samples=0)
    for _ in range(updates):
        trainer.policy_update()
    return 1e3 * trainer.timing["update_seconds"] / trainer.timing["samples"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--updates", type=int, default=60, help="timed updates per setting (default: 60)")
    p.add_argument("--m", type=int, default=8, help="inputs per batched update (default: 8)")
    p.add_argument("--n", type=int, default=4, help="samples per input in the batched update (default: 4)")
    p.add_argument("--variant", default="fixed", help="GCN variant (default: fixed)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args()
    single = ms_per_sample(1, 1, args.updates, args.variant)
    batched = ms_per_sample(args.m, args.n, max(args.updates // (args.m * args.n) * 4, 4), args.variant)
    figures = {
        "reference_ms_per_step": REFERENCE_MS,
        "ms_per_sample_m1_n1": round(single, 2),
        f"ms_per_sample_m{args.m}_n{args.n}": round(batched, 2),
        "speedup_m1_n1_vs_reference": round(REFERENCE_MS / single, 2),
        f"speedup_m{args.m}_n{args.n}_vs_reference": round(REFERENCE_MS / batched, 2),
    }
    report(figures, args.json)


if __name__ == "__main__":
    main()
