"""Observation streams on disk: one folder (EOPatch) or GeoTIFF pair per acquisition.

This module reads the per-observation inputs of the ERCNN-DRS preprocessing, in two
layouts, without eo-learn:

- **EOPatch layout** (what eo-learn 1.3 writes with ``EOPatch.save``): a stream root
  holds ``eopatches/<YYYYmmddTHHMMSS>/`` (and ``fail_eopatches/``, which is ignored), or
  the time-named folders directly. Each folder has ``bbox.geojson`` (bounds and
  ``urn:ogc:def:crs:EPSG::<code>``), ``timestamp.json`` (or ``timestamps.json``, eo-learn
  >= 1.4), ``data/<FEATURE>.npy`` float32 ``(1, H, W, C)`` and ``mask/<FEATURE>.npy``
  ``(1, H, W, k)`` (channel 0 is used). Gzip-compressed files (``.npy.gz``,
  ``.geojson.gz``, ``.json.gz``) are read as well. Arrays are read with numpy only and
  never unpickled: the pickles of eo-learn < 1.0 (``.pkl``) and pickled ``.npy`` files
  are refused.
- **GeoTIFF layout** (for users without eo-learn): the stream folder holds one
  ``<YYYYmmddTHHMMSS>.tif`` per observation with the era's bands, and its validity mask
  ``<YYYYmmddTHHMMSS>_mask.tif`` (one band, 1 valid, 0 invalid).

The observation time is always taken from the folder or file NAME (parsed with
``%Y%m%dT%H%M%S`` and accepted only if formatting it back gives the same name, as
rsdtlib does); ``timestamp.json`` is only a cross-check. :func:`open_stream` opens a
stream in either layout and checks that all its observations share one pixel grid.
:func:`write_eopatch` and :func:`write_geotiff_observation` write both layouts (used by
the synthetic generator :func:`eochange.synth.make_s1s2` and by tests).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError

from eochange.errors import ConfigError, DataError
from eochange.io.atomic import atomic_path
from eochange.io.raster import raster_info, read_raster, write_raster
from eochange.preprocess.eras import Era, get_era

__all__ = [
    "FAIL_FOLDER",
    "OBSERVATION_FOLDER",
    "TIME_FORMAT",
    "Grid",
    "Observation",
    "ObservationInfo",
    "Stream",
    "eopatch_info",
    "format_time",
    "geotiff_info",
    "list_geotiff_observations",
    "list_observations",
    "mask_path_of",
    "merge_cloud_mask",
    "npy_header",
    "open_stream",
    "parse_time",
    "read_eopatch",
    "read_geotiff_observation",
    "write_eopatch",
    "write_geotiff_observation",
]

PathLike = str | os.PathLike[str]
Window = tuple[int, int, int, int]

TIME_FORMAT = "%Y%m%dT%H%M%S"
"""Name of an observation folder or GeoTIFF: its acquisition time (UTC)."""

OBSERVATION_FOLDER = "eopatches"
"""Sub-folder of a stream root that holds the observations used."""

FAIL_FOLDER = "fail_eopatches"
"""Sub-folder of dropped observations (fully clouded or empty); never read."""

MASK_SUFFIX = "_mask"
"""Suffix of the validity-mask GeoTIFF beside each observation GeoTIFF."""

_EPSG = re.compile(r"EPSG:(?:[\d.]*:)?(\d+)$", re.IGNORECASE)
_CRS84 = re.compile(r"(OGC:(?:[\d.]*:)?CRS84|EPSG::?4326)$", re.IGNORECASE)


# --- grids and observations -------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """A north-up pixel grid: size, CRS and pixel-to-CRS transform.

    Attributes:
        height: Rows.
        width: Columns.
        crs: Coordinate reference system.
        transform: Affine transform of the pixel corners.

    """

    height: int
    width: int
    crs: CRS
    transform: Affine

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(west, south, east, north)`` in CRS units."""
        t = self.transform
        west, north = t.c, t.f
        return (west, north + t.e * self.height, west + t.a * self.width, north)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``."""
        return (self.height, self.width)

    def same_as(self, other: Grid) -> bool:
        """Whether ``other`` is the same grid (corners equal to a thousandth of a pixel)."""
        if self.shape != other.shape or self.crs != other.crs:
            return False
        a, b = self.transform, other.transform
        size = max(abs(a.a), abs(a.e), 1e-12)
        return all(
            abs(x - y) <= 1e-3 * size for x, y in zip(tuple(a)[:6], tuple(b)[:6], strict=True)
        )

    def describe(self) -> str:
        """Short text for error messages: size, EPSG code and corner."""
        epsg = self.crs.to_epsg() if self.crs else None
        t = self.transform
        return (
            f"{self.height}x{self.width} px, EPSG:{epsg}, origin ({t.c:.3f}, {t.f:.3f}), "
            f"pixel {t.a:g} x {-t.e:g}"
        )


def _grid_from_bounds(
    bounds: tuple[float, float, float, float], height: int, width: int, crs: CRS
) -> Grid:
    west, south, east, north = bounds
    transform = Affine((east - west) / width, 0.0, west, 0.0, -(north - south) / height, north)
    return Grid(height, width, crs, transform)


@dataclass(frozen=True)
class ObservationInfo:
    """What an observation is, without its pixels: time, location, grid and band count.

    Attributes:
        time: Acquisition time, naive UTC (from the folder or file name).
        path: The EOPatch folder or the GeoTIFF.
        grid: Its pixel grid.
        bands: Number of bands of the data feature.

    """

    time: datetime
    path: Path
    grid: Grid
    bands: int


@dataclass(frozen=True)
class Observation:
    """One acquisition of one stream.

    Attributes:
        time: Acquisition time, naive UTC (from the folder or file name).
        data: float32 ``(C, H, W)``, values as stored (under invalid pixels too).
        mask: bool ``(H, W)``, True where the pixel is valid.
        crs: Coordinate reference system.
        bounds: ``(west, south, east, north)`` of the full grid in CRS units.
        transform: Affine transform of the pixels in ``data`` (of the window, if one was
            read).
        path: The EOPatch folder or the GeoTIFF it was read from.

    """

    time: datetime
    data: np.ndarray
    mask: np.ndarray
    crs: CRS
    bounds: tuple[float, float, float, float]
    transform: Affine
    path: Path

    @property
    def grid(self) -> Grid:
        """The grid of ``data``."""
        return Grid(int(self.data.shape[1]), int(self.data.shape[2]), self.crs, self.transform)


# --- times ------------------------------------------------------------------------------


def format_time(moment: datetime) -> str:
    """Folder or file name of an acquisition time, ``YYYYmmddTHHMMSS``."""
    return moment.strftime(TIME_FORMAT)


def parse_time(name: str) -> datetime | None:
    """Time of a folder name ``YYYYmmddTHHMMSS``, or None if it is not exactly one.

    The name is accepted only if formatting the parsed time gives the name back (so
    ``2017011T1200`` or ``20170101T120000x`` are refused).
    """
    try:
        moment = datetime.strptime(name, TIME_FORMAT)
    except ValueError:
        return None
    return moment if format_time(moment) == name else None


# --- small file readers -----------------------------------------------------------------


def _pickle_error(path: Path) -> DataError:
    return DataError(
        f"{path}: is a pickle (eo-learn < 1.0 format), which is refused because unpickling "
        "can run arbitrary code; re-save the EOPatch with eo-learn >= 1.0 (.npy/.json files)"
    )


def _find(folder: Path, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    """The first existing ``folder/stem<suffix>``; refuse a ``.pkl`` found instead."""
    for suffix in suffixes:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    for pickled in (folder / f"{stem}.pkl", folder / f"{stem}.pkl.gz"):
        if pickled.is_file():
            raise _pickle_error(pickled)
    return None


def _open_binary(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")


def _read_json(path: Path) -> Any:
    try:
        with _open_binary(path) as f:
            return json.loads(f.read().decode("utf-8"))
    except (OSError, EOFError, UnicodeDecodeError, ValueError, zlib.error, RecursionError) as err:
        raise DataError(f"{path}: not a readable JSON file ({err})") from None


def npy_header(path: str | os.PathLike[str]) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of an NPY file (plain or gzip), reading only its header.

    Raises:
        DataError: Not an NPY file, a damaged header, a pickle or an object array.
    """
    path = Path(path)
    try:
        with _open_binary(path) as f:
            first = f.read(1)
            if first == b"\x80":  # the protocol opcode that starts every pickle
                raise _pickle_error(path)
            f.seek(0)
            shape, _, dtype = _read_npy_header(f)
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - numpy's header parser raises many kinds
        raise DataError(f"{path}: not a readable NPY file ({_reason(err)})") from None
    if dtype.hasobject:
        raise DataError(
            f"{path}: holds Python objects (a pickled array), which are refused; expected a "
            "numeric NPY array"
        )
    return tuple(int(n) for n in shape), dtype


def _load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    """Load an NPY array (plain or gzip) without ever unpickling."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return _read_npy_stream(f)
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as err:
        if "pickle" in str(err).lower() or "object" in str(err).lower():
            raise DataError(
                f"{path}: holds pickled data, which is refused; expected a numeric NPY array"
            ) from None
        raise DataError(f"{path}: not a readable NPY file ({_reason(err)})") from None
    except Exception as err:  # noqa: BLE001 - gzip, zlib and numpy's parser raise many kinds
        raise DataError(f"{path}: not a readable NPY file ({_reason(err)})") from None


_MAX_NPY_HEADER = 1 << 16
"""Longest NPY header accepted (numpy writes a few hundred bytes; it refuses > 10000)."""


def _read_npy_header(f: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` of the NPY stream at ``f``.

    numpy reads the header length the file declares before checking it (a damaged
    length asks for gigabytes); here it is checked first.
    """
    start = f.read(10)  # magic (6), version (2), the first two bytes of the header length
    if len(start) < 10 or start[:6] != b"\x93NUMPY":
        raise ValueError("no NPY magic string")
    if start[6] == 1:
        prefix = start
    elif start[6] in (2, 3):
        prefix = start + f.read(2)
    else:
        raise ValueError(f"unsupported NPY format version {start[6]}.{start[7]}")
    length = int.from_bytes(prefix[8:], "little")
    if length > _MAX_NPY_HEADER:
        raise ValueError(f"the header claims {length} bytes")
    stream = io.BytesIO(prefix + f.read(length))
    if np.lib.format.read_magic(stream) == (1, 0):
        return np.lib.format.read_array_header_1_0(stream)
    return np.lib.format.read_array_header_2_0(stream)


def _read_npy_stream(f: IO[bytes]) -> np.ndarray:
    """An NPY array from a stream, allocating no more than the stream really holds.

    ``np.lib.format.read_array`` allocates the array its header declares before reading:
    a damaged header of a few bytes would claim gigabytes.
    """
    shape, fortran, dtype = _read_npy_header(f)
    if dtype.hasobject:
        raise ValueError("object arrays cannot be loaded when allow_pickle=False")
    nbytes = dtype.itemsize
    for n in shape:
        nbytes *= int(n)
    data = bytearray()
    while len(data) < nbytes:
        piece = f.read(min(1 << 24, nbytes - len(data)))
        if not piece:
            raise ValueError(f"the data ends after {len(data)} of {nbytes} bytes")
        data += piece
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _reason(err: BaseException) -> str:
    """The first line of an exception's message (its type when there is none)."""
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


# --- EOPatch folders --------------------------------------------------------------------


def _folder_time(folder: Path) -> datetime:
    moment = parse_time(folder.name)
    if moment is None:
        raise DataError(
            f"{folder}: folder name must be the acquisition time YYYYmmddTHHMMSS "
            "(e.g. 20170103T172531)"
        )
    return moment


def _read_bbox(folder: Path) -> tuple[tuple[float, float, float, float], CRS]:
    path = _find(folder, "bbox", (".geojson", ".geojson.gz"))
    if path is None:
        raise DataError(f"{folder}: expected bbox.geojson (the patch bounds and CRS)")
    content = _read_json(path)
    try:
        ring = np.asarray(content["coordinates"][0], dtype=np.float64)
        if ring.ndim != 2 or ring.shape[1] < 2 or len(ring) < 4:
            raise ValueError("not a polygon ring")
        name = str(content["crs"]["properties"]["name"])
    except (KeyError, IndexError, TypeError, ValueError):
        raise DataError(
            f"{path}: expected a GeoJSON Polygon with a 'crs' named urn:ogc:def:crs:EPSG::<code>"
        ) from None
    bounds = (
        float(ring[:, 0].min()),
        float(ring[:, 1].min()),
        float(ring[:, 0].max()),
        float(ring[:, 1].max()),
    )
    if not (bounds[2] > bounds[0] and bounds[3] > bounds[1]):
        raise DataError(f"{path}: the bounding box is empty: {bounds}")
    match = _EPSG.search(name)
    try:
        if _CRS84.search(name):
            crs = CRS.from_epsg(4326)
        elif match:
            crs = CRS.from_epsg(int(match.group(1)))
        else:
            raise CRSError(name)
    except CRSError:
        raise DataError(
            f"{path}: unknown CRS {name!r}; expected urn:ogc:def:crs:EPSG::<code>"
        ) from None
    return bounds, crs


def _check_timestamp(folder: Path, moment: datetime) -> None:
    path = _find(folder, "timestamp", (".json", ".json.gz")) or _find(
        folder, "timestamps", (".json", ".json.gz")
    )
    if path is None:
        return
    content = _read_json(path)
    try:
        if not isinstance(content, list) or len(content) != 1:
            raise ValueError
        stamp = datetime.fromisoformat(str(content[0]))
    except ValueError:
        raise DataError(
            f"{path}: expected a JSON list with one ISO-8601 time (one observation per folder)"
        ) from None
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(UTC).replace(tzinfo=None)
    if stamp.replace(microsecond=0) != moment:
        raise DataError(
            f"{path}: holds {stamp.isoformat()}, but the folder name says {moment.isoformat()}"
        )


def _feature_path(folder: Path, kind: str, feature: str) -> Path:
    path = _find(folder / kind, feature, (".npy", ".npy.gz"))
    if path is None:
        raise DataError(f"{folder}: expected {kind}/{feature}.npy (the {kind} feature)")
    return path


def _check_array_shape(path: Path, shape: tuple[int, ...], what: str) -> None:
    if len(shape) != 4 or shape[0] != 1 or min(shape) < 1:
        raise DataError(
            f"{path}: {what} must have shape (1, H, W, C) (one time, C order), found {shape}"
        )


def eopatch_info(
    folder: PathLike,
    data_feature: str,
    mask_feature: str,
    *,
    bands: int | None = None,
    check_timestamp: bool = True,
) -> ObservationInfo:
    """Describe an EOPatch observation folder, reading only headers and metadata.

    Args:
        folder: The ``<YYYYmmddTHHMMSS>`` folder.
        data_feature: Name of the ``data`` feature (e.g. ``L1C_data``).
        mask_feature: Name of the ``mask`` feature (e.g. ``dataMask``).
        bands: Expected number of bands of the data feature.
        check_timestamp: Cross-check ``timestamp.json`` against the folder name.

    Returns:
        Time, grid and band count.

    Raises:
        DataError: Bad folder name, missing or malformed file, pickle, shape mismatch.

    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: expected an EOPatch folder")
    moment = _folder_time(folder)
    if check_timestamp:
        _check_timestamp(folder, moment)
    bounds, crs = _read_bbox(folder)
    data_path = _feature_path(folder, "data", data_feature)
    data_shape, data_dtype = npy_header(data_path)
    _check_array_shape(data_path, data_shape, f"data feature {data_feature}")
    if not (np.issubdtype(data_dtype, np.number) or data_dtype == np.bool_):
        raise DataError(f"{data_path}: expected numeric values, found dtype {data_dtype}")
    if bands is not None and data_shape[3] != bands:
        raise DataError(f"{data_path}: expected {bands} bands, found {data_shape[3]}")
    mask_path = _feature_path(folder, "mask", mask_feature)
    mask_shape, _ = npy_header(mask_path)
    _check_array_shape(mask_path, mask_shape, f"mask feature {mask_feature}")
    if mask_shape[1:3] != data_shape[1:3]:
        raise DataError(
            f"{mask_path}: mask is {mask_shape[1]}x{mask_shape[2]} px, the data "
            f"{data_shape[1]}x{data_shape[2]}"
        )
    grid = _grid_from_bounds(bounds, data_shape[1], data_shape[2], crs)
    return ObservationInfo(moment, folder, grid, data_shape[3])


def merge_cloud_mask(data_mask: np.ndarray, clm: np.ndarray) -> np.ndarray:
    """Merge a Sentinel Hub cloud mask into a validity mask: ``dataMask AND (CLM != 1)``.

    ``CLM`` is 0 for clear, 1 for cloud and 255 for no data; only 1 clears a pixel (255
    does not), as in rsdtlib's merge.

    Args:
        data_mask: Validity mask (bool or 0/1), any shape.
        clm: Cloud mask of the same shape (or broadcastable to it).

    Returns:
        bool mask of the broadcast shape.

    Raises:
        ValueError: The shapes do not broadcast.

    """
    return np.logical_and(np.asarray(data_mask).astype(bool), np.asarray(clm) != 1)


def _window_slices(window: Window | None, height: int, width: int) -> tuple[slice, slice]:
    if window is None:
        return slice(0, height), slice(0, width)
    row, col, h, w = window
    if row < 0 or col < 0 or h < 1 or w < 1 or row + h > height or col + w > width:
        raise ValueError(f"window {window} is outside the {height}x{width} grid")
    return slice(row, row + h), slice(col, col + w)


def _decode_mask(
    path: Path, raw: np.ndarray, qa_invalid_bits: int, what: str = "mask"
) -> np.ndarray:
    if qa_invalid_bits:
        if not np.issubdtype(raw.dtype, np.integer):
            raise DataError(
                f"{path}: the QA {what} must hold integers (bit flags), found {raw.dtype}"
            )
        return (raw.astype(np.int64) & int(qa_invalid_bits)) == 0
    if raw.dtype == np.bool_:
        return np.array(raw, dtype=bool)
    if not (np.issubdtype(raw.dtype, np.integer) or np.issubdtype(raw.dtype, np.floating)):
        raise DataError(f"{path}: expected a bool {what}, found {raw.dtype}")
    return np.asarray(raw) != 0


def read_eopatch(
    folder: PathLike,
    data_feature: str,
    mask_feature: str,
    *,
    qa_invalid_bits: int = 0,
    cloud_mask: str | None = None,
    bands: int | None = None,
    window: Window | None = None,
    check_timestamp: bool = True,
) -> Observation:
    """Read one EOPatch observation folder (eo-learn >= 1.0 layout) with numpy only.

    Args:
        folder: The ``<YYYYmmddTHHMMSS>`` folder; its name is the acquisition time.
        data_feature: ``data`` feature, stored ``(1, H, W, C)``.
        mask_feature: ``mask`` feature, stored ``(1, H, W, k)``; channel 0 is used.
        qa_invalid_bits: If not 0, the mask feature is a QA band (Landsat) and a pixel is
            valid iff ``QA & qa_invalid_bits == 0``; otherwise non-zero means valid.
        cloud_mask: A ``mask`` feature holding a Sentinel Hub CLM (e.g. ``CLM``) to merge
            when the folder has it (:func:`merge_cloud_mask`; merging twice changes
            nothing); None ignores it.
        bands: Expected number of bands.
        window: ``(row, col, height, width)`` to read; the whole grid if None.
        check_timestamp: Cross-check ``timestamp.json`` against the folder name.

    Returns:
        The observation: ``data`` float32 ``(C, h, w)``, ``mask`` bool ``(h, w)``.

    Raises:
        DataError: Bad folder name, missing or malformed file, pickle, shape mismatch.

    """
    info = eopatch_info(
        folder, data_feature, mask_feature, bands=bands, check_timestamp=check_timestamp
    )
    return _read_eopatch_pixels(
        info,
        data_feature,
        mask_feature,
        qa_invalid_bits=qa_invalid_bits,
        cloud_mask=cloud_mask,
        window=window,
    )


def _read_eopatch_pixels(
    info: ObservationInfo,
    data_feature: str,
    mask_feature: str,
    *,
    qa_invalid_bits: int,
    cloud_mask: str | None,
    window: Window | None,
) -> Observation:
    folder, grid = info.path, info.grid
    rows, cols = _window_slices(window, grid.height, grid.width)
    data_path = _feature_path(folder, "data", data_feature)
    raw = _load_npy(data_path, mmap=True)[0, rows, cols, :]
    data = np.ascontiguousarray(np.moveaxis(raw, -1, 0), dtype=np.float32)
    mask = _read_eopatch_mask(info, mask_feature, qa_invalid_bits=qa_invalid_bits,
                              cloud_mask=cloud_mask, window=window)  # fmt: skip
    transform = grid.transform @ Affine.translation(cols.start, rows.start)
    return Observation(info.time, data, mask, grid.crs, grid.bounds, transform, folder)


def _read_eopatch_mask(
    info: ObservationInfo,
    mask_feature: str,
    *,
    qa_invalid_bits: int,
    cloud_mask: str | None,
    window: Window | None,
) -> np.ndarray:
    """The validity mask ``(h, w)`` bool of an EOPatch observation (CLM merged)."""
    folder, grid = info.path, info.grid
    rows, cols = _window_slices(window, grid.height, grid.width)
    mask_path = _feature_path(folder, "mask", mask_feature)
    raw_mask = _load_npy(mask_path, mmap=True)[0, rows, cols, 0]
    mask = _decode_mask(mask_path, raw_mask, qa_invalid_bits)
    if cloud_mask:
        clm_path = _find(folder / "mask", cloud_mask, (".npy", ".npy.gz"))
        if clm_path is not None:
            shape, _ = npy_header(clm_path)
            _check_array_shape(clm_path, shape, f"mask feature {cloud_mask}")
            if shape[1:3] != grid.shape:
                raise DataError(
                    f"{clm_path}: cloud mask is {shape[1]}x{shape[2]} px, the data "
                    f"{grid.height}x{grid.width}"
                )
            mask = merge_cloud_mask(mask, _load_npy(clm_path, mmap=True)[0, rows, cols, 0])
    return mask


def _observation_root(stream_root: Path) -> Path:
    nested = stream_root / OBSERVATION_FOLDER
    return nested if nested.is_dir() else stream_root


def list_observations(stream_root: PathLike, *, strict: bool = True) -> list[tuple[datetime, Path]]:
    """The EOPatch observation folders of a stream, sorted by time.

    Args:
        stream_root: The stream folder: it holds ``eopatches/<YYYYmmddTHHMMSS>/`` or the
            time-named folders directly. ``fail_eopatches/``, hidden entries and files
            are ignored.
        strict: Raise on a folder whose name is not a time; with False, warn and skip it.

    Returns:
        ``(time, folder)`` pairs in time order.

    Raises:
        DataError: ``stream_root`` is not a folder, or (strict) a folder name is not a
            ``YYYYmmddTHHMMSS`` time.

    """
    root = Path(stream_root)
    if not root.is_dir():
        raise DataError(f"{root}: expected a stream folder (with eopatches/<time>/ folders)")
    folder = _observation_root(root)
    found: list[tuple[datetime, Path]] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.name == FAIL_FOLDER or not entry.is_dir():
            continue
        moment = parse_time(entry.name)
        if _named_by_time(moment, f"{entry}: folder name must be the acquisition time "
                          "YYYYmmddTHHMMSS (e.g. 20170103T172531)", strict):  # fmt: skip
            found.append((moment, entry))
    found.sort(key=lambda pair: pair[0])
    return found


# --- GeoTIFF observations ---------------------------------------------------------------


def _named_by_time(moment: datetime | None, message: str, strict: bool) -> bool:
    """Whether an entry's name parsed as a time; if not, raise (strict) or warn."""
    if moment is not None:
        return True
    if strict:
        raise DataError(message)
    warnings.warn(f"skipped {message}", stacklevel=3)
    return False


def mask_path_of(path: PathLike) -> Path:
    """Validity-mask GeoTIFF of an observation GeoTIFF: ``<time>_mask.tif``."""
    path = Path(path)
    return path.with_name(f"{path.stem}{MASK_SUFFIX}{path.suffix}")


def list_geotiff_observations(
    stream_root: PathLike, *, strict: bool = True
) -> list[tuple[datetime, Path]]:
    """The GeoTIFF observations of a stream folder, sorted by time.

    Args:
        stream_root: Folder of ``<YYYYmmddTHHMMSS>.tif`` files and their
            ``<YYYYmmddTHHMMSS>_mask.tif`` masks.
        strict: Raise on a ``.tif`` whose name is neither; with False, warn and skip it.

    Returns:
        ``(time, path)`` pairs in time order (masks not listed).

    Raises:
        DataError: Not a folder, or (strict) a GeoTIFF named otherwise.

    """
    root = Path(stream_root)
    if not root.is_dir():
        raise DataError(f"{root}: expected a folder of <YYYYmmddTHHMMSS>.tif observations")
    found: list[tuple[datetime, Path]] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        if entry.suffix.lower() not in (".tif", ".tiff"):
            continue
        stem = entry.stem
        if stem.endswith(MASK_SUFFIX) and parse_time(stem[: -len(MASK_SUFFIX)]) is not None:
            continue
        moment = parse_time(stem)
        if _named_by_time(moment, f"{entry}: GeoTIFF name must be the acquisition time "
                          "YYYYmmddTHHMMSS.tif (or YYYYmmddTHHMMSS_mask.tif for its mask)",
                          strict):  # fmt: skip
            found.append((moment, entry))
    found.sort(key=lambda pair: pair[0])
    return found


def _geotiff_time(path: Path) -> datetime:
    moment = parse_time(path.stem)
    if moment is None:
        raise DataError(f"{path}: GeoTIFF name must be the acquisition time YYYYmmddTHHMMSS.tif")
    return moment


def geotiff_info(path: PathLike, *, bands: int | None = None) -> ObservationInfo:
    """Describe a GeoTIFF observation and check its mask, reading headers only.

    Args:
        path: ``<YYYYmmddTHHMMSS>.tif``.
        bands: Expected number of bands.

    Returns:
        Time, grid and band count.

    Raises:
        DataError: Bad name, missing mask, unreadable file, wrong band count, no CRS,
            rotated grid, or a mask on another grid.

    """
    path = Path(path)
    moment = _geotiff_time(path)
    info = raster_info(path)
    if bands is not None and info.count != bands:
        raise DataError(f"{path}: expected {bands} bands, found {info.count}")
    if info.crs is None:
        raise DataError(f"{path}: the GeoTIFF has no CRS; expected a georeferenced raster")
    t = info.transform
    if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
        raise DataError(f"{path}: expected a north-up grid, found the transform {tuple(t)[:6]}")
    mask = mask_path_of(path)
    if not mask.is_file():
        raise DataError(
            f"{mask}: missing validity mask of {path.name} (one band, 1 valid, 0 invalid)"
        )
    mask_info = raster_info(mask)
    if mask_info.count != 1:
        raise DataError(f"{mask}: validity mask must have 1 band, found {mask_info.count}")
    if (mask_info.height, mask_info.width) != (info.height, info.width) or not (
        mask_info.transform.almost_equals(info.transform)
    ):
        raise DataError(
            f"{mask}: validity mask is not on the grid of {path.name} "
            f"({mask_info.height}x{mask_info.width}, expected {info.height}x{info.width})"
        )
    return ObservationInfo(moment, path, Grid(info.height, info.width, info.crs, t), info.count)


def read_geotiff_observation(
    path: PathLike,
    *,
    bands: int | None = None,
    window: Window | None = None,
) -> Observation:
    """Read one observation of the GeoTIFF layout: the image and its validity mask.

    Args:
        path: ``<YYYYmmddTHHMMSS>.tif`` (the era's bands, any numeric type; values are
            used as stored, converted to float32). Its mask
            ``<YYYYmmddTHHMMSS>_mask.tif`` must be beside it: one integer band, 1 valid
            and 0 invalid.
        bands: Expected number of bands.
        window: ``(row, col, height, width)`` to read; the whole grid if None.

    Returns:
        The observation: ``data`` float32 ``(C, h, w)``, ``mask`` bool ``(h, w)``.

    Raises:
        DataError: See :func:`geotiff_info`; also a mask with values other than 0 and 1.

    """
    return _read_geotiff_pixels(geotiff_info(path, bands=bands), window)


def _read_geotiff_pixels(info: ObservationInfo, window: Window | None) -> Observation:
    grid = info.grid
    rows, cols = _window_slices(window, grid.height, grid.width)
    win = (rows.start, cols.start, rows.stop - rows.start, cols.stop - cols.start)
    data = read_raster(info.path, window=win, what="observation").astype(np.float32, copy=False)
    transform = grid.transform @ Affine.translation(cols.start, rows.start)
    mask = _read_geotiff_mask(info, window)
    return Observation(info.time, data, mask, grid.crs, grid.bounds, transform, info.path)


def _read_geotiff_mask(info: ObservationInfo, window: Window | None) -> np.ndarray:
    """The validity mask ``(h, w)`` bool of a GeoTIFF observation (``_mask.tif``)."""
    grid = info.grid
    rows, cols = _window_slices(window, grid.height, grid.width)
    win = (rows.start, cols.start, rows.stop - rows.start, cols.stop - cols.start)
    mask_file = mask_path_of(info.path)
    raw = read_raster(mask_file, window=win, what="validity mask")[0]
    if not (np.issubdtype(raw.dtype, np.integer) or raw.dtype == np.bool_):
        raise DataError(f"{mask_file}: validity mask must hold integers 0/1, found {raw.dtype}")
    if raw.size and (int(raw.max()) > 1 or int(raw.min()) < 0):
        bad = int(raw.max()) if int(raw.max()) > 1 else int(raw.min())
        raise DataError(
            f"{mask_file}: validity mask must hold 0 (invalid) and 1 (valid) only, found "
            f"the value {bad}"
        )
    return raw.astype(bool)


# --- streams ----------------------------------------------------------------------------

Layout = Literal["auto", "eopatch", "geotiff"]


def _detect_layout(root: Path) -> Literal["eopatch", "geotiff"]:
    if (root / OBSERVATION_FOLDER).is_dir():
        return "eopatch"
    entries = [e for e in root.iterdir() if not e.name.startswith(".")]
    folders = [e for e in entries if e.is_dir() and parse_time(e.name) is not None]
    tiffs = [e for e in entries if e.is_file() and e.suffix.lower() in (".tif", ".tiff")]
    if folders and tiffs:
        raise DataError(
            f"{root}: holds both EOPatch folders and GeoTIFFs; expected one layout per stream "
            "folder (pass layout='eopatch' or 'geotiff')"
        )
    if tiffs:
        return "geotiff"
    if folders:
        return "eopatch"
    raise DataError(
        f"{root}: expected observations: eopatches/<YYYYmmddTHHMMSS>/ folders or "
        "<YYYYmmddTHHMMSS>.tif files with <YYYYmmddTHHMMSS>_mask.tif masks"
    )


class Stream:
    """One observation stream (e.g. S1 ascending), opened with :func:`open_stream`.

    Attributes:
        root: The stream folder.
        kind: ``sar`` or ``optical``.
        era: The sensor era.
        layout: ``eopatch`` or ``geotiff``.
        times: Acquisition times, ascending (naive UTC).
        paths: The observation folders or GeoTIFFs, in the same order.
        grid: The pixel grid shared by all observations.
        bands: Number of bands.
        band_names: The era's band names of the stream.

    """

    def __init__(
        self,
        root: Path,
        kind: Literal["sar", "optical"],
        era: Era,
        layout: Literal["eopatch", "geotiff"],
        entries: Sequence[tuple[datetime, Path]],
        grid: Grid | None = None,
    ) -> None:
        self.root = root
        self.kind = kind
        self.era = era
        self.layout = layout
        self.times: list[datetime] = [t for t, _ in entries]
        self.paths: list[Path] = [p for _, p in entries]
        self.band_names: tuple[str, ...] = era.sar_bands if kind == "sar" else era.optical_bands
        self.bands = len(self.band_names)
        self.grid: Grid = grid if grid is not None else self.info(0).grid

    def __len__(self) -> int:
        return len(self.times)

    def __repr__(self) -> str:
        return (
            f"Stream({str(self.root)!r}, {self.kind}, {self.era.name}, {self.layout}, "
            f"{len(self)} observations, {self.grid.describe()})"
        )

    @property
    def data_feature(self) -> str:
        """EOPatch ``data`` feature read."""
        return self.era.sar_feature if self.kind == "sar" else self.era.optical_feature

    @property
    def mask_feature(self) -> str:
        """EOPatch ``mask`` feature read."""
        return self.era.sar_mask if self.kind == "sar" else self.era.optical_mask

    @property
    def qa_invalid_bits(self) -> int:
        """QA bits decoded from the mask feature (optical Landsat only; 0 otherwise)."""
        return self.era.qa_invalid_bits if self.kind == "optical" else 0

    def info(self, index: int) -> ObservationInfo:
        """Header of observation ``index`` (no pixels read)."""
        if self.layout == "geotiff":
            return geotiff_info(self.paths[index], bands=self.bands)
        return eopatch_info(
            self.paths[index], self.data_feature, self.mask_feature, bands=self.bands
        )

    def read(self, index: int, window: Window | None = None) -> Observation:
        """Read observation ``index`` (optionally a ``(row, col, h, w)`` window).

        Raises:
            DataError: The file is malformed or not on the stream's grid.

        """
        info = self.info(index)
        if not info.grid.same_as(self.grid):
            raise _grid_mismatch(info, self.grid)
        if self.layout == "geotiff":
            return _read_geotiff_pixels(info, window)
        return _read_eopatch_pixels(
            info,
            self.data_feature,
            self.mask_feature,
            qa_invalid_bits=self.qa_invalid_bits,
            cloud_mask=self._cloud_mask,
            window=window,
        )

    def read_mask(self, index: int, window: Window | None = None) -> np.ndarray:
        """Only the validity mask ``(h, w)`` of observation ``index`` (no band is read)."""
        info = self.info(index)
        if not info.grid.same_as(self.grid):
            raise _grid_mismatch(info, self.grid)
        if self.layout == "geotiff":
            return _read_geotiff_mask(info, window)
        return _read_eopatch_mask(info, self.mask_feature, qa_invalid_bits=self.qa_invalid_bits,
                                  cloud_mask=self._cloud_mask, window=window)  # fmt: skip

    @property
    def _cloud_mask(self) -> str | None:
        return "CLM" if self.kind == "optical" and not self.qa_invalid_bits else None


def _grid_mismatch(info: ObservationInfo, grid: Grid) -> DataError:
    return DataError(
        f"{info.path}: not on the grid of the stream's first observation "
        f"({info.grid.describe()}; expected {grid.describe()})"
    )


def open_stream(
    root: PathLike,
    kind: Literal["sar", "optical"],
    era: Era | str = "s1s2",
    *,
    layout: Layout = "auto",
    strict: bool = True,
    check_grid: bool = True,
) -> Stream:
    """Open a stream folder of either layout and check that its observations share a grid.

    Args:
        root: The stream folder: ``eopatches/<YYYYmmddTHHMMSS>/`` folders (EOPatch layout,
            ``fail_eopatches/`` ignored) or ``<YYYYmmddTHHMMSS>.tif`` files with their
            ``_mask.tif`` masks (GeoTIFF layout).
        kind: ``sar`` (one orbit direction) or ``optical``.
        era: The sensor era (or its name), which gives the features, bands and QA bits.
        layout: ``auto`` detects it from the folder's content.
        strict: Raise on an observation named otherwise; with False, warn and skip it.
        check_grid: Read every observation's header at opening and check its grid (else
            only the first, and each observation when it is read).

    Returns:
        The stream.

    Raises:
        DataError: No observation, a malformed one, or observations on different grids
            (naming the first file off the grid).
        ConfigError: Unknown ``kind``, ``layout`` or era.

    """
    if kind not in ("sar", "optical"):
        raise ConfigError(f"kind: expected 'sar' or 'optical', got {kind!r}")
    if layout not in ("auto", "eopatch", "geotiff"):
        raise ConfigError(f"layout: expected 'auto', 'eopatch' or 'geotiff', got {layout!r}")
    era = get_era(era) if isinstance(era, str) else era
    path = Path(root)
    if not path.is_dir():
        raise DataError(f"{path}: expected a stream folder of observations")
    found = _detect_layout(path) if layout == "auto" else layout
    if found == "geotiff":
        entries = list_geotiff_observations(path, strict=strict)
    else:
        entries = list_observations(path, strict=strict)
    if not entries:
        raise DataError(f"{path}: holds no {found} observation")
    stream = Stream(path, kind, era, found, entries)
    if check_grid:
        for index in range(1, len(stream)):
            info = stream.info(index)
            if not info.grid.same_as(stream.grid):
                raise _grid_mismatch(info, stream.grid)
    return stream


# --- writers ----------------------------------------------------------------------------


def _bbox_geojson(grid: Grid) -> dict[str, Any]:
    west, south, east, north = grid.bounds
    epsg = grid.crs.to_epsg()
    if epsg is None:
        raise ValueError(f"write_eopatch needs a CRS with an EPSG code, got {grid.crs}")
    ring = [[west, south], [west, north], [east, north], [east, south], [west, south]]
    return {
        "type": "Polygon",
        "coordinates": [ring],
        "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}"}},
    }


def _write_file(path: Path, payload: bytes, compress: bool) -> None:
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def write_eopatch(
    parent: PathLike,
    time: datetime,
    data: np.ndarray,
    mask: np.ndarray,
    *,
    grid: Grid,
    data_feature: str,
    mask_feature: str,
    masks: dict[str, np.ndarray] | None = None,
    meta_info: dict[str, Any] | None = None,
    compress: bool = False,
) -> Path:
    """Write one observation as an EOPatch folder in eo-learn 1.3's on-disk format.

    The folder ``parent/<YYYYmmddTHHMMSS>`` gets ``bbox.geojson``, ``timestamp.json``,
    ``meta_info.json``, ``data/<data_feature>.npy`` (little-endian float32
    ``(1, H, W, C)``) and ``mask/<mask_feature>.npy`` (``(1, H, W, 1)``, bool or the
    mask's integer type, e.g. a Landsat QA band); with ``compress`` every file is
    gzipped (``.npy.gz``, ``.json.gz``), as eo-learn's ``compress_level`` does. The
    folder is written under a temporary name and renamed when complete.

    Args:
        parent: Folder of the stream's observations (e.g. ``S2/eopatches``).
        time: Acquisition time (naive UTC); whole seconds name the folder.
        data: ``(C, H, W)`` values.
        mask: ``(H, W)`` validity mask (bool) or QA band (integers).
        grid: The pixel grid (its CRS must have an EPSG code).
        data_feature: Name of the data feature (e.g. ``L1C_data``).
        mask_feature: Name of the mask feature (e.g. ``dataMask``).
        masks: More ``mask`` features, ``(H, W)`` each (e.g. ``CLM`` uint8).
        meta_info: Content of ``meta_info.json``.
        compress: Gzip every file.

    Returns:
        The folder written.

    """
    data = np.asarray(data)
    mask = np.asarray(mask)
    if data.ndim != 3 or data.shape[1:] != grid.shape or mask.shape != grid.shape:
        raise ValueError(
            f"write_eopatch expects data (C, {grid.height}, {grid.width}) and mask "
            f"({grid.height}, {grid.width}), got {data.shape} and {mask.shape}"
        )
    folder = Path(parent) / format_time(time)
    stored = np.ascontiguousarray(np.moveaxis(data, 0, -1)[None], dtype="<f4")
    features = {mask_feature: mask, **(masks or {})}
    with atomic_path(folder) as tmp:
        (tmp / "data").mkdir(parents=True)
        (tmp / "mask").mkdir()
        _write_file(tmp / "bbox.geojson", json.dumps(_bbox_geojson(grid)).encode(), compress)
        stamp = json.dumps([time.replace(microsecond=0).isoformat()]).encode()
        _write_file(tmp / "timestamp.json", stamp, compress)
        meta = json.dumps(meta_info or {}, indent=2).encode()
        _write_file(tmp / "meta_info.json", meta, compress)
        _write_file(tmp / "data" / f"{data_feature}.npy", _npy_bytes(stored), compress)
        for name, values in features.items():
            values = np.asarray(values)
            if values.shape != grid.shape:
                raise ValueError(f"mask feature {name}: expected {grid.shape}, got {values.shape}")
            layered = np.ascontiguousarray(values[None, :, :, None])
            _write_file(tmp / "mask" / f"{name}.npy", _npy_bytes(layered), compress)
    return folder


def write_geotiff_observation(
    folder: PathLike,
    time: datetime,
    data: np.ndarray,
    mask: np.ndarray,
    *,
    grid: Grid,
    band_names: Sequence[str] | None = None,
    compress: str = "deflate",
) -> Path:
    """Write one observation in the GeoTIFF layout: ``<time>.tif`` and ``<time>_mask.tif``.

    The mask (uint8, 1 valid) is written first, so that a reader never finds an image
    without its mask.

    Args:
        folder: The stream folder.
        time: Acquisition time (naive UTC); whole seconds name the files.
        data: ``(C, H, W)`` values, written as float32.
        mask: ``(H, W)`` validity (True or non-zero = valid).
        grid: The pixel grid.
        band_names: Band descriptions.
        compress: GDAL compression of the image.

    Returns:
        The image path.

    """
    path = Path(folder) / f"{format_time(time)}.tif"
    valid = (np.asarray(mask) != 0).astype(np.uint8)
    write_raster(mask_path_of(path), valid, crs=grid.crs, transform=grid.transform)
    write_raster(
        path,
        np.asarray(data, dtype=np.float32),
        crs=grid.crs,
        transform=grid.transform,
        compress=compress,
        descriptions=list(band_names) if band_names else None,
    )
    return path
