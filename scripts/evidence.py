"""Evidence for the NAT policy on the digits default: does a trained transformer beat random valid transformations?

For each seed and GCN variant (faithful, fixed) it trains the NAT policy (REINFORCE, Algorithm 1's policy step) on the
default digits supernet, then scores on 200 fresh input architectures and on the registered 4-step genotypes:

- ``policy``: one transformation sampled from pi(.|beta); ``argmax``: the most likely one;
- ``random``: a uniformly random *valid* transformation (every edge picks uniformly among its allowed ops);
- ``identity``: no change (reward 0, saving 0 by definition: the floor a useful policy must beat).

Reward = acc(alpha) - acc(beta) on the whole validation split (360 held-out training images) with the shared
weights; saving = relative MAdds saving of the stand-alone network at the supernet's shape. The supernet is the
cached default one (trained by uniform sampling, Algorithm 1's supernet step) and stays frozen here so that 3 seeds
x 2 variants fit in minutes on 2 CPU cores; ``--train-supernet`` alternates supernet epochs as in the paper.

Usage: ``python scripts/evidence.py [--seeds 0 1 2] [--epochs 150] [--out runs/evidence]``; prints a Markdown table
and writes ``evidence.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from agents.heldout import RANDOM_SEED, fresh_inputs, gcn_transform, score
from agents.nat_trainer import NATTrainerArgs, make_env, train
from nat_gym import genotypes as named
from nat_gym.sampling import random_valid_action

NAMED = ("DARTS_V1", "DARTS_V2", "VGG", "ResBlock", "MobileNetV2", "R1", "R2", "R3", "R4", "R5")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default: 0 1 2)")
    p.add_argument("--variants", nargs="+", default=["faithful", "fixed"], help="GCN variants (default: both)")
    p.add_argument("--epochs", type=int, default=150, help="policy epochs per run (default: 150)")
    p.add_argument("--reward-images", type=int, default=64, help="images per training reward (default: 64)")
    p.add_argument("--train-supernet", action="store_true", help="alternate supernet epochs (Algorithm 1)")
    p.add_argument("--inputs", type=int, default=200, help="fresh input architectures to score (default: 200)")
    p.add_argument("--out", default="runs/evidence", help="output folder (default: runs/evidence)")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    base_env = make_env(NATTrainerArgs(reward_images=None))
    rules, evaluator, cost_config = base_env.unwrapped.rules, base_env.unwrapped.evaluator, base_env.unwrapped.cost_config
    fresh = fresh_inputs(rules, 4, args.inputs)
    named_betas = [named.get(n) for n in NAMED]

    results: dict[str, dict] = {}
    rand_rng = np.random.default_rng(RANDOM_SEED)
    for label, betas in (("fresh", fresh), ("named", named_betas)):
        alphas = [rules.apply_indices(b, random_valid_action(rules, b, rand_rng))[0] for b in betas]
        r, s = score(evaluator, cost_config, betas, alphas)
        results[f"random/{label}"] = {"reward": float(r.mean()), "saving": float(s.mean())}
        results[f"identity/{label}"] = {"reward": 0.0, "saving": 0.0}

    for variant in args.variants:
        for seed in args.seeds:
            run = out / f"{variant}-seed{seed}"
            targs = NATTrainerArgs(seed=seed, variant=variant, epochs=args.epochs, reward_images=args.reward_images,
                                   train_supernet=args.train_supernet, out=str(run), progress=False,
                                   eval_inputs=0, heldout_inputs=0)  # fmt: skip
            start = time.perf_counter()
            policy, history = train(targs)
            seconds = time.perf_counter() - start
            transform = gcn_transform(policy.eval(), rules, seed)
            for label, betas in (("fresh", fresh), ("named", named_betas)):
                for mode, det in (("sampled", False), ("argmax", True)):
                    r, s = score(evaluator, cost_config, betas, transform(betas, det))
                    results[f"{variant}-{mode}/seed{seed}/{label}"] = {
                        "reward": float(r.mean()), "saving": float(s.mean()), "train_seconds": seconds,
                    }  # fmt: skip
            print(f"{variant} seed {seed}: trained in {seconds:.0f} s; "
                  f"fresh reward {results[f'{variant}-sampled/seed{seed}/fresh']['reward']:+.4f} (sampled), "
                  f"{results[f'{variant}-argmax/seed{seed}/fresh']['reward']:+.4f} (argmax)", flush=True)  # fmt: skip

    (out / "evidence.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    print()
    print("| policy | seed | reward, 200 fresh inputs | MAdds saving | reward, named cells | MAdds saving | train s |")
    print("|---|---|---|---|---|---|---|")
    for key in ("identity", "random"):
        f, n = results[f"{key}/fresh"], results[f"{key}/named"]
        print(f"| {key} | - | {f['reward']:+.4f} | {f['saving']:.1%} | {n['reward']:+.4f} | {n['saving']:.1%} | - |")
    for variant in args.variants:
        for mode in ("sampled", "argmax"):
            for seed in args.seeds:
                f = results[f"{variant}-{mode}/seed{seed}/fresh"]
                n = results[f"{variant}-{mode}/seed{seed}/named"]
                print(f"| {variant} ({mode}) | {seed} | {f['reward']:+.4f} | {f['saving']:.1%} | "
                      f"{n['reward']:+.4f} | {n['saving']:.1%} | {f['train_seconds']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
