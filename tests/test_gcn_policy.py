"""Tests for agents.gcn_policy: the NAT GCN policy (faithful and fixed variants)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from agents.gcn_policy import VARIANTS, GCNPolicy
from nat_gym import genotypes, rules
from nat_gym.envs.observation import OBS_KEYS, encode, to_pyg_batch
from nat_gym.errors import ConfigError
from nat_gym.genotype import Cell, Genotype

RULES = rules.get("nat++ext")
K = RULES.num_ops
SMALL = {"op_embed_dim": 16, "lift_dim": 64, "hidden_dim": 32}


def make(variant: str, seed: int = 0, **sizes) -> GCNPolicy:
    torch.manual_seed(seed)
    return GCNPolicy(K, variant, **(sizes or SMALL))


def random_genotype(steps: int, rng: np.random.Generator) -> Genotype:
    def cell() -> list[tuple[str, int, int]]:
        return [(RULES.ops[rng.integers(K)], int(rng.integers(node)), node)
                for node in range(2, steps + 2) for _ in range(2)]  # fmt: skip

    return Genotype(cell(), cell())


def stack(observations: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.stack([o[k] for o in observations]) for k in OBS_KEYS}


@pytest.fixture(scope="module")
def darts_obs() -> dict[str, np.ndarray]:
    return encode(genotypes.get("DARTS_V2"), RULES)


# ------------------------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("variant", VARIANTS)
def test_logits_shape_reference_sizes(variant, darts_obs):
    policy = GCNPolicy(K, variant)  # reference sizes: 100 / 1024 / 100
    assert policy.lift.out_features == 1024 and policy.op_embed.embedding_dim == 100
    logits = policy(to_pyg_batch(darts_obs))
    assert logits.shape == (16, K) and torch.isfinite(logits).all()
    dist = policy.distribution(darts_obs)
    assert dist.batch_shape == (1, 16) and dist.logits.shape == (1, 16, K)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("steps", [1, 4, 5, 8])
def test_any_number_of_steps(variant, steps):
    rng = np.random.default_rng(steps)
    policy = make(variant)
    obs = stack([encode(random_genotype(steps, rng), RULES) for _ in range(3)])
    assert policy(to_pyg_batch(obs)).shape == (3 * 2 * 2 * steps, K)
    actions, log_prob, entropy = policy.act(obs)
    assert actions.shape == (3, 4 * steps) and log_prob.shape == (3,) and entropy.shape == (3,)


def test_rejects_bad_config(darts_obs):
    with pytest.raises(ConfigError):
        GCNPolicy(K, "reference")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        GCNPolicy(0)
    with pytest.raises(ConfigError):
        GCNPolicy(K, lift_dim=0)
    with pytest.raises(ConfigError, match="num_ops"):
        GCNPolicy(K + 1, **SMALL)(to_pyg_batch(darts_obs))
    with pytest.raises(ConfigError):
        make("fixed").distribution([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        make("fixed").evaluate_actions(darts_obs, torch.zeros(1, 15, dtype=torch.long))


# ------------------------------------------------------------------------------------------------------ masking
@pytest.mark.parametrize("variant", VARIANTS)
def test_sampled_actions_always_valid(variant):
    rng = np.random.default_rng(3)
    gs = [random_genotype(4, rng) for _ in range(16)] + [genotypes.get("DARTS_V2"), genotypes.get("R2")]
    obs = stack([encode(g, RULES) for g in gs])
    mask = torch.as_tensor(obs["action_mask"]).reshape(len(gs), -1, K).bool()
    policy = make(variant)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        dist = policy.distribution(obs)
        assert torch.all(dist.probs[~mask] == 0)
        draws = dist.sample((200,), generator=gen)  # [200, B, 2E]
        assert mask.unsqueeze(0).expand(200, -1, -1, -1).gather(-1, draws.unsqueeze(-1)).all()
        for _ in range(20):
            actions, log_prob, _ = policy.act(obs, generator=gen)
            assert mask.gather(-1, actions.unsqueeze(-1)).all()
            assert torch.isfinite(log_prob).all()
            for g, a in zip(gs, actions.tolist(), strict=True):
                RULES.apply(g, a)  # raises on an invalid transition


@pytest.mark.parametrize("variant", VARIANTS)
def test_log_prob_and_entropy_are_sums_over_edges(variant):
    rng = np.random.default_rng(4)
    obs = stack([encode(random_genotype(4, rng), RULES) for _ in range(5)])
    policy = make(variant)
    actions, log_prob, entropy = policy.act(obs, generator=torch.Generator().manual_seed(1))
    assert actions.shape == (5, 16) and actions.dtype == torch.long
    assert log_prob.shape == (5,) and entropy.shape == (5,)
    dist = policy.distribution(obs)
    per_edge = torch.log_softmax(dist.logits.masked_fill(~dist.mask, float("-inf")), -1)
    expected = per_edge.gather(-1, actions.unsqueeze(-1)).squeeze(-1).sum(-1)
    torch.testing.assert_close(log_prob, expected)
    probs = per_edge.exp()
    expected_h = -(probs * per_edge.masked_fill(~dist.mask, 0.0)).sum(-1).sum(-1)
    torch.testing.assert_close(entropy, expected_h)
    lp2, h2 = policy.evaluate_actions(obs, actions)
    torch.testing.assert_close(lp2, log_prob)
    torch.testing.assert_close(h2, entropy)
    # a single observation with [2E] actions
    single = {k: v[0] for k, v in obs.items()}
    lp1, h1 = policy.evaluate_actions(single, actions[0].numpy())
    assert lp1.shape == (1,)
    torch.testing.assert_close(lp1, log_prob[:1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h1, entropy[:1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_deterministic_act_is_masked_argmax(variant):
    rng = np.random.default_rng(5)
    obs = stack([encode(random_genotype(4, rng), RULES) for _ in range(6)])
    policy = make(variant)
    actions, _, _ = policy.act(obs, deterministic=True)
    dist = policy.distribution(obs)
    assert torch.equal(actions, dist.probs.argmax(-1))
    assert torch.equal(actions, dist.logits.masked_fill(~dist.mask, float("-inf")).argmax(-1))


# ------------------------------------------------------------------------------------------------------ the flaw
def test_faithful_normal_cell_logits_ignore_the_ops():
    """The reference design's flaw: for the DARTS_V2 normal cell, the logits do not depend on the ops at all."""
    g = genotypes.get("DARTS_V2")
    rng = np.random.default_rng(6)
    faithful, fixed = make("faithful", seed=1), make("fixed", seed=1)
    with torch.no_grad():
        base_f = faithful(to_pyg_batch(encode(g, RULES)))[:8]
        base_x = fixed(to_pyg_batch(encode(g, RULES)))[:8]
        max_change_fixed = 0.0
        for _ in range(10):
            ops = [RULES.ops[i] for i in rng.integers(K, size=8)]
            changed = g.with_ops(ops + list(g.reduce.ops))
            assert changed.normal.ops != g.normal.ops
            logits_f = faithful(to_pyg_batch(encode(changed, RULES)))[:8]
            assert torch.equal(logits_f, base_f)
            logits_x = fixed(to_pyg_batch(encode(changed, RULES)))[:8]
            max_change_fixed = max(max_change_fixed, float((logits_x - base_x).abs().max()))
    assert max_change_fixed > 1e-3


def test_faithful_logits_do_see_ops_two_hops_back():
    """The flaw is structural: the ops feeding node q reach the logits of node j only if q is exactly two hops
    before j (H2[j] = sum over p -> j of ReLU(sum over q -> p of X[q] W1) W2)."""
    g = Genotype(
        [("sep_conv_3x3", 0, 2), ("sep_conv_3x3", 1, 2), ("sep_conv_3x3", 2, 3), ("sep_conv_3x3", 2, 3),
         ("dil_conv_3x3", 3, 4), ("dil_conv_3x3", 3, 4)],
        [("max_pool_3x3", 0, 2), ("max_pool_3x3", 1, 2), ("skip_connect", 0, 3), ("skip_connect", 2, 3),
         ("skip_connect", 0, 4), ("skip_connect", 1, 4)],
    )  # fmt: skip
    policy = make("faithful")
    with torch.no_grad():
        before = policy(to_pyg_batch(encode(g, RULES)))
        after = policy(to_pyg_batch(encode(g.with_ops(["conv_5x5"] * 2 + list(g.ops[2:])), RULES)))
    assert torch.equal(before[:4], after[:4])  # the changed edges' own logits and node 3's: unchanged
    assert not torch.allclose(before[4:6], after[4:6])  # node 4 is two hops after node 2: it sees them
    assert torch.equal(before[6:], after[6:])  # the reduction cell is untouched


# ----------------------------------------------------------------------------------------------- gradients etc.
@pytest.mark.parametrize("variant", VARIANTS)
def test_gradients_reach_parameters(variant):
    rng = np.random.default_rng(7)
    obs = stack([encode(random_genotype(4, rng), RULES) for _ in range(4)])
    policy = make(variant)
    actions, log_prob, entropy = policy.act(obs)
    (log_prob.sum() + 0.1 * entropy.sum()).backward()
    for name, p in policy.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert float(policy.lift.weight.grad.abs().sum()) > 0
    assert float(policy.op_embed.weight.grad.abs().sum()) > 0
    assert float(policy.input_embed.weight.grad.abs().sum()) > 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_batch_equals_single_forwards(variant):
    rng = np.random.default_rng(8)
    singles = [encode(random_genotype(4, rng), RULES) for _ in range(4)]
    policy = make(variant)
    batched = policy(to_pyg_batch(stack(singles))).reshape(4, 16, K)
    for i, o in enumerate(singles):
        torch.testing.assert_close(batched[i], policy(to_pyg_batch(o)), rtol=1e-5, atol=1e-6)
    # tensors (as SB3 holds them) and a prebuilt Batch give the same distribution
    as_tensors = {k: torch.as_tensor(v).float() for k, v in stack(singles).items()}
    d1 = policy.distribution(as_tensors)
    d2 = policy.distribution(Batch.from_data_list(to_pyg_batch(stack(singles)).to_data_list()))
    torch.testing.assert_close(d1.logits, batched)
    torch.testing.assert_close(d2.logits, batched)


def test_cells_share_weights_but_differ_by_structure():
    g = genotypes.get("DARTS_V2")
    same = Genotype(g.normal, g.normal)
    logits = make("fixed")(to_pyg_batch(encode(same, RULES)))
    torch.testing.assert_close(logits[:8], logits[8:])


# ----------------------------------------------------------------------------------------------------- keep prior
@pytest.mark.parametrize("variant", VARIANTS)
def test_keep_prior_adds_a_learned_logit_to_each_edges_own_op(variant, darts_obs):
    plain, kept = make(variant, seed=4), make(variant, seed=4, keep_prior=3.0, **SMALL)
    assert plain.keep_logit is None and "keep_logit" not in plain.state_dict()  # the reference design: unchanged
    missing, unexpected = kept.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["keep_logit"] and not unexpected
    batch = to_pyg_batch(darts_obs)
    own = torch.nn.functional.one_hot(batch.edge_op, K).float()
    torch.testing.assert_close(kept(batch) - plain(batch), 3.0 * own)
    # it starts next to the identity: every edge keeps its op with probability e^3 / (e^3 + valid - 1) or more
    probs = kept.distribution(darts_obs).probs[0].detach()
    valid = torch.as_tensor(darts_obs["action_mask"].reshape(16, K)).sum(-1)
    p_keep = probs.gather(1, batch.edge_op.unsqueeze(-1)).squeeze(-1)
    assert (p_keep > 0.5 * np.exp(3) / (np.exp(3) + valid - 1)).all()
    with torch.no_grad():
        assert float(make(variant).distribution(darts_obs).probs[0].gather(1, batch.edge_op[:, None]).mean()) < 0.4
    # it is learned: REINFORCE gradients reach it
    _, log_prob, _ = kept.act(darts_obs)
    log_prob.sum().backward()
    assert kept.keep_logit.grad is not None and float(kept.keep_logit.grad.abs().sum()) > 0


def test_keep_prior_is_validated():
    for bad in (-1.0, float("nan"), float("inf"), True, "2"):
        with pytest.raises(ConfigError, match="keep_prior"):
            GCNPolicy(K, keep_prior=bad)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------- learning smoke
@pytest.mark.parametrize("variant", VARIANTS)
def test_reinforce_smoke_learns_skip_on_edge_0(variant, darts_obs):
    skip = RULES.index("skip_connect")
    assert darts_obs["action_mask"][0, 0, skip] == 1
    policy = make(variant, seed=2)
    opt = torch.optim.Adam(policy.parameters(), lr=1e-2)
    batch = to_pyg_batch(stack([darts_obs] * 32))
    gen = torch.Generator().manual_seed(3)

    def p_skip() -> float:
        with torch.no_grad():
            return float(policy.distribution(darts_obs).probs[0, 0, skip])

    before = p_skip()
    for _ in range(20):
        actions, log_prob, _ = policy.act(batch, generator=gen)
        reward = (actions[:, 0] == skip).float()
        loss = -((reward - reward.mean()) * log_prob).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = p_skip()
    assert after > before + 0.1, (before, after)


# ------------------------------------------------------------------------------------------------- cell outputs
def _fully_concat_twin(g: Genotype) -> Genotype:
    return Genotype(Cell(g.normal.edges, "all"), Cell(g.reduce.edges, "all"))


def test_fixed_policy_sees_the_cell_outputs_faithful_does_not():
    """ENAS (loose-end reduction cell) and its fully-concat twin: the fixed policy's logits differ once its offset
    of non-output nodes is trained (it starts at zero: the same logits as without it); the faithful policy's never
    differ."""
    enas = genotypes.get("ENAS")
    a, b = encode(enas, RULES), encode(_fully_concat_twin(enas), RULES)
    fixed = make("fixed")
    torch.testing.assert_close(fixed(to_pyg_batch(a)), fixed(to_pyg_batch(b)))  # zero offset at initialisation
    with torch.no_grad():
        fixed.non_output_embed.weight.normal_()
    assert not torch.allclose(fixed(to_pyg_batch(a))[10:], fixed(to_pyg_batch(b))[10:])  # reduction cell edges
    torch.testing.assert_close(fixed(to_pyg_batch(a))[:10], fixed(to_pyg_batch(b))[:10])  # same normal cell
    faithful = make("faithful")
    torch.testing.assert_close(faithful(to_pyg_batch(a)), faithful(to_pyg_batch(b)))
    batch = to_pyg_batch(a)
    del batch.node_concat
    with pytest.raises(ConfigError, match="node_concat"):
        fixed(batch)
    faithful(batch)  # the paper's design reads no outputs


def test_fully_concat_inputs_leave_the_output_offset_untouched():
    """On fully-concat cells (the env's random inputs) the offset gets exactly zero gradient: training on them
    computes and learns what the fixed policy did before it read the outputs."""
    rng = np.random.default_rng(9)
    policy = make("fixed")
    _, log_prob, entropy = policy.act(stack([encode(random_genotype(4, rng), RULES) for _ in range(4)]))
    (log_prob.sum() + entropy.sum()).backward()
    assert torch.equal(policy.non_output_embed.weight.grad, torch.zeros(1, policy.lift_dim))
    policy.zero_grad()
    _, log_prob, _ = policy.act(encode(genotypes.get("ENAS"), RULES))  # a loose-end cell: it learns
    log_prob.sum().backward()
    assert policy.non_output_embed.weight.grad.abs().sum() > 0


def test_fixed_policy_loads_a_state_dict_without_the_output_offset():
    policy = make("fixed", seed=1)
    old = {k: v for k, v in policy.state_dict().items() if k != "non_output_embed.weight"}  # saved before it
    fresh = make("fixed", seed=2)
    with torch.no_grad():
        fresh.non_output_embed.weight.fill_(1.0)
    fresh.load_state_dict(old)
    assert torch.equal(fresh.non_output_embed.weight, torch.zeros(1, fresh.lift_dim))
    assert [n for n, _ in fresh.named_parameters()][-1] == "non_output_embed.weight"  # after the older ones
    assert torch.equal(fresh.lift.weight, policy.lift.weight)


# ------------------------------------------------------------------------------------------ mixed and empty batches
@pytest.mark.parametrize("variant", VARIANTS)
def test_mixed_cell_sizes_forward_per_edge_but_distribution_raises(variant):
    """A DARTS_V2 (16 edges) and an ENAS (20 edges) observation in one batch: forward gives each edge its own
    logits (the same as alone); a [B, 2E] distribution cannot hold both, so it raises instead of mis-grouping."""
    policy = make(variant)
    darts, enas = encode(genotypes.get("DARTS_V2"), RULES), encode(genotypes.get("ENAS"), RULES)
    mixed = Batch.from_data_list(to_pyg_batch(darts).to_data_list() + to_pyg_batch(enas).to_data_list())
    logits = policy(mixed)
    assert logits.shape == (36, K)
    torch.testing.assert_close(logits[:16], policy(to_pyg_batch(darts)), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits[16:], policy(to_pyg_batch(enas)), rtol=1e-5, atol=1e-6)
    for call in (policy.distribution, policy.act):
        with pytest.raises(ConfigError, match=r"different numbers of edges \(\[8, 10\]\)"):
            call(mixed)
    with pytest.raises(ConfigError, match="different numbers of edges"):
        policy.evaluate_actions(mixed, torch.zeros(2, 18, dtype=torch.long))
    odd = Batch.from_data_list(to_pyg_batch(darts).to_data_list()[:1])
    with pytest.raises(ConfigError, match="pairs"):
        policy.distribution(odd)


@pytest.mark.parametrize("variant", VARIANTS)
def test_empty_batch_gives_empty_outputs(variant, darts_obs):
    policy = make(variant)
    empty = {k: v[None][:0] for k, v in darts_obs.items()}  # B = 0
    actions, log_prob, entropy = policy.act(empty)
    assert actions.shape == (0, 16) and actions.dtype == torch.long
    assert log_prob.shape == (0,) and entropy.shape == (0,)
    log_prob, entropy = policy.evaluate_actions(empty, torch.zeros(0, 16, dtype=torch.long))
    assert log_prob.shape == (0,) and entropy.shape == (0,)
    assert policy.act(empty, deterministic=True)[0].shape == (0, 16)
    dist = policy.distribution(to_pyg_batch(empty))  # a Batch does not know E
    assert dist.batch_shape == (0, 0)
