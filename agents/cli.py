"""``nat-gym train`` and ``nat-gym transform``: the agents' subcommands.

``nat_gym.cli`` loads :func:`register` through the ``nat_gym.commands`` entry point; ``python -m agents.cli`` runs
the same subcommands on their own (:func:`main`).

Training algorithms are one entry each in :data:`ALGOS`: the module, the name of its arguments dataclass (every
field becomes a ``--flag``, its attribute docstring the flag's help) and the name of its ``run(args, *, resume)``
function. The flags are read from the dataclass's *source* (``ast``), so building the parser imports neither torch
nor the algorithm: every ``nat-gym`` command stays fast.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ALGOS", "AlgoSpec", "FieldSpec", "register", "main", "algo_fields"]


@dataclass(frozen=True)
class AlgoSpec:
    """One training algorithm of ``nat-gym train --algo``.

    Attributes:
        module: the module that holds the arguments dataclass and the runner (imported only when it runs).
        args_class: the arguments dataclass; every field becomes a flag (``--field-name``).
        runner: a function ``runner(args, *, resume: bool)`` that trains and writes its outputs.
        help: one line for ``--help``.
        choices: allowed values of some fields (shown in ``--help`` and checked by argparse).
    """

    module: str
    args_class: str
    runner: str
    help: str
    choices: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)


ALGOS: dict[str, AlgoSpec] = {
    "nat": AlgoSpec(
        "agents.nat_trainer", "NATTrainerArgs", "train",
        "NAT / NAT++ (Algorithm 1): REINFORCE on the GCN transformer policy, alternating with supernet epochs",
        choices={"variant": ("fixed", "faithful"), "rules": ("nat++", "nat", "nat++ext", "nat-ext")},
    ),
    "blockqnn": AlgoSpec(
        "agents.blockqnn_trainer", "BlockQNNArgs", "train",
        "BlockQNN: tabular Q-learning builds network blocks layer by layer on BlockQNN-v0 (early-stop reward, "
        "64 blocks per iteration evaluated together, SQLite evaluation cache)",
        choices={"schedule": ("scaled", "paper", "random")},
    ),
}  # fmt: skip
"""``--algo`` name -> :class:`AlgoSpec`. Adding an algorithm (e.g. an SB3 baseline) is one entry here."""


# ====================================================================================================== fields
@dataclass(frozen=True)
class FieldSpec:
    """A field of an arguments dataclass, as read from its source."""

    name: str
    annotation: str
    default: Any
    doc: str


def algo_fields(spec: AlgoSpec) -> list[FieldSpec]:
    """The fields of ``spec``'s arguments dataclass, read from the module's source without importing it (falls
    back to importing it when the source is not available)."""
    found = importlib.util.find_spec(spec.module)
    origin = getattr(found, "origin", None)
    if origin and origin.endswith(".py") and Path(origin).is_file():
        tree = ast.parse(Path(origin).read_text())
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name == spec.args_class:
                return _fields_from_ast(node)
    cls = getattr(importlib.import_module(spec.module), spec.args_class)  # pragma: no cover - no source file
    return [FieldSpec(f.name, str(f.type), f.default, "") for f in dataclasses.fields(cls)]  # pragma: no cover


def _fields_from_ast(node: ast.ClassDef) -> list[FieldSpec]:
    out = []
    body = node.body
    for i, stmt in enumerate(body):
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        default = ast.literal_eval(stmt.value) if stmt.value is not None else dataclasses.MISSING
        doc = ""
        nxt = body[i + 1] if i + 1 < len(body) else None
        if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
            doc = " ".join(nxt.value.value.split())
        out.append(FieldSpec(stmt.target.id, ast.unparse(stmt.annotation), default, doc))
    return out


def _optional(kind: type):
    def parse(text: str):
        if text.strip().lower() in ("none", "null", "all", ""):
            return None
        return kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its error messages
    return parse


def _help(f: FieldSpec) -> str:
    shown = "none" if f.default is None else f.default
    if isinstance(shown, tuple):
        shown = " ".join(map(str, shown))
    return f"{f.doc} (default: {shown})"


def _add_field(group: argparse._ArgumentGroup, f: FieldSpec, choices: tuple[str, ...] | None,
               help_text: str | None = None) -> None:  # fmt: skip
    flag = "--" + f.name.replace("_", "-")
    ann = f.annotation.replace(" ", "")
    help_text = (help_text or _help(f)).replace("%", "%%")
    kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
    if ann == "bool":
        group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        return
    if ann.startswith("tuple[") and ann.endswith("]"):
        parts = ann[len("tuple[") : -1].split(",")
        kw.update(nargs=len(parts), type=float if parts[0] == "float" else int, metavar=tuple(p.upper() for p in parts))
    elif ann in ("int", "float", "str"):
        kw.update(type={"int": int, "float": float, "str": str}[ann])
    elif ann in ("int|None", "float|None", "str|None"):
        kw.update(type=_optional({"int": int, "float": float, "str": str}[ann.split("|")[0]]))
    else:  # pragma: no cover - an annotation this parser does not know: accept a string
        kw.update(type=str)
    if choices:
        kw["choices"] = choices
    group.add_argument(flag, **kw)


# ====================================================================================================== commands
def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``transform`` to the ``nat-gym`` subcommands."""
    p = sub.add_parser(
        "train",
        help="train an agent (--algo nat: the NAT/NAT++ transformer policy; --algo blockqnn: BlockQNN's Q-learning)",
        description="Train an agent. --algo blockqnn searches BlockQNN-v0 blocks by tabular Q-learning (64 blocks per "
        "iteration, each stacked into a network, trained briefly and scored on held-out training images; SQLite "
        "evaluation cache; writes OUT/top_blocks.png too). --algo nat (on NATCell-v0) runs the papers' Algorithm "
        "1: each epoch trains the supernet for one pass over the training split (uniform architecture sampling), "
        "then the GCN policy for one pass over the validation minibatches (REINFORCE with a moving-average "
        "baseline; reward = shared-weight accuracy gain on the minibatch). Writes OUT/metrics.csv, TensorBoard "
        "events, OUT/learning_curves.png and OUT/checkpoint.pt (atomic; --resume continues a run exactly). On "
        "digits, the default supernet is trained once (a few minutes) and cached on first use.",
    )
    p.add_argument("--algo", choices=list(ALGOS), default="nat",
                   help="; ".join(f"{k}: {v.help}" for k, v in ALGOS.items()) + " (default: nat)")  # fmt: skip
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint (same final weights as an uninterrupted run)")
    fields_of = {algo: algo_fields(spec) for algo, spec in ALGOS.items()}
    specs: dict[str, list[tuple[str, FieldSpec]]] = {}  # flag -> the algorithms that have it, with their field
    for algo, fs in fields_of.items():
        for f in fs:
            specs.setdefault(f.name, []).append((algo, f))
    for algo, spec in ALGOS.items():
        group = p.add_argument_group(f"--algo {algo} options")
        for f in fields_of[algo]:
            shared = specs[f.name]
            if shared[0][0] != algo:
                continue  # added with the first algorithm that has it
            helps = {a: _help(g) for a, g in shared}
            text = None if len(set(helps.values())) == 1 else "; ".join(f"--algo {a}: {h}" for a, h in helps.items())
            _add_field(group, f, spec.choices.get(f.name), text)
    owners = {name: [a for a, _ in shared] for name, shared in specs.items()}
    p.set_defaults(func=_run_train, _owners=owners)

    p = sub.add_parser(
        "transform",
        help="transform an architecture with a trained NAT policy",
        description="Sample --samples candidate transformations of --arch from the trained policy (or take the "
        "argmax), keep the one with the best shared-weight accuracy on the validation split (held-out training data; "
        "the test split is never used), and report the before/after cells with parameters and MAdds at the "
        "supernet's shape and at the DARTS CIFAR shape (C=36, 20 layers, 32x32). Every candidate is valid under the "
        "rules and never costs more than the input (null -> skip aside, reported). Writes OUT/transform.json and "
        "OUT/transform.png.",
    )
    p.add_argument("--arch", required=True,
                   help="input architecture: a registered name (nat-gym list; e.g. DARTS_V2), a JSON file or the "
                        "compact string form")  # fmt: skip
    p.add_argument("--policy", required=True, help="trainer checkpoint (OUT/checkpoint.pt of nat-gym train --algo nat)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--samples", type=int, default=10, help="candidates sampled from the policy (default: 10)")
    mode.add_argument("--argmax", action="store_true",
                      help="take the most likely op of every edge instead of sampling (one candidate, deterministic)")
    p.add_argument("--supernet", default=None,
                   help="score the candidates with this supernet (a train-supernet checkpoint or a trainer "
                        "checkpoint; default: the supernet stored in the --policy checkpoint)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling (default: 0)")
    p.add_argument("--out", default="runs/transform",
                   help="folder for transform.json and transform.png (default: runs/transform; '' writes nothing)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda (default: auto)")
    p.add_argument("--json", action="store_true", help="also print the result as JSON")
    p.set_defaults(func=_run_transform)


def _run_train(ns: argparse.Namespace) -> int:
    from nat_gym.errors import ConfigError

    spec = ALGOS[ns.algo]
    names = {f.name for f in algo_fields(spec)}
    stray = sorted(k for k, algos in ns._owners.items() if hasattr(ns, k) and ns.algo not in algos)
    if stray:
        raise ConfigError(f"--algo {ns.algo}: flags {['--' + s.replace('_', '-') for s in stray]} do not apply to it")
    module = importlib.import_module(spec.module)
    args_cls = getattr(module, spec.args_class)
    args = args_cls(**{k: getattr(ns, k) for k in names if hasattr(ns, k)})
    getattr(module, spec.runner)(args, resume=ns.resume)
    out = getattr(args, "out", None)
    if out:
        print(f"{ns.algo}: done; outputs in {out}")
    return 0


def _run_transform(ns: argparse.Namespace) -> int:
    from agents.transform import run_cli

    return run_cli(ns)


# ====================================================================================================== main
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m agents.cli train|transform ...``: the ``nat-gym`` command (these subcommands are registered there
    through the ``nat_gym.commands`` entry point)."""
    from nat_gym.cli import main as nat_gym_main

    return nat_gym_main(argv)


if __name__ == "__main__":
    sys.exit(main())
