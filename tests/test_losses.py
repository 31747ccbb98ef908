import math

import pytest
import torch

from eochange.errors import ConfigError
from eochange.losses import segmentation_cross_entropy


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
