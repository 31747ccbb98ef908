import math

import pytest
import torch
from torch import nn

from eochange.errors import ConfigError, DataError
from eochange.models import create
from eochange.models.deeplabv3plus import DeepLabV3Plus
from eochange.models.resnet import ResNet

# Reference section 9.3: n_in -> (total 10 cls, total 9 cls, backbone); the head (10x lr) is
# 16,841,322 parameters with 10 classes and 16,841,065 with 9, whatever n_in.
TABLE = {
    2: (59_338_346, 59_338_089, 42_497_024),
    4: (59_344_618, 59_344_361, 42_503_296),
    10: (59_363_434, 59_363_177, 42_522_112),
    12: (59_369_706, 59_369_449, 42_528_384),
    13: (59_372_842, 59_372_585, 42_531_520),
    15: (59_379_114, 59_378_857, 42_537_792),
}
HEAD = {10: 16_841_322, 9: 16_841_065}


def _count(params) -> int:
    return sum(p.numel() for p in params if p.requires_grad)


@pytest.mark.parametrize("n_in", sorted(TABLE))
def test_parameter_table(n_in):
    total10, total9, backbone = TABLE[n_in]
    for classes, total in ((10, total10), (9, total9)):
        for output_stride in (16, 8):
            with torch.device("meta"):
                model = create(
                    "deeplabv3plus",
                    in_channels=n_in,
                    num_classes=classes,
                    output_stride=output_stride,
                )
            assert _count(model.parameters()) == total
            ones, tens = model.param_groups()
            assert _count(ones) == backbone
            assert _count(tens) == HEAD[classes]


def test_keys_and_entries():
    with torch.device("meta"):
        model = create("deeplabv3plus")
        resnet50 = create("deeplabv3plus", backbone="resnet50")
        toolbox50 = create("resnet50")
    state = model.state_dict()
    assert len(state) == 680
    tops = {".".join(k.split(".")[:2]) for k in state}
    assert tops == {
        *(f"backbone.{n}" for n in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")),
        *(f"aspp.aspp{i}" for i in range(1, 5)),
        "aspp.global_avg_pool",
        "aspp.conv1",
        "aspp.bn1",
        "decoder.conv1",
        "decoder.bn1",
        "decoder.last_conv",
    }
    for i in range(1, 5):
        assert f"aspp.aspp{i}.atrous_conv.weight" in state
        assert f"aspp.aspp{i}.bn.running_var" in state
    assert {k.split(".")[2] for k in state if k.startswith("aspp.global_avg_pool")} == {"1", "2"}
    last = {k.split(".")[2] for k in state if k.startswith("decoder.last_conv")}
    assert last == {"0", "1", "4", "5", "8"}
    assert state["backbone.conv1.weight"].shape == (64, 12, 7, 7)
    assert state["aspp.conv1.weight"].shape == (256, 1280, 1, 1)
    assert state["decoder.conv1.weight"].shape == (48, 256, 1, 1)
    assert state["decoder.last_conv.0.weight"].shape == (256, 304, 3, 3)
    assert state["decoder.last_conv.8.weight"].shape == (10, 256, 1, 1)
    assert "decoder.last_conv.8.bias" in state
    # a ResNet-50 backbone: the toolbox ResNet50 without its FC, same head
    ones, tens = resnet50.param_groups()
    assert _count(ones) == 23_556_746 - 2048 * 10 - 10
    assert _count(tens) == HEAD[10]
    assert _count(resnet50.backbone.parameters()) == _count(toolbox50.parameters()) - 20_490


@pytest.mark.parametrize(
    ("output_stride", "aspp", "layer3", "layer4"),
    [
        (16, (6, 12, 18), 1, (2, 4, 8)),
        (8, (12, 24, 36), 2, (4, 8, 16)),
    ],
)
def test_output_strides(output_stride, aspp, layer3, layer4):
    torch.manual_seed(0)
    model = create(
        "deeplabv3plus",
        in_channels=3,
        num_classes=5,
        backbone="resnet50",
        output_stride=output_stride,
    ).eval()
    dilations = tuple(getattr(model.aspp, f"aspp{i}").atrous_conv.dilation[0] for i in (2, 3, 4))
    assert dilations == aspp
    assert model.aspp.aspp1.atrous_conv.kernel_size == (1, 1)
    assert {b.conv2.dilation[0] for b in model.backbone.layer3} == {layer3}
    assert tuple(b.conv2.dilation[0] for b in model.backbone.layer4) == layer4
    seen = []
    model.aspp.register_forward_hook(lambda module, args, out: seen.append(args[0].shape))
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        features = model.features(x)
        assert seen[0][-2:] == (64 // output_stride, 32 // output_stride)
        assert features.shape == (2, 256, 16, 8)
        out = model.classify(features, (64, 32))
        assert out.shape == (2, 5, 64, 32)
        torch.testing.assert_close(out, model(x[:, None]))
        if output_stride == 16:
            assert model(torch.randn(1, 3, 37, 53)).shape == (1, 5, 37, 53)


def test_resnet101_forward_backward_and_groups():
    torch.manual_seed(0)
    model = DeepLabV3Plus()
    # gradients for two tensors only: they must flow through the head and the backbone
    model.requires_grad_(False)
    model.backbone.conv1.weight.requires_grad_(True)
    model.aspp.aspp2.atrous_conv.weight.requires_grad_(True)
    out = model(torch.randn(2, 12, 24, 24))
    assert out.shape == (2, 10, 24, 24)
    out.mean().backward()
    model.requires_grad_(True)
    assert model.backbone.conv1.weight.grad.abs().sum() > 0
    assert model.aspp.aspp2.atrous_conv.weight.grad.abs().sum() > 0
    ones, tens = model.param_groups()
    assert {id(p) for p in ones}.isdisjoint({id(p) for p in tens})
    assert {id(p) for p in ones} | {id(p) for p in tens} == {id(p) for p in model.parameters()}
    with pytest.raises(ValueError, match="one date, got T=3"):
        model(torch.randn(1, 3, 12, 32, 32))


def test_initialisation():
    torch.manual_seed(0)
    model = create("deeplabv3plus", backbone="resnet50")
    for conv, fan_out in (
        (model.aspp.aspp2.atrous_conv, 256 * 9),
        (model.backbone.layer4[0].conv2, 512 * 9),
        (model.decoder.last_conv[0], 256 * 9),
    ):
        assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.03)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)


def _torchvision_state(depth: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    state = ResNet(depth, in_channels=3).state_dict()
    state["fc.weight"] = torch.randn(1000, 2048 if depth >= 50 else 512)
    state["fc.bias"] = torch.randn(1000)
    return state


def test_backbone_weights_load_all_but_the_stem(tmp_path):
    path = tmp_path / "resnet50-imagenet.pth"
    state = _torchvision_state(50)
    torch.save(state, path)
    torch.manual_seed(0)
    model = create("deeplabv3plus", backbone="resnet50", backbone_weights=path)
    loaded = model.backbone.state_dict()
    assert loaded["conv1.weight"].shape == (64, 12, 7, 7)
    for key in ("bn1.weight", "layer1.0.conv1.weight", "layer4.2.bn3.running_mean"):
        assert torch.equal(loaded[key], state[key])
    # the wrong depth, or a file without weights, names the file and the keys
    torch.save(_torchvision_state(18), tmp_path / "resnet18.pth")
    with pytest.raises(DataError, match=r"resnet18\.pth: not a torchvision-format ResNet-50"):
        model.load_backbone(tmp_path / "resnet18.pth")
    with pytest.raises(DataError, match=r"missing\.pth: checkpoint file not found"):
        model.load_backbone(tmp_path / "missing.pth")


def test_bad_arguments():
    with pytest.raises(ConfigError, match="backbone"):
        create("deeplabv3plus", backbone="resnet18")
    with pytest.raises(ConfigError, match="output_stride"):
        create("deeplabv3plus", output_stride=32)


# --- the CAC options -----------------------------------------------------------------


def test_projection_head():
    torch.manual_seed(0)
    model = create("deeplabv3plus", in_channels=4, num_classes=6, backbone="resnet50",
                   projection_dim=128).eval()  # fmt: skip
    state = model.state_dict()
    assert state["projection.0.weight"].shape == (256, 256, 1, 1)
    assert state["projection.2.weight"].shape == (128, 256, 1, 1)
    assert {k for k in state if k.startswith("projection")} == {
        "projection.0.weight",
        "projection.0.bias",
        "projection.2.weight",
        "projection.2.bias",
    }
    # 256 * 256 + 256 + 256 * 128 + 128 parameters, trained with the head
    plain = create("deeplabv3plus", in_channels=4, num_classes=6, backbone="resnet50")
    ones, tens = model.param_groups()
    assert _count(tens) - _count(plain.param_groups()[1]) == 98_688
    assert _count(ones) + _count(tens) == _count(model.parameters())
    # PyTorch's default init (uniform within 1 / sqrt(fan_in)), not the Kaiming of the rest
    assert model.projection[0].weight.abs().max() <= 1 / 16
    x = torch.randn(2, 4, 64, 64)
    with torch.no_grad():
        encoded = model.encode(x)
        assert encoded.shape == (2, 256, 16, 16) and encoded.min() >= 0  # after the ReLU
        z = model.project(torch.nn.functional.avg_pool2d(encoded, 2))
        assert z.shape == (2, 128, 8, 8)
        torch.testing.assert_close(z.norm(dim=1), torch.ones(2, 8, 8))
        # eval mode (no dropout): the three paths to the logits agree
        logits = model.logits(encoded)
        assert logits.shape == (2, 6, 16, 16)
        resized = torch.nn.functional.interpolate(logits, size=(64, 64), mode="bilinear",
                                                  align_corners=True)  # fmt: skip
        torch.testing.assert_close(model(x), resized)
        torch.testing.assert_close(model.classify(model.features(x), (64, 64)), resized)
    with pytest.raises(ConfigError, match="projection_dim"):
        plain.project(encoded)
    with pytest.raises(ConfigError, match="projection_dim"):
        create("deeplabv3plus", projection_dim=0)


def test_cac_head_initialisation():
    torch.manual_seed(0)
    model = create("deeplabv3plus", backbone="resnet50", head_init="fan_in")
    for conv, fan_in in (
        (model.aspp.aspp2.atrous_conv, 2048 * 9),
        (model.aspp.conv1, 1280),
        (model.decoder.last_conv[0], 304 * 9),
        (model.decoder.last_conv[8], 256),
    ):
        assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.1)
    # the backbone keeps fan-out
    conv = model.backbone.layer4[0].conv2
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.03)
    with pytest.raises(ConfigError, match="head_init"):
        create("deeplabv3plus", head_init="xavier")


def test_stem_from_rgb_weights(tmp_path):
    path = tmp_path / "resnet50-imagenet.pth"
    state = _torchvision_state(50)
    torch.save(state, path)
    model = create("deeplabv3plus", in_channels=4, num_classes=6, backbone="resnet50",
                   backbone_weights=path, stem_weights="rgb")  # fmt: skip
    rgb = state["conv1.weight"]
    stem = model.backbone.conv1.weight.detach()
    assert stem.shape == (64, 4, 7, 7)
    # R, G, B filters for bands 0-2, their mean for NIR, all x 3/4
    torch.testing.assert_close(stem[:, :3], rgb * 0.75)
    torch.testing.assert_close(stem[:, 3], rgb.mean(dim=1) * 0.75)
    torch.testing.assert_close(
        model.backbone.layer1[0].conv1.weight, state["layer1.0.conv1.weight"]
    )
    # three bands: the filters themselves
    three = create("deeplabv3plus", in_channels=3, backbone="resnet50", backbone_weights=path,
                   stem_weights="rgb")  # fmt: skip
    torch.testing.assert_close(three.backbone.conv1.weight, rgb)
    del state["conv1.weight"]
    torch.save(state, tmp_path / "no_stem.pth")
    with pytest.raises(DataError, match=r"no_stem\.pth: .*conv1\.weight: expected RGB filters"):
        model.load_backbone(tmp_path / "no_stem.pth")
    with pytest.raises(ConfigError, match="at least 3 bands"):
        create("deeplabv3plus", in_channels=2, stem_weights="rgb")
    with pytest.raises(ConfigError, match="stem_weights"):
        create("deeplabv3plus", stem_weights="imagenet")
