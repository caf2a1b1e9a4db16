"""Signal-to-noise of the NATCell-v0 reward on the default supernet, for several numbers of reward images.

Signal: how much the shared-weight accuracy differs between architectures (the std over random input architectures
of their accuracy on the whole validation split), and how much the reward ``acc(alpha) - acc(beta)`` of random
valid transformations varies. Noise: how much one architecture's accuracy varies between validation minibatches of
``b`` images (the std over minibatches, averaged over architectures). SNR = signal std / noise std.

Usage: ``python scripts/reward_snr.py [--archs 100] [--sizes 64 128 360]``.
"""

from __future__ import annotations

import argparse

import numpy as np
from _report import report

from nat_gym import rules as rule_sets
from nat_gym.data import load_dataset
from nat_gym.evaluator import SupernetEvaluator
from nat_gym.sampling import random_genotype
from nat_gym.supernet.config import DEFAULT_TRAIN_CONFIG, SupernetConfig
from nat_gym.supernet.default import load_or_train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rules", default="nat++", help="rule set (default: nat++)")
    p.add_argument("--archs", type=int, default=100, help="random input architectures (default: 100)")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="minibatch sizes to compare")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled architectures (default: 0)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args()
    rules = rule_sets.get(args.rules)
    data = load_dataset("digits")
    cfg = SupernetConfig(ops=rules.ops, num_classes=data.num_classes, in_channels=data.in_channels)
    net = load_or_train(cfg, data=data, train_config=DEFAULT_TRAIN_CONFIG)
    rng = np.random.default_rng(args.seed)
    ops = [o for o in rules.ops if o != "null"]
    betas = [random_genotype(rng, cfg.steps, ops) for _ in range(args.archs)]
    alphas = []
    for b in betas:
        mask = rules.mask(b)
        alphas.append(rules.apply(b, [int(rng.choice(np.flatnonzero(row))) for row in mask]))

    full = SupernetEvaluator(net, data.valid)
    acc_b, acc_a = full.evaluate(betas), full.evaluate(alphas)
    reward = acc_a - acc_b
    out: dict[str, float] = {
        "valid_images": len(data.valid),
        "acc_mean": float(acc_b.mean()),
        "acc_std_across_archs": float(acc_b.std()),
        "reward_mean_random_transform": float(reward.mean()),
        "reward_std_random_transform": float(reward.std()),
    }
    for size in args.sizes:
        ev = SupernetEvaluator(net, data.valid, batch_size=size)
        n_full = len(data.valid) // size  # only full minibatches
        per_batch_b = np.stack([ev.evaluate(betas, batch=i) for i in range(n_full)])  # [batches, archs]
        per_batch_r = np.stack([ev.evaluate(alphas, batch=i) for i in range(n_full)]) - per_batch_b
        acc_noise = float(per_batch_b.std(axis=0).mean())
        reward_noise = float(per_batch_r.std(axis=0).mean())
        out[f"acc_noise_std_{size}"] = acc_noise
        out[f"acc_snr_{size}"] = out["acc_std_across_archs"] / acc_noise
        out[f"reward_noise_std_{size}"] = reward_noise
        out[f"reward_snr_{size}"] = out["reward_std_random_transform"] / reward_noise
    # the whole split: the noise of a 360-image estimate, extrapolated from the minibatch noise (binomial scaling)
    size = args.sizes[0]
    out["acc_noise_std_full_est"] = out[f"acc_noise_std_{size}"] * (size / len(data.valid)) ** 0.5
    out["acc_snr_full_est"] = out["acc_std_across_archs"] / out["acc_noise_std_full_est"]
    out["reward_snr_full_est"] = out["reward_std_random_transform"] / (
        out[f"reward_noise_std_{size}"] * (size / len(data.valid)) ** 0.5
    )
    report(out, args.json, float_digits=4)


if __name__ == "__main__":
    main()
