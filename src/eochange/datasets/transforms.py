"""The upstream DynamicEarthNet training augmentation, computed only where the crop needs it.

Upstream (``data/utae_aug.py``, adapted from CAC) rescales every full frame with OpenCV
bicubic interpolation (labels nearest) to a random long side, takes a random crop and
flips horizontally. Rescaling whole 1024² frames to up to 2048² only to keep a 512² crop
wastes most of the work, so this module plans the crop first and then resamples just the
crop's pixels from the source window they depend on. The sampling positions and kernel
are OpenCV's (half-pixel centres, cubic a = -0.75, replicated borders; nearest by
``floor(dst * scale)``), so the result equals "resize everything, then crop" up to float
rounding, and it is bit-identical whichever source (GeoTIFF, datacube, memmap) supplies
the window.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from eochange.errors import ConfigError

CUBIC_A = -0.75
"""OpenCV's bicubic kernel parameter."""


@dataclass(frozen=True)
class Taps:
    """Source positions and weights of a run of output pixels along one axis.

    Attributes:
        index: int64 ``(n, k)`` source indexes (already clamped to the image).
        weight: float32 ``(n, k)`` weights, or None for nearest (k = 1).

    """

    index: np.ndarray
    weight: np.ndarray | None

    @property
    def span(self) -> tuple[int, int]:
        """First source index and one past the last index used."""
        return int(self.index.min()), int(self.index.max()) + 1

    def reversed(self) -> Taps:
        """The same taps for the output in reverse order (a flip, at no cost)."""
        weight = None if self.weight is None else self.weight[::-1].copy()
        return Taps(self.index[::-1].copy(), weight)


def _inverse_scale(in_size: int, out_size: int) -> float:
    # OpenCV derives the step as 1 / (dsize / ssize); keep its rounding.
    return 1.0 / (out_size / in_size)


def cubic_taps(start: int, count: int, in_size: int, out_size: int) -> Taps:
    """OpenCV ``INTER_CUBIC`` taps for output pixels ``start .. start+count-1`` of one axis.

    Args:
        start: First output index.
        count: Number of output pixels.
        in_size: Source length along the axis.
        out_size: Length of the full rescaled axis.

    """
    dst = np.arange(start, start + count, dtype=np.float64)
    pos = ((dst + 0.5) * _inverse_scale(in_size, out_size) - 0.5).astype(np.float32)
    base = np.floor(pos)
    t = pos - base
    a = np.float32(CUBIC_A)
    one = np.float32(1.0)
    w0 = ((a * (t + one) - 5 * a) * (t + one) + 8 * a) * (t + one) - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + one
    w2 = ((a + 2) * (one - t) - (a + 3)) * (one - t) * (one - t) + one
    w3 = one - w0 - w1 - w2
    index = base.astype(np.int64)[:, None] + np.arange(-1, 3)
    np.clip(index, 0, in_size - 1, out=index)
    return Taps(index, np.stack([w0, w1, w2, w3], axis=1).astype(np.float32))


def nearest_taps(start: int, count: int, in_size: int, out_size: int) -> Taps:
    """OpenCV ``INTER_NEAREST`` source index for output pixels of one axis."""
    dst = np.arange(start, start + count, dtype=np.float64)
    index = np.floor(dst * _inverse_scale(in_size, out_size)).astype(np.int64)
    np.clip(index, 0, in_size - 1, out=index)
    return Taps(index[:, None], None)


def _weighted_rows(
    x: torch.Tensor, index: torch.Tensor, weight: torch.Tensor, out: torch.Tensor
) -> torch.Tensor:
    # Gathering whole rows (dim 1 of a contiguous (C, H, W) tensor) copies contiguous
    # memory; accumulating in place avoids a temporary per tap.
    torch.mul(x.index_select(1, index[:, 0]), weight[:, 0].view(1, -1, 1), out=out)
    for k in range(1, index.shape[1]):
        out.addcmul_(x.index_select(1, index[:, k]), weight[:, k].view(1, -1, 1))
    return out


def resample(
    frames: np.ndarray,
    rows: Taps,
    cols: Taps,
    offset: tuple[int, int] = (0, 0),
    scale: Sequence[float] | None = None,
    shift: Sequence[float] | None = None,
) -> torch.Tensor:
    """Resample every frame of a series with separable weighted taps (e.g. bicubic).

    Rows are resampled first, then columns; OpenCV does columns first, which differs
    only in float rounding. An optional per-channel ``scale``/``shift`` (e.g. ``1/std``
    and ``-mean/std``) is folded into the row weights and the final copy: since the taps
    of every output pixel sum to 1, this equals resampling and then normalising, without
    two more passes over the output.

    Args:
        frames: ``(T, C, h, w)`` source pixels (any real dtype; computed in float32).
        rows: Weighted taps along the rows (output height = ``len(rows.index)``).
        cols: Weighted taps along the columns (output width = ``len(cols.index)``).
        offset: Source ``(row, col)`` of ``frames[..., 0, 0]`` when ``frames`` is a window.
        scale: Per-channel factor applied to the result.
        shift: Per-channel offset added to the result (after ``scale``).

    Returns:
        float32 ``(T, C, n, m)``.
    """
    t_len, channels, _, width = frames.shape
    n, m = len(rows.index), len(cols.index)
    if rows.weight is None or cols.weight is None:
        raise ValueError("resample needs weighted taps; index nearest taps directly")
    row_index = torch.from_numpy(rows.index - offset[0])
    col_index = torch.from_numpy(cols.index - offset[1])
    factors = [1.0] * channels if scale is None else [float(f) for f in scale]
    offsets = [0.0] * channels if shift is None else [float(v) for v in shift]
    row_weights = [torch.from_numpy(rows.weight * np.float32(f)) for f in factors]
    col_weight = torch.from_numpy(cols.weight)
    out = torch.empty((t_len, channels, n, m))
    planes = out.view(t_len * channels, n, m)
    by_rows = torch.empty((1, n, width))
    by_cols = torch.empty((1, m, n))
    # One band plane at a time: the working set stays in cache (measured ~1.7x faster
    # than whole frames when the crop shrinks a large window).
    for p, plane in enumerate(frames.reshape(t_len * channels, 1, *frames.shape[2:])):
        source = torch.from_numpy(np.ascontiguousarray(plane, dtype=np.float32))
        _weighted_rows(source, row_index, row_weights[p % channels], by_rows)
        # Columns: transpose so that they become rows, then gather rows again.
        _weighted_rows(by_rows.transpose(1, 2).contiguous(), col_index, col_weight, by_cols)
        torch.add(by_cols[0].T, offsets[p % channels], out=planes[p])
    return out


@dataclass(frozen=True)
class CropPlan:
    """A random rescale + crop + flip, drawn before any pixel is read.

    Attributes:
        height: Source height.
        width: Source width.
        scaled_height: Height of the (virtual) rescaled image.
        scaled_width: Width of the rescaled image.
        top: Crop row in the rescaled image.
        left: Crop column in the rescaled image.
        size: Crop side.
        flip: Horizontal flip.

    """

    height: int
    width: int
    scaled_height: int
    scaled_width: int
    top: int
    left: int
    size: int
    flip: bool

    def image_taps(self) -> tuple[Taps, Taps]:
        """Bicubic row and column taps of the crop (the flip folded into the columns)."""
        cols = cubic_taps(self.left, self.size, self.width, self.scaled_width)
        return (
            cubic_taps(self.top, self.size, self.height, self.scaled_height),
            cols.reversed() if self.flip else cols,
        )

    def label_taps(self) -> tuple[Taps, Taps]:
        """Nearest-neighbour row and column taps of the crop (flip folded in)."""
        cols = nearest_taps(self.left, self.size, self.width, self.scaled_width)
        return (
            nearest_taps(self.top, self.size, self.height, self.scaled_height),
            cols.reversed() if self.flip else cols,
        )


def draw_rescale(
    rng: random.Random,
    height: int,
    width: int,
    crop_size: int,
    scale_range: Sequence[float],
    option: str = "scale_range",
) -> tuple[int, int]:
    """Draw the size of a random rescale: long side ``randint(lo * width, hi * width)``.

    The aspect ratio is kept (sides rounded half up). Shared by the upstream training
    crop and CAC's unlabelled pairs.

    Args:
        rng: Python random generator (one ``randint`` is drawn).
        height: Source height.
        width: Source width (the ``base`` of the range).
        crop_size: Crop side that must fit the smallest possible rescale.
        scale_range: Long-side range as fractions of the width.
        option: Name of the range in the error message.

    Returns:
        ``(scaled_height, scaled_width)``.

    Raises:
        ConfigError: The crop does not fit the smallest rescaled image.
    """
    low, high = int(width * scale_range[0]), int(width * scale_range[1])
    shortest = low if height == width else int(low * min(height, width) / max(height, width) + 0.5)
    if crop_size > shortest:
        raise ConfigError(
            f"crop_size: {crop_size} does not fit the smallest rescaled image ({shortest} px "
            f"for {height}x{width} inputs with {option} {tuple(scale_range)}); use crop_size "
            f"<= {shortest}"
        )
    longside = rng.randint(low, high)
    if height > width:
        return longside, int(longside * width / height + 0.5)
    return int(longside * height / width + 0.5), longside


def plan_upstream_crop(
    rng: random.Random,
    height: int,
    width: int,
    crop_size: int = 512,
    scale_range: tuple[float, float] = (0.5, 2.0),
) -> CropPlan:
    """Draw the upstream augmentation's random numbers in upstream order.

    The long side is ``randint(lo * base, hi * base)`` with ``base`` the label width
    (1024 gives 512..2048); the aspect ratio is kept; then ``randint`` row and column
    offsets of the crop; then a flip when ``random() > 0.5``.

    Args:
        rng: Python random generator (upstream uses the global ``random`` module).
        height: Source height.
        width: Source width.
        crop_size: Crop side (512 upstream).
        scale_range: Long-side range as fractions of the width.

    Raises:
        ConfigError: The crop does not fit the smallest rescaled image.

    """
    scaled_h, scaled_w = draw_rescale(rng, height, width, crop_size, scale_range)
    top = rng.randint(0, scaled_h - crop_size)
    left = rng.randint(0, scaled_w - crop_size)
    flip = rng.random() > 0.5
    return CropPlan(height, width, scaled_h, scaled_w, top, left, crop_size, flip)


def normalise(image: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """``(x - mean) / std`` per channel of a ``(..., C, H, W)`` float tensor, in place."""
    shape = (len(mean), 1, 1)
    mean_t = torch.tensor(mean, dtype=image.dtype).view(shape)
    std_t = torch.tensor(std, dtype=image.dtype).view(shape)
    return image.sub_(mean_t).div_(std_t)
