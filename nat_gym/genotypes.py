"""The registry of named genotypes: well-known cells and the published NAT / NAT++ transformations.

``get("DARTS_V2")`` returns a :class:`~nat_gym.genotype.Genotype`; ``list()`` the names. Lookup is case-insensitive.

Sources: DARTS_V1/V2 (Liu et al. 2019), ENAS (Pham et al. 2018), NASNet, AmoebaNet, PNASNet, NAONet, the VGG / ResBlock /
MobileNetV2 cells and the random cells R1..R5 as written in the NAT papers; ``NAT_<X>`` is the NAT (NeurIPS 2019)
transformation of ``<X>`` and ``NATv2_<X>`` the NAT++ (TPAMI 2021) one: reference data, see :func:`transformations`
(``NATv2_MobileNetV2`` is registered as ``NAT_MobileNetV2``'s genotype: the NAT++ paper's result is the same).
The data file is ``nat_gym/resources/genotypes.json`` (shipped with the package).
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from nat_gym.errors import GenotypeError
from nat_gym.genotype import Genotype

__all__ = ["get", "list", "names", "resolve", "transformations", "Transformation", "BASE_NAMES", "ACCEPTED_FORMS"]

_builtin_list = list

# data-file key -> registry name (the file writes MobileNetV2 as "Mobilenetv2")
_RENAME = {"Mobilenetv2": "MobileNetV2", "NAT_MobileNetv2": "NAT_MobileNetV2"}

_SAME_AS = {"NATv2_MobileNetV2": "NAT_MobileNetV2"}
"""Registered names whose genotype is another entry's. The NAT++ paper's MobileNetV2 result equals NAT's: the NAT++
reference ``genotypes.py`` writes ``NATv2_MobileNetv2`` with exactly the edges of ``NAT_MobileNetv2`` (every change
is ``conv_1x1``/``null -> skip_connect``, valid under both rule sets)."""

BASE_NAMES: tuple[str, ...] = (
    "DARTS_V1", "DARTS_V2", "DARTS", "ENAS", "VGG", "ResBlock", "MobileNetV2", "NAONet", "NASNet", "AmoebaNet",
    "PNASNet", "R1", "R2", "R3", "R4", "R5",
)  # fmt: skip
"""The well-known input architectures (``DARTS`` is the NAT papers' name for ``DARTS_V2``)."""


ACCEPTED_FORMS = (
    "a registered name (nat-gym list), a JSON file or object ({\"normal\": {\"edges\": [[op, from, to], ...], "
    "\"concat\": [...]}, \"reduce\": {...}}), the compact string 'normal=op:from:to,...;concat=2,3|reduce=...', or "
    "a DARTS / NAT 'Genotype(normal=[...], normal_concat=[...], reduce=[...], reduce_concat=[...])' string with "
    "(op, from) pairs, (op, from, to) triples or per-node groups of pairs, keyword or positional fields, list or "
    "range(a, b) concats"
)
"""The spellings :func:`resolve` reads, as its error messages name them."""


class Transformation(NamedTuple):
    """A published transformation: ``name`` turns ``source`` into the genotype ``name`` under ``rules``."""

    name: str
    source: str
    rules: str  # "nat" (NAT_*) or "nat++" (NATv2_*)


@lru_cache(maxsize=1)
def _registry() -> dict[str, Genotype]:
    text = resources.files("nat_gym").joinpath("resources/genotypes.json").read_text()
    raw = json.loads(text)
    reg = {_RENAME.get(k, k): Genotype.from_dict(v) for k, v in raw.items()}
    reg.update({alias: reg[name] for alias, name in _SAME_AS.items()})
    return reg


def names() -> tuple[str, ...]:
    """All registered names, base architectures first, then the published transformations."""
    reg = _registry()
    rest = sorted(n for n in reg if n not in BASE_NAMES)
    return tuple(n for n in BASE_NAMES if n in reg) + tuple(rest)


def list() -> _builtin_list[str]:  # noqa: A001 - the registry API mirrors gymnasium's registry naming
    """All registered names (see :func:`names`)."""
    return _builtin_list(names())


def get(name: str) -> Genotype:
    """The genotype registered as ``name`` (case-insensitive)."""
    reg = _registry()
    if name in reg:
        return reg[name]
    folded = {k.lower(): k for k in reg}
    if isinstance(name, str) and name.lower() in folded:
        return reg[folded[name.lower()]]
    raise GenotypeError(f"name: unknown genotype {name!r}; registered: {', '.join(names())}")


def transformations() -> tuple[Transformation, ...]:
    """The published transformations in the registry, with their source genotype and rule set."""
    out = []
    for n in names():
        for prefix, rules in (("NATv2_", "nat++"), ("NAT_", "nat")):
            if n.startswith(prefix):
                out.append(Transformation(n, n[len(prefix):], rules))
                break
    return tuple(out)


def resolve(arch: str | os.PathLike | Genotype) -> Genotype:
    """A genotype from what a user typed: a registered name, a path to a JSON file (triple or DARTS pair format),
    a JSON object, the compact string form, or the ``Genotype(...)`` string of a DARTS or NAT / NAT++
    ``genotypes.py`` file (pairs or ``(op, from, to)`` triples, keyword or positional fields, ``range`` concats;
    see :meth:`Genotype.from_darts`).

    Raises:
        GenotypeError: the text is none of these (the message names the accepted forms), or names a missing or
            unreadable file, or spells a malformed genotype (the message names the field).
    """
    if isinstance(arch, Genotype):
        return arch
    try:
        text = os.fspath(arch)
    except TypeError:
        raise GenotypeError(f"arch: expected a string, a path or a Genotype, got {type(arch).__name__}") from None
    if isinstance(text, bytes):
        raise GenotypeError("arch: expected a string, a path or a Genotype, got bytes")
    if text.endswith(".json") or (os.sep in text and _is_file(text)):
        return Genotype.from_json(_read_text(text))
    stripped = text.lstrip()
    if stripped.startswith("normal="):
        return Genotype.parse(text)
    if _GENOTYPE_CALL.search(text):
        return Genotype.from_darts(text)
    if stripped.startswith("{"):
        return Genotype.from_json(text)
    try:
        return get(text.strip())  # a name pasted with a newline or spaces around it
    except GenotypeError:
        raise GenotypeError(
            f"arch: {text[:80]!r} is not a registered genotype (registered: {', '.join(names())}) nor a readable "
            f"genotype; accepted forms: {ACCEPTED_FORMS}"
        ) from None


_GENOTYPE_CALL = re.compile(r"Genotype\s*\(")  # Python allows space before the call's parenthesis


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # e.g. a name too long for the file system, an embedded NUL
        return False


def _read_text(text: str) -> str:
    path = Path(text)
    try:
        return path.read_text()
    except FileNotFoundError:
        raise GenotypeError(f"arch: no such genotype file {text!r}") from None
    except (OSError, ValueError) as e:  # a folder, no permission, not UTF-8 (UnicodeDecodeError), a NUL byte
        raise GenotypeError(f"arch: cannot read the genotype file {text!r} ({type(e).__name__})") from None
