"""Tests for nat_gym.rules: the published tables, masks, apply, the published transformations and the cost
property of every rule set."""

from __future__ import annotations

import numpy as np
import pytest

from nat_gym import genotypes, rules
from nat_gym.cost import op_cost
from nat_gym.errors import InvalidOpError, NatGymError, TransitionError
from nat_gym.genotype import Cell, Genotype
from nat_gym.ops import OPS, op_spec
from nat_gym.rules import NAT, NAT_EXTENDED, NAT_PLUS_PLUS, NAT_PLUS_PLUS_EXTENDED, TransitionRules

# The published NAT++ table (transitions.json["nat++"] of the NAT spec), copied verbatim.
PUBLISHED_OPS = [
    "max_pool_3x3", "max_pool_5x5", "avg_pool_3x3", "avg_pool_5x5", "skip_connect", "sep_conv_3x3",
    "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5", "conv_1x1", "conv_3x3", "conv_5x5", "null",
]  # fmt: skip
PUBLISHED_ALLOWED = {
    "conv_5x5": [
        "conv_5x5", "conv_3x3", "conv_1x1", "sep_conv_5x5", "sep_conv_3x3", "dil_conv_5x5", "dil_conv_3x3",
        "max_pool_5x5", "max_pool_3x3", "avg_pool_5x5", "avg_pool_3x3", "skip_connect", "null",
    ],
    "conv_3x3": [
        "conv_3x3", "conv_1x1", "sep_conv_3x3", "dil_conv_3x3", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
        "null",
    ],
    "conv_1x1": ["conv_1x1", "skip_connect", "null"],
    "sep_conv_5x5": [
        "sep_conv_5x5", "sep_conv_3x3", "dil_conv_5x5", "dil_conv_3x3", "max_pool_5x5", "max_pool_3x3",
        "avg_pool_5x5", "avg_pool_3x3", "skip_connect", "null",
    ],
    "sep_conv_3x3": ["sep_conv_3x3", "dil_conv_3x3", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "null"],
    "dil_conv_5x5": [
        "dil_conv_5x5", "dil_conv_3x3", "max_pool_5x5", "max_pool_3x3", "avg_pool_5x5", "avg_pool_3x3",
        "skip_connect", "null",
    ],
    "dil_conv_3x3": ["dil_conv_3x3", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "null"],
    "avg_pool_5x5": ["avg_pool_5x5", "avg_pool_3x3", "max_pool_5x5", "max_pool_3x3", "skip_connect", "null"],
    "avg_pool_3x3": ["avg_pool_3x3", "max_pool_3x3", "skip_connect", "null"],
    "max_pool_5x5": ["max_pool_5x5", "max_pool_3x3", "avg_pool_5x5", "avg_pool_3x3", "skip_connect", "null"],
    "max_pool_3x3": ["max_pool_3x3", "avg_pool_3x3", "skip_connect", "null"],
    "skip_connect": ["skip_connect", "null"],
    "null": ["skip_connect", "null"],
}  # fmt: skip

# Valid targets per source (NAT.md section 2).
PUBLISHED_COUNTS = {
    "conv_5x5": 13, "conv_3x3": 8, "conv_1x1": 3, "sep_conv_5x5": 10, "sep_conv_3x3": 6, "dil_conv_5x5": 8,
    "dil_conv_3x3": 5, "max_pool_5x5": 6, "avg_pool_5x5": 6, "max_pool_3x3": 4, "avg_pool_3x3": 4,
    "skip_connect": 2, "null": 2,
}  # fmt: skip

# NAT's two published op lists (NAT.md section 1).
NAT_FULLY_CONCAT = ["max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
                    "dil_conv_5x5", "conv_3x3", "null"]  # fmt: skip
NAT_LOOSE_END = ["max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "conv_1x1",
                 "conv_3x3", "conv_5x5", "null"]  # fmt: skip

ALL_RULES = [NAT, NAT_EXTENDED, NAT_PLUS_PLUS, NAT_PLUS_PLUS_EXTENDED]
FREE = {"skip_connect", "null"}


# ------------------------------------------------------------------------------------------------ published tables


def test_nat_plus_plus_equals_published_table() -> None:
    assert list(NAT_PLUS_PLUS.ops) == PUBLISHED_OPS
    assert NAT_PLUS_PLUS.num_ops == 13
    assert set(PUBLISHED_ALLOWED) == set(PUBLISHED_OPS)
    for src in PUBLISHED_OPS:
        assert set(NAT_PLUS_PLUS.targets(src)) == set(PUBLISHED_ALLOWED[src]), src
        assert len(PUBLISHED_ALLOWED[src]) == PUBLISHED_COUNTS[src], src
        assert len(NAT_PLUS_PLUS.targets(src)) == PUBLISHED_COUNTS[src], src
        row = NAT_PLUS_PLUS.mask_row(src)
        assert [o for o, ok in zip(PUBLISHED_OPS, row, strict=True) if ok] == list(NAT_PLUS_PLUS.targets(src))
    # the [K, K] table cell by cell
    expected = np.array([[dst in PUBLISHED_ALLOWED[src] for dst in PUBLISHED_OPS] for src in PUBLISHED_OPS])
    np.testing.assert_array_equal(NAT_PLUS_PLUS.table, expected)
    assert NAT_PLUS_PLUS.table.dtype == bool and not NAT_PLUS_PLUS.table.flags.writeable


def test_two_level_rule_reproduces_the_published_table() -> None:
    derived = rules.two_level_rule(NAT_PLUS_PLUS.ops)
    assert derived == {src: frozenset(t) for src, t in PUBLISHED_ALLOWED.items()}
    assert TransitionRules("derived", tuple(PUBLISHED_OPS), derived) == NAT_PLUS_PLUS


def test_nat_plus_plus_extended_restricts_to_nat_plus_plus() -> None:
    """On NAT++'s 13 ops the extended rule set says exactly what the published table says."""
    for src in PUBLISHED_OPS:
        assert set(NAT_PLUS_PLUS_EXTENDED.targets(src)) & set(PUBLISHED_OPS) == set(PUBLISHED_ALLOWED[src]), src
    assert set(NAT_PLUS_PLUS_EXTENDED.ops) == set(OPS)
    # documented choices: 2x2 pools may only stay a 2x2 pool (max/avg interchange), skip or null
    assert set(NAT_PLUS_PLUS_EXTENDED.targets("avg_pool_2x2")) == {"avg_pool_2x2", "max_pool_2x2", *FREE}
    assert not NAT_PLUS_PLUS_EXTENDED.is_allowed("avg_pool_2x2", "avg_pool_3x3")
    assert NAT_PLUS_PLUS_EXTENDED.is_allowed("conv_7x1_1x7", "conv_1x7_7x1")
    assert NAT_PLUS_PLUS_EXTENDED.is_allowed("conv_1x7_7x1", "sep_conv_7x7")
    assert not NAT_PLUS_PLUS_EXTENDED.is_allowed("sep_conv_7x7", "conv_1x7_7x1")  # no backward jump in type


@pytest.mark.parametrize("r", [NAT, NAT_EXTENDED], ids=lambda r: r.name)
def test_nat_masks_follow_osn(r: TransitionRules) -> None:
    for op in r.ops:
        targets = set(r.targets(op))
        if op in FREE:
            assert targets == FREE, op  # S -> {S, N}, N -> {N, S}
        else:
            assert targets == {op, *FREE}, op
    assert r.is_allowed("null", "skip_connect") and r.is_allowed("skip_connect", "null")
    assert set(r.allowed) == set(r.ops)


def test_nat_vocabulary_is_the_union_of_the_published_lists() -> None:
    assert set(NAT.ops) == set(NAT_FULLY_CONCAT) | set(NAT_LOOSE_END)
    assert NAT.num_ops == 11 and NAT.ops[-1] == "null"
    assert set(NAT_EXTENDED.ops) == set(OPS)


@pytest.mark.parametrize("r", ALL_RULES, ids=lambda r: r.name)
def test_every_mask_row_is_usable(r: TransitionRules) -> None:
    assert r.table.shape == (r.num_ops, r.num_ops)
    for op in r.ops:
        row = r.mask_row(op)
        assert row.dtype == bool and row.shape == (r.num_ops,)
        assert row.sum() >= 1, op
        assert row[r.index(op)] or row[r.index("skip_connect")] or row[r.index("null")], op
        assert row[r.index(op)], op  # every op may stay itself
        assert row[r.index("null")], op  # every op may be removed
        row[:] = False  # a copy: the rule set's table is untouched
        assert r.mask_row(op).sum() >= 1


# ------------------------------------------------------------------------------------------------ masks


@pytest.mark.parametrize(
    "name, r, edges",
    [("DARTS_V2", NAT_PLUS_PLUS, 16), ("DARTS_V2", NAT, 16), ("ENAS", NAT_PLUS_PLUS, 20), ("NASNet", NAT_PLUS_PLUS_EXTENDED, 20),
     ("NAONet", NAT_EXTENDED, 20), ("VGG", NAT_PLUS_PLUS, 16)],
)  # fmt: skip
def test_mask_of_a_genotype(name: str, r: TransitionRules, edges: int) -> None:
    g = genotypes.get(name)
    m = r.mask(g)
    assert m.shape == (edges, r.num_ops) and m.dtype == bool
    assert m.any(axis=1).all()
    for i, e in enumerate(g.edges):
        np.testing.assert_array_equal(m[i], r.mask_row(e.op))
        assert m[i, r.index(e.op)]  # staying put is always allowed for these genotypes (no null edges)
    np.testing.assert_array_equal(r.op_indices(g), [r.index(o) for o in g.ops])
    r.check(g)


def test_mask_rejects_ops_outside_the_vocabulary() -> None:
    g = genotypes.get("NASNet")
    bad = next(i for i, o in enumerate(g.ops) if o not in NAT_PLUS_PLUS.ops)
    cell, k = ("normal", bad) if bad < len(g.normal.edges) else ("reduce", bad - len(g.normal.edges))
    with pytest.raises(InvalidOpError) as info:
        NAT_PLUS_PLUS.mask(g)
    msg = str(info.value)
    assert f"{cell}.edges[{k}]" in msg and g.ops[bad] in msg and "'nat++'" in msg
    assert f"{g.edges[bad].src}->{g.edges[bad].dst}" in msg
    with pytest.raises(InvalidOpError, match="nat\\+\\+"):
        NAT_PLUS_PLUS.check(g)
    with pytest.raises(InvalidOpError, match="not in the vocabulary of rule set 'nat'"):
        NAT.targets("sep_conv_7x7")
    with pytest.raises(InvalidOpError, match="unknown operation"):
        NAT.index("sep_conv_9x9")
    assert NAT.index("none") == NAT.index("null")  # aliases


# ------------------------------------------------------------------------------------------------ transformations

EXPECTED_TRANSFORMATIONS = {
    ("NAT_DARTS", "DARTS", "nat"), ("NAT_ENAS", "ENAS", "nat"), ("NAT_MobileNetV2", "MobileNetV2", "nat"),
    ("NAT_NAONet", "NAONet", "nat"), ("NAT_R1", "R1", "nat"), ("NAT_R2", "R2", "nat"), ("NAT_R3", "R3", "nat"),
    ("NAT_R4", "R4", "nat"), ("NAT_R5", "R5", "nat"), ("NAT_ResBlock", "ResBlock", "nat"),
    ("NAT_VGG", "VGG", "nat"), ("NATv2_DARTS", "DARTS", "nat++"), ("NATv2_ENAS", "ENAS", "nat++"),
    ("NATv2_NAONet", "NAONet", "nat++"), ("NATv2_ResBlock", "ResBlock", "nat++"), ("NATv2_VGG", "VGG", "nat++"),
    ("NATv2_MobileNetV2", "MobileNetV2", "nat++"),  # NAT++'s MobileNetV2 result is NAT's (valid under both rules)
}  # fmt: skip

# The documented inconsistencies of the published data: (cell, from, to, source op, published target op).
KNOWN_INVALID = {
    "NAT_NAONet": [("reduce", 1, 2, "avg_pool_2x2", "avg_pool_3x3")],  # grows the kernel
    "NATv2_NAONet": [
        ("normal", 0, 4, "conv_1x1", "max_pool_3x3"),  # a 1x1 conv may not become a 3x3 pool (kernel grows)
        ("reduce", 0, 3, "conv_1x1", "avg_pool_3x3"),
    ],
}
EXTENDED = {"nat": "nat-ext", "nat++": "nat++ext"}


def _rules_for(t: genotypes.Transformation) -> TransitionRules:
    return rules.get(EXTENDED[t.rules] if t.source == "NAONet" else t.rules)


def test_transformations_are_listed() -> None:
    assert {tuple(t) for t in genotypes.transformations()} == EXPECTED_TRANSFORMATIONS


@pytest.mark.parametrize("t", genotypes.transformations(), ids=lambda t: t.name)
def test_published_transformations_are_valid(t: genotypes.Transformation) -> None:
    source, target = genotypes.get(t.source), genotypes.get(t.name)
    r = _rules_for(t)
    bad = r.validate_transformation(source, target)
    found = []
    for i in bad:
        e = source.edges[i]
        cell = "normal" if i < len(source.normal.edges) else "reduce"
        found.append((cell, e.src, e.dst, e.op, target.ops[i]))
    assert found == KNOWN_INVALID.get(t.name, [])
    # everything else can be reproduced by apply; the invalid edges are kept with invalid="keep"
    out = r.apply(source, target.ops, invalid="keep")
    assert [i for i, (a, b) in enumerate(zip(out.ops, target.ops, strict=True)) if a != b] == bad
    if not bad:
        assert r.apply(source, target.ops) == target
    else:
        with pytest.raises(TransitionError):
            r.apply(source, target.ops)


def test_naonet_needs_the_extended_rules() -> None:
    naonet = genotypes.get("NAONet")
    for base in (NAT, NAT_PLUS_PLUS):
        with pytest.raises(InvalidOpError):
            base.mask(naonet)
    assert NAT_EXTENDED.mask(naonet).shape == (20, 19)


def test_validate_transformation_requires_the_same_graph() -> None:
    g = genotypes.get("DARTS_V2")
    other = genotypes.get("DARTS_V1")
    with pytest.raises(TransitionError, match="keeps the graph"):
        NAT.validate_transformation(g, other)
    with pytest.raises(TransitionError, match="keeps the graph"):
        NAT.validate_transformation(g, Genotype(Cell(g.normal.edges, [2, 3]), g.reduce))


def test_validate_transformation_checks_the_reduce_concat_too() -> None:
    """BUG: validate_transformation compares only the normal cell's concat; a target whose reduction cell
    concatenates other nodes is a different graph and must be rejected too."""
    g = genotypes.get("DARTS_V2")
    with pytest.raises(TransitionError, match="keeps the graph"):
        NAT.validate_transformation(g, Genotype(g.normal, Cell(g.reduce.edges, [2, 3])))


# ------------------------------------------------------------------------------------------------ apply


def test_apply_valid_transition() -> None:
    darts, v2 = genotypes.get("DARTS"), genotypes.get("NATv2_DARTS")
    assert NAT_PLUS_PLUS.apply(darts, v2.ops) == v2
    idx = [NAT_PLUS_PLUS.index(o) for o in v2.ops]
    assert NAT_PLUS_PLUS.apply(darts, idx) == v2
    assert NAT_PLUS_PLUS.apply(darts, np.array(idx, dtype=np.int64)) == v2
    assert NAT_PLUS_PLUS.apply(darts, [np.int32(i) for i in idx]) == v2
    assert NAT_PLUS_PLUS.apply(darts, darts.ops) == darts  # the identity is always valid here
    assert NAT_PLUS_PLUS.invalid_edges(darts, v2.ops) == []
    assert NAT.apply(genotypes.get("VGG"), genotypes.get("NAT_VGG").ops) == genotypes.get("NAT_VGG")


def test_apply_invalid_transition() -> None:
    darts = genotypes.get("DARTS_V2")
    new = list(darts.ops)
    new[3] = "conv_3x3"  # sep_conv_3x3 -> conv_3x3: not allowed (a full conv is more expensive)
    new[10] = "sep_conv_3x3"  # reduce.edges[2]: skip_connect -> sep_conv_3x3: not allowed
    with pytest.raises(TransitionError) as info:
        NAT_PLUS_PLUS.apply(darts, new)
    msg = str(info.value)
    assert "new_ops[3]" in msg and "normal.edges[3]" in msg and "1->3" in msg
    assert "'sep_conv_3x3' -> 'conv_3x3'" in msg and "'nat++'" in msg
    assert str(list(NAT_PLUS_PLUS.targets("sep_conv_3x3"))) in msg
    assert "2 invalid edges" in msg
    assert NAT_PLUS_PLUS.invalid_edges(darts, new) == [3, 10]
    kept = NAT_PLUS_PLUS.apply(darts, new, invalid="keep")
    assert kept == darts
    new[0] = "skip_connect"
    kept = NAT_PLUS_PLUS.apply(darts, new, invalid="keep")
    assert kept.ops == ("skip_connect",) + darts.ops[1:]
    with pytest.raises(TransitionError, match="'raise' or 'keep'"):
        NAT_PLUS_PLUS.apply(darts, darts.ops, invalid="ignore")
    # the reduction cell's edge is named as such
    only_reduce = list(darts.ops)
    only_reduce[10] = "dil_conv_3x3"
    with pytest.raises(TransitionError, match=r"new_ops\[10\] \(reduce.edges\[2\], edge 2->3\)"):
        NAT_PLUS_PLUS.apply(darts, only_reduce)


@pytest.mark.parametrize("n", [0, 15, 17])
def test_apply_wrong_length(n: int) -> None:
    darts = genotypes.get("DARTS_V2")
    with pytest.raises(TransitionError, match="expected 16 ops"):
        NAT_PLUS_PLUS.apply(darts, ["null"] * n)
    with pytest.raises(TransitionError, match="expected 16 ops"):
        NAT_PLUS_PLUS.invalid_edges(darts, [0] * n)


def test_apply_bad_entries() -> None:
    darts = genotypes.get("DARTS_V2")
    with pytest.raises(TransitionError, match="expected 16 ops"):
        NAT_PLUS_PLUS.apply(darts, "null" * 4)
    with pytest.raises(TransitionError, match=r"new_ops\[0\]: index 13 out of range; allowed: 0..12"):
        NAT_PLUS_PLUS.apply(darts, [13] + [0] * 15)
    with pytest.raises(TransitionError, match="out of range"):
        NAT_PLUS_PLUS.apply(darts, [-1] + [0] * 15)
    with pytest.raises(InvalidOpError, match="unknown operation"):
        NAT_PLUS_PLUS.apply(darts, ["conv_9x9"] * 16)
    with pytest.raises(InvalidOpError):
        NAT_PLUS_PLUS.apply(darts, [True] * 16)  # bools are not indices


@pytest.mark.parametrize(
    "bad",
    [np.zeros((16, 2), dtype=np.int64), [["conv_3x3"]] * 16, [{"op": "null"}] * 16],
    ids=["2d-array", "nested-lists", "dicts"],
)
def test_apply_malformed_action_raises_a_nat_gym_error(bad) -> None:
    """BUG: TransitionRules.index() looks the op up in a dict before validating it, so an unhashable entry
    (a row of a 2-D action array, a list) escapes as a bare TypeError instead of a NatGymError/ValueError."""
    darts = genotypes.get("DARTS_V2")
    with pytest.raises(NatGymError) as info:
        NAT_PLUS_PLUS.apply(darts, bad)
    assert isinstance(info.value, ValueError)


# ------------------------------------------------------------------------------------------------ from_dict / get


def test_from_dict_nat_with_wildcards_equals_nat() -> None:
    data = {
        "ops": list(NAT.ops),
        "allowed": {"*": ["same", "skip_connect", "null"], "skip_connect": ["skip_connect", "null"],
                    "null": ["null", "skip_connect"]},
    }  # fmt: skip
    r = TransitionRules.from_dict(data)
    assert r == NAT and hash(r) == hash(NAT)
    assert r.name == "custom"
    assert TransitionRules.from_dict(data, name="mine").name == "mine"
    # the spelling 'none' is accepted for null
    data["allowed"] = {"*": ["same", "skip_connect", "none"], "skip_connect": ["skip_connect", "none"],
                       "none": ["none", "skip_connect"]}  # fmt: skip
    assert TransitionRules.from_dict(data) == NAT
    assert rules.get(data) == NAT
    assert r != NAT_EXTENDED and r != NAT_PLUS_PLUS


@pytest.mark.parametrize("r", ALL_RULES, ids=lambda r: r.name)
def test_to_dict_round_trip(r: TransitionRules) -> None:
    d = r.to_dict()
    back = TransitionRules.from_dict(d)
    assert back == r and back.name == r.name and back.description == r.description
    assert back.ops == r.ops
    np.testing.assert_array_equal(back.table, r.table)
    assert d["ops"] == list(r.ops) and set(d["allowed"]) == set(r.ops)


@pytest.mark.parametrize(
    "data, exc, fields",
    [
        ({"ops": ["conv_3x3", "null"], "allowed": {"conv_3x3": ["skip_connect"], "null": ["null"]}},
         TransitionError, ["allowed['conv_3x3']", "skip_connect", "vocabulary"]),
        ({"ops": ["conv_3x3", "null"], "allowed": {"conv_3x3": [], "null": ["null"]}},
         TransitionError, ["allowed['conv_3x3']", "at least one"]),
        ({"ops": ["conv_3x3", "null"], "allowed": {"conv_3x3": ["conv_9x9"], "null": ["null"]}},
         InvalidOpError, ["conv_9x9", "allowed"]),
        ({"ops": ["conv_3x3", "conv_9x9"], "allowed": {"*": ["same"]}}, InvalidOpError, ["conv_9x9", "allowed"]),
        ({"ops": ["conv_3x3", "null"], "allowed": {"*": ["same"], "bogus_op": ["null"]}},
         InvalidOpError, ["bogus_op"]),
        ({"ops": ["conv_3x3", "null"], "allowed": {"null": ["null"]}},
         TransitionError, ["conv_3x3", "no entry", "'*'"]),
        ({"ops": ["conv_3x3", "null"], "allowed": {"*": ["same"], "sep_conv_3x3": ["null"]}},
         TransitionError, ["sep_conv_3x3", "not in ops"]),
        ({"ops": ["conv_3x3", "null"]}, TransitionError, ["'ops'", "'allowed'"]),
        ({"allowed": {}}, TransitionError, ["'ops'", "'allowed'"]),
        ({"ops": ["conv_3x3", "null"], "allowed": ["null"]}, TransitionError, ["allowed", "mapping"]),
        ({"ops": ["conv_3x3", "null"], "allowed": {"*": "null"}}, TransitionError, ["allowed['conv_3x3']", "list"]),
        ({"ops": [], "allowed": {}}, InvalidOpError, ["empty"]),
        ({"ops": ["null", "none"], "allowed": {"*": ["same"]}}, InvalidOpError, ["duplicate", "null"]),
    ],
)
def test_from_dict_errors(data, exc, fields) -> None:
    with pytest.raises(exc) as info:
        TransitionRules.from_dict(data)
    assert isinstance(info.value, ValueError)
    for f in fields:
        assert f in str(info.value), (f, str(info.value))


def test_constructor_errors() -> None:
    with pytest.raises(TransitionError, match="no entry for op 'null'"):
        TransitionRules("x", ("conv_3x3", "null"), {"conv_3x3": frozenset({"null"})})
    with pytest.raises(TransitionError, match="not in the vocabulary"):
        TransitionRules("x", ("null",), {"null": frozenset({"null"}), "conv_3x3": frozenset({"null"})})


def test_get_by_name_and_alias() -> None:
    for name, r in (("nat", NAT), ("nat-ext", NAT_EXTENDED), ("nat++", NAT_PLUS_PLUS),
                    ("nat++ext", NAT_PLUS_PLUS_EXTENDED)):  # fmt: skip
        assert rules.get(name) is r
        assert rules.get(name.upper()) is r
        assert r.name == name
    for alias, r in (("natpp", NAT_PLUS_PLUS), ("nat_plus_plus", NAT_PLUS_PLUS), ("NATPP", NAT_PLUS_PLUS),
                     ("nat++-ext", NAT_PLUS_PLUS_EXTENDED), ("natppext", NAT_PLUS_PLUS_EXTENDED),
                     ("natext", NAT_EXTENDED)):  # fmt: skip
        assert rules.get(alias) is r, alias
    assert rules.get(NAT) is NAT
    assert rules.names() == ("nat", "nat-ext", "nat++", "nat++ext")
    with pytest.raises(TransitionError) as info:
        rules.get("bogus")
    assert isinstance(info.value, ValueError)
    assert "'bogus'" in str(info.value)
    for n in rules.names():
        assert n in str(info.value)


def test_format_table() -> None:
    text = NAT_PLUS_PLUS.format_table()
    lines = text.splitlines()
    assert lines[0].startswith("nat++")
    rows = [ln for ln in lines if ln.endswith("targets)")]
    assert len(rows) == 13
    for ln in rows:
        op = ln.split()[0]
        assert ln.endswith(f"({PUBLISHED_COUNTS[op]} targets)")
        assert ln.count("x") - op.count("x") == PUBLISHED_COUNTS[op]


# ------------------------------------------------------------------------------------------------ cost property

NULL_TO_SKIP = {("null", "skip_connect")}
STRIDE2_EXCEPTIONS_KINDS = {("max_pool", "skip"), ("avg_pool", "skip"), ("null", "skip")}


def _violations(r: TransitionRules, C: int, size: int, stride: int) -> set[tuple[str, str]]:
    out = set()
    for src in r.ops:
        a = op_cost(src, C, size, stride, affine=True)
        for dst in r.targets(src):
            b = op_cost(dst, C, size, stride, affine=True)
            if b.params > a.params or b.madds > a.madds:
                out.add((src, dst))
    return out


@pytest.mark.parametrize("r", ALL_RULES, ids=lambda r: r.name)
def test_allowed_transitions_never_cost_more_at_stride_1(r: TransitionRules) -> None:
    channels = (16, 36, 128) + ((8, 3) if r is NAT_PLUS_PLUS else ()) + ((9,) if r is NAT_PLUS_PLUS_EXTENDED else ())
    for C in channels:
        for size in (8, 32):
            assert _violations(r, C, size, 1) - NULL_TO_SKIP == set(), (C, size)


@pytest.mark.parametrize("r", ALL_RULES, ids=lambda r: r.name)
def test_stride_2_exceptions_are_only_skip_as_factorized_reduce(r: TransitionRules) -> None:
    expected = {(o, "skip_connect") for o in r.ops if op_spec(o).is_pool} | {("null", "skip_connect")}
    for C in (16, 36, 128):
        for size in (8, 32):
            found = _violations(r, C, size, 2)
            kinds = {(op_spec(s).kind, op_spec(d).kind) for s, d in found}
            assert kinds <= STRIDE2_EXCEPTIONS_KINDS, (C, size, found)
            assert found == expected, (C, size)


def test_extended_threshold_at_c8() -> None:
    """Documented: nat++ext holds for C >= 9; at C = 8, a 7-long factorized conv -> sep_conv_7x7 costs more."""
    fac7_to_sep7 = {(o, "sep_conv_7x7") for o in NAT_PLUS_PLUS_EXTENDED.ops
                    if op_spec(o).kind == "fac_conv" and op_spec(o).kernel == 7}  # fmt: skip
    assert fac7_to_sep7 == {("conv_1x7_7x1", "sep_conv_7x7"), ("conv_7x1_1x7", "sep_conv_7x7")}
    for size in (8, 32):
        assert _violations(NAT_PLUS_PLUS_EXTENDED, 8, size, 1) - NULL_TO_SKIP == fac7_to_sep7
        assert _violations(NAT_PLUS_PLUS_EXTENDED, 9, size, 1) - NULL_TO_SKIP == set()
    # the binding pair's formula from the docstring: 14 C^2 (+ BN) vs 2 C^2 + 98 C (+ BN)
    for C in (8, 9):
        fac = op_cost("conv_1x7_7x1", C, 8, 1).params - 2 * C
        sep = op_cost("sep_conv_7x7", C, 8, 1).params - 4 * C
        assert fac == 14 * C * C and sep == 2 * C * C + 98 * C
