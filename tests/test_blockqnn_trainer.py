"""The BlockQNN search loop: batches of blocks evaluated together, updates independent of the order results arrive
in, exact resume, outputs, and ``nat-gym train --algo blockqnn`` end to end (killed mid-run, then ``--resume``)."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from agents.blockqnn_trainer import BlockQNNArgs, BlockQNNTrainer, load_trainer_checkpoint, train
from agents.qlearning import START
from nat_gym.block_evaluator import CallableBlockEvaluator
from nat_gym.blocks import Block
from nat_gym.errors import CheckpointError, ConfigError

ROOT = Path(__file__).resolve().parents[1]
# columns that describe this process (timings; what its evaluator trained or found in its caches), not the run
PROCESS = {"time", "sample_seconds", "eval_seconds", "train_seconds", "seconds_per_trained_block", "iteration_seconds",
           "trained", "cache_hits", "memory_hits", "hit_rate"}


def proxy(block: Block) -> float:
    """A stand-in accuracy that rewards 3x3 convolutions reading the input and penalises pools."""
    return 0.6 + 0.05 * sum(layer.kind == "conv3" for layer in block.layers) - 0.03 * sum(
        layer.type in (2, 3) for layer in block.layers)  # fmt: skip


class ShuffledEvaluator(CallableBlockEvaluator):
    """Computes a batch's accuracies in a random order, as remote workers would finish them."""

    def __init__(self, seed: int) -> None:
        super().__init__(proxy)
        self.shuffle = random.Random(seed)

    def _accuracies(self, blocks):
        blocks = list(blocks)
        self.shuffle.shuffle(blocks)
        return dict(reversed(list(super()._accuracies(blocks).items())))


def make_trainer(evaluator=None, **kwargs) -> BlockQNNTrainer:
    args = BlockQNNArgs(**{"iterations": 12, "blocks_per_iteration": 8, "replay_batch": 8, "max_index": 4,
                           "progress": False, "cache": None, "workers": 1, **kwargs})  # fmt: skip
    env = gym.make("BlockQNN-v0", max_index=args.max_index, evaluator=evaluator or CallableBlockEvaluator(proxy))
    return BlockQNNTrainer(args, env=env, log=False)


def strip(history):
    return [{k: v for k, v in row.items() if k not in PROCESS} for row in history]


def test_updates_do_not_depend_on_the_order_results_arrive_in():
    runs = [make_trainer(evaluator) for evaluator in (CallableBlockEvaluator(proxy), ShuffledEvaluator(1),
                                                      ShuffledEvaluator(2))]  # fmt: skip
    for trainer in runs:
        trainer.train()
    assert runs[0].q.values == runs[1].q.values == runs[2].q.values
    assert runs[0].replay == runs[1].replay == runs[2].replay
    assert strip(runs[0].history) == strip(runs[1].history)


def test_one_iteration_samples_evaluates_and_learns():
    trainer = make_trainer()
    row = trainer.train_iteration()
    assert row["epsilon"] == 1.0 and row["blocks"] == 8 and len(trainer.replay) == 8
    for actions, reward in trainer.replay:
        assert 1 <= len(actions) <= 4 and np.isfinite(reward)
    assert row["trained"] + row["memory_hits"] == 8 and 0 <= row["hit_rate"] <= 1
    assert row["new_blocks"] == row["trained"] == len(trainer.blocks)
    assert len(trainer.q) > 0 and any(s == START for s in trainer.q.values)
    assert row["best_reward"] == max(r["reward"] for r in trainer.blocks.values())


def test_q_learning_beats_random_search_on_a_proxy():
    """On an easy proxy the greedy phases concentrate on good blocks: the last iterations' mean reward rises above
    random search's (the same budget, the same seed)."""
    q = make_trainer(iterations=40, blocks_per_iteration=16, replay_batch=64, q_lr=0.2)
    rand = make_trainer(iterations=40, blocks_per_iteration=16, replay_batch=64, q_lr=0.2, schedule="random")
    for trainer in (q, rand):
        trainer.train()
    last = lambda t: np.mean([r["mean_reward"] for r in t.history[-4:]])  # noqa: E731
    assert {r["epsilon"] for r in rand.history} == {1.0}
    assert last(q) > last(rand) + 0.02


def test_resume_continues_exactly(tmp_path):
    straight = make_trainer(out=str(tmp_path / "a"))
    straight.train()
    first = make_trainer(out=str(tmp_path / "b"))
    first.train(until_iteration=5)
    first.save()
    resumed = make_trainer(out=str(tmp_path / "b"))
    assert resumed.resume() and resumed.iteration == 5
    resumed.train()
    assert resumed.q.values == straight.q.values and resumed.replay == straight.replay
    assert strip(resumed.history) == strip(straight.history)
    other = make_trainer(out=str(tmp_path / "b"), q_lr=0.5)
    with pytest.raises(CheckpointError, match="q_lr"):
        other.resume()


def test_outputs_and_argument_errors(tmp_path):
    args = BlockQNNArgs(iterations=10, blocks_per_iteration=4, replay_batch=4, max_index=3, progress=False,
                        cache=None, workers=1, out=str(tmp_path / "run"), top_k=3)  # fmt: skip
    env = gym.make("BlockQNN-v0", max_index=3, evaluator=CallableBlockEvaluator(proxy))
    trainer = train(args, env=env)
    out = tmp_path / "run"
    for name in ("metrics.csv", "learning_curves.png", "checkpoint.pt", "summary.json", "top_blocks.json",
                 "top_blocks.png"):  # fmt: skip
        assert (out / name).is_file(), name
    assert list(out.glob("events.out.tfevents*"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["blocks_sampled"] == 40 and len(summary["top_blocks"]) == 3
    assert summary["top_blocks"][0]["reward"] == max(r["reward"] for r in trainer.blocks.values())
    assert load_trainer_checkpoint(out / "checkpoint.pt")["iteration"] == 10
    with pytest.raises(ConfigError, match="exists"):
        train(args, env=env)
    for bad in ({"schedule": "linear"}, {"iterations": 9}, {"q_lr": 0.0}, {"discount": 2.0}, {"train_epochs": 0},
                {"workers": 0}):  # fmt: skip
        with pytest.raises(ConfigError):
            BlockQNNArgs(**bad)
    with pytest.raises(ConfigError, match="max_index"):
        BlockQNNTrainer(BlockQNNArgs(max_index=5, cache=None), env=env, log=False)


def test_resume_with_nothing_to_resume_is_an_error(tmp_path):
    """``--resume`` on an empty ``--out`` must not start a whole new search (it used to, silently)."""
    args = BlockQNNArgs(iterations=10, blocks_per_iteration=2, replay_batch=2, max_index=3, progress=False,
                        cache=None, workers=1, out=str(tmp_path / "empty"))  # fmt: skip
    env = gym.make("BlockQNN-v0", max_index=3, evaluator=CallableBlockEvaluator(proxy))
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(args, env=env, resume=True)
    assert not (tmp_path / "empty" / "checkpoint.pt").exists()


def test_random_search_needs_no_epsilon_phases():
    """``--schedule random`` has one phase, so one iteration is a valid budget; ``scaled`` needs one per phase."""
    assert BlockQNNArgs(schedule="random", iterations=1, cache=None).epsilon_schedule() == ((1.0, 1),)
    with pytest.raises(ConfigError, match="one per epsilon phase"):
        BlockQNNArgs(schedule="scaled", iterations=9)
    with pytest.raises(ConfigError, match="iterations"):
        BlockQNNArgs(schedule="random", iterations=0)


def _metrics(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return [{k: v for k, v in row.items() if k not in PROCESS} for row in csv.DictReader(f)]


@pytest.mark.slow
def test_command_line_end_to_end_killed_and_resumed(tmp_path):
    """``nat-gym train --algo blockqnn`` at a tiny budget; a second run is killed mid-way and ``--resume``d: its
    metrics equal the uninterrupted run's."""
    flags = ["--dataset", "fake", "--channels", "2", "--train-epochs", "1", "--train-batch-size", "64",
             "--iterations", "10", "--blocks-per-iteration", "4", "--replay-batch", "4", "--max-index", "3",
             "--workers", "1", "--device", "cpu", "--no-progress"]  # fmt: skip
    from agents.cli import main as cli_main

    # the uninterrupted reference run, through the same command-line code in this process
    assert cli_main(["train", "--algo", "blockqnn", *flags, "--out", str(tmp_path / "a"),
                     "--cache", str(tmp_path / "a.sqlite")]) == 0  # fmt: skip
    assert (tmp_path / "a" / "top_blocks.png").is_file()

    out_b = tmp_path / "b"
    cmd = [sys.executable, "-m", "nat_gym.cli", "train", "--algo", "blockqnn", *flags, "--out", str(out_b),
           "--cache", str(tmp_path / "b.sqlite")]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if (out_b / "metrics.csv").exists() and len(_metrics(out_b / "metrics.csv")) >= 2:
            break
        time.sleep(0.05)
    proc.kill()  # mid-run: no cleanup code runs
    proc.wait()
    assert load_trainer_checkpoint(out_b / "checkpoint.pt")["iteration"] < 10, "the run ended before the kill"
    resumed = subprocess.run([*cmd, "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed" in resumed.stdout and "done; outputs in" in resumed.stdout
    assert _metrics(out_b / "metrics.csv") == _metrics(tmp_path / "a" / "metrics.csv")
    summary = json.loads((out_b / "summary.json").read_text())
    assert summary["iterations"] == 10 and summary["top_blocks"]
    # the run ends with its result in one line: the best block, its reward, blocks sampled and trained
    best = summary["top_blocks"][0]
    line = next(x for x in resumed.stdout.splitlines() if x.startswith("blockqnn: 10 iterations"))
    assert f"best block {best['block']}: reward {best['reward']:.4f}" in line
    assert f"{summary['blocks_sampled']} blocks sampled, {summary['blocks_trained']} trained" in line
