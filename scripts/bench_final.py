"""Training throughput of ``nat-gym train-final`` (images/s), arms alternated in one run, ratios to the fp32 baseline.

Each arm is a (precision, channels-last, compile) setting; the script builds one trainer per arm, runs a warm-up
epoch, then alternates timed epochs of all arms ``--repeats`` times and reports each arm's median images/s and its
ratio to the first arm (the baseline: fp32, contiguous tensors, eager). Shapes:

- ``--shape digits`` (default): the digits preset (8x8x1 images, C=8, 5 cells, batch 96) on fake data of that shape;
- ``--shape cifar``: the DARTS CIFAR-10 configuration (32x32x3 images, C=36, 20 cells, batch 96, auxiliary head,
  drop-path, cutout 16), on fake data of that shape (nothing to download). Meant for a GPU.

Usage: ``python scripts/bench_final.py [--shape digits|cifar] [--arch DARTS_V2] [--device auto] [--steps 10]
[--repeats 3] [--arms fp32:off bf16:on ...] [--json FILE]``. An arm is ``PRECISION:on|off[:compile]``
(precision, channels-last, compile).
"""

from __future__ import annotations

import argparse
import statistics

import torch
from _report import report

from nat_gym import genotypes
from nat_gym.data import load_dataset
from nat_gym.final import DARTS_CIFAR10, DIGITS, FinalTrainer

SHAPES = {
    "digits": (DIGITS, {"image_size": 8, "in_channels": 1}),
    "cifar": (DARTS_CIFAR10, {"image_size": 32, "in_channels": 3}),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=sorted(SHAPES), default="digits", help="network and image shape (default: digits)")
    p.add_argument("--arch", default="DARTS_V2", help="architecture (default: DARTS_V2)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda (default: auto)")
    p.add_argument("--steps", type=int, default=10, help="SGD steps per timed epoch (default: 10)")
    p.add_argument("--repeats", type=int, default=3, help="timed epochs per arm, alternated (default: 3)")
    p.add_argument("--arms", nargs="+", default=None,
                   help="PRECISION:on|off[:compile] settings (precision, channels-last, compile), the first the "
                   "baseline (default: fp32:off fp32:on on the CPU; fp32:off fp32:on bf16:on bf16:on:compile on CUDA)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args()
    torch.set_num_threads(1)
    base, shape = SHAPES[args.shape]
    cuda = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    arms = args.arms or (["fp32:off", "fp32:on", "bf16:on", "bf16:on:compile"] if cuda else ["fp32:off", "fp32:on"])
    data = load_dataset("fake", n_train=args.steps * base.batch_size, n_valid=8, n_test=8, **shape)
    trainers = {}
    for arm in arms:
        precision, channels_last, *rest = arm.split(":")
        config = base.replace(dataset="fake", precision=precision, channels_last=channels_last == "on",
                              compile=rest == ["compile"],
                              device=args.device, eval_every=10**6, epochs=args.repeats + 1)  # fmt: skip
        trainers[arm] = FinalTrainer(genotypes.resolve(args.arch), config, data=data, progress=False)
        trainers[arm].train_epoch()  # warm-up: lazy initialisation, cuDNN autotuning, compilation
    rates: dict[str, list[float]] = {arm: [] for arm in arms}
    for _ in range(args.repeats):
        for arm, trainer in trainers.items():
            rates[arm].append(trainer.train_epoch()["images_per_s"])  # training steps only, CUDA synchronised
    medians = {arm: statistics.median(r) for arm, r in rates.items()}
    figures: dict[str, object] = {"shape": args.shape, "arch": args.arch,
                                  "device": str(next(iter(trainers.values())).device),
                                  "params": next(iter(trainers.values())).cost.params}  # fmt: skip
    for arm in arms:
        figures[f"images_per_s[{arm}]"] = round(medians[arm], 1)
        figures[f"ratio_to_{arms[0]}[{arm}]"] = round(medians[arm] / medians[arms[0]], 3)
    report(figures, args.json)


if __name__ == "__main__":
    main()
