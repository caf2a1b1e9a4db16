"""The science table: do transformed architectures beat their originals once trained from scratch? (issue 13)

For each architecture (default: DARTS_V2, VGG, ResBlock, MobileNetV2, R1-R5, the 4-step cells the default supernet
holds) and each variant, trains the stand-alone network from scratch (``nat-gym train-final``'s
:class:`~nat_gym.final.FinalTrainer`) with every seed and reports the test accuracy's mean and 95% Student-t
interval, params and MAdds (cost model), and a verdict per transformation against the original: Welch's 95%
t-interval of the accuracy difference above 0 (``better``), below 0 (``worse``) or containing it (``equal within
CI``), with the MAdds and parameter savings (:mod:`nat_gym.final.stats`). Variants:

- ``original``: the architecture itself;
- ``NAT`` / ``NAT++``: the published transformations in the registry (``NAT_<X>`` / ``NATv2_<X>``, matched by the
  source genotype, so ``NAT_DARTS`` serves DARTS_V2); a missing one is reported as "not published";
- ``policy`` (with ``--policy CKPT``): the transformation our trained NAT policy gives, the best of ``--samples``
  (default 10) sampled candidates by shared-weight accuracy on held-out *training* images (``nat-gym transform``).

Resumable: each (architecture, seed) network is trained in its own folder under ``OUT/runs`` (named by the
genotype's digest, the training settings and the seed, so a transformation equal to another variant is trained
once); finished runs (``result.json``) are skipped and interrupted ones resume from their checkpoint. The test split
is looked at once per run, after its last epoch, and never for any choice.

Usage: ``python scripts/science.py [--policy runs/nat/checkpoint.pt] [--seeds 0 1 2] [--epochs 20] [--out
runs/science]``; prints a Markdown table and writes ``OUT/table.md``, ``OUT/science.json`` and ``OUT/science.png``.
A bad argument (an unknown architecture, a ``--set`` that is not ``FIELD=VALUE`` or out of range) is one line,
``science.py: error: ...``, and exit code 2, before any work starts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import textwrap
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from nat_gym import genotypes as named
from nat_gym.cli_args import int_at_least
from nat_gym.errors import ConfigError, GenotypeError, NatGymError
from nat_gym.final import FinalTrainConfig, FinalTrainer
from nat_gym.final.stats import compare, mean_ci
from nat_gym.genotype import Genotype

ARCHS = ("DARTS_V2", "VGG", "ResBlock", "MobileNetV2", "R1", "R2", "R3", "R4", "R5")
PUBLISHED = {"NAT": "nat", "NAT++": "nat++"}


def published(arch: str, rules: str) -> tuple[str, Genotype] | None:
    """The registered transformation of ``arch`` under ``rules`` (``nat``: NAT_*, ``nat++``: NATv2_*), or None."""
    source = named.get(arch)
    for t in named.transformations():
        if t.rules == rules and named.get(t.source) == source:
            return t.name, named.get(t.name)
    return None


def policy_transformation(arch: str, policy: str, out: Path, *, samples: int, seed: int,
                          supernet: str | None) -> Genotype:  # fmt: skip
    """``nat-gym transform --arch ARCH --policy CKPT`` (cached in ``out/transform.json``): the best of ``samples``
    candidates by shared-weight accuracy on the validation split (held-out training data)."""
    path = out / "transform.json"
    if not path.is_file():
        from agents.cli import main as agents_main

        argv = ["transform", "--arch", arch, "--policy", policy, "--samples", str(samples), "--seed", str(seed),
                "--out", str(out)] + (["--supernet", supernet] if supernet else [])  # fmt: skip
        if agents_main(argv) != 0:
            raise SystemExit(f"nat-gym transform failed for {arch}")
    return Genotype.from_dict(json.loads(path.read_text())["output"])


def run_dir(root: Path, genotype: Genotype, config: FinalTrainConfig) -> Path:
    """``root/<genotype digest>-<settings digest>-seed<seed>``: one folder per distinct training run."""
    settings = {k: v for k, v in config.to_dict().items() if k not in FinalTrainConfig.RUN_ONLY + ("seed",)}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return root / f"{genotype.digest()[:12]}-{digest}-seed{config.seed}"


def train_one(genotype: Genotype, name: str, config: FinalTrainConfig, folder: Path) -> dict[str, Any]:
    """The result of one run: read if finished, else trained (resuming an interrupted run)."""
    done = folder / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    trainer = FinalTrainer(genotype, config, out=folder, name=name, progress=False)
    try:
        trainer.resume()
        trainer.train()
        result = trainer.test()
    finally:
        trainer.close()
    return result


def summarise(results: dict[str, dict[str, list[dict]]], genos: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    """One row per (architecture, variant): accuracy interval, cost, and the verdict against the original."""
    rows = []
    for arch, variants in results.items():
        base = variants.get("original")
        for variant, runs in variants.items():
            accs = [r["test_acc"] for r in runs]
            iv = mean_ci(accs)
            row = {"arch": arch, "variant": variant, "genotype": genos[arch][variant], "seeds": len(accs),
                   "test_acc": accs, "mean": iv.mean, "ci_low": iv.low, "ci_high": iv.high,
                   "params": runs[0]["params"], "madds": runs[0]["madds"],
                   "valid_acc_mean": sum(r["valid_acc"] for r in runs) / len(runs)}  # fmt: skip
            if variant != "original" and base:
                cmp = compare([r["test_acc"] for r in base], accs)
                row.update(diff=cmp.diff, diff_low=cmp.low, diff_high=cmp.high, verdict=cmp.verdict,
                           madds_saving=1 - row["madds"] / base[0]["madds"],
                           params_saving=1 - row["params"] / base[0]["params"])  # fmt: skip
            rows.append(row)
    return rows


def _pct(v: float) -> str:
    return "n/a" if v is None or math.isnan(v) else f"{100 * v:.1f}"


def markdown(rows: list[dict[str, Any]], missing: list[str]) -> str:
    lines = ["| architecture | variant | test acc. % (mean, 95% t-CI) | seeds | params | MAdds | "
             "diff vs original (Welch 95% CI), points | verdict | MAdds saving | params saving |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        ci = f"{_pct(r['mean'])} [{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]"
        if r["variant"] == "original":
            extra = "| - | - | - | - |"
        else:
            extra = (f"| {100 * r['diff']:+.1f} [{_pct(r['diff_low'])}, {_pct(r['diff_high'])}] | {r['verdict']} | "
                     f"{100 * r['madds_saving']:.1f}% | {100 * r['params_saving']:.1f}% |")  # fmt: skip
        lines.append(f"| {r['arch']} | {r['variant']} | {ci} | {r['seeds']} | {r['params']:,} | {r['madds']:,} {extra}")
    if missing:
        lines += ["", "Not published (no registered transformation): " + ", ".join(missing) + "."]
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Test accuracy (mean and 95% CI) per architecture and variant, and each variant's MAdds relative to the
    original."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    archs = list(dict.fromkeys(r["arch"] for r in rows))
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    fig = Figure(figsize=(max(6.0, 1.2 * len(archs)), 6.5), dpi=110, facecolor="white")
    FigureCanvasAgg(fig)
    ax_acc, ax_cost = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    width = 0.8 / len(variants)
    base = {r["arch"]: r["madds"] for r in rows if r["variant"] == "original"}
    for j, v in enumerate(variants):
        xs, ys, err, rel, xr = [], [], [[], []], [], []
        for r in rows:
            if r["variant"] != v:
                continue
            x = archs.index(r["arch"]) - 0.4 + width * (j + 0.5)
            xs.append(x)
            ys.append(100 * r["mean"])
            lo, hi = r["ci_low"], r["ci_high"]
            err[0].append(0 if math.isnan(lo) else 100 * (r["mean"] - lo))
            err[1].append(0 if math.isnan(hi) else 100 * (hi - r["mean"]))
            if r["arch"] in base:
                xr.append(x)
                rel.append(r["madds"] / base[r["arch"]])
        ax_acc.errorbar(xs, ys, yerr=err, fmt="o", capsize=3, color=f"C{j}", label=v)
        ax_cost.bar(xr, rel, width=width, color=f"C{j}", label=v)
    ax_acc.set_ylabel("test accuracy, % (95% CI)")
    ax_acc.grid(True, axis="y", alpha=0.3)
    ax_acc.legend(fontsize=8, ncol=len(variants))
    ax_acc.set_title(textwrap.fill(title, 100), fontsize=9)
    ax_cost.set_ylabel("MAdds / original")
    ax_cost.axhline(1.0, color="grey", lw=0.8)
    ax_cost.set_xticks(range(len(archs)), archs, rotation=30)
    fig.tight_layout()
    fig.savefig(path, format="png", facecolor="white")


def registered(name: str) -> str:
    """An argparse ``type``: ``name`` if it is a registered genotype (``nat-gym list``)."""
    try:
        named.get(name)
    except GenotypeError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("name: ")) from None
    return name


def training_config(args: argparse.Namespace) -> FinalTrainConfig:
    """The digits preset changed by ``--dataset``, ``--epochs``, ``--channels``, ``--layers`` and ``--set
    FIELD=VALUE`` (values read as JSON; ``none`` or nothing after ``=``: None).

    Raises:
        ConfigError: a ``--set`` item that is not ``FIELD=VALUE`` with ``FIELD`` a :class:`FinalTrainConfig` field,
            or whose value is out of range (the flags' own types check theirs).
    """
    changes: dict[str, Any] = {"dataset": args.dataset}
    for key in ("epochs", "channels", "layers"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    known = [f.name for f in fields(FinalTrainConfig)]
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise ConfigError(f"--set: expected FIELD=VALUE with FIELD one of {', '.join(known)}; got {item!r}")
        try:
            changes[key] = json.loads(value) if value not in ("", "none") else None
        except json.JSONDecodeError:
            changes[key] = value
    try:
        return FinalTrainConfig().replace(**changes)
    except ConfigError as e:
        raise ConfigError(f"--set {e}") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", nargs="+", type=registered, default=list(ARCHS),
                   help="architectures, registered names (nat-gym list; default: the 9 of issue 13)")  # fmt: skip
    p.add_argument("--seeds", type=int_at_least(0), nargs="+", default=[0, 1, 2],
                   help="training seeds (default: 0 1 2)")  # fmt: skip
    p.add_argument("--policy", default=None, help="NAT policy checkpoint (nat-gym train --algo nat) for the policy "
                   "column; omitted: no policy column")  # fmt: skip
    p.add_argument("--supernet", default=None, help="supernet that scores the policy's candidates (default: the "
                   "one the policy checkpoint names)")  # fmt: skip
    p.add_argument("--samples", type=int_at_least(1), default=10,
                   help="policy candidates per architecture (default: 10)")
    p.add_argument("--policy-seed", type=int_at_least(0), default=0, help="seed of the policy's sampling (default: 0)")
    p.add_argument("--dataset", default="digits", help="digits (default) or fake (tests)")
    p.add_argument("--epochs", type=int_at_least(1), default=None, help="training epochs (default: the digits preset's)")
    p.add_argument("--channels", type=int_at_least(1), default=None,
                   help="initial channels (default: the digits preset's)")
    p.add_argument("--layers", type=int_at_least(3), default=None, help="cells, >= 3 (default: the digits preset's)")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                   help="other FinalTrainConfig fields, e.g. --set drop_path_prob=0.1 cutout=0")  # fmt: skip
    p.add_argument("--out", default="runs/science", help="output folder (default: runs/science)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        return run(args, training_config(args))
    except NatGymError as e:  # a bad --set, an error of the run (a policy checkpoint that does not load, ...)
        p.error(" ".join(str(e).split()))


def run(args: argparse.Namespace, base_config: FinalTrainConfig) -> int:
    """Train every (architecture, variant, seed), write and print the table (see the module docstring)."""
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # the architectures of every variant
    genos: dict[str, dict[str, Genotype]] = {}
    names: dict[str, dict[str, str]] = {}
    missing: list[str] = []
    for arch in args.archs:
        genos[arch] = {"original": named.get(arch)}
        names[arch] = {"original": arch}
        for variant, rules in PUBLISHED.items():
            found = published(arch, rules)
            if found is None:
                missing.append(f"{variant} of {arch}")
            else:
                names[arch][variant], genos[arch][variant] = found
        if args.policy:
            genos[arch]["policy"] = policy_transformation(
                arch, args.policy, out / "transforms" / arch, samples=args.samples, seed=args.policy_seed,
                supernet=args.supernet)  # fmt: skip
            names[arch]["policy"] = f"policy({arch})"

    # seed-major: an interrupted table already has every architecture at the first seeds
    jobs = [(arch, variant, seed) for seed in args.seeds for arch in genos for variant in genos[arch]]
    from tqdm.auto import tqdm

    start = time.perf_counter()
    results: dict[str, dict[str, list[dict]]] = {arch: {v: [] for v in genos[arch]} for arch in genos}
    with tqdm(jobs, desc="science", unit="run", disable=args.no_progress, dynamic_ncols=True) as bar:
        for arch, variant, seed in bar:
            bar.set_postfix_str(f"{arch} {variant} seed {seed}")
            config = base_config.replace(seed=seed)
            g = genos[arch][variant]
            results[arch][variant].append(train_one(g, names[arch][variant], config, run_dir(out / "runs", g, config)))
    seconds = time.perf_counter() - start

    strings = {arch: {v: str(g) for v, g in vs.items()} for arch, vs in genos.items()}
    rows = summarise(results, strings)
    table = markdown(rows, missing)
    c = base_config
    setting = (f"{c.dataset}, C={c.channels}, {c.layers} cells, {c.epochs} epochs, batch {c.batch_size}, lr {c.lr}, "
               f"drop-path {c.drop_path_prob}, cutout {c.cutout}, seeds {' '.join(map(str, args.seeds))}")  # fmt: skip
    (out / "table.md").write_text(f"{setting}\n\n{table}\n")
    payload = {"args": vars(args), "config": base_config.to_dict(), "seconds_this_call": seconds, "rows": rows,
               "names": names, "missing": missing}  # fmt: skip
    tmp = out / ".science.json.tmp"
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    tmp.replace(out / "science.json")
    plot(rows, out / "science.png", setting)
    print(f"\n{setting}\n\n{table}\n")
    print(f"{len(jobs)} runs ({seconds:.0f} s in this call); wrote {out / 'table.md'}, {out / 'science.json'}, "
          f"{out / 'science.png'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    from nat_gym.cli import ignore_library_warnings

    ignore_library_warnings()  # torch_geometric's import warning, as the nat-gym command does
    raise SystemExit(main())
