"""Benchmark nat-gym's supernet against the plain baseline (``_plain_supernet.py``) and print ratios from this run.

For each configuration, two arms on the same sampled architectures and the same images, with the same weights
(copied in; the script first checks that both give the same logits), one CPU thread each, timed alternately
(``_report.alternate``: the order of the arms flips every round; the ratio is the median over rounds of the two
arms' times in the same round):

- **training step**: one SGD step of one uniformly sampled architecture on a 64-image minibatch (nat-gym:
  ``SupernetTrainer.train_step``; plain: ``zero_grad``, forward, backward, ``clip_grad_norm_``, ``step``);
- **evaluation**: the accuracy of one new architecture on the evaluation images (nat-gym: a ``SupernetEvaluator``
  with its activation cache warm and no result cached; plain: the same images through the plain supernet).

Configurations: ``digits`` (the default supernet's shape: C = 8, 5 cells, 8x8 digits, 360 evaluation images) and
``cifar`` (the papers' search network: C = 20, 8 cells, 32x32x3 random images, 64 evaluation images); ``tiny`` is
for tests. ``--pools`` also prints the pool table behind ``ShiftedWindowPool.shifted_is_faster``.

``--reference-dir DIR`` (a checkout of the authors' code, github.com/guoyongcs/NAT; not shipped with nat-gym) adds
a third arm to the training step: their ``NASNetwork`` built at the same size with the same op list and nat-gym's
weights (the script checks its logits too), timed on the same architectures and minibatches, alternated with the
other two (``_authors_supernet.py`` says what differs); it prints the ratios nat-gym / authors and plain / authors.

Usage: ``python scripts/bench_supernet.py [--configs digits cifar] [--rounds 7] [--pools] [--json FILE]
[--reference-dir DIR]`` (``--configs --pools``: only the pool table).
"""

from __future__ import annotations

import argparse
import statistics
import types
from dataclasses import dataclass

import numpy as np
import torch
from _authors_supernet import (
    build_reference,
    check_reference_dir,
    import_reference,
    path_numel,
    reference_logits,
    reference_train_step,
)
from _plain_supernet import PlainSupernet, copy_weights, plain_evaluator, plain_train_step
from _report import alternate, median_ms, ratio, ratio_range, report

from nat_gym.data import DatasetSplits, load_dataset
from nat_gym.errors import ConfigError
from nat_gym.evaluator import SupernetEvaluator
from nat_gym.op_modules import Pool
from nat_gym.sampling import random_genotype
from nat_gym.supernet.config import SupernetConfig, SupernetTrainConfig
from nat_gym.supernet.model import ShiftedWindowPool, Supernet
from nat_gym.supernet.train import SupernetTrainer


@dataclass(frozen=True)
class BenchConfig:
    dataset: str  # "digits", or "fake": random images of image_size x image_size x in_channels
    C: int
    layers: int
    image_size: int
    in_channels: int
    batch_size: int
    eval_images: int | None  # None: the whole validation split
    train_per_round: int
    eval_per_round: int

    def data(self) -> DatasetSplits:
        if self.dataset == "digits":
            return load_dataset("digits")
        n_valid = self.eval_images or 64
        return load_dataset("fake", image_size=self.image_size, in_channels=self.in_channels, n_valid=n_valid,
                            n_train=8 * self.batch_size, n_test=1)  # fmt: skip


CONFIGS = {
    "digits": BenchConfig("digits", C=8, layers=5, image_size=8, in_channels=1, batch_size=64, eval_images=None,
                          train_per_round=10, eval_per_round=10),
    "cifar": BenchConfig("fake", C=20, layers=8, image_size=32, in_channels=3, batch_size=64, eval_images=64,
                         train_per_round=2, eval_per_round=4),
    "tiny": BenchConfig("fake", C=4, layers=3, image_size=8, in_channels=1, batch_size=16, eval_images=32,
                        train_per_round=1, eval_per_round=1),
}  # fmt: skip


def bench_config(name: str, bc: BenchConfig, rounds: int, seed: int = 0,
                 reference: tuple[types.ModuleType, types.ModuleType] | None = None) -> dict[str, float]:
    """The figures of one configuration; ``reference``: their ``(search_model, genotypes)`` modules, for the
    authors' arm of the training step (:mod:`_authors_supernet`)."""
    data = bc.data()
    cfg = SupernetConfig(C=bc.C, layers=bc.layers, in_channels=data.in_channels, num_classes=data.num_classes)
    torch.manual_seed(seed)
    net = Supernet(cfg)
    plain = copy_weights(PlainSupernet(cfg), net)
    ops = [o for o in cfg.ops if o != "null"]

    def genotype(i: int):
        return random_genotype(np.random.default_rng([seed, i]), cfg.steps, ops)

    # the baseline computes the same function: same weights, same logits
    x_check, diff = data.valid.x[:32], 0.0
    with torch.no_grad():
        for g in (genotype(2_000_000 + k) for k in range(3)):
            diff = max(diff, float((net(x_check, g) - plain(x_check, g)).abs().max()))
    if reference is not None:
        authors, supplied = build_reference(cfg, *reference, plain)
        authors_diff = 0.0
        with torch.no_grad():
            for g in (genotype(2_000_000 + k) for k in range(3)):
                authors_diff = max(authors_diff, float((net(x_check, g) - reference_logits(authors, x_check, g,
                                                                                          cfg.ops)).abs().max()))

    batches = list(data.train.batches(bc.batch_size, drop_last=True))
    train_cfg = SupernetTrainConfig(batch_size=bc.batch_size, lr=0.05)
    trainer = SupernetTrainer(net, data, train_cfg, device="cpu", threads=None)
    optimizer = torch.optim.SGD(plain.parameters(), lr=train_cfg.lr, momentum=train_cfg.momentum,
                                weight_decay=train_cfg.weight_decay)  # fmt: skip

    def batch(i: int):
        return batches[i % len(batches)]

    plain.train()  # once (DARTS's and NAT's loops switch every step; nat-gym's trainer never switches modes)

    train_arms = {
        "plain": lambda i: plain_train_step(plain, optimizer, *batch(i), genotype(i), train_cfg.grad_clip),
        "nat_gym": lambda i: trainer.train_step(*batch(i), genotype(i)),
    }
    if reference is not None:
        authors_optimizer = torch.optim.SGD(authors.model_parameters(), lr=train_cfg.lr, momentum=train_cfg.momentum,
                                            weight_decay=train_cfg.weight_decay)  # fmt: skip
        train_arms["authors"] = lambda i: reference_train_step(authors, authors_optimizer, *batch(i), genotype(i),
                                                               cfg.ops)  # fmt: skip
    train = alternate(train_arms, rounds, bc.train_per_round)

    nat_eval = SupernetEvaluator(net, data.valid, batch_size=bc.eval_images, device="cpu", threads=None)
    plain_eval = plain_evaluator(plain, data.valid, bc.eval_images)
    offset = 1_000_000  # architectures never scored before: no result cache hit
    evaluation = alternate({
        "plain": lambda i: plain_eval.evaluate([genotype(offset + i)], 0),
        "nat_gym": lambda i: nat_eval.evaluate([genotype(offset + i)], 0),
    }, rounds, bc.eval_per_round)  # fmt: skip
    figures = {
        f"{name}_max_abs_logit_diff": diff,
        f"{name}_train_step_plain_ms": round(median_ms(train["plain"]), 2),
        f"{name}_train_step_nat_gym_ms": round(median_ms(train["nat_gym"]), 2),
        f"{name}_train_step_speedup": round(ratio(train, "plain", "nat_gym"), 2),
        f"{name}_train_step_speedup_range": ratio_range(train, "plain", "nat_gym"),
        f"{name}_eval_plain_ms": round(median_ms(evaluation["plain"]), 2),
        f"{name}_eval_nat_gym_ms": round(median_ms(evaluation["nat_gym"]), 2),
        f"{name}_eval_speedup": round(ratio(evaluation, "plain", "nat_gym"), 2),
        f"{name}_eval_speedup_range": ratio_range(evaluation, "plain", "nat_gym"),
    }
    if reference is not None:
        last = genotype((rounds + 1) * bc.train_per_round - 1)  # the architecture of the last timed step (1 warm-up)
        # their update_w also calls model.train() before every step: the step as their training loop pays it
        switch = alternate({"train_mode": lambda i: authors.train()}, rounds)["train_mode"]
        loop = {"authors": [t + statistics.median(switch) for t in train["authors"]], "nat_gym": train["nat_gym"]}
        figures.update({
            f"{name}_authors_max_abs_logit_diff": authors_diff,
            f"{name}_authors_ops_from_nat_gym": " ".join(supplied) or "none",
            f"{name}_path_params_nat_gym": sum(p.numel() for p in net.path_parameters(last)),
            f"{name}_path_params_authors": path_numel(authors),
            f"{name}_train_step_authors_ms": round(median_ms(train["authors"]), 2),
            f"{name}_train_step_nat_gym_vs_authors": round(ratio(train, "authors", "nat_gym"), 2),
            f"{name}_train_step_nat_gym_vs_authors_range": ratio_range(train, "authors", "nat_gym"),
            f"{name}_train_step_plain_vs_authors": round(ratio(train, "authors", "plain"), 2),
            f"{name}_train_step_plain_vs_authors_range": ratio_range(train, "authors", "plain"),
            f"{name}_authors_train_mode_ms": round(median_ms(switch), 2),
            f"{name}_train_step_nat_gym_vs_authors_with_train_mode": round(ratio(loop, "authors", "nat_gym"), 2),
        })  # fmt: skip
    return figures


def _pool_ratios(kind: str, k: int, stride: int, c: int, h: int, rounds: int) -> tuple[float, float]:
    """(forward, forward + backward) time of the shifted slices / time of the built-in pool."""
    x = torch.randn(64, c, h, h).contiguous(memory_format=torch.channels_last).requires_grad_()
    shifted, builtin = ShiftedWindowPool(kind, k, stride).shifted, Pool(kind, k, stride)
    grad = torch.ones_like(builtin(x))
    reps = max(2, 200_000 // (c * h * h))  # about 10 ms per arm and round on an idle core

    def forward(pool) -> None:
        with torch.no_grad():
            for _ in range(reps):
                pool(x)

    def backward(pool) -> None:
        for _ in range(reps):
            pool(x).backward(grad)

    fwd = alternate({"shifted": lambda i: forward(shifted), "builtin": lambda i: forward(builtin)}, rounds)
    bwd = alternate({"shifted": lambda i: backward(shifted), "builtin": lambda i: backward(builtin)}, rounds)
    return ratio(fwd, "shifted", "builtin"), ratio(bwd, "shifted", "builtin")


def pool_table(rounds: int) -> None:
    """Shifted-slice pools vs the built-in pools at the supernets' map sizes, forward and forward + backward."""
    print("pools: time of the shifted slices / time of the built-in pool (< 1: the slices are faster), "
          "median over alternated rounds")  # fmt: skip
    print(f"{'C':>3} {'H':>3} {'op':>12} {'stride':>6} {'forward':>8} {'fwd+bwd':>8}")
    for c, h in ((8, 8), (16, 4), (32, 2), (20, 32), (40, 16), (80, 8)):
        for kind in ("max_pool", "avg_pool"):
            for k in (2, 3, 5):
                for stride in (1, 2):
                    fwd, bwd = _pool_ratios(kind, k, stride, c, h, rounds)
                    print(f"{c:>3} {h:>3} {kind + f'_{k}x{k}':>12} {stride:>6} {fwd:>8.2f} {bwd:>8.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="*", default=["digits", "cifar"], choices=list(CONFIGS),
                   help="configurations to time (default: digits cifar; none with --pools: only the pool table)")
    p.add_argument("--rounds", type=int, default=7, help="alternated rounds per figure, after one warm-up (default: 7)")
    p.add_argument("--pools", action="store_true", help="also print the pool table (shifted slices vs built-in)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument("--reference-dir", default=None, metavar="DIR",
                   help="a checkout of the authors' NAT code (github.com/guoyongcs/NAT, not shipped with nat-gym): "
                        "adds their supernet's SGD step as a third arm of the training step")  # fmt: skip
    args = p.parse_args()
    if args.rounds < 1:
        p.error(f"--rounds: expected an integer >= 1, got {args.rounds}")
    reference = None
    if args.reference_dir is not None:
        try:
            search_model, genotypes, stood_in = import_reference(check_reference_dir(args.reference_dir))
        except ConfigError as e:
            p.exit(2, f"{p.prog}: error: {e}\n")
        reference = (search_model, genotypes)
    torch.set_num_threads(1)
    figures: dict[str, float] = {"threads": torch.get_num_threads(), "rounds": args.rounds}
    if reference is not None:
        figures["authors_code"] = search_model.__file__
        figures["authors_packages_stood_in"] = " ".join(stood_in) or "none"
    for name in args.configs:
        figures.update(bench_config(name, CONFIGS[name], args.rounds, reference=reference))
    if args.configs:
        report(figures, args.json)
    if args.pools:
        pool_table(args.rounds)


if __name__ == "__main__":
    main()
