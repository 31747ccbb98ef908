"""The unlabelled daily images of DynamicEarthNet as CAC pairs of overlapping crops.

Every image of the training months is a free sample for the semi-supervised baseline:
one sample is one (area, day) image, cut into two overlapping crops
(:class:`~eochange.datasets.pairs.OverlappingCrops`). Which days count is the density:

- ``monthly``: day 01 of each month, i.e. the labelled images themselves, without their
  labels (the CAC authors' convention for a setting without extra images);
- ``weekly``: days 01, 05, 10, 15, 20, 25 (6 a month, as the temporal models' weekly);
- ``daily``: every image of each month (28-31).

Images come from the official layout or from a cube, through the same sources as the
labelled samples; a sample reads one window of one frame.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import date
from typing import Any

import numpy as np

from eochange.datasets import dynamicearthnet_layout as layout
from eochange.datasets.dynamicearthnet_sources import Source, open_source
from eochange.datasets.pairs import IOU_BOUND, SCALE_RANGE, OverlappingCrops
from eochange.errors import ConfigError

DENSITIES: dict[str, str] = {"monthly": "single", "weekly": "weekly", "daily": "daily"}
"""Unlabelled density -> the temporal sampling whose days it uses."""


class DynamicEarthNetUnlabelled(OverlappingCrops):
    """Unlabelled DynamicEarthNet images of a split's months, as pairs of crops.

    Args:
        root: Dataset root (official layout) or a cube from ``eochange prepare
            dynamicearthnet``.
        split: Split whose (area, month) entries give the images (``train``).
        density: ``monthly``, ``weekly`` or ``daily`` (module docstring).
        crop_size: Crop side (a multiple of 8).
        scale_range: Long-side range of the common rescale, as fractions of the width
            (the reference's unlabelled 0.8..2.0).
        iou_bound: Accepted IoU range of the two crops (0.1..1.0).
        photometric: Jitter each crop (blur, brightness/contrast on all bands,
            saturation and grey on R, G, B).
        seed: Seed of the augmentation.
        path_rewrite: Split-file path rewrite (official layout only).
        normalize: Normalise with the official mean/std (else raw reflectance).

    A sample has ``crops`` float32 ``(2, 4, S, S)`` (R, G, B, NIR), ``overlap`` int64
    ``(2, 4)``, ``flip`` bool ``(2,)``, ``cube_id`` and ``date`` (days since 2018-01-01).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        density: str = "daily",
        crop_size: int = 512,
        scale_range: Sequence[float] = SCALE_RANGE,
        iou_bound: Sequence[float] = IOU_BOUND,
        photometric: bool = True,
        seed: int = 10,
        path_rewrite: str | tuple[str, str] | None = None,
        normalize: bool = True,
    ) -> None:
        if density not in DENSITIES:
            raise ConfigError(f"density: expected one of {tuple(DENSITIES)}, got {density!r}")
        super().__init__(
            crop_size,
            scale_range,
            iou_bound,
            photometric,
            rgb=(0, 1, 2),
            mean=layout.MEAN if normalize else None,
            std=layout.STD if normalize else None,
            seed=seed,
        )
        self.root = root
        self.split = split
        self.density = density
        self.source: Source = open_source(root, path_rewrite)
        self.entries = self.source.entries(split)
        self.frames: list[tuple[int, date, Any]] = []
        for i, entry in enumerate(self.entries):
            days, handles = self.source.frames(entry, DENSITIES[density])
            self.frames += [(i, day, handle) for day, handle in zip(days, handles, strict=True)]

    def __len__(self) -> int:
        return len(self.frames)

    def image_shape(self, index: int) -> tuple[int, int]:
        """``(height, width)`` of the image's area."""
        grid = self.source.grid(self.entries[self.frames[index][0]])
        return grid.height, grid.width

    def read_window(self, index: int, window: tuple[int, int, int, int]) -> np.ndarray:
        """Raw R, G, B, NIR reflectance ``(4, h, w)`` of one window of one image."""
        entry, _, handle = self.frames[index]
        return self.source.read_images(self.entries[entry], [handle], window)[0]

    def describe(self, index: int) -> dict[str, Any]:
        """``cube_id`` and ``date`` (days since the reference date) of the image."""
        entry, day, _ = self.frames[index]
        return {"cube_id": self.entries[entry].cube_id, "date": layout.days_since_reference(day)}
