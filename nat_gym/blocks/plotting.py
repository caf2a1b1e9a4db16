"""Pictures of BlockQNN blocks (matplotlib's object API with an Agg canvas; pyplot is never imported).

:func:`draw_block` draws a block on an axes, left to right: the input, the layers in columns by depth (longest path
from the input), and the output node (the concat of the leaves, with a 1x1 projection when there are several). Each
layer is a box labelled with its index and kind (``3 conv5``, ``5 add``), coloured by kind with the colours of
:data:`nat_gym.plotting.KIND_COLORS`; arrows run from each predecessor, dashed arrows from the leaves to the output.
:func:`block_figure` / :func:`block_image` / :func:`save_block_png` draw one block or a row of several (e.g. the
top-k blocks of a search, with their rewards in the titles).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from nat_gym.blocks.nsc import ADD, AVG_POOL, CONCAT, CONV, IDENTITY, MAX_POOL, Block
from nat_gym.errors import ConfigError
from nat_gym.plotting import KIND_COLORS

__all__ = ["LAYER_COLORS", "draw_block", "block_figure", "block_image", "save_block_png"]

LAYER_COLORS: dict[int, str] = {
    CONV: KIND_COLORS["conv"], MAX_POOL: KIND_COLORS["max_pool"], AVG_POOL: KIND_COLORS["avg_pool"],
    IDENTITY: KIND_COLORS["skip"], ADD: "#7f7f7f", CONCAT: "#bcbd22",
}  # fmt: skip
"""The face colour of each layer type."""

_DX, _DY = 2.0, 1.0  # distance between columns / between rows, in data units
_W, _H = 1.35, 0.55  # box size
_INCH = 0.75  # inches per data unit


def _positions(block: Block) -> tuple[dict[int, tuple[float, float]], int]:
    """Centres of the input (0), the layers and the output (``len(block) + 1``); columns by depth."""
    out = len(block) + 1
    depth = [*block.depths, max(block.depths) + 1]
    columns: dict[int, list[int]] = {}
    for v, d in enumerate(depth):
        columns.setdefault(d, []).append(v)
    pos = {}
    for d, members in columns.items():
        for i, v in enumerate(members):
            pos[v] = (d * _DX, (i - (len(members) - 1) / 2) * _DY)
    return pos, out


def _size(block: Block) -> tuple[float, float]:
    pos, _ = _positions(block)
    xs, ys = zip(*pos.values())
    return max(xs) - min(xs) + _W + 0.6, max(ys) - min(ys) + _H + 0.8


def draw_block(ax: Axes, block: Block, *, title: str | None = None) -> None:
    """Draw ``block`` on ``ax`` (see the module docstring); the axes' limits and aspect are set, its frame hidden."""
    pos, out = _positions(block)
    leaves = set(block.leaves)

    def box(v: int, text: str, face: str, color: str = "black") -> None:
        x, y = pos[v]
        ax.add_patch(FancyBboxPatch((x - _W / 2, y - _H / 2), _W, _H, boxstyle="round,pad=0.02,rounding_size=0.12",
                                    facecolor=face, edgecolor="#333333", linewidth=0.8, zorder=2))  # fmt: skip
        ax.text(x, y, text, ha="center", va="center", fontsize=7.5, color=color, zorder=3)

    def arrow(a: int, b: int, dashed: bool = False) -> None:
        (x1, y1), (x2, y2) = pos[a], pos[b]
        skip = (x2 - x1) / _DX > 1.01  # jumps over a column: bend it so it clears the boxes in between
        rad = 0.25 if skip else 0.0
        ax.add_patch(FancyArrowPatch((x1 + _W / 2, y1), (x2 - _W / 2, y2), arrowstyle="-|>", mutation_scale=8,
                                     connectionstyle=f"arc3,rad={rad}", linewidth=0.9, color="#444444",
                                     linestyle="--" if dashed else "-", zorder=1, shrinkA=0, shrinkB=0))  # fmt: skip

    box(0, "input", "#cfe2f3")
    projected = len(leaves) > 1 and len(block) > 0
    box(out, "concat + 1x1" if projected else "output", "#fff2cc")
    for layer in block.layers:
        face = LAYER_COLORS[layer.type]
        box(layer.index, f"{layer.index} {layer.kind}", face, "white" if layer.type in (CONV, IDENTITY, AVG_POOL) else "black")
        for p in layer.inputs:
            arrow(p, layer.index)
    for v in leaves:
        arrow(v, out, dashed=True)
    xs, ys = zip(*pos.values())
    ax.set_xlim(min(xs) - _W / 2 - 0.3, max(xs) + _W / 2 + 0.3)
    ax.set_ylim(min(ys) - _H / 2 - 0.4, max(ys) + _H / 2 + 0.4)
    ax.set_aspect("equal")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)


def block_figure(blocks: Block | Sequence[Block], titles: Sequence[str] | None = None, *, dpi: int = 100) -> Figure:
    """A figure of one block, or of several side by side (``titles``: one per block). Has an Agg canvas."""
    blocks = [blocks] if isinstance(blocks, Block) else list(blocks)
    if not blocks or not all(isinstance(b, Block) for b in blocks):
        raise ConfigError("blocks: expected a Block or a non-empty list of Blocks")
    if titles is not None and (isinstance(titles, str) or len(titles) != len(blocks)):
        raise ConfigError(f"titles: expected {len(blocks)} titles (one per block), got {titles!r}")
    sizes = [_size(b) for b in blocks]
    height = max(h for _, h in sizes) * _INCH + 0.4
    width = sum(w for w, _ in sizes) * _INCH + 0.3 * len(blocks)
    fig = Figure(figsize=(width, height), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    left = 0.15
    for i, (b, (w, _)) in enumerate(zip(blocks, sizes)):
        ax = fig.add_axes(((left) / width, 0.02, w * _INCH / width, 0.96 - 0.3 / height))
        draw_block(ax, b, title=None if titles is None else titles[i])
        left += w * _INCH + 0.3
    return fig


def block_image(block: Block, *, dpi: int = 80) -> np.ndarray:
    """:func:`block_figure` rendered to an RGB ``uint8`` array ``[H, W, 3]`` (``render_mode="rgb_array"``)."""
    fig = block_figure(block, dpi=dpi)
    fig.canvas.draw()
    return np.ascontiguousarray(np.asarray(fig.canvas.buffer_rgba())[..., :3], dtype=np.uint8)


def save_block_png(path: str | os.PathLike, blocks: Block | Sequence[Block], titles: Sequence[str] | None = None,
                   *, dpi: int = 120) -> Path:  # fmt: skip
    """Save :func:`block_figure` as a PNG at ``path`` (parent folders are created); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    block_figure(blocks, titles, dpi=dpi).savefig(out, format="png", dpi=dpi, facecolor="white")
    return out
