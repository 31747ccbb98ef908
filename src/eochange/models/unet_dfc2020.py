"""The U-Net of the DFC2020 baseline (Ronneberger et al., 2015, in the common PyTorch form).

Four 2x max-pool downsamplings with widths 64-128-256-512-512, each stage a "double
conv" (3x3 conv with bias, BN, ReLU, twice); the decoder upsamples bilinearly
(``align_corners=True``), pads to the skip's size when the sizes are odd, concatenates
``[skip, upsampled]`` and applies a double conv (widths 256-128-64-64); a 1x1 conv gives
the logits. Top-level names ``inc``, ``down1..4``, ``up1..4``, ``outc`` and 128
state_dict entries as in the baseline; 13,401,098 parameters with 12 bands and 10
classes. The baseline never released U-Net weights.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from eochange.models.registry import register_model
from eochange.models.resnet import single_date


class DoubleConv(nn.Module):
    """(3x3 conv, BN, ReLU) twice (keys ``conv.{0,1,3,4}``).

    Args:
        d_in: Input channels.
        d_out: Output channels of both convolutions.
    """

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(d_in, d_out, 3, padding=1),
            nn.BatchNorm2d(d_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(d_out, d_out, 3, padding=1),
            nn.BatchNorm2d(d_out),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, d_in, H, W) -> (B, d_out, H, W)``."""
        return self.conv(x)


class Down(nn.Module):
    """2x2 max-pool then :class:`DoubleConv` (keys ``block.conv.*``).

    Args:
        d_in: Input channels.
        d_out: Output channels.
    """

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.block = DoubleConv(d_in, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, d_in, H, W) -> (B, d_out, H // 2, W // 2)``."""
        return self.block(self.pool(x))


class Up(nn.Module):
    """Bilinear 2x upsampling, pad to the skip, concat ``[skip, x]``, :class:`DoubleConv`.

    Args:
        d_in: Channels of the skip and the upsampled map together.
        d_out: Output channels.
    """

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.block = DoubleConv(d_in, d_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``x (B, C1, h, w)``, ``skip (B, C2, H, W)`` -> ``(B, d_out, H, W)``."""
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
        dy, dx = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
        if dy or dx:
            x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.block(torch.cat([skip, x], 1))


class OutConv(nn.Module):
    """1x1 convolution to the classes (keys ``conv.weight``, ``conv.bias``)."""

    def __init__(self, d_in: int, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(d_in, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, d_in, H, W) -> (B, num_classes, H, W)``."""
        return self.conv(x)


@register_model("unet_dfc2020")
class UNetDFC2020(nn.Module):
    """The DFC2020 baseline U-Net.

    Args:
        in_channels: Input bands (12: S2 high/mid-res then S1; 10: S2 only).
        num_classes: Output classes (10 DFC2020 classes; 9 without Savanna).

    ``forward(x, dates=None)`` maps ``(B, in_channels, H, W)`` or ``(B, 1, in_channels,
    H, W)`` to logits ``(B, num_classes, H, W)`` for any ``H, W`` >= 16 (odd sizes are
    handled by padding in the decoder); ``dates`` is ignored. Weights keep PyTorch's
    default initialisation.
    """

    def __init__(self, in_channels: int = 12, num_classes: int = 10) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.inc = DoubleConv(in_channels, 64)
        self.down1 = Down(64, 128)
        self.down2 = Down(128, 256)
        self.down3 = Down(256, 512)
        self.down4 = Down(512, 512)
        self.up1 = Up(1024, 256)
        self.up2 = Up(512, 128)
        self.up3 = Up(256, 64)
        self.up4 = Up(128, 64)
        self.outc = OutConv(64, num_classes)

    def forward(self, x: torch.Tensor, dates: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, [1,] in_channels, H, W) -> (B, num_classes, H, W)`` logits."""
        x1 = self.inc(single_date("unet_dfc2020", x, self.in_channels))
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        out = self.down4(x4)
        out = self.up1(out, x4)
        out = self.up2(out, x3)
        out = self.up3(out, x2)
        out = self.up4(out, x1)
        return self.outc(out)
