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
the mean reward of the last tenth of the blocks sampled and the best block found (reward and early-stop accuracy).

Then the best block of each method (over its seeds) and the named ResNet-like and Inception-like blocks are trained
for longer (``--final-epochs``, ``--final-seeds`` training seeds) on the train split; the table gives their
validation accuracy (held-out training images) and, for the final report only, their test accuracy.

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

from agents.blockqnn_trainer import BlockQNNArgs, train
from nat_gym.block_evaluator import DatasetSpec, EarlyStopEvaluator, RewardConfig, early_stop_train
from nat_gym.blocks import Block, named

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
    """Q-learning or random search; returns every sampled block's reward (in sampling order) and the summary."""
    args = search_args(a, method, seed, out)
    trainer = train(args, resume=(Path(args.out) / "checkpoint.pt").is_file())  # a finished run is only reloaded
    return [reward for _, reward in trainer.replay], trainer.summary()


def _ppo_env(kwargs: dict):
    """One BlockQNN-v0 for MaskablePPO, its own evaluator on the shared SQLite cache."""
    import nat_gym  # noqa: F401  (registers the env in a subprocess)

    spec = DatasetSpec(kwargs["dataset"])
    evaluator = EarlyStopEvaluator(spec, kwargs["recipe"], reward=RewardConfig(), cache=kwargs["cache"], device="cpu")
    return gym.make("BlockQNN-v0", max_index=kwargs["max_index"], evaluator=evaluator)


def run_ppo(a: argparse.Namespace, seed: int, out: Path) -> list[dict]:
    """MaskablePPO until it has finished the same number of blocks; returns them in order."""
    from functools import partial

    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    folder = out / f"ppo-seed{seed}"
    done_file = folder / "episodes.json"
    if done_file.is_file():
        return json.loads(done_file.read_text())
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
    done_file.write_text(json.dumps(episodes))
    return episodes


def summarise(rewards: list[float], blocks: list[tuple[str, float, float]]) -> dict:
    last = rewards[-max(1, len(rewards) // 10):]
    best = max(blocks, key=lambda b: (b[1], b[0]))
    return {"sampled": len(rewards), "mean_reward_last_tenth": float(np.mean(last)), "mean_reward": float(np.mean(rewards)),
            "best_block": best[0], "best_reward": best[1], "best_accuracy": best[2]}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="search seeds (default: 0 1 2)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, help="default: all three")
    p.add_argument("--extra-q-lr", type=float, default=0.1,
                   help="also run Q-learning with this learning rate, as method qlearning-lr<x> (default: 0.1; 0: no)")
    p.add_argument("--iterations", type=int, default=24, help="iterations per search (default: 24, the default run)")
    p.add_argument("--blocks-per-iteration", type=int, default=64, help="blocks per iteration (default: 64)")
    p.add_argument("--max-index", type=int, default=10, help="most layers per block (default: 10)")
    p.add_argument("--dataset", default="digits", help="digits (default) or fake (a quick smoke run)")
    p.add_argument("--channels", type=int, default=8, help="stem width C of the early-stop network (default: 8)")
    p.add_argument("--train-epochs", type=int, default=4, help="early-stop epochs per block (default: 4)")
    p.add_argument("--final-epochs", type=int, default=20, help="epochs of the longer training (default: 20)")
    p.add_argument("--final-seeds", type=int, default=3, help="training seeds of the longer training (default: 3)")
    p.add_argument("--workers", type=int, default=2, help="evaluation processes (default: 2)")
    p.add_argument("--out", default="runs/blockqnn-evidence", help="output folder (default: runs/blockqnn-evidence)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    a = p.parse_args()
    if a.extra_q_lr:
        a.methods = [*a.methods, f"qlearning-lr{a.extra_q_lr:g}"]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    start = time.perf_counter()
    for seed in a.seeds:  # seeds outermost: an interrupted run has every method at the same depth
        for method in a.methods:
            t0 = time.perf_counter()
            if method == "ppo":
                episodes = run_ppo(a, seed, out)
                rewards = [e["reward"] for e in episodes]
                blocks = [(e["block"], e["reward"], e["accuracy"]) for e in episodes]
            else:
                rewards, summary = run_tabular(a, method, seed, out)
                blocks = [(b["block"], b["reward"], b["accuracy"]) for b in summary["top_blocks"]]
            results[f"{method}/seed{seed}"] = {**summarise(rewards, blocks), "seconds": time.perf_counter() - t0}
            r = results[f"{method}/seed{seed}"]
            print(f"{method} seed {seed}: last-tenth reward {r['mean_reward_last_tenth']:.4f}, best {r['best_reward']:.4f}"
                  f" ({r['best_block']}), {r['seconds']:.0f} s", flush=True)  # fmt: skip
            _write(out, a, results, {}, start)

    # the longer training: each method's best block, the named anchors
    spec = DatasetSpec(a.dataset)
    recipe = replace(search_args(a, "qlearning", 0, out).recipe(), epochs=a.final_epochs,
                     lr_step=max(1, round(0.75 * a.final_epochs)))  # fmt: skip
    candidates = {"ResNet": named.get("ResNet"), "Inception": named.get("Inception")}
    for method in a.methods:
        runs = [results[f"{method}/seed{s}"] for s in a.seeds]
        best = max(runs, key=lambda r: r["best_reward"])
        candidates[f"best of {method}"] = Block.parse(best["best_block"])
    final = {}
    for name, block in candidates.items():
        runs = [early_stop_train(block, replace(recipe, seed=s), spec, report_test=True) for s in range(a.final_seeds)]
        final[name] = {"block": str(block), "valid": [r["accuracy"] for r in runs], "test": [r["test_accuracy"] for r in runs]}
        print(f"{name}: valid {np.mean(final[name]['valid']):.4f}, test {np.mean(final[name]['test']):.4f}", flush=True)
    _write(out, a, results, final, start)
    _print_tables(a, results, final)


def _write(out: Path, a: argparse.Namespace, results: dict, final: dict, start: float) -> None:
    payload = {"args": vars(a), "results": results, "final": final, "seconds": time.perf_counter() - start}
    (out / "evidence.json").write_text(json.dumps(payload, indent=2))


def _print_tables(a: argparse.Namespace, results: dict, final: dict) -> None:
    print(f"\n{a.iterations * a.blocks_per_iteration} blocks per search\n")
    print("| method | seeds: mean reward of the last tenth | mean +- std | best reward (early-stop accuracy) |")
    print("|---|---|---|---|")
    for method in a.methods:
        runs = [results[f"{method}/seed{s}"] for s in a.seeds]
        last = [r["mean_reward_last_tenth"] for r in runs]
        best = " / ".join(f"{r['best_reward']:.4f} ({r['best_accuracy']:.3f})" for r in runs)
        print(f"| {method} | {' / '.join(f'{v:.4f}' for v in last)} | {np.mean(last):.4f} +- {np.std(last):.4f} | {best} |")
    print(f"\n| block (trained {a.final_epochs} epochs, {a.final_seeds} seeds) | valid accuracy | test accuracy | block |")
    print("|---|---|---|---|")
    for name, r in final.items():
        print(f"| {name} | {np.mean(r['valid']):.4f} +- {np.std(r['valid']):.4f} | "
              f"{np.mean(r['test']):.4f} +- {np.std(r['test']):.4f} | `{r['block']}` |")  # fmt: skip


if __name__ == "__main__":
    main()
