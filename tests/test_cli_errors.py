"""Every command rejects nonsense with ONE line on stderr and exit code 2 (no traceback), before any work starts.

Each case runs the ``nat-gym`` entry point in process (``nat_gym.cli.main``, what the console script calls); a few
run the installed script as subprocesses, concurrently, to check the real process too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import pytest

from nat_gym.cli import main

_SCRIPT = Path(sys.executable).parent / "nat-gym"
NAT_GYM = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "nat_gym.cli"]


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's errors
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(argv: list[str], capsys, *fragments: str) -> str:
    code, out, err = run(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2, (argv, code, out, err)
    assert len(lines) == 1, (argv, err)
    assert "Traceback" not in err and err.startswith(f"nat-gym {argv[0]}: error: "), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


INFO_CASES = [
    (["-C", "0"], "--channels"), (["-C", "x"], "--channels"), (["-L", "2"], "--layers"), (["--classes", "1"], "--classes"),
    (["--input-size", "3"], "--input-size"), (["--in-channels", "0"], "--in-channels"), (["--madds", "flops"], "--madds"),
    (["--auxiliary", "--input-size", "16"], "auxiliary head"),
]  # fmt: skip


@pytest.mark.parametrize(("flags", "fragment"), INFO_CASES)
def test_info_bad_values(flags, fragment, capsys):
    assert_one_line_error(["info", "DARTS_V2", *flags], capsys, fragment)


def test_info_bad_architectures(capsys):
    assert_one_line_error(["info", "NOPE"], capsys, "'NOPE'", "accepted forms")
    assert_one_line_error(["info"], capsys, "arch:", "--per-op")
    assert_one_line_error(["info", "Genotype([('sep_conv_3x3', 0)"], capsys, "Genotype(")
    assert_one_line_error(["info", "missing.json"], capsys, "missing.json")


def test_rules_bad_value(capsys):
    assert_one_line_error(["rules", "--rules", "bogus"], capsys, "'bogus'")


TRAIN_CASES = [
    (["--epochs", "0"], "--epochs: expected an integer >= 1"), (["--epochs", "x"], "--epochs"),
    (["--m", "0"], "--m:"), (["--n", "0"], "--n:"), (["--steps", "0"], "--steps:"), (["--lr", "0"], "--lr:"),
    (["--lr", "nan"], "--lr:"), (["--lr", "-1e-3"], "--lr:"), (["--entropy-coef", "-0.1"], "--entropy-coef:"),
    (["--keep-prior", "-1"], "--keep-prior:"), (["--keep-prior", "inf"], "--keep-prior: expected a finite number >= 0"),
    (["--cost-weight", "-1"], "--cost-weight:"), (["--cost-weight", "inf"], "--cost-weight: expected a finite number"),
    (["--lr", "inf"], "--lr: expected a finite learning rate > 0"),
    (["--weight-decay", "-1"], "--weight-decay:"), (["--baseline-decay", "1"], "--baseline-decay:"),
    (["--betas", "1", "0.5"], "--betas:"), (["--supernet-lr", "0"], "--supernet-lr:"),
    (["--supernet-lr-min", "-1"], "--supernet-lr-min:"), (["--supernet-lr-min", "0.5"], "--supernet-lr-min:"),
    (["--supernet-momentum", "1.5"], "--supernet-momentum:"), (["--supernet-weight-decay", "-1"], "--supernet-weight"),
    (["--supernet-grad-clip", "0"], "--supernet-grad-clip:"), (["--supernet-batch-size", "0"], "--supernet-batch"),
    (["--threads", "0"], "--threads:"), (["--threads", "-1"], "--threads:"), (["--seed", "-1"], "--seed:"),
    (["--data-seed", "-1"], "--data-seed:"), (["--eval-seed", "-1"], "--eval-seed:"),
    (["--eval-inputs", "-1"], "--eval-inputs:"), (["--eval-every", "0"], "--eval-every:"),
    (["--checkpoint-every", "0"], "--checkpoint-every:"), (["--policy-updates-per-epoch", "0"], "--policy-updates"),
    (["--reward-images", "0"], "--reward-images:"), (["--op-embed-dim", "0"], "--op-embed-dim:"),
    (["--lift-dim", "0"], "--lift-dim:"), (["--hidden-dim", "0"], "--hidden-dim:"),
    (["--variant", "best"], "--variant"), (["--rules", "bogus"], "--rules"), (["--dataset", "mnist"], "'mnist'"),
    (["--device", "tpu"], "--device: expected 'auto', 'cpu', 'cuda' or 'cuda:N'"),
]  # fmt: skip


@pytest.mark.parametrize(("flags", "fragment"), TRAIN_CASES, ids=[" ".join(f) for f, _ in TRAIN_CASES])
def test_train_bad_values(flags, fragment, tmp_path, capsys):
    assert_one_line_error(["train", "--out", str(tmp_path / "run"), *flags], capsys, fragment)
    assert not (tmp_path / "run").exists()  # nothing was started


def test_train_resume_needs_a_checkpoint(tmp_path, capsys):
    typo = tmp_path / "runs" / "natt"
    start = time.perf_counter()
    assert_one_line_error(["train", "--resume", "--out", str(typo)], capsys, "nothing to resume", str(typo))
    assert time.perf_counter() - start < 60  # it fails before building anything (no supernet is trained)
    assert not typo.exists()


OUT_COMMANDS = {
    "train nat": ["train", "--algo", "nat"], "train ppo": ["train", "--algo", "ppo"],
    "train blockqnn": ["train", "--algo", "blockqnn"], "train-supernet": ["train-supernet"],
    "train-final": ["train-final", "DARTS_V2"], "transform": ["transform", "--arch", "DARTS_V2", "--policy", "x.pt"],
    "bench": ["bench", "--protocol", "per-instance", "--algos", "random", "--seeds", "0", "--budget", "2"],
}  # fmt: skip


@pytest.mark.parametrize("command", OUT_COMMANDS)
def test_an_out_that_cannot_be_created_is_one_line(command, tmp_path, capsys):
    """An --out that is a file, under a file, or where the OS refuses a folder (``/proc``: root passes the permission
    check there) is one line naming --out before any work starts, in every command that writes one (bench,
    train-supernet and train-final raised NotADirectoryError / FileExistsError tracebacks, every command
    FileNotFoundError for ``/proc``); nothing is left behind. An existing folder the OS refuses (``/proc`` itself)
    and a broken symbolic link (mkdir's FileExistsError) are refused too: both passed and failed after the work."""
    (tmp_path / "file").write_text("")
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    cases = [(tmp_path / "file" / "run", "create", "is a file"), (tmp_path / "file", "create", "is a file"),
             (tmp_path / "link", "create", "is a broken symbolic link"),
             (tmp_path / "link" / "run", "create", "is a broken symbolic link")]  # fmt: skip
    if sys.platform == "linux":
        cases += [(Path("/proc/nat-gym-run"), "create", "in '/proc':"), (Path("/proc"), "write in", "'/proc':")]
    for out, verb, said in cases:
        assert_one_line_error([*OUT_COMMANDS[command], "--out", str(out)], capsys, f"--out: cannot {verb}", said)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "link"]


def test_check_out_folder_creates_nothing(tmp_path):
    from nat_gym.cli_args import check_out_folder

    check_out_folder(tmp_path / "a" / "b")
    check_out_folder(tmp_path)
    check_out_folder("")
    assert list(tmp_path.iterdir()) == []


def test_train_never_overwrites_a_run(tmp_path, capsys):
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    assert_one_line_error(["train", "--out", str(tmp_path)], capsys, "exists", "--resume")


SUPERNET_CASES = [
    (["--threads", "-1"], "--threads"), (["--channels", "0"], "--channels"), (["--layers", "2"], "--layers"),
    (["--steps", "0"], "--steps"), (["--epochs", "0"], "--epochs"), (["--batch-size", "0"], "--batch-size"),
    (["--lr", "0"], "--lr"), (["--lr", "nan"], "--lr"), (["--lr", "inf"], "--lr: expected a finite number > 0"),
    (["--momentum", "1"], "--momentum"),
    (["--weight-decay", "-1"], "--weight-decay"), (["--eval-archs", "-1"], "--eval-archs"),
    (["--final-archs", "0"], "--final-archs"), (["--seed", "-1"], "--seed"), (["--data-seed", "-1"], "--data-seed"),
    (["--rules", "bogus"], "'bogus'"), (["--dataset", "mnist"], "'mnist'"), (["--device", "tpu"], "device"),
    (["--resume"], "nothing to resume"),
]  # fmt: skip


@pytest.mark.parametrize(("flags", "fragment"), SUPERNET_CASES, ids=[" ".join(f) for f, _ in SUPERNET_CASES])
def test_train_supernet_bad_values(flags, fragment, tmp_path, capsys):
    assert_one_line_error(["train-supernet", "--out", str(tmp_path / "sn"), "--no-progress", *flags], capsys, fragment)
    assert not (tmp_path / "sn").exists()


FINAL_CASES = [
    (["--momentum", "nan"], "--momentum"), (["--momentum", "1"], "--momentum"), (["--lr", "inf"], "--lr"),
    (["--lr-min", "nan"], "--lr-min"), (["--lr-min", "0.5"], "--lr-min"), (["--weight-decay", "inf"], "--weight-decay"),
    (["--grad-clip", "nan"], "--grad-clip"), (["--auxiliary-weight", "-inf"], "--auxiliary-weight"),
    (["--drop-path-prob", "nan"], "--drop-path-prob"), (["--epochs", "0"], "--epochs"),
    (["--resume"], "nothing to resume"),
]  # fmt: skip


@pytest.mark.parametrize(("flags", "fragment"), FINAL_CASES, ids=[" ".join(f) for f, _ in FINAL_CASES])
def test_train_final_bad_values(flags, fragment, tmp_path, capsys):
    """Issue 8 review: nan / inf passed every range check of train-final (a run with momentum nan trained to
    chance), and --resume with a mistyped --out silently started a fresh run."""
    assert_one_line_error(["train-final", "DARTS_V2", "--out", str(tmp_path / "final"), "--no-progress", *flags],
                          capsys, fragment)  # fmt: skip
    assert not (tmp_path / "final").exists()


BLOCKQNN = ["train", "--algo", "blockqnn", "--dataset", "fake", "--cache", "none", "--no-progress"]


def test_blockqnn_ray_only_flags_without_ray(tmp_path, capsys, monkeypatch):
    """``--eval-timeout`` is a time limit that only Ray workers have: without Ray (``--executor process``, or the
    default ``auto`` without a cluster address) it is one line naming it and ``--executor ray``, as ``--address`` is
    (it was silently ignored); before any work starts."""
    from nat_gym.block_evaluator import EarlyStopEvaluator
    from nat_gym.errors import ConfigError

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    out = str(tmp_path / "bq")
    for executor, where in ((["--executor", "process"], "executor='process'"), ([], "executor='auto' without")):
        assert_one_line_error([*BLOCKQNN, *executor, "--eval-timeout", "60", "--out", out], capsys,
                              "timeout: a time limit per block (--eval-timeout 60) needs executor='ray' "
                              "(--executor ray)", where)  # fmt: skip
    assert_one_line_error([*BLOCKQNN, "--executor", "process", "--address", "10.0.0.1:6379", "--out", out], capsys,
                          "--address: '10.0.0.1:6379'", "executor='process'")  # fmt: skip
    assert not (tmp_path / "bq").exists()
    with pytest.raises(ConfigError, match="needs executor='ray'"):  # the library says it too
        EarlyStopEvaluator("fake", cache=None, executor="process", workers=2, timeout=5.0)


def test_ray_cluster_address_errors_are_one_line(tmp_path, capsys, monkeypatch, closed_port):
    """A malformed Ray address (``--address`` or ``RAY_ADDRESS``) is one line naming it and the forms Ray takes (it
    was a ValueError traceback from ``ray.init``), and an address where nothing listens one line within seconds (it
    never returned: Ray retried the GCS); both before any work starts. The unreachable cases run as processes under
    a time limit, so a hang fails the test. The hint (drop --address, or unset RAY_ADDRESS) is then followed."""
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    out = str(tmp_path / "run")
    forms = "expected HOST:PORT (the head's address, as `ray start --head` prints it), auto, local or ray://HOST:PORT"
    bench = ["bench", "--ray", "--budget", "5", "--out", out]
    assert_one_line_error([*BLOCKQNN, "--executor", "ray", "--address", "garbage", "--out", out], capsys,
                          f"--address: {forms}, got 'garbage'")  # fmt: skip
    assert_one_line_error([*bench, "--address", "ray://head:port"], capsys, f"--address: {forms}, got 'ray://")
    monkeypatch.setenv("RAY_ADDRESS", "garbage")
    assert_one_line_error([*BLOCKQNN, "--out", out], capsys, f"RAY_ADDRESS: {forms}, got 'garbage'")
    assert_one_line_error(bench, capsys, f"RAY_ADDRESS: {forms}, got 'garbage'")
    monkeypatch.delenv("RAY_ADDRESS")

    where = f"127.0.0.1:{closed_port}"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cases = {  # argv, RAY_ADDRESS, the line's start
        "blockqnn": ([*BLOCKQNN, "--address", where, "--out", out], None, "nat-gym train: error: --address:"),
        "bench": ([*bench, "--address", where], None, "nat-gym bench: error: --address:"),
        "env": ([*BLOCKQNN, "--executor", "ray", "--out", out], where, "nat-gym train: error: RAY_ADDRESS:"),
        # the Ray client's address too (its connection timed out after 30 s, once blockqnn had started its search)
        "client": ([*BLOCKQNN, "--address", f"ray://{where}", "--out", out], None, "nat-gym train: error: --address:"),
    }
    procs = {k: subprocess.Popen(NAT_GYM + argv, env=env if not ray_address else {**env, "RAY_ADDRESS": ray_address},
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k, (argv, ray_address, _) in cases.items()}  # fmt: skip
    for key, p in procs.items():
        _, err = p.communicate(timeout=120)
        start = cases[key][2]
        assert p.returncode == 2 and len(err.strip().splitlines()) == 1 and err.startswith(start), (key, err)
        drop = "drop --address" if "--address" in start else "unset RAY_ADDRESS"
        at = f"ray://{where}" if key == "client" else where
        assert f"cannot reach a Ray cluster at '{at}' within 10 s (Connection refused); start one with `ray " \
               f"start --head`, or {drop} to run on this machine" in err, (key, err)  # fmt: skip
    assert not (tmp_path / "run").exists()
    # the hint followed: without the address the search runs on this machine
    tiny = ["--schedule", "random", "--iterations", "1", "--blocks-per-iteration", "2", "--replay-batch", "2",
            "--max-index", "2", "--channels", "2", "--train-epochs", "1", "--train-batch-size", "64", "--workers", "1"]
    assert run([*BLOCKQNN, *tiny, "--out", out], capsys)[0] == 0


def _offline(monkeypatch):
    from torchvision.datasets import CIFAR10, CIFAR100

    def no_network(self, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    for cls in (CIFAR10, CIFAR100):
        monkeypatch.setattr(cls, "download", no_network)


def test_download_offline_is_one_line(tmp_path, capsys, monkeypatch):
    _offline(monkeypatch)
    assert_one_line_error(["train-supernet", "--dataset", "cifar10", "--download", "--data-root", str(tmp_path),
                           "--out", str(tmp_path / "sn")], capsys, "downloading into", "URLError")  # fmt: skip
    assert_one_line_error(["download", "cifar100", "--data-root", str(tmp_path)], capsys, "cifar100", "network")
    assert_one_line_error(["download", "mnist"], capsys, "invalid choice")


def test_transform_bad_values(tmp_path, capsys):
    missing = str(tmp_path / "missing.pt")
    assert_one_line_error(["transform", "--arch", "DARTS_V2", "--policy", missing, "--samples", "0"], capsys, "--samples")
    assert_one_line_error(["transform", "--arch", "DARTS_V2", "--policy", missing, "--seed", "-1"], capsys, "--seed")
    assert_one_line_error(["transform", "--arch", "DARTS_V2", "--policy", missing], capsys, "missing.pt")
    assert_one_line_error(["transform", "--arch", "DARTS_V2"], capsys, "--policy")


def test_the_console_script_prints_one_line(tmp_path):
    """The installed command, as a user runs it: the cases of issue 8, started together."""
    cases = {
        "resume-typo": ["train", "--resume", "--out", str(tmp_path / "typo")],
        "epochs-0": ["train", "--epochs", "0", "--out", str(tmp_path / "zero")],
        "threads": ["train-supernet", "--threads", "-1", "--out", str(tmp_path / "sn")],
        "entropy": ["train", "--entropy-coef", "-0.5", "--out", str(tmp_path / "ent")],
    }
    procs = {k: subprocess.Popen(NAT_GYM + argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for k, argv in cases.items()}  # fmt: skip
    for key, p in procs.items():
        out, err = p.communicate(timeout=300)
        assert p.returncode == 2, (key, out, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (key, err)
    for name in ("typo", "zero", "sn", "ent"):
        assert not (tmp_path / name).exists()


@pytest.mark.parametrize("argv", [["list"], ["rules", "--rules", "nat++ext", "--json"]])
def test_output_into_a_closed_pipe_is_quiet(argv):
    """``nat-gym rules | head -3``: when the reader leaves early the command stops without a traceback (issue 8
    review: a BrokenPipeError traceback of 10 lines)."""
    p = subprocess.Popen(NAT_GYM + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdout.close()  # the reader is gone before the first line is written
    err = p.stderr.read()
    assert p.wait(timeout=120) == 1
    assert err == "", err
