"""Hyper-parameters of the SB3 algorithms, in the RL Zoo's layout, and their command-line overrides.

Defaults live in ``agents/hyperparams/<algo>.yml`` (package data), one top-level key per env id, as in the RL
Baselines3 Zoo::

    NATCell-v0:
      n_timesteps: 4096            # the timestep budget (Zoo key)
      policy: MultiInputPolicy     # the SB3 policy (Zoo key)
      policy_kwargs: "dict(net_arch=[64, 64])"   # a Zoo-style expression or a YAML mapping
      n_steps: 128                 # every other key is an argument of the algorithm's constructor
      ...

``nat-gym train --hyperparams key=value ...`` replaces single keys and ``--env-kwargs key=value ...`` passes
arguments to ``gym.make``; values are read as Python literals (``1e-3``, ``[64, 64]``, ``None``), else as YAML
(``true``, ``nat++``). Unknown keys are a one-line :class:`~nat_gym.errors.ConfigError` naming the allowed ones,
and so are values out of range (:func:`check_hyperparams`).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import math
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

import yaml

from nat_gym.errors import ConfigError, check_int

__all__ = [
    "ZOO_KEYS",
    "hyperparams_text",
    "load_hyperparams",
    "parse_value",
    "parse_assignments",
    "policy_kwargs_value",
    "check_hyperparams",
    "env_argument_names",
]

ZOO_KEYS: tuple[str, ...] = ("n_timesteps", "policy", "policy_kwargs", "n_envs")
"""Keys of a Zoo entry that are not arguments of the algorithm's constructor."""

_SET_BY_FLAGS = ("env", "seed", "device", "verbose", "tensorboard_log", "_init_setup_model")
"""Constructor arguments that ``nat-gym train`` sets from its own flags."""


def hyperparams_text(algo: str) -> str:
    """The text of ``agents/hyperparams/<algo>.yml``."""
    path = resources.files("agents").joinpath("hyperparams", f"{algo}.yml")
    if not path.is_file():
        raise ConfigError(f"algo: no hyper-parameter file agents/hyperparams/{algo}.yml")
    return path.read_text()


def load_hyperparams(algo: str, env_id: str) -> dict[str, Any]:
    """The default hyper-parameters of ``algo`` on ``env_id`` (a copy of the YAML entry).

    Raises:
        ConfigError: If the file has no entry for ``env_id`` (the message lists the envs it has).
    """
    table = yaml.safe_load(hyperparams_text(algo)) or {}
    if env_id not in table:
        raise ConfigError(f"env: --algo {algo} has no hyper-parameters for {env_id!r}; it runs on {sorted(table)}")
    return dict(table[env_id])


def parse_value(text: str) -> Any:
    """A value typed on the command line: a Python literal (``1e-3``, ``False``, ``[64, 64]``), else YAML
    (``false``, ``null``), else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:  # e.g. an unclosed bracket: the text, which the key's own check then rejects
        return text


def parse_assignments(items: Sequence[str], field: str) -> dict[str, Any]:
    """``["key=value", ...]`` -> ``{key: value}``, values read as Python literals, else as YAML.

    Raises:
        ConfigError: For an item without ``=`` or with an empty key (``field`` names the flag in the message).
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = str(item).partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{field}: expected key=value items, got {item!r}")
        out[key.strip()] = parse_value(text.strip())
    return out


def policy_kwargs_value(value: Any) -> dict[str, Any]:
    """``policy_kwargs`` as a dict: a mapping, or a Zoo-style expression such as
    ``"dict(net_arch=[64, 64], activation_fn=nn.ReLU)"`` (literals, ``dict(...)``, and ``nn.<Name>`` for classes of
    ``torch.nn``; nothing else is evaluated)."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    if not isinstance(value, str):
        raise ConfigError(f"policy_kwargs: expected a mapping or a dict(...) expression, got {value!r}")
    try:
        result = _zoo_expression(ast.parse(value, mode="eval").body)
    except SyntaxError as e:
        raise ConfigError(f"policy_kwargs: cannot parse {value!r} ({e.msg})") from None
    if not isinstance(result, dict):
        raise ConfigError(f"policy_kwargs: expected a dict(...) expression, got {value!r}")
    return result


def _zoo_expression(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_zoo_expression(e) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict) and all(k is not None for k in node.keys):
        return {_zoo_expression(k): _zoo_expression(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_zoo_expression(node.operand)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return {kw.arg: _zoo_expression(kw.value) for kw in node.keywords if kw.arg is not None}
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "nn":
        from torch import nn

        cls = getattr(nn, node.attr, None)
        if isinstance(cls, type):
            return cls
    raise ConfigError(
        f"policy_kwargs: {ast.unparse(node)!r} is not allowed (literals, dict(...) and nn.<Module> only)"
    )


_LEAST_INT: dict[str, int] = {"n_timesteps": 1, "n_envs": 1, "n_steps": 1, "batch_size": 1, "n_epochs": 1,
                              "buffer_size": 1, "learning_starts": 0, "target_update_interval": 1}  # fmt: skip
"""Integer hyper-parameters and their least value. SB3 takes some values out of range without a word (a negative
``buffer_size`` becomes a buffer of one transition) or fails deep inside training (MaskablePPO's ``n_steps=0``)."""
_FRACTIONS = ("gamma", "gae_lambda", "exploration_fraction", "exploration_initial_eps", "exploration_final_eps")
"""Numbers in [0, 1] (SB3 conventions: discount, GAE lambda, epsilon-greedy schedule)."""
_POSITIVE = ("learning_rate", "clip_range", "max_grad_norm")
"""Numbers > 0 when given as numbers (a schedule is left to SB3); ``max_grad_norm=inf``: no clipping."""
_NON_NEGATIVE = ("ent_coef", "vf_coef")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_hyperparams(hyperparams: Mapping[str, Any], algo_class: type, algo: str) -> None:
    """Raise :class:`ConfigError` for a key that is neither a Zoo key nor an argument of ``algo_class``, or for a
    value out of its range: the integers of :data:`_LEAST_INT`, fractions in [0, 1], learning rate, clip range and
    gradient norm > 0, entropy and value coefficients >= 0 (numbers only: a schedule or string is SB3's to check)."""
    allowed = set(ZOO_KEYS) | set(inspect.signature(algo_class.__init__).parameters) - {"self", *_SET_BY_FLAGS}
    unknown = sorted(set(hyperparams) - allowed)
    if unknown:
        raise ConfigError(
            f"hyperparams: unknown keys {unknown} for --algo {algo} ({algo_class.__name__}); allowed: {sorted(allowed)}"
        )
    for key, value in hyperparams.items():
        numeric = isinstance(value, (int, float))  # a bool too: True is no learning rate
        if key == "n_timesteps" and (value is None or _number(value) and value == int(value)):
            check_int(f"hyperparams: {key}", 1 if value is None else int(value), 1)  # None: --n-timesteps; 1e5: ok
        elif key in _LEAST_INT:
            check_int(f"hyperparams: {key}", value, _LEAST_INT[key])
        elif key in _FRACTIONS and not (_number(value) and 0 <= value <= 1):
            raise ConfigError(f"hyperparams: {key}: expected a number in [0, 1], got {value!r}")
        elif key in _POSITIVE and numeric and (isinstance(value, bool) or not value > 0):  # inf: no clipping
            raise ConfigError(f"hyperparams: {key}: expected a number > 0 or a schedule, got {value!r}")
        elif key in _NON_NEGATIVE and numeric and not (_number(value) and value >= 0):
            raise ConfigError(f"hyperparams: {key}: expected a number >= 0, got {value!r}")


def env_argument_names(env_id: str) -> list[str]:
    """The keyword arguments ``gym.make(env_id, ...)`` accepts: those of the env class and of the classes its
    ``**kwargs`` pass on to."""
    import gymnasium as gym

    spec = gym.spec(env_id)
    if not isinstance(spec.entry_point, str):
        cls = spec.entry_point
    else:
        module, _, name = spec.entry_point.partition(":")
        cls = getattr(importlib.import_module(module), name)
    names: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names += [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return sorted(set(names))
