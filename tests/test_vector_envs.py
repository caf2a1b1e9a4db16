"""Vector envs and the memory of the processes that hold an env: ``gym.make_vec(..., "async")`` and SB3's
``SubprocVecEnv`` for both envs (masks through ``call`` / ``env_method``, ``close`` ends the workers), concurrent
workers train the default supernet once, an env never imports torch_geometric, and the evaluator trims the heap.
Two workers, a tiny random-init supernet saved as a checkpoint, a few steps."""

from __future__ import annotations

import functools
import json
import platform
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from test_env import _supernet

import nat_gym  # noqa: F401  (registers the envs)
from nat_gym import heap
from nat_gym.supernet.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
K = 13
ENV_IDS = ["NATCell-v0", "NATEdge-v0"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return str(save_checkpoint(tmp_path_factory.mktemp("net") / "tiny.pt", _supernet("nat++")))


def _kwargs(checkpoint: str) -> dict:
    return {"supernet": checkpoint, "dataset": "digits", "device": "cpu", "reward_images": 64}


def _masked(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One masked random action per env from the stacked masks ``[n, 2E*K]`` or ``[n, K]``."""
    acts = np.array([[rng.choice(np.flatnonzero(row)) for row in m.reshape(-1, K)] for m in masks])
    return acts if acts.shape[1] > 1 else acts[:, 0]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_async_vector_env(env_id, checkpoint):
    envs = gym.make_vec(env_id, num_envs=2, vectorization_mode="async", **_kwargs(checkpoint))
    rng = np.random.default_rng(0)
    try:
        _, infos = envs.reset(seed=0)
        episodes = 0
        for _ in range(20):  # NATEdge-v0: beyond the end of the first episode (16 steps)
            np.testing.assert_array_equal(np.stack(envs.call("action_masks")), infos["action_mask"])
            _, rewards, terminated, _, infos = envs.step(_masked(infos["action_mask"], rng))
            assert np.isfinite(rewards).all()
            if "invalid_edges" in infos:  # not in the info of an autoreset step (it follows a terminal step)
                assert (infos["invalid_edges"][infos["_invalid_edges"]] == 0).all()
            episodes += int(terminated.sum())
        assert episodes >= 2
    finally:
        envs.close()
    assert envs.closed and not any(p.is_alive() for p in envs.processes)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_sb3_subproc_vec_env_and_maskable_ppo(env_id, checkpoint):
    """SB3's default start method (forkserver: fresh processes; "nat_gym:<id>" imports nat_gym there), masks
    through ``env_method("action_masks")`` as sb3-contrib reads them, and MaskablePPO collecting on the workers."""
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.utils import get_action_masks
    from stable_baselines3.common.vec_env import SubprocVecEnv

    make = functools.partial(gym.make, f"nat_gym:{env_id}", **_kwargs(checkpoint))
    venv = SubprocVecEnv([make, make])
    rng = np.random.default_rng(0)
    try:
        venv.seed(0)
        venv.reset()
        masks = get_action_masks(venv)
        assert masks.shape == ((2, 16 * K) if env_id == "NATCell-v0" else (2, K))
        np.testing.assert_array_equal(masks, np.stack(venv.env_method("action_masks")))
        _, rewards, _, infos = venv.step(_masked(masks, rng))
        assert np.isfinite(rewards).all() and [i["invalid_edges"] for i in infos] == [0, 0]
        model = MaskablePPO("MultiInputPolicy", venv, n_steps=16, batch_size=32, n_epochs=1, seed=0, device="cpu")
        model.learn(total_timesteps=32)
        assert model.num_timesteps == 32
    finally:
        venv.close()
    assert not any(p.is_alive() for p in venv.processes)


def test_concurrent_workers_train_the_default_supernet_once(monkeypatch, nat_gym_cache, capfd):
    """Two workers start together with no default supernet cached: one trains it (1 epoch here), the other waits
    for the file lock and loads it. (SB3's workers with ``fork``, so that the 1-epoch recipe carries over.)"""
    from stable_baselines3.common.vec_env import SubprocVecEnv

    import nat_gym.supernet.default as default

    monkeypatch.setattr(default, "DEFAULT_TRAIN_CONFIG", replace(default.DEFAULT_TRAIN_CONFIG, epochs=1))
    make = functools.partial(gym.make, "NATEdge-v0", device="cpu")
    venv = SubprocVecEnv([make, make], start_method="fork")
    try:
        venv.reset()
        assert len(venv.get_attr("genotype")) == 2
    finally:
        venv.close()
    out = capfd.readouterr()
    assert (out.out + out.err).count("training the default digits supernet once") == 1, out.out[-2000:]
    cached = [p for p in nat_gym_cache.glob("supernet-digits-*.pt") if not p.name.endswith(".partial.pt")]
    assert len(cached) == 1


def test_an_env_never_imports_torch_geometric(checkpoint):
    """torch_geometric (and what it imports) costs every process that holds an env about 90 MB (measured): only
    ``to_pyg_batch`` imports it."""
    code = (
        "import sys, gymnasium as gym, nat_gym\n"
        f"env = gym.make('NATEdge-v0', supernet={checkpoint!r}, dataset='digits', device='cpu')\n"
        "env.reset(seed=0); env.step(int(env.unwrapped.action_masks().argmax()))\n"
        "print('torch_geometric' in sys.modules)\n"
        "from nat_gym.envs.observation import to_pyg_batch; to_pyg_batch(env.reset(seed=0)[0])\n"
        "print('torch_geometric' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"], out.stderr[-2000:]


# ------------------------------------------------------------------------------------------------- memory
def test_bench_memory_runs_and_reports(tmp_path, checkpoint):
    """``scripts/bench_memory.py`` end to end: worker memory (both vector env kinds, 2 workers, 2 steps), the
    stages of one process, the trim timing."""
    base = [sys.executable, "scripts/bench_memory.py", "--supernet", checkpoint, "--env", "NATEdge-v0"]
    for extra in (["--steps", "2"], ["--stages", "--steps", "12"], ["--time", "2", "--steps", "2"]):
        out = tmp_path / "figures.json"
        run = subprocess.run([*base, *extra, "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        figures = json.loads(out.read_text())
        if "workers" in figures:
            assert [(w["vector_env"], w["worker"]) for w in figures["workers"]] == [
                ("gymnasium", 0), ("gymnasium", 1), ("sb3", 0), ("sb3", 1)]  # fmt: skip
            assert all(w["uss_mb"] > 50 and w["rss_mb"] >= w["uss_mb"] for w in figures["workers"])
        elif "stages" in figures:
            assert [r["stage"] for r in figures["stages"]][-1] == "malloc_trim(0)"
            assert "torch_geometric" not in figures["modules_of_note"]
        else:
            assert figures["ratio_with_over_without"] > 0


# ------------------------------------------------------------------------------------------------- heap trims
def test_heap_trims_every_trim_every_architectures(monkeypatch):
    trims: list[int] = []
    monkeypatch.setattr(heap, "release_freed_memory", lambda: trims.append(1) or True)
    monkeypatch.setattr(heap, "_pending", 0)
    for _ in range(10):
        heap.architectures_scored(15)  # 64 reached after 5 calls (75), and again after 5 more
    assert len(trims) == 2
    monkeypatch.setattr(heap, "TRIM_EVERY", 0)
    for _ in range(10):
        heap.architectures_scored(15)
    assert len(trims) == 2


def test_evaluator_reports_the_architectures_it_runs(monkeypatch, checkpoint):
    scored: list[int] = []
    monkeypatch.setattr(heap, "architectures_scored", scored.append)
    env = gym.make("NATCell-v0", **_kwargs(checkpoint))
    _, info = env.reset(seed=0)
    env.unwrapped.evaluator.evaluate([info["genotype"]], info["reward_batch"])  # cached: nothing runs
    assert scored == [1]
    env.step(_masked(info["action_mask"][None], np.random.default_rng(0))[0])
    assert sum(scored) == env.unwrapped.evaluator.cache_info["evaluations"]


@pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc_trim")
def test_release_freed_memory_calls_glibc():
    assert heap.release_freed_memory() is True
