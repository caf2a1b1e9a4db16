"""``nat-gym bench`` and ``nat-gym validate`` (registered by :func:`agents.cli.register`, the ``nat_gym.commands``
entry point of the agents). Building the parser imports neither torch nor the algorithms."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nat_gym.cli_args import check_out_folder, float_at_least, int_at_least
from nat_gym.errors import ConfigError

__all__ = ["register", "parse_per_protocol", "parse_hyperparams"]

PROTOCOL_CHOICES = ("amortised", "per-instance", "both")


def parse_per_protocol(values: list[str] | None, name: str, kind: type, protocols: list[str],
                       default: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """``["100"]`` (every protocol) or ``["amortised=2000", "per-instance=100"]`` -> ``{protocol: value}``."""
    out = {p: default[p] for p in protocols if p in default}
    for v in values or []:
        key, sep, text = v.rpartition("=")
        targets = [key] if sep else protocols
        if sep and key not in PROTOCOL_CHOICES[:2]:
            raise ConfigError(f"--{name}: expected VALUE or PROTOCOL=VALUE with PROTOCOL amortised or per-instance, "
                              f"got {v!r}")  # fmt: skip
        try:
            parsed = kind(text)
        except ValueError:
            raise ConfigError(f"--{name}: {text!r} is not a valid {kind.__name__}") from None
        out.update({p: parsed for p in targets})
    return out


def parse_hyperparams(items: list[str] | None, file: str | None, algos: dict[str, list[str]]) -> dict[str, dict]:
    """``[PROTOCOL:]ALGO.KEY=VALUE`` overrides (values as Python literals, else YAML, as ``nat-gym train`` reads
    them), on top of a YAML/JSON file ``{protocol: {algo: {key: value}}}``. Without ``PROTOCOL:`` an override goes to
    the first protocol (amortised, then per-instance) that runs ``ALGO``, except a key of policy sampling (``chunk``,
    ``argmax_first``: no training argument has these names), which goes to per-instance when it runs ``ALGO``."""
    from dataclasses import fields

    from agents.sb3.hyperparams import parse_value
    from agents.search.policy_search import PolicySearchArgs

    sampling = {f.name for f in fields(PolicySearchArgs)}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    if file:
        path = Path(file)
        if not path.is_file():
            raise ConfigError(f"--hyperparams-file: no such file {file!r}")
        text = path.read_text()
        if path.suffix in (".yml", ".yaml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
        if not isinstance(data, dict) or any(p not in PROTOCOL_CHOICES[:2] or not isinstance(v, dict)
                                             for p, v in data.items()):  # fmt: skip
            raise ConfigError(f"--hyperparams-file: expected {{protocol: {{algo: {{key: value}}}}}}, got {data!r}")
        out = {p: {a: dict(kv) for a, kv in v.items()} for p, v in data.items()}
    for item in items or []:
        head, sep, value = item.partition("=")
        protocol, _, path = head.rpartition(":")
        algo, dot, key = path.partition(".")
        if not sep or not dot or not key:
            raise ConfigError(f"--hyperparams: expected [PROTOCOL:]ALGO.KEY=VALUE, got {item!r}")
        if not protocol:
            order = ("per-instance", "amortised") if key in sampling else ("amortised", "per-instance")
            protocol = next((p for p in order if algo in algos.get(p, [])), "")
        if algo not in algos.get(protocol, []):
            raise ConfigError(f"--hyperparams: {item!r} names an algorithm that no benchmarked protocol runs "
                              f"(they run {algos})")  # fmt: skip
        out.setdefault(protocol, {}).setdefault(algo, {})[key] = parse_value(value)
    return out


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``bench`` and ``validate`` to the ``nat-gym`` subcommands."""
    import dataclasses

    from agents.bench.algorithms import AMORTISED
    from agents.search import SEARCHES
    from agents.search import load as load_search
    from agents.search.policy_search import PolicySearchArgs

    keys = "; ".join(f"{k}: {', '.join(f.name for f in dataclasses.fields(load_search(k)[1])) or 'none'}"
                     for k in SEARCHES)  # fmt: skip
    sb3 = ", ".join(k for k, v in AMORTISED.items() if v.module == "agents.bench.sb3_agents")
    keys += (f"; per-instance policy sampling: {', '.join(f.name for f in dataclasses.fields(PolicySearchArgs))}; "
             "nat, nat-defaults: the flags of nat-gym train --algo nat (lr, m, n, entropy_coef, variant, ...); "
             f"{sb3}: policy and the keys of agents/hyperparams/ALGO.yml (n_steps, learning_rate, policy_kwargs, "
             f"...); {', '.join(k for k, v in AMORTISED.items() if not v.trains)}: none")  # fmt: skip
    amortised = ", ".join(f"{k} ({v.help})" for k, v in AMORTISED.items())
    searches = ", ".join(f"{k} ({v.help})" for k, v in SEARCHES.items())
    policies = ", ".join(k for k, v in AMORTISED.items() if v.loader)
    p = sub.add_parser(
        "bench",
        help="benchmark algorithms x seeds at equal budgets of reward evaluations, with robust statistics",
        description="Run algorithms x seeds on pinned task sets at an equal budget counted in reward evaluations (a "
        "new architecture scored; repeats are free), and report IQM, mean and optimality gap with 95% "
        "stratified-bootstrap CIs, probability of improvement, performance profiles, learning curves and a Pareto "
        "plot (rliable). Protocols: amortised (train on sampled inputs for the budget, then transform every test "
        "input zero-shot: argmax and best-of-K) and per-instance (search each input's best transformation within "
        "the budget). Writes OUT/results.csv (one row per algo, seed, evaluation checkpoint, input and mode, with "
        "what nat-gym validate needs to re-score it), OUT/summary.json, OUT/report.md and PNGs; finished runs are "
        "skipped, so the same command resumes an interrupted benchmark.",
    )
    p.add_argument("--env", default=None, choices=("NATCell-v0", "NATEdge-v0"),
                   help="environment the amortised agents train in (NATEdge-v0: edge by edge); every chosen "
                        "algorithm must support it. Results are always scored on the task set's environment "
                        "(default: the task set's environment for the algorithms that can train in it, NATEdge-v0 "
                        "for dqn)")  # fmt: skip
    p.add_argument("--protocol", choices=PROTOCOL_CHOICES, default="both",
                   help="amortised, per-instance, or both (amortised first: per-instance policy sampling uses its "
                        "trained policies) (default: both)")  # fmt: skip
    p.add_argument("--algos", nargs="+", metavar="ALGO", default=None,
                   help=f"algorithms (default: all of each protocol). Amortised: {amortised}. Per-instance: "
                        f"{searches}; and {policies} (best-of-K samples of the policy the amortised protocol trained "
                        "with the same seed). A name runs in every chosen protocol that knows it")  # fmt: skip
    p.add_argument("--seeds", nargs="+", type=int_at_least(0), default=[0, 1, 2, 3, 4], help="seeds (default: 0 1 2 3 4)")
    p.add_argument("--budget", nargs="+", metavar="[PROTOCOL=]N", default=None,
                   help="reward evaluations per run: one number, or per protocol (amortised=2000 per-instance=100); "
                        "required unless --report")  # fmt: skip
    p.add_argument("--checkpoints", nargs="+", metavar="[PROTOCOL=]N", default=None,
                   help="evaluation checkpoints per run, evenly spaced up to the budget, each one a row "
                        "(default: amortised=4 per-instance=10)")  # fmt: skip
    p.add_argument("--tasks", nargs="+", metavar="PROTOCOL=TASKSET", default=None,
                   help="task set per protocol: a registered name or a JSON file of inputs (default: "
                        "amortised=digits/test-200-v0 per-instance=digits/named-v0)")  # fmt: skip
    p.add_argument("--samples", type=int_at_least(0), default=8,
                   help="K of the amortised best-of-K mode: sampled transformations per test input (default: 8; 0: "
                        "argmax only)")  # fmt: skip
    p.add_argument("--cost-weight", type=float_at_least(0.0), default=0.0,
                   help="the env's cost_weight: reward += weight * relative MAdds saving (the cost-aware variant; "
                        "default: 0, the papers' reward)")  # fmt: skip
    p.add_argument("--supernet", default=None,
                   help="supernet checkpoint that scores architectures (default: the task set's default supernet, "
                        "trained once and cached); its content hash is pinned in every row")  # fmt: skip
    p.add_argument("--hyperparams", nargs="+", metavar="[PROTOCOL:]ALGO.KEY=VALUE", default=None,
                   help="hyper-parameter overrides, e.g. nat.lr=0.001 evolution.population_size=10 "
                        "per-instance:nat.chunk=16 (recorded in summary.json); without PROTOCOL: the first protocol "
                        "that runs ALGO (amortised, then per-instance), per-instance for a key of policy sampling. "
                        f"Values: Python literals, else YAML (false, null). Keys: {keys}")  # fmt: skip
    p.add_argument("--hyperparams-file", default=None,
                   help="YAML or JSON file {protocol: {algo: {key: value}}}; --hyperparams override it")
    p.add_argument("--policies", default=None,
                   help="folder of the trained policies that per-instance policy sampling uses (default: "
                        "OUT/policies, written by the amortised protocol)")  # fmt: skip
    p.add_argument("--jobs", type=int_at_least(1), default=1,
                   help="runs in parallel: processes, or Ray workers with --ray (default: 1)")
    p.add_argument("--ray", action="store_true",
                   help="spread the runs over --jobs Ray workers: a local Ray, or the cluster of --address / "
                   "RAY_ADDRESS; their results are merged into OUT/results.csv here (needs the extra ray; "
                   "--supernet must be a file every node can read, or the default, which each node builds once)")
    p.add_argument("--address", default=None,
                   help="with --ray: the Ray cluster (HOST:PORT of its head; default: RAY_ADDRESS, else this machine)")
    p.add_argument("--reps", type=int_at_least(1), default=1000, help="bootstrap replications of the CIs (default: 1000)")
    p.add_argument("--out", default="runs/bench", help="output folder (default: runs/bench)")
    p.add_argument("--report", metavar="DIR", default=None,
                   help="only rebuild DIR/results.csv, DIR/report.md and the PNGs from the CSVs in DIR/runs (no run)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_bench)

    p = sub.add_parser(
        "validate",
        help="re-score benchmark results on a fresh environment and flag any that do not hold",
        description="Re-score every row of a nat-gym bench results CSV (or the results.csv of a benchmark folder) "
        "on a fresh environment made from the row's pinned task set, and flag a reward, accuracy or MAdds saving "
        "outside --tolerance (rewards on the whole validation split are deterministic: exact by default), a "
        "transformation the rules do not allow, a start that is not the task set's input, a pin (env id and version, "
        "rules, task digest) other than the task set's, or more evaluations than the budget. Exit status 1 if "
        "anything is flagged.",
    )
    p.add_argument("results", help="a results CSV, or a benchmark output folder (its results.csv)")
    p.add_argument("--supernet", default=None,
                   help="the supernet checkpoint the benchmark used (default: the task set's default supernet); "
                        "its content hash must match the rows'")  # fmt: skip
    p.add_argument("--tolerance", type=float_at_least(0.0), default=0.0, help="allowed absolute difference (default: 0, exact)")
    p.add_argument("--sample", type=int_at_least(1), default=None, help="check this many random rows (default: all)")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="seed of --sample (default: 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_validate)


def _run_bench(ns: argparse.Namespace) -> int:
    from agents.bench.algorithms import AMORTISED
    from agents.bench.protocols import per_instance_algos
    from agents.bench.report import write_report

    if ns.report:
        path = write_report(ns.report, reps=ns.reps)
        print(f"bench: report rebuilt in {path}")
        return 0
    protocols = ["amortised", "per-instance"] if ns.protocol == "both" else [ns.protocol]
    known = {"amortised": list(AMORTISED), "per-instance": list(per_instance_algos())}
    if ns.algos is None:
        algos = {p: known[p] for p in protocols}
    else:
        unknown = [a for a in ns.algos if not any(a in known[p] for p in protocols)]
        if unknown:
            raise ConfigError(f"--algos: {unknown} run in none of {protocols}; known: {known}")
        algos = {p: [a for a in ns.algos if a in known[p]] for p in protocols}
        empty = [p for p in protocols if not algos[p]]
        if empty:
            raise ConfigError(f"--algos: none of {ns.algos} runs in {empty}; choose --protocol or add algorithms")
    if ns.address and not ns.ray:
        raise ConfigError("--address: a Ray cluster's address; add --ray to run the benchmark on it")
    if ns.ray:
        from nat_gym.cli_args import as_flag
        from nat_gym.distributed import RAY_MISSING, check_cluster, ray_available

        if not ray_available():  # the runs go to local processes instead
            import sys

            print(f"nat-gym bench: --ray: {RAY_MISSING}", file=sys.stderr)
            ns.ray = False
        else:
            try:
                check_cluster(ns.address)  # before any run starts
            except ConfigError as e:
                raise ConfigError(as_flag(str(e), {"address"})) from None
    if ns.budget is None:
        raise ConfigError("--budget: required (reward evaluations per run), e.g. --budget amortised=2000 "
                          "per-instance=100")  # fmt: skip
    check_out_folder(ns.out)
    try:
        info = _run(ns, protocols, algos)
    except ConfigError as e:  # the library's field names are the flags here (a Ray address of --ray included)
        from nat_gym.cli_args import as_flag

        raise ConfigError(as_flag(str(e), {"address", "policies", "hyperparams", "out", "algos", "tasks",
                                            "checkpoints", "env"})) from None  # fmt: skip
    print(f"bench: {info['jobs_run_this_invocation']} runs in {info['seconds_this_invocation']:.0f} s; results in "
          f"{Path(ns.out) / 'results.csv'}, report in {Path(ns.out) / 'report.md'}")  # fmt: skip
    return 0


def _run(ns: argparse.Namespace, protocols: list[str], algos: dict[str, list[str]]) -> dict[str, Any]:
    """:func:`~agents.bench.runner.run_bench` with the settings of the command line; returns its summary."""
    from agents.bench.runner import BenchConfig, run_bench

    defaults = BenchConfig.__dataclass_fields__
    config = BenchConfig(
        protocols=protocols, algos=algos, seeds=list(ns.seeds),
        budgets=parse_per_protocol(ns.budget, "budget", int, protocols, {}),
        checkpoints=parse_per_protocol(ns.checkpoints, "checkpoints", int, protocols,
                                       defaults["checkpoints"].default_factory()),
        task_sets=parse_per_protocol(ns.tasks, "tasks", str, protocols, defaults["task_sets"].default_factory()),
        out=ns.out, env_id=ns.env, samples=ns.samples, cost_weight=ns.cost_weight, supernet=ns.supernet,
        hyperparams=parse_hyperparams(ns.hyperparams, ns.hyperparams_file, algos), policies=ns.policies,
        jobs=ns.jobs, progress=not ns.no_progress, reps=ns.reps, ray=ns.ray, address=ns.address,
    )  # fmt: skip
    return run_bench(config)


def _run_validate(ns: argparse.Namespace) -> int:
    from agents.bench.validate import validate_path

    checked, findings = validate_path(ns.results, supernet=ns.supernet, tolerance=ns.tolerance, sample=ns.sample,
                                      seed=ns.seed, progress=not ns.no_progress)  # fmt: skip
    if not findings:
        print(f"validate: {checked} rows re-scored, all hold")
        return 0
    print(f"validate: {len(findings)} findings in {checked} rows:")
    for f in findings[:50]:
        print(f"  {f}")
    if len(findings) > 50:
        print(f"  ... and {len(findings) - 50} more")
    return 1
