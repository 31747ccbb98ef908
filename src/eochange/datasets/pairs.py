"""Pairs of overlapping crops of unlabelled images, for CAC's consistency (any dataset).

Facts of the reference (Lai et al., CVPR 2021, its ``dataloaders/voc.py``), for an image
of ``h x w`` pixels, crop side ``S`` and stride ``s = 8``:

1. the image is rescaled once for both crops: long side ``L ~ randint(lo * base, hi *
   base)`` (``scale_range`` 0.8..2.0, ``base`` the image width), aspect kept, bicubic;
2. crop 1 at a uniform position;
3. up to 50 tries: crop 2 at a uniform position, its offset from crop 1 snapped down to a
   multiple of ``s`` (``x2 = floor((x2 - x1) / s) * s + x1``, plus ``s`` if that is
   negative), kept if the crops overlap with an IoU in ``iou_bound`` (0.1..1.0), where
   ``IoU = inter / (2 S^2 - inter)``; after 50 failures crop 2 = crop 1;
4. each crop flipped horizontally with p = 0.5, independently;
5. each crop photometrically jittered on its own (:func:`photometric`).

The overlap window of each crop, in its own unflipped pixels, is ``(max(0, y_o - y),
max(0, x_o - x), min(S, S + y_o - y), min(S, S + x_o - x))`` with ``(y, x)`` its corner
and ``(y_o, x_o)`` the other's; all corners are multiples of 8.

As for the labelled crops (:mod:`eochange.datasets.transforms`), nothing is rescaled but
the crops' own pixels: the two crops are resampled from the one source window they need,
so a sample reads one frame's window, never a whole image series. The reference pads
images smaller than the crop; here the crop must fit the smallest rescaled image instead
(it always does with the reference's settings), which :func:`plan_pair` checks.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from eochange.datasets.transforms import Taps, cubic_taps, draw_rescale, normalise, resample
from eochange.errors import ConfigError

STRIDE = 8
"""Pixels per position of CAC's pooled features; crop offsets are multiples of it."""
TRIES = 50
"""Draws of crop 2 before falling back to crop 1's window."""
IOU_BOUND = (0.1, 1.0)
SCALE_RANGE = (0.8, 2.0)
LUMA = (0.299, 0.587, 0.114)
"""Weights of R, G, B in the grey image (ITU-R 601, as torchvision)."""
BLUR_SIGMA = 1.1
"""OpenCV's sigma for a 5x5 Gaussian kernel given sigma 0."""


@dataclass(frozen=True)
class PairPlan:
    """Two overlapping crops of one rescaled image, drawn before any pixel is read.

    Attributes:
        height: Source height.
        width: Source width.
        scaled_height: Height of the (virtual) rescaled image.
        scaled_width: Width of the rescaled image.
        size: Crop side.
        corners: ``((top, left), (top, left))`` of crop 1 and crop 2 in the rescaled image.
        flips: Horizontal flip of each crop.
    """

    height: int
    width: int
    scaled_height: int
    scaled_width: int
    size: int
    corners: tuple[tuple[int, int], tuple[int, int]]
    flips: tuple[bool, bool]

    def overlap(self, k: int) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)`` of the overlap in crop ``k``'s unflipped pixels."""
        (y, x), (yo, xo) = self.corners[k], self.corners[1 - k]
        s = self.size
        return max(0, yo - y), max(0, xo - x), min(s, s + yo - y), min(s, s + xo - x)

    def iou(self) -> float:
        """Intersection over union of the two crops."""
        (y1, x1), (y2, x2) = self.corners
        inter = max(0, self.size - abs(x2 - x1)) * max(0, self.size - abs(y2 - y1))
        return inter / (2 * self.size**2 - inter)

    def taps(self, k: int) -> tuple[Taps, Taps]:
        """Bicubic row and column taps of crop ``k`` (its flip folded into the columns)."""
        top, left = self.corners[k]
        rows = cubic_taps(top, self.size, self.height, self.scaled_height)
        cols = cubic_taps(left, self.size, self.width, self.scaled_width)
        return rows, cols.reversed() if self.flips[k] else cols

    def window(self) -> tuple[int, int, int, int]:
        """``(row, col, height, width)`` of the source window both crops need."""
        spans = [self.taps(k) for k in (0, 1)]
        r0 = min(rows.span[0] for rows, _ in spans)
        r1 = max(rows.span[1] for rows, _ in spans)
        c0 = min(cols.span[0] for _, cols in spans)
        c1 = max(cols.span[1] for _, cols in spans)
        return r0, c0, r1 - r0, c1 - c0


def check_pair_settings(
    crop_size: int,
    scale_range: Sequence[float],
    iou_bound: Sequence[float],
    stride: int = STRIDE,
) -> None:
    """Validate crop, rescale and IoU settings before any image is seen.

    Raises:
        ConfigError: A crop that is not a positive multiple of ``stride``, an empty or
            non-positive scale range, or an IoU bound outside 0..1.
    """
    if crop_size < stride or crop_size % stride:
        raise ConfigError(f"crop_size: expected a positive multiple of {stride}, got {crop_size}")
    if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
        raise ConfigError(f"unlabelled_scale_range: expected 0 < low <= high, got {scale_range}")
    if len(iou_bound) != 2 or not 0 <= iou_bound[0] <= iou_bound[1] <= 1:
        raise ConfigError(f"iou_bound: expected 0 <= low <= high <= 1, got {iou_bound}")


def plan_pair(
    rng: random.Random,
    height: int,
    width: int,
    size: int,
    scale_range: Sequence[float] = SCALE_RANGE,
    iou_bound: Sequence[float] = IOU_BOUND,
    stride: int = STRIDE,
    tries: int = TRIES,
) -> PairPlan:
    """Draw the reference's rescale, two overlapping crops and their flips (module doc).

    Args:
        rng: Python random generator.
        height: Source height.
        width: Source width (the rescale's ``base``).
        size: Crop side, a multiple of ``stride``.
        scale_range: Long side range as fractions of the width (0.8..2.0).
        iou_bound: Accepted IoU range of the two crops (0.1..1.0).
        stride: Crop offsets are multiples of this (8).
        tries: Draws of crop 2 before it falls back to crop 1's window.

    Raises:
        ConfigError: Bad settings, or a crop that does not fit the smallest rescaled image.
    """
    check_pair_settings(size, scale_range, iou_bound, stride)
    scaled_h, scaled_w = draw_rescale(rng, height, width, size, scale_range,
                                      "unlabelled_scale_range")  # fmt: skip
    y1 = rng.randint(0, scaled_h - size)
    x1 = rng.randint(0, scaled_w - size)
    y2, x2 = y1, x1
    for _ in range(tries):
        ty = _snap(rng.randint(0, scaled_h - size), y1, stride)
        tx = _snap(rng.randint(0, scaled_w - size), x1, stride)
        if abs(ty - y1) >= size or abs(tx - x1) >= size:
            continue  # no overlap
        inter = (size - abs(tx - x1)) * (size - abs(ty - y1))
        if iou_bound[0] <= inter / (2 * size * size - inter) <= iou_bound[1]:
            y2, x2 = ty, tx
            break
    flips = (rng.random() < 0.5, rng.random() < 0.5)
    return PairPlan(height, width, scaled_h, scaled_w, size, ((y1, x1), (y2, x2)), flips)


def _snap(value: int, anchor: int, stride: int) -> int:
    """The reference's snapping of a second corner to ``anchor`` + a multiple of stride."""
    value = (value - anchor) // stride * stride + anchor
    return value + stride if value < 0 else value


def photometric(
    image: torch.Tensor, rng: random.Random, rgb: Sequence[int] | None = (0, 1, 2)
) -> torch.Tensor:
    """The reference's per-crop photometric augmentation, rewritten for multi-band floats.

    On raw values (e.g. reflectance), before normalisation, in the reference's order:

    1. with p = 0.5, a 5x5 Gaussian blur (sigma 1.1, reflected borders) of every band;
    2. with p = 0.8, colour jitter: brightness (every band times ``b``), contrast (every
       band blended with its own mean by ``c``) and saturation (the ``rgb`` bands blended
       with their grey by ``s``), ``b, c, s ~ U[0.6, 1.4]``, in a random order; the
       reference's hue jitter (0.1) has no meaning for reflectance and is left out;
    3. with p = 0.2, the ``rgb`` bands replaced by their grey (0.299 R + 0.587 G + 0.114 B).

    No clipping: reflectance has no upper bound (uint8 images in the reference clip at 255).

    Args:
        image: ``(..., C, H, W)`` float tensor, changed in place.
        rng: Python random generator of the draws.
        rgb: Indexes of the R, G, B bands, or None (no saturation or grey steps).

    Returns:
        ``image``.
    """
    if rng.random() < 0.5:
        image.copy_(gaussian_blur(image))
    if rng.random() < 0.8:
        factors = [rng.uniform(0.6, 1.4) for _ in range(3)]
        order = rng.sample(range(3), 3)
        for step in order:
            factor = factors[step]
            if step == 0:
                image.mul_(factor)
            elif step == 1:
                mean = image.mean(dim=(-2, -1), keepdim=True)
                image.mul_(factor).add_(mean * (1 - factor))
            elif rgb is not None:
                bands = image[..., list(rgb), :, :]
                grey = _grey(bands)
                image[..., list(rgb), :, :] = bands * factor + grey * (1 - factor)
    if rgb is not None and rng.random() < 0.2:
        image[..., list(rgb), :, :] = _grey(image[..., list(rgb), :, :])
    return image


def _grey(bands: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(LUMA, dtype=bands.dtype).view(3, 1, 1)
    return (bands * weights).sum(dim=-3, keepdim=True).expand_as(bands)


def gaussian_blur(image: torch.Tensor, sigma: float = BLUR_SIGMA, size: int = 5) -> torch.Tensor:
    """Separable Gaussian blur of every band of ``(..., C, H, W)``, reflect-101 borders."""
    x = torch.arange(size, dtype=image.dtype) - (size - 1) / 2
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    shape = image.shape
    planes = image.reshape(-1, 1, *shape[-2:])
    pad = size // 2
    planes = F.conv2d(F.pad(planes, (pad, pad, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    planes = F.conv2d(F.pad(planes, (0, 0, pad, pad), mode="reflect"), kernel.view(1, 1, -1, 1))
    return planes.reshape(shape)


class OverlappingCrops(torch.utils.data.Dataset):
    """Base of the unlabelled datasets of CAC: one sample = one image -> two crops.

    A subclass lists its images (``__len__``) and provides :meth:`image_shape`,
    :meth:`read_window` and :meth:`describe`; this class plans the crops, reads the one
    window both need, resamples, jitters and normalises them.

    Args:
        crop_size: Crop side ``S`` (a multiple of 8).
        scale_range: Long-side range of the common rescale, as fractions of the width.
        iou_bound: Accepted IoU range of the two crops.
        photometric: Jitter each crop (:func:`photometric`); False: geometry only.
        rgb: Indexes of the R, G, B bands for the saturation and grey steps, or None.
        mean: Per-band mean of the normalisation (None: no normalisation).
        std: Per-band standard deviation of the normalisation.
        seed: Seed of the augmentation: sample ``i`` drawn with key ``e`` (an epoch or
            pass) always gets the same crops, flips and jitter.

    A sample has ``crops`` float32 ``(2, C, S, S)``, ``overlap`` int64 ``(2, 4)`` (each
    crop's ``(top, left, bottom, right)``), ``flip`` bool ``(2,)``, plus the subclass's
    :meth:`describe` entries.
    """

    def __init__(
        self,
        crop_size: int = 512,
        scale_range: Sequence[float] = SCALE_RANGE,
        iou_bound: Sequence[float] = IOU_BOUND,
        photometric: bool = True,
        rgb: Sequence[int] | None = (0, 1, 2),
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        seed: int = 10,
    ) -> None:
        check_pair_settings(crop_size, scale_range, iou_bound)
        self.crop_size = crop_size
        self.scale_range = tuple(scale_range)
        self.iou_bound = tuple(iou_bound)
        self.photometric = photometric
        self.rgb = None if rgb is None else tuple(rgb)
        if (mean is None) != (std is None):
            raise ConfigError("mean and std: give both (normalised crops) or neither")
        self.mean = None if mean is None else tuple(mean)
        self.std = None if std is None else tuple(std)
        self.seed = seed

    def __len__(self) -> int:
        raise NotImplementedError

    def image_shape(self, index: int) -> tuple[int, int]:
        """``(height, width)`` of image ``index``."""
        raise NotImplementedError

    def read_window(self, index: int, window: tuple[int, int, int, int]) -> np.ndarray:
        """Raw pixels ``(C, h, w)`` of image ``index`` in ``(row, col, height, width)``."""
        raise NotImplementedError

    def describe(self, index: int) -> dict[str, Any]:
        """Identifiers of image ``index`` added to its sample (e.g. area and date)."""
        return {}

    def plan(self, index: int, key: int = 0) -> PairPlan:
        """The crops of sample ``index`` under augmentation key ``key``."""
        height, width = self.image_shape(index)
        rng = random.Random(f"{self.seed}:{key}:{index}")
        return plan_pair(rng, height, width, self.crop_size, self.scale_range, self.iou_bound)

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        """Sample ``index``; an ``(index, key)`` pair fixes the augmentation's key."""
        index, key = index if isinstance(index, tuple) else (index, 0)
        plan = self.plan(index, key)
        rng = random.Random(f"{self.seed}:{key}:{index}:photometric")
        window = plan.window()
        raw = self.read_window(index, window)[None]
        # Without jitter the normalisation is folded into the resampling (one pass less).
        fold = self.mean is not None and self.std is not None and not self.photometric
        scale = [1.0 / s for s in self.std] if fold else None
        shift = [-m / s for m, s in zip(self.mean, self.std, strict=True)] if fold else None
        crops = []
        for k in (0, 1):
            rows, cols = plan.taps(k)
            crop = resample(raw, rows, cols, window[:2], scale, shift)[0]
            if self.photometric:
                photometric(crop, rng, self.rgb)
                if self.mean is not None and self.std is not None:
                    normalise(crop, self.mean, self.std)
            crops.append(crop)
        return {
            "crops": torch.stack(crops),
            "overlap": torch.tensor([plan.overlap(0), plan.overlap(1)], dtype=torch.int64),
            "flip": torch.tensor(plan.flips),
            **self.describe(index),
        }
