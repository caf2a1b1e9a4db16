"""Pictures of cells, genotypes and learning curves.

Everything here draws on :class:`matplotlib.figure.Figure` objects with an explicit
:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`; ``matplotlib.pyplot`` is never imported and no global
matplotlib state (backend, ``rcParams``) is touched, so the module is safe in headless workers, in environments
(``render_mode="rgb_array"``) and next to user code that uses pyplot itself.

- :func:`draw_cell` draws one cell on an axes: the inputs ``c_{k-2}`` / ``c_{k-1}`` on the left, the intermediate
  nodes in layers (by longest path from the inputs), the output ``c_{k}`` on the right fed by dashed arrows from the
  ``concat`` nodes. Each edge is an arrow labelled with a short op name (``sep3``, ``dil5``, ``max3``, ``skip``,
  ``null`` ...) and coloured by op kind (:data:`KIND_COLORS`); parallel edges are curved apart.
- :func:`genotype_figure` / :func:`genotype_image` / :func:`save_genotype_png` draw a genotype (normal and reduction
  cell), or a before / after pair with the changed edges highlighted in red (``old -> new``).
- :func:`plot_learning_curves` plots columns of one or several CSV logs against a common ``x`` column.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Patch

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
_LAYER_DX = 2.6  # horizontal distance between layers
_NODE_DY = 1.35  # vertical distance between nodes of a layer
_NODE_R = 0.3  # radius of an intermediate node
_BOX_W, _BOX_H = 1.15, 0.55  # input / output boxes
_CLEARANCE = 0.55  # how close an edge may pass a node centre before it is penalised
_INCH_PER_UNIT = 0.5
_LABEL_FONTSIZE = 7.0
_RADII = (0.0, 0.12, -0.12, 0.22, -0.22, 0.32, -0.32, 0.45, -0.45, 0.6, -0.6)
_LABEL_TS = (0.5, 0.42, 0.58, 0.34, 0.66, 0.27, 0.73, 0.2, 0.8)


def short_op_label(op: str) -> str:
    """A short label for an op: ``sep_conv_3x3`` -> ``sep3``, ``dil_conv_5x5`` -> ``dil5``, ``conv_3x3`` ->
    ``conv3``, ``max_pool_3x3`` -> ``max3``, ``avg_pool_3x3`` -> ``avg3``, ``skip_connect`` -> ``skip``, ``null``,
    ``conv_1x7_7x1`` -> ``fac7`` (``conv_7x1_1x7``, the k x 1 conv first, -> ``fac7h``)."""
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


# ---------------------------------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class _Layout:
    """Node centres of a cell drawing; the output node is ``steps + 2``."""

    pos: dict[int, tuple[float, float]]
    out: int
    xlim: tuple[float, float]
    ylim: tuple[float, float]

    @property
    def size(self) -> tuple[float, float]:
        return self.xlim[1] - self.xlim[0], self.ylim[1] - self.ylim[0]


def _layout(cell: Cell) -> _Layout:
    """Layered layout: inputs in layer 0, node ``n`` in ``1 + max(layer of its inputs)``, output last.

    Within a layer the nodes are ordered by the mean height of their inputs (fewer crossings); a layer of three or
    more nodes is staggered left / right so the labels of the edges entering it have room."""
    steps = cell.steps
    out = steps + 2
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
    for lay in range(1, depth + 1):
        nodes = layers.get(lay, [])
        nodes.sort(key=lambda n: (-float(np.mean([pos[s][1] for s in preds[n]])), n))
        k = len(nodes)
        for i, n in enumerate(nodes):
            y = ((k - 1) / 2 - i) * _NODE_DY
            x = lay * _LAYER_DX
            if k >= 3:
                x += (0.28 if i % 2 else -0.28) * _LAYER_DX
            pos[n] = (x, y)
    concat_y = [pos[n][1] for n in cell.concat]
    pos[out] = ((depth + 1) * _LAYER_DX, float(np.clip(np.mean(concat_y), -half, half)))
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    margin_x, margin_y = 0.75, 0.8
    return _Layout(
        pos=pos,
        out=out,
        xlim=(min(xs) - margin_x, max(xs) + margin_x),
        ylim=(min(ys) - margin_y, max(ys) + margin_y + 0.25),
    )


def _bezier(p1: np.ndarray, p2: np.ndarray, rad: float, ts: np.ndarray) -> np.ndarray:
    """Points of matplotlib's ``arc3,rad=rad`` curve from ``p1`` to ``p2`` (equal-aspect data coordinates)."""
    d = p2 - p1
    ctrl = (p1 + p2) / 2 + rad * np.array([d[1], -d[0]])
    t = ts[:, None]
    return (1 - t) ** 2 * p1 + 2 * t * (1 - t) * ctrl + t**2 * p2


_SAMPLE_T = np.linspace(0.0, 1.0, 41)


def _route(
    layout: _Layout, pairs: Sequence[tuple[int, int]], fixed: Sequence[np.ndarray] = ()
) -> tuple[list[float], list[np.ndarray]]:
    """Choose an arc radius per edge: avoid passing through other nodes, running along other edges, and keep
    parallel edges (same ``src`` and ``dst``) apart. Returns the radii and the sampled curves."""
    centres = {n: np.asarray(p, dtype=float) for n, p in layout.pos.items()}
    inner = (_SAMPLE_T > 0.12) & (_SAMPLE_T < 0.88)
    placed: list[tuple[int, int, float, np.ndarray]] = []
    radii: list[float] = []
    curves: list[np.ndarray] = []
    for src, dst in pairs:
        p1, p2 = centres[src], centres[dst]
        others = np.array([c for n, c in centres.items() if n not in (src, dst)])
        best: tuple[float, float, np.ndarray] | None = None
        for rad in _RADII:
            if any(s == src and d == dst and abs(r - rad) < 0.3 for s, d, r, _ in placed):
                continue  # a parallel edge already uses a close radius: it would hide under this one
            pts = _bezier(p1, p2, rad, _SAMPLE_T)
            cost = 0.6 * abs(rad)
            if len(others):
                dist = np.linalg.norm(pts[inner][:, None, :] - others[None, :, :], axis=-1).min(axis=0)
                cost += 12.0 * float(np.clip(_CLEARANCE - dist, 0, None).sum())
            for _, _, _, q in list(placed) + [(0, 0, 0.0, f) for f in fixed]:
                close = np.linalg.norm(pts[inner][:, None, :] - q[None, inner, :], axis=-1).min(axis=1) < 0.18
                cost += 0.08 * float(close.sum())
            if best is None or cost < best[0]:
                best = (cost, rad, pts)
        assert best is not None
        placed.append((src, dst, best[1], best[2]))
        radii.append(best[1])
        curves.append(best[2])
    return radii, curves


def _boxes_overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Overlap area of two boxes given as (cx, cy, half_w, half_h)."""
    ox = min(a[0] + a[2], b[0] + b[2]) - max(a[0] - a[2], b[0] - b[2])
    oy = min(a[1] + a[3], b[1] + b[3]) - max(a[1] - a[3], b[1] - b[3])
    return max(ox, 0.0) * max(oy, 0.0)


def _units_per_point(ax: Axes, layout: _Layout) -> float:
    """Data units per typographic point on ``ax`` once its aspect is applied (for label sizes)."""
    fig = ax.figure
    try:
        ax.apply_aspect()
        box = ax.get_position()
        w_in = box.width * fig.get_figwidth()
        h_in = box.height * fig.get_figheight()
        w, h = layout.size
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
        ax: a matplotlib axes (its contents are replaced; its aspect is set to equal and its frame hidden).
        cell: the cell to draw.
        title: the axes title.
        changed: indices (into ``cell.edges``) of the edges to highlight: thicker arrows, red labels.
        previous_ops: the ops before a change, one per edge of ``cell``; every edge whose op differs is
            highlighted too and labelled ``old -> new``.
    """
    n_edges = len(cell.edges)
    highlight = {int(i) for i in changed}
    bad = sorted(i for i in highlight if not 0 <= i < n_edges)
    if bad:
        raise ConfigError(f"changed: edge indices {bad} out of range; the cell has {n_edges} edges (0..{n_edges - 1})")
    if previous_ops is not None:
        if isinstance(previous_ops, str) or len(previous_ops) != n_edges:
            raise ConfigError(f"previous_ops: expected {n_edges} ops (one per edge of the cell), got {previous_ops!r}")
        highlight |= {i for i, (old, e) in enumerate(zip(previous_ops, cell.edges)) if op_spec(old).name != e.op}

    ax.cla()
    layout = _layout(cell)
    ax.set_xlim(*layout.xlim)
    ax.set_ylim(*layout.ylim)
    ax.set_aspect("equal", adjustable="box")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    upp = _units_per_point(ax, layout)

    # nodes
    patches = {}
    node_boxes: list[tuple[float, float, float, float]] = []
    names = {0: "c_{k-2}", 1: "c_{k-1}", layout.out: "c_{k}"}
    for n, (x, y) in layout.pos.items():
        if n in names:
            face = _OUTPUT_FACE if n == layout.out else _INPUT_FACE
            patch = FancyBboxPatch((x - _BOX_W / 2, y - _BOX_H / 2), _BOX_W, _BOX_H,
                                   boxstyle="round,pad=0,rounding_size=0.12", facecolor=face,
                                   edgecolor="#404040", linewidth=1.0, zorder=3)  # fmt: skip
            label = f"${names[n]}$"
            node_boxes.append((x, y, _BOX_W / 2, _BOX_H / 2))
        else:
            patch = Circle((x, y), _NODE_R, facecolor=_NODE_FACE, edgecolor="#404040", linewidth=1.0, zorder=3)
            label = str(n)
            node_boxes.append((x, y, _NODE_R, _NODE_R))
        ax.add_patch(patch)
        patches[n] = patch
        ax.text(x, y, label, ha="center", va="center", fontsize=8.5, zorder=4)

    # edges (op edges first, then the dashed concat arrows, routed around what is already there)
    pairs = [(e.src, e.dst) for e in cell.edges]
    radii, curves = _route(layout, pairs)
    out_pairs = [(n, layout.out) for n in cell.concat]
    out_radii, _ = _route(layout, out_pairs, fixed=curves)
    for (src, dst), rad in zip(out_pairs, out_radii):
        ax.add_patch(FancyArrowPatch(
            layout.pos[src], layout.pos[dst], connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>",
            mutation_scale=9, linestyle=(0, (4, 3)), linewidth=1.0, color="#7a7a7a",
            patchA=patches[src], patchB=patches[dst], shrinkA=1, shrinkB=1, zorder=1,
        ))  # fmt: skip

    labels: list[tuple[float, float, float, float]] = []
    order = sorted(range(n_edges), key=lambda i: (i not in highlight, i))  # highlighted labels get first pick
    placements: dict[int, tuple[float, float]] = {}
    for i in order:
        e = cell.edges[i]
        text = short_op_label(e.op)
        if i in highlight and previous_ops is not None and op_spec(previous_ops[i]).name != e.op:
            text = f"{short_op_label(previous_ops[i])}\u2192{text}"
        half_w = (0.62 * _LABEL_FONTSIZE * len(text) / 2 + 2.5) * upp
        half_h = (_LABEL_FONTSIZE / 2 + 2.0) * upp
        p1, p2 = np.asarray(layout.pos[e.src], float), np.asarray(layout.pos[e.dst], float)
        best: tuple[float, float, float] | None = None
        for t in _LABEL_TS:
            cx, cy = _bezier(p1, p2, radii[i], np.array([t]))[0]
            box = (cx, cy, half_w, half_h)
            cost = 0.3 * abs(t - 0.5)
            cost += 6.0 * sum(_boxes_overlap(box, b) for b in labels)
            cost += 3.0 * sum(_boxes_overlap(box, b) for b in node_boxes)
            if best is None or cost < best[0] - 1e-9:
                best = (cost, cx, cy)
        assert best is not None
        labels.append((best[1], best[2], half_w, half_h))
        placements[i] = (best[1], best[2])

    for i, e in enumerate(cell.edges):
        kind = op_spec(e.op).kind
        color = KIND_COLORS[kind]
        hot = i in highlight
        ax.add_patch(FancyArrowPatch(
            layout.pos[e.src], layout.pos[e.dst], connectionstyle=f"arc3,rad={radii[i]}", arrowstyle="-|>",
            mutation_scale=12 if hot else 10, linewidth=2.6 if hot else 1.3, color=color,
            linestyle=(0, (1.5, 2)) if kind == "null" else "-",
            patchA=patches[e.src], patchB=patches[e.dst], shrinkA=1, shrinkB=1, zorder=2,
        ))  # fmt: skip
        text = short_op_label(e.op)
        if hot and previous_ops is not None and op_spec(previous_ops[i]).name != e.op:
            text = f"{short_op_label(previous_ops[i])}\u2192{text}"
        x, y = placements[i]
        ax.text(
            x, y, text, ha="center", va="center", fontsize=_LABEL_FONTSIZE, zorder=5,
            color=_HIGHLIGHT if hot else ("#808080" if kind == "null" else color),
            fontweight="bold" if hot else "normal",
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "linewidth": 1.0 if hot else 0.0,
                  "edgecolor": _HIGHLIGHT if hot else "white", "alpha": 0.92},
        )  # fmt: skip


# ---------------------------------------------------------------------------------------------------- genotypes
def _same_graph(a: Cell, b: Cell) -> bool:
    return [(e.src, e.dst) for e in a.edges] == [(e.src, e.dst) for e in b.edges]


def _kind_legend(fig: Figure, cells: Sequence[Cell], highlight: bool) -> None:
    kinds = [k for k in KIND_COLORS if any(op_spec(e.op).kind == k for c in cells for e in c.edges)]
    handles: list = [
        Line2D([], [], color=KIND_COLORS[k], linewidth=1.6, linestyle=":" if k == "null" else "-",
               label=_KIND_NAMES[k])
        for k in kinds
    ]  # fmt: skip
    handles.append(Line2D([], [], color="#7a7a7a", linewidth=1.0, linestyle="--", label="concat \u2192 output"))
    if highlight:
        handles.append(Patch(facecolor="white", edgecolor=_HIGHLIGHT, label="changed op (old\u2192new)"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)


def genotype_figure(
    before: Genotype, after: Genotype | None = None, *, title: str | None = None, dpi: int = 100
) -> Figure:
    """A figure of a genotype: its normal and reduction cells side by side.

    With ``after``, a 2 x 2 grid (rows: before / after; columns: normal / reduction). When both genotypes have the
    same graph (same edges ``src -> dst`` in the same order), the edges whose op changed are highlighted (thick, red
    ``old -> new`` label in the after row) and the title counts them; otherwise both are simply shown.

    The figure has an Agg canvas attached (``fig.canvas.draw()``, ``fig.savefig(...)`` work); pyplot is not used.
    """
    rows: list[tuple[str, Genotype]] = [("before", before)] if after is not None else [("", before)]
    if after is not None:
        rows.append(("after", after))
    comparable = after is not None and _same_graph(before.normal, after.normal) and _same_graph(
        before.reduce, after.reduce
    )
    layouts = [_layout(c) for _, g in rows for c in g.cells]
    cell_w = max(lay.size[0] for lay in layouts)
    cell_h = max(lay.size[1] for lay in layouts)
    panel_w, panel_h = cell_w * _INCH_PER_UNIT + 0.3, cell_h * _INCH_PER_UNIT + 0.45
    top_in = 0.75 if (title or after is not None) else 0.2
    bottom_in = 0.45
    fig_w = 2 * panel_w + 0.4
    fig_h = len(rows) * panel_h + top_in + bottom_in
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(
        len(rows), 2, left=0.2 / fig_w, right=1 - 0.2 / fig_w, bottom=bottom_in / fig_h, top=1 - top_in / fig_h,
        wspace=0.05, hspace=0.12,
    )  # fmt: skip

    heading = title
    if after is not None:
        if comparable:
            n_changed = sum(a.op != b.op for a, b in zip(before.normal.edges, after.normal.edges))
            r_changed = sum(a.op != b.op for a, b in zip(before.reduce.edges, after.reduce.edges))
            summary = (
                f"{n_changed + r_changed} of {before.num_edges} edges changed "
                f"(normal {n_changed}/{len(before.normal.edges)}, reduction {r_changed}/{len(before.reduce.edges)})"
            )
        else:
            summary = "different graphs: no edge-by-edge comparison"
        heading = f"{title}\n{summary}" if title else summary
    if heading:
        fig.suptitle(heading, fontsize=11, y=1 - 0.08 / fig_h, va="top")

    for r, (row_name, g) in enumerate(rows):
        for c, (cell_name, cell) in enumerate((("normal cell", g.normal), ("reduction cell", g.reduce))):
            ax = fig.add_subplot(grid[r, c])
            panel_title = f"{row_name}: {cell_name}" if row_name else cell_name
            if comparable and after is not None:
                ref = (before.normal, before.reduce)[c]
                new = (after.normal, after.reduce)[c]
                diff = [i for i, (a, b) in enumerate(zip(ref.edges, new.edges)) if a.op != b.op]
                if row_name == "after":
                    draw_cell(ax, cell, title=panel_title, changed=diff, previous_ops=ref.ops)
                else:
                    draw_cell(ax, cell, title=panel_title, changed=diff)
            else:
                draw_cell(ax, cell, title=panel_title)
    _kind_legend(fig, [c for _, g in rows for c in g.cells], highlight=bool(comparable))
    return fig


def genotype_image(
    before: Genotype, after: Genotype | None = None, *, title: str | None = None, dpi: int = 80
) -> np.ndarray:
    """:func:`genotype_figure` rendered to an RGB ``uint8`` array of shape ``[H, W, 3]`` (for
    ``render_mode="rgb_array"``)."""
    fig = genotype_figure(before, after, title=title, dpi=dpi)
    canvas = fig.canvas
    assert isinstance(canvas, FigureCanvasAgg)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., :3], dtype=np.uint8)


def save_genotype_png(
    path: PathLike, before: Genotype, after: Genotype | None = None, *, title: str | None = None, dpi: int = 120
) -> Path:
    """Save :func:`genotype_figure` as a PNG at ``path`` (parent folders are created); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = genotype_figure(before, after, title=title, dpi=dpi)
    fig.savefig(out, format="png", dpi=dpi, facecolor="white")
    return out


# ---------------------------------------------------------------------------------------------------- learning curves
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
        raise ConfigError(f"csv_paths: the CSV file {str(path)!r} is empty (expected a header row and data rows)")
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
) -> Path:
    """Plot columns of CSV logs against ``x`` and save a PNG.

    Args:
        csv_paths: one CSV file or several (a header row, then numeric rows; empty cells are gaps).
        out_png: the PNG to write (parent folders are created).
        x: the column on the horizontal axis.
        y: the columns to plot, one subplot each; default: every numeric column except ``x`` (a file that lacks
            one of them just has no line in that subplot).
        labels: one legend label per file (default: the file stems).
        title: a figure title.

    Returns:
        The path of the PNG.

    Raises:
        ConfigError: a file is missing or empty, a requested column is missing or not numeric, or ``labels`` does
            not have one entry per file.
    """
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
            raise ConfigError(f"x: column {x!r} not in {str(t.path)!r}; available columns: {', '.join(t.columns)}")
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
        for t, xv, name in zip(tables, xs, names):
            if column not in t.columns:
                if strict:
                    raise ConfigError(
                        f"y: column {column!r} not in {str(t.path)!r}; available columns: {', '.join(t.columns)}"
                    )
                continue
            yv = t.column(column)
            if yv is None:
                if strict:
                    raise ConfigError(f"y: column {column!r} of {str(t.path)!r} is not numeric")
                continue
            ok = ~np.isnan(xv) & ~np.isnan(yv)
            ax.plot(xv[ok], yv[ok], marker="o" if ok.sum() <= 25 else None, markersize=3, linewidth=1.4, label=name)
            drawn += 1
        ax.set_title(column, fontsize=10)
        ax.set_xlabel(x)
        ax.grid(True, alpha=0.3)
        if drawn > 1 or (drawn == 1 and len(tables) > 1):
            ax.legend(fontsize=8)
    for k in range(n, nrows * ncols):
        axes[k // ncols][k % ncols].set_axis_off()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", facecolor="white")
    return out
