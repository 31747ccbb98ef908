import pytest
import torch

from eochange.models import create

# Reference section 9.3: n_in -> (10 classes, 9 classes).
TABLE = {
    2: (13_395_338, 13_395_273),
    4: (13_396_490, 13_396_425),
    10: (13_399_946, 13_399_881),
    12: (13_401_098, 13_401_033),
    13: (13_401_674, 13_401_609),
    15: (13_402_826, 13_402_761),
}


@pytest.mark.parametrize("n_in", sorted(TABLE))
def test_parameter_table(n_in):
    for classes, expected in zip((10, 9), TABLE[n_in], strict=True):
        with torch.device("meta"):
            model = create("unet_dfc2020", in_channels=n_in, num_classes=classes)
        assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected


def test_keys():
    with torch.device("meta"):
        model = create("unet_dfc2020")
    state = model.state_dict()
    assert len(state) == 128
    tops = {k.split(".")[0] for k in state}
    assert tops == {
        "inc",
        "outc",
        *(f"down{i}" for i in range(1, 5)),
        *(f"up{i}" for i in range(1, 5)),
    }
    assert state["outc.conv.weight"].shape == (10, 64, 1, 1)
    assert sum(v.ndim == 4 for v in state.values()) == 19  # 9 double convs + outc


def test_forward_sizes_date_axis_and_gradients():
    torch.manual_seed(0)
    model = create("unet_dfc2020", in_channels=4, num_classes=9)
    out = model(torch.randn(2, 4, 37, 45))
    assert out.shape == (2, 9, 37, 45)
    out.mean().backward()
    assert model.inc.conv[0].weight.grad.abs().sum() > 0
    model.eval()
    x = torch.randn(1, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x[:, None]))
    with pytest.raises(ValueError, match="expected"):
        model(torch.randn(1, 12, 32, 32))
