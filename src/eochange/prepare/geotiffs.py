"""``eochange prepare geotiffs``: a user's folder of dated GeoTIFFs into a Zarr datacube.

So that a DynamicEarthNet-trained model maps a user's own PlanetScope or Sentinel-2
stack (``eochange map``), each file becomes one frame of an area of an eochange cube
(:mod:`eochange.io.cube`), in the model's band order:

- **Dates** come from the file names (:data:`DEFAULT_DATE_PATTERN`: ``YYYY-MM-DD``,
  ``YYYYMMDD`` or ``YYYY_MM_DD`` anywhere in the name, or a user regex with named groups
  ``year``, ``month`` and optionally ``day``); frames are sorted by date.
- **One grid per area**: the first file's (by date), or ``crs`` + ``resolution`` over the
  union of all files. A file on another grid is resampled onto it with
  :func:`rasterio.warp.reproject`; pixels outside its footprint, and its nodata pixels,
  become 0 (the cube's "no data").
- **Bands** are picked per file by 1-based index or by band description, in the order of
  ``band_names`` (default R, G, B, NIR from the PlanetScope/PlanetFusion file order
  B, G, R, NIR), scaled by ``value * scale + offset``, rounded and clipped to uint16.

Areas are written atomically and resumably with :class:`~eochange.io.cube.AreaWriter`
and the helpers of :mod:`eochange.prepare.common`, one frame at a time; with
``area_from_subfolders`` each subfolder is an area and the areas fan out through Dask.
The areas have no labels (an empty ``label`` array).
"""

from __future__ import annotations

import math
import os
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.coords import BoundingBox
from rasterio.crs import CRS
from rasterio.errors import CRSError, RasterioError
from rasterio.warp import Resampling, reproject, transform_bounds

from eochange.datasets import dynamicearthnet_layout as layout
from eochange.errors import ConfigError, DataError
from eochange.io.atomic import remove_path
from eochange.io.cube import DEFAULT_CHUNK, AreaWriter, Cube, Grid, create_cube, is_cube
from eochange.parallel import check_scheduler
from eochange.prepare.common import (
    AreaResult,
    PrepareReport,
    areas_to_do,
    run_area_tasks,
    write_frames,
)

DATASET = "geotiffs"
"""The ``dataset`` root attribute of cubes written here."""

DEFAULT_DATE_PATTERN = (
    r"(?<!\d)(?P<year>(?:19|20)\d\d)(?P<sep>[-_]?)(?P<month>0[1-9]|1[0-2])(?P=sep)"
    r"(?P<day>0[1-9]|[12]\d|3[01])(?!\d)"
)
"""First ``YYYY-MM-DD``, ``YYYYMMDD`` or ``YYYY_MM_DD`` in a file name, not inside a longer
number: ``2018-06-05.tif``, ``20180605_103021_0f2a_3B_AnalyticMS_SR.tif`` (PlanetScope),
``S2A_MSIL2A_20180605T103021_N0208_R108_T32UNU_20180605T134000.tif`` (the sensing date)."""

DEFAULT_BAND_NAMES = layout.BANDS
"""Band names stored in the cube: the DynamicEarthNet model order R, G, B, NIR."""

DEFAULT_BANDS: tuple[int, ...] = layout.FILE_BAND_INDEXES
"""File bands of :data:`DEFAULT_BAND_NAMES` in PlanetScope 4-band / PlanetFusion files
(B, G, R, NIR): 3, 2, 1, 4."""

CUBE_DTYPE = np.uint16
"""Stored pixel type, as the DynamicEarthNet cube (reflectance scaled to 0-10000)."""

BandRef = int | str
"""A file band: 1-based index, or band description (matched without regard to case)."""


@dataclass(frozen=True)
class GeotiffOptions:
    """How every area is converted (the same for all areas of a run)."""

    bands: tuple[BandRef, ...] = DEFAULT_BANDS
    band_names: tuple[str, ...] = DEFAULT_BAND_NAMES
    crs: str | None = None
    resolution: float | None = None
    resampling: str = "bilinear"
    scale: float = 1.0
    offset: float = 0.0
    reference_date: date = layout.REFERENCE_DATE
    chunk: int = DEFAULT_CHUNK


@dataclass(frozen=True)
class GeotiffAreaSpec:
    """What one area task needs: its dated files and where to write."""

    cube: str
    area_id: str
    folder: str
    files: tuple[tuple[date, str], ...]  # sorted by date
    options: GeotiffOptions


@dataclass(frozen=True)
class _Header:
    path: Path
    count: int
    height: int
    width: int
    crs: CRS
    transform: Affine
    bounds: BoundingBox
    descriptions: tuple[str | None, ...]


# --- names and arguments ------------------------------------------------------------------


def compile_date_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a ``--date-pattern`` regex, checking its named groups.

    Raises:
        ConfigError: Not a regular expression, or no ``year`` or ``month`` group.

    """
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise ConfigError(f"--date-pattern: not a valid regular expression ({err})") from None
    missing = [g for g in ("year", "month") if g not in regex.groupindex]
    if missing:
        raise ConfigError(
            f"--date-pattern: needs the named groups (?P<year>...), (?P<month>...) and "
            f"optionally (?P<day>...); {pattern!r} has no {' or '.join(missing)} group"
        )
    return regex


def file_date(path: str | os.PathLike[str], pattern: re.Pattern[str]) -> date | None:
    """The date in a file's name (the first match of ``pattern``), or None without one.

    A pattern without a ``day`` group gives the first day of the month.

    Raises:
        DataError: The name matches but is not a calendar date (e.g. 2018-02-30).

    """
    match = pattern.search(Path(path).name)
    if match is None:
        return None
    fields = match.groupdict()
    try:
        return date(int(fields["year"]), int(fields["month"]), int(fields.get("day") or 1))
    except (TypeError, ValueError):
        raise DataError(
            f"{path}: {match.group(0)!r} in the file name is not a valid date"
        ) from None


def dated_files(
    folder: str | os.PathLike[str],
    pattern: str | re.Pattern[str] = DEFAULT_DATE_PATTERN,
    *,
    recursive: bool = False,
    skip_undated: bool = False,
) -> list[tuple[date, Path]]:
    """The GeoTIFFs of a folder with the dates in their names, sorted by date.

    Hidden files and folders (``.name``) and files of other types are ignored.

    Args:
        folder: The folder.
        pattern: Date regex (see :func:`compile_date_pattern`).
        recursive: Include the files of all subfolders.
        skip_undated: Leave out files without a date (with a warning) instead of failing.

    Raises:
        DataError: No GeoTIFF, a file without a date, or two files with the same date.

    """
    folder = Path(folder)
    regex = compile_date_pattern(pattern) if isinstance(pattern, str) else pattern
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    found: dict[date, Path] = {}
    for path in sorted(candidates):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        if not path.name.lower().endswith(layout.IMAGE_SUFFIXES):
            continue
        day = file_date(path, regex)
        if day is None:
            message = (
                f"{path}: no date in the file name (expected YYYY-MM-DD, YYYYMMDD or "
                "YYYY_MM_DD, or a match of --date-pattern)"
            )
            if not skip_undated:
                raise DataError(f"{message}; rename it, or pass --skip-undated to leave it out")
            warnings.warn(f"{message}; skipped", stacklevel=2)
            continue
        if day in found:
            raise DataError(
                f"{folder}: two files for {day.isoformat()} ({found[day].relative_to(folder)} "
                f"and {rel}); keep one file per date (mosaic same-day scenes first)"
            )
        found[day] = path
    if not found:
        where = " (or its subfolders)" if recursive else ""
        raise DataError(f"{folder}: no dated GeoTIFF (*.tif, *.tiff) in the folder{where}")
    return sorted(found.items())


def parse_bands(text: str) -> tuple[BandRef, ...]:
    """Parse ``--bands``: comma-separated 1-based indexes or band descriptions.

    ``"3,2,1,4"`` gives ``(3, 2, 1, 4)``; ``"B04,B03,B02,B08"`` gives the descriptions.

    Raises:
        ConfigError: An empty item or an index below 1.

    """
    refs: list[BandRef] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            raise ConfigError(f"--bands: empty item in {text!r}; expected e.g. 3,2,1,4")
        if item.isdigit():
            if int(item) < 1:
                raise ConfigError(f"--bands: band indexes start at 1, got {item} in {text!r}")
            refs.append(int(item))
        else:
            refs.append(item)
    return tuple(refs)


def band_indexes(
    path: str | os.PathLike[str],
    count: int,
    descriptions: Sequence[str | None],
    bands: Sequence[BandRef],
) -> list[int]:
    """The 1-based file band of each wanted band.

    Args:
        path: The file, for messages.
        count: Its band count.
        descriptions: Its band descriptions (None where a band has none).
        bands: Wanted bands: indexes or descriptions (matched without regard to case).

    Raises:
        DataError: An index beyond the file's bands, or a description no band has.

    """
    names = [(d or "").strip().lower() for d in descriptions]
    out = []
    for band in bands:
        if isinstance(band, int):
            if not 1 <= band <= count:
                raise DataError(
                    f"{path}: --bands asks for band {band}, but the file has {count} band(s)"
                )
            out.append(band)
        elif band.strip().lower() in names:
            out.append(names.index(band.strip().lower()) + 1)
        else:
            shown = ", ".join(repr(d) for d in descriptions) if any(descriptions) else "none"
            raise DataError(
                f"{path}: no band described {band!r} (its band descriptions: {shown}); "
                "pass --bands as 1-based indexes instead"
            )
    return out


# --- grid ---------------------------------------------------------------------------------


def _header(path: Path) -> _Header:
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise DataError(f"{path}: the file has no CRS; eochange needs georeferenced files")
            return _Header(
                path,
                src.count,
                src.height,
                src.width,
                src.crs,
                src.transform,
                src.bounds,
                tuple(src.descriptions),
            )
    except RasterioError as err:
        raise DataError(f"{path}: not a readable GeoTIFF ({err})") from None


def _bounds_in(header: _Header, crs: CRS) -> tuple[float, float, float, float]:
    if header.crs == crs:
        return tuple(header.bounds)  # type: ignore[return-value]
    return transform_bounds(header.crs, crs, *header.bounds, densify_pts=21)


def target_grid(headers: Sequence[_Header], crs: str | None, resolution: float | None) -> Grid:
    """The grid every frame of an area is put on.

    Without ``resolution``: the first file's grid. With it: square pixels of that size in
    ``crs`` (default: the first file's CRS), over the union of all files' extents snapped
    outwards to multiples of the resolution.

    Raises:
        DataError: The first file's grid is rotated (give a resolution to resample it).

    """
    first = headers[0]
    if resolution is None:
        t = first.transform
        if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
            raise DataError(
                f"{first.path}: the grid is rotated or flipped; pass --resolution (and --crs) "
                "to resample the files onto a north-up grid"
            )
        return Grid(first.height, first.width, first.crs.to_wkt(), t)
    target = CRS.from_user_input(crs) if crs else first.crs
    extents = np.array([_bounds_in(h, target) for h in headers])
    left = math.floor(extents[:, 0].min() / resolution + 1e-9) * resolution
    bottom = math.floor(extents[:, 1].min() / resolution + 1e-9) * resolution
    right = math.ceil(extents[:, 2].max() / resolution - 1e-9) * resolution
    top = math.ceil(extents[:, 3].max() / resolution - 1e-9) * resolution
    width = round((right - left) / resolution)
    height = round((top - bottom) / resolution)
    transform = Affine(resolution, 0.0, left, 0.0, -resolution, top)
    return Grid(height, width, target.to_wkt(), transform)


def _on_grid(header: _Header, grid: Grid, crs: CRS) -> bool:
    return (
        (header.height, header.width) == (grid.height, grid.width)
        and header.transform.almost_equals(grid.transform)
        and header.crs == crs
    )


def _check_overlap(header: _Header, grid: Grid, crs: CRS) -> None:
    left, bottom, right, top = _bounds_in(header, crs)
    t = grid.transform
    g_left, g_top = t.c, t.f
    g_right, g_bottom = t.c + t.a * grid.width, t.f + t.e * grid.height
    if right <= g_left or left >= g_right or top <= g_bottom or bottom >= g_top:
        raise DataError(
            f"{header.path}: does not overlap the area's grid (that of the first file by "
            "date); pass --resolution (and --crs) to cover the union of all files, or put "
            "it in another area"
        )


# --- areas --------------------------------------------------------------------------------


def _to_cube(values: np.ndarray, scale: float, offset: float, out: np.ndarray) -> None:
    # values: float32 band with NaN where there is no data; written into out (uint16).
    if scale != 1 or offset != 0:
        values *= np.float32(scale)
        values += np.float32(offset)
    np.rint(values, out=values)
    info = np.iinfo(CUBE_DTYPE)
    np.clip(values, info.min, info.max, out=values)
    out[...] = np.nan_to_num(values, copy=False, nan=0.0)


def prepare_geotiff_area(spec: GeotiffAreaSpec) -> AreaResult:
    """Convert one area; the Dask task.

    Every header is checked (CRS, bands, overlap with the grid) before anything is
    written; then the frames are streamed into the area, which is published whole.

    Raises:
        DataError: A file that cannot be read or does not fit (naming the file).

    """
    start = time.perf_counter()
    opts = spec.options
    folder = Path(spec.folder)
    paths = [Path(p) for _, p in spec.files]
    headers = [_header(p) for p in paths]
    indexes = {h.path: band_indexes(h.path, h.count, h.descriptions, opts.bands) for h in headers}
    grid = target_grid(headers, opts.crs, opts.resolution)
    crs = CRS.from_wkt(grid.crs)
    for h in headers:
        _check_overlap(h, grid, crs)
    off_grid = {h.path for h in headers if not _on_grid(h, grid, crs)}
    resampling = Resampling[opts.resampling]

    def read_frame(path: Path) -> np.ndarray:
        frame = np.zeros((len(opts.bands), grid.height, grid.width), CUBE_DTYPE)
        try:
            with rasterio.open(path) as src:
                for c, band in enumerate(indexes[path]):
                    if path not in off_grid:
                        values = src.read(band, out_dtype="float32")
                        if src.nodata is not None:
                            values[values == np.float32(src.nodata)] = np.nan
                    else:
                        values = np.full((grid.height, grid.width), np.nan, np.float32)
                        reproject(
                            rasterio.band(src, band),
                            values,
                            src_nodata=src.nodata,
                            dst_transform=grid.transform,
                            dst_crs=crs,
                            dst_nodata=np.nan,
                            resampling=resampling,
                        )
                    _to_cube(values, opts.scale, opts.offset, frame[c])
        except RasterioError as err:
            raise DataError(f"{path}: not a readable GeoTIFF ({err})") from None
        return frame

    with AreaWriter(
        spec.cube,
        spec.area_id,
        grid=grid,
        dates=[layout.days_since_reference(day, opts.reference_date) for day, _ in spec.files],
        months=[],
        bands=opts.band_names,
        dtype=np.dtype(CUBE_DTYPE).name,
        reference_date=opts.reference_date,
        chunk=opts.chunk,
        attrs={
            "source_folder": str(folder),
            "files": [p.relative_to(folder).as_posix() for p in paths],
            "reprojected": [p.relative_to(folder).as_posix() for p in paths if p in off_grid],
            "source_bands": list(opts.bands),
            "resampling": opts.resampling,
            "scale": opts.scale,
            "offset": opts.offset,
        },
    ) as writer:
        bytes_written = write_frames(writer, paths, read_frame)
        writer.commit()
    return AreaResult(spec.area_id, len(paths), 0, bytes_written, time.perf_counter() - start)


def _check_options(opts: GeotiffOptions) -> None:
    if len(opts.bands) != len(opts.band_names):
        raise ConfigError(
            f"--bands: {len(opts.bands)} band(s) {list(opts.bands)} for {len(opts.band_names)} "
            f"--band-names {list(opts.band_names)}; give one file band per name"
        )
    if len(set(opts.band_names)) != len(opts.band_names) or not all(opts.band_names):
        raise ConfigError(f"--band-names: expected distinct names, got {list(opts.band_names)}")
    if opts.resampling not in Resampling.__members__:
        choices = ", ".join(Resampling.__members__)
        raise ConfigError(f"--resampling: expected one of {choices}, got {opts.resampling!r}")
    if opts.crs is not None:
        if opts.resolution is None:
            raise ConfigError("--crs needs --resolution (the pixel size in that CRS's units)")
        try:
            CRS.from_user_input(opts.crs)
        except CRSError as err:
            raise ConfigError(f"--crs: not a coordinate reference system ({err})") from None
    if opts.resolution is not None and not (math.isfinite(opts.resolution) and opts.resolution > 0):
        raise ConfigError(f"--resolution: expected a positive number, got {opts.resolution}")
    if not (math.isfinite(opts.scale) and opts.scale != 0 and math.isfinite(opts.offset)):
        raise ConfigError(
            f"--scale/--offset: expected finite numbers and a scale other than 0, got "
            f"{opts.scale} and {opts.offset}"
        )
    if opts.chunk < 1:
        raise ConfigError(f"--chunk: expected a positive number, got {opts.chunk}")


def _check_area_id(area_id: str) -> str:
    if not area_id or area_id.startswith(".") or any(c in area_id for c in "/\\"):
        raise ConfigError(
            f"--area-id: {area_id!r} cannot name an area (not empty, no '/', no leading '.')"
        )
    return area_id


def _root_attrs(out: Path, folder: Path, opts: GeotiffOptions) -> dict[str, object]:
    # The cube's root attributes; those of an existing cube must agree.
    attrs: dict[str, object] = {
        "dataset": DATASET,
        "bands": list(opts.band_names),
        "reference_date": opts.reference_date.isoformat(),
    }
    if is_cube(out):
        existing = Cube(out).attrs
        for key, value in attrs.items():
            if existing.get(key) != value:
                raise DataError(
                    f"{out}: the cube has {key} {existing.get(key)!r}, not {value!r}; choose "
                    "another --out"
                )
    return {**attrs, "source": str(folder.resolve())}


def prepare_geotiffs(
    folder: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    bands: Sequence[BandRef] | None = None,
    band_names: Sequence[str] = DEFAULT_BAND_NAMES,
    date_pattern: str = DEFAULT_DATE_PATTERN,
    recursive: bool = False,
    skip_undated: bool = False,
    area_id: str | None = None,
    area_from_subfolders: bool = False,
    crs: str | None = None,
    resolution: float | None = None,
    resampling: str = "bilinear",
    scale: float = 1.0,
    offset: float = 0.0,
    reference_date: date = layout.REFERENCE_DATE,
    scheduler: str | None = None,
    workers: int | None = None,
    chunk: int = DEFAULT_CHUNK,
    overwrite: bool = False,
    progress: bool = False,
) -> PrepareReport:
    """Build (or complete) an eochange cube from a folder of dated GeoTIFFs.

    Args:
        folder: The folder of GeoTIFFs, or of one subfolder per area.
        out: The cube to create or complete (``.zarr`` folder).
        bands: File band of each of ``band_names``: 1-based indexes or band descriptions.
            Default: 3, 2, 1, 4 (PlanetScope 4-band order B, G, R, NIR) when ``band_names``
            is the default; required otherwise.
        band_names: Band names stored in the cube (the model's band order).
        date_pattern: Regex finding the date in a file name (:func:`compile_date_pattern`).
        recursive: Also take the files of subfolders (of each area folder).
        skip_undated: Leave out files without a date, with a warning.
        area_id: Area name when the whole folder is one area (default: the folder name).
        area_from_subfolders: Each immediate subfolder is one area (one Dask task each).
        crs: Target CRS (e.g. ``EPSG:32632``); needs ``resolution``.
        resolution: Target pixel size in the target CRS's units; the grid then covers the
            union of the files. Without it each area takes its first file's grid.
        resampling: :class:`rasterio.enums.Resampling` name for files on another grid.
        scale: Multiply the file values by this (e.g. 10000 for 0-1 reflectance).
        offset: Then add this (e.g. -1000 for Sentinel-2 L2A from baseline 04.00).
        reference_date: Frame dates are stored as days since this date.
        scheduler: Dask scheduler for ``area_from_subfolders`` (see :mod:`eochange.parallel`);
            a single area is converted in this process.
        workers: Local worker processes.
        chunk: Spatial chunk side of the image arrays.
        overwrite: Redo complete areas too.
        progress: Show a progress bar.

    Returns:
        What was written, skipped and, with ``area_from_subfolders``, what failed (failed
        areas leave nothing behind and do not stop the others).

    Raises:
        ConfigError: A bad argument.
        DataError: A bad folder or, for a single area, a bad file (nothing is written).

    """
    check_scheduler(scheduler)
    if bands is None:
        if tuple(band_names) != DEFAULT_BAND_NAMES:
            raise ConfigError(f"--bands: needed with --band-names {','.join(band_names)}")
        bands = DEFAULT_BANDS
    opts = GeotiffOptions(
        bands=tuple(bands),
        band_names=tuple(band_names),
        crs=crs,
        resolution=None if resolution is None else float(resolution),
        resampling=resampling,
        scale=float(scale),
        offset=float(offset),
        reference_date=reference_date,
        chunk=chunk,
    )
    _check_options(opts)
    pattern = compile_date_pattern(date_pattern)
    folder, out = Path(folder), Path(out)
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    if area_from_subfolders:
        if area_id is not None:
            raise ConfigError("--area-id: not with --area-from-subfolders (subfolders name areas)")
        areas = {
            p.name: p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")
        }
        if not areas:
            raise DataError(f"{folder}: no subfolders (with --area-from-subfolders, one per area)")
    else:
        areas = {_check_area_id(area_id or folder.resolve().name): folder}
    attrs = _root_attrs(out, folder, opts)
    report = PrepareReport(out)
    specs = []
    for name in areas_to_do(out, sorted(areas), overwrite, report):
        try:
            files = dated_files(
                areas[name], pattern, recursive=recursive, skip_undated=skip_undated
            )
        except DataError as err:
            if not area_from_subfolders:
                raise
            report.failed[name] = str(err)
            continue
        specs.append(
            GeotiffAreaSpec(
                str(out),
                name,
                str(areas[name]),
                tuple((day, str(path)) for day, path in files),
                opts,
            )
        )
    created = not out.exists()
    create_cube(out, attrs)
    if not area_from_subfolders:
        try:
            report.written.extend(prepare_geotiff_area(spec) for spec in specs)
        except BaseException:
            if created:  # nothing half-written: not even an empty cube
                remove_path(out)
            raise
        return report
    return run_area_tasks(
        prepare_geotiff_area, specs, report, scheduler=scheduler, workers=workers, progress=progress
    )
