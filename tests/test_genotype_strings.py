"""Genotype strings as other projects write them: the NAT / NAT++ reference ``genotypes.py`` files ((op, from, to)
triples, ``range`` concats, loose-end ``normal_concat=[5]``), DARTS's positional namedtuple form, and fuzzing of
:func:`nat_gym.genotypes.resolve` (only :class:`GenotypeError` may escape it)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nat_gym import genotypes
from nat_gym.cli import main
from nat_gym.errors import GenotypeError
from nat_gym.genotype import Cell, Genotype

TRANSFORMED = [t.name for t in genotypes.transformations()]

# Copied by hand from the NAT++ reference genotypes.py (guoyongcs/NATv2): NATv2_DARTS, with its NAME = prefix.
NATV2_DARTS = """NATv2_DARTS = Genotype(
    normal=[('sep_conv_3x3', 0, 2), ('sep_conv_3x3', 1, 2), ('null', 0, 3), ('skip_connect', 1, 3), ('dil_conv_3x3', 1, 4), ('skip_connect', 0, 4), ('skip_connect', 0, 5), ('dil_conv_3x3', 2, 5)], normal_concat=[2, 3, 4, 5],
    reduce=[('avg_pool_3x3', 0, 2), ('max_pool_3x3', 1, 2), ('skip_connect', 2, 3), ('skip_connect', 1, 3), ('avg_pool_3x3', 0, 4), ('skip_connect', 2, 4), ('skip_connect', 2, 5), ('max_pool_3x3', 1, 5)], reduce_concat=[2, 3, 4, 5])"""  # noqa: E501

# The NAT reference genotypes.py (guoyongcs/NAT): range concats, and loose-end concats written [5] over two lines.
NAT_R1 = "Genotype(normal=[('skip_connect', 1, 2), ('dil_conv_5x5', 1, 2), ('null', 1, 3), ('dil_conv_5x5', 2, 3), ('sep_conv_3x3', 0, 4), ('sep_conv_3x3', 3, 4), ('skip_connect', 1, 5), ('max_pool_3x3', 0, 5)], normal_concat=range(2, 6), reduce=[('sep_conv_5x5', 0, 2), ('max_pool_3x3', 0, 2), ('skip_connect', 0, 3), ('sep_conv_3x3', 0, 3), ('skip_connect', 0, 4), ('skip_connect', 2, 4), ('skip_connect', 2, 5), ('conv_3x3', 3, 5)], reduce_concat=range(2, 6))"  # noqa: E501
NAT_VGG = """Genotype(
    normal=[('skip_connect', 0, 2), ('skip_connect', 1, 2), ('null', 0, 3), ('conv_3x3', 2, 3), ('null', 0, 4), ('conv_3x3', 3, 4), ('skip_connect', 0, 5), ('skip_connect', 4, 5)],
    normal_concat=[5],
    reduce=[('skip_connect', 0, 2), ('skip_connect', 1, 2), ('null', 0, 3), ('conv_3x3', 2, 3), ('null', 0, 4),
            ('conv_3x3', 3, 4), ('skip_connect', 0, 5), ('skip_connect', 4, 5)],
    reduce_concat=[5])"""  # noqa: E501
NATV2_ENAS = """NATv2_ENAS = Genotype(
    normal=[('sep_conv_3x3', 1, 2), ('null', 1, 2), ('skip_connect', 0, 3), ('sep_conv_5x5', 1, 3), ('avg_pool_3x3', 0, 4), ('sep_conv_3x3', 1, 4), ('sep_conv_3x3', 0, 5), ('avg_pool_3x3', 1, 5), ('skip_connect', 0, 6), ('sep_conv_3x3', 1, 6)], normal_concat=[2, 3, 4, 5, 6],
    reduce=[('sep_conv_3x3', 0, 2), ('avg_pool_3x3', 1, 2), ('sep_conv_3x3', 1, 3), ('avg_pool_3x3', 1, 3), ('avg_pool_3x3', 1, 4), ('avg_pool_3x3', 1, 4), ('avg_pool_3x3', 1, 5), ('sep_conv_5x5', 4, 5), ('sep_conv_5x5', 0, 6), ('max_pool_3x3', 5, 6)], reduce_concat=[2, 3, 6])"""  # noqa: E501
NATV2_MOBILENETV2 = """NATv2_MobileNetv2 = Genotype(
    normal=[('null', 0, 2), ('conv_1x1', 1, 2), ('null', 0, 3), ('sep_conv_3x3', 2, 3), ('skip_connect', 0, 4), ('conv_1x1', 3, 4), ('skip_connect', 1, 5), ('skip_connect', 4, 5)], normal_concat=[5],
    reduce=[('null', 0, 2), ('skip_connect', 1, 2), ('skip_connect', 0, 3), ('sep_conv_3x3', 2, 3), ('null', 0, 4), ('conv_1x1', 3, 4), ('null', 0, 5), ('skip_connect', 4, 5)], reduce_concat=[5])"""  # noqa: E501

# DARTS_V2 as a positional DARTS namedtuple (what print(genotype._replace(...)) users paste, fields in DARTS's order).
DARTS_V2_POSITIONAL = (
    "Genotype([('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], [2, 3, 4, 5], "
    "[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), "
    "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], [2, 3, 4, 5])"
)

LITERALS = {
    "NATv2_DARTS": NATV2_DARTS, "NAT_R1": NAT_R1, "NAT_VGG": NAT_VGG, "NATv2_ENAS": NATV2_ENAS,
    "NATv2_MobileNetV2": NATV2_MOBILENETV2, "DARTS_V2": DARTS_V2_POSITIONAL,
}  # fmt: skip


def _triples(cell: Cell) -> str:
    return "[" + ", ".join(f"({e.op!r}, {e.src}, {e.dst})" for e in cell.edges) + "]"


def _pairs(cell: Cell) -> str:
    return "[" + ", ".join(f"({e.op!r}, {e.src})" for e in cell.edges) + "]"


def _concat(cell: Cell, use_range: bool) -> str:
    if use_range and cell.concat == tuple(range(2, cell.steps + 2)):
        return f"range(2, {cell.steps + 2})"
    return str(list(cell.concat))


def reference_style(name: str, g: Genotype, use_range: bool) -> str:
    """``g`` written as the NAT / NAT++ reference genotypes.py files write it."""
    return (
        f"{name} = Genotype(\n    normal={_triples(g.normal)}, normal_concat={_concat(g.normal, use_range)},\n"
        f"    reduce={_triples(g.reduce)}, reduce_concat={_concat(g.reduce, use_range)})"
    )


@pytest.mark.parametrize("name", genotypes.names())  # the 17 NAT_* / NATv2_* and the inputs they transform
@pytest.mark.parametrize("use_range", [True, False], ids=["range-concat", "list-concat"])
def test_every_registered_genotype_parses_in_the_nat_reference_style(name: str, use_range: bool) -> None:
    g = genotypes.get(name)
    text = reference_style(name, g, use_range)
    assert genotypes.resolve(text) == g
    assert genotypes.resolve(text.split(" = ", 1)[1]) == g  # without the NAME = prefix
    assert Genotype.from_darts(text) == g


def test_all_published_transformations_are_covered() -> None:
    prefixes = [n.split("_", 1)[0] for n in TRANSFORMED]
    assert (prefixes.count("NAT"), prefixes.count("NATv2")) == (11, 6)  # NAT: 6 cells + R1..R5; NAT++: 6 cells
    assert "NATv2_MobileNetV2" in TRANSFORMED


@pytest.mark.parametrize("name", genotypes.names())
def test_every_registered_genotype_parses_in_the_positional_darts_form(name: str) -> None:
    g = genotypes.get(name)
    text = f"Genotype({_pairs(g.normal)}, {list(g.normal.concat)}, {_pairs(g.reduce)}, {list(g.reduce.concat)})"
    assert genotypes.resolve(text) == g
    mixed = f"Genotype({_pairs(g.normal)}, {list(g.normal.concat)}, reduce={_triples(g.reduce)}, reduce_concat=" \
            f"{_concat(g.reduce, True)})"  # fmt: skip
    assert genotypes.resolve(mixed) == g


@pytest.mark.parametrize("name", list(LITERALS))
def test_literal_strings_copied_from_reference_files(name: str) -> None:
    assert genotypes.resolve(LITERALS[name]) == genotypes.get(name)


def test_natv2_mobilenetv2_is_registered_as_nat_mobilenetv2() -> None:
    assert genotypes.get("NATv2_MobileNetV2") == genotypes.get("NAT_MobileNetV2")
    assert genotypes.get("natv2_mobilenetv2") == genotypes.get("NATv2_MobileNetV2")
    assert ("NATv2_MobileNetV2", "MobileNetV2", "nat++") in genotypes.transformations()


def test_loose_end_concat_is_kept() -> None:
    g = genotypes.resolve(NAT_VGG)
    assert g.normal.concat == (5,) and g.reduce.concat == (5,)
    assert genotypes.resolve(NATV2_ENAS).reduce.concat == (2, 3, 6)


@pytest.mark.parametrize("name", ["NATv2_DARTS", "NAT_VGG", "DARTS_V2"])
def test_nat_gym_info_reads_reference_strings(name: str, capsys) -> None:
    assert main(["info", LITERALS[name], "--json"]) == 0
    out = capsys.readouterr().out
    assert f'"string": "{genotypes.get(name)}"' in out


@pytest.mark.parametrize("name", genotypes.names())
def test_every_registered_genotype_parses_grouped_per_node(name: str) -> None:
    """pt.darts writes each node's inputs as a list of pairs, AutoDL (D-X-Y) as a tuple of pairs; both were read as
    pairs whose "op" was a tuple (issue 8 review)."""
    g = genotypes.get(name)

    def grouped(cell: Cell, group=list) -> str:
        pairs = cell.to_pairs()
        return str([group(pairs[i : i + 2]) for i in range(0, len(pairs), 2)])

    pt_darts = (f"Genotype(normal={grouped(g.normal)}, normal_concat={_concat(g.normal, True)}, "
                f"reduce={grouped(g.reduce)}, reduce_concat={_concat(g.reduce, True)})")  # fmt: skip
    assert genotypes.resolve(pt_darts) == g
    autodl = f"Genotype(normal={grouped(g.normal, tuple)}, normal_concat={list(g.normal.concat)}, " \
             f"reduce={grouped(g.reduce, tuple)}, reduce_concat={list(g.reduce.concat)})"  # fmt: skip
    assert genotypes.resolve(autodl) == g


@pytest.mark.parametrize("spelling", [
    "Genotype (normal={n}, normal_concat=[2, 3, 4, 5], reduce={r}, reduce_concat=[2, 3, 4, 5])",  # space before (
    "DARTS_V2: Genotype = Genotype(normal={n}, reduce={r})",  # an annotated assignment
    "  DARTS_V2\n",  # a name pasted with spaces and a newline
])  # fmt: skip
def test_more_spellings_of_darts_v2(spelling: str) -> None:
    g = genotypes.get("DARTS_V2")
    assert genotypes.resolve(spelling.format(n=_pairs(g.normal), r=_pairs(g.reduce))) == g


@pytest.mark.parametrize(
    "text, fields",
    [
        ("Genotype([('sep_conv_3x3', 0)] * 8, [2, 3, 4, 5], [], [2])", ["BinOp", "Genotype("]),
        ("Genotype(normal=[], normal_concat=[2], reduce=[], reduce_concat=[2], extra=1)", ["'extra'"]),
        ("Genotype([], [2], [], [2], [3])", ["5 positional", "4"]),
        ("Genotype([], [2], normal=[])", ["'normal' given twice"]),
        ("Genotype(**fields)", ["'**'"]),
        ("Genotype(normal=[('skip_connect', 0, 2), ('skip_connect', 1)], reduce=[])", ["normal[1]", "triple"]),
        ("Genotype(normal=[], normal_concat=range(2, 6, 0), reduce=[])", ["range(2, 6, 0)"]),
        ("Genotype(normal=[], normal_concat=range(0, 1000000000), reduce=[])", ["range() needs"]),
        ("x = 1; Genotype()", ["single Genotype(...) call"]),
        ("Genotype(normal=[('sep_conv_3x3', 0)", ["not Python syntax", "(op, from, to) triples"]),
        ("Genotype(normal=[[('sep_conv_3x3', 0, 2), ('skip_connect', 1)]], reduce=[])", ["normal[0]", "group"]),
    ],
)
def test_unreadable_genotype_strings_name_the_problem(text: str, fields: list[str]) -> None:
    with pytest.raises(GenotypeError) as info:
        genotypes.resolve(text)
    assert "AssertionError" not in str(info.value)
    for f in fields:
        assert f in str(info.value), (f, str(info.value))


def test_unknown_text_names_the_accepted_forms() -> None:
    with pytest.raises(GenotypeError) as info:
        genotypes.resolve("DARTS_V3")
    msg = str(info.value)
    assert "'DARTS_V3'" in msg and "DARTS_V2" in msg  # the registered names
    for form in ("JSON file", "normal=op:from:to", "Genotype(normal=[...]", "(op, from, to) triples", "range(a, b)"):
        assert form in msg, form


# ------------------------------------------------------------------------------------------------ fuzzing
_pieces = st.sampled_from([
    "Genotype(", "NAT_X = ", ")", "(", "[", "]", ", ", "'sep_conv_3x3'", "'null'", "'none'", "0", "1", "2", "5", "-1",
    "normal=", "reduce=", "normal_concat=", "reduce_concat=", "range(2, 6)", "range(", "**", "*", "=", "\n", "'",
    "1e400", "9" * 40, "lambda: 0", "__import__('os')", "{", "}", "normal=", "|reduce=", ";concat=", ":", "/", ".json",
])  # fmt: skip


def _only_genotype_error(text: str) -> None:
    try:
        out = genotypes.resolve(text)
    except GenotypeError:
        return
    assert isinstance(out, Genotype)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=300) | st.lists(_pieces, max_size=40).map("".join))
def test_fuzz_resolve_raises_only_genotype_error(text: str) -> None:
    _only_genotype_error(text)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(TRANSFORMED), use_range=st.booleans(), data=st.data())
def test_fuzz_mutated_reference_strings(name: str, use_range: bool, data) -> None:
    text = reference_style(name, genotypes.get(name), use_range)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text)))
        piece = data.draw(_pieces | st.characters())
        kind = data.draw(st.sampled_from(["delete", "insert", "replace"]))
        text = text[:i] + ("" if kind == "delete" else piece) + text[i + (0 if kind == "insert" else 1):]
    _only_genotype_error(text)
