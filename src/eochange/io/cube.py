"""The eochange datacube: one Zarr v3 store, one group per area, xarray-readable.

Layout of a cube ``CUBES.zarr``::

    zarr.json                 root attributes: format, dataset metadata, splits
    <area_id>/                one group per area (written under a temporary name, renamed
                              into place when complete, so an area either exists whole or not)
      image   (time, band, y, x)  uint16/int16, chunks (1, C, chunk, chunk)
      time    (time,)             int64 days since the reference date (CF units -> datetime64)
      band    (band,)             band names
      label   (month, y, x)       uint8 label bit mask (bit i = one-hot band i set)
      month   (month,)            int64 days since the reference date of each month's first day
      y, x                        pixel-centre coordinates in the area's CRS
      spatial_ref ()              CRS as CF/GDAL attributes

Every chunk is stored with a CRC32C (zarr's ``crc32c`` codec, after Blosc/LZ4 for image
and label, Zstandard for the coordinates), so a damaged chunk is an error, never
different pixels or dates.

One frame is one chunk row in time, so a sample of any temporal sampling reads exactly the
frames it needs, and a spatial crop reads only the chunks it overlaps. Areas open with
``xarray.open_zarr(CUBE, group=AREA_ID, consolidated=False)`` as well as with
:func:`open_cube`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from affine import Affine
from rasterio.crs import CRS
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

from eochange import __version__
from eochange.errors import DataError, EOChangeError
from eochange.io.atomic import atomic_path, publish, remove_path, temporary_sibling
from eochange.io.chunks import ChunkReader
from eochange.io.paths import check_name

CUBE_FORMAT = "eochange.cube"
CUBE_VERSION = 1
DEFAULT_CHUNK = 256

Window = tuple[int, int, int, int]
"""``(row_off, col_off, height, width)``."""


@dataclass(frozen=True)
class Grid:
    """Pixel grid of an area: size, CRS (WKT) and affine transform."""

    height: int
    width: int
    crs: str
    transform: Affine


def _compressor(level: int = 5) -> BloscCodec:
    # LZ4 with byte shuffle decodes at memory speed; reflectance compresses ~2x with it.
    return BloscCodec(cname="lz4", clevel=level, shuffle="shuffle")


def _compressors() -> list[Any]:
    # Blosc/LZ4 carries no checksum: a CRC32C of every stored chunk (zarr's standard
    # codec) turns a damaged chunk into an error instead of different pixels.
    return [_compressor(), Crc32cCodec()]


def is_cube(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an eochange cube (a Zarr group with the cube format attribute)."""
    meta = Path(path) / "zarr.json"
    if not meta.is_file():
        return False
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
        return attrs.get("format") == CUBE_FORMAT
    except (OSError, ValueError, AttributeError, RecursionError):  # not JSON, not a dict
        return False


def create_cube(path: str | os.PathLike[str], attrs: dict[str, Any]) -> zarr.Group:
    """Create a cube root (or open an existing one) and set its attributes.

    Args:
        path: The ``.zarr`` folder.
        attrs: Dataset metadata (JSON-serialisable).

    Raises:
        DataError: ``path`` exists and is something other than an eochange cube.

    """
    path = Path(path)
    if path.exists() and not is_cube(path):
        if path.is_dir() and not any(path.iterdir()):
            pass
        else:
            raise DataError(f"{path}: exists and is not an eochange cube; choose another --out")
    values = {"format": CUBE_FORMAT, "version": CUBE_VERSION, **attrs}
    if not is_cube(path):
        # Created whole under a temporary name, then renamed: a run killed meanwhile leaves
        # no root without the format attribute (which a re-run would refuse as not a cube).
        with atomic_path(path) as tmp:
            zarr.open_group(tmp, mode="w", zarr_format=3).attrs.put(values)
    root = zarr.open_group(path, mode="a", zarr_format=3)
    root.attrs.update(values)
    return root


class AreaWriter:
    """Stream one area into a cube, frame by frame, and publish it atomically.

    Use as a context manager: the area is written under a temporary name and renamed to
    ``<cube>/<area_id>`` by :meth:`commit`; on an exception the temporary group is removed
    and an earlier complete version of the area (if any) is left as it was.
    """

    def __init__(
        self,
        cube: str | os.PathLike[str],
        area_id: str,
        *,
        grid: Grid,
        dates: Sequence[int],
        months: Sequence[str],
        bands: Sequence[str],
        dtype: str = "uint16",
        reference_date: date = date(2018, 1, 1),
        chunk: int = DEFAULT_CHUNK,
        attrs: dict[str, Any] | None = None,
    ) -> None:
        self.final = Path(cube) / check_name(area_id, "area id", str(cube))
        self.area_id = area_id
        self.grid = grid
        self.final.parent.mkdir(parents=True, exist_ok=True)
        # Leftovers of a killed earlier attempt at this area: never published, safe to drop.
        for stale in self.final.parent.glob(f".{area_id}.tmp-*"):
            remove_path(stale)
        self.tmp = temporary_sibling(self.final)
        self._done = False
        group = zarr.open_group(self.tmp, mode="w", zarr_format=3)
        units = f"days since {reference_date.isoformat()}"
        height, width = grid.height, grid.width
        chunk_hw = (min(chunk, height), min(chunk, width))
        self.image = group.create_array(
            "image",
            shape=(len(dates), len(bands), height, width),
            chunks=(1, len(bands), *chunk_hw),
            dtype=dtype,
            fill_value=0,
            compressors=_compressors(),
            dimension_names=("time", "band", "y", "x"),
            attributes={"grid_mapping": "spatial_ref"},
        )
        self.label = group.create_array(
            "label",
            shape=(len(months), height, width),
            chunks=(1, *chunk_hw),
            dtype="uint8",
            fill_value=0,
            compressors=_compressors(),
            dimension_names=("month", "y", "x"),
            attributes={
                "grid_mapping": "spatial_ref",
                "encoding": "bit i is set where one-hot label band i is 255",
            },
        )
        cal = {"units": units, "calendar": "proleptic_gregorian"}
        self._coord(group, "time", np.asarray(dates, dtype=np.int64), cal)
        month_days = [(date(int(m[:4]), int(m[5:7]), 1) - reference_date).days for m in months]
        self._coord(group, "month", np.asarray(month_days, dtype=np.int64), cal)
        self._coord(group, "band", np.asarray(list(bands), dtype=str), {})
        t = grid.transform
        x = t.c + t.a * (np.arange(width) + 0.5)
        y = t.f + t.e * (np.arange(height) + 0.5)
        self._coord(group, "x", x, {"standard_name": "projection_x_coordinate", "units": "m"})
        self._coord(group, "y", y, {"standard_name": "projection_y_coordinate", "units": "m"})
        crs = CRS.from_user_input(grid.crs)
        ref = group.create_array("spatial_ref", shape=(), dtype="int64", dimension_names=())
        ref[...] = 0
        ref.attrs.update(
            {
                "crs_wkt": crs.to_wkt(),
                "spatial_ref": crs.to_wkt(),
                "GeoTransform": " ".join(str(v) for v in t.to_gdal()),
            }
        )
        group.attrs.update(
            {
                "area_id": area_id,
                "crs": crs.to_wkt(),
                "transform": list(t)[:6],
                "reference_date": reference_date.isoformat(),
                "eochange_version": __version__,
                "months": list(months),
                "complete": False,
                **(attrs or {}),
            }
        )
        self.group = group

    @staticmethod
    def _coord(group: zarr.Group, name: str, values: np.ndarray, attrs: dict[str, Any]) -> None:
        # Strings as Zarr's variable-length "string" type (fixed-width UTF-32 has no spec).
        dtype = str if values.dtype.kind == "U" else values.dtype
        arr = group.create_array(name, shape=values.shape, dtype=dtype, dimension_names=(name,),
                                 compressors=[ZstdCodec(level=0), Crc32cCodec()])  # fmt: skip
        arr[:] = values
        if attrs:
            arr.attrs.update(attrs)

    def write_frame(self, index: int, frame: np.ndarray) -> None:
        """Write image frame ``index`` (``(C, H, W)``)."""
        self.image[index] = frame

    def write_label(self, index: int, bits: np.ndarray) -> None:
        """Write the label bit mask of month ``index`` (``(H, W)`` uint8)."""
        self.label[index] = bits

    def commit(self) -> Path:
        """Mark the area complete and move it into place."""
        self.group.attrs["complete"] = True
        self._done = True
        return publish(self.tmp, self.final)

    def abort(self) -> None:
        """Discard the temporary group; an earlier complete area stays as it was."""
        self._done = True
        remove_path(self.tmp)

    def __enter__(self) -> AreaWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self._done:
            self.abort()


class CubeArea:
    """Read access to one area of a cube."""

    def __init__(
        self, group: zarr.Group, area_id: str, folder: Path | None = None, where: str = ""
    ) -> None:
        self.area_id = area_id
        self.group = group
        self.where = where or (str(folder) if folder else f"area {area_id}")
        # Local cubes are read chunk by chunk directly (io/chunks.py); zarr otherwise.
        self._image_reader = ChunkReader.open(folder / "image") if folder else None
        self._label_reader = ChunkReader.open(folder / "label") if folder else None
        attrs = dict(group.attrs)
        self.attrs = attrs
        self.image = group["image"]
        self.label_array = group["label"]
        height, width = self.image.shape[-2:]
        self.grid = Grid(int(height), int(width), attrs["crs"], Affine(*attrs["transform"]))
        self.dates = np.asarray(group["time"][:], dtype=np.int64)
        if self.dates.size and not (
            -700_000 < self.dates.min() <= self.dates.max() < 2_900_000
            and (np.diff(self.dates) > 0).all()
        ):
            raise DataError(
                f"{self.where}/time: the dates are not increasing days of the calendar "
                f"({self.dates[:5].tolist()}...); the cube is damaged: prepare the area again"
            )
        self.bands = [str(b) for b in group["band"][:]]
        self._month_index = {m: i for i, m in enumerate(attrs.get("months", []))}
        image, label = tuple(self.image.shape), tuple(self.label_array.shape)
        if (
            len(image) != 4
            or image[:2] != (len(self.dates), len(self.bands))
            or label != (len(self._month_index), *image[2:])
        ):
            raise DataError(
                f"{self.where}: the arrays disagree (image {list(image)}, label {list(label)}, "
                f"{len(self.dates)} dates, {len(self.bands)} bands, {len(self._month_index)} "
                "months); the cube is damaged: prepare the area again"
            )

    @property
    def months(self) -> list[str]:
        """Labelled months, ``YYYY-MM``."""
        return list(self._month_index)

    def month_index(self, month: str) -> int:
        """Index of a month in the label array."""
        try:
            return self._month_index[month]
        except KeyError:
            raise DataError(
                f"area {self.area_id}: no label for month {month} in the cube"
            ) from None

    def read_images(
        self,
        times: Sequence[int],
        window: Window | None = None,
        dtype: np.dtype | type | None = None,
    ) -> np.ndarray:
        """Frames ``times`` (indexes into :attr:`dates`) of a window, ``(T, C, h, w)``.

        Args:
            times: Frame indexes, in the order wanted.
            window: ``(row, col, height, width)``; the whole area if None.
            dtype: Convert to this type while copying out of the chunks (saves a pass
                and an array of the stored type, e.g. for float32 samples).
        """
        rows, cols = _slices(window)
        times = [int(t) for t in times]
        bad = [t for t in times if not 0 <= t < len(self.dates)]
        if bad:  # the caller's index, not the data
            raise IndexError(f"{self.where}: frame {bad[0]} out of range 0..{len(self.dates) - 1}")
        with damaged(f"{self.where}/image"):
            return self._read_images(times, rows, cols, dtype)

    def _read_images(
        self, times: list[int], rows: slice, cols: slice, dtype: np.dtype | type | None
    ) -> np.ndarray:
        if self._image_reader is not None:
            return self._image_reader.read(times, rows, cols, dtype)
        # Zarr's orthogonal selection is several times slower than basic slicing, so read
        # each run of consecutive frames with one slice.
        height = len(range(*rows.indices(self.image.shape[2])))
        width = len(range(*cols.indices(self.image.shape[3])))
        out = np.empty((len(times), self.image.shape[1], height, width), dtype or self.image.dtype)
        start = 0
        while start < len(times):
            stop = start + 1
            while stop < len(times) and times[stop] == times[stop - 1] + 1:
                stop += 1
            out[start:stop] = self.image[times[start] : times[stop - 1] + 1, :, rows, cols]
            start = stop
        return out

    def read_label_bits(self, month: str, window: Window | None = None) -> np.ndarray:
        """Label bit mask of a month, ``(h, w)`` uint8."""
        rows, cols = _slices(window)
        index = self.month_index(month)
        with damaged(f"{self.where}/label"):
            if self._label_reader is not None:
                return self._label_reader.read([index], rows, cols)[0]
            return self.label_array[index, rows, cols]


def _slices(window: Window | None) -> tuple[slice, slice]:
    if window is None:
        return slice(None), slice(None)
    row, col, height, width = window
    return slice(row, row + height), slice(col, col + width)


class Cube:
    """An eochange cube opened for reading."""

    def __init__(self, path: str | os.PathLike[str], direct_reads: bool = True) -> None:
        self.path = Path(path)
        self.direct_reads = direct_reads
        if not is_cube(self.path):
            raise DataError(f"{self.path}: not an eochange cube (no {CUBE_FORMAT} zarr.json)")
        with damaged(str(self.path / "zarr.json")):
            self.root = zarr.open_group(self.path, mode="r", zarr_format=3)
            self.attrs: dict[str, Any] = dict(self.root.attrs)
        self._areas: dict[str, CubeArea] = {}

    def area_ids(self, complete_only: bool = True) -> list[str]:
        """Areas in the cube (complete ones only by default), sorted."""
        ids = []
        for entry in sorted(os.scandir(self.path), key=lambda e: e.name):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            if not complete_only or area_is_complete(self.path, entry.name):
                ids.append(entry.name)
        return ids

    def area(self, area_id: str) -> CubeArea:
        """Open an area (cached)."""
        if area_id not in self._areas:
            check_name(area_id, "area id", str(self.path))
            if not area_is_complete(self.path, area_id):
                raise DataError(
                    f"{self.path}: area {area_id} is missing or incomplete; run "
                    "'eochange prepare' again to finish it"
                )
            folder = self.path / area_id if self.direct_reads else None
            with damaged(str(self.path / area_id)):
                self._areas[area_id] = CubeArea(
                    self.root[area_id], area_id, folder, str(self.path / area_id)
                )
        return self._areas[area_id]


def area_is_complete(cube: str | os.PathLike[str], area_id: str) -> bool:
    """Whether an area group exists and was committed (cheap: reads one JSON file)."""
    meta = Path(cube) / area_id / "zarr.json"
    try:
        return bool(json.loads(meta.read_text())["attributes"].get("complete"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return False  # missing, or not the JSON object eochange writes: not complete


@contextlib.contextmanager
def damaged(where: str) -> Iterator[None]:
    """Report anything that fails while decoding stored cube data as one DataError.

    Zarr metadata and chunks that do not decode (truncated or corrupt files, metadata
    edited by hand) raise many kinds of exceptions in zarr-python, numcodecs and numpy;
    here they become one error naming the array or file and the reason.
    """
    try:
        yield
    except EOChangeError:
        raise
    except Exception as err:  # noqa: BLE001 - see the docstring
        text = " ".join(str(err).split())[:300]
        raise DataError(
            f"{where}: cannot read the cube ({type(err).__name__}: {text or 'no message'}); "
            "the file is damaged or was not written by eochange: prepare the area again"
        ) from None


def open_cube(path: str | os.PathLike[str], direct_reads: bool = True) -> Cube:
    """Open an eochange cube for reading.

    Args:
        path: The cube folder.
        direct_reads: Read chunks of a local cube directly (:mod:`eochange.io.chunks`);
            False reads everything through zarr-python (same values, slower).
    """
    return Cube(path, direct_reads)
