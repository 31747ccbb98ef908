import math

import pytest
import torch

from eochange.errors import ConfigError, DataError
from eochange.losses import segmentation_cross_entropy, tanimoto_complement_loss


def _logits() -> torch.Tensor:
    # (B=1, K=2, H=1, W=2): pixel 0 has logits [0, ln 3] (softmax [1/4, 3/4]),
    # pixel 1 has logits [ln 2, 0] (softmax [2/3, 1/3]).
    return torch.tensor([[[[0.0, math.log(2)]], [[math.log(3), 0.0]]]])


def test_cross_entropy_known_values_with_all_pixels_labelled():
    target = torch.tensor([[[1, 0]]])
    # CE = -ln(3/4) + -ln(2/3) = ln(4/3) + ln(3/2) = ln 2, averaged over 2 pixels
    for reduction in ("upstream", "valid"):
        loss = segmentation_cross_entropy(_logits(), target, reduction)
        assert loss.item() == pytest.approx(math.log(2) / 2, rel=1e-6)
    other = segmentation_cross_entropy(_logits(), torch.tensor([[[0, 1]]]))
    # -ln(1/4) - ln(1/3) = ln 12
    assert other.item() == pytest.approx(math.log(12) / 2, rel=1e-6)


def test_upstream_divides_by_all_pixels_and_valid_by_labelled_ones():
    target = torch.tensor([[[1, -1]]])
    upstream = segmentation_cross_entropy(_logits(), target, "upstream")
    valid = segmentation_cross_entropy(_logits(), target, "valid")
    assert upstream.item() == pytest.approx(math.log(4 / 3) / 2, rel=1e-6)
    assert valid.item() == pytest.approx(math.log(4 / 3), rel=1e-6)
    assert segmentation_cross_entropy(_logits(), target) == upstream  # upstream by default


def test_all_ignored_gives_zero():
    target = torch.full((1, 1, 2), -1)
    for reduction in ("upstream", "valid"):
        loss = segmentation_cross_entropy(_logits(), target, reduction)
        assert loss.item() == 0.0 and not torch.isnan(loss)


@pytest.mark.parametrize(("reduction", "scale"), [("upstream", 0.5), ("valid", 1.0)])
def test_gradients_flow_to_labelled_pixels_only(reduction, scale):
    logits = _logits().requires_grad_(True)
    segmentation_cross_entropy(logits, torch.tensor([[[1, -1]]]), reduction).backward()
    # d CE / d logits = softmax - one_hot = [1/4, 3/4] - [0, 1] at pixel 0, 0 where ignored
    expected = torch.tensor([[[[0.25, 0.0]], [[-0.25, 0.0]]]]) * scale
    torch.testing.assert_close(logits.grad, expected)


def test_unknown_reduction_raises():
    with pytest.raises(ConfigError, match="reduction"):
        segmentation_cross_entropy(_logits(), torch.tensor([[[1, 0]]]), "mean")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_logits_are_computed_in_float32(dtype):
    logits = _logits().to(dtype)
    loss = segmentation_cross_entropy(logits, torch.tensor([[[1, 0]]]))
    assert loss.dtype == torch.float32
    exact = segmentation_cross_entropy(logits.float(), torch.tensor([[[1, 0]]]))
    assert loss.item() == exact.item()
    assert loss.item() == pytest.approx(math.log(2) / 2, abs=1e-2)


# ------------------------------------------------------------- Tanimoto with complement (ERCNN-DRS)


def _framed(inner: list[list[float]], frame: float) -> torch.Tensor:
    """A (1, 4, 4) map: ``inner`` (2 x 2) in the middle, ``frame`` on the 1-px border."""
    out = torch.full((1, 4, 4), frame)
    out[0, 1:3, 1:3] = torch.tensor(inner)
    return out


def test_tanimoto_perfect_prediction_is_almost_zero():
    target = _framed([[1.0, 0.0], [0.0, 1.0]], 0.0)
    # T = Tc = 2 / (2 + 1e-4): loss = 1 - 2 / 2.0001 = 5e-5
    loss = tanimoto_complement_loss(target.clone(), target)
    assert loss.item() == pytest.approx(1 - 2 / 2.0001, abs=1e-7)  # float32 near 1
    assert loss.item() < 1e-4


def test_tanimoto_hand_worked_4x4():
    target = _framed([[1.0, 0.0], [0.0, 1.0]], 1.0)
    pred = _framed([[0.5, 0.5], [0.0, 1.0]], 0.0)
    # inner: sum(y p) = 1.5, sum(y^2 + p^2) = 2 + 1.5 -> T = 1.5 / (3.5 - 1.5 + 1e-4)
    # complement: (1-y) = [[0,1],[1,0]], (1-p) = [[.5,.5],[1,0]] -> 1.5 / (2 + 1.5 - 1.5 + 1e-4)
    expected = 1 - 1.5 / 2.0001
    assert tanimoto_complement_loss(pred, target).item() == pytest.approx(expected, rel=1e-6)
    # border=0 also counts the frame (y = 1, p = 0 on 12 pixels):
    # T = 1.5 / (14 + 1.5 - 1.5 + 1e-4); Tc = 1.5 / (2 + 13.5 - 1.5 + 1e-4)
    whole = 1 - (1.5 / 14.0001 + 1.5 / 14.0001) / 2
    assert tanimoto_complement_loss(pred, target, border=0).item() == pytest.approx(whole, rel=1e-6)


def test_tanimoto_border_pixels_are_ignored():
    generator = torch.Generator().manual_seed(0)
    pred = torch.rand(2, 6, 6, generator=generator)
    target = torch.rand(2, 6, 6, generator=generator)
    changed = pred.clone()
    changed[:, 0], changed[:, -1], changed[:, :, 0], changed[:, :, -1] = 1.0, 0.0, 0.3, 0.9
    for reduction in ("batch", "sample"):
        before = tanimoto_complement_loss(pred, target, reduction)
        assert tanimoto_complement_loss(changed, target, reduction).item() == before.item()
        full = tanimoto_complement_loss(pred, target, reduction, border=0)
        assert tanimoto_complement_loss(changed, target, reduction, border=0) != full
    inner_changed = pred.clone()
    inner_changed[:, 2, 3] = 1 - inner_changed[:, 2, 3]
    assert tanimoto_complement_loss(inner_changed, target) != tanimoto_complement_loss(pred, target)


def test_tanimoto_batch_and_sample_reductions_differ():
    # sample 0 perfect: loss 1 - 2 / 2.0001; sample 1 all wrong: T = Tc = 0, loss 1.
    target = torch.cat([_framed([[1.0, 0.0], [0.0, 1.0]], 0.0), _framed([[1, 1], [0, 0]], 0.0)])
    pred = torch.cat([_framed([[1.0, 0.0], [0.0, 1.0]], 0.0), _framed([[0, 0], [1, 1]], 0.0)])
    sample = tanimoto_complement_loss(pred, target, "sample")
    assert sample.item() == pytest.approx((1 - 2 / 2.0001 + 1) / 2, rel=1e-6)
    # batch: sum(y p) = 2, sum(y^2 + p^2) = 8 (both terms) -> 1 - 2 / 6.0001
    batch = tanimoto_complement_loss(pred, target)  # batch by default
    assert batch.item() == pytest.approx(1 - 2 / 6.0001, rel=1e-6)


def test_tanimoto_gradient_and_half_precision():
    target = _framed([[1.0, 0.0], [0.0, 1.0]], 0.0)
    pred = _framed([[0.5, 0.5], [0.0, 1.0]], 0.7).requires_grad_(True)
    tanimoto_complement_loss(pred, target).backward()
    assert pred.grad[0, 0].abs().sum() == 0 and pred.grad[0, 1, 1] != 0  # border: no gradient
    half = tanimoto_complement_loss(pred.detach().half(), target.half())
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(1 - 1.5 / 2.0001, rel=1e-3)


def test_tanimoto_errors():
    pred = torch.rand(2, 4, 4)
    with pytest.raises(DataError, match="same|share"):
        tanimoto_complement_loss(pred, torch.rand(2, 4, 5))
    with pytest.raises(DataError, match=r"\(B, \.\.\., H, W\)"):
        tanimoto_complement_loss(torch.rand(4, 4), torch.rand(4, 4))
    with pytest.raises(ConfigError, match="reduction"):
        tanimoto_complement_loss(pred, pred, "mean")
    with pytest.raises(ConfigError, match="border"):
        tanimoto_complement_loss(pred, pred, border=-1)
    with pytest.raises(DataError, match="border leaves no pixel"):
        tanimoto_complement_loss(pred, pred, border=2)
