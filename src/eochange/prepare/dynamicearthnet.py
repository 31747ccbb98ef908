"""``eochange prepare dynamicearthnet``: the official layout into a Zarr datacube.

One Dask task per area. Each task streams its area one daily image at a time (memory
does not grow with the number of days), validates every file against the first one
(band count, dtype, size, grid), and publishes the area atomically; a re-run skips
complete areas and redoes incomplete ones.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eochange.datasets import dynamicearthnet_layout as layout
from eochange.datasets.dynamicearthnet_sources import IMAGE_DTYPES
from eochange.errors import DataError
from eochange.io.cube import DEFAULT_CHUNK, AreaWriter, Grid, create_cube
from eochange.io.raster import raster_info, read_raster
from eochange.parallel import check_scheduler
from eochange.prepare.common import (
    AreaResult,
    PrepareReport,
    areas_to_do,
    run_area_tasks,
    write_frames,
)


@dataclass(frozen=True)
class AreaSpec:
    """What one area task needs: where its images and labels are, and where to write."""

    root: str
    cube: str
    area_id: str
    planet_dir: str
    labels: tuple[tuple[str, str], ...]  # (month, label path relative to root), sorted
    chunk: int = DEFAULT_CHUNK


def collect_areas(
    root: str | os.PathLike[str], path_rewrite: str | tuple[str, str] | None = None
) -> tuple[dict[str, list[list[str]]], dict[str, tuple[str, dict[str, str]]]]:
    """Read every split file and group its lines by area.

    Returns:
        ``splits`` (split -> list of entry fields, for the cube attributes) and ``areas``
        (area id -> (planet_dir, {month: label path})).

    Raises:
        DataError: No split file, or one area named with two image folders or one month
            with two label files.

    """
    splits: dict[str, list[list[str]]] = {}
    areas: dict[str, tuple[str, dict[str, str]]] = {}
    for split in layout.SPLITS:
        if not layout.split_file(root, split).is_file():
            continue
        entries = layout.read_split(root, split, path_rewrite, allow_empty=True)
        if not entries:
            continue  # an empty split file: that split has no samples
        splits[split] = [[e.planet_dir, e.label_path, e.month, e.cube_id] for e in entries]
        for e in entries:
            planet_dir, labels = areas.setdefault(e.cube_id, (e.planet_dir, {}))
            if planet_dir != e.planet_dir:
                raise DataError(
                    f"{layout.split_file(root, split)}: area {e.cube_id} has two image folders "
                    f"({planet_dir} and {e.planet_dir})"
                )
            if labels.setdefault(e.month, e.label_path) != e.label_path:
                raise DataError(
                    f"{layout.split_file(root, split)}: {e.cube_id} {e.month} has two label "
                    f"files ({labels[e.month]} and {e.label_path})"
                )
    if not splits:
        raise DataError(
            f"{Path(root) / layout.SPLIT_FOLDER}: no split file (expected train.txt, val.txt "
            "or test.txt)"
        )
    return splits, areas


def prepare_area(spec: AreaSpec) -> AreaResult:
    """Convert one area; the Dask task. Raises DataError on bad input."""
    start = time.perf_counter()
    root = Path(spec.root)
    folder = root / spec.planet_dir
    images = layout.dated_images(folder)
    if not images:
        raise DataError(f"{folder}: no daily images (expected YYYY-MM-DD.tif files)")
    days = [day for day, _ in images]
    paths = [path for _, path in images]
    months = [m for m, _ in spec.labels]
    present = {d.strftime("%Y-%m") for d in days}
    for month in months:
        if month not in present:
            raise DataError(f"{folder}: no images for month {month} (expected {month}-DD.tif)")

    first = raster_info(paths[0])
    what = "DynamicEarthNet image"
    if first.count != len(layout.FILE_BANDS):
        raise DataError(f"{paths[0]}: {what} must have 4 bands (B,G,R,NIR), found {first.count}")
    if first.dtype not in IMAGE_DTYPES:
        raise DataError(f"{paths[0]}: {what} must be uint16 or int16, found {first.dtype}")
    grid = Grid(first.height, first.width, first.crs.to_wkt() if first.crs else "", first.transform)
    shape = (grid.height, grid.width)
    bytes_read = 0
    with AreaWriter(
        spec.cube,
        spec.area_id,
        grid=grid,
        dates=[layout.days_since_reference(d) for d in days],
        months=months,
        bands=layout.BANDS,
        dtype=first.dtype,
        reference_date=layout.REFERENCE_DATE,
        chunk=spec.chunk,
        attrs={
            "planet_dir": spec.planet_dir,
            "label_paths": dict(spec.labels),
            "source_band_order": list(layout.FILE_BANDS),
        },
    ) as writer:

        def read_frame(path: Path) -> np.ndarray:
            return read_raster(
                path,
                bands=list(layout.FILE_BAND_INDEXES),
                count=len(layout.FILE_BANDS),
                dtypes=(first.dtype,),
                shape=shape,
                transform=grid.transform,
                crs=first.crs,
                what=what,
            )

        bytes_read += write_frames(writer, paths, read_frame)
        for m, (_, label_path) in enumerate(spec.labels):
            onehot = read_raster(
                root / label_path,
                count=layout.LABEL_BANDS,
                dtypes=("uint8",),
                shape=shape,
                what="DynamicEarthNet label",
            )
            writer.write_label(m, layout.onehot_to_bits(onehot, str(root / label_path)))
            bytes_read += onehot.nbytes
        writer.commit()
    return AreaResult(
        spec.area_id, len(paths), len(months), bytes_read, time.perf_counter() - start
    )


def prepare_dynamicearthnet(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    path_rewrite: str | tuple[str, str] | None = None,
    chunk: int = DEFAULT_CHUNK,
    overwrite: bool = False,
    progress: bool = False,
) -> PrepareReport:
    """Convert a DynamicEarthNet root (official layout) into an eochange cube.

    Args:
        root: Dataset root with ``dynnet_training_splits/``.
        out: The cube to create or complete (``.zarr`` folder).
        scheduler: Dask scheduler (see :mod:`eochange.parallel`); local processes by default.
        workers: Local worker processes.
        path_rewrite: Split-file path rewrite (preset name or regex pair).
        chunk: Spatial chunk side of the image and label arrays.
        overwrite: Redo complete areas too.
        progress: Show a progress bar.

    Returns:
        What was written, skipped and what failed. Failed areas leave nothing behind and
        do not stop the others; the caller decides how to report them.

    """
    check_scheduler(scheduler)
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset root not found")
    splits, areas = collect_areas(root, path_rewrite)
    create_cube(
        out,
        {
            "dataset": "dynamicearthnet",
            "reference_date": layout.REFERENCE_DATE.isoformat(),
            "bands": list(layout.BANDS),
            "mean": list(layout.MEAN),
            "std": list(layout.STD),
            "class_names": list(layout.CLASS_NAMES),
            "palette": [list(c) for c in layout.PALETTE],
            "splits": splits,
            "source": str(root.resolve()),
        },
    )
    report = PrepareReport(Path(out))
    specs = []
    for area_id in areas_to_do(out, sorted(areas), overwrite, report):
        planet_dir, labels = areas[area_id]
        specs.append(
            AreaSpec(str(root), str(out), area_id, planet_dir, tuple(sorted(labels.items())), chunk)
        )
    return run_area_tasks(
        prepare_area, specs, report, scheduler=scheduler, workers=workers, progress=progress
    )
