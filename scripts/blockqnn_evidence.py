"""Evidence for BlockQNN on the digits default: Q-learning vs random search vs MaskablePPO at one budget of blocks.

For each seed, three searches sample the same number of blocks (``--iterations`` x ``--blocks-per-iteration``):

- ``qlearning``: ``nat-gym train --algo blockqnn`` (tabular Q-learning with the papers' settings, lr 0.01, and the
  scaled epsilon schedule);
- ``random``: the same loop with epsilon 1 throughout (uniform valid layers): random search. With the same seed it
  draws the same random numbers as ``qlearning`` while both explore uniformly (common random numbers: the two differ
  only from the first iteration where Q-learning exploits);
- ``ppo``: sb3-contrib's ``MaskablePPO`` on ``BlockQNN-v0`` (reward at the end of each block, gamma 1), ``--workers``
  environments in subprocesses;
- ``qlearning-lr0.1`` (``--extra-q-lr``): Q-learning with a larger learning rate. With the papers' lr 0.01 and a
  seventh of their iterations, values barely move from their initial 0.5 and the greedy policy follows the largest
  immediate target: on digits, the terminal at once (the empty block's whole reward in one transition).

Every evaluation goes through one SQLite cache (``OUT/evaluations.sqlite``): a block is trained once whichever run
samples it first, and an interrupted evidence run continues where it stopped (finished runs are skipped; the
Q-learning and random runs resume from their checkpoints; PPO replays its blocks from the cache). Reported per run:
the mean reward of the last tenth of the blocks sampled, the best block found (reward and early-stop accuracy), the
distinct blocks it sampled (what a private cache would have trained; within-run hit rate = 1 - distinct / sampled),
its wall time (shared cache and machine: blocks another run trained first cost nothing) and the training CPU time of
its distinct blocks (the cache's records, whoever trained them: the cost with a private cache, agent excluded).

The cache is then ranked twice, by reward and by early-stop accuracy alone, with the reward's FLOPs and density
terms beside each block. Finally the named ResNet-like and Inception-like blocks, the best block of each method (over
its seeds) and the most accurate block of the cache are trained for longer (``--final-epochs``, ``--final-seeds``
training seeds; each distinct block once) on the train split; the table gives their validation accuracy (held-out
training images) and, for the final report only, their test accuracy (means with Student-t 95% intervals over the
training seeds), params and FLOPs of the stacked network. These figures are bit-identical between invocations at one
torch thread count (``--threads``, recorded in the table and ``evidence.json``) and differ between thread counts,
which sum in another order: another draw of the rounding, to be read through the intervals.

Usage: ``python scripts/blockqnn_evidence.py [--seeds 0 1 2] [--iterations 24] [--out runs/blockqnn-evidence]``
(resumable: run the same command again); prints Markdown tables and writes ``OUT/evidence.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from agents.blockqnn_trainer import BlockQNNArgs, train
from nat_gym.block_evaluator import (
    CACHE_KIND,
    DatasetSpec,
    EarlyStopEvaluator,
    RewardConfig,
    block_reward,
    early_stop_train,
)
from nat_gym.blocks import Block, named
from nat_gym.blocks.cost import network_cost
from nat_gym.final.stats import mean_ci
from nat_gym.supernet.train import torch_threads

METHODS = ("qlearning", "random", "ppo")


def q_lr_of(method: str, default: float = 0.01) -> float:
    """The Q-learning rate a method name asks for: ``qlearning-lr0.1`` -> 0.1, ``qlearning`` -> the default."""
    return float(method.split("-lr", 1)[1]) if "-lr" in method else default


def search_args(a: argparse.Namespace, method: str, seed: int, out: Path) -> BlockQNNArgs:
    return BlockQNNArgs(
        seed=seed, schedule="random" if method == "random" else "scaled", q_lr=q_lr_of(method), iterations=a.iterations,
        blocks_per_iteration=a.blocks_per_iteration, replay_batch=a.blocks_per_iteration, max_index=a.max_index,
        dataset=a.dataset, channels=a.channels, train_epochs=a.train_epochs, cache=str(out / "evaluations.sqlite"),
        workers=a.workers, device="cpu", out=str(out / f"{method}-seed{seed}"), progress=not a.quiet,
    )  # fmt: skip


def run_tabular(a: argparse.Namespace, method: str, seed: int, out: Path) -> tuple[list[float], dict]:
    """Q-learning or random search; returns every sampled block's reward (in sampling order) and the summary
    (``seconds``: the search's wall time, resumed parts included)."""
    args = search_args(a, method, seed, out)
    trainer = train(args, resume=(Path(args.out) / "checkpoint.pt").is_file())  # a finished run is only reloaded
    distinct = [b["block"] for b in trainer.blocks.values()]
    return [reward for _, reward in trainer.replay], {**trainer.summary(), "distinct": distinct}


def _ppo_env(kwargs: dict):
    """One BlockQNN-v0 for MaskablePPO, its own evaluator on the shared SQLite cache."""
    import nat_gym  # noqa: F401  (registers the env in a subprocess)

    spec = DatasetSpec(kwargs["dataset"])
    evaluator = EarlyStopEvaluator(spec, kwargs["recipe"], reward=RewardConfig(), cache=kwargs["cache"], device="cpu")
    return gym.make("BlockQNN-v0", max_index=kwargs["max_index"], evaluator=evaluator)


def run_ppo(a: argparse.Namespace, seed: int, out: Path) -> tuple[list[dict], float | None]:
    """MaskablePPO until it has finished the same number of blocks; returns them in order and the run's wall time
    (``run.json``; None if unknown)."""
    from functools import partial

    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    folder = out / f"ppo-seed{seed}"
    done_file, time_file = folder / "episodes.json", folder / "run.json"
    if done_file.is_file():
        seconds = json.loads(time_file.read_text())["seconds"] if time_file.is_file() else None
        return json.loads(done_file.read_text()), seconds
    start = time.perf_counter()
    budget = a.iterations * a.blocks_per_iteration
    kwargs = {"dataset": a.dataset, "max_index": a.max_index, "cache": str(out / "evaluations.sqlite"),
              "recipe": search_args(a, "ppo", seed, out).recipe()}  # fmt: skip
    fns = [partial(_ppo_env, kwargs) for _ in range(a.workers)]
    venv = SubprocVecEnv(fns, start_method="spawn") if a.workers > 1 else DummyVecEnv(fns)
    episodes: list[dict] = []

    class Budget(BaseCallback):
        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "block_reward" in info and len(episodes) < budget:
                    episodes.append({"block": str(info["block"]), "reward": float(info["block_reward"]),
                                     "accuracy": float(info["accuracy"])})  # fmt: skip
            return len(episodes) < budget

    model = MaskablePPO("MultiInputPolicy", venv, n_steps=max(8, 512 // a.workers), batch_size=64, gamma=1.0,
                        ent_coef=0.01, seed=seed, device="cpu", verbose=0)  # fmt: skip
    model.learn(total_timesteps=budget * (a.max_index + 1), callback=Budget())
    venv.close()
    folder.mkdir(parents=True, exist_ok=True)
    seconds = time.perf_counter() - start
    time_file.write_text(json.dumps({"seconds": seconds}))
    done_file.write_text(json.dumps(episodes))
    return episodes, seconds


def summarise(rewards: list[float], blocks: list[tuple[str, float, float]], distinct: list[Block],
              records: dict[Block, dict]) -> dict:  # fmt: skip
    """A run's figures: rewards, best block, distinct blocks (what a private cache would train), within-run hit rate
    and the training CPU seconds of its distinct blocks (from the cache's records, whichever run trained them)."""
    last = rewards[-max(1, len(rewards) // 10):]
    best = max(blocks, key=lambda b: (b[1], b[0]))
    return {"sampled": len(rewards), "mean_reward_last_tenth": float(np.mean(last)), "mean_reward": float(np.mean(rewards)),
            "best_block": best[0], "best_reward": best[1], "best_accuracy": best[2], "distinct_blocks": len(distinct),
            "hit_rate": 1.0 - len(distinct) / len(rewards),
            "train_cpu_seconds": float(sum(records[b]["cpu_seconds"] for b in distinct))}  # fmt: skip


def cached_records(evaluator: EarlyStopEvaluator, blocks: list[Block]) -> dict[Block, dict]:
    """The persistent cache's record of each block (all of them were evaluated by the searches)."""
    stored = evaluator.cache.get_many([evaluator.key(b) for b in blocks])
    return {b: stored[evaluator.key(b)] for b in blocks}


def cache_ranking(evaluator: EarlyStopEvaluator, top: int) -> dict:
    """Every block the searches evaluated (the shared cache, this recipe), ranked by reward and by accuracy alone,
    with the reward's two cost terms."""
    mu, rho = evaluator.reward_config.mu, evaluator.reward_config.rho
    stored = [(Block.parse(r["subject"]), r["key"]) for r in evaluator.cache.rows(CACHE_KIND)]
    blocks = [b for b, key in stored if key == evaluator.key(b)]  # this recipe and dataset only
    ref = {"flops_ref": evaluator.flops_ref, "flops_floor": evaluator.flops_floor}
    rows = []
    for m in evaluator.measure(blocks):  # each term alone: the other one's argument at its neutral value
        flops_term = block_reward(0.0, m.block_flops, 1.0, **ref, mu=mu, rho=0.0)
        density_term = block_reward(0.0, evaluator.flops_ref, m.density, **ref, mu=0.0, rho=rho)
        rows.append({"block": str(m.block), "reward": m.reward, "accuracy": m.accuracy, "flops_term": flops_term,
                     "density_term": density_term, "params": m.params, "flops": m.flops})  # fmt: skip
    by_reward = sorted(rows, key=lambda r: (-r["reward"], r["block"]))
    by_accuracy = sorted(rows, key=lambda r: (-r["accuracy"], -r["reward"], r["block"]))
    best = by_reward[0]
    without = {"no FLOPs term": lambda r: r["reward"] - r["flops_term"],
               "no density term": lambda r: r["reward"] - r["density_term"]}  # fmt: skip
    best_without = {name: max(rows, key=lambda r: (score(r), r["block"]))["block"] for name, score in without.items()}
    return {"blocks": len(rows), "by_reward": by_reward[:top], "by_accuracy": by_accuracy[:top],
            "best_without": best_without,
            "at_least_best_reward_accuracy": sum(r["accuracy"] >= best["accuracy"] for r in rows),
            "accuracy_std": float(np.std([r["accuracy"] for r in rows])),
            "flops_term_range": [min(r["flops_term"] for r in rows), max(r["flops_term"] for r in rows)],
            "density_term_range": [min(r["density_term"] for r in rows), max(r["density_term"] for r in rows)]}  # fmt: skip


def final_candidates(methods: list[str], results: dict, ranking: dict) -> dict[Block, list[str]]:
    """The blocks trained for longer, each with its names: the named anchors, each method's best block (over its
    seeds) and the most accurate block of the cache."""
    candidates: dict[Block, list[str]] = {named.get("ResNet"): ["ResNet"], named.get("Inception"): ["Inception"]}
    picks = []
    for method in methods:
        runs = [r for key, r in results.items() if key.split("/")[0] == method]
        picks.append((f"best of {method}", max(runs, key=lambda r: r["best_reward"])["best_block"]))
    picks.append(("most accurate in the cache", ranking["by_accuracy"][0]["block"]))
    for label, block in picks:
        candidates.setdefault(Block.parse(block), []).append(label)
    return candidates


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="search seeds (default: 0 1 2)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, help="default: all three")
    p.add_argument("--extra-q-lr", type=float, default=0.1,
                   help="also run Q-learning with this learning rate, as method qlearning-lr<x> (default: 0.1; 0: no)")
    p.add_argument("--last-seed-methods", nargs="+", default=None,
                   help="run the last of --seeds only for these methods (a reduced budget; default: every method)")
    p.add_argument("--iterations", type=int, default=24, help="iterations per search (default: 24, the default run)")
    p.add_argument("--blocks-per-iteration", type=int, default=64, help="blocks per iteration (default: 64)")
    p.add_argument("--max-index", type=int, default=10, help="most layers per block (default: 10)")
    p.add_argument("--dataset", default="digits", help="digits (default) or fake (a quick smoke run)")
    p.add_argument("--channels", type=int, default=8, help="stem width C of the early-stop network (default: 8)")
    p.add_argument("--train-epochs", type=int, default=4, help="early-stop epochs per block (default: 4)")
    p.add_argument("--final-epochs", type=int, default=20, help="epochs of the longer training (default: 20)")
    p.add_argument("--final-seeds", type=int, default=3, help="training seeds of the longer training (default: 3)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads of the longer training (default: torch's, the cores or OMP_NUM_THREADS); "
                        "its figures are bit-identical between invocations at one thread count, not between counts")
    p.add_argument("--top", type=int, default=5, help="blocks listed per ranking of the cache (default: 5)")
    p.add_argument("--workers", type=int, default=2, help="evaluation processes (default: 2)")
    p.add_argument("--out", default="runs/blockqnn-evidence", help="output folder (default: runs/blockqnn-evidence)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    a = p.parse_args()
    if a.threads is not None and a.threads < 1:
        p.error(f"--threads: expected an integer >= 1, got {a.threads}")
    if a.extra_q_lr:
        a.methods = [*a.methods, f"qlearning-lr{a.extra_q_lr:g}"]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = DatasetSpec(a.dataset)
    recipe = search_args(a, "qlearning", 0, out).recipe()
    evaluator = EarlyStopEvaluator(spec, recipe, reward=RewardConfig(), cache=str(out / "evaluations.sqlite"), device="cpu")
    results: dict[str, dict] = {}
    start = time.perf_counter()
    for seed in a.seeds:  # seeds outermost: an interrupted run has every method at the same depth
        for method in a.methods:
            if a.last_seed_methods is not None and seed == a.seeds[-1] and method not in a.last_seed_methods:
                continue
            if method == "ppo":
                episodes, seconds = run_ppo(a, seed, out)
                rewards = [e["reward"] for e in episodes]
                blocks = [(e["block"], e["reward"], e["accuracy"]) for e in episodes]
                distinct = list(dict.fromkeys(Block.parse(e["block"]) for e in episodes))
            else:
                rewards, summary = run_tabular(a, method, seed, out)
                blocks = [(b["block"], b["reward"], b["accuracy"]) for b in summary["top_blocks"]]
                distinct, seconds = [Block.parse(b) for b in summary["distinct"]], summary["seconds"]
            r = {**summarise(rewards, blocks, distinct, cached_records(evaluator, distinct)), "seconds": seconds}
            results[f"{method}/seed{seed}"] = r
            print(f"{method} seed {seed}: last-tenth reward {r['mean_reward_last_tenth']:.4f}, best {r['best_reward']:.4f}"
                  f" ({r['best_block']}), {r['distinct_blocks']} distinct blocks", flush=True)  # fmt: skip
            _write(out, a, results, {}, {}, start)

    ranking = cache_ranking(evaluator, a.top)
    # the longer training: the named anchors, each method's best block, the most accurate block of the cache
    long_recipe = replace(recipe, epochs=a.final_epochs, lr_step=max(1, round(0.75 * a.final_epochs)))
    a.threads = a.threads or torch.get_num_threads()  # the figures depend on it: in evidence.json and the table
    final = {}
    for block, labels in final_candidates(a.methods, results, ranking).items():
        with torch_threads(a.threads):
            runs = [early_stop_train(block, replace(long_recipe, seed=s), spec, report_test=True)
                    for s in range(a.final_seeds)]  # fmt: skip
        cost = network_cost(block, **evaluator.shape)
        name = " = ".join(labels)
        final[name] = {"block": str(block), "params": cost.params, "flops": cost.madds,
                       "valid": [r["accuracy"] for r in runs], "test": [r["test_accuracy"] for r in runs]}  # fmt: skip
        print(f"{name}: valid {np.mean(final[name]['valid']):.4f}, test {np.mean(final[name]['test']):.4f}", flush=True)
    _write(out, a, results, ranking, final, start)
    _print_tables(a, results, ranking, final)


def _write(out: Path, a: argparse.Namespace, results: dict, ranking: dict, final: dict, start: float) -> None:
    payload = {"args": vars(a), "results": results, "cache_ranking": ranking, "final": final,
               "seconds": time.perf_counter() - start}  # fmt: skip
    (out / "evidence.json").write_text(json.dumps(payload, indent=2))


def _minutes(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds / 60:.1f}"


def _ci(values: list[float]) -> str:
    ci = mean_ci(values)
    return f"{ci.mean:.4f}" if ci.n < 2 else f"{ci.mean:.4f} [{ci.low:.4f}, {ci.high:.4f}]"


def _print_tables(a: argparse.Namespace, results: dict, ranking: dict, final: dict) -> None:
    print(f"\n{a.iterations * a.blocks_per_iteration} blocks sampled per search\n")
    print("| method | seeds | mean reward of the last tenth, per seed | mean +- std | best block: reward (early-stop "
          "accuracy) | distinct blocks (within-run hit rate) | wall time, min | training CPU time, min |")
    print("|---|---|---|---|---|---|---|---|")
    for method in a.methods:
        seeds = [int(k.split("seed")[1]) for k in results if k.split("/")[0] == method]
        runs = [results[f"{method}/seed{s}"] for s in seeds]
        last = [r["mean_reward_last_tenth"] for r in runs]
        best = " / ".join(f"`{r['best_block']}`: {r['best_reward']:.4f} ({r['best_accuracy']:.3f})" for r in runs)
        distinct = " / ".join(f"{r['distinct_blocks']} ({r['hit_rate']:.0%})" for r in runs)
        print(f"| {method} | {' '.join(map(str, seeds))} | {' / '.join(f'{v:.4f}' for v in last)} | "
              f"{np.mean(last):.4f} +- {np.std(last):.4f} | {best} | "
              f"{distinct} | "
              f"{' / '.join(_minutes(r['seconds']) for r in runs)} | "
              f"{' / '.join(_minutes(r['train_cpu_seconds']) for r in runs)} |")  # fmt: skip
    print(f"\n{ranking['blocks']} distinct blocks evaluated; {ranking['at_least_best_reward_accuracy']} of them reach "
          f"the best-reward block's early-stop accuracy; accuracy std {ranking['accuracy_std']:.4f}, FLOPs term "
          f"{ranking['flops_term_range'][0]:+.4f}..{ranking['flops_term_range'][1]:+.4f}, density term "
          f"{ranking['density_term_range'][0]:+.4f}..{ranking['density_term_range'][1]:+.4f}; the best block with "
          + ", with ".join(f"{k}: `{b}`" for k, b in ranking["best_without"].items()) + "\n")  # fmt: skip
    print("| ranked by | block | reward | early-stop accuracy | FLOPs term | density term | params |")
    print("|---|---|---|---|---|---|---|")
    for key in ("by_reward", "by_accuracy"):
        for r in ranking[key]:
            print(f"| {key[3:]} | `{r['block']}` | {r['reward']:.4f} | {r['accuracy']:.4f} | {r['flops_term']:+.4f} | "
                  f"{r['density_term']:+.4f} | {r['params']:,} |")  # fmt: skip
    threads = f"{a.threads} torch thread{'s' * (a.threads > 1)}"
    print(f"\n| block (trained {a.final_epochs} epochs, {a.final_seeds} seeds, {threads}; mean [95% CI]) | valid accuracy "
          "| test accuracy | params | FLOPs | block |")
    print("|---|---|---|---|---|---|")
    for name, r in final.items():
        print(f"| {name} | {_ci(r['valid'])} | {_ci(r['test'])} | {r['params']:,} | {r['flops']:,} | `{r['block']}` |")


if __name__ == "__main__":
    from nat_gym.cli import ignore_library_warnings

    ignore_library_warnings()  # torch_geometric's import warning, as the nat-gym command does
    main()
