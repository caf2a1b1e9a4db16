"""Tests for nat_gym.envs.observation: the observation contract of NATCell-v0 and its graph view."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.nn import global_add_pool

from nat_gym import genotypes, rules
from nat_gym.cost import network_cost
from nat_gym.envs.observation import (
    OBS_KEYS,
    action_space,
    decode,
    encode,
    flat_action_mask,
    observation_space,
    to_pyg_batch,
)
from nat_gym.errors import ConfigError, GenotypeError, InvalidOpError
from nat_gym.genotype import Cell, Genotype

RULES = rules.get("nat++ext")
ALL_NAMES = genotypes.names()
NAMES_4 = [n for n in ALL_NAMES if genotypes.get(n).steps == 4]
NAMES_5 = [n for n in ALL_NAMES if genotypes.get(n).steps == 5]


def random_genotype(steps: int, rng: np.random.Generator, ops: tuple[str, ...] = RULES.ops) -> Genotype:
    """Two predecessors drawn uniformly with replacement and two uniform ops per intermediate node."""

    def cell() -> list[tuple[str, int, int]]:
        return [(ops[rng.integers(len(ops))], int(rng.integers(node)), node)
                for node in range(2, steps + 2) for _ in range(2)]  # fmt: skip

    return Genotype(cell(), cell())


def stack(observations: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.stack([o[k] for o in observations]) for k in OBS_KEYS}


# ------------------------------------------------------------------------------------------------------- spaces
def test_space_shapes_and_dtypes():
    space = observation_space(4, 13)
    assert space["ops"].shape == (2, 8, 13) and space["ops"].dtype == np.float32
    assert space["edges"].shape == (2, 8, 2) and space["edges"].dtype == np.int64
    assert space["adjacency"].shape == (2, 6, 6) and space["adjacency"].dtype == np.float32
    assert space["action_mask"].shape == (2, 8, 13) and space["action_mask"].dtype == np.int8
    assert space["concat"].shape == (2, 6) and space["concat"].dtype == np.int8
    assert int(space["edges"].high.max()) == 5 and float(space["adjacency"].high.max()) == 2.0
    act = action_space(4, 13)
    assert act.shape == (16,) and set(act.nvec.tolist()) == {13}


@pytest.mark.parametrize("bad", [(0, 5), (9, 5), (4, 0), (True, 5), (4.0, 5)])
def test_space_rejects_bad_sizes(bad):
    with pytest.raises(ConfigError):
        observation_space(*bad)


# ------------------------------------------------------------------------------------------------------- encode
def _rules_holding(g: Genotype) -> rules.TransitionRules:
    """The first rule set whose vocabulary holds every op of ``g``."""
    for name in ("nat", "nat++", "nat-ext", "nat++ext"):
        r = rules.get(name)
        if all(op in r.ops for op in g.ops):
            return r
    raise AssertionError(f"no rule set holds the ops of {g}")


@pytest.mark.parametrize("name", ALL_NAMES)
def test_decode_encode_is_identity_for_every_registered_genotype(name):
    g = genotypes.get(name)
    for r in {_rules_holding(g).name: _rules_holding(g), "nat++ext": RULES}.values():
        obs = encode(g, r, steps=g.steps)
        assert set(obs) == set(OBS_KEYS)
        assert observation_space(g.steps, r.num_ops).contains(obs)
        assert decode(obs, r) == g
        for c, cell in enumerate(g.cells):
            assert np.flatnonzero(obs["concat"][c]).tolist() == list(cell.concat)


def test_round_trip_random_genotypes_and_steps():
    rng = np.random.default_rng(0)
    for steps in (1, 2, 3, 4, 5, 8):
        for i in range(10):
            g = random_genotype(steps, rng)
            if i % 2:  # loose-end outputs too
                g = Genotype(Cell(g.normal.edges, "loose_end"), Cell(g.reduce.edges, "loose_end"))
            obs = encode(g, RULES)
            assert observation_space(steps, RULES.num_ops).contains(obs)
            assert decode(obs, RULES) == g


def test_loose_end_and_fully_concat_twins_do_not_alias():
    """ENAS (a loose-end reduction cell) and the same edges with fully-concat outputs are different states: other
    costs (3,859,894 vs 3,963,574 params at C=36 / 20 layers), other observations, each decoded back exactly."""
    enas = genotypes.get("ENAS")
    twin = Genotype(Cell(enas.normal.edges, "all"), Cell(enas.reduce.edges, "all"))
    assert enas.reduce.output_mode == "loose_end" and enas != twin
    assert network_cost(enas, C=36, layers=20).params == 3_859_894
    assert network_cost(twin, C=36, layers=20).params == 3_963_574
    a, b = encode(enas, RULES), encode(twin, RULES)
    assert {k for k in OBS_KEYS if not np.array_equal(a[k], b[k])} == {"concat"}
    assert a["concat"][1].tolist() == [0, 0, 1, 1, 0, 0, 1]  # ENAS's reduction cell: nodes 2, 3 and 6
    assert b["concat"][1].tolist() == [0, 0, 1, 1, 1, 1, 1]
    assert (decode(a, RULES), decode(b, RULES)) == (enas, twin)
    pa, pb = to_pyg_batch(a), to_pyg_batch(b)
    assert not torch.equal(pa.node_concat, pb.node_concat)
    assert pa.node_concat.tolist() == (a["concat"].reshape(-1) == 1).tolist()


def test_deprecated_concat_argument_still_decodes():
    g = genotypes.get("ENAS")
    obs = encode(g, RULES)
    with pytest.warns(DeprecationWarning, match="concat"):
        assert decode(obs, RULES, concat=(g.normal.concat, g.reduce.concat)) == g
    without = {k: v for k, v in obs.items() if k != "concat"}  # an observation of the old contract
    with pytest.warns(DeprecationWarning):
        full = decode(without, RULES, concat=("all", "all"))
    assert full.edges == g.edges and full.reduce.output_mode == "fully_concat"
    with pytest.raises(ConfigError, match="concat"):
        decode(without, RULES)


def test_contents_darts_v2():
    g = genotypes.get("DARTS_V2")
    r = rules.get("nat++")
    obs = encode(g, r)
    for c, cell in enumerate(g.cells):
        for i, e in enumerate(cell.edges):
            row = obs["ops"][c, i]
            assert row.sum() == 1 and row[r.index(e.op)] == 1
            assert tuple(obs["edges"][c, i]) == (e.src, e.dst)
    np.testing.assert_array_equal(obs["action_mask"].reshape(-1, r.num_ops), r.mask(g).astype(np.int8))
    # adjacency: A[c, dst, src] counts edges; every intermediate node has in-degree 2
    np.testing.assert_array_equal(obs["adjacency"].sum(axis=2)[:, 2:], 2)
    np.testing.assert_array_equal(obs["adjacency"].sum(axis=2)[:, :2], 0)
    assert obs["adjacency"][0, 2, 0] == 1 and obs["adjacency"][0, 2, 1] == 1
    assert obs["adjacency"][0, 0, 2] == 0  # directed: A[dst, src]


def test_adjacency_counts_duplicate_edges():
    g = genotypes.get("R2")
    dup = [(e.src, e.dst) for e in g.normal.edges if e.dst == 3]
    assert dup == [(2, 3), (2, 3)]
    obs = encode(g, RULES)
    assert obs["adjacency"][0, 3, 2] == 2.0
    assert observation_space(4, RULES.num_ops).contains(obs)


@pytest.mark.parametrize("rule_set", ["nat", "nat-ext", "nat++", "nat++ext"])
def test_mask_equals_rules_mask(rule_set):
    r = rules.get(rule_set)
    for name in ALL_NAMES:
        g = genotypes.get(name)
        try:
            expected = r.mask(g)
        except InvalidOpError:
            with pytest.raises(InvalidOpError):
                encode(g, r)
            continue
        obs = encode(g, r)
        assert obs["action_mask"].dtype == np.int8
        np.testing.assert_array_equal(obs["action_mask"].reshape(-1, r.num_ops).astype(bool), expected)
        np.testing.assert_array_equal(obs["ops"].reshape(-1, r.num_ops).argmax(-1), r.op_indices(g))


def test_encode_errors():
    g = genotypes.get("DARTS_V2")
    with pytest.raises(GenotypeError, match="steps=5"):
        encode(g, RULES, steps=5)
    with pytest.raises(InvalidOpError, match="sep_conv_7x7"):
        encode(genotypes.get("NASNet"), rules.get("nat++"))
    with pytest.raises(GenotypeError):
        encode("DARTS_V2", RULES)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        encode(g, "nat++")  # type: ignore[arg-type]


def test_encode_returns_fresh_arrays():
    g = genotypes.get("DARTS_V2")
    a = encode(g, RULES)
    for v in a.values():
        v[...] = 0
    b = encode(g, RULES)
    assert b["ops"].sum() == 16 and b["action_mask"].sum() > 0 and b["edges"].max() == 5


def test_decode_errors():
    g = genotypes.get("DARTS_V2")
    obs = encode(g, RULES)
    with pytest.raises(ConfigError):
        decode(stack([obs, obs]), RULES)
    with pytest.raises(ConfigError):
        decode(obs, rules.get("nat++"))  # wrong K
    with pytest.raises(ConfigError):
        decode({"ops": obs["ops"]}, RULES)
    bad = dict(obs, ops=obs["ops"].copy())
    bad["ops"][0, 0, :] = 0
    with pytest.raises(GenotypeError, match="one-hot"):
        decode(bad, RULES)
    bad = dict(obs, edges=obs["edges"].copy())
    bad["edges"][0, 0] = (3, 2)  # from >= to
    with pytest.raises(GenotypeError):
        decode(bad, RULES)
    with pytest.raises(ConfigError), pytest.warns(DeprecationWarning):
        decode(obs, RULES, concat="all")  # type: ignore[arg-type]
    for flags, error in (([[0, 0, 1, 1, 1, 1], [0, 0, 2, 1, 1, 1]], GenotypeError),  # not 0/1
                         ([[1, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]], GenotypeError),  # an input node
                         ([[0, 0, 0, 0, 0, 0], [0, 0, 1, 1, 1, 1]], GenotypeError),  # no output
                         ([[0, 0, 1, 1, 1]] * 2, ConfigError)):  # fmt: skip
        with pytest.raises(error, match="concat"):
            decode(dict(obs, concat=np.array(flags, dtype=np.int8)), RULES)


def test_decode_accepts_tensors():
    g = genotypes.get("ENAS")
    obs = {k: torch.as_tensor(v).float() for k, v in encode(g, RULES).items()}
    assert decode(obs, RULES) == g


# ------------------------------------------------------------------------------------------------- flat mask
def test_flat_action_mask():
    g = genotypes.get("DARTS_V2")
    obs = encode(g, RULES)
    flat = flat_action_mask(obs)
    assert flat.dtype == bool and flat.shape == (2 * 8 * RULES.num_ops,)
    np.testing.assert_array_equal(flat, obs["action_mask"].reshape(-1).astype(bool))
    np.testing.assert_array_equal(flat, RULES.mask(g).reshape(-1))
    batched = flat_action_mask(stack([obs, obs, obs]))
    assert batched.shape == (3, flat.size) and (batched == flat).all()
    with pytest.raises(ConfigError):
        flat_action_mask({"action_mask": np.zeros(5)})


# ---------------------------------------------------------------------------------------------------- pyg batch
def test_single_observation_graphs():
    g = genotypes.get("R2")
    obs = encode(g, RULES)
    b = to_pyg_batch(obs)
    assert isinstance(b, Batch) and b.num_graphs == 2 and b.num_nodes == 12
    assert b.edge_index.dtype == torch.long and b.edge_index.shape == (2, 16)
    assert b.edge_op.dtype == torch.long and b.edge_mask.dtype == torch.bool
    assert b.edge_mask.shape == (16, RULES.num_ops)
    assert b.cell.tolist() == [0, 1] and b.node_id.tolist() == list(range(6)) * 2
    assert b.node_concat.dtype == torch.bool
    assert b.node_concat.tolist() == ([False] * 2 + [True] * 4) * 2
    assert b.batch.tolist() == [0] * 6 + [1] * 6 and b.ptr.tolist() == [0, 6, 12]
    for c, cell in enumerate(g.cells):
        ex = b.get_example(c)
        assert isinstance(ex, Data) and ex.num_nodes == 6
        assert ex.edge_index.t().tolist() == [[e.src, e.dst] for e in cell.edges]  # row 0 = src, row 1 = dst
        assert ex.edge_op.tolist() == [RULES.index(e.op) for e in cell.edges]
        assert int(ex.cell) == c
        assert ex.node_concat.nonzero().view(-1).tolist() == list(cell.concat)
    np.testing.assert_array_equal(b.edge_mask.numpy(), RULES.mask(g))


def _assert_same_graph(a: Data, b: Data) -> None:
    for key in ("edge_index", "edge_op", "edge_mask", "node_id", "node_concat", "cell"):
        assert torch.equal(a[key].cpu(), b[key].cpu()), key
    assert a.num_nodes == b.num_nodes


def test_batched_matches_single():
    rng = np.random.default_rng(1)
    gs = [genotypes.get("DARTS_V2"), genotypes.get("VGG"), random_genotype(4, rng)]
    singles = [encode(g, RULES) for g in gs]
    b = to_pyg_batch(stack(singles))
    assert b.num_graphs == 6 and b.num_nodes == 36 and b.edge_index.shape == (2, 48)
    assert b.cell.tolist() == [0, 1] * 3
    assert b.ptr.tolist() == list(range(0, 37, 6))
    assert torch.equal(b.batch, torch.arange(6).repeat_interleave(6))
    for gi in range(6):
        block = b.edge_index[:, gi * 8 : (gi + 1) * 8]
        assert block.min() >= gi * 6 and block.max() < (gi + 1) * 6  # offsets
        obs_i, c = divmod(gi, 2)
        expected = torch.as_tensor(singles[obs_i]["edges"][c]).t() + gi * 6
        assert torch.equal(block, expected)
    for i, o in enumerate(singles):
        one = to_pyg_batch(o)
        for c in range(2):
            _assert_same_graph(b.get_example(2 * i + c), one.get_example(c))
    # the same as torch_geometric's own collation of per-graph Data objects
    ref = Batch.from_data_list(b.to_data_list())
    for key in ("edge_index", "edge_op", "edge_mask", "node_id", "node_concat", "cell", "batch", "ptr"):
        assert torch.equal(ref[key], b[key]), key


def test_tensor_input_like_sb3():
    rng = np.random.default_rng(2)
    obs = stack([encode(random_genotype(5, rng), RULES) for _ in range(4)])
    ref = to_pyg_batch(obs)
    # SB3 preprocesses every Box to float32 tensors
    as_float = {k: torch.as_tensor(v).float() for k, v in obs.items()}
    as_native = {k: torch.as_tensor(v) for k, v in obs.items()}
    for t in (as_float, as_native):
        b = to_pyg_batch(t, device="cpu")
        assert b.num_graphs == 8
        for key in ("edge_index", "edge_op", "edge_mask", "node_id", "node_concat", "cell", "batch", "ptr"):
            assert torch.equal(ref[key], b[key]), key
            assert b[key].dtype == ref[key].dtype, key
    one = to_pyg_batch({k: v[0] for k, v in as_float.items()})
    assert one.num_graphs == 2 and torch.equal(one.edge_index, ref.edge_index[:, :20])


def test_pyg_ops_work_on_batch():
    obs = stack([encode(genotypes.get(n), RULES) for n in ("DARTS_V2", "R1", "R2", "VGG")])
    b = to_pyg_batch(obs)
    x = torch.ones(b.num_nodes, 3)
    pooled = global_add_pool(x, b.batch)
    assert pooled.shape == (8, 3) and torch.all(pooled == 6)
    assert len(b.index_select([1, 3])) == 2 and b[5].cell.item() == 1


def test_to_pyg_batch_errors():
    obs = encode(genotypes.get("DARTS_V2"), RULES)
    with pytest.raises(ConfigError):
        to_pyg_batch({"ops": obs["ops"], "edges": obs["edges"]})
    with pytest.raises(ConfigError):
        to_pyg_batch(dict(obs, edges=obs["edges"][:, :4]))
    with pytest.raises(ConfigError):
        to_pyg_batch(dict(obs, ops=obs["ops"][None, None]))
    with pytest.raises(ConfigError, match="concat"):
        to_pyg_batch(dict(obs, concat=obs["concat"][:, :5]))
    with pytest.raises(ConfigError, match="concat"):
        to_pyg_batch({k: v for k, v in obs.items() if k != "concat"})
