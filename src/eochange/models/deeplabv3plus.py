"""DeepLabv3+ (Chen et al., ECCV 2018) as configured by the DFC2020 baseline.

A dilated ResNet backbone (:class:`~eochange.models.resnet.ResNet`, output stride 16
or 8, multi-grid ``(1, 2, 4)`` last stage), an ASPP head and a light decoder that fuses
the stride-4 ``layer1`` features:

- ASPP: four 256-channel branches (1x1, and 3x3 with dilations 6/12/18 at output
  stride 16, 12/24/36 at 8) plus image pooling; concatenated (1280) -> 1x1 256, BN,
  ReLU, Dropout(0.5);
- decoder: ``layer1`` (256) -> 1x1 48, BN, ReLU; the ASPP map upsampled to it and
  concatenated first (304) -> 3x3 256, BN, ReLU, Dropout(0.5) -> 3x3 256, BN, ReLU,
  Dropout(0.1) -> 1x1 ``num_classes``; bilinear (``align_corners=True``) up to the input.

Keys match the baseline checkpoints (``backbone.*``, ``aspp.*``, ``decoder.*``; 680
entries with ResNet-101). With 12 bands and 10 classes: 59,369,706 parameters, of which
42,528,384 in the backbone (1x learning rate) and 16,841,322 in the head (10x).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from eochange.errors import ConfigError, DataError
from eochange.models.registry import register_model
from eochange.models.resnet import ResNet, single_date
from eochange.models.upstream.common import mismatch, read_checkpoint, shapes, state_dict_of

BACKBONES = {"resnet50": 50, "resnet101": 101}
ASPP_DILATIONS = {16: (6, 12, 18), 8: (12, 24, 36)}
"""Dilations of the three 3x3 ASPP branches per output stride."""
MULTI_GRID = (1, 2, 4)
"""Factors of the ``layer4`` dilation, block by block."""


class ASPPBranch(nn.Module):
    """Conv (1x1, or dilated 3x3), BN, ReLU (keys ``atrous_conv``, ``bn``).

    Args:
        d_in: Input channels.
        d_out: Output channels.
        kernel_size: 1 or 3.
        dilation: Dilation of a 3x3 kernel (padding keeps the size).
    """

    def __init__(self, d_in: int, d_out: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        padding = 0 if kernel_size == 1 else dilation
        self.atrous_conv = nn.Conv2d(
            d_in, d_out, kernel_size, padding=padding, dilation=dilation, bias=False
        )
        self.bn = nn.BatchNorm2d(d_out)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, d_in, H, W) -> (B, d_out, H, W)``."""
        return self.relu(self.bn(self.atrous_conv(x)))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 4 conv branches and image pooling, fused to 256.

    Args:
        d_in: Backbone channels (2048).
        dilations: Dilations of the three 3x3 branches.
        d_out: Channels of each branch and of the output.
    """

    def __init__(self, d_in: int, dilations: Sequence[int], d_out: int = 256) -> None:
        super().__init__()
        self.aspp1 = ASPPBranch(d_in, d_out, 1, 1)
        self.aspp2 = ASPPBranch(d_in, d_out, 3, dilations[0])
        self.aspp3 = ASPPBranch(d_in, d_out, 3, dilations[1])
        self.aspp4 = ASPPBranch(d_in, d_out, 3, dilations[2])
        self.global_avg_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Conv2d(d_in, d_out, 1, bias=False),
            nn.BatchNorm2d(d_out),
            nn.ReLU(inplace=True),
        )
        self.conv1 = nn.Conv2d(5 * d_out, d_out, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(d_out)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, d_in, h, w) -> (B, d_out, h, w)``."""
        pooled = F.interpolate(
            self.global_avg_pool(x), size=x.shape[-2:], mode="bilinear", align_corners=True
        )
        branches = [self.aspp1(x), self.aspp2(x), self.aspp3(x), self.aspp4(x), pooled]
        return self.dropout(self.relu(self.bn1(self.conv1(torch.cat(branches, 1)))))


class Decoder(nn.Module):
    """Fuse the ASPP map with the low-level features; classify at stride 4.

    Args:
        num_classes: Output classes.
        d_low: Channels of the low-level (``layer1``) features.
        d_aspp: Channels of the ASPP output.
    """

    def __init__(self, num_classes: int, d_low: int = 256, d_aspp: int = 256) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(d_low, 48, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(48)
        self.relu = nn.ReLU(inplace=True)
        self.last_conv = nn.Sequential(
            nn.Conv2d(d_aspp + 48, 256, 3, padding=1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Conv2d(256, 256, 3, padding=1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Dropout(0.1),
            nn.Conv2d(256, num_classes, 1),
        )

    def features(self, x: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        """ASPP ``(B, d_aspp, h, w)`` and ``(B, d_low, H/4, W/4)`` -> ``(B, 256, H/4, W/4)``.

        The map the final 1x1 classifier sees (after its Dropout(0.1) in training).
        """
        low_level = self.relu(self.bn1(self.conv1(low_level)))
        x = F.interpolate(x, size=low_level.shape[-2:], mode="bilinear", align_corners=True)
        return self.last_conv[:-1](torch.cat([x, low_level], 1))

    def forward(self, x: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        """As :meth:`features`, then the 1x1 classifier: ``(B, num_classes, H/4, W/4)``."""
        return self.last_conv[-1](self.features(x, low_level))


@register_model("deeplabv3plus")
class DeepLabV3Plus(nn.Module):
    """DeepLabv3+ with the DFC2020 baseline configuration as defaults.

    Args:
        in_channels: Input bands (12: S2 high/mid-res then S1; 10: S2 only).
        num_classes: Output classes (10 DFC2020 classes; 9 without Savanna).
        backbone: ``resnet101`` (the baseline) or ``resnet50``.
        output_stride: 16 or 8 (the parameter count is the same).
        backbone_weights: Path of a torchvision-format ResNet state_dict (``.pth``, e.g.
            ImageNet ``resnet101-5d3b4d8f.pth``) loaded into the backbone, except the
            stem ``conv1.weight`` (sized for other bands) and ``fc.*``; None: random init.

    Convolutions are initialised N(0, sqrt(2 / (k * k * out_channels))), BatchNorm 1/0.
    ``forward(x, dates=None)`` maps ``(B, in_channels, H, W)`` or ``(B, 1, in_channels,
    H, W)`` to logits ``(B, num_classes, H, W)``; ``dates`` is ignored.
    """

    def __init__(
        self,
        in_channels: int = 12,
        num_classes: int = 10,
        backbone: str = "resnet101",
        output_stride: int = 16,
        backbone_weights: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ConfigError(f"backbone: expected one of {tuple(BACKBONES)}, got {backbone!r}")
        if output_stride not in ASPP_DILATIONS:
            raise ConfigError(
                f"output_stride: expected one of {tuple(ASPP_DILATIONS)}, got {output_stride!r}"
            )
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.output_stride = output_stride
        self.backbone = ResNet(
            BACKBONES[backbone], in_channels, output_stride=output_stride, multi_grid=MULTI_GRID
        )
        self.aspp = ASPP(self.backbone.out_channels, ASPP_DILATIONS[output_stride])
        self.decoder = Decoder(num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if backbone_weights is not None:
            self.load_backbone(backbone_weights)

    def load_backbone(self, path: str | os.PathLike[str]) -> None:
        """Load a torchvision-format ResNet state_dict into the backbone.

        All keys but ``conv1.weight`` (kept from the initialisation) and ``fc.*`` must
        match the backbone's names and shapes.

        Raises:
            DataError: Unreadable or unsafe file, or keys/shapes that do not match (listed,
                with the file name).
        """
        content, source = read_checkpoint(path)
        state = state_dict_of(content, "state_dict", source)
        state = {k: v for k, v in state.items() if k != "conv1.weight" and not k.startswith("fc.")}
        expected = shapes(self.backbone.state_dict())
        del expected["conv1.weight"]
        problems = mismatch(expected, shapes(state))
        if problems:
            raise DataError(
                f"{source}: not a torchvision-format ResNet-{self.backbone.depth} state_dict "
                f"for the backbone: {problems}"
            )
        self.backbone.load_state_dict(state, strict=False)

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """``(backbone, head)`` parameters: the baseline trains them at 1x and 10x the lr."""
        return list(self.backbone.parameters()), [
            *self.aspp.parameters(),
            *self.decoder.parameters(),
        ]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, [1,] in_channels, H, W) -> (B, 256, H/4, W/4)``: the decoder's last map.

        What the final 1x1 classifier sees (for feature-level losses);
        ``classify(features(x), x.shape[-2:])`` equals ``forward(x)``.
        """
        x = single_date("deeplabv3plus", x, self.in_channels)
        stages = self.backbone.forward_stages(x)
        return self.decoder.features(self.aspp(stages[3]), stages[0])

    def classify(self, features: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """Decoder map ``(B, 256, h, w)`` -> logits ``(B, num_classes, *size)``."""
        logits = self.decoder.last_conv[-1](features)
        return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=True)

    def forward(self, x: torch.Tensor, dates: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, [1,] in_channels, H, W) -> (B, num_classes, H, W)`` logits."""
        return self.classify(self.features(x), x.shape[-2:])
