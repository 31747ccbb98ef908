"""2-D building blocks shared by the DynamicEarthNet U-Net family (U-Net, U-TAE, U-ConvLSTM).

Module names mirror the upstream module tree (``conv.conv.0`` ...), so that official
checkpoints load with ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from eochange.errors import ConfigError

NORMS = ("batch", "group")
GROUPS = 4
"""Groups of the GroupNorm layers of the encoders (upstream ``n_groups``)."""


def make_norm(norm: str, channels: int) -> nn.Module:
    """BatchNorm2d for ``batch``, GroupNorm(4 groups) for ``group``."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        return nn.GroupNorm(num_channels=channels, num_groups=GROUPS)
    raise ValueError(f"norm: expected one of {NORMS}, got {norm!r}")


class ConvLayer(nn.Module):
    """Conv2d -> norm -> ReLU for each consecutive pair of ``widths`` (keys ``conv.{3i, 3i+1}``)."""

    def __init__(
        self,
        widths: Sequence[int],
        norm: str = "batch",
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        padding_mode: str = "reflect",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for d_in, d_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [
                nn.Conv2d(d_in, d_out, kernel_size, stride, padding, padding_mode=padding_mode),
                make_norm(norm, d_out),
                nn.ReLU(),
            ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W) -> (N, C', H', W')``."""
        return self.conv(x)


class ConvBlock(nn.Module):
    """Two 3x3 conv-norm-ReLU layers, ``d_in -> d_out -> d_out`` (keys ``conv.conv.{0,1,3,4}``)."""

    def __init__(
        self, d_in: int, d_out: int, norm: str = "batch", padding_mode: str = "reflect"
    ) -> None:
        super().__init__()
        self.conv = ConvLayer([d_in, d_out, d_out], norm=norm, padding_mode=padding_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, d_in, H, W) -> (N, d_out, H, W)``."""
        return self.conv(x)


class DownConvBlock(nn.Module):
    """Strided conv down by 2, then a residual pair of 3x3 layers.

    ``out = conv1(down(x)); out = out + conv2(out)``.
    """

    def __init__(
        self,
        d_in: int,
        d_out: int,
        kernel_size: int = 4,
        stride: int = 2,
        padding: int = 1,
        norm: str = "batch",
        padding_mode: str = "reflect",
    ) -> None:
        super().__init__()
        self.down = ConvLayer(
            [d_in, d_in], norm, kernel_size, stride, padding, padding_mode=padding_mode
        )
        self.conv1 = ConvLayer([d_in, d_out], norm, padding_mode=padding_mode)
        self.conv2 = ConvLayer([d_out, d_out], norm, padding_mode=padding_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, d_in, H, W) -> (N, d_out, H/2, W/2)``."""
        out = self.conv1(self.down(x))
        return out + self.conv2(out)


class UpConvBlock(nn.Module):
    """Transposed conv up by 2, concatenated with the skip, then a residual pair of layers.

    ``up`` (ConvTranspose2d + BatchNorm + ReLU) and ``skip_conv`` (1x1 conv + BatchNorm +
    ReLU; absent in the single-date U-Net) always use BatchNorm; ``conv1``/``conv2`` use
    ``norm``.
    """

    def __init__(
        self,
        d_in: int,
        d_out: int,
        d_skip: int,
        kernel_size: int = 4,
        stride: int = 2,
        padding: int = 1,
        norm: str = "batch",
        padding_mode: str = "reflect",
        skip_conv: bool = True,
    ) -> None:
        super().__init__()
        if skip_conv:
            self.skip_conv = nn.Sequential(
                nn.Conv2d(d_skip, d_skip, 1), nn.BatchNorm2d(d_skip), nn.ReLU()
            )
        self.up = nn.Sequential(
            nn.ConvTranspose2d(d_in, d_out, kernel_size, stride, padding),
            nn.BatchNorm2d(d_out),
            nn.ReLU(),
        )
        self.conv1 = ConvLayer([d_out + d_skip, d_out], norm, padding_mode=padding_mode)
        self.conv2 = ConvLayer([d_out, d_out], norm, padding_mode=padding_mode)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``(N, d_in, H, W), (N, d_skip, 2H, 2W) -> (N, d_out, 2H, 2W)``."""
        if hasattr(self, "skip_conv"):
            skip = self.skip_conv(skip)
        out = self.conv1(torch.cat([self.up(x), skip], dim=1))
        return out + self.conv2(out)


class LastConvLayer(nn.Module):
    """The segmentation head: conv3x3 -> BatchNorm -> ReLU -> conv3x3 to the classes."""

    def __init__(
        self, d_in: int, d_mid: int, num_classes: int, padding_mode: str = "reflect"
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(d_in, d_mid, 3, padding=1, padding_mode=padding_mode)
        self.bn1 = nn.BatchNorm2d(d_mid)
        self.conv2 = nn.Conv2d(d_mid, num_classes, 3, padding=1, padding_mode=padding_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, d_in, H, W) -> (N, num_classes, H, W)`` logits."""
        return self.conv2(torch.relu(self.bn1(self.conv1(x))))


def unet_stages(
    in_channels: int,
    encoder_widths: Sequence[int],
    decoder_widths: Sequence[int],
    *,
    strided: tuple[int, int, int] = (4, 2, 1),
    encoder_norm: str = "group",
    decoder_norm: str = "batch",
    padding_mode: str = "reflect",
    in_padding_mode: str | None = None,
    skip_conv: bool = True,
) -> tuple[ConvBlock, nn.ModuleList, nn.ModuleList]:
    """``in_conv``, ``down_blocks`` and ``up_blocks`` of the DynamicEarthNet U-Net family.

    Args:
        in_channels: Input bands.
        encoder_widths: Widths of ``in_conv`` and the down blocks (64, 64, 64, 128).
        decoder_widths: Widths of the decoder stages, shallowest first (32, 32, 64, 128).
        strided: Kernel, stride and padding of the strided down/up convolutions.
        encoder_norm: Norm of the encoder (``group``).
        decoder_norm: Norm of the up blocks' ``conv1``/``conv2``.
        padding_mode: Padding of the convolutions.
        in_padding_mode: Padding of ``in_conv`` if different (the U-ConvLSTM's is reflect).
        skip_conv: Up blocks with the 1x1 ``skip_conv`` (not in the single-date U-Net).

    Returns:
        The three modules; ``up_blocks[0]`` is the deepest.
    """
    if len(encoder_widths) != len(decoder_widths):
        raise ConfigError("encoder_widths and decoder_widths must have the same length")
    kernel, stride, padding = strided
    conv = {"kernel_size": kernel, "stride": stride, "padding": padding}
    in_conv = ConvBlock(
        in_channels, encoder_widths[0], encoder_norm, in_padding_mode or padding_mode
    )
    down_blocks = nn.ModuleList(
        DownConvBlock(a, b, **conv, norm=encoder_norm, padding_mode=padding_mode)
        for a, b in zip(encoder_widths[:-1], encoder_widths[1:], strict=True)
    )
    up_blocks = nn.ModuleList(
        UpConvBlock(
            decoder_widths[i],
            decoder_widths[i - 1],
            encoder_widths[i - 1],
            **conv,
            norm=decoder_norm,
            padding_mode=padding_mode,
            skip_conv=skip_conv,
        )
        for i in range(len(decoder_widths) - 1, 0, -1)
    )
    return in_conv, down_blocks, up_blocks


def padded_frames(x: torch.Tensor, pad_value: float | None) -> torch.Tensor | None:
    """``(B, T)`` bool: frames whose every value equals ``pad_value`` (None: no detection)."""
    if pad_value is None:
        return None
    return (x == pad_value).flatten(2).all(dim=2)


def shared_forward(
    block: nn.Module, x: torch.Tensor, pad_mask: torch.Tensor | None, pad_value: float = 0.0
) -> torch.Tensor:
    """Apply a 2-D block to every frame of ``(B, T, C, H, W)`` (time folded into the batch).

    Padded frames (``pad_mask`` True) are not passed through the block; their output is
    filled with ``pad_value``, as upstream does (which also keeps them out of the
    BatchNorm statistics in training).
    """
    b, t = x.shape[:2]
    if pad_mask is None or not bool(pad_mask.any()):
        out = block(x.reshape(b * t, *x.shape[2:]))
        return out.view(b, t, *out.shape[1:])
    keep = ~pad_mask
    real = block(x[keep])
    out = real.new_full((b, t, *real.shape[1:]), pad_value)
    out[keep] = real
    return out


def masked_mean(x: torch.Tensor, pad_mask: torch.Tensor | None, dim: int) -> torch.Tensor:
    """Mean over the time axis ``dim`` of ``x``, skipping entries padded in ``(B, T)``.

    A plain mean when nothing in the batch is padded (as upstream); a sample with no real
    entry gives 0 rather than the NaN of 0/0.
    """
    if pad_mask is None or not bool(pad_mask.any()):
        return x.mean(dim=dim)
    shape = [1] * x.ndim
    shape[0], shape[dim] = x.shape[0], x.shape[dim]
    weight = (~pad_mask).to(x.dtype).view(shape)
    return (x * weight).sum(dim=dim) / weight.sum(dim=dim).clamp(min=1.0)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad the last two axes up to a multiple; return the padded tensor and (H, W).

    Upstream networks need sizes divisible by their stride; padding here and cropping the
    output back lets any size through, and is a no-op for divisible sizes.
    """
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h == 0 and pad_w == 0:
        return x, (height, width)
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:])
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    flat = nn.functional.pad(flat, (0, pad_w, 0, pad_h), mode=mode)
    return flat.view(*lead, *flat.shape[-3:]), (height, width)
