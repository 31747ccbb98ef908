"""CAC's directional contrastive loss on tensors small enough to work out by hand."""

import math

import pytest
import torch

from eochange.errors import ConfigError
from eochange.tasks.cac_loss import (
    NegativeBank,
    directional_contrastive_loss,
    overlap_entries,
    pick_negatives,
)

# Two negatives: n_a = (1, 0) with pseudo-label 0, n_b = (-1, 0) with pseudo-label 1.
NEGATIVES = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
NEGATIVE_LABELS = torch.tensor([0, 1])


def _loss(c1, c2, y1=0, y2=1, temperature=1.0, threshold=0.75, **kwargs):
    z1 = torch.tensor([[1.0, 0.0]], requires_grad=True)
    z2 = torch.tensor([[0.0, 1.0]], requires_grad=True)
    result = directional_contrastive_loss(
        z1, z2, torch.tensor([y1]), torch.tensor([y2]), torch.tensor([c1]), torch.tensor([c2]),
        NEGATIVES, NEGATIVE_LABELS, temperature=temperature, threshold=threshold, **kwargs,
    )  # fmt: skip
    return result, z1, z2


def test_direction_1_when_crop_2_is_the_confident_target():
    # p = z1.z2 = 0; n_a shares the anchor's label 0 and is left out; n_b: z1.n_b = -1
    result, z1, z2 = _loss(c1=0.5, c2=0.9)
    expected = math.log(1 + math.exp(-1))  # -log(e^0 / (e^0 + e^-1)) = 0.3133
    assert result.direction1.item() == pytest.approx(expected, abs=1e-6)
    assert result.direction2.item() == 0 and (result.active1, result.active2) == (1, 0)
    assert result.loss.item() == pytest.approx(expected, abs=1e-6)
    result.loss.backward()
    # d/dz1 = -z2 + softmax-weighted (z2, n_b): w_p = 1 / (1 + e^-1), w_b = 1 - w_p
    w_b = 1 / (1 + math.e)
    torch.testing.assert_close(z1.grad, torch.tensor([[-w_b, -w_b]]))
    assert torch.all(z2.grad == 0)  # the target is behind a stop-gradient


def test_direction_2_filters_negatives_with_its_own_pseudo_label():
    # anchors are now z2 with label 1: n_b is left out, n_a (z2.n_a = 0) stays
    result, z1, z2 = _loss(c1=0.9, c2=0.5)
    assert (result.active1, result.active2) == (0, 1)
    assert result.direction2.item() == pytest.approx(math.log(2), abs=1e-6)
    result.loss.backward()
    assert torch.all(z1.grad == 0)  # z1 is only a (stopped) target here


def test_temperature_scales_the_logits():
    result, _, _ = _loss(c1=0.5, c2=0.9, temperature=0.5)
    # z1.n_b / 0.5 = -2
    assert result.loss.item() == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-6)
    # tau 0.1: logits 0 (positive), 10 (n_a, filtered but in the shift), -10 (n_b). The
    # reference shifts by m = 10 and adds 1e-8 twice, which is visible at this scale:
    # -log(e^-10 / (e^-10 + e^-20 + 1e-8) + 1e-8) = 2.65e-4, not log(1 + e^-10) = 4.5e-5.
    result, _, _ = _loss(c1=0.5, c2=0.9, temperature=0.1)
    shifted = math.exp(-10) / (math.exp(-10) + math.exp(-20) + 1e-8) + 1e-8
    assert result.loss.item() == pytest.approx(-math.log(shifted), rel=1e-3)  # float32


@pytest.mark.parametrize(("c1", "c2"), [(0.5, 0.7), (0.9, 0.9), (0.7, 0.5), (0.75, 0.2)])
def test_nothing_active_gives_exactly_zero(c1, c2):
    # a target at or below the threshold, or equal confidences: no direction is active
    result, z1, z2 = _loss(c1=c1, c2=c2)
    assert result.loss.item() == 0.0 and (result.active1, result.active2) == (0, 0)
    result.loss.backward()  # still connected to the graph, with zero gradients
    assert torch.all(z1.grad == 0) and torch.all(z2.grad == 0)


def test_threshold_is_strict_and_configurable():
    assert _loss(c1=0.5, c2=0.75)[0].active1 == 0
    assert _loss(c1=0.5, c2=0.75, threshold=0.7)[0].active1 == 1


def test_mean_over_active_positions_and_sum_of_directions():
    # row 0: direction 1 (loss log(1 + e^-1)); row 1: direction 2 (loss log 2);
    # row 2: inactive (target not confident). L = L1 + L2, each a mean over its rows.
    z1 = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    z2 = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    result = directional_contrastive_loss(
        z1, z2, torch.tensor([0, 0, 0]), torch.tensor([1, 1, 1]),
        torch.tensor([0.5, 0.9, 0.1]), torch.tensor([0.9, 0.5, 0.2]),
        NEGATIVES, NEGATIVE_LABELS, temperature=1.0,
    )  # fmt: skip
    assert (result.active1, result.active2) == (1, 1)
    assert result.direction1.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    assert result.direction2.item() == pytest.approx(math.log(2), abs=1e-6)
    assert result.loss.item() == pytest.approx(math.log(2) + math.log(1 + math.exp(-1)), abs=1e-6)


def _naive(z1, z2, y1, c1, c2, negatives, labels, tau, threshold):
    """Direction 1 straight from the formula, no shift, no chunks."""
    active = (c2 > threshold) & (c1 < c2)
    p = (z1 * z2).sum(1) / tau
    keep = labels[None, :] != y1[:, None]
    denominator = p.exp() + ((z1 @ negatives.T / tau).exp() * keep).sum(1)
    loss = -(p.exp() / denominator).log()
    return (loss * active).sum() / active.sum()


@pytest.mark.parametrize("chunk", [1, 7, 8000])
def test_random_case_matches_the_formula_at_any_chunk_size(chunk):
    generator = torch.Generator().manual_seed(0)
    n, pool, dim = 40, 50, 8
    z1 = torch.nn.functional.normalize(torch.randn(n, dim, generator=generator), dim=1)
    z2 = torch.nn.functional.normalize(torch.randn(n, dim, generator=generator), dim=1)
    negatives = torch.nn.functional.normalize(torch.randn(pool, dim, generator=generator), dim=1)
    labels = torch.randint(0, 3, (pool,), generator=generator)
    y1, y2 = (torch.randint(0, 3, (n,), generator=generator) for _ in range(2))
    c1, c2 = torch.rand(n, generator=generator), torch.rand(n, generator=generator)
    z1.requires_grad_(True)
    result = directional_contrastive_loss(z1, z2, y1, y2, c1, c2, negatives, labels,
                                          temperature=1.0, chunk=chunk)  # fmt: skip
    expected = _naive(z1, z2, y1, c1, c2, negatives, labels, 1.0, 0.75)
    # tau 1: the reference's shift and 1e-8 terms stay below float precision
    torch.testing.assert_close(result.direction1, expected, rtol=1e-5, atol=1e-6)
    reverse = _naive(z2, z1, y2, c2, c1, negatives, labels, 1.0, 0.75)
    torch.testing.assert_close(result.direction2, reverse, rtol=1e-5, atol=1e-6)
    result.loss.backward()  # z1 is an anchor in direction 1 and a stopped target in 2
    grad = z1.grad.clone()
    z1.grad = None
    expected.backward()
    torch.testing.assert_close(grad, z1.grad, rtol=1e-5, atol=1e-6)


def test_shape_errors():
    z = torch.zeros(2, 3)
    labels, conf = torch.zeros(2, dtype=torch.long), torch.zeros(2)
    with pytest.raises(ValueError, match="z1 and z2"):
        directional_contrastive_loss(z, torch.zeros(3, 3), labels, labels, conf, conf,
                                     z, labels)  # fmt: skip
    with pytest.raises(ValueError, match="confidence2"):
        directional_contrastive_loss(z, z, labels, labels, conf, torch.zeros(3), z, labels)
    with pytest.raises(ValueError, match="negatives"):
        directional_contrastive_loss(z, z, labels, labels, conf, conf, torch.zeros(2, 4), labels)


def test_overlap_entries_unflip_cut_and_flatten():
    # one image, one channel, a 4 x 4 map on the stride-8 grid of a 32-px crop
    features = torch.arange(16.0).view(1, 1, 4, 4)
    labels = torch.arange(16).view(1, 4, 4)
    window = torch.tensor([[8, 0, 32, 16]])  # rows 1..3, columns 0..1
    z, y = overlap_entries([features, labels], window, torch.tensor([False]))
    assert z.shape == (6, 1) and z[:, 0].tolist() == [4, 5, 8, 9, 12, 13]
    assert y.tolist() == [4, 5, 8, 9, 12, 13]
    # a flipped crop is flipped back first: column j holds what was at 3 - j
    z, y = overlap_entries([features, labels], window, torch.tensor([True]))
    assert y.tolist() == [7, 6, 11, 10, 15, 14]
    # two images: entries are concatenated image after image
    batch = torch.stack([labels[0], labels[0] + 100])
    windows = torch.tensor([[0, 0, 8, 16], [24, 24, 32, 32]])
    (y,) = overlap_entries([batch], windows, torch.tensor([False, False]))
    assert y.tolist() == [0, 1, 115]


def test_pick_negatives_all_or_a_subset():
    features = torch.randn(2, 3, 4, 4)
    labels = torch.randint(0, 5, (2, 4, 4))
    every, every_labels = pick_negatives(features, labels)
    assert every.shape == (32, 3) and every_labels.shape == (32,)
    # position (b=1, row 2, col 3) is row 1 * 16 + 2 * 4 + 3 = 27
    torch.testing.assert_close(every[27], features[1, :, 2, 3])
    assert every_labels[27] == labels[1, 2, 3] and not every.requires_grad
    some, some_labels = pick_negatives(features, labels, 5, torch.Generator().manual_seed(0))
    assert some.shape == (5, 3)
    rows = [int((every == row).all(1).nonzero()) for row in some]
    assert len(set(rows)) == 5 and some_labels.tolist() == every_labels[rows].tolist()
    with pytest.raises(ConfigError, match="negatives_per_crop"):
        pick_negatives(features, labels, 33)


def test_negative_bank_keeps_the_last_steps():
    bank = NegativeBank(2)  # step_save 1: this step and the previous one
    for step in range(3):
        pool, labels = bank.push(
            torch.full((step + 1, 2), float(step)), torch.full((step + 1,), step)
        )
    assert labels.tolist() == [1, 1, 2, 2, 2] and len(bank) == 5
    assert pool[:, 0].tolist() == [1, 1, 2, 2, 2]
    restored = NegativeBank(2)  # from a checkpoint: the same pool after the next push
    restored.load_state_dict(bank.state_dict())
    assert torch.equal(restored.push(pool[:1], labels[:1])[1], bank.push(pool[:1], labels[:1])[1])
    with pytest.raises(ConfigError, match="at least the current step"):
        NegativeBank(0)


def test_float32_under_autocast():
    generator = torch.Generator().manual_seed(3)
    z1, z2, negatives = (
        torch.nn.functional.normalize(torch.randn(n, 8, generator=generator), dim=1)
        for n in (6, 6, 20)
    )
    args = (torch.zeros(6, dtype=torch.long), torch.ones(6, dtype=torch.long),
            torch.full((6,), 0.5), torch.full((6,), 0.9), negatives,
            torch.randint(0, 3, (20,), generator=generator))  # fmt: skip
    plain = directional_contrastive_loss(z1, z2, *args).loss
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = directional_contrastive_loss(z1.bfloat16(), z2.bfloat16(), *args).loss
    assert mixed.dtype == torch.float32
    expected = directional_contrastive_loss(z1.bfloat16().float(), z2.bfloat16().float(), *args)
    torch.testing.assert_close(mixed, expected.loss)
    assert abs(mixed.item() - plain.item()) < 0.1
