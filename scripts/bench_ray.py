"""Scaling out (issue 12): Ray evaluation of BlockQNN blocks against the serial evaluator, Ray's overhead per task, a
simulated cluster, and supernet training with 2 processes against 1.

1. **Throughput**, arms alternated round by round (``_report.alternate``), each round a fresh batch of ``--blocks``
   random blocks of the default search (uniform valid layers, ``max_index`` 10), the same batch for both arms, the
   digits recipe (:data:`~nat_gym.block_evaluator.DIGITS_RECIPE`), no persistent cache, one torch thread per training:

   - ``serial``: ``EarlyStopEvaluator(workers=1)``, the blocks one after the other in this process;
   - ``ray``: ``EarlyStopEvaluator(executor="ray", workers=--workers)`` on a local Ray (started and warmed before
     the timing: its workers' start-up is paid once per run, not per batch);
   - ``processes``: ``EarlyStopEvaluator(executor="process", workers=--workers)``, the same number of plain local
     processes: the control that says how much parallel CPU the machine gives right now (on a shared machine,
     possibly much less than ``--workers`` cores).

   The figures are medians over rounds of serial seconds / arm seconds for the same batch, and Ray against the
   plain processes (Ray's cost where the machine's parallelism is the limit).
2. **Overhead per task**: a pool of one Ray worker runs ``--tasks`` no-op tasks one after the other (submit,
   ``ray.wait``, fetch): the seconds Ray adds to every evaluation, against a local call.
3. **A simulated cluster**: one BlockQNN iteration (64 blocks, the agent waits for all of them) on ``W`` workers,
   with per-block times drawn from the serial arm's measured ones, each task paying the measured overhead and the
   driver handing tasks out one overhead apart; greedy assignment to the first free worker. Speed-up = the serial
   time of the 64 blocks / the iteration's makespan (median of 200 draws), for W up to 64 (32 nodes of 2 cores).
4. **Supernet training**, 2 processes against 1 (``nat-gym train-supernet --nproc 2`` / ``--nproc 1``, gloo on the
   CPU, the same global batch), arms alternated: training seconds of rank 0 (``metrics.csv``, start-up excluded).

The machine's load average is printed before and after: on a shared machine the figures move with it.

Usage: ``python scripts/bench_ray.py [--rounds 3] [--blocks 24] [--json figures.json]``.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _report import alternate, ratio, ratio_range, report
from bench_blockqnn import random_blocks

from nat_gym.block_evaluator import DatasetSpec, EarlyStopEvaluator, EarlyStopRecipe
from nat_gym.distributed import RayPool, connect

ROOT = Path(__file__).resolve().parents[1]


def _noop(x: int) -> int:
    return x


def simulate(seconds: list[float], overhead: float, workers: int, batch: int = 64, draws: int = 200,
             seed: int = 0) -> float:  # fmt: skip
    """Median speed-up of one iteration of ``batch`` blocks on ``workers`` over one worker (see the docstring)."""
    rng = np.random.default_rng(seed)
    speedups = []
    for _ in range(draws):
        times = rng.choice(seconds, size=batch)
        free = np.zeros(workers)
        for k, t in enumerate(times):
            w = int(np.argmin(free))
            free[w] = max(free[w], k * overhead) + t + overhead
        speedups.append(times.sum() / free.max())
    return float(statistics.median(speedups))


def supernet_seconds(nproc: int, epochs: int, out: Path) -> float:
    """Training seconds of ``nat-gym train-supernet --nproc nproc`` (rank 0's clock, from metrics.csv)."""
    cmd = [sys.executable, "-m", "nat_gym.cli", "train-supernet", "--epochs", str(epochs), "--eval-archs", "0",
           "--final-archs", "1", "--nproc", str(nproc), "--no-progress", "--out", str(out)]  # fmt: skip
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    with (out / "metrics.csv").open() as f:
        return float(list(csv.DictReader(f))[-1]["seconds"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="timed rounds of each arm (default: 3)")
    p.add_argument("--blocks", type=int, default=24,
                   help="blocks per round (default: 24; with few blocks the slowest one leaves a worker idle)")
    p.add_argument("--workers", type=int, default=2, help="Ray workers (default: 2, this machine's cores)")
    p.add_argument("--tasks", type=int, default=200, help="no-op tasks timing the overhead (default: 200)")
    p.add_argument("--dataset", default="digits", help="digits (default) or fake (a quick check of the script)")
    p.add_argument("--epochs", type=int, default=None, help="early-stop epochs (default: the digits recipe's 4)")
    p.add_argument("--supernet-epochs", type=int, default=3, help="supernet epochs per arm; 0 skips (default: 3)")
    p.add_argument("--supernet-rounds", type=int, default=2, help="timed rounds of the supernet arms (default: 2)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args()
    torch.set_num_threads(1)
    figures: dict[str, object] = {"load_average_before": " ".join(f"{x:.1f}" for x in os.getloadavg())}

    # ---------------------------------------------------------------------------------------------- throughput
    dataset = DatasetSpec(args.dataset)
    serial = EarlyStopEvaluator(dataset, cache=None)
    recipe = serial.recipe if args.epochs is None else EarlyStopRecipe(**{**serial.recipe.to_dict(),
                                                                         "epochs": args.epochs})  # fmt: skip
    serial = EarlyStopEvaluator(dataset, recipe, cache=None)
    connect(num_cpus=args.workers)
    on_ray = EarlyStopEvaluator(dataset, recipe, cache=None, executor="ray", workers=args.workers)
    local = EarlyStopEvaluator(dataset, recipe, cache=None, executor="process", workers=args.workers)
    batches = []
    pool = iter(dict.fromkeys(b.canonical() for b in random_blocks(40 * args.blocks * (args.rounds + 2), 10, 0)))
    for _ in range(args.rounds + 1):
        batches.append([next(pool) for _ in range(args.blocks)])
    on_ray.measure(batches[0][: args.workers])  # start the workers (untimed)
    local.measure(batches[0][: args.workers])
    seconds: list[float] = []

    def run_serial(i: int) -> None:
        seconds.extend(m.seconds for m in serial.measure(batches[i]))

    evaluators = {"ray": on_ray, "processes": local}
    times = alternate({"serial": run_serial, **{n: (lambda i, e=e: e.measure(batches[i])) for n, e in evaluators.items()}},
                      rounds=args.rounds, prepare={n: (lambda i, e=e: e._memory.clear())
                                                   for n, e in {"serial": serial, **evaluators}.items()})  # fmt: skip
    figures["blocks_per_round"] = args.blocks
    figures["serial_seconds_per_block"] = round(statistics.median(times["serial"]) / args.blocks, 3)
    figures["ray_seconds_per_block"] = round(statistics.median(times["ray"]) / args.blocks, 3)
    figures[f"throughput_ray_{args.workers}_workers_vs_serial"] = round(ratio(times, "serial", "ray"), 2)
    figures["throughput_ratio_range_over_rounds"] = ratio_range(times, "serial", "ray")
    figures[f"control_{args.workers}_processes_vs_serial"] = round(ratio(times, "serial", "processes"), 2)
    figures[f"ray_vs_{args.workers}_processes"] = round(ratio(times, "processes", "ray"), 2)
    retried = on_ray.ray_pool.retried
    on_ray.close()
    local.close()

    # ---------------------------------------------------------------------------------------------- overhead
    with RayPool(lambda: _noop, workers=1) as noop:
        list(noop.imap_unordered(range(10)))  # warm
        start = time.perf_counter()
        for i in range(args.tasks):
            list(noop.imap_unordered([i]))
        per_task = (time.perf_counter() - start) / args.tasks
        start = time.perf_counter()
        list(noop.imap_unordered(range(args.tasks)))  # the pool's own loop, one worker
        pipelined = (time.perf_counter() - start) / args.tasks
    figures["ray_overhead_ms_per_task"] = round(1e3 * per_task, 2)
    figures["ray_overhead_ms_per_task_in_a_batch"] = round(1e3 * pipelined, 2)
    figures["overhead_share_of_a_block"] = f"{per_task / statistics.median(seconds):.2%}"
    import ray

    ray.shutdown()

    # ---------------------------------------------------------------------------------------------- simulation
    for w in (2, 8, 16, 32, 64):
        figures[f"simulated_speedup_{w}_workers_64_blocks"] = round(simulate(seconds, per_task, w), 1)

    # ---------------------------------------------------------------------------------------------- supernet
    if args.supernet_epochs > 0:
        trained: dict[int, list[float]] = {1: [], 2: []}
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.supernet_rounds):  # 1 2, 2 1, ...: a change of load hits both arms
                for n in (1, 2) if r % 2 == 0 else (2, 1):
                    trained[n].append(supernet_seconds(n, args.supernet_epochs, Path(tmp) / f"{n}-{r}"))
        figures["supernet_train_seconds_1_process"] = round(statistics.median(trained[1]), 1)
        figures["supernet_train_seconds_2_processes"] = round(statistics.median(trained[2]), 1)
        figures["supernet_2_processes_vs_1"] = round(statistics.median(a / b for a, b in zip(trained[1], trained[2])), 2)
    figures["ray_retries_during_the_run"] = retried
    figures["load_average_after"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    report(figures, args.json)


if __name__ == "__main__":
    main()
