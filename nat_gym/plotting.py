"""Pictures of cells, genotypes and learning curves.

Everything here draws on :class:`matplotlib.figure.Figure` objects with an explicit
:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`; ``matplotlib.pyplot`` is never imported and no
global matplotlib state (backend, ``rcParams``) is touched, so the module is safe in headless workers, in
environments (``render_mode="rgb_array"``) and next to user code that uses pyplot itself.

- :func:`draw_cell` draws one cell on an axes: the inputs ``c_{k-2}`` / ``c_{k-1}`` on the left, the
  intermediate nodes in layers (by longest path from the inputs), the output ``c_{k}`` on the right fed by
  dashed arrows from the ``concat`` nodes. Each edge is an arrow labelled with a short op name (``sep3``,
  ``dil5``, ``max3``, ``skip``, ``null`` ...) and coloured by op kind (:data:`KIND_COLORS`); parallel edges
  are curved apart.
- :func:`genotype_figure` / :func:`genotype_image` / :func:`save_genotype_png` draw a genotype (normal and
  reduction cell), or a before / after pair with the changed edges highlighted in red (``old -> new``).
- :func:`plot_learning_curves` plots columns of one or several CSV logs against a common ``x`` column.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Union

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Patch
from matplotlib.path import Path as MplPath

from nat_gym.errors import ConfigError
from nat_gym.genotype import Cell, Genotype
from nat_gym.ops import op_spec

__all__ = [
    "KIND_COLORS",
    "short_op_label",
    "draw_cell",
    "genotype_figure",
    "genotype_image",
    "save_genotype_png",
    "learning_curves_figure",
    "plot_learning_curves",
]

PathLike = Union[str, "os.PathLike[str]"]

KIND_COLORS: dict[str, str] = {
    "sep_conv": "#2ca02c",  # green
    "dil_conv": "#9467bd",  # purple
    "conv": "#1f77b4",  # blue
    "fac_conv": "#17becf",  # cyan
    "max_pool": "#ff7f0e",  # orange
    "avg_pool": "#8c564b",  # brown
    "skip": "#303030",  # near black
    "null": "#b0b0b0",  # light grey (drawn dotted)
}
"""The fixed colour of each op kind (red is reserved for highlighted changes)."""

_KIND_NAMES = {
    "sep_conv": "sep conv",
    "dil_conv": "dil conv",
    "conv": "conv",
    "fac_conv": "factorized conv",
    "max_pool": "max pool",
    "avg_pool": "avg pool",
    "skip": "skip",
    "null": "null",
}
_HIGHLIGHT = "#d62728"
_INPUT_FACE, _OUTPUT_FACE, _NODE_FACE = "#cfe2f3", "#fff2cc", "#eeeeee"

# geometry, in data units (the figure functions use _INCH_PER_UNIT inches per unit)
_LAYER_DX = 2.9  # horizontal distance between layers
_NODE_DY = 1.35  # vertical distance between nodes of a layer
_NODE_R = 0.3  # radius of an intermediate node
_BOX_W, _BOX_H = 1.15, 0.55  # input / output boxes
_CLEARANCE = 0.55  # how close an edge may pass a node centre before it is penalised
_INCH_PER_UNIT = 0.5
_LABEL_FONTSIZE = 7.0
_RADII = (0.0, 0.12, -0.12, 0.22, -0.22, 0.32, -0.32, 0.45, -0.45, 0.6, -0.6)
_LABEL_TS = (0.5, 0.42, 0.58, 0.34, 0.66, 0.27, 0.73, 0.2, 0.8)
_LABEL_TS_ARR = np.asarray(_LABEL_TS)


def short_op_label(op: str) -> str:
    """A short label for an op: ``sep_conv_3x3`` -> ``sep3``, ``dil_conv_5x5`` -> ``dil5``, ``conv_3x3``
    -> ``conv3``, ``max_pool_3x3`` -> ``max3``, ``avg_pool_3x3`` -> ``avg3``, ``skip_connect`` -> ``skip``,
    ``null``, ``conv_1x7_7x1`` -> ``fac7`` (``conv_7x1_1x7``, the k x 1 conv first, -> ``fac7h``)."""
    spec = op_spec(op)
    prefix = {
        "sep_conv": "sep",
        "dil_conv": "dil",
        "conv": "conv",
        "fac_conv": "fac",
        "max_pool": "max",
        "avg_pool": "avg",
    }.get(spec.kind)
    if prefix is None:
        return spec.kind  # "skip" / "null"
    suffix = "h" if spec.kind == "fac_conv" and spec.first_axis == "h" else ""
    return f"{prefix}{spec.kernel}{suffix}"


# --------------------------------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class _Plan:
    """Where everything of a cell drawing goes: node centres (the output node is ``steps + 2``), the arc
    radius of every op edge and concat arrow, and the data limits."""

    pos: tuple[tuple[float, float], ...]
    out: int
    edge_rad: tuple[float, ...]
    concat_rad: tuple[float, ...]
    xlim: tuple[float, float]
    ylim: tuple[float, float]

    @property
    def size(self) -> tuple[float, float]:
        return self.xlim[1] - self.xlim[0], self.ylim[1] - self.ylim[0]

    def is_box(self, node: int) -> bool:
        return node in (0, 1, self.out)

    def half_extent(self, node: int) -> tuple[float, float]:
        return (_BOX_W / 2, _BOX_H / 2) if self.is_box(node) else (_NODE_R, _NODE_R)


def _node_positions(cell: Cell) -> dict[int, tuple[float, float]]:
    """Layered layout: inputs in layer 0, node ``n`` in ``1 + max(layer of its inputs)``, the output last.

    Within a layer the nodes are ordered by the mean height of their inputs (fewer crossings); a layer of
    three or more nodes is staggered left / right so the edges entering it do not all run side by side."""
    steps = cell.steps
    preds: dict[int, list[int]] = {n: [] for n in range(2, steps + 2)}
    for e in cell.edges:
        preds[e.dst].append(e.src)
    layer = {0: 0, 1: 0}
    for n in range(2, steps + 2):
        layer[n] = 1 + max(layer[s] for s in preds[n])
    depth = max(layer.values())
    layers: dict[int, list[int]] = {}
    for n in range(2, steps + 2):
        layers.setdefault(layer[n], []).append(n)
    tallest = max(len(v) for v in layers.values())
    half = max(1.0, 0.5 * (tallest - 1) * _NODE_DY * 0.8)
    pos: dict[int, tuple[float, float]] = {0: (0.0, half), 1: (0.0, -half)}
    x = 0.0
    for lay in range(1, depth + 1):
        nodes = sorted(layers.get(lay, []), key=lambda n: (-float(np.mean([pos[s][1] for s in preds[n]])), n))
        k = len(nodes)
        x += float(np.clip(0.85 * k, _LAYER_DX, 1.5 * _LAYER_DX))  # more room where many edges arrive
        for i, n in enumerate(nodes):
            stagger = (0.17 if i % 2 else -0.17) * _LAYER_DX if k >= 3 else 0.0
            pos[n] = (x + stagger, ((k - 1) / 2 - i) * _NODE_DY)
    concat_y = [pos[n][1] for n in cell.concat]
    pos[steps + 2] = (x + _LAYER_DX, float(np.clip(np.mean(concat_y), -half, half)))
    return pos


def _bezier(p1: np.ndarray, p2: np.ndarray, rad: np.ndarray | float, ts: np.ndarray) -> np.ndarray:
    """Points of matplotlib's ``arc3,rad=rad`` curves from ``p1`` to ``p2`` in equal-aspect data coordinates:
    shape ``[len(rad), len(ts), 2]`` (or ``[len(ts), 2]`` for a scalar ``rad``)."""
    d = p2 - p1
    r = np.atleast_1d(np.asarray(rad, dtype=float))
    ctrl = (p1 + p2) / 2 + r[:, None] * np.array([d[1], -d[0]])[None, :]
    t = ts[None, :, None]
    pts = (1 - t) ** 2 * p1 + 2 * t * (1 - t) * ctrl[:, None, :] + t**2 * p2
    return pts if np.ndim(rad) else pts[0]


_SAMPLE_T = np.linspace(0.0, 1.0, 33)
_INNER = (_SAMPLE_T > 0.12) & (_SAMPLE_T < 0.88)


def _route(
    pos: dict[int, tuple[float, float]],
    pairs: Sequence[tuple[int, int]],
    bounds: tuple[float, float, float, float],
    fixed: Sequence[np.ndarray] = (),
) -> list[float]:
    """Choose an arc radius per edge (``src``, ``dst``): keep away from other nodes, from edges already placed
    and from the borders, prefer straight lines, and keep parallel edges (same ends) clearly apart.

    Edges are placed shortest first, so long edges bend around the short ones."""
    centres = {n: np.asarray(p, dtype=float) for n, p in pos.items()}
    radii = np.asarray(_RADII)
    x0, x1, y0, y1 = bounds
    placed: list[np.ndarray] = [f[_INNER] for f in fixed]
    chosen: dict[int, float] = {}
    by_ends: dict[tuple[int, int], list[float]] = {}
    order = sorted(
        range(len(pairs)), key=lambda i: (np.linalg.norm(centres[pairs[i][0]] - centres[pairs[i][1]]), i)
    )
    for i in order:
        src, dst = pairs[i]
        p1, p2 = centres[src], centres[dst]
        pts = _bezier(p1, p2, radii, _SAMPLE_T)[:, _INNER]  # [R, T, 2]
        cost = 0.6 * np.abs(radii)
        others = np.array([c for n, c in centres.items() if n not in (src, dst)])
        if len(others):
            d2 = ((pts[:, :, None, :] - others[None, None]) ** 2).sum(axis=-1).min(axis=1)  # [R, N]
            cost += 12.0 * np.clip(_CLEARANCE - np.sqrt(d2), 0, None).sum(axis=1)
        if placed:
            q = np.stack(placed)[:, ::2]  # [P, T', 2]
            flat_p, flat_q = pts.reshape(-1, 2), q.reshape(-1, 2)
            d2 = (flat_p**2).sum(1)[:, None] + (flat_q**2).sum(1)[None, :] - 2.0 * flat_p @ flat_q.T
            d2 = d2.reshape(pts.shape[0], pts.shape[1], q.shape[0], q.shape[1]).min(axis=-1)  # [R, T, P]
            cost += 0.08 * (d2 < 0.2**2).sum(axis=(1, 2))
        out = np.clip(x0 - pts[..., 0], 0, None) + np.clip(pts[..., 0] - x1, 0, None)
        out += np.clip(y0 - pts[..., 1], 0, None) + np.clip(pts[..., 1] - y1, 0, None)
        cost += 20.0 * out.sum(axis=1)
        for r in by_ends.get((src, dst), []):
            cost[np.abs(radii - r) < 0.3] = np.inf  # a parallel edge is there: do not hide under it
        k = int(np.argmin(cost))
        chosen[i] = float(radii[k])
        by_ends.setdefault((src, dst), []).append(float(radii[k]))
        placed.append(pts[k])
    return [chosen[i] for i in range(len(pairs))]


@lru_cache(maxsize=512)
def _plan(cell: Cell) -> _Plan:
    """Layout and routing of ``cell`` (cached: cells are immutable values)."""
    pos = _node_positions(cell)
    out = cell.steps + 2
    xs = np.array([p[0] for p in pos.values()])
    ys = np.array([p[1] for p in pos.values()])
    bounds = (xs.min() - 0.6, xs.max() + 0.6, ys.min() - 0.9, ys.max() + 0.9)
    pairs = [(e.src, e.dst) for e in cell.edges]
    edge_rad = _route(pos, pairs, bounds)
    curves = [_bezier(np.asarray(pos[s], float), np.asarray(pos[d], float), r, _SAMPLE_T)
              for (s, d), r in zip(pairs, edge_rad, strict=True)]  # fmt: skip
    out_pairs = [(n, out) for n in cell.concat]
    concat_rad = _route(pos, out_pairs, bounds, fixed=curves)
    curves += [_bezier(np.asarray(pos[s], float), np.asarray(pos[d], float), r, _SAMPLE_T)
               for (s, d), r in zip(out_pairs, concat_rad, strict=True)]  # fmt: skip
    pts = np.concatenate(curves)
    lo_x = min(xs.min() - _BOX_W / 2, pts[:, 0].min()) - 0.3
    hi_x = max(xs.max() + _BOX_W / 2, pts[:, 0].max()) + 0.3
    lo_y = min(ys.min() - _BOX_H / 2, pts[:, 1].min()) - 0.3
    hi_y = max(ys.max() + _BOX_H / 2, pts[:, 1].max()) + 0.3
    return _Plan(
        pos=tuple(pos[n] for n in range(out + 1)),
        out=out,
        edge_rad=tuple(edge_rad),
        concat_rad=tuple(concat_rad),
        xlim=(float(lo_x), float(hi_x)),
        ylim=(float(lo_y), float(hi_y)),
    )


def _inside(plan: _Plan, node: int, pts: np.ndarray, gap: float) -> np.ndarray:
    """Which of ``pts`` lie inside the shape of ``node`` grown by ``gap``."""
    c = np.asarray(plan.pos[node])
    if plan.is_box(node):
        hw, hh = plan.half_extent(node)
        return (np.abs(pts[:, 0] - c[0]) <= hw + gap) & (np.abs(pts[:, 1] - c[1]) <= hh + gap)
    return np.linalg.norm(pts - c, axis=1) <= _NODE_R + gap


_CLIP_T = np.linspace(0.0, 1.0, 241)


def _edge_path(plan: _Plan, src: int, dst: int, rad: float) -> MplPath:
    """The ``arc3`` curve from ``src`` to ``dst`` cut at the node outlines, as a quadratic Bezier path."""
    p1, p2 = np.asarray(plan.pos[src], float), np.asarray(plan.pos[dst], float)
    pts = _bezier(p1, p2, rad, _CLIP_T)
    in_a = np.flatnonzero(_inside(plan, src, pts, 0.03))
    in_b = np.flatnonzero(_inside(plan, dst, pts, 0.05))
    t0 = _CLIP_T[in_a.max() + 1] if len(in_a) and in_a.max() + 1 < len(_CLIP_T) else 0.0
    t1 = _CLIP_T[in_b.min() - 1] if len(in_b) and in_b.min() > 0 else 1.0
    if t1 <= t0:  # degenerate (overlapping nodes): keep the whole curve
        t0, t1 = 0.0, 1.0
    d = p2 - p1
    c = (p1 + p2) / 2 + rad * np.array([d[1], -d[0]])

    def blossom(u: float, v: float) -> np.ndarray:
        return (1 - u) * (1 - v) * p1 + ((1 - u) * v + u * (1 - v)) * c + u * v * p2

    verts = [blossom(t0, t0), blossom(t0, t1), blossom(t1, t1)]
    return MplPath(verts, [MplPath.MOVETO, MplPath.CURVE3, MplPath.CURVE3])


def _boxes_overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Overlap area of two boxes given as (cx, cy, half_w, half_h)."""
    ox = min(a[0] + a[2], b[0] + b[2]) - max(a[0] - a[2], b[0] - b[2])
    oy = min(a[1] + a[3], b[1] + b[3]) - max(a[1] - a[3], b[1] - b[3])
    return max(ox, 0.0) * max(oy, 0.0)


def _units_per_point(ax: Axes, plan: _Plan) -> float:
    """Data units per typographic point on ``ax`` once its aspect is applied (for label sizes)."""
    fig = ax.figure
    try:
        ax.apply_aspect()
        box = ax.get_position()
        w_in = box.width * fig.get_figwidth()
        h_in = box.height * fig.get_figheight()
        w, h = plan.size
        per_inch = max(w / max(w_in, 1e-6), h / max(h_in, 1e-6))
    except Exception:  # an unusual axes (e.g. a layout engine pending): fall back to the nominal scale
        per_inch = 1.0 / _INCH_PER_UNIT
    return per_inch / 72.0


# ---------------------------------------------------------------------------------------------------- cells
def draw_cell(
    ax: Axes,
    cell: Cell,
    *,
    title: str = "",
    changed: Collection[int] = (),
    previous_ops: Sequence[str] | None = None,
) -> None:
    """Draw ``cell`` on ``ax``.

    Args:
        ax: a matplotlib axes (cleared first; its aspect is set to equal and its frame hidden).
        cell: the cell to draw.
        title: the axes title.
        changed: indices (into ``cell.edges``) of the edges to highlight: thicker arrows, red labels.
        previous_ops: the ops before a change, one per edge of ``cell``; every edge whose op differs is
            highlighted too and labelled ``old -> new``.

    Raises:
        ConfigError: an index of ``changed`` is out of range, or ``previous_ops`` has the wrong length.
    """
    n_edges = len(cell.edges)
    highlight = {int(i) for i in changed}
    bad = sorted(i for i in highlight if not 0 <= i < n_edges)
    if bad:
        raise ConfigError(
            f"changed: edge indices {bad} out of range; the cell has {n_edges} edges (0..{n_edges - 1})"
        )
    texts = [short_op_label(e.op) for e in cell.edges]
    if previous_ops is not None:
        if isinstance(previous_ops, str) or len(previous_ops) != n_edges:
            raise ConfigError(
                f"previous_ops: expected {n_edges} ops (one per edge of the cell), got {previous_ops!r}"
            )
        for i, (old, e) in enumerate(zip(previous_ops, cell.edges, strict=True)):
            if op_spec(old).name != e.op:
                highlight.add(i)
                texts[i] = f"{short_op_label(old)}\u2192{texts[i]}"

    plan = _plan(cell)
    if ax.has_data() or ax.texts or ax.artists:
        ax.cla()
    ax.set_xlim(*plan.xlim)
    ax.set_ylim(*plan.ylim)
    ax.set_aspect("equal", adjustable="box")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10, y=1.0, pad=4.0)  # an explicit y skips matplotlib's tick-label search
    upp = _units_per_point(ax, plan)

    # nodes
    node_boxes: list[tuple[float, float, float, float]] = []
    names = {0: "c_{k-2}", 1: "c_{k-1}", plan.out: "c_{k}"}
    for n, (x, y) in enumerate(plan.pos):
        hw, hh = plan.half_extent(n)
        if plan.is_box(n):
            face = _OUTPUT_FACE if n == plan.out else _INPUT_FACE
            patch: Patch = FancyBboxPatch(
                (x - hw, y - hh), 2 * hw, 2 * hh, boxstyle="round,pad=0,rounding_size=0.12",
                facecolor=face, edgecolor="#404040", linewidth=1.0, zorder=3,
            )  # fmt: skip
            label = f"${names[n]}$"
        else:
            patch = Circle(
                (x, y), _NODE_R, facecolor=_NODE_FACE, edgecolor="#404040", linewidth=1.0, zorder=3
            )
            label = str(n)
        node_boxes.append((x, y, hw, hh))
        ax.add_artist(patch)
        ax.text(x, y, label, ha="center", va="center", fontsize=8.5, zorder=4)

    # the dashed concat arrows into the output
    for n, rad in zip(cell.concat, plan.concat_rad, strict=True):
        ax.add_artist(FancyArrowPatch(
            path=_edge_path(plan, n, plan.out, rad), arrowstyle="-|>", mutation_scale=9,
            linestyle=(0, (5, 3)), linewidth=1.0, color="#7a7a7a", zorder=1,
        ))  # fmt: skip

    # label positions: along each curve, away from other labels and nodes (highlighted labels choose first)
    labels: list[tuple[float, float, float, float]] = []
    placements: dict[int, tuple[float, float]] = {}
    curve_pts = [
        _bezier(np.asarray(plan.pos[s], float), np.asarray(plan.pos[d], float), r, _SAMPLE_T)[_INNER]
        for (s, d), r in [((e.src, e.dst), r) for e, r in zip(cell.edges, plan.edge_rad, strict=True)]
        + [((n, plan.out), r) for n, r in zip(cell.concat, plan.concat_rad, strict=True)]
    ]
    owner = np.repeat(np.arange(len(curve_pts)), [len(p) for p in curve_pts])
    all_pts = np.concatenate(curve_pts)
    for i in sorted(range(n_edges), key=lambda i: (i not in highlight, i)):
        e = cell.edges[i]
        half_w = (0.3 * _LABEL_FONTSIZE * len(texts[i]) + 2.5) * upp
        half_h = (_LABEL_FONTSIZE / 2 + 2.0) * upp
        area = 4 * half_w * half_h
        p1, p2 = np.asarray(plan.pos[e.src], float), np.asarray(plan.pos[e.dst], float)
        rad = plan.edge_rad[i]
        pts = _bezier(p1, p2, rad, _LABEL_TS_ARR)
        ctrl = (p1 + p2) / 2 + rad * np.array([p2[1] - p1[1], p1[0] - p2[0]])
        own = curve_pts[i]
        best: tuple[float, float, float] | None = None
        for t, (px, py) in zip(_LABEL_TS, pts, strict=True):
            tangent = 2 * (1 - t) * (ctrl - p1) + 2 * t * (p2 - ctrl)
            nx, ny = np.array([-tangent[1], tangent[0]]) / max(float(np.hypot(*tangent)), 1e-9)
            beside = abs(nx) * half_w + abs(ny) * half_h + 1.5 * upp  # clears the line when offset this far
            # on the curve, or just beside it (for edges too short to carry their label)
            for side, (cx, cy) in enumerate(((px, py), (px + nx * beside, py + ny * beside),
                                             (px - nx * beside, py - ny * beside))):  # fmt: skip
                box = (float(cx), float(cy), half_w, half_h)
                cost = 0.3 * abs(t - 0.5) + (0.25 if side else 0.0)
                padded = (box[0], box[1], half_w + 1.5 * upp, half_h + 1.0 * upp)  # labels should not touch
                cost += 4.0 * sum(_boxes_overlap(padded, b) for b in labels) / area
                cost += 2.0 * sum(_boxes_overlap(box, b) for b in node_boxes) / area
                covered = (np.abs(all_pts[:, 0] - box[0]) < half_w) & (
                    np.abs(all_pts[:, 1] - box[1]) < half_h
                )
                cost += 0.05 * int((covered & (owner != i)).sum())  # sitting on another edge: ambiguous
                hidden = float(
                    np.mean((np.abs(own[:, 0] - box[0]) < half_w) & (np.abs(own[:, 1] - box[1]) < half_h))
                )
                cost += 1.5 * max(0.0, hidden - 0.45)  # the label would hide most of its own edge
                if best is None or cost < best[0] - 1e-9:
                    best = (cost, box[0], box[1])
        assert best is not None
        labels.append((best[1], best[2], half_w, half_h))
        placements[i] = (best[1], best[2])

    # the op edges and their labels
    for i, e in enumerate(cell.edges):
        kind = op_spec(e.op).kind
        color = KIND_COLORS[kind]
        hot = i in highlight
        ax.add_artist(FancyArrowPatch(
            path=_edge_path(plan, e.src, e.dst, plan.edge_rad[i]), arrowstyle="-|>",
            mutation_scale=12 if hot else 10, linewidth=2.6 if hot else 1.3, color=color,
            linestyle=(0, (0.8, 1.8)) if kind == "null" else "-", zorder=2,
        ))  # fmt: skip
        x, y = placements[i]
        ax.text(
            x, y, texts[i], ha="center", va="center", fontsize=_LABEL_FONTSIZE, zorder=5,
            color=_HIGHLIGHT if hot else ("#808080" if kind == "null" else color),
            fontweight="bold" if hot else "normal",
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "linewidth": 1.0 if hot else 0.0,
                  "edgecolor": _HIGHLIGHT if hot else "white", "alpha": 0.92},
        )  # fmt: skip


# ------------------------------------------------------------------------------------------------ genotypes
def _match_edges(a: Cell, b: Cell) -> list[int] | None:
    """For each edge of ``b``, the index of the edge of ``a`` it corresponds to, or None when the two cells do
    not have the same graph. The two inputs of a node may be listed in either order."""
    if a.steps != b.steps:
        return None
    match: list[int] = []
    for k in range(0, len(b.edges), 2):  # edges are sorted by dst: positions k, k + 1 feed one node
        sa = (a.edges[k].src, a.edges[k + 1].src)
        sb = (b.edges[k].src, b.edges[k + 1].src)
        if a.edges[k].dst != b.edges[k].dst:  # pragma: no cover - both are sorted by dst with 2 edges each
            return None
        if sa == sb:
            match += [k, k + 1]
        elif sa == sb[::-1]:
            match += [k + 1, k]
        else:
            return None
    return match


def _kind_legend(fig: Figure, cells: Sequence[Cell], highlight: bool) -> None:
    kinds = [k for k in KIND_COLORS if any(op_spec(e.op).kind == k for c in cells for e in c.edges)]
    handles: list = [
        Line2D([], [], color=KIND_COLORS[k], linewidth=1.6, linestyle=":" if k == "null" else "-",
               label=_KIND_NAMES[k])
        for k in kinds
    ]  # fmt: skip
    handles.append(
        Line2D([], [], color="#7a7a7a", linewidth=1.0, linestyle="--", label="concat \u2192 output")
    )
    if highlight:
        handles.append(Patch(facecolor="white", edgecolor=_HIGHLIGHT, label="changed op (old\u2192new)"))
    widths = [0.75 + 0.075 * len(h.get_label()) for h in handles]  # inches per entry at fontsize 8
    ncol = len(handles) if sum(widths) <= fig.get_figwidth() - 0.3 else math.ceil(len(handles) / 2)
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=8, frameon=False, handlelength=2.2,
               columnspacing=1.4, borderaxespad=0.3)  # fmt: skip


def genotype_figure(
    before: Genotype, after: Genotype | None = None, *, title: str | None = None, dpi: int = 100
) -> Figure:
    """A figure of a genotype: its normal and reduction cells side by side.

    With ``after``, a 2 x 2 grid (rows: before / after; columns: normal / reduction). When both genotypes have
    the same graph (same edges ``src -> dst`` in the same order), the edges whose op changed are highlighted
    (thick, red ``old -> new`` label in the after row) and the title counts them; otherwise both are simply
    shown.

    All panels share one scale. The figure has an Agg canvas attached (``fig.canvas.draw()`` and
    ``fig.savefig(...)`` work); pyplot is not used.
    """
    rows: list[tuple[str, Genotype]] = [("before", before)] if after is not None else [("", before)]
    if after is not None:
        rows.append(("after", after))
    # per cell: which edge of `before` each edge of `after` corresponds to (None: different graphs)
    matches = (
        [_match_edges(x, y) for x, y in zip(before.cells, after.cells, strict=True)]
        if after is not None
        else []
    )
    comparable = any(m is not None for m in matches)
    changed: list[list[int]] = []  # per cell, the indices (into the after cell) of edges whose op changed
    if after is not None:
        for m, old, new in zip(matches, before.cells, after.cells, strict=True):
            changed.append(
                [] if m is None else [i for i, e in enumerate(new.edges) if old.edges[m[i]].op != e.op]
            )
    heading = title
    if after is not None:
        counts = [f"{len(ch)}/{len(new.edges)}" for ch, new in zip(changed, after.cells, strict=True)]
        if all(m is not None for m in matches):
            total = sum(len(ch) for ch in changed)
            summary = (
                f"{total} of {after.num_edges} edges changed (normal {counts[0]}, reduction {counts[1]})"
            )
        elif comparable:
            parts = [
                f"{name}: {count} edges changed" if m is not None else f"{name}: different graphs"
                for name, count, m in zip(("normal", "reduction"), counts, matches, strict=True)
            ]
            summary = "; ".join(parts)
        else:
            summary = "different graphs: no edge-by-edge comparison"
        heading = f"{title}\n{summary}" if title else summary
    # every panel at the same scale: column widths and row heights from the largest cell they hold
    plans = [[_plan(c) for c in g.cells] for _, g in rows]
    col_w = [max(p[c].size[0] for p in plans) * _INCH_PER_UNIT for c in range(2)]
    row_h = [max(p.size[1] for p in ps) * _INCH_PER_UNIT for ps in plans]
    margin, col_gap, row_gap, title_h = 0.2, 0.35, 0.15, 0.3
    top_in = 0.3 + 0.22 * (heading.count("\n") + 1) if heading else 0.3
    bottom_in = 0.45
    fig_w = 2 * margin + sum(col_w) + col_gap
    fig_h = top_in + sum(row_h) + len(rows) * title_h + (len(rows) - 1) * row_gap + bottom_in
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)

    def panel(r: int, c: int) -> Axes:
        w, h = (s * _INCH_PER_UNIT for s in plans[r][c].size)
        left = margin + sum(col_w[:c]) + c * col_gap + (col_w[c] - w) / 2
        top = top_in + sum(row_h[:r]) + (r + 1) * title_h + r * row_gap
        return fig.add_axes((left / fig_w, 1 - (top + h) / fig_h, w / fig_w, h / fig_h))

    if heading:
        fig.suptitle(heading, fontsize=11, y=1 - 0.08 / fig_h, va="top")

    for r, (row_name, g) in enumerate(rows):
        for c, (cell_name, cell) in enumerate((("normal cell", g.normal), ("reduction cell", g.reduce))):
            ax = panel(r, c)
            panel_title = f"{row_name}: {cell_name}" if row_name else cell_name
            m = matches[c] if after is not None else None
            if after is None or m is None:
                draw_cell(ax, cell, title=panel_title)
            elif row_name == "after":
                old = before.cells[c]
                draw_cell(
                    ax, cell, title=panel_title, changed=changed[c], previous_ops=[old.edges[j].op for j in m]
                )
            else:  # the before row: highlight the same edges, under their own index in `before`
                draw_cell(ax, cell, title=panel_title, changed=[m[i] for i in changed[c]])
    _kind_legend(fig, [c for _, g in rows for c in g.cells], highlight=any(changed))
    return fig


def genotype_image(
    before: Genotype,
    after: Genotype | None = None,
    *,
    title: str | None = None,
    dpi: int = 80,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """:func:`genotype_figure` rendered to an RGB ``uint8`` array of shape ``[H, W, 3]`` (for
    ``render_mode="rgb_array"``).

    Args:
        before, after, title: See :func:`genotype_figure`.
        dpi: Pixels per inch; the image's size then follows the drawing's (it depends on the cells' shapes).
        size: ``(H, W)`` in pixels: the drawing is scaled to fit (``dpi`` is ignored) and centred on a white frame
            of exactly this size, so that every frame of a video has one size whatever the genotypes.

    Raises:
        ConfigError: If ``size`` is not a pair of positive integers.
    """
    fig = genotype_figure(before, after, title=title, dpi=dpi)
    if size is not None:
        valid = isinstance(size, (tuple, list)) and len(size) == 2
        if not valid or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in size):
            raise ConfigError(f"size: expected (height, width) in pixels, two positive integers, got {size!r}")
        height, width = int(size[0]), int(size[1])
        w_in, h_in = fig.get_size_inches()
        fig.set_dpi(min(width / w_in, height / h_in) * (1 - 1e-6))  # Agg truncates to whole pixels: never more
    canvas = fig.canvas
    assert isinstance(canvas, FigureCanvasAgg)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    if size is None:
        return np.ascontiguousarray(rgb, dtype=np.uint8)
    rgb = rgb[:height, :width]
    frame = np.full((height, width, 3), 255, dtype=np.uint8)
    top, left = (height - rgb.shape[0]) // 2, (width - rgb.shape[1]) // 2
    frame[top : top + rgb.shape[0], left : left + rgb.shape[1]] = rgb
    return frame


def save_genotype_png(
    path: PathLike,
    before: Genotype,
    after: Genotype | None = None,
    *,
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Save :func:`genotype_figure` as a PNG at ``path`` (parent folders are created); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = genotype_figure(before, after, title=title, dpi=dpi)
    fig.savefig(out, format="png", dpi=dpi, facecolor="white")
    return out


# ------------------------------------------------------------------------------------------ learning curves
@dataclass(frozen=True)
class _Table:
    path: Path
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def column(self, name: str) -> np.ndarray | None:
        """The column as floats (empty cells and ``nan`` -> NaN), or None if a value is not a number."""
        k = self.columns.index(name)
        values = np.empty(len(self.rows), dtype=float)
        for r, row in enumerate(self.rows):
            cell = row[k].strip() if k < len(row) else ""
            if cell == "":
                values[r] = math.nan
                continue
            try:
                values[r] = float(cell)
            except ValueError:
                return None
        return values


def _read_csv(path: Path) -> _Table:
    if not path.is_file():
        raise ConfigError(f"csv_paths: no such CSV file {str(path)!r}")
    with path.open(newline="") as f:
        rows = [row for row in csv.reader(f) if any(cell.strip() for cell in row)]
    if not rows:
        raise ConfigError(
            f"csv_paths: the CSV file {str(path)!r} is empty (expected a header row and data rows)"
        )
    header = tuple(h.strip() for h in rows[0])
    if len(rows) < 2:
        raise ConfigError(f"csv_paths: the CSV file {str(path)!r} has a header but no data rows")
    return _Table(path, header, tuple(tuple(r) for r in rows[1:]))


def plot_learning_curves(
    csv_paths: Sequence[PathLike] | PathLike,
    out_png: PathLike,
    *,
    x: str = "epoch",
    y: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    reference_lines: Mapping[str, Mapping[str, float]] | None = None,
) -> Path:
    """Plot columns of CSV logs against ``x`` and save a PNG (the figure of :func:`learning_curves_figure`).

    Args:
        csv_paths: one CSV file or several (a header row, then numeric rows; empty cells are gaps).
        out_png: the PNG to write (parent folders are created).
        x: the column on the horizontal axis.
        y: the columns to plot, one subplot each; default: every numeric column except ``x`` (a file that
            lacks one of them just has no line in that subplot).
        labels: one legend label per file (default: the file stems).
        title: a figure title.
        reference_lines: horizontal reference lines per column, ``{column: {label: value}}``, e.g. the floors a
            reward is read against: ``{"eval_reward": {"random valid": -0.08, "identity": 0.0}}``. Non-finite
            values are skipped.

    Returns:
        The path of the PNG.

    Raises:
        ConfigError: a file is missing or empty, a requested column is missing or not numeric, or ``labels``
            does not have one entry per file.
    """
    fig = learning_curves_figure(csv_paths, x=x, y=y, labels=labels, title=title, reference_lines=reference_lines)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", facecolor="white")
    return out


def learning_curves_figure(
    csv_paths: Sequence[PathLike] | PathLike,
    *,
    x: str = "epoch",
    y: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    reference_lines: Mapping[str, Mapping[str, float]] | None = None,
) -> Figure:
    """The figure :func:`plot_learning_curves` saves (same arguments, without the output path): one subplot per
    column, one line per file, and the ``reference_lines`` as labelled dashed horizontal lines."""
    if isinstance(csv_paths, (str, os.PathLike)):
        paths = [Path(csv_paths)]
    else:
        paths = [Path(p) for p in csv_paths]
    if not paths:
        raise ConfigError("csv_paths: no CSV file given")
    if labels is not None:
        if isinstance(labels, str) or len(labels) != len(paths):
            raise ConfigError(f"labels: expected {len(paths)} labels (one per CSV file), got {labels!r}")
        names = [str(label) for label in labels]
    else:
        names = [p.stem for p in paths]
    if isinstance(y, str):
        y = [y]
    tables = [_read_csv(p) for p in paths]

    xs: list[np.ndarray] = []
    for t in tables:
        if x not in t.columns:
            raise ConfigError(
                f"x: column {x!r} not in {str(t.path)!r}; available columns: {', '.join(t.columns)}"
            )
        col = t.column(x)
        if col is None:
            raise ConfigError(f"x: column {x!r} of {str(t.path)!r} is not numeric")
        xs.append(col)

    if y is None:
        wanted: list[str] = []
        for t in tables:
            for c in t.columns:
                if c != x and c not in wanted and t.column(c) is not None:
                    wanted.append(c)
        if not wanted:
            raise ConfigError(f"y: no numeric column besides {x!r} in {', '.join(str(p) for p in paths)}")
        strict = False
    else:
        wanted = [str(c) for c in y]
        if not wanted:
            raise ConfigError("y: no column given")
        strict = True

    n = len(wanted)
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.0 * nrows + (0.4 if title else 0.0)), dpi=110, facecolor="white")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k, column in enumerate(wanted):
        ax = axes[k // ncols][k % ncols]
        drawn = 0
        for j, (t, xv, name) in enumerate(zip(tables, xs, names, strict=True)):
            if column not in t.columns:
                if strict:
                    raise ConfigError(
                        f"y: column {column!r} not in {str(t.path)!r}; "
                        f"available columns: {', '.join(t.columns)}"
                    )
                continue
            yv = t.column(column)
            if yv is None:
                if strict:
                    raise ConfigError(f"y: column {column!r} of {str(t.path)!r} is not numeric")
                continue
            ok = ~np.isnan(xv) & ~np.isnan(yv)
            ax.plot(
                xv[ok],
                yv[ok],
                color=f"C{j % 10}",  # one colour per file in every subplot
                marker="o" if ok.sum() <= 25 else None,
                markersize=3,
                linewidth=1.4,
                label=name,
            )
            drawn += 1
        refs = [(label, float(v)) for label, v in (reference_lines or {}).get(column, {}).items() if math.isfinite(v)]
        for i, (label, value) in enumerate(refs):
            ax.axhline(value, color=("0.35", "0.6", "0.15")[i % 3], linestyle=("--", ":", "-.")[i % 3],
                       linewidth=1.2, label=f"{label} ({value:+.4g})")  # fmt: skip
        ax.set_title(column, fontsize=10)
        ax.set_xlabel(x)
        ax.grid(True, alpha=0.3)
        if drawn > 1 or (drawn == 1 and len(tables) > 1) or refs:
            ax.legend(fontsize=8)
    for k in range(n, nrows * ncols):
        axes[k // ncols][k % ncols].set_axis_off()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
