"""Every ``nat-gym train`` algorithm on the digits default at one budget of reward evaluations (the README table).

Each run trains against the frozen default digits supernet with rewards on the whole validation split (deterministic)
and stops after ``--evaluations`` reward evaluations (distinct architectures scored, inputs included:
:mod:`nat_gym.budget`), then scores its policy on the 200 fresh inputs of ``scripts/evidence.py`` (summary.json's
``heldout``: argmax and sampled, next to the random-valid and identity floors):

- ``nat``: REINFORCE on the fixed GCN (``NATCell-v0``) with the paper's settings (``PAPER_SETTINGS``: no keep prior,
  one input and one transformation per update), so ``evaluations / 2`` updates (``--algo nat`` has no evaluation
  budget of its own yet: its count is measured);
- ``maskable_ppo``, ``ppo``, ``a2c`` on ``NATCell-v0`` and ``NATEdge-v0``, ``dqn`` on ``NATEdge-v0``, with the GCN
  features extractor and the defaults of ``agents/hyperparams/<algo>.yml``; ``maskable_ppo`` on ``NATCell-v0`` also
  with SB3's flattening policy (``mlp``).

Finished runs in ``--out`` are skipped and interrupted SB3 runs resume (an interrupted ``nat`` run, a few minutes, starts
over), so the script can be stopped and restarted.

Usage: ``python scripts/baselines.py [--evaluations 2000] [--seed 0] [--out runs/baselines] [--only NAME ...]``;
prints a Markdown table and writes ``baselines.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

RUNS: dict[str, tuple[str, str, str]] = {
    "nat": ("nat", "NATCell-v0", "gcn"),
    "maskable_ppo-cell": ("maskable_ppo", "NATCell-v0", "gcn"),
    "maskable_ppo-cell-mlp": ("maskable_ppo", "NATCell-v0", "mlp"),
    "ppo-cell": ("ppo", "NATCell-v0", "gcn"),
    "a2c-cell": ("a2c", "NATCell-v0", "gcn"),
    "maskable_ppo-edge": ("maskable_ppo", "NATEdge-v0", "gcn"),
    "ppo-edge": ("ppo", "NATEdge-v0", "gcn"),
    "a2c-edge": ("a2c", "NATEdge-v0", "gcn"),
    "dqn-edge": ("dqn", "NATEdge-v0", "gcn"),
}
"""Run name -> (algo, env, policy)."""


def run_nat(evaluations: int, seed: int, out: Path, progress: bool) -> None:
    """The NAT policy for ``evaluations / 2`` updates; the evaluations it spent go into its summary.json."""
    import gymnasium as gym

    from agents.nat_trainer import PAPER_SETTINGS, NATTrainer, NATTrainerArgs
    from nat_gym.budget import count_evaluations

    updates_per_epoch = 50
    epochs = max(1, math.ceil(evaluations / 2 / updates_per_epoch))
    # the paper's policy (n = 1: one transformation per update, two evaluations)
    args = NATTrainerArgs(seed=seed, epochs=epochs, policy_updates_per_epoch=updates_per_epoch, reward_images=None,
                          train_supernet=False, eval_inputs=0, out=str(out), progress=progress,
                          **PAPER_SETTINGS)  # fmt: skip
    env = gym.make("NATCell-v0", reward_images=None)
    counter = count_evaluations(env)
    spent: list[int] = []
    shutil.rmtree(out, ignore_errors=True)  # an interrupted run starts over: its count would miss the first part
    trainer = NATTrainer(args, env=env)
    trainer.train(callback=lambda row: spent.append(counter.used))  # counted before the final report
    summary = json.loads((out / "summary.json").read_text())
    summary["evaluations"] = spent[-1] if spent else None
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--evaluations", type=int, default=2000, help="budget of every run in reward evaluations (default: 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of every run (default: 0)")
    p.add_argument("--out", default="runs/baselines", help="output folder, one subfolder per run (default: runs/baselines)")
    p.add_argument("--only", nargs="+", choices=list(RUNS), help="run only these (default: all)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = p.parse_args()
    out = Path(args.out)
    names = args.only or list(RUNS)
    for name in names:
        algo, env_id, policy = RUNS[name]
        run = out / name
        if (run / "summary.json").is_file() and json.loads((run / "summary.json").read_text()).get("evaluations"):
            print(f"{name}: done before, skipped")
            continue
        print(f"{name}: {algo} on {env_id} ({policy}), {args.evaluations} evaluations", flush=True)
        if algo == "nat":
            run_nat(args.evaluations, args.seed, run, not args.no_progress)
            continue
        from agents.sb3.trainer import SB3Args, train

        sb3 = SB3Args(algo=algo, env=env_id, policy=policy, seed=args.seed, evaluations=args.evaluations,
                      out=str(run), progress=not args.no_progress)  # fmt: skip
        train(sb3, resume=(run / "checkpoint.pt").is_file())

    rows = {name: json.loads((out / name / "summary.json").read_text()) for name in names}
    (out / "baselines.json").write_text(json.dumps({"args": vars(args), "runs": rows}, indent=2, default=float))
    print()
    print("| algorithm | env | policy | evaluations | env steps | minutes | reward argmax | reward sampled | "
          "MAdds saving argmax |\n|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    for name, s in rows.items():
        algo, env_id, policy = RUNS[name]
        h = s["heldout"]
        steps = s.get("timesteps", s.get("updates"))
        print(f"| {algo} | {env_id} | {policy} | {s['evaluations']} | {steps} | {s['seconds'] / 60:.1f} | "
              f"{h['argmax']['reward']:+.4f} | {h['sampled']['reward']:+.4f} | {h['argmax']['madds_saving']:.1%} |")
    h = next(iter(rows.values()))["heldout"]
    for floor in ("random_valid", "identity"):
        print(f"| {floor.replace('_', ' ')} | - | - | 0 | - | - | {h[floor]['reward']:+.4f} | {h[floor]['reward']:+.4f} | "
              f"{h[floor]['madds_saving']:.1%} |")


if __name__ == "__main__":
    from nat_gym.cli import ignore_library_warnings

    ignore_library_warnings()  # torch_geometric's import warning, as the nat-gym command does
    main()
