"""Smoke tests: the benchmark scripts run end to end with tiny budgets (a tiny random-init supernet, so no test
trains the default one) and write the figures they print; their plain baseline computes nat-gym's function."""

from __future__ import annotations

import csv
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nat_gym import rules as rule_sets
from nat_gym.sampling import random_genotype
from nat_gym.supernet.checkpoint import save_checkpoint
from nat_gym.supernet.config import SupernetConfig
from nat_gym.supernet.model import Supernet

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny_checkpoint(tmp_path) -> str:
    """A random-init tiny NAT++ supernet checkpoint for digits-shaped images."""
    return _tiny_supernet(tmp_path)


def _tiny_supernet(tmp_path, steps: int = 4) -> str:
    torch.manual_seed(0)
    cfg = SupernetConfig(C=4, layers=3, steps=steps, ops=rule_sets.get("nat++").ops, num_classes=10, in_channels=1)
    return str(save_checkpoint(tmp_path / "tiny.pt", Supernet(cfg)))


def _run(script: str, tmp_path, *args: str) -> tuple[dict, str]:
    """Run ``scripts/<script>`` with ``args`` and ``--json``; returns the figures it wrote and its stdout."""
    out = tmp_path / "figures.json"
    cmd = [sys.executable, f"scripts/{script}", *args, "--json", str(out)]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(out.read_text()), run.stdout


def _script_module(name: str):
    """Import the helper module ``scripts/<name>.py`` (the scripts import each other from their folder)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "scripts"))


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


def test_bench_supernet_reference_dir_without_the_authors_code_is_a_one_line_error(tmp_path):
    """``--reference-dir`` pointing at a folder without the authors' files stops before any benchmark runs, with
    one line on stderr naming the flag and the missing files (no test needs the authors' code)."""
    cmd = [sys.executable, "scripts/bench_supernet.py", "--configs", "tiny", "--reference-dir", str(tmp_path)]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert run.stdout == ""
    (line,) = run.stderr.strip().splitlines()
    assert "--reference-dir" in line and "lacks search_model.py, operations.py, genotypes.py, utils.py" in line


@pytest.mark.parametrize("search_model, message", [
    ("raise ImportError('no module named foo')", "search_model.py failed: ImportError: no module named foo"),
    ("OPS = {}\n", "has no 'NASNetwork'; expected the authors' NAT code"),
])  # fmt: skip
def test_reference_dir_with_other_code_is_a_config_error(tmp_path, search_model, message):
    from nat_gym.errors import ConfigError

    authors = _script_module("_authors_supernet")
    with pytest.raises(ConfigError, match="not a directory"):
        authors.check_reference_dir(tmp_path / "missing")
    for name in authors.REQUIRED_FILES:
        (tmp_path / name).write_text(search_model if name == "search_model.py" else "")
    try:
        with pytest.raises(ConfigError, match=re.escape(message)):
            authors.import_reference(authors.check_reference_dir(tmp_path))
        assert "pygcn" not in sys.modules or sys.modules["pygcn"].__spec__ is not None  # stand-ins removed
    finally:
        for name in ("search_model", "genotypes", "operations", "utils"):
            sys.modules.pop(name, None)


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


def test_plain_training_step_equals_nat_gym_step_and_switches_no_modes(tiny_supernet_config_module, monkeypatch):
    """The training-step ratio compares the same maths: from the same weights, one plain step and one nat-gym
    ``train_step`` give the same loss and the same updated weights. And the timed plain step is the step alone: no
    ``train()`` switch over its thousands of modules (the DARTS and NAT search loops switch before every step, a
    fifth of the plain step on digits; the ratio leaves that out rather than count it in nat-gym's favour)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from _plain_supernet import PlainSupernet, copy_weights, plain_train_step
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    import numpy as np

    from nat_gym.data import load_dataset
    from nat_gym.ops import NAT_PLUS_PLUS_OPS
    from nat_gym.sampling import random_genotype
    from nat_gym.supernet.config import SupernetTrainConfig
    from nat_gym.supernet.train import SupernetTrainer

    torch.manual_seed(0)
    net = Supernet(tiny_supernet_config_module)
    plain = copy_weights(PlainSupernet(net.config), net).train()
    data = load_dataset("fake", seed=0, n_train=16, n_valid=8, n_test=4)
    cfg = SupernetTrainConfig(batch_size=16, lr=0.05)
    trainer = SupernetTrainer(net, data, cfg, device="cpu", threads=None)
    optimizer = torch.optim.SGD(plain.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    ops = [o for o in NAT_PLUS_PLUS_OPS if o != "null"]
    switches: list[bool] = []
    train_mode = torch.nn.Module.train
    monkeypatch.setattr(torch.nn.Module, "train", lambda self, mode=True: switches.append(mode) or train_mode(self, mode))
    x, y = data.train.x, data.train.y
    for i in range(2):
        g = random_genotype(np.random.default_rng(i), net.config.steps, ops)
        ours, _ = trainer.train_step(x, y, g)
        theirs = plain_train_step(plain, optimizer, x, y, g, cfg.grad_clip)
        torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-5)
    assert switches == []
    params = dict(net.named_parameters())
    for name, p in plain.named_parameters():
        torch.testing.assert_close(p, params[name], atol=1e-5, rtol=1e-4, msg=name)


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
    # a finished run is never overwritten; --resume scores it again without training and gets the same figures
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode != 0 and "--resume" in again.stderr
    again = subprocess.run(cmd + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resumed" in again.stdout and "at epoch 1" in again.stdout
    rescored = json.loads((out / "evidence.json").read_text())["results"]
    for key, figures in results.items():
        assert {k: v for k, v in rescored[key].items() if k != "train_seconds"} == {
            k: v for k, v in figures.items() if k != "train_seconds"}, key  # fmt: skip


def test_evidence_argument_errors_and_variants_none(tmp_path, capsys, monkeypatch):
    """A bad argument of scripts/evidence.py is argparse's ``evidence.py: error: ...`` line and exit code 2 before any
    work starts (they were tracebacks; ``--set bogus=1`` an unprefixed line with exit code 1), and ``--variants
    none`` scores only the floors, as its help says (it was an error)."""
    evidence = _script_module("evidence")
    monkeypatch.setattr(sys, "argv", ["evidence.py"])  # argparse's prog
    out = tmp_path / "evidence"
    base = ["--supernet", _tiny_supernet(tmp_path, steps=2), "--seeds", "0", "--epochs", "1", "--inputs", "2",
            "--no-named", "--set", "steps=2", "--out", str(out)]  # fmt: skip
    cases = [
        (["--set", "n=0"], "--set n: expected an integer >= 1, got 0"),
        (["--set", "keep_prior=-1"], "--set keep_prior: expected a finite number >= 0, got -1"),
        (["--set", "bogus=1"], "--set: expected KEY=VALUE with KEY a NATTrainerArgs field"),
        (["--variants", "bogus"], "argument --variants: invalid choice: 'bogus'"),
        (["--variants", "none", "fixed"], "argument --variants: none means no policy, so it comes alone"),
        (["--supernet", str(tmp_path / "missing.pt")], "argument --supernet: no such file"),
    ]  # fmt: skip
    for flags, fragment in cases:
        with pytest.raises(SystemExit) as exit_:
            evidence.main([*base, *flags])
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert exit_.value.code == 2 and err.startswith("evidence.py: error: ") and fragment in err, (flags, err)
    assert not out.exists()
    assert evidence.main([*base, "--variants", "none", "--random-rates", "0.5"]) == 0
    results = json.loads((out / "evidence.json").read_text())["results"]
    assert sorted(results) == ["identity/fresh", "random best-of-10/fresh", "random, 50% of edges/fresh", "random/fresh"]
    table = capsys.readouterr().out
    assert "| random best-of-10 |" in table and "fixed" not in table and "faithful" not in table


def test_supernet_drift_runs_and_summarises(tmp_path, tiny_checkpoint):
    net = tiny_checkpoint
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


def test_reward_snr_landscape_scores_every_single_edge_change(tmp_path):
    net = _tiny_supernet(tmp_path, steps=2)
    figures, stdout = _run("reward_snr.py", tmp_path, "--supernet", net, "--archs", "3", "--sizes", "64",
                           "--landscape", "2")  # fmt: skip
    rules, rng = rule_sets.get("nat++"), np.random.default_rng(0)  # the script's default seed draws the inputs
    betas = [random_genotype(rng, 2, [o for o in rules.ops if o != "null"]) for _ in range(3)]
    expected = sum(int(row.sum()) - int(row[rules.index(op)])  # every allowed op but the current one, per edge
                   for b in betas[:2] for op, row in zip(b.ops, rules.mask(b)))  # fmt: skip
    assert figures["single_changes"] == expected and "single_changes" in stdout
    assert 0 <= figures["single_reward_positive_fraction"] <= 1
    assert -1 <= figures["single_reward_vs_saving_corr"] <= 1
    assert 0 <= figures["best_single_change_positive_fraction"] <= 1
