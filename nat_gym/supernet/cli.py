"""``nat-gym train-supernet``: train (or resume) a weight-sharing supernet with uniform architecture sampling."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from pathlib import Path

__all__ = ["register", "train_command"]


def train_command(rules: str, steps: int) -> tuple[str, str]:
    """The ``nat-gym train-supernet`` command that trains a supernet for rule set ``rules`` with ``steps``
    intermediate nodes into a folder of its own, and the checkpoint it writes: the hint of error messages that need
    such a supernet (``tests/test_hints.py`` runs it)."""
    out = f"runs/supernet-{rules}-{steps}steps"
    return f"nat-gym train-supernet --rules {rules} --steps {steps} --out {out}", f"{out}/supernet.pt"


def register(sub: argparse._SubParsersAction) -> None:
    from nat_gym import rules
    from nat_gym.cli_args import float_at_least, float_in, int_at_least
    from nat_gym.supernet.config import DEFAULT_TRAIN_CONFIG as D

    p = sub.add_parser(
        "train-supernet",
        help="train a weight-sharing supernet by uniform architecture sampling (resumable)",
        description="Train the supernet that scores architectures: every SGD step samples one random input "
        "architecture (2 predecessors and 2 non-null ops per node) and trains that single path. Checkpoints are "
        "written atomically with their configuration inside; --resume continues an interrupted run exactly. "
        "Several processes (--nproc N, or torchrun --nproc-per-node N -m nat_gym.cli train-supernet ...): "
        "DistributedDataParallel, each process training its own sampled architecture on its share of every "
        "minibatch; the gradients are averaged (README, Scaling out).",
    )
    p.add_argument("--dataset", default="digits", help="digits (embedded, default), cifar10, cifar100 or fake")
    p.add_argument("--data-root", default=None, help="folder holding CIFAR's extracted files (default: the cache)")
    p.add_argument("--download", action="store_true",
                   help="let torchvision download CIFAR into --data-root (needs the network)")
    p.add_argument("--data-seed", type=int_at_least(0), default=0, help="seed of the train/valid/test split (default: 0)")
    p.add_argument("--rules", default="nat++", help=f"op vocabulary from a rule set: {', '.join(rules.names())}")
    p.add_argument("--channels", "-C", type=int_at_least(1), default=8, help="initial channels (default: 8)")
    p.add_argument("--layers", "-L", type=int_at_least(3), default=5, help="cells, >= 3 (default: 5)")
    p.add_argument("--steps", type=int_at_least(1), default=4, help="intermediate nodes per cell (default: 4)")
    p.add_argument("--epochs", type=int_at_least(1), default=D.epochs, help=f"training epochs (default: {D.epochs})")
    p.add_argument("--batch-size", type=int_at_least(1), default=D.batch_size,
                   help=f"images per step (default: {D.batch_size})")
    p.add_argument("--lr", type=float_at_least(0, strict=True), default=D.lr,
                   help=f"initial SGD learning rate, cosine decay (default: {D.lr})")
    p.add_argument("--momentum", type=float_in(0, 1), default=D.momentum,
                   help=f"SGD momentum, in [0, 1) (default: {D.momentum})")
    p.add_argument("--weight-decay", type=float_at_least(0), default=D.weight_decay,
                   help=f"SGD weight decay (default: {D.weight_decay})")
    p.add_argument("--eval-archs", type=int_at_least(0), default=20,
                   help="random architectures scored on the validation split after each epoch, logged as "
                   "valid_acc_mean/std (default: 20; 0 = none)")
    p.add_argument("--final-archs", type=int_at_least(1), default=200,
                   help="random architectures scored at the end, for summary.json and the printed mean +- std "
                   "(default: 200)")
    p.add_argument("--seed", type=int_at_least(0), default=0,
                   help="seed of architecture sampling and data order (default: 0)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda (default: auto)")
    p.add_argument("--threads", type=int_at_least(0), default=1,
                   help="CPU threads for the tiny convolutions (default: 1; 0 = torch's choice). One is as fast as "
                   "two on an idle 2-core machine and much faster on a busy one")
    p.add_argument("--nproc", type=int_at_least(1), default=1,
                   help="processes that train together with DistributedDataParallel (gloo on the CPU, NCCL with one "
                   "GPU each), started by torchrun's launcher; --batch-size is split over them (default: 1)")
    p.add_argument("--out", default="runs/supernet", help="output folder: checkpoint, metrics.csv, TensorBoard, PNG")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from OUT/supernet.pt (which must "
                   "exist)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from nat_gym.cli_args import check_out_folder
    from nat_gym.errors import ConfigError

    check_out_folder(args.out)
    ckpt = Path(args.out) / "supernet.pt"
    if ckpt.exists() and not args.resume:
        raise ConfigError(f"--out: {ckpt} exists; pass --resume to continue it or choose another --out")
    if args.resume and not ckpt.is_file():
        raise ConfigError(f"--resume: nothing to resume, {ckpt} does not exist; check --out or drop --resume")
    if args.batch_size % args.nproc:
        raise ConfigError(f"--batch-size: {args.batch_size} does not split evenly over --nproc {args.nproc} processes")
    _check_device(args.device, args.nproc)
    if args.nproc > 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        if args.download:
            raise ConfigError("--download: not with --nproc above 1 (each process would download the files); "
                              "download with one process first")  # fmt: skip
        return _launch(args)
    return _train(args)


def _check_device(device: str, nproc: int) -> None:
    """The trainer's own device check (:func:`~nat_gym.supernet.train.resolve_device`), made here before anything
    starts, processes included (a process that fails it after torchrun's launch ends the run with every process's
    traceback); on CUDA each of the ``nproc`` processes takes a GPU of its own (``cuda:LOCAL_RANK``).

    Raises:
        ConfigError: naming ``--device`` or ``--nproc``.
    """
    import torch

    from nat_gym.cli_args import as_flag
    from nat_gym.errors import ConfigError
    from nat_gym.supernet.train import resolve_device

    try:
        dev = resolve_device(device)
    except ConfigError as e:
        raise ConfigError(as_flag(str(e), {"device"})) from None
    if dev.type == "cuda" and nproc > torch.cuda.device_count():
        raise ConfigError(f"--nproc: {nproc} processes on CUDA need a GPU each, and this machine has "
                          f"{torch.cuda.device_count()}; --device cpu runs them on the CPU")  # fmt: skip


def _launch(args: argparse.Namespace) -> int:
    """Run :func:`_train` in ``args.nproc`` processes, as ``torchrun --standalone --nproc-per-node N`` would (its
    launcher API: a local rendezvous on a free port, RANK / WORLD_SIZE / LOCAL_RANK set for each process)."""
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=args.nproc, run_id=f"nat-gym-{os.getpid()}",
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0)  # fmt: skip
    print(f"train-supernet: {args.nproc} processes (DistributedDataParallel)")
    elastic_launch(config, _train)(args)  # raises ChildFailedError (with the failing rank's traceback) on failure
    return 0


def _train(args: argparse.Namespace) -> int:
    import torch

    from nat_gym import rules
    from nat_gym.data import load_dataset
    from nat_gym.plotting import plot_learning_curves
    from nat_gym.supernet.config import SupernetConfig, SupernetTrainConfig
    from nat_gym.supernet.model import Supernet
    from nat_gym.supernet.train import SupernetTrainer, evaluate_random_architectures, torch_threads

    out = Path(args.out)
    ckpt = out / "supernet.pt"
    data = load_dataset(args.dataset, root=args.data_root, download=args.download, seed=args.data_seed)
    cfg = SupernetConfig(C=args.channels, layers=args.layers, steps=args.steps, ops=rules.get(args.rules).ops,
                         num_classes=data.num_classes, in_channels=data.in_channels)  # fmt: skip
    train_cfg = SupernetTrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                    momentum=args.momentum, weight_decay=args.weight_decay, seed=args.seed,
                                    eval_archs=args.eval_archs)  # fmt: skip
    torch.manual_seed(args.seed)
    trainer = SupernetTrainer(Supernet(cfg), data, train_cfg, device=args.device, checkpoint=ckpt, log_dir=out,
                              threads=args.threads or None)  # fmt: skip
    ctx = trainer.ctx
    if args.resume:
        trainer.resume(ckpt)
        if ctx.is_main:
            print(f"resumed from {ckpt} at epoch {trainer.epoch}")
    if ctx.is_main:
        print(f"supernet: {cfg} on {data.name} ({len(data.train)} train / {len(data.valid)} valid images), "
              f"device {trainer.device}{f' x {ctx.world_size} processes' if ctx.distributed else ''}")  # fmt: skip
    trainer.train(progress=not args.no_progress)
    ctx.close()  # every process leaves the group together; rank 0 (which saved the checkpoint) reports
    if not ctx.is_main:
        return 0
    trainer.supernet.eval()
    with torch_threads(args.threads or None, trainer.device):
        accs = evaluate_random_architectures(trainer.supernet, data.valid, args.final_archs, seed=args.seed + 1)
    summary = {"epochs": trainer.epoch, "random_archs": args.final_archs, "valid_acc_random_mean": float(accs.mean()),
               "valid_acc_random_std": float(accs.std()), "checkpoint": str(ckpt), "train_config": asdict(train_cfg)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if (out / "metrics.csv").exists():
        plot_learning_curves(out / "metrics.csv", out / "learning_curves.png", x="epoch")
    print(f"random architectures on the validation split: {accs.mean():.2%} +- {accs.std():.2%} (std)")
    print(f"checkpoint: {ckpt}; logs: {out / 'metrics.csv'}, TensorBoard: {out}")
    return 0
