"""``nat-gym train`` and ``nat-gym transform`` (and, from :mod:`agents.bench.cli`, ``bench`` and ``validate``): the
agents' subcommands.

``nat_gym.cli`` loads :func:`register` through the ``nat_gym.commands`` entry point; ``python -m agents.cli`` runs
the same subcommands on their own (:func:`main`).

Training algorithms are one entry each in :data:`ALGOS`: the module, the name of its arguments dataclass (every
field becomes a ``--flag``, its attribute docstring the flag's help) and the name of its ``run(args, *, resume)``
function. The flags are read from the dataclass's *source* (``ast``), so building the parser imports neither torch
nor the algorithm: every ``nat-gym`` command stays fast. Algorithms may share an arguments dataclass (the SB3
baselines do; ``fixed`` presets the field that tells them apart), and a field of several algorithms is one flag
whose help gives each algorithm's meaning and default when they differ.
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
        fixed: fields set by the choice of ``--algo`` itself (not flags), e.g. ``{"algo": "ppo"}``.
    """

    module: str
    args_class: str
    runner: str
    help: str
    choices: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    fixed: dict[str, Any] = dataclasses.field(default_factory=dict)


_SB3_CHOICES = {"env": ("NATCell-v0", "NATEdge-v0"), "policy": ("gcn", "mlp")}


ALGOS: dict[str, AlgoSpec] = {
    "nat": AlgoSpec(
        "agents.nat_trainer", "NATTrainerArgs", "train",
        "NAT / NAT++ (Algorithm 1): REINFORCE on the GCN transformer policy, alternating with supernet epochs",
        choices={"variant": ("fixed", "faithful"), "rules": ("nat++", "nat", "nat++ext", "nat-ext")},
    ),
    "maskable_ppo": AlgoSpec(
        "agents.sb3.trainer", "SB3Args", "train",
        "sb3-contrib MaskablePPO (reads the action masks)", choices=_SB3_CHOICES, fixed={"algo": "maskable_ppo"},
    ),
    "ppo": AlgoSpec(
        "agents.sb3.trainer", "SB3Args", "train",
        "Stable-Baselines3 PPO (no masks: a masked-out op keeps its edge)", choices=_SB3_CHOICES, fixed={"algo": "ppo"},
    ),
    "a2c": AlgoSpec(
        "agents.sb3.trainer", "SB3Args", "train",
        "Stable-Baselines3 A2C (no masks)", choices=_SB3_CHOICES, fixed={"algo": "a2c"},
    ),
    "dqn": AlgoSpec(
        "agents.sb3.trainer", "SB3Args", "train",
        "Stable-Baselines3 DQN (NATEdge-v0 only: a Discrete action; no masks)",
        choices=_SB3_CHOICES, fixed={"algo": "dqn"},
    ),
    "blockqnn": AlgoSpec(
        "agents.blockqnn_trainer", "BlockQNNArgs", "train",
        "BlockQNN: tabular Q-learning builds network blocks layer by layer on BlockQNN-v0 (early-stop reward, "
        "64 blocks per iteration evaluated together, SQLite evaluation cache)",
        choices={"schedule": ("scaled", "paper", "random"), "executor": ("auto", "process", "ray")},
    ),
}  # fmt: skip
"""``--algo`` name -> :class:`AlgoSpec`. Adding an algorithm is one entry here."""


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


def _shown(default: Any) -> Any:
    if default is None:
        return "none"
    if isinstance(default, tuple):
        return " ".join(map(str, default)) if default else "none"
    return default


def _add_field(group: argparse._ArgumentGroup, owners: list[tuple[str, FieldSpec]],
               choices: tuple[str, ...] | None) -> None:  # fmt: skip
    """One flag for a field of one or several algorithms (``owners``: (algo, field) pairs, same annotation)."""
    f = owners[0][1]
    flag = "--" + f.name.replace("_", "-")
    ann = f.annotation.replace(" ", "")
    if any(o.annotation.replace(" ", "") != ann for _, o in owners):
        raise TypeError(f"{flag}: the algorithms {[a for a, _ in owners]} give the field different types")
    meanings: dict[tuple[str, str], list[str]] = {}
    for algo, o in owners:
        meanings.setdefault((o.doc, str(_shown(o.default))), []).append(algo)
    if len(meanings) == 1:
        (doc, shown), = meanings
        help_text = f"{doc} (default: {shown})"
    else:
        help_text = "; ".join(f"{', '.join(algos)}: {doc} (default: {shown})" for (doc, shown), algos in meanings.items())
    kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text.replace("%", "%%")}
    if ann == "bool":
        group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        return
    if ann.startswith("tuple[") and ann.endswith(",...]"):  # any number of values
        kw.update(nargs="+", type={"int": int, "float": float}.get(ann[len("tuple[") : -len(",...]")], str),
                  metavar="KEY=VALUE" if ann == "tuple[str,...]" else None)  # fmt: skip
    elif ann.startswith("tuple[") and ann.endswith("]"):
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
    """Add ``train``, ``transform``, ``bench`` and ``validate`` to the ``nat-gym`` subcommands."""
    from nat_gym.cli_args import int_at_least

    p = sub.add_parser(
        "train",
        help="train an agent (--algo nat: the NAT/NAT++ transformer policy; maskable_ppo, ppo, a2c, dqn: SB3; "
        "blockqnn: BlockQNN's Q-learning)",
        description="Train an agent. --algo nat runs the papers' Algorithm 1 on NATCell-v0: each epoch trains the "
        "supernet for one pass over the training split (uniform architecture sampling), then the GCN policy for one "
        "pass over the validation minibatches (REINFORCE with a moving-average baseline; reward = shared-weight "
        "accuracy gain on the minibatch). --algo maskable_ppo, ppo, a2c (NATCell-v0 or NATEdge-v0) and dqn "
        "(NATEdge-v0) train a Stable-Baselines3 agent on the frozen supernet with the defaults of "
        "agents/hyperparams/ALGO.yml (RL Zoo layout), --policy gcn (the GCN features extractor) or mlp, for "
        "--n-timesteps steps or --evaluations reward evaluations. --algo blockqnn searches BlockQNN-v0 blocks by "
        "tabular Q-learning (64 blocks per iteration, each stacked into a network, trained briefly and scored on "
        "held-out training images; SQLite evaluation cache; writes OUT/top_blocks.png too). Every algorithm writes "
        "OUT/metrics.csv, TensorBoard events, OUT/learning_curves.png and OUT/checkpoint.pt (atomic; --resume "
        "continues the run); the NATCell/NATEdge algorithms also OUT/summary.json (held-out reward on fresh inputs). "
        "On digits, the default supernet is trained once (a few minutes) and cached on first use.",
    )
    p.add_argument("--algo", choices=list(ALGOS), default="nat",
                   help="; ".join(f"{k}: {v.help}" for k, v in ALGOS.items()) + " (default: nat)")  # fmt: skip
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint, which must exist, to the same total budget "
                        "(same final weights as an uninterrupted run)")
    fields_of: dict[str, list[tuple[str, FieldSpec]]] = {}  # flag -> (algo, field) of every algorithm with it
    for algo, spec in ALGOS.items():
        for f in algo_fields(spec):
            if f.name not in spec.fixed:
                fields_of.setdefault(f.name, []).append((algo, f))
    groups: dict[tuple[str, ...], argparse._ArgumentGroup] = {}
    for name, pairs in fields_of.items():
        algos = tuple(a for a, _ in pairs)
        if algos not in groups:
            title = "options of every --algo" if len(algos) == len(ALGOS) else f"--algo {', '.join(algos)} options"
            groups[algos] = p.add_argument_group(title)
        choices = tuple(dict.fromkeys(c for a in algos for c in ALGOS[a].choices.get(name, ())))  # ordered union
        _add_field(groups[algos], pairs, choices or None)
    p.set_defaults(func=_run_train, _owners={name: [a for a, _ in pairs] for name, pairs in fields_of.items()})

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
                   help="input architecture: a registered name (nat-gym list; e.g. DARTS_V2), a JSON file, the "
                        "compact string form or a DARTS / NAT 'Genotype(...)' string (quote it)")  # fmt: skip
    p.add_argument("--policy", required=True, help="trainer checkpoint (OUT/checkpoint.pt of nat-gym train --algo nat)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--samples", type=int_at_least(1), default=10,
                      help="candidates sampled from the policy (default: 10)")
    mode.add_argument("--argmax", action="store_true",
                      help="take the most likely op of every edge instead of sampling (one candidate, deterministic)")
    p.add_argument("--supernet", default=None,
                   help="score the candidates with this supernet (a train-supernet checkpoint or a trainer "
                        "checkpoint; default: the supernet stored in the --policy checkpoint)")  # fmt: skip
    p.add_argument("--seed", type=int_at_least(0), default=0, help="seed of the sampling (default: 0)")
    p.add_argument("--out", default="runs/transform",
                   help="folder for transform.json and transform.png (default: runs/transform; '' writes nothing)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda (default: auto)")
    p.add_argument("--json", action="store_true", help="also print the result as JSON")
    p.set_defaults(func=_run_transform)

    from agents.bench.cli import register as register_bench

    register_bench(sub)  # nat-gym bench, nat-gym validate


def _run_train(ns: argparse.Namespace) -> int:
    from nat_gym.cli_args import as_flag, check_out_folder
    from nat_gym.errors import ConfigError

    spec = ALGOS[ns.algo]
    names = {f.name for f in algo_fields(spec)} - set(spec.fixed)
    stray = sorted(k for k, algos in ns._owners.items() if hasattr(ns, k) and ns.algo not in algos)
    if stray:
        raise ConfigError(f"--algo {ns.algo}: flags {['--' + s.replace('_', '-') for s in stray]} do not apply to it")
    module = importlib.import_module(spec.module)
    args_cls = getattr(module, spec.args_class)
    try:
        args = args_cls(**{k: getattr(ns, k) for k in names if hasattr(ns, k)}, **spec.fixed)
        check_out_folder(getattr(args, "out", None))
        getattr(module, spec.runner)(args, resume=ns.resume)
    except ConfigError as e:
        raise ConfigError(as_flag(str(e), names)) from None
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
