"""Seconds per block evaluation of BlockQNN-v0's early-stop reward on the digits default, against a plain loop.

Both arms train the same blocks (the named ones and random blocks of the default search: uniform valid layers,
``--max-index`` 10) by the same recipe (:data:`nat_gym.block_evaluator.DIGITS_RECIPE`: C=8, N=1, 4 epochs of Adam,
batch 128) on one thread, alternated block by block within one run:

- ``evaluator``: :func:`nat_gym.block_evaluator.early_stop_train`, what ``EarlyStopEvaluator`` runs per block
  (tensors sliced from memory, channels-last);
- ``plain``: the loop a tutorial writes, in this script: a ``DataLoader`` over a ``TensorDataset``, the network in
  the default memory format, Adam and ``StepLR``, then the validation accuracy.

Also timed: a cache hit (the same blocks measured again through an ``EarlyStopEvaluator`` whose SQLite cache holds
them), and the CPU seconds per block (what a search costs on idle cores: a whole default search trains
``(1 - hit rate) * 24 * 64`` blocks on 2 workers). Prints the figures (``--json`` writes them).

Usage: ``python scripts/bench_blockqnn.py [--blocks 12] [--json figures.json]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _report import report
from torch.utils.data import DataLoader, TensorDataset

from nat_gym.block_evaluator import (
    DIGITS_RECIPE,
    DatasetSpec,
    EarlyStopEvaluator,
    EarlyStopRecipe,
    early_stop_train,
)
from nat_gym.block_network import BlockNetwork
from nat_gym.blocks import Block, action_to_layer, named, num_actions


def plain_loop(block: Block, recipe: EarlyStopRecipe, dataset: DatasetSpec) -> float:
    """Train and score ``block`` the plain way; returns the validation accuracy."""
    data = dataset.load()
    torch.manual_seed(recipe.seed)
    net = BlockNetwork(block, recipe.C, recipe.N, data.image_size, data.in_channels, data.num_classes)
    opt = torch.optim.Adam(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, recipe.lr_step, recipe.lr_decay)
    loader = DataLoader(TensorDataset(data.train.x, data.train.y), batch_size=recipe.batch_size, shuffle=True)
    for _ in range(recipe.epochs):
        net.train()
        for x, y in loader:
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    net.eval()
    with torch.no_grad():
        return float((net(data.valid.x).argmax(1) == data.valid.y).float().mean())


def random_blocks(n: int, max_index: int, seed: int) -> list[Block]:
    """Blocks of uniform valid layers (the search's epsilon = 1 phase); empty blocks skipped."""
    rng = np.random.default_rng(seed)
    out: list[Block] = []
    while len(out) < n:
        block = Block()
        for t in range(max_index):
            layer = action_to_layer(t, int(rng.integers(num_actions(t))))
            if layer is None:
                break
            block = block.append(layer)
        if len(block):
            out.append(block)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--blocks", type=int, default=12, help="random blocks besides the named ones (default: 12)")
    p.add_argument("--max-index", type=int, default=10, help="layer cap of the random blocks (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random blocks (default: 0)")
    p.add_argument("--dataset", default="digits", help="digits (default) or fake (for a quick smoke run)")
    p.add_argument("--epochs", type=int, default=DIGITS_RECIPE.epochs, help="training epochs per block (default: 4)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args()
    torch.set_num_threads(1)
    spec = DatasetSpec(args.dataset)
    recipe = EarlyStopRecipe(**{**DIGITS_RECIPE.to_dict(), "epochs": args.epochs})
    blocks = [named.get(n) for n in ("ResNet", "Inception", "VGG", "DenseNet")] + random_blocks(
        args.blocks, args.max_index, args.seed)  # fmt: skip
    early_stop_train(blocks[0], recipe, spec)  # warm-up: data loading, lazy initialisations
    plain_loop(blocks[0], recipe, spec)
    ours, plain, cpu, acc_ours, acc_plain = [], [], [], [], []
    for i, block in enumerate(blocks):  # arms alternated, the first arm alternating too
        for arm in ("ours", "plain") if i % 2 == 0 else ("plain", "ours"):
            start = time.perf_counter()
            if arm == "ours":
                result = early_stop_train(block, recipe, spec)
                ours.append(time.perf_counter() - start)
                cpu.append(result["cpu_seconds"])
                acc_ours.append(result["accuracy"])
            else:
                acc_plain.append(plain_loop(block, recipe, spec))
                plain.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache.sqlite"
        EarlyStopEvaluator(spec, recipe, cache=cache, device="cpu").measure(blocks[:4])
        again = EarlyStopEvaluator(spec, recipe, cache=cache, device="cpu")
        start = time.perf_counter()
        again.measure(blocks[:4])
        hit = (time.perf_counter() - start) / 4
    figures = {
        "blocks": len(blocks),
        "mean_layers": float(np.mean([len(b) for b in blocks])),
        "evaluator_s_per_block_median": round(statistics.median(ours), 4),
        "plain_loop_s_per_block_median": round(statistics.median(plain), 4),
        "plain_over_evaluator_total_time": round(sum(plain) / sum(ours), 3),
        "evaluator_cpu_s_per_block_mean": round(float(np.mean(cpu)), 4),
        "cache_hit_ms_per_block": round(1e3 * hit, 3),
        "evaluator_mean_accuracy": round(float(np.mean(acc_ours)), 4),
        "plain_loop_mean_accuracy": round(float(np.mean(acc_plain)), 4),
    }
    report(figures, args.json)


if __name__ == "__main__":
    main()
