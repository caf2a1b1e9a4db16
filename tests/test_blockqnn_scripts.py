"""Smoke tests of BlockQNN's scripts at tiny budgets (fake images, 1 training epoch): the benchmark prints its ratio
and the evidence script runs all three searches and the longer training, then resumes without training again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nat_gym.eval_cache import EvalCache

ROOT = Path(__file__).resolve().parents[1]


def test_bench_blockqnn_reports_the_ratio(tmp_path):
    out = tmp_path / "figures.json"
    cmd = [sys.executable, "scripts/bench_blockqnn.py", "--blocks", "1", "--dataset", "fake", "--epochs", "1",
           "--json", str(out)]  # fmt: skip
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert figures["blocks"] == 5
    for key in ("evaluator_s_per_block_median", "plain_loop_s_per_block_median", "plain_over_evaluator_total_time",
                "evaluator_cpu_s_per_block_mean", "cache_hit_ms_per_block"):  # fmt: skip
        assert figures[key] > 0, key
        assert key in run.stdout


@pytest.mark.slow
def test_evidence_script_runs_and_resumes(tmp_path):
    out = tmp_path / "evidence"
    cmd = [sys.executable, "scripts/blockqnn_evidence.py", "--dataset", "fake", "--channels", "2", "--train-epochs",
           "1", "--iterations", "10", "--blocks-per-iteration", "2", "--max-index", "3", "--final-epochs", "1",
           "--final-seeds", "1", "--threads", "1", "--workers", "1", "--seeds", "0", "--out", str(out), "--quiet"]  # fmt: skip
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    evidence = json.loads((out / "evidence.json").read_text())
    assert set(evidence["results"]) == {"qlearning/seed0", "random/seed0", "ppo/seed0", "qlearning-lr0.1/seed0"}
    for r in evidence["results"].values():
        assert r["sampled"] == 20 and r["best_reward"] >= r["mean_reward_last_tenth"] - 1e-9
        assert 1 <= r["distinct_blocks"] <= 20 and r["hit_rate"] == 1 - r["distinct_blocks"] / 20
        assert r["train_cpu_seconds"] > 0 and r["seconds"] > 0
    ranking = evidence["cache_ranking"]
    assert ranking["blocks"] == len(EvalCache(out / "evaluations.sqlite"))  # every block the searches evaluated
    assert ranking["by_reward"][0]["reward"] == max(r["best_reward"] for r in evidence["results"].values())
    assert ranking["by_accuracy"][0]["accuracy"] >= ranking["by_reward"][0]["accuracy"]
    # each distinct block is trained once, under all the names that chose it
    names = [name for label in evidence["final"] for name in label.split(" = ")]
    assert sorted(names) == sorted(["ResNet", "Inception", "best of qlearning", "best of random", "best of ppo",
                                    "best of qlearning-lr0.1", "most accurate in the cache"])  # fmt: skip
    assert len({f["block"] for f in evidence["final"].values()}) == len(evidence["final"])
    assert all(f["params"] > 0 and f["flops"] > 0 for f in evidence["final"].values())
    assert "| qlearning |" in run.stdout and "| ResNet" in run.stdout and "| accuracy | `" in run.stdout
    assert evidence["args"]["threads"] == 1 and "1 seeds, 1 torch thread;" in run.stdout
    rows = len(EvalCache(out / "evaluations.sqlite"))
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(EvalCache(out / "evaluations.sqlite")) == rows  # every search was reloaded, nothing trained again
    rerun = json.loads((out / "evidence.json").read_text())
    assert rerun["results"].keys() == evidence["results"].keys()
    assert rerun["final"] == evidence["final"]  # the longer training again, in another process: the same figures


@pytest.mark.slow
def test_bench_ray_reports_throughput_overhead_and_the_simulated_cluster(tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "figures.json"
    cmd = [sys.executable, "scripts/bench_ray.py", "--rounds", "1", "--blocks", "2", "--dataset", "fake", "--epochs",
           "1", "--tasks", "5", "--supernet-epochs", "0", "--json", str(out)]  # fmt: skip
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    figures = json.loads(out.read_text())
    for key in ("throughput_ray_2_workers_vs_serial", "ray_overhead_ms_per_task", "serial_seconds_per_block",
                "simulated_speedup_32_workers_64_blocks"):  # fmt: skip
        assert figures[key] > 0, key
        assert key in run.stdout
    assert 1 < figures["simulated_speedup_2_workers_64_blocks"] <= 2 <= figures["simulated_speedup_32_workers_64_blocks"]
