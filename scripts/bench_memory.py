"""Memory of the processes that hold a nat-gym env: per vector-env worker, and where one process's memory goes.

(a) workers (default): a vector env of ``--workers`` workers, Gymnasium's ``AsyncVectorEnv`` (its default start
    method, ``fork`` on Linux, after the parent imported torch as a training script has) and Stable-Baselines3's
    ``SubprocVecEnv`` (its default, ``forkserver``: fresh processes), takes ``--steps`` masked random steps; then
    each worker reports its RSS, USS (the memory only it holds: what one more worker costs) and PSS.
(b) ``--stages``: this process reports its USS and RSS after each stage of holding one env: imports, ``gym.make``,
    the first and the next ``--steps`` steps, then glibc's ``malloc_trim(0)`` (what the heap kept but did not use).

Memory, not time: the figures do not depend on the load of the machine. The default supernet must be cached
(``nat-gym train-supernet`` or one ``gym.make("NATCell-v0")``), else the first worker trains it (the others wait).
``--no-trim`` switches off the evaluator's periodic heap trims (``nat_gym.heap.TRIM_EVERY = 0``).

(c) ``--time ROUNDS``: what the trims cost: seconds per uncached step with and without them, arms alternated in one
    process, and their ratio.

Usage: ``python scripts/bench_memory.py [--env NATCell-v0 NATEdge-v0] [--workers 2] [--steps 300] [--stages]
[--time ROUNDS] [--supernet PATH] [--json FILE]``
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys

import psutil

MB = 2**20
_HEAVY = ("torch_geometric", "sklearn", "scipy", "pandas", "matplotlib", "sympy", "torchvision", "tensorboard")


def _usage(process: psutil.Process) -> dict[str, float]:
    m = process.memory_full_info()
    return {"rss_mb": m.rss / MB, "uss_mb": m.uss / MB, "pss_mb": getattr(m, "pss", float("nan")) / MB}


def _masked_action(env, rng):
    import numpy as np

    mask = env.unwrapped.action_masks()
    k = env.unwrapped.rules.num_ops
    ops = [int(rng.choice(np.flatnonzero(row))) for row in mask.reshape(-1, k)]
    return np.array(ops) if len(ops) > 1 else ops[0]


def _make_probe(env_id: str, trim: bool, env_kwargs: dict):
    """A worker's env: ``env_id`` wrapped so that the worker can report its own memory (``env.memory()``)."""
    import gymnasium as gym

    if not trim:
        import nat_gym.heap

        nat_gym.heap.TRIM_EVERY = 0

    class MemoryProbe(gym.Wrapper):
        def memory(self) -> dict[str, float]:
            return {"pid": os.getpid(), **_usage(psutil.Process())}

    return MemoryProbe(gym.make(f"nat_gym:{env_id}", **env_kwargs))


def worker_memory(env_id: str, kind: str, workers: int, steps: int, trim: bool, env_kwargs: dict) -> list[dict]:
    """Per-worker memory after ``steps`` masked random steps of a ``kind`` ("gymnasium" or "sb3") vector env."""
    import numpy as np
    import torch  # noqa: F401  (a training script has imported it before it makes its vector env)

    fns = [functools.partial(_make_probe, env_id, trim, env_kwargs) for _ in range(workers)]
    rng = np.random.default_rng(0)
    if kind == "gymnasium":
        import gymnasium as gym

        envs = gym.vector.AsyncVectorEnv(fns)
        _, infos = envs.reset(seed=0)
        masks, n = infos["action_mask"], envs.single_action_space
        k = int(n.nvec[0]) if hasattr(n, "nvec") else int(n.n)
        for _ in range(steps):
            acts = [[int(rng.choice(np.flatnonzero(r))) for r in m.reshape(-1, k)] for m in masks]
            acts = np.array(acts) if len(acts[0]) > 1 else np.array([a[0] for a in acts])
            _, _, _, _, infos = envs.step(acts)  # autoreset: the info of a reset step holds the new mask too
            masks = infos["action_mask"]
        out = list(envs.call("memory"))
    else:
        from stable_baselines3.common.vec_env import SubprocVecEnv

        envs = SubprocVecEnv(fns)
        envs.reset()
        k = int(envs.get_attr("rules")[0].num_ops)
        for _ in range(steps):
            masks = envs.env_method("action_masks")
            acts = [[int(rng.choice(np.flatnonzero(r))) for r in m.reshape(-1, k)] for m in masks]
            envs.step_async(np.array(acts) if len(acts[0]) > 1 else np.array([a[0] for a in acts]))
            envs.step_wait()
        out = envs.env_method("memory")
    envs.close()
    return out


def stages(env_id: str, steps: int, env_kwargs: dict) -> list[tuple[str, dict[str, float]]]:
    """USS / RSS of this process after each stage of making and stepping one env."""
    me = psutil.Process()
    record = [("python, psutil", _usage(me))]
    import torch

    torch.set_num_threads(1)
    record.append(("import torch", _usage(me)))
    import gymnasium as gym
    import numpy as np

    import nat_gym  # noqa: F401  (registers the envs)

    record.append(("import gymnasium, nat_gym", _usage(me)))
    env = gym.make(env_id, **env_kwargs)
    record.append(("gym.make (data, supernet, evaluator)", _usage(me)))
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    done = 0
    for target in (10, steps):
        while done < target:
            _, _, terminated, _, _ = env.step(_masked_action(env, rng))
            done += 1
            if terminated:
                env.reset()
        record.append((f"{done} masked random steps", _usage(me)))
    try:
        from nat_gym.heap import release_freed_memory
    except ImportError:  # an older nat-gym
        import ctypes

        def release_freed_memory():
            return ctypes.CDLL(None).malloc_trim(0)

    release_freed_memory()
    record.append(("malloc_trim(0)", _usage(me)))
    return record


def trim_cost(env_id: str, steps: int, rounds: int, env_kwargs: dict) -> dict[str, float]:
    """Seconds per uncached step with the evaluator's heap trims and without, arms alternated in this process."""
    import statistics
    import time

    import gymnasium as gym
    import numpy as np
    import torch

    import nat_gym.heap

    torch.set_num_threads(1)
    env = gym.make(f"nat_gym:{env_id}", **env_kwargs)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    times: dict[int, list[float]] = {64: [], 0: []}
    for r in range(rounds):
        for every in (64, 0) if r % 2 == 0 else (0, 64):
            nat_gym.heap.TRIM_EVERY = every
            start = time.perf_counter()
            for _ in range(steps):  # random inputs and actions: nearly every step scores new architectures
                _, _, terminated, _, _ = env.step(_masked_action(env, rng))
                if terminated:
                    env.reset()
            times[every].append((time.perf_counter() - start) / steps)
    with_trims, without = statistics.median(times[64]), statistics.median(times[0])
    return {"ms_per_step_with_trims": 1000 * with_trims, "ms_per_step_without": 1000 * without,
            "ratio_with_over_without": with_trims / without}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", nargs="+", default=["NATCell-v0", "NATEdge-v0"], help="env ids (default: both)")
    p.add_argument("--workers", type=int, default=2, help="workers per vector env (default: 2)")
    p.add_argument("--steps", type=int, default=300, help="vector steps (or, with --stages, env steps) (default: 300)")
    p.add_argument("--vec", nargs="+", default=["gymnasium", "sb3"], choices=["gymnasium", "sb3"],
                   help="vector env kinds (default: both)")
    p.add_argument("--stages", action="store_true", help="report the stages of one process instead (first --env)")
    p.add_argument("--no-trim", action="store_true", help="no periodic heap trims in the evaluator")
    p.add_argument("--time", type=int, default=0, metavar="ROUNDS",
                   help="instead: time --steps uncached steps per arm with and without heap trims, ROUNDS rounds "
                        "(arms alternated), and print the ratio")  # fmt: skip
    p.add_argument("--supernet", default=None,
                   help="supernet checkpoint the envs score with (default: the cached default digits supernet)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args()
    env_kwargs = {} if args.supernet is None else {"supernet": args.supernet, "dataset": "digits"}
    if args.time:
        figures = trim_cost(args.env[0], args.steps, args.time, env_kwargs)
        for key, value in figures.items():
            print(f"{key}: {value:.3f}")
    elif args.stages:
        if args.no_trim:
            import nat_gym.heap

            nat_gym.heap.TRIM_EVERY = 0
        figures = {"stages": [{"stage": name, **m} for name, m in stages(args.env[0], args.steps, env_kwargs)],
                   "modules_of_note": [m for m in _HEAVY if m in sys.modules]}  # fmt: skip
        print(f"{'stage':40s} {'USS MB':>8s} {'RSS MB':>8s}")
        for row in figures["stages"]:
            print(f"{row['stage']:40s} {row['uss_mb']:8.0f} {row['rss_mb']:8.0f}")
        print("modules of note imported:", figures["modules_of_note"] or "none")
    else:
        figures = {"workers": []}
        print(f"{'env':12s} {'vector env':10s} {'worker':>6s} {'USS MB':>8s} {'PSS MB':>8s} {'RSS MB':>8s}")
        for env_id in args.env:
            for kind in args.vec:
                for i, m in enumerate(worker_memory(env_id, kind, args.workers, args.steps, not args.no_trim, env_kwargs)):
                    figures["workers"].append({"env": env_id, "vector_env": kind, "worker": i, **m})
                    print(f"{env_id:12s} {kind:10s} {i:6d} {m['uss_mb']:8.0f} {m['pss_mb']:8.0f} {m['rss_mb']:8.0f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
