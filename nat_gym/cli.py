"""The ``nat-gym`` command.

Subcommands of the library itself are registered here (``info``, ``rules``, ``list``, ``download``;
``train-supernet`` from :mod:`nat_gym.supernet.cli`, ``train-final`` from :mod:`nat_gym.final.cli`);
other installed packages (``agents``) add theirs through the ``nat_gym.commands`` entry-point group: each entry point
is a function ``register(subparsers)`` that adds parsers with ``set_defaults(func=...)``. ``nat_gym`` thus never
imports ``agents``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from nat_gym.cli_args import OneLineParser, int_at_least
from nat_gym.errors import ConfigError, NatGymError
from nat_gym.final.cli import register as register_final
from nat_gym.supernet.cli import register as register_supernet

__all__ = ["main", "build_parser", "ignore_library_warnings"]


def _cmd_info(args: argparse.Namespace) -> int:
    from nat_gym import cost, genotypes

    if args.per_op:
        return _print_per_op(args)
    if args.arch is None:
        raise ConfigError("arch: give a genotype (a registered name, see nat-gym list; a JSON file; a genotype "
                          "string) or --per-op for the cost of every op")  # fmt: skip
    g = genotypes.resolve(args.arch)
    c = cost.network_cost(
        g, C=args.channels, layers=args.layers, num_classes=args.classes, input_size=args.input_size,
        in_channels=args.in_channels, auxiliary=args.auxiliary, madds=args.madds,
    )  # fmt: skip
    if args.json:
        out = {"genotype": g.to_dict(), "string": str(g), "params": c.params, "madds": c.madds,
               "madds_convention": args.madds}  # fmt: skip
        if args.auxiliary:
            out.update(aux_params=c.aux_params, aux_madds=c.aux_madds)
        print(json.dumps(out, indent=2))
        return 0
    print(g.pretty())
    print(
        f"network: C={args.channels}, {args.layers} layers, {args.input_size}x{args.input_size}x{args.in_channels} "
        f"input, {args.classes} classes"
    )
    print(f"params: {c.params / 1e6:.3f}M ({c.params:,})")
    note = "" if args.madds == "true" else " (the NAT/NAT++ papers' convention: stride-2 convs at input size, no pools)"
    print(f"MAdds:  {c.madds / 1e6:.1f}M ({c.madds:,}){note}")
    if args.auxiliary:
        print(f"auxiliary head: {c.aux_params / 1e6:.3f}M params, {c.aux_madds / 1e6:.1f}M MAdds (not included above)")
    print(f"string: {g}")
    return 0


def _print_per_op(args: argparse.Namespace) -> int:
    """The cost of single ops (C -> C channels, stride 1, BN without affine parameters): the NAT++ per-op table."""
    from nat_gym import cost, genotypes
    from nat_gym.ops import EXTENDED_OPS

    ops = EXTENDED_OPS if args.arch is None else tuple(dict.fromkeys(genotypes.resolve(args.arch).ops))
    size = args.input_size
    table = {op: cost.op_cost(op, args.channels, size, 1, affine=False, madds=args.madds) for op in ops}
    if args.json:
        config = {"C": args.channels, "input_size": size, "stride": 1, "affine": False, "madds": args.madds}
        print(json.dumps({"config": config, "ops": {op: {"params": c.params, "madds": c.madds}
                                                    for op, c in table.items()}}, indent=2))  # fmt: skip
        return 0
    print(f"per-op cost: {args.channels} channels in and out, {size}x{size} input, stride 1, BN without affine "
          f"parameters (the NAT++ paper's per-op table at -C 128 --input-size 32), {args.madds} MAdds")  # fmt: skip
    width = max(len(op) for op in ops)
    print(f"{'op':<{width}}  {'MAdds (M)':>10}  {'params (K)':>10}")
    for op, c in table.items():
        print(f"{op:<{width}}  {c.madds / 1e6:>10.1f}  {c.params / 1e3:>10.1f}")
    if "skip_connect" in table:
        print("(the paper lists skip_connect at 0.1M MAdds, one operation per element; nat-gym counts it as free)")
    return 0


def _cmd_rules(args: argparse.Namespace) -> int:
    from nat_gym import rules

    r = rules.get(args.rules)
    if args.json:
        print(json.dumps(r.to_dict(), indent=2))
    else:
        print(r.format_table())
    return 0


def _register_core(sub: argparse._SubParsersAction) -> None:
    from nat_gym import rules
    from nat_gym.cost import MADDS_CONVENTIONS

    p = sub.add_parser(
        "info",
        help="print a genotype's cells, parameters and multiply-adds",
        description="Print the cells of an architecture and the exact parameter count and MAdds of the stand-alone "
        "DARTS-style network built from it (stem, cells with reductions at L//3 and 2L//3, global pool, classifier). "
        "With --per-op, print the cost of single ops instead.",
    )
    p.add_argument("arch", nargs="?", default=None,
                   help="a registered name (e.g. DARTS_V2; nat-gym list shows them all), a JSON file, the compact "
                   "string form, or a DARTS / NAT 'Genotype(...)' string (quote it); optional with --per-op")
    p.add_argument("--channels", "-C", type=int_at_least(1), default=36, help="initial channels C (default: 36)")
    p.add_argument("--layers", "-L", type=int_at_least(3), default=20, help="number of cells, >= 3 (default: 20)")
    p.add_argument("--classes", type=int_at_least(2), default=10, help="number of classes (default: 10)")
    p.add_argument("--input-size", type=int_at_least(4), default=32,
                   help="input height and width in pixels, >= 4 (default: 32)")
    p.add_argument("--in-channels", type=int_at_least(1), default=3, help="input image channels (default: 3)")
    p.add_argument("--auxiliary", action="store_true", help="also count the auxiliary head (reported separately)")
    p.add_argument("--madds", choices=MADDS_CONVENTIONS, default="true",
                   help="MAdds convention: true (default: the multiply-adds of the built network) or paper (the "
                   "NAT/NAT++ papers' tables: a stride-2 conv counted at its input resolution, pooling ignored)")
    p.add_argument("--per-op", action="store_true",
                   help="print the params and MAdds of every op (of ARCH, or every op nat-gym knows) mapping C to C "
                   "channels at stride 1 on INPUT_SIZE maps, BN without affine parameters: the convention of the "
                   "NAT++ paper's per-op table, which -C 128 reproduces")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "rules",
        help="print a transition table (the action masks)",
        description="Print which op each op may become under a rule set: one row per source op, x = allowed.",
    )
    p.add_argument("--rules", default="nat++", help=f"rule set: one of {', '.join(rules.names())} (default: nat++)")
    p.add_argument("--json", action="store_true", help="print the rule set as JSON (loadable by TransitionRules.from_dict)")
    p.set_defaults(func=_cmd_rules)

    p = sub.add_parser("list", help="list the registered genotypes", description="List the registered genotypes.")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser(
        "download",
        help="fetch CIFAR-10 or CIFAR-100 once (needs the network)",
        description="Download a dataset with torchvision into --data-root, where every later nat-gym train, "
        "train-supernet and gym.make('NATCell-v0', dataset=..., data_root=...) finds it. The default dataset, "
        "digits, is embedded and needs no download.",
    )
    p.add_argument("dataset", choices=("cifar10", "cifar100"), help="the dataset to fetch")
    p.add_argument("--data-root", default=None,
                   help="folder to put it in (default: $NAT_GYM_DATA, else ~/.cache/nat-gym/data)")
    p.set_defaults(func=_cmd_download)


def _cmd_download(args: argparse.Namespace) -> int:
    from nat_gym.data import default_root, load_dataset

    root = default_root() if args.data_root is None else args.data_root
    data = load_dataset(args.dataset, root=root, download=True)
    print(f"{args.dataset} in {root}: {len(data.train)} train / {len(data.valid)} valid / {len(data.test)} test images")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from nat_gym import genotypes

    for t in genotypes.names():
        print(t)
    return 0


def _plugin_registrars() -> list[Callable[[argparse._SubParsersAction], None]]:
    out = []
    for ep in sorted(entry_points(group="nat_gym.commands"), key=lambda e: e.name):
        out.append(ep.load())
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="nat-gym",
        description="nat-gym: the Neural Architecture Transformer (NAT/NAT++) as a reinforcement-learning benchmark.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _register_core(sub)
    register_supernet(sub)
    register_final(sub)
    for register in _plugin_registrars():
        register(sub)
    return parser


def ignore_library_warnings() -> None:
    """Silence the libraries' warnings that no user of nat-gym can act on, so that a command's stderr is kept for its
    own messages: torch_geometric's import warns that ``torch.jit.script`` is deprecated. Worker processes that a
    command spawns call it too (their warning filters are not inherited)."""
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nat-gym`` with ``argv`` (default: the command line); returns the exit code. A user error is one line on
    stderr and exit code 2; argparse's own errors exit (``SystemExit(2)``) with one line too; Ctrl-C is one line and
    exit code 130 (what was written stays: checkpoints, finished bench jobs, the evaluation cache)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    ignore_library_warnings()
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, not at exit: a reader that went away is then caught below
        return code
    except NatGymError as e:  # a user error: one line, exit code 2
        print(f"nat-gym {args.command}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line and 130 (128 + SIGINT, as a shell reports it), not a traceback
        print(f"nat-gym {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`nat-gym rules | head`): stop quietly, as other tools do
        # the Python docs' recipe: point stdout at devnull so that the interpreter's final flush cannot fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
