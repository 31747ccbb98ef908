"""Stacked series in Zarr: written block by block through Dask, resumable, lazily read.

Layout of ``SERIES.zarr`` (Zarr v3)::

    zarr.json            attributes: format, era, start/end/step, tile layout, CRS,
                         transform, channel names, the input folders, ``complete``
    times                (N,) float64 POSIX seconds of the steps
    sar_ascending        (N, C_sar, H, W) float32, chunks (T_chunk, C, tile, tile)
    sar_descending       (N, C_sar, H, W)
    optical              (N, C_opt, H, W)
    done/<row>_<col>     one empty marker per finished block

The area is cut into square blocks (``block`` pixels, a multiple of the chunk side) that
are assembled independently (:func:`~eochange.preprocess.stacking.assemble` reads each
observation once per block): one Dask task each, writing whole chunks, so tasks never
touch the same chunk. Memory is a block's state and one time chunk of its steps, never the
area's nor the whole series'. A
re-run with the same parameters skips the blocks that have a marker; one with different
parameters is refused (delete the series or choose another output). The series is
``complete`` once every block is in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from eochange import __version__
from eochange.errors import ConfigError, DataError
from eochange.io.atomic import atomic_path
from eochange.io.resume import refuse_other_settings
from eochange.parallel import map_tasks
from eochange.preprocess.eras import Era, get_era
from eochange.preprocess.stacking import (
    STREAMS,
    StackedSeries,
    StepPlan,
    assemble,
    drop_empty_observations,
    open_streams,
    plan_steps,
)
from eochange.preprocess.tiling import TileLayout

SERIES_FORMAT = "eochange.series"
SERIES_VERSION = 1


@dataclass(frozen=True)
class SeriesSettings:
    """How a series is stacked (everything that must match for a resume).

    Args:
        era: Era name.
        start: First bin start (ISO date or time).
        end: Last observation time written (ISO).
        step_seconds: Bin length δ in seconds.
        tile: Tile side of the layout (also the chunk side).
        deadzone: Tile overlap on each side.
        remainder: ``drop`` or ``cover``.
        drop_empty: Drop fully masked observations.
        crop: Crop the streams to the smallest grid.
        block: Side of the blocks stacked as one task (a multiple of ``tile``).
        time_chunk: Steps per chunk.
    """

    era: str = "s1s2"
    start: str = ""
    end: str = ""
    step_seconds: float = 0.0
    tile: int = 32
    deadzone: int = 0
    remainder: str = "drop"
    drop_empty: bool = True
    crop: bool = False
    block: int = 128
    time_chunk: int = 64

    @classmethod
    def for_era(cls, era: Era, **overrides: Any) -> SeriesSettings:
        """The era's defaults, with overrides (``None`` values are ignored)."""
        values = {
            "era": era.name,
            "start": era.start.isoformat(),
            "end": datetime.combine(era.end, datetime.max.time()).isoformat(),
            "step_seconds": era.step.total_seconds(),
            "tile": era.tile,
            "deadzone": era.deadzone,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        for key in ("start", "end"):
            if isinstance(values[key], date):
                values[key] = values[key].isoformat()
        if isinstance(values.get("step_seconds"), timedelta):
            values["step_seconds"] = values["step_seconds"].total_seconds()
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Raise ConfigError on inconsistent values."""
        if self.block < self.tile or self.block % self.tile:
            raise ConfigError(
                f"--block: expected a multiple of the tile ({self.tile}), got {self.block}"
            )
        if self.time_chunk < 1 or self.step_seconds <= 0:
            raise ConfigError("--time-chunk and the step must be positive")


@dataclass
class SeriesReport:
    """What a :func:`write_series` run did."""

    path: Path
    steps: int
    blocks_written: int = 0
    blocks_skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _BlockTask:
    inputs: tuple[str, str, str]
    out: str
    window: tuple[int, int, int, int]
    settings: SeriesSettings
    plan: StepPlan


def write_series(
    sar_ascending: str | os.PathLike[str],
    sar_descending: str | os.PathLike[str],
    optical: str | os.PathLike[str],
    out: str | os.PathLike[str],
    settings: SeriesSettings | None = None,
    scheduler: str | None = None,
    progress: bool = False,
) -> SeriesReport:
    """Stack three observation folders into a Zarr series (see the module docstring).

    Args:
        sar_ascending: Folder of the SAR ascending observations (EOPatch or GeoTIFF).
        sar_descending: Folder of the SAR descending observations.
        optical: Folder of the optical observations.
        out: The series (``.zarr``), created or resumed.
        settings: Stacking parameters (default: the S1/S2 era's).
        scheduler: Dask scheduler (see :mod:`eochange.parallel`).
        progress: Show a progress bar.

    Raises:
        ConfigError: Settings that differ from those of an existing series at ``out``.
        DataError: Unreadable inputs, streams on different grids, no observation.
    """
    settings = settings or SeriesSettings.for_era(get_era("s1s2"))
    settings.check()
    era = get_era(settings.era)
    inputs = tuple(str(Path(p)) for p in (sar_ascending, sar_descending, optical))
    streams = open_streams(*inputs, era, settings.crop)
    kept = drop_empty_observations(streams) if settings.drop_empty else None
    plan = plan_steps({n: s.times for n, s in streams.items()}, settings.start, settings.end,
                      timedelta(seconds=settings.step_seconds), kept)  # fmt: skip
    height = min(s.grid.height for s in streams.values())
    width = min(s.grid.width for s in streams.values())
    grid = streams["optical"].grid
    layout = TileLayout(height, width, settings.tile, settings.deadzone, settings.remainder,
                        str(grid.crs or ""), tuple(grid.transform)[:6])  # fmt: skip
    out = Path(out)
    bands = {name: streams[name].bands for name in STREAMS}
    root = _open_or_create(out, settings, inputs, plan.times, bands, layout, era)
    report = SeriesReport(out, len(plan.times))
    tasks = []
    for row in range(0, height, settings.block):
        for col in range(0, width, settings.block):
            window = (row, col, min(settings.block, height - row), min(settings.block, width - col))
            if (out / "done" / f"{row}_{col}").exists():
                report.blocks_skipped += 1
            else:
                tasks.append(_BlockTask(inputs, str(out), window, settings, plan))

    def on_result(index: int, result: Any) -> None:
        if isinstance(result, BaseException):
            report.failed[str(tasks[index].window)] = f"{type(result).__name__}: {result}"
        else:
            report.blocks_written += 1

    map_tasks(_stack_block, tasks, scheduler=scheduler, progress=progress, desc="stack blocks",
              on_result=on_result)  # fmt: skip
    if not report.failed:
        root.attrs["complete"] = True
    return report


def _stack_block(task: _BlockTask) -> None:
    """Assemble one block and write it into the series, then mark it done."""
    settings = task.settings
    # The driver checked the grids and planned the steps: only reads are left here.
    streams = open_streams(*task.inputs, get_era(settings.era), settings.crop, check_grid=False)
    root = zarr.open_group(task.out, mode="r+")
    arrays = {name: root[name] for name in STREAMS}
    assemble(streams, task.plan, task.window, out=arrays)
    row, col = task.window[:2]
    marker = Path(task.out) / "done" / f"{row}_{col}"
    marker.parent.mkdir(exist_ok=True)
    marker.touch()


def _attrs(
    settings: SeriesSettings, inputs: tuple[str, ...], layout: TileLayout, era: Era
) -> dict[str, Any]:
    return {
        "format": SERIES_FORMAT,
        "format_version": SERIES_VERSION,
        "eochange_version": __version__,
        "settings": dict(settings.__dict__),
        "inputs": dict(zip(STREAMS, inputs, strict=True)),
        "layout": {**layout.geometry(), "rows": layout.rows, "cols": layout.cols},
        "crs": layout.crs,
        "transform": list(layout.transform),
        "channels": list(era.channel_names),
        "sar_bands": list(era.sar_bands),
        "optical_bands": list(era.optical_bands),
        "complete": False,
    }


def _open_or_create(
    out: Path,
    settings: SeriesSettings,
    inputs: tuple[str, ...],
    times: np.ndarray,
    bands: dict[str, int],
    layout: TileLayout,
    era: Era,
) -> zarr.Group:
    attrs = _attrs(settings, inputs, layout, era)
    if out.exists():
        root = zarr.open_group(out, mode="r+")
        saved = dict(root.attrs)
        if saved.get("format") != SERIES_FORMAT:
            raise DataError(f"{out}: exists and is not an eochange series")
        refuse_other_settings(out, saved, attrs, ("settings", "inputs", "layout"), "series")
        if not np.array_equal(root["times"][:], times):
            raise DataError(f"{out}: the inputs now give other step times; delete the series")
        return root
    # Created whole under a temporary name, then renamed: a run killed meanwhile leaves no
    # series without its attributes or arrays (which a re-run could neither resume nor use).
    with atomic_path(out) as tmp:
        root = zarr.open_group(tmp, mode="w")
        root.attrs.put(attrs)
        root.create_array("times", data=np.asarray(times, np.float64))
        chunk_t = min(settings.time_chunk, max(1, len(times)))
        for name in STREAMS:
            root.create_array(
                name,
                shape=(len(times), bands[name], layout.height, layout.width),
                chunks=(chunk_t, bands[name], settings.tile, settings.tile),
                dtype="float32",
                fill_value=0.0,
                compressors=BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),
            )
        (tmp / "done").mkdir()
    return zarr.open_group(out, mode="r+")


def open_series(path: str | os.PathLike[str], require_complete: bool = True) -> StackedSeries:
    """A Zarr series as a :class:`~eochange.preprocess.stacking.StackedSeries` (lazy arrays).

    Raises:
        DataError: Not a series, or not complete (an interrupted ``eochange stack``).
    """
    path = Path(path)
    try:
        root = zarr.open_group(path, mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError) as err:
        raise DataError(f"{path}: not a readable eochange series ({err})") from None
    attrs = dict(root.attrs)
    if attrs.get("format") != SERIES_FORMAT:
        raise DataError(f"{path}: not an eochange series (no {SERIES_FORMAT} format attribute)")
    if require_complete and not attrs.get("complete"):
        raise DataError(f"{path}: the series is incomplete; re-run `eochange stack` to finish it")
    era = get_era(attrs["settings"]["era"])
    return StackedSeries(root["times"][:], root["sar_ascending"], root["sar_descending"],
                         root["optical"], era, attrs.get("crs", ""),
                         tuple(attrs.get("transform", (1, 0, 0, 0, 1, 0))))  # fmt: skip


def series_layout(path: str | os.PathLike[str]) -> TileLayout:
    """The tile layout recorded in a series."""
    attrs = dict(zarr.open_group(Path(path), mode="r").attrs)
    layout = attrs["layout"]
    return TileLayout(layout["height"], layout["width"], layout["tile"], layout["deadzone"],
                      layout["remainder"], attrs.get("crs", ""),
                      tuple(attrs.get("transform")))  # fmt: skip


def export_stage2(
    series: str | os.PathLike[str],
    folder: str | os.PathLike[str],
    names: str = "rsdtlib",
    progress: bool = False,
) -> int:
    """Write a series as rsdtlib stage-2 TFRecords: ``{j}_{i}.tfrecords`` per tile.

    One GZIP file per tile of the series' layout (tiles with their deadzone), one record
    per step, channels-last on disk as rsdtlib writes them; each file is written
    atomically and an existing one is kept (resume). Returns the number of tiles written.
    """
    from tqdm.auto import tqdm

    from eochange.io.tfrecord import write_stage2

    data = open_series(series)
    layout = series_layout(series)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for j, i in tqdm(list(layout), desc="stage-2 TFRecords", disable=not progress):
        path = folder / f"{layout.tile_name(j, i)}.tfrecords"
        if path.exists():
            continue
        row, col, h, w = layout.window(j, i)
        window = (slice(None), slice(None), slice(row, row + h), slice(col, col + w))
        write_stage2(path, data.times, data.sar_ascending[window], data.sar_descending[window],
                     data.optical[window], names=names)  # fmt: skip
        written += 1
    return written


def import_stage2(
    folder: str | os.PathLike[str],
    out: str | os.PathLike[str],
    deadzone: int = 0,
    progress: bool = False,
) -> SeriesReport:
    """Assemble rsdtlib stage-2 TFRecords into a Zarr series.

    Tile files are ``{j}_{i}.tfrecords`` (rsdtlib) or ``{site}_{j}_{i}.tfrecords`` (the
    original scripts); the series then goes through ``eochange window`` like a stacked one.

    Every tile must hold the same timestamps; the era follows from the band counts
    (2 + 13: S1/S2, 1 + 7: ERS/LS5); tile side from the records; the tiles' deadzone (not
    recorded in the files) from ``deadzone``. Stage-2 files carry no georeference: the
    series gets an empty CRS and pixel coordinates.

    Raises:
        DataError: No tile file, names without tile indexes, or tiles that disagree.
    """
    from tqdm.auto import tqdm

    from eochange.io.tfrecord import read_stage2

    folder, out = Path(folder), Path(out)
    files = {}
    for path in sorted(folder.glob("*.tfrecords")):
        parts = path.stem.split("_")
        if len(parts) < 2 or not (parts[-2].isdigit() and parts[-1].isdigit()):
            raise DataError(f"{path}: expected a tile file named <j>_<i>.tfrecords")
        files[(int(parts[-2]), int(parts[-1]))] = path
    if not files:
        raise DataError(f"{folder}: no stage-2 .tfrecords tile files")
    first = read_stage2(next(iter(files.values())))
    sar, optical = first.sar_ascending.shape[1], first.optical.shape[1]
    tile = first.optical.shape[-1]
    era = {(2, 13): "s1s2", (1, 7): "ers_ls5"}.get((sar, optical))
    if era is None:
        raise DataError(f"{folder}: {sar} SAR and {optical} optical bands match no era")
    stride = tile - 2 * deadzone
    ny, nx = (max(k[axis] for k in files) + 1 for axis in (0, 1))
    layout = TileLayout((ny - 1) * stride + tile, (nx - 1) * stride + tile, tile, deadzone)
    if layout.shape != (ny, nx):
        raise DataError(f"{folder}: tile indexes up to {ny - 1}_{nx - 1} do not fit a layout")
    settings = SeriesSettings.for_era(get_era(era), tile=tile, deadzone=deadzone,
                                      block=tile, start="", end="")  # fmt: skip
    bands = {"sar_ascending": sar, "sar_descending": sar, "optical": optical}
    root = _open_or_create(out, settings, (str(folder),) * 3, first.timestamps, bands, layout,
                           get_era(era))  # fmt: skip
    report = SeriesReport(out, len(first.timestamps))
    for (j, i), path in tqdm(sorted(files.items()), desc="import tiles", disable=not progress):
        marker = out / "done" / f"{j}_{i}"
        if marker.exists():
            report.blocks_skipped += 1
            continue
        data = read_stage2(path)
        if not np.array_equal(data.timestamps, first.timestamps):
            raise DataError(f"{path}: other timestamps than {next(iter(files.values())).name}")
        row, col, h, w = layout.window(j, i)
        for name in STREAMS:
            values = getattr(data, name)
            if values.shape != (len(first.timestamps), bands[name], h, w):
                raise DataError(f"{path}: {name} is {list(values.shape)}, expected "
                                f"{[len(first.timestamps), bands[name], h, w]} like the "
                                "first tile")  # fmt: skip
            if not np.isfinite(values).all():
                raise DataError(f"{path}: {name} holds NaN or infinite values; stage-2 "
                                "series are gap-filled and must be finite")  # fmt: skip
            root[name][:, :, row : row + h, col : col + w] = values
        marker.touch()
        report.blocks_written += 1
    root.attrs["complete"] = True
    return report
