import math

import pytest
import torch
from torch import nn

from eochange.models import create

# Reference section 6.3: DenseNet121 = 7,599,818 + 3,136 n_in + 65,537 (numCls - 10).
DENSENET121 = {
    (2, 10): 7_606_090,
    (3, 10): 7_609_226,
    (5, 10): 7_615_498,
    (10, 10): 7_631_178,
    (12, 10): 7_637_450,
    (13, 10): 7_640_586,
    (3, 17): 8_067_985,
    (10, 17): 8_089_937,
    (12, 17): 8_096_209,
}
# name: (parameters at 12 bands / 10 classes, state_dict entries, classifier inputs)
VARIANTS = {
    "densenet121": (7_637_450, 727, 65_536),
    "densenet161": (27_927_466, 967, 141_312),
    "densenet169": (13_577_674, 1015, 106_496),
    "densenet201": (19_349_962, 1207, 122_880),
}


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(("n_in", "classes"), sorted(DENSENET121))
def test_densenet121_parameter_counts(n_in, classes):
    with torch.device("meta"):
        model = create("densenet121", in_channels=n_in, num_classes=classes)
    assert _count(model) == DENSENET121[n_in, classes]
    assert _count(model) == 7_599_818 + 3_136 * n_in + 65_537 * (classes - 10)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variants_counts_and_keys(name):
    params, entries, flat = VARIANTS[name]
    with torch.device("meta"):
        model = create(name)
    state = model.state_dict()
    assert _count(model) == params
    assert len(state) == entries
    assert state["classifier.weight"].shape == (10, flat)
    width = 96 if name == "densenet161" else 64
    assert state["encoder.0.weight"].shape == (width, 12, 7, 7)
    for key in (
        "encoder.1.weight",
        "encoder.1.running_mean",
        "encoder.4.denselayer1.norm1.weight",
        "encoder.4.denselayer1.conv1.weight",
        "encoder.4.denselayer6.conv2.weight",
        "encoder.5.norm.weight",
        "encoder.5.conv.weight",
        "encoder.6.denselayer12.norm2.running_var",
        "encoder.7.conv.weight",
        "encoder.9.norm.num_batches_tracked",
        "encoder.10.denselayer1.conv1.weight",
        "encoder.11.weight",
        "encoder.11.running_var",
        "classifier.bias",
    ):
        assert key in state, key
    assert not any(k.startswith("encoder.12") for k in state)
    # no ReLU or pooling after norm5
    assert len(model.encoder) == 12 and isinstance(model.encoder[11], nn.BatchNorm2d)


def test_toolbox_head_on_256():
    torch.manual_seed(0)
    model = create("densenet121", in_channels=3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 256, 256)).shape == (1, 10)


def test_other_sizes_are_refused_with_the_fix_named():
    model = create("densenet121", in_channels=3).eval()
    with pytest.raises(ValueError, match=r"needs 256x256 input, got 128x128.*global_pool=True"):
        model(torch.randn(2, 3, 128, 128))


def test_global_pool_head_takes_any_size():
    torch.manual_seed(0)
    model = create("densenet121", in_channels=4, num_classes=17, global_pool=True)
    assert model.classifier.in_features == 1024
    # the formula's base holds the 10-class flattened head (65,536 x 10 + 10)
    assert _count(model) == 7_599_818 - 655_370 + 3_136 * 4 + 1024 * 17 + 17
    assert model(torch.randn(2, 4, 64, 48)).shape == (2, 17)
    model.eval()
    x = torch.randn(1, 4, 40, 40)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, 17)
        torch.testing.assert_close(out, model(x[:, None]))


def test_toolbox_initialisation():
    torch.manual_seed(0)
    model = create("densenet121")
    conv = model.encoder[10].denselayer1.conv2.weight  # 32 x 128 x 3 x 3, fan_in 1152
    assert conv.std().item() == pytest.approx(math.sqrt(2 / 1152), rel=0.05)
    assert model.classifier.weight.std().item() == pytest.approx(math.sqrt(2 / 65_536), rel=0.05)
    assert model.classifier.bias.abs().max().item() <= 1 / math.sqrt(65_536)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)
