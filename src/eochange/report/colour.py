"""Displayable colours for imagery: a true-colour stretch shared by plots and reports."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def true_colour(
    frames: np.ndarray,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> np.ndarray:
    """Displayable ``(..., H, W, 3)`` RGB in [0, 1] from ``(..., C, H, W)`` frames.

    The first three channels are taken as R, G, B. With ``mean`` and ``std`` the frames
    are un-normalised first. One 2-98 % stretch is used for all frames, so that haze and
    seasons stay visible as such.
    """
    values = frames[..., :3, :, :].astype(np.float64)
    if mean is not None and std is not None:
        values = values * np.asarray(std[:3])[:, None, None] + np.asarray(mean[:3])[:, None, None]
    low, high = np.percentile(values, (2, 98)) if values.size else (0.0, 1.0)
    stretched = np.clip((values - low) / max(high - low, 1e-6), 0, 1)
    return np.moveaxis(stretched, -3, -1)
