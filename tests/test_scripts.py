"""Smoke tests: the benchmark scripts run end to end with tiny budgets (a tiny random-init supernet, so no test
trains the default one) and write the figures they print."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from nat_gym import rules as rule_sets
from nat_gym.supernet.checkpoint import save_checkpoint
from nat_gym.supernet.config import SupernetConfig
from nat_gym.supernet.model import Supernet

ROOT = Path(__file__).resolve().parents[1]


def test_bench_env_runs_and_reports(tmp_path):
    torch.manual_seed(0)
    cfg = SupernetConfig(C=4, layers=3, ops=rule_sets.get("nat++").ops, num_classes=10, in_channels=1)
    net = save_checkpoint(tmp_path / "tiny.pt", Supernet(cfg))
    out = tmp_path / "figures.json"
    cmd = [sys.executable, "scripts/bench_env.py", "--supernet", str(net), "--steps", "3", "--seconds", "0.05",
           "--repeats", "1", "--json", str(out)]  # fmt: skip
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert figures["reward_images"] == 360
    for key in ("uncached_step_median_ms", "cached_steps_per_s", "scores_only_cached_steps_per_s",
                "cartpole_steps_per_s", "batched_vs_single", "grouped_vs_single"):  # fmt: skip
        assert figures[key] > 0, key
        assert key in run.stdout


def test_bench_memory_runs_and_reports(tmp_path):
    """Worker memory (both vector env kinds, 2 workers, 2 steps), the stages of one process, the trim timing."""
    torch.manual_seed(0)
    cfg = SupernetConfig(C=4, layers=3, ops=rule_sets.get("nat++").ops, num_classes=10, in_channels=1)
    net = str(save_checkpoint(tmp_path / "tiny.pt", Supernet(cfg)))
    base = [sys.executable, "scripts/bench_memory.py", "--supernet", net, "--env", "NATEdge-v0"]
    for extra in (["--steps", "2"], ["--stages", "--steps", "12"], ["--time", "2", "--steps", "2"]):
        out = tmp_path / "figures.json"
        run = subprocess.run([*base, *extra, "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        figures = json.loads(out.read_text())
        if "workers" in figures:
            assert [(w["vector_env"], w["worker"]) for w in figures["workers"]] == [
                ("gymnasium", 0), ("gymnasium", 1), ("sb3", 0), ("sb3", 1)]  # fmt: skip
            assert all(w["uss_mb"] > 50 and w["rss_mb"] >= w["uss_mb"] for w in figures["workers"])
        elif "stages" in figures:
            assert [r["stage"] for r in figures["stages"]][-1] == "malloc_trim(0)"
            assert "torch_geometric" not in figures["modules_of_note"]
        else:
            assert figures["ratio_with_over_without"] > 0
