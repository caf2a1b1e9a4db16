"""Every hint in an error message works when followed (issue 8, item 10).

Each test triggers an error, reads the hint out of the message (the command between backticks, the keyword
arguments of ``gym.make(...)``, the flag to add or drop) and does exactly that, with tiny budgets: a tiny supernet
stands in for the default one (same ops and steps, 4 channels, 3 cells), CIFAR is a fake folder in torchvision's
format, and a download writes that folder instead of fetching it. Then the thing that failed succeeds.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import shlex
import warnings
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from test_data import _fake_cifar10  # tests/test_data.py: a tiny cifar-10-batches-py folder

import nat_gym  # noqa: F401  (registers NATCell-v0)
from agents.gcn_policy import GCNPolicy
from agents.nat_trainer import NATTrainer, NATTrainerArgs, train
from agents.transform import transform
from nat_gym import genotypes
from nat_gym import rules as rule_sets
from nat_gym.cli import main
from nat_gym.cost import network_cost
from nat_gym.data import load_dataset
from nat_gym.errors import CheckpointError, ConfigError, DatasetNotFoundError, GenotypeError
from nat_gym.evaluator import CallableEvaluator
from nat_gym.supernet.checkpoint import save_checkpoint
from nat_gym.supernet.config import SupernetConfig
from nat_gym.supernet.model import Supernet
from nat_gym.supernet.train import resolve_device

SMALL = ["--op-embed-dim", "8", "--lift-dim", "16", "--hidden-dim", "8"]
TINY_TRAIN = ["--epochs", "1", "--policy-updates-per-epoch", "2", "--eval-inputs", "2", "--reward-images", "120",
              "--no-train-supernet", "--no-progress", "--device", "cpu", *SMALL]  # fmt: skip
TINY_SUPERNET = ["-C", "4", "-L", "3", "--epochs", "1", "--eval-archs", "0", "--final-archs", "2", "--no-progress",
                 "--device", "cpu"]  # fmt: skip


# ------------------------------------------------------------------------------------------------ helpers
def run(argv: list[str]) -> tuple[int, str]:
    """``nat-gym argv`` in process; returns (exit code, the one-line error or '')."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    return code, err.getvalue().strip()


def error_of(argv: list[str]) -> str:
    code, err = run(argv)
    assert code == 2 and len(err.splitlines()) == 1, (argv, code, err)
    return err


def commands(message: str) -> list[list[str]]:
    """The ``nat-gym ...`` commands a message quotes between backticks, as argv lists (without ``nat-gym``)."""
    found = [shlex.split(c)[1:] for c in re.findall(r"`(nat-gym [^`]+)`", message)]
    assert found, f"no command in {message!r}"
    return found


def option(message: str, flag: str) -> str:
    """The value the hint gives to ``flag`` (``--supernet runs/x/supernet.pt`` -> ``runs/x/supernet.pt``)."""
    m = re.search(rf"{re.escape(flag)} (\S+?)[,;)]?(?:\s|$)", message)
    assert m, f"no {flag} in {message!r}"
    return m.group(1)


def tiny_supernet(rules: str = "nat++", steps: int = 4) -> Supernet:
    torch.manual_seed(0)
    return Supernet(SupernetConfig(C=4, layers=3, steps=steps, ops=rule_sets.get(rules).ops, num_classes=10,
                                   in_channels=1))  # fmt: skip


@pytest.fixture
def tiny_default_supernet(monkeypatch):
    """The default supernet of any rule set / steps, but tiny and untrained (the real one trains for minutes)."""
    import nat_gym.supernet.default as default

    def tiny(config, **kwargs):
        torch.manual_seed(0)
        return Supernet(dataclasses.replace(config, C=4, layers=3))

    monkeypatch.setattr(default, "load_or_train", tiny)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the hints' relative runs/... folders land here
    return tmp_path


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> str:
    return str(save_checkpoint(tmp_path_factory.mktemp("sn") / "tiny.pt", tiny_supernet()))


@pytest.fixture(scope="module")
def policy_ckpt(tmp_path_factory, tiny_ckpt) -> str:
    """A NAT++ policy trained one tiny epoch (4 steps), as nat-gym train writes it."""
    out = tmp_path_factory.mktemp("policy") / "run"
    assert run(["train", "--supernet", tiny_ckpt, "--out", str(out), *TINY_TRAIN]) == (0, "")
    return str(out / "checkpoint.pt")


# ------------------------------------------------------------------------------------------------ nat-gym train
def test_train_hints(tmp_path, tiny_ckpt):
    out = str(tmp_path / "run")
    base = ["train", "--supernet", tiny_ckpt, "--out", out, *TINY_TRAIN]
    assert run(base)[0] == 0
    # "out: ... exists; pass --resume to continue that run or choose another --out"
    err = error_of(base)
    assert "pass --resume" in err and "another --out" in err
    assert run([*base, "--resume", "--epochs", "2"])[0] == 0  # (another --out: a fresh run, as at the end below)
    # a structural flag changed on resume: "... so use --variant fixed or another --out"
    err = error_of([*base, "--resume", "--epochs", "3", "--variant", "faithful"])
    assert run([*base, "--resume", "--epochs", "3", "--variant", option(err, "use --variant")])[0] == 0
    err = error_of([*base, "--resume", "--epochs", "3", "--rules", "nat"])
    assert run([*base, "--resume", "--epochs", "3", "--rules", option(err, "use --rules")])[0] == 0
    # "--out: nothing to resume, ... does not exist; check --out or drop --resume"
    typo = ["train", "--supernet", tiny_ckpt, "--out", str(tmp_path / "runn"), *TINY_TRAIN]
    err = error_of([*typo, "--resume"])
    assert "drop --resume" in err
    assert run(typo)[0] == 0


def test_trainer_python_hints(tmp_path, tiny_ckpt):
    env = gym.make("NATCell-v0", evaluator=CallableEvaluator(lambda g: 0.5))
    args = NATTrainerArgs(out=str(tmp_path / "a"), epochs=1, policy_updates_per_epoch=1, eval_inputs=2,
                          progress=False, device="cpu", op_embed_dim=8, lift_dim=16, hidden_dim=8)  # fmt: skip
    with pytest.raises(ConfigError, match="pass train_supernet=False"):
        NATTrainer(args, env=env)
    frozen = dataclasses.replace(args, train_supernet=False)
    train(frozen, env=env)  # the hint followed
    # resuming that run with a supernet to train: "... resume with train_supernet=False (--no-train-supernet)"
    changed = pytest.warns(UserWarning, match="differ from the checkpoint's values")  # another supernet, on purpose
    with changed, pytest.raises(CheckpointError, match="train_supernet=False") as info:
        train(dataclasses.replace(args, supernet=tiny_ckpt, epochs=2), resume=True)
    assert "--no-train-supernet" in str(info.value)
    with pytest.warns(UserWarning, match="differ from the checkpoint's values"):
        train(dataclasses.replace(frozen, supernet=tiny_ckpt, epochs=2), resume=True)
    with pytest.warns(UserWarning, match="differ from the checkpoint's values"):
        code, _ = run(["train", "--supernet", tiny_ckpt, "--out", str(tmp_path / "a"), "--resume", *TINY_TRAIN,
                       "--epochs", "3"])  # fmt: skip
    assert code == 0


# ------------------------------------------------------------------------------------------------ nat-gym transform
def test_transform_ops_outside_the_policy_rules(in_tmp, policy_ckpt, tiny_default_supernet):
    err = error_of(["transform", "--arch", "NASNet", "--policy", policy_ckpt])
    train_cmd, transform_cmd = commands(err)
    assert train_cmd[:5] == ["train", "--algo", "nat", "--rules", "nat++ext"] and "--steps" in train_cmd
    assert run([*train_cmd, *TINY_TRAIN])[0] == 0
    transform_cmd = [a if a != "..." else "NASNet" for a in transform_cmd]
    assert run([*transform_cmd, "--samples", "2"]) == (0, "")
    assert (in_tmp / "runs" / "transform" / "transform.png").is_file()


def test_transform_more_steps_than_the_supernet(in_tmp, policy_ckpt, tiny_default_supernet):
    err = error_of(["transform", "--arch", "ENAS", "--policy", policy_ckpt])  # 5 steps, a 4-step supernet
    (supernet_cmd,) = commands(err)
    assert run([*supernet_cmd, *TINY_SUPERNET])[0] == 0
    supernet = option(err, "then pass --supernet")
    assert Path(supernet).is_file()
    assert run(["transform", "--arch", "ENAS", "--policy", policy_ckpt, "--supernet", supernet, "--samples", "2"])[0] == 0
    # the other way out: "or train the policy with --steps 5"
    steps = option(err, "train the policy with --steps")
    assert run(["train", "--steps", steps, "--out", "runs/p5", *TINY_TRAIN])[0] == 0
    assert run(["transform", "--arch", "ENAS", "--policy", "runs/p5/checkpoint.pt", "--samples", "2"])[0] == 0


def test_transform_supernet_without_the_ops(in_tmp, policy_ckpt):
    nat_only = save_checkpoint(in_tmp / "nat.pt", tiny_supernet("nat"))
    darts = genotypes.get("DARTS_V2")
    arch = in_tmp / "pool5.json"  # DARTS_V2 with a 5x5 pool: a NAT++ op that NAT's vocabulary lacks
    arch.write_text(darts.with_ops(["max_pool_5x5", *darts.ops[1:]]).to_json())
    err = error_of(["transform", "--arch", str(arch), "--policy", policy_ckpt, "--supernet", str(nat_only)])
    (supernet_cmd,) = commands(err)
    assert run([*supernet_cmd, *TINY_SUPERNET])[0] == 0
    supernet = option(err, "then pass --supernet")
    assert run(["transform", "--arch", str(arch), "--policy", policy_ckpt, "--supernet", supernet, "--samples", "2"]) \
        == (0, "")  # fmt: skip


def test_transform_rules_of_the_policy(tmp_path, tiny_ckpt):
    env = gym.make("NATCell-v0", supernet=tiny_ckpt, reward_images=None, device="cpu")
    policy = GCNPolicy(rule_sets.get("nat++").num_ops, "fixed", op_embed_dim=8, lift_dim=16, hidden_dim=8)
    evaluator = env.unwrapped.evaluator
    with pytest.raises(ConfigError, match="the rule set the policy was trained with") as info:
        transform("DARTS_V2", policy, evaluator, rules="nat", samples=2)
    (name,) = ast.literal_eval(re.search(r"one of (\[.*?\])", str(info.value)).group(1))
    assert transform("DARTS_V2", policy, evaluator, rules=name, samples=2).rules == name


def test_transform_needs_a_trainer_checkpoint(tmp_path, tiny_ckpt, policy_ckpt):
    err = error_of(["transform", "--arch", "DARTS_V2", "--policy", tiny_ckpt])  # a supernet checkpoint
    assert "nat-gym train --algo nat writes OUT/checkpoint.pt" in err
    assert run(["transform", "--arch", "DARTS_V2", "--policy", policy_ckpt, "--samples", "2", "--out", ""])[0] == 0


# ------------------------------------------------------------------------------------------------ the environment
def _make_kwargs(message: str, env_id: str = "NATCell-v0") -> dict:
    """The keyword arguments of the ``gym.make(env_id, ..., ...)`` a message suggests."""
    m = re.search(rf"gym\.make\('{re.escape(env_id)}', (.*?), \.\.\.\)", message)
    assert m, message
    call = ast.parse(f"f({m.group(1)})", mode="eval").body
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}


@pytest.mark.parametrize(
    ("made_with", "genotype", "fixes"),
    [
        ({}, "NASNet", {"steps": 5, "rules": "nat++ext"}),  # issue 8: the hint said steps=5 and omitted the rules
        ({}, "ENAS", {"steps": 5}),
        ({"rules": "nat"}, "NAONet", {"steps": 5, "rules": "nat-ext"}),
        ({"steps": 5}, "AmoebaNet", {"rules": "nat++ext"}),
    ],
)
@pytest.mark.parametrize("env_id", ["NATCell-v0", "NATEdge-v0"])
def test_reset_genotype_hint(made_with, genotype, fixes, env_id):
    evaluator = CallableEvaluator(lambda g: float(len(set(g.ops))) / 20)
    env = gym.make(env_id, evaluator=evaluator, **made_with)
    with pytest.raises(GenotypeError) as info:
        env.reset(options={"genotype": genotype})
    kwargs = _make_kwargs(str(info.value), env_id)  # the hint names the env the user made
    assert kwargs == fixes
    fixed = gym.make(env_id, evaluator=evaluator, **{**made_with, **kwargs})  # "..." = the other arguments
    _, info = fixed.reset(options={"genotype": genotype})
    assert info["genotype"] == genotypes.get(genotype)
    if env_id == "NATCell-v0":
        fixed.step(fixed.unwrapped.rules.op_indices(genotypes.get(genotype)))
    else:
        for op in fixed.unwrapped.rules.op_indices(genotypes.get(genotype)):
            fixed.step(int(op))


def test_env_supernet_hints(in_tmp, tiny_ckpt, tiny_default_supernet):
    for kwargs in ({"rules": "nat++ext"}, {"steps": 5}):  # a supernet without the ops / with too few steps
        with pytest.raises(ConfigError) as info:
            gym.make("NATCell-v0", supernet=tiny_ckpt, **kwargs)
        err = str(info.value)
        (supernet_cmd,) = commands(err)
        assert run([*supernet_cmd, *TINY_SUPERNET])[0] == 0
        path = re.search(r"supernet='([^']+)'", err).group(1)
        gym.make("NATCell-v0", supernet=path, **kwargs).reset(seed=0)
        assert "supernet=None" in err
        gym.make("NATCell-v0", supernet=None, **kwargs).reset(seed=0)  # the default supernet of those rules / steps


def test_render_hint():
    env = gym.make("NATCell-v0", evaluator=CallableEvaluator(lambda g: 0.5))
    env.reset(seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert env.render() is None
    assert any("render_mode='ansi'" in str(w.message) for w in caught)
    for mode in ("ansi", "rgb_array"):
        env = gym.make("NATCell-v0", evaluator=CallableEvaluator(lambda g: 0.5), render_mode=mode)
        env.reset(seed=0)
        assert env.render() is not None


# ------------------------------------------------------------------------------------------------ data
def _fake_download(monkeypatch):
    """torchvision's CIFAR download, offline: it writes the tiny fake folder where the real one would go."""
    from torchvision.datasets import CIFAR10

    def download(self):
        if not (Path(self.root) / self.base_folder).exists():
            _fake_cifar10(Path(self.root), monkeypatch)

    monkeypatch.setattr(CIFAR10, "download", download)


def test_missing_cifar_hint_for_every_caller(tmp_path, monkeypatch):
    root = tmp_path / "data"
    messages = []
    code, err = run(["train", "--dataset", "cifar10", "--data-root", str(root), "--out", str(tmp_path / "r")])
    assert code == 2 and "--download" not in err.replace("nat-gym download", "")  # `train` has no --download
    messages.append(err)
    with pytest.raises(DatasetNotFoundError) as info:
        gym.make("NATCell-v0", dataset="cifar10", data_root=str(root))
    messages.append(str(info.value))
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar10", root=root)
    messages.append(str(info.value))
    assert len({tuple(commands(m)[0]) for m in messages}) == 1  # one hint for all of them
    _fake_download(monkeypatch)
    (download_cmd,) = commands(messages[0])
    assert download_cmd[:2] == ["download", "cifar10"]
    code, _ = run(download_cmd)
    assert code == 0
    data = load_dataset("cifar10", root=root)
    assert data.image_size == 32 and len(data.train) + len(data.valid) == 100


def test_cifar_hints_place_the_folder_and_refetch(tmp_path, monkeypatch):
    root = tmp_path / "data"
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar10", root=root)
    folder = re.search(r"place the extracted '([^']+)' folder in (\S+)\.$", str(info.value))
    _fake_cifar10(Path(folder.group(2)), monkeypatch)  # "or place the extracted 'cifar-10-batches-py' folder in ROOT"
    assert load_dataset("cifar10", root=root).num_classes == 10
    (root / folder.group(1) / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DatasetNotFoundError, match="corrupted") as info:
        load_dataset("cifar10", root=root)
    assert "Delete the folder" in str(info.value)
    import shutil

    shutil.rmtree(root / folder.group(1))
    _fake_download(monkeypatch)
    assert run(commands(str(info.value))[0])[0] == 0
    assert load_dataset("cifar10", root=root).num_classes == 10


def test_digits_split_hint():
    with pytest.raises(ConfigError, match="use a larger test_fraction"):
        load_dataset("digits", test_fraction=0.001)
    assert len(load_dataset("digits", test_fraction=0.01).test) >= 10


# ------------------------------------------------------------------------------------------------ small ones
def test_aux_head_hint():
    g = genotypes.get("DARTS_V2")
    with pytest.raises(ConfigError) as info:
        network_cost(g, auxiliary=True, input_size=16)
    lo, hi = map(int, re.search(r"inputs of (\d+)\.\.(\d+) pixels", str(info.value)).groups())
    for size in (lo, 32, hi):
        assert network_cost(g, auxiliary=True, input_size=size).aux_params > 0
    for size in (lo - 1, hi + 1):
        with pytest.raises(ConfigError):
            network_cost(g, auxiliary=True, input_size=size)
    assert network_cost(g, auxiliary=False, input_size=16).aux_params == 0
    assert run(["info", "DARTS_V2", "--input-size", "16"])[0] == 0  # "(no --auxiliary)"


def test_supernet_hints(tiny_ckpt):
    cfg = SupernetConfig(C=4, layers=3)
    with pytest.raises(ConfigError, match="either a config or keyword arguments"):
        Supernet(cfg, C=4)
    assert Supernet(cfg).config == Supernet(C=4, layers=3).config
    net = tiny_supernet()
    x, g = torch.randn(2, 1, 8, 8), genotypes.get("DARTS_V2")
    with pytest.raises(ConfigError, match=r"use torch\.no_grad\(\)"):
        net.forward_many(x, [g], cache={})
    with torch.no_grad():
        assert net.forward_many(x, [g], cache={}).shape == (1, 2, 10)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="use 'auto' or 'cpu'"):
            resolve_device("cuda")
        assert resolve_device("auto") == resolve_device("cpu") == torch.device("cpu")


def test_train_supernet_hints(in_tmp):
    def command(epochs: int) -> list[str]:
        return ["train-supernet", "--out", "sn", "-C", "4", "-L", "3", "--epochs", str(epochs), "--eval-archs", "0",
                "--final-archs", "2", "--no-progress", "--device", "cpu"]  # fmt: skip

    assert "drop --resume" in error_of([*command(1), "--resume"])
    assert run(command(1))[0] == 0  # the hint followed: without --resume
    assert "pass --resume" in error_of(command(2))
    assert run([*command(2), "--resume"])[0] == 0


def test_one_line_errors_point_to_help(capsys):
    err = error_of(["info", "DARTS_V2", "-C", "0"])
    help_argv = shlex.split(re.search(r"\(see nat-gym (.*)\)$", err).group(1))
    assert run(help_argv)[0] == 0
    assert "--channels" in capsys.readouterr().out
    err = error_of(["info"])
    assert "--per-op" in err and run(["info", "--per-op"])[0] == 0


def test_mask_error_grammar():
    from agents.bmsoftmax import MaskedCategorical
    from nat_gym.errors import MaskError

    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[2] = False
    with pytest.raises(MaskError) as info:
        MaskedCategorical(torch.zeros(3, 4), mask)
    assert "1 of 3 rows of the mask (shape [3, 4], dim=1) has no valid entry: row index (2,)" in str(info.value)
    mask[0] = False
    with pytest.raises(MaskError) as info:
        MaskedCategorical(torch.zeros(3, 4), mask)
    assert "2 of 3 rows of the mask (shape [3, 4], dim=1) have no valid entry; the first is row index (0,)" in str(
        info.value)  # fmt: skip
    with pytest.raises(MaskError, match=r"1 of 1 row of the mask \(shape \[4\], dim=0\) has no valid entry\. Every"):
        MaskedCategorical(torch.zeros(4), torch.zeros(4, dtype=torch.bool))
    # the same agreement for nan and all -inf rows (they read "1 of 3 rows hold nan", "1 of 1 rows have -inf")
    logits = torch.zeros(3, 4)
    logits[1, 0] = float("nan")
    with pytest.raises(MaskError, match=r"1 of 3 rows holds nan at a valid entry"):
        MaskedCategorical(logits, torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(MaskError, match=r"1 of 1 row has -inf at every valid entry"):
        MaskedCategorical(torch.full((4,), -float("inf")), torch.ones(4, dtype=torch.bool))


# One phrase of every error message that carries a hint, and the test above that follows it.
FOLLOWED = {
    "--cache PATH or --cache none": "test_eval_cache_that_cannot_be_opened_is_a_config_error",
    "check --out or drop --resume": "test_train_hints, test_train_supernet_hints, test_train_final_resume_hint",
    "pass --resume to continue": "test_train_hints, test_train_supernet_hints",
    "fixes the policy's structure, so use": "test_train_hints",
    "pass train_supernet=False": "test_trainer_python_hints",
    "resume with train_supernet=False": "test_trainer_python_hints",
    "use the rule set the policy was trained with": "test_transform_rules_of_the_policy",
    "Train a policy on rule set": "test_transform_ops_outside_the_policy_rules",
    "or train the policy with --steps": "test_transform_more_steps_than_the_supernet",
    "train a supernet with the ops of rule set": "test_transform_supernet_without_the_ops",
    "use inputs of 29..40 pixels a side": "test_aux_head_hint",
    "or place the extracted": "test_missing_cifar_hint_for_every_caller, test_cifar_hints_place_the_folder_and_refetch",
    "use a larger": "test_digits_split_hint",
    "Delete the folder and": "test_cifar_hints_place_the_folder_and_refetch",
    "Check the network connection and retry": "tests/test_cli_errors.py::test_download_offline_is_one_line",
    "; use gym.make(": "test_reset_genotype_hint",
    "use a supernet built with ops=": "test_env_supernet_hints",
    "use a supernet with steps >=": "test_env_supernet_hints",
    "pass render_mode=": "test_render_hint",
    "pass either a config or keyword arguments": "test_supernet_hints",
    "use torch.no_grad()": "test_supernet_hints",
    "use 'auto' or 'cpu'": "test_supernet_hints",
    "use 'cuda' or an index below": "tests/test_supernet_ddp.py::test_the_device_is_checked_before_any_process_starts",
    "resume with the same values": "test_train_final_resume_hint",
    "pass --supernet with the checkpoint the benchmark used":
        "tests/test_bench.py::test_validate_accepts_the_rows_and_flags_tampered_ones",
    "; use --env NATEdge-v0": "tests/test_sb3_train.py::test_sb3_hints",
    "; pass --n-timesteps": "tests/test_sb3_train.py::test_sb3_hints",
    "pass the same values or choose another --out": "tests/test_sb3_train.py::test_sb3_hints",
    "drop --address": "tests/test_cli_errors.py::test_ray_cluster_address_errors_are_one_line",
}


def test_train_final_resume_hint(tmp_path, capsys):
    out = str(tmp_path / "final")
    base = ["train-final", "ResBlock", "--dataset", "fake", "--channels", "4", "--layers", "3", "--batch-size", "32",
            "--out", out, "--no-progress", "--device", "cpu"]  # fmt: skip
    assert main([*base, "--epochs", "1"]) == 0
    assert main([*base, "--epochs", "1", "--lr", "0.5", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "resume with the same values" in err and "lr=" in err
    assert main([*base, "--epochs", "1", "--resume"]) == 0  # the hint followed: the saved values
    assert "resumed from" in capsys.readouterr().out
    # "--resume: nothing to resume, ... does not exist; check --out or drop --resume"
    typo = [out + "x" if a == out else a for a in base]
    assert main([*typo, "--epochs", "1", "--resume"]) == 2
    assert "drop --resume" in capsys.readouterr().err
    assert main([*typo, "--epochs", "1"]) == 0  # the hint followed: a fresh run


def test_every_hint_is_followed_by_a_test():
    """A guard for new hints: every error message (or warning) of nat_gym/ and agents/ that tells the user what to
    do holds a phrase of :data:`FOLLOWED`, whose test follows it; and every phrase still occurs in the sources."""
    root = Path(__file__).resolve().parents[1]
    verbs = re.compile(r"\b(use|pass|drop|delete|fetch|place|resume with|train)\b", re.I)
    messages = []
    for path in sorted([*(root / "nat_gym").rglob("*.py"), *(root / "agents").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            call = node.exc if isinstance(node, ast.Raise) else node
            if not isinstance(call, ast.Call) or (not isinstance(node, ast.Raise) and getattr(call.func, "attr", "")
                                                  != "warn"):  # fmt: skip
                continue
            # spaces between the pieces: a word of one piece never runs into the next (a verb stays a word)
            text = " ".join(s.value for s in ast.walk(call) if isinstance(s, ast.Constant) and isinstance(s.value, str))
            if verbs.search(text):
                messages.append((f"{path.relative_to(root)}:{node.lineno}", text))
    unfollowed = [(where, text) for where, text in messages if not any(p in text for p in FOLLOWED)]
    assert not unfollowed, unfollowed
    stale = [p for p in FOLLOWED if not any(p in text for _, text in messages)]
    assert not stale, stale
    assert len(messages) >= len(FOLLOWED)
