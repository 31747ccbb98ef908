"""U-TAE (Garnot & Landrieu, ICCV 2021) as configured by DynamicEarthNet, with its L-TAE.

A U-Net whose encoder runs on every date (time folded into the batch); the deepest
feature maps are collapsed over time, pixel by pixel, by a Lightweight Temporal
Attention Encoder (L-TAE) with one learned master query per head; the same attention
maps, upsampled, collapse the skip connections. Layer names and defaults match the
DynamicEarthNet U-TAE (1,079,718 parameters), so its checkpoints load with
``strict=True``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from eochange.errors import ConfigError
from eochange.models.blocks import (
    LastConvLayer,
    pad_to_multiple,
    padded_frames,
    shared_forward,
    unet_stages,
)
from eochange.models.registry import register_model

ATTENTION_MASK_VALUE = -1000.0
"""Score given to padded dates before the softmax (upstream: -1000, not -inf)."""


class PositionalEncoder(nn.Module):
    """Sinusoidal encoding of day offsets: ``sin``/``cos`` of ``pos / T0^(2*floor(i/2)/d)``.

    Args:
        d: Channels of one encoding.
        period: ``T0`` (1000 upstream).
        repeat: Tile the encoding this many times along the channels (one per head).
    """

    def __init__(self, d: int, period: float = 1000.0, repeat: int = 1) -> None:
        super().__init__()
        self.d = d
        self.repeat = repeat
        exponent = 2 * (torch.arange(d, dtype=torch.float32) // 2) / d
        self.register_buffer("denominator", torch.pow(period, exponent), persistent=False)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """``(N, T)`` day offsets -> ``(N, T, d * repeat)``."""
        table = positions[:, :, None].float() / self.denominator
        table[:, :, 0::2] = torch.sin(table[:, :, 0::2])
        table[:, :, 1::2] = torch.cos(table[:, :, 1::2])
        return table.repeat(1, 1, self.repeat)


class MultiHeadAttention(nn.Module):
    """Attention with a learned master query per head (no query from the input).

    Keys come from a linear layer ``fc1_k``; values are the input split into ``n_head``
    contiguous channel groups; scores are scaled by ``sqrt(d_k)``.
    """

    def __init__(self, n_head: int, d_k: int, d_in: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.n_head = n_head
        self.d_k = d_k
        self.Q = nn.Parameter(torch.zeros(n_head, d_k))
        nn.init.normal_(self.Q, mean=0.0, std=math.sqrt(2.0 / d_k))
        self.fc1_k = nn.Linear(d_in, n_head * d_k)
        nn.init.normal_(self.fc1_k.weight, mean=0.0, std=math.sqrt(2.0 / d_k))
        self.temperature = math.sqrt(d_k)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, v: torch.Tensor, pad_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, T, d_in)`` -> heads concatenated ``(N, d_in)`` and attention ``(n_head, N, T)``."""
        n, t, d_in = v.shape
        keys = self.fc1_k(v).view(n, t, self.n_head, self.d_k).permute(2, 0, 1, 3)
        scores = torch.einsum("hk,hntk->hnt", self.Q, keys) / self.temperature
        if pad_mask is not None:
            scores = scores.masked_fill(pad_mask[None], ATTENTION_MASK_VALUE)
        attention = self.dropout(torch.softmax(scores, dim=-1))
        values = v.view(n, t, self.n_head, d_in // self.n_head).permute(2, 0, 1, 3)
        heads = torch.einsum("hnt,hntc->hnc", attention, values)
        return heads.permute(1, 0, 2).reshape(n, d_in), attention


class LTAE2d(nn.Module):
    """Lightweight Temporal Attention Encoder applied independently at every pixel.

    Args:
        in_channels: Channels of the input feature maps (128).
        n_head: Attention heads (16).
        d_k: Key/query size per head (4).
        d_model: Width of the attention input after the 1x1 ``inconv`` (256).
        mlp: Widths of the output MLP (``[d_model, out]``, 256 -> 128).
        dropout: Dropout after the MLP (0.2).
        period: Positional-encoding period ``T0`` (1000).
        masked_in_norm: Compute the input GroupNorm's statistics over real dates only.
            Upstream includes padded dates, so padding a series changes the output
            slightly; True makes U-TAE exactly invariant to padding (off by default for
            checkpoint parity).
    """

    def __init__(
        self,
        in_channels: int = 128,
        n_head: int = 16,
        d_k: int = 4,
        d_model: int = 256,
        mlp: Sequence[int] = (256, 128),
        dropout: float = 0.2,
        period: float = 1000.0,
        masked_in_norm: bool = False,
    ) -> None:
        super().__init__()
        self.masked_in_norm = masked_in_norm
        if mlp[0] != d_model or d_model % n_head:
            raise ConfigError("ltae: mlp[0] must equal d_model, and d_model divide by n_head")
        self.in_norm = nn.GroupNorm(num_groups=n_head, num_channels=in_channels)
        self.inconv = nn.Conv1d(in_channels, d_model, 1)
        self.positional_encoder = PositionalEncoder(d_model // n_head, period, repeat=n_head)
        self.attention_heads = MultiHeadAttention(n_head, d_k, d_model)
        layers: list[nn.Module] = []
        for a, b in zip(mlp[:-1], mlp[1:], strict=True):
            layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
        self.mlp = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.out_norm = nn.GroupNorm(num_groups=n_head, num_channels=mlp[-1])

    def forward(
        self, x: torch.Tensor, positions: torch.Tensor, pad_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, C, H, W)``, ``(B, T)`` -> ``(B, C_out, H, W)`` and ``(n_head, B, T, H, W)``."""
        b, t, c, h, w = x.shape
        # Every pixel is a sequence: (B*H*W, C, T).
        seq = x.permute(0, 3, 4, 2, 1).reshape(b * h * w, c, t)
        pixel_mask = None
        if pad_mask is not None:
            pixel_mask = pad_mask[:, None, :].expand(b, h * w, t).reshape(b * h * w, t)
        if self.masked_in_norm and pixel_mask is not None:
            seq = self._group_norm_real_dates(seq, pixel_mask)
        else:
            seq = self.in_norm(seq)
        seq = self.inconv(seq).transpose(1, 2)  # (N, T, d_model)
        pixel_positions = positions[:, None, :].expand(b, h * w, t).reshape(b * h * w, t)
        seq = seq + self.positional_encoder(pixel_positions)
        out, attention = self.attention_heads(seq, pixel_mask)
        out = self.out_norm(self.dropout(self.mlp(out)))
        out = out.view(b, h, w, -1).permute(0, 3, 1, 2)
        attention = attention.view(-1, b, h, w, t).permute(0, 1, 4, 2, 3)
        return out, attention

    def _group_norm_real_dates(self, seq: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """``in_norm`` with mean and variance taken over the real dates only."""
        n, c, t = seq.shape
        groups = self.in_norm.num_groups
        grouped = seq.view(n, groups, c // groups, t)
        weight = (~pad_mask).to(seq.dtype)[:, None, None, :]
        count = weight.sum(dim=-1, keepdim=True).clamp(min=1) * (c // groups)
        mean = (grouped * weight).sum(dim=(2, 3), keepdim=True) / count
        var = (((grouped - mean) ** 2) * weight).sum(dim=(2, 3), keepdim=True) / count
        normed = ((grouped - mean) / torch.sqrt(var + self.in_norm.eps)).view(n, c, t)
        return normed * self.in_norm.weight[None, :, None] + self.in_norm.bias[None, :, None]


def aggregate_with_attention(
    x: torch.Tensor, attention: torch.Tensor, pad_mask: torch.Tensor | None
) -> torch.Tensor:
    """Collapse ``(B, T, C, H, W)`` skips over time with the L-TAE's group attention.

    The ``(n_head, B, T, h, w)`` attention is bilinearly upsampled to the skip size; the
    channels are split into ``n_head`` groups and group ``i`` is summed over time with
    head ``i``'s weights. Padded dates get weight 0 (without renormalising).
    """
    n_head, b, t = attention.shape[:3]
    size = x.shape[-2:]
    maps = attention.reshape(n_head * b, t, *attention.shape[-2:])
    if maps.shape[-2:] != size:
        maps = nn.functional.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    maps = maps.view(n_head, b, t, *size)
    if pad_mask is not None and bool(pad_mask.any()):
        maps = maps * (~pad_mask).float()[None, :, :, None, None]
    # Accumulate date by date with a per-channel weight map laid out like the features
    # (channel c belongs to head c // (C / n_head)): the full (n_head, B, T, C/n_head, H, W)
    # product would be T times the result (1.6 GB for a daily 1024² sample), and strided
    # access in channels-last layouts is several times slower.
    per_head = x.shape[2] // n_head
    out = None
    for i in range(t):
        frame = x[:, i]
        weight = maps[:, :, i].transpose(0, 1).repeat_interleave(per_head, dim=1)
        if frame.is_contiguous(memory_format=torch.channels_last) and not frame.is_contiguous():
            weight = weight.contiguous(memory_format=torch.channels_last)
        out = frame * weight if out is None else out.addcmul_(frame, weight)
    return out


@register_model("utae")
class UTAE(nn.Module):
    """U-TAE with the DynamicEarthNet configuration as defaults.

    Args:
        in_channels: Input bands (4: R, G, B, NIR).
        num_classes: Output classes (6).
        encoder_widths: Widths of the encoder stages.
        decoder_widths: Widths of the decoder stages.
        str_conv_k: Kernel of the strided (down/up) convolutions.
        str_conv_s: Their stride.
        str_conv_p: Their padding.
        n_head: L-TAE heads.
        d_model: L-TAE attention width.
        d_k: L-TAE key size.
        encoder_norm: ``group`` (GroupNorm, 4 groups) or ``batch`` in the encoder.
        padding_mode: Padding of every convolution (``reflect`` upstream).
        pad_value: Value of padded frames (all of a frame equal to it); None: no detection.
        positions_if_missing: Use ``0, 1, ..., T-1`` when ``dates`` is None; upstream
            raises instead (the default here too).
        masked_in_norm: Exact padding invariance (see :class:`LTAE2d`); off by default.

    ``forward(x (B, T, C, H, W), dates (B, T))`` returns logits ``(B, num_classes, H, W)``.
    Sizes that are not multiples of 8 are reflect-padded and the output cropped back.
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
        n_head: int = 16,
        d_model: int = 256,
        d_k: int = 4,
        encoder_norm: str = "group",
        padding_mode: str = "reflect",
        pad_value: float | None = 0.0,
        positions_if_missing: bool = False,
        masked_in_norm: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.pad_value = pad_value
        self.positions_if_missing = positions_if_missing
        self.stride = str_conv_s ** (len(encoder_widths) - 1)
        self.in_conv, self.down_blocks, self.up_blocks = unet_stages(
            in_channels,
            encoder_widths,
            decoder_widths,
            strided=(str_conv_k, str_conv_s, str_conv_p),
            encoder_norm=encoder_norm,
            decoder_norm="batch",
            padding_mode=padding_mode,
        )
        self.temporal_encoder = LTAE2d(
            encoder_widths[-1],
            n_head,
            d_k,
            d_model,
            (d_model, encoder_widths[-1]),
            masked_in_norm=masked_in_norm,
        )
        self.out_conv = LastConvLayer(decoder_widths[0], 32, num_classes, padding_mode)

    def forward(self, x: torch.Tensor, dates: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T, C, H, W)``, ``(B, T)`` days -> ``(B, num_classes, H, W)`` logits."""
        if x.ndim != 5 or x.shape[2] != self.in_channels:
            raise ValueError(
                f"utae: expected input (B, T, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        if dates is None:
            if not self.positions_if_missing:
                raise ValueError(
                    "utae: dates (B, T) are required by the L-TAE; pass them, or build the "
                    "model with positions_if_missing=True to use 0..T-1"
                )
            dates = torch.arange(x.shape[1], device=x.device).expand(x.shape[0], -1)
        x, (height, width) = pad_to_multiple(x, self.stride)
        pad_mask = padded_frames(x, self.pad_value)
        fill = 0.0 if self.pad_value is None else self.pad_value
        features = [shared_forward(self.in_conv, x, pad_mask, fill)]
        for block in self.down_blocks:
            features.append(shared_forward(block, features[-1], pad_mask, fill))
        out, attention = self.temporal_encoder(features[-1], dates, pad_mask)
        for i, block in enumerate(self.up_blocks):
            skip = aggregate_with_attention(features[-(i + 2)], attention, pad_mask)
            out = block(out, skip)
        return self.out_conv(out)[..., :height, :width]
