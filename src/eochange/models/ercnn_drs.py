"""ERCNN-DRS: late-fused SAR and optical ConvLSTM branches for urban change (Zitzlsberger 2021).

Per frame, a SAR block (Conv3x3-BN-ReLU) and an optical block (2 x Conv3x3-BN-ReLU) feed one
ConvLSTM per branch; the last hidden states are concatenated ``[SAR, optical]`` and go
through 2 x Conv3x3-BN-ReLU(8) and a 1x1 conv with a sigmoid: a per-pixel change score in
[0, 1] for the window. Layer for layer as the current upstream Keras ``model.py`` so that the
published weights load (:func:`eochange.models.from_keras_ercnn`) and give the same outputs.

The ConvLSTM has the Keras semantics, not those of :class:`eochange.models.convlstm.ConvLSTMCell`
(gate order i, f, c, o; Keras-2 hard sigmoid; a biased input conv and a bias-free recurrent
conv; per-gate recurrent dropout), hence its own module here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from eochange.errors import ConfigError, DataError
from eochange.models.registry import register_model

PAD_VALUE = -1.0
"""Value of temporal padding (upstream ``padded_batch(padding_values=-1.0)``) and of the
Keras ``Masking`` layer."""

VARIANTS = ("combined", "sar", "optical")


@dataclass(frozen=True)
class EraWidths:
    """Channel split and branch widths of one era's model.

    Args:
        sar_channels: SAR channels (ascending then descending), the first ones of a frame.
        optical_channels: Optical channels, after the SAR ones.
        sar_filters: Width of the SAR conv block and ConvLSTM.
        optical_filters: Width of the optical conv blocks and ConvLSTM.
    """

    sar_channels: int
    optical_channels: int
    sar_filters: int
    optical_filters: int


ERAS = {
    "s1s2": EraWidths(sar_channels=4, optical_channels=13, sar_filters=10, optical_filters=26),
    "ers_ls5": EraWidths(sar_channels=2, optical_channels=7, sar_filters=4, optical_filters=20),
}
"""Sentinel-1/2 (asc VV, VH, dsc VV, VH + 13 S2 bands) and ERS-1/2 + Landsat-5 TM (ERS asc,
dsc + 7 TM bands)."""

FUSION_FILTERS = 8
BN_EPS = 1e-3  # Keras BatchNormalization epsilon
BN_MOMENTUM = 0.01  # Keras momentum 0.99 = 1 - PyTorch momentum


def era_widths(era: str) -> EraWidths:
    """The :class:`EraWidths` of ``era``.

    Raises:
        ConfigError: Unknown era.
    """
    if era not in ERAS:
        raise ConfigError(f"era: expected one of {tuple(ERAS)}, got {era!r}")
    return ERAS[era]


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """Keras-2 ``hard_sigmoid``: ``clip(0.2 x + 0.5, 0, 1)``.

    Not ``torch.nn.functional.hardsigmoid`` (= Keras 3's ``relu6(x + 3) / 6``, slope 1/6).
    """
    return (0.2 * x + 0.5).clamp(0.0, 1.0)


def _glorot_conv(conv: nn.Conv2d) -> nn.Conv2d:
    # Keras defaults: Glorot-uniform kernel (same fans as PyTorch's (out, in, kh, kw)), zero bias.
    nn.init.xavier_uniform_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


class ConvBNReLU(nn.Module):
    """Conv2d 3x3 (padding 1, bias) -> BatchNorm (eps 1e-3, momentum 0.01) -> ReLU.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        bn_momentum: PyTorch momentum of the BatchNorm running statistics.
    """

    def __init__(
        self, in_channels: int, out_channels: int, bn_momentum: float = BN_MOMENTUM
    ) -> None:
        super().__init__()
        self.conv = _glorot_conv(nn.Conv2d(in_channels, out_channels, 3, padding=1))
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=bn_momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, H, W) -> (N, out_channels, H, W)``."""
        return F.relu(self.bn(self.conv(x)))


def _on_frames(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, select: torch.Tensor | None
) -> torch.Tensor:
    """Apply a per-frame ``fn`` to ``x`` ``(B, T, C, H, W)``, on the selected frames only.

    Args:
        fn: Maps ``(N, C, H, W)`` to ``(N, C', H, W)``.
        x: ``(B, T, C, H, W)``.
        select: ``(B, T)`` bool, or None for all frames. Unselected frames are not computed
            (their output is 0): this skips padding and, in training, keeps it out of the
            BatchNorm batch statistics.

    Returns:
        ``(B, T, C', H, W)``.
    """
    batch, steps = x.shape[:2]
    flat = x.flatten(0, 1)
    if select is None:
        return fn(flat).unflatten(0, (batch, steps))
    index = select.flatten().nonzero().squeeze(1)
    chosen = fn(flat.index_select(0, index))
    out = chosen.new_zeros(batch * steps, *chosen.shape[1:]).index_copy(0, index, chosen)
    return out.unflatten(0, (batch, steps))


class KerasConvLSTM(nn.Module):
    """Keras ``ConvLSTM2D`` (3x3, padding same, ``return_sequences=False``) over masked steps.

    Gates along the 4F axis are ordered i, f, c, o, as Keras stores them::

        z = input_conv(x_t) + recurrent_conv(h_{t-1})      (input conv biased, recurrent not)
        i, f, o = hard_sigmoid(z_i, z_f, z_o)
        c_t = f * c_{t-1} + i * tanh(z_c)
        h_t = o * tanh(c_t)

    Zero initial state; over an invalid step a sample's ``(h, c)`` is carried unchanged
    (Keras masking); the output is the last ``h``. Initialisation as Keras: Glorot-uniform
    input kernel, orthogonal recurrent kernel, zero bias except the forget gate (1,
    ``unit_forget_bias``).

    Args:
        input_dim: Channels of the input frames.
        filters: F, the channels of ``h`` and ``c``.
        recurrent_dropout: Keras ``recurrent_dropout``: in training, four inverted-dropout
            masks on ``h_{t-1}`` (one per gate, element-wise over ``(F, H, W)``), drawn once
            per sequence and kept over the time steps.
    """

    def __init__(self, input_dim: int, filters: int, recurrent_dropout: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= recurrent_dropout < 1.0:
            raise ConfigError(f"recurrent_dropout: expected 0 <= p < 1, got {recurrent_dropout}")
        self.filters = filters
        self.recurrent_dropout = recurrent_dropout
        self.input_conv = _glorot_conv(nn.Conv2d(input_dim, 4 * filters, 3, padding=1))
        self.recurrent_conv = nn.Conv2d(filters, 4 * filters, 3, padding=1, bias=False)
        nn.init.orthogonal_(self.recurrent_conv.weight)
        with torch.no_grad():
            self.input_conv.bias[filters : 2 * filters] = 1.0

    def forward(self, x: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """Run the recurrence.

        Args:
            x: ``(B, T, input_dim, H, W)``.
            steps: ``(B, T)`` bool, True where the step updates the state.

        Returns:
            The last hidden state ``(B, F, H, W)``, float32.
        """
        # The recurrence compounds rounding over up to 110 steps: float32 even under autocast.
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            any_valid, all_valid = _step_flags(steps)
            per_step: tuple[torch.Tensor, ...] = ()
            if any(any_valid):
                # The hot loop only has the recurrent conv: the input-to-gates conv of every
                # valid frame is one batched conv (invalid frames are never read, so not
                # computed).
                gates_x = self.input_gates(x, None if all(all_valid) else steps)
                # unbind, not gates_x[:, t]: the backward of T indexing ops would each allocate
                # and zero-fill a full (B, T, 4F, H, W) gradient (quadratic in T); unbind's is
                # one stack.
                per_step = gates_x.unbind(1)
            return self._recur(per_step.__getitem__, steps, x.shape[-2:], any_valid, all_valid)

    def input_gates(self, x: torch.Tensor, select: torch.Tensor | None = None) -> torch.Tensor:
        """The input-to-gates pre-activations ``input_conv(x_t)`` of every frame, float32.

        Args:
            x: ``(B, T, input_dim, H, W)``.
            select: ``(B, T)`` bool: only these frames are computed (the others are 0); None:
                all.

        Returns:
            ``(B, T, 4F, H, W)`` float32 (computed without autocast, as in :meth:`forward`).
        """
        with torch.autocast(device_type=x.device.type, enabled=False):
            return _on_frames(self.input_conv, x.float(), select)

    def recurrence(
        self,
        gates_at: Callable[[int], torch.Tensor],
        steps: torch.Tensor,
        size: tuple[int, int],
    ) -> torch.Tensor:
        """Run the recurrence on precomputed input gates (the loop of :meth:`forward`).

        Args:
            gates_at: ``t -> (B, 4F, H, W)`` float32 input-to-gates pre-activations of step t
                (:meth:`input_gates`); only called on the steps some sample takes.
            steps: ``(B, T)`` bool, True where the step updates the state.
            size: ``(H, W)``.

        Returns:
            The last hidden state ``(B, F, H, W)``, float32; zeros if no step is taken.
        """
        with torch.autocast(device_type=steps.device.type, enabled=False):
            return self._recur(gates_at, steps, size, *_step_flags(steps))

    def _recur(
        self,
        gates_at: Callable[[int], torch.Tensor],
        steps: torch.Tensor,
        size: tuple[int, int] | torch.Size,
        any_valid: list[bool],
        all_valid: list[bool],
    ) -> torch.Tensor:
        # Float32 (autocast off), zero initial state (the output where no step is taken).
        batch, (height, width) = steps.shape[0], size
        h = torch.zeros(batch, self.filters, height, width, device=steps.device)
        c = h.clone()
        if not any(any_valid):
            return h
        masks = None
        if self.training and self.recurrent_dropout > 0:
            keep = 1.0 - self.recurrent_dropout
            # The four per-gate masks side by side: gate g sees h * masks[:, gF:(g+1)F].
            masks = torch.bernoulli(h.new_full((batch, 4 * self.filters, height, width), keep))
            masks = masks / keep
        for t in range(steps.shape[1]):
            if not any_valid[t]:
                continue
            if masks is None:
                gates_h = self.recurrent_conv(h)
            else:
                # Grouped conv: group g convolves h * mask_g with the gate-g rows of the kernel.
                dropped = h.repeat(1, 4, 1, 1) * masks
                gates_h = F.conv2d(dropped, self.recurrent_conv.weight, padding=1, groups=4)
            z_i, z_f, z_c, z_o = torch.split(gates_at(t) + gates_h, self.filters, dim=1)
            c_next = hard_sigmoid(z_f) * c + hard_sigmoid(z_i) * torch.tanh(z_c)
            h_next = hard_sigmoid(z_o) * torch.tanh(c_next)
            if all_valid[t]:
                h, c = h_next, c_next
            else:
                update = steps[:, t].view(-1, 1, 1, 1)
                h, c = torch.where(update, h_next, h), torch.where(update, c_next, c)
        return h


def _step_flags(steps: torch.Tensor) -> tuple[list[bool], list[bool]]:
    # Per step: does any sample / every sample take it (one host sync each, not one per step).
    return steps.any(dim=0).tolist(), steps.all(dim=0).tolist()


@dataclass(frozen=True)
class FrameCodes:
    """Per-frame ConvLSTM inputs of series of frames (:meth:`ERCNNDRS.encode_frames`).

    Args:
        sar: ``(B, N, 4 F_sar, H, W)`` float32 input-to-gates pre-activations of the SAR
            ConvLSTM (gates i, f, c, o), or None without a SAR branch.
        optical: ``(B, N, 4 F_opt, H, W)`` those of the optical ConvLSTM, or None.
        steps: ``(B, N)`` bool, the frames the ConvLSTMs take (the model's step rule).
    """

    sar: torch.Tensor | None
    optical: torch.Tensor | None
    steps: torch.Tensor

    @property
    def branches(self) -> int:
        """Number of branches encoded."""
        return (self.sar is not None) + (self.optical is not None)

    @property
    def size(self) -> tuple[int, int]:
        """Frame ``(H, W)``."""
        gates = self.sar if self.sar is not None else self.optical
        assert gates is not None
        return int(gates.shape[-2]), int(gates.shape[-1])


@register_model("ercnn_drs")
class ERCNNDRS(nn.Module):
    """ERCNN-DRS (upstream ``model.py``); defaults = the published S1/S2 combined model.

    Input channels (per frame, channels-first): ``s1s2`` 17 = asc VV, asc VH, dsc VV, dsc VH,
    B01 ... B12 (13, with B8A); ``ers_ls5`` 9 = ERS asc, ERS dsc, TM B1 ... B7. Values as
    stacked (no standardisation), temporal padding -1.

    **Single-branch variants** (upstream's ablations): ``x`` may carry the full era layout,
    sliced here like upstream's training script (SAR = ``[:4]`` / ``[:2]``, optical =
    ``[4:]`` / ``[2:]``), or only the branch's channels (4 or 13; 2 or 7), which is what the
    upstream ablation model itself takes. The step rule and the masking below then act on
    the branch's channels, as in the upstream ablation model.

    **Step validity.** Each sample's ConvLSTMs skip invalid steps (state carried unchanged).

    - Default: ``valid[b, t]`` if given; otherwise a step is valid unless its frame is
      padding, i.e. all channels at all pixels equal -1.
    - ``keras_compat=True`` (upstream rule, needed for exact parity with Keras): step t of
      sample b is valid iff ``x[b, t, 0, 0, 0] != 0`` and not all channels at pixel (0, 0)
      equal -1 (channel 0 = asc VV / ERS asc). A genuine frame whose top-left channel 0 is
      exactly 0 (e.g. before the first ascending observation, since forward fill starts from
      zeros) is skipped. A ``valid`` given as well is combined with AND; for a ``valid`` that
      only marks -1 padding this changes nothing, since such frames already fail the rule.

    In both modes -1 padding behaves like truncation. As the Keras ``Masking`` layer,
    pixels whose channels all equal -1 are set to 0 before the conv blocks.

    **BatchNorm and padding.** Upstream's per-frame conv blocks see every frame, so in
    training the BN batch statistics include padded frames (default, for training parity).
    ``masked_bn=True`` computes the per-frame blocks on valid frames only, so the
    statistics exclude them. In eval mode invalid frames are never computed either way
    (same outputs, less work).

    **Overlapping windows** (eval mode): :meth:`encode_frames` computes the per-frame part
    (masking, conv blocks, ConvLSTM input convs) once for every frame of a series, and
    :meth:`decode_windows` runs the recurrences and the fusion head of any step ranges of it:
    the outputs of :meth:`forward` on each window, without recomputing a frame per window.

    Args:
        era: ``s1s2`` (17 channels, branch widths SAR 10 / optical 26) or ``ers_ls5``
            (9 channels, 4 / 20).
        variant: ``combined``, ``sar`` or ``optical``.
        keras_compat: Upstream step rule (see above).
        recurrent_dropout: Keras ``recurrent_dropout`` of both ConvLSTMs, training only
            (0.4 in the current ``model.py``; the shipped S1/S2 weights were trained with 0).
        masked_bn: BN statistics over valid frames only (see above).
        bn_momentum: PyTorch momentum of the BatchNorm running statistics: 0.01 (Keras'
            0.99, upstream) or more for short runs, whose running statistics would
            otherwise still be mostly their initial values (after 100 steps, 0.99^100 =
            37 %), which makes eval-mode outputs lag the weights.

    Raises:
        ConfigError: Unknown era or variant, a dropout outside [0, 1) or a momentum
            outside (0, 1].
    """

    def __init__(
        self,
        era: str = "s1s2",
        variant: str = "combined",
        keras_compat: bool = False,
        recurrent_dropout: float = 0.4,
        masked_bn: bool = False,
        bn_momentum: float = BN_MOMENTUM,
    ) -> None:
        super().__init__()
        widths = era_widths(era)
        if variant not in VARIANTS:
            raise ConfigError(f"variant: expected one of {VARIANTS}, got {variant!r}")
        if not 0 < bn_momentum <= 1:
            raise ConfigError(f"bn_momentum: expected a value in (0, 1], got {bn_momentum!r}")
        block = functools.partial(ConvBNReLU, bn_momentum=bn_momentum)
        self.era = era
        self.variant = variant
        self.keras_compat = keras_compat
        self.masked_bn = masked_bn
        self.sar_channels = widths.sar_channels
        self.optical_channels = widths.optical_channels
        self.in_channels = widths.sar_channels + widths.optical_channels
        use_sar = variant in ("combined", "sar")
        use_optical = variant in ("combined", "optical")
        # Module names follow the upstream layer names (without the widths).
        self.conv_sar: ConvBNReLU | None = None
        self.convlstm_sar: KerasConvLSTM | None = None
        self.conv_opt_1: ConvBNReLU | None = None
        self.conv_opt_2: ConvBNReLU | None = None
        self.convlstm_opt: KerasConvLSTM | None = None
        fused = 0
        if use_sar:
            self.conv_sar = block(widths.sar_channels, widths.sar_filters)
            self.convlstm_sar = KerasConvLSTM(
                widths.sar_filters, widths.sar_filters, recurrent_dropout
            )
            fused += widths.sar_filters
        if use_optical:
            self.conv_opt_1 = block(widths.optical_channels, widths.optical_filters)
            self.conv_opt_2 = block(widths.optical_filters, widths.optical_filters)
            self.convlstm_opt = KerasConvLSTM(
                widths.optical_filters, widths.optical_filters, recurrent_dropout
            )
            fused += widths.optical_filters
        self.conv_concat_1 = block(fused, FUSION_FILTERS)
        self.conv_concat_2 = block(FUSION_FILTERS, FUSION_FILTERS)
        self.conv_sigmoid = _glorot_conv(nn.Conv2d(FUSION_FILTERS, 1, 1))

    def _input_slice(self, channels: int) -> slice:
        # The channels of an input with ``channels`` channels that this variant keeps.
        accepted = {
            "combined": {self.in_channels: slice(None)},
            "sar": {self.in_channels: slice(0, self.sar_channels), self.sar_channels: slice(None)},
            "optical": {
                self.in_channels: slice(self.sar_channels, None),
                self.optical_channels: slice(None),
            },
        }[self.variant]
        if channels not in accepted:
            expected = " or ".join(str(c) for c in accepted)
            raise DataError(
                f"x: ERCNN-DRS era {self.era!r} variant {self.variant!r} expects {expected} "
                f"channels, got {channels}"
            )
        return accepted[channels]

    def step_mask(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """The steps the ConvLSTMs take, by the rule of this model (see the class docstring).

        Args:
            x: ``(B, T, C, H, W)``, the channels the model sees (for a single-branch
                variant, the branch's).
            valid: ``(B, T)`` bool or None.

        Returns:
            ``(B, T)`` bool.
        """
        if self.keras_compat:
            top_left = x[:, :, :, 0, 0]
            steps = (top_left[:, :, 0] != 0) & (top_left != PAD_VALUE).any(dim=2)
            return steps if valid is None else steps & valid
        if valid is not None:
            return valid
        return (x != PAD_VALUE).flatten(2).any(dim=2)

    def _check_valid(self, valid: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
        if valid is None:
            return None
        if tuple(valid.shape) != tuple(x.shape[:2]):
            raise DataError(
                f"valid: expected shape (B, T) = {tuple(x.shape[:2])}, got {tuple(valid.shape)}"
            )
        if valid.dtype != torch.bool:
            raise DataError(f"valid: expected a bool tensor, got {valid.dtype}")
        return valid.to(x.device)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Score urban change in each window.

        Args:
            x: ``(B, T, C, H, W)``, any H, W; C = the era's channels (or, for a single-branch
                variant, the branch's: see the class docstring).
            valid: ``(B, T)`` bool, True for real steps; None: derived (see the class
                docstring).

        Returns:
            Change probabilities ``(B, H, W)`` in [0, 1].

        Raises:
            DataError: ``x`` not 5-D or with a wrong channel count, or ``valid`` not a
                ``(B, T)`` bool tensor.
        """
        x, steps = self._prepare(x, valid)
        # Per-frame blocks: all frames in training (upstream BN statistics include padding)
        # unless masked_bn; valid frames only otherwise (eval: same outputs, less work).
        select = None if self.training and not self.masked_bn else steps
        hidden = []
        for _, frames, blocks, lstm in self._branches(x):
            if select is not None and not bool(select.any()):
                # Nothing valid anywhere: the state stays 0 (and BN sees no empty batch).
                hidden.append(frames.new_zeros(x.shape[0], lstm.filters, *x.shape[-2:]))
            else:
                hidden.append(lstm(_on_frames(_chain(blocks), frames, select), steps))
        return self._head(hidden, x.dtype)

    def encode_frames(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> FrameCodes:
        """The per-frame part of :meth:`forward`, once for frames shared by many windows.

        In eval mode a frame's per-frame work is the same in every window that contains it:
        the Keras masking, the conv blocks (BatchNorm with its running statistics) and each
        ConvLSTM's input-to-gates conv. This computes it once per frame of a series;
        :meth:`decode_windows` then runs the recurrences and the fusion head of any step
        ranges of it. Under autocast the conv blocks run in reduced precision as in
        :meth:`forward`; the input-to-gates conv and the codes are float32 (as in
        :meth:`forward`).

        Args:
            x: ``(B, N, C, H, W)``: B series (e.g. tiles) of N frames, channels as
                :meth:`forward`.
            valid: ``(B, N)`` bool, True for real frames; None: derived. The step rule is
                :meth:`forward`'s, applied to each frame: a window of frames then takes the
                steps :meth:`forward` takes on them padded with -1 (given ``valid`` sliced
                to the window and padded with False).

        Returns:
            The :class:`FrameCodes` (codes only of the frames the ConvLSTMs take; 0 on
            the others, which are never read).

        Raises:
            RuntimeError: The model is in training mode (BatchNorm batch statistics and
                recurrent dropout would make a frame's codes depend on the window).
            DataError: As :meth:`forward`.
        """
        self._require_eval("encode_frames")
        x, steps = self._prepare(x, valid)
        select = None if bool(steps.all()) else steps  # None: every frame, no gather
        anything = bool(steps.any())
        codes: dict[str, torch.Tensor] = {}
        for name, frames, blocks, lstm in self._branches(x):
            if not anything:  # no frame to compute (and BN sees no empty batch)
                size = (*steps.shape, 4 * lstm.filters, *x.shape[-2:])
                codes[name] = torch.zeros(size, device=x.device)
            else:
                features = _on_frames(_chain(blocks), frames, select)
                codes[name] = lstm.input_gates(features, select)
        return FrameCodes(codes.get("sar"), codes.get("optical"), steps)

    def decode_windows(
        self,
        codes: FrameCodes,
        windows: Sequence[tuple[int, int, int]],
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """Score the windows of encoded frames: :meth:`forward` on each, from the codes.

        Windows are batched ``batch_size`` at a time; a batch's ConvLSTMs run over its
        longest window, each window's steps being ``codes.steps`` of its frames then False
        (trailing padding, i.e. truncation, as in :meth:`forward`). The input gates of step
        t of a batch are gathered from the codes step by step (``(batch, 4F, H, W)`` at a
        time, never a ``(batch, T, 4F, H, W)`` copy), and the recurrence is
        :meth:`KerasConvLSTM.recurrence`, the loop of :meth:`forward`. Equals
        :meth:`forward` on the window's frames padded with -1 (float32 rounding apart).

        Args:
            codes: :meth:`encode_frames` of B series of N frames.
            windows: ``(b, start, end)``: frames ``[start, end)`` of series b.
            batch_size: Windows per batch (None: all at once).

        Returns:
            Change probabilities ``(len(windows), H, W)`` in [0, 1].

        Raises:
            RuntimeError: The model is in training mode.
            DataError: Codes of another variant, a window outside the frames or empty.
        """
        self._require_eval("decode_windows")
        parts = {"sar": (codes.sar, self.convlstm_sar),
                 "optical": (codes.optical, self.convlstm_opt)}  # fmt: skip
        branches = [(gates, lstm) for gates, lstm in parts.values() if lstm is not None]
        if any(gates is None for gates, _ in branches) or len(branches) != codes.branches:
            raise DataError(f"decode_windows: codes of another variant than {self.variant!r}")
        series, frames = codes.steps.shape
        for b, start, end in windows:
            if not (0 <= b < series and 0 <= start < end <= frames):
                raise DataError(
                    f"decode_windows: window ({b}, {start}, {end}) is not a non-empty step "
                    f"range of {series} series of {frames} frames"
                )
        height, width = codes.size
        out = []
        batch_size = batch_size or max(1, len(windows))
        for first in range(0, len(windows), batch_size):
            batch = windows[first : first + batch_size]
            steps = torch.zeros(len(batch), max(end - start for _, start, end in batch),
                                dtype=torch.bool, device=codes.steps.device)  # fmt: skip
            for k, (b, start, end) in enumerate(batch):
                steps[k, : end - start] = codes.steps[b, start:end]
            # Row of step t of each window in the flattened (B * N, 4F, H, W) codes; steps
            # past a window's end are not taken (any row will do).
            rows = torch.tensor([b * frames + start for b, start, _ in batch])
            rows = rows[:, None] + torch.arange(steps.shape[1])
            rows = rows.clamp(max=series * frames - 1).to(codes.steps.device)
            hidden = []
            for gates, lstm in branches:
                assert gates is not None
                flat = gates.flatten(0, 1)
                gates_at = functools.partial(_gather_step, flat, rows)
                hidden.append(lstm.recurrence(gates_at, steps, (height, width)))
            out.append(self._head(hidden, torch.float32))
        return torch.cat(out)

    def _require_eval(self, name: str) -> None:
        if self.training:
            raise RuntimeError(
                f"ERCNNDRS.{name}: eval mode only (in training, BatchNorm batch statistics "
                "and recurrent dropout make a frame's work depend on its window); call "
                "model.eval() first"
            )

    def _prepare(
        self, x: torch.Tensor, valid: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # The checks, the variant's channels, the step mask and the Keras masking.
        if x.ndim != 5 or x.shape[1] < 1:
            raise DataError(
                f"x: expected (B, T, C, H, W) with T >= 1 for ERCNN-DRS, got {tuple(x.shape)}"
            )
        valid = self._check_valid(valid, x)
        # The upstream ablation models only receive their branch's channels.
        x = x[:, :, self._input_slice(x.shape[2])]
        steps = self.step_mask(x, valid)
        # Keras Masking: pixels whose channels are all -1 become 0 (padded frames included).
        return x * (x != PAD_VALUE).any(dim=2, keepdim=True), steps

    def _branches(
        self, x: torch.Tensor
    ) -> list[tuple[str, torch.Tensor, list[ConvBNReLU], KerasConvLSTM]]:
        # (name, the branch's channels of x, per-frame blocks, ConvLSTM), SAR first.
        branches = []
        if self.conv_sar is not None and self.convlstm_sar is not None:
            sar = x[:, :, : self.sar_channels]
            branches.append(("sar", sar, [self.conv_sar], self.convlstm_sar))
        if self.conv_opt_1 is not None and self.conv_opt_2 is not None:
            assert self.convlstm_opt is not None
            optical = x[:, :, -self.optical_channels :]
            blocks = [self.conv_opt_1, self.conv_opt_2]
            branches.append(("optical", optical, blocks, self.convlstm_opt))
        return branches

    def _head(self, hidden: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
        # Last hidden states [SAR, optical] (B, F, H, W) -> change probabilities (B, H, W).
        out = self.conv_concat_2(self.conv_concat_1(torch.cat(hidden, dim=1).to(dtype)))
        return torch.sigmoid(self.conv_sigmoid(out)).squeeze(1)


def _chain(blocks: list[ConvBNReLU]) -> Callable[[torch.Tensor], torch.Tensor]:
    # The per-frame blocks of a branch as one function of (N, C, H, W) frames.
    def per_frame(frames: torch.Tensor) -> torch.Tensor:
        for block in blocks:
            frames = block(frames)
        return frames

    return per_frame


def _gather_step(flat: torch.Tensor, rows: torch.Tensor, t: int) -> torch.Tensor:
    # The (batch, 4F, H, W) input gates of step t of a batch: rows[:, t] of the flat codes.
    return flat.index_select(0, rows[:, t])
