"""Why the supernet's training loss drifts up late in ``nat-gym train --algo nat``: one controlled run per cause.

``nat-gym train --algo nat`` starts from the cached default digits supernet (250 epochs of SGD, lr 0.05 cosine to
0) and trains it on with a *new* SGD (lr ``supernet_lr`` cosine to ``supernet_lr_min`` over the run, weight decay
``supernet_weight_decay``, fresh momentum). The supernet's trajectory does not depend on the policy (the policy
never trains the weights and the supernet epochs draw from their own seeded streams; ``tests/test_nat_trainer.py``
checks it), so the supernet side of a ``train`` run is reproduced here without the policy, and each candidate cause
is switched off in one arm while everything else (seeds, data order, sampled architectures) stays the same.

Every arm starts from the same default supernet. Per epoch it logs the trainer's ``train_loss`` (the mean over the
epoch's 16 minibatches, each with its own random architecture: a noisy figure). Every ``--probe-every`` epochs it
also measures, with the weights fixed, a fixed panel of ``--probe-archs`` random architectures: their mean
cross-entropy and accuracy on the whole train split (the noise-free training loss) and on the validation split (what
the rewards see), and the norms of the weights (the convolutions, every one followed by a non-affine BN and so
scale-invariant, and the classifier).

Usage: ``python scripts/supernet_drift.py [--arms trainer no-wd ...] [--epochs 300] [--out runs/drift]``; writes
``ARM.csv`` per arm and prints a summary table.
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from agents.nat_trainer import NATTrainerArgs
from nat_gym import rules as rule_sets
from nat_gym.data import load_dataset
from nat_gym.sampling import random_genotype
from nat_gym.supernet.checkpoint import load_checkpoint
from nat_gym.supernet.config import DEFAULT_TRAIN_CONFIG, SupernetConfig, SupernetTrainConfig
from nat_gym.supernet.default import load_or_train
from nat_gym.supernet.train import SupernetTrainer

ARMS: dict[str, tuple[dict, str]] = {
    "replay": ({}, "what nat-gym train --algo nat did before supernet_seed: a new SGD (lr 0.01 cosine to 0.001, weight "
               "decay 3e-4) on the seed-0 stream of architectures and minibatches, the one the default was trained on"),
    "fresh": ({"seed": 1}, "the same on a stream the pretraining never used (as the trainer now draws)"),
    "no-wd": ({"weight_decay": 0.0}, "replay without weight decay"),
    "no-restart": ({"lr": 0.001}, "replay without the learning-rate restart: constant lr 0.001 (the final lr)"),
    "frozen": ({}, "no SGD step at all: the per-epoch train_loss moves only with the sampled architectures and data "
               "(seed 0, the pretraining's stream)"),
    "frozen-fresh": ({"seed": 1}, "no SGD step, seed 1"),
}
"""Arm name -> (overrides of the trainer's supernet training config, what the arm tests)."""


def trainer_config(schedule_epochs: int) -> SupernetTrainConfig:
    """The supernet training config ``nat-gym train --algo nat`` uses with its default arguments."""
    a = NATTrainerArgs(epochs=schedule_epochs)
    return SupernetTrainConfig(epochs=a.epochs, batch_size=a.supernet_batch_size, lr=a.supernet_lr,
                               lr_min=a.supernet_lr_min, momentum=a.supernet_momentum,
                               weight_decay=a.supernet_weight_decay, grad_clip=a.supernet_grad_clip, seed=a.seed,
                               eval_archs=0)  # fmt: skip


@torch.no_grad()
def probe(net, data, archs) -> dict[str, float]:
    """Mean loss / accuracy of the fixed architectures on the whole train and validation splits; weight norms."""
    out: dict[str, float] = {}
    for name, split in (("train", data.train), ("valid", data.valid)):
        logits = [net(split.x, g) for g in archs]  # each [N, classes]
        out[f"probe_{name}_loss"] = float(np.mean([F.cross_entropy(z, split.y).item() for z in logits]))
        out[f"probe_{name}_acc"] = float(np.mean([(z.argmax(-1) == split.y).float().mean().item() for z in logits]))
    convs = [m.weight for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    out["conv_weight_norm"] = float(torch.sqrt(sum((w * w).sum() for w in convs)))
    out["classifier_norm"] = float(net.classifier.weight.norm())
    return out


def base_supernet(path: str | None, data):
    """The supernet every arm starts from: a checkpoint, or the cached default digits supernet."""
    if path:
        return load_checkpoint(path)[0]
    cfg = SupernetConfig(ops=rule_sets.get("nat++").ops, num_classes=data.num_classes, in_channels=data.in_channels)
    return load_or_train(cfg, data=data, train_config=DEFAULT_TRAIN_CONFIG)


def run_arm(name: str, args, data) -> list[dict[str, float]]:
    overrides, _ = ARMS[name]
    net = base_supernet(args.supernet, data)
    cfg = net.config
    train_cfg = replace(trainer_config(args.schedule_epochs), **overrides)
    trainer = SupernetTrainer(net, data, train_cfg, device="cpu", threads=1)
    if name.startswith("frozen"):
        trainer.optimizer.step = lambda closure=None: None  # same forward / backward passes, weights never move
    rng = np.random.default_rng(args.probe_seed)
    ops = [o for o in cfg.ops if o != "null"]
    archs = [random_genotype(rng, cfg.steps, ops) for _ in range(args.probe_archs)]
    rows = [{"epoch": 0.0, "lr": float("nan"), "train_loss": float("nan"), **probe(net, data, archs)}]
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        row = trainer.train_epoch()
        probed = epoch % args.probe_every == 0 or epoch == args.epochs
        if probed:
            row.update(probe(net, data, archs))
        rows.append(row)
        if probed:
            write_csv(Path(args.out) / f"{name}.csv", rows)  # as it goes: arms take minutes
    print(f"{name}: {args.epochs} epochs in {time.perf_counter() - start:.0f} s", flush=True)
    return rows


def write_csv(path: Path, rows: list[dict[str, float]]) -> None:
    columns = list(rows[0]) + [k for k in rows[-1] if k not in rows[0]]
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, restval="")
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def read_csv(path: Path) -> list[dict[str, float]]:
    with path.open(newline="") as f:
        return [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(f)]


def window(rows, key: str, lo: int, hi: int) -> float:
    """Mean of ``key`` over epochs ``lo < epoch <= hi`` (rows where it was measured)."""
    vals = [r[key] for r in rows if lo < r["epoch"] <= hi and key in r and not np.isnan(r[key])]
    return float(np.mean(vals)) if vals else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS),
                   help="arms to run: " + "; ".join(f"{k}: {v[1]}" for k, v in ARMS.items()))
    p.add_argument("--epochs", type=int, default=300, help="supernet epochs per arm (default: 300)")
    p.add_argument("--schedule-epochs", type=int, default=360,
                   help="length of the cosine schedule, the train run's --epochs (default: 360)")
    p.add_argument("--probe-every", type=int, default=10, help="epochs between probes (default: 10)")
    p.add_argument("--probe-archs", type=int, default=20, help="fixed random architectures probed (default: 20)")
    p.add_argument("--probe-seed", type=int, default=99, help="seed of the probed architectures (default: 99)")
    p.add_argument("--window", type=int, default=50, help="epochs averaged per summary column (default: 50)")
    p.add_argument("--supernet", default=None, help="start from this supernet checkpoint (default: the digits default)")
    p.add_argument("--out", default="runs/drift", help="folder for ARM.csv (default: runs/drift)")
    p.add_argument("--summary-only", action="store_true", help="train nothing: summarise the arms' CSVs in --out")
    args = p.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.summary_only:
        results = {name: read_csv(out / f"{name}.csv") for name in args.arms if (out / f"{name}.csv").is_file()}
    else:
        data = load_dataset("digits")
        results = {name: run_arm(name, args, data) for name in args.arms}

    w = args.window
    epochs = int(max(r["epoch"] for rows in results.values() for r in rows))
    edges = list(range(0, epochs, w))
    print()
    print("| arm | figure | " + " | ".join(f"epochs {lo + 1}-{min(lo + w, epochs)}" for lo in edges) + " |")
    print("|---|---|" + "---|" * len(edges))
    for name, rows in results.items():
        for key in ("train_loss", "probe_train_loss", "probe_valid_acc", "conv_weight_norm"):
            cells = " | ".join(f"{window(rows, key, lo, lo + w):.4f}" for lo in edges)
            print(f"| {name} | {key} | {cells} |")


if __name__ == "__main__":
    from nat_gym.cli import ignore_library_warnings

    ignore_library_warnings()  # torch_geometric's import warning, as the nat-gym command does
    main()
