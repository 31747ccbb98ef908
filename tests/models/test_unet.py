import pytest
import torch
from keylisting import random_state_dict, read_listing

from eochange.models.unet import UNet


def test_parameter_count_and_official_keys():
    model = UNet()
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 983_654
    state = model.state_dict()
    assert len(state) == 116
    expected = {k: s for k, (s, _) in read_listing("unet").items()}
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    assert not any("skip_conv" in k for k in state)
    model.load_state_dict(random_state_dict("unet"), strict=True)


def test_one_date_in_both_layouts_gives_the_same_map():
    model = UNet().eval()
    x = torch.randn(2, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x[:, None], torch.zeros(2, 1)))
    assert model(x).shape == (2, 6, 32, 32)


def test_gradients_odd_sizes_and_errors():
    model = UNet(in_channels=3, num_classes=2)
    out = model(torch.randn(1, 3, 20, 28))
    assert out.shape == (1, 2, 20, 28)
    out.sum().backward()
    assert model.in_conv.conv.conv[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="one date, got T=6"):
        model(torch.randn(1, 6, 3, 32, 32))
    with pytest.raises(ValueError, match="expected"):
        model(torch.randn(1, 4, 32, 32))
