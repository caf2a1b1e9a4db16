"""Tests for the ``nat-gym`` command: the installed console script, run as a subprocess.

Every process imports torch (~3 s of CPU), so four commands are started together once per module and the tests read
their results; the other commands are checked in process through ``nat_gym.cli.main`` (the console script's entry
point), which runs the same code.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nat_gym import genotypes, rules
from nat_gym.cli import main
from nat_gym.rules import TransitionRules

_SCRIPT = Path(sys.executable).parent / "nat-gym"
NAT_GYM = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "nat_gym.cli"]

COMMANDS = {
    "help": ["--help"],
    "rules": ["rules", "--rules", "nat++"],
    "info": ["info", "DARTS_V2"],
    "info_nope": ["info", "NOPE"],
}

# valid targets per source under NAT++ (NAT.md section 2)
NAT_PP_COUNTS = {
    "conv_5x5": 13, "conv_3x3": 8, "conv_1x1": 3, "sep_conv_5x5": 10, "sep_conv_3x3": 6, "dil_conv_5x5": 8,
    "dil_conv_3x3": 5, "max_pool_5x5": 6, "avg_pool_5x5": 6, "max_pool_3x3": 4, "avg_pool_3x3": 4,
    "skip_connect": 2, "null": 2,
}  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    cwd = tmp_path_factory.mktemp("cli")
    procs = {
        key: subprocess.Popen(NAT_GYM + args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for key, args in COMMANDS.items()
    }
    out = {}
    for key, p in procs.items():
        stdout, stderr = p.communicate(timeout=120)
        out[key] = subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)
    return out


def test_help_lists_subcommands(runs) -> None:
    r = runs["help"]
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: nat-gym")
    listed = set(re.findall(r"^ {4}(\w[\w-]*) ", r.stdout, flags=re.M))
    assert {"info", "rules", "list"} <= listed, r.stdout


def test_rules_table(runs) -> None:
    r = runs["rules"]
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    rows = re.findall(r"^(\w+)\s+([x. ]+?)\s+\((\d+) targets\)$", r.stdout, flags=re.M)
    assert len(rows) == 13, r.stdout
    assert [op for op, _, _ in rows] == list(rules.NAT_PLUS_PLUS.ops)
    for op, cells, count in rows:
        assert int(count) == NAT_PP_COUNTS[op], op
        assert cells.split().count("x") == NAT_PP_COUNTS[op], op
        assert len(cells.split()) == 13


def test_info_darts_v2(runs) -> None:
    r = runs["info"]
    assert r.returncode == 0, r.stderr
    out = r.stdout
    g = genotypes.get("DARTS_V2")
    assert g.pretty() in out
    assert "node 2 = sep_conv_3x3(0) + sep_conv_3x3(1)" in out
    assert "node 5 = skip_connect(2) + max_pool_3x3(1)" in out
    m = re.search(r"^params: (\d+\.\d+)M \(([\d,]+)\)$", out, flags=re.M)
    assert m, out
    assert m.group(1).startswith("3.3")
    assert round(int(m.group(2).replace(",", "")) / 1e6, 2) == 3.35  # NAT.md: 3.35M, auxiliary head excluded
    assert re.search(r"^MAdds:\s+\d+\.\dM", out, flags=re.M)
    assert f"string: {g}" in out


def test_unknown_genotype_exits_2_with_one_line(runs) -> None:
    r = runs["info_nope"]
    assert r.returncode == 2
    assert r.stdout == ""
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("nat-gym info: error:") and "'NOPE'" in lines[0]
    for n in genotypes.names():
        assert n in lines[0]


# ------------------------------------------------------------------------------------------------ in process


def test_main_in_process(capsys) -> None:
    assert main(["info", "DARTS_V2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["string"] == str(genotypes.get("DARTS_V2"))
    assert round(data["params"] / 1e6, 2) == 3.35 and data["madds"] > 0
    assert main(["list"]) == 0
    assert capsys.readouterr().out.split() == list(genotypes.names())
    assert main(["rules", "--rules", "nat"]) == 0
    assert capsys.readouterr().out.count("targets)") == 11
    assert main(["info", str(genotypes.get("ENAS"))]) == 0  # the compact string form
    assert "node 6 = " in capsys.readouterr().out
    assert main(["info", "nope"]) == 2
    assert "registered" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main([])  # a subcommand is required
    assert info.value.code == 2


def test_rules_json_loads_back(capsys) -> None:
    assert main(["rules", "--rules", "nat++", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    loaded = TransitionRules.from_dict(data)
    assert loaded == rules.NAT_PLUS_PLUS
    assert loaded.name == "nat++"
    assert {k: len(v) for k, v in data["allowed"].items()} == NAT_PP_COUNTS
    for name in rules.names():
        assert main(["rules", "--rules", name, "--json"]) == 0
        assert TransitionRules.from_dict(json.loads(capsys.readouterr().out)) == rules.get(name)


def test_unknown_rule_set_exits_2(capsys) -> None:
    assert main(["rules", "--rules", "bogus"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nat-gym rules: error:") and "'bogus'" in lines[0]
    for n in rules.names():
        assert n in lines[0]
