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
