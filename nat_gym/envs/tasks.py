"""Task sets: named, versioned, pinned sets of input architectures on which algorithms are compared.

A :class:`TaskSet` fixes everything that decides a result besides the algorithm: the environment id, the transition
rules, the dataset (and its split seed), the reward definition (shared-weight accuracy gain on the *whole* validation
split: deterministic) and the input architectures, whose digest is pinned in the registry so that a change in the
sampling code cannot silently change a test set (:meth:`TaskSet.check`). The supernet is pinned by content hash at
run time (:func:`~nat_gym.supernet.checkpoint.content_hash`): :meth:`TaskSet.pin` returns every pinned value, and
benchmark results carry it, so that results of different pins are never mixed (CompilerGym's datasets play the
same role).

Registered (``get(name)``, ``names()``):

``digits/test-200-v0``
    200 distinct random input architectures (NAT.md section 5 sampling: two uniform predecessors and two uniform ops
    per node, NAT++'s ops without ``null``), seed 2_000_200: the test inputs of the *amortised* protocol.
``digits/named-v0``
    The registered well-known cells that the default digits supernet holds (4 intermediate nodes, NAT++ ops):
    DARTS_V1, DARTS_V2, VGG, ResBlock, MobileNetV2, R1-R5: the instances of the *per-instance* protocol.

A task set can also come from a JSON file (:func:`from_file`, ``get("path/to/inputs.json")``): its name is
``"file:<path>"`` and its digest is that of the file's inputs, so a changed file shows in the results.

Training inputs are sampled by the environment; :class:`ExcludeInputs` resamples any that coincides with a test
input of the registered task sets of that environment, so training never sees a test input.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from nat_gym import genotypes as named
from nat_gym import rules as rule_sets
from nat_gym.errors import ConfigError
from nat_gym.genotype import Genotype
from nat_gym.sampling import random_genotype

__all__ = ["TaskSet", "ExcludeInputs", "get", "names", "register", "reserved_inputs", "env_version", "supernet_id",
           "from_file"]

REWARD_DEFINITION = "acc(alpha) - acc(beta) on the whole validation split + cost_weight * relative MAdds saving"


@dataclass(frozen=True)
class TaskSet:
    """A pinned set of input architectures (see the module docstring).

    Args:
        name: ``"<dataset>/<set>-v<version>"``; a changed set gets a new version, never the same name.
        description: one line.
        build: returns ``(names, genotypes)`` of the inputs, deterministically.
        digest: the pinned digest of the inputs (:meth:`check` compares).
        env_id, rules, dataset, data_seed, steps: the environment the inputs are meant for.
    """

    name: str
    description: str
    build: Callable[[], tuple[tuple[str, ...], tuple[Genotype, ...]]] = field(repr=False, compare=False)
    digest: str
    env_id: str = "NATCell-v0"
    rules: str = "nat++"
    dataset: str = "digits"
    data_seed: int = 0
    steps: int = 4

    @cached_property
    def _built(self) -> tuple[tuple[str, ...], tuple[Genotype, ...]]:
        input_names, inputs = self.build()
        if len(input_names) != len(inputs) or len(set(inputs)) != len(inputs):
            raise ConfigError(f"task set {self.name!r}: its inputs must be distinct and named one each")
        return tuple(input_names), tuple(inputs)

    @property
    def inputs(self) -> tuple[Genotype, ...]:
        """The input architectures, in order."""
        return self._built[1]

    @property
    def input_names(self) -> tuple[str, ...]:
        """One name per input (a registered name, or ``"<set>-<index>"``)."""
        return self._built[0]

    def __len__(self) -> int:
        return len(self.inputs)

    def inputs_digest(self) -> str:
        """SHA-256 (16 hex digits) of the inputs' compact strings, in order."""
        return _digest(self.inputs)

    def check(self) -> TaskSet:
        """Raise :class:`ConfigError` unless the inputs still have the pinned digest; returns ``self``."""
        actual = self.inputs_digest()
        if actual != self.digest:
            raise ConfigError(
                f"task set {self.name!r}: its inputs have digest {actual} but {self.digest} is pinned; the code "
                "that builds them changed. Register the new inputs under a new version instead of changing these"
            )
        return self

    def make_env(self, *, cost_weight: float = 0.0, env_id: str | None = None, **kwargs: Any) -> gym.Env:
        """The pinned environment: ``gym.make(env_id, rules=..., dataset=..., reward_images=None, ...)``.

        ``kwargs`` go to the environment (``supernet``, ``evaluator``, ``cost_config``, ``device``, ...); the pinned
        arguments cannot be overridden there."""
        pinned = {"rules", "dataset", "data_seed", "steps", "reward_images", "cost_weight"}
        clash = sorted(pinned & set(kwargs))
        if clash:
            raise ConfigError(f"kwargs: {clash} are pinned by task set {self.name!r} and cannot be overridden")
        return gym.make(env_id or self.env_id, rules=self.rules, dataset=self.dataset, data_seed=self.data_seed,
                        steps=self.steps, reward_images=None, cost_weight=float(cost_weight), **kwargs)  # fmt: skip

    def pin(self, env: gym.Env) -> dict[str, Any]:
        """Everything a result depends on besides the algorithm, as read from ``env`` (made by :meth:`make_env`)."""
        base = env.unwrapped
        rules = base.rules
        if rules != rule_sets.get(self.rules):
            raise ConfigError(f"env: its rule set is {rules.name!r} but task set {self.name!r} pins {self.rules!r}")
        return {
            "task_set": self.name,
            "task_digest": self.digest,
            "env_id": env.spec.id if env.spec is not None else self.env_id,
            "env_version": env_version(env),
            "rules": rules.name,
            "rules_digest": hashlib.sha256(json.dumps(rules.to_dict(), sort_keys=True).encode()).hexdigest()[:16],
            "dataset": f"{self.dataset}/split-seed-{self.data_seed}",
            "reward": REWARD_DEFINITION,
            "cost_weight": float(base.cost_weight),
            "supernet": supernet_id(base.evaluator),
        }


def _digest(genotypes: Iterable[Genotype]) -> str:
    return hashlib.sha256("\n".join(map(str, genotypes)).encode()).hexdigest()[:16]


def env_version(env: gym.Env) -> str:
    """``"<env id> nat-gym <version>"``: the environment code that produced a result."""
    from nat_gym import __version__

    spec_id = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    return f"{spec_id} nat-gym {__version__}"


def supernet_id(evaluator: Any) -> str:
    """The content hash of the evaluator's supernet (unwrapping budget wrappers), or ``"evaluator:<version>"`` for
    an evaluator without one."""
    from nat_gym.supernet.checkpoint import content_hash

    inner = evaluator
    while not hasattr(inner, "supernet") and hasattr(inner, "evaluator"):
        inner = inner.evaluator
    supernet = getattr(inner, "supernet", None)
    return content_hash(supernet) if supernet is not None else f"evaluator:{evaluator.version}"


# ====================================================================================================== inputs
def _random_inputs(count: int, seed: int, steps: int = 4, rules: str = "nat++"):
    def build() -> tuple[tuple[str, ...], tuple[Genotype, ...]]:
        ops = tuple(o for o in rule_sets.get(rules).ops if o != "null")
        rng = np.random.default_rng(seed)
        out: dict[Genotype, None] = {}
        while len(out) < count:
            out.setdefault(random_genotype(rng, steps, ops))
        return tuple(f"input-{i:03d}" for i in range(count)), tuple(out)

    return build


def _named_inputs(input_names: tuple[str, ...]):
    def build() -> tuple[tuple[str, ...], tuple[Genotype, ...]]:
        return input_names, tuple(named.get(n) for n in input_names)

    return build


_REGISTRY: dict[str, TaskSet] = {}


def register(task: TaskSet) -> TaskSet:
    """Add a task set to the registry (its name must be new)."""
    if task.name in _REGISTRY:
        raise ConfigError(f"name: task set {task.name!r} is already registered")
    _REGISTRY[task.name] = task
    return task


register(TaskSet(
    "digits/test-200-v0",
    "200 distinct random input cells (NAT++ ops, 4 nodes, seed 2000200): the amortised protocol's test inputs",
    _random_inputs(200, seed=2_000_200), digest="2c2454c7f3617e6d",
))  # fmt: skip
register(TaskSet(
    "digits/named-v0",
    "the registered 4-node NAT++ cells: DARTS_V1, DARTS_V2, VGG, ResBlock, MobileNetV2, R1-R5 (per-instance protocol)",
    _named_inputs(("DARTS_V1", "DARTS_V2", "VGG", "ResBlock", "MobileNetV2", "R1", "R2", "R3", "R4", "R5")),
    digest="3a8a7834d22b0229",
))  # fmt: skip


def names() -> tuple[str, ...]:
    """The registered task sets."""
    return tuple(_REGISTRY)


def get(name: str | TaskSet) -> TaskSet:
    """The registered task set ``name`` (its inputs checked against the pinned digest), or a task set file
    (``"file:<path>"`` or a path ending in ``.json``, :func:`from_file`)."""
    if isinstance(name, TaskSet):
        return name.check()
    if name in _REGISTRY:
        return _REGISTRY[name].check()
    if name.startswith("file:") or name.endswith(".json"):
        return from_file(name.removeprefix("file:"))
    raise ConfigError(f"task set: unknown {name!r}; registered: {', '.join(_REGISTRY)} (or a JSON file of inputs)")


_FILE_KEYS = {"inputs", "env_id", "rules", "dataset", "data_seed", "steps", "description"}


def from_file(path: str | Path) -> TaskSet:
    """A task set from a JSON file: ``{"inputs": {name: genotype, ...}}`` (or a list of genotypes, named
    ``input-<k>``), genotypes in any spelling :func:`nat_gym.genotypes.resolve` reads, and optionally ``env_id``,
    ``rules``, ``dataset``, ``data_seed``, ``steps`` and ``description`` (defaults: those of ``NATCell-v0``)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"task set: no such file {str(p)!r}")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"task set: {str(p)!r} is not JSON ({e})") from None
    if isinstance(data, list):
        data = {"inputs": data}
    if not isinstance(data, dict) or not data.get("inputs"):
        raise ConfigError(f"task set: {str(p)!r} needs a non-empty 'inputs' list or mapping")
    unknown = sorted(set(data) - _FILE_KEYS)
    if unknown:
        raise ConfigError(f"task set: {str(p)!r} has unknown keys {unknown}; allowed: {sorted(_FILE_KEYS)}")
    raw = data["inputs"]
    items = list(raw.items()) if isinstance(raw, dict) else [(f"input-{k:03d}", g) for k, g in enumerate(raw)]
    parsed = tuple(str(k) for k, _ in items), tuple(named.resolve(g if isinstance(g, str) else json.dumps(g))
                                                    for _, g in items)  # fmt: skip
    digest = _digest(parsed[1])
    settings = {k: data[k] for k in ("env_id", "rules", "dataset", "data_seed", "steps") if k in data}
    return TaskSet(f"file:{p}", str(data.get("description", f"inputs of {p}")), lambda: parsed, digest, **settings)


def reserved_inputs(env_id: str = "NATCell-v0") -> frozenset[Genotype]:
    """Every input of the registered task sets of ``env_id``: what training must never sample."""
    return frozenset(g for t in _REGISTRY.values() if t.env_id == env_id for g in t.inputs)


# ====================================================================================================== training
class ExcludeInputs(gym.Wrapper):
    """Resample the input architecture of every ``reset`` that coincides with an excluded one (default: the test
    inputs of the registered task sets, :func:`reserved_inputs`), so that training inputs never coincide with a test set.

    A resample continues the environment's random generator, so a seeded reset stays reproducible; ``resampled``
    counts them. An explicit ``options["genotype"]`` that is excluded raises :class:`ConfigError`.
    """

    def __init__(self, env: gym.Env, excluded: Iterable[Genotype] | None = None) -> None:
        super().__init__(env)
        self.excluded = frozenset(reserved_inputs(env.spec.id if env.spec else "NATCell-v0") if excluded is None
                                  else excluded)  # fmt: skip
        self.resampled = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        given = (options or {}).get("genotype")
        if given is not None and named.resolve(given) in self.excluded:
            raise ConfigError(f"options['genotype']: {given} is a test input of a registered task set, and this "
                              "training env never starts from one")  # fmt: skip
        obs, info = self.env.reset(seed=seed, options=options)
        while info["genotype"] in self.excluded:
            self.resampled += 1
            obs, info = self.env.reset(options=options)
        return obs, info

    def action_masks(self) -> np.ndarray:
        return self.env.unwrapped.action_masks()
