"""The benchmark report: a Markdown table and PNG pictures per protocol, rebuilt from the result CSVs alone.

``write_report(out)`` reads the finished jobs' rows in ``out/runs`` (:func:`~agents.bench.runner.collect_rows`),
writes them to ``out/results.csv``, computes :mod:`agents.bench.stats` and writes ``out/report.md`` and, per
protocol, ``<protocol>-aggregates.png`` (IQM, mean, optimality gap, MAdds saving and probability of improvement, with
95% CIs), ``<protocol>-curves.png`` (IQM reward against reward evaluations and against wall-clock seconds, with 95%
CI bands), ``<protocol>-profiles.png`` (performance profiles) and ``<protocol>-pareto.png`` (reward against MAdds
saving, with the Pareto front). Nothing in the report depends on when it was built: ``nat-gym bench --report OUT`` writes the
same ``report.md`` as the run did. Rewards are shown in accuracy points (1 point = 0.01 of accuracy).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from agents.bench.results import atomic_write_text
from agents.bench.stats import ProtocolStats, protocol_stats

__all__ = ["write_report", "render_markdown", "PICTURES"]

PICTURES: tuple[str, ...] = ("aggregates", "curves", "profiles", "pareto")
"""The PNGs written per protocol: ``<protocol>-<name>.png``."""


def _pts(x: float) -> str:
    return f"{100 * x:+.2f}"


def _num(x: float, scale: float, sign: str = "") -> str:
    return f"{scale * x:{sign}.2f}"


def _ci(lo: float, hi: float, scale: float = 100.0, sign: str = "+") -> str:
    return f"[{_num(lo, scale, sign)}, {_num(hi, scale, sign)}]"


def _score_unit(s: ProtocolStats) -> str:
    return "reward (points)" if s.score_scale == 100 else s.score_name


def _protocol_markdown(s: ProtocolStats, rows: Sequence[dict[str, Any]]) -> list[str]:
    first = next(r for r in rows if r["protocol"] == s.protocol)
    counts = sorted({len(e.seeds) for e in s.entries})
    seeds = (f"{counts[0]} seed{'s' if counts[0] > 1 else ''}" if len(counts) == 1
             else f"{counts[0]}-{counts[-1]} seeds (column seeds)")  # fmt: skip
    lines = [
        f"## {s.protocol}: {first['task_set']} ({len(s.inputs)} inputs), budget {s.budget} reward evaluations, "
        f"{seeds}",
        "",
        f"Pinned: `{first['env_version']}`, rules `{first['rules']}` ({first['rules_digest']}), supernet "
        f"`{first['supernet']}`, task digest `{first['task_digest']}`, cost weight {first['cost_weight']:g}.",
        "",
    ]
    if s.protocol == "amortised":
        lines += ["A run is one seed: trained on sampled inputs for the budget, then scored on every test input; its "
                  "score is the mean reward over the test inputs (accuracy points). `argmax`: one transformation per "
                  "input (one random draw for random-valid); `best-of-K`: the best of K sampled ones (K test-time "
                  "evaluations per input, not counted in the budget). Optimality gap: the mean shortfall from the best "
                  "reward any entry reached on each input.", ""]  # fmt: skip
    else:
        lines += ["A run is one seed on one input: the best transformation found within the budget (the input's own "
                  "score is free; the identity, reward 0, is every search's starting incumbent). Scores are "
                  "normalised per input: reward / the best reward any entry found for that input (1 = the best "
                  "known, 0 = the identity); optimality gap = the mean shortfall of that score from 1.", ""]  # fmt: skip
    unit, k = _score_unit(s), s.score_scale
    signed = "+" if k == 100 else ""
    reward_col = s.protocol == "per-instance"  # amortised scores are rewards already
    lines += [
        f"| entry | IQM {unit} [95% CI] | mean {unit} [95% CI] | optimality gap [95% CI] | "
        + ("mean reward (points) [95% CI] | " if reward_col else "")
        + f"MAdds saving | P({s.winner} > entry) [95% CI] | evaluations | "
        f"{'seconds per run' if s.protocol == 'amortised' else 'seconds per input'} | stop | seeds |",
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if reward_col else ""),
    ]
    order = sorted(s.entries, key=lambda e: (-s.point[e.label]["iqm"], -s.point[e.label]["mean"], e.label))
    for e in order:
        p, c = s.point[e.label], s.ci[e.label]
        poi = "-" if e.label == s.winner else f"{s.poi[e.label][0]:.2f} [{s.poi[e.label][1]:.2f}, {s.poi[e.label][2]:.2f}]"
        reward = f"{_pts(p['reward'])} {_ci(*c['reward'])} | " if reward_col else ""
        lines.append(
            f"| {e.label} | {_num(p['iqm'], k, signed)} {_ci(*c['iqm'], k, signed)} | "
            f"{_num(p['mean'], k, signed)} {_ci(*c['mean'], k, signed)} | {_num(p['gap'], k)} {_ci(*c['gap'], k, '')} | "
            f"{reward}{100 * p['saving']:.1f}% | {poi} | {e.evaluations[s.budget].mean():.0f} | "
            f"{e.seconds[s.budget].mean():.1f} | {', '.join(e.stops)} | {len(e.seeds)} |"
        )
    lines += ["", _verdict(s), ""]
    if s.protocol == "per-instance":
        labels = [e.label for e in order]
        lines += ["Mean reward per input over seeds (accuracy points), and the best any entry found:", "",
                  "| input | " + " | ".join(labels) + " | best |", "|---|" + "---|" * (len(labels) + 1)]  # fmt: skip
        for i, name in enumerate(s.inputs):
            cells = " | ".join(_pts(s.per_input[k][i]) for k in labels)
            lines.append(f"| {name} | {cells} | {_pts(s.best_known[i])} |")
        lines.append("")
    lines += [f"![{s.protocol} {name}]({s.protocol}-{name}.png)" for name in PICTURES] + [""]
    return lines


def _verdict(s: ProtocolStats) -> str:
    if not s.poi:
        return f"Only one entry: {s.winner}."
    runner_up = max(s.poi, key=lambda k: (s.point[k]["iqm"], s.point[k]["mean"]))
    p, lo, hi = s.poi[runner_up]
    k, unit = s.score_scale, (" points" if s.score_scale == 100 else "")
    gap = s.point[s.winner]["iqm"] - s.point[runner_up]["iqm"]
    sure = "clearly better" if lo > 0.5 else "not clearly better (the interval includes 0.5)"
    if min(len(e.seeds) for e in s.entries if e.label in (s.winner, runner_up)) < 2:  # bootstraps of one run
        sure = "one seed, so every interval is a single point and no verdict is drawn (run 2 or more seeds)"
    return (f"**Winner: {s.winner}**, IQM {s.score_name} {_num(s.point[s.winner]['iqm'], k)}{unit}, "
            f"{_num(gap, k)}{unit} above the runner-up {runner_up}; P({s.winner} > {runner_up}) = {p:.2f} "
            f"[{lo:.2f}, {hi:.2f}]: {sure}.")


def render_markdown(stats: Sequence[ProtocolStats], rows: Sequence[dict[str, Any]]) -> str:
    lines = ["# nat-gym bench report", "",
             "Statistics by rliable (IQM, mean and optimality gap with 95% stratified-bootstrap confidence intervals, "
             "probability of improvement); rewards in accuracy points (0.01 of accuracy). Rebuild with "
             "`nat-gym bench --report DIR`.", ""]  # fmt: skip
    for s in stats:
        lines += _protocol_markdown(s, rows)
    return "\n".join(lines)


# ====================================================================================================== pictures
def _figure(ncols: int, width: float = 4.2, height: float = 3.2) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width * ncols, height), dpi=110, facecolor="white")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _colours(s: ProtocolStats) -> dict[str, Any]:
    """A distinct colour per entry: matplotlib's default cycle, or ``tab20`` for more than 10 entries."""
    if len(s.entries) <= 10:
        return {e.label: f"C{k}" for k, e in enumerate(s.entries)}
    from matplotlib import colormaps

    return {e.label: colormaps["tab20"](k % 20) for k, e in enumerate(s.entries)}


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, format="png", facecolor="white")


def _aggregates_png(s: ProtocolStats, path: Path) -> None:
    labels = sorted(s.point, key=lambda k: s.point[k]["iqm"])
    colours = _colours(s)
    unit = _score_unit(s)
    panels = [("iqm", f"IQM {unit}"), ("mean", f"mean {unit}"), ("gap", "optimality gap"),
              ("reward", "mean reward (points)"), ("saving", "MAdds saving (%)")]  # fmt: skip
    if s.protocol == "amortised":  # its scores are rewards already: the mean panel is the mean reward
        panels.remove(("reward", "mean reward (points)"))
    fig, axes = _figure(len(panels) + 1, width=3.2, height=0.5 * len(labels) + 1.4)
    y = np.arange(len(labels))
    for ax, (key, title) in zip(axes, panels):
        scale = s.score_scale if key in ("iqm", "mean", "gap") else 100.0
        for k, label in enumerate(labels):
            lo, hi = s.ci[label][key]
            ax.plot([scale * lo, scale * hi], [k, k], color=colours[label], linewidth=6, alpha=0.6, solid_capstyle="butt")
            ax.plot([scale * s.point[label][key]], [k], "|", color="black", markersize=12)
        ax.set_title(title, fontsize=9)
        ax.set_yticks(y, labels if ax is axes[0] else [""] * len(labels), fontsize=8)
        ax.grid(True, axis="x", alpha=0.3)
    ax = axes[-1]
    for k, label in enumerate(labels):
        if label in s.poi:
            p, lo, hi = s.poi[label]
            ax.plot([lo, hi], [k, k], color=colours[label], linewidth=6, alpha=0.6, solid_capstyle="butt")
            ax.plot([p], [k], "|", color="black", markersize=12)
    ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_yticks(y, [""] * len(labels))
    ax.set_title(f"P({s.winner} > entry)", fontsize=9)
    ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(f"{s.protocol}: 95% stratified-bootstrap CIs", fontsize=10)
    _save(fig, path)


def _curves_png(s: ProtocolStats, path: Path) -> None:
    colours = _colours(s)
    fig, axes = _figure(2)
    for label, curve in s.curves.items():
        c = np.array(curve)
        for ax, x in zip(axes, (c[:, 1], c[:, 2])):
            y = s.score_scale * c[:, 3:6]
            if not np.any(x > 0):  # a floor that spends nothing: a horizontal line
                ax.axhline(y[-1, 0], color=colours[label], linestyle="--", linewidth=1, label=label)
                continue
            ax.plot(x, y[:, 0], color=colours[label], marker="o", markersize=3, label=label)
            ax.fill_between(x, y[:, 1], y[:, 2], color=colours[label], alpha=0.2)
    axes[0].set_xlabel("reward evaluations")
    axes[1].set_xlabel("wall-clock seconds per run" if s.protocol == "amortised" else "wall-clock seconds per input")
    for ax in axes:
        ax.set_ylabel(f"IQM {_score_unit(s)}")
        ax.grid(True, alpha=0.3)
    axes[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"{s.protocol}: IQM {s.score_name} with 95% CIs", fontsize=10)
    _save(fig, path)


def _profiles_png(s: ProtocolStats, path: Path) -> None:
    colours = _colours(s)
    fig, axes = _figure(1, width=5.0, height=3.4)
    ax = axes[0]
    for label, (p, lo, hi) in s.profiles.items():
        ax.plot(s.score_scale * s.profile_taus, p, color=colours[label], label=label)
        ax.fill_between(s.score_scale * s.profile_taus, lo, hi, color=colours[label], alpha=0.2)
    ax.set_xlabel(f"threshold tau ({_score_unit(s)})")
    ax.set_ylabel(f"fraction of runs with {s.score_name} > tau")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"{s.protocol}: performance profiles (95% CIs)", fontsize=10)
    _save(fig, path)


def pareto_front(points: np.ndarray) -> np.ndarray:
    """The points (``[n, 2]``, both to maximise) that no other point dominates, sorted by the first coordinate."""
    order = np.lexsort((-points[:, 1], -points[:, 0]))
    front, best_y = [], -np.inf
    for i in order:
        if points[i, 1] > best_y:
            front.append(points[i])
            best_y = points[i, 1]
    return np.array(front)[::-1] if front else np.zeros((0, 2))


def _pareto_png(s: ProtocolStats, path: Path) -> None:
    colours = _colours(s)
    fig, axes = _figure(1, width=5.0, height=3.6)
    ax = axes[0]
    every = []
    for e in s.entries:
        r, m = e.rewards[s.budget].ravel(), e.savings[s.budget].ravel()
        every.append(np.stack([m, r], axis=1))
        ax.scatter(100 * m, 100 * r, s=6, alpha=0.25, color=colours[e.label])
        ax.scatter([100 * m.mean()], [100 * r.mean()], s=60, marker="D", edgecolor="black", color=colours[e.label],
                   label=e.label)  # fmt: skip
    front = pareto_front(np.concatenate(every))
    if len(front):
        ax.plot(100 * front[:, 0], 100 * front[:, 1], color="black", linewidth=1, drawstyle="steps-post",
                label="Pareto front")  # fmt: skip
    ax.set_xlabel("MAdds saving (%)")
    ax.set_ylabel("reward (accuracy points)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"{s.protocol}: reward vs MAdds saving (diamonds: means)", fontsize=10)
    _save(fig, path)


# ====================================================================================================== entry
def write_report(out: str | Path, *, reps: int = 1000) -> Path:
    """Collect the rows of ``out``'s finished runs into ``results.csv`` (so that what ``nat-gym validate`` checks is
    what the report shows), compute the statistics of every protocol and write ``report.md`` and the PNGs; returns
    the path of ``report.md``."""
    from agents.bench.results import write_rows
    from agents.bench.runner import collect_rows

    out = Path(out)
    rows = collect_rows(out)
    write_rows(out / "results.csv", rows)
    protocols = [p for p in ("amortised", "per-instance") if any(r["protocol"] == p for r in rows)]
    stats = [protocol_stats(rows, p, reps=reps) for p in protocols]
    for s in stats:
        for name, draw in zip(PICTURES, (_aggregates_png, _curves_png, _profiles_png, _pareto_png)):
            draw(s, out / f"{s.protocol}-{name}.png")
    return atomic_write_text(out / "report.md", render_markdown(stats, rows) + "\n")
