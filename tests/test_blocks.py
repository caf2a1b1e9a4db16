"""The NSC block space: validation, canonical form and hashing, round trips, the action code and its count, named
blocks and density (Hypothesis: relabelled blocks are equal; fuzzed strings raise only BlockError)."""

from __future__ import annotations

import itertools
import json
import random

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nat_gym.blocks import Block, action_to_layer, layer_to_action, named, num_actions
from nat_gym.blocks.nsc import ADD, CONCAT, CONV, MAX_LAYERS, TERMINAL, Layer
from nat_gym.errors import BlockError

KIND_NAMES = ["conv1", "conv3", "conv5", "max1", "max3", "avg1", "avg3", "identity", "add", "concat"]


# ------------------------------------------------------------------------------------------------ strategies
@st.composite
def blocks(draw, max_layers: int = 12, kinds: list[str] | None = None) -> Block:
    """A random valid block (every layer drawn among the actions valid at its step, or among ``kinds``)."""
    n = draw(st.integers(0, max_layers))
    layers = []
    for t in range(n):
        kind = draw(st.sampled_from(kinds or KIND_NAMES))
        if kind in ("add", "concat"):
            if t == 0:
                kind = "conv3"
            else:
                p, q = draw(st.lists(st.integers(0, t), min_size=2, max_size=2, unique=True))
                layers.append(f"{kind}:{p}:{q}")
                continue
        layers.append(f"{kind}:{draw(st.integers(0, t))}")
    return Block.parse(",".join(layers) or "empty")


def relabel(block: Block, rng: random.Random) -> Block:
    """The same DAG with its layers numbered in another random topological order and add/concat inputs swapped."""
    order, done, left = [], {0}, list(range(1, len(block) + 1))
    while left:
        ready = [v for v in left if all(p in done for p in block.layers[v - 1].inputs)]
        v = rng.choice(ready)
        order.append(v)
        done.add(v)
        left.remove(v)
    new = {0: 0, **{v: i + 1 for i, v in enumerate(order)}}
    out = []
    for i, v in enumerate(order):
        layer = block.layers[v - 1]
        ins = [new[p] for p in layer.inputs]
        rng.shuffle(ins)
        out.append((i + 1, layer.type, layer.kernel, ins[0], ins[1] if layer.binary else 0))
    return Block(out)


def as_graph(block: Block) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_node(0, label=(0, 0))
    for layer in block.layers:
        g.add_node(layer.index, label=(layer.type, layer.kernel))
        for p in layer.inputs:
            g.add_edge(p, layer.index)
    return g


# ------------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    "layers, field",
    [
        ([(2, CONV, 3, 0, 0)], "layers[0].index"),
        ([(1, 9, 3, 0, 0)], "layers[0].type"),
        ([(1, CONV, 7, 0, 0)], "layers[0].kernel"),
        ([(1, 2, 5, 0, 0)], "layers[0].kernel"),  # max pooling has kernels 1 and 3
        ([(1, 4, 3, 0, 0)], "layers[0].kernel"),  # identity has no kernel
        ([(1, CONV, 3, 1, 0)], "layers[0].pred1"),  # not an earlier index
        ([(1, CONV, 3, 0, 0), (2, CONV, 3, 0, 1)], "layers[1].pred2"),  # one input: pred2 must be 0
        ([(1, CONV, 3, 0, 0), (2, ADD, 0, 1, 1)], "layers[1]"),  # two different predecessors
        ([(1, CONV, 3, 0, 0), (2, CONCAT, 0, 1, 2)], "layers[1].pred2"),
        ([(1, TERMINAL, 0, 0, 0), (2, CONV, 3, 0, 0)], "layers[0]"),  # terminal only last
        ([(1, CONV, 3.5, 0, 0)], "layers[0].kernel"),
        ([(1, CONV, 3, 0)], "layers[0]"),
        (["conv3"], "layers[0]"),
    ],
)
def test_invalid_layers_name_the_field(layers, field):
    with pytest.raises(BlockError) as err:
        Block(layers)
    assert str(err.value).startswith(field), str(err.value)
    assert isinstance(err.value, ValueError)


def test_add_only_from_two_predecessors_and_too_many_layers():
    with pytest.raises(BlockError, match="two different predecessors"):
        Block([(1, ADD, 0, 0, 0)])  # from the start state there is only one index to read
    with pytest.raises(BlockError, match=f"at most {MAX_LAYERS}"):
        Block([(i + 1, CONV, 1, i, 0) for i in range(MAX_LAYERS + 1)])


def test_symmetric_pairs_are_stored_ordered_and_terminal_dropped():
    a = Block([(1, CONV, 3, 0, 0), (2, ADD, 0, 0, 1), (3, TERMINAL, 0, 0, 0)])
    assert a.layers[1] == Layer(2, ADD, 0, 1, 0)
    assert len(a) == 2
    assert a == Block.parse("conv3:0,add:1:0")


# ------------------------------------------------------------------------------------------------ canonical form
def test_renumbered_branches_are_equal_and_hash_equal():
    a = Block.parse("conv3:0,conv5:0,conv1:1,conv1:2")
    b = Block.parse("conv5:0,conv3:0,conv1:2,conv1:1")
    c = Block.parse("conv5:0,conv1:1,conv3:0,conv1:3")
    assert a == b == c and len({a, b, c}) == 1
    assert a.digest() == b.digest() == c.digest()
    assert a.canonical().layers == c.canonical().layers and a.canonical().is_canonical()


def test_sharing_is_not_confused_with_copies():
    """One conv read twice is not two copies of the conv (the same expressions, different networks)."""
    shared = Block.parse("conv3:0,conv1:1,conv1:1")
    copies = Block.parse("conv3:0,conv1:1,conv3:0,conv1:3")
    assert shared != copies and shared.digest() != copies.digest()


def test_symmetric_blocks_are_canonicalised_quickly():
    """Many identical parallel branches: orbit pruning keeps the search small (a timed bound would be flaky, so
    count: the whole suite of these runs in well under a second)."""
    wide = Block.parse(",".join(["conv3:0"] * MAX_LAYERS))
    chains = Block.parse(",".join(f"conv3:0,conv1:{2 * i + 1}" for i in range(MAX_LAYERS // 2)))
    assert wide.canonical() == wide and chains.canonical() == chains
    ring = "conv3:0,conv3:0,conv3:0,conv3:0,conv1:0,conv1:0,conv1:0,conv1:0," + ",".join(
        f"add:{a}:{b}" for a, b in [(1, 5), (1, 6), (2, 6), (2, 7), (3, 7), (3, 8), (4, 8), (4, 5)])  # fmt: skip
    two_rings = "conv3:0,conv3:0,conv3:0,conv3:0,conv1:0,conv1:0,conv1:0,conv1:0," + ",".join(
        f"add:{a}:{b}" for a, b in [(1, 5), (1, 6), (2, 6), (2, 5), (3, 7), (3, 8), (4, 8), (4, 7)])  # fmt: skip
    # an 8-cycle and two 4-cycles of adds: colour refinement alone cannot tell them apart
    assert Block.parse(ring) != Block.parse(two_rings)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks(max_layers=16), st.randoms(use_true_random=False))
def test_relabelled_blocks_are_equal(block, rng):
    other = relabel(block, rng)
    assert other == block and hash(other) == hash(block) and other.digest() == block.digest()
    assert other.canonical().layers == block.canonical().layers


@settings(max_examples=60, deadline=None)
@given(st.lists(blocks(max_layers=6, kinds=["conv3", "conv1", "add", "identity"]), min_size=2, max_size=12))
def test_equal_canonical_forms_iff_isomorphic(batch):
    match = nx.algorithms.isomorphism.categorical_node_match("label", None)
    for a, b in itertools.combinations(batch, 2):
        assert (a == b) == nx.is_isomorphic(as_graph(a), as_graph(b), node_match=match), (a, b)


# ------------------------------------------------------------------------------------------------ round trips
@settings(max_examples=200, deadline=None)
@given(blocks(max_layers=20))
def test_round_trips(block):
    assert Block.parse(str(block)).layers == block.layers
    assert Block.from_json(block.to_json()).layers == block.layers
    assert Block.from_dict(json.loads(json.dumps(block.to_dict()))).layers == block.layers
    assert Block(block.to_nsc(terminal=True)).layers == block.layers
    assert Block.parse(str(block.to_nsc(terminal=True))).layers == block.layers
    assert eval(repr(block), {"Block": Block}).layers == block.layers


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60))
def test_fuzzed_strings_raise_only_block_error(text):
    try:
        Block.parse(text)
    except BlockError:
        pass


LAYER_TEXT = st.builds(
    lambda kind, preds: f"{kind}:" + ":".join(map(str, preds)),
    st.sampled_from(KIND_NAMES + ["conv7", "terminal", "Conv3", ""]),
    st.lists(st.integers(-3, 30), min_size=0, max_size=3),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(LAYER_TEXT, max_size=12).map(",".join))
def test_fuzzed_layer_strings_raise_only_block_error(text):
    try:
        block = Block.parse(text)
    except BlockError:
        return
    assert Block.parse(str(block)) == block


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.integers(-2, 30) | st.floats() | st.text(max_size=3) | st.booleans() | st.none(),
                    lambda inner: st.lists(inner, max_size=6) | st.tuples(inner, inner), max_leaves=40))  # fmt: skip
def test_fuzzed_layer_lists_raise_only_block_error(value):
    for attempt in (lambda: Block(value), lambda: Block.parse(json.dumps(value)), lambda: Block.from_dict({"layers": value})):
        try:
            attempt()
        except BlockError:
            pass


# ------------------------------------------------------------------------------------------------ actions
def test_action_count_is_the_papers_formula():
    assert num_actions(0) == 9 and num_actions(22) == 691
    for t in range(MAX_LAYERS):
        n = num_actions(t)
        assert n == 8 * (t + 1) + t * (t + 1) + 1
        single = sum(1 for a in range(1, n) if not action_to_layer(t, a).binary)
        binary = sum(1 for a in range(1, n) if action_to_layer(t, a).binary)
        assert single == 8 * (t + 1) and binary == t * (t + 1)


def test_actions_enumerate_every_valid_layer_once():
    for t in range(12):
        layers = [action_to_layer(t, a) for a in range(num_actions(t))]
        assert layers[0] is None  # the terminal
        assert len(set(layers[1:])) == len(layers) - 1
        for a, layer in enumerate(layers[1:], start=1):
            assert layer.index == t + 1 and layer_to_action(layer) == a
        with pytest.raises(BlockError, match="action"):
            action_to_layer(t, num_actions(t))
    assert layer_to_action(None) == 0 and layer_to_action((4, TERMINAL, 0, 0, 0)) == 0


@settings(max_examples=100, deadline=None)
@given(blocks(max_layers=15), st.data())
def test_every_valid_action_appends_a_valid_layer(block, data):
    t = len(block)
    a = data.draw(st.integers(1, num_actions(t) - 1))
    grown = block.append(action_to_layer(t, a))
    assert Block(grown.to_nsc()).layers == grown.layers  # re-validated from scratch


# ------------------------------------------------------------------------------------------------ named, density
def test_named_blocks_and_density():
    assert set(named.names()) >= {"ResNet", "Inception"}
    resnet = named.get("resnet")
    assert str(resnet) == "conv3:0,conv3:1,add:2:0" and resnet.leaves == (3,)
    assert resnet.density == 5 / 5  # 4 layer inputs + 1 leaf edge over input, 3 layers, output
    assert named.get("Empty").density == 0.5 and named.get("Empty").leaves == (0,)
    assert named.get("Inception").leaves == (1, 3, 5, 7) and named.get("Inception").density == 11 / 9
    assert named.get("Inception").depths == (0, 1, 1, 2, 1, 2, 1, 2) and resnet.depths == (0, 1, 2, 3)
    with pytest.raises(BlockError, match="unknown block"):
        named.get("AlexNet")
    assert named.resolve("conv3:0") == Block.parse("conv3:0")


def test_resolve_reads_json_files(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(named.get("ResNet").to_json())
    assert named.resolve(str(path)) == named.get("ResNet")
    with pytest.raises(BlockError, match="no such block file"):
        named.resolve(str(tmp_path / "missing.json"))
