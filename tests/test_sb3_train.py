"""Tests for the SB3 baselines of ``nat-gym train`` (agents.sb3.trainer, hyperparams, callbacks, nat_gym.budget),
with tiny budgets on a tiny random supernet (``tiny_ckpt``)."""

from __future__ import annotations

import csv
import dataclasses
import json
import pickle
import re

import gymnasium as gym
import numpy as np
import pytest
import torch

import nat_gym  # noqa: F401  (registers the envs)
from agents.cli import ALGOS, algo_fields
from agents.heldout import fresh_inputs, heldout_report, rollout_alphas, score
from agents.sb3.hyperparams import hyperparams_text, load_hyperparams, parse_assignments, policy_kwargs_value
from agents.sb3.trainer import ALGORITHMS, SB3Args, SB3Run, algorithm_class, load_model, train
from nat_gym import genotypes
from nat_gym.budget import BudgetedEvaluator, count_evaluations
from nat_gym.cli import build_parser, main
from nat_gym.errors import CheckpointError, ConfigError
from nat_gym.evaluator import CallableEvaluator
from nat_gym.sampling import random_valid_action

TINY_POLICY = "policy_kwargs=dict(net_arch=[16], features_extractor_kwargs=dict(op_embed_dim=4, lift_dim=8, hidden_dim=8))"
TINY_HP = {
    "maskable_ppo": ("n_steps=32", "batch_size=32", "n_epochs=2", TINY_POLICY),
    "ppo": ("n_steps=32", "batch_size=32", "n_epochs=2", TINY_POLICY),
    "a2c": ("n_steps=8", TINY_POLICY),
    "dqn": ("learning_starts=32", "buffer_size=400", "target_update_interval=64", TINY_POLICY),
}
ENV_OF = {"maskable_ppo": "NATCell-v0", "ppo": "NATCell-v0", "a2c": "NATCell-v0", "dqn": "NATEdge-v0"}


def tiny_args(algo: str, ckpt: str, out, **kw) -> SB3Args:
    base = dict(algo=algo, env=ENV_OF[algo], hyperparams=TINY_HP[algo], env_kwargs=(f"supernet={ckpt}",),
                n_timesteps=96, log_every=32, checkpoint_every=64, eval_every=64, eval_inputs=2, heldout_inputs=4,
                progress=False, device="cpu", out=str(out))  # fmt: skip
    base.update(kw)
    return SB3Args(**base)


def read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _skip_fraction(genotype) -> float:
    return sum(op == "skip_connect" for op in genotype.ops) / len(genotype.ops)


# ------------------------------------------------------------------------------------------------ hyper-parameters
@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_every_hyperparameter_file_builds_its_algorithm(algo):
    """Every entry of agents/hyperparams/<algo>.yml has the Zoo keys and only arguments the algorithm takes."""
    import yaml

    table = yaml.safe_load(hyperparams_text(algo))
    assert set(table) == ({"NATEdge-v0"} if algo == "dqn" else {"NATCell-v0", "NATEdge-v0"})
    for env_id in table:
        hp = load_hyperparams(algo, env_id)
        assert hp["n_timesteps"] > 0 and hp["policy"] == "MultiInputPolicy"
        assert isinstance(policy_kwargs_value(hp["policy_kwargs"]), dict)
        run = SB3Run(SB3Args(algo=algo, env=env_id))  # validates every key against the constructor
        assert run.n_timesteps == hp["n_timesteps"] and "n_timesteps" not in run.hyperparams


def test_overrides_are_literals_or_yaml():
    parsed = parse_assignments(["learning_rate=1e-3", "net=[64, 64]", "flag=true", "rules=nat++", "x=None"], "hyperparams")
    assert parsed == {"learning_rate": 1e-3, "net": [64, 64], "flag": True, "rules": "nat++", "x": None}
    with pytest.raises(ConfigError, match="key=value"):
        parse_assignments(["no_equals"], "hyperparams")
    kwargs = policy_kwargs_value("dict(net_arch=dict(pi=[64], vf=[32]), activation_fn=nn.Tanh, ortho_init=False)")
    assert kwargs == {"net_arch": {"pi": [64], "vf": [32]}, "activation_fn": torch.nn.Tanh, "ortho_init": False}
    for bad in ("dict(x=__import__('os'))", "dict(x=nn.functional)", "[1, 2]"):
        with pytest.raises(ConfigError, match="policy_kwargs"):
            policy_kwargs_value(bad)


def test_unknown_keys_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"hyperparams: unknown keys \['n_stepz'\].*allowed: .*'n_steps'"):
        SB3Run(SB3Args(algo="ppo", hyperparams=("n_stepz=3",)))
    with pytest.raises(ConfigError, match=r"env_kwargs: unknown keys \['rulez'\].*allowed: .*'rules'"):
        SB3Run(SB3Args(algo="ppo", env_kwargs=("rulez=nat",)))
    for bad in ("n_envs=0", "n_envs=-1", "n_envs=2.5"):  # were an IndexError traceback / silently 2
        with pytest.raises(ConfigError, match="n_envs: expected an integer >= 1"):
            SB3Run(SB3Args(algo="ppo", hyperparams=(bad,)))
    with pytest.raises(ConfigError, match="NATEdge-v0"):
        SB3Args(algo="dqn", env="NATCell-v0")
    with pytest.raises(ConfigError, match="policy"):
        SB3Args(policy="cnn")
    assert SB3Args(algo="a2c").out == "runs/a2c-NATCell-v0"


@pytest.mark.parametrize(("algo", "bad", "said"), [
    ("maskable_ppo", "n_steps=0", "n_steps: expected an integer >= 1, got 0"),  # an UnboundLocalError in training
    ("ppo", "n_steps=-5", "n_steps: expected an integer >= 1, got -5"),
    ("dqn", "buffer_size=-5", "buffer_size: expected an integer >= 1, got -5"),  # SB3 made it a buffer of 1
    ("dqn", "learning_starts=-1", "learning_starts: expected an integer >= 0"),
    ("ppo", "batch_size=2.5", "batch_size: expected an integer >= 1, got 2.5"),
    ("ppo", "gamma=1.5", "gamma: expected a number in [0, 1], got 1.5"),
    ("dqn", "exploration_final_eps=-0.1", "exploration_final_eps: expected a number in [0, 1]"),
    ("a2c", "learning_rate=0", "learning_rate: expected a number > 0 or a schedule, got 0"),
    ("ppo", "learning_rate=True", "learning_rate: expected a number > 0 or a schedule, got True"),
    ("ppo", "ent_coef=-1", "ent_coef: expected a number >= 0, got -1"),
])  # fmt: skip
def test_values_out_of_range_are_one_line_errors_before_any_env(algo, bad, said):
    """Values SB3 takes without a word or fails on deep inside training are refused when the run is made (before
    any env or model), naming --hyperparams and the allowed range."""
    with pytest.raises(ConfigError, match=re.escape(f"hyperparams: {said}")):
        SB3Run(SB3Args(algo=algo, env=ENV_OF[algo], hyperparams=(bad,)))
    fine = ("n_timesteps=1e3", "learning_rate='lin_1e-3'", "max_grad_norm=.inf", "gamma=1.0", "ent_coef=0.0")
    assert SB3Run(SB3Args(algo="ppo", hyperparams=fine)).n_timesteps == 1000  # a schedule; YAML's .inf: no clipping


@pytest.mark.parametrize("bad", ["learning_rate=abc", "policy_kwargs=dict(net_arch=[-1])",
                                 "policy=MlpPolicy"])  # fmt: skip
def test_values_sb3_rejects_are_one_line_errors(bad, tiny_ckpt, tmp_path):
    """A known key with a value SB3 or torch refuses (an assertion, a ValueError, a negative width) is a ConfigError
    naming --hyperparams, not a traceback."""
    run = SB3Run(tiny_args("ppo", tiny_ckpt, tmp_path, hyperparams=(*TINY_HP["ppo"], bad)))
    with pytest.raises(ConfigError, match=r"^hyperparams: PPO rejects them .*--hyperparams$"):
        run.build()


# ------------------------------------------------------------------------------------------------ command line
def test_every_field_is_a_documented_flag(capsys):
    real = {f.name: f for f in dataclasses.fields(SB3Args)}
    for algo in ALGORITHMS:
        spec = ALGOS[algo]
        assert spec.fixed == {"algo": algo}
        parsed = {f.name: f for f in algo_fields(spec)}
        assert list(parsed) == list(real)
        assert all(parsed[n].default == f.default and parsed[n].doc for n, f in real.items())
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = capsys.readouterr().out
    for name in set(real) - {"algo"}:
        assert "--" + name.replace("_", "-") in text, name
    assert "--algo " not in text.split("--algo {")[1].split("--resume")[0]  # algo is not a second flag
    # a flag of several algorithms gives each meaning when they differ
    assert "nat: Epochs between checkpoints" in " ".join(text.split())


def test_flags_map_to_args():
    ns = build_parser().parse_args(["train", "--algo", "dqn", "--env", "NATEdge-v0", "--hyperparams", "a=1", "b=x",
                                    "--evaluations", "50", "--policy", "mlp"])  # fmt: skip
    assert (ns.algo, ns.env, ns.hyperparams, ns.evaluations, ns.policy) == ("dqn", "NATEdge-v0", ["a=1", "b=x"], 50, "mlp")
    assert main(["train", "--algo", "dqn", "--env", "NATCell-v0"]) == 2  # the clear error, one line, exit 2
    assert main(["train", "--algo", "ppo", "--epochs", "3"]) == 2  # a flag of another algorithm


@pytest.mark.slow
def test_sb3_hints(tiny_ckpt, tmp_path, capsys):
    """Every hint of an SB3 run's errors works when followed (as tests/test_hints.py does for the others)."""
    out = str(tmp_path / "dqn")
    no_steps = ["train", "--algo", "dqn", *_cli_flags("dqn", tiny_ckpt, out)]
    base = [*no_steps, "--n-timesteps", "32"]
    # "env: --algo dqn needs a Discrete action space; use --env NATEdge-v0 (...)"
    assert main([*base, "--env", "NATCell-v0"]) == 2
    err = capsys.readouterr().err
    assert "use --env NATEdge-v0" in err and len(err.strip().splitlines()) == 1
    # "n_timesteps: not in agents/hyperparams/dqn.yml; pass --n-timesteps"
    assert main([*no_steps, "--hyperparams", *TINY_HP["dqn"], "n_timesteps=None"]) == 2
    assert "pass --n-timesteps" in capsys.readouterr().err
    assert main([*base, "--env", "NATEdge-v0"]) == 0  # both hints followed
    # "resume: ... was saved with other arguments (seed: checkpoint 0, now 1); ... pass the same values or ..."
    assert main([*base, "--n-timesteps", "64", "--seed", "1", "--resume"]) == 2
    assert "pass the same values" in capsys.readouterr().err
    assert main([*base, "--n-timesteps", "64", "--seed", "0", "--resume"]) == 0
    assert json.loads((tmp_path / "dqn" / "summary.json").read_text())["timesteps"] == 64


# ------------------------------------------------------------------------------------------------ runs
CLI_BUDGETS = {  # algo -> (flags of the first part, of the resumed part, counter read from summary.json)
    "nat": (["--epochs", "1"], ["--epochs", "2"], "epochs"),
    "maskable_ppo": (["--n-timesteps", "64"], ["--n-timesteps", "96"], "timesteps"),
    "ppo": (["--n-timesteps", "64"], ["--n-timesteps", "96"], "timesteps"),
    "a2c": (["--n-timesteps", "64"], ["--n-timesteps", "96"], "timesteps"),
    "dqn": (["--n-timesteps", "64"], ["--n-timesteps", "96"], "timesteps"),
}


def _cli_flags(algo: str, ckpt: str, out) -> list[str]:
    common = ["--out", str(out), "--no-progress", "--device", "cpu", "--eval-inputs", "2", "--heldout-inputs", "4"]
    if algo == "nat":
        return [*common, "--supernet", ckpt, "--no-train-supernet", "--policy-updates-per-epoch", "2",
                "--op-embed-dim", "4", "--lift-dim", "8", "--hidden-dim", "4", "--eval-every", "1"]  # fmt: skip
    return [*common, "--env", ENV_OF[algo], "--env-kwargs", f"supernet={ckpt}", "--hyperparams", *TINY_HP[algo],
            "--log-every", "32", "--checkpoint-every", "32", "--eval-every", "64"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("algo", list(CLI_BUDGETS))
def test_cli_run_writes_every_output_and_resumes(algo, tiny_ckpt, tmp_path, capsys):
    out = tmp_path / algo
    first, more, counter = CLI_BUDGETS[algo]
    flags = _cli_flags(algo, tiny_ckpt, out)
    assert main(["train", "--algo", algo, *flags, *first]) == 0
    for name in ("metrics.csv", "learning_curves.png", "checkpoint.pt", "summary.json"):
        assert (out / name).is_file(), name
    assert list(out.glob("events.out.tfevents.*"))
    rows = read_csv(out / "metrics.csv")
    assert rows and "reward" in rows[0] and rows[-1]["eval_reward"] != ""
    summary = json.loads((out / "summary.json").read_text())
    heldout = summary["heldout"]
    assert heldout["inputs"] == 4 and set(heldout) == {"inputs", "argmax", "sampled", "random_valid", "identity"}
    assert all(-1 <= heldout[k]["reward"] <= 1 and 0 <= heldout[k]["madds_saving"] <= 1
               for k in ("argmax", "sampled", "random_valid"))  # fmt: skip
    assert summary[counter] == int(first[1])
    assert main(["train", "--algo", algo, *flags, *first]) == 2  # an existing run is never overwritten
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--algo", algo, *flags, *more, "--resume"]) == 0  # continues to the larger budget
    resumed = json.loads((out / "summary.json").read_text())
    assert resumed[counter] == int(more[1])
    rows = read_csv(out / "metrics.csv")
    assert [r for r in rows if float(r.get("timesteps") or r.get("epoch")) <= int(first[1])]  # the first part kept


class _Crash(gym.Wrapper):
    """Raises ``KeyboardInterrupt`` at the 80th step of the process, as a user pressing Ctrl-C."""

    steps = 0

    def step(self, action):
        _Crash.steps += 1
        if _Crash.steps == 80:
            raise KeyboardInterrupt("simulated interruption")
        return self.env.step(action)


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_interrupted_run_resumes_exactly(algo, tiny_ckpt, tmp_path, monkeypatch):
    """A run interrupted at step 80 of 128 and resumed (from its checkpoint at step 64: model, DQN's replay buffer,
    envs mid-episode, RNG) ends with the weights and metrics of the uninterrupted run."""
    full_model, full = train(tiny_args(algo, tiny_ckpt, tmp_path / "full", n_timesteps=128))
    args = tiny_args(algo, tiny_ckpt, tmp_path / "cut", n_timesteps=128)
    monkeypatch.setattr(_Crash, "steps", 0)
    with pytest.raises(KeyboardInterrupt):
        train(args, make_env=lambda: _Crash(gym.make(args.env, supernet=tiny_ckpt)))
    cut_model, cut = train(args, resume=True)
    a, b = full_model.policy.state_dict(), cut_model.policy.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    keys = ("timesteps", "episodes", "evaluations", "reward", "madds_saving", "train/loss")
    assert [[r.get(k) for k in keys] for r in full] == [[r.get(k) for k in keys] for r in cut]
    with pytest.raises(ConfigError, match="seed: checkpoint 0, now 1"):
        train(tiny_args(algo, tiny_ckpt, tmp_path / "cut", n_timesteps=192, seed=1), resume=True)


@pytest.mark.slow
def test_evaluation_budget_stops_the_run(tiny_ckpt, tmp_path):
    model, history = train(tiny_args("a2c", tiny_ckpt, tmp_path / "budget", n_timesteps=10_000, evaluations=41))
    summary = json.loads((tmp_path / "budget" / "summary.json").read_text())
    assert summary["stopped_by"] == "evaluations"
    # a NATCell-v0 episode scores its input at reset and its transformation at the step: the run stops at the
    # first step that reaches the budget
    assert 41 <= summary["evaluations"] <= 42 and summary["timesteps"] == model.num_timesteps < 30
    assert history[-1]["evaluations"] == summary["evaluations"]


@pytest.mark.slow
def test_saved_model_predicts_the_same_masked_actions(tiny_ckpt, tmp_path):
    """model.zip and checkpoint.pt load into models that act as the trained one (MaskablePPO, masks given)."""
    from sb3_contrib import MaskablePPO

    out = tmp_path / "mppo"
    model, _ = train(tiny_args("maskable_ppo", tiny_ckpt, out, n_timesteps=64))
    loaded = MaskablePPO.load(out / "model.zip", device="cpu")
    from_ckpt, args = load_model(out / "checkpoint.pt", device="cpu")
    assert args.algo == "maskable_ppo" and isinstance(from_ckpt, MaskablePPO)
    env = gym.make("NATCell-v0", supernet=tiny_ckpt)
    for seed in range(4):
        obs, _ = env.reset(seed=seed, options={"score": False})
        masks = env.unwrapped.action_masks()
        for deterministic in (True, False):
            actions = []
            for m in (model, loaded, from_ckpt):
                torch.manual_seed(seed)
                actions.append(m.predict(obs, deterministic=deterministic, action_masks=masks)[0])
            assert all(np.array_equal(actions[0], a) for a in actions[1:])
            assert masks.reshape(16, -1)[np.arange(16), actions[0]].all()  # masked predictions are valid
    with pytest.raises(CheckpointError, match="not an SB3 run checkpoint"):
        load_model(tiny_ckpt)
    # the zip is SB3's own file: the error says to give checkpoint.pt or use the class's load, both done above
    with pytest.raises(CheckpointError, match=r"SB3's own model file; give the run's checkpoint.pt .* MaskablePPO.load"):
        load_model(out / "model.zip")


# ------------------------------------------------------------------------------------------------ budget, held-out
def test_counting_evaluator_counts_distinct_architectures():
    env = gym.make("NATCell-v0", evaluator=CallableEvaluator(_skip_fraction))
    counter = count_evaluations(env)
    assert count_evaluations(env) is counter and isinstance(env.unwrapped.evaluator, BudgetedEvaluator)
    assert counter.budget is None
    obs, _ = env.reset(seed=0)  # scores the input
    assert (counter.used, counter.requested) == (1, 1)
    identity = env.unwrapped.rules.op_indices(env.unwrapped.genotype)
    env.step(identity)  # scores [beta, alpha] = [beta, beta]: nothing new
    assert (counter.used, counter.requested) == (1, 3)
    counter.evaluator.bump_version()  # new weights: the same architecture costs again
    counter.evaluate([env.unwrapped.genotype])
    assert counter.used == 2
    assert counter.num_batches == 1 and counter.version == counter.evaluator.version
    assert counter.bump_version == counter.evaluator.bump_version  # other attributes are the wrapped evaluator's
    restored = pickle.loads(pickle.dumps(env))  # a resumed run keeps its counts
    assert restored.unwrapped.evaluator.used == 2 and restored.unwrapped.evaluator.seen(env.unwrapped.genotype)


def test_heldout_report_has_the_floors_and_rollouts_match_direct_transforms():
    env = gym.make("NATCell-v0", evaluator=CallableEvaluator(_skip_fraction))
    base = env.unwrapped
    betas = fresh_inputs(base.rules, 4, 6, seed=5)
    assert betas == fresh_inputs(base.rules, 4, 6, seed=5) and betas != fresh_inputs(base.rules, 4, 6, seed=6)
    rng = np.random.default_rng(0)
    ops = [random_valid_action(base.rules, b, rng) for b in betas]
    it = iter(ops)
    alphas = rollout_alphas(env, lambda obs, mask: np.asarray(next(it)), betas)
    assert alphas == [base.rules.apply_indices(b, o)[0] for b, o in zip(betas, ops)]
    rewards, savings = score(base.evaluator, base.cost_config, betas, alphas)
    assert np.allclose(rewards, [_skip_fraction(a) - _skip_fraction(b) for a, b in zip(alphas, betas)])
    assert (savings >= 0).all()
    skip = base.rules.ops.index("skip_connect")
    report = heldout_report(base.evaluator, base.cost_config, base.rules, betas,
                            lambda bs, det: [base.rules.apply(b, [skip] * 16) for b in bs])  # fmt: skip
    assert report["argmax"] == report["sampled"] and report["identity"] == {"reward": 0.0, "madds_saving": 0.0}
    assert report["argmax"]["reward"] == pytest.approx(1 - np.mean([_skip_fraction(b) for b in betas]))
    assert report["random_valid"]["reward"] < report["argmax"]["reward"]


def test_heldout_inputs_are_the_evidence_inputs():
    """summary.json's held-out inputs are scripts/evidence.py's 200 fresh inputs (seed 123456)."""
    from nat_gym.rules import get
    from nat_gym.sampling import random_genotype

    rules = get("nat++")
    rng = np.random.default_rng(123_456)
    ops = [o for o in rules.ops if o != "null"]
    assert fresh_inputs(rules)[:5] == [random_genotype(rng, 4, ops) for _ in range(5)]
    assert len(fresh_inputs(rules)) == 200 and genotypes.get("DARTS_V2") not in fresh_inputs(rules)


def test_algorithm_classes():
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import A2C, DQN, PPO

    assert [algorithm_class(a) for a in ALGORITHMS] == [MaskablePPO, PPO, A2C, DQN]


def test_hyperparameter_files_are_package_data():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert 'agents = ["hyperparams/*.yml"]' in text.split("[tool.setuptools.package-data]")[1].split("\n[")[0]
    assert '"pyyaml' in text.split("dependencies = [")[1].split("]")[0]
