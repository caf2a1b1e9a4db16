"""``nat-gym bench`` and ``nat-gym validate`` end to end through the command line (tiny supernet, two inputs, tiny
budgets), resuming, the report rebuilt from the CSVs, and the statistics on rows whose answer is known."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nat_gym import genotypes as named
from nat_gym import rules as rule_sets
from nat_gym.cli import main
from nat_gym.errors import ConfigError
from nat_gym.supernet.checkpoint import save_checkpoint
from nat_gym.supernet.config import SupernetConfig
from nat_gym.supernet.model import Supernet

pytest.importorskip("rliable")
pytest.importorskip("optuna")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """One benchmark of both protocols, 2 algorithms x 2 seeds each, run through ``nat_gym.cli.main``; ``nat`` also
    runs per-instance (best-of-K samples of the policies its amortised runs trained)."""
    root = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    cfg = SupernetConfig(C=4, layers=3, ops=rule_sets.get("nat++").ops, num_classes=10, in_channels=1)
    supernet = save_checkpoint(root / "tiny.pt", Supernet(cfg))
    inputs = root / "inputs.json"
    inputs.write_text(json.dumps({"inputs": {"VGG": "VGG", "DARTS_V2": "DARTS_V2"}}))
    out = root / "out"
    argv = ["bench", "--algos", "nat", "identity", "random", "evolution", "--seeds", "0", "1",
            "--budget", "amortised=6", "per-instance=5", "--checkpoints", "amortised=2", "per-instance=2",
            "--samples", "2", "--tasks", f"amortised={inputs}", f"per-instance={inputs}", "--supernet", str(supernet),
            "--hyperparams", "nat.lift_dim=16", "nat.hidden_dim=8", "evolution.population_size=3",
            "evolution.sample_size=2", "--reps", "50", "--no-progress", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    return {"root": root, "out": out, "argv": argv, "supernet": str(supernet)}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _timeless(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The rows without their wall-clock columns, in a fixed order (what must not depend on how the runs ran)."""
    timing = {"seconds", "wall_seconds"}
    return sorted(({k: v for k, v in r.items() if k not in timing} for r in rows),
                  key=lambda r: json.dumps(r, sort_keys=True))  # fmt: skip


@pytest.mark.slow
def test_bench_writes_rows_summary_report_and_pictures(bench):
    out = bench["out"]
    rows = _rows(out / "results.csv")
    amortised = [r for r in rows if r["protocol"] == "amortised"]
    per_instance = [r for r in rows if r["protocol"] == "per-instance"]
    # amortised: 2 algos x 2 seeds x 2 checkpoints x 2 inputs x 2 modes; per-instance: 3 x 2 x 2 checkpoints x 2
    assert len(amortised) == 32 and len(per_instance) == 24
    assert {r["algo"] for r in amortised} == {"nat", "identity"}
    assert {r["algo"] for r in per_instance} == {"nat", "random", "evolution"}
    assert {r["mode"] for r in amortised} == {"argmax", "best-of-2"}
    for r in rows:  # the equal budget: every run stops exactly at it (the floors spend nothing)
        if int(r["checkpoint"]) == int(r["budget"]):
            spent = 0 if r["algo"] == "identity" else int(r["budget"])
            assert int(r["evaluations"]) == spent
            assert r["stop"] == ("no-training" if r["algo"] == "identity" else "budget")
    assert all(float(r["reward"]) == 0.0 for r in amortised if r["algo"] == "identity")
    assert len({r["supernet"] for r in rows}) == 1
    summary = json.loads((out / "summary.json").read_text())
    for key in ("versions", "git", "machine", "config", "hyperparams", "pins", "jobs"):
        assert summary[key], key
    assert summary["versions"]["rliable"] and summary["versions"]["torch"]
    assert summary["config"]["hyperparams"]["amortised"]["nat"] == {"lift_dim": 16, "hidden_dim": 8}
    assert len(summary["jobs"]) == 10
    # each job's own commit and versions (summary.json's top-level ones are the last invocation's, which may have
    # run nothing: a folder filled in several sittings named one commit)
    assert all(j["git"] == summary["git"] and j["versions"] == summary["versions"] for j in summary["jobs"])
    assert summary["job_commits"] == [summary["git"]]
    report = (out / "report.md").read_text()
    for protocol in ("amortised", "per-instance"):
        assert f"## {protocol}" in report
        for name in ("aggregates", "curves", "profiles", "pareto"):
            png = out / f"{protocol}-{name}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert "**Winner:" in report and "| nat (best-of-2) |" in report and "| evolution |" in report
    assert sorted(p.name for p in (out / "policies").iterdir()) == ["nat-seed0.pt", "nat-seed1.pt"]


@pytest.mark.slow
def test_report_is_rebuilt_from_the_csvs_alone(bench):
    out = bench["out"]
    before = (out / "report.md").read_text()
    (out / "report.md").unlink()
    (out / "amortised-curves.png").unlink()
    assert main(["bench", "--report", str(out), "--reps", "50"]) == 0
    assert (out / "report.md").read_text() == before
    assert (out / "amortised-curves.png").is_file()


@pytest.mark.slow
def test_validate_checks_the_rows_the_report_shows(bench, tmp_path, capsys):
    """A run's CSV edited by hand: ``--report`` rebuilds results.csv with the report, so ``validate`` flags the edit
    (the report showed the edited reward while validate checked the old results.csv: "all hold")."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(bench["out"], out)
    path = out / "runs" / "per-instance" / "random-seed0.csv"
    rows = _rows(path)
    rows[-1]["reward"] = repr(float(rows[-1]["reward"]) + 0.5)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert main(["bench", "--report", str(out), "--reps", "50"]) == 0
    assert main(["validate", str(out), "--supernet", bench["supernet"], "--no-progress"]) == 1
    assert "1 findings" in capsys.readouterr().out


@pytest.mark.slow
def test_rerun_resumes_and_other_settings_are_refused(bench, capsys):
    out = bench["out"]
    stamp = (out / "runs" / "amortised" / "nat-seed0.csv").stat().st_mtime_ns
    assert main(bench["argv"]) == 0
    assert "bench: 0 runs" in capsys.readouterr().out
    assert (out / "runs" / "amortised" / "nat-seed0.csv").stat().st_mtime_ns == stamp
    changed = [a if a != "per-instance=5" else "per-instance=7" for a in bench["argv"]]
    assert main(changed) == 2
    assert "other settings" in capsys.readouterr().err


@pytest.mark.slow
def test_jobs_that_the_report_could_not_compare_are_refused_before_they_run(bench, capsys):
    """An algorithm added to a folder at another budget (or samples, checkpoints, task set, supernet, cost weight),
    or another seed of an entry under other hyper-parameters: refused before it runs (it ran, then the report of the
    folder failed with "unfinished or mixed runs", or mixed two settings in one entry)."""
    out = bench["out"]
    base = ["bench", "--tasks", f"amortised={bench['root'] / 'inputs.json'}",
            f"per-instance={bench['root'] / 'inputs.json'}", "--supernet", bench["supernet"], "--reps", "50",
            "--no-progress", "--out", str(out)]  # fmt: skip
    for argv, problem in (
        (["--protocol", "per-instance", "--algos", "local-search", "--seeds", "0", "--budget", "7", "--checkpoints",
          "2"], "per-instance random seed 0: budget 5 (now 7)"),
        (["--protocol", "amortised", "--algos", "random-valid", "--seeds", "0", "--budget", "6", "--checkpoints", "2",
          "--samples", "3"], "amortised identity seed 0: samples 2 (now 3)"),
        (["--protocol", "per-instance", "--algos", "evolution", "--seeds", "2", "--budget", "5", "--checkpoints", "2"],
         "per-instance evolution seed 0: hyperparams {'population_size': 3, 'sample_size': 2} (now {})"),
    ):  # fmt: skip
        before = sorted((out / "runs").rglob("*"))
        assert main([*base, *argv]) == 2
        err = capsys.readouterr().err
        assert "holds finished runs with other settings" in err and problem in err, err
        assert sorted((out / "runs").rglob("*")) == before


@pytest.mark.slow
def test_validate_accepts_the_rows_and_flags_tampered_ones(bench, capsys):
    out, supernet = bench["out"], bench["supernet"]
    assert main(["validate", str(out), "--supernet", supernet, "--no-progress"]) == 0
    assert "all hold" in capsys.readouterr().out
    rows = _rows(out / "results.csv")
    fields = list(rows[0])
    k = next(i for i, r in enumerate(rows) if r["protocol"] == "per-instance" and float(r["reward"]) != 0.0)
    changed = [dict(r) for r in rows]
    changed[k]["reward"] = repr(float(rows[k]["reward"]) + 1 / 360)
    # an invalid transition: an edge of the result becomes an op its source may not turn into (VGG: null -> conv)
    j = next(i for i, r in enumerate(rows) if r["instance_name"] == "VGG" and r["algo"] == "random")
    start = named.get("VGG")
    e = next(i for i, op in enumerate(start.ops) if op == "null")
    ops = list(named.resolve(rows[j]["result"]).ops)
    ops[e] = "conv_3x3"
    changed[j]["result"] = str(start.with_ops(ops))
    # rows of another env version or env id (validate checked neither; an unknown env id was gymnasium's traceback)
    v, u = [i for i in range(len(rows)) if i not in (j, k)][:2]
    changed[v]["env_version"] = "NATCell-v0 nat-gym 9.9"
    changed[u]["env_id"] = "NATFoo-v0"
    tampered = bench["root"] / "tampered.csv"
    with tampered.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(changed)
    assert main(["validate", str(tampered), "--supernet", supernet, "--no-progress"]) == 1
    text = capsys.readouterr().out
    assert "4 findings" in text
    assert f"tampered.csv:{k + 2}" in text and "reward" in text and "re-scored" in text
    assert f"tampered.csv:{j + 2}" in text and "invalid transition" in text and "null -> conv_3x3" in text
    assert f"tampered.csv:{v + 2}: " in text and "env_version 'NATCell-v0 nat-gym 9.9' differs from the pinned" in text
    assert f"tampered.csv:{u + 2}: " in text and "env_id 'NATFoo-v0' differs from the pinned 'NATCell-v0'" in text
    # no rows: nothing holds (it said "0 rows re-scored, all hold")
    empty = bench["root"] / "empty.csv"
    empty.write_text(",".join(fields) + "\n")
    assert main(["validate", str(empty), "--supernet", supernet, "--no-progress"]) == 2
    assert "error: results: " in capsys.readouterr().err
    # another supernet: nothing can be compared
    torch.manual_seed(1)
    cfg = SupernetConfig(C=4, layers=3, ops=rule_sets.get("nat++").ops, num_classes=10, in_channels=1)
    other = save_checkpoint(bench["root"] / "other.pt", Supernet(cfg))
    assert main(["validate", str(out), "--supernet", str(other), "--no-progress"]) == 2
    assert "scored with supernet" in capsys.readouterr().err
    # the hint: pass --supernet with the checkpoint the benchmark used
    assert main(["validate", str(out), "--supernet", supernet, "--sample", "4", "--no-progress"]) == 0


@pytest.mark.slow
def test_sb3_algorithms_stop_at_the_budget_validate_and_resume(bench, capsys):
    """The SB3 baselines as amortised entries: maskable_ppo trains in NATCell-v0 and dqn in NATEdge-v0 (its own env;
    its transformations are scored on the task set's NATCell-v0); each stops at exactly the budget, its rows
    validate, a rerun skips it, and dqn refuses --env NATCell-v0."""
    from agents.sb3.trainer import load_model

    out = bench["root"] / "sb3"
    argv = ["bench", "--protocol", "amortised", "--algos", "maskable_ppo", "dqn", "--seeds", "0",
            "--budget", "amortised=9", "--checkpoints", "amortised=2", "--samples", "2",
            "--tasks", f"amortised={bench['root'] / 'inputs.json'}", "--supernet", bench["supernet"],
            "--hyperparams", "maskable_ppo.n_steps=4", "maskable_ppo.batch_size=4", "dqn.learning_starts=8",
            "--reps", "50", "--no-progress", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    rows = _rows(out / "results.csv")
    assert len(rows) == 2 * 2 * 2 * 2  # 2 algos x 2 checkpoints x 2 inputs x 2 modes
    assert {r["env_id"] for r in rows} == {"NATCell-v0"}  # scored on the task set's env
    for r in rows:
        if r["checkpoint"] == "9":
            assert (r["evaluations"], r["stop"]) == ("9", "budget")
    for algo, env_id in (("maskable_ppo", "NATCell-v0"), ("dqn", "NATEdge-v0")):
        meta = json.loads((out / "runs" / "amortised" / f"{algo}-seed0.json").read_text())
        assert meta["settings"]["env_id"] == env_id and meta["evaluations"] == 9
        _, args = load_model(out / "policies" / f"{algo}-seed0.pt")
        assert (args.algo, args.env) == (algo, env_id)
    assert main(["validate", str(out), "--supernet", bench["supernet"], "--no-progress"]) == 0
    assert "all hold" in capsys.readouterr().out
    stamp = (out / "runs" / "amortised" / "dqn-seed0.csv").stat().st_mtime_ns
    assert main(argv) == 0
    assert "bench: 0 runs" in capsys.readouterr().out
    assert (out / "runs" / "amortised" / "dqn-seed0.csv").stat().st_mtime_ns == stamp
    assert main([*argv, "--env", "NATCell-v0"]) == 2
    assert "dqn trains in NATEdge-v0, not NATCell-v0" in capsys.readouterr().err

    # per-instance: best-of-K samples of the saved SB3 policies (dqn's played edge by edge in NATEdge-v0)
    inputs = bench["root"] / "inputs.json"
    assert main(["bench", "--protocol", "per-instance", "--algos", "maskable_ppo", "dqn", "--seeds", "0",
                 "--budget", "per-instance=4", "--checkpoints", "per-instance=2", "--tasks", f"per-instance={inputs}",
                 "--supernet", bench["supernet"], "--reps", "50", "--no-progress", "--out", str(out)]) == 0  # fmt: skip
    per_instance = [r for r in _rows(out / "results.csv") if r["protocol"] == "per-instance"]
    assert len(per_instance) == 2 * 2 * 2  # 2 algos x 2 checkpoints x 2 inputs
    assert {r["algo"] for r in per_instance} == {"maskable_ppo", "dqn"}
    for r in per_instance:
        assert r["env_id"] == "NATCell-v0" and int(r["evaluations"]) <= 4 and float(r["reward"]) >= 0.0
    assert main(["validate", str(out), "--supernet", bench["supernet"], "--no-progress"]) == 0
    # the loaded policy is the trained one: its argmax repeats the amortised run's final argmax transformations
    from agents.bench.algorithms import load_policy
    from nat_gym.envs import tasks

    task = tasks.get(str(inputs))
    final = {(r["algo"], r["instance_name"]): r["result"] for r in rows if r["mode"] == "argmax" and r["checkpoint"] == "9"}
    rules = rule_sets.get(task.rules)
    for algo in ("maskable_ppo", "dqn"):
        policy = load_policy(algo, out / "policies" / f"{algo}-seed0.pt", task)
        actions = policy.actions(list(task.inputs), deterministic=True, rng=np.random.default_rng(0))
        assert actions.shape == (2, task.inputs[0].num_edges) and actions.dtype == np.int64
        got = [str(rules.apply_indices(g, a)[0]) for g, a in zip(task.inputs, actions)]
        assert got == [final[(algo, name)] for name in task.input_names]
    # another algorithm's policy under this one's name is refused (it was sampled and its rows labelled maskable_ppo)
    renamed = bench["root"] / "renamed" / "maskable_ppo-seed0.pt"
    renamed.parent.mkdir()
    renamed.write_bytes((out / "policies" / "dqn-seed0.pt").read_bytes())
    with pytest.raises(ConfigError, match="holds a dqn policy, not a maskable_ppo one"):
        load_policy("maskable_ppo", renamed, task)
    # a task set of another cell size: one short line saying which (it was both spaces printed in full)
    from nat_gym.sampling import random_genotype

    ops = [o for o in rule_sets.get("nat++").ops if o != "null"]
    small = bench["root"] / "steps3.json"
    small.write_text(json.dumps({"inputs": [str(random_genotype(k, 3, ops)) for k in range(2)], "steps": 3}))
    with pytest.raises(ConfigError) as err:
        load_policy("maskable_ppo", out / "policies" / "maskable_ppo-seed0.pt", tasks.get(str(small)))
    assert str(err.value).endswith(f"maskable_ppo-seed0.pt' was trained on cells of 8 edges and 13 candidate ops; "
                                   f"task set file:{small} has cells of 6 edges and 13 candidate ops (NATCell-v0, "
                                   "3 steps, rules nat++)")  # fmt: skip


def test_building_the_parser_imports_no_torch():
    code = "import sys; from nat_gym.cli import build_parser; build_parser(); " \
           "print(sorted(m for m in ('torch', 'optuna', 'rliable') if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert run.stdout.strip() == "[]", run.stderr


def test_bench_arguments_are_checked(tmp_path):
    from agents.bench.cli import _run_bench
    from nat_gym.cli import build_parser

    with pytest.raises(SystemExit):
        main(["bench", "--protocol", "sideways"])
    for argv, message in (
        (["bench", "--algos", "nope", "--budget", "5"], "--algos"),
        (["bench", "--algos", "random", "--protocol", "amortised", "--budget", "5"], "--algos"),
        (["bench", "--protocol", "per-instance"], "--budget"),
        (["bench", "--budget", "many"], "--budget"),
        (["bench", "--budget", "sideways=5"], "--budget"),
        (["bench", "--algos", "random", "--protocol", "per-instance", "--budget", "5", "--hyperparams", "nat.lr=1"],
         "--hyperparams"),
        (["bench", "--protocol", "amortised", "--algos", "nat", "--env", "NATEdge-v0", "--budget", "3"],
         "--env: nat trains in NATCell-v0, not NATEdge-v0"),
        (["bench", "--budget", "5", "--checkpoints", "per-instance=0"],
         "--checkpoints: expected a positive number of checkpoints for per-instance, got 0"),
        # the per-instance task set is checked before the amortised runs (they ran, then the typo was found)
        (["bench", "--algos", "identity", "random", "--budget", "5", "--tasks", "per-instance=typo.json",
          "--supernet", str(tmp_path / "none.pt")], "--tasks: per-instance: task set: no such file 'typo.json'"),
    ):  # fmt: skip
        with pytest.raises(ConfigError, match=re.escape(message)):
            _run_bench(build_parser().parse_args([*argv, "--out", str(tmp_path)]))
    assert not (tmp_path / "runs").exists()
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    with pytest.raises(ConfigError, match=re.escape(f"--out: cannot create the folder '{a_file}': '{a_file}' is a file")):
        _run_bench(build_parser().parse_args(["bench", "--algos", "random", "--protocol", "per-instance", "--budget", "5",
                                              "--out", str(a_file)]))


def test_per_instance_hyperparams_are_checked_before_any_run(tmp_path):
    """A per-instance key that is unknown, of the wrong type or out of range is one line before the amortised runs
    start (policy sampling with chunk=0 looped for ever; other keys were a TypeError traceback, and a string such
    as 'maybe' for a bool was taken as true)."""
    from agents.bench.cli import _run_bench
    from nat_gym.cli import build_parser

    for hp, message in (("ppo.chunk=0", "chunk: expected an integer >= 1, got 0"),
                        ("ppo.chunk=1.5", "chunk: expected an integer, got 1.5"),
                        ("ppo.argmax_first=2", "argmax_first: expected true or false"),
                        ("nat.bogus=1", r"per-instance nat: unknown keys \['bogus'\]; allowed: \['argmax_first', 'chunk'\]"),
                        ("evolution.population=3", r"per-instance evolution: unknown keys \['population'\]"),
                        ("evolution.population_size=abc", "per-instance evolution: population_size: expected an "
                         "integer, got 'abc'"),
                        ("ddpnas.temperature=hot", "per-instance ddpnas: temperature: expected a number, got 'hot'"),
                        ("local-search.first_improvement=maybe", "per-instance local-search: first_improvement: "
                         "expected true or false, got 'maybe'")):  # fmt: skip
        argv = ["bench", "--algos", "ppo", "nat", "evolution", "ddpnas", "local-search", "--budget", "5", "--hyperparams",
                f"per-instance:{hp}",
                "--out", str(tmp_path / "out")]  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            _run_bench(build_parser().parse_args(argv))
        assert not (tmp_path / "out").exists()


def test_amortised_hyperparams_are_checked_before_any_run(tmp_path):
    """An amortised key that is unknown, fixed by the bench, of the wrong type or out of range, or a value SB3's
    constructor rejects, is one line naming --hyperparams and the algorithm before the first run (each surfaced
    when its job started: on the full board, hours in); the check leaves this process's threads and random streams
    as they were."""
    import random

    import numpy as np
    import torch

    from agents.bench.cli import _run_bench
    from nat_gym.cli import build_parser

    for hp, message in (("nat.bogus=1", r"--hyperparams: nat: unknown keys \['bogus'\]"),
                        ("nat-defaults.lr=abc", "--hyperparams: nat-defaults: lr: expected a number, got 'abc'"),
                        ("nat.m=0", "--hyperparams: nat: m: expected an integer >= 1, got 0"),
                        ("nat.seed=3", r"--hyperparams: \['seed'\] are fixed by the bench"),
                        ("identity.x=1", r"--hyperparams: IdentityAgent has none, got \['x'\]"),
                        ("ppo.policy=cnn", r"--hyperparams: ppo: policy: expected one of \['gcn', 'mlp'\]"),
                        ("a2c.n_stepz=3", r"--hyperparams: unknown keys \['n_stepz'\] for --algo a2c"),
                        ("maskable_ppo.n_steps=0", "--hyperparams: n_steps: expected an integer >= 1, got 0"),
                        ("ppo.learning_rate=abc", "--hyperparams: PPO rejects them"),
                        ("dqn.n_envs=2", r"--hyperparams: \['n_envs'\] are fixed by the bench")):  # fmt: skip
        argv = ["bench", "--protocol", "amortised", "--algos", "identity", "nat", "nat-defaults", "maskable_ppo", "ppo",
                "a2c", "dqn", "--budget", "5", "--hyperparams", hp, "--out", str(tmp_path / "out")]  # fmt: skip
        threads, states = torch.get_num_threads(), (random.getstate(), np.random.get_state()[1].copy(),
                                                      torch.get_rng_state())  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            _run_bench(build_parser().parse_args(argv))
        assert not (tmp_path / "out").exists()
        assert torch.get_num_threads() == threads and random.getstate() == states[0]
        assert (np.random.get_state()[1] == states[1]).all() and torch.equal(torch.get_rng_state(), states[2])


def test_nat_hyperparams_of_the_pinned_env_or_of_a_wrong_shape_are_one_line(tmp_path):
    """NAT keys the pinned environment decides (``supernet``, ``cost_weight``, ``data_root``, ``data_seed``: the
    trainer ignores them when given the bench's env, but its checkpoint kept them) are refused like ``seed``; Adam's
    ``betas`` given as one number or a word is one line (it was a TypeError / ValueError traceback)."""
    from agents.bench.cli import _run_bench
    from nat_gym.cli import build_parser

    for hp, message in (("nat.betas=0.5", r"--hyperparams: nat: betas: expected two numbers in \[0, 1\), got 0.5"),
                        ("nat.betas=ab", r"--hyperparams: nat: betas: expected two numbers"),
                        ("nat.cost_weight=0.5", r"--hyperparams: \['cost_weight'\] are fixed by the bench"),
                        ("nat.supernet=x.pt", r"--hyperparams: \['supernet'\] are fixed by the bench"),
                        ("nat-defaults.data_seed=3", r"--hyperparams: \['data_seed'\] are fixed by the bench")):  # fmt: skip
        argv = ["bench", "--protocol", "amortised", "--algos", "nat", "nat-defaults", "--budget", "5",
                "--hyperparams", hp, "--out", str(tmp_path / "out")]  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            _run_bench(build_parser().parse_args(argv))
        assert not (tmp_path / "out").exists()


def test_policies_pointing_at_a_benchmark_folder_get_a_hint_that_works(bench, tmp_path, capsys):
    """``--policies OUT`` (the amortised benchmark's folder, not its OUT/policies): the error names the folder that
    holds the policies (the hint said "its output folder", which is what was given), and following it works."""
    argv = ["bench", "--protocol", "per-instance", "--algos", "nat", "--seeds", "0", "--budget", "per-instance=2",
            "--checkpoints", "per-instance=1", "--tasks", f"per-instance={bench['root'] / 'inputs.json'}",
            "--supernet", bench["supernet"], "--reps", "50", "--no-progress", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main([*argv, "--policies", str(bench["out"])]) == 2
    hint = f"--policies {bench['out'] / 'policies'}"
    err = capsys.readouterr().err.strip()
    assert err.startswith("nat-gym bench: error: --policies: no policy") and err.endswith(hint), err
    assert main([*argv, *hint.split(" ", 1)]) == 0
    assert len(_rows(tmp_path / "out" / "results.csv")) == 2


def test_missing_policies_are_found_before_any_run(bench, tmp_path, capsys):
    """Per-instance without the amortised policy: on ``--ray`` the error names OUT/policies here (it named the
    worker's temporary folder, inside Ray's traceback); every seed's policy is checked before any run starts."""
    pytest.importorskip("ray")
    out = tmp_path / "out"
    argv = ["bench", "--ray", "--protocol", "per-instance", "--algos", "ppo", "--seeds", "0", "--budget", "2",
            "--tasks", f"per-instance={bench['root'] / 'inputs.json'}", "--supernet", bench["supernet"],
            "--no-progress", "--out", str(out)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nat-gym bench: error: --policies: no policy '{out / 'policies' / 'ppo-seed0.pt'}'; run "
                          "the amortised protocol first") and len(err.splitlines()) == 1, err  # fmt: skip
    # without Ray too, every seed's policy is checked before the first run (seed 0 ran, then seed 5 failed)
    argv = ["bench", "--protocol", "per-instance", "--algos", "nat", "--seeds", "0", "5", *argv[8:],
            "--policies", str(bench["out"] / "policies")]  # fmt: skip
    assert main(argv) == 2
    assert f"--policies: no policy '{bench['out'] / 'policies' / 'nat-seed5.pt'}'" in capsys.readouterr().err
    assert not out.exists()  # nothing was made (the refused command left an empty --out)


def test_an_unknown_nat_hyperparameter_is_one_line(bench, tmp_path, capsys):
    argv = ["bench", "--protocol", "amortised", "--algos", "nat", "--seeds", "0", "--budget", "4", "--tasks",
            f"amortised={bench['root'] / 'inputs.json'}", "--supernet", bench["supernet"], "--hyperparams",
            "nat.bogus=1", "--no-progress", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2
    assert "error: --hyperparams: nat: unknown keys ['bogus']; allowed: [" in capsys.readouterr().err


def _known_rows(seeds: int) -> list[dict]:
    """Per-instance rows whose answer is known: 'good' beats 'bad' on every input and seed."""
    rows = []
    rng = np.random.default_rng(0)
    for algo, shift in (("good", 0.05), ("bad", -0.05)):
        for seed in range(seeds):
            for c in (5, 10):
                for i in range(4):
                    rows.append({"protocol": "per-instance", "task_set": "t", "task_digest": "d", "env_id": "e",
                                 "env_version": "v", "rules": "r", "rules_digest": "x", "supernet": "s",
                                 "cost_weight": 0.0, "algo": algo, "mode": "best", "seed": seed, "budget": 10,
                                 "checkpoint": c, "instance": i, "instance_name": f"in{i}", "evaluations": c,
                                 "seconds": 0.1 * c, "stop": "budget" if c == 10 else "", "madds_saving": 0.3,
                                 "reward": shift * c / 10 + 0.01 * rng.standard_normal()})  # fmt: skip
    return rows


def test_statistics_find_the_better_algorithm():
    """Rows whose answer is known: 'good' beats 'bad' on every input and seed."""
    from agents.bench.stats import protocol_stats

    rows = _known_rows(5)
    s = protocol_stats(rows, "per-instance", reps=200)
    assert s.winner == "good" and s.budget == 10
    p, lo, hi = s.poi["bad"]
    assert p > 0.9 and lo > 0.5
    assert s.score_name == "normalised score" and np.all(s.best_known > 0.04)
    assert 1.0 >= s.point["good"]["iqm"] > 0.8 and s.point["bad"]["iqm"] < -0.8  # reward / best known per input
    assert s.point["good"]["gap"] < 0.2 < 1.8 < s.point["bad"]["gap"]
    assert s.point["good"]["reward"] == pytest.approx(np.mean([r["reward"] for r in rows if r["algo"] == "good"
                                                               and r["checkpoint"] == 10]))  # fmt: skip
    lo_iqm, hi_iqm = s.ci["good"]["iqm"]
    assert lo_iqm <= s.point["good"]["iqm"] <= hi_iqm
    assert [c[0] for c in s.curves["good"]] == [5.0, 10.0] and s.curves["good"][1][3] > s.curves["good"][0][3]
    amortised = [{**r, "protocol": "amortised", "mode": "argmax"} for r in rows]
    a = protocol_stats(amortised, "amortised", reps=200)
    assert a.winner == "good (argmax)" and a.score_name == "reward"  # one task: the test set, mean reward per run
    assert a.point["good (argmax)"]["mean"] == pytest.approx(s.point["good"]["reward"])
    assert a.point["bad (argmax)"]["gap"] == pytest.approx(np.mean(a.best_known) - a.point["bad (argmax)"]["mean"])
    mixed = [dict(r) for r in rows]
    mixed[0]["supernet"] = "other"
    with pytest.raises(ConfigError, match="different pins"):
        protocol_stats(mixed, "per-instance", reps=10)
    with pytest.raises(ConfigError, match="rows"):
        protocol_stats(rows[:-1], "per-instance", reps=10)
    other_budget = [{**r, "budget": 20} if r["algo"] == "bad" else r for r in rows]  # the message says what differs
    with pytest.raises(ConfigError, match=r"per-instance rows of different budgets \(10, 20 reward evaluations\)"):
        protocol_stats(other_budget, "per-instance", reps=10)


def test_a_report_of_one_seed_draws_no_verdict():
    """With one seed every bootstrap interval is a single point: the report said 'clearly better' on it."""
    from agents.bench.report import render_markdown
    from agents.bench.stats import protocol_stats

    for seeds, verdict in ((5, "]: clearly better."), (1, "]: one seed, so every interval is a single point")):
        rows = _known_rows(seeds)
        text = render_markdown([protocol_stats(rows, "per-instance", reps=50)], rows)
        assert verdict in text and (seeds > 1) == ("clearly better" in text), text
        assert f"budget 10 reward evaluations, {seeds} seed{'s' if seeds > 1 else ''}\n" in text


@pytest.mark.slow
def test_bench_on_ray_merges_the_same_rows_into_one_csv(bench, local_ray, tmp_path):
    """``--ray --jobs 2``: the runs spread over 2 Ray workers (the per-instance ``nat`` runs sample the policies the
    amortised ones trained there, sent back and forth); one results.csv with the rows of the serial benchmark; no
    temporary folder is left behind."""
    import tempfile

    from agents.bench.runner import RAY_JOB_FOLDER_PREFIX

    def job_folders():
        return set(Path(tempfile.gettempdir()).glob(RAY_JOB_FOLDER_PREFIX + "*"))

    before = job_folders()
    argv = [a if a != str(bench["out"]) else str(tmp_path / "ray") for a in bench["argv"]]
    assert main([*argv, "--ray", "--jobs", "2"]) == 0
    assert job_folders() <= before  # the workers' temporary policy folders are gone
    serial, on_ray = (_timeless(_rows(path / "results.csv")) for path in (bench["out"], tmp_path / "ray"))
    assert on_ray == serial and len(on_ray) == 56
    assert sorted(p.name for p in (tmp_path / "ray" / "policies").iterdir()) == ["nat-seed0.pt", "nat-seed1.pt"]
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert summary["config"]["ray"] is True and summary["jobs_run_this_invocation"] == 10


@pytest.mark.slow
def test_ray_workers_keep_stderr_quiet(bench, tmp_path):
    """``--ray``: the Ray workers silence torch_geometric's jit warning as the main process and the ``--jobs``
    processes do (each worker printed it when the GCN policy was loaded). A command of its own: its own Ray."""
    pytest.importorskip("ray")
    argv = ["bench", "--ray", "--jobs", "1", "--protocol", "per-instance", "--algos", "nat", "--seeds", "0",
            "--budget", "per-instance=2", "--checkpoints", "per-instance=1", "--tasks",
            f"per-instance={bench['root'] / 'inputs.json'}", "--supernet", bench["supernet"], "--policies",
            str(bench["out"] / "policies"), "--reps", "50", "--no-progress", "--out", str(tmp_path / "ray")]  # fmt: skip
    run = subprocess.run([sys.executable, "-m", "nat_gym.cli", *argv], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Warning" not in run.stderr, run.stderr
    assert len(_rows(tmp_path / "ray" / "results.csv")) == 2


@pytest.mark.slow
def test_jobs_in_parallel_processes_give_the_same_rows_and_a_quiet_stderr(bench, tmp_path):
    """``--jobs 2`` (spawned worker processes) writes the rows ``--jobs 1`` wrote (seeds derive from the seed and the
    input only; only wall-clock differs), and the workers' stderr carries no library warning."""
    out = tmp_path / "jobs2"
    inputs = bench["root"] / "inputs.json"
    argv = ["bench", "--protocol", "per-instance", "--algos", "random", "nat", "--seeds", "0", "1",
            "--budget", "per-instance=5", "--checkpoints", "per-instance=2", "--tasks", f"per-instance={inputs}",
            "--supernet", bench["supernet"], "--policies", str(bench["out"] / "policies"), "--reps", "50",
            "--no-progress", "--jobs", "2", "--out", str(out)]  # fmt: skip
    run = subprocess.run([sys.executable, "-m", "nat_gym.cli", *argv], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Warning" not in run.stderr, run.stderr
    serial = [r for r in _rows(bench["out"] / "results.csv")
              if r["protocol"] == "per-instance" and r["algo"] in ("random", "nat")]  # fmt: skip
    assert len(serial) == 16 and _timeless(_rows(out / "results.csv")) == _timeless(serial)


@pytest.mark.slow
def test_nat_defaults_entry_trains_with_the_train_commands_defaults(bench):
    """``nat`` keeps the papers' n = 1 and no keep prior; ``nat-defaults`` trains with ``nat-gym train --algo nat``'s
    defaults (n = 4, keep prior 3), stops at the budget, and its saved policy is sampled per instance."""
    from agents.nat_trainer import NATTrainerArgs, load_policy

    out = bench["root"] / "nat-defaults"
    inputs = bench["root"] / "inputs.json"
    assert main(["bench", "--algos", "nat-defaults", "--seeds", "0", "--budget", "amortised=12", "per-instance=4",
                 "--checkpoints", "amortised=1", "per-instance=2", "--samples", "2", "--tasks", f"amortised={inputs}",
                 f"per-instance={inputs}", "--supernet", bench["supernet"], "--hyperparams", "nat-defaults.lift_dim=16",
                 "nat-defaults.hidden_dim=8", "--reps", "50", "--no-progress", "--out", str(out)]) == 0  # fmt: skip
    _, saved = load_policy(out / "policies" / "nat-defaults-seed0.pt")
    defaults = NATTrainerArgs()
    assert (saved.n, saved.keep_prior) == (defaults.n, defaults.keep_prior) and defaults.keep_prior > 0
    _, paper = load_policy(bench["out"] / "policies" / "nat-seed0.pt")
    assert (paper.n, paper.keep_prior) == (1, 0.0)
    rows = _rows(out / "results.csv")
    assert {r["protocol"] for r in rows} == {"amortised", "per-instance"}
    assert all(r["evaluations"] == "12" and r["stop"] == "budget" for r in rows if r["protocol"] == "amortised")


def test_the_leaderboard_command_runs_every_algorithm():
    """docs/leaderboard.md's regenerating command parses and names every amortised and per-instance algorithm (an
    algorithm added to the bench must be added to the board)."""
    import re
    import shlex

    from agents.bench.algorithms import AMORTISED
    from agents.bench.protocols import per_instance_algos
    from nat_gym.cli import build_parser

    text = (Path(__file__).resolve().parents[1] / "docs" / "leaderboard.md").read_text()
    command = re.search(r"```bash\n(nat-gym bench .*?)\n(?=nat-gym validate)", text, re.S).group(1)
    argv = shlex.split(command.replace("\\\n", " "))[1:]
    ns = build_parser().parse_args(argv)
    assert sorted(ns.algos) == sorted(set(AMORTISED) | set(per_instance_algos()))
    assert ns.seeds == [0, 1, 2, 3, 4]


def test_an_unprefixed_policy_sampling_key_goes_to_the_per_instance_protocol():
    """``ppo.chunk=8`` names a key of per-instance policy sampling, so it goes there even though amortised (the first
    protocol) runs ``ppo`` too; every other unprefixed key goes to the first protocol that runs the algorithm."""
    from agents.bench.cli import parse_hyperparams

    both = {"amortised": ["ppo", "nat"], "per-instance": ["ppo", "nat", "random"]}
    got = parse_hyperparams(["ppo.chunk=8", "ppo.n_steps=4", "nat.argmax_first=False", "nat.lr=0.01",
                             "amortised:nat.n=2"], None, both)  # fmt: skip
    assert got == {"per-instance": {"ppo": {"chunk": 8}, "nat": {"argmax_first": False}},
                   "amortised": {"ppo": {"n_steps": 4}, "nat": {"lr": 0.01, "n": 2}}}  # fmt: skip
    assert parse_hyperparams(["ppo.chunk=8"], None, {"amortised": ["ppo"]}) == {"amortised": {"ppo": {"chunk": 8}}}


def test_hyperparameter_values_read_as_nat_gym_train_reads_them():
    """``--hyperparams`` values are Python literals, else YAML, as ``nat-gym train --hyperparams`` reads them:
    ``first_improvement=false`` is False (it was the string 'false', which the search took as true)."""
    from agents.bench.cli import parse_hyperparams
    from agents.bench.protocols import per_instance_args

    algos = {"per-instance": ["local-search", "nat"]}
    got = parse_hyperparams(["local-search.first_improvement=false", "local-search.start=random",
                             "nat.argmax_first=no", "nat.chunk=[8"], None, algos)  # fmt: skip
    assert got == {"per-instance": {"local-search": {"first_improvement": False, "start": "random"},
                                    "nat": {"argmax_first": False, "chunk": "[8"}}}  # fmt: skip
    assert per_instance_args("local-search", got["per-instance"]["local-search"]).first_improvement is False
    with pytest.raises(ConfigError, match="chunk: expected an integer, got '\\[8'"):
        per_instance_args("nat", got["per-instance"]["nat"])


@pytest.mark.slow
def test_ctrl_c_stops_parallel_jobs_and_the_rerun_finishes_the_rest(bench, tmp_path):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) during ``--jobs 2`` stops the benchmark: the
    queued jobs do not run (the pool ran every queued job to the end, then printed the traceback), the command says
    so in one line (exit code 130). The same command then runs only the jobs that had not finished: every job once,
    no row lost or doubled."""
    import signal
    import time

    out = tmp_path / "out"
    seeds = [str(s) for s in range(8)]
    argv = [sys.executable, "-m", "nat_gym.cli", "bench", "--protocol", "per-instance", "--algos", "random",
            "--seeds", *seeds, "--budget", "per-instance=40", "--checkpoints", "per-instance=1", "--tasks",
            f"per-instance={bench['root'] / 'inputs.json'}", "--supernet", bench["supernet"], "--reps", "50",
            "--no-progress", "--jobs", "2", "--out", str(out)]  # fmt: skip

    def session():  # a terminal's Ctrl-C reaches every process of its group; SIGINT not inherited as ignored
        os.setsid()
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    run = subprocess.Popen(argv, cwd=Path(__file__).resolve().parents[1], preexec_fn=session,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    runs = out / "runs" / "per-instance"
    while run.poll() is None and not list(runs.glob("*.json")):
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGINT)
    _, err = run.communicate(timeout=600)
    assert run.returncode == 130 and err.strip() == "nat-gym bench: interrupted", err  # one line, no traceback
    finished = sorted(p.stem for p in runs.glob("*.json"))
    assert 1 <= len(finished) <= 3, finished  # those done before Ctrl-C (it ran 6 of 8)
    assert not list(runs.glob(".*.tmp"))  # the interrupted jobs' files were never half-written
    stamps = {p.name: p.stat().st_mtime_ns for p in runs.glob("*.json")}
    again = subprocess.run(argv, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"bench: {len(seeds) - len(finished)} runs" in again.stdout
    assert all(p.stat().st_mtime_ns == stamps[p.name] for p in runs.glob("*.json") if p.name in stamps)
    rows = _rows(out / "results.csv")
    assert sorted(int(r["seed"]) for r in rows) == sorted(2 * list(range(8)))  # 2 inputs per seed, each once


def test_help_names_the_hyperparameters_of_every_algorithm():
    """``bench --help`` says how values are read and which keys every algorithm takes (it named nat's only, not
    nat-defaults', the SB3 baselines' or the floors')."""
    from agents.bench.algorithms import AMORTISED
    from agents.search import SEARCHES

    run = subprocess.run([sys.executable, "-m", "nat_gym.cli", "bench", "--help"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], env={**os.environ, "COLUMNS": "10000"}, timeout=120)  # fmt: skip
    line = next(x for x in run.stdout.splitlines() if "Keys: " in x)
    keys = line.split("Keys: ", 1)[1]
    assert "Values: Python literals, else YAML" in line
    named = {name.strip() for part in keys.split(";") for name in part.split(":")[0].split(",")}
    assert set(AMORTISED) | set(SEARCHES) <= named, named
