"""Argument parsing shared by every ``nat-gym`` subcommand: one-line errors and range-checked numeric flags.

Every user error of the command line is one line on stderr and exit code 2 (the convention of argparse's own
errors, without its usage block): ``nat-gym train-supernet: error: argument --threads: expected an integer >= 0,
got '-1' (see nat-gym train-supernet --help)``. The type functions here check a flag's range while argparse reads it,
so a bad value never reaches the library (which validates again and raises :class:`~nat_gym.errors.ConfigError`).
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["OneLineParser", "int_at_least", "float_at_least", "float_in", "as_flag", "check_out_folder"]


class OneLineParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose errors are one line (no usage block) and point to ``--help``.

    Subparsers made with ``add_subparsers`` inherit the class.
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        text = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {text} (see {self.prog} --help)\n")


def _named(fn: Callable[[str], object], name: str) -> Callable[[str], object]:
    fn.__name__ = name  # argparse names the type in some of its messages
    return fn


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type`` for an integer ``>= low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value

    return _named(parse, "int")


def _float(text: str, expected: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def float_at_least(low: float, *, strict: bool = False) -> Callable[[str], float]:
    """An argparse ``type`` for a finite number ``>= low`` (``> low`` with ``strict``)."""
    expected = f"a finite number {'>' if strict else '>='} {low:g}"

    def parse(text: str) -> float:
        value = _float(text, expected)
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return _named(parse, "float")


def float_in(low: float, high: float) -> Callable[[str], float]:
    """An argparse ``type`` for a number in ``[low, high)``."""
    expected = f"a number in [{low:g}, {high:g})"

    def parse(text: str) -> float:
        value = _float(text, expected)
        if not low <= value < high:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return _named(parse, "float")


def as_flag(message: str, fields: set[str] | frozenset[str]) -> str:
    """``"entropy_coef: expected ..."`` -> ``"--entropy-coef: expected ..."`` when the message starts with one of
    ``fields`` (a config error raised by a dataclass behind the flags, reworded for the command line)."""
    field, sep, rest = message.partition(":")
    return f"--{field.replace('_', '-')}:{rest}" if sep and field in fields else message


def check_out_folder(out: str | os.PathLike | None, flag: str = "--out") -> None:
    """Check, before any work starts, that the output folder ``out`` exists or can be created; nothing is left behind
    (a run refused later leaves no folder).

    The nearest existing folder on the way (``out`` itself when it exists) is probed by creating and removing a
    temporary folder in it: permissions alone do not tell (root may "write" to ``/proc``, where ``mkdir`` fails).
    ``None`` or ``""`` (write nothing) passes.

    Raises:
        ConfigError: ``out`` or a folder above it is a file or a broken symbolic link, or no folder can be created
            there (the OS's reason); the message names ``flag``.
    """
    from nat_gym.errors import ConfigError

    if not out:
        return
    path = Path(out).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists() or p.is_symlink())
    if not existing.exists():  # mkdir(exist_ok=True) raises FileExistsError on it
        raise ConfigError(f"{flag}: cannot create the folder {str(out)!r}: {str(existing)!r} is a broken symbolic "
                          f"link (to {os.readlink(existing)!r}); choose another {flag}")  # fmt: skip
    if not existing.is_dir():
        raise ConfigError(f"{flag}: cannot create the folder {str(out)!r}: {str(existing)!r} is a file; choose "
                          f"another {flag}")  # fmt: skip
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".nat-gym-probe-", dir=existing))
    except OSError as err:
        where = f"create the folder {str(out)!r} in {str(existing)!r}"
        if existing == path:
            where = f"write in the folder {str(out)!r}"
        raise ConfigError(f"{flag}: cannot {where}: {err.strerror or type(err).__name__}; choose another "
                          f"{flag}") from None  # fmt: skip
