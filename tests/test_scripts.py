"""Smoke tests: the benchmark scripts run end to end with tiny budgets (a tiny random-init supernet, so no test
trains the default one) and write the figures they print."""

from __future__ import annotations

import csv
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


def _tiny_supernet(tmp_path, steps: int = 4) -> Path:
    torch.manual_seed(0)
    cfg = SupernetConfig(C=4, layers=3, steps=steps, ops=rule_sets.get("nat++").ops, num_classes=10, in_channels=1)
    return save_checkpoint(tmp_path / "tiny.pt", Supernet(cfg))


def test_evidence_runs_and_reports(tmp_path):
    net = _tiny_supernet(tmp_path, steps=2)
    out = tmp_path / "evidence"
    cmd = [sys.executable, "scripts/evidence.py", "--supernet", str(net), "--seeds", "0", "--variants", "fixed",
           "--epochs", "1", "--inputs", "3", "--no-named", "--set", "steps=2", "--set", "keep_prior=2",
           "--set", "policy_updates_per_epoch=1", "--random-rates", "0", "0.5", "--out", str(out)]  # fmt: skip
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads((out / "evidence.json").read_text())["results"]
    assert results["identity/fresh"] == {"reward": 0.0, "saving": 0.0, "changed": 0.0}
    for key in ("random/fresh", "random best-of-10/fresh", "fixed sampled/seed0/fresh", "fixed argmax/seed0/fresh",
                "fixed best-of-10/seed0/fresh"):  # fmt: skip
        assert -1 <= results[key]["reward"] <= 1 and 0 <= results[key]["changed"] <= 1, key
        assert f"| {key.split('/')[0]} |" in run.stdout
    assert "held_out" in results["fixed best-of-10/seed0/fresh"]
    assert results["random, 0% of edges/fresh"] == results["identity/fresh"]  # rate 0 changes nothing
    assert 0 < results["random, 50% of edges/fresh"]["changed"] < 1
    # best of 10 by accuracy never loses to the single random draw it includes, on the images that chose it
    assert results["random best-of-10/fresh"]["reward"] >= results["random/fresh"]["reward"]


def test_supernet_drift_runs_and_summarises(tmp_path):
    net = _tiny_supernet(tmp_path)
    out = tmp_path / "drift"
    base = [sys.executable, "scripts/supernet_drift.py", "--supernet", str(net), "--out", str(out)]
    cmd = base + ["--arms", "replay", "frozen", "--epochs", "2", "--probe-every", "1", "--probe-archs", "2",
                  "--window", "1"]  # fmt: skip
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    with open(out / "frozen.csv", newline="") as f:
        frozen = list(csv.DictReader(f))
    assert [float(r["epoch"]) for r in frozen] == [0.0, 1.0, 2.0]
    assert len({r["probe_train_loss"] for r in frozen}) == 1  # lr ~ 0, no weight decay: the weights do not move
    assert "| replay | probe_valid_acc |" in run.stdout
    again = subprocess.run(base + ["--summary-only", "--window", "1"], cwd=ROOT, capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert again.returncode == 0 and run.stdout.split("| arm |")[1] == again.stdout.split("| arm |")[1]
