"""Smoke tests: the benchmark scripts run end to end with tiny budgets (a tiny random-init supernet, so no test
trains the default one) and write the figures they print; their plain baseline computes nat-gym's function."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nat_gym import rules as rule_sets
from nat_gym.supernet.checkpoint import save_checkpoint
from nat_gym.supernet.config import SupernetConfig
from nat_gym.supernet.model import Supernet

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny_checkpoint(tmp_path) -> str:
    """A random-init tiny NAT++ supernet checkpoint for digits-shaped images."""
    torch.manual_seed(0)
    cfg = SupernetConfig(C=4, layers=3, ops=rule_sets.get("nat++").ops, num_classes=10, in_channels=1)
    return str(save_checkpoint(tmp_path / "tiny.pt", Supernet(cfg)))


def _run(script: str, tmp_path, *args: str) -> tuple[dict, str]:
    """Run ``scripts/<script>`` with ``args`` and ``--json``; returns the figures it wrote and its stdout."""
    out = tmp_path / "figures.json"
    cmd = [sys.executable, f"scripts/{script}", *args, "--json", str(out)]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(out.read_text()), run.stdout


def _assert_reported(figures: dict, stdout: str, keys: tuple[str, ...]) -> None:
    for key in keys:
        assert figures[key] > 0, key
        assert key in stdout


def test_bench_env_runs_and_reports(tmp_path, tiny_checkpoint):
    figures, stdout = _run("bench_env.py", tmp_path, "--supernet", tiny_checkpoint, "--steps", "3", "--seconds",
                           "0.05", "--rounds", "1")  # fmt: skip
    assert figures["reward_images"] == 360
    _assert_reported(figures, stdout, ("uncached_step_median_ms", "uncached_step_speedup_vs_plain",
                                       "cached_steps_per_s", "scores_only_cached_steps_per_s", "cartpole_steps_per_s",
                                       "batched_vs_single", "grouped_vs_single"))  # fmt: skip


def test_bench_policy_runs_against_the_plain_baseline(tmp_path, tiny_checkpoint):
    figures, stdout = _run("bench_policy.py", tmp_path, "--supernet", tiny_checkpoint, "--updates", "2", "--rounds",
                           "1", "--m", "2", "--n", "2")  # fmt: skip
    _assert_reported(figures, stdout, ("ms_per_sample_m1_n1", "plain_ms_per_sample_m1_n1", "speedup_m1_n1_vs_plain",
                                       "speedup_m2_n2_vs_plain"))  # fmt: skip
    assert "reference" not in stdout.lower()  # no ratio against a constant


def test_bench_supernet_runs_and_its_plain_baseline_computes_the_same_function(tmp_path):
    figures, stdout = _run("bench_supernet.py", tmp_path, "--configs", "tiny", "--rounds", "1")
    assert 0 <= figures["tiny_max_abs_logit_diff"] < 1e-4  # same weights, same logits: the ratio is honest
    _assert_reported(figures, stdout, ("tiny_train_step_speedup", "tiny_eval_speedup", "tiny_train_step_plain_ms",
                                       "tiny_train_step_nat_gym_ms"))  # fmt: skip


def test_plain_supernet_equals_nat_gym_supernet(shared_tiny_supernet):
    """The benchmarks' baseline: with nat-gym's weights copied in, the same logits for fully-concat, loose-end,
    fewer-step and null-edge genotypes, and the same accuracies on the same minibatches."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from _plain_supernet import PlainSupernet, copy_weights, plain_evaluator
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    import numpy as np

    from nat_gym.data import load_dataset
    from nat_gym.evaluator import SupernetEvaluator
    from nat_gym.ops import NAT_PLUS_PLUS_OPS
    from nat_gym.sampling import random_genotype

    net = shared_tiny_supernet
    plain = copy_weights(PlainSupernet(net.config), net)
    ops = [o for o in NAT_PLUS_PLUS_OPS if o != "null"]
    rng = np.random.default_rng(0)
    nulls = random_genotype(rng, 4, ops)
    nulls = nulls.with_ops(["null" if i in (0, 1, 9) else o for i, o in enumerate(nulls.ops)])
    genotypes = [random_genotype(rng, 4, ops), random_genotype(rng, 4, ops, concat="loose_end"),
                 random_genotype(rng, 2, ops), nulls]  # fmt: skip
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for g in genotypes:
            torch.testing.assert_close(plain(x, g), net(x, g), atol=1e-5, rtol=1e-5)
    data = load_dataset("fake", seed=0, n_train=16, n_valid=40, n_test=4)
    ours = SupernetEvaluator(net, data.valid, batch_size=16, device="cpu")
    theirs = plain_evaluator(plain, data.valid, batch_size=16)
    assert theirs.num_batches == ours.num_batches == 3
    for batch in (None, 0, 2):
        np.testing.assert_allclose(theirs.evaluate(genotypes, batch), ours.evaluate(genotypes, batch), atol=1e-9)
