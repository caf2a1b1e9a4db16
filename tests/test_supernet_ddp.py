"""Multi-process supernet training (issue 12 item 6): ``nat-gym train-supernet --nproc 2`` runs 2 gloo processes
under DistributedDataParallel and writes the usual checkpoint, whose weights are those of the maths the trainer's
docstring states: each process trains its own sampled path on its half of every minibatch, the gradients are
averaged over the processes, clipped and applied over the union of the paths."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nat_gym import rules
from nat_gym.data import load_dataset
from nat_gym.supernet.checkpoint import load_checkpoint, read_checkpoint
from nat_gym.supernet.config import SupernetConfig, SupernetTrainConfig
from nat_gym.supernet.model import Supernet
from nat_gym.supernet.train import SupernetTrainer, resolve_device

FLAGS = ["--dataset", "fake", "--channels", "4", "--layers", "3", "--steps", "2", "--epochs", "1",
         "--batch-size", "32", "--lr", "0.05", "--eval-archs", "0", "--final-archs", "2", "--seed", "3", "--no-progress"]  # fmt: skip


def _emulate(world_size: int) -> Supernet:
    """One process doing by hand what ``world_size`` DDP processes do together (the first epoch)."""
    data = load_dataset("fake", seed=0)
    cfg = SupernetConfig(C=4, layers=3, steps=2, ops=rules.get("nat++").ops, num_classes=data.num_classes,
                         in_channels=data.in_channels)  # fmt: skip
    torch.manual_seed(3)  # the command seeds the weights with --seed
    net = Supernet(cfg)
    trainer = SupernetTrainer(net, data, SupernetTrainConfig(epochs=1, batch_size=32, lr=0.05, seed=3),
                              device="cpu")  # fmt: skip
    for group in trainer.optimizer.param_groups:
        group["lr"] = trainer.lr_at(0)
    net.train()
    for x, y, genotypes in trainer.steps(0, world_size):
        total: dict[torch.nn.Parameter, torch.Tensor] = {}
        for rank, g in enumerate(genotypes):
            net.zero_grad(set_to_none=True)
            F.cross_entropy(net(x[rank::world_size], g), y[rank::world_size]).backward()
            for p in net.parameters():
                if p.grad is not None:
                    total[p] = total.get(p, 0) + p.grad
        for p in net.parameters():  # DDP's average: a path's gradient counts 1/W; SGD skips the other weights
            p.grad = total[p] / world_size if p in total else None
        torch.nn.utils.clip_grad_norm_(list(total), trainer.config.grad_clip)
        trainer.optimizer.step()
    return net


@pytest.mark.slow
def test_two_gloo_processes_train_the_stated_maths_into_the_usual_checkpoint(tmp_path):
    from nat_gym.cli import main

    assert main(["train-supernet", *FLAGS, "--nproc", "2", "--out", str(tmp_path / "ddp")]) == 0
    ckpt = tmp_path / "ddp" / "supernet.pt"
    payload = read_checkpoint(ckpt)
    assert payload["epoch"] == 1 and payload["history"][0]["train_loss"] > 0
    cfg = SupernetConfig.from_dict(payload["config"])
    net, _ = load_checkpoint(ckpt, Supernet(cfg))  # the single-process format: loads as any supernet checkpoint
    expected = _emulate(2).state_dict()
    for name, value in net.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=1e-4, atol=1e-6, msg=name)
    # and the 2-process run is not simply the 1-process run
    single = _emulate(1).state_dict()
    assert any(not torch.allclose(v, single[k]) for k, v in net.state_dict().items())
    assert (tmp_path / "ddp" / "summary.json").is_file() and (tmp_path / "ddp" / "metrics.csv").is_file()


def test_batch_size_must_split_over_the_processes(tmp_path, capsys):
    from nat_gym.cli import main

    assert main(["train-supernet", *FLAGS, "--batch-size", "33", "--nproc", "2", "--out", str(tmp_path / "x")]) == 2
    assert "--batch-size: 33 does not split evenly over --nproc 2" in capsys.readouterr().err


def test_the_device_is_checked_before_any_process_starts(tmp_path, capsys, monkeypatch):
    """``--nproc 2 --device cuda`` on a machine without CUDA is the one line the single-process path gives (it was
    some 40 lines of torch-elastic traceback from the launched processes), and more processes than GPUs is one line
    naming --nproc; nothing is launched, nothing written."""
    import nat_gym.supernet.cli as supernet_cli
    from nat_gym.cli import main

    def launched(args):
        raise AssertionError("the processes were launched")

    monkeypatch.setattr(supernet_cli, "_launch", launched)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "x"
    for nproc in ("1", "2"):
        assert main(["train-supernet", *FLAGS, "--device", "cuda", "--nproc", nproc, "--out", str(out)]) == 2
        assert capsys.readouterr().err == ("nat-gym train-supernet: error: --device: 'cuda' requested but CUDA is not "
                                           "available here; use 'auto' or 'cpu'\n")  # fmt: skip
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # one GPU for two processes
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for device in ("cuda", "auto"):
        assert main(["train-supernet", *FLAGS, "--device", device, "--nproc", "2", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("nat-gym train-supernet: error: --nproc: 2 processes on CUDA need a GPU each, and this "
                              "machine has 1; --device cpu") and len(err.splitlines()) == 1, err  # fmt: skip
    # a GPU this machine does not have, and device types nat-gym does not run on (mps was a traceback, from every
    # launched process with --nproc 2)
    for nproc in ("1", "2"):
        assert main(["train-supernet", *FLAGS, "--device", "cuda:1", "--nproc", nproc, "--out", str(out)]) == 2
        assert capsys.readouterr().err == ("nat-gym train-supernet: error: --device: 'cuda:1' requested but this "
                                           "machine has 1 GPU(s); use 'cuda' or an index below 1\n")  # fmt: skip
        for followed in ("cuda", "cuda:0"):  # the hint followed (the device itself is not used here)
            assert resolve_device(followed).type == "cuda"
        for device in ("mps", "xpu"):
            assert main(["train-supernet", *FLAGS, "--device", device, "--nproc", nproc, "--out", str(out)]) == 2
            assert capsys.readouterr().err == ("nat-gym train-supernet: error: --device: expected 'auto', 'cpu', "
                                               f"'cuda' or 'cuda:N', got '{device}'\n")  # fmt: skip
    assert not out.exists()
