"""DynamicEarthNet 3D-UNet baseline (config name ``unet3d``).

A small 3-D U-Net over (time, height, width): two encoder levels, a bottleneck, two
decoder levels with skip connections, then a mean of the per-frame logits over time.
Module names mirror the upstream module tree (``en3.0``, ``center_out.3`` ...) so that
official checkpoints (with the ``module.`` prefix stripped) load with ``strict=True``.
"""

from __future__ import annotations

import torch
from torch import nn

from eochange.models.blocks import masked_mean, pad_to_multiple, padded_frames
from eochange.models.registry import register_model

MIN_FRAMES = 4
"""Two temporal max-pools by 2 need at least 4 frames (upstream crashes below that)."""

SPATIAL_MULTIPLE = 4
"""Two spatial max-pools by 2: H and W are padded up to a multiple of 4."""

NEGATIVE_SLOPE = 0.01


def _conv(d_in: int, d_out: int) -> list[nn.Module]:
    """Conv3d k3 p1 -> BatchNorm3d -> LeakyReLU(0.01): three Sequential entries."""
    return [
        nn.Conv3d(d_in, d_out, kernel_size=3, padding=1),
        nn.BatchNorm3d(d_out),
        nn.LeakyReLU(NEGATIVE_SLOPE),
    ]


def _up(d_in: int, d_out: int) -> nn.ConvTranspose3d:
    """ConvTranspose3d doubling T, H and W exactly (k3, s2, p1, output_padding 1)."""
    return nn.ConvTranspose3d(d_in, d_out, kernel_size=3, stride=2, padding=1, output_padding=1)


def output_frames(t: int) -> int:
    """Frames of the pre-mean output, ``T' = 4 * floor(floor(T / 2) / 2)`` (= 4 * (T // 4)).

    Each MaxPool3d(2) floors T, and each transposed conv exactly doubles it, so the last
    ``T mod 4`` input frames are dropped.
    """
    return 4 * ((t // 2) // 2)


def output_frame_mask(pad_mask: torch.Tensor, t_out: int, truncated: bool = True) -> torch.Tensor:
    """Padded-frame mask ``(B, T')`` of the pre-mean output, from the input mask ``(B, T)``.

    Args:
        pad_mask: ``(B, T)`` bool, True for padded input frames.
        t_out: ``T'``, a multiple of 4 with ``T' <= T`` (see :func:`output_frames`).
        truncated: True (upstream): the first ``T'`` entries of ``pad_mask``. False: pool
            the mask to the network's temporal structure. The two pooling stages tile the
            first ``T'`` input frames in blocks of 4 frames that share one bottleneck
            cell; an output frame is valid if ANY input frame of its block is valid
            (i.e. a block is padded only when all its 4 frames are padded).

    Returns:
        ``(B, T')`` bool, True for output frames left out of the temporal mean.
    """
    if truncated:
        return pad_mask[:, :t_out]
    valid = ~pad_mask[:, :t_out]
    block_valid = valid.view(valid.shape[0], t_out // MIN_FRAMES, MIN_FRAMES).any(dim=2)
    return ~block_valid.repeat_interleave(MIN_FRAMES, dim=1)


@register_model("unet3d")
class UNet3D(nn.Module):
    """3D-UNet of DynamicEarthNet (upstream ``network/utae_seg/unet3d.py::UNet3D``).

    Defaults give the published configuration: 1,542,550 trainable parameters and 81
    state_dict entries.

    Args:
        in_channels: Input bands C (upstream ``in_channel``).
        num_classes: Output classes K (upstream ``n_classes``).
        feats: Base width; the levels have ``4*feats``, ``8*feats`` and ``16*feats``
            channels and the last decoder conv ``2*feats``.
        pad_value: Value of temporally padded frames (a frame is padded when all its
            values equal it); None disables detection, so the mean is always plain.
        truncated_mask: True (upstream quirk, the default): the masked mean uses the
            first ``T'`` entries of the ``(B, T)`` pad mask. False: the mask pooled to
            ``T'`` in 4-frame blocks, see :func:`output_frame_mask`.
    """

    def __init__(
        self,
        in_channels: int = 4,
        num_classes: int = 6,
        feats: int = 8,
        pad_value: float | None = 0.0,
        truncated_mask: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.pad_value = pad_value
        self.truncated_mask = truncated_mask
        w3, w4, wc = 4 * feats, 8 * feats, 16 * feats
        self.en3 = nn.Sequential(*_conv(in_channels, w3), *_conv(w3, w3))
        self.pool_3 = nn.MaxPool3d(2)
        self.en4 = nn.Sequential(*_conv(w3, w4), *_conv(w4, w4))
        self.pool_4 = nn.MaxPool3d(2)
        self.center_in = nn.Sequential(*_conv(w4, wc))
        # No norm or activation after the transposed conv (keys center_out.{0,1,3}).
        self.center_out = nn.Sequential(*_conv(wc, wc), _up(wc, w4))
        self.dc4 = nn.Sequential(*_conv(2 * w4, w4), *_conv(w4, w4))
        self.trans3 = nn.Sequential(_up(w4, w3), nn.BatchNorm3d(w3), nn.LeakyReLU(NEGATIVE_SLOPE))
        self.dc3 = nn.Sequential(*_conv(2 * w3, w3), *_conv(w3, 2 * feats))
        self.final = nn.Conv3d(2 * feats, num_classes, kernel_size=3, padding=1)

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 5:
            raise ValueError(f"UNet3D: expected input (B, T, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[2] != self.in_channels:
            raise ValueError(
                f"UNet3D: expected {self.in_channels} channels (axis 2 of (B, T, C, H, W)), "
                f"got {x.shape[2]}"
            )
        if x.shape[1] < MIN_FRAMES:
            raise ValueError(
                f"UNet3D: needs at least {MIN_FRAMES} frames (two temporal poolings by 2), "
                f"got T={x.shape[1]}"
            )

    def temporal_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-frame logits before the temporal mean, and the input pad mask.

        Args:
            x: ``(B, T, C, H, W)`` with ``T >= 4``; any H and W.

        Returns:
            ``(B, K, T', H, W)`` logits with ``T' = 4 * (T // 4)`` (see
            :func:`output_frames`), and the ``(B, T)`` bool pad mask of ``x`` (None when
            ``pad_value`` is None).

        Raises:
            ValueError: Not 5-D, wrong channel count, or ``T < 4``.
        """
        self._check(x)
        pad_mask = padded_frames(x, self.pad_value)
        # Upstream writes ``x[x == pad_value] = 0`` in place into the caller's tensor; a
        # no-op for the pad value 0 it uses. Reproduced out of place for other values.
        if self.pad_value is not None and self.pad_value != 0:
            x = x.masked_fill(x == self.pad_value, 0.0)
        # Upstream needs H, W divisible by 4: pad here, crop the logits back below.
        x, (height, width) = pad_to_multiple(x, SPATIAL_MULTIPLE)
        x = x.permute(0, 2, 1, 3, 4)  # (B, C, T, H, W): Conv3d runs over (T, H, W)

        en3 = self.en3(x)
        en4 = self.en4(self.pool_3(en3))
        center = self.center_out(self.center_in(self.pool_4(en4)))
        # The poolings floor odd T, so the upsampled maps can be shorter than the skips:
        # crop the skips to the first frames, as upstream does.
        dc4 = self.dc4(torch.cat([center, en4[:, :, : center.shape[2]]], dim=1))
        up3 = self.trans3(dc4)
        dc3 = self.dc3(torch.cat([up3, en3[:, :, : up3.shape[2]]], dim=1))
        logits = self.final(dc3)
        return logits[..., :height, :width], pad_mask

    def forward(self, x: torch.Tensor, dates: torch.Tensor | None = None) -> torch.Tensor:
        """Segment a time series into one map.

        Args:
            x: ``(B, T, C, H, W)`` images, ``T >= 4``; right-padded frames are all
                ``pad_value``. Not modified.
            dates: ``(B, T)`` acquisition dates; ignored (accepted for the common
                calling convention).

        Returns:
            ``(B, K, H, W)`` logits: the mean over ``T'`` of the per-frame logits, masked
            when any sample of the batch has padded frames (upstream behaviour).

        Raises:
            ValueError: Not 5-D, wrong channel count, or ``T < 4``.
        """
        del dates
        logits, pad_mask = self.temporal_logits(x)
        if pad_mask is None or not bool(pad_mask.any()):
            return logits.mean(dim=2)
        mask = output_frame_mask(pad_mask, logits.shape[2], self.truncated_mask)
        return masked_mean(logits, mask, dim=2)
