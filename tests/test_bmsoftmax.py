"""Tests for agents.bmsoftmax: the binary-masked softmax of NAT and the masked categorical distribution."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from agents.bmsoftmax import BMSoftmax, MaskedCategorical, bmsoftmax, masked_log_softmax
from nat_gym.errors import MaskError

SHAPES = [(1, 1, 1), (1, 1, 5), (2, 3, 4), (4, 14, 8), (3, 7, 2)]


def random_case(shape: tuple[int, ...], seed: int, scale: float = 5.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random float32 logits and a bool mask with at least one valid entry per row (along the last dim)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=g) * scale
    mask = torch.rand(shape, generator=g) < 0.5
    keep = torch.randint(shape[-1], shape[:-1], generator=g)
    mask.scatter_(-1, keep.unsqueeze(-1), True)
    return logits, mask


def reference_probs(logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """float64 reference ``v * exp(z - max) / sum``, the max taken over valid entries."""
    z = logits.astype(np.float64)
    v = mask.astype(np.float64)
    zmax = np.where(mask, z, -np.inf).max(axis=-1, keepdims=True)
    e = v * np.exp(np.where(mask, z - zmax, 0.0))
    return e / e.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------------------------------- bmsoftmax


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sums_to_one_and_exact_zeros(shape: tuple[int, ...], seed: int) -> None:
    logits, mask = random_case(shape, seed)
    probs = bmsoftmax(logits, mask)
    assert probs.shape == logits.shape and probs.dtype == logits.dtype
    assert torch.all(probs[~mask] == 0.0)
    assert torch.all(probs[mask] > 0.0)
    torch.testing.assert_close(probs.sum(-1), torch.ones(shape[:-1]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [3, 4])
def test_matches_float64_numpy_reference(shape: tuple[int, ...], seed: int) -> None:
    logits, mask = random_case(shape, seed)
    probs = bmsoftmax(logits, mask).numpy().astype(np.float64)
    ref = reference_probs(logits.numpy(), mask.numpy())
    np.testing.assert_allclose(probs, ref, rtol=0, atol=1e-6)


def test_masked_logits_have_no_influence() -> None:
    logits, mask = random_case((3, 5, 6), seed=5)
    garbage = logits.clone()
    garbage[~mask] = torch.tensor([math.nan, math.inf, -math.inf, 1e30])[torch.arange(int((~mask).sum())) % 4]
    assert torch.equal(bmsoftmax(garbage, mask), bmsoftmax(logits, mask))


@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_gradient_of_masked_logits_is_exactly_zero(scale: float) -> None:
    logits, mask = random_case((4, 6, 8), seed=6)
    signs = torch.where(torch.arange(logits.numel()).reshape(logits.shape) % 2 == 0, 1.0, -1.0)
    logits = (logits.sign() * scale if scale > 1 else logits) * signs
    logits.requires_grad_(True)
    weights = torch.randn(logits.shape, generator=torch.Generator().manual_seed(7))
    probs = bmsoftmax(logits, mask)
    log_probs = masked_log_softmax(logits, mask)
    loss = (probs * weights).sum() + (probs**2).sum() + log_probs[mask].sum() + probs.max(-1).values.sum()
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.isfinite(grad).all()
    assert torch.all(grad[~mask] == 0.0)
    assert grad[mask].abs().sum() > 0


def test_large_mixed_sign_logits_are_finite() -> None:
    logits = torch.tensor(
        [
            [1e4, -1e4, 0.0, 9999.0],
            [-1e4, -1e4, -9999.5, 1e4],
            [-1e4, -1e4, -1e4, -1e4],
            [3.4e38, -3.4e38, 1.0, 0.0],
        ]
    )
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [0, 1, 1, 0], [1, 1, 1, 0]], dtype=torch.int64)
    probs = bmsoftmax(logits, mask)
    assert torch.isfinite(probs).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(4), rtol=0, atol=1e-6)
    assert torch.all(probs[mask == 0] == 0.0)
    torch.testing.assert_close(
        probs[0], torch.tensor([1 / (1 + math.exp(-1)), 0.0, 0.0, 1 - 1 / (1 + math.exp(-1))])
    )
    torch.testing.assert_close(probs[1], torch.tensor([0.5, 0.5, 0.0, 0.0]))
    torch.testing.assert_close(probs[2], torch.tensor([0.0, 0.5, 0.5, 0.0]))
    torch.testing.assert_close(probs[3], torch.tensor([1.0, 0.0, 0.0, 0.0]))
    log_probs = masked_log_softmax(logits, mask)
    # Rows at the +-1e4 scale have finite log-probs (row 3's true log-prob -6.8e38 is below float32's range).
    assert torch.isfinite(log_probs[:3][mask[:3] != 0]).all()
    torch.testing.assert_close(log_probs[:3].exp(), probs[:3])
    assert torch.all(log_probs[mask == 0] == -math.inf)


def test_single_valid_entry_has_probability_exactly_one() -> None:
    logits = torch.tensor([[5.0, -3.0, 1e4], [-1e4, 2.0, 0.0]])
    mask = torch.tensor([[False, True, False], [True, False, False]])
    probs = bmsoftmax(logits, mask)
    assert probs[0, 1].item() == 1.0 and probs[1, 0].item() == 1.0
    assert torch.all(probs[~mask] == 0.0)


def test_empty_row_raises_mask_error_naming_row() -> None:
    logits = torch.zeros(2, 3, 4)
    mask = torch.ones(2, 3, 4, dtype=torch.bool)
    mask[1, 2] = False
    mask[0, 1] = False
    with pytest.raises(MaskError, match=r"2 of 6 rows.*\(0, 1\)") as info:
        bmsoftmax(logits, mask)
    assert isinstance(info.value, ValueError)
    with pytest.raises(ValueError, match=r"1 of 1 row"):
        masked_log_softmax(torch.zeros(3), torch.zeros(3))


def test_accepts_integer_float_and_bool_masks_and_other_dims() -> None:
    logits, mask = random_case((3, 4, 5), seed=8)
    expected = bmsoftmax(logits, mask)
    assert torch.equal(bmsoftmax(logits, mask.int()), expected)
    assert torch.equal(bmsoftmax(logits, mask.float()), expected)
    assert torch.equal(BMSoftmax()(logits, mask), expected)
    moved = bmsoftmax(logits.transpose(1, 2), mask.transpose(1, 2), dim=1)
    torch.testing.assert_close(moved.transpose(1, 2), expected, rtol=1e-6, atol=1e-7)
    assert torch.all(moved.transpose(1, 2)[~mask] == 0.0)
    assert torch.equal(BMSoftmax(dim=1)(logits.transpose(1, 2), mask.transpose(1, 2)), moved)


def test_shape_mismatch_raises_mask_error() -> None:
    with pytest.raises(MaskError, match=r"\[2, 4\].*\[2, 5\]"):
        bmsoftmax(torch.zeros(2, 5), torch.ones(2, 4, dtype=torch.bool))


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_property_probs_finite_sum_to_one_zeros_on_masked(data: st.DataObject) -> None:
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6), label="shape")
    z = data.draw(
        hnp.arrays(np.float32, shape, elements=st.floats(-1e4, 1e4, width=32, allow_nan=False)),
        label="logits",
    )
    v = data.draw(hnp.arrays(np.bool_, shape), label="mask")
    rows = v.reshape(-1, shape[-1])
    forced = data.draw(
        hnp.arrays(np.int64, (rows.shape[0],), elements=st.integers(0, shape[-1] - 1)), label="forced"
    )
    rows[np.arange(rows.shape[0]), forced] = True
    v = rows.reshape(shape)
    logits, mask = torch.from_numpy(z), torch.from_numpy(v)
    probs = bmsoftmax(logits, mask)
    assert torch.isfinite(probs).all()
    assert torch.all(probs[~mask] == 0.0)
    torch.testing.assert_close(probs.sum(-1), torch.ones(shape[:-1]), rtol=0, atol=1e-5)
    np.testing.assert_allclose(probs.numpy(), reference_probs(z, v), rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------ MaskedCategorical


def test_samples_never_hit_masked_entries() -> None:
    logits, mask = random_case((4, 6, 7), seed=9)
    logits = logits.clone()
    logits[~mask] = 1e4  # masked entries would dominate an unmasked distribution
    dist = MaskedCategorical(logits, mask)
    g = torch.Generator().manual_seed(0)
    samples = dist.sample((2000,), generator=g)
    assert samples.shape == (2000, 4, 6) and samples.dtype == torch.long
    hit = mask.unsqueeze(0).expand(2000, -1, -1, -1).gather(-1, samples.unsqueeze(-1)).squeeze(-1)
    assert hit.all()
    for _ in range(50):
        single = dist.sample()
        assert single.shape == (4, 6)
        assert mask.gather(-1, single.unsqueeze(-1)).all()


def test_sample_frequencies_follow_probs() -> None:
    logits = torch.tensor([[0.0, 1.0, 2.0, 50.0]])
    mask = torch.tensor([[True, True, True, False]])
    dist = MaskedCategorical(logits, mask)
    samples = dist.sample((20000,), generator=torch.Generator().manual_seed(1))
    freq = torch.bincount(samples.flatten(), minlength=4).double() / samples.numel()
    torch.testing.assert_close(freq, dist.probs[0].double(), rtol=0, atol=0.02)


def test_sampling_reproducible_with_seeded_generator() -> None:
    logits, mask = random_case((3, 5, 6), seed=10)
    dist = MaskedCategorical(logits, mask)
    a = dist.sample((100,), generator=torch.Generator().manual_seed(123))
    b = dist.sample((100,), generator=torch.Generator().manual_seed(123))
    c = dist.sample((100,), generator=torch.Generator().manual_seed(124))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    d = dist.sample(generator=torch.Generator().manual_seed(5))
    e = dist.sample(torch.Generator().manual_seed(5))  # positional generator
    assert torch.equal(d, e)


def test_mode_is_argmax_over_valid_entries() -> None:
    logits = torch.tensor([[9.0, 1.0, 3.0, 2.0], [0.0, 1e4, -1.0, -2.0], [5.0, 5.0, 7.0, 0.0]])
    mask = torch.tensor([[False, True, True, True], [True, False, True, True], [True, True, False, True]])
    assert MaskedCategorical(logits, mask).mode().tolist() == [2, 0, 0]
    logits, mask = random_case((5, 6, 7), seed=11)
    expected = torch.where(mask, logits, torch.tensor(-math.inf)).argmax(-1)
    mode = MaskedCategorical(logits, mask).mode()
    assert torch.equal(mode, expected)
    assert mask.gather(-1, mode.unsqueeze(-1)).all()


def test_log_prob_of_samples_equals_log_bmsoftmax() -> None:
    logits, mask = random_case((4, 5, 6), seed=12)
    dist = MaskedCategorical(logits, mask)
    actions = dist.sample((30,), generator=torch.Generator().manual_seed(2))
    lp = dist.log_prob(actions)
    assert lp.shape == (30, 4, 5)
    probs = bmsoftmax(logits, mask).expand(30, -1, -1, -1)
    expected = probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1).log()
    torch.testing.assert_close(lp, expected, rtol=1e-5, atol=1e-6)
    assert torch.isfinite(lp).all()
    masked_action = (~mask[0, 0]).nonzero()
    if masked_action.numel():
        assert dist.log_prob(masked_action[0].expand(4, 5))[0, 0].item() == -math.inf


def test_entropy_matches_float64_reference_and_zero_for_single_valid() -> None:
    logits, mask = random_case((4, 6, 8), seed=13)
    mask[0, 0] = torch.tensor([False, False, True, False, False, False, False, False])
    dist = MaskedCategorical(logits, mask)
    p = reference_probs(logits.numpy(), mask.numpy())
    ref = -np.where(mask.numpy(), p * np.log(np.where(mask.numpy(), p, 1.0)), 0.0).sum(-1)
    ent = dist.entropy()
    assert ent.shape == (4, 6) and torch.isfinite(ent).all()
    np.testing.assert_allclose(ent.numpy(), ref, rtol=0, atol=1e-5)
    assert ent[0, 0].item() == 0.0
    single = MaskedCategorical(torch.tensor([[1e4, -3.0, 2.0]]), torch.tensor([[0, 1, 0]]))
    assert single.entropy().item() == 0.0


@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_entropy_and_log_prob_gradients_have_no_nan(scale: float) -> None:
    logits, mask = random_case((4, 6, 8), seed=14)
    mask[1, 2] = torch.tensor([True] + [False] * 7)
    logits = (logits * scale).requires_grad_(True)
    dist = MaskedCategorical(logits, mask)
    actions = dist.sample(generator=torch.Generator().manual_seed(3))
    loss = dist.entropy().sum() - dist.log_prob(actions).sum() + (dist.probs**2).sum()
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.isfinite(grad).all()
    assert torch.all(grad[~mask] == 0.0)
    (ent_grad,) = torch.autograd.grad(MaskedCategorical(logits, mask).entropy().sum(), logits)
    assert torch.isfinite(ent_grad).all()
    assert torch.all(ent_grad[~mask] == 0.0)


def test_probs_and_batch_shape() -> None:
    logits, mask = random_case((2, 3, 4), seed=15)
    dist = MaskedCategorical(logits, mask.float())
    assert dist.batch_shape == (2, 3)
    assert torch.equal(dist.probs, bmsoftmax(logits, mask))
    assert torch.all(dist.probs[~mask] == 0.0)


def test_masked_categorical_validation() -> None:
    with pytest.raises(MaskError, match=r"\[2, 3\].*\[2, 4\]"):
        MaskedCategorical(torch.zeros(2, 4), torch.ones(2, 3, dtype=torch.bool))
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[2] = False
    with pytest.raises(MaskError, match=r"1 of 3 row.*\(2,\)"):
        MaskedCategorical(torch.zeros(3, 4), mask)


# --------------------------------------------------------------------------------------- nan and inf valid logits
def test_nan_in_a_valid_logit_raises_mask_error_naming_the_row() -> None:
    logits = torch.zeros(3, 4)
    logits[1, 2] = math.nan
    mask = torch.ones(3, 4, dtype=torch.bool)
    for call in (MaskedCategorical, bmsoftmax, masked_log_softmax):
        with pytest.raises(MaskError, match=r"1 of 3 rows holds nan.*row index \(1,\)"):
            call(logits, mask)
    mask[1, 2] = False  # the same nan at a masked entry changes nothing
    torch.testing.assert_close(MaskedCategorical(logits, mask).probs[1], torch.tensor([1 / 3, 1 / 3, 0, 1 / 3]))
    with pytest.raises(MaskError, match="the only row"):
        bmsoftmax(torch.tensor([0.0, math.nan]), torch.tensor([True, True]))


def test_two_pos_inf_valid_logits_share_the_mass() -> None:
    inf = math.inf
    logits = torch.tensor([[inf, 3.0, inf, 1.0, inf], [0.0, inf, 2.0, -1.0, 5.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)  # the third +inf is masked
    dist = MaskedCategorical(logits, mask)
    expected = torch.tensor([[0.5, 0.0, 0.5, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0, 0.0]])
    assert torch.equal(dist.probs, expected)
    assert torch.equal(bmsoftmax(logits, mask), expected)
    torch.testing.assert_close(dist.log_prob(torch.tensor([2, 1])), torch.tensor([math.log(0.5), 0.0]))
    assert dist.log_prob(torch.tensor([1, 0])).tolist() == [-inf, -inf]
    torch.testing.assert_close(dist.entropy(), torch.tensor([math.log(2), 0.0]))
    assert dist.mode().tolist() == [0, 1]
    draws = dist.sample((500,), generator=torch.Generator().manual_seed(0))
    assert set(draws[:, 0].tolist()) == {0, 2} and set(draws[:, 1].tolist()) == {1}
    (dist.entropy().sum() + dist.log_prob(torch.tensor([2, 1])).sum()).backward()
    assert torch.isfinite(logits.grad).all()


def test_neg_inf_valid_logit_gets_zero_probability_and_all_neg_inf_raises() -> None:
    inf = math.inf
    logits = torch.tensor([[-inf, 0.0, 0.0], [1.0, -inf, 2.0]], requires_grad=True)
    mask = torch.ones(2, 3, dtype=torch.bool)
    dist = MaskedCategorical(logits, mask)
    assert dist.probs[0, 0] == 0 and dist.probs[1, 1] == 0 and torch.isfinite(dist.probs).all()
    torch.testing.assert_close(dist.entropy()[0], torch.tensor(math.log(2)))
    dist.entropy().sum().backward()
    assert torch.isfinite(logits.grad).all()
    dead = torch.tensor([[-inf, -inf, 5.0], [0.0, 1.0, 2.0]])
    with pytest.raises(MaskError, match=r"-inf at every valid entry.*row index \(0,\)"):
        MaskedCategorical(dead, torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool))
