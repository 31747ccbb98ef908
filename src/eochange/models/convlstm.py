"""U-ConvLSTM: the DynamicEarthNet baseline ``RecUNet(temporal="lstm")``.

A temporally shared 2-D U-Net encoder, a one-layer ConvLSTM over the deepest feature
map, skips averaged over the (non-padded) dates, a 2-D decoder and a 6-class head.
Module names mirror the upstream tree so that official checkpoints load with
``strict=True`` (after stripping the ``module.`` prefix of ``DataParallel``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from eochange.models.blocks import (
    LastConvLayer,
    masked_mean,
    pad_to_multiple,
    padded_frames,
    shared_forward,
    unet_stages,
)
from eochange.models.registry import register_model


class ConvLSTMCell(nn.Module):
    """One ConvLSTM cell: a single gate convolution over ``[x, h]``.

    The gate conv maps ``input_dim + hidden_dim`` channels (x first, then h) to
    ``4 * hidden_dim`` channels, split in the order i, f, o, g::

        i, f, o = sigmoid(.), g = tanh(.)
        c' = f * c + i * g
        h' = o * tanh(c')

    Args:
        input_dim: Channels of the input x.
        hidden_dim: Channels of the hidden and cell states.
        kernel_size: Square kernel of the gate conv (padding keeps the size).
        bias: Whether the gate conv has a bias.
    """

    def __init__(
        self, input_dim: int, hidden_dim: int, kernel_size: int = 3, bias: bool = True
    ) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.hidden_dim = hidden_dim
        self.conv = nn.Conv2d(
            input_dim + hidden_dim, 4 * hidden_dim, kernel_size, padding=kernel_size // 2, bias=bias
        )

    def init_state(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero ``(h, c)``, each ``(B, hidden_dim, H, W)``, for ``x`` of ``(B, C, H, W)``."""
        zeros = x.new_zeros(x.shape[0], self.hidden_dim, *x.shape[-2:])
        return zeros, zeros.clone()

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step.

        Args:
            x: ``(B, input_dim, H, W)``.
            state: ``(h, c)``, each ``(B, hidden_dim, H, W)``.

        Returns:
            The next ``(h, c)``, each ``(B, hidden_dim, H, W)``.
        """
        h, c = state
        gates = self.conv(torch.cat([x, h], dim=1))
        i, f, o, g = torch.split(gates, self.hidden_dim, dim=1)
        c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_next = torch.sigmoid(o) * torch.tanh(c_next)
        return h_next, c_next


class ConvLSTM(nn.Module):
    """One-layer ConvLSTM temporal encoder returning the last cell state.

    Upstream (and the default here) steps through **all** T dates, padded ones
    included, and returns the cell state after step T: a padded (zero) frame still
    changes the state, since the recurrence sees ``h`` and ``c``. This is kept by default
    for checkpoint parity.

    Args:
        input_dim: Channels of the input sequence.
        hidden_dim: Channels of the hidden and cell states.
        kernel_size: Kernel of the gate conv.
        skip_padded: Optional fix (off by default): each sample's state stops updating
            after its last non-padded date, so trailing padding has no effect. A sample
            with no valid date keeps the zero state.
    """

    def __init__(
        self, input_dim: int, hidden_dim: int, kernel_size: int = 3, skip_padded: bool = False
    ) -> None:
        super().__init__()
        self.skip_padded = skip_padded
        # A ModuleList of one cell, so the keys read ``cell_list.0.conv`` as upstream.
        self.cell_list = nn.ModuleList([ConvLSTMCell(input_dim, hidden_dim, kernel_size)])

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Run the recurrence over the time axis.

        Args:
            x: ``(B, T, input_dim, H, W)``.
            pad_mask: ``(B, T)`` bool, True for padded dates; only used with
                ``skip_padded``.

        Returns:
            The last cell state ``c``, ``(B, hidden_dim, H, W)``.
        """
        # The recurrence compounds rounding over the dates: keep it in float32 under
        # autocast (bf16/fp16 inference or AMP training); it runs at 1/8 resolution, so
        # this costs little.
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self._run(x.float(), pad_mask)

    def _run(self, x: torch.Tensor, pad_mask: torch.Tensor | None) -> torch.Tensor:
        cell = self.cell_list[0]
        h, c = cell.init_state(x[:, 0])
        update = None
        if self.skip_padded and pad_mask is not None and bool(pad_mask.any()):
            # Steps up to (and including) each sample's last valid date update the state.
            steps = torch.arange(x.shape[1], device=x.device)
            last_valid = torch.where(~pad_mask, steps, -1).amax(dim=1)
            update = steps[None, :] <= last_valid[:, None]
        for t in range(x.shape[1]):
            h_next, c_next = cell(x[:, t], (h, c))
            if update is None:
                h, c = h_next, c_next
            else:
                keep = update[:, t].view(-1, 1, 1, 1)
                h, c = torch.where(keep, h_next, h), torch.where(keep, c_next, c)
        return c


@register_model("uconvlstm")
class UConvLSTM(nn.Module):
    """U-ConvLSTM (upstream ``RecUNet(temporal="lstm")``); defaults = published config.

    Args:
        in_channels: Bands per frame.
        num_classes: Output classes.
        encoder_widths: Channels of ``in_conv`` and the three down blocks.
        decoder_widths: Channels of the decoder stages, shallowest first; the last one
            must equal the last encoder width (it receives ``out_convlstm``).
        str_conv_k: Kernel of the strided (down/up) convs.
        str_conv_s: Stride of the strided convs.
        str_conv_p: Padding of the strided convs.
        encoder_norm: ``"group"`` or ``"batch"`` for the encoder and the decoder's
            ``conv1``/``conv2``.
        hidden_dim: Channels of the ConvLSTM state.
        padding_mode: Padding of the down/up blocks and the head (``in_conv`` always
            uses ``"reflect"``, as upstream passes it none).
        pad_value: Value of padded frames (None: no padding detection).
        skip_padded: Optional fix, see :class:`ConvLSTM`; off for upstream parity.
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
        hidden_dim: int = 64,
        padding_mode: str = "zeros",
        pad_value: float | None = 0.0,
        skip_padded: bool = False,
    ) -> None:
        super().__init__()
        if len(encoder_widths) != len(decoder_widths) or len(encoder_widths) < 2:
            raise ValueError(
                "encoder_widths and decoder_widths must have the same length (>= 2), got "
                f"{tuple(encoder_widths)} and {tuple(decoder_widths)}"
            )
        if decoder_widths[-1] != encoder_widths[-1]:
            raise ValueError(
                f"decoder_widths[-1] ({decoder_widths[-1]}) must equal encoder_widths[-1] "
                f"({encoder_widths[-1]})"
            )
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.pad_value = pad_value
        # Total downsampling (8 by default): inputs are padded to a multiple of it.
        self.multiple = str_conv_s ** (len(encoder_widths) - 1)
        # Upstream builds in_conv without padding_mode, so it keeps ConvBlock's 'reflect';
        # the decoder's conv1/conv2 use the encoder norm (GroupNorm), unlike U-TAE.
        self.in_conv, self.down_blocks, self.up_blocks = unet_stages(
            in_channels,
            encoder_widths,
            decoder_widths,
            strided=(str_conv_k, str_conv_s, str_conv_p),
            encoder_norm=encoder_norm,
            decoder_norm=encoder_norm,
            padding_mode=padding_mode,
            in_padding_mode="reflect",
        )
        self.temporal_encoder = ConvLSTM(encoder_widths[-1], hidden_dim, skip_padded=skip_padded)
        self.out_convlstm = nn.Conv2d(hidden_dim, encoder_widths[-1], 3, padding=1)
        self.out_conv = LastConvLayer(
            decoder_widths[0], decoder_widths[0], num_classes, padding_mode=padding_mode
        )

    def forward(self, x: torch.Tensor, dates: torch.Tensor | None = None) -> torch.Tensor:
        """Segment a time series.

        Args:
            x: ``(B, T, C, H, W)`` with ``C == in_channels``; frames entirely equal to
                ``pad_value`` are treated as temporal padding.
            dates: ``(B, T)`` day offsets; ignored (ConvLSTM has no positional input),
                accepted for the common model contract.

        Returns:
            Logits ``(B, num_classes, H, W)``.

        Raises:
            ValueError: ``x`` is not 5-D, has the wrong channel count or no dates.
        """
        del dates  # The recurrence only uses the order of the frames.
        if x.ndim != 5 or x.shape[2] != self.in_channels or x.shape[1] < 1:
            raise ValueError(
                f"x: expected (B, T, {self.in_channels}, H, W) with T >= 1, got {tuple(x.shape)}"
            )
        # Upstream needs sizes divisible by the total stride; pad here, crop at the end.
        x, (height, width) = pad_to_multiple(x, self.multiple)
        pad_mask = padded_frames(x, self.pad_value)
        fill = 0.0 if self.pad_value is None else self.pad_value

        # Temporally shared encoder; padded frames are skipped (output = pad value).
        features = [shared_forward(self.in_conv, x, pad_mask, fill)]
        for block in self.down_blocks:
            features.append(shared_forward(block, features[-1], pad_mask, fill))

        out = self.out_convlstm(self.temporal_encoder(features[-1], pad_mask))
        for i, block in enumerate(self.up_blocks):
            skip = masked_mean(features[-(i + 2)], pad_mask, dim=1)
            out = block(out, skip)
        out = self.out_conv(out)
        return out[..., :height, :width]
