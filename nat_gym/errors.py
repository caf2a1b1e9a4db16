"""One exception family for nat-gym.

Every error raised for bad user input is a subclass of both :class:`NatGymError` and :class:`ValueError`, so callers
can catch either; messages name the field, the value received and what is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = [
    "NatGymError",
    "InvalidOpError",
    "GenotypeError",
    "BlockError",
    "TransitionError",
    "MaskError",
    "CheckpointError",
    "DatasetNotFoundError",
    "ConfigError",
    "EvaluationError",
    "EvaluationTimeout",
    "WorkerLost",
    "dataclass_from_dict",
    "check_int",
]

T = TypeVar("T")


class NatGymError(Exception):
    """Base class of every nat-gym error."""


class ConfigError(NatGymError, ValueError):
    """A configuration value (an argument, an option) is out of its allowed range."""


class GenotypeError(NatGymError, ValueError):
    """A genotype (or cell) is malformed: wrong edges, inputs, concat or format."""


class BlockError(NatGymError, ValueError):
    """A BlockQNN block (its Network Structure Code) is malformed: a layer's type, kernel or predecessors."""


class InvalidOpError(GenotypeError):
    """An operation name is not in the registry (or not in the vocabulary in use)."""


class TransitionError(NatGymError, ValueError):
    """A transition is not allowed by the rule set in use, or a rule set is malformed."""


class MaskError(NatGymError, ValueError):
    """An action mask is malformed, e.g. a row with no valid entry."""


class CheckpointError(NatGymError, ValueError):
    """A checkpoint cannot be read or does not match the configuration it is loaded into."""


class DatasetNotFoundError(NatGymError, FileNotFoundError):
    """A dataset's files are missing from the given folder."""


class EvaluationError(NatGymError, RuntimeError):
    """An evaluation could not be completed by the workers that run it (not bad input: a fault or a time limit)."""


class EvaluationTimeout(EvaluationError):
    """An evaluation ran past its time limit on every attempt (the message names what was evaluated)."""


class WorkerLost(EvaluationError):
    """The worker process running an evaluation died (killed, out of memory, its node lost) on every attempt."""


_KINDS: dict[type, str] = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _of_kind(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def dataclass_from_dict(cls: type[T], data: Mapping[str, Any], what: str, *, check_types: bool = False) -> T:
    """``cls(**data)`` for a dataclass ``cls`` read back from a checkpoint or a file; a key that is not one of its
    fields is a :class:`ConfigError` naming ``what``, the unknown keys and the allowed ones. With ``check_types``
    (values a user typed), a value of a field annotated ``bool``, ``int``, ``float`` or ``str`` must be one (an
    integer is a number too); other annotations are not checked."""
    from dataclasses import fields
    from typing import get_type_hints

    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{what}: unknown keys {unknown}; allowed: {sorted(allowed)}")
    if check_types:
        try:
            hints = get_type_hints(cls)
        except Exception:  # an annotation that does not resolve: leave the values to the class
            hints = {}
        for key, value in data.items():
            kind = hints.get(key)
            if kind in _KINDS and not _of_kind(value, kind):
                raise ConfigError(f"{what}: {key}: expected {_KINDS[kind]}, got {value!r}")
    return cls(**data)


def check_int(name: str, value: Any, low: int) -> None:
    """A :class:`ConfigError` naming ``name`` unless ``value`` is a Python ``int`` (not a ``bool``) ``>= low``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name}: expected an integer >= {low}, got {value!r}")
