"""``NATCell-v0``: the Neural Architecture Transformer MDP as a Gymnasium environment."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping
from functools import lru_cache, partial
from typing import Any, Literal, NamedTuple

import gymnasium as gym
import numpy as np

from nat_gym import cost as cost_model
from nat_gym import genotypes as named
from nat_gym import rules as rule_sets
from nat_gym.envs.observation import action_space, encode, flat_action_mask, observation_space
from nat_gym.errors import ConfigError, GenotypeError, InvalidOpError
from nat_gym.evaluator import Evaluator, SupernetEvaluator
from nat_gym.genotype import Genotype
from nat_gym.sampling import random_genotype

__all__ = ["NATCellEnv"]

InvalidAction = Literal["keep", "raise", "penalize"]
_MAX_TRANSITIONS = 1 << 16  # memoised (state, action) pairs; the memo is emptied when full
_COST_KEYS = {"C", "layers", "num_classes", "input_size", "in_channels", "affine"}


class NATCellEnv(gym.Env):
    """Transform a cell architecture into a more accurate and cheaper one (NAT, NeurIPS 2019; NAT++, TPAMI 2021).

    ## Description
    The state is an architecture ``beta``: a DARTS-style genotype (a normal cell and a reduction cell, each a DAG of
    ``steps`` intermediate nodes with two incoming ``(op, from, to)`` edges each). One action transforms *every*
    edge's op at once into an op the transition rules allow (the same op, a cheaper one, ``skip_connect`` or
    ``null``), giving ``alpha``. The reward is the accuracy gain ``acc(alpha) - acc(beta)`` measured with the shared
    weights of a supernet on held-out training images.

    Pure functions are memoised: the transition ``(beta, action) -> alpha`` (up to 65,536 pairs) and, per genotype
    (LRU, 4,096), the rule check, observation, mask and cost; the evaluator caches the scores. Observations and
    masks are handed out as private copies.

    ## Action Space
    ``MultiDiscrete([K] * 2E)`` where ``E = 2 * steps`` edges per cell and ``K = len(rules.ops)``: ``action[i]`` is
    the new op (index into ``env.unwrapped.rules.ops``) of edge ``i`` (normal cell edges, then reduction cell
    edges, each sorted by destination node). :meth:`action_masks` gives the valid ops as a flat boolean array of
    length ``2E * K`` (sb3-contrib's ``MaskablePPO`` convention); ``info["action_mask"]`` carries it too.

    ## Observation Space
    A ``Dict`` of fixed-shape arrays (see :mod:`nat_gym.envs.observation`):
    ``ops`` (2, E, K) one-hot ops, ``edges`` (2, E, 2) edge endpoints, ``adjacency`` (2, N, N) node adjacency
    (``N = steps + 2``), ``concat`` (2, N) the nodes that feed the cell output, ``action_mask`` (2, E, K). The
    observation determines the genotype (``observation.decode``). ``nat_gym.envs.observation.to_pyg_batch`` turns
    observations into a ``torch_geometric`` batch of cell graphs.

    ## Rewards
    ``acc(alpha) - acc(beta)`` on the same validation images with the same shared weights (``reward_images=None``:
    the whole validation split, deterministic and cached per architecture; an integer: a random minibatch of that
    many images per step, as the paper does). Plus ``cost_weight * (MAdds(beta) - MAdds(alpha)) / MAdds(beta)``
    (default 0: the paper's reward; the rules already keep the cost from rising). With
    ``invalid_action="penalize"``, minus ``invalid_penalty * invalid_edges / 2E``.

    ## Starting State
    ``beta`` is sampled as in the paper: for each intermediate node two predecessors uniformly (with replacement) and
    two ops uniformly from the rule set's ops without ``null``. ``reset(options={"genotype": g})`` starts from a given
    genotype (a :class:`~nat_gym.genotype.Genotype`, a registered name such as ``"DARTS_V2"``, a JSON file or the
    compact string form). ``options={"score": False}`` leaves ``beta`` unscored until the step (``info`` then has
    no ``"acc"``): a caller that scores many inputs in one batched ``evaluator.evaluate`` call uses it.

    ## Episode End
    The episode terminates after ``max_transforms`` transformations (default 1: the paper's one-step MDP); with
    ``max_transforms = k`` the result is transformed again, ``k`` times in all. There is no truncation.

    ## Arguments
    - ``rules``: ``"nat++"`` (default), ``"nat"``, ``"nat++ext"`` (``"nat-ext"``), or a ``TransitionRules``.
    - ``evaluator``: any :class:`~nat_gym.evaluator.Evaluator`; default: a :class:`SupernetEvaluator` over
      ``supernet`` on the validation split of ``dataset``.
    - ``supernet``: a ``Supernet``, a checkpoint path, or ``None`` for the default supernet of ``dataset`` (trained
      once, a few minutes on 2 CPU cores, and cached; see :mod:`nat_gym.supernet.default`).
    - ``dataset`` (``"digits"``), ``data_root``, ``data_seed``: the images (see :mod:`nat_gym.data`).
    - ``steps`` (4): intermediate nodes per cell. ``reward_images``: see Rewards. ``cost_weight``: see Rewards.
    - ``max_transforms`` (1): see Episode End.
    - ``invalid_action``: ``"keep"`` (default: a masked-out op leaves the edge unchanged, counted in
      ``info["invalid_edges"]``), ``"raise"`` (``TransitionError``) or ``"penalize"`` (keep, and lower the reward).
    - ``cost_config``: the stand-alone network whose params/MAdds ``info`` reports (defaults to the supernet's shape).
    - ``device``: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``. ``render_mode``: ``"ansi"`` (a text
      diff of the cells) or ``"rgb_array"`` (a drawing of both cells before / after the last step, always
      :attr:`frame_size` pixels: 720 x 1280).

    ## Info
    ``genotype_before`` / ``genotype_after`` (Genotypes), ``acc_before`` / ``acc_after``, ``params_before`` /
    ``params_after``, ``madds_before`` / ``madds_after``, ``madds_saving`` (relative), ``invalid_edges``,
    ``reward_batch`` and ``action_mask``. After ``reset``: ``genotype``, ``acc`` (unless ``options["score"]`` is
    False), ``params``, ``madds``, ``reward_batch`` and ``action_mask``. ``reward_batch`` (the index of the
    validation minibatch the accuracies were measured on) is there only when ``reward_images`` is an integer:
    with the whole split there is no minibatch, and ``evaluator.evaluate(genotypes, info.get("reward_batch"))``
    reproduces the accuracies either way. Every value is a number, a numpy array, a string or a Genotype, never
    ``None``, so loggers and replay buffers (e.g. Tianshou's, which rejects ``None`` as ``nan``) can hold it.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 1}
    env_id = "NATCell-v0"
    """The Gymnasium id this class is registered under (named in error hints)."""
    frame_size: tuple[int, int] = (720, 1280)
    """``(H, W)`` of every ``rgb_array`` frame: one size for every genotype, before and after a step (video
    recorders such as Gymnasium's ``RecordVideo`` need it); each drawing is scaled to fit, on white."""

    def __init__(
        self,
        rules: str | rule_sets.TransitionRules = "nat++",
        *,
        evaluator: Evaluator | None = None,
        supernet: Any = None,
        dataset: str = "digits",
        data_root: str | None = None,
        data_seed: int = 0,
        steps: int = 4,
        reward_images: int | None = None,
        cost_weight: float = 0.0,
        max_transforms: int = 1,
        invalid_action: InvalidAction = "keep",
        invalid_penalty: float = 1.0,
        cost_config: Mapping[str, int] | None = None,
        device: str = "auto",
        render_mode: str | None = None,
    ) -> None:
        super().__init__()
        self.rules = rule_sets.get(rules)
        if invalid_action not in ("keep", "raise", "penalize"):
            raise ConfigError(f"invalid_action: expected 'keep', 'raise' or 'penalize', got {invalid_action!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(f"render_mode: expected one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        if isinstance(max_transforms, bool) or not isinstance(max_transforms, int) or max_transforms < 1:
            raise ConfigError(f"max_transforms: expected an integer >= 1, got {max_transforms!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 8:
            raise ConfigError(f"steps: expected an integer in 1..8, got {steps!r}")
        if reward_images is not None and (isinstance(reward_images, bool) or reward_images < 1
                                          or not isinstance(reward_images, numbers.Integral)):  # fmt: skip
            raise ConfigError(f"reward_images: expected a positive integer (images per reward minibatch) or None (the "
                              f"whole validation split), got {reward_images!r}")  # fmt: skip
        self.steps = steps
        self.cost_weight = _non_negative("cost_weight", cost_weight)
        self.max_transforms = max_transforms
        self.invalid_action = invalid_action
        self.invalid_penalty = _non_negative("invalid_penalty", invalid_penalty)
        self.render_mode = render_mode
        self._sample_ops = tuple(o for o in self.rules.ops if o != "null")
        if evaluator is None:
            evaluator, shape = _default_evaluator(
                self.rules, supernet, dataset, data_root, data_seed, steps, reward_images, device
            )
        else:
            if supernet is not None:
                raise ConfigError("supernet: give either an evaluator or a supernet, not both")
            shape = {"C": 8, "layers": 5, "num_classes": 10, "input_size": 8, "in_channels": 1}
        if not isinstance(evaluator, Evaluator):
            raise ConfigError(f"evaluator: {type(evaluator).__name__} does not implement the Evaluator protocol")
        self.evaluator = evaluator
        self.cost_config = dict(shape if cost_config is None else cost_config)
        unknown = sorted(set(self.cost_config) - _COST_KEYS)
        if unknown:
            raise ConfigError(f"cost_config: unknown keys {unknown}; allowed: {sorted(_COST_KEYS)}")
        cost_model.check_network_args(**{k: v for k, v in self.cost_config.items() if k != "affine"})
        self._network_cost = partial(cost_model.network_cost, **self.cost_config)
        self._new_memos()
        self._edges = 2 * steps
        self._action_shape = (2 * self._edges,)
        self.observation_space = observation_space(steps, self.rules.num_ops)
        self.action_space = action_space(steps, self.rules.num_ops)
        self._genotype: Genotype | None = None
        self._batch: int | None = None
        self._t = 0
        self._last: dict[str, Any] = {}

    # --------------------------------------------------------------------------------------------------- API
    @property
    def genotype(self) -> Genotype:
        """The current architecture (``beta``)."""
        if self._genotype is None:
            raise gym.error.ResetNeeded("call reset() before using the environment")
        return self._genotype

    def action_masks(self) -> np.ndarray:
        """Flat boolean mask of valid ops, ``[2E * K]`` (normal edges, then reduction edges)."""
        return self._view(self.genotype).flat_mask.copy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = sorted(set(options) - {"genotype", "score"})
        if unknown:
            raise ConfigError(f"options: unknown keys {unknown}; allowed: ['genotype', 'score']")
        score = options.get("score", True)
        if not isinstance(score, (bool, np.bool_)):
            raise ConfigError(f"options['score']: expected True or False, got {score!r}")
        if options.get("genotype") is not None:
            beta = named.resolve(options["genotype"])
            self._check_start(beta)
        else:
            beta = random_genotype(self.np_random, self.steps, self._sample_ops)
        view = self._view(beta)  # checks beta's ops against the rule set
        self._genotype, self._t = beta, 0
        self._batch = self._draw_batch()
        info = {"genotype": beta, "params": view.cost.params, "madds": view.cost.madds,
                "action_mask": view.flat_mask.copy()}  # fmt: skip
        if self._batch is not None:
            info["reward_batch"] = self._batch
        self._last = {"genotype_before": beta, "genotype_after": beta}
        if score:  # scored now and cached, so that the first step evaluates one new architecture
            info["acc"] = float(self.evaluator.evaluate([beta], self._batch)[0])
            self._last.update(acc_before=info["acc"], acc_after=info["acc"])
        return view.observation(), info

    def step(self, action):
        beta = self.genotype
        alpha, invalid = self._transition(beta, action)
        if invalid and self.invalid_action == "raise":
            self.rules.apply(beta, np.asarray(action), invalid="raise")  # a TransitionError naming the first bad edge
        reward, info = self._score(beta, alpha, invalid)
        terminated = self._advance(alpha)
        view_a = self._view(alpha)
        info["action_mask"] = view_a.flat_mask.copy()
        self._last = info
        return view_a.observation(), reward, terminated, False, info

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='ansi' or 'rgb_array' to make()")
            return None
        last = self._last or {"genotype_before": self.genotype, "genotype_after": self.genotype}
        before, after = last["genotype_before"], last["genotype_after"]
        if self.render_mode == "ansi":
            head = ""
            if "acc_before" in last:
                head = f"accuracy {last['acc_before']:.4f} -> {last['acc_after']:.4f}\n"
            return head + before.diff(after) + "\n"
        from nat_gym.plotting import genotype_image

        return genotype_image(before, after if after != before else None, size=self.frame_size)

    # --------------------------------------------------------------------------------------------------- copies
    def __getstate__(self) -> dict[str, Any]:
        """Pickled / deep-copied state: everything but the memos (the per-genotype memo wraps a method of *this*
        env). A copy starts with empty memos of its own and shares nothing mutable with the original: its own
        RNG state, evaluator (and evaluator cache) and current genotype. Ray, RLlib and vector envs rely on it."""
        state = self.__dict__.copy()
        del state["_view"], state["_transitions"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._new_memos()

    def _new_memos(self) -> None:
        """Memos of pure functions: per genotype (rule check, observation, mask, cost) and per (state, action)."""
        self._view = lru_cache(maxsize=1 << 12)(self._genotype_view)
        self._transitions: dict[tuple[Genotype, bytes], tuple[Genotype, int]] = {}

    # --------------------------------------------------------------------------------------------------- helpers
    def _check_start(self, beta: Genotype) -> None:
        """Raise a :class:`GenotypeError` whose hint makes an environment that takes ``beta``: the right ``steps``
        and a rule set whose vocabulary holds ``beta``'s ops (checked together, so one hint fixes both)."""
        outside = sorted({o for o in beta.ops if o not in self.rules.ops})
        if beta.steps == self.steps and not outside:
            return
        problems, fix = [], []
        if beta.steps != self.steps:
            problems.append(f"it has {beta.steps} intermediate nodes per cell but this environment was made with "
                            f"steps={self.steps}")  # fmt: skip
            fix.append(f"steps={beta.steps}")
        if outside:  # every op nat-gym knows is in a shipped rule set (nat-ext, nat++ext), so one covers them
            problems.append(f"it uses {outside}, outside the vocabulary of rule set {self.rules.name!r}")
            fix.append(f"rules={rule_sets.covering(beta.ops, self.rules).name!r}")
        raise (InvalidOpError if outside else GenotypeError)(
            f"options['genotype']: {'; '.join(problems)}; use gym.make({self.env_id!r}, {', '.join(fix)}, ...) (with "
            "the other arguments as before; a supernet given by path or object must have those steps and ops)"
        )

    def _draw_batch(self) -> int | None:
        n = self.evaluator.num_batches
        return None if n == 1 else int(self.np_random.integers(n))

    def _score(self, beta: Genotype, alpha: Genotype, invalid: int) -> tuple[float, dict[str, Any]]:
        """Reward and ``info`` of one whole transformation ``beta -> alpha`` with ``invalid`` kept edges, scored on
        the current minibatch (every ``info`` key of a step but ``action_mask``)."""
        acc_b, acc_a = (float(v) for v in self.evaluator.evaluate([beta, alpha], self._batch))
        cb, ca = self._view(beta).cost, self._view(alpha).cost
        saving = (cb.madds - ca.madds) / cb.madds if cb.madds else 0.0
        reward = acc_a - acc_b + self.cost_weight * saving
        if self.invalid_action == "penalize":
            reward -= self.invalid_penalty * invalid / (2 * self._edges)
        info = {
            "genotype_before": beta, "genotype_after": alpha, "acc_before": acc_b, "acc_after": acc_a,
            "params_before": cb.params, "params_after": ca.params, "madds_before": cb.madds, "madds_after": ca.madds,
            "madds_saving": saving, "invalid_edges": invalid,
        }  # fmt: skip
        if self._batch is not None:
            info["reward_batch"] = self._batch
        return float(reward), info

    def _advance(self, alpha: Genotype) -> bool:
        """Make ``alpha`` the state after one transformation; ``True`` when that ends the episode."""
        self._t += 1
        self._genotype = alpha
        terminated = self._t >= self.max_transforms
        if not terminated:
            self._batch = self._draw_batch()  # the next transformation is scored on a fresh minibatch
        return terminated

    def _genotype_view(self, g: Genotype) -> _GenotypeView:
        """Everything the env reports about a genotype (memoised per genotype: all pure functions of it)."""
        self.rules.check(g)
        obs = encode(g, self.rules)
        for v in obs.values():
            v.flags.writeable = False
        return _GenotypeView(obs, flat_action_mask(obs), self._network_cost(g))

    def _transition(self, beta: Genotype, action: Any) -> tuple[Genotype, int]:
        """``(alpha, number of invalid edges)`` of an action, memoised per ``(beta, action)``."""
        ops = np.asarray(action)
        if ops.dtype != np.int64 and ops.dtype.kind in "iu":
            ops = ops.astype(np.int64)
        key = (beta, ops.tobytes()) if ops.dtype == np.int64 and ops.shape == self._action_shape else None
        hit = None if key is None else self._transitions.get(key)
        if hit is not None:
            return hit
        if ops.shape != self._action_shape:
            raise ConfigError(f"action: expected shape {self._action_shape} (one op index per edge), got {ops.shape}")
        if ops.dtype != np.int64 or ops.min() < 0 or ops.max() >= self.rules.num_ops:
            raise ConfigError(f"action: expected integers in 0..{self.rules.num_ops - 1}, got {ops.tolist()}")
        alpha, invalid_mask = self.rules.apply_indices(beta, ops)
        hit = (alpha, int(invalid_mask.sum()))
        if len(self._transitions) >= _MAX_TRANSITIONS:
            self._transitions.clear()
        self._transitions[key] = hit
        return hit


def _non_negative(name: str, value: Any) -> float:
    """``value`` as a float, or a :class:`ConfigError` naming ``name`` unless it is a finite number >= 0 (a ``nan``
    weight would make every reward ``nan``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name}: expected a finite number >= 0, got {value!r}")
    return float(value)


class _GenotypeView(NamedTuple):
    obs: dict[str, np.ndarray]  # read-only; handed out as copies
    flat_mask: np.ndarray
    cost: cost_model.NetworkCost

    def observation(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.obs.items()}  # copies: callers may write into them


def _default_evaluator(rules, supernet, dataset, data_root, data_seed, steps, reward_images, device):
    """Build the SupernetEvaluator the env uses when the user gives no evaluator."""
    from nat_gym.data import load_dataset
    from nat_gym.supernet import Supernet, SupernetConfig
    from nat_gym.supernet.checkpoint import load_checkpoint
    from nat_gym.supernet.cli import train_command
    from nat_gym.supernet.default import load_or_train

    data = load_dataset(dataset, root=data_root, seed=data_seed)
    if supernet is None:
        cfg = SupernetConfig(steps=steps, ops=rules.ops, num_classes=data.num_classes, in_channels=data.in_channels)
        supernet = load_or_train(cfg, data=data, dataset=dataset, data_seed=data_seed, device=device)
    elif isinstance(supernet, (str, os.PathLike)):
        supernet, _ = load_checkpoint(supernet)
    elif not isinstance(supernet, Supernet):
        raise ConfigError(f"supernet: expected a Supernet, a checkpoint path or None (the default supernet), got "
                          f"{type(supernet).__name__}")  # fmt: skip
    cfg = supernet.config
    missing = [o for o in rules.ops if o not in cfg.ops]
    if rules.name in rule_sets.RULE_SETS:
        command, path = train_command(rules.name, steps)
        train_one = f"`{command}`, then supernet={path!r}"
    else:  # a user's rule set: no command line names it
        train_one = f"Supernet(SupernetConfig(ops=rules.ops, steps={steps}, ...)) trained with SupernetTrainer"
    if missing:
        raise ConfigError(
            f"supernet: its op vocabulary lacks {missing}, which rule set {rules.name!r} can produce; use a "
            f"supernet built with ops={list(rules.ops)} ({train_one}), or supernet=None for the default supernet "
            "of these rules (trained once and cached)"
        )
    if cfg.steps < steps:
        raise ConfigError(
            f"supernet: it has steps={cfg.steps} but the environment asks for steps={steps}; use a supernet with "
            f"steps >= {steps} ({train_one}), or supernet=None for the default supernet (trained once and cached)"
        )
    if (cfg.num_classes, cfg.in_channels) != (data.num_classes, data.in_channels):
        raise ConfigError(
            f"supernet: it expects {cfg.in_channels} channels / {cfg.num_classes} classes but dataset {dataset!r} "
            f"has {data.in_channels} / {data.num_classes}"
        )
    evaluator = SupernetEvaluator(supernet, data.valid, batch_size=reward_images, device=device)
    shape = {"C": cfg.C, "layers": cfg.layers, "num_classes": cfg.num_classes, "input_size": data.image_size,
             "in_channels": cfg.in_channels}  # fmt: skip
    return evaluator, shape
