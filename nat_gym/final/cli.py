"""``nat-gym train-final ARCH``: train an architecture from scratch with the DARTS protocol (resumable, DDP-ready).

Every field of :class:`~nat_gym.final.config.FinalTrainConfig` is a flag; ``--preset`` (``digits``, the default, or
``darts-cifar10``) gives the values of the flags not set, and ``--help`` shows both presets' values.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _optional(kind: type):
    def parse(text: str):
        return None if text.strip().lower() in ("none", "null", "") else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its error messages
    return parse


def register(sub: argparse._SubParsersAction) -> None:
    from nat_gym.final.config import PRECISIONS, PRESETS, FinalTrainConfig

    p = sub.add_parser(
        "train-final",
        help="train an architecture from scratch (DARTS protocol; resumable, mixed precision, DDP under torchrun)",
        description="Train the stand-alone network of ARCH from scratch: SGD with a cosine learning rate, gradient "
        "clipping, drop-path, auxiliary head, random crop / flip and cutout (the DARTS protocol). Validation loss "
        "and accuracy after every epoch on the held-out validation split; the test split is measured once, at the "
        "end. Writes OUT/checkpoint.pt (atomic, config inside; --resume continues exactly), OUT/metrics.csv, "
        "TensorBoard events, OUT/learning_curves.png and OUT/result.json. Params and MAdds come from the cost "
        "model. Several processes: torchrun --nproc-per-node N -m nat_gym.cli train-final ARCH ... "
        "Values shown as (digits: X; darts-cifar10: Y) are the two presets' defaults.",
    )
    p.add_argument("arch", help="a registered name (nat-gym list), a genotype JSON file, the compact string form or a "
                   "DARTS / NAT 'Genotype(...)' string (quote it)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="digits",
                   help="defaults of the unset flags: digits (8x8 digits on 2 CPU cores; default) or darts-cifar10 "
                   "(the DARTS protocol: pass --data-root DIR holding cifar-10-batches-py)")  # fmt: skip
    p.add_argument("--out", default=None, help="output folder (default: runs/final/ARCH)")
    p.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pt, which must exist")
    p.add_argument("--download", action="store_true",
                   help="let torchvision download CIFAR into --data-root (one process: under torchrun, download first)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    choices = {"precision": PRECISIONS}
    group = p.add_argument_group("training (FinalTrainConfig)")
    for f in dataclasses.fields(FinalTrainConfig):
        values = {name: getattr(cfg, f.name) for name, cfg in PRESETS.items()}
        shown = (f"default: {values['digits']}" if len(set(map(str, values.values()))) == 1
                 else "; ".join(f"{k}: {v}" for k, v in values.items()))  # fmt: skip
        kw: dict[str, Any] = {"dest": f.name, "default": None,
                              "help": f"{FinalTrainConfig.HELP[f.name]} ({shown})".replace("%", "%%")}  # fmt: skip
        ann = str(f.type).replace(" ", "")
        flag = "--" + f.name.replace("_", "-")
        if ann == "bool":
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
            continue
        base = {"int": int, "float": float, "str": str}[ann.split("|")[0]]
        kw["type"] = _optional(base) if ann.endswith("|None") else base
        if f.name in choices:
            kw["choices"] = choices[f.name]
        group.add_argument(flag, **kw)
    p.set_defaults(func=_run)


def _default_out(arch: str, genotype: Any) -> Path:
    if arch.endswith(".json"):
        return Path("runs/final") / Path(arch).stem
    if re.fullmatch(r"[\w.-]+", arch):
        return Path("runs/final") / arch
    return Path("runs/final") / genotype.digest()[:12]


def _run(args: argparse.Namespace) -> int:
    from nat_gym.cli_args import as_flag, check_out_folder
    from nat_gym.errors import ConfigError
    from nat_gym.final.config import PRESETS, FinalTrainConfig
    from nat_gym.final.model import resolve_arch
    from nat_gym.final.train import FinalTrainer, load_data

    arch = resolve_arch(args.arch)
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(FinalTrainConfig)
             if getattr(args, f.name) is not None}  # fmt: skip
    try:
        config = PRESETS[args.preset].replace(**given)
    except ConfigError as e:  # the config names the field: name the flag
        raise ConfigError(as_flag(str(e), set(given))) from None
    out = Path(args.out) if args.out else _default_out(args.arch, arch)
    check_out_folder(out)
    if (out / "checkpoint.pt").exists() and not args.resume:
        raise ConfigError(f"--out: {out / 'checkpoint.pt'} exists; pass --resume to continue it or choose another --out")
    if args.resume and not (out / "checkpoint.pt").is_file():
        raise ConfigError(f"--resume: nothing to resume, {out / 'checkpoint.pt'} does not exist; check --out or drop "
                          "--resume")  # fmt: skip
    if args.download and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("--download: download the dataset in a single process first, then start torchrun")
    data = load_data(config, download=args.download)
    trainer = FinalTrainer(arch, config, out=out, data=data, name=args.arch, progress=not args.no_progress)
    say = print if trainer.ctx.is_main else (lambda *a, **k: None)
    try:
        if args.resume and trainer.resume():
            say(f"resumed from {out / 'checkpoint.pt'} at epoch {trainer.epoch}")
        d = trainer.data
        say(f"{args.arch}: C={config.channels}, {config.layers} layers, {trainer.cost.params:,} params, "
            f"{trainer.cost.madds:,} MAdds ({d.image_size}x{d.image_size}x{d.in_channels} {d.name}; "
            f"{len(d.train)} train / {len(d.valid)} valid / {len(d.test)} test images); device {trainer.device}"
            f"{f' x {trainer.ctx.world_size} processes' if trainer.ctx.distributed else ''}, "
            f"precision {str(trainer.amp_dtype).removeprefix('torch.') if trainer.amp_dtype else 'fp32'}")  # fmt: skip
        trainer.train()
        result = trainer.test()
    finally:
        trainer.close()
    say(f"test accuracy {result['test_acc']:.4f} on {result['test_images']} images (measured once, after epoch "
        f"{result['epochs']}); last validation accuracy {result['valid_acc']:.4f}")  # fmt: skip
    say(f"params {result['params']:,} (auxiliary head {result['aux_params']:,} more), MAdds {result['madds']:,}")
    say(f"wrote {out / 'result.json'}, {out / 'metrics.csv'}, {out / 'learning_curves.png'}, {out / 'checkpoint.pt'}")
    return 0
