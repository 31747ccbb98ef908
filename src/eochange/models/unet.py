"""The single-date U-Net baseline of DynamicEarthNet (upstream ``Single_UNET``).

The U-TAE encoder without the temporal part: one image in, a 6-class map out. Up blocks
concatenate the raw skip (no 1x1 ``skip_conv``) and use BatchNorm. 983,654 parameters
in the DynamicEarthNet configuration; layer names match its checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from eochange.models.blocks import LastConvLayer, pad_to_multiple, unet_stages
from eochange.models.registry import register_model


@register_model("unet")
class UNet(nn.Module):
    """Single-date U-Net with the DynamicEarthNet configuration as defaults.

    Args:
        in_channels: Input bands (4).
        num_classes: Output classes (6).
        encoder_widths: Widths of the encoder stages.
        decoder_widths: Widths of the decoder stages.
        str_conv_k: Kernel of the strided (down/up) convolutions.
        str_conv_s: Their stride.
        str_conv_p: Their padding.
        encoder_norm: ``group`` (GroupNorm, 4 groups) or ``batch`` in the encoder.
        padding_mode: Padding of the convolutions (``reflect`` upstream).

    ``forward(x, dates=None)`` takes ``(B, 1, C, H, W)`` (one date, the ``single``
    sampling) or ``(B, C, H, W)`` and returns ``(B, num_classes, H, W)``; upstream fails
    for more than one date, and so does this, with a clear message. Sizes that are not
    multiples of 8 are reflect-padded and the output cropped back.
    """

    def __init__(
        self,
        in_channels: int = 4,
        num_classes: int = 6,
        encoder_widths: Sequence[int] = (64, 64, 64, 128),
        decoder_widths: Sequence[int] = (32, 32, 64, 128),
        str_conv_k: int = 4,
        str_conv_s: int = 2,
        str_conv_p: int = 1,
        encoder_norm: str = "group",
        padding_mode: str = "reflect",
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.stride = str_conv_s ** (len(encoder_widths) - 1)
        self.in_conv, self.down_blocks, self.up_blocks = unet_stages(
            in_channels,
            encoder_widths,
            decoder_widths,
            strided=(str_conv_k, str_conv_s, str_conv_p),
            encoder_norm=encoder_norm,
            decoder_norm="batch",
            padding_mode=padding_mode,
            skip_conv=False,
        )
        self.out_conv = LastConvLayer(decoder_widths[0], 32, num_classes, padding_mode)

    def forward(self, x: torch.Tensor, dates: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, 1, C, H, W)`` or ``(B, C, H, W)`` -> ``(B, num_classes, H, W)``."""
        if x.ndim == 5:
            if x.shape[1] != 1:
                raise ValueError(
                    f"unet: takes one date, got T={x.shape[1]} (use sampling='single' or a "
                    "temporal model)"
                )
            x = x[:, 0]
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"unet: expected (B, 1, {self.in_channels}, H, W) or (B, {self.in_channels}, "
                f"H, W), got {tuple(x.shape)}"
            )
        x, (height, width) = pad_to_multiple(x, self.stride)
        features = [self.in_conv(x)]
        for block in self.down_blocks:
            features.append(block(features[-1]))
        out = features[-1]
        for i, block in enumerate(self.up_blocks):
            out = block(out, features[-(i + 2)])
        return self.out_conv(out)[..., :height, :width]
