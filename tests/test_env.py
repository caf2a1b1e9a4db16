"""``NATCell-v0``: Gymnasium / SB3 API checks, action masks, invalid actions, determinism, rewards, the reward
cache, MaskablePPO, and argument errors. Supernet-backed envs use a tiny random-init supernet on ``digits``;
the rest use a ``CallableEvaluator`` for speed (no test trains the default supernet)."""

from __future__ import annotations

import math
import os
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env

import nat_gym  # noqa: F401  (registers NATCell-v0)
from nat_gym import genotypes as named
from nat_gym import rules as rule_sets
from nat_gym.cost import network_cost
from nat_gym.envs.nat_cell import NATCellEnv
from nat_gym.errors import ConfigError, GenotypeError, InvalidOpError, TransitionError
from nat_gym.evaluator import CallableEvaluator, SupernetEvaluator
from nat_gym.genotype import Genotype
from nat_gym.ops import op_spec
from nat_gym.supernet.checkpoint import save_checkpoint
from nat_gym.supernet.config import SupernetConfig
from nat_gym.supernet.model import Supernet

RULE_NAMES = ["nat", "nat++", "nat++ext"]
DIGITS_VALID = 360  # images in the digits validation split
COST_C16 = {"C": 16, "layers": 5, "num_classes": 10, "input_size": 8, "in_channels": 1}


_NETS: dict[tuple, Supernet] = {}


def _supernet(rules: str = "nat++", seed: int = 0, **overrides) -> Supernet:
    """A tiny random-init supernet for ``rules``; built once per configuration and shared (envs never train it,
    and every env has its own evaluator cache)."""
    key = (rules, seed, tuple(sorted(overrides.items())))
    if key not in _NETS:
        torch.manual_seed(seed)
        cfg = {"C": 4, "layers": 3, "ops": rule_sets.get(rules).ops, "num_classes": 10, "in_channels": 1,
               **overrides}  # fmt: skip
        _NETS[key] = Supernet(SupernetConfig(**cfg))
    return _NETS[key]


def _skip_fraction(g: Genotype) -> float:
    return sum(o == "skip_connect" for o in g.ops) / len(g.ops)


def _fast_env(rules: str = "nat++", **kwargs) -> NATCellEnv:
    return NATCellEnv(rules, evaluator=CallableEvaluator(_skip_fraction), **kwargs)


@pytest.fixture
def make_env():
    """``make_env(rules, **kwargs)``: ``gym.make("NATCell-v0")`` with a tiny random-init supernet on digits."""
    envs = []

    def make(rules: str = "nat++", seed: int = 0, **kwargs):
        env = gym.make("NATCell-v0", rules=rules, supernet=_supernet(rules, seed), dataset="digits", device="cpu",
                       **kwargs)  # fmt: skip
        envs.append(env)
        return env

    yield make
    for env in envs:
        env.close()


def _masked_action(env, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random valid action: for each edge, one of the ops its mask allows."""
    u = env.unwrapped
    mask = u.action_masks().reshape(2 * u._edges, u.rules.num_ops)
    return np.array([rng.choice(np.flatnonzero(row)) for row in mask], dtype=np.int64)


def _identity_action(env) -> np.ndarray:
    u = env.unwrapped
    return np.array([u.rules.index(o) for o in u.genotype.ops], dtype=np.int64)


def _first_invalid(env) -> tuple[int, int]:
    """(edge, op index) of a masked-out op on the first edge that has one."""
    u = env.unwrapped
    mask = u.action_masks().reshape(2 * u._edges, u.rules.num_ops)
    for i, row in enumerate(mask):
        if not row.all():
            return i, int(np.flatnonzero(~row)[0])
    raise AssertionError("every op is allowed on every edge")


def _assert_same(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b, (a, b)


# ------------------------------------------------------------------------------------------------- API checkers
@pytest.mark.parametrize("rules", RULE_NAMES)
def test_gymnasium_and_sb3_env_checkers(make_env, rules):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = make_env(rules, reward_images=64)  # 64-image reward minibatches: the same API, faster
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gym_check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env.unwrapped, skip_render_check=True)


def test_make_and_spaces(make_env):
    env = make_env("nat++")
    assert env.spec.id == "NATCell-v0"
    u = env.unwrapped
    assert isinstance(u, NATCellEnv) and isinstance(u.evaluator, SupernetEvaluator)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert env.action_space.shape == (16,) and set(env.action_space.nvec.tolist()) == {13}
    mask = u.action_masks()
    assert mask.shape == (16 * 13,) and mask.dtype == bool
    np.testing.assert_array_equal(mask, info["action_mask"])
    np.testing.assert_array_equal(mask, obs["action_mask"].reshape(-1) != 0)
    assert isinstance(info["genotype"], Genotype) and 0.0 <= info["acc"] <= 1.0


def test_supernet_as_checkpoint_path(tmp_path):
    net = _supernet("nat")
    path = save_checkpoint(tmp_path / "net.pt", net)
    env = NATCellEnv("nat", supernet=str(path), dataset="digits", device="cpu")
    assert env.evaluator.supernet.config == net.config
    env.reset(seed=0, options={"genotype": "DARTS_V2"})
    g = named.get("DARTS_V2")
    with torch.no_grad():
        from nat_gym.data import load_dataset

        valid = load_dataset("digits").valid
        expected = int((net(valid.x, g).argmax(-1) == valid.y).sum()) / len(valid)
    assert env.evaluator.evaluate([g])[0] == pytest.approx(expected, abs=1e-6)


# ------------------------------------------------------------------------------------------------- rendering
def test_render_ansi(make_env):
    env = make_env(render_mode="ansi")
    env.reset(seed=1)
    text = env.render()
    assert isinstance(text, str) and "edges changed" in text
    env.step(_masked_action(env, np.random.default_rng(0)))
    text = env.render()
    assert "edges changed" in text and "accuracy" in text


def test_render_rgb_array():
    env = _fast_env(render_mode="rgb_array")
    env.reset(seed=1)
    img = env.render()
    assert isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    env.step(_masked_action(env, np.random.default_rng(0)))
    img = env.render()
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) > 10


def test_rgb_array_frames_have_one_size_across_steps_episodes_and_genotypes():
    """Video recorders (Gymnasium's RecordVideo: "ImageSequenceClip requires all images to be the same size") need
    one frame size per env: after reset (one drawing) and after a step (before / after), for fully-concat and
    loose-end cells, 4 and 5 steps."""
    shapes = set()
    for rules, steps, starts in (("nat++", 4, [None, "VGG", "MobileNetV2"]), ("nat++ext", 5, ["ENAS", "NASNet"])):
        env = _fast_env(rules, steps=steps, max_transforms=2, render_mode="rgb_array")
        rng = np.random.default_rng(steps)
        for i, start in enumerate(starts):
            env.reset(seed=i, options={"genotype": start})
            shapes.add(env.render().shape)
            for _ in range(2):
                env.step(_masked_action(env, rng))
                frame = env.render()
                shapes.add(frame.shape)
                assert frame.dtype == np.uint8
    assert shapes == {(*NATCellEnv.frame_size, 3)} == {(720, 1280, 3)}


def test_render_without_mode_returns_none():
    env = _fast_env()
    env.reset(seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert env.render() is None


# ------------------------------------------------------------------------------------------------- random actions
def test_unmasked_random_actions():
    env = _fast_env("nat++", max_transforms=4)
    env.action_space.seed(0)
    env.reset(seed=0)
    invalid, episodes = [], 0
    for _ in range(2000):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert not truncated and math.isfinite(reward)
        invalid.append(info["invalid_edges"])
        # edges with a masked-out op keep their op ("keep"): the result is always a valid transformation
        assert env.rules.validate_transformation(info["genotype_before"], info["genotype_after"]) == []
        if terminated:
            episodes += 1
            env.reset()
    assert episodes == 500
    assert max(invalid) > 0 and all(0 <= n <= 16 for n in invalid)


def _madds_increase_explained(before: Genotype, after: Genotype) -> bool:
    """The rules never raise the cost, except ``null -> skip`` and, on a stride-2 edge (leaving an input node of
    the reduction cell), ``pool -> skip`` (a skip there is a factorized reduce; see nat_gym.rules)."""
    e = len(before.normal.edges)
    for i, (a, b) in enumerate(zip(before.edges, after.edges)):
        if a.op != "skip_connect" and b.op == "skip_connect":
            if a.op == "null" or (i >= e and a.src < 2 and op_spec(a.op).is_pool):
                return True
    return False


@pytest.mark.parametrize("rules", RULE_NAMES)
def test_masked_random_actions_are_valid_and_never_costlier(rules):
    env = _fast_env(rules, max_transforms=3)
    rng = np.random.default_rng(1)
    env.reset(seed=1)
    increases = 0
    for _ in range(300):
        obs, _, terminated, _, info = env.step(_masked_action(env, rng))
        assert info["invalid_edges"] == 0
        before, after = info["genotype_before"], info["genotype_after"]
        assert env.rules.validate_transformation(before, after) == []
        if info["madds_after"] > info["madds_before"]:
            increases += 1
            assert _madds_increase_explained(before, after), before.diff(after)
        assert info["madds_saving"] == pytest.approx(
            (info["madds_before"] - info["madds_after"]) / info["madds_before"]
        )
        assert env.observation_space.contains(obs)
        if terminated:
            env.reset()
        else:
            np.testing.assert_array_equal(info["action_mask"], env.action_masks())


# ------------------------------------------------------------------------------------------------- invalid actions
def test_invalid_action_raise():
    env = _fast_env(invalid_action="raise")
    env.reset(seed=0, options={"genotype": "DARTS_V2"})
    action = _identity_action(env)
    edge, op = _first_invalid(env)
    action[edge] = op
    for _ in range(2):  # the second time the transition is memoised: it must raise all the same
        with pytest.raises(TransitionError, match=env.rules.ops[op]):
            env.step(action)
    assert env.genotype == named.get("DARTS_V2")  # nothing changed
    _, _, _, _, info = env.step(_identity_action(env))
    assert info["invalid_edges"] == 0


@pytest.mark.parametrize("penalty", [1.0, 0.5])
def test_invalid_action_penalize(make_env, penalty):
    rewards, infos = {}, {}
    for mode in ("keep", "penalize"):
        env = make_env("nat++", invalid_action=mode, invalid_penalty=penalty)
        env.reset(seed=4)
        env.action_space.seed(4)
        action = env.action_space.sample()
        _, rewards[mode], _, _, infos[mode] = env.step(action)
    n = infos["keep"]["invalid_edges"]
    assert n > 0 and infos["penalize"]["invalid_edges"] == n
    assert infos["keep"]["genotype_after"] == infos["penalize"]["genotype_after"]
    assert rewards["keep"] - rewards["penalize"] == pytest.approx(penalty * n / 16, abs=1e-12)


# ------------------------------------------------------------------------------------------------- determinism
def test_same_seed_same_trajectory(make_env):
    runs = []
    for _ in range(2):
        env = make_env("nat++", seed=0, max_transforms=2, reward_images=64)
        rng = np.random.default_rng(5)
        record = [env.reset(seed=123)]
        for _ in range(6):
            obs, reward, terminated, truncated, info = env.step(_masked_action(env, rng))
            record.append((obs, reward, terminated, truncated, info))
            if terminated:
                record.append(env.reset())
        runs.append(record)
    assert len(runs[0]) == len(runs[1])
    for a, b in zip(*runs):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)


def test_different_seeds_differ():
    env = _fast_env()
    first = env.reset(seed=0)[1]["genotype"]
    assert any(env.reset(seed=s)[1]["genotype"] != first for s in range(1, 4))


def test_reset_from_named_genotype():
    env = _fast_env()
    obs, info = env.reset(options={"genotype": "DARTS_V2"})
    assert env.genotype == named.get("DARTS_V2") == info["genotype"]
    obs2, _ = env.reset(options={"genotype": named.get("DARTS_V2")})
    _assert_same(obs, obs2)
    _, info = env.reset(options={"genotype": None})  # None: a random genotype
    assert info["genotype"].steps == 4


def test_reset_errors():
    env = _fast_env()
    with pytest.raises(GenotypeError, match="steps"):
        env.reset(options={"genotype": "ENAS"})  # 5 steps on a steps=4 env
    with pytest.raises(ConfigError, match="unknown keys"):
        env.reset(options={"genotpye": "DARTS_V2"})
    darts = named.get("DARTS_V2")
    outside = darts.with_ops(["max_pool_5x5", *darts.ops[1:]])  # max_pool_5x5 is not in NAT's vocabulary
    with pytest.raises(InvalidOpError, match="max_pool_5x5"):
        _fast_env("nat").reset(options={"genotype": outside})
    with pytest.raises(gym.error.ResetNeeded):
        _fast_env().step(np.zeros(16, dtype=np.int64))
    with pytest.raises(ConfigError, match="score"):
        env.reset(options={"score": "no"})


def test_reset_without_scoring_defers_beta_to_the_step(make_env):
    env = make_env("nat++", render_mode="ansi")
    ev = env.unwrapped.evaluator
    _, info = env.reset(seed=3, options={"score": False})
    assert "acc" not in info and ev.cache_info["evaluations"] == 0
    assert "accuracy" not in env.render()  # nothing scored yet
    _, reward, _, _, step_info = env.step(_masked_action(env, np.random.default_rng(3)))
    assert ev.cache_info["evaluations"] == 2  # beta and alpha, both at the step
    _, scored = env.reset(seed=3)
    assert scored["acc"] == step_info["acc_before"] and ev.cache_info["evaluations"] == 2  # a cache hit
    assert reward == pytest.approx(step_info["acc_after"] - step_info["acc_before"])


@pytest.mark.parametrize("name", ["DARTS_V2", "VGG", "ENAS", "NATv2_ENAS"])
def test_observation_determines_the_state(name):
    """The observation holds the whole genotype, cell outputs included (a loose-end cell and its fully-concat twin
    differ in cost and reward, so they must not alias): decode(obs) is the state after reset and after a step."""
    from nat_gym.envs.observation import decode

    g = named.get(name)
    env = _fast_env("nat++", steps=g.steps)
    obs, info = env.reset(options={"genotype": g})
    assert decode(obs, env.rules) == info["genotype"] == g
    obs, _, _, _, info = env.step(_masked_action(env, np.random.default_rng(0)))
    assert decode(obs, env.rules) == info["genotype_after"]
    assert info["genotype_after"].reduce.concat == g.reduce.concat


def test_five_step_env():
    env = _fast_env("nat++", steps=5)
    _, info = env.reset(options={"genotype": "ENAS"})
    assert info["genotype"] == named.get("ENAS") and env.action_space.shape == (20,)
    _, _, _, _, info = env.step(_masked_action(env, np.random.default_rng(0)))
    assert info["invalid_edges"] == 0


# ------------------------------------------------------------------------------------------------- episodes
def test_max_transforms_chains_steps():
    env = _fast_env(max_transforms=3)
    _, info = env.reset(seed=2)
    current = info["genotype"]
    rng = np.random.default_rng(2)
    flags = []
    for _ in range(3):
        _, _, terminated, truncated, info = env.step(_masked_action(env, rng))
        assert info["genotype_before"] == current and not truncated
        current = info["genotype_after"]
        assert env.genotype == current
        flags.append(terminated)
    assert flags == [False, False, True]


def test_default_episode_is_one_step():
    env = _fast_env()
    env.reset(seed=0)
    assert env.step(_identity_action(env))[2] is True


# ------------------------------------------------------------------------------------------------- rewards
def test_reward_minibatches(make_env):
    env = make_env("nat++", reward_images=64)
    u = env.unwrapped
    assert u.evaluator.num_batches == math.ceil(DIGITS_VALID / 64)
    rng = np.random.default_rng(3)
    batches = set()
    for seed in range(6):
        _, info = env.reset(seed=seed)
        assert isinstance(info["reward_batch"], int) and 0 <= info["reward_batch"] < 6
        beta = info["genotype"]
        assert info["acc"] == u.evaluator.evaluate([beta], info["reward_batch"])[0]
        _, reward, _, _, info = env.step(_masked_action(env, rng))
        assert isinstance(info["reward_batch"], int)
        batches.add(info["reward_batch"])
        assert reward == pytest.approx(info["acc_after"] - info["acc_before"], abs=1e-12)
        acc = u.evaluator.evaluate([info["genotype_before"], info["genotype_after"]], info["reward_batch"])
        np.testing.assert_array_equal(acc, [info["acc_before"], info["acc_after"]])
        # accuracies on a 64-image minibatch (or the 40-image last one) are multiples of 1/size
        size = 64 if info["reward_batch"] < 5 else DIGITS_VALID - 5 * 64
        assert info["acc_after"] * size == pytest.approx(round(info["acc_after"] * size), abs=1e-5)
    assert len(batches) > 1


def test_whole_split_reward(make_env):
    env = make_env("nat")
    ev = env.unwrapped.evaluator
    assert ev.num_batches == 1
    _, info = env.reset(seed=0)
    assert "reward_batch" not in info  # no minibatch (and never a None value)
    _, reward, _, _, info = env.step(_masked_action(env, np.random.default_rng(0)))
    assert "reward_batch" not in info
    assert reward == pytest.approx(info["acc_after"] - info["acc_before"], abs=1e-12)
    acc = ev.evaluate([info["genotype_before"], info["genotype_after"]], info.get("reward_batch"))
    assert acc.tolist() == [info["acc_before"], info["acc_after"]]


_LOGGABLE = (int, float, np.integer, np.floating, np.ndarray, str, Genotype)


def _assert_loggable(info: dict) -> None:
    """What loggers and replay buffers can hold: numbers (finite), numeric arrays (finite), strings, genotypes.
    Tianshou's buffer, for one, stops on a None value (it reads as nan: ``MalformedBufferError``)."""
    for key, value in info.items():
        assert isinstance(value, _LOGGABLE), (key, value)
        if isinstance(value, (float, np.floating)):
            assert math.isfinite(value), (key, value)
        if isinstance(value, np.ndarray):
            assert value.dtype.kind in "biuf", (key, value.dtype)
            assert value.dtype.kind != "f" or np.isfinite(value).all(), key


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"reward_images": 64, "max_transforms": 2}, {"invalid_action": "penalize", "cost_weight": 0.5},
     {"invalid_action": "raise", "render_mode": "ansi"}],
)  # fmt: skip
def test_info_values_are_numbers_arrays_strings_or_genotypes(make_env, kwargs):
    env = make_env("nat++", **kwargs)
    env.action_space.seed(0)
    rng = np.random.default_rng(0)
    for options in (None, {"score": False}, {"genotype": "DARTS_V2"}, {"genotype": "VGG", "score": False}):
        _, info = env.reset(seed=0, options=options)
        _assert_loggable(info)
        terminated = False
        while not terminated:
            unmasked = kwargs.get("invalid_action") != "raise" and rng.random() < 0.5
            action = env.action_space.sample() if unmasked else _masked_action(env, rng)
            _, reward, terminated, _, info = env.step(action)
            _assert_loggable(info)
            assert isinstance(reward, float) and math.isfinite(reward)


def test_cost_weight_adds_the_madds_saving():
    env = _fast_env(cost_weight=1.0)
    rng = np.random.default_rng(4)
    savings = []
    for seed in range(5):
        env.reset(seed=seed)
        _, reward, _, _, info = env.step(_masked_action(env, rng))
        saving = (info["madds_before"] - info["madds_after"]) / info["madds_before"]
        assert info["madds_saving"] == pytest.approx(saving)
        assert reward == pytest.approx(info["acc_after"] - info["acc_before"] + saving, abs=1e-12)
        savings.append(saving)
    assert any(s != 0 for s in savings)


def test_reward_batch_is_the_batch_of_the_reward(make_env):
    """In multi-step episodes too, info["reward_batch"] names the minibatch that acc_before / acc_after (and so
    the reward) were measured on."""
    env = make_env("nat++", reward_images=64, max_transforms=4)
    ev = env.unwrapped.evaluator
    rng = np.random.default_rng(8)
    for seed in range(2):
        _, info = env.reset(seed=seed)
        assert info["acc"] == ev.evaluate([info["genotype"]], info["reward_batch"])[0]
        terminated = False
        while not terminated:
            _, _, terminated, _, info = env.step(_masked_action(env, rng))
            acc = ev.evaluate([info["genotype_before"], info["genotype_after"]], info["reward_batch"])
            assert acc.tolist() == [info["acc_before"], info["acc_after"]], info["reward_batch"]


def test_cost_config():
    env = _fast_env(cost_config=COST_C16)
    _, info = env.reset(seed=0)
    assert info["madds"] == network_cost(info["genotype"], **COST_C16).madds
    assert info["params"] == network_cost(info["genotype"], **COST_C16).params
    _, _, _, _, info = env.step(_identity_action(env))
    assert (
        info["madds_after"] == info["madds_before"] == network_cost(info["genotype_before"], **COST_C16).madds
    )


@pytest.mark.parametrize("cost_config", [{"channels": 8}, {"C": 0}, {"C": 8, "input_size": -1}])
def test_bad_cost_config_raises_config_error(cost_config):
    with pytest.raises(ConfigError):
        env = _fast_env(cost_config=cost_config)
        env.reset(seed=0)


def test_reward_cache(make_env):
    env = make_env("nat++")
    ev = env.unwrapped.evaluator
    env.reset(seed=7)
    action = _masked_action(env, np.random.default_rng(7))
    _, r1, _, _, info1 = env.step(action)
    runs = ev.cache_info["evaluations"]
    env.reset(seed=7)
    _, r2, _, _, info2 = env.step(action)
    assert r1 == r2
    assert info1["genotype_after"] == info2["genotype_after"]
    assert ev.cache_info["evaluations"] == runs


# ------------------------------------------------------------------------------------------------- MaskablePPO
class _RecordInvalid(gym.Wrapper):
    def __init__(self, env):
        super().__init__(env)
        self.invalid: list[int] = []

    def step(self, action):
        out = super().step(action)
        self.invalid.append(out[4]["invalid_edges"])
        return out


def test_maskable_ppo_learns_with_action_masks():
    from sb3_contrib import MaskablePPO

    env = _RecordInvalid(_fast_env("nat++"))
    model = MaskablePPO("MultiInputPolicy", env, n_steps=64, batch_size=32, n_epochs=2, seed=0, device="cpu")
    model.learn(total_timesteps=128)
    assert len(env.invalid) >= 128 and max(env.invalid) == 0  # masked during the rollouts too
    obs, _ = env.reset(seed=0)
    for _ in range(20):
        action, _ = model.predict(obs, action_masks=env.unwrapped.action_masks(), deterministic=False)
        obs, _, terminated, _, info = env.step(action)
        assert info["invalid_edges"] == 0
        if terminated:
            obs, _ = env.reset()


# ------------------------------------------------------------------------------------------------- argument errors
def test_evaluator_and_supernet_both_raise():
    with pytest.raises(ConfigError, match="not both"):
        NATCellEnv("nat++", evaluator=CallableEvaluator(_skip_fraction), supernet=_supernet())


def test_supernet_missing_rule_ops_raises():
    net = _supernet("nat")  # NAT's vocabulary: no max_pool_5x5, avg_pool_5x5, dil_conv_5x5 ...
    missing = [o for o in rule_sets.get("nat++").ops if o not in net.config.ops]
    with pytest.raises(ConfigError, match="lacks") as err:
        NATCellEnv("nat++", supernet=net, dataset="digits", device="cpu")
    assert all(o in str(err.value) for o in missing)


def test_supernet_shape_mismatches_raise():
    with pytest.raises(ConfigError, match="steps"):
        NATCellEnv("nat++", supernet=_supernet(steps=3), dataset="digits", device="cpu")
    with pytest.raises(ConfigError, match="channels"):
        NATCellEnv("nat++", supernet=_supernet(in_channels=3), dataset="digits", device="cpu")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"invalid_action": "ignore"},
        {"render_mode": "human"},
        {"max_transforms": 0},
        {"max_transforms": 1.5},
        {"max_transforms": True},
        {"steps": 0},
        {"steps": 9},
        {"steps": True},
        {"cost_weight": float("nan")},
        {"cost_weight": "0.1"},
        {"cost_weight": None},
        {"cost_weight": -0.5},
        {"invalid_penalty": float("inf")},
        {"reward_images": True},
        {"reward_images": 2.5},
        {"reward_images": 0},
        {"supernet": 123},
    ],
)
def test_bad_arguments_raise(kwargs):
    """Each a ConfigError naming the argument (issue 8 review: a nan cost_weight made every reward nan, a float or
    bool reward_images was truncated silently, a string weight ended in a bare ValueError)."""
    if "supernet" in kwargs:  # the default evaluator's path (nothing is trained: the check precedes it)
        with pytest.raises(ConfigError, match="supernet"):
            NATCellEnv("nat++", **kwargs)
        return
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        _fast_env(**kwargs)


def test_numpy_integer_reward_images_is_accepted(make_env):
    env = make_env(reward_images=np.int64(64))
    assert env.unwrapped.evaluator.batch_size == 64


def test_non_evaluator_raises():
    with pytest.raises(ConfigError, match="Evaluator"):
        NATCellEnv("nat++", evaluator=_skip_fraction)


@pytest.mark.parametrize(
    "action",
    [
        np.zeros(15, dtype=np.int64),
        np.zeros((2, 8), dtype=np.int64),
        np.full(16, 13, dtype=np.int64),
        np.full(16, -1, dtype=np.int64),
        np.full(16, 0.0),
    ],
)
def test_bad_actions_raise(action):
    env = _fast_env("nat++")
    env.reset(seed=0)
    with pytest.raises(ConfigError, match="action"):
        env.step(action)


# ------------------------------------------------------------------------------------------------- memos
def test_memoised_transitions_still_check_actions():
    env = _fast_env("nat++")
    env.reset(seed=0, options={"genotype": "DARTS_V2"})
    action = _masked_action(env, np.random.default_rng(0))
    _, r1, _, _, info1 = env.step(action)
    env.reset(options={"genotype": "DARTS_V2"})
    _, r2, _, _, info2 = env.step(action.astype(np.int32))  # same action, another integer dtype: the same result
    assert (r1, info1["genotype_after"]) == (r2, info2["genotype_after"])
    env.reset(options={"genotype": "DARTS_V2"})
    with pytest.raises(ConfigError, match="shape"):
        env.step(action.reshape(2, 8))  # the same bytes as a memoised action, in a wrong shape


def test_observations_and_masks_are_private_copies():
    env = _fast_env("nat++")
    obs, info = env.reset(seed=0, options={"genotype": "DARTS_V2"})
    reference = {k: v.copy() for k, v in obs.items()}
    for v in obs.values():
        v[...] = 0  # a caller writing into what it got ...
    info["action_mask"][...] = False
    env.action_masks()[...] = False
    obs2, info2 = env.reset(options={"genotype": "DARTS_V2"})  # ... does not change what the env hands out later
    _assert_same(obs2, reference)
    assert info2["action_mask"].any() and env.action_masks().any()


# ------------------------------------------------------------------------------------------------- copies
def _run(env, actions: list[np.ndarray], seeds: list[int]) -> list:
    """Finish the current episode with ``actions``, then one more episode per reset seed; every return value."""
    record, it = [], iter(actions)
    for seed in [None, *seeds]:
        if seed is not None:
            record.append(env.reset(seed=seed, options={"score": False}))
        terminated = False
        while not terminated:
            out = env.step(next(it))
            terminated = out[2]
            record.append(out)
    return record


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_envs_pickle_and_deepcopy_into_independent_envs(make_env, how):
    """Ray, RLlib and some vector envs pickle envs; deep copies must not call into the original either. Both give
    the same results as the original from the same state, and share no mutable state with it."""
    import copy
    import pickle

    env = make_env("nat++", reward_images=64, max_transforms=2)
    env.reset(seed=3, options={"score": False})
    rng = np.random.default_rng(0)
    env.step(_masked_action(env, rng))  # memos, the evaluator's cache and worker threads, the RNG: all in use
    twin = pickle.loads(pickle.dumps(env)) if how == "pickle" else copy.deepcopy(env)
    a, b = env.unwrapped, twin.unwrapped
    assert b._view.__wrapped__.__self__ is b and a._view is not b._view and a._transitions is not b._transitions
    assert a.evaluator is not b.evaluator and a.evaluator._cache is not b.evaluator._cache
    assert a.evaluator.supernet is not b.evaluator.supernet and a.np_random is not b.np_random
    assert b.genotype == a.genotype and b.np_random.bit_generator.state == a.np_random.bit_generator.state
    # the same steps from the same state; the copy runs first: the original must not notice
    seeds = [11, 12]
    env.action_space.seed(5)
    actions = [env.action_space.sample() for _ in range(5)]  # unmasked: invalid edges are kept ("keep")
    genotype, rng_state, cache_state = a.genotype, a.np_random.bit_generator.state, dict(a.evaluator.cache_info)
    copied = _run(twin, actions, seeds)
    assert a.np_random.bit_generator.state == rng_state and a.evaluator.cache_info == cache_state
    assert a.genotype == genotype and len(a._transitions) == 1
    original = _run(env, actions, seeds)
    assert len(copied) == len(original) == 7  # 1 step, then (reset, 2 steps) twice
    for x, y in zip(copied, original):
        for u, v in zip(x, y):
            _assert_same(u, v)


def test_genotypes_unpickled_in_another_process_hash_as_there():
    """Genotypes cross processes (infos of subprocess vector envs, envs sent to Ray workers): string hashes differ
    between processes, so a pickled genotype must not carry the hash memoised where it was made."""
    import pickle
    import subprocess
    import sys

    g = named.get("ENAS")
    hash(g), hash(g.normal)  # memoised here
    code = ("import pickle, sys; from nat_gym import genotypes; g = pickle.loads(sys.stdin.buffer.read()); "
            "f = genotypes.get('ENAS'); print(g == f, f in {g}, g.normal in {f.normal}, g in {f: 1})")  # fmt: skip
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(g), capture_output=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed})  # fmt: skip
        assert out.stdout.decode().split() == ["True"] * 4, out.stderr.decode()[-2000:]


def test_async_vector_env_with_the_new_observation():
    """gym.make_vec(..., vectorization_mode="async"): every worker holds its own env; observations (cell outputs
    included) come back batched, decode to the workers' genotypes, and masked actions stay valid."""
    from nat_gym.envs.observation import decode

    envs = gym.make_vec("NATCell-v0", num_envs=2, vectorization_mode="async", rules="nat++",
                        supernet=_supernet("nat++"), dataset="digits", device="cpu")  # fmt: skip
    try:
        obs, infos = envs.reset(seed=0)
        assert envs.observation_space.contains(obs) and obs["concat"].shape == (2, 2, 6)
        rules = rule_sets.get("nat++")
        for i in range(2):
            assert decode({k: v[i] for k, v in obs.items()}, rules) == infos["genotype"][i]
        rng = np.random.default_rng(0)
        masks = infos["action_mask"].reshape(2, 16, rules.num_ops)
        actions = np.array([[rng.choice(np.flatnonzero(row)) for row in m] for m in masks])
        obs, rewards, terminated, _, infos = envs.step(actions)
        assert terminated.all() and np.isfinite(rewards).all()
        assert infos["invalid_edges"].tolist() == [0, 0]
    finally:
        envs.close()
