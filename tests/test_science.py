"""``scripts/science.py`` end to end at a tiny budget: 2 architectures, 1 seed, 1 epoch on fake data, with the policy
column from a tiny trained policy; a second call skips the finished runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_scripts import _script_module  # tests/test_scripts.py: imports a script of scripts/

from nat_gym import rules as rule_sets

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory) -> str:
    from agents.nat_trainer import NATTrainerArgs, train
    from nat_gym.supernet.checkpoint import save_checkpoint
    from nat_gym.supernet.config import SupernetConfig
    from nat_gym.supernet.model import Supernet

    root = tmp_path_factory.mktemp("policy")
    torch.manual_seed(0)
    net = Supernet(SupernetConfig(C=4, layers=3, ops=rule_sets.get("nat++").ops, num_classes=10, in_channels=1))
    ckpt = save_checkpoint(root / "tiny.pt", net)
    previous = torch.get_num_threads()
    try:
        train(NATTrainerArgs(supernet=str(ckpt), epochs=1, out=str(root / "run"), progress=False, eval_inputs=0,
                             policy_updates_per_epoch=1, train_supernet=False, device="cpu", op_embed_dim=8,
                             lift_dim=16, hidden_dim=8))  # fmt: skip
    finally:
        torch.set_num_threads(previous)
    return str(root / "run" / "checkpoint.pt")


@pytest.mark.slow
def test_science_table_end_to_end_and_resumable(tmp_path, tiny_policy):
    out = tmp_path / "science"
    cmd = [sys.executable, "scripts/science.py", "--archs", "VGG", "MobileNetV2", "--seeds", "0", "--epochs", "1",
           "--channels", "4", "--layers", "3", "--dataset", "fake", "--policy", tiny_policy, "--samples", "2",
           "--out", str(out), "--no-progress"]  # fmt: skip
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    table = (out / "table.md").read_text()
    for row in ("| VGG | original |", "| VGG | NAT |", "| VGG | NAT++ |", "| VGG | policy |",
                "| MobileNetV2 | original |", "| MobileNetV2 | NAT |", "| MobileNetV2 | policy |"):  # fmt: skip
        assert row in table and row in run.stdout, row
    assert "NAT++ of MobileNetV2" in table or "| MobileNetV2 | NAT++ |" in table  # missing names are reported
    data = json.loads((out / "science.json").read_text())
    rows = {(r["arch"], r["variant"]): r for r in data["rows"]}
    assert rows[("VGG", "NAT")]["genotype"] != rows[("VGG", "original")]["genotype"]
    assert rows[("VGG", "NAT")]["verdict"] == "n/a"  # one seed: no interval
    assert all(0 <= r["mean"] <= 1 and r["params"] > 0 and r["madds"] > 0 for r in data["rows"])
    assert (out / "science.png").stat().st_size > 5000
    assert (out / "transforms" / "VGG" / "transform.json").is_file()
    results = sorted((out / "runs").glob("*/result.json"))
    assert results and all(json.loads(p.read_text())["epochs"] == 1 for p in results)
    stamps = [p.stat().st_mtime_ns for p in results]
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [p.stat().st_mtime_ns for p in results] == stamps  # finished runs are read, not retrained
    assert (out / "table.md").read_text() == table


def test_science_argument_errors_are_one_line(tmp_path, capsys, monkeypatch):
    """An unknown architecture, a ``--set`` without ``=VALUE`` or out of range, ``--epochs 0``: argparse's
    ``science.py: error: ...`` line and exit code 2, before any work starts (they were tracebacks)."""
    science = _script_module("science")
    monkeypatch.setattr(sys, "argv", ["science.py"])  # argparse's prog
    out = tmp_path / "science"
    cases = [
        (["--archs", "VGG", "BOGUS"], "argument --archs: unknown genotype 'BOGUS'; registered: "),
        (["--set", "cutout"], "--set: expected FIELD=VALUE with FIELD one of dataset, "),
        (["--set", "bogus=1"], "got 'bogus=1'"),
        (["--set", "cutout=-1"], "--set cutout: expected an integer >= 0, got -1"),
        (["--epochs", "0"], "argument --epochs: expected an integer >= 1, got '0'"),
    ]  # fmt: skip
    for flags, fragment in cases:
        with pytest.raises(SystemExit) as exit_:
            science.main(["--dataset", "fake", "--out", str(out), "--no-progress", *flags])
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert exit_.value.code == 2 and err.startswith("science.py: error: ") and fragment in err, (flags, err)
    assert not out.exists()
