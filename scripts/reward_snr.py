"""Signal-to-noise of the NATCell-v0 reward on the default supernet, for several numbers of reward images.

Signal: how much the shared-weight accuracy differs between architectures (the std over random input architectures
of their accuracy on the whole validation split), and how much the reward ``acc(alpha) - acc(beta)`` of random
valid transformations varies. Noise: how much one architecture's accuracy varies between validation minibatches of
``b`` images (the std over minibatches, averaged over architectures). SNR = signal std / noise std.

Landscape (``--landscape N``): for the first ``N`` architectures, every single-edge change the rules allow, scored
on the whole split: how often one change beats the identity, how the reward relates to the MAdds it saves (does the
supernet favour cheap paths?), and the best single change per input (the headroom a policy can find).

Usage: ``python scripts/reward_snr.py [--archs 100] [--sizes 64 128 360] [--landscape 40] [--supernet CKPT]``.
"""

from __future__ import annotations

import argparse

import numpy as np
from _report import report

from nat_gym import rules as rule_sets
from nat_gym.cost import network_cost
from nat_gym.data import load_dataset
from nat_gym.evaluator import SupernetEvaluator
from nat_gym.sampling import random_genotype
from nat_gym.supernet.checkpoint import load_checkpoint
from nat_gym.supernet.config import DEFAULT_TRAIN_CONFIG, SupernetConfig
from nat_gym.supernet.default import load_or_train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rules", default="nat++", help="rule set (default: nat++)")
    p.add_argument("--archs", type=int, default=100, help="random input architectures (default: 100)")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="minibatch sizes to compare")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled architectures (default: 0)")
    p.add_argument("--landscape", type=int, default=0,
                   help="score every single-edge change of this many architectures (default: 0 = skip)")
    p.add_argument("--supernet", default=None, help="supernet checkpoint (default: the cached digits default)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args()
    rules = rule_sets.get(args.rules)
    data = load_dataset("digits")
    if args.supernet:
        net = load_checkpoint(args.supernet)[0]
    else:
        cfg = SupernetConfig(ops=rules.ops, num_classes=data.num_classes, in_channels=data.in_channels)
        net = load_or_train(cfg, data=data, train_config=DEFAULT_TRAIN_CONFIG)
    cfg = net.config
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
    if args.landscape:
        shape = {"C": cfg.C, "layers": cfg.layers, "num_classes": cfg.num_classes, "in_channels": cfg.in_channels,
                 "input_size": int(data.valid.x.shape[-1])}  # the supernet's network, as the env's cost_config
        out.update(single_edge_landscape(full, rules, betas[: args.landscape], shape))
    report(out, args.json, float_digits=4)


def single_edge_landscape(evaluator, rules, betas, shape: dict[str, int]) -> dict[str, float]:
    """Rewards of every allowed single-edge change of ``betas`` (whole split) against their relative MAdds saving
    at ``shape`` (keyword arguments of :func:`~nat_gym.cost.network_cost`)."""
    rewards, savings, best = [], [], []
    for beta in betas:
        current = [rules.index(op) for op in beta.ops]
        alphas = []
        for e, row in enumerate(rules.mask(beta)):
            for k in np.flatnonzero(row):
                if k != current[e]:
                    alphas.append(rules.apply(beta, current[:e] + [int(k)] + current[e + 1 :]))
        r = evaluator.evaluate(alphas) - evaluator.evaluate([beta])[0]
        madds = network_cost(beta, **shape).madds
        rewards += list(r)
        savings += [(madds - network_cost(a, **shape).madds) / madds for a in alphas]
        best.append(float(r.max()))
    r, s = np.asarray(rewards), np.asarray(savings)
    big = s > 0.05
    return {
        "single_changes": len(r),
        "single_reward_mean": float(r.mean()),
        "single_reward_std": float(r.std()),
        "single_reward_positive_fraction": float((r > 0).mean()),
        "single_reward_vs_saving_corr": float(np.corrcoef(r, s)[0, 1]),
        "single_reward_mean_saving_le_5pct": float(r[~big].mean()),
        "single_reward_mean_saving_gt_5pct": float(r[big].mean()),
        "best_single_change_mean": float(np.mean(best)),
        "best_single_change_positive_fraction": float(np.mean(np.asarray(best) > 0)),
    }


if __name__ == "__main__":
    main()
