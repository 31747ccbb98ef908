"""Where DynamicEarthNet pixels come from: the official GeoTIFF layout or an eochange cube.

Both sources answer the same questions (which frames a sample has, the area's grid, the
pixels of a window), so the dataset code above them is one, and a sample is identical
whichever source produced it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from eochange.datasets import dynamicearthnet_layout as layout
from eochange.errors import ConfigError, DataError
from eochange.io.cube import Cube, Grid, Window, is_cube
from eochange.io.paths import check_name
from eochange.io.raster import raster_info, read_raster

IMAGE_DTYPES = ("uint16", "int16")
"""Accepted data types of the daily images (16-bit surface reflectance)."""


class Source(Protocol):
    """The questions the dataset asks of a source."""

    def entries(self, split: str) -> list[layout.SplitEntry]:
        """Samples of a split, in split-file order."""
        ...

    def frames(self, entry: layout.SplitEntry, sampling: str) -> tuple[list[date], list[Any]]:
        """Dates of a sample's frames and opaque handles to read them."""
        ...

    def grid(self, entry: layout.SplitEntry) -> Grid:
        """Pixel grid of the sample's area."""
        ...

    def read_images(
        self,
        entry: layout.SplitEntry,
        handles: Sequence[Any],
        window: Window | None,
        dtype: np.dtype | type | None = None,
    ) -> np.ndarray:
        """Raw frames ``(T, 4, h, w)`` in R, G, B, NIR order, as ``dtype`` if given."""
        ...

    def read_label_bits(self, entry: layout.SplitEntry, window: Window | None) -> np.ndarray:
        """Label bit mask ``(h, w)`` uint8."""
        ...


def _missing_month(where: str, month: str) -> DataError:
    return DataError(f"{where}: no images for month {month} (expected files {month}-DD.tif)")


class RawSource:
    """The official layout: split files, daily GeoTIFFs, one-hot label rasters."""

    def __init__(
        self, root: str | os.PathLike[str], path_rewrite: str | tuple[str, str] | None = None
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: dataset root not found")
        self.path_rewrite = path_rewrite
        self._grids: dict[str, Grid] = {}

    def entries(self, split: str) -> list[layout.SplitEntry]:
        """Entries of ``<root>/dynnet_training_splits/<split>.txt``."""
        return layout.read_split(self.root, split, self.path_rewrite)

    def planet_dir(self, entry: layout.SplitEntry) -> Path:
        """Absolute folder of the entry's daily images."""
        return self.root / entry.planet_dir

    def frames(self, entry: layout.SplitEntry, sampling: str) -> tuple[list[date], list[Path]]:
        """Dates and file paths of the sample's frames.

        Raises:
            DataError: A wanted day is missing, or a month has no images at all.

        """
        folder = self.planet_dir(entry)
        days = layout.sampling_days(sampling, entry.month)
        if days is None:
            images = layout.dated_images(folder, entry.month)
            if not images:
                raise _missing_month(str(folder), entry.month)
            return [day for day, _ in images], [path for _, path in images]
        if not folder.is_dir():
            raise DataError(f"{folder}: image folder not found")
        paths = [folder / layout.image_name(day) for day in days]
        for day, path in zip(days, paths, strict=True):
            if not path.is_file():
                raise DataError(
                    f"{path}: image not found ({sampling} sampling of {entry.cube_id} "
                    f"{entry.month} needs {day.isoformat()})"
                )
        return days, paths

    def grid(self, entry: layout.SplitEntry) -> Grid:
        """Grid of the area, from the header of its first image of the month (cached)."""
        grid = self._grids.get(entry.planet_dir)
        if grid is None:
            images = layout.dated_images(self.planet_dir(entry), entry.month)
            if not images:
                raise _missing_month(str(self.planet_dir(entry)), entry.month)
            info = raster_info(images[0][1])
            crs = info.crs.to_wkt() if info.crs is not None else ""
            grid = Grid(info.height, info.width, crs, info.transform)
            self._grids[entry.planet_dir] = grid
        return grid

    def read_images(
        self,
        entry: layout.SplitEntry,
        handles: Sequence[Path],
        window: Window | None,
        dtype: np.dtype | type | None = None,
    ) -> np.ndarray:
        """Read a window of every frame, reordering file bands B,G,R,NIR to R,G,B,NIR."""
        grid = self.grid(entry)
        frames = [
            read_raster(
                path,
                bands=list(layout.FILE_BAND_INDEXES),
                window=window,
                count=len(layout.FILE_BANDS),
                dtypes=IMAGE_DTYPES,
                shape=(grid.height, grid.width),
                transform=grid.transform,
                crs=grid.crs or None,
                what="DynamicEarthNet image",
            )
            for path in handles
        ]
        dtypes = {f.dtype for f in frames}
        if len(dtypes) > 1:
            raise DataError(
                f"{self.planet_dir(entry)}: images of {entry.month} mix data types {dtypes}"
            )
        return np.stack(frames, dtype=dtype)

    def read_label_bits(self, entry: layout.SplitEntry, window: Window | None) -> np.ndarray:
        """Read and pack a window of the entry's label raster."""
        grid = self.grid(entry)
        path = self.root / entry.label_path
        onehot = read_raster(
            path,
            window=window,
            count=layout.LABEL_BANDS,
            dtypes=("uint8",),
            shape=(grid.height, grid.width),
            what="DynamicEarthNet label",
        )
        return layout.onehot_to_bits(onehot, str(path))


class CubeSource:
    """An eochange cube made by ``eochange prepare dynamicearthnet``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.cube = Cube(path)
        self._positions: dict[str, dict[date, int]] = {}
        if self.cube.attrs.get("dataset") != "dynamicearthnet":
            raise DataError(
                f"{path}: cube holds {self.cube.attrs.get('dataset')!r}, not dynamicearthnet"
            )

    def entries(self, split: str) -> list[layout.SplitEntry]:
        """Entries recorded from the split file when the cube was prepared."""
        layout.check_split(split)
        splits = self.cube.attrs.get("splits")
        lines = splits.get(split) if isinstance(splits, dict) else None
        if not lines:
            raise DataError(f"{self.cube.path}: cube has no entries for split {split!r}")
        where = f"{self.cube.path / 'zarr.json'}: splits/{split}"
        if not isinstance(lines, list) or not all(
            isinstance(line, list) and len(line) == 4 and all(isinstance(f, str) for f in line)
            for line in lines
        ):
            raise DataError(
                f"{where}: expected a list of [planet_dir, label_path, month, area id] entries"
            )
        entries = [layout.SplitEntry(*line) for line in lines]
        for entry in entries:
            layout.parse_month(entry.month, where)
            check_name(entry.cube_id, "area id", where)
        return entries

    def frames(self, entry: layout.SplitEntry, sampling: str) -> tuple[list[date], list[int]]:
        """Dates and time indexes of the sample's frames in the area's image array."""
        position = self._positions.get(entry.cube_id)
        if position is None:
            dates = self.cube.area(entry.cube_id).dates
            position = {layout.date_from_days(d): i for i, d in enumerate(dates)}
            self._positions[entry.cube_id] = position
        days = layout.sampling_days(sampling, entry.month)
        if days is None:
            days = [d for d in layout.month_days(entry.month) if d in position]
            if not days:
                raise _missing_month(f"{self.cube.path}/{entry.cube_id}", entry.month)
            return days, [position[d] for d in days]
        missing = [d.isoformat() for d in days if d not in position]
        if missing:
            raise DataError(
                f"{self.cube.path}/{entry.cube_id}: no image for {', '.join(missing)} "
                f"({sampling} sampling of {entry.month})"
            )
        return days, [position[d] for d in days]

    def grid(self, entry: layout.SplitEntry) -> Grid:
        """Grid of the area."""
        return self.cube.area(entry.cube_id).grid

    def read_images(
        self,
        entry: layout.SplitEntry,
        handles: Sequence[int],
        window: Window | None,
        dtype: np.dtype | type | None = None,
    ) -> np.ndarray:
        """Read a window of the given frames."""
        return self.cube.area(entry.cube_id).read_images(handles, window, dtype)

    def read_label_bits(self, entry: layout.SplitEntry, window: Window | None) -> np.ndarray:
        """Read a window of the month's label bit mask."""
        return self.cube.area(entry.cube_id).read_label_bits(entry.month, window)


def open_source(
    root: str | os.PathLike[str], path_rewrite: str | tuple[str, str] | None = None
) -> RawSource | CubeSource:
    """The source of ``root``: a :class:`CubeSource` for a cube, else a :class:`RawSource`.

    Raises:
        ConfigError: ``path_rewrite`` given for a cube (it applies to split files only).
    """
    if is_cube(root):
        if path_rewrite is not None:
            raise ConfigError("path_rewrite applies to the raw layout, not to a cube")
        return CubeSource(root)
    return RawSource(root, path_rewrite)
