"""Running a benchmark: every (protocol, algo, seed) is one job; finished jobs are skipped; ``jobs`` processes.

Layout of the output folder ``out``::

    out/runs/<protocol>/<algo>-seed<k>.csv  the rows of one job (written atomically when the job ends)
    out/runs/<protocol>/<algo>-seed<k>.json its wall-clock, evaluations, hyper-parameters
    out/policies/<algo>-seed<k>.pt        trained policies of the amortised protocol (per-instance sampling reads them)
    out/results.csv                       every row of every job
    out/summary.json                      versions, git commit, machine, settings, hyper-parameters, per-job figures
    out/report.md, out/*.png              statistics and pictures (:mod:`agents.bench.report`)

A job that was interrupted is simply run again; jobs that finished are never redone, so an interrupted benchmark
resumes where it stopped (``nat-gym bench`` with the same arguments); algorithms and seeds can be added to a folder
later, but a finished job is never resumed under settings it did not run with (:meth:`BenchConfig.job_settings`),
and the jobs of one protocol share its budget, checkpoints, task set, supernet, cost weight and samples
(:data:`SHARED_SETTINGS`), so that its report compares like with like.
Jobs run in separate processes with ``jobs > 1`` (spawned; each loads the supernet once), or on ``jobs`` Ray workers
with ``ray`` (a local Ray, or the cluster of ``address`` / ``RAY_ADDRESS``: :class:`nat_gym.distributed.RayPool`; a
killed worker's job is run again on another). On Ray a worker returns a job's rows, meta and trained policy to this
process, which writes them into ``out`` (so the workers need no shared folder; the per-instance jobs that sample
policies receive them the same way); their results do not depend on the order or the process (see
:mod:`agents.bench.protocols`).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from agents.bench.results import atomic_write_text, read_rows, write_rows
from nat_gym.errors import ConfigError

__all__ = ["BenchConfig", "run_bench", "job_paths", "collect_rows", "summary"]


@dataclass
class BenchConfig:
    """The settings of ``nat-gym bench`` (see its ``--help``).

    ``task_sets``, ``budgets``, ``checkpoints`` and ``algos`` map a protocol to its task set, budget (reward
    evaluations), number of evaluation checkpoints and algorithms; ``hyperparams`` maps a protocol and an algorithm
    to its overrides (``{"amortised": {"nat": {"lr": 0.001}}}``)."""

    protocols: list[str]
    algos: dict[str, list[str]]
    seeds: list[int]
    budgets: dict[str, int]
    out: str
    task_sets: dict[str, str] = field(default_factory=lambda: {"amortised": "digits/test-200-v0",
                                                                "per-instance": "digits/named-v0"})  # fmt: skip
    checkpoints: dict[str, int] = field(default_factory=lambda: {"amortised": 4, "per-instance": 10})
    env_id: str | None = None
    samples: int = 8
    cost_weight: float = 0.0
    supernet: str | None = None
    hyperparams: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    policies: str | None = None
    jobs: int = 1
    progress: bool = True
    reps: int = 1000
    ray: bool = False
    address: str | None = None

    def __post_init__(self) -> None:
        from agents.bench.protocols import PROTOCOLS, per_instance_args
        from nat_gym.envs import tasks

        bad = [p for p in self.protocols if p not in PROTOCOLS]
        if bad or not self.protocols:
            raise ConfigError(f"protocol: expected some of {list(PROTOCOLS)}, got {self.protocols!r}")
        task_of = {}  # the task set of each protocol, loaded once
        for p in self.protocols:
            b = self.budgets.get(p)
            if isinstance(b, bool) or not isinstance(b, int) or b < 1:
                raise ConfigError(f"budget: expected a positive number of reward evaluations for {p}, got {b!r}")
            c = self.checkpoints.get(p)
            if isinstance(c, bool) or not isinstance(c, int) or c < 1:
                raise ConfigError(f"checkpoints: expected a positive number of checkpoints for {p}, got {c!r}")
            if not self.algos.get(p):
                raise ConfigError(f"algos: no algorithm for protocol {p}")
            try:  # here, not when the protocol's first run starts (per-instance: after every amortised run)
                task_of[p] = tasks.get(self.task_sets[p])
            except ConfigError as e:
                raise ConfigError(f"tasks: {p}: {e}") from None
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds: expected distinct integers, got {self.seeds!r}")
        if self.jobs < 1:
            raise ConfigError(f"jobs: expected an integer >= 1, got {self.jobs!r}")
        if self.samples < 0:
            raise ConfigError(f"samples: expected an integer >= 0, got {self.samples!r}")
        if "per-instance" in self.protocols:  # checked here, not when the per-instance runs start (after amortised)
            for algo in self.algos["per-instance"]:
                per_instance_args(algo, self.hyperparams.get("per-instance", {}).get(algo))
        if "amortised" in self.protocols:  # and here, not when each job starts (hours into a board)
            from agents.bench.algorithms import check_hyperparams, train_env_id

            task = task_of["amortised"]
            for algo in self.algos["amortised"]:
                check_hyperparams(algo, self.hyperparams.get("amortised", {}).get(algo, {}), task,
                                  train_env_id(algo, self.env_id, task.env_id))  # fmt: skip

    def job_settings(self, protocol: str, algo: str) -> dict[str, Any]:
        """What makes a job of ``protocol`` and ``algo`` what it is (a finished job with other values is not
        resumed: :func:`run_bench` refuses). JSON-normalised."""
        s = {"task_set": self.task_sets[protocol], "budget": self.budgets[protocol],
             "checkpoints": self.checkpoints[protocol], "cost_weight": self.cost_weight, "supernet": self.supernet,
             "hyperparams": self.hyperparams.get(protocol, {}).get(algo, {})}  # fmt: skip
        if protocol == "amortised":  # the training env and the test-time samples matter to amortised runs only
            from agents.bench.algorithms import train_env_id
            from nat_gym.envs import tasks

            s.update(env_id=train_env_id(algo, self.env_id, tasks.get(self.task_sets[protocol]).env_id),
                     samples=self.samples)  # fmt: skip
        return json.loads(json.dumps(s))


def job_paths(out: str | Path, protocol: str, algo: str, seed: int) -> tuple[Path, Path]:
    """``(rows CSV, meta JSON)`` of one job."""
    base = Path(out) / "runs" / protocol / f"{algo}-seed{seed}"
    return base.with_suffix(".csv"), base.with_suffix(".json")


def _policies_dir(config: BenchConfig) -> Path:
    return Path(config.policies) if config.policies else Path(config.out) / "policies"


# ====================================================================================================== worker
_CONTEXTS: dict[tuple, Any] = {}


def _context(config: BenchConfig, protocol: str, eval_workers: int | None):
    """The process's :class:`~agents.bench.protocols.Context` of a protocol (its env made once per process; the
    policies folder is this config's, so one process can run benchmarks into several folders)."""
    from agents.bench.protocols import Context
    from nat_gym.envs import tasks

    key = (config.task_sets[protocol], config.supernet, config.cost_weight, config.env_id, eval_workers)
    if key not in _CONTEXTS:
        _CONTEXTS[key] = Context.create(tasks.get(config.task_sets[protocol]), supernet=config.supernet,
                                        cost_weight=config.cost_weight, env_id=config.env_id,
                                        eval_workers=eval_workers)  # fmt: skip
    _CONTEXTS[key].policies = _policies_dir(config)
    return _CONTEXTS[key]


def _run_job(config: BenchConfig, protocol: str, algo: str, seed: int, eval_workers: int | None) -> dict[str, Any]:
    """Run one job, write its rows and meta; returns the meta."""
    rows, meta = _job_result(config, protocol, algo, seed, eval_workers)
    _write_job(config, rows, meta)
    return meta


_INTERRUPTED = False
"""Set in a ``--jobs`` worker process once Ctrl-C has interrupted one of its jobs."""


def _run_job_in_worker(config: BenchConfig, protocol: str, algo: str, seed: int) -> dict[str, Any]:
    """:func:`_run_job` in a ``--jobs`` process. Ctrl-C reaches every process of the terminal's group; a worker
    reports the interrupted job and would then take the next job it has queued: once interrupted, it runs none."""
    global _INTERRUPTED
    if _INTERRUPTED:
        raise KeyboardInterrupt
    try:
        return _run_job(config, protocol, algo, seed, 1)
    except KeyboardInterrupt:
        _INTERRUPTED = True
        raise


def _write_job(config: BenchConfig, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    csv_path, meta_path = job_paths(config.out, meta["protocol"], meta["algo"], meta["seed"])
    write_rows(csv_path, rows)
    atomic_write_text(meta_path, json.dumps(meta, indent=1, default=str))  # the meta marks the job finished


def _job_result(config: BenchConfig, protocol: str, algo: str, seed: int,
                eval_workers: int | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:  # fmt: skip
    """Run one job; returns its rows and meta (an amortised job also saves its policy in the policies folder)."""
    import torch

    from agents.bench.protocols import run_amortised, run_per_instance

    torch.set_num_threads(1)
    ctx = _context(config, protocol, eval_workers)
    hp = dict(config.hyperparams.get(protocol, {}).get(algo, {}))
    start = time.perf_counter()
    if protocol == "amortised":
        policy = _policies_dir(config) / f"{algo}-seed{seed}.pt"
        rows = run_amortised(ctx, algo, seed, budget=config.budgets[protocol], hyperparams=hp,
                             num_checkpoints=config.checkpoints[protocol], samples=config.samples,
                             save_policy=policy)  # fmt: skip
    else:
        rows = run_per_instance(ctx, algo, seed, budget=config.budgets[protocol], hyperparams=hp,
                                num_checkpoints=config.checkpoints[protocol])  # fmt: skip
    seconds = time.perf_counter() - start
    final = [r for r in rows if r["checkpoint"] == config.budgets[protocol]]
    meta = {"protocol": protocol, "algo": algo, "seed": seed, "settings": config.job_settings(protocol, algo),
            "job_seconds": seconds, "algorithm_seconds": _algorithm_seconds(protocol, final),
            "evaluations": max(r["evaluations"] for r in rows), "rows": len(rows),
            "stops": sorted({r["stop"] for r in final}), "pin": ctx.pin, "hyperparams": hp,
            "git": _git_commit(), "versions": versions()}  # fmt: skip
    return rows, meta


RAY_JOB_FOLDER_PREFIX = "nat-gym-ray-job-"


class _RayJobs:
    """What a Ray worker builds once: ``(protocol, algo, seed, policy bytes or None) -> (rows, meta, policy bytes or
    None)``. Each job gets a temporary policies folder of its own, removed when it ends (the driver sends and
    receives the policy files)."""

    def __init__(self, config: BenchConfig) -> None:
        from nat_gym.cli import ignore_library_warnings

        ignore_library_warnings()  # as in the main process and the --jobs processes (a Ray worker's filters are its own)
        self.config = replace(config, progress=False)

    def __call__(self, job: tuple[str, str, int, bytes | None]) -> tuple[list, dict, bytes | None]:
        protocol, algo, seed, policy = job
        with tempfile.TemporaryDirectory(prefix=RAY_JOB_FOLDER_PREFIX) as folder:
            path = Path(folder) / f"{algo}-seed{seed}.pt"
            if policy is not None:
                _write_bytes(path, policy)
            rows, meta = _job_result(replace(self.config, policies=folder), protocol, algo, seed, 1)
            trained = path.read_bytes() if protocol == "amortised" and path.is_file() else None
        return rows, meta, trained


def _write_bytes(path: Path, data: bytes) -> None:
    from nat_gym.supernet.checkpoint import atomic_write

    atomic_write(path, lambda f: f.write(data))


def _run_on_ray(config: BenchConfig, todo: list[tuple[str, str, int]], bar: Any) -> None:
    """Run ``todo`` on ``config.jobs`` Ray workers; write each job's files here as it finishes."""
    from functools import partial

    from nat_gym.distributed import RayPool

    policies = _policies_dir(config)
    items = []
    for protocol, algo, seed in todo:
        path = policies / f"{algo}-seed{seed}.pt"
        items.append((protocol, algo, seed, path.read_bytes() if protocol == "per-instance" and path.is_file()
                      else None))  # fmt: skip
    with RayPool(partial(_RayJobs, config), workers=config.jobs, address=config.address) as pool:
        for (_, algo, seed, _), (rows, meta, trained) in pool.imap_unordered(items):
            if trained is not None:
                _write_bytes(policies / f"{algo}-seed{seed}.pt", trained)
            _write_job(config, rows, meta)
            bar.set_postfix_str(f"{algo} seed {seed} done")
            bar.update(1)


def _algorithm_seconds(protocol: str, final: list[dict[str, Any]]) -> float:
    """Wall-clock of the algorithm in a job: the training of an amortised run, the searches of all inputs."""
    if protocol == "amortised":
        return float(final[0]["seconds"])
    return float(sum(r["seconds"] for r in final))


# ====================================================================================================== driver
SHARED_SETTINGS: tuple[str, ...] = ("task_set", "budget", "checkpoints", "cost_weight", "supernet", "samples")
"""Settings that every job of one protocol in a folder shares, whatever its algorithm: the report compares them."""


def _check_resume(config: BenchConfig) -> None:
    """Refuse to add jobs to a folder whose finished jobs of the same protocol ran with other settings: any other
    setting for the same algorithm (another seed of an entry must be the same entry), another of
    :data:`SHARED_SETTINGS` for any algorithm (the report could not compare them)."""
    diffs = []
    for protocol in config.protocols:
        current = {algo: config.job_settings(protocol, algo) for algo in config.algos[protocol]}
        shared = {k: v for k, v in next(iter(current.values())).items() if k in SHARED_SETTINGS}
        for meta in sorted((Path(config.out) / "runs" / protocol).glob("*.json")):
            saved = json.loads(meta.read_text())
            settings = saved.get("settings", {})
            wanted = current.get(saved.get("algo"), shared)
            diffs += [f"{protocol} {saved.get('algo')} seed {saved.get('seed')}: {k} {settings.get(k)!r} (now {v!r})"
                      for k, v in wanted.items() if settings.get(k) != v]  # fmt: skip
    if diffs:
        raise ConfigError(
            f"out: {config.out!r} holds finished runs with other settings ({'; '.join(diffs[:5])}"
            f"{'; ...' if len(diffs) > 5 else ''}); resume them with the same settings or choose another --out"
        )


def _todo(config: BenchConfig, protocol: str) -> list[tuple[str, str, int]]:
    """The (protocol, algo, seed) jobs of ``protocol`` that have not finished in ``config.out``."""
    return [(protocol, a, s) for a in config.algos[protocol] for s in config.seeds
            if not job_paths(config.out, protocol, a, s)[1].is_file()]  # fmt: skip


def _check_policies(config: BenchConfig, todo: list[tuple[str, str, int]]) -> None:
    """Every policy that the per-instance jobs ``todo`` sample exists and is of its algorithm (before any run)."""
    from agents.bench.algorithms import AMORTISED, check_policy_file

    for _, algo, seed in todo:
        if algo in AMORTISED:
            check_policy_file(algo, _policies_dir(config) / f"{algo}-seed{seed}.pt")


def run_bench(config: BenchConfig) -> dict[str, Any]:
    """Run (or resume) the benchmark, then write ``results.csv``, ``summary.json`` and the report; returns the
    summary."""
    from tqdm.auto import tqdm

    from agents.bench.report import write_report

    _check_resume(config)
    if "amortised" not in config.protocols:  # the policies come from an earlier run: checked before --out is made
        _check_policies(config, _todo(config, "per-instance"))
    try:
        Path(config.out).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"out: cannot make the folder {config.out!r} ({e.strerror})") from None
    started = time.perf_counter()
    ran = 0
    for protocol in sorted(config.protocols, key=["amortised", "per-instance"].index):
        todo = _todo(config, protocol)
        if protocol == "per-instance":  # the policies it samples, before any run (a Ray worker names its own folder)
            _check_policies(config, todo)
        done = len(config.algos[protocol]) * len(config.seeds) - len(todo)
        bar = tqdm(total=done + len(todo), initial=done, desc=f"bench {protocol}", unit="run",
                   disable=not config.progress, dynamic_ncols=True)  # fmt: skip
        try:
            if config.ray and todo:
                _run_on_ray(config, todo, bar)
            elif config.jobs == 1 or len(todo) <= 1:
                for job in todo:
                    bar.set_postfix_str(f"{job[1]} seed {job[2]}")
                    _run_job(config, *job, None)
                    bar.update(1)
            else:
                import multiprocessing as mp

                from nat_gym.cli import ignore_library_warnings

                with ProcessPoolExecutor(config.jobs, mp_context=mp.get_context("spawn"),
                                         initializer=ignore_library_warnings) as pool:  # fmt: skip
                    futures = {pool.submit(_run_job_in_worker, config, *job): job for job in todo}
                    try:
                        for f in as_completed(futures):
                            f.result()
                            bar.set_postfix_str(f"{futures[f][1]} seed {futures[f][2]} done")
                            bar.update(1)
                    except BaseException:  # Ctrl-C or a failed job: no queued job starts (finished ones are kept)
                        pool.shutdown(wait=False, cancel_futures=True)
                        raise
        finally:
            bar.close()
        ran += len(todo)
    info = summary(config, time.perf_counter() - started, ran)
    atomic_write_text(Path(config.out) / "summary.json", json.dumps(info, indent=1, default=str))
    write_report(config.out, reps=config.reps)  # results.csv too
    return info


def collect_rows(out: str | Path) -> list[dict[str, Any]]:
    """Every row of the finished jobs in ``out/runs`` (a job without its meta file is unfinished and ignored)."""
    paths = sorted(p for p in (Path(out) / "runs").glob("*/*.csv") if p.with_suffix(".json").is_file())
    if not paths:
        raise ConfigError(f"out: no finished runs in {str(Path(out) / 'runs')!r}")
    rows = read_rows(paths)
    for r in rows:
        r.pop("_source", None)
    return rows


# ====================================================================================================== summary
def _git_commit() -> dict[str, Any]:
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def versions() -> dict[str, str | None]:
    """Versions of Python and of the libraries a result depends on."""
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("nat-gym", "torch", "numpy", "gymnasium", "stable-baselines3", "sb3-contrib", "torch-geometric",
                 "rliable", "optuna", "scipy"):  # fmt: skip
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    from nat_gym import __version__

    out["nat_gym (imported)"] = __version__
    return out


def machine() -> dict[str, Any]:
    import torch

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(), "python_executable": sys.executable}  # fmt: skip


def summary(config: BenchConfig, seconds: float, ran: int) -> dict[str, Any]:
    """The JSON summary: versions, git commit, machine, settings, hyper-parameters, per-job figures. ``versions``,
    ``git``, ``command`` and ``config`` are this invocation's; a folder filled over several invocations has each
    job's own commit and versions in ``jobs`` (``job_commits``: the distinct commits)."""
    from agents.bench.algorithms import BENCH_NAT_DEFAULTS

    jobs = []
    for meta_path in sorted((Path(config.out) / "runs").glob("*/*.json")):
        jobs.append(json.loads(meta_path.read_text()))
    pins = {m["protocol"]: m["pin"] for m in jobs}
    commits: list[Any] = []
    for m in jobs:
        if m.get("git") not in commits:  # a job of an older nat-gym has none
            commits.append(m.get("git"))
    return {
        "command": " ".join(sys.argv),
        "config": asdict(config),
        "versions": versions(),
        "git": _git_commit(),
        "job_commits": commits,
        "machine": machine(),
        "pins": pins,
        "hyperparams": {"overrides": config.hyperparams, "nat_fixed_by_bench": BENCH_NAT_DEFAULTS},
        "seconds_this_invocation": seconds,
        "jobs_run_this_invocation": ran,
        "seconds_all_jobs": sum(m["job_seconds"] for m in jobs),
        "jobs": jobs,
    }
