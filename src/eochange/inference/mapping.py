"""``eochange map``: monthly land-cover maps, change maps and previews of whole areas.

For each area and month of the input, the checkpoint's model is run by sliding window
(:mod:`eochange.inference.sliding`) block by block (groups of whole tiles, each tile
evaluated once); blocks are Dask tasks (a local cluster by default, ``scheduler`` to join
one), and the driver assembles each month's blocks into Cloud Optimized GeoTIFFs as they
arrive, completing the overlap strips that neighbouring blocks share, so memory stays
bounded whatever the area. Outputs, under ``out``:

- ``<area>_<YYYY-MM>-01.tif``: class map (uint8, palette, 255 = nodata), named like the
  official reference maps, so ``eochange evaluate dynamicearthnet --res out`` scores it;
- ``probabilities/<area>_<YYYY-MM>-01.tif``: class probabilities x 255 (one band per
  class), with ``probabilities=True``;
- ``change/<area>_<YYYY-MM>-01.tif``: change from the month before (see
  :mod:`eochange.inference.products`);
- ``previews/<area>_<YYYY-MM>-01.png`` and ``timelapse/<area>.gif``: the image of the
  month next to its map.

Every file is written atomically; a re-run skips the files that exist.
"""

from __future__ import annotations

import functools
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eochange.errors import ConfigError, DataError
from eochange.inference.checkpoint import load_model
from eochange.inference.inputs import months_of, open_input, select_frames
from eochange.inference.products import (
    RasterAssembler,
    colourise,
    read_preview,
    write_change_map,
    write_png,
    write_timelapse,
)
from eochange.inference.sliding import CellMerger, accumulate, blended, cell_parts
from eochange.inference.tiling import Block, BlockPlan, Cell, TileGrid, Window, plan_blocks
from eochange.parallel import check_scheduler, map_tasks, usable_cores
from eochange.report.colour import true_colour

PREVIEW_SIDE = 512
THREADS_PER_WORKER = 4
"""Cores per local Dask worker process (each runs torch with that many threads)."""


@dataclass(frozen=True)
class MapSettings:
    """How maps are computed and what is written.

    Args:
        tile: Tile side seen by the model (a multiple of 32).
        overlap: Overlap of neighbouring tiles.
        margin: Pixels at shared tile sides given weight 0.
        block: Side of the blocks an area is cut into (one Dask task each), in pixels:
            tiles are grouped so that a block's extent is at most this (at least one
            tile).
        batch_size: Tiles per forward pass (default: 1 on CPU, where larger batches are
            slower per tile, see docs/benchmarks.md; 16 on GPU).
        fast: Optimised path (channels-last + bfloat16 on CPU, float16 on GPU).
        device: ``cpu`` or ``cuda``.
        probabilities: Also write class probabilities.
        previews: Write PNG previews and the animated time-lapse.
        threads: Torch threads per task (default: the cores divided among the workers).
    """

    tile: int = 256
    overlap: int = 64
    margin: int = 16
    block: int = 1024
    batch_size: int | None = None
    fast: bool = False
    device: str = "cpu"
    probabilities: bool = False
    previews: bool = True
    threads: int | None = None

    def check(self) -> None:
        """Raise ConfigError on inconsistent values."""
        if self.tile < 32 or self.tile % 32:
            raise ConfigError(f"--tile: expected a multiple of 32, got {self.tile}")
        if not 0 <= self.overlap < self.tile:
            raise ConfigError(f"--overlap: expected 0 <= overlap < tile, got {self.overlap}")
        if self.overlap and 2 * self.margin >= self.overlap:
            raise ConfigError(f"--margin: expected 2 * margin < overlap, got {self.margin}")
        if self.block < 1 or (self.batch_size is not None and self.batch_size < 1):
            raise ConfigError("--block and --batch-size must be positive")


MAP_METADATA = ("bands", "mean", "std", "sampling", "classes", "palette", "num_classes", "model")
"""Checkpoint metadata (``eochange`` key) that maps need (written by ``eochange fit``)."""


@dataclass(frozen=True)
class BlockTask:
    """One block of one area-month: what a Dask worker needs."""

    checkpoint: str
    source: str
    area: str
    month: str
    frames: tuple[int, ...]
    block: Block
    settings: MapSettings


@dataclass
class MapReport:
    """What a map run did: files written and skipped, and failures by area-month."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def class_map_path(out: Path, area: str, month: str, folder: str = "") -> Path:
    """``out[/folder]/<area>_<YYYY-MM>-01.tif``."""
    return out / folder / f"{area}_{month}-01.tif"


@functools.lru_cache(maxsize=2)
def _model(checkpoint: str, device: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    return load_model(checkpoint, device)


@functools.lru_cache(maxsize=2)
def _source(path: str) -> Any:
    return open_input(path)


def band_indexes(wanted: Sequence[str], available: Sequence[str], where: str) -> list[int]:
    """Positions of the model's bands among the input's (by name).

    Raises:
        DataError: A band the model needs is missing.
    """
    missing = [band for band in wanted if band not in available]
    if missing:
        raise DataError(
            f"{where}: input bands {list(available)} lack {missing}, which the model needs "
            f"(in order {list(wanted)}); map them with `eochange prepare geotiffs --bands`"
        )
    return [list(available).index(band) for band in wanted]


CellResult = tuple[Cell, str, np.ndarray, np.ndarray | None]
"""``(cell, "final", classes, probabilities x 255 or None)`` for a cell of this block
only, or ``(cell, "part", sums, weights)`` for a cell shared with other blocks."""


def run_block(task: BlockTask) -> list[CellResult]:
    """Predict one block: its own cells final, its shares of overlap strips as sums."""
    settings = task.settings
    if settings.threads:
        torch.set_num_threads(settings.threads)
    model, info = _model(task.checkpoint, settings.device)
    source = _source(task.source)
    grid = source.grid(task.area)
    bands = band_indexes(info["bands"], source.bands(task.area), f"{task.source}/{task.area}")
    mean = np.asarray(info["mean"], np.float32)[:, None, None]
    std = np.asarray(info["std"], np.float32)[:, None, None]
    reference = date.fromisoformat(info.get("reference_date", "2018-01-01"))
    all_dates = source.dates(task.area)
    dates = np.array([(all_dates[i] - reference).days for i in task.frames], np.int64)

    def read(window: Window) -> np.ndarray:
        frames = source.read(task.area, task.frames, window)[:, bands]
        return (frames - mean) / std

    tiles = TileGrid(grid.height, grid.width, settings.tile, settings.overlap, settings.margin)
    total, weight = accumulate(
        model, read, dates, tiles, task.block.tiles, task.block.extent, info["num_classes"],
        settings.batch_size, settings.fast, settings.device,
    )  # fmt: skip
    results: list[CellResult] = []
    for cell, sums, weights in cell_parts(total, weight, task.block):
        if cell.shared:
            results.append((cell, "part", sums.copy(), weights.copy()))
        else:
            results.append((cell, "final", *finalise(blended(sums, weights), settings)))
    return results


def finalise(
    probabilities: np.ndarray, settings: MapSettings
) -> tuple[np.ndarray, np.ndarray | None]:
    """Class map ``(h, w)`` uint8, and probabilities x 255 as uint8 if asked for."""
    classes = probabilities.argmax(axis=0).astype(np.uint8)
    scaled = (probabilities * 255).round().astype(np.uint8) if settings.probabilities else None
    return classes, scaled


def make_maps(
    checkpoint: str | os.PathLike[str],
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    months: Sequence[str] | None = None,
    areas: Sequence[str] | None = None,
    scheduler: str | None = None,
    settings: MapSettings | None = None,
    progress: bool = False,
) -> MapReport:
    """Write the maps of every area and month (see the module docstring).

    Args:
        checkpoint: A training checkpoint of ``eochange fit``.
        source: A cube or the official DynamicEarthNet layout.
        out: Output folder.
        months: Only these ``YYYY-MM`` (default: every month with images).
        areas: Only these areas (default: all).
        scheduler: Dask scheduler (see :mod:`eochange.parallel`); ``synchronous`` runs
            in this process.
        settings: Tiling, batching and products.
        progress: Show progress bars.

    Raises:
        ConfigError: Bad settings, unknown areas or months.
        DataError: Unreadable checkpoint or input.
    """
    settings = settings or MapSettings()
    settings.check()
    check_scheduler(scheduler)
    checkpoint, source, out = str(Path(checkpoint)), str(Path(source)), Path(out)
    _, info = _model(checkpoint, "cpu")
    missing = [key for key in MAP_METADATA if key not in info]
    if missing:
        raise DataError(
            f"{checkpoint}: the checkpoint's eochange metadata lacks {', '.join(missing)}, "
            "which maps need; use a checkpoint written by `eochange fit`"
        )
    data = _source(source)
    chosen = _chosen_areas(data, areas)
    report = MapReport()
    jobs: dict[tuple[str, str], tuple[int, ...]] = {}
    for area in chosen:
        available = months_of(data.dates(area))
        for month in _chosen_months(available, months):
            frames = tuple(select_frames(data.dates(area), month, info["sampling"]))
            wanted = [class_map_path(out, area, month)]
            if settings.probabilities:
                wanted.append(class_map_path(out, area, month, "probabilities"))
            if all(path.exists() for path in wanted):
                report.skipped.extend(wanted)
            else:
                jobs[(area, month)] = frames
    n_tasks = sum(len(_plan(data, area, settings).blocks) for area, _ in jobs)
    # Local workers: one per THREADS_PER_WORKER cores (torch's own threads use a core
    # better than a second process: on 2 vCPUs two single-thread workers each ran 1.9x
    # slower than one alone), the cores shared out as torch threads. A remote cluster's
    # workers keep their own thread settings.
    remote = scheduler is not None and "://" in scheduler
    cores = usable_cores()
    workers = 1 if scheduler == "synchronous" else min(
        max(1, cores // THREADS_PER_WORKER), max(1, n_tasks))  # fmt: skip
    threads = settings.threads or (None if remote else max(1, cores // workers))
    batch_size = settings.batch_size or (1 if settings.device == "cpu" else 16)
    task_settings = replace(settings, threads=threads, batch_size=batch_size)
    _predict(checkpoint, source, out, jobs, info, task_settings, scheduler, workers, report,
             progress)  # fmt: skip
    for area in chosen:
        _area_products(data, area, out, info, settings, report, months)
    return report


@functools.lru_cache(maxsize=64)
def _area_plan(height: int, width: int, settings: MapSettings) -> BlockPlan:
    s = settings
    return plan_blocks(TileGrid(height, width, s.tile, s.overlap, s.margin), s.block)


def _plan(data: Any, area: str, settings: MapSettings) -> BlockPlan:
    """The block plan of an area (cached: planned once per grid and settings)."""
    grid = data.grid(area)
    return _area_plan(grid.height, grid.width, settings)


def _chosen_areas(data: Any, areas: Sequence[str] | None) -> list[str]:
    known = data.areas()
    if not areas:
        return known
    unknown = sorted(set(areas) - set(known))
    if unknown:
        raise ConfigError(f"--areas: {unknown} not in the input (it has {known[:10]} ...)")
    return [a for a in known if a in set(areas)]


def _chosen_months(available: list[str], months: Sequence[str] | None) -> list[str]:
    if not months:
        return available
    return [m for m in available if m in set(months)]


def _predict(
    checkpoint: str,
    source: str,
    out: Path,
    jobs: dict[tuple[str, str], tuple[int, ...]],
    info: dict[str, Any],
    settings: MapSettings,
    scheduler: str | None,
    workers: int,
    report: MapReport,
    progress: bool,
) -> None:
    """Run every block of every job, assembling each job's maps as its blocks arrive."""
    data = _source(source)
    tasks: list[BlockTask] = []
    for (area, month), frames in jobs.items():
        for block in _plan(data, area, settings).blocks:
            tasks.append(BlockTask(checkpoint, source, area, month, frames, block, settings))
    pending = Counter((t.area, t.month) for t in tasks)
    open_maps: dict[tuple[str, str], list[RasterAssembler]] = {}
    mergers: dict[tuple[str, str], CellMerger] = {}

    def assemblers(key: tuple[str, str]) -> list[RasterAssembler]:
        if key not in open_maps:
            area, month = key
            grid = data.grid(area)
            tags = {"month": month, "model": info["model"], "sampling": info["sampling"]}
            maps = [
                RasterAssembler(class_map_path(out, area, month), grid,
                                palette=info["palette"], descriptions=["class"], tags=tags)
            ]  # fmt: skip
            if settings.probabilities:
                maps.append(
                    RasterAssembler(class_map_path(out, area, month, "probabilities"), grid,
                                    count=len(info["classes"]), descriptions=info["classes"],
                                    resampling="average", tags={**tags, "scale": "1/255"})
                )  # fmt: skip
            open_maps[key] = maps
        return open_maps[key]

    def on_result(index: int, result: Any) -> None:
        task = tasks[index]
        key = (task.area, task.month)
        if key in report.failed:
            return
        if isinstance(result, BaseException):
            report.failed[f"{task.area} {task.month}"] = f"{type(result).__name__}: {result}"
            for assembler in open_maps.pop(key, []):
                assembler.abort()
            mergers.pop(key, None)
            return
        maps = assemblers(key)
        merger = mergers.setdefault(key, CellMerger())
        for cell, kind, first, second in result:
            if kind == "part":
                probabilities = merger.add(cell, task.block.index, first, second)
                if probabilities is None:
                    continue
                first, second = finalise(probabilities, settings)
            maps[0].write(cell.window, first)
            if second is not None:
                maps[1].write(cell.window, second)
        pending[key] -= 1
        if pending[key] == 0:
            mergers.pop(key)
            report.written.extend(a.finish() for a in open_maps.pop(key))

    try:
        map_tasks(run_block, tasks, scheduler=scheduler, workers=workers, progress=progress,
                  desc="map blocks", on_result=on_result,
                  compute_threads=settings.threads)  # fmt: skip
    finally:
        for maps in open_maps.values():
            for assembler in maps:
                assembler.abort()


def _area_products(
    data: Any,
    area: str,
    out: Path,
    info: dict[str, Any],
    settings: MapSettings,
    report: MapReport,
    months: Sequence[str] | None,
) -> None:
    """Change maps between consecutive mapped months, previews and the time-lapse."""
    done = [
        m
        for m in _chosen_months(months_of(data.dates(area)), months)
        if class_map_path(out, area, m).exists()
    ]
    k = len(info["classes"])
    for before, after in zip(done, done[1:], strict=False):
        path = class_map_path(out, area, after, "change")
        if path.exists():
            report.skipped.append(path)
            continue
        report.written.append(
            write_change_map(class_map_path(out, area, before), class_map_path(out, area, after),
                             path, k)
        )  # fmt: skip
    if not settings.previews or not done:
        return
    frames = []
    for month in done:
        preview = (out / "previews" / class_map_path(out, area, month).name).with_suffix(".png")
        classes = colourise(read_preview(class_map_path(out, area, month), PREVIEW_SIDE),
                            info["palette"])  # fmt: skip
        image = _month_image(data, area, month, info, classes.shape[:2])
        frames.append((month, image, classes))
        if preview.exists():
            report.skipped.append(preview)
        else:
            report.written.append(write_png(preview, np.concatenate([image, classes], axis=1)))
    gif = out / "timelapse" / f"{area}.gif"
    if gif.exists():
        report.skipped.append(gif)
    else:
        report.written.append(write_timelapse(gif, frames))


def _month_image(
    data: Any, area: str, month: str, info: dict[str, Any], shape: tuple[int, int]
) -> np.ndarray:
    """True colour of the month's middle frame, decimated to ``shape``, read in strips."""
    dates = data.dates(area)
    frames = select_frames(dates, month, "daily")
    frame = frames[len(frames) // 2]
    grid = data.grid(area)
    bands = band_indexes(info["bands"][:3], data.bands(area), f"{data.source}/{area}")
    step = max(1, math.ceil(max(grid.height, grid.width) / PREVIEW_SIDE))
    rows = []
    for row in range(0, grid.height, 8 * step):
        h = min(8 * step, grid.height - row)
        strip = data.read(area, [frame], (row, 0, h, grid.width))[0][bands]
        rows.append(strip[:, ::step, ::step].copy())  # not a view: frees the strip
    image = np.concatenate(rows, axis=1)[:, : shape[0], : shape[1]]
    rgb = true_colour(image)
    return (rgb * 255).round().astype(np.uint8)


def map_command_summary(report: MapReport, out: Path) -> str:
    """A few lines for the terminal."""
    lines = [f"{out}: {len(report.written)} files written, {len(report.skipped)} up to date"]
    for key, reason in sorted(report.failed.items()):
        lines.append(f"  failed {key}: {reason}")
    return "\n".join(lines)
