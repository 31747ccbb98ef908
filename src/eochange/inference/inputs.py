"""What ``eochange map`` reads: areas, their months, and the frames of each month.

Two kinds of input: any eochange cube (from ``eochange prepare dynamicearthnet`` or
``eochange prepare geotiffs``), and the official DynamicEarthNet layout (areas from the
split files). A month's frames follow the checkpoint's temporal sampling: ``daily``
takes every image of the month; ``weekly`` and ``single`` take, for each of their target
days (1, 5, 10, 15, 20, 25, or 1), the nearest image of the month, so that irregular
acquisitions (a Sentinel-2 revisit of 5 days, cloudy days removed) still give a series;
on DynamicEarthNet data the target days exist and the frames are exactly the training
ones.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from eochange.datasets import dynamicearthnet_layout as layout
from eochange.errors import DataError
from eochange.io.cube import Grid, Window, is_cube, open_cube


def select_frames(available: Sequence[date], month: str, sampling: str) -> list[int]:
    """Indexes into ``available`` (sorted dates) of a month's frames under ``sampling``.

    Returns:
        Sorted indexes; empty when the month has no image.
    """
    in_month = [i for i, d in enumerate(available) if d.strftime("%Y-%m") == month]
    targets = layout.sampling_days(sampling, month)
    if targets is None or not in_month:
        return in_month
    chosen = {
        min(in_month, key=lambda i, t=target: (abs((available[i] - t).days), available[i]))
        for target in targets
    }
    return sorted(chosen)


class MapInput(Protocol):
    """Areas and frames to map."""

    source: str

    def areas(self) -> list[str]:
        """Area ids."""
        ...

    def grid(self, area: str) -> Grid:
        """Pixel grid of an area."""
        ...

    def bands(self, area: str) -> list[str]:
        """Band names of an area's frames, in stored order."""
        ...

    def dates(self, area: str) -> list[date]:
        """Sorted dates of an area's frames."""
        ...

    def read(self, area: str, frames: Sequence[int], window: Window) -> np.ndarray:
        """``(T, C, h, w)`` float32 raw values of frames (indexes into :meth:`dates`)."""
        ...


def months_of(dates: Sequence[date]) -> list[str]:
    """Sorted distinct ``YYYY-MM`` of dates."""
    return sorted({d.strftime("%Y-%m") for d in dates})


class CubeInput:
    """Any eochange cube."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.source = str(path)
        self.cube = open_cube(path)

    def areas(self) -> list[str]:  # noqa: D102
        return self.cube.area_ids()

    def grid(self, area: str) -> Grid:  # noqa: D102
        return self.cube.area(area).grid

    def bands(self, area: str) -> list[str]:  # noqa: D102
        return list(self.cube.area(area).bands)

    def dates(self, area: str) -> list[date]:  # noqa: D102
        data = self.cube.area(area)
        reference = date.fromisoformat(data.attrs.get("reference_date", "2018-01-01"))
        return [layout.date_from_days(int(d), reference) for d in data.dates]

    def read(self, area: str, frames: Sequence[int], window: Window) -> np.ndarray:  # noqa: D102
        return self.cube.area(area).read_images(list(frames), window, np.float32)


class RawInput:
    """The official DynamicEarthNet layout: areas listed by the split files."""

    def __init__(self, root: str | os.PathLike[str], path_rewrite: Any = None) -> None:
        from eochange.datasets.dynamicearthnet_sources import RawSource

        self.source = str(root)
        self.raw = RawSource(root, path_rewrite)
        self.entries: dict[str, layout.SplitEntry] = {}
        for split in layout.SPLITS:
            if not layout.split_file(root, split).is_file():
                continue
            for entry in layout.read_split(root, split, path_rewrite, allow_empty=True):
                self.entries.setdefault(entry.cube_id, entry)
        if not self.entries:
            raise DataError(f"{root}: the split files list no area")
        self._dates: dict[str, list[tuple[date, Path]]] = {}

    def _images(self, area: str) -> list[tuple[date, Path]]:
        if area not in self._dates:
            self._dates[area] = layout.dated_images(self.raw.planet_dir(self.entries[area]))
        return self._dates[area]

    def areas(self) -> list[str]:  # noqa: D102
        return sorted(self.entries)

    def grid(self, area: str) -> Grid:  # noqa: D102
        month = self._images(area)[0][0].strftime("%Y-%m")
        return self.raw.grid(dataclasses.replace(self.entries[area], month=month))

    def bands(self, area: str) -> list[str]:  # noqa: D102
        return list(layout.BANDS)

    def dates(self, area: str) -> list[date]:  # noqa: D102
        return [day for day, _ in self._images(area)]

    def read(self, area: str, frames: Sequence[int], window: Window) -> np.ndarray:  # noqa: D102
        images = self._images(area)
        month = images[frames[0]][0].strftime("%Y-%m")
        entry = dataclasses.replace(self.entries[area], month=month)
        return self.raw.read_images(entry, [images[i][1] for i in frames], window, np.float32)


def open_input(path: str | os.PathLike[str]) -> CubeInput | RawInput:
    """A cube or the official DynamicEarthNet layout.

    Raises:
        DataError: Neither.
    """
    path = Path(path)
    if is_cube(path):
        return CubeInput(path)
    if (path / layout.SPLIT_FOLDER).is_dir():
        return RawInput(path)
    raise DataError(
        f"{path}: not an eochange cube nor the official DynamicEarthNet layout (no "
        f"{layout.SPLIT_FOLDER}/); make a cube of your GeoTIFFs with `eochange prepare "
        "geotiffs`"
    )
