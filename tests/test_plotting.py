"""Tests of nat_gym.plotting: genotype pictures (RGB arrays, PNG files) and learning-curve plots."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nat_gym import genotypes
from nat_gym.errors import ConfigError
from nat_gym.genotype import Cell, Genotype
from nat_gym.plotting import (
    KIND_COLORS,
    draw_cell,
    genotype_figure,
    genotype_image,
    plot_learning_curves,
    save_genotype_png,
    short_op_label,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RED = np.array([0xD6, 0x27, 0x28])  # the highlight colour of changed edges


def _distinct_colours(img: np.ndarray) -> int:
    return len(np.unique(img.reshape(-1, 3), axis=0))


def _red_pixels(img: np.ndarray) -> int:
    return int((np.abs(img.astype(int) - RED).sum(axis=-1) < 40).sum())


def _assert_picture(img: np.ndarray) -> None:
    assert isinstance(img, np.ndarray)
    assert img.dtype == np.uint8
    assert img.ndim == 3 and img.shape[2] == 3
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert _distinct_colours(img) > 20  # nodes, op colours, anti-aliasing: far from blank
    assert (img == 255).all(axis=-1).mean() > 0.5  # mostly white background


# ---------------------------------------------------------------------------------------------- labels
@pytest.mark.parametrize(
    "op, label",
    [
        ("sep_conv_3x3", "sep3"),
        ("sep_conv_5x5", "sep5"),
        ("dil_conv_5x5", "dil5"),
        ("conv_3x3", "conv3"),
        ("conv_1x1", "conv1"),
        ("max_pool_3x3", "max3"),
        ("avg_pool_3x3", "avg3"),
        ("skip_connect", "skip"),
        ("null", "null"),
        ("none", "null"),
        ("conv_1x7_7x1", "fac7"),
        ("conv_7x1_1x7", "fac7h"),
    ],
)
def test_short_op_label(op: str, label: str) -> None:
    assert short_op_label(op) == label


def test_every_op_kind_has_a_colour() -> None:
    from nat_gym.ops import OPS

    assert {spec.kind for spec in OPS.values()} <= set(KIND_COLORS)
    assert len(set(KIND_COLORS.values())) == len(KIND_COLORS)


# ---------------------------------------------------------------------------------------------- images
@pytest.mark.parametrize("name", ["DARTS_V2", "ENAS", "R2"])
def test_genotype_image_single(name: str) -> None:
    img = genotype_image(genotypes.get(name))
    _assert_picture(img)
    assert _red_pixels(img) == 0  # nothing is highlighted without an `after`


def test_genotype_image_titles_change_the_picture() -> None:
    g = genotypes.get("DARTS_V2")
    assert not np.array_equal(genotype_image(g), genotype_image(g, title="DARTS_V2"))


def test_genotype_image_before_after_highlights_changes() -> None:
    before, after = genotypes.get("DARTS"), genotypes.get("NAT_DARTS")
    plain = genotype_image(before)
    both = genotype_image(before, after)
    _assert_picture(both)
    assert both.shape != plain.shape or not np.array_equal(both, plain)
    assert both.shape[0] > plain.shape[0]  # two rows of panels
    assert _red_pixels(both) > 50  # changed edges get red labels
    assert _red_pixels(plain) == 0


def test_genotype_image_of_a_fixed_size_fits_every_drawing() -> None:
    """``size=(H, W)``: one frame size whatever the drawing (1 or 2 rows, a chain like VGG or a wide cell), the
    drawing scaled to fill the frame's width or height and centred on white."""
    pairs = [(genotypes.get("DARTS_V2"), None), (genotypes.get("VGG"), genotypes.get("NAT_VGG")),
             (genotypes.get("ENAS"), genotypes.get("NATv2_ENAS")), (genotypes.get("NASNet"), None)]  # fmt: skip
    for before, after in pairs:
        img = genotype_image(before, after, size=(360, 640))
        assert img.shape == (360, 640, 3) and img.dtype == np.uint8
        _assert_picture(img)
        ink = np.argwhere((img != 255).any(axis=-1))
        (top, left), (bottom, right) = ink.min(axis=0), ink.max(axis=0)
        assert right - left > 0.8 * 640 or bottom - top > 0.8 * 360  # scaled to fit, not left small
        assert img[0].min() == 255 or img[:, 0].min() == 255  # white margins where the aspect ratio differs
    assert _red_pixels(genotype_image(*pairs[1], size=(360, 640))) > 20  # changed edges still highlighted
    for bad in [(0, 640), (360,), (360.0, 640), "360x640", (True, 640)]:
        with pytest.raises(ConfigError, match="size"):
            genotype_image(pairs[0][0], size=bad)  # type: ignore[arg-type]


def test_genotype_image_identical_after_has_no_highlight() -> None:
    g = genotypes.get("DARTS_V2")
    assert _red_pixels(genotype_image(g, g)) == 0


def test_genotype_figure_title_counts_changes() -> None:
    before, after = genotypes.get("DARTS"), genotypes.get("NAT_DARTS")
    fig = genotype_figure(before, after, title="NAT")
    text = fig.get_suptitle()
    n = sum(a.op != b.op for a, b in zip(before.edges, after.edges, strict=True))
    assert text.startswith("NAT\n")
    assert f"{n} of {before.num_edges} edges changed" in text
    assert len(fig.axes) == 4


def test_genotype_figure_different_graphs_just_shows_both() -> None:
    fig = genotype_figure(genotypes.get("DARTS_V2"), genotypes.get("R2"))
    assert "different graphs" in fig.get_suptitle()
    assert len(fig.axes) == 4
    # ENAS has 5 steps, DARTS 4: not comparable either, and must still draw
    img = genotype_image(genotypes.get("DARTS_V2"), genotypes.get("ENAS"))
    _assert_picture(img)
    assert _red_pixels(img) == 0


def test_genotype_figure_matches_swapped_inputs() -> None:
    """A node's two inputs may be listed in either order: they still compare edge by edge."""
    before = genotypes.get("DARTS_V2")
    edges = [tuple(e) for e in before.normal.edges]
    edges[4], edges[5] = edges[5], edges[4]
    edges[4] = ("conv_3x3", *edges[4][1:])  # the 0 -> 4 edge: skip_connect -> conv_3x3
    after = Genotype(Cell(edges, before.normal.concat), before.reduce)
    text = genotype_figure(before, after).get_suptitle()
    assert "1 of 16 edges changed" in text


def test_draw_cell_on_a_user_axes() -> None:
    fig = Figure(figsize=(6, 4), dpi=60)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    cell = genotypes.get("R2").normal
    draw_cell(ax, cell, title="R2 normal", changed=[0], previous_ops=["skip_connect"] * len(cell.edges))
    draw_cell(ax, cell, title="again")  # redrawing replaces the contents
    assert ax.get_title() == "again"
    canvas.draw()
    img = np.asarray(canvas.buffer_rgba())[..., :3]
    assert _distinct_colours(img) > 10
    with pytest.raises(ConfigError, match="changed"):
        draw_cell(ax, cell, changed=[99])
    with pytest.raises(ConfigError, match="previous_ops"):
        draw_cell(ax, cell, previous_ops=["skip_connect"])


def test_parallel_edges_are_drawn_apart() -> None:
    """R2 has two 2 -> 3 edges: their arcs must differ so both are visible."""
    from nat_gym.plotting import _plan

    for cell in (genotypes.get("R2").normal, genotypes.get("R2").reduce, genotypes.get("ENAS").reduce):
        plan = _plan(cell)
        seen: dict[tuple[int, int], float] = {}
        for e, rad in zip(cell.edges, plan.edge_rad, strict=True):
            key = (e.src, e.dst)
            if key in seen:
                assert abs(seen[key] - rad) >= 0.25
            seen[key] = rad


@pytest.mark.parametrize("name", genotypes.names())
def test_every_registered_genotype_draws(name: str) -> None:
    fig = genotype_figure(genotypes.get(name))
    assert len(fig.axes) == 2


# ---------------------------------------------------------------------------------------------- PNG
def test_save_genotype_png(tmp_path: Path) -> None:
    out = save_genotype_png(
        tmp_path / "sub" / "darts.png", genotypes.get("DARTS"), genotypes.get("NAT_DARTS")
    )
    assert out == tmp_path / "sub" / "darts.png"
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    img = mpimg.imread(out)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    assert img.shape[0] > 200 and img.shape[1] > 200
    # dpi scales the picture
    small = mpimg.imread(save_genotype_png(tmp_path / "small.png", genotypes.get("DARTS"), dpi=60))
    large = mpimg.imread(save_genotype_png(tmp_path / "large.png", genotypes.get("DARTS"), dpi=120))
    assert large.shape[1] > 1.8 * small.shape[1]


# ---------------------------------------------------------------------------------------------- curves
def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def two_logs(tmp_path: Path) -> tuple[Path, Path]:
    a = _write(tmp_path / "run_a.csv", "epoch,loss,acc,note\n0,2.0,0.1,x\n1,1.5,0.3,y\n2,1.1,0.5,z\n")
    b = _write(tmp_path / "run_b.csv", "epoch,loss,acc\n0,2.2,0.1\n1,1.9,\n2,1.4,0.35\n3,1.2,0.4\n")
    return a, b


def test_plot_learning_curves(tmp_path: Path, two_logs: tuple[Path, Path]) -> None:
    out = plot_learning_curves(list(two_logs), tmp_path / "plots" / "curves.png", title="runs")
    assert out == tmp_path / "plots" / "curves.png"
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    img = mpimg.imread(out)
    assert img.shape[0] > 100 and img.shape[1] > 300


def test_plot_learning_curves_options(tmp_path: Path, two_logs: tuple[Path, Path]) -> None:
    one = plot_learning_curves(str(two_logs[0]), tmp_path / "one.png", y=["acc"])
    assert one.read_bytes()[:8] == PNG_SIGNATURE
    labelled = plot_learning_curves(
        two_logs, tmp_path / "l.png", x="epoch", y=["loss", "acc"], labels=["A", "B"]
    )
    assert labelled.is_file()
    # the x column can be any numeric column
    assert plot_learning_curves(two_logs, tmp_path / "x.png", x="loss", y="acc").is_file()


def test_plot_learning_curves_missing_column(tmp_path: Path, two_logs: tuple[Path, Path]) -> None:
    with pytest.raises(ConfigError, match="'reward'") as info:
        plot_learning_curves(two_logs, tmp_path / "c.png", y=["loss", "reward"])
    assert "available columns: epoch, loss, acc" in str(info.value)
    with pytest.raises(ConfigError, match="'step'"):
        plot_learning_curves(two_logs, tmp_path / "c.png", x="step")
    with pytest.raises(ConfigError, match="'note'.*not numeric"):
        plot_learning_curves(two_logs[0], tmp_path / "c.png", y=["note"])
    assert not (tmp_path / "c.png").exists()


def test_plot_learning_curves_bad_files(tmp_path: Path, two_logs: tuple[Path, Path]) -> None:
    with pytest.raises(ConfigError, match="no such CSV file"):
        plot_learning_curves([two_logs[0], tmp_path / "missing.csv"], tmp_path / "c.png")
    with pytest.raises(ConfigError, match="empty"):
        plot_learning_curves(_write(tmp_path / "empty.csv", ""), tmp_path / "c.png")
    with pytest.raises(ConfigError, match="no data rows"):
        plot_learning_curves(_write(tmp_path / "header.csv", "epoch,loss\n"), tmp_path / "c.png")
    with pytest.raises(ConfigError, match="labels"):
        plot_learning_curves(two_logs, tmp_path / "c.png", labels=["only one"])
    with pytest.raises(ConfigError, match="no CSV file"):
        plot_learning_curves([], tmp_path / "c.png")


# ---------------------------------------------------------------------------------------------- imports
def test_import_does_not_pull_in_pyplot() -> None:
    code = (
        "import sys, matplotlib\n"
        "def snapshot():  # raw values: reading 'backend' through rcParams[...] would import pyplot\n"
        "    rc = matplotlib.rcParams\n"
        "    return {k: repr(dict.__getitem__(rc, k)) for k in rc if k != 'backend'}\n"
        "before = snapshot()\n"
        "import nat_gym.plotting as p\n"
        "from nat_gym import genotypes\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'importing nat_gym.plotting imported pyplot'\n"
        "p.genotype_image(genotypes.get('R1'), genotypes.get('NAT_R1'))\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'rendering imported pyplot'\n"
        "assert snapshot() == before, 'rcParams changed'\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
