"""Sparse per-tile ground truth for transfer learning, cut from a synthetic area's planted events.

Transfer learning (:mod:`eochange.datasets.transfer`) takes one binary mask per tile for a
whole period, hand-drawn for a subset of the tiles. :func:`tile_truth_masks` writes such
masks from the truth of :func:`~eochange.synth.make_s1s2` (``event_id.tif`` and
``events.json``): a pixel is 1 where a planted event's works overlap the period, and only a
seeded random fraction of the tiles gets a mask, as with hand labelling.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np

from eochange.datasets.deeptemporal import EventTruth
from eochange.errors import ConfigError, DataError
from eochange.preprocess.tiling import TileLayout

SUFFIXES = ("tif", "png", "npy")
"""Mask formats: GeoTIFF (georeferenced, 0/1), PNG (0/255, as drawn), NumPy (0/1)."""


def _seconds(day: str | date) -> float:
    day = date.fromisoformat(day) if isinstance(day, str) else day
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def tile_truth_masks(
    truth: str | os.PathLike[str] | EventTruth,
    layout: TileLayout,
    out: str | os.PathLike[str],
    *,
    period: tuple[str | date, str | date] | None = None,
    fraction: float = 1.0,
    seed: int = 0,
    tiles: Sequence[tuple[int, int]] | None = None,
    suffix: str = "tif",
    site: str | None = None,
) -> list[tuple[int, int]]:
    """Write binary change masks of a random subset of tiles, one file per tile.

    Args:
        truth: The synthetic truth folder (or an :class:`EventTruth`).
        layout: The tiles of the area (e.g. ``WindowStore(...).layout``); its size must be
            the truth's.
        out: Output folder (created).
        period: First and last day (ISO strings or dates): events whose works overlap it
            are changes; None: every planted event.
        fraction: Share of the tiles that get a mask, in (0, 1] (at least one tile).
        seed: Seed of the choice of tiles.
        tiles: Tiles to choose from (default: every tile of the layout).
        suffix: ``tif``, ``png`` or ``npy`` (see :data:`SUFFIXES`).
        site: File-name prefix (``Liege`` gives ``Liege_{j}_{i}.npy``, upstream's naming).

    Returns:
        The tiles written, sorted.

    Raises:
        ConfigError: Bad fraction, suffix, period or tiles.
        DataError: The truth does not cover the layout.
    """
    if not 0 < fraction <= 1:
        raise ConfigError(f"fraction: expected a share in (0, 1], got {fraction}")
    if suffix not in SUFFIXES:
        raise ConfigError(f"suffix: expected one of {SUFFIXES}, got {suffix!r}")
    truth = truth if isinstance(truth, EventTruth) else EventTruth(truth)
    if truth.ids.shape != (layout.height, layout.width):
        raise DataError(f"{truth.folder}: truth of {truth.ids.shape[0]} x {truth.ids.shape[1]} "
                        f"pixels, the layout is {layout.height} x {layout.width}")  # fmt: skip
    if period is None:
        spans = list(truth.spans.values()) or [(date(1970, 1, 1), date(1970, 1, 1))]
        period = (min(s for s, _ in spans), max(e for _, e in spans))
    try:
        seconds = (_seconds(period[0]), _seconds(period[1]))
    except (TypeError, ValueError):
        raise ConfigError(f"period: expected two ISO dates, got {period!r}") from None
    if seconds[1] < seconds[0]:
        raise ConfigError(f"period: ends before it starts: {period!r}")
    known = list(layout)
    pool = sorted(known if tiles is None else {tuple(t) for t in tiles})
    unknown = [t for t in pool if t not in set(known)]
    if unknown or not pool:
        raise ConfigError(f"tiles: {unknown[:5] or 'none'} not in the {layout.shape} tiles")
    count = max(1, round(fraction * len(pool)))
    picked = np.random.default_rng(seed).choice(len(pool), size=count, replace=False)
    chosen = sorted(pool[int(k)] for k in picked)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for j, i in chosen:
        mask = truth.window(seconds, layout.window(j, i)).astype(np.uint8)
        name = f"{site}_{j}_{i}" if site else f"{j}_{i}"
        _write_mask(out / f"{name}.{suffix}", mask, truth, layout, (j, i))
    return chosen


def _write_mask(
    path: Path, mask: np.ndarray, truth: EventTruth, layout: TileLayout, tile: tuple[int, int]
) -> None:
    from eochange.io.atomic import atomic_path

    if path.suffix == ".npy":
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, mask)
        return
    import rasterio
    from affine import Affine

    with rasterio.open(truth.folder / "event_id.tif") as src:
        crs, transform = src.crs, src.transform
    row, col, _, _ = layout.window(*tile)
    if path.suffix == ".tif":
        from eochange.io.raster import write_raster

        write_raster(path, mask, crs=crs, transform=transform @ Affine.translation(col, row),
                     descriptions=["changed (1) in the period"])  # fmt: skip
        return
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    # PNG, as a hand-drawn mask would be: 0 / 255, no georeference (the name places it).
    with warnings.catch_warnings(), atomic_path(path) as tmp:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(tmp, "w", driver="PNG", width=mask.shape[1], height=mask.shape[0],
                           count=1, dtype="uint8") as dst:  # fmt: skip
            dst.write(mask * 255, 1)
