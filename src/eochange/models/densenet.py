"""DenseNet (Huang et al., 2017) scene classifiers of the SEN12MS toolbox.

``densenet121``, ``densenet161``, ``densenet169`` and ``densenet201`` in the registry
follow the toolbox's layout, so its released checkpoints load with ``strict=True``:
``encoder`` = ``Sequential(conv0, norm0, relu0, pool0, denseblock1, transition1, ...,
denseblock4, norm5)`` with torchvision's DenseNet internals (``encoder.4.denselayer1.
norm1.weight``, ``encoder.5.conv.weight``, ``encoder.11`` = norm5), then ``classifier``.

The toolbox head has no final ReLU and no global pooling: the 8x8 ``norm5`` map is
flattened into ``Linear(C * 64, num_classes)``, so only 256x256 inputs work (as
upstream). ``global_pool=True`` (not in the toolbox) uses ReLU, global average pooling
and ``Linear(C, num_classes)`` instead, for any input size.

DenseNet121 with 12 bands and 10 classes has 7,637,450 parameters and 727 state_dict
entries (161: 967, 169: 1015, 201: 1207).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from eochange.errors import ConfigError
from eochange.models.registry import register_model
from eochange.models.resnet import single_date, toolbox_init

CONFIGS: dict[int, tuple[int, int, tuple[int, int, int, int]]] = {
    121: (64, 32, (6, 12, 24, 16)),
    161: (96, 48, (6, 12, 36, 24)),
    169: (64, 32, (6, 12, 32, 32)),
    201: (64, 32, (6, 12, 48, 32)),
}
"""``depth -> (stem width, growth rate, dense layers per block)``."""

BN_SIZE = 4
"""Bottleneck width of a dense layer, in multiples of the growth rate."""

TOOLBOX_SIZE = 256
"""The only input size the toolbox head accepts (its ``norm5`` map is 8x8)."""


class DenseLayer(nn.Module):
    """BN-ReLU-conv1x1 (to ``4 * growth``) then BN-ReLU-conv3x3 (to ``growth``).

    Args:
        d_in: Channels of all the maps concatenated so far.
        growth: Channels this layer adds.
    """

    def __init__(self, d_in: int, growth: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(d_in)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(d_in, BN_SIZE * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(BN_SIZE * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(BN_SIZE * growth, growth, 3, padding=1, bias=False)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """The block's maps so far, each ``(B, C_i, H, W)`` -> ``(B, growth, H, W)``."""
        out = self.conv1(self.relu1(self.norm1(torch.cat(list(features), 1))))
        return self.conv2(self.relu2(self.norm2(out)))


class DenseBlock(nn.ModuleDict):
    """``n`` dense layers (``denselayer1`` ...), each fed all earlier outputs.

    Args:
        n: Dense layers.
        d_in: Input channels; the output has ``d_in + n * growth``.
        growth: Growth rate.
    """

    def __init__(self, n: int, d_in: int, growth: int) -> None:
        super().__init__()
        for i in range(n):
            self[f"denselayer{i + 1}"] = DenseLayer(d_in + i * growth, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, d_in, H, W) -> (B, d_in + n * growth, H, W)``."""
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """BN, ReLU, 1x1 conv halving the channels, 2x2 average pooling (keys ``norm``, ``conv``).

    Args:
        d_in: Input channels.
        d_out: Output channels.
    """

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(d_in)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(d_in, d_out, 1, bias=False)
        self.pool = nn.AvgPool2d(2, stride=2)


def _feature_size(size: int) -> int:
    # conv0 (7x7, stride 2, pad 3), pool0 (3x3, stride 2, pad 1), three 2x2 transitions
    size = (size - 1) // 2 + 1
    size = (size - 1) // 2 + 1
    return size // 8


class SEN12MSDenseNet(nn.Module):
    """A SEN12MS toolbox DenseNet scene classifier (``DenseNet121`` ... ``DenseNet201``).

    Args:
        depth: 121, 161, 169 or 201.
        in_channels: Input bands (12: the 10 S2 bands then VV, VH; 10: S2; 3: B, G, R).
        num_classes: Scene classes (10 simplified IGBP, or 17).
        global_pool: False: the toolbox head (flattened 8x8 ``norm5`` map, 256x256 input
            only); True: ReLU, global average pooling, ``Linear(C, num_classes)``.

    ``forward(x, dates=None)`` takes ``(B, in_channels, 256, 256)`` (any size with
    ``global_pool``), or the same with a date axis of length 1, and returns logits
    ``(B, num_classes)``; ``dates`` is ignored.
    """

    def __init__(
        self,
        depth: int = 121,
        in_channels: int = 12,
        num_classes: int = 10,
        global_pool: bool = False,
    ) -> None:
        super().__init__()
        if depth not in CONFIGS:
            raise ConfigError(f"densenet depth: expected one of {tuple(CONFIGS)}, got {depth!r}")
        width, growth, blocks = CONFIGS[depth]
        self.name = f"densenet{depth}"
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.global_pool = global_pool
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        ]
        channels = width
        for i, n in enumerate(blocks):
            layers.append(DenseBlock(n, channels, growth))
            channels += n * growth
            if i < len(blocks) - 1:
                layers.append(Transition(channels, channels // 2))
                channels //= 2
        layers.append(nn.BatchNorm2d(channels))
        self.encoder = nn.Sequential(*layers)
        self.out_channels = channels
        cells = 1 if global_pool else _feature_size(TOOLBOX_SIZE) ** 2
        self.classifier = nn.Linear(channels * cells, num_classes)
        toolbox_init(self)

    def forward(self, x: torch.Tensor, dates: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, [1,] in_channels, H, W) -> (B, num_classes)`` logits.

        Raises:
            ValueError: Without ``global_pool``, an input whose ``norm5`` map is not 8x8
                (anything but 256x256, give or take the strides' rounding).
        """
        x = single_date(self.name, x, self.in_channels)
        if not self.global_pool:
            expected = _feature_size(TOOLBOX_SIZE)
            if (_feature_size(x.shape[-2]), _feature_size(x.shape[-1])) != (expected, expected):
                raise ValueError(
                    f"{self.name}: the SEN12MS toolbox head flattens the {expected}x{expected} "
                    f"norm5 map and needs {TOOLBOX_SIZE}x{TOOLBOX_SIZE} input, got "
                    f"{x.shape[-2]}x{x.shape[-1]}; build the model with global_pool=True for "
                    "other sizes"
                )
            return self.classifier(torch.flatten(self.encoder(x), 1))
        out = F.adaptive_avg_pool2d(F.relu(self.encoder(x)), 1)
        return self.classifier(torch.flatten(out, 1))


@register_model("densenet121")
def densenet121(
    in_channels: int = 12, num_classes: int = 10, global_pool: bool = False
) -> SEN12MSDenseNet:
    """The toolbox DenseNet121 (7,637,450 parameters with 12 bands, 10 classes)."""
    return SEN12MSDenseNet(121, in_channels, num_classes, global_pool)


@register_model("densenet161")
def densenet161(
    in_channels: int = 12, num_classes: int = 10, global_pool: bool = False
) -> SEN12MSDenseNet:
    """The toolbox DenseNet161 (27,927,466 parameters with 12 bands, 10 classes)."""
    return SEN12MSDenseNet(161, in_channels, num_classes, global_pool)


@register_model("densenet169")
def densenet169(
    in_channels: int = 12, num_classes: int = 10, global_pool: bool = False
) -> SEN12MSDenseNet:
    """The toolbox DenseNet169 (13,577,674 parameters with 12 bands, 10 classes)."""
    return SEN12MSDenseNet(169, in_channels, num_classes, global_pool)


@register_model("densenet201")
def densenet201(
    in_channels: int = 12, num_classes: int = 10, global_pool: bool = False
) -> SEN12MSDenseNet:
    """The toolbox DenseNet201 (19,349,962 parameters with 12 bands, 10 classes)."""
    return SEN12MSDenseNet(201, in_channels, num_classes, global_pool)
