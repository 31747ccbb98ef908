import math

import pytest
import torch
from torch import nn

from eochange.errors import ConfigError
from eochange.models import create
from eochange.models.resnet import ResNet

# Reference section 6.3: ResNet50 = 23,519,114 + 3,136 n_in + 2,049 (numCls - 10).
RESNET50 = {
    (2, 10): 23_525_386,
    (3, 10): 23_528_522,
    (5, 10): 23_534_794,
    (10, 10): 23_550_474,
    (12, 10): 23_556_746,
    (13, 10): 23_559_882,
    (3, 17): 23_542_865,
    (10, 17): 23_564_817,
    (12, 17): 23_571_089,
}
OTHERS = {"resnet18": 11_209_866, "resnet34": 21_318_026}
OTHERS |= {"resnet101": 42_548_874, "resnet152": 58_192_522}
ENTRIES = {"resnet18": 123, "resnet34": 219, "resnet50": 321, "resnet101": 627, "resnet152": 933}


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(("n_in", "classes"), sorted(RESNET50))
def test_resnet50_parameter_counts(n_in, classes):
    with torch.device("meta"):
        model = create("resnet50", in_channels=n_in, num_classes=classes)
    assert _count(model) == RESNET50[n_in, classes]
    assert _count(model) == 23_519_114 + 3_136 * n_in + 2_049 * (classes - 10)


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_counts_and_entries_of_every_depth(name):
    with torch.device("meta"):
        model = create(name)
    if name in OTHERS:
        assert _count(model) == OTHERS[name]
    assert len(model.state_dict()) == ENTRIES[name]


def test_toolbox_key_layout():
    model = create("resnet50", in_channels=12, num_classes=10)
    state = model.state_dict()
    for key in (
        "conv1.weight",
        "encoder.0.weight",
        "encoder.1.weight",
        "encoder.1.running_var",
        "encoder.4.0.conv1.weight",
        "encoder.4.0.bn1.running_mean",
        "encoder.4.0.downsample.0.weight",
        "encoder.4.0.downsample.1.weight",
        "encoder.7.2.conv3.weight",
        "encoder.7.2.bn3.num_batches_tracked",
        "FC.weight",
        "FC.bias",
    ):
        assert key in state, key
    assert not any(k.startswith(("bn1.", "layer", "fc.")) for k in state)
    # one module registered twice: both keys, one tensor
    assert model.conv1 is model.encoder[0]
    assert state["conv1.weight"].data_ptr() == state["encoder.0.weight"].data_ptr()
    assert state["encoder.0.weight"].shape == (64, 12, 7, 7)
    assert state["FC.weight"].shape == (10, 2048)
    assert isinstance(model.encoder[8], nn.AdaptiveAvgPool2d)
    assert len(model.encoder) == 9
    assert create("resnet18").state_dict()["FC.weight"].shape == (10, 512)


def test_toolbox_initialisation():
    torch.manual_seed(0)
    model = create("resnet50")
    conv = model.encoder[7][0].conv2.weight  # 512 x 512 x 3 x 3, fan_in 4608
    assert conv.std().item() == pytest.approx(math.sqrt(2 / 4608), rel=0.02)
    assert model.FC.weight.std().item() == pytest.approx(math.sqrt(2 / 2048), rel=0.05)
    bound = 1 / math.sqrt(2048)  # PyTorch's default Linear bias
    assert model.FC.bias.abs().max().item() <= bound
    assert model.FC.bias.abs().max().item() > 0
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)


def test_classifier_forward_any_size_and_date_axis():
    torch.manual_seed(0)
    model = create("resnet50", in_channels=4, num_classes=17).eval()
    x = torch.randn(2, 4, 40, 24)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, 17)
        torch.testing.assert_close(out, model(x[:, None]))
    with pytest.raises(ValueError, match="one date, got T=2"):
        model(torch.randn(1, 2, 4, 32, 32))
    with pytest.raises(ValueError, match=r"expected \(B, 1, 4, H, W\)"):
        model(torch.randn(1, 3, 32, 32))
    small = create("resnet18", in_channels=3)
    small(torch.randn(2, 3, 32, 32)).sum().backward()
    assert small.conv1.weight.grad.abs().sum() > 0


def test_backbone_has_torchvision_names():
    with torch.device("meta"):
        backbone = ResNet(50, in_channels=3)
    state = backbone.state_dict()
    assert len(state) == ENTRIES["resnet50"] - 3  # no duplicate conv1, no FC
    for key in ("conv1.weight", "bn1.running_mean", "layer1.0.downsample.0.weight"):
        assert key in state
    for key in ("layer1.0.conv3.weight", "layer4.2.bn3.weight", "layer3.5.bn2.running_var"):
        assert key in state
    assert not any(k.startswith(("fc.", "avgpool")) for k in state)


@pytest.mark.parametrize(
    ("output_stride", "size", "layer3", "layer4"),
    [(32, 2, 1, (1, 1, 1)), (16, 4, 1, (2, 4, 8)), (8, 8, 2, (4, 8, 16))],
)
def test_output_stride_dilation_and_multi_grid(output_stride, size, layer3, layer4):
    grid = None if output_stride == 32 else (1, 2, 4)
    backbone = ResNet(50, in_channels=5, output_stride=output_stride, multi_grid=grid).eval()
    assert backbone.output_stride == output_stride
    assert {block.conv2.dilation for block in backbone.layer3} == {(layer3, layer3)}
    assert tuple(block.conv2.dilation[0] for block in backbone.layer4) == layer4
    assert tuple(block.conv2.padding[0] for block in backbone.layer4) == layer4
    with torch.no_grad():
        stages = backbone.forward_stages(torch.randn(1, 5, 64, 64))
        out = backbone(torch.randn(1, 5, 32, 32))
    assert [s.shape[1] for s in stages] == [256, 512, 1024, 2048]
    assert stages[0].shape[-2:] == (16, 16)
    assert stages[3].shape[-2:] == (size, size)
    assert out.shape == (1, 2048, size // 2, size // 2)


def test_basic_blocks_with_dilation_and_custom_strides():
    backbone = ResNet(18, in_channels=2, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4)).eval()
    with torch.no_grad():
        assert backbone(torch.randn(1, 2, 32, 32)).shape == (1, 512, 4, 4)
    assert backbone.layer4[1].conv1.dilation == (4, 4)


def test_bad_backbone_arguments():
    with pytest.raises(ConfigError, match="depth"):
        ResNet(42)
    with pytest.raises(ConfigError, match="output_stride"):
        ResNet(50, output_stride=4)
    with pytest.raises(ConfigError, match="multi_grid: expected 3"):
        ResNet(50, multi_grid=(1, 2))
    with pytest.raises(ConfigError, match="4 values"):
        ResNet(50, strides=(1, 2, 2))
