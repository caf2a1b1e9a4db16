"""Final training from scratch (``nat-gym train-final``): augmentation, config, exact resume, the test split measured
once, the cost model's parameter count, the command line end to end, and 2-process gloo DDP under torchrun."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nat_gym import genotypes
from nat_gym.cli import main
from nat_gym.data import load_dataset
from nat_gym.errors import CheckpointError, ConfigError
from nat_gym.final import FinalTrainConfig, FinalTrainer, model_from_checkpoint
from nat_gym.final.augment import augment_batch
from nat_gym.final.stats import compare, mean_ci
from nat_gym.network import count_parameters

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(dataset="fake", channels=4, layers=3, epochs=3, batch_size=16, eval_batch_size=64, seed=0)


@pytest.fixture(scope="module")
def fake8():
    return load_dataset("fake", seed=0, n_train=48, n_valid=32, n_test=24)


@pytest.fixture(scope="module")
def fake32():
    return load_dataset("fake", seed=0, image_size=32, n_train=32, n_valid=16, n_test=16)


# ------------------------------------------------------------------------------------------------ augmentation
def test_augment_crop_flip_cutout():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6) + 1  # no zeros
    assert torch.equal(augment_batch(x), x)
    g = torch.Generator().manual_seed(0)
    crop = augment_batch(x, crop_padding=2, generator=g)
    assert crop.shape == x.shape
    for i in range(2):  # every crop is a window of the zero-padded image
        padded = torch.nn.functional.pad(x[i, 0], (2, 2, 2, 2))
        assert any(torch.equal(crop[i, 0], padded[r : r + 6, c : c + 6]) for r in range(5) for c in range(5))
    flips = augment_batch(x.repeat(50, 1, 1, 1), hflip=True, generator=torch.Generator().manual_seed(1))
    flipped = [torch.equal(f, x[i % 2].flip(-1)) for i, f in enumerate(flips)]
    kept = [torch.equal(f, x[i % 2]) for i, f in enumerate(flips)]
    assert all(a or b for a, b in zip(flipped, kept)) and 25 < sum(flipped) < 75  # 100 images
    cut = augment_batch(x.repeat(20, 1, 1, 1), cutout=4, generator=torch.Generator().manual_seed(2))
    zeros = (cut == 0).sum(dim=(1, 2, 3))
    assert zeros.max() == 16 and zeros.min() >= 4  # a 4x4 square, clipped at the border (centre inside the image)
    # the same seed, the same augmentation; x itself untouched
    again = augment_batch(x.repeat(20, 1, 1, 1), cutout=4, generator=torch.Generator().manual_seed(2))
    assert torch.equal(cut, again) and (x > 0).all()


# ------------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize("field, value", [("channels", 0), ("layers", 2), ("drop_path_prob", 1.0), ("lr", 0.0),
                                          ("precision", "fp8"), ("channels_last", "yes"),
                                          ("train_fraction", 0.0), ("grad_clip", -1.0), ("momentum", math.nan),
                                          ("momentum", 1.0), ("lr", math.inf), ("lr_min", 1.0),
                                          ("weight_decay", math.inf), ("grad_clip", math.nan)])  # fmt: skip
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        FinalTrainConfig(**{field: value})


def test_unknown_dataset_is_named():
    from nat_gym.final.train import load_data

    with pytest.raises(ConfigError, match="mnist"):
        load_data(FinalTrainConfig(dataset="mnist"))


def test_building_the_parser_does_not_import_torch():
    code = "import sys, nat_gym.final.cli as c, argparse; c.register(argparse.ArgumentParser().add_subparsers()); " \
           "print('torch' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.stdout.strip() == "False", run.stderr


def test_presets_and_round_trip():
    from nat_gym.final import DARTS_CIFAR10, PRESETS

    d = DARTS_CIFAR10
    assert (d.dataset, d.channels, d.layers, d.epochs, d.batch_size, d.lr, d.weight_decay, d.momentum) == (
        "cifar10", 36, 20, 600, 96, 0.025, 3e-4, 0.9)
    assert (d.drop_path_prob, d.auxiliary_weight, d.cutout, d.grad_clip, d.crop_padding, d.hflip) == (
        0.2, 0.4, 16, 5.0, 4, True)
    assert set(PRESETS) == {"digits", "darts-cifar10"}
    assert FinalTrainConfig.from_dict(d.to_dict()) == d
    with pytest.raises(ConfigError, match="unknown keys"):
        FinalTrainConfig.from_dict({"nope": 1})


def test_darts_v2_at_the_protocol_size_has_the_papers_parameter_count():
    from nat_gym.final.model import build_model

    built = build_model(genotypes.get("DARTS_V2"), FinalTrainConfig(channels=36, layers=20, auxiliary_weight=0.4),
                        num_classes=10, in_channels=3, image_size=32)  # fmt: skip
    assert built.cost.params == count_parameters(built.module) == 3_349_342  # DARTS: 3.3M
    assert built.cost.aux_params == count_parameters(built.module, exclude_auxiliary=False) - built.cost.params > 0


# ------------------------------------------------------------------------------------------------ training
def _history(h):
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in h]


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_reproduces_the_uninterrupted_run_bit_for_bit(tmp_path, fake32):
    """Drop-path, auxiliary head, crop, cutout and flips on: an interrupted + resumed run == the uninterrupted one."""
    cfg = FinalTrainConfig(**{**TINY, "image_size": 32, "auxiliary_weight": 0.4, "drop_path_prob": 0.3,
                              "cutout": 8, "crop_padding": 2, "hflip": True})  # fmt: skip
    arch = genotypes.get("DARTS_V2")
    full = FinalTrainer(arch, cfg, out=tmp_path / "full", data=fake32, progress=False)
    full.run()
    first = FinalTrainer(arch, cfg, out=tmp_path / "cut", data=fake32, progress=False)

    def crash(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        first.train(callback=crash)
    first.close()
    second = FinalTrainer(arch, cfg, out=tmp_path / "cut", data=fake32, progress=False)
    assert second.resume() and second.epoch == 1
    result = second.run()
    assert _states_equal(full.model.state_dict(), second.model.state_dict())
    assert _states_equal(full.optimizer.state_dict()["state"][0], second.optimizer.state_dict()["state"][0])
    assert _history(full.history) == _history(second.history)
    assert result["test_acc"] == full.result["test_acc"] and result["test_loss"] == full.result["test_loss"]
    assert full.history[1]["drop_path_prob"] == pytest.approx(0.1) and full.history[1]["lr"] < cfg.lr
    rows = (tmp_path / "cut" / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 3  # the CSV holds each epoch once
    # another seed is another run
    other = FinalTrainer(arch, cfg.replace(seed=1), data=fake32, progress=False)
    other.train(until_epoch=1)
    assert not _states_equal(other.model.state_dict(), full.model.state_dict())
    full.close(), second.close(), other.close()


def test_test_split_is_measured_once_and_resume_checks(tmp_path, fake8, monkeypatch):
    cfg = FinalTrainConfig(**TINY)
    arch = genotypes.get("VGG")
    t = FinalTrainer(arch, cfg, out=tmp_path, data=fake8, progress=False)
    t.train(until_epoch=2)
    with pytest.raises(ConfigError, match="measured once"):
        t.test()
    t.train()
    seen = []
    evaluate = FinalTrainer._evaluate
    monkeypatch.setattr(FinalTrainer, "_evaluate", lambda self, split: seen.append(split) or evaluate(self, split))
    result = t.test()
    assert seen == [fake8.test] and result["test_images"] == len(fake8.test)
    assert t.test() is result and seen == [fake8.test]
    # a finished run, resumed, returns the stored result without looking at the test split again
    again = FinalTrainer(arch, cfg, out=tmp_path, data=fake8, progress=False)
    assert again.run(resume=True) == result and seen == [fake8.test]
    assert all("valid_acc" in r and 0 <= r["valid_acc"] <= 1 for r in t.history)
    with pytest.raises(CheckpointError, match="lr=0.025"):
        FinalTrainer(arch, cfg.replace(lr=0.1), out=tmp_path, data=fake8, progress=False).resume()
    with pytest.raises(CheckpointError, match="trains"):
        FinalTrainer(genotypes.get("ResBlock"), cfg, out=tmp_path, data=fake8, progress=False).resume()
    # run-only fields may change
    assert FinalTrainer(arch, cfg.replace(eval_every=2), out=tmp_path, data=fake8, progress=False).resume()


def test_mixed_precision_and_channels_last_run_on_the_cpu(fake8):
    """The GPU path's code (autocast, gradient scaling, channels-last) is device-agnostic: it runs on the CPU."""
    for precision in ("bf16", "fp16"):
        cfg = FinalTrainConfig(**{**TINY, "epochs": 1, "precision": precision, "channels_last": True})
        t = FinalTrainer(genotypes.get("DARTS_V2"), cfg, data=fake8, progress=False)
        assert t.scaler.is_enabled() == (precision == "fp16")
        row = t.train()[-1]
        assert math.isfinite(row["train_loss"]) and 0 <= row["valid_acc"] <= 1


# ------------------------------------------------------------------------------------------------ command line
def test_train_final_command_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train-final", "ResBlock", "--dataset", "fake", "--epochs", "2", "--channels", "4", "--layers", "3",
            "--batch-size", "32", "--out", str(out), "--no-progress", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "params" in printed
    for name in ("checkpoint.pt", "metrics.csv", "learning_curves.png", "result.json"):
        assert (out / name).is_file(), name
    assert any(p.name.startswith("events.out.tfevents") for p in out.iterdir())
    result = json.loads((out / "result.json").read_text())
    assert result["epochs"] == 2 and result["config"]["channels"] == 4 and result["world_size"] == 1
    # the trained network's parameter count is the cost model's
    net, payload = model_from_checkpoint(out / "checkpoint.pt")
    assert count_parameters(net) == result["params"] == payload["cost"]["params"]
    assert result["madds"] == net.cost(8).madds
    assert main(args) == 2  # the checkpoint exists: --resume or another --out
    assert "--resume" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0
    assert main(["train-final", "NOPE", "--dataset", "fake"]) == 2
    assert main(["train-final", "VGG", "--dataset", "fake", "--auxiliary-weight", "0.4", "--out", str(tmp_path / "x")]) == 2
    assert "auxiliary head" in capsys.readouterr().err


@pytest.mark.slow
def test_ddp_two_gloo_processes_under_torchrun(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
           "nat_gym.cli", "train-final", "ResBlock", "--dataset", "fake", "--epochs", "2", "--channels", "4",
           "--layers", "3", "--batch-size", "32", "--out", str(out), "--no-progress", "--device", "cpu"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("test accuracy") == 1  # only rank 0 prints
    result = json.loads((out / "result.json").read_text())
    single = FinalTrainer(genotypes.get("ResBlock"), FinalTrainConfig(**{**TINY, "epochs": 1}), progress=False)
    single.train()
    assert set(result) == set(single.test()) and result["world_size"] == 2
    net, payload = model_from_checkpoint(out / "checkpoint.pt")
    assert payload["world_size"] == 2 and payload["epoch"] == 2 and count_parameters(net) == result["params"]
    assert 0 <= result["test_acc"] <= 1 and result["test_images"] == 128
    assert len((out / "metrics.csv").read_text().strip().splitlines()) == 3


# ------------------------------------------------------------------------------------------------ statistics
def test_mean_ci_and_verdicts():
    from scipy import stats

    iv = mean_ci([0.9, 0.92, 0.94])
    low, high = stats.t.interval(0.95, 2, loc=0.92, scale=stats.sem([0.9, 0.92, 0.94]))
    assert iv.mean == pytest.approx(0.92) and (iv.low, iv.high) == (pytest.approx(low), pytest.approx(high))
    assert math.isnan(mean_ci([0.5]).low)
    assert compare([0.90, 0.91, 0.92], [0.95, 0.96, 0.97]).verdict == "better"
    assert compare([0.95, 0.96, 0.97], [0.90, 0.91, 0.92]).verdict == "worse"
    assert compare([0.90, 0.95, 0.92], [0.91, 0.94, 0.93]).verdict == "equal within CI"
    assert compare([0.9], [0.95]).verdict == "n/a"
    assert compare([0.9, 0.9], [0.9, 0.9]).verdict == "equal within CI"
    with pytest.raises(ConfigError, match="values"):
        mean_ci([])


@pytest.mark.slow
def test_bench_final_reports_ratios(tmp_path):
    out = tmp_path / "figures.json"
    cmd = [sys.executable, "scripts/bench_final.py", "--steps", "1", "--repeats", "1", "--device", "cpu", "--arms",
           "fp32:off", "fp32:on", "--json", str(out)]  # fmt: skip
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert figures["ratio_to_fp32:off[fp32:off]"] == 1.0
    assert figures["images_per_s[fp32:on]"] > 0 and figures["ratio_to_fp32:off[fp32:on]"] > 0
