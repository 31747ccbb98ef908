"""GeoTIFF reading and writing through rasterio, with validation and atomic writes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.windows import Window

from eochange.errors import DataError
from eochange.io.atomic import atomic_path

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class RasterInfo:
    """What a GeoTIFF header says about its pixels and grid."""

    path: Path
    count: int
    dtype: str
    height: int
    width: int
    crs: CRS | None
    transform: Affine


def _fail(path: PathLike, what: str) -> DataError:
    return DataError(f"{path}: {what}")


def raster_info(path: PathLike) -> RasterInfo:
    """Read a raster header without reading pixels.

    Args:
        path: GeoTIFF path.

    Returns:
        Band count, dtype, size, CRS and transform.

    Raises:
        DataError: The file is missing or is not a readable raster.

    """
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "file not found")
    try:
        with rasterio.open(path) as src:
            dtypes = set(src.dtypes)
            return RasterInfo(
                path=path,
                count=src.count,
                dtype=src.dtypes[0] if len(dtypes) == 1 else "mixed",
                height=src.height,
                width=src.width,
                crs=src.crs,
                transform=src.transform,
            )
    except RasterioError as err:
        raise _fail(path, f"not a readable GeoTIFF ({err})") from None


def check_raster(
    info: RasterInfo,
    *,
    count: int | None = None,
    dtypes: tuple[str, ...] | None = None,
    shape: tuple[int, int] | None = None,
    what: str = "raster",
) -> None:
    """Raise one clear error when a raster header is not what is expected.

    Args:
        info: The header, from :func:`raster_info`.
        count: Expected band count.
        dtypes: Accepted data types (numpy names).
        shape: Expected ``(height, width)``.
        what: What the file is, for the message (e.g. "DynamicEarthNet image").

    Raises:
        DataError: Naming the file, what was expected and what was found.

    """
    if count is not None and info.count != count:
        raise _fail(info.path, f"{what} must have {count} bands, found {info.count}")
    if dtypes is not None and info.dtype not in dtypes:
        raise _fail(info.path, f"{what} must be of type {' or '.join(dtypes)}, found {info.dtype}")
    if shape is not None and (info.height, info.width) != tuple(shape):
        raise _fail(
            info.path,
            f"{what} must be {shape[0]}x{shape[1]} pixels to match the images, "
            f"found {info.height}x{info.width}",
        )


def read_raster(
    path: PathLike,
    *,
    bands: list[int] | None = None,
    window: Window | tuple[int, int, int, int] | None = None,
    count: int | None = None,
    dtypes: tuple[str, ...] | None = None,
    shape: tuple[int, int] | None = None,
    transform: Affine | None = None,
    crs: CRS | str | None = None,
    what: str = "raster",
) -> np.ndarray:
    """Read bands of a GeoTIFF as a ``(C, H, W)`` array, validating the header first.

    Args:
        path: GeoTIFF path.
        bands: 1-based band indexes in the order wanted; all bands if None.
        window: ``(row_off, col_off, height, width)`` or a rasterio Window; whole raster if None.
        count: Expected band count of the file.
        dtypes: Accepted data types.
        shape: Expected full ``(height, width)`` of the file.
        transform: Expected geotransform (e.g. that of the other frames of a series).
        crs: Expected coordinate reference system (e.g. that of the other frames).
        what: What the file is, for error messages.

    Returns:
        The pixels in the file's data type.

    Raises:
        DataError: Missing, corrupt or unexpected file.

    """
    path = Path(path)
    if not path.is_file():
        raise _fail(path, f"{what} file not found")
    if window is not None and not isinstance(window, Window):
        row, col, height, width = window
        window = Window(col, row, width, height)  # type: ignore[arg-type]
    try:
        with rasterio.open(path) as src:
            info = RasterInfo(
                path, src.count, src.dtypes[0], src.height, src.width, src.crs, src.transform
            )
            check_raster(info, count=count, dtypes=dtypes, shape=shape, what=what)
            if transform is not None and not src.transform.almost_equals(transform):
                raise _fail(
                    path,
                    f"{what} is not on the grid of the series: transform {tuple(src.transform)[:6]}"
                    f", expected {tuple(transform)[:6]}",
                )
            if crs is not None and not _same_crs(src.crs, crs):
                found = src.crs.to_string() if src.crs else "none"
                raise _fail(
                    path,
                    f"{what} is in another coordinate reference system than the series: "
                    f"{found}, expected {CRS.from_user_input(crs).to_string()}",
                )
            return src.read(bands if bands is not None else None, window=window)
    except RasterioError as err:
        raise _fail(path, f"not a readable GeoTIFF ({err})") from None


def _same_crs(found: CRS | None, expected: CRS | str) -> bool:
    expected = expected if isinstance(expected, CRS) else CRS.from_user_input(expected)
    return found is not None and found == expected


def write_raster(
    path: PathLike,
    array: np.ndarray,
    *,
    crs: CRS | str | None,
    transform: Affine,
    nodata: float | None = None,
    compress: str = "deflate",
    predictor: int | None = None,
    blocksize: int | None = 256,
    colormap: dict[int, tuple[int, ...]] | None = None,
    descriptions: list[str] | None = None,
    tags: dict[str, Any] | None = None,
) -> Path:
    """Write a ``(C, H, W)`` or ``(H, W)`` array as a GeoTIFF, atomically.

    Args:
        path: Destination.
        array: Pixels; the GeoTIFF takes the array's dtype.
        crs: Coordinate reference system.
        transform: Affine pixel-to-CRS transform.
        nodata: No-data value, if any.
        compress: GDAL compression name ("deflate", "lzw", "zstd", "none").
        predictor: GDAL predictor (2 for integers); None picks 2 for integer data.
        blocksize: Internal tile size; None writes strips.
        colormap: Palette for band 1 (single-band uint8 only).
        descriptions: Band descriptions.
        tags: Dataset-level metadata tags.

    Returns:
        The final path.

    """
    data = array[None] if array.ndim == 2 else array
    if data.ndim != 3:
        raise ValueError(f"write_raster expects (C,H,W) or (H,W), got shape {array.shape}")
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "count": data.shape[0],
        "height": data.shape[1],
        "width": data.shape[2],
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
    }
    if compress and compress != "none":
        profile["compress"] = compress
        if predictor is None and np.issubdtype(data.dtype, np.integer):
            predictor = 2
        if predictor:
            profile["predictor"] = predictor
    if blocksize and data.shape[1] >= blocksize and data.shape[2] >= blocksize:
        profile.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
    path = Path(path)
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
            if colormap is not None:
                dst.write_colormap(1, colormap)
            if descriptions:
                for i, text in enumerate(descriptions, start=1):
                    dst.set_band_description(i, text)
            if tags:
                dst.update_tags(**{k: str(v) for k, v in tags.items()})
    return path
