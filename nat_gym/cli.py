"""The ``nat-gym`` command.

Subcommands of the library itself are registered here (``info``, ``rules``, ``list``; ``train-supernet`` from
:mod:`nat_gym.supernet.cli`, ``train-final`` from :mod:`nat_gym.final.cli`);
other installed packages (``agents``) add theirs through the ``nat_gym.commands`` entry-point group: each entry point
is a function ``register(subparsers)`` that adds parsers with ``set_defaults(func=...)``. ``nat_gym`` thus never
imports ``agents``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from nat_gym.errors import NatGymError
from nat_gym.final.cli import register as register_final
from nat_gym.supernet.cli import register as register_supernet

__all__ = ["main", "build_parser"]


def _cmd_info(args: argparse.Namespace) -> int:
    from nat_gym import cost, genotypes

    g = genotypes.resolve(args.arch)
    c = cost.network_cost(
        g, C=args.channels, layers=args.layers, num_classes=args.classes, input_size=args.input_size,
        in_channels=args.in_channels, auxiliary=args.auxiliary,
    )  # fmt: skip
    if args.json:
        out = {"genotype": g.to_dict(), "string": str(g), "params": c.params, "madds": c.madds}
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
    print(f"MAdds:  {c.madds / 1e6:.1f}M ({c.madds:,})")
    if args.auxiliary:
        print(f"auxiliary head: {c.aux_params / 1e6:.3f}M params, {c.aux_madds / 1e6:.1f}M MAdds (not included above)")
    print(f"string: {g}")
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

    p = sub.add_parser(
        "info",
        help="print a genotype's cells, parameters and multiply-adds",
        description="Print the cells of an architecture and the exact parameter count and MAdds of the stand-alone "
        "DARTS-style network built from it (stem, cells with reductions at L//3 and 2L//3, global pool, classifier).",
    )
    p.add_argument("arch", help="a registered name (e.g. DARTS_V2; see --list), a JSON file, or the compact string form")
    p.add_argument("--channels", "-C", type=int, default=36, help="initial channels C (default: 36)")
    p.add_argument("--layers", "-L", type=int, default=20, help="number of cells (default: 20)")
    p.add_argument("--classes", type=int, default=10, help="number of classes (default: 10)")
    p.add_argument("--input-size", type=int, default=32, help="input height and width in pixels (default: 32)")
    p.add_argument("--in-channels", type=int, default=3, help="input image channels (default: 3)")
    p.add_argument("--auxiliary", action="store_true", help="also count the auxiliary head (reported separately)")
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
    parser = argparse.ArgumentParser(
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except NatGymError as e:
        print(f"nat-gym {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
