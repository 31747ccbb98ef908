"""``eochange monitor``: ERCNN-DRS change-probability maps of every window of a series.

The model of a change checkpoint (or ERCNN-DRS Keras weights) runs on every inference
window (:func:`~eochange.preprocess.windowing.inference_windows`, stride 5 by default) of
every tile of a stacked series, one tile at a time as it was trained (a tile's top-left
pixel drives the upstream step rule, and its borders see zero padding), and the tiles'
cores (:meth:`~eochange.preprocess.tiling.TileLayout.core`: the deadzone cropped on sides
with a neighbour) are stitched into one map per window.

Tiles are grouped into square blocks of at most ``block`` pixels, one Dask task each
(:mod:`eochange.inference.monitor_blocks`: memory bounded by the block and Ω, whatever the
area and the length of the series). The per-frame part of the model (conv blocks, ConvLSTM
input convs) runs once per frame of a tile, and the recurrences of its windows run from
those codes in batches of (tile, window) pairs: the same outputs as the model on each
window padded with -1 to Ω (:meth:`~eochange.models.ercnn_drs.ERCNNDRS.encode_frames`,
:meth:`~eochange.models.ercnn_drs.ERCNNDRS.decode_windows`). Each block is written to
``OUT/probabilities.zarr`` (its own arrays: tasks never share a file), then marked done; a
re-run skips done blocks and refuses other settings. The products
(:mod:`eochange.inference.monitor_products`) are then written from the store one window at
a time.

Layout of ``OUT/probabilities.zarr`` (Zarr v3)::

    zarr.json        attributes: format, series, checkpoint (and its SHA-256), settings,
                     tile layout, blocks (tiles, extent, core), windows, preview step
    blocks/<b>       (n_windows, h, w) float32 change probability over block b's cores
                     (one shard, one chunk per window)
    rgb/<b>          (n_windows, 3, h', w') float32 red, green, blue at each window's
                     last step, every ``preview_step``-th pixel (for the previews)
    done/<b>         one empty marker per finished block
"""

from __future__ import annotations

import hashlib
import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from datetime import time as clock
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from eochange import __version__
from eochange.errors import ConfigError, DataError
from eochange.inference.monitor_blocks import (
    BlockTask,
    TileBlock,
    change_model,
    plan_tile_blocks,
    run_block,
)
from eochange.io.atomic import atomic_path
from eochange.io.resume import plain, refuse_other_settings
from eochange.parallel import check_scheduler, map_tasks, usable_cores
from eochange.preprocess.series import open_series, series_layout
from eochange.preprocess.stacking import StackedSeries
from eochange.preprocess.tiling import TileLayout
from eochange.preprocess.windowing import StepRange, inference_windows

STORE_NAME = "probabilities.zarr"
STORE_FORMAT = "eochange.monitor"
PREVIEW_SIDE = 512
"""Longest side of the PNG previews (the GIF frames are at most half of it)."""
THREADS_PER_WORKER = 1
"""Torch threads of a local CPU worker: one worker per core. The model's ops are small
(a few tiles), so intra-op threads gain little and lose much when cores are shared: on 2
busy cores one process with 2 threads ran at 73 us per pixel and step, one with 1 thread
at 4.1 us, and two single-thread processes at 5.8 and 7.0 us each."""


@dataclass(frozen=True)
class MonitorSettings:
    """How the change maps are computed (None: from the checkpoint, else the era).

    Args:
        delta_days: Window length Δ in days.
        stride: Steps between window starts ρ (the era's inference stride, 5).
        min_steps: Fewest steps of a window ω.
        max_steps: Most steps of a window Ω (at most the checkpoint's).
        block: Side of the blocks of tiles computed as one task (pixels; at least one
            tile).
        batch_size: (tile, window) pairs per batch of recurrences (default:
            :func:`~eochange.inference.monitor_blocks.default_batch_size`).
        device: ``cpu`` or ``cuda``.
        fast: bfloat16 (CPU) / float16 (CUDA) autocast of the convolutions (the
            recurrence stays float32); slightly different numbers.
        keras_compat: Upstream step rule (on for Keras weights, as recorded for
            checkpoints).
        previews: Write PNG previews and the GIF.
        threads: Torch threads per task (default: :data:`THREADS_PER_WORKER` on CPU, the
            cores on GPU).
    """

    delta_days: float | None = None
    stride: int | None = None
    min_steps: int | None = None
    max_steps: int | None = None
    block: int = 128
    batch_size: int | None = None
    device: str = "cpu"
    fast: bool = False
    keras_compat: bool | None = None
    previews: bool = True
    threads: int | None = None

    def check(self) -> None:
        """Raise ConfigError on values out of range."""
        for name in ("stride", "min_steps", "max_steps", "batch_size", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"--{name.replace('_', '-')}: expected >= 1, got {value}")
        if self.delta_days is not None and self.delta_days <= 0:
            raise ConfigError(f"--delta-days: expected > 0, got {self.delta_days}")
        if self.block < 1:
            raise ConfigError(f"--block: expected a positive number of pixels, got {self.block}")


@dataclass
class MonitorReport:
    """What a monitor run did."""

    out: Path
    windows: int = 0
    tiles: int = 0
    blocks_written: int = 0
    blocks_skipped: int = 0
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def monitor(
    checkpoint: str | os.PathLike[str],
    series: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    settings: MonitorSettings | None = None,
    periods: Sequence[tuple[str, str]] | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> MonitorReport:
    """Write the change-probability map series of a stacked series (module docstring).

    Args:
        checkpoint: A ``change`` checkpoint or ERCNN-DRS Keras weights (``.h5``/``.hdf5``).
        series: A complete series of ``eochange stack``.
        out: Output folder (created, or resumed).
        settings: Window parameters, blocks, batching, device.
        periods: ``(start, end)`` ISO dates of maximum aggregates (default: the whole
            series): the windows that lie within the period, end day included.
        scheduler: Dask scheduler (see :mod:`eochange.parallel`).
        workers: Local Dask workers (default: one per core on CPU, one on GPU).
        progress: Show progress bars.

    Raises:
        ConfigError: Bad settings, a checkpoint of another task, other settings than the
            existing output's, a period without windows.
        DataError: Unreadable files, an incomplete series, a series of another era, no
            window.
    """
    started = time.perf_counter()
    settings = settings or MonitorSettings()
    settings.check()
    check_scheduler(scheduler)
    checkpoint, series, out = str(Path(checkpoint)), str(Path(series)), Path(out)
    _, info = change_model(checkpoint, "cpu", settings.keras_compat)
    data = open_series(series)
    layout = series_layout(series)
    _check_compatible(data, info, checkpoint, series)
    settings = _resolve(settings, info, checkpoint)
    if layout.tile != info["tile"]:
        warnings.warn(
            f"{series}: tiles of {layout.tile} px (deadzone {layout.deadzone}), the model was "
            f"trained on {info['tile']} px tiles; it is fully convolutional, but change "
            "probabilities near tile borders may differ from those it was trained to give",
            UserWarning,
            stacklevel=2,
        )
    windows = inference_windows(data.times, settings.delta_days, settings.stride,
                                settings.min_steps, settings.max_steps)  # fmt: skip
    if not windows:
        raise DataError(
            f"{series}: no window of {settings.delta_days:g} days with {settings.min_steps}.."
            f"{settings.max_steps} steps (stride {settings.stride}) in its {len(data.times)} "
            "steps; lower --min-steps or raise --delta-days"
        )
    chosen = resolve_periods(data.times, windows, periods)
    blocks = plan_tile_blocks(layout, settings.block)
    if not blocks:
        raise DataError(f"{series}: the area has no complete {layout.tile} px tile")
    preview_step = max(1, math.ceil(max(layout.height, layout.width) / PREVIEW_SIDE))
    store = out / STORE_NAME
    _open_store(store, checkpoint, series, settings, layout, blocks, windows, data.times,
                preview_step)  # fmt: skip
    report = MonitorReport(out, len(windows), sum(len(b.tiles) for b in blocks))
    spans = tuple((w.start, w.end) for w in windows)
    tasks = []
    for block in blocks:
        if (store / "done" / str(block.index)).exists():
            report.blocks_skipped += 1
        else:
            tasks.append(BlockTask(checkpoint, series, str(store), block, layout, spans,
                                   preview_step, settings))  # fmt: skip
    _run(tasks, scheduler, workers, settings, report, progress)
    if not report.failed:
        from eochange.inference.monitor_products import write_products

        write_products(out, store, data.times, windows, chosen, layout, settings.previews,
                       report, progress)  # fmt: skip
    report.seconds = time.perf_counter() - started
    return report


def _run(
    tasks: list[BlockTask],
    scheduler: str | None,
    workers: int | None,
    settings: MonitorSettings,
    report: MonitorReport,
    progress: bool,
) -> None:
    """Run the blocks through Dask: on CPU one single-threaded worker per core."""
    if not tasks:
        return
    cores = usable_cores()
    gpu = settings.device.startswith("cuda")
    one = scheduler == "synchronous" or gpu
    workers = workers or (1 if one else max(1, min(cores // THREADS_PER_WORKER, len(tasks))))
    remote = scheduler is not None and "://" in scheduler
    threads = settings.threads or (None if remote else cores if gpu else THREADS_PER_WORKER)
    tasks = [replace(t, settings=replace(t.settings, threads=threads)) for t in tasks]

    def on_result(index: int, result: Any) -> None:
        if isinstance(result, BaseException):
            name = f"block {tasks[index].block.index} {tasks[index].block.extent}"
            report.failed[name] = f"{type(result).__name__}: {result}"
        else:
            report.blocks_written += 1

    map_tasks(run_block, tasks, scheduler=scheduler, workers=workers, progress=progress,
              desc="monitor blocks", on_result=on_result, compute_threads=threads)  # fmt: skip


def _check_compatible(data: StackedSeries, info: dict, checkpoint: str, series: str) -> None:
    channels = sum(a.shape[1] for a in (data.sar_ascending, data.sar_descending, data.optical))
    if data.era.name != info["era"] or channels != len(info["bands"]):
        raise DataError(
            f"{series}: a {data.era.name!r} series of {channels} channels, but {checkpoint} "
            f"is an {info['era']!r} model of {len(info['bands'])} channels"
        )
    if list(info["bands"]) != list(data.era.channel_names):
        raise DataError(f"{checkpoint}: trained on channels {info['bands']}, the series has "
                        f"{list(data.era.channel_names)}")  # fmt: skip


def _resolve(settings: MonitorSettings, info: dict, checkpoint: str) -> MonitorSettings:
    """The settings with every window parameter and the step rule filled in."""
    window = info["window"]
    trained = int(window["max_steps"])
    values = {key: getattr(settings, key) or window[key]
              for key in ("delta_days", "stride", "min_steps", "max_steps")}  # fmt: skip
    if values["max_steps"] > trained:
        raise ConfigError(
            f"--max-steps {values['max_steps']}: {checkpoint} was trained on windows of at "
            f"most {trained} steps (Omega); windows may not be longer"
        )
    if values["min_steps"] > values["max_steps"]:
        raise ConfigError(f"--min-steps {values['min_steps']} is above --max-steps "
                          f"{values['max_steps']}")  # fmt: skip
    return replace(settings, delta_days=float(values["delta_days"]), stride=int(values["stride"]),
                   min_steps=int(values["min_steps"]), max_steps=int(values["max_steps"]),
                   keras_compat=bool(info["keras_compat"]))  # fmt: skip


def resolve_periods(
    times: np.ndarray, windows: Sequence[StepRange], periods: Sequence[tuple[str, str]] | None
) -> list[tuple[str, list[int]]]:
    """Name and windows of each aggregate: those lying within the period (end day included).

    Returns:
        ``[("aggregate_max", all windows)]`` without periods, else
        ``("aggregate_max_<YYYYMMDD>_<YYYYMMDD>", windows)`` per period.

    Raises:
        ConfigError: A date that is not ISO, an end before the start, a period without
            window.
    """
    if not periods:
        return [("aggregate_max", list(range(len(windows))))]
    chosen = []
    for start, end in periods:
        try:
            first, last = date.fromisoformat(str(start)), date.fromisoformat(str(end))
        except ValueError:
            raise ConfigError(f"--period {start} {end}: expected two YYYY-MM-DD dates") from None
        if last < first:
            raise ConfigError(f"--period {start} {end}: the end is before the start")
        lo = datetime.combine(first, clock.min, UTC).timestamp()
        hi = datetime.combine(last, clock.max, UTC).timestamp()
        inside = [k for k, w in enumerate(windows)
                  if lo <= times[w.start] and times[w.end - 1] <= hi]  # fmt: skip
        if not inside:
            raise ConfigError(
                f"--period {start} {end}: no window lies within it (the windows run from "
                f"{_day(times[windows[0].start])} to {_day(times[windows[-1].end - 1])})"
            )
        chosen.append((f"aggregate_max_{first:%Y%m%d}_{last:%Y%m%d}", inside))
    return chosen


def _day(seconds: float) -> str:
    return datetime.fromtimestamp(float(seconds), UTC).strftime("%Y-%m-%d")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _open_store(
    store: Path,
    checkpoint: str,
    series: str,
    settings: MonitorSettings,
    layout: TileLayout,
    blocks: list[TileBlock],
    windows: list[StepRange],
    times: np.ndarray,
    preview_step: int,
) -> None:
    """Create the store, or check that an existing one was made the same way."""
    kept = ("delta_days", "stride", "min_steps", "max_steps", "block", "fast", "keras_compat")
    attrs = {
        "format": STORE_FORMAT,
        "series": str(Path(series).resolve()),
        "checkpoint_sha256": _sha256(checkpoint),
        "settings": {key: value for key, value in asdict(settings).items() if key in kept},
        "layout": {key: value for key, value in asdict(layout).items()},
        "blocks": [
            {"tiles": [list(t) for t in b.tiles], "extent": list(b.extent), "core": list(b.core)}
            for b in blocks
        ],  # fmt: skip
        "windows": [
            [w.start, w.end, float(times[w.start]), float(times[w.end - 1])] for w in windows
        ],  # fmt: skip
        "preview_step": preview_step,
    }
    attrs = plain(attrs)
    if (store / "zarr.json").exists():
        saved = dict(zarr.open_group(store, mode="r").attrs)
        reasons = {
            "checkpoint_sha256": "another checkpoint",
            "series": "another series",
            "windows": "other windows (the series changed)",
        }
        reasons.update({key: "other settings" for key in attrs if key not in reasons})
        refuse_other_settings(store.parent, saved, attrs, attrs, "output", reasons)
        return
    # Created whole under a temporary name, then renamed: a run killed meanwhile leaves no
    # store without its attributes (which a re-run would refuse as made otherwise).
    with atomic_path(store) as tmp:
        root = zarr.open_group(tmp, mode="w")
        root.attrs.put({**attrs, "checkpoint": checkpoint, "version": __version__})
        root.require_group("blocks")
        root.require_group("rgb")
        (tmp / "done").mkdir()


def monitor_summary(report: MonitorReport) -> str:
    """A few lines for the terminal."""
    lines = [
        f"{report.out}: {report.windows} windows x {report.tiles} tiles in {report.seconds:.1f} "
        f"s; blocks computed {report.blocks_written}, already done {report.blocks_skipped}; "
        f"{len(report.written)} files written, {len(report.skipped)} up to date"
    ]
    lines.extend(f"  failed {where}: {error}" for where, error in sorted(report.failed.items()))
    return "\n".join(lines)
