"""ResNet (He et al., 2016): the one implementation used by every eochange model.

:class:`ResNet` is the backbone: torchvision's module names and structure (``conv1``,
``bn1``, ``layer1..4``; blocks with ``conv1/bn1/conv2/bn2[/conv3/bn3]`` and
``downsample.{0,1}``, stride on the 3x3 convolution), so torchvision-format weights load
by name, plus any number of input bands, a per-stage stride and dilation (output stride
32, 16 or 8, the DeepLab settings) and a multi-grid last stage. It has no pooling or
classifier of its own.

The SEN12MS toolbox scene classifiers (``resnet18`` ... ``resnet152`` in the registry)
wrap it with the toolbox's key layout, so the released toolbox checkpoints load with
``strict=True``:

- the first convolution is registered twice, as ``conv1`` and as ``encoder.0`` (both
  keys are in the state_dict; they are one tensor);
- ``encoder`` = ``Sequential(conv1, bn1, relu, maxpool, layer1..4, avgpool)``, so
  ``encoder.4`` ... ``encoder.7`` are the stages (``encoder.4.0.conv1.weight`` ...);
- ``FC`` = ``Linear(512 * expansion, num_classes)`` on the flattened pooled features.

ResNet50 with 12 bands and 10 classes has 23,556,746 parameters and 321 state_dict
entries (ResNet101: 627, ResNet152: 933).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from eochange.errors import ConfigError
from eochange.models.registry import register_model

STAGES: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
"""Block type and blocks per stage of each depth."""

OUTPUT_STRIDES: dict[int, tuple[tuple[int, int, int, int], tuple[int, int, int, int]]] = {
    32: ((1, 2, 2, 2), (1, 1, 1, 1)),
    16: ((1, 2, 2, 1), (1, 1, 1, 2)),
    8: ((1, 2, 1, 1), (1, 1, 2, 4)),
}
"""``output_stride -> (strides, dilations)`` of the four stages (DeepLab's settings)."""


def _conv3x3(d_in: int, d_out: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(d_in, d_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut.

    Args:
        d_in: Input channels.
        planes: Output channels (``expansion`` = 1).
        stride: Stride of the first convolution.
        dilation: Dilation (and padding) of both convolutions.
        downsample: Projection of the shortcut, or None for the identity.
    """

    expansion = 1

    def __init__(
        self,
        d_in: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(d_in, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, d_in, H, W) -> (B, planes, H / stride, W / stride)``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, dilated), 1x1 expand by 4, with a shortcut.

    Args:
        d_in: Input channels.
        planes: Width of the 3x3 convolution; the output has ``4 * planes`` channels.
        stride: Stride of the 3x3 convolution (torchvision's "ResNet v1.5").
        dilation: Dilation (and padding) of the 3x3 convolution.
        downsample: Projection of the shortcut, or None for the identity.
    """

    expansion = 4

    def __init__(
        self,
        d_in: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(d_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, d_in, H, W) -> (B, 4 * planes, H / stride, W / stride)``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _stage(
    block: type[BasicBlock | Bottleneck],
    d_in: int,
    planes: int,
    stride: int,
    dilations: Sequence[int],
) -> nn.Sequential:
    """One stage: ``len(dilations)`` blocks, the first strided with a projection shortcut."""
    d_out = planes * block.expansion
    downsample = None
    if stride != 1 or d_in != d_out:
        downsample = nn.Sequential(
            nn.Conv2d(d_in, d_out, 1, stride=stride, bias=False), nn.BatchNorm2d(d_out)
        )
    layers = [block(d_in, planes, stride, dilations[0], downsample)]
    layers += [block(d_out, planes, 1, dilation) for dilation in dilations[1:]]
    return nn.Sequential(*layers)


class ResNet(nn.Module):
    """ResNet backbone: stem and four stages, torchvision names, no pooling or classifier.

    Args:
        depth: 18, 34, 50, 101 or 152.
        in_channels: Input bands (the stem convolution is sized for them).
        output_stride: 32 (classification), 16 or 8 (DeepLab); sets ``strides`` and
            ``dilations`` as in :data:`OUTPUT_STRIDES` unless those are given.
        strides: Stride of each of the four stages (overrides ``output_stride``).
        dilations: Dilation of each of the four stages (overrides ``output_stride``).
        multi_grid: Per-block factors of the last stage's dilation (DeepLab: ``(1, 2, 4)``,
            one per block of ``layer4``); None: every block uses the stage dilation.

    Every block of a stage uses the stage's dilation (times its multi-grid factor in
    ``layer4``); the first block carries the stage's stride and the shortcut projection.
    Convolutions are initialised Kaiming-normal (fan_out, ReLU gain), i.e.
    N(0, sqrt(2 / (k * k * out_channels))), BatchNorm 1/0.

    ``forward(x)`` maps ``(B, in_channels, H, W)`` to the ``layer4`` map
    ``(B, 512 * expansion, H / s, W / s)``; :meth:`forward_stages` returns all four stages
    (``layer1``, the stride-4 low-level features, first).
    """

    def __init__(
        self,
        depth: int = 50,
        in_channels: int = 3,
        output_stride: int = 32,
        strides: Sequence[int] | None = None,
        dilations: Sequence[int] | None = None,
        multi_grid: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if depth not in STAGES:
            raise ConfigError(f"resnet depth: expected one of {tuple(STAGES)}, got {depth!r}")
        if output_stride not in OUTPUT_STRIDES:
            raise ConfigError(
                f"output_stride: expected one of {tuple(OUTPUT_STRIDES)}, got {output_stride!r}"
            )
        default_strides, default_dilations = OUTPUT_STRIDES[output_stride]
        strides = tuple(default_strides if strides is None else strides)
        dilations = tuple(default_dilations if dilations is None else dilations)
        if len(strides) != 4 or len(dilations) != 4:
            raise ConfigError(
                f"strides/dilations: expected 4 values each, got {strides} and {dilations}"
            )
        kind, blocks = STAGES[depth]
        if multi_grid is not None and len(multi_grid) != blocks[3]:
            raise ConfigError(
                f"multi_grid: expected {blocks[3]} factors (blocks of layer4), got "
                f"{tuple(multi_grid)}"
            )
        block: type[BasicBlock | Bottleneck] = BasicBlock if kind == "basic" else Bottleneck
        self.depth = depth
        self.in_channels = in_channels
        self.out_channels = 512 * block.expansion
        self.output_stride = 4 * strides[0] * strides[1] * strides[2] * strides[3]

        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        grids: list[Sequence[int]] = [[1] * n for n in blocks]
        if multi_grid is not None:
            grids[3] = multi_grid
        stages = []
        d_in = 64
        for i in range(4):
            stage_dilations = [factor * dilations[i] for factor in grids[i]]
            stages.append(_stage(block, d_in, 64 * 2**i, strides[i], stage_dilations))
            d_in = 64 * 2**i * block.expansion
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """``conv1``, ``bn1``, ReLU, max-pool: ``(B, C, H, W) -> (B, 64, H / 4, W / 4)``."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The outputs of ``layer1`` ... ``layer4`` for ``x`` of shape ``(B, C, H, W)``.

        ``layer1`` is ``(B, 64 * expansion, H / 4, W / 4)`` (DeepLab's low-level
        features); ``layer4`` is ``(B, 512 * expansion, H / s, W / s)``.
        """
        out = self.stem(x)
        stages = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            out = layer(out)
            stages.append(out)
        return stages

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W) -> (B, 512 * expansion, H / s, W / s)`` (``layer4``)."""
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))


def single_date(name: str, x: torch.Tensor, in_channels: int) -> torch.Tensor:
    """``(B, 1, C, H, W)`` or ``(B, C, H, W)`` -> ``(B, C, H, W)``, with clear errors.

    Raises:
        ValueError: More than one date, or not ``in_channels`` bands.
    """
    if x.ndim == 5:
        if x.shape[1] != 1:
            raise ValueError(f"{name}: takes one date, got T={x.shape[1]} (use sampling='single')")
        x = x[:, 0]
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(
            f"{name}: expected (B, 1, {in_channels}, H, W) or (B, {in_channels}, H, W), "
            f"got {tuple(x.shape)}"
        )
    return x


def toolbox_init(model: nn.Module) -> None:
    """The SEN12MS toolbox initialisation, in place.

    Kaiming-normal (fan_in, gain sqrt(2)) on every Conv2d and Linear weight; biases keep
    PyTorch's defaults; BatchNorm weight 1, bias 0.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class SEN12MSResNet(nn.Module):
    """A SEN12MS toolbox ResNet scene classifier (``ResNet18`` ... ``ResNet152``).

    Args:
        depth: 18, 34, 50, 101 or 152.
        in_channels: Input bands (12: the 10 S2 bands then VV, VH; 10: S2; 3: B, G, R).
        num_classes: Scene classes (10 simplified IGBP, or 17).

    ``forward(x, dates=None)`` takes ``(B, in_channels, H, W)`` or ``(B, 1, in_channels,
    H, W)`` of any size (adaptive average pooling) and returns logits
    ``(B, num_classes)``; ``dates`` is ignored.
    """

    def __init__(self, depth: int = 50, in_channels: int = 12, num_classes: int = 10) -> None:
        super().__init__()
        backbone = ResNet(depth, in_channels)
        self.name = f"resnet{depth}"
        self.in_channels = in_channels
        self.num_classes = num_classes
        # One module under two names, as in the toolbox checkpoints.
        self.conv1 = backbone.conv1
        self.encoder = nn.Sequential(
            backbone.conv1,
            backbone.bn1,
            backbone.relu,
            backbone.maxpool,
            backbone.layer1,
            backbone.layer2,
            backbone.layer3,
            backbone.layer4,
            nn.AdaptiveAvgPool2d((1, 1)),
        )
        self.FC = nn.Linear(backbone.out_channels, num_classes)
        toolbox_init(self)

    def forward(self, x: torch.Tensor, dates: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, [1,] in_channels, H, W) -> (B, num_classes)`` logits."""
        x = single_date(self.name, x, self.in_channels)
        return self.FC(torch.flatten(self.encoder(x), 1))


@register_model("resnet18")
def resnet18(in_channels: int = 12, num_classes: int = 10) -> SEN12MSResNet:
    """The toolbox ResNet18 (11,209,866 parameters with 12 bands, 10 classes)."""
    return SEN12MSResNet(18, in_channels, num_classes)


@register_model("resnet34")
def resnet34(in_channels: int = 12, num_classes: int = 10) -> SEN12MSResNet:
    """The toolbox ResNet34 (21,318,026 parameters with 12 bands, 10 classes)."""
    return SEN12MSResNet(34, in_channels, num_classes)


@register_model("resnet50")
def resnet50(in_channels: int = 12, num_classes: int = 10) -> SEN12MSResNet:
    """The toolbox ResNet50 (23,556,746 parameters with 12 bands, 10 classes)."""
    return SEN12MSResNet(50, in_channels, num_classes)


@register_model("resnet101")
def resnet101(in_channels: int = 12, num_classes: int = 10) -> SEN12MSResNet:
    """The toolbox ResNet101 (42,548,874 parameters with 12 bands, 10 classes)."""
    return SEN12MSResNet(101, in_channels, num_classes)


@register_model("resnet152")
def resnet152(in_channels: int = 12, num_classes: int = 10) -> SEN12MSResNet:
    """The toolbox ResNet152 (58,192,522 parameters with 12 bands, 10 classes)."""
    return SEN12MSResNet(152, in_channels, num_classes)
